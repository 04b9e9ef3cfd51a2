//! The S3 backend against a real S3-compatible service: a Garage cluster
//! started by `scripts/garage.sh start 3`, whose exports name it
//! (`ANTHILL_TEST_S3_URL`, `AWS_*` credentials, `ANTHILL_TEST_S3_ENDPOINTS`,
//! `GARAGE_PIDS`).
//!
//! Every test here is `#[ignore]`d, since it needs that cluster: run them
//! with `cargo test --test tests_rs -- --ignored --skip node_kill` after
//! `eval "$(scripts/garage.sh start 3)"` (`scripts/test.sh` does). Asked for
//! without the cluster's variables, a test fails saying what is missing.
//!
//! `node_kill_mid_put` kills a Garage node, so it runs only when asked for
//! with `ANTHILL_TEST_KILL_NODE=1`, on its own, after everything else:
//! `ANTHILL_TEST_KILL_NODE=1 cargo test --test tests_rs s3::node_kill -- --ignored`.

use crate::unique;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anthill::pad_store::{self, BackendError, BackendOptions};
use anthill::{Callback, Error, PutEvent, PutOptions, Store, StoreOptions};
use bytes::Bytes;
use futures::FutureExt;

const URL_VAR: &str = "ANTHILL_TEST_S3_URL";
const ENDPOINTS_VAR: &str = "ANTHILL_TEST_S3_ENDPOINTS";
const PIDS_VAR: &str = "GARAGE_PIDS";
/// Set to 1 to run the test that kills a Garage node.
const KILL_NODE_VAR: &str = "ANTHILL_TEST_KILL_NODE";
const PAD: u64 = 64 * 1024;
/// A guard against hangs, far above what any of these tests needs.
const HANG_GUARD: Duration = Duration::from_secs(120);

/// The test cluster's base URL; fails the test when none is set.
pub fn base_url() -> String {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "{URL_VAR} is unset: run `eval \"$(scripts/garage.sh start 3)\"` first \
             (scripts/test.sh does)"
        ),
    }
}

/// `base` with `sub` appended to its key prefix (the query kept).
fn under(base: &str, sub: &str) -> String {
    let (path, query) = base.split_once('?').unwrap_or((base, ""));
    format!("{}/{sub}?{query}", path.trim_end_matches('/'))
}

/// `url` with its query parameter `key` set to `value`.
fn with_param(url: &str, key: &str, value: &str) -> String {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let mut pairs: Vec<String> = query
        .split('&')
        .filter(|pair| !pair.is_empty() && pair.split('=').next() != Some(key))
        .map(str::to_owned)
        .collect();
    pairs.push(format!("{key}={value}"));
    format!("{path}?{}", pairs.join("&"))
}

fn options() -> StoreOptions {
    let mut options = StoreOptions::default();
    options.secret = b"s3 test secret".to_vec();
    options.pad_size = Some(PAD);
    options
}

fn data(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| ((i as u32).wrapping_mul(2_654_435_761) >> 11) as u8 ^ seed)
        .collect()
}

async fn guarded<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(HANG_GUARD, future)
        .await
        .unwrap_or_else(|_| panic!("{what} hung for {} s", HANG_GUARD.as_secs()))
}

/// The backend error of a failed open, or a panic naming what happened.
fn backend_error(result: anthill::Result<Store>, what: &str) -> BackendError {
    match result {
        Err(Error::Backend(error)) => error,
        Err(other) => panic!("{what}: expected a backend error, got {other:?}"),
        Ok(_) => panic!("{what}: the store opened"),
    }
}

#[ignore = "needs a Garage cluster (see the module documentation)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_store_fetch_remove_and_reopen() {
    let base = base_url();
    let url = under(&base, &unique("roundtrip"));
    let store = guarded("open", Store::open(&url, options())).await.unwrap();
    // Five and a half pads, one pad, a sliver and an empty item.
    let items = [
        ("big", data(5 * PAD as usize + PAD as usize / 2, 1)),
        ("one-pad", data(PAD as usize - 100, 2)),
        ("small", data(100, 3)),
        ("empty", Bytes::new()),
    ];
    for (key, content) in &items {
        guarded(
            "store_item",
            store.store_item(key, content.clone(), PutOptions::default(), None),
        )
        .await
        .unwrap_or_else(|e| panic!("store {key}: {e}"));
    }
    for (key, content) in &items {
        let back = store.fetch_item(key, None).await.unwrap();
        assert!(back == content, "{key} differs");
    }
    let summary = store.summary().await.unwrap();
    assert_eq!(summary.items, 4);
    assert!(summary.total_pads >= 7, "{summary:?}");
    store.remove_item("small").await.unwrap();
    store.close().await.unwrap();

    let reopened = guarded("reopen", Store::open(&url, options()))
        .await
        .unwrap();
    assert_eq!(
        reopened.keys().await.unwrap(),
        vec!["big".to_string(), "empty".into(), "one-pad".into()]
    );
    let big = reopened.fetch_item("big", None).await.unwrap();
    assert!(big == items[0].1, "big differs after reopen");
    assert!(matches!(
        reopened.fetch_item("small", None).await,
        Err(Error::KeyNotFound(_))
    ));
}

#[ignore = "needs a Garage cluster (see the module documentation)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_wrong_credentials_are_a_backend_error_naming_them() {
    let base = base_url();
    let url = under(&base, &unique("creds"));
    let real_key = std::env::var("AWS_ACCESS_KEY_ID").unwrap_or_default();
    // An unknown key, and a known key with a wrong secret.
    for (key_id, secret) in [
        ("GK0123456789abcdef01234567", "wrong"),
        (&*real_key, "wrong"),
    ] {
        if key_id.is_empty() {
            continue;
        }
        let mut options = options();
        options.retry_attempts = 2;
        options.backend.options = vec![
            ("access_key_id".into(), key_id.into()),
            ("secret_access_key".into(), secret.into()),
        ];
        let error = backend_error(
            guarded("open", Store::open(&url, options)).await,
            "wrong credentials",
        );
        assert!(
            matches!(&error, BackendError::Permanent(m) if m.contains("wrong credentials")),
            "{key_id}: {error}"
        );
    }
}

#[ignore = "needs a Garage cluster (see the module documentation)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_missing_bucket_is_a_backend_error_naming_it() {
    let base = base_url();
    let bucket = format!("anthill-missing-{}", std::process::id());
    let (_, query) = base.split_once('?').unwrap_or((&base, ""));
    let url = format!("s3://{bucket}/store?{query}");
    let mut options = options();
    options.retry_attempts = 2;
    let error = backend_error(
        guarded("open", Store::open(&url, options)).await,
        "missing bucket",
    );
    assert!(
        matches!(&error, BackendError::Permanent(m)
            if m.contains(&format!("bucket {bucket} does not exist"))),
        "{error}"
    );
}

#[ignore = "needs a Garage cluster (see the module documentation)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_stopped_endpoint_fails_within_the_retry_limits() {
    let base = base_url();
    // Nothing listens on port 1.
    let url = with_param(&under(&base, "stopped"), "endpoint", "http://127.0.0.1:1");
    let mut options = options();
    options.retry_attempts = 2;
    let error = backend_error(
        guarded("open", Store::open(&url, options)).await,
        "stopped endpoint",
    );
    let message = error.to_string();
    assert!(
        message.contains("cannot reach") && message.contains("127.0.0.1:1"),
        "{message}"
    );
    assert!(message.contains("gave up after 2 attempts"), "{message}");
}

/// Two handles on one S3 prefix, as two processes would have: while the
/// first holds the writer lease (and checks it 20 times, each a read of the
/// lease object, spanning several of the second's polls), the second does not
/// get it; it gets it once the first lets go, and then the first waits.
#[ignore = "needs a Garage cluster (see the module documentation)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_lease_keeps_a_second_writer_waiting() {
    let base = base_url();
    let url = under(&base, &unique("lease"));
    let none = BackendOptions::default();
    let first = pad_store::open(&url, &none).await.unwrap();
    let second = pad_store::open(&url, &none).await.unwrap();

    let held = guarded("first lock", first.lock_writer(&[1; 16]))
        .await
        .unwrap();
    let order = Arc::new(Mutex::new(vec!["first acquired"]));
    let waiter = {
        let second = Arc::clone(&second);
        let order = Arc::clone(&order);
        tokio::spawn(async move {
            order.lock().unwrap().push("second waiting");
            let lock = second.lock_writer(&[2; 16]).await?;
            order.lock().unwrap().push("second acquired");
            lock.check().await?;
            Ok::<_, BackendError>(lock)
        })
    };
    let checks = guarded("the first writer's checks", async {
        let mut checks = 0;
        while checks < 20 {
            held.check().await.unwrap();
            if order.lock().unwrap().contains(&"second waiting") {
                checks += 1;
            }
            // The second polls every 100-300 ms: 20 of these span several polls.
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        checks
    })
    .await;
    assert_eq!(checks, 20);
    order.lock().unwrap().push("first released");
    drop(held);
    let lock = guarded("second lock", waiter).await.unwrap().unwrap();
    assert_eq!(
        *order.lock().unwrap(),
        [
            "first acquired",
            "second waiting",
            "first released",
            "second acquired"
        ]
    );
    // Now the first waits until the second lets go.
    let first_again = tokio::spawn(async move { first.lock_writer(&[1; 16]).await.map(|_| ()) });
    drop(lock);
    guarded("first lock again", first_again)
        .await
        .unwrap()
        .unwrap();
}

/// An `http://` endpoint alone allows plain HTTP, and the region comes
/// from `AWS_DEFAULT_REGION` (both as `scripts/garage.sh` exports them).
#[ignore = "needs a Garage cluster (see the module documentation)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_http_endpoint_and_env_region_suffice() {
    let base = base_url();
    assert!(
        std::env::var("AWS_DEFAULT_REGION").is_ok() || std::env::var("AWS_REGION").is_ok(),
        "no AWS region in the environment (scripts/garage.sh exports AWS_DEFAULT_REGION)"
    );
    let url = under(&base, &unique("plain"));
    let (path, query) = url.split_once('?').unwrap();
    let query: Vec<&str> = query
        .split('&')
        .filter(|pair| !pair.starts_with("allow_http=") && !pair.starts_with("region="))
        .collect();
    let url = format!("{path}?{}", query.join("&"));
    let store = pad_store::open(&url, &BackendOptions::default())
        .await
        .unwrap();
    let lock = store.lock_writer(&[1; 16]).await.unwrap();
    store
        .put("p/plain", Bytes::from_static(b"over http"))
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(
        store.get("p/plain").await.unwrap(),
        Bytes::from_static(b"over http")
    );
    store.delete("p/plain").await.unwrap();
    lock.release().await;
}

/// Two stores on one S3 prefix (two processes, as far as the backend can
/// tell) store items at the same time: a fresh open sees all of them.
#[ignore = "needs a Garage cluster (see the module documentation)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_two_stores_writing_at_once_lose_nothing() {
    let base = base_url();
    let url = under(&base, &unique("two-writers"));
    // Create the store first, so both open an existing one.
    Store::open(&url, options()).await.unwrap();
    let a = Store::open(&url, options()).await.unwrap();
    let b = Store::open(&url, options()).await.unwrap();
    let put_all = |store: Store, tag: u8| async move {
        for i in 0..3u8 {
            let key = format!("w{tag}-{i}");
            let content = data(PAD as usize * (1 + i as usize) + 17, tag * 10 + i);
            store
                .store_item(&key, content, PutOptions::default(), None)
                .await?;
        }
        Ok::<_, Error>(())
    };
    let (ra, rb) = guarded("two writers", async {
        tokio::join!(put_all(a.clone(), 1), put_all(b.clone(), 2))
    })
    .await;
    ra.unwrap();
    rb.unwrap();
    let fresh = Store::open(&url, options()).await.unwrap();
    let keys = fresh.keys().await.unwrap();
    assert_eq!(keys.len(), 6, "{keys:?}");
    for tag in [1u8, 2] {
        for i in 0..3u8 {
            let key = format!("w{tag}-{i}");
            let expected = data(PAD as usize * (1 + i as usize) + 17, tag * 10 + i);
            let back = fresh.fetch_item(&key, None).await.unwrap();
            assert!(back == expected, "{key} differs");
        }
    }
}

/// SIGKILLs node 2 of the 3-node cluster while a 40-pad put runs through
/// node 1; the put completes (or fails clearly and succeeds when retried),
/// and every item reads back byte-identical through node 3. Leaves node 2
/// dead: run it last (see the module documentation).
#[ignore = "kills a Garage node: run alone and last (see the module documentation)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn node_kill_mid_put() {
    let base = base_url();
    assert_eq!(
        std::env::var(KILL_NODE_VAR).as_deref(),
        Ok("1"),
        "node_kill_mid_put kills a Garage node, so it runs alone and last, with \
         {KILL_NODE_VAR}=1 (scripts/test.sh does)"
    );
    let endpoints: Vec<String> = std::env::var(ENDPOINTS_VAR)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let pids: Vec<String> = std::env::var(PIDS_VAR)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert!(
        endpoints.len() >= 3 && pids.len() >= 3,
        "node_kill_mid_put needs a 3-node cluster ({ENDPOINTS_VAR} and {PIDS_VAR} with 3 \
         entries; `scripts/garage.sh start 3`)"
    );
    let url = under(&base, &unique("node-kill"));
    let via_node1 = with_param(&url, "endpoint", &endpoints[0]);
    let via_node3 = with_param(&url, "endpoint", &endpoints[2]);

    let store = Store::open(&format!("sim+{via_node1}&latency_ms=5"), options())
        .await
        .unwrap();
    let mut expected = vec![
        ("before-1".to_string(), data(3 * PAD as usize, 7)),
        ("before-2".to_string(), data(1000, 8)),
    ];
    for (key, content) in &expected {
        store
            .store_item(key, content.clone(), PutOptions::default(), None)
            .await
            .unwrap();
    }

    // 40 pads; node 2 dies at the first committed pad.
    let big = data(40 * PAD as usize - 1024, 9);
    let killed = Arc::new(Mutex::new(None::<String>));
    let commits = Arc::new(AtomicU64::new(0));
    let callback: Callback<PutEvent> = {
        let killed = Arc::clone(&killed);
        let commits = Arc::clone(&commits);
        let victim = pids[1].clone();
        Arc::new(move |event| {
            if let PutEvent::ScratchpadCommitComplete { .. } = event {
                commits.fetch_add(1, Ordering::SeqCst);
                let mut killed = killed.lock().unwrap();
                if killed.is_none() {
                    let status = std::process::Command::new("kill")
                        .args(["-KILL", &victim])
                        .status()
                        .expect("run kill");
                    assert!(status.success(), "kill -KILL {victim} failed");
                    eprintln!("node_kill_mid_put: SIGKILLed Garage node 2 (PID {victim})");
                    *killed = Some(victim.clone());
                }
            }
            async { Ok(true) }.boxed()
        })
    };
    let first = guarded(
        "the put during the kill",
        store.store_item("big", big.clone(), PutOptions::default(), Some(callback)),
    )
    .await;
    assert!(killed.lock().unwrap().is_some(), "the put committed no pad");
    if let Err(error) = first {
        // Allowed: a clear error, then success on retry.
        eprintln!("node_kill_mid_put: the put failed ({error}); retrying");
        assert!(
            matches!(error, Error::Backend(_) | Error::UploadPending { .. }),
            "unclear error: {error:?}"
        );
        let mut resuming = PutOptions::default();
        resuming.resume = true;
        let resumed = guarded(
            "resume",
            store.store_item("big", big.clone(), resuming, None),
        )
        .await;
        if let Err(Error::InvalidInput(_)) = resumed {
            // Nothing pending: the put failed before recording; store anew.
            store
                .store_item("big", big.clone(), PutOptions::default(), None)
                .await
                .unwrap();
        } else {
            resumed.unwrap();
        }
    } else {
        assert!(commits.load(Ordering::SeqCst) >= 40);
    }
    expected.push(("big".into(), big));
    let after = data(2 * PAD as usize + 5, 10);
    guarded(
        "a put after the kill",
        store.store_item("after", after.clone(), PutOptions::default(), None),
    )
    .await
    .unwrap();
    expected.push(("after".into(), after));
    store.close().await.unwrap();

    let other = guarded("open through node 3", Store::open(&via_node3, options()))
        .await
        .unwrap();
    let mut keys = other.keys().await.unwrap();
    keys.sort();
    let mut expected_keys: Vec<String> = expected.iter().map(|(key, _)| key.clone()).collect();
    expected_keys.sort();
    assert_eq!(keys, expected_keys);
    for (key, content) in &expected {
        let back = guarded("fetch through node 3", other.fetch_item(key, None))
            .await
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        assert!(back == content, "{key} differs when read through node 3");
    }
}

/// Checkpoints (and the deletes of the log objects they absorb) are writes
/// like any other, made only under the writer lease: a store that puts one
/// item at a time, letting go of the lease after each, still checkpoints.
#[ignore = "needs a Garage cluster (see the module documentation)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_checkpoints_are_written_between_single_puts() {
    let base = base_url();
    let url = under(&base, &unique("checkpoints"));
    let options = || {
        let mut options = options();
        options.checkpoint_interval = 1;
        options
    };
    let store = Store::open(&url, options()).await.unwrap();
    for i in 0..6u8 {
        guarded(
            "store_item",
            store.store_item(&format!("k{i}"), data(100, i), PutOptions::default(), None),
        )
        .await
        .unwrap();
    }
    store.close().await.unwrap();
    let backend = pad_store::open(&url, &BackendOptions::default())
        .await
        .unwrap();
    let seqs = |names: Vec<String>| -> Vec<u64> {
        let mut seqs: Vec<u64> = names
            .iter()
            .map(|name| u64::from_str_radix(&name[2..], 16).unwrap())
            .collect();
        seqs.sort_unstable();
        seqs
    };
    let checkpoints = seqs(backend.list("c/").await.unwrap());
    let logs = seqs(backend.list("j/").await.unwrap());
    // One checkpoint, the older ones deleted, and with them every log
    // object it absorbed.
    assert_eq!(
        checkpoints.len(),
        1,
        "checkpoints {checkpoints:?}, log {logs:?}"
    );
    assert!(
        logs.iter().all(|&seq| seq > checkpoints[0]),
        "checkpoints {checkpoints:?}, log {logs:?}"
    );
    let fresh = Store::open(&url, options()).await.unwrap();
    for i in 0..6u8 {
        let back = fresh.fetch_item(&format!("k{i}"), None).await.unwrap();
        assert!(back == data(100, i));
    }
}

/// A large put sends one request per pad: the lease fences the writer and
/// the service answers a `PUT` only once reads see it, so no `HEAD` checks
/// a pad after its write (counted by `sim+`, which sees every call that
/// reaches the S3 backend).
#[ignore = "needs a Garage cluster (see the module documentation)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_a_large_put_checks_no_pad_after_writing_it() {
    let base = base_url();
    let url = under(&base, &unique("no-head"));
    let backend = pad_store::open(&url, &BackendOptions::default())
        .await
        .unwrap();
    assert!(backend.capabilities().acknowledged_puts_visible);
    let sim = Arc::new(pad_store::SimPadStore::new(
        backend,
        pad_store::SimConfig::default(),
    ));
    let store = Store::open_with_backend("sim+s3", sim.clone(), options())
        .await
        .unwrap();
    let pads = 10;
    let item = data(pads * PAD as usize, 7);
    let before = sim.sim_stats();
    guarded(
        "store_item",
        store.store_item("big", item.clone(), PutOptions::default(), None),
    )
    .await
    .unwrap();
    let after = sim.sim_stats();
    let puts =
        after.put.calls + after.durable_put.calls - before.put.calls - before.durable_put.calls;
    assert_eq!(after.verify.calls, before.verify.calls, "a pad was checked");
    // One write per pad, and the index log's (at most two here: the new
    // pads with the pending record, then the item).
    assert!(
        (pads as u64..=pads as u64 + 2).contains(&puts),
        "{puts} puts for {pads} pads"
    );
    assert!(store.fetch_item("big", None).await.unwrap() == item);
    store.close().await.unwrap();
    let fresh = Store::open(&url, options()).await.unwrap();
    assert!(fresh.fetch_item("big", None).await.unwrap() == item);
}

/// On S3 a pad's versions alternate between two objects (Garage loses an
/// object whose overwrite is interrupted, docs/s3.md): small items written
/// back three times into one pad went to `.odd`, the first object, `.odd`.
#[ignore = "needs a Garage cluster (see the module documentation)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_pad_rewrites_alternate_between_two_objects() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("writes.txt");
    let plain = under(&base_url(), &unique("alternate"));
    let url = with_param(
        &format!("sim+{plain}"),
        "record_pad_writes",
        record.to_str().unwrap(),
    );
    let store = guarded("open", Store::open(&url, options())).await.unwrap();
    let mut stored = Vec::new();
    for round in 0..3u8 {
        for i in 0..4u8 {
            let key = format!("r{round}-{i}");
            let value = data(500, round * 4 + i);
            store
                .store_item(&key, value.clone(), PutOptions::default(), None)
                .await
                .unwrap();
            stored.push((key, value));
        }
        guarded("flush", store.flush()).await.unwrap();
    }
    store.close().await.unwrap();
    let writes = crate::torn_overwrites::pad_writes(&record);
    let rewrites = crate::torn_overwrites::assert_alternating(&writes);
    assert!(rewrites >= 2, "{writes:?}");

    let reopened = guarded("reopen", Store::open(&plain, options()))
        .await
        .unwrap();
    for (key, value) in &stored {
        assert!(
            reopened.fetch_item(key, None).await.unwrap() == value,
            "{key}"
        );
    }
    assert!(reopened.verify(true, None).await.unwrap().ok());
}

/// A writer in a loop gives the lease back at the end of each turn and
/// waits long enough before asking again for a writer polling for it to
/// take it (`WriterLocking::writer_lock_handover`). It used to ask again
/// after 2 ms, as on a folder, and won the lease back before the poller
/// noticed: R9 saw a writer wait minutes. The loop stops once the other
/// put is in; it would run 40 turns' worth of puts without it.
#[ignore = "needs a Garage cluster (see the module documentation)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn s3_a_writer_in_a_loop_gives_the_lease_to_a_waiting_one() {
    use std::sync::atomic::AtomicBool;
    const LOOP: u64 = 20_000;
    let url = under(&base_url(), &unique("turns"));
    let looping = guarded("open", Store::open(&url, options())).await.unwrap();
    let waiting = guarded("open", Store::open(&url, options())).await.unwrap();
    let (done, other_in) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let puts = {
        let (store, done, other_in) = (looping.clone(), Arc::clone(&done), Arc::clone(&other_in));
        tokio::spawn(async move {
            for i in 0..LOOP {
                if other_in.load(Ordering::Acquire) {
                    break;
                }
                let data = Bytes::from(vec![i as u8; 1024]);
                store
                    .store_item(&format!("loop-{i}"), data, PutOptions::default(), None)
                    .await
                    .unwrap();
                done.fetch_add(1, Ordering::Release);
            }
        })
    };
    // The loop holds the lease now (it has stored an item).
    while done.load(Ordering::Acquire) == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    guarded(
        "the waiting put",
        waiting.store_item(
            "other",
            Bytes::from_static(b"y"),
            PutOptions::default(),
            None,
        ),
    )
    .await
    .unwrap();
    other_in.store(true, Ordering::Release);
    let when = done.load(Ordering::Acquire);
    puts.await.unwrap();
    assert!(when < LOOP, "the waiting put waited for the whole loop");
    assert_eq!(looping.fetch_item("other", None).await.unwrap(), &b"y"[..]);
    looping.close().await.unwrap();
    waiting.close().await.unwrap();
}

/// On S3 a ranged read of a pad ends on a 64 KiB boundary of its object
/// (`Capabilities::range_read_granule`: Garage holds back a response ending
/// in a short chunk until the client's delayed ACK): a fresh handle's get
/// of a 64 KiB item in a written-back 4 MiB pad fetches its frame and the
/// rest of the 64 KiB it ends in (counted by `sim+`), and the pad's last
/// item, at the object's end, reads whole.
#[ignore = "needs a Garage cluster (see the module documentation)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_ranged_reads_end_on_64_kib_boundaries() {
    let url = under(&base_url(), &unique("granule"));
    let mut options = options();
    options.pad_size = Some(4 << 20);
    let item = 64 << 10;
    let store = Store::open(&url, options.clone()).await.unwrap();
    for i in 0..3 {
        let key = format!("k{i}");
        let put = store.store_item(&key, data(item, i), PutOptions::default(), None);
        guarded("store_item", put).await.unwrap();
    }
    store.close().await.unwrap();
    let backend = pad_store::open(&url, &BackendOptions::default())
        .await
        .unwrap();
    assert_eq!(backend.capabilities().range_read_granule, Some(64 << 10));
    let sim = Arc::new(pad_store::SimPadStore::new(
        backend,
        pad_store::SimConfig::default(),
    ));
    let fresh = Store::open_with_backend("sim+s3", sim.clone(), options)
        .await
        .unwrap();
    fresh.fetch_item("k0", None).await.unwrap(); // the catch-up's requests
    let before = sim.sim_stats().get;
    assert!(fresh.fetch_item("k1", None).await.unwrap() == data(item, 1));
    let after = sim.sim_stats().get;
    // Frame 1 ends 2 * 53 bytes past 128 KiB: the read asks up to 192 KiB.
    assert_eq!(after.calls - before.calls, 1);
    assert_eq!(after.bytes - before.bytes, (192 << 10) - (64 << 10) - 53);
    assert!(fresh.fetch_item("k2", None).await.unwrap() == data(item, 2));
    fresh.close().await.unwrap();
}

/// Creating a store takes the writer lease; the handle keeps it for its
/// linger, so a first put soon after writes under the same lease (the same
/// lease object, token and all) instead of taking it a second time: on
/// Garage that is a few round trips and a 250 ms pause for every new store.
#[ignore = "needs a Garage cluster (see the module documentation)"]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_a_new_store_keeps_its_creation_lease_for_the_first_put() {
    const LEASE: &str = "lease"; // the lease object's name under the prefix
    let url = under(&base_url(), &unique("creation-lease"));
    let backend = pad_store::open(&url, &BackendOptions::default())
        .await
        .unwrap();
    let store = Store::open(&url, options()).await.unwrap();
    let created = backend.get(LEASE).await;
    let created = created.expect("the lease was given back after the store's creation");
    guarded(
        "store_item",
        store.store_item("first", data(100, 1), PutOptions::default(), None),
    )
    .await
    .unwrap();
    let first_put = backend.get(LEASE).await.unwrap();
    assert!(created == first_put, "the first put took the lease again");
    store.close().await.unwrap();
    let fresh = Store::open(&url, options()).await.unwrap();
    assert!(fresh.fetch_item("first", None).await.unwrap() == data(100, 1));
}
