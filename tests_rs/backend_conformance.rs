//! One conformance suite run against every backend (memory, local folder,
//! simulation over memory, and S3 when `ANTHILL_TEST_S3_URL` names one, e.g.
//! `s3://anthill-test/run-1?endpoint=http://127.0.0.1:3900&region=garage&allow_http=true`
//! with the credentials in `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY`
//! or in the URL's query as `access_key_id=..&secret_access_key=..`;
//! `eval "$(scripts/garage.sh start 3)"` exports all of them), then the
//! simulation's own behaviour, URL parsing, and how S3 failures are
//! classified (against a fake S3 server on loopback).

use crate::unique;
use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anthill::Error;
use anthill::pad_store::sim::{OpRecord, OpStats, Phase};
use anthill::pad_store::{
    BackendError, BackendOptions, OpKind, PadStore, PutReceipt, SimConfig, SimPadStore, open,
};
use bytes::Bytes;
use futures::FutureExt;
use futures::future::join_all;
use tempfile::TempDir;

/// The environment variable naming an S3 store to include in the suite.
const S3_URL_VAR: &str = "ANTHILL_TEST_S3_URL";

/// A backend under test; `url` opens more handles on the same store, and
/// `_dir` keeps a folder backend's folder alive.
struct Backend {
    label: String,
    url: String,
    store: Arc<dyn PadStore>,
    _dir: Option<TempDir>,
}

fn no_options() -> BackendOptions {
    BackendOptions::default()
}

/// Every backend the suite runs against, each empty.
async fn backends() -> Vec<Backend> {
    let mut list = Vec::new();
    let url = format!("memory://{}", unique("conformance"));
    let memory = open(&url, &no_options()).await.expect("memory://");
    list.push(Backend {
        label: "memory".into(),
        url,
        store: memory,
        _dir: None,
    });

    let dir = TempDir::new().expect("temp dir");
    let path = dir.path().to_str().expect("utf-8 temp path").to_owned();
    let folder = open(&path, &no_options()).await.expect("folder");
    list.push(Backend {
        label: format!("file ({path})"),
        url: path,
        store: folder,
        _dir: Some(dir),
    });

    let url = format!(
        "sim+memory://{}?latency_ms=1&fail_rate=0",
        unique("conformance")
    );
    let sim = open(&url, &no_options()).await.expect("sim+memory://");
    list.push(Backend {
        label: "sim+memory".into(),
        url,
        store: sim,
        _dir: None,
    });

    if let Ok(url) = std::env::var(S3_URL_VAR) {
        // A fresh prefix per test keeps the shared bucket's tests apart.
        let (base, query) = url.split_once('?').unwrap_or((&url, ""));
        let url = format!(
            "{}/{}?{query}",
            base.trim_end_matches('/'),
            unique("conformance")
        );
        let store = open(&url, &no_options()).await.expect(S3_URL_VAR);
        list.push(Backend {
            label: format!("s3 ({})", store.describe()),
            url,
            store,
            _dir: None,
        });
    }
    list
}

/// Removes what a case left (it matters for S3 only; the others are
/// dropped), under the writer lock like every write.
async fn cleanup(store: &dyn PadStore) {
    let Ok(lock) = store.lock_writer(&[0; 16]).await else {
        return;
    };
    if let Ok(names) = store.list("").await {
        for name in names {
            let _ = store.delete(&name).await;
        }
    }
    lock.release().await;
}

/// One `#[tokio::test]` per case, each running the case against every
/// backend, under the writer lock: on S3 every write is refused without it.
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                for backend in backends().await {
                    let lock = backend.store.lock_writer(&[0; 16]).await.expect("writer lock");
                    cases::$case(&backend.label, backend.store.as_ref()).await;
                    lock.release().await;
                    drop(lock);
                    cleanup(backend.store.as_ref()).await;
                }
            }
        )*
    };
}

conformance!(
    reserve_then_get_returns_content,
    reserve_twice_is_already_exists,
    concurrent_reserves_have_one_winner,
    put_overwrites_and_verify_passes,
    verify_with_wrong_receipt_fails,
    get_missing_is_not_found,
    list_returns_exactly_the_names_under_a_prefix,
    delete_then_get_is_not_found,
    concurrent_puts_to_50_names_all_land,
    four_mib_round_trips,
);

mod cases {
    use super::*;

    fn is_s3(label: &str) -> bool {
        label.starts_with("s3")
    }

    pub async fn reserve_then_get_returns_content(label: &str, store: &dyn PadStore) {
        store
            .reserve("p/a1", Bytes::from_static(b"hello pad"))
            .await
            .unwrap_or_else(|e| panic!("{label}: reserve: {e}"));
        let content = store.get("p/a1").await.unwrap();
        assert_eq!(content, Bytes::from_static(b"hello pad"), "{label}");
        // An empty pad is a pad too.
        store.reserve("p/empty", Bytes::new()).await.unwrap();
        assert_eq!(store.get("p/empty").await.unwrap(), Bytes::new(), "{label}");
    }

    pub async fn reserve_twice_is_already_exists(label: &str, store: &dyn PadStore) {
        store
            .reserve("p/twice", Bytes::from_static(b"first"))
            .await
            .unwrap();
        let second = store
            .reserve("p/twice", Bytes::from_static(b"second"))
            .await;
        assert_eq!(
            second,
            Err(BackendError::AlreadyExists("p/twice".into())),
            "{label}"
        );
        assert_eq!(
            store.get("p/twice").await.unwrap(),
            Bytes::from_static(b"first"),
            "{label}: a refused reserve must not overwrite"
        );
    }

    pub async fn concurrent_reserves_have_one_winner(label: &str, store: &dyn PadStore) {
        let attempts = (0..8u8).map(|i| store.reserve("p/race", Bytes::from(vec![i; 16])));
        let results = join_all(attempts).await;
        let winners = results.iter().filter(|result| result.is_ok()).count();
        for result in &results {
            assert!(
                matches!(result, Ok(()) | Err(BackendError::AlreadyExists(_))),
                "{label}: {result:?}"
            );
        }
        if is_s3(label) {
            // Best-effort on S3 services that ignore conditional writes (Garage).
            assert!(winners >= 1, "{label}: no reserve won");
        } else {
            assert_eq!(winners, 1, "{label}: exactly one reserve creates the pad");
        }
        let content = store.get("p/race").await.unwrap();
        assert_eq!(content.len(), 16, "{label}");
    }

    pub async fn put_overwrites_and_verify_passes(label: &str, store: &dyn PadStore) {
        store
            .reserve("p/over", Bytes::from_static(b"old content, longer"))
            .await
            .unwrap();
        let receipt = store
            .put("p/over", Bytes::from_static(b"new content"))
            .await
            .unwrap();
        assert_eq!(receipt.size, 11, "{label}");
        store
            .verify("p/over", &receipt)
            .await
            .unwrap_or_else(|e| panic!("{label}: verify: {e}"));
        assert_eq!(
            store.get("p/over").await.unwrap(),
            Bytes::from_static(b"new content"),
            "{label}"
        );
        // A put creates a missing object too.
        let receipt = store
            .put("i/fresh", Bytes::from_static(b"index"))
            .await
            .unwrap();
        store.verify("i/fresh", &receipt).await.unwrap();
        assert_eq!(
            store.get("i/fresh").await.unwrap(),
            Bytes::from_static(b"index")
        );
    }

    pub async fn verify_with_wrong_receipt_fails(label: &str, store: &dyn PadStore) {
        let receipt = store
            .put("p/v", Bytes::from_static(b"twelve bytes"))
            .await
            .unwrap();
        let wrong_size = PutReceipt {
            size: receipt.size + 1,
            ..receipt.clone()
        };
        let result = store.verify("p/v", &wrong_size).await;
        assert!(
            matches!(result, Err(BackendError::Transient(_))),
            "{label}: {result:?}"
        );
        // A receipt of an older put no longer matches where tags exist.
        let newer = store
            .put("p/v", Bytes::from_static(b"other twelve"))
            .await
            .unwrap();
        if receipt.e_tag.is_some() && newer.e_tag.is_some() && receipt.e_tag != newer.e_tag {
            let result = store.verify("p/v", &receipt).await;
            assert!(
                matches!(result, Err(BackendError::Transient(_))),
                "{label}: {result:?}"
            );
        }
        store.verify("p/v", &newer).await.unwrap();
        let missing = store.verify("p/never", &receipt).await;
        assert_eq!(
            missing,
            Err(BackendError::NotFound("p/never".into())),
            "{label}"
        );
    }

    pub async fn get_missing_is_not_found(label: &str, store: &dyn PadStore) {
        assert_eq!(
            store.get("p/none").await,
            Err(BackendError::NotFound("p/none".into())),
            "{label}"
        );
        assert_eq!(
            store.get("deep/er/none").await,
            Err(BackendError::NotFound("deep/er/none".into())),
            "{label}"
        );
    }

    pub async fn list_returns_exactly_the_names_under_a_prefix(label: &str, store: &dyn PadStore) {
        let names = ["p/abc", "p/abd", "p/b", "p/sub/x", "i/index", "pz"];
        for name in names {
            store
                .put(name, Bytes::from(name.as_bytes().to_vec()))
                .await
                .unwrap();
        }
        let listed = |prefix: &'static str| async move {
            let names = store
                .list(prefix)
                .await
                .unwrap_or_else(|e| panic!("{label}: list {prefix:?}: {e}"));
            let set: BTreeSet<String> = names.iter().cloned().collect();
            assert_eq!(set.len(), names.len(), "{label}: duplicates in {names:?}");
            set
        };
        let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(listed("p/ab").await, set(&["p/abc", "p/abd"]), "{label}");
        assert_eq!(
            listed("p/").await,
            set(&["p/abc", "p/abd", "p/b", "p/sub/x"]),
            "{label}"
        );
        assert_eq!(
            listed("p").await,
            set(&["p/abc", "p/abd", "p/b", "p/sub/x", "pz"]),
            "{label}"
        );
        assert_eq!(listed("p/sub/").await, set(&["p/sub/x"]), "{label}");
        // The writer lock's own object (the case runs under the lock) aside.
        let mut everything = listed("").await;
        everything.retain(|name| name != ".lock" && name != "lease");
        assert_eq!(everything, set(&names), "{label}");
        assert_eq!(listed("q").await, set(&[]), "{label}");
        assert_eq!(listed("nothing/here/").await, set(&[]), "{label}");
    }

    pub async fn delete_then_get_is_not_found(label: &str, store: &dyn PadStore) {
        store
            .put("p/gone", Bytes::from_static(b"bye"))
            .await
            .unwrap();
        store
            .delete("p/gone")
            .await
            .unwrap_or_else(|e| panic!("{label}: delete: {e}"));
        assert_eq!(
            store.get("p/gone").await,
            Err(BackendError::NotFound("p/gone".into())),
            "{label}"
        );
        assert!(store.list("p/").await.unwrap().is_empty(), "{label}");
        store.delete("p/gone").await.unwrap();
        store.delete("p/never-was").await.unwrap();
        // The name can be reserved again after a delete.
        store
            .reserve("p/gone", Bytes::from_static(b"again"))
            .await
            .unwrap();
    }

    pub async fn concurrent_puts_to_50_names_all_land(label: &str, store: &dyn PadStore) {
        let names: Vec<String> = (0..50).map(|i| format!("c/{i:03}")).collect();
        let content = |i: usize| Bytes::from(format!("content of pad {i}").repeat(i + 1));
        let puts = names
            .iter()
            .enumerate()
            .map(|(i, name)| store.put(name, content(i)));
        for (i, result) in join_all(puts).await.into_iter().enumerate() {
            let receipt = result.unwrap_or_else(|e| panic!("{label}: put {i}: {e}"));
            assert_eq!(receipt.size, content(i).len() as u64, "{label}");
        }
        let gets = join_all(names.iter().map(|name| store.get(name))).await;
        for (i, result) in gets.into_iter().enumerate() {
            assert_eq!(result.unwrap(), content(i), "{label}: pad {i}");
        }
        let listed: BTreeSet<String> = store.list("c/").await.unwrap().into_iter().collect();
        assert_eq!(listed, names.into_iter().collect(), "{label}");
    }

    pub async fn four_mib_round_trips(label: &str, store: &dyn PadStore) {
        let content: Bytes = (0..4 * 1024 * 1024u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect::<Vec<u8>>()
            .into();
        store.reserve("p/big", Bytes::new()).await.unwrap();
        let receipt = store.put("p/big", content.clone()).await.unwrap();
        assert_eq!(receipt.size, 4 * 1024 * 1024, "{label}");
        store.verify("p/big", &receipt).await.unwrap();
        let back = store.get("p/big").await.unwrap();
        assert!(back == content, "{label}: 4 MiB content differs");
    }
}

/// The writer lock, across handles (as separate processes would hold them):
/// three handles each increment a counter object twice under the lock;
/// no increment is lost and no two holders are ever inside at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writer_lock_serialises_handles() {
    for backend in backends().await {
        let label = &backend.label;
        let inside = Arc::new(AtomicU64::new(0));
        let peak = Arc::new(AtomicU64::new(0));
        let mut writers = Vec::new();
        for _ in 0..3 {
            let store = open(&backend.url, &no_options()).await.unwrap();
            let (inside, peak) = (Arc::clone(&inside), Arc::clone(&peak));
            writers.push(tokio::spawn(async move {
                for _ in 0..2 {
                    let lock = store.lock_writer(&[1; 16]).await?;
                    let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    lock.check().await?;
                    let count: u64 = match store.get("counter").await {
                        Ok(bytes) => String::from_utf8_lossy(&bytes).parse().unwrap(),
                        Err(BackendError::NotFound(_)) => 0,
                        Err(error) => return Err(error),
                    };
                    store
                        .put("counter", Bytes::from((count + 1).to_string()))
                        .await?;
                    inside.fetch_sub(1, Ordering::SeqCst);
                    drop(lock);
                }
                Ok::<_, BackendError>(())
            }));
        }
        for writer in writers {
            writer
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("{label}: {e}"));
        }
        assert_eq!(
            backend.store.get("counter").await.unwrap(),
            Bytes::from("6"),
            "{label}: an increment was lost"
        );
        assert_eq!(
            peak.load(Ordering::SeqCst),
            1,
            "{label}: two holders at once"
        );
        cleanup(backend.store.as_ref()).await;
    }
}

// ---------------------------------------------------------------------------
// The simulation's own behaviour.

async fn sim_over_memory(config: SimConfig) -> (Arc<SimPadStore>, Arc<dyn PadStore>) {
    let inner = open("memory://", &no_options()).await.unwrap();
    let sim = Arc::new(SimPadStore::new(Arc::clone(&inner), config));
    (sim, inner)
}

fn stats(sim: &SimPadStore) -> anthill::pad_store::SimStats {
    sim.stats().expect("a simulated store has stats")
}

#[tokio::test]
async fn sim_counts_each_op_kind_and_bytes() {
    let mut config = SimConfig::default();
    config.pad_price = Some(0.5);
    let (sim, _) = sim_over_memory(config).await;
    for name in ["p/1", "p/2", "p/3"] {
        sim.reserve(name, Bytes::from(vec![7; 10])).await.unwrap();
    }
    assert!(sim.reserve("p/1", Bytes::from(vec![7; 10])).await.is_err());
    let r1 = sim.put("p/1", Bytes::from(vec![1; 100])).await.unwrap();
    let r2 = sim.put("p/2", Bytes::from(vec![2; 50])).await.unwrap();
    sim.verify("p/1", &r1).await.unwrap();
    sim.verify("p/2", &r2).await.unwrap();
    assert_eq!(sim.get("p/1").await.unwrap().len(), 100);
    assert!(sim.get("p/missing").await.is_err());
    assert_eq!(sim.list("p/").await.unwrap().len(), 3);
    sim.delete("p/3").await.unwrap();

    let s = stats(&sim);
    let op = |calls, bytes| OpStats {
        calls,
        failures: 0,
        in_flight: 0,
        peak_in_flight: 1,
        bytes,
    };
    // The refused reserve sent nothing and is an answer, not a failure.
    assert_eq!(s.reserve, op(4, 30));
    assert_eq!(s.put, op(2, 150));
    assert_eq!(s.verify, op(2, 0));
    assert_eq!(s.get, op(2, 100));
    assert_eq!(s.list, op(1, 0));
    assert_eq!(s.delete, op(1, 0));
    assert_eq!(s.pads_reserved, 3);
    assert_eq!(s.cost, 1.5);
    assert_eq!(sim.price_per_pad(), Some(0.5));
    for kind in OpKind::ALL {
        assert_eq!(s.op(kind).in_flight, 0);
    }
}

#[tokio::test]
async fn sim_peak_in_flight_reaches_the_concurrency_and_no_more() {
    let mut config = SimConfig::default();
    config.latency_ms = 5.0;
    config.jitter_ms = 2.0;
    config.seed = Some(1);
    let (sim, _) = sim_over_memory(config).await;
    let names: Vec<String> = (0..12).map(|i| format!("p/{i}")).collect();
    for name in &names {
        sim.put(name, Bytes::from_static(b"x")).await.unwrap();
    }
    assert_eq!(stats(&sim).put.peak_in_flight, 1);

    let gets = names.iter().take(8).map(|name| sim.get(name));
    let puts = names[8..]
        .iter()
        .map(|name| sim.put(name, Bytes::from_static(b"y")));
    let (got, put) = futures::join!(join_all(gets), join_all(puts));
    assert!(got.iter().all(Result::is_ok) && put.iter().all(Result::is_ok));
    let s = stats(&sim);
    assert_eq!(s.get.peak_in_flight, 8);
    assert_eq!(s.put.peak_in_flight, 4);
    assert_eq!((s.get.in_flight, s.put.in_flight), (0, 0));
    assert_eq!(s.reserve.peak_in_flight, 0);

    sim.reset_peaks();
    assert_eq!(stats(&sim).get.peak_in_flight, 0);
    join_all(names.iter().take(3).map(|name| sim.get(name))).await;
    assert_eq!(stats(&sim).get.peak_in_flight, 3);
}

#[tokio::test]
async fn sim_fail_rate_one_fails_every_op_transiently() {
    let mut config = SimConfig::default();
    config.fail_rate = 1.0;
    config.seed = Some(3);
    let (sim, _) = sim_over_memory(config).await;
    let receipt = PutReceipt {
        e_tag: None,
        size: 1,
    };
    let results = vec![
        sim.reserve("p/a", Bytes::from_static(b"a"))
            .await
            .map(|_| ()),
        sim.put("p/a", Bytes::from_static(b"a")).await.map(|_| ()),
        sim.put_durable("p/a", Bytes::from_static(b"a"))
            .await
            .map(|_| ()),
        sim.verify("p/a", &receipt).await,
        sim.get("p/a").await.map(|_| ()),
        sim.list("p/").await.map(|_| ()),
        sim.delete("p/a").await,
    ];
    for result in &results {
        assert!(
            matches!(result, Err(BackendError::Transient(m)) if m.contains("simulated")),
            "{result:?}"
        );
    }
    let s = stats(&sim);
    for kind in OpKind::ALL {
        assert_eq!(s.op(kind).calls, 1, "{kind:?}");
        assert_eq!(s.op(kind).failures, 1, "{kind:?}");
    }
    sim.set_fail_rate(0.0);
    sim.put("p/a", Bytes::from_static(b"ok")).await.unwrap();
    assert_eq!(sim.get("p/a").await.unwrap(), Bytes::from_static(b"ok"));
}

#[tokio::test]
async fn sim_fail_next_hits_exactly_the_nth_call_of_its_kind() {
    let (sim, inner) = sim_over_memory(SimConfig::default()).await;
    sim.fail_next(OpKind::Put, 3, true);
    sim.fail_next(OpKind::Get, 1, false);

    sim.put("p/x", Bytes::from_static(b"one")).await.unwrap();
    // Calls of other kinds do not count towards the put's countdown.
    assert!(matches!(
        sim.get("p/x").await,
        Err(BackendError::Transient(_))
    ));
    assert_eq!(sim.get("p/x").await.unwrap(), Bytes::from_static(b"one"));
    sim.put("p/x", Bytes::from_static(b"two")).await.unwrap();
    let third = sim.put("p/x", Bytes::from_static(b"three")).await;
    assert!(
        matches!(&third, Err(BackendError::Permanent(m)) if m.contains("simulated")),
        "{third:?}"
    );
    // The fault struck before the backend: the third put did not land.
    assert_eq!(inner.get("p/x").await.unwrap(), Bytes::from_static(b"two"));
    sim.put("p/x", Bytes::from_static(b"four")).await.unwrap();
    sim.put("p/x", Bytes::from_static(b"five")).await.unwrap();
    let s = stats(&sim);
    assert_eq!((s.put.calls, s.put.failures), (5, 1));
    assert_eq!((s.get.calls, s.get.failures), (2, 1));
}

#[tokio::test]
async fn sim_lost_ack_leaves_the_object_created() {
    let mut config = SimConfig::default();
    config.pad_price = Some(2.0);
    let (sim, inner) = sim_over_memory(config).await;
    sim.lose_ack_next(OpKind::Reserve, 1);
    let first = sim.reserve("p/lost", Bytes::from_static(b"pad")).await;
    assert!(
        matches!(first, Err(BackendError::Transient(_))),
        "{first:?}"
    );
    assert_eq!(
        inner.get("p/lost").await.unwrap(),
        Bytes::from_static(b"pad")
    );
    assert_eq!(
        sim.reserve("p/lost", Bytes::from_static(b"pad")).await,
        Err(BackendError::AlreadyExists("p/lost".into()))
    );
    let s = stats(&sim);
    // The network charged for the pad although the caller saw a failure.
    assert_eq!(s.pads_reserved, 1);
    assert_eq!(s.cost, 2.0);
    assert_eq!(s.reserve.bytes, 3);
}

#[tokio::test]
async fn sim_random_failures_may_create_the_object_and_a_retry_sees_it() {
    let mut config = SimConfig::default();
    config.fail_rate = 0.5;
    config.seed = Some(42);
    let (sim, inner) = sim_over_memory(config).await;
    let mut already_exists_after_failure = 0;
    for i in 0..200 {
        let name = format!("p/{i}");
        let mut failed_before = false;
        let outcome = loop {
            match sim.reserve(&name, Bytes::from_static(b"pad")).await {
                Err(BackendError::Transient(_)) => failed_before = true,
                other => break other,
            }
        };
        match outcome {
            Ok(()) => {}
            Err(BackendError::AlreadyExists(_)) => {
                assert!(failed_before, "{name}: AlreadyExists without a failure");
                already_exists_after_failure += 1;
            }
            other => panic!("{name}: {other:?}"),
        }
        assert_eq!(inner.get(&name).await.unwrap(), Bytes::from_static(b"pad"));
    }
    assert!(
        already_exists_after_failure > 0,
        "no failure struck after the reserve in 200 tries at fail_rate 0.5"
    );
    let s = stats(&sim);
    assert_eq!(s.pads_reserved, 200, "each pad is created exactly once");
    assert!(s.reserve.failures > 0);
    assert_eq!(s.reserve.calls, s.reserve.failures + 200);
}

#[tokio::test]
async fn sim_op_log_records_start_and_end_in_order() {
    let mut config = SimConfig::default();
    config.latency_ms = 2.0;
    let (sim, _) = sim_over_memory(config).await;
    let record = |kind, phase, name: &str, ok| OpRecord {
        kind,
        phase,
        name: name.into(),
        ok,
    };
    sim.reserve("p/a", Bytes::from_static(b"a")).await.unwrap();
    sim.get("p/a").await.unwrap();
    sim.get("p/b").await.unwrap_err();
    assert_eq!(
        sim.op_log(),
        vec![
            record(OpKind::Reserve, Phase::Start, "p/a", true),
            record(OpKind::Reserve, Phase::End, "p/a", true),
            record(OpKind::Get, Phase::Start, "p/a", true),
            record(OpKind::Get, Phase::End, "p/a", true),
            record(OpKind::Get, Phase::Start, "p/b", true),
            record(OpKind::Get, Phase::End, "p/b", false),
        ]
    );

    sim.clear_log();
    assert!(sim.op_log().is_empty());
    join_all(["p/a", "p/a", "p/a"].map(|name| sim.get(name))).await;
    let phases: Vec<Phase> = sim.op_log().iter().map(|r| r.phase).collect();
    assert_eq!(
        phases,
        [
            Phase::Start,
            Phase::Start,
            Phase::Start,
            Phase::End,
            Phase::End,
            Phase::End
        ]
    );

    // A call dropped mid-way leaves the in-flight count and logs its end.
    sim.clear_log();
    let pending = sim.get("p/a").now_or_never();
    assert!(pending.is_none(), "the latency keeps the call pending");
    assert_eq!(stats(&sim).get.in_flight, 0);
    assert_eq!(
        sim.op_log(),
        vec![
            record(OpKind::Get, Phase::Start, "p/a", true),
            record(OpKind::Get, Phase::End, "p/a", false),
        ]
    );
}

// ---------------------------------------------------------------------------
// URLs.

fn assert_invalid(result: Result<Arc<dyn PadStore>, Error>, url: &str, expect: &str) {
    match result {
        Err(Error::InvalidInput(message)) => assert!(
            message.contains(expect),
            "{url}: message {message:?} should mention {expect:?}"
        ),
        Err(other) => panic!("{url}: expected InvalidInput, got {other:?}"),
        Ok(store) => panic!("{url}: expected InvalidInput, opened {}", store.describe()),
    }
}

#[tokio::test]
async fn urls_open_memory_file_and_sim() {
    let name = unique("named");
    let memory = open(&format!("memory://{name}"), &no_options())
        .await
        .unwrap();
    assert_eq!(memory.describe(), format!("memory://{name}"));
    assert!(memory.stats().is_none());
    assert_eq!(memory.price_per_pad(), None);

    let dir = TempDir::new().unwrap();
    let path = dir.path().join("sub").join("store");
    let url = format!("file://{}", path.display());
    let folder = open(&url, &no_options()).await.unwrap();
    assert!(path.is_dir(), "the folder is created");
    assert_eq!(folder.describe(), url);
    folder
        .put("p/x", Bytes::from_static(b"on disk"))
        .await
        .unwrap();
    assert_eq!(std::fs::read(path.join("p").join("x")).unwrap(), b"on disk");

    // A plain path, absolute or relative to the current folder.
    let plain = open(path.to_str().unwrap(), &no_options()).await.unwrap();
    assert_eq!(
        plain.get("p/x").await.unwrap(),
        Bytes::from_static(b"on disk")
    );
    let relative = format!("target/{}", unique("relative-store"));
    let store = open(&relative, &no_options()).await.unwrap();
    let absolute = std::env::current_dir().unwrap().join(&relative);
    assert!(absolute.is_dir());
    assert!(
        store.describe().ends_with(&relative),
        "{}",
        store.describe()
    );
    std::fs::remove_dir_all(absolute).unwrap();

    let sim = open(
        &format!("sim+memory://{name}?latency_ms=1&jitter_ms=2&fail_rate=0.25&pad_price=3&seed=7"),
        &no_options(),
    )
    .await
    .unwrap();
    assert_eq!(sim.price_per_pad(), Some(3.0));
    assert_eq!(
        sim.describe(),
        format!("sim+memory://{name}?latency_ms=1&jitter_ms=2&fail_rate=0.25&pad_price=3&seed=7")
    );
    assert_eq!(stats_of(&sim).pads_reserved, 0);

    let sim_folder = open(
        &format!("sim+{}?latency_ms=0", path.display()),
        &no_options(),
    )
    .await
    .unwrap();
    assert_eq!(
        sim_folder.get("p/x").await.unwrap(),
        Bytes::from_static(b"on disk")
    );
    assert!(sim_folder.stats().is_some());
}

fn stats_of(store: &Arc<dyn PadStore>) -> anthill::pad_store::SimStats {
    store.stats().expect("a sim+ store has stats")
}

#[tokio::test]
async fn urls_two_opens_of_one_memory_name_share_data() {
    let url = format!("memory://{}", unique("shared"));
    let first = open(&url, &no_options()).await.unwrap();
    let second = open(&url, &no_options()).await.unwrap();
    first
        .put("p/s", Bytes::from_static(b"shared"))
        .await
        .unwrap();
    assert_eq!(
        second.get("p/s").await.unwrap(),
        Bytes::from_static(b"shared")
    );
    // Through a simulation too.
    let sim = open(&format!("sim+{url}?latency_ms=1"), &no_options())
        .await
        .unwrap();
    assert_eq!(sim.get("p/s").await.unwrap(), Bytes::from_static(b"shared"));

    let anonymous = open("memory://", &no_options()).await.unwrap();
    let other = open("memory://", &no_options()).await.unwrap();
    anonymous
        .put("p/s", Bytes::from_static(b"mine"))
        .await
        .unwrap();
    assert_eq!(
        other.get("p/s").await,
        Err(BackendError::NotFound("p/s".into()))
    );
}

#[tokio::test]
async fn urls_bad_urls_and_parameters_are_invalid_input() {
    let dir = TempDir::new().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a folder").unwrap();
    let file = file.display().to_string();
    let cases: Vec<(String, &str)> = vec![
        ("".into(), "empty"),
        ("   ".into(), "empty"),
        ("ftp://host/x".into(), "unknown backend scheme"),
        ("memory:x".into(), "malformed"),
        ("memory://x?foo=1".into(), "foo"),
        ("file:///tmp/x?foo=1".into(), "foo"),
        ("file://relative/x".into(), "absolute"),
        (file.clone(), "is a file, not a folder"),
        (format!("file://{file}/sub"), "cannot create"),
        ("sim+".into(), "sim+ needs a backend URL"),
        ("sim+memory://x?fail_rate=2".into(), "fail_rate"),
        ("sim+memory://x?fail_rate=-0.1".into(), "fail_rate"),
        ("sim+memory://x?latency_ms=-1".into(), "latency_ms"),
        ("sim+memory://x?latency_ms=abc".into(), "latency_ms"),
        ("sim+memory://x?jitter_ms=inf".into(), "jitter_ms"),
        ("sim+memory://x?pad_price=NaN".into(), "pad_price"),
        ("sim+memory://x?seed=-3".into(), "seed"),
        ("sim+memory://x?seed=1&seed=2".into(), "twice"),
        ("sim+memory://x?bogus=1".into(), "bogus"),
        ("sim+ftp://x".into(), "unknown backend scheme"),
        ("s3://".into(), "bucket"),
        ("s3://bucket/p?nope=1".into(), "unknown S3 option \"nope\""),
        (
            "s3://bucket/p?bucket=other".into(),
            "bucket comes from the URL",
        ),
        ("s3://bucket/p?max_retries=many".into(), "max_retries"),
        (
            "s3://bucket/p?conditional_writes=maybe".into(),
            "conditional_writes",
        ),
        ("s3://bucket/p?lease_ttl_secs=0.5".into(), "lease_ttl_secs"),
        ("s3://bucket/p?lock_wait_secs=soon".into(), "lock_wait_secs"),
    ];
    for (url, expect) in cases {
        assert_invalid(open(&url, &no_options()).await, &url, expect);
    }
    // The sim error names what is accepted.
    assert_invalid(
        open("sim+memory://x?bogus=1", &no_options()).await,
        "bogus",
        "latency_ms, jitter_ms, fail_rate, pad_price, seed",
    );
    let mut options = BackendOptions::default();
    options.options = vec![("region".into(), "x".into())];
    assert_invalid(
        open("memory://x", &options).await,
        "memory + options",
        "region",
    );
}

#[tokio::test]
async fn urls_s3_opens_offline_and_keeps_secrets_out_of_describe() {
    let url = "s3://bucket/pre/fix?endpoint=http://127.0.0.1:9&region=garage&allow_http=true\
               &access_key_id=AKID&secret_access_key=SECRET";
    let store = open(url, &no_options()).await.unwrap();
    assert_eq!(
        store.describe(),
        "s3://bucket/pre/fix?endpoint=http://127.0.0.1:9"
    );
    let mut options = BackendOptions::default();
    options.options = vec![
        ("endpoint".into(), "http://127.0.0.1:9".into()),
        ("region".into(), "garage".into()),
        ("allow_http".into(), "true".into()),
        ("access_key_id".into(), "AKID".into()),
        ("secret_access_key".into(), "SECRET".into()),
    ];
    let store = open("s3://bucket", &options).await.unwrap();
    assert!(!store.describe().contains("SECRET"));
    let sim = open(&format!("sim+{url}&latency_ms=1"), &no_options())
        .await
        .unwrap();
    assert!(
        sim.describe()
            .starts_with("sim+s3://bucket/pre/fix?endpoint=")
    );
    assert!(!sim.describe().contains("SECRET"));
}

// ---------------------------------------------------------------------------
// S3 failures, classified: a fake S3 server on loopback answers every request
// with one canned response.

/// Serves `status` and `body` to every request; returns the port.
fn fake_s3(status: &'static str, body: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buffer = [0u8; 8192];
            // Read the head and any body announced by Content-Length.
            while let Ok(read) = stream.read(&mut buffer) {
                if read == 0 {
                    break;
                }
                request.extend_from_slice(&buffer[..read]);
                let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text
                        .lines()
                        .find_map(|line| line.strip_prefix("content-length:"))
                        .and_then(|value| value.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/xml\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes());
        }
    });
    port
}

async fn s3_at(port: u16) -> Arc<dyn PadStore> {
    let url = format!(
        "s3://bucket-x/prefix?endpoint=http://127.0.0.1:{port}&region=garage&allow_http=true\
         &access_key_id=AKID&secret_access_key=SECRET&max_retries=0"
    );
    open(&url, &no_options()).await.unwrap()
}

#[tokio::test]
async fn s3_wrong_credentials_are_permanent() {
    let port = fake_s3(
        "403 Forbidden",
        "<Error><Code>InvalidAccessKeyId</Code><Message>no such key</Message></Error>",
    );
    let store = s3_at(port).await;
    // Reads only: a write is refused before any request without the writer
    // lease, which this server cannot grant (see
    // `s3_writes_without_the_writer_lease_are_refused`).
    for result in [
        store.get("p/a").await.map(|_| ()),
        store.list("p/").await.map(|_| ()),
    ] {
        assert!(
            matches!(&result, Err(BackendError::Permanent(m)) if m.contains("wrong credentials")),
            "{result:?}"
        );
    }
}

#[tokio::test]
async fn s3_missing_bucket_is_permanent() {
    let port = fake_s3(
        "404 Not Found",
        "<Error><Code>NoSuchBucket</Code><Message>gone</Message></Error>",
    );
    let store = s3_at(port).await;
    for result in [
        store.get("p/a").await.map(|_| ()),
        store.list("").await.map(|_| ()),
    ] {
        assert!(
            matches!(&result, Err(BackendError::Permanent(m))
                if m.contains("bucket bucket-x does not exist")),
            "{result:?}"
        );
    }
}

#[tokio::test]
async fn s3_missing_object_is_not_found() {
    let port = fake_s3(
        "404 Not Found",
        "<Error><Code>NoSuchKey</Code><Message>no</Message></Error>",
    );
    let store = s3_at(port).await;
    assert_eq!(
        store.get("p/a").await,
        Err(BackendError::NotFound("p/a".into()))
    );
}

#[tokio::test]
async fn s3_server_errors_and_throttling_are_transient() {
    for (status, body) in [
        (
            "503 Service Unavailable",
            "<Error><Code>SlowDown</Code></Error>",
        ),
        ("500 Internal Server Error", ""),
        ("429 Too Many Requests", ""),
    ] {
        let store = s3_at(fake_s3(status, body)).await;
        let result = store.get("p/a").await;
        assert!(
            result.as_ref().is_err_and(BackendError::is_transient),
            "{status}: {result:?}"
        );
    }
}

#[tokio::test]
async fn s3_unreachable_endpoint_is_transient() {
    // A port that was just free: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let store = s3_at(port).await;
    let result = store.get("p/a").await;
    assert!(
        result.as_ref().is_err_and(BackendError::is_transient),
        "{result:?}"
    );
}

#[tokio::test]
async fn s3_writes_without_the_writer_lease_are_refused() {
    // Every request answers 200, as if every write would land: without the
    // writer lease none is made. (How `reserve` checks for an existing
    // object first is tested beside it, in `object.rs`.)
    let store = s3_at(fake_s3("200 OK", "")).await;
    for result in [
        store.reserve("p/a", Bytes::from_static(b"a")).await,
        store.put("p/a", Bytes::from_static(b"a")).await.map(|_| ()),
        store.delete("p/a").await,
    ] {
        assert!(
            matches!(&result, Err(BackendError::Permanent(m))
                if m.contains("does not hold the writer lease")),
            "{result:?}"
        );
    }
}
