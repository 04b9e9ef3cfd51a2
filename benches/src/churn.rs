//! C1 cost: how many pads a churning store pays for, against the fewest that
//! could hold its live bytes.
//!
//! On `sim+memory://` with 4 MiB pads: store 10^4 items (sizes log-uniform
//! from 100 B to 1 MiB); remove a random half and store new data (new sizes)
//! under those keys; then store as many new items as the workload started
//! with (10^4). Puts and removes run 100 at a time, as a busy application's
//! would. Figures: pads reserved (the sim's count of successful `reserve`
//! calls) against the ideal `ceil(live bytes / pad size)`, and beside it the
//! pad-per-key count, `sum(ceil(size / pad size))`, what a store that rounds
//! every item up to whole pads (MutAnt) would pay.

use std::sync::Arc;
use std::time::Instant;

use anthill::pad_store::{self, BackendOptions, SimConfig, SimPadStore};
use anthill::{PutOptions, Store, StoreOptions};
use bytes::Bytes;
use futures::future::try_join_all;
use serde_json::{Value, json};

use crate::rng::Rng;

const PAD_SIZE: u64 = 4 << 20;
const MIN_SIZE: u64 = 100;
const MAX_SIZE: u64 = 1 << 20;
const BATCH: usize = 100;

/// Runs `ops` on the store, `BATCH` at a time, each in a task of its own.
async fn in_batches<T, F, Fut>(items: Vec<T>, op: F) -> anthill::Result<()>
where
    T: Send + 'static,
    F: Fn(T) -> Fut,
    Fut: Future<Output = anthill::Result<()>> + Send + 'static,
{
    let mut items = items.into_iter().peekable();
    while items.peek().is_some() {
        let batch: Vec<_> = items
            .by_ref()
            .take(BATCH)
            .map(|item| tokio::spawn(op(item)))
            .collect();
        for result in try_join_all(batch).await.expect("put task panicked") {
            result?;
        }
    }
    Ok(())
}

pub async fn run(items: usize) -> anthill::Result<Value> {
    let started = Instant::now();
    let memory = pad_store::open("memory://", &BackendOptions::default()).await?;
    let sim = Arc::new(SimPadStore::new(memory, SimConfig::default()));
    let mut options = StoreOptions::default();
    options.secret = b"anthill benchmark secret".to_vec();
    options.pad_size = Some(PAD_SIZE);
    let store = Store::open_with_backend("sim+memory://", sim.clone(), options).await?;
    let mut rng = Rng::new(42);
    // Item data are slices of one random block: no copies, no compression.
    let block = Bytes::from(rng.bytes(MAX_SIZE as usize));
    let mut sizes: Vec<u64> = Vec::new();

    let put = |store: &Store, block: &Bytes| {
        let (store, block) = (store.clone(), block.clone());
        move |(key, size): (usize, u64)| {
            let (store, data) = (store.clone(), block.slice(..size as usize));
            async move {
                store
                    .store_item(&format!("item/{key}"), data, PutOptions::default(), None)
                    .await
            }
        }
    };

    // 1. The first items.
    let first: Vec<(usize, u64)> = (0..items)
        .map(|key| (key, rng.log_uniform(MIN_SIZE, MAX_SIZE)))
        .collect();
    sizes.extend(first.iter().map(|(_, size)| *size));
    in_batches(first, put(&store, &block)).await?;
    let pads_after_fill = sim.sim_stats().pads_reserved;

    // 2. A random half removed, and new data stored under those keys.
    let mut keys: Vec<usize> = (0..items).collect();
    for i in 0..items / 2 {
        let j = i + rng.below(items - i);
        keys.swap(i, j);
    }
    let replaced: Vec<usize> = keys[..items / 2].to_vec();
    let remover = {
        let store = store.clone();
        move |key: usize| {
            let store = store.clone();
            async move { store.remove_item(&format!("item/{key}")).await }
        }
    };
    in_batches(replaced.clone(), remover).await?;
    let replacements: Vec<(usize, u64)> = replaced
        .iter()
        .map(|&key| (key, rng.log_uniform(MIN_SIZE, MAX_SIZE)))
        .collect();
    for &(key, size) in &replacements {
        sizes[key] = size;
    }
    in_batches(replacements, put(&store, &block)).await?;
    let pads_after_replace = sim.sim_stats().pads_reserved;

    // 3. As many new items again.
    let more: Vec<(usize, u64)> = (items..2 * items)
        .map(|key| (key, rng.log_uniform(MIN_SIZE, MAX_SIZE)))
        .collect();
    sizes.extend(more.iter().map(|(_, size)| *size));
    in_batches(more, put(&store, &block)).await?;

    let stats = sim.sim_stats();
    let summary = store.summary().await?;
    let live_bytes: u64 = sizes.iter().sum();
    let ideal = live_bytes.div_ceil(PAD_SIZE);
    let pad_per_key: u64 = sizes.iter().map(|s| s.div_ceil(PAD_SIZE)).sum();
    Ok(json!({
        "items_live": sizes.len(),
        "live_bytes": live_bytes,
        "pad_size": PAD_SIZE,
        "pads_reserved": stats.pads_reserved,
        "pads_in_map": summary.total_pads,
        "pads_after_fill": pads_after_fill,
        "pads_after_replace": pads_after_replace,
        "ideal_pads": ideal,
        "pad_per_key_pads": pad_per_key,
        "used_space": summary.used_space,
        "free_space": summary.free_space,
        "backend_bytes_written": stats.put.bytes + stats.reserve.bytes,
        "pad_put_calls": stats.put.calls,
        "seconds": started.elapsed().as_secs_f64(),
    }))
}
