//! A full check of the map's invariants, for tests and debug builds.

use super::*;

impl MemoryMap {
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
    pub(super) fn check_classes(&self) -> Result<(), String> {
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
}
