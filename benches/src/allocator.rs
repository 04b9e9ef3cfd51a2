//! P3 allocator: allocate and free operations per second on the memory map
//! holding 10^3 .. 10^6 live blocks.
//!
//! A steady-state churn, as a store lives: the map is filled with `live`
//! items (not timed), then each step frees a random live item and allocates a
//! new one, so the number of live blocks stays put. Item sizes are
//! log-uniform from 100 B to 1 MiB (as in C1), pads 4 MiB. An allocation is
//! what the allocator does: `plan`, `take` the free extents, and when the
//! plan needs new pads, `add_pad` them and `take` their share. A free gives
//! back every extent of the item. One operation = one allocation or one free.

use std::time::Instant;

use anthill::memory_map::{Extent, MemoryMap};
use serde_json::{Value, json};

use crate::rng::Rng;

const PAD_SIZE: u64 = 4 << 20;
const MIN_SIZE: u64 = 100;
const MAX_SIZE: u64 = 1 << 20;

/// The extents of a live item, up to two inline: most items have one or two,
/// and a heap block per item would add a cache miss (and a `free` call) to
/// every timed free at 10^6 items, which is the harness's cost, not the map's.
enum ItemExtents {
    Inline { extents: [Extent; 2], len: usize },
    Heap(Vec<Extent>),
}

impl ItemExtents {
    fn new(extents: &[Extent]) -> Self {
        match *extents {
            [one] => Self::Inline {
                extents: [one, one],
                len: 1,
            },
            [one, two] => Self::Inline {
                extents: [one, two],
                len: 2,
            },
            _ => Self::Heap(extents.to_vec()),
        }
    }

    fn as_slice(&self) -> &[Extent] {
        match self {
            Self::Inline { extents, len } => &extents[..*len],
            Self::Heap(extents) => extents,
        }
    }
}

struct Churn {
    map: MemoryMap,
    live: Vec<ItemExtents>,
    rng: Rng,
}

impl Churn {
    fn allocate(&mut self, size: u64) {
        let plan = self.map.plan(size);
        self.map
            .take(&plan.from_free)
            .expect("plan uses free space");
        let new_extent = plan.new_extent(self.map.next_ordinal(), PAD_SIZE);
        let mut extents = plan.from_free;
        if let Some(extent) = new_extent {
            let first = self.map.next_ordinal();
            for k in 0..plan.new_pads {
                self.map.add_pad(first + k).expect("new ordinal");
            }
            self.map.take(&[extent]).expect("new pads are free");
            extents.push(extent);
        }
        self.live.push(ItemExtents::new(&extents));
    }

    fn free(&mut self, victim: usize) {
        let extents = self.live.swap_remove(victim);
        self.map
            .free(extents.as_slice())
            .expect("live extents are used");
    }
}

/// Nanoseconds per operation with `live` blocks, over `steps` free+allocate
/// pairs (the median of `rounds` rounds).
fn measure(live: usize, steps: usize, rounds: usize) -> Value {
    let mut churn = Churn {
        map: MemoryMap::new(PAD_SIZE),
        live: Vec::with_capacity(live),
        rng: Rng::new(live as u64),
    };
    for _ in 0..live {
        let size = churn.rng.log_uniform(MIN_SIZE, MAX_SIZE);
        churn.allocate(size);
    }
    // The draws of a round, made before its clock starts.
    let draw = |rng: &mut Rng| -> Vec<(usize, u64)> {
        (0..steps)
            .map(|_| (rng.below(live), rng.log_uniform(MIN_SIZE, MAX_SIZE)))
            .collect()
    };
    // Warm up to the steady state's fragmentation before timing: replace
    // every live item twice on average (and at least `steps` times).
    for _ in 0..(2 * live).max(steps).div_ceil(steps) {
        for (victim, size) in draw(&mut churn.rng) {
            churn.free(victim);
            churn.allocate(size);
        }
    }
    let mut per_round = Vec::new();
    for _ in 0..rounds {
        let draws = draw(&mut churn.rng);
        let started = Instant::now();
        for &(victim, size) in &draws {
            churn.free(victim);
            churn.allocate(size);
        }
        per_round.push(started.elapsed().as_secs_f64() * 1e9 / (2 * steps) as f64);
    }
    let mut sorted = per_round.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let summary = churn.map.summary();
    json!({
        "live_blocks": live,
        "ns_per_op": median,
        "rounds_ns_per_op": per_round,
        "free_extents": churn.map.free_extents().len(),
        "extents_per_item": churn.live.iter().map(|item| item.as_slice().len()).sum::<usize>() as f64 / live as f64,
        "pads": summary.total_pads,
        "used_fraction": summary.used_space as f64 / summary.total_space.max(1) as f64,
    })
}

pub fn run(quick: bool) -> Value {
    let steps = if quick { 20_000 } else { 100_000 };
    let sizes = [1_000, 10_000, 100_000, 1_000_000];
    let results: Vec<Value> = sizes.iter().map(|&n| measure(n, steps, 7)).collect();
    json!({ "pad_size": PAD_SIZE, "steps": steps, "results": results })
}
