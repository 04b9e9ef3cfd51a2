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
//! pads wins over keeping an item contiguous:
//! 1. If a free extent can hold the whole item: best fit, the smallest such
//!    extent (ties: lowest address), of which the item takes the first bytes.
//! 2. Else, if the free extents of at least [`MIN_FRAGMENT`] bytes can hold it
//!    together: take them largest first (ties: lowest address) until the item is
//!    covered; the last one gives only the bytes still needed (its first bytes).
//! 3. Else: take all free extents of at least [`MIN_FRAGMENT`] bytes, and put the
//!    rest into `ceil(rest / P)` new pads, which the caller adds at
//!    [`MemoryMap::next_ordinal`] and takes from their first byte on.
//!
//! So an item needs new pads only when the free space cannot hold it. Smaller
//! fragments are left for small items, which case 1 places in them.
//!
//! **Cost.** Free extents are indexed by end address and by (length, start);
//! pads are kept as runs of consecutive ordinals; used, free and total space are
//! counters. [`MemoryMap::add_pad`], [`MemoryMap::take`] and [`MemoryMap::free`]
//! cost O(log n) per extent; [`MemoryMap::plan`] costs O(log n) in case 1 and
//! walks the large fragments, largest first, in cases 2 and 3.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

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
/// Its state is canonical (free extents are maximal), so two maps holding the
/// same pads and the same used bytes compare equal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryMap {
    pad_size: u64,
    /// Runs of consecutive pad ordinals: first ordinal -> one past the last.
    /// Maximal: no run ends where another starts.
    pad_runs: BTreeMap<u64, u64>,
    pad_count: u64,
    /// Free extents, end -> start. Maximal: no extent ends where another starts.
    /// Keyed by end so that taking the front of an extent (best fit) and
    /// merging a freed range into the extent after it update a value in place.
    free_by_end: BTreeMap<u64, u64>,
    /// The same free extents as (len, start), for best fit.
    free_by_len: BTreeSet<(u64, u64)>,
    /// Sum of the free extents' lengths.
    free_bytes: u64,
}

impl MemoryMap {
    /// An empty map of pads of `pad_size` bytes.
    ///
    /// # Panics
    /// If `pad_size` is 0; callers validate it first.
    pub fn new(pad_size: u64) -> Self {
        assert!(pad_size > 0, "pad size must be positive");
        Self {
            pad_size,
            pad_runs: BTreeMap::new(),
            pad_count: 0,
            free_by_end: BTreeMap::new(),
            free_by_len: BTreeSet::new(),
            free_bytes: 0,
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
        // `ordinal + 1` fits: the pad's end address fits and the pad size is >= 1.
        let (mut run_first, mut run_end) = (ordinal, ordinal + 1);
        if let Some((&before_first, &before_end)) = self.pad_runs.range(..ordinal).next_back()
            && before_end == ordinal
        {
            self.pad_runs.remove(&before_first);
            run_first = before_first;
        }
        if let Some(after_end) = self.pad_runs.remove(&run_end) {
            run_end = after_end;
        }
        self.pad_runs.insert(run_first, run_end);
        self.pad_count += 1;
        // The pad was absent, so no free extent overlaps it.
        let next = self.free_ending_after(start);
        self.insert_free_merged(start, start + self.pad_size, next);
        Ok(())
    }

    /// Whether the pad `ordinal` is recorded.
    pub fn has_pad(&self, ordinal: u64) -> bool {
        self.pad_runs
            .range(..=ordinal)
            .next_back()
            .is_some_and(|(_, &end)| ordinal < end)
    }

    /// How many pads are recorded.
    pub fn pad_count(&self) -> u64 {
        self.pad_count
    }

    /// The highest recorded ordinal plus one, or 0 for an empty map.
    pub fn next_ordinal(&self) -> u64 {
        self.pad_runs.last_key_value().map_or(0, |(_, &end)| end)
    }

    /// The ordinals below [`Self::next_ordinal`] that have no pad, ascending.
    pub fn holes(&self) -> Vec<u64> {
        let mut holes = Vec::new();
        let mut next = 0;
        for (&first, &end) in &self.pad_runs {
            holes.extend(next..first);
            next = end;
        }
        holes
    }

    /// Where an item of `size` bytes would go, without changing the map; see
    /// the allocation policy in the module header. `plan(0)` is empty.
    pub fn plan(&self, size: u64) -> Plan {
        let mut plan = Plan {
            from_free: Vec::new(),
            new_pads: 0,
            new_bytes: 0,
        };
        if size == 0 {
            return plan;
        }
        // 1. Best fit: the smallest extent that holds it all, lowest address first.
        if let Some(&(_, start)) = self.free_by_len.range((size, 0)..).next() {
            plan.from_free.push(Extent { start, len: size });
            return plan;
        }
        // 2. and 3. Large fragments, largest first, until the item is covered.
        let mut covered = 0;
        for extent in self.largest_first(MIN_FRAGMENT) {
            let needed = size - covered;
            if extent.len >= needed {
                plan.from_free.push(Extent {
                    start: extent.start,
                    len: needed,
                });
                covered = size;
                break;
            }
            plan.from_free.push(extent);
            covered += extent.len;
        }
        plan.from_free.sort_unstable();
        plan.new_bytes = size - covered;
        plan.new_pads = plan.new_bytes.div_ceil(self.pad_size);
        plan
    }

    /// How many new pads an item of `size` bytes needs; 0 iff it fits in the
    /// free space. Equals `plan(size).new_pads`.
    pub fn new_pads_needed(&self, size: u64) -> u64 {
        self.plan(size).new_pads
    }

    /// Marks the extents as used. Each must lie wholly in free space (and they
    /// must not overlap each other); on error nothing changes.
    pub fn take(&mut self, extents: &[Extent]) -> Result<(), MapError> {
        for (done, &extent) in extents.iter().enumerate() {
            if let Err(error) = self.take_one(extent) {
                for &taken in &extents[..done] {
                    self.free_one(taken)
                        .expect("an extent just taken is used space of existing pads");
                }
                return Err(error);
            }
        }
        Ok(())
    }

    /// Marks the extents as free, merging them with free neighbours. Each must
    /// be wholly used space of existing pads (and they must not overlap each
    /// other); on error nothing changes.
    pub fn free(&mut self, extents: &[Extent]) -> Result<(), MapError> {
        for (done, &extent) in extents.iter().enumerate() {
            if let Err(error) = self.free_one(extent) {
                for &freed in &extents[..done] {
                    self.take_one(freed)
                        .expect("an extent just freed is free space");
                }
                return Err(error);
            }
        }
        Ok(())
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
        self.free_by_end
            .iter()
            .map(|(&end, &start)| Extent {
                start,
                len: end - start,
            })
            .collect()
    }

    /// Checks the map's internal consistency (for tests; walks everything):
    /// free extents non-empty, disjoint, not adjacent and within existing pads;
    /// both free indexes and the counters agree; pad runs maximal.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut pads = 0u64;
        let mut previous_run_end = None;
        for (&first, &end) in &self.pad_runs {
            if first >= end {
                return Err(format!("empty pad run {first}..{end}"));
            }
            if previous_run_end.is_some_and(|previous| previous >= first) {
                return Err(format!("pad run {first}..{end} touches the one before"));
            }
            pads += end - first;
            previous_run_end = Some(end);
        }
        if pads != self.pad_count {
            return Err(format!("pad count {} but runs hold {pads}", self.pad_count));
        }

        let mut free = 0u64;
        let mut previous_end = None;
        for extent in self.free_extents() {
            let end = extent
                .checked_end()
                .ok_or(format!("free {extent:?} passes u64::MAX"))?;
            if extent.len == 0 {
                return Err(format!("empty free extent at {}", extent.start));
            }
            if previous_end.is_some_and(|previous| previous >= extent.start) {
                return Err(format!(
                    "free {extent:?} overlaps or touches the one before"
                ));
            }
            if !self.within_pads(extent.start, end) {
                return Err(format!("free {extent:?} is not within existing pads"));
            }
            if !self.free_by_len.contains(&(extent.len, extent.start)) {
                return Err(format!("free {extent:?} is missing from the size index"));
            }
            free += extent.len;
            previous_end = Some(end);
        }
        if self.free_by_len.len() != self.free_by_end.len() {
            return Err(format!(
                "size index holds {} extents, address index {}",
                self.free_by_len.len(),
                self.free_by_end.len()
            ));
        }
        if free != self.free_bytes {
            return Err(format!(
                "free counter {} but extents hold {free}",
                self.free_bytes
            ));
        }
        if self.used_space() + self.free_space() != self.total_space() || free > self.total_space()
        {
            return Err("used + free != total".to_string());
        }
        Ok(())
    }

    /// Free extents of at least `min_len` bytes, largest first, ties by lowest
    /// address: walks the lengths downward and each length's extents upward.
    fn largest_first(&self, min_len: u64) -> impl Iterator<Item = Extent> + '_ {
        let longest = self.free_by_len.last().map(|&(len, _)| len);
        let lengths = std::iter::successors(longest, |&len| {
            self.free_by_len
                .range(..(len, 0))
                .next_back()
                .map(|&(shorter, _)| shorter)
        });
        lengths
            .take_while(move |&len| len >= min_len)
            .flat_map(|len| {
                self.free_by_len
                    .range((len, 0)..=(len, u64::MAX))
                    .map(|&(len, start)| Extent { start, len })
            })
    }

    /// Whether `[start, end)` lies within one run of existing pads (and so
    /// wholly within existing pads).
    fn within_pads(&self, start: u64, end: u64) -> bool {
        self.pad_runs
            .range(..=start / self.pad_size)
            .next_back()
            .is_some_and(|(_, &run_end)| end <= run_end * self.pad_size)
    }

    /// The free extent that ends first after `address`: the one holding it,
    /// if any, else the next one above it.
    fn free_ending_after(&self, address: u64) -> Option<Extent> {
        self.free_by_end
            .range((Bound::Excluded(address), Bound::Unbounded))
            .next()
            .map(|(&end, &start)| Extent {
                start,
                len: end - start,
            })
    }

    fn take_one(&mut self, extent: Extent) -> Result<(), MapError> {
        if extent.len == 0 {
            return Err(MapError::ZeroLength);
        }
        let end = extent.checked_end().ok_or(MapError::NotFree(extent))?;
        // The free extent ending first at or after `end` is the only one that
        // can hold the range.
        let (&free_end, start_entry) = self
            .free_by_end
            .range_mut(end..)
            .next()
            .filter(|(_, free_start)| **free_start <= extent.start)
            .ok_or(MapError::NotFree(extent))?;
        let free_start = *start_entry;
        // The remainders touch the taken range, so they merge with nothing.
        // The one after it keeps the extent's end: its entry changes in place.
        if end < free_end {
            *start_entry = end;
            self.free_by_len.insert((free_end - end, end));
        } else {
            self.free_by_end.remove(&free_end);
        }
        self.free_by_len
            .remove(&(free_end - free_start, free_start));
        if free_start < extent.start {
            self.free_by_end.insert(extent.start, free_start);
            self.free_by_len
                .insert((extent.start - free_start, free_start));
        }
        self.free_bytes -= extent.len;
        Ok(())
    }

    fn free_one(&mut self, extent: Extent) -> Result<(), MapError> {
        if extent.len == 0 {
            return Err(MapError::ZeroLength);
        }
        let end = extent.checked_end().ok_or(MapError::NotUsed(extent))?;
        // The free extent ending first after the range's start is the only one
        // that can overlap it.
        let next = self.free_ending_after(extent.start);
        if next.is_some_and(|next| next.start < end) || !self.within_pads(extent.start, end) {
            return Err(MapError::NotUsed(extent));
        }
        self.insert_free_merged(extent.start, end, next);
        Ok(())
    }

    /// Adds the free range `[start, end)`, which overlaps no free extent,
    /// merging it with the free extent that ends at `start` and with `next`
    /// (the free extent ending first after `start`) if that starts at `end`.
    fn insert_free_merged(&mut self, start: u64, end: u64, next: Option<Extent>) {
        self.free_bytes += end - start;
        let mut merged_start = start;
        if let Some(before_start) = self.free_by_end.remove(&start) {
            self.free_by_len
                .remove(&(start - before_start, before_start));
            merged_start = before_start;
        }
        match next.filter(|next| next.start == end) {
            Some(after) => {
                self.free_by_len.remove(&(after.len, after.start));
                let merged_end = after.end();
                let after_start = self
                    .free_by_end
                    .get_mut(&merged_end)
                    .expect("the next free extent is indexed by its end");
                *after_start = merged_start;
                self.free_by_len
                    .insert((merged_end - merged_start, merged_start));
            }
            None => {
                self.free_by_end.insert(end, merged_start);
                self.free_by_len.insert((end - merged_start, merged_start));
            }
        }
    }
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
mod tests {
    use super::*;

    fn extent(start: u64, len: u64) -> Extent {
        Extent { start, len }
    }

    #[test]
    fn pad_runs_merge_and_split_holes() {
        let mut map = MemoryMap::new(10);
        for ordinal in [0, 2, 4, 3] {
            map.add_pad(ordinal).unwrap();
        }
        assert_eq!(map.pad_runs, BTreeMap::from([(0, 1), (2, 5)]));
        assert_eq!(map.holes(), vec![1]);
        assert_eq!(map.next_ordinal(), 5);
        assert!(map.has_pad(3) && !map.has_pad(1) && !map.has_pad(5));
        map.check_invariants().unwrap();
    }

    #[test]
    fn largest_first_orders_ties_by_address() {
        let mut map = MemoryMap::new(100);
        map.add_pad(0).unwrap();
        // Free: [0,10) [20,40) [50,60) [70,90) -> lengths 10, 20, 10, 20.
        map.take(&[
            extent(10, 10),
            extent(40, 10),
            extent(60, 10),
            extent(90, 10),
        ])
        .unwrap();
        let order: Vec<u64> = map.largest_first(10).map(|e| e.start).collect();
        assert_eq!(order, vec![20, 70, 0, 50]);
        let order: Vec<u64> = map.largest_first(11).map(|e| e.start).collect();
        assert_eq!(order, vec![20, 70]);
    }

    #[test]
    fn within_pads_stops_at_holes() {
        let mut map = MemoryMap::new(10);
        map.add_pad(0).unwrap();
        map.add_pad(1).unwrap();
        map.add_pad(3).unwrap();
        assert!(map.within_pads(5, 20));
        assert!(!map.within_pads(15, 21));
        assert!(map.within_pads(30, 40));
        assert!(!map.within_pads(30, 41));
    }

    #[test]
    fn out_of_range_inputs_are_refused() {
        let mut map = MemoryMap::new(1 << 32);
        assert_eq!(
            map.add_pad(u64::MAX >> 32),
            Err(MapError::PadOutOfRange(u64::MAX >> 32))
        );
        map.add_pad((u64::MAX >> 32) - 1).unwrap();
        let bad = extent(u64::MAX - 5, 10);
        assert_eq!(map.take(&[bad]), Err(MapError::NotFree(bad)));
        assert_eq!(map.free(&[bad]), Err(MapError::NotUsed(bad)));
        map.check_invariants().unwrap();
    }

    #[test]
    fn split_by_pad_cuts_at_boundaries() {
        assert_eq!(
            split_by_pad(extent(5, 20), 10),
            vec![(0, 5, 5), (1, 0, 10), (2, 0, 5)]
        );
        assert_eq!(split_by_pad(extent(20, 10), 10), vec![(2, 0, 10)]);
        assert!(split_by_pad(extent(7, 0), 10).is_empty());
        assert_eq!(
            split_by_pad(extent(u64::MAX - 3, 3), 1 << 63),
            vec![(1, (1 << 63) - 4, 3)]
        );
    }
}
