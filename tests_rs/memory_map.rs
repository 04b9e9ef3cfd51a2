//! Behaviour of the memory map: allocation policy, merging, errors, and a
//! property test over random sequences of pad additions, allocations and frees.

use std::collections::BTreeSet;

use anthill::memory_map::*;
use proptest::prelude::*;

fn extent(start: u64, len: u64) -> Extent {
    Extent { start, len }
}

/// A map of `pads` pads from ordinal 0 on, with the given ranges used.
fn map_with(pad_size: u64, pads: u64, used: &[Extent]) -> MemoryMap {
    let mut map = MemoryMap::new(pad_size);
    for ordinal in 0..pads {
        map.add_pad(ordinal).unwrap();
    }
    map.take(used).unwrap();
    map.check_invariants().unwrap();
    map
}

/// Carries out a plan the way the allocator does: take the free extents, add
/// the new pads at the end, take their bytes. Returns the item's extents.
fn apply(map: &mut MemoryMap, plan: &Plan) -> Vec<Extent> {
    map.take(&plan.from_free).unwrap();
    let first = map.next_ordinal();
    for ordinal in first..first + plan.new_pads {
        map.add_pad(ordinal).unwrap();
    }
    let mut extents = plan.from_free.clone();
    if let Some(new) = plan.new_extent(first, map.pad_size()) {
        map.take(&[new]).unwrap();
        extents.push(new);
    }
    extents
}

fn allocate(map: &mut MemoryMap, size: u64) -> Vec<Extent> {
    let plan = map.plan(size);
    apply(map, &plan)
}

#[test]
fn good_fit_picks_a_hole_of_the_smallest_class_that_holds_the_item() {
    // Free: [0,300) [400,500) [600,800) [900,1000).
    let map = map_with(
        1000,
        1,
        &[extent(300, 100), extent(500, 100), extent(800, 100)],
    );
    let one = |start, len| Plan {
        from_free: vec![extent(start, len)],
        new_pads: 0,
        new_bytes: 0,
    };
    assert_eq!(map.plan(150), one(600, 150));
    assert_eq!(map.plan(250), one(0, 250));
    // Both 100-byte holes fit exactly; either may be chosen.
    assert!([one(400, 100), one(900, 100)].contains(&map.plan(100)));
    assert_eq!(map.new_pads_needed(300), 0);
    assert_eq!(map.new_pads_needed(301), 1);
}

#[test]
fn good_fit_prefers_a_class_whose_holes_all_fit_over_the_items_own_class() {
    // The shortest and the longest length of the size class of 1000.
    let class = size_class(1_000);
    let floor = (0..=1_000).find(|&len| size_class(len) == class).unwrap();
    let top = (1_000..).find(|&len| size_class(len + 1) != class).unwrap();
    assert!(
        top - floor >= 2,
        "a class spans at least three lengths here"
    );
    // Free: `floor` bytes at 0, `top` at 2000, 2000 at 4000.
    let map = map_with(
        10_000,
        1,
        &[
            extent(floor, 2_000 - floor),
            extent(2_000 + top, 2_000 - top),
            extent(6_000, 4_000),
        ],
    );
    assert!(size_class(2_000) > class);
    // Not every hole of the item's own class holds it: the larger class is used.
    let item = top - 1;
    assert_eq!(map.plan(item).from_free, vec![extent(4_000, item)]);
    // Without the larger class, the own class's fitting hole is found.
    let mut map = map;
    map.take(&[extent(4_000, 2_000)]).unwrap();
    assert_eq!(map.plan(item).from_free, vec![extent(2_000, item)]);
    // An item of the class's shortest length: every hole of the class holds it.
    assert!([extent(0, floor), extent(2_000, floor)].contains(&map.plan(floor).from_free[0]));
}

#[test]
fn freeing_neighbours_merges_them_across_a_pad_boundary() {
    let mut map = map_with(100, 2, &[extent(0, 200)]);
    map.free(&[extent(50, 50)]).unwrap();
    map.free(&[extent(100, 50)]).unwrap();
    assert_eq!(map.free_extents(), vec![extent(50, 100)]);
    map.free(&[extent(150, 50), extent(0, 50)]).unwrap();
    assert_eq!(map.free_extents(), vec![extent(0, 200)]);
    map.check_invariants().unwrap();
}

#[test]
fn freed_space_is_reused_before_new_pads() {
    let mut map = MemoryMap::new(100);
    let first = allocate(&mut map, 100);
    assert_eq!(map.pad_count(), 1);
    assert_eq!(map.new_pads_needed(100), 1);
    map.free(&first).unwrap();
    assert_eq!(map.new_pads_needed(100), 0);
    assert_eq!(allocate(&mut map, 100), vec![extent(0, 100)]);
    assert_eq!(map.pad_count(), 1);
}

#[test]
fn small_items_share_a_pad() {
    let mut map = MemoryMap::new(4096);
    let items: Vec<_> = (0..3).map(|_| allocate(&mut map, 100)).collect();
    assert_eq!(map.pad_count(), 1);
    assert_eq!(
        items,
        vec![
            vec![extent(0, 100)],
            vec![extent(100, 100)],
            vec![extent(200, 100)]
        ]
    );
    assert_eq!(map.used_space(), 300);
    assert_eq!(map.free_space(), 4096 - 300);
}

#[test]
fn an_item_larger_than_a_pad_spans_pads() {
    let mut map = MemoryMap::new(100);
    let plan = map.plan(250);
    assert_eq!(
        plan,
        Plan {
            from_free: vec![],
            new_pads: 3,
            new_bytes: 250
        }
    );
    let extents = apply(&mut map, &plan);
    assert_eq!(extents, vec![extent(0, 250)]);
    assert_eq!(
        split_by_pad(extents[0], 100),
        vec![(0, 0, 100), (1, 0, 100), (2, 0, 50)]
    );
    assert_eq!(map.free_extents(), vec![extent(250, 50)]);
    assert_eq!(map.summary().used_space, 250);
}

/// One pad of 64 KiB with free fragments of 10000 (at 0), 8000 (at 20000),
/// 5000 (at 40000) and 1000 bytes (at 50000), the rest used.
fn fragmented() -> MemoryMap {
    let p = 65536;
    let map = map_with(
        p,
        1,
        &[
            extent(10_000, 10_000),
            extent(28_000, 12_000),
            extent(45_000, 5_000),
            extent(51_000, p - 51_000),
        ],
    );
    assert_eq!(
        map.free_extents(),
        vec![
            extent(0, 10_000),
            extent(20_000, 8_000),
            extent(40_000, 5_000),
            extent(50_000, 1_000)
        ]
    );
    map
}

#[test]
fn fragmented_plan_takes_large_fragments_largest_first() {
    let map = fragmented();
    assert_eq!(
        map.plan(20_000),
        Plan {
            from_free: vec![
                extent(0, 10_000),
                extent(20_000, 8_000),
                extent(40_000, 2_000)
            ],
            new_pads: 0,
            new_bytes: 0
        }
    );
    // Exactly the large fragments; the 1000-byte one is below MIN_FRAGMENT.
    assert_eq!(map.plan(23_000).from_free.len(), 3);
    assert_eq!(map.new_pads_needed(23_000), 0);
    // A small item still fits the small fragment best.
    assert_eq!(map.plan(700).from_free, vec![extent(50_000, 700)]);
}

#[test]
fn expansion_plan_uses_all_large_fragments_then_new_pads() {
    let map = fragmented();
    let large = vec![
        extent(0, 10_000),
        extent(20_000, 8_000),
        extent(40_000, 5_000),
    ];
    assert_eq!(
        map.plan(30_000),
        Plan {
            from_free: large.clone(),
            new_pads: 1,
            new_bytes: 7_000
        }
    );
    assert_eq!(
        map.plan(23_000 + 65_536 + 1),
        Plan {
            from_free: large,
            new_pads: 2,
            new_bytes: 65_537
        }
    );
    assert_eq!(map.new_pads_needed(23_001), 1);
}

#[test]
fn holes_in_ordinals_contribute_no_space() {
    let mut map = MemoryMap::new(100);
    map.add_pad(0).unwrap();
    map.add_pad(2).unwrap();
    assert_eq!(map.holes(), vec![1]);
    assert_eq!(map.next_ordinal(), 3);
    assert_eq!(map.pad_count(), 2);
    assert_eq!(map.total_space(), 200);
    assert_eq!(map.free_extents(), vec![extent(0, 100), extent(200, 100)]);
    assert_eq!(
        map.take(&[extent(50, 100)]),
        Err(MapError::NotFree(extent(50, 100)))
    );
    assert_eq!(
        map.free(&[extent(150, 10)]),
        Err(MapError::NotUsed(extent(150, 10)))
    );
    // Filling the hole merges all three pads into one free extent.
    map.add_pad(1).unwrap();
    assert!(map.holes().is_empty());
    assert_eq!(map.free_extents(), vec![extent(0, 300)]);
    assert_eq!(map.add_pad(1), Err(MapError::PadExists(1)));
    map.check_invariants().unwrap();
}

#[test]
fn refused_changes_change_nothing() {
    let mut map = map_with(100, 2, &[extent(50, 100)]);
    let before = map.clone();

    let used = extent(60, 10);
    assert_eq!(
        map.take(&[extent(0, 10), used]),
        Err(MapError::NotFree(used))
    );
    assert_eq!(map, before);
    // Overlapping extents in one call: the second is no longer free.
    assert_eq!(
        map.take(&[extent(0, 10), extent(5, 10)]),
        Err(MapError::NotFree(extent(5, 10)))
    );
    assert_eq!(map, before);

    let free = extent(10, 10);
    assert_eq!(
        map.free(&[extent(60, 10), free]),
        Err(MapError::NotUsed(free))
    );
    assert_eq!(map, before);
    let partly_free = extent(140, 20);
    assert_eq!(
        map.free(&[partly_free]),
        Err(MapError::NotUsed(partly_free))
    );
    let beyond = extent(190, 20);
    assert_eq!(map.free(&[beyond]), Err(MapError::NotUsed(beyond)));
    assert_eq!(
        map.free(&[extent(60, 10), extent(60, 10)]),
        Err(MapError::NotUsed(extent(60, 10)))
    );
    assert_eq!(map.take(&[extent(0, 0)]), Err(MapError::ZeroLength));
    assert_eq!(map.free(&[extent(60, 0)]), Err(MapError::ZeroLength));
    assert_eq!(map, before);
    map.check_invariants().unwrap();
}

#[test]
fn large_batches_refuse_overlaps_like_small_ones() {
    // Many extents in one call (as when a map is rebuilt from an index) are
    // checked against each other too.
    let mut map = map_with(1_000, 1, &[]);
    let before = map.clone();
    let mut batch: Vec<Extent> = (0..30).map(|k| extent(900 - 30 * k, 10)).collect();
    batch[20] = extent(905, 3); // inside batch[0]
    assert_eq!(map.take(&batch), Err(MapError::NotFree(batch[20])));
    assert_eq!(map, before);
    batch[20] = extent(300, 10);
    map.take(&batch).unwrap();
    let taken = map.clone();
    let mut again = batch.clone();
    again[25] = extent(302, 1); // inside batch[20]
    assert_eq!(map.free(&again), Err(MapError::NotUsed(again[25])));
    assert_eq!(map, taken);
    map.free(&batch).unwrap();
    assert_eq!(map, before);
    map.check_invariants().unwrap();
}

#[test]
fn plan_of_zero_bytes_is_empty() {
    let map = MemoryMap::new(100);
    let empty = Plan {
        from_free: vec![],
        new_pads: 0,
        new_bytes: 0,
    };
    assert_eq!(map.plan(0), empty);
    assert_eq!(map.new_pads_needed(0), 0);
    assert_eq!(empty.new_extent(0, 100), None);
}

#[test]
fn summary_reports_the_counters() {
    let mut map = MemoryMap::new(100);
    allocate(&mut map, 150);
    assert_eq!(
        map.summary(),
        MapSummary {
            total_pads: 2,
            pad_size: 100,
            total_space: 200,
            used_space: 150,
            free_space: 50
        }
    );
}

#[derive(Debug, Clone)]
enum Op {
    /// Add the pad with this ordinal (an error if it exists).
    AddPad(u64),
    /// Allocate `1 + n % (3 * P)` bytes.
    Allocate(u64),
    /// Free live allocation `n % live`.
    Free(usize),
    /// Try to take live allocation `n % live` again (must fail).
    TakeUsed(usize),
    /// Take or free (`bool`: take) a range near the edges of extent `n % all`
    /// (free or live): its start and end moved by -1, 0 or +1.
    Probe(usize, i8, i8, bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0u64..24).prop_map(Op::AddPad),
        4 => any::<u64>().prop_map(Op::Allocate),
        3 => any::<usize>().prop_map(Op::Free),
        1 => any::<usize>().prop_map(Op::TakeUsed),
        3 => (any::<usize>(), -1i8..=1, -1i8..=1, any::<bool>())
            .prop_map(|(n, ds, de, take)| Op::Probe(n, ds, de, take)),
    ]
}

/// What a plan must be, given the free extents: the policy of the module
/// header, checked by brute force (which extent of a size class is chosen is
/// left open, as the policy leaves it).
fn check_plan(map: &MemoryMap, size: u64) -> Result<(), TestCaseError> {
    let p = map.pad_size();
    let plan = map.plan(size);
    prop_assert_eq!(map.new_pads_needed(size), plan.new_pads);
    let free = map.free_extents();
    let from_free: u64 = plan.from_free.iter().map(|e| e.len).sum();
    prop_assert_eq!(from_free + plan.new_bytes, size);
    if plan.new_pads == 0 {
        prop_assert_eq!(plan.new_bytes, 0);
    } else {
        prop_assert!(plan.new_bytes <= plan.new_pads * p);
        prop_assert!(plan.new_bytes > (plan.new_pads - 1) * p);
    }
    for pair in plan.from_free.windows(2) {
        prop_assert!(
            pair[0].end() <= pair[1].start,
            "plan not sorted: {:?}",
            plan
        );
    }
    for e in &plan.from_free {
        prop_assert!(e.len > 0);
        prop_assert!(
            free.iter()
                .any(|f| f.start <= e.start && e.end() <= f.end()),
            "{:?} of the plan is not free",
            e
        );
    }
    let large: Vec<Extent> = free
        .iter()
        .copied()
        .filter(|f| f.len >= MIN_FRAGMENT)
        .collect();
    let large_sum: u64 = large.iter().map(|f| f.len).sum();
    // The free extent each piece of the plan comes from; a piece always takes
    // the first bytes of it.
    let sources: Vec<Extent> = plan
        .from_free
        .iter()
        .map(|e| {
            *free
                .iter()
                .find(|f| f.start <= e.start && e.end() <= f.end())
                .unwrap()
        })
        .collect();
    for (piece, source) in plan.from_free.iter().zip(&sources) {
        prop_assert_eq!(piece.start, source.start);
    }
    let class = |e: &Extent| size_class(e.len);
    if size == 0 {
        prop_assert!(plan.from_free.is_empty() && plan.new_pads == 0);
    } else if free.iter().any(|f| f.len >= size) {
        // Case 1: good fit, whole.
        prop_assert_eq!(plan.from_free.len(), 1);
        prop_assert_eq!(plan.from_free[0].len, size);
        let chosen = class(&sources[0]);
        // Classes above the class of `size - 1` hold only extents that fit.
        let all_fit = free
            .iter()
            .map(class)
            .filter(|&c| c > size_class(size - 1))
            .min();
        match all_fit {
            Some(smallest) => prop_assert_eq!(chosen, smallest),
            None => prop_assert_eq!(chosen, size_class(size)),
        }
    } else if large_sum >= size {
        // Case 2: large fragments by class, largest first, until covered.
        prop_assert_eq!(plan.new_pads, 0);
        prop_assert!(sources.iter().all(|f| f.len >= MIN_FRAGMENT));
        let partial = plan
            .from_free
            .iter()
            .zip(&sources)
            .filter(|(piece, source)| piece.len < source.len)
            .count();
        prop_assert!(
            partial <= 1,
            "more than one fragment partly used: {:?}",
            plan
        );
        let lowest_used = sources.iter().map(class).min().unwrap();
        for (piece, source) in plan.from_free.iter().zip(&sources) {
            if piece.len < source.len {
                prop_assert_eq!(class(source), lowest_used, "partial piece not last");
            }
        }
        for f in large.iter().filter(|f| !sources.contains(f)) {
            prop_assert!(
                class(f) <= lowest_used,
                "{:?} skipped for a smaller class",
                f
            );
        }
    } else {
        // Case 3: all large fragments, then new pads.
        prop_assert_eq!(&plan.from_free, &large);
        prop_assert_eq!(plan.new_pads, (size - large_sum).div_ceil(p));
    }
    Ok(())
}

/// Everything that must hold after every operation.
fn check_state(
    map: &MemoryMap,
    pads: &BTreeSet<u64>,
    live: &[Vec<Extent>],
) -> Result<(), TestCaseError> {
    let p = map.pad_size();
    prop_assert_eq!(map.check_invariants(), Ok(()));

    // Pads.
    prop_assert_eq!(map.pad_count(), pads.len() as u64);
    prop_assert_eq!(map.next_ordinal(), pads.last().map_or(0, |o| o + 1));
    let holes: Vec<u64> = (0..map.next_ordinal())
        .filter(|o| !pads.contains(o))
        .collect();
    prop_assert_eq!(map.holes(), holes);

    // Live allocations and free extents: disjoint, within pads, covering all.
    let free = map.free_extents();
    let mut all: Vec<(Extent, bool)> = free.iter().map(|&e| (e, true)).collect();
    all.extend(live.iter().flatten().map(|&e| (e, false)));
    all.sort();
    for pair in all.windows(2) {
        let ((a, a_free), (b, b_free)) = (pair[0], pair[1]);
        prop_assert!(a.end() <= b.start, "{:?} overlaps {:?}", a, b);
        if a_free && b_free {
            prop_assert!(a.end() < b.start, "free {:?} and {:?} not merged", a, b);
        }
    }
    for (e, _) in &all {
        for (ordinal, _, _) in split_by_pad(*e, p) {
            prop_assert!(pads.contains(&ordinal), "{:?} lies outside the pads", e);
        }
    }
    let used: u64 = live.iter().flatten().map(|e| e.len).sum();
    let free_sum: u64 = free.iter().map(|e| e.len).sum();
    prop_assert_eq!(map.used_space(), used);
    prop_assert_eq!(map.free_space(), free_sum);
    prop_assert_eq!(map.used_space() + map.free_space(), map.total_space());
    prop_assert_eq!(map.total_space(), map.pad_count() * p);
    prop_assert_eq!(
        map.summary(),
        MapSummary {
            total_pads: map.pad_count(),
            pad_size: p,
            total_space: map.total_space(),
            used_space: used,
            free_space: free_sum,
        }
    );

    // Plans for a few telling sizes.
    let largest = free.iter().map(|e| e.len).max().unwrap_or(0);
    for size in [0, 1, p, 3 * p, largest, largest + 1, free_sum, free_sum + 1] {
        check_plan(map, size)?;
    }
    Ok(())
}

/// Tries to take or free a range near an extent's edges; checks the result
/// against the free extents and pads, then undoes a success.
fn probe(
    map: &mut MemoryMap,
    pads: &BTreeSet<u64>,
    live: &[Vec<Extent>],
    n: usize,
    ds: i8,
    de: i8,
    take: bool,
) -> Result<(), TestCaseError> {
    let free = map.free_extents();
    let all: Vec<Extent> = free.iter().chain(live.iter().flatten()).copied().collect();
    if all.is_empty() {
        return Ok(());
    }
    let near = all[n % all.len()];
    let start = near.start.saturating_add_signed(ds.into());
    let end = near.end().saturating_add_signed(de.into());
    let range = extent(start, end.saturating_sub(start));
    let before = map.clone();
    if take {
        let result = map.take(&[range]);
        if range.len == 0 {
            prop_assert_eq!(result, Err(MapError::ZeroLength));
        } else if free.iter().any(|f| f.start <= start && end <= f.end()) {
            prop_assert_eq!(result, Ok(()));
            map.free(&[range]).unwrap();
        } else {
            prop_assert_eq!(result, Err(MapError::NotFree(range)));
        }
    } else {
        let result = map.free(&[range]);
        let in_pads = split_by_pad(range, map.pad_size())
            .iter()
            .all(|(ordinal, _, _)| pads.contains(ordinal));
        let overlaps_free = free.iter().any(|f| f.start < end && start < f.end());
        if range.len == 0 {
            prop_assert_eq!(result, Err(MapError::ZeroLength));
        } else if in_pads && !overlaps_free {
            prop_assert_eq!(result, Ok(()));
            map.take(&[range]).unwrap();
        } else {
            prop_assert_eq!(result, Err(MapError::NotUsed(range)));
        }
    }
    prop_assert_eq!(&*map, &before);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_keep_the_map_true(
        pad_size in prop_oneof![64u64..=4096, 4096u64..=16_384],
        ops in proptest::collection::vec(op(), 1..200),
    ) {
        let mut map = MemoryMap::new(pad_size);
        let mut pads = BTreeSet::new();
        let mut live: Vec<Vec<Extent>> = Vec::new();
        for op in ops {
            match op {
                Op::AddPad(ordinal) => {
                    let result = map.add_pad(ordinal);
                    if pads.insert(ordinal) {
                        prop_assert_eq!(result, Ok(()));
                    } else {
                        prop_assert_eq!(result, Err(MapError::PadExists(ordinal)));
                    }
                }
                Op::Allocate(n) => {
                    let size = 1 + n % (3 * pad_size);
                    check_plan(&map, size)?;
                    let plan = map.plan(size);
                    let first = map.next_ordinal();
                    let extents = apply(&mut map, &plan);
                    pads.extend(first..first + plan.new_pads);
                    live.push(extents);
                }
                Op::Free(n) if !live.is_empty() => {
                    let extents = live.swap_remove(n % live.len());
                    prop_assert_eq!(map.free(&extents), Ok(()));
                }
                Op::Free(_) => {
                    if let Some(&free) = map.free_extents().first() {
                        let before = map.clone();
                        prop_assert_eq!(map.free(&[free]), Err(MapError::NotUsed(free)));
                        prop_assert_eq!(&map, &before);
                    }
                }
                Op::TakeUsed(n) if !live.is_empty() => {
                    let extents = &live[n % live.len()];
                    let before = map.clone();
                    prop_assert_eq!(map.take(extents), Err(MapError::NotFree(extents[0])));
                    prop_assert_eq!(&map, &before);
                }
                Op::TakeUsed(_) => {}
                Op::Probe(n, ds, de, take) => probe(&mut map, &pads, &live, n, ds, de, take)?,
            }
            check_state(&map, &pads, &live)?;
        }
    }
}

/// A fenced pad holds its free space and whatever is freed in it until the
/// fence goes: no plan is given any of it meanwhile.
#[test]
fn space_freed_in_a_fenced_pad_is_never_handed_out() {
    const P: u64 = 4096;
    let mut map = MemoryMap::new(P);
    map.add_pad(0).unwrap();
    map.add_pad(1).unwrap();
    let item = Extent {
        start: P + 100,
        len: 400,
    };
    map.take(&[
        Extent {
            start: 0,
            len: 3000,
        },
        item,
    ])
    .unwrap();
    map.fence(&[1]).unwrap();
    assert_eq!(map.fenced_pads(), vec![1]);
    assert_eq!(map.free_space(), P - 3000);
    map.free(&[item]).unwrap();
    map.check_invariants().unwrap();
    assert_eq!(map.free_space(), P - 3000);
    let plan = map.plan(300);
    assert!(plan.from_free.iter().all(|e| e.end() <= P), "{plan:?}");
    map.unfence().unwrap();
    map.check_invariants().unwrap();
    assert!(map.fenced_pads().is_empty());
    assert_eq!(map.free_space(), 2 * P - 3000);
    map.remove_pads(&[1]).unwrap();
}
