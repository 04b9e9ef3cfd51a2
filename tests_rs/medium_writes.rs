//! Medium items (above the small-item bound, below a pad): a loop of them
//! writes each about once, not the shared pads they land in on every put.
//! Counts of backend requests and bytes on `sim+` over a folder, never
//! times.

use std::sync::Arc;

use anthill::pad_store::{self, BackendOptions, SimConfig, SimPadStore, SimStats};
use anthill::{PutOptions, Store, StoreOptions};
use bytes::Bytes;

const PAD: u64 = 4 << 20;

fn options() -> StoreOptions {
    let mut options = StoreOptions::default();
    options.secret = b"medium writes".to_vec();
    options.pad_size = Some(PAD);
    options
}

fn data(len: usize, seed: u64) -> Bytes {
    // Incompressible and distinct per item, so no size can hide an item.
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// Write requests and bytes so far: reservations, puts of pads, log and
/// checkpoint objects, durable or not.
fn writes(stats: &SimStats) -> (u64, u64) {
    let ops = [&stats.reserve, &stats.put, &stats.durable_put];
    (
        ops.iter().map(|op| op.calls).sum(),
        ops.iter().map(|op| op.bytes).sum(),
    )
}

/// A store on `sim+` over the folder `url`, and the sim that counts its calls.
async fn counted_store(url: &str, config: SimConfig) -> (Arc<SimPadStore>, Store) {
    let folder = pad_store::open(url, &BackendOptions::default())
        .await
        .unwrap();
    let sim = Arc::new(SimPadStore::new(folder, config));
    let store = Store::open_with_backend("sim", sim.clone(), options())
        .await
        .unwrap();
    (sim, store)
}

/// Puts `puts` items of `size` bytes in a loop (each awaited), closes, and
/// returns (bytes written / bytes stored, write requests per put); then
/// checks a fresh handle reads every item back from its pads.
async fn put_loop(size: usize, puts: u64) -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().to_str().unwrap();
    let (sim, store) = counted_store(url, SimConfig::default()).await;
    let (calls_before, bytes_before) = writes(&sim.sim_stats());
    for i in 0..puts {
        store
            .store_item(&format!("k{i}"), data(size, i), PutOptions::default(), None)
            .await
            .unwrap();
    }
    store.close().await.unwrap();
    let (calls, bytes) = writes(&sim.sim_stats());
    let (calls, bytes) = (calls - calls_before, bytes - bytes_before);
    let stored = size as u64 * puts;
    let fresh = Store::open(url, options()).await.unwrap();
    assert_eq!(fresh.log_only_bytes(), 0, "close left items in the log");
    for i in 0..puts {
        let got = fresh.fetch_item(&format!("k{i}"), None).await.unwrap();
        assert!(got == data(size, i), "k{i} read back wrong");
    }
    (bytes as f64 / stored as f64, calls as f64 / puts as f64)
}

fn check(size: usize, (amplification, requests): (f64, f64)) {
    eprintln!(
        "{size}-byte puts: {amplification:.2}x written, {requests:.2} write requests per put"
    );
    assert!(
        amplification <= 2.2,
        "{size}-byte puts wrote {amplification:.2}x the data"
    );
    assert!(
        requests <= 1.6,
        "{size}-byte puts made {requests:.2} write requests each"
    );
}

/// 300 KiB items on 4 MiB pads: 13 share a pad, each written about twice
/// (the log, then its pad once), not the pad rewritten by each.
#[tokio::test]
async fn a_loop_of_300_kib_puts_writes_each_about_twice() {
    check(300 << 10, put_loop(300 << 10, 150).await);
}

/// 1 MiB items on 4 MiB pads, past a checkpoint (32 MiB of items in the log).
#[tokio::test]
async fn a_loop_of_1_mib_puts_writes_each_about_twice() {
    check(1 << 20, put_loop(1 << 20, 48).await);
}

/// A put that reserved a pad for an item committed in the log (the put
/// records the pad itself) returns with the pad's leftover already free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_pad_leftover_is_free_when_the_put_returns() {
    let backend = pad_store::open("memory://", &BackendOptions::default())
        .await
        .unwrap();
    let store = Store::open_with_backend("m", backend, options())
        .await
        .unwrap();
    for i in 0..20u64 {
        store
            .store_item(
                &format!("k{i}"),
                data(3 << 20, i),
                PutOptions::default(),
                None,
            )
            .await
            .unwrap();
        // What the pads leave (items fill them in turn): free at once,
        // asked without a catch-up that could give the expansion time.
        let used = (i + 1) * (3 << 20);
        let free = used.div_ceil(PAD) * PAD - used;
        if free > 0 {
            let needed = store.check_allocation_possible(free).await.unwrap();
            assert_eq!(needed, None, "after put {i}: {free} bytes are not free");
        }
    }
}

/// Medium puts running together (zarr writes its chunks so) go straight to
/// their pads: each pad's writer slot carries the patches queued meanwhile
/// in one write, so each byte is written about once and the log carries
/// records, not item bytes (through the log, every byte went twice, one log
/// object at a time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_medium_puts_write_their_pads_directly() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().to_str().unwrap();
    // Each request takes 2 ms, as a request to a service would, so puts
    // and pad writes overlap as they do there: with none, on a busy
    // machine 6 of 32 puts ran alone and went through the log.
    let mut config = SimConfig::default();
    config.latency_ms = 2.0;
    let (sim, store) = counted_store(url, config).await;
    let (size, puts) = (1usize << 20, 32u64);
    let before = sim.sim_stats();
    let all = (0..puts).map(|i| {
        let store = &store;
        async move {
            let key = format!("k{i}");
            let options = PutOptions::default();
            store.store_item(&key, data(size, i), options, None).await
        }
    });
    for stored in futures::future::join_all(all).await {
        stored.unwrap();
    }
    store.close().await.unwrap();
    let after = sim.sim_stats();
    let stored = size as u64 * puts;
    // The log objects (created by `reserve`, as `sim+` reserves pads): only
    // a put that found no other under way put its bytes there. Each put runs
    // as a task of its own, so on a busy machine the first few can each
    // run alone (2 of 32 seen); through the log, all 32 did.
    let logged = after.reserve.bytes - before.reserve.bytes;
    assert!(
        logged <= 4 * size as u64 + (64 << 10),
        "{logged} bytes went to the log"
    );
    let (_, written) = writes(&after);
    let amplification = (written - writes(&before).1) as f64 / stored as f64;
    // Through the log every byte goes at least twice (the log, then its
    // pad). Straight to the pads it depends on how many patches each pad
    // write carries, which the scheduling decides: 1.31 to 1.53x in 40
    // runs beside two busy loops, 1.63 and 1.88 seen once each.
    assert!(amplification < 2.0, "{amplification:.2}x the data written");
    let fresh = Store::open(url, options()).await.unwrap();
    for i in 0..puts {
        let got = fresh.fetch_item(&format!("k{i}"), None).await.unwrap();
        assert!(got == data(size, i), "k{i} read back wrong");
    }
}
