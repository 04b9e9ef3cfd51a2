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

/// How many size classes each power-of-two range of lengths is cut into.
const CLASSES_PER_POWER: usize = 32;
const CLASS_BITS: u32 = CLASSES_PER_POWER.trailing_zeros();
/// Lengths below 32 have a class each (0 is never used); each power-of-two range
/// `[2^k, 2^(k+1))` for k = 5..=63 has 32 classes.
const CLASSES: usize = (64 - CLASS_BITS as usize + 1) * CLASSES_PER_POWER;

/// The size class of a free extent of `len` bytes; classes are numbered in the
/// order of their lengths (a longer extent never has a lower class). See the
/// allocation policy in the module header.
pub fn size_class(len: u64) -> usize {
    if len < CLASSES_PER_POWER as u64 {
        return len as usize;
    }
    let top_bit = 63 - len.leading_zeros();
    let shift = top_bit - CLASS_BITS;
    // The top bit selects the power of two, the next CLASS_BITS bits the class.
    let sub = (len >> shift) as usize & (CLASSES_PER_POWER - 1);
    (shift as usize + 1) * CLASSES_PER_POWER + sub
}

/// A set of small integers with a one-bit-per-word summary, so that the
/// nearest member above or below a number is a few word operations away.
#[derive(Debug, Clone, Default)]
struct Bitset {
    words: Vec<u64>,
    /// Bit `w` is set iff `words[w]` is not zero.
    summary: Vec<u64>,
}

impl Bitset {
    /// Makes room for members below `len`.
    fn grow(&mut self, len: usize) {
        self.words.resize(self.words.len().max(len.div_ceil(64)), 0);
        self.summary
            .resize(self.summary.len().max(self.words.len().div_ceil(64)), 0);
    }

    fn contains(&self, i: usize) -> bool {
        self.words[i / 64] & (1 << (i % 64)) != 0
    }

    fn insert(&mut self, i: usize) {
        let word = i / 64;
        self.words[word] |= 1 << (i % 64);
        self.summary[word / 64] |= 1 << (word % 64);
    }

    fn remove(&mut self, i: usize) {
        let word = i / 64;
        self.words[word] &= !(1 << (i % 64));
        if self.words[word] == 0 {
            self.summary[word / 64] &= !(1 << (word % 64));
        }
    }

    /// The largest member below `i`.
    fn last_below(&self, i: usize) -> Option<usize> {
        let word = i / 64;
        let below = self.words[word] & ((1 << (i % 64)) - 1);
        if below != 0 {
            return Some(word * 64 + highest_bit(below));
        }
        let mut group = word / 64;
        let mut words = self.summary[group] & ((1 << (word % 64)) - 1);
        while words == 0 {
            group = group.checked_sub(1)?;
            words = self.summary[group];
        }
        let word = group * 64 + highest_bit(words);
        Some(word * 64 + highest_bit(self.words[word]))
    }

    /// The smallest member at or above `i`.
    fn first_from(&self, i: usize) -> Option<usize> {
        let word = i / 64;
        let from = self.words.get(word)? & (u64::MAX << (i % 64));
        if from != 0 {
            return Some(word * 64 + from.trailing_zeros() as usize);
        }
        let mut group = word / 64;
        // Shifting by 64 is not allowed; `checked_shl` gives 0 for "none above".
        let mut words =
            self.summary[group] & u64::MAX.checked_shl(word as u32 % 64 + 1).unwrap_or(0);
        while words == 0 {
            group += 1;
            words = *self.summary.get(group)?;
        }
        let word = group * 64 + words.trailing_zeros() as usize;
        Some(word * 64 + self.words[word].trailing_zeros() as usize)
    }
}

fn highest_bit(word: u64) -> usize {
    63 - word.leading_zeros() as usize
}

/// Tombstones a size class may hold beyond one per free extent before it is
/// compacted; spares classes of a few extents frequent compaction.
const TOMBSTONE_SLACK: usize = 16;

/// The free extents by size class: one vector per class, in the order they
/// were recorded, and a bitset of the classes that have any.
///
/// Removing an extent leaves a tombstone (an empty extent) in its slot, so no
/// other extent moves and no other record changes. Trailing tombstones are
/// dropped at once, so the last entry of a class is a free extent; a class
/// whose tombstones outnumber its extents (plus [`TOMBSTONE_SLACK`]) is
/// compacted by the map, which also updates the moved extents' slots.
#[derive(Debug, Clone)]
struct SizeClasses {
    lists: Vec<Vec<Extent>>,
    /// Per class, how many of its entries are free extents, not tombstones.
    live: Vec<usize>,
    nonempty: Bitset,
}

impl SizeClasses {
    fn new() -> Self {
        let mut nonempty = Bitset::default();
        nonempty.grow(CLASSES);
        Self {
            lists: vec![Vec::new(); CLASSES],
            live: vec![0; CLASSES],
            nonempty,
        }
    }

    /// Adds the extent to its class; returns its slot there.
    fn push(&mut self, extent: Extent) -> usize {
        let class = size_class(extent.len);
        let list = &mut self.lists[class];
        list.push(extent);
        self.live[class] += 1;
        self.nonempty.insert(class);
        list.len() - 1
    }

    /// Removes the extent in `slot` of `class`, leaving a tombstone.
    fn remove(&mut self, class: usize, slot: usize) {
        let list = &mut self.lists[class];
        list[slot].len = 0;
        self.live[class] -= 1;
        if self.live[class] == 0 {
            list.clear();
            self.nonempty.remove(class);
        } else {
            while list.last().is_some_and(|extent| extent.len == 0) {
                list.pop();
            }
        }
    }

    /// Records that the extent `old` in `slot` of its class is now `new`;
    /// returns the slot of `new`. Within the same class it keeps its slot.
    fn replace(&mut self, old: Extent, slot: usize, new: Extent) -> usize {
        let class = size_class(old.len);
        if class == size_class(new.len) {
            self.lists[class][slot] = new;
            slot
        } else {
            self.remove(class, slot);
            self.push(new)
        }
    }

    /// The free extents of a class, by slot.
    fn extents(&self, class: usize) -> impl DoubleEndedIterator<Item = Extent> + '_ {
        self.lists[class]
            .iter()
            .filter(|extent| extent.len > 0)
            .copied()
    }

    fn needs_compaction(&self, class: usize) -> bool {
        self.lists[class].len() > 2 * self.live[class] + TOMBSTONE_SLACK
    }

    /// The lowest class at or above `class` that has extents.
    fn first_from(&self, class: usize) -> Option<usize> {
        self.nonempty.first_from(class)
    }

    /// The classes from `class` down that have extents, highest first.
    fn down_from(&self, class: usize) -> impl Iterator<Item = usize> + '_ {
        let first = if self.nonempty.contains(class) {
            Some(class)
        } else {
            self.nonempty.last_below(class)
        };
        std::iter::successors(first, |&class| self.nonempty.last_below(class))
    }
}

/// A free extent as recorded in its pad's list: 16 bytes, so that a pad's
/// list spans few cache lines and all lists take less cache.
#[derive(Debug, Clone, Copy)]
struct FreeEntry {
    start: u64,
    /// The length, or [`LONG`] for one recorded in [`PadRun::long`].
    len: u32,
    /// Its slot in its size class's vector.
    slot: u32,
}

/// The `len` of a [`FreeEntry`] whose length does not fit in it.
const LONG: u32 = u32::MAX;

/// A free extent with its slot in its size class, as read from a pad's list.
#[derive(Debug, Clone, Copy)]
struct Free {
    extent: Extent,
    slot: usize,
}

/// Where a free extent is recorded in a run: the pad's index in the run and
/// the extent's position in the pad's list.
type At = (usize, usize);

/// A run of consecutive pads, with the free extents that start in each.
///
/// A free extent never crosses a hole, so it lies within one run, and its
/// neighbours at lower addresses are found by walking back in the same run.
#[derive(Debug, Clone, Default)]
struct PadRun {
    /// Per pad of the run, from its first ordinal on: the free extents that
    /// start in the pad, ascending by address.
    free: Vec<Vec<FreeEntry>>,
    /// The pads whose list is not empty.
    starts: Bitset,
    /// The lengths of the free extents of at least [`LONG`] bytes, by start.
    long: BTreeMap<u64, u64>,
}

impl PadRun {
    fn pads(&self) -> u64 {
        self.free.len() as u64
    }

    fn push_pad(&mut self) {
        self.free.push(Vec::new());
        self.starts.grow(self.free.len());
    }

    /// Appends the pads of the run that follows this one.
    fn append(&mut self, mut next: PadRun) {
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
    fn at_or_before(&self, index: usize, address: u64) -> Option<At> {
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

    fn decode(&self, entry: &FreeEntry) -> Free {
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

    fn encode(&mut self, extent: Extent, slot: usize) -> FreeEntry {
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

    fn forget(&mut self, entry: FreeEntry) {
        if entry.len == LONG {
            self.long.remove(&entry.start);
        }
    }

    fn get(&self, (pad, position): At) -> Free {
        self.decode(&self.free[pad][position])
    }

    /// The free extents that end where `range` starts and start where it
    /// ends, if any; `None` if the range is not inside the run (whose first
    /// pad is `first`) or a free extent overlaps it. Free extents are
    /// disjoint and sorted: the one starting last before the range's end is
    /// the only one that can overlap it, and the only one that can end where
    /// it starts. The next one may start at its end.
    fn touching(
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

    fn set(&mut self, (pad, position): At, extent: Extent, slot: usize) {
        self.forget(self.free[pad][position]);
        self.free[pad][position] = self.encode(extent, slot);
    }

    fn insert(&mut self, (pad, position): At, extent: Extent, slot: usize) {
        let entry = self.encode(extent, slot);
        self.free[pad].insert(position, entry);
        self.starts.insert(pad);
    }

    fn remove(&mut self, (pad, position): At) {
        let entry = self.free[pad].remove(position);
        self.forget(entry);
        if self.free[pad].is_empty() {
            self.starts.remove(pad);
        }
    }

    /// Starts fetching the entry of pad `index` (where its list is) into the
    /// cache, without waiting for it.
    fn prefetch_pad(&self, index: usize) {
        prefetch(self.free.as_ptr().wrapping_add(index));
    }

    /// Starts fetching the list of pad `index` into the cache, without
    /// waiting for it.
    fn prefetch_list(&self, index: usize) {
        // The first few cache lines (four entries each): lists are short.
        for entry in self.free[index].iter().step_by(4).take(4) {
            prefetch(entry);
        }
    }

    /// The free extents of the run, ascending.
    fn extents(&self) -> impl Iterator<Item = Free> + '_ {
        self.free.iter().flatten().map(|entry| self.decode(entry))
    }
}

/// A slot as a list entry holds it.
fn slot_u32(slot: usize) -> u32 {
    // A class holds at most about twice as many slots as there are free
    // extents, each of which took an allocation: far fewer than 2^32.
    u32::try_from(slot).expect("fewer than 2^32 slots in a size class")
}

/// Asks the CPU to fetch the cache line holding `item`, without waiting.
#[inline]
fn prefetch<T>(item: *const T) {
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
fn run_of(runs: &BTreeMap<u64, PadRun>, ordinal: u64) -> Option<(u64, &PadRun)> {
    runs.range(..=ordinal)
        .next_back()
        .filter(|(first, run)| ordinal < *first + run.pads())
        .map(|(&first, run)| (first, run))
}

/// The run holding the pad `ordinal`, with its first ordinal.
fn run_of_mut(runs: &mut BTreeMap<u64, PadRun>, ordinal: u64) -> Option<(u64, &mut PadRun)> {
    runs.range_mut(..=ordinal)
        .next_back()
        .filter(|(first, run)| ordinal < *first + run.pads())
        .map(|(&first, run)| (first, run))
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
        // 1. Good fit.
        if let Some(fit) = self.good_fit(size) {
            plan.from_free.push(Extent {
                start: fit.start,
                len: size,
            });
            return plan;
        }
        // 2. and 3. Large fragments, largest class first, until the item is covered.
        let mut covered = 0;
        for extent in self.large_fragments() {
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
    /// free space. Equals `plan(size).new_pads`, without listing the fragments.
    pub fn new_pads_needed(&self, size: u64) -> u64 {
        if size == 0 || self.good_fit(size).is_some() {
            return 0;
        }
        size.saturating_sub(self.large_free_bytes)
            .div_ceil(self.pad_size)
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

    /// Checks the map's internal consistency (for tests; walks everything):
    /// pad runs maximal; free extents non-empty, disjoint, not adjacent,
    /// within existing pads and listed under the pad they start in; pad lists,
    /// size classes (slots, tombstones, counts), both bitsets and the counters
    /// agree.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut pads = 0u64;
        let mut previous_run_end = None;
        let mut listed = 0usize;
        let mut free = 0u64;
        let mut large_free = 0u64;
        for (&first, run) in &self.runs {
            let end = first + run.pads();
            if run.free.is_empty() {
                return Err(format!("empty pad run at {first}"));
            }
            if previous_run_end.is_some_and(|previous| previous >= first) {
                return Err(format!("pad run {first}..{end} touches the one before"));
            }
            pads += run.pads();
            previous_run_end = Some(end);

            let mut previous_end = None;
            for (index, list) in run.free.iter().enumerate() {
                if run.starts.contains(index) == list.is_empty() {
                    return Err(format!(
                        "start bitset is wrong for pad {}",
                        first + index as u64
                    ));
                }
                for entry in list {
                    let Free { extent, slot } = run.decode(entry);
                    let extent_end = extent
                        .checked_end()
                        .ok_or(format!("free {extent:?} passes u64::MAX"))?;
                    if extent.len == 0 {
                        return Err(format!("empty free extent at {}", extent.start));
                    }
                    if extent.start / self.pad_size != first + index as u64 {
                        return Err(format!("free {extent:?} is listed under another pad"));
                    }
                    if previous_end.is_some_and(|previous| previous >= extent.start) {
                        return Err(format!(
                            "free {extent:?} overlaps or touches the one before"
                        ));
                    }
                    if extent_end > end * self.pad_size {
                        return Err(format!("free {extent:?} is not within existing pads"));
                    }
                    let class = size_class(extent.len);
                    if self.classes.lists[class].get(slot) != Some(&extent) {
                        return Err(format!("free {extent:?} is not where its size class says"));
                    }
                    listed += 1;
                    free += extent.len;
                    if extent.len >= MIN_FRAGMENT {
                        large_free += extent.len;
                    }
                    previous_end = Some(extent_end);
                }
            }
        }
        if pads != self.pad_count {
            return Err(format!("pad count {} but runs hold {pads}", self.pad_count));
        }
        self.check_classes()?;
        let classified: usize = self.classes.live.iter().sum();
        if classified != listed {
            return Err(format!(
                "size classes hold {classified} extents, pad lists {listed}"
            ));
        }
        if free != self.free_bytes || large_free != self.large_free_bytes {
            return Err(format!(
                "free counters {} and {} but extents hold {free} and {large_free}",
                self.free_bytes, self.large_free_bytes
            ));
        }
        if self.used_space() + self.free_space() != self.total_space() || free > self.total_space()
        {
            return Err("used + free != total".to_string());
        }
        Ok(())
    }

    /// The size classes' part of [`Self::check_invariants`]: counts,
    /// bitset, tombstones, and each extent in its own class.
    fn check_classes(&self) -> Result<(), String> {
        for (class, list) in self.classes.lists.iter().enumerate() {
            let live = self.classes.extents(class).count();
            if live != self.classes.live[class] {
                return Err(format!(
                    "class {class} holds {live} extents but counts {}",
                    self.classes.live[class]
                ));
            }
            if self.classes.nonempty.contains(class) == (live == 0) {
                return Err(format!("class bitset is wrong for class {class}"));
            }
            if list.last().is_some_and(|extent| extent.len == 0) {
                return Err(format!("class {class} ends in a tombstone"));
            }
            if self.classes.needs_compaction(class) {
                return Err(format!("class {class} has too many tombstones"));
            }
            if let Some(stray) = self
                .classes
                .extents(class)
                .find(|extent| size_class(extent.len) != class)
            {
                return Err(format!("free {stray:?} is in size class {class}"));
            }
        }
        Ok(())
    }

    /// Case 1 of the policy: a free extent that holds `size` bytes, if any.
    fn good_fit(&self, size: u64) -> Option<Extent> {
        // The classes above the one of `size - 1` hold only extents of at
        // least `size` bytes. The last entry of a class is not a tombstone.
        let all_fit = size_class(size - 1) + 1;
        if let Some(class) = self.classes.first_from(all_fit) {
            return self.classes.lists[class].last().copied();
        }
        self.classes
            .extents(size_class(size))
            .rev()
            .find(|extent| extent.len >= size)
    }

    /// The free extents of at least [`MIN_FRAGMENT`] bytes, largest class first.
    fn large_fragments(&self) -> impl Iterator<Item = Extent> + '_ {
        // MIN_FRAGMENT is the lowest length of its class (tested below).
        let smallest = size_class(MIN_FRAGMENT);
        self.classes
            .down_from(CLASSES - 1)
            .take_while(move |&class| class >= smallest)
            .flat_map(|class| self.classes.extents(class).rev())
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

    fn compact_if_needed(&mut self, class: usize) {
        if self.classes.needs_compaction(class) {
            self.compact(class);
        }
    }

    /// Drops the tombstones of a class, moving its extents down, and records
    /// their new slots in the pad lists.
    fn compact(&mut self, class: usize) {
        /// How many extents ahead pad lists are fetched: enough to keep
        /// several cache misses in flight at once.
        const AHEAD: usize = 8;
        let list = &mut self.classes.lists[class];
        // Every extent after the first tombstone moves down.
        let first_moved = list
            .iter()
            .position(|extent| extent.len == 0)
            .unwrap_or(list.len());
        list.retain(|extent| extent.len > 0);
        let (list, pad_size) = (&self.classes.lists[class], self.pad_size);
        let pad_of = |runs: &BTreeMap<u64, PadRun>, extent: &Extent| {
            let ordinal = extent.start / pad_size;
            let (first, _) = run_of(runs, ordinal).expect("free space lies in pads");
            (first, (ordinal - first) as usize)
        };
        for slot in first_moved..list.len() {
            // The moved extents lie in random pads. A pad's list hangs off
            // its entry in the run: fetch that entry first, and the list
            // once the entry has arrived.
            if let Some(ahead) = list.get(slot + 2 * AHEAD) {
                let (first, index) = pad_of(&self.runs, ahead);
                self.runs[&first].prefetch_pad(index);
            }
            if let Some(ahead) = list.get(slot + AHEAD) {
                let (first, index) = pad_of(&self.runs, ahead);
                self.runs[&first].prefetch_list(index);
            }
            let extent = list[slot];
            let (first, index) = pad_of(&self.runs, &extent);
            let entries = &mut self.runs.get_mut(&first).expect("run").free[index];
            let position = entries
                .binary_search_by_key(&extent.start, |entry| entry.start)
                .expect("a recorded free extent is in its pad's list");
            entries[position].slot = slot_u32(slot);
        }
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
mod tests {
    use super::*;

    fn extent(start: u64, len: u64) -> Extent {
        Extent { start, len }
    }

    #[test]
    fn compaction_moves_extents_of_many_pads_to_slots_their_lists_know() {
        // 8 holes of one class in each of 64 pads, recorded in address order.
        let (pads, per_pad) = (64, 8);
        let mut map = MemoryMap::new(4096);
        for ordinal in 0..pads {
            map.add_pad(ordinal).unwrap();
        }
        map.take(&[extent(0, pads * 4096)]).unwrap();
        let holes: Vec<Extent> = (0..pads)
            .flat_map(|pad| (0..per_pad).map(move |k| extent(pad * 4096 + k * 500, 100)))
            .collect();
        for &hole in &holes {
            map.free(&[hole]).unwrap();
        }
        let class = size_class(100);
        assert_eq!(map.classes.lists[class].len(), holes.len());

        // Taking all but the last hole of each pad leaves tombstones before
        // every survivor, until the class is compacted and the survivors move.
        for (i, &hole) in holes.iter().enumerate() {
            if i as u64 % per_pad != per_pad - 1 {
                map.take(&[hole]).unwrap();
            }
        }
        let survivors: Vec<Extent> = holes
            .iter()
            .skip(per_pad as usize - 1)
            .step_by(per_pad as usize)
            .copied()
            .collect();
        assert!(map.classes.lists[class].len() < holes.len() / 2);
        assert_eq!(map.free_extents(), survivors);
        map.check_invariants().unwrap();
        // Each survivor is found through its new slot: taking it leaves the
        // class empty and the map true.
        map.take(&survivors).unwrap();
        assert!(map.classes.lists[class].is_empty());
        map.check_invariants().unwrap();
    }

    #[test]
    fn pad_runs_merge_and_split_holes() {
        let mut map = MemoryMap::new(10);
        for ordinal in [0, 2, 4, 3] {
            map.add_pad(ordinal).unwrap();
        }
        let runs: Vec<(u64, u64)> = map.runs.iter().map(|(&f, r)| (f, r.pads())).collect();
        assert_eq!(runs, vec![(0, 1), (2, 3)]);
        assert_eq!(map.holes(), vec![1]);
        assert_eq!(map.next_ordinal(), 5);
        assert!(map.has_pad(3) && !map.has_pad(1) && !map.has_pad(5));
        // The pad before a run joins it too.
        map.add_pad(1).unwrap();
        assert_eq!(map.runs.len(), 1);
        assert_eq!(map.free_extents(), vec![extent(0, 50)]);
        map.check_invariants().unwrap();
    }

    #[test]
    fn size_classes_order_lengths_in_steps_of_a_fraction() {
        let per_power = CLASSES_PER_POWER as u64;
        for len in 0..per_power {
            assert_eq!(size_class(len), len as usize);
        }
        // From 2 * per_power on, two lengths share a class; and so on.
        let twice = 2 * CLASSES_PER_POWER;
        assert_eq!(size_class(2 * per_power - 1), twice - 1);
        assert_eq!(size_class(2 * per_power), twice);
        assert_eq!(size_class(2 * per_power + 1), twice);
        assert_eq!(size_class(2 * per_power + 2), twice + 1);
        assert_eq!(size_class(u64::MAX), CLASSES - 1);
        // Cases 2 and 3 rely on this: exactly the classes from MIN_FRAGMENT's
        // on hold the large fragments.
        assert!(size_class(MIN_FRAGMENT - 1) < size_class(MIN_FRAGMENT));
        let mut lengths: Vec<u64> = (0..64)
            .flat_map(|shift| {
                let power = 1u64 << shift;
                [power - 1, power, power + 1, power + power / 2]
            })
            .collect();
        lengths.sort_unstable();
        let classes: Vec<usize> = lengths.iter().map(|&len| size_class(len)).collect();
        assert!(classes.is_sorted(), "classes follow lengths");
        // Within a class, lengths differ by less than 1/CLASSES_PER_POWER
        // of the smallest.
        let floor = 1 << 25;
        let width = floor / per_power;
        assert_eq!(size_class(floor), size_class(floor + width - 1));
        assert_ne!(size_class(floor), size_class(floor + width));
    }

    #[test]
    fn bitset_finds_neighbouring_members() {
        let mut set = Bitset::default();
        set.grow(10_000);
        for i in [3, 64, 200, 4_100, 9_999] {
            set.insert(i);
        }
        assert_eq!(set.last_below(3), None);
        assert_eq!(set.last_below(4), Some(3));
        assert_eq!(set.last_below(200), Some(64));
        assert_eq!(set.last_below(9_999), Some(4_100));
        assert_eq!(set.first_from(0), Some(3));
        assert_eq!(set.first_from(65), Some(200));
        assert_eq!(set.first_from(201), Some(4_100));
        assert_eq!(set.first_from(4_101), Some(9_999));
        set.remove(4_100);
        assert_eq!(set.last_below(9_999), Some(200));
        assert_eq!(set.first_from(201), Some(9_999));
        set.remove(9_999);
        assert_eq!(set.first_from(201), None);
        assert_eq!(set.first_from(20_000), None);
    }

    #[test]
    fn large_fragments_come_largest_class_first() {
        let mut map = MemoryMap::new(1 << 20);
        map.add_pad(0).unwrap();
        // Free: 5000 at 0, 9000 at 10000, 100 at 20000, 6000 at 30000, rest used.
        map.take(&[
            extent(5_000, 5_000),
            extent(19_000, 1_000),
            extent(20_100, 9_900),
            extent(36_000, (1 << 20) - 36_000),
        ])
        .unwrap();
        let order: Vec<u64> = map.large_fragments().map(|e| e.start).collect();
        assert_eq!(order, vec![10_000, 30_000, 0]);
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
    fn long_free_extents_keep_their_length() {
        // Whole 4 GiB pads give free extents too long for a list entry.
        let pad = 1 << 32;
        let mut map = MemoryMap::new(pad);
        for ordinal in [0, 1, 3, 2] {
            map.add_pad(ordinal).unwrap();
        }
        assert_eq!(map.free_extents(), vec![extent(0, 4 * pad)]);
        map.take(&[extent(100, 50), extent(pad + 7, pad)]).unwrap();
        map.check_invariants().unwrap();
        assert_eq!(
            map.free_extents(),
            vec![
                extent(0, 100),
                extent(150, pad + 7 - 150),
                extent(2 * pad + 7, 2 * pad - 7)
            ]
        );
        assert_eq!(
            map.plan(3 * pad / 2).from_free,
            vec![extent(2 * pad + 7, 3 * pad / 2)]
        );
        map.free(&[extent(pad + 7, pad)]).unwrap();
        map.check_invariants().unwrap();
        map.free(&[extent(100, 50)]).unwrap();
        map.check_invariants().unwrap();
        assert_eq!(map.free_extents(), vec![extent(0, 4 * pad)]);
        assert_eq!(map.runs[&0].long.len(), 1);
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
