//! Faults injected at every step of a put, and tampering with every kind of
//! object: the store stays consistent and never returns wrong bytes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anthill::pad_store::{self, Backend, BackendOptions, OpKind, SimConfig, SimPadStore};
use anthill::{Error, PutOptions, Store, StoreOptions};
use bytes::Bytes;

const PAD: u64 = 4096;

fn options() -> StoreOptions {
    let mut options = StoreOptions::default();
    options.secret = b"reliability".to_vec();
    options.pad_size = Some(PAD);
    options.retry_attempts = 3;
    options
}

fn data(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed))
        .collect()
}

async fn put(store: &Store, key: &str, value: &Bytes) -> anthill::Result<()> {
    store
        .store_item(key, value.clone(), PutOptions::default(), None)
        .await
}

/// Checks a store against what it should hold: every item in `expected` is
/// byte-identical, `maybe` keys are absent, pending or correct, the summary
/// adds up, and the backend holds exactly the pads the map knows.
async fn assert_consistent(
    store: &Store,
    backend: &Arc<dyn Backend>,
    expected: &[(String, Bytes)],
    maybe: &[(String, Bytes)],
) {
    for (key, value) in expected {
        assert_eq!(&store.fetch_item(key, None).await.unwrap(), value, "{key}");
    }
    let mut used = expected.iter().map(|(_, v)| v.len() as u64).sum::<u64>();
    for (key, value) in maybe {
        match store.fetch_item(key, None).await {
            Ok(found) => {
                assert_eq!(&found, value, "{key}");
                used += value.len() as u64;
            }
            Err(Error::KeyNotFound(_)) => {}
            Err(other) => panic!("{key}: {other:?}"),
        }
    }
    let summary = store.summary().await.unwrap();
    assert_eq!(summary.items as usize, store.keys().await.unwrap().len());
    if summary.pending == 0 {
        assert_eq!(summary.used_space, used);
    }
    assert_eq!(summary.total_space, summary.total_pads * PAD);
    assert_eq!(summary.used_space + summary.free_space, summary.total_space);
    let pads = backend.list("p/").await.unwrap().len() as u64;
    assert_eq!(pads, summary.total_pads, "no pad forgotten, none invented");
}

#[tokio::test]
async fn a_fault_at_any_step_of_a_put_leaves_a_consistent_store() {
    let steps = [
        (OpKind::Reserve, 4),
        // The victim's 4 pads and the pad of the item after it (the small
        // victim is committed in the log: its faults are Reserve's).
        (OpKind::Put, 5),
        // The victim's 4 pad commits: a created log object is not read back.
        (OpKind::Verify, 4),
        (OpKind::Get, 2),
        (OpKind::List, 2),
    ];
    let (mut faults, mut struck_faults) = (0, 0);
    for (kind, count) in steps {
        for nth in 1..=count {
            for permanent in [true, false] {
                let inner = pad_store::open("memory://", &BackendOptions::default())
                    .await
                    .unwrap();
                let sim = Arc::new(SimPadStore::new(Arc::clone(&inner), SimConfig::default()));
                let store = Store::open_with_backend("sim", sim.clone(), options())
                    .await
                    .unwrap();
                let mut expected = vec![
                    ("small".to_string(), data(700, 1)),
                    ("large".to_string(), data(2 * PAD as usize + 5, 2)),
                ];
                for (key, value) in &expected {
                    put(&store, key, value).await.unwrap();
                }
                // A transient fault is retried; make it persist past retries.
                for k in 0..if permanent { 1 } else { 3 } {
                    sim.fail_next(kind, nth + k, permanent);
                }
                faults += 1;
                let victim = ("victim".to_string(), data(3 * PAD as usize + 100, 3));
                let small_victim = ("small victim".to_string(), data(300, 4));
                let _ = put(&store, &victim.0, &victim.1).await;
                let _ = put(&store, &small_victim.0, &small_victim.1).await;
                let struck = sim.disarm_faults() == 0;
                // The same handle stays usable.
                // A pad: written to it directly, as the victim is.
                let after = ("after".to_string(), data(PAD as usize, 5));
                put(&store, &after.0, &after.1).await.unwrap();
                expected.push(after);
                struck_faults += usize::from(struck);
                let maybe = [victim, small_victim];
                assert_consistent(
                    &store,
                    &(sim.clone() as Arc<dyn Backend>),
                    &expected,
                    &maybe,
                )
                .await;
                drop(store);
                let reopened = Store::open_with_backend("memory", Arc::clone(&inner), options())
                    .await
                    .unwrap();
                assert_consistent(&reopened, &inner, &expected, &maybe).await;
            }
        }
    }
    assert_eq!(faults, 2 * (4 + 5 + 4 + 2 + 2));
    assert!(
        struck_faults > faults / 2,
        "{struck_faults} of {faults} faults struck"
    );
}

/// A put dropped at any instant (a cancelled task, a timeout) leaves the
/// handle's map agreeing with its index: a reopened store sees the same
/// summary, and the key is absent, pending or whole. The put takes free
/// space and new pads, so its pending record is written by the expansion,
/// racing the drop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_dropped_at_any_instant_leaves_map_and_index_agreeing() {
    let victim = data(3 * PAD as usize + 100, 3);
    let mut outcomes = std::collections::BTreeMap::new();
    for step in 0..40u64 {
        let inner = pad_store::open("memory://", &BackendOptions::default())
            .await
            .unwrap();
        let mut config = SimConfig::default();
        config.latency_ms = 1.0;
        config.jitter_ms = 1.0;
        config.seed = Some(step);
        let sim = Arc::new(SimPadStore::new(Arc::clone(&inner), config));
        let store = Store::open_with_backend("sim", sim.clone(), options())
            .await
            .unwrap();
        // Free space in a pad for the victim to take first.
        put(&store, "filler", &data(PAD as usize / 2, 1))
            .await
            .unwrap();
        put(&store, "kept", &data(100, 2)).await.unwrap();
        store.remove_item("filler").await.unwrap();
        let cut = std::time::Duration::from_micros(step * 400);
        let outcome = tokio::time::timeout(cut, put(&store, "victim", &victim)).await;
        let summary = store.summary().await.unwrap();
        *outcomes
            .entry(match (&outcome, summary.pending) {
                (Ok(_), _) => "stored",
                (Err(_), 0) => "absent",
                (Err(_), _) => "pending",
            })
            .or_insert(0) += 1;
        // A put needing new pads waits for the expansion turn, so for the
        // dropped put's expansion task to finish whatever it was doing.
        let after = data(2 * PAD as usize, 5);
        put(&store, "after", &after).await.unwrap();
        let live = store.summary().await.unwrap();
        let reopened = Store::open_with_backend("memory", Arc::clone(&inner), options())
            .await
            .unwrap();
        assert_eq!(reopened.summary().await.unwrap(), live, "step {step}");
        for store in [&store, &reopened] {
            assert_eq!(store.fetch_item("kept", None).await.unwrap(), data(100, 2));
            assert_eq!(store.fetch_item("after", None).await.unwrap(), after);
            match store.fetch_item("victim", None).await {
                Ok(found) => assert_eq!(found, victim),
                Err(Error::KeyNotFound(_)) => {}
                Err(other) => panic!("step {step}: {other:?}"),
            }
        }
    }
    eprintln!("dropped puts: {outcomes:?}");
    assert!(
        outcomes.len() >= 2,
        "cuts landed in one phase only: {outcomes:?}"
    );
}

#[tokio::test]
async fn every_failed_call_at_fail_rate_one_is_a_bounded_backend_error() {
    let inner = pad_store::open("memory://", &BackendOptions::default())
        .await
        .unwrap();
    let sim = Arc::new(SimPadStore::new(Arc::clone(&inner), SimConfig::default()));
    let store = Store::open_with_backend("sim", sim.clone(), options())
        .await
        .unwrap();
    put(&store, "kept", &data(5000, 1)).await.unwrap();
    let before = store.summary().await.unwrap();
    sim.set_fail_rate(1.0);
    let calls_before = sim.sim_stats().put.calls;
    let failed = put(&store, "new", &data(9000, 2)).await;
    assert!(matches!(failed, Err(Error::Backend(_))), "{failed:?}");
    let failed = store.fetch_item("kept", None).await;
    assert!(matches!(failed, Err(Error::Backend(_))), "{failed:?}");
    // Bounded: retry_attempts per call.
    assert!(sim.sim_stats().put.calls - calls_before <= 3 * 4);
    sim.set_fail_rate(0.0);
    assert_eq!(store.summary().await.unwrap().items, before.items);
    assert_eq!(store.fetch_item("kept", None).await.unwrap(), data(5000, 1));
    assert!(!store.contains("new").await.unwrap());
}

/// A folder store with two items in shared and own pads.
async fn folder_store() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().to_str().unwrap().to_string();
    let store = Store::open(&url, options()).await.unwrap();
    put(&store, "a", &data(1000, 1)).await.unwrap();
    put(&store, "b", &data(1000, 2)).await.unwrap();
    put(&store, "big", &data(2 * PAD as usize, 3))
        .await
        .unwrap();
    store.close().await.unwrap(); // "a" and "b" written back to their pad
    (dir, url)
}

fn files(dir: &Path, sub: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join(sub))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    files.sort();
    files
}

/// Fetches every item; each must be right or an integrity/backend error.
async fn fetch_all_checked(url: &str) -> Vec<Result<bool, Error>> {
    let store = Store::open(url, options()).await.unwrap();
    let mut results = Vec::new();
    for (key, value) in [
        ("a", data(1000, 1)),
        ("b", data(1000, 2)),
        ("big", data(2 * PAD as usize, 3)),
    ] {
        results.push(store.fetch_item(key, None).await.map(|got| {
            assert_eq!(got, value, "never wrong bytes");
            true
        }));
    }
    results
}

fn integrity_failures(results: &[Result<bool, Error>]) -> usize {
    results
        .iter()
        .filter(|r| matches!(r, Err(Error::Integrity(_))))
        .count()
}

#[tokio::test]
async fn tampered_pads_are_detected() {
    type Tamper = fn(&[PathBuf]);
    let cases: [(&str, Tamper); 4] = [
        ("bit flip", |pads| {
            let mut bytes = std::fs::read(&pads[0]).unwrap();
            let last = bytes.len() - 20;
            bytes[last] ^= 4;
            std::fs::write(&pads[0], bytes).unwrap();
        }),
        ("truncation", |pads| {
            let bytes = std::fs::read(&pads[0]).unwrap();
            std::fs::write(&pads[0], &bytes[..bytes.len() - 7]).unwrap();
        }),
        ("extension", |pads| {
            let mut bytes = std::fs::read(&pads[0]).unwrap();
            bytes.extend_from_slice(b"more");
            std::fs::write(&pads[0], bytes).unwrap();
        }),
        ("swap", |pads| {
            let (a, b) = (
                std::fs::read(&pads[0]).unwrap(),
                std::fs::read(&pads[1]).unwrap(),
            );
            std::fs::write(&pads[0], b).unwrap();
            std::fs::write(&pads[1], a).unwrap();
        }),
    ];
    for (name, tamper) in cases {
        let (dir, url) = folder_store().await;
        tamper(&files(dir.path(), "p"));
        let results = fetch_all_checked(&url).await;
        assert!(integrity_failures(&results) >= 1, "{name}: {results:?}");
    }
}

#[tokio::test]
async fn a_rolled_back_pad_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().to_str().unwrap().to_string();
    let store = Store::open(&url, options()).await.unwrap();
    // Flushed, so that the pad (not only the log) holds each small item.
    put(&store, "first", &data(100, 1)).await.unwrap();
    store.flush().await.unwrap();
    let pad = files(dir.path(), "p").remove(0);
    let old = std::fs::read(&pad).unwrap();
    put(&store, "second", &data(100, 2)).await.unwrap();
    store.flush().await.unwrap();
    drop(store);
    std::fs::write(&pad, old).unwrap();
    let store = Store::open(&url, options()).await.unwrap();
    assert_eq!(store.fetch_item("first", None).await.unwrap(), data(100, 1));
    let rolled_back = store.fetch_item("second", None).await;
    assert!(
        matches!(rolled_back, Err(Error::Integrity(ref m)) if m.contains("rolled back")),
        "{rolled_back:?}"
    );
}

#[tokio::test]
async fn a_deleted_pad_is_a_clear_backend_error() {
    let (dir, url) = folder_store().await;
    for pad in files(dir.path(), "p") {
        std::fs::remove_file(pad).unwrap();
    }
    let store = Store::open(&url, options()).await.unwrap();
    let missing = store.fetch_item("a", None).await;
    assert!(
        matches!(missing, Err(Error::Backend(ref e)) if e.to_string().contains("missing")),
        "{missing:?}"
    );
}

#[tokio::test]
async fn tampered_index_objects_are_detected() {
    type Tamper = fn(&Path);
    let cases: [(&str, Tamper); 6] = [
        ("log bit flip", |dir| {
            let log = files(dir, "j").remove(1);
            let mut bytes = std::fs::read(&log).unwrap();
            bytes[30] ^= 1;
            std::fs::write(&log, bytes).unwrap();
        }),
        ("log truncation", |dir| {
            let log = files(dir, "j").remove(0);
            let bytes = std::fs::read(&log).unwrap();
            std::fs::write(&log, &bytes[..bytes.len() / 2]).unwrap();
        }),
        ("log extension", |dir| {
            let log = files(dir, "j").remove(0);
            let mut bytes = std::fs::read(&log).unwrap();
            bytes.push(0);
            std::fs::write(&log, bytes).unwrap();
        }),
        ("log swap", |dir| {
            let logs = files(dir, "j");
            let (a, b) = (
                std::fs::read(&logs[0]).unwrap(),
                std::fs::read(&logs[1]).unwrap(),
            );
            std::fs::write(&logs[0], b).unwrap();
            std::fs::write(&logs[1], a).unwrap();
        }),
        ("log deletion", |dir| {
            std::fs::remove_file(files(dir, "j").remove(1)).unwrap();
        }),
        ("metadata pad size", |dir| {
            let meta = dir.join("meta");
            let mut bytes = std::fs::read(&meta).unwrap();
            // postcard: format string, 16-byte id, varint pad size (4096 = 0x80 0x20).
            let at = bytes.windows(2).position(|w| w == [0x80, 0x20]).unwrap();
            bytes[at + 1] = 0x40;
            std::fs::write(&meta, bytes).unwrap();
        }),
    ];
    for (name, tamper) in cases {
        let (dir, url) = folder_store().await;
        tamper(dir.path());
        let opened = Store::open(&url, options()).await;
        assert!(
            matches!(opened, Err(Error::Integrity(_))),
            "{name}: {:?}",
            opened.map(|_| "opened")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifth_of_all_calls_failing_still_stores_and_reads_everything() {
    let inner = pad_store::open("memory://", &BackendOptions::default())
        .await
        .unwrap();
    let mut config = SimConfig::default();
    config.fail_rate = 0.2;
    config.seed = Some(2026);
    let sim = Arc::new(SimPadStore::new(Arc::clone(&inner), config));
    let mut options = options();
    options.retry_attempts = 12;
    let store = Store::open_with_backend("sim", sim.clone(), options.clone())
        .await
        .unwrap();
    let values: Vec<Bytes> = (0..100)
        .map(|i| data([10, 900, 4096, 9000, 3 * PAD as usize + 1][i % 5], i as u8))
        .collect();
    for (i, value) in values.iter().enumerate() {
        put(&store, &format!("k{i}"), value).await.unwrap();
    }
    for (i, value) in values.iter().enumerate() {
        assert_eq!(
            &store.fetch_item(&format!("k{i}"), None).await.unwrap(),
            value
        );
    }
    let stats = sim.sim_stats();
    for kind in [OpKind::Reserve, OpKind::Put, OpKind::Verify, OpKind::Get] {
        assert!(
            stats.op(kind).failures > 0,
            "{kind:?} failures were injected"
        );
    }
    drop(store);
    let reopened = Store::open_with_backend("sim", sim, options).await.unwrap();
    assert_consistent(
        &reopened,
        &inner,
        &values
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("k{i}"), v.clone()))
            .collect::<Vec<_>>(),
        &[],
    )
    .await;
}
