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
//!
//! Only the map is timed, not the harness's own bookkeeping: finding a
//! random item in a table of 10^6 (about 40 MB) would cost a cache miss per
//! step. So steps run in batches. Before a batch's clock starts, its victims
//! are chosen (distinct, uniform among the items live at the batch's start)
//! and their extents copied into one sequential vector, and the new items'
//! sizes are drawn; the timed loop frees from that vector in order and
//! appends the new items' extents to another; after the clock stops, the new
//! items replace the victims in the live table. A batch frees at most half
//! the live items, so with few live items a round is several batches, their
//! times summed.

use std::time::{Duration, Instant};

use anthill::memory_map::{Extent, MemoryMap};
use serde_json::{Value, json};

use crate::rng::Rng;

const PAD_SIZE: u64 = 4 << 20;
const MIN_SIZE: u64 = 100;
const MAX_SIZE: u64 = 1 << 20;

/// The extents of a live item, up to two inline: most items have one or two,
/// and a heap block per item would make filling and batch bookkeeping slow.
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

/// Items' extents back to back in one vector, with where each item ends.
#[derive(Default)]
struct ExtentList {
    extents: Vec<Extent>,
    ends: Vec<usize>,
}

impl ExtentList {
    fn with_capacity(items: usize) -> Self {
        Self {
            // Items average under 2 extents; room for 4 keeps the timed
            // loop from growing the vector.
            extents: Vec::with_capacity(4 * items),
            ends: Vec::with_capacity(items),
        }
    }

    fn push(&mut self, extents: &[Extent]) {
        self.extents.extend_from_slice(extents);
        self.ends.push(self.extents.len());
    }

    fn items(&self) -> impl Iterator<Item = &[Extent]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(&self.ends)
            .map(|(start, &end)| &self.extents[start..end])
    }
}

struct Churn {
    map: MemoryMap,
    live: Vec<ItemExtents>,
    rng: Rng,
}

impl Churn {
    /// Allocates an item of `size` bytes and appends its extents to `out`.
    fn allocate(map: &mut MemoryMap, size: u64, out: &mut ExtentList) {
        let plan = map.plan(size);
        map.take(&plan.from_free).expect("plan uses free space");
        let first = map.next_ordinal();
        let new_extent = plan.new_extent(first, PAD_SIZE);
        let mut extents = plan.from_free;
        if let Some(extent) = new_extent {
            for k in 0..plan.new_pads {
                map.add_pad(first + k).expect("new ordinal");
            }
            map.take(&[extent]).expect("new pads are free");
            extents.push(extent);
        }
        out.push(&extents);
    }

    /// Replaces `steps` random live items (distinct, `steps <= live`) with
    /// new ones; returns the time spent in the map.
    fn batch(&mut self, steps: usize) -> Duration {
        let live = self.live.len();
        // A partial shuffle puts a uniform sample of distinct items first.
        let mut victims = ExtentList::with_capacity(steps);
        for i in 0..steps {
            let j = i + self.rng.below(live - i);
            self.live.swap(i, j);
            victims.push(self.live[i].as_slice());
        }
        let sizes: Vec<u64> = (0..steps)
            .map(|_| self.rng.log_uniform(MIN_SIZE, MAX_SIZE))
            .collect();
        let mut born = ExtentList::with_capacity(steps);
        let map = &mut self.map;
        let started = Instant::now();
        for (extents, &size) in victims.items().zip(&sizes) {
            map.free(extents).expect("live extents are used");
            Self::allocate(map, size, &mut born);
        }
        let elapsed = started.elapsed();
        for (slot, extents) in self.live.iter_mut().zip(born.items()) {
            *slot = ItemExtents::new(extents);
        }
        elapsed
    }

    /// Replaces `steps` random live items, in batches that free at most half
    /// the live items each; returns the time spent in the map.
    fn churn(&mut self, steps: usize) -> Duration {
        let most = (self.live.len() / 2).max(1);
        let mut elapsed = Duration::ZERO;
        let mut left = steps;
        while left > 0 {
            let batch = left.min(most);
            elapsed += self.batch(batch);
            left -= batch;
        }
        elapsed
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
    let mut filled = ExtentList::with_capacity(live);
    for _ in 0..live {
        let size = churn.rng.log_uniform(MIN_SIZE, MAX_SIZE);
        Churn::allocate(&mut churn.map, size, &mut filled);
    }
    churn.live.extend(filled.items().map(ItemExtents::new));
    // Warm up to the steady state's fragmentation before timing: replace
    // every live item twice on average (and at least `steps` times).
    churn.churn((2 * live).max(steps));
    let per_round: Vec<f64> = (0..rounds)
        .map(|_| churn.churn(steps).as_secs_f64() * 1e9 / (2 * steps) as f64)
        .collect();
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

/// Nanoseconds per read when each read's address depends on the one before,
/// in a random cycle over the cache lines of a `bytes`-byte buffer (best of
/// 3): what one cache miss costs when the data is that large.
fn dependent_read_ns(bytes: usize) -> f64 {
    const LINE: usize = 64 / std::mem::size_of::<usize>();
    let lines = bytes / 64;
    let mut rng = Rng::new(lines as u64);
    // A random cyclic order of the lines (Sattolo's shuffle).
    let mut order: Vec<usize> = (0..lines).collect();
    for i in (1..lines).rev() {
        order.swap(i, rng.below(i));
    }
    let mut next = vec![0usize; lines * LINE];
    for (i, &line) in order.iter().enumerate() {
        next[line * LINE] = order[(i + 1) % lines] * LINE;
    }
    let reads = 4_000_000;
    (0..3)
        .map(|_| {
            let mut at = 0;
            let started = Instant::now();
            for _ in 0..reads {
                at = next[at];
            }
            std::hint::black_box(at);
            started.elapsed().as_secs_f64() * 1e9 / reads as f64
        })
        .fold(f64::MAX, f64::min)
}

pub fn run(quick: bool) -> Value {
    let steps = if quick { 20_000 } else { 100_000 };
    let sizes = [1_000, 10_000, 100_000, 1_000_000];
    let results: Vec<Value> = sizes.iter().map(|&n| measure(n, steps, 7)).collect();
    // The free extents of the largest map, at 16 bytes each: what a free of
    // a random item reads from (at least its pad's list).
    let free_extents = results.last().map_or(0, |r| r["free_extents"].as_u64().unwrap_or(0));
    let list_bytes = (free_extents as usize * 16).max(64 << 10);
    json!({
        "pad_size": PAD_SIZE,
        "steps": steps,
        "results": results,
        "read_ns": {
            "cached": dependent_read_ns(64 << 10),
            "lists": dependent_read_ns(list_bytes),
            "list_bytes": list_bytes,
        },
    })
}
