//! The index log's history: a sequence number names one content forever
//! (even after a write that failed and landed), checkpoints reach stable
//! storage before the log objects they absorb are deleted, and a store
//! rolled back behind what this machine has seen does not open.

use std::path::Path;
use std::sync::Arc;

use anthill::pad_store::sim::Phase;
use anthill::pad_store::{self, BackendOptions, OpKind, SimConfig, SimPadStore};
use anthill::{Callback, Error, PutEvent, PutOptions, Store, StoreOptions};
use bytes::Bytes;
use futures::FutureExt;
use tokio::sync::Notify;

const PAD: u64 = 4096;

fn options() -> StoreOptions {
    let mut options = StoreOptions::default();
    options.secret = b"log history".to_vec();
    options.pad_size = Some(PAD);
    options
}

fn data(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed))
        .collect()
}

fn folder_url(dir: &Path) -> String {
    format!("file://{}", dir.display())
}

async fn sim_over(url: &str) -> Arc<SimPadStore> {
    let backend = pad_store::open(url, &BackendOptions::default())
        .await
        .unwrap();
    Arc::new(SimPadStore::new(backend, SimConfig::default()))
}

async fn put(store: &Store, key: &str, value: &Bytes) -> anthill::Result<()> {
    store
        .store_item(key, value.clone(), PutOptions::default(), None)
        .await
}

/// Every key of `stores` and its bytes, checked to be the same in each.
async fn agreed_items(stores: &[&Store]) -> Vec<(String, Bytes)> {
    let mut items = Vec::new();
    let keys = stores[0].keys().await.unwrap();
    for store in stores {
        assert_eq!(
            store.keys().await.unwrap(),
            keys,
            "every handle sees the same keys"
        );
    }
    for key in keys {
        let value = stores[0].fetch_item(&key, None).await.unwrap();
        for store in &stores[1..] {
            assert_eq!(store.fetch_item(&key, None).await.unwrap(), value, "{key}");
        }
        items.push((key, value));
    }
    items
}

/// A put that needs a new pad and waits at its confirmation until told to
/// go on: it holds its handle's writer gate open meanwhile, so the puts
/// made then share that entry and do not catch up.
struct HeldGate {
    proceed: Arc<Notify>,
    put: tokio::task::JoinHandle<anthill::Result<()>>,
}

async fn hold_gate(store: &Store, key: &str, value: Bytes) -> HeldGate {
    let (confirming, proceed) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let callback: Callback<PutEvent> = {
        let (confirming, proceed) = (Arc::clone(&confirming), Arc::clone(&proceed));
        Arc::new(move |event| {
            let (confirming, proceed) = (Arc::clone(&confirming), Arc::clone(&proceed));
            async move {
                if matches!(event, PutEvent::ConfirmReservation { .. }) {
                    confirming.notify_one();
                    proceed.notified().await;
                }
                Ok(true)
            }
            .boxed()
        })
    };
    let (store, key) = (store.clone(), key.to_string());
    let put = tokio::spawn(async move {
        store
            .store_item(&key, value, PutOptions::default(), Some(callback))
            .await
    });
    confirming.notified().await;
    HeldGate { proceed, put }
}

/// A log write lands but reports failure (its acknowledgement is lost);
/// with `read_back_fails`, reading it back fails too, so the writer cannot
/// tell at once. Another handle reads the store meanwhile, then the writer
/// puts again in the same gate entry. Every handle, and a fresh one, must
/// then agree on every key's bytes: the landed write is neither overwritten
/// by the next batch nor has its space given to the next put.
async fn a_write_in_doubt(read_back_fails: bool) {
    let dir = tempfile::tempdir().unwrap();
    let url = folder_url(dir.path());
    let mut options = options();
    options.retry_attempts = 1;
    let sim = sim_over(&url).await;
    let writer = Store::open_with_backend(&url, sim.clone(), options.clone())
        .await
        .unwrap();
    let reader = Store::open(&url, options.clone()).await.unwrap();
    put(&writer, "k0", &data(100, 0)).await.unwrap();
    let held = hold_gate(&writer, "big", data(3 * PAD as usize, 9)).await;

    // Log objects are created with `reserve`; an older writer used `put`.
    sim.lose_ack_next_on(OpKind::Reserve, "j/");
    sim.lose_ack_next_on(OpKind::Put, "j/");
    if read_back_fails {
        sim.fail_next_on(OpKind::Get, "j/", true);
    }
    let first = put(&writer, "k1", &data(500, 1)).await;
    sim.disarm_faults();
    assert!(reader.contains("k1").await.unwrap(), "the write landed");
    let second = put(&writer, "k2", &data(500, 2)).await;
    held.proceed.notify_one();
    held.put.await.unwrap().unwrap();

    let fresh = Store::open(&url, options).await.unwrap();
    let items = agreed_items(&[&writer, &reader, &fresh]).await;
    let expected: Vec<(String, Bytes)> = vec![
        ("big".into(), data(3 * PAD as usize, 9)),
        ("k0".into(), data(100, 0)),
        ("k1".into(), data(500, 1)),
        ("k2".into(), data(500, 2)),
    ];
    assert_eq!(items, expected);
    // A write known to have landed is a success; one that could not be
    // checked is an error, and the next write settles it.
    assert_eq!(first.is_ok(), !read_back_fails, "{first:?}");
    second.unwrap();
    let summary = fresh.summary().await.unwrap();
    assert_eq!(summary.used_space, 3 * PAD + 100 + 500 + 500);
    assert_eq!(writer.summary().await.unwrap(), summary);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_write_that_landed_is_kept_when_reading_it_back_shows_it() {
    a_write_in_doubt(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_write_in_doubt_is_settled_before_the_next_and_keeps_its_space() {
    a_write_in_doubt(true).await;
}

/// A log object written by someone else at the writer's next sequence number
/// is never overwritten: the append fails with a clear error, and the
/// handle catches up before its next change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_object_in_the_way_is_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let url = folder_url(dir.path());
    let writer = Store::open(&url, options()).await.unwrap();
    put(&writer, "k0", &data(100, 0)).await.unwrap();
    let held = hold_gate(&writer, "big", data(2 * PAD as usize, 9)).await;
    // Another writer's object at the next position: copy the newest one
    // under the next name (what a stale writer that was not fenced could do).
    let log_dir = dir.path().join("j");
    let mut names: Vec<String> = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    let newest = names.last().unwrap().clone();
    let next = format!("{:016x}", u64::from_str_radix(&newest, 16).unwrap() + 1);
    let foreign = std::fs::read(log_dir.join(&newest)).unwrap();
    std::fs::write(log_dir.join(&next), &foreign).unwrap();

    let refused = put(&writer, "k1", &data(100, 1)).await;
    assert!(
        matches!(&refused, Err(Error::Backend(e)) if e.to_string().contains("not recorded")),
        "{refused:?}"
    );
    assert_eq!(
        std::fs::read(log_dir.join(&next)).unwrap(),
        foreign,
        "untouched"
    );
    held.proceed.notify_one();
    assert!(held.put.await.unwrap().is_err(), "refused too: same entry");
    // The object fails to open as log object `next` (its sealing binds its
    // own number), so the store is damaged by whoever wrote it, and says so.
    let reopened = Store::open(&url, options()).await;
    assert!(
        matches!(reopened, Err(Error::Integrity(_))),
        "{:?}",
        reopened.as_ref().err()
    );
}

/// On a folder without fsync, each checkpoint is written through the
/// durable path, and before any log object it absorbs is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoints_reach_the_disk_before_the_log_they_replace_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("{}?fsync=false", folder_url(dir.path()));
    let sim = sim_over(&url).await;
    let mut options = options();
    options.checkpoint_interval = 300;
    let store = Store::open_with_backend(&url, sim.clone(), options.clone())
        .await
        .unwrap();
    for i in 0..40u8 {
        put(&store, &format!("key {i}"), &data(200 + i as usize, i))
            .await
            .unwrap();
    }
    let log = sim.op_log();
    let seq = |name: &str, prefix: &str| {
        u64::from_str_radix(name.strip_prefix(prefix).unwrap(), 16).unwrap()
    };
    let mut durable_checkpoints: Vec<u64> = Vec::new();
    let mut log_deletes = 0;
    for record in &log {
        if record.name.starts_with("c/") {
            assert_ne!(
                record.kind,
                OpKind::Put,
                "a checkpoint written without fsync"
            );
            if record.kind == OpKind::DurablePut && record.phase == Phase::End && record.ok {
                durable_checkpoints.push(seq(&record.name, "c/"));
            }
        }
        if record.kind == OpKind::Delete
            && record.phase == Phase::Start
            && record.name.starts_with("j/")
        {
            let deleted = seq(&record.name, "j/");
            assert!(
                durable_checkpoints.iter().any(|&c| c >= deleted),
                "log object {deleted} deleted before a checkpoint absorbing it was durable"
            );
            log_deletes += 1;
        }
    }
    assert!(
        log_deletes > 0 && !durable_checkpoints.is_empty(),
        "checkpoints happened"
    );
    drop(store);
    let reopened = Store::open(&url, options).await.unwrap();
    assert_eq!(reopened.len().await.unwrap(), 40);
}

/// Options that remember log positions in `state`.
fn remembering(state: &Path) -> StoreOptions {
    let mut options = options();
    options.state_dir = Some(state.to_path_buf());
    // Checkpoint often, so histories cross checkpoints.
    options.checkpoint_interval = 300;
    options
}

fn copy_folder(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_folder(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

fn replace_folder(store: &Path, with: &Path) {
    std::fs::remove_dir_all(store).unwrap();
    std::fs::create_dir_all(store).unwrap();
    copy_folder(with, store);
}

fn is_rollback<T>(opened: &anthill::Result<T>) -> bool {
    matches!(opened, Err(Error::Integrity(m)) if m.contains("rollback") && m.contains("allow_rollback=True"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_older_copy_is_a_rollback_unless_allowed() {
    let (dir, state, backup) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let url = folder_url(dir.path());
    let store = Store::open(&url, remembering(state.path())).await.unwrap();
    put(&store, "old", &data(100, 1)).await.unwrap();
    store.close().await.unwrap();
    drop(store);
    copy_folder(dir.path(), backup.path());
    let store = Store::open(&url, remembering(state.path())).await.unwrap();
    for i in 0..20u8 {
        put(&store, &format!("new {i}"), &data(300, i))
            .await
            .unwrap();
    }
    store.remove_item("old").await.unwrap();
    store.close().await.unwrap();
    drop(store);

    replace_folder(dir.path(), backup.path());
    let refused = Store::open(&url, remembering(state.path())).await;
    assert!(is_rollback(&refused), "{:?}", refused.err());
    // Another machine (no memory of it) opens it as it is.
    let elsewhere = tempfile::tempdir().unwrap();
    drop(
        Store::open(&url, remembering(elsewhere.path()))
            .await
            .unwrap(),
    );

    let mut allowed = remembering(state.path());
    allowed.allow_rollback = true;
    let restored = Store::open(&url, allowed).await.unwrap();
    assert_eq!(restored.keys().await.unwrap(), ["old"]);
    drop(restored);
    // The memory moved to the restored state: it opens as usual now.
    let again = Store::open(&url, remembering(state.path())).await.unwrap();
    put(&again, "after", &data(10, 3)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_newest_log_objects_is_a_rollback() {
    let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let url = folder_url(dir.path());
    // No checkpoint, which would run after the last put and absorb the log.
    let options = || {
        let mut options = remembering(state.path());
        options.checkpoint_interval = 1 << 30;
        options
    };
    let store = Store::open(&url, options()).await.unwrap();
    for i in 0..12u8 {
        put(&store, &format!("k{i}"), &data(150, i)).await.unwrap();
    }
    store.close().await.unwrap();
    let mut logs: Vec<_> = std::fs::read_dir(dir.path().join("j"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    logs.sort();
    assert!(logs.len() >= 3, "{logs:?}");
    // The newest holds what `close` wrote back; the one before, the last put.
    std::fs::remove_file(logs.pop().unwrap()).unwrap();
    std::fs::remove_file(logs.pop().unwrap()).unwrap();
    let refused = Store::open(&url, options()).await;
    assert!(is_rollback(&refused), "{:?}", refused.err());
    let mut allowed = options();
    allowed.allow_rollback = true;
    assert_eq!(
        Store::open(&url, allowed)
            .await
            .unwrap()
            .len()
            .await
            .unwrap(),
        11
    );
}

/// A copy of the history that went another way after the point this
/// machine saw (same length, other content) is caught by the chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_that_diverged_is_a_rollback() {
    let (dir, state, other_machine, fork) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let url = folder_url(dir.path());
    let no_checkpoints = |state: &Path| {
        let mut options = remembering(state);
        options.checkpoint_interval = 1 << 30;
        options
    };
    let store = Store::open(&url, no_checkpoints(state.path()))
        .await
        .unwrap();
    put(&store, "shared", &data(100, 1)).await.unwrap();
    store.close().await.unwrap();
    copy_folder(dir.path(), fork.path());
    let store = Store::open(&url, no_checkpoints(state.path()))
        .await
        .unwrap();
    put(&store, "ours", &data(100, 2)).await.unwrap();
    store.close().await.unwrap();
    // The fork takes one write of its own, seen only by another machine.
    let fork_url = folder_url(fork.path());
    let forked = Store::open(&fork_url, no_checkpoints(other_machine.path()))
        .await
        .unwrap();
    put(&forked, "theirs", &data(100, 3)).await.unwrap();
    forked.close().await.unwrap();
    replace_folder(dir.path(), fork.path());
    let refused = Store::open(&url, no_checkpoints(state.path())).await;
    assert!(
        matches!(&refused, Err(Error::Integrity(m)) if m.contains("rollback") && m.contains("chain")),
        "{:?}",
        refused.err()
    );
}

/// Two handles writing in turn (each behind the other at times) never trip
/// the check, and neither do reopens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_taking_turns_are_not_a_rollback() {
    let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let url = folder_url(dir.path());
    let a = Store::open(&url, remembering(state.path())).await.unwrap();
    let b = Store::open(&url, remembering(state.path())).await.unwrap();
    for i in 0..30u8 {
        let (writer, name) = if i % 2 == 0 { (&a, "a") } else { (&b, "b") };
        put(writer, &format!("{name}{i}"), &data(120, i))
            .await
            .unwrap();
        if i % 7 == 0 {
            drop(Store::open(&url, remembering(state.path())).await.unwrap());
        }
    }
    drop((a, b));
    let reopened = Store::open(&url, remembering(state.path())).await.unwrap();
    assert_eq!(reopened.len().await.unwrap(), 30);
}

/// Opening while another handle writes never sees a rollback: the memory
/// may move past the store as this open loaded it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_while_another_handle_writes_is_not_a_rollback() {
    let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let url = folder_url(dir.path());
    let writer = Store::open(&url, remembering(state.path())).await.unwrap();
    let writing = {
        let writer = writer.clone();
        tokio::spawn(async move {
            for i in 0..80u8 {
                put(&writer, &format!("k{i}"), &data(100, i)).await.unwrap();
            }
        })
    };
    let mut opens = 0;
    while !writing.is_finished() {
        let opened = Store::open(&url, remembering(state.path())).await;
        assert!(opened.is_ok(), "{:?}", opened.err());
        opens += 1;
    }
    writing.await.unwrap();
    assert!(opens > 0);
    writer.close().await.unwrap();
}

/// A process stopped (Ctrl-Z, SIGSTOP) while it updates this machine's
/// memory of a store holds that memory's file lock until it resumes. Other
/// processes open and write the store meanwhile: the memory is a check,
/// and skipping an update only weakens it. Opening used to wait for the
/// lock without end (seen in CI: an open beside a stopped writer hung).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_process_stopped_holding_the_memory_lock_stops_no_open() {
    let (dir, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let url = folder_url(dir.path());
    let store = Store::open(&url, remembering(state.path())).await.unwrap();
    put(&store, "a", &data(100, 1)).await.unwrap();
    store.close().await.unwrap();
    drop(store);
    // The memory's lock file, held as the stopped process would hold it.
    let lock_path = std::fs::read_dir(state.path().join("seen-logs"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|ext| ext == "lock"))
        .expect("the memory has a lock file");
    let held = std::fs::File::options()
        .write(true)
        .open(&lock_path)
        .unwrap();
    held.lock().unwrap();

    let bound = std::time::Duration::from_secs(60);
    let store = tokio::time::timeout(bound, Store::open(&url, remembering(state.path())))
        .await
        .expect("the open waited for the stopped process")
        .unwrap();
    tokio::time::timeout(bound, put(&store, "b", &data(200, 2)))
        .await
        .expect("the put waited for the stopped process")
        .unwrap();
    tokio::time::timeout(bound, store.close())
        .await
        .expect("the close waited for the stopped process")
        .unwrap();
    drop(store);
    drop(held);

    // Resumed, the memory works again: the store, which only moved on,
    // opens and holds both items.
    let store = Store::open(&url, remembering(state.path())).await.unwrap();
    assert_eq!(store.fetch_item("a", None).await.unwrap(), data(100, 1));
    assert_eq!(store.fetch_item("b", None).await.unwrap(), data(200, 2));
}
