//! Planning a compaction pass: which pads to empty, and where each byte
//! leaving them goes. A pure computation over what the memory map says (no
//! I/O); `store/compact.rs` carries the plan out.
//!
//! **Policy.** Pads cost money, so the plan empties as many pads as the
//! free space of the others can absorb, and of those the least-used, which
//! moves the fewest bytes:
//! 1. The candidates (pads that may be emptied) are taken least-used first.
//!    Emptying any `k` of `N` pads leaves room for the live bytes only if
//!    `live <= (N - k) * P`, so `k` is at most `N - ceil(live / P)`: with
//!    free space cut finely enough, the ideal.
//! 2. The largest `k` whose departing units (a small item whole, a large
//!    item's piece in an emptied pad) can be packed into the free runs of
//!    the pads that stay is found by bisection (emptying more pads never
//!    needs less room).
//! 3. Packing, into the free runs of pads that stay and hold data (moving
//!    into an empty pad empties none): the largest unit first. A unit that fits one run takes the
//!    shortest run that holds it (best fit: the long runs stay for long
//!    units). One that fits none is split: it takes the longest run whole
//!    and goes on with the rest, so it is cut into the fewest pieces. Runs
//!    shorter than [`MIN_SPLIT`] take only whole units: a piece costs an
//!    index entry, more than a few bytes of free space are worth.
//!
//! **Cost.** Packing is `O(u log r)` for `u` units and `r` free runs, done
//! `O(log N)` times.

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::memory_map::Extent;

/// Runs shorter than this receive only whole units, never a split part.
pub const MIN_SPLIT: u64 = 256;

/// What the store knows of its pads when it plans a pass.
#[derive(Debug, Clone, Default)]
pub struct PlanInput {
    pub pad_size: u64,
    /// Every pad's (ordinal, bytes used).
    pub pads: Vec<(u64, u64)>,
    /// The pads that may be emptied.
    pub candidates: HashSet<u64>,
    /// Bytes of each unit that must move for its pads to be emptied.
    pub units: Vec<u64>,
    /// The units each pad holds: all must leave for it to be emptied.
    pub units_by_pad: HashMap<u64, Vec<usize>>,
    /// Free space, each extent within one pad.
    pub free: Vec<Extent>,
}

/// The pads one pass empties and where each unit leaving them goes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactPlan {
    pub pads: Vec<u64>,
    /// (unit, the extents its bytes go to, in data order).
    pub moves: Vec<(usize, Vec<Extent>)>,
}

impl CompactPlan {
    /// The part of the plan that empties its first `count` pads (the
    /// least-used): their units' moves, which land outside every pad of the
    /// whole plan, so they stay valid alone.
    pub fn first_pads(mut self, count: usize, input: &PlanInput) -> CompactPlan {
        if self.pads.len() <= count {
            return self;
        }
        self.pads.truncate(count);
        let units: HashSet<usize> = self
            .pads
            .iter()
            .flat_map(|pad| input.units_by_pad.get(pad).into_iter().flatten().copied())
            .collect();
        self.moves.retain(|(unit, _)| units.contains(unit));
        self
    }
}

/// Plans one pass (see the module header).
pub fn plan(input: &PlanInput) -> CompactPlan {
    let pad_size = input.pad_size.max(1);
    let mut order: Vec<(u64, u64)> = input
        .pads
        .iter()
        .filter(|(ordinal, _)| input.candidates.contains(ordinal))
        .map(|&(ordinal, used)| (used, ordinal))
        .collect();
    order.sort_unstable();
    let live: u64 = input.pads.iter().map(|(_, used)| used).sum();
    // Empty candidates cost nothing to empty; the others are bounded by
    // the room the pads holding data leave (see case 1).
    let holding = input.pads.iter().filter(|(_, used)| *used > 0).count() as u64;
    let empty = order.iter().take_while(|(used, _)| *used == 0).count();
    let bound = empty + holding.saturating_sub(live.div_ceil(pad_size)) as usize;
    let (mut low, mut high) = (0usize, order.len().min(bound));
    let mut best = CompactPlan::default();
    while low < high {
        let mid = (low + high).div_ceil(2);
        match pack_emptying(input, &order[..mid]) {
            Some(plan) => {
                best = plan;
                low = mid;
            }
            None => high = mid - 1,
        }
    }
    if best.pads.len() != low {
        best = pack_emptying(input, &order[..low]).unwrap_or_default();
    }
    best
}

/// Packs the units of the pads `emptied` ((used, ordinal)) into the free
/// runs of the others; `None` if they do not fit.
fn pack_emptying(input: &PlanInput, emptied: &[(u64, u64)]) -> Option<CompactPlan> {
    let pads: Vec<u64> = emptied.iter().map(|&(_, ordinal)| ordinal).collect();
    let leaving: HashSet<u64> = pads.iter().copied().collect();
    let pad_size = input.pad_size.max(1);
    let mut units: Vec<usize> = pads
        .iter()
        .flat_map(|pad| input.units_by_pad.get(pad).into_iter().flatten().copied())
        .collect();
    units.sort_unstable();
    units.dedup();
    units.sort_by_key(|&unit| std::cmp::Reverse(input.units[unit]));
    // Free runs of the pads that stay and hold data, by (length, start):
    // filling an empty pad would empty none.
    let empty: HashSet<u64> = input
        .pads
        .iter()
        .filter(|(_, used)| *used == 0)
        .map(|&(ordinal, _)| ordinal)
        .collect();
    let mut runs: BTreeSet<(u64, u64)> = input
        .free
        .iter()
        .filter(|e| {
            let pad = e.start / pad_size;
            e.len > 0 && !leaving.contains(&pad) && !empty.contains(&pad)
        })
        .map(|e| (e.len, e.start))
        .collect();
    let mut moves = Vec::with_capacity(units.len());
    for unit in units {
        moves.push((unit, place(&mut runs, input.units[unit])?));
    }
    Some(CompactPlan { pads, moves })
}

/// Takes `len` bytes from `runs` (see the module header, case 3).
fn place(runs: &mut BTreeSet<(u64, u64)>, len: u64) -> Option<Vec<Extent>> {
    let mut extents = Vec::new();
    let mut rest = len;
    while rest > 0 {
        let (run, start) = match runs.range((rest, 0)..).next() {
            Some(&fit) => fit,
            None => *runs.last().filter(|(run, _)| *run >= MIN_SPLIT)?,
        };
        runs.remove(&(run, start));
        let taken = run.min(rest);
        if run > taken {
            runs.insert((run - taken, start + taken));
        }
        extents.push(Extent { start, len: taken });
        rest -= taken;
    }
    Some(extents)
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: u64 = 1000;

    /// Pads with `used` bytes each, every pad one unit of its used bytes at
    /// its start and its free run after it.
    fn pads(used: &[u64]) -> PlanInput {
        let mut input = PlanInput {
            pad_size: P,
            ..PlanInput::default()
        };
        for (ordinal, &bytes) in used.iter().enumerate() {
            let ordinal = ordinal as u64;
            input.pads.push((ordinal, bytes));
            input.candidates.insert(ordinal);
            input.units_by_pad.insert(ordinal, vec![input.units.len()]);
            input.units.push(bytes);
            if bytes < P {
                input.free.push(Extent {
                    start: ordinal * P + bytes,
                    len: P - bytes,
                });
            }
        }
        input
    }

    fn placed_bytes(plan: &CompactPlan) -> u64 {
        plan.moves
            .iter()
            .flat_map(|(_, extents)| extents)
            .map(|e| e.len)
            .sum()
    }

    #[test]
    fn units_split_over_runs_reach_the_ideal() {
        // 2450 live bytes: 3 pads are the ideal, 4 of 7 can go, the last
        // one split over two runs.
        let input = pads(&[350, 350, 350, 350, 350, 350, 350]);
        let plan = plan(&input);
        assert_eq!(plan.pads.len(), 4);
        assert_eq!(placed_bytes(&plan), 1400);
        assert!(plan.moves.iter().any(|(_, extents)| extents.len() > 1));
    }

    #[test]
    fn the_least_used_pads_are_emptied() {
        let input = pads(&[900, 100, 500, 200]);
        let plan = plan(&input);
        let mut emptied = plan.pads.clone();
        emptied.sort_unstable();
        assert_eq!(emptied, vec![1, 3]);
        assert_eq!(placed_bytes(&plan), 300);
    }

    #[test]
    fn moves_never_land_in_emptied_pads_nor_overlap() {
        let input = pads(&[450, 450, 450, 450, 450, 450, 450, 450, 450]);
        let plan = plan(&input);
        let mut taken: Vec<Extent> = plan.moves.iter().flat_map(|(_, e)| e.clone()).collect();
        for extent in &taken {
            assert!(!plan.pads.contains(&(extent.start / P)));
            assert_eq!(extent.start / P, (extent.end() - 1) / P);
        }
        taken.sort_unstable();
        assert!(taken.windows(2).all(|w| w[0].end() <= w[1].start));
        assert_eq!(plan.pads.len(), 9 - 5);
    }

    #[test]
    fn the_first_pads_of_a_plan_keep_only_their_moves() {
        let input = pads(&[350, 350, 350, 350, 350, 350, 350]);
        let whole = plan(&input);
        let part = whole.clone().first_pads(2, &input);
        assert_eq!(part.pads, whole.pads[..2]);
        assert_eq!(placed_bytes(&part), 700);
    }

    #[test]
    fn empty_pads_receive_nothing() {
        // Pads 1 and 2 are empty and no candidates (as where deleting pads
        // refunds nothing): pad 0's data has nowhere to go.
        let mut input = pads(&[300, 0, 0]);
        input.candidates = [0].into();
        assert_eq!(plan(&input), CompactPlan::default());
    }

    #[test]
    fn short_runs_take_only_whole_units() {
        // 100 bytes free in each of two pads: a 150-byte unit would need a
        // split below MIN_SPLIT, so nothing can be emptied.
        let input = pads(&[900, 900, 150]);
        assert_eq!(plan(&input).pads.len(), 0);
    }

    #[test]
    fn a_unit_fitting_one_run_takes_the_shortest() {
        let mut runs: BTreeSet<(u64, u64)> = [(500, 0), (300, 1000), (800, 2000)].into();
        assert_eq!(
            place(&mut runs, 250),
            Some(vec![Extent {
                start: 1000,
                len: 250
            }])
        );
        assert!(runs.contains(&(50, 1250)));
    }
}
