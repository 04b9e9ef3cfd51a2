//! P3 allocator: allocate and free operations per second on the memory map
//! holding 10^3 .. 10^6 live blocks.
//!
//! A steady churn at a fixed fill, as a store lives once its pads are mostly
//! used: each operation frees a random live item while more than [`FILL`] of
//! the pads' bytes are used, and allocates a new item otherwise. So the fill
//! stays at [`FILL`] and the number of live items near N, at every N: the
//! levels differ only in how many blocks the map holds.
//!
//! The fill has to be held. Left to itself it drifts with the length of the
//! run, not with N: pads are only ever added (when a new item does not fit),
//! so they follow the largest the data has ever been, and that keeps growing
//! as sizes wander. 95% is what C1's target promises (pads at most 1.05x the
//! ideal).
//!
//! Setup, not timed: N / [`FILL`] items allocated one after another, then
//! random ones freed until the pads are [`FILL`] used, which leaves holes of
//! every item size across all pads; then [`WARM_UP`] operations per live
//! item, which fragment the free space as a long-lived store's. Item sizes
//! are log-uniform from 100 B to 1 MiB (as in C1), pads 4 MiB. An allocation
//! is what the allocator does: `plan`, `take` the free extents, and when the
//! plan needs new pads, `add_pad` them and `take` their share. A free gives
//! back every extent of the item. One operation = one allocation or one free.
//!
//! Only the map is timed, not the harness's own bookkeeping: finding a
//! random item in a table of 10^6 (about 40 MB) would cost a cache miss per
//! free. So operations run in batches. Before a batch's clock starts, its
//! possible victims are chosen (distinct, uniform among the items live at the
//! batch's start) and their extents copied into one sequential vector, and
//! the new items' sizes are drawn; the timed loop frees from that vector in
//! order and appends the new items' extents to another; after the clock
//! stops, the live table drops the freed items and takes the new ones. A
//! batch has at most a quarter as many operations as there are live items,
//! so at 10^3 a round is many batches, their times summed.

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

/// The share of the pads' bytes held by items, at every level.
const FILL: f64 = 0.95;
/// Other fills measured at the smallest and largest level, to show how much
/// the growth depends on the fill.
const OTHER_FILLS: [f64; 2] = [0.90, 0.97];
/// Untimed operations per live item before the rounds: enough for the
/// fragmentation to settle (the extents per item stop growing).
const WARM_UP: usize = 40;

struct Churn {
    map: MemoryMap,
    live: Vec<ItemExtents>,
    rng: Rng,
    fill: f64,
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

    fn overfull(map: &MemoryMap, fill: f64) -> bool {
        map.used_space() as f64 > fill * map.total_space() as f64
    }

    /// Runs `ops` operations (`ops <= live`); returns the time spent in the
    /// map.
    fn batch(&mut self, ops: usize) -> Duration {
        let live = self.live.len();
        // A partial shuffle puts a uniform sample of distinct items first.
        let mut victims = ExtentList::with_capacity(ops);
        for i in 0..ops {
            let j = i + self.rng.below(live - i);
            self.live.swap(i, j);
            victims.push(self.live[i].as_slice());
        }
        let sizes: Vec<u64> = (0..ops)
            .map(|_| self.rng.log_uniform(MIN_SIZE, MAX_SIZE))
            .collect();
        let mut born = ExtentList::with_capacity(ops);
        let mut victims = victims.items();
        let mut sizes = sizes.iter();
        let mut freed = 0;
        let (map, fill) = (&mut self.map, self.fill);
        let started = Instant::now();
        for _ in 0..ops {
            if Self::overfull(map, fill) {
                let extents = victims.next().expect("one victim per operation");
                map.free(extents).expect("live extents are used");
                freed += 1;
            } else {
                let &size = sizes.next().expect("one size per operation");
                Self::allocate(map, size, &mut born);
            }
        }
        let elapsed = started.elapsed();
        // The freed items are the first `freed` of the table: the new items
        // take their places, and places left over go.
        let mut born = born.items().map(ItemExtents::new);
        let mut reused = 0;
        for (slot, item) in self.live[..freed].iter_mut().zip(born.by_ref()) {
            *slot = item;
            reused += 1;
        }
        self.live.drain(reused..freed);
        self.live.extend(born);
        elapsed
    }

    /// Runs `ops` operations in batches; returns the time spent in the map.
    fn churn(&mut self, ops: usize) -> Duration {
        let mut elapsed = Duration::ZERO;
        let mut left = ops;
        while left > 0 {
            let batch = left.min((self.live.len() / 4).max(1));
            elapsed += self.batch(batch);
            left -= batch;
        }
        elapsed
    }
}

/// Nanoseconds per operation with about `live` blocks at `fill`, after
/// `warm_up` operations per live item, over `ops` operations (the median of
/// `rounds` rounds).
fn measure(live: usize, fill: f64, warm_up: usize, ops: usize, rounds: usize) -> Value {
    let mut churn = Churn {
        map: MemoryMap::new(PAD_SIZE),
        live: Vec::new(),
        rng: Rng::new(live as u64),
        fill,
    };
    let filled_items = (live as f64 / fill).round() as usize;
    let mut filled = ExtentList::with_capacity(filled_items);
    for _ in 0..filled_items {
        let size = churn.rng.log_uniform(MIN_SIZE, MAX_SIZE);
        Churn::allocate(&mut churn.map, size, &mut filled);
    }
    churn.live = filled.items().map(ItemExtents::new).collect();
    while Churn::overfull(&churn.map, fill) {
        let victim = churn.rng.below(churn.live.len());
        let item = churn.live.swap_remove(victim);
        churn
            .map
            .free(item.as_slice())
            .expect("live extents are used");
    }
    churn.churn((warm_up * live).max(ops));
    let per_round: Vec<f64> = (0..rounds)
        .map(|_| churn.churn(ops).as_secs_f64() * 1e9 / ops as f64)
        .collect();
    let mut sorted = per_round.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let summary = churn.map.summary();
    let live = churn.live.len();
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

/// A buffer far larger than the caches, for what a read from memory costs.
const MEMORY_BYTES: usize = 256 << 20;

pub fn run(quick: bool) -> Value {
    // A quick run only checks that the suite works: a short warm-up.
    let (ops, warm_up) = if quick {
        (40_000, WARM_UP / 10)
    } else {
        (200_000, WARM_UP)
    };
    let sizes = [1_000, 10_000, 100_000, 1_000_000];
    let results: Vec<Value> = sizes
        .iter()
        .map(|&n| measure(n, FILL, warm_up, ops, 7))
        .collect();
    let other_fills: Vec<Value> = OTHER_FILLS
        .iter()
        .map(|&fill| {
            let ends = [sizes[0], sizes[sizes.len() - 1]];
            json!({"fill": fill, "results": ends.map(|n| measure(n, fill, warm_up, ops, 7))})
        })
        .collect();
    // The free extents of the largest map, at 16 bytes each: what a free of
    // a random item reads from (at least its pad's list).
    let free_extents = results
        .last()
        .map_or(0, |r| r["free_extents"].as_u64().unwrap_or(0));
    let list_bytes = (free_extents as usize * 16).max(64 << 10);
    json!({
        "pad_size": PAD_SIZE,
        "fill": FILL,
        "warm_up": warm_up,
        "ops": ops,
        "results": results,
        "other_fills": other_fills,
        "read_ns": {
            "cached": dependent_read_ns(64 << 10),
            "lists": dependent_read_ns(list_bytes),
            "list_bytes": list_bytes,
            "memory": dependent_read_ns(MEMORY_BYTES),
            "memory_bytes": MEMORY_BYTES,
        },
    })
}
