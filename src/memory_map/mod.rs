//! The memory map: which bytes of a store's pads are used and which are free.
//!
//! A pure data structure (no I/O, no async, no locks); the allocator wraps it
//! with reservation and upload.
//!
//! **Address space.** All pads of a store form one virtual address space: the pad
//! with ordinal `o` covers addresses `[o*P, (o+1)*P)`, where `P` is the pad size.
//! Ordinals may have holes (a pad that was never recorded); a hole contributes
//! no space. Every byte of an existing pad is either used or free. Free space is
//! kept as maximal extents: adjacent free ranges always merge, also across pad
//! boundaries, since the address space is virtual.
//!
//! **Allocation policy** of [`MemoryMap::plan`]. Pads cost money, so using fewer
//! pads wins over keeping an item contiguous. Free extents are grouped by length
//! into size classes ([`size_class`]): lengths below 32 have a class each, and
//! every power-of-two range above is cut into 32 classes, so the lengths in a
//! class differ by less than 1/32 of the smallest.
//! 1. If a free extent can hold the whole item: good fit, an extent of the
//!    smallest class whose extents all hold it; if no such class has an
//!    extent, one of the item's own class that holds it. The item takes the
//!    extent's first bytes. Which extent of a class is chosen is unspecified.
//! 2. Else, if the free extents of at least [`MIN_FRAGMENT`] bytes can hold it
//!    together: take them by class, largest class first, until the item is
//!    covered; the last one gives only the bytes still needed (its first bytes).
//! 3. Else: take all free extents of at least [`MIN_FRAGMENT`] bytes, and put the
//!    rest into `ceil(rest / P)` new pads, which the caller adds at
//!    [`MemoryMap::next_ordinal`] and takes from their first byte on.
//!
//! So an item needs new pads only when the free space cannot hold it. Smaller
//! fragments are left for small items, which case 1 places in them. Good fit
//! instead of exact best fit wastes no pads (the small remainders it leaves
//! serve small items) and spares the map an index sorted by length.
//!
//! **Cost.** Each free extent is recorded twice: in the list of the pad where it
//! starts, sorted by address (pads are kept as runs of consecutive ordinals, each
//! with a vector of per-pad lists and a bitset of the non-empty ones; an entry
//! is 16 bytes, with the extent's slot in its class), and in the vector of its
//! size class, in the order recorded (with a bitset of the non-empty classes).
//! Finding the free extent at an address is a direct index into the run plus a
//! scan of one pad's short list; finding a fitting class is a few bit
//! operations, and case 1 takes the last extent of the class's vector, mostly
//! the one recorded last and so likely still in cache. Removing an extent from
//! its class leaves a tombstone, so nothing else moves or needs its slot
//! rewritten; a class whose tombstones outnumber its extents is compacted,
//! which costs O(1) per removal amortized (the moved extents lie in random
//! pads, so their pad lists are fetched a few extents ahead). So
//! [`MemoryMap::add_pad`], [`MemoryMap::take`] and [`MemoryMap::free`] cost
//! O(1) per extent apart from that scan and list insertions within one pad
//! (and copying a run when a new pad joins two runs): one pad list finds an
//! extent's neighbours and checks it, and the lists of a batch's extents are
//! fetched together. [`MemoryMap::plan`] costs O(1) in
//! case 1 unless it scans the item's own class, and walks the large fragments
//! in cases 2 and 3. With 10^6 items the map no longer fits in the CPU's
//! caches, so the cost per operation is mostly one cache miss per pad list an
//! operation touches.

use std::collections::BTreeMap;

mod invariants;
mod pad_runs;
mod policy;
mod size_classes;

use self::pad_runs::{Free, PadRun, run_of, run_of_mut};
pub use self::size_classes::size_class;
use self::size_classes::{Bitset, CLASSES, SizeClasses};

/// Free extents shorter than this are not used to hold pieces of an item that
/// fits in no single free extent (cases 2 and 3 of the allocation policy).
pub const MIN_FRAGMENT: u64 = 4096;

/// A range of addresses `[start, start + len)` in the store's address space.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Extent {
    /// The first address.
    pub start: u64,
    /// The number of bytes.
    pub len: u64,
}

impl Extent {
    /// The address one past the last byte, `start + len`.
    ///
    /// The map never holds an extent whose end passes `u64::MAX`, and rejects
    /// such extents in [`MemoryMap::take`] and [`MemoryMap::free`].
    pub fn end(&self) -> u64 {
        self.start + self.len
    }

    /// The end, or `None` if it passes `u64::MAX`.
    fn checked_end(&self) -> Option<u64> {
        self.start.checked_add(self.len)
    }
}

/// Where an item of a given size would go; see the allocation policy in the
/// module header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Extents of existing free space to use, sorted by address.
    pub from_free: Vec<Extent>,
    /// How many new pads to add.
    pub new_pads: u64,
    /// How many bytes go into the new pads: 0 if `new_pads == 0`, otherwise
    /// more than `(new_pads - 1) * P` and at most `new_pads * P`.
    pub new_bytes: u64,
}

impl Plan {
    /// The extent the new bytes occupy once the new pads have been added with
    /// consecutive ordinals from `first_ordinal` on (normally
    /// [`MemoryMap::next_ordinal`] before adding them), or `None` if the plan
    /// needs no new pads.
    pub fn new_extent(&self, first_ordinal: u64, pad_size: u64) -> Option<Extent> {
        (self.new_bytes > 0).then(|| Extent {
            start: first_ordinal * pad_size,
            len: self.new_bytes,
        })
    }
}

/// The storage figures of a map, as shown to users.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapSummary {
    /// Pads recorded in the map.
    pub total_pads: u64,
    /// Bytes per pad.
    pub pad_size: u64,
    /// `total_pads * pad_size`.
    pub total_space: u64,
    /// Bytes held by items.
    pub used_space: u64,
    /// Bytes available without new pads: `total_space - used_space`.
    pub free_space: u64,
}

/// Why the map refused a change; the map is unchanged after each of these.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MapError {
    /// The pad was added before.
    #[error("pad {0} already exists")]
    PadExists(u64),
    /// The pad's addresses would pass `u64::MAX`.
    #[error("pad {0} lies beyond the address space")]
    PadOutOfRange(u64),
    /// A range to take is not wholly free space.
    #[error("extent {start}+{len} is not wholly free space", start = .0.start, len = .0.len)]
    NotFree(Extent),
    /// A range to free is not wholly used space of existing pads.
    #[error("extent {start}+{len} is not wholly used space of existing pads", start = .0.start, len = .0.len)]
    NotUsed(Extent),
    /// An extent of zero bytes was given to take or free.
    #[error("zero-length extent")]
    ZeroLength,
}

/// The pads of a store and which of their bytes are used or free.
///
/// Two maps holding the same pads and the same used bytes compare equal (free
/// extents are maximal, so the free space has one form).
#[derive(Debug, Clone)]
pub struct MemoryMap {
    pad_size: u64,
    /// Runs of consecutive pads by first ordinal. Maximal: no run ends where
    /// another starts.
    runs: BTreeMap<u64, PadRun>,
    pad_count: u64,
    /// The free extents by size class. Maximal: no extent ends where another
    /// starts.
    classes: SizeClasses,
    /// Sum of the free extents' lengths.
    free_bytes: u64,
    /// Sum of the lengths of the free extents of at least [`MIN_FRAGMENT`]
    /// bytes, which decides between cases 2 and 3 of the policy.
    large_free_bytes: u64,
    /// Pads closed to allocation (see [`MemoryMap::fence`]).
    fence: Fence,
}

/// Pads closed to allocation while they are emptied, and the space held
/// in them: used for the map's counts, free once the fence goes.
#[derive(Debug, Clone, Default)]
struct Fence {
    pads: std::collections::BTreeSet<u64>,
    held: Vec<Extent>,
}

impl PartialEq for MemoryMap {
    fn eq(&self, other: &Self) -> bool {
        let pads = |map: &MemoryMap| -> Vec<(u64, u64)> {
            map.runs
                .iter()
                .map(|(&first, run)| (first, run.pads()))
                .collect()
        };
        self.pad_size == other.pad_size
            && pads(self) == pads(other)
            && self.free_extents() == other.free_extents()
    }
}

impl Eq for MemoryMap {}

impl MemoryMap {
    /// An empty map of pads of `pad_size` bytes.
    ///
    /// # Panics
    /// If `pad_size` is 0; callers validate it first.
    pub fn new(pad_size: u64) -> Self {
        assert!(pad_size > 0, "pad size must be positive");
        Self {
            pad_size,
            runs: BTreeMap::new(),
            pad_count: 0,
            classes: SizeClasses::new(),
            free_bytes: 0,
            large_free_bytes: 0,
            fence: Fence::default(),
        }
    }

    /// Bytes per pad.
    pub fn pad_size(&self) -> u64 {
        self.pad_size
    }

    /// Records the pad `ordinal`; its whole range becomes free space, merged
    /// with free neighbours.
    pub fn add_pad(&mut self, ordinal: u64) -> Result<(), MapError> {
        let start = ordinal
            .checked_mul(self.pad_size)
            .filter(|start| start.checked_add(self.pad_size).is_some())
            .ok_or(MapError::PadOutOfRange(ordinal))?;
        if self.has_pad(ordinal) {
            return Err(MapError::PadExists(ordinal));
        }
        // Join the run that ends at `ordinal`, or start one; then take in the
        // run that starts right after. `ordinal + 1` fits: the pad's end
        // address fits and the pad size is >= 1.
        let joined = self
            .runs
            .range(..ordinal)
            .next_back()
            .filter(|(first, run)| **first + run.pads() == ordinal)
            .map(|(&first, _)| first);
        let first = joined.unwrap_or(ordinal);
        let after = self.runs.remove(&(ordinal + 1));
        let run = self.runs.entry(first).or_default();
        run.push_pad();
        if let Some(after) = after {
            run.append(after);
        }
        self.pad_count += 1;
        // The new pad holds no free extent yet, as if all used: freeing it
        // merges it with its free neighbours.
        self.free_one(Extent {
            start,
            len: self.pad_size,
        })
        .expect("a new pad is not free space yet");
        Ok(())
    }

    /// Whether the pad `ordinal` is recorded.
    pub fn has_pad(&self, ordinal: u64) -> bool {
        self.run_of(ordinal).is_some()
    }

    /// How many pads are recorded.
    pub fn pad_count(&self) -> u64 {
        self.pad_count
    }

    /// The highest recorded ordinal plus one, or 0 for an empty map.
    pub fn next_ordinal(&self) -> u64 {
        self.runs
            .last_key_value()
            .map_or(0, |(first, run)| first + run.pads())
    }

    /// The ordinals below [`Self::next_ordinal`] that have no pad, ascending.
    pub fn holes(&self) -> Vec<u64> {
        let mut holes = Vec::new();
        let mut next = 0;
        for (&first, run) in &self.runs {
            holes.extend(next..first);
            next = first + run.pads();
        }
        holes
    }

    /// Marks the extents as used. Each must lie wholly in free space (and they
    /// must not overlap each other); on error nothing changes.
    pub fn take(&mut self, extents: &[Extent]) -> Result<(), MapError> {
        // Check all before changing anything, so that a refused call leaves
        // even the order within size classes as it was. One extent is checked
        // by `take_one` itself.
        if extents.len() > 1 {
            for extent in extents {
                self.prefetch_list(extent.start);
            }
            let clash = first_overlapping_an_earlier(extents);
            for (index, &extent) in extents.iter().enumerate() {
                self.free_holding(extent)?;
                if clash == Some(index) {
                    return Err(MapError::NotFree(extent));
                }
            }
        }
        for &extent in extents {
            self.take_one(extent)?;
        }
        Ok(())
    }

    /// Marks the extents as free, merging them with free neighbours. Each must
    /// be wholly used space of existing pads (and they must not overlap each
    /// other); on error nothing changes.
    pub fn free(&mut self, extents: &[Extent]) -> Result<(), MapError> {
        // As in `take`: check all, then change.
        if extents.len() > 1 {
            for extent in extents {
                // `check_used` and `free_one` search the list of the last byte's pad.
                self.prefetch_list(extent.end().saturating_sub(1));
            }
            let clash = first_overlapping_an_earlier(extents);
            for (index, &extent) in extents.iter().enumerate() {
                self.check_used(extent)?;
                if clash == Some(index) {
                    return Err(MapError::NotUsed(extent));
                }
            }
        }
        for &extent in extents {
            self.free_one(extent)?;
        }
        if !self.fence.pads.is_empty() {
            // Freed, merged, then held again in one call: never handed out.
            let held = self.in_fenced_pads(extents);
            self.take(&held)?;
            self.fence.held.extend(held);
        }
        Ok(())
    }

    /// Closes `pads` to allocation while they are emptied: their free space
    /// is taken now, and space freed in them later is taken as it is freed
    /// (so a move out of a pad never frees room for the next move to land
    /// in it), until [`Self::unfence`]. On error nothing changes.
    pub fn fence(&mut self, pads: &[u64]) -> Result<(), MapError> {
        let mut fence = self.fence.clone();
        fence.pads.extend(pads.iter().copied());
        let fenced = std::mem::replace(&mut self.fence, fence);
        let held = self.in_fenced_pads(&self.free_extents());
        if let Err(error) = self.take(&held) {
            self.fence = fenced;
            return Err(error);
        }
        self.fence.held.extend(held);
        Ok(())
    }

    /// Opens every fenced pad again: the space held in them is free.
    pub fn unfence(&mut self) -> Result<(), MapError> {
        let fence = std::mem::take(&mut self.fence);
        let result = self.free(&fence.held);
        if result.is_err() {
            self.fence = fence;
        }
        result
    }

    /// The pads closed by [`Self::fence`], ascending.
    pub fn fenced_pads(&self) -> Vec<u64> {
        self.fence.pads.iter().copied().collect()
    }

    /// The parts of `extents` in fenced pads.
    fn in_fenced_pads(&self, extents: &[Extent]) -> Vec<Extent> {
        let pad_size = self.pad_size;
        extents
            .iter()
            .flat_map(|e| split_by_pad(*e, pad_size))
            .filter(|(pad, _, _)| self.fence.pads.contains(pad))
            .map(|(pad, offset, len)| Extent {
                start: pad * pad_size + offset,
                len,
            })
            .collect()
    }

    /// Bytes held by items.
    pub fn used_space(&self) -> u64 {
        self.total_space() - self.free_bytes
    }

    /// Bytes of existing pads not held by items.
    pub fn free_space(&self) -> u64 {
        self.free_bytes
    }

    /// Bytes of all existing pads.
    pub fn total_space(&self) -> u64 {
        self.pad_count * self.pad_size
    }

    /// The storage figures of the map.
    pub fn summary(&self) -> MapSummary {
        MapSummary {
            total_pads: self.pad_count,
            pad_size: self.pad_size,
            total_space: self.total_space(),
            used_space: self.used_space(),
            free_space: self.free_space(),
        }
    }

    /// The free extents, ascending by address, maximal (merged).
    pub fn free_extents(&self) -> Vec<Extent> {
        self.runs
            .values()
            .flat_map(PadRun::extents)
            .map(|free| free.extent)
            .collect()
    }

    /// The ordinals of the recorded pads, ascending.
    pub fn pads(&self) -> Vec<u64> {
        self.runs
            .iter()
            .flat_map(|(&first, run)| first..first + run.pads())
            .collect()
    }

    /// Free bytes of each recorded pad, ascending by ordinal.
    pub fn free_per_pad(&self) -> Vec<(u64, u64)> {
        let mut free: BTreeMap<u64, u64> = self.pads().into_iter().map(|o| (o, 0)).collect();
        for extent in self.free_extents() {
            for (pad, _, len) in split_by_pad(extent, self.pad_size) {
                *free.entry(pad).or_default() += len;
            }
        }
        free.into_iter().collect()
    }

    /// Drops the pads `ordinals`, each wholly free, from the map: their
    /// ordinals become holes. The map is rebuilt (every pad and every used
    /// byte elsewhere stays as it was), which costs O(pads + free extents):
    /// for a compaction, not for every operation. On error nothing changes.
    pub fn remove_pads(&mut self, ordinals: &[u64]) -> Result<(), MapError> {
        let gone: std::collections::BTreeSet<u64> = ordinals.iter().copied().collect();
        let free = self.free_per_pad();
        for &ordinal in &gone {
            match free.iter().find(|(pad, _)| *pad == ordinal) {
                Some(&(_, bytes)) if bytes == self.pad_size => {}
                Some(_) => {
                    return Err(MapError::NotFree(Extent {
                        start: ordinal * self.pad_size,
                        len: self.pad_size,
                    }));
                }
                None => return Err(MapError::PadOutOfRange(ordinal)),
            }
        }
        let mut rebuilt = MemoryMap::new(self.pad_size);
        let kept: Vec<u64> = self
            .pads()
            .into_iter()
            .filter(|o| !gone.contains(o))
            .collect();
        for &ordinal in &kept {
            rebuilt.add_pad(ordinal)?;
        }
        // Used space is what lies between the free extents of each kept pad.
        let mut free_parts: BTreeMap<u64, Vec<(u64, u64)>> = BTreeMap::new();
        for extent in self.free_extents() {
            for (pad, offset, len) in split_by_pad(extent, self.pad_size) {
                free_parts.entry(pad).or_default().push((offset, len));
            }
        }
        let mut used = Vec::new();
        for &ordinal in &kept {
            let base = ordinal * self.pad_size;
            let mut at = 0;
            for &(offset, len) in free_parts.get(&ordinal).map_or(&[][..], |v| v) {
                if offset > at {
                    used.push(Extent {
                        start: base + at,
                        len: offset - at,
                    });
                }
                at = offset + len;
            }
            if at < self.pad_size {
                used.push(Extent {
                    start: base + at,
                    len: self.pad_size - at,
                });
            }
        }
        rebuilt.take(&used)?;
        rebuilt.fence = std::mem::take(&mut self.fence);
        rebuilt.fence.pads.retain(|o| !gone.contains(o));
        *self = rebuilt;
        Ok(())
    }

    /// Starts fetching the list of the pad of `address` into the cache, so
    /// that the lists of a batch's extents arrive together rather than one
    /// after another.
    fn prefetch_list(&self, address: u64) {
        let ordinal = address / self.pad_size;
        if let Some((first, run)) = self.run_of(ordinal) {
            run.prefetch_list((ordinal - first) as usize);
        }
    }

    /// The run holding the pad `ordinal`, with its first ordinal.
    fn run_of(&self, ordinal: u64) -> Option<(u64, &PadRun)> {
        run_of(&self.runs, ordinal)
    }

    /// Whether `[start, end)` lies within one run of existing pads (and so
    /// wholly within existing pads).
    fn within_pads(&self, start: u64, end: u64) -> bool {
        self.run_of(start / self.pad_size)
            .is_some_and(|(first, run)| end <= (first + run.pads()) * self.pad_size)
    }

    /// The free extent with the highest start at or below `address`, if
    /// `address` lies in a pad.
    fn free_at_or_before(&self, address: u64) -> Option<Extent> {
        let ordinal = address / self.pad_size;
        let (first, run) = self.run_of(ordinal)?;
        let at = run.at_or_before((ordinal - first) as usize, address)?;
        Some(run.get(at).extent)
    }

    /// The free extent that holds the range, or why it cannot be taken.
    fn free_holding(&self, range: Extent) -> Result<Extent, MapError> {
        if range.len == 0 {
            return Err(MapError::ZeroLength);
        }
        let end = range.checked_end().ok_or(MapError::NotFree(range))?;
        self.free_at_or_before(range.start)
            .filter(|free| end <= free.end())
            .ok_or(MapError::NotFree(range))
    }

    /// Whether every byte of `range` is free (and in recorded pads).
    pub fn is_free(&self, range: Extent) -> bool {
        self.free_holding(range).is_ok()
    }

    /// Whether every byte of `range` is used (and in recorded pads).
    pub fn is_used(&self, range: Extent) -> bool {
        self.check_used(range).is_ok()
    }

    /// Whether the range can be freed: wholly used space of existing pads.
    fn check_used(&self, range: Extent) -> Result<(), MapError> {
        if range.len == 0 {
            return Err(MapError::ZeroLength);
        }
        let end = range.checked_end().ok_or(MapError::NotUsed(range))?;
        // The free extent starting last before `end` is the only one that can
        // overlap the range (free extents are disjoint and sorted).
        if !self.within_pads(range.start, end)
            || self
                .free_at_or_before(end - 1)
                .is_some_and(|free| free.end() > range.start)
        {
            return Err(MapError::NotUsed(range));
        }
        Ok(())
    }

    /// Marks one range as used, or says why it cannot; on error nothing
    /// changes. One search of one pad's list finds the free extent holding it.
    fn take_one(&mut self, range: Extent) -> Result<(), MapError> {
        let not_free = MapError::NotFree(range);
        if range.len == 0 {
            return Err(MapError::ZeroLength);
        }
        let end = range.checked_end().ok_or(not_free.clone())?;
        let pad_size = self.pad_size;
        let (first, run) =
            run_of_mut(&mut self.runs, range.start / pad_size).ok_or(not_free.clone())?;
        let pad_of = |address: u64| (address / pad_size - first) as usize;
        let at = run
            .at_or_before(pad_of(range.start), range.start)
            .ok_or(not_free.clone())?;
        let Free { extent: free, slot } = run.get(at);
        if end > free.end() {
            return Err(not_free);
        }

        // The remainders touch the taken range, so they merge with nothing.
        // The one before keeps the free extent's record (same start); the one
        // after starts either in the same pad, right after it, or first in a
        // later pad (no other free extent starts within `free`).
        let before = Extent {
            start: free.start,
            len: range.start - free.start,
        };
        let after = Extent {
            start: end,
            len: free.end() - end,
        };
        self.free_bytes -= range.len;
        if free.len >= MIN_FRAGMENT {
            self.large_free_bytes -= free.len;
        }
        for rest in [before, after] {
            if rest.len >= MIN_FRAGMENT {
                self.large_free_bytes += rest.len;
            }
        }
        let after_at = (pad_of(end), if pad_of(end) == at.0 { at.1 + 1 } else { 0 });
        if before.len > 0 {
            let slot = self.classes.replace(free, slot, before);
            run.set(at, before, slot);
            if after.len > 0 {
                let slot = self.classes.push(after);
                run.insert(after_at, after, slot);
            }
        } else if after.len > 0 && after_at.0 == at.0 {
            let slot = self.classes.replace(free, slot, after);
            run.set(at, after, slot);
        } else {
            self.classes.remove(size_class(free.len), slot);
            run.remove(at);
            if after.len > 0 {
                let slot = self.classes.push(after);
                run.insert(after_at, after, slot);
            }
        }
        self.compact_if_needed(size_class(free.len));
        Ok(())
    }

    /// Marks one range as free, merged with the free extents that end where
    /// it starts and start where it ends; or says why it cannot, and then
    /// nothing changes. One search of one pad's list finds both neighbours
    /// and checks that no free extent overlaps the range.
    fn free_one(&mut self, range: Extent) -> Result<(), MapError> {
        let not_used = MapError::NotUsed(range);
        if range.len == 0 {
            return Err(MapError::ZeroLength);
        }
        let end = range.checked_end().ok_or(not_used.clone())?;
        let pad_size = self.pad_size;
        let (first, run) =
            run_of_mut(&mut self.runs, range.start / pad_size).ok_or(not_used.clone())?;
        let pad_of = |address: u64| (address / pad_size - first) as usize;
        let (before, after) = run.touching(range, pad_size, first).ok_or(not_used)?;

        let before_entry = before.map(|at| run.get(at));
        let after_entry = after.map(|at| run.get(at));
        let merged_start = before_entry.map_or(range.start, |entry| entry.extent.start);
        let merged_end = after_entry.map_or(end, |entry| entry.extent.end());
        let merged = Extent {
            start: merged_start,
            len: merged_end - merged_start,
        };
        self.free_bytes += range.len;
        for entry in before_entry.iter().chain(&after_entry) {
            if entry.extent.len >= MIN_FRAGMENT {
                self.large_free_bytes -= entry.extent.len;
            }
        }
        if merged.len >= MIN_FRAGMENT {
            self.large_free_bytes += merged.len;
        }
        // `merged` takes over the record of the extent before, or else of the
        // one after if that starts in the same pad as the range; a record
        // left over is removed (it follows the kept one in its list).
        let start_pad = pad_of(range.start);
        match (before.zip(before_entry), after.zip(after_entry)) {
            (Some((at, kept)), after) => {
                if let Some((after_at, gone)) = after {
                    self.classes.remove(size_class(gone.extent.len), gone.slot);
                    run.remove(after_at);
                }
                let slot = self.classes.replace(kept.extent, kept.slot, merged);
                run.set(at, merged, slot);
            }
            (None, Some((at, kept))) if at.0 == start_pad => {
                let slot = self.classes.replace(kept.extent, kept.slot, merged);
                run.set(at, merged, slot);
            }
            (None, after) => {
                if let Some((after_at, gone)) = after {
                    self.classes.remove(size_class(gone.extent.len), gone.slot);
                    run.remove(after_at);
                }
                let position = run.free[start_pad].partition_point(|e| e.start < range.start);
                let slot = self.classes.push(merged);
                run.insert((start_pad, position), merged, slot);
            }
        }
        for entry in before_entry.iter().chain(&after_entry) {
            self.compact_if_needed(size_class(entry.extent.len));
        }
        Ok(())
    }
}

/// The index of the first extent that overlaps an earlier one in the list
/// (empty extents overlap nothing).
fn first_overlapping_an_earlier(extents: &[Extent]) -> Option<usize> {
    let overlap = |a: &Extent, b: &Extent| {
        a.len > 0
            && b.len > 0
            && a.start < b.start.saturating_add(b.len)
            && b.start < a.start.saturating_add(a.len)
    };
    // Allocations have a few extents: compare pairs. Rebuilding a map takes
    // every used extent at once: keep the earlier ones sorted.
    if extents.len() <= 16 {
        return (1..extents.len()).find(|&i| {
            extents[..i]
                .iter()
                .any(|earlier| overlap(earlier, &extents[i]))
        });
    }
    let mut earlier: BTreeMap<u64, Extent> = BTreeMap::new();
    for (index, extent) in extents.iter().enumerate() {
        if extent.len == 0 {
            continue;
        }
        // Earlier extents are disjoint (we stop at the first overlap), so the
        // one starting last before this one's end is the only candidate.
        let end = extent.start.saturating_add(extent.len);
        if earlier
            .range(..end)
            .next_back()
            .is_some_and(|(_, before)| overlap(before, extent))
        {
            return Some(index);
        }
        earlier.insert(extent.start, *extent);
    }
    None
}

/// Cuts an extent at pad boundaries into `(ordinal, offset in pad, len)`
/// pieces, in address order; a zero-length extent gives no pieces.
///
/// # Panics
/// If `pad_size` is 0.
pub fn split_by_pad(extent: Extent, pad_size: u64) -> Vec<(u64, u64, u64)> {
    assert!(pad_size > 0, "pad size must be positive");
    let mut pieces = Vec::new();
    let (mut address, mut left) = (extent.start, extent.len);
    while left > 0 {
        let offset = address % pad_size;
        let len = left.min(pad_size - offset);
        pieces.push((address / pad_size, offset, len));
        left -= len;
        // Saturates only on the last piece of an extent ending at 2^64.
        address = address.saturating_add(len);
    }
    pieces
}

#[cfg(test)]
mod tests;
