use super::size_classes::CLASSES_PER_POWER;
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
