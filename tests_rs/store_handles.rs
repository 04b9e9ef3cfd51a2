//! Two handles on one store, as two processes would hold it: each takes the
//! writer lock and catches up with the other, reads the index only after
//! the other wrote, and no put commits into a pad the index does not know.

use std::sync::Arc;

use anthill::Store;
use anthill::pad_store::sim::Phase;
use anthill::pad_store::{self, Backend, BackendOptions, OpKind, SimConfig, SimPadStore};
use bytes::Bytes;

use crate::store::{PAD, data, memory, open, options, overwriting, put, sim};

/// Two handles on one store, each with its own index and map, behave like
/// two processes: each takes the writer lock and catches up with the other.
async fn two_writers(url: &str) {
    // Frequent checkpoints: a writer must catch up across them.
    let options = || {
        let mut options = options();
        options.checkpoint_interval = 2000;
        options
    };
    let a = Store::open(url, options()).await.unwrap();
    let b = Store::open(url, options()).await.unwrap();
    let values: Vec<Bytes> = (0..40).map(|i| data(300 + i * 97, i as u8)).collect();
    futures::future::join_all(values.iter().enumerate().map(|(i, value)| {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        async move { put(&store, &format!("k{i}"), value).await }
    }))
    .await;
    a.remove_item("k1").await.unwrap();
    b.store_item("k2", data(5000, 1), overwriting(), None)
        .await
        .unwrap();
    for store in [&a, &b] {
        assert_eq!(store.len().await.unwrap(), 39);
        assert!(!store.contains("k1").await.unwrap());
        assert_eq!(store.fetch_item("k2", None).await.unwrap(), data(5000, 1));
        for (i, value) in values.iter().enumerate().skip(3) {
            assert_eq!(
                &store.fetch_item(&format!("k{i}"), None).await.unwrap(),
                value
            );
        }
    }
    let backend = pad_store::open(url, &BackendOptions::default())
        .await
        .unwrap();
    assert!(
        !backend.list("c/").await.unwrap().is_empty(),
        "checkpoints were written"
    );
    let fresh = Store::open(url, options()).await.unwrap();
    assert_eq!(fresh.summary().await.unwrap(), a.summary().await.unwrap());
    assert_eq!(fresh.summary().await.unwrap(), b.summary().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_on_one_memory_store_share_it_safely() {
    two_writers("memory://two-writers").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_handles_on_one_folder_share_it_safely() {
    let dir = tempfile::tempdir().unwrap();
    two_writers(dir.path().to_str().unwrap()).await;
}

/// Index reads (`get` of a log object, `list` of checkpoints) in a sim log.
fn index_reads(sim: &SimPadStore) -> usize {
    sim.op_log()
        .iter()
        .filter(|op| op.phase == Phase::Start)
        .filter(|op| matches!(op.kind, OpKind::Get | OpKind::List))
        .filter(|op| op.name.starts_with("j/") || op.name.starts_with("c/"))
        .count()
}

/// A handle that held the writer lock last skips the catch-up before its
/// next change (nobody else can have written); once another handle took the
/// lock, it catches up again.
async fn catch_up_only_after_another_writer(url: &str) {
    let backend = pad_store::open(url, &BackendOptions::default())
        .await
        .unwrap();
    let counted = sim(&backend, SimConfig::default()).await;
    let a = open(Arc::clone(&counted) as Arc<dyn Backend>, options()).await;
    let b = Store::open(url, options()).await.unwrap();
    put(&a, "a1", &data(100, 1)).await;
    counted.clear_log();
    put(&a, "a2", &data(5000, 2)).await;
    assert_eq!(
        index_reads(&counted),
        0,
        "no catch-up: a held the lock last"
    );

    put(&b, "b1", &data(100, 3)).await;
    counted.clear_log();
    put(&a, "a3", &data(100, 4)).await;
    assert!(index_reads(&counted) > 0, "b wrote meanwhile: a catches up");
    counted.clear_log();
    assert!(a.contains("b1").await.unwrap());
    assert_eq!(a.len().await.unwrap(), 4);
    assert_eq!(b.len().await.unwrap(), 4);
    assert_eq!(a.summary().await.unwrap(), b.summary().await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_store_catches_up_only_after_another_writer() {
    catch_up_only_after_another_writer("memory://catch-up-skip").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folder_store_catches_up_only_after_another_writer() {
    let dir = tempfile::tempdir().unwrap();
    catch_up_only_after_another_writer(dir.path().to_str().unwrap()).await;
}

/// The longest chain of log object reads in a sim log where each read
/// began after the one before it in the chain ended: the round trips a
/// catch-up waited for one after another.
fn log_reads_one_after_another(sim: &SimPadStore) -> usize {
    let mut depth_of = std::collections::HashMap::new();
    let mut ended = 0;
    for op in sim.op_log() {
        if op.kind != OpKind::Get || !op.name.starts_with("j/") {
            continue;
        }
        match op.phase {
            Phase::Start => {
                depth_of.insert(op.name, ended + 1);
            }
            _ => ended = ended.max(depth_of.get(&op.name).copied().unwrap_or(0)),
        }
    }
    ended
}

/// A writer taking the lock over reads the log objects the other wrote in
/// rounds of several at once, not one round trip after another: with one
/// per object, taking turns with a writer on S3 cost more than the puts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catch_up_reads_many_log_objects_in_few_round_trips() {
    const OBJECTS: usize = 16;
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().to_str().unwrap();
    let backend = pad_store::open(url, &BackendOptions::default())
        .await
        .unwrap();
    let mut config = SimConfig::default();
    config.latency_ms = 5.0;
    let counted = sim(&backend, config).await;
    let a = open(Arc::clone(&counted) as Arc<dyn Backend>, options()).await;
    let b = Store::open(url, options()).await.unwrap();
    put(&a, "a0", &data(100, 1)).await;
    a.flush().await.unwrap();
    for i in 0..OBJECTS {
        put(&b, &format!("b{i}"), &data(100 + i, 2)).await;
    }
    b.flush().await.unwrap();
    let read_before = counted.sim_stats().get.calls;
    counted.clear_log();
    put(&a, "a1", &data(100, 3)).await;
    let rounds = log_reads_one_after_another(&counted);
    let reads = counted.sim_stats().get.calls - read_before;
    assert!(
        rounds <= 6,
        "{OBJECTS} log objects read in {rounds} round trips one after another"
    );
    assert!(
        reads as usize <= 2 * OBJECTS + 1,
        "{reads} reads for {OBJECTS} log objects"
    );
    for i in 0..OBJECTS {
        assert_eq!(
            a.fetch_item(&format!("b{i}"), None).await.unwrap(),
            data(100 + i, 2)
        );
    }
    assert_eq!(a.summary().await.unwrap(), b.summary().await.unwrap());

    // Opening reads the log after the checkpoint the same way.
    drop((a, b));
    counted.clear_log();
    let fresh = open(Arc::clone(&counted) as Arc<dyn Backend>, options()).await;
    let rounds = log_reads_one_after_another(&counted);
    assert!(
        rounds <= 3,
        "an open read {OBJECTS} log objects in {rounds} round trips one after another"
    );
    assert_eq!(fresh.len().await.unwrap(), OBJECTS as u64 + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_puts_never_commit_into_unrecorded_pads() {
    // Large puts expand while small ones want the new pads' leftovers: a
    // small put must not commit into a pad before the index records it.
    let inner = memory().await;
    let mut config = SimConfig::default();
    config.latency_ms = 1.0;
    config.jitter_ms = 3.0;
    config.seed = Some(11);
    let sim = sim(&inner, config).await;
    let store = open(sim.clone(), options()).await;
    let values: Vec<Bytes> = (0..40)
        .map(|i| {
            data(
                if i % 4 == 0 {
                    2 * PAD as usize + 900
                } else {
                    150 + i * 13
                },
                i as u8,
            )
        })
        .collect();
    futures::future::join_all(values.iter().enumerate().map(|(i, value)| {
        let store = store.clone();
        async move { put(&store, &format!("k{i}"), value).await }
    }))
    .await;
    drop(store);
    let reopened = open(inner, options()).await;
    for (i, value) in values.iter().enumerate() {
        assert_eq!(
            &reopened.fetch_item(&format!("k{i}"), None).await.unwrap(),
            value
        );
    }
    let summary = reopened.summary().await.unwrap();
    assert_eq!(
        summary.used_space,
        values.iter().map(|v| v.len() as u64).sum::<u64>()
    );
}

/// A writer alone keeps the writer lock however long its loop of puts:
/// at the end of each turn (50 ms on a folder) it finds nobody waiting, so
/// it neither gives the lock back nor waits a handover before the next.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_alone_keeps_the_lock_across_its_turns() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().to_str().unwrap(), options())
        .await
        .unwrap();
    put(&store, "first", &data(1000, 0)).await;
    let before = store.writer_locks_taken();
    // Twenty turns' worth of puts, however fast this machine puts.
    let started = std::time::Instant::now();
    let mut puts = 0;
    while puts < 200 || started.elapsed() < std::time::Duration::from_secs(1) {
        put(&store, &format!("k{puts}"), &data(1000, puts as u8)).await;
        puts += 1;
    }
    // Giving the lock back at each turn's end took it twenty times or
    // more. A put stalled past the 5 ms linger (a busy machine) lets it go
    // once, honestly: a few of those are allowed.
    let taken = store.writer_locks_taken() - before;
    assert!(taken <= 3, "{puts} puts took the writer lock {taken} times");
}

/// A writer waiting for the lock gets it at the end of the holder's turn,
/// though the holder goes on putting all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_writer_gets_the_lock_from_one_in_a_loop() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().to_str().unwrap();
    let holder = Store::open(url, options()).await.unwrap();
    let waiter = Store::open(url, options()).await.unwrap();
    put(&holder, "first", &data(1000, 0)).await;
    let waited = Arc::new(AtomicBool::new(false));
    let looping = {
        let (holder, waited) = (holder.clone(), Arc::clone(&waited));
        tokio::spawn(async move {
            // Bounded, so that a waiter never let in fails the test rather
            // than hanging it.
            for i in 0..20_000 {
                if waited.load(Ordering::Acquire) {
                    return true;
                }
                put(&holder, &format!("h{i}"), &data(1000, i as u8)).await;
            }
            false
        })
    };
    put(&waiter, "w", &data(1000, 1)).await;
    waited.store(true, Ordering::Release);
    assert!(
        looping.await.unwrap(),
        "the waiter got the lock only once the holder's loop ended"
    );
    assert!(holder.contains("w").await.unwrap());
    assert!(waiter.writer_locks_taken() >= 1);
}
