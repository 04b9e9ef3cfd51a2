//! Free extents by size class: a vector per class with tombstones, and a
//! bitset of the non-empty classes (see "Cost" in the module header).

use super::pad_runs::slot_u32;
use super::*;

/// How many size classes each power-of-two range of lengths is cut into.
pub(super) const CLASSES_PER_POWER: usize = 32;

pub(super) const CLASS_BITS: u32 = CLASSES_PER_POWER.trailing_zeros();

/// Lengths below 32 have a class each (0 is never used); each power-of-two range
/// `[2^k, 2^(k+1))` for k = 5..=63 has 32 classes.
pub(super) const CLASSES: usize = (64 - CLASS_BITS as usize + 1) * CLASSES_PER_POWER;

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
pub(super) struct Bitset {
    pub(super) words: Vec<u64>,
    /// Bit `w` is set iff `words[w]` is not zero.
    pub(super) summary: Vec<u64>,
}

impl Bitset {
    /// Makes room for members below `len`.
    pub(super) fn grow(&mut self, len: usize) {
        self.words.resize(self.words.len().max(len.div_ceil(64)), 0);
        self.summary
            .resize(self.summary.len().max(self.words.len().div_ceil(64)), 0);
    }

    pub(super) fn contains(&self, i: usize) -> bool {
        self.words[i / 64] & (1 << (i % 64)) != 0
    }

    pub(super) fn insert(&mut self, i: usize) {
        let word = i / 64;
        self.words[word] |= 1 << (i % 64);
        self.summary[word / 64] |= 1 << (word % 64);
    }

    pub(super) fn remove(&mut self, i: usize) {
        let word = i / 64;
        self.words[word] &= !(1 << (i % 64));
        if self.words[word] == 0 {
            self.summary[word / 64] &= !(1 << (word % 64));
        }
    }

    /// The largest member below `i`.
    pub(super) fn last_below(&self, i: usize) -> Option<usize> {
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
    pub(super) fn first_from(&self, i: usize) -> Option<usize> {
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

pub(super) fn highest_bit(word: u64) -> usize {
    63 - word.leading_zeros() as usize
}

/// Tombstones a size class may hold beyond one per free extent before it is
/// compacted; spares classes of a few extents frequent compaction.
pub(super) const TOMBSTONE_SLACK: usize = 16;

/// The free extents by size class: one vector per class, in the order they
/// were recorded, and a bitset of the classes that have any.
///
/// Removing an extent leaves a tombstone (an empty extent) in its slot, so no
/// other extent moves and no other record changes. Trailing tombstones are
/// dropped at once, so the last entry of a class is a free extent; a class
/// whose tombstones outnumber its extents (plus [`TOMBSTONE_SLACK`]) is
/// compacted by the map, which also updates the moved extents' slots.
#[derive(Debug, Clone)]
pub(super) struct SizeClasses {
    pub(super) lists: Vec<Vec<Extent>>,
    /// Per class, how many of its entries are free extents, not tombstones.
    pub(super) live: Vec<usize>,
    pub(super) nonempty: Bitset,
}

impl SizeClasses {
    pub(super) fn new() -> Self {
        let mut nonempty = Bitset::default();
        nonempty.grow(CLASSES);
        Self {
            lists: vec![Vec::new(); CLASSES],
            live: vec![0; CLASSES],
            nonempty,
        }
    }

    /// Adds the extent to its class; returns its slot there.
    pub(super) fn push(&mut self, extent: Extent) -> usize {
        let class = size_class(extent.len);
        let list = &mut self.lists[class];
        list.push(extent);
        self.live[class] += 1;
        self.nonempty.insert(class);
        list.len() - 1
    }

    /// Removes the extent in `slot` of `class`, leaving a tombstone.
    pub(super) fn remove(&mut self, class: usize, slot: usize) {
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
    pub(super) fn replace(&mut self, old: Extent, slot: usize, new: Extent) -> usize {
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
    pub(super) fn extents(&self, class: usize) -> impl DoubleEndedIterator<Item = Extent> + '_ {
        self.lists[class]
            .iter()
            .filter(|extent| extent.len > 0)
            .copied()
    }

    pub(super) fn needs_compaction(&self, class: usize) -> bool {
        self.lists[class].len() > 2 * self.live[class] + TOMBSTONE_SLACK
    }

    /// The lowest class at or above `class` that has extents.
    pub(super) fn first_from(&self, class: usize) -> Option<usize> {
        self.nonempty.first_from(class)
    }

    /// The classes from `class` down that have extents, highest first.
    pub(super) fn down_from(&self, class: usize) -> impl Iterator<Item = usize> + '_ {
        let first = if self.nonempty.contains(class) {
            Some(class)
        } else {
            self.nonempty.last_below(class)
        };
        std::iter::successors(first, |&class| self.nonempty.last_below(class))
    }
}

impl MemoryMap {
    pub(super) fn compact_if_needed(&mut self, class: usize) {
        if self.classes.needs_compaction(class) {
            self.compact(class);
        }
    }

    /// Drops the tombstones of a class, moving its extents down, and records
    /// their new slots in the pad lists.
    pub(super) fn compact(&mut self, class: usize) {
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
