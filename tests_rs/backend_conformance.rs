//! One conformance suite run against every backend: memory, local folder
//! and simulation over memory always, and S3 in the `s3` variant of each
//! case, which is `#[ignore]`d since it needs a Garage cluster (see
//! `tests_rs/s3.rs`: `ANTHILL_TEST_S3_URL` names the store, with the
//! credentials in `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` or in the
//! URL's query; `eval "$(scripts/garage.sh start 3)"` exports all of them).
//! The simulation's own behaviour, URL parsing and S3 failures have suites
//! of their own (`sim.rs`, `backend_urls.rs`, `s3_failures.rs`).

use crate::unique;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anthill::pad_store::{Backend, BackendError, BackendOptions, PutReceipt, open};
use bytes::Bytes;
use futures::future::join_all;
use tempfile::TempDir;

/// A backend under test; `url` opens more handles on the same store, and
/// `_dir` keeps a folder backend's folder alive.
struct TestBackend {
    label: String,
    url: String,
    store: Arc<dyn Backend>,
    _dir: Option<TempDir>,
}

fn no_options() -> BackendOptions {
    BackendOptions::default()
}

/// The local backends the suite runs against, each empty.
async fn local_backends() -> Vec<TestBackend> {
    let mut list = Vec::new();
    let url = format!("memory://{}", unique("conformance"));
    let memory = open(&url, &no_options()).await.expect("memory://");
    list.push(TestBackend {
        label: "memory".into(),
        url,
        store: memory,
        _dir: None,
    });

    let dir = TempDir::new().expect("temp dir");
    let path = dir.path().to_str().expect("utf-8 temp path").to_owned();
    let folder = open(&path, &no_options()).await.expect("folder");
    list.push(TestBackend {
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
    list.push(TestBackend {
        label: "sim+memory".into(),
        url,
        store: sim,
        _dir: None,
    });
    list
}

/// The test cluster's S3 store, under a fresh prefix per test, which keeps
/// the shared bucket's tests apart.
async fn s3_backend() -> TestBackend {
    let base = crate::s3::base_url();
    let (base, query) = base.split_once('?').unwrap_or((&base, ""));
    let url = format!(
        "{}/{}?{query}",
        base.trim_end_matches('/'),
        unique("conformance")
    );
    let store = open(&url, &no_options())
        .await
        .expect("the test cluster's S3 URL");
    TestBackend {
        label: format!("s3 ({})", store.describe()),
        url,
        store,
        _dir: None,
    }
}

/// Removes what a case left (it matters for S3 only; the others are
/// dropped), under the writer lock like every write.
async fn cleanup(store: &dyn Backend) {
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

/// Runs the case `$case` against `$backend` under the writer lock (on S3
/// every write is refused without it), then cleans up.
macro_rules! run_case {
    ($case:ident, $backend:expr) => {{
        let backend = $backend;
        let lock = backend
            .store
            .lock_writer(&[0; 16])
            .await
            .expect("writer lock");
        super::cases::$case(&backend.label, backend.store.as_ref()).await;
        lock.release().await;
        drop(lock);
        cleanup(backend.store.as_ref()).await;
    }};
}

/// A module per case with two tests: `local`, against every local backend,
/// and `s3`, against the test cluster (ignored unless asked for).
macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        $(
            mod $case {
                use super::*;

                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn local() {
                    for backend in local_backends().await {
                        run_case!($case, backend);
                    }
                }

                #[ignore = "needs a Garage cluster (see tests_rs/s3.rs)"]
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn s3() {
                    run_case!($case, s3_backend().await);
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
    ranged_reads_return_the_range_cut_at_the_end,
    get_many_reads_each_name_as_get_capped_does,
);

mod cases {
    use super::*;

    pub async fn ranged_reads_return_the_range_cut_at_the_end(label: &str, store: &dyn Backend) {
        let content: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        store
            .put("p/ranged", Bytes::from(content.clone()))
            .await
            .unwrap_or_else(|e| panic!("{label}: put: {e}"));
        for range in [0..1, 1000..70_000, 299_999..300_000, 0..300_000] {
            let got = store
                .get_range("p/ranged", range.clone())
                .await
                .unwrap_or_else(|e| panic!("{label}: get_range {range:?}: {e}"));
            assert_eq!(
                got[..],
                content[range.start as usize..range.end as usize],
                "{label}: {range:?}"
            );
        }
        // Reaching past the end: cut there.
        let tail = store.get_range("p/ranged", 299_000..400_000).await.unwrap();
        assert_eq!(tail[..], content[299_000..], "{label}");
        // Starting past the end, or on a missing object: errors.
        assert!(
            store.get_range("p/ranged", 300_000..300_010).await.is_err(),
            "{label}: a range starting at the end"
        );
        assert!(
            matches!(
                store.get_range("p/absent", 0..10).await,
                Err(BackendError::NotFound(_))
            ),
            "{label}: a missing object"
        );
        assert!(store.capabilities().ranged_reads, "{label}");
    }

    pub async fn get_many_reads_each_name_as_get_capped_does(label: &str, store: &dyn Backend) {
        for (name, len) in [("j/0", 10), ("j/1", 300), ("j/3", 20)] {
            store
                .put(name, Bytes::from(vec![len as u8; len]))
                .await
                .unwrap_or_else(|e| panic!("{label}: put {name}: {e}"));
        }
        let names: Vec<String> = ["j/0", "j/1", "j/2", "j/3", "bad//name"]
            .map(String::from)
            .into();
        let read = store.get_many(&names, 100).await;
        assert_eq!(read.len(), names.len(), "{label}: one result per name");
        assert_eq!(read[0], Ok(Bytes::from(vec![10u8; 10])), "{label}");
        assert!(
            matches!(
                read[1],
                Err(BackendError::TooLarge {
                    size: 300,
                    max: 100,
                    ..
                })
            ),
            "{label}: {:?}",
            read[1]
        );
        assert_eq!(
            read[2],
            Err(BackendError::NotFound("j/2".into())),
            "{label}"
        );
        assert_eq!(read[3], Ok(Bytes::from(vec![20u8; 20])), "{label}");
        assert!(read[4].is_err(), "{label}: an invalid name");
        assert!(store.get_many(&[], 100).await.is_empty(), "{label}");
    }

    pub async fn reserve_then_get_returns_content(label: &str, store: &dyn Backend) {
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

    pub async fn reserve_twice_is_already_exists(label: &str, store: &dyn Backend) {
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

    pub async fn concurrent_reserves_have_one_winner(label: &str, store: &dyn Backend) {
        let attempts = (0..8u8).map(|i| store.reserve("p/race", Bytes::from(vec![i; 16])));
        let results = join_all(attempts).await;
        let winners = results.iter().filter(|result| result.is_ok()).count();
        for result in &results {
            assert!(
                matches!(result, Ok(()) | Err(BackendError::AlreadyExists(_))),
                "{label}: {result:?}"
            );
        }
        if store.capabilities().atomic_create {
            assert_eq!(winners, 1, "{label}: exactly one reserve creates the pad");
        } else {
            // Best-effort on S3 services that ignore conditional writes (Garage).
            assert!(winners >= 1, "{label}: no reserve won");
        }
        let content = store.get("p/race").await.unwrap();
        assert_eq!(content.len(), 16, "{label}");
    }

    pub async fn put_overwrites_and_verify_passes(label: &str, store: &dyn Backend) {
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

    pub async fn verify_with_wrong_receipt_fails(label: &str, store: &dyn Backend) {
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

    pub async fn get_missing_is_not_found(label: &str, store: &dyn Backend) {
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

    pub async fn list_returns_exactly_the_names_under_a_prefix(label: &str, store: &dyn Backend) {
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

    pub async fn delete_then_get_is_not_found(label: &str, store: &dyn Backend) {
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

    pub async fn concurrent_puts_to_50_names_all_land(label: &str, store: &dyn Backend) {
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

    pub async fn four_mib_round_trips(label: &str, store: &dyn Backend) {
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
    for backend in local_backends().await {
        writer_lock_serialises(backend).await;
    }
}

#[ignore = "needs a Garage cluster (see tests_rs/s3.rs)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writer_lock_serialises_s3_handles() {
    writer_lock_serialises(s3_backend().await).await;
}

async fn writer_lock_serialises(backend: TestBackend) {
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
