//! Free extents by address: runs of consecutive pads, each with a list of
//! the free extents starting in each pad (see "Cost" in the module header).

use super::*;

/// A free extent as recorded in its pad's list: 16 bytes, so that a pad's
/// list spans few cache lines and all lists take less cache.
#[derive(Debug, Clone, Copy)]
pub(super) struct FreeEntry {
    pub(super) start: u64,
    /// The length, or [`LONG`] for one recorded in [`PadRun::long`].
    pub(super) len: u32,
    /// Its slot in its size class's vector.
    pub(super) slot: u32,
}

/// The `len` of a [`FreeEntry`] whose length does not fit in it.
pub(super) const LONG: u32 = u32::MAX;

/// A free extent with its slot in its size class, as read from a pad's list.
#[derive(Debug, Clone, Copy)]
pub(super) struct Free {
    pub(super) extent: Extent,
    pub(super) slot: usize,
}

/// Where a free extent is recorded in a run: the pad's index in the run and
/// the extent's position in the pad's list.
pub(super) type At = (usize, usize);

/// A run of consecutive pads, with the free extents that start in each.
///
/// A free extent never crosses a hole, so it lies within one run, and its
/// neighbours at lower addresses are found by walking back in the same run.
#[derive(Debug, Clone, Default)]
pub(super) struct PadRun {
    /// Per pad of the run, from its first ordinal on: the free extents that
    /// start in the pad, ascending by address.
    pub(super) free: Vec<Vec<FreeEntry>>,
    /// The pads whose list is not empty.
    pub(super) starts: Bitset,
    /// The lengths of the free extents of at least [`LONG`] bytes, by start.
    pub(super) long: BTreeMap<u64, u64>,
}

impl PadRun {
    pub(super) fn pads(&self) -> u64 {
        self.free.len() as u64
    }

    pub(super) fn push_pad(&mut self) {
        self.free.push(Vec::new());
        self.starts.grow(self.free.len());
    }

    /// Appends the pads of the run that follows this one.
    pub(super) fn append(&mut self, mut next: PadRun) {
        let offset = self.free.len();
        self.free.extend(next.free);
        self.long.append(&mut next.long);
        self.starts.grow(self.free.len());
        for (index, list) in self.free.iter().enumerate().skip(offset) {
            if !list.is_empty() {
                self.starts.insert(index);
            }
        }
    }

    /// The free extent with the highest start at or below `address`, which lies
    /// in the pad `index` of the run.
    pub(super) fn at_or_before(&self, index: usize, address: u64) -> Option<At> {
        // A linear scan: lists are short, and its loads do not wait for each
        // other as a binary search's do, which matters when the list is not
        // in cache.
        let list = &self.free[index];
        let before = list
            .iter()
            .position(|entry| entry.start > address)
            .unwrap_or(list.len());
        if before > 0 {
            return Some((index, before - 1));
        }
        let pad = self.starts.last_below(index)?;
        Some((pad, self.free[pad].len() - 1))
    }

    pub(super) fn decode(&self, entry: &FreeEntry) -> Free {
        let len = match entry.len {
            LONG => self.long[&entry.start],
            len => u64::from(len),
        };
        Free {
            extent: Extent {
                start: entry.start,
                len,
            },
            slot: entry.slot as usize,
        }
    }

    pub(super) fn encode(&mut self, extent: Extent, slot: usize) -> FreeEntry {
        let len = match u32::try_from(extent.len) {
            Ok(len) if len < LONG => len,
            _ => {
                self.long.insert(extent.start, extent.len);
                LONG
            }
        };
        FreeEntry {
            start: extent.start,
            len,
            slot: slot_u32(slot),
        }
    }

    pub(super) fn forget(&mut self, entry: FreeEntry) {
        if entry.len == LONG {
            self.long.remove(&entry.start);
        }
    }

    pub(super) fn get(&self, (pad, position): At) -> Free {
        self.decode(&self.free[pad][position])
    }

    /// The free extents that end where `range` starts and start where it
    /// ends, if any; `None` if the range is not inside the run (whose first
    /// pad is `first`) or a free extent overlaps it. Free extents are
    /// disjoint and sorted: the one starting last before the range's end is
    /// the only one that can overlap it, and the only one that can end where
    /// it starts. The next one may start at its end.
    pub(super) fn touching(
        &self,
        range: Extent,
        pad_size: u64,
        first: u64,
    ) -> Option<(Option<At>, Option<At>)> {
        let end = range.checked_end()?;
        let pad_of = |address: u64| (address / pad_size - first) as usize;
        let last = pad_of(end - 1);
        if last >= self.free.len() {
            return None;
        }
        let last_before = self.at_or_before(last, end - 1);
        let mut before = None;
        if let Some(at) = last_before {
            let extent = self.get(at).extent;
            if extent.end() > range.start {
                return None;
            }
            before = (extent.end() == range.start).then_some(at);
        }
        let next = match last_before {
            Some((pad, position)) if pad == last && pad_of(end) == last => (last, position + 1),
            _ => (pad_of(end), 0),
        };
        let after = self
            .free
            .get(next.0)
            .and_then(|list| list.get(next.1))
            .filter(|entry| entry.start == end)
            .map(|_| next);
        Some((before, after))
    }

    pub(super) fn set(&mut self, (pad, position): At, extent: Extent, slot: usize) {
        self.forget(self.free[pad][position]);
        self.free[pad][position] = self.encode(extent, slot);
    }

    pub(super) fn insert(&mut self, (pad, position): At, extent: Extent, slot: usize) {
        let entry = self.encode(extent, slot);
        self.free[pad].insert(position, entry);
        self.starts.insert(pad);
    }

    pub(super) fn remove(&mut self, (pad, position): At) {
        let entry = self.free[pad].remove(position);
        self.forget(entry);
        if self.free[pad].is_empty() {
            self.starts.remove(pad);
        }
    }

    /// Starts fetching the entry of pad `index` (where its list is) into the
    /// cache, without waiting for it.
    pub(super) fn prefetch_pad(&self, index: usize) {
        prefetch(self.free.as_ptr().wrapping_add(index));
    }

    /// Starts fetching the list of pad `index` into the cache, without
    /// waiting for it.
    pub(super) fn prefetch_list(&self, index: usize) {
        // The first few cache lines (four entries each): lists are short.
        for entry in self.free[index].iter().step_by(4).take(4) {
            prefetch(entry);
        }
    }

    /// The free extents of the run, ascending.
    pub(super) fn extents(&self) -> impl Iterator<Item = Free> + '_ {
        self.free.iter().flatten().map(|entry| self.decode(entry))
    }
}

/// A slot as a list entry holds it.
pub(super) fn slot_u32(slot: usize) -> u32 {
    // A class holds at most about twice as many slots as there are free
    // extents, each of which took an allocation: far fewer than 2^32.
    u32::try_from(slot).expect("fewer than 2^32 slots in a size class")
}

/// Asks the CPU to fetch the cache line holding `item`, without waiting.
#[inline]
pub(super) fn prefetch<T>(item: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint: it never faults, whatever the
    // address, and changes nothing the program can observe.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(item.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = item;
}

/// The run holding the pad `ordinal`, with its first ordinal.
pub(super) fn run_of(runs: &BTreeMap<u64, PadRun>, ordinal: u64) -> Option<(u64, &PadRun)> {
    runs.range(..=ordinal)
        .next_back()
        .filter(|(first, run)| ordinal < *first + run.pads())
        .map(|(&first, run)| (first, run))
}

/// The run holding the pad `ordinal`, with its first ordinal.
pub(super) fn run_of_mut(
    runs: &mut BTreeMap<u64, PadRun>,
    ordinal: u64,
) -> Option<(u64, &mut PadRun)> {
    runs.range_mut(..=ordinal)
        .next_back()
        .filter(|(first, run)| ordinal < *first + run.pads())
        .map(|(&first, run)| (first, run))
}
