//! Small items: committed by one log write of about their size, their pads
//! written back later. Counts of backend requests and bytes, never times.

use std::sync::Arc;

use anthill::pad_store::{self, Backend, BackendOptions, SimConfig, SimPadStore, SimStats};
use anthill::{PutEvent, PutOptions, Store, StoreOptions};
use bytes::Bytes;

const PAD: u64 = 64 * 1024;
const SMALL: usize = 1024;

fn options() -> StoreOptions {
    let mut options = StoreOptions::default();
    options.secret = b"small writes".to_vec();
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

fn overwriting() -> PutOptions {
    let mut put = PutOptions::default();
    put.overwrite = true;
    put
}

async fn put(store: &Store, key: &str, value: &Bytes) {
    store
        .store_item(key, value.clone(), overwriting(), None)
        .await
        .unwrap();
}

fn writes(stats: &SimStats) -> (u64, u64) {
    let ops = [&stats.reserve, &stats.put, &stats.durable_put];
    (
        ops.iter().map(|op| op.calls).sum(),
        ops.iter().map(|op| op.bytes).sum(),
    )
}

async fn sim_folder(dir: &std::path::Path) -> Arc<SimPadStore> {
    let folder = pad_store::open(dir.to_str().unwrap(), &BackendOptions::default())
        .await
        .unwrap();
    Arc::new(SimPadStore::new(folder, SimConfig::default()))
}

/// A loop of small puts makes about one backend write per put, of about the
/// item's size, counting the pad write-backs that follow (here at `close`).
#[tokio::test]
async fn a_small_put_writes_about_its_own_size_once() {
    let dir = tempfile::tempdir().unwrap();
    let sim = sim_folder(dir.path()).await;
    let store = Store::open_with_backend("sim", sim.clone(), options())
        .await
        .unwrap();
    let (calls_before, bytes_before) = writes(&sim.sim_stats());
    let puts = 2000u64;
    for i in 0..puts {
        put(&store, &format!("k{i}"), &data(SMALL, i)).await;
    }
    store.close().await.unwrap();
    let (calls, bytes) = writes(&sim.sim_stats());
    let (calls, bytes) = (calls - calls_before, bytes - bytes_before);
    let per_put = bytes as f64 / puts as f64;
    assert!(
        calls as f64 <= 1.1 * puts as f64,
        "{calls} backend writes for {puts} puts"
    );
    assert!(
        per_put <= 4.0 * SMALL as f64,
        "{per_put} bytes written per {SMALL}-byte put"
    );
    // And everything is where it should be.
    let store = Store::open(dir.path().to_str().unwrap(), options())
        .await
        .unwrap();
    assert_eq!(store.log_only_bytes(), 0);
    for i in (0..puts).step_by(97) {
        let got = store.fetch_item(&format!("k{i}"), None).await.unwrap();
        assert_eq!(got, data(SMALL, i));
    }
}

/// The events of a small put: no pads, bytes up to the total, then done.
#[tokio::test]
async fn a_small_put_reports_its_bytes_and_no_pads() {
    let backend = pad_store::open("memory://", &BackendOptions::default())
        .await
        .unwrap();
    let store = Store::open_with_backend("m", backend, options())
        .await
        .unwrap();
    put(&store, "first", &data(100, 1)).await; // the pad exists from now on
    let events = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&events);
    let callback: anthill::Callback<PutEvent> = Arc::new(move |event: PutEvent| {
        seen.lock().unwrap().push(event);
        Box::pin(async { Ok(true) })
    });
    store
        .store_item(
            "second",
            data(300, 2),
            PutOptions::default(),
            Some(callback),
        )
        .await
        .unwrap();
    assert_eq!(
        *events.lock().unwrap(),
        [
            PutEvent::StartingUpload {
                total_bytes: 300,
                total_pads: 0
            },
            PutEvent::UploadProgress {
                bytes_written: 300,
                total_bytes: 300
            },
            PutEvent::UploadFinished,
            PutEvent::StoreComplete,
        ]
    );
}

/// Another handle (as another process would) reads a small item at once,
/// from the log, before any write-back.
#[tokio::test]
async fn another_handle_reads_a_small_item_before_it_is_written_back() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().to_str().unwrap();
    let writer = Store::open(url, options()).await.unwrap();
    let reader = Store::open(url, options()).await.unwrap();
    put(&writer, "note", &data(500, 7)).await;
    assert!(
        writer.log_only_bytes() > 0,
        "the item was written back at once"
    );
    assert_eq!(reader.fetch_item("note", None).await.unwrap(), data(500, 7));
    // No pad file exists yet: the bytes came from the log.
    let pads = std::fs::read_dir(dir.path().join("p"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(pads, 0);
}

/// `flush` leaves nothing only in the log, for this handle and for a fresh
/// one (the write-back is recorded); the pads then hold the items.
#[tokio::test]
async fn flush_leaves_no_dirty_pad() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().to_str().unwrap();
    let store = Store::open(url, options()).await.unwrap();
    for i in 0..40 {
        put(&store, &format!("k{i}"), &data(700, i)).await;
    }
    assert!(store.log_only_bytes() > 0);
    store.flush().await.unwrap();
    assert_eq!(store.log_only_bytes(), 0);
    let fresh = Store::open(url, options()).await.unwrap();
    assert_eq!(fresh.log_only_bytes(), 0);
    for i in 0..40 {
        let got = fresh.fetch_item(&format!("k{i}"), None).await.unwrap();
        assert_eq!(got, data(700, i));
    }
}

/// A writer that finds small items another left in the log (a crashed
/// process: its handle is leaked, never closed) writes them back itself.
/// (A handle that only reads takes them on only if no writer is at work,
/// and the leaked handle may still be.)
#[tokio::test]
async fn a_new_writer_writes_back_what_another_left_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().to_str().unwrap();
    let crashed = Store::open(url, options()).await.unwrap();
    for i in 0..10 {
        put(&crashed, &format!("k{i}"), &data(900, i)).await;
    }
    assert!(crashed.log_only_bytes() > 0);
    let taker = Store::open(url, options()).await.unwrap();
    assert_eq!(taker.log_only_bytes(), crashed.log_only_bytes());
    put(&taker, "taker", &data(900, 99)).await;
    taker.close().await.unwrap();
    std::mem::forget(crashed);
    let fresh = Store::open(url, options()).await.unwrap();
    assert_eq!(fresh.log_only_bytes(), 0);
    for i in 0..10 {
        let got = fresh.fetch_item(&format!("k{i}"), None).await.unwrap();
        assert_eq!(got, data(900, i));
    }
}

/// A checkpoint carries no item data: the small items whose log objects it
/// absorbed were written to their pads first, and it stays about the size
/// of the index however large the items.
#[tokio::test]
async fn checkpoints_hold_no_item_data() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().to_str().unwrap();
    let mut small_checkpoints = options();
    small_checkpoints.checkpoint_interval = 4096;
    let store = Store::open(url, small_checkpoints.clone()).await.unwrap();
    let items = 300u64;
    for i in 0..items {
        put(&store, &format!("k{i}"), &data(3000, i)).await;
    }
    let checkpoints: Vec<u64> = std::fs::read_dir(dir.path().join("c"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .collect();
    assert!(!checkpoints.is_empty(), "no checkpoint was written");
    let largest = *checkpoints.iter().max().unwrap();
    assert!(
        largest < items * 3000 / 4,
        "a {largest}-byte checkpoint for {items} items of 3000 bytes"
    );
    drop(store);
    // What the checkpoint absorbed is read from the pads.
    let fresh = Store::open(url, small_checkpoints).await.unwrap();
    for i in 0..items {
        let got = fresh.fetch_item(&format!("k{i}"), None).await.unwrap();
        assert_eq!(got, data(3000, i), "k{i}");
    }
}

/// Small and large items in shared pads, overwritten and removed, read
/// back right and after a reopen; the large ones keep their direct path.
#[tokio::test]
async fn small_and_large_items_mixed() {
    let backend: Arc<dyn Backend> = pad_store::open("memory://", &BackendOptions::default())
        .await
        .unwrap();
    let store = Store::open_with_backend("m", Arc::clone(&backend), options())
        .await
        .unwrap();
    let size = |i: u64| match i % 4 {
        0 => 200,
        1 => 3000,
        2 => 20_000,
        _ => 100_000,
    };
    for round in 0..3u64 {
        for i in 0..24u64 {
            put(
                &store,
                &format!("k{i}"),
                &data(size(i + round), i * 10 + round),
            )
            .await;
        }
        for i in (0..24u64).step_by(5) {
            store.remove_item(&format!("k{i}")).await.unwrap();
        }
        for i in 0..24u64 {
            let got = store.fetch_item(&format!("k{i}"), None).await;
            if i % 5 == 0 {
                assert!(got.is_err());
            } else {
                assert_eq!(got.unwrap(), data(size(i + round), i * 10 + round));
            }
        }
    }
    drop(store);
    let reopened = Store::open_with_backend("m", backend, options())
        .await
        .unwrap();
    for i in (0..24u64).filter(|i| i % 5 != 0) {
        let got = reopened.fetch_item(&format!("k{i}"), None).await.unwrap();
        assert_eq!(got, data(size(i + 2), i * 10 + 2));
    }
    reopened.flush().await.unwrap();
    assert_eq!(reopened.log_only_bytes(), 0);
}

/// A pad whose file an OS crash left empty (no fsync): the small items
/// still in the log are written back into a rebuilt pad, instead of staying
/// in the log for ever (which would block every checkpoint and `close`);
/// what the pad alone held stays an integrity error, never wrong data.
#[tokio::test]
async fn a_write_back_rebuilds_a_pad_whose_file_was_emptied() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().to_str().unwrap();
    let store = Store::open(url, options()).await.unwrap();
    put(&store, "old", &data(300, 1)).await;
    store.close().await.unwrap();
    let pads: Vec<_> = std::fs::read_dir(dir.path().join("p"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(pads.len(), 1);
    std::fs::write(&pads[0], b"").unwrap(); // what a power cut can leave
    let store = Store::open(url, options()).await.unwrap();
    put(&store, "new", &data(300, 2)).await; // into the same pad, via the log
    store.close().await.unwrap();
    let store = Store::open(url, options()).await.unwrap();
    assert_eq!(store.log_only_bytes(), 0);
    assert_eq!(store.fetch_item("new", None).await.unwrap(), data(300, 2));
    let old = store.fetch_item("old", None).await;
    assert!(matches!(old, Err(anthill::Error::Integrity(_))), "{old:?}");
}
