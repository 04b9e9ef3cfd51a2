//! The allocation policy: where an item of a given size goes (see
//! "Allocation policy" in the module header).

use super::*;

impl MemoryMap {
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

    /// Case 1 of the policy: a free extent that holds `size` bytes, if any.
    pub(super) fn good_fit(&self, size: u64) -> Option<Extent> {
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
    pub(super) fn large_fragments(&self) -> impl Iterator<Item = Extent> + '_ {
        // MIN_FRAGMENT is the lowest length of its class (tested below).
        let smallest = size_class(MIN_FRAGMENT);
        self.classes
            .down_from(CLASSES - 1)
            .take_while(move |&class| class >= smallest)
            .flat_map(|class| self.classes.extents(class).rev())
    }
}
