//! What opening a store costs: reading builds nothing per item. The map of
//! used space (every item's pieces) is built at a handle's first change,
//! from the index as it is then, so a handle that only read, while another
//! wrote, still never places data over the other's.

use anthill::{PutOptions, Store, StoreOptions};
use bytes::Bytes;

const PAD: u64 = 4096;

fn options() -> StoreOptions {
    let mut options = StoreOptions::default();
    options.secret = b"open cost secret".to_vec();
    options.pad_size = Some(PAD);
    options
}

async fn open(path: &std::path::Path) -> Store {
    Store::open(&format!("file://{}", path.display()), options())
        .await
        .unwrap()
}

/// The value stored under `key`: its size is in its name.
fn value(key: &str) -> Bytes {
    let size: usize = key.rsplit('-').next().unwrap().parse().unwrap();
    let seed = key
        .bytes()
        .fold(7u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
    (0..size)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed))
        .collect()
}

async fn put(store: &Store, key: &str) {
    store
        .store_item(key, value(key), PutOptions::default(), None)
        .await
        .unwrap();
}

/// Items of several sizes: in the log, filling a pad, spanning pads.
fn keys(tag: &str, count: usize) -> Vec<String> {
    let sizes = [10, 200, 1000, 3000, 4096, 9000];
    (0..count)
        .map(|i| format!("{tag}{i}-{}", sizes[i % sizes.len()]))
        .collect()
}

async fn check_all(store: &Store, keys: &[String]) {
    for key in keys {
        let got = store.fetch_item(key, None).await.unwrap();
        assert_eq!(got, value(key), "{key}");
    }
}

#[tokio::test]
async fn opening_and_reading_build_no_map_the_first_change_builds_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let stored = keys("a", 120);
    {
        let store = open(dir.path()).await;
        for key in &stored {
            put(&store, key).await;
        }
        for key in stored.iter().step_by(3) {
            store.remove_item(key).await.unwrap();
        }
        assert_eq!(store.map_builds(), 1);
        store.close().await.unwrap();
    }
    let kept: Vec<String> = stored
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 3 != 0)
        .map(|(_, k)| k.clone())
        .collect();

    let store = open(dir.path()).await;
    check_all(&store, &kept).await;
    assert!(store.contains(&kept[0]).await.unwrap());
    assert_eq!(store.len().await.unwrap(), kept.len() as u64);
    assert_eq!(store.keys().await.unwrap().len(), kept.len());
    assert_eq!(store.map_builds(), 0, "opening and reading built the map");

    // The first change builds it, later ones reuse it.
    let more = keys("b", 30);
    for key in &more {
        put(&store, key).await;
    }
    store.remove_item(&kept[1]).await.unwrap();
    assert_eq!(store.map_builds(), 1);
    assert!(!store.contains(&kept[1]).await.unwrap());
    check_all(&store, &kept[2..]).await;
    check_all(&store, &more).await;
    store.close().await.unwrap();

    // The map built late is the one a fresh build gives: a third handle
    // sees the same space taken.
    let again = open(dir.path()).await;
    let late = store_summary(&again).await;
    assert_eq!(again.map_builds(), 1, "a summary needs the map");
    let mut all: Vec<String> = kept.iter().filter(|k| **k != kept[1]).cloned().collect();
    all.extend(more);
    check_all(&again, &all).await;
    let expected: u64 = all.iter().map(|k| value(k).len() as u64).sum();
    assert_eq!(late.0, expected);
    assert_eq!(late.1, all.len() as u64);
}

async fn store_summary(store: &Store) -> (u64, u64) {
    let summary = store.summary().await.unwrap();
    (summary.used_space, summary.items)
}

#[tokio::test]
async fn a_reader_that_starts_writing_after_another_writer_keeps_its_data_apart() {
    let dir = tempfile::tempdir().unwrap();
    let first = keys("a", 60);
    {
        let store = open(dir.path()).await;
        for key in &first {
            put(&store, key).await;
        }
        store.close().await.unwrap();
    }
    // The reader opens (no map) and reads.
    let reader = open(dir.path()).await;
    check_all(&reader, &first[..5]).await;

    // Another handle (its own writer lock) frees space and fills it and more.
    let writer = open(dir.path()).await;
    for key in first.iter().step_by(2) {
        writer.remove_item(key).await.unwrap();
    }
    let second = keys("w", 60);
    for key in &second {
        put(&writer, key).await;
    }
    writer.close().await.unwrap();
    drop(writer);

    // Reading the other's work catches up without building the map.
    check_all(&reader, &second).await;
    assert_eq!(reader.map_builds(), 0);

    // Now the reader writes: its map comes from the index as it is now.
    let third = keys("r", 60);
    for key in &third {
        put(&reader, key).await;
    }
    assert_eq!(reader.map_builds(), 1);
    reader.flush().await.unwrap();
    let mut live: Vec<String> = first.iter().skip(1).step_by(2).cloned().collect();
    live.extend(second);
    live.extend(third);
    check_all(&reader, &live).await;
    reader.close().await.unwrap();
    drop(reader);

    let fresh = open(dir.path()).await;
    check_all(&fresh, &live).await;
    let (used, items) = store_summary(&fresh).await;
    assert_eq!(items, live.len() as u64);
    assert_eq!(
        used,
        live.iter().map(|k| value(k).len() as u64).sum::<u64>()
    );
    fresh.close().await.unwrap();
}

/// Two writers taking turns (each handle its own writer lock) follow each
/// other's changes record by record: the map is built once per handle, at
/// its first change, however often the lock changes hands, and (checked by
/// debug builds at every turn) always equals the map the index describes.
/// Puts of every size, overwrites, removes, renames and a compaction that
/// moves items and removes pads are followed.
#[tokio::test]
async fn writers_taking_turns_follow_each_other_without_rebuilding_the_map() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (open(dir.path()).await, open(dir.path()).await);
    let mut live: std::collections::BTreeMap<String, Bytes> = Default::default();
    for round in 0..12 {
        for (name, store) in [("a", &a), ("b", &b)] {
            let added = keys(&format!("{name}{round}x"), 6);
            for key in &added {
                put(store, key).await;
                live.insert(key.clone(), value(key));
            }
            // Remove one of the other's, overwrite one, rename one.
            let others: Vec<String> = live
                .keys()
                .filter(|k| !k.starts_with(name))
                .cloned()
                .collect();
            if let [first, second, third, ..] = &others[..] {
                store.remove_item(first).await.unwrap();
                live.remove(first);
                let data = value(&format!("{second}-{}", 2000 + round));
                let mut options = PutOptions::default();
                options.overwrite = true;
                store
                    .store_item(second, data.clone(), options, None)
                    .await
                    .unwrap();
                live.insert(second.clone(), data);
                let to = format!("{third}r");
                store.rename_item(third, &to, false).await.unwrap();
                let moved = live.remove(third).unwrap();
                live.insert(to, moved);
            }
            if round == 6 && name == "b" {
                store.compact(None).await.unwrap();
            }
        }
    }
    assert_eq!(a.map_builds(), 1, "a rebuilt its map when b had written");
    assert_eq!(b.map_builds(), 1, "b rebuilt its map when a had written");
    for (key, data) in &live {
        for (name, store) in [("a", &a), ("b", &b)] {
            let got = store.fetch_item(key, None).await.unwrap();
            assert!(
                got == data,
                "{name} read {key}: {} bytes, not the {} stored",
                got.len(),
                data.len()
            );
        }
    }
    assert!(a.verify(true, None).await.unwrap().ok());
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// A handle reads what another handle committed as soon as it was
/// committed (a folder: the read checks the log first), also when it holds
/// an older version of the item in its index: it never serves a stale one.
#[tokio::test]
async fn a_read_sees_what_another_handle_committed_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (open(dir.path()).await, open(dir.path()).await);
    let mut options = PutOptions::default();
    options.overwrite = true;
    for (round, size) in [10usize, 3000, 9000, 200].into_iter().enumerate() {
        let data = value(&format!("k{round}-{size}"));
        a.store_item("k", data.clone(), options.clone(), None)
            .await
            .unwrap();
        assert_eq!(b.fetch_item("k", None).await.unwrap(), data);
        assert_eq!(b.fetch_range("k", 1, 5).await.unwrap(), data.slice(1..6));
    }
    a.remove_item("k").await.unwrap();
    assert!(matches!(
        b.fetch_item("k", None).await,
        Err(anthill::Error::KeyNotFound(_))
    ));
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// A fresh handle reads the log after the checkpoint 64 objects at a time
/// (each a round trip on S3; 16 made a fresh reader of 200 log objects on
/// Garage wait 13 rounds), lists the checkpoints and the log at once, and
/// replays the objects in order: 100 small puts, each its own log object,
/// open as they were stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_reads_the_log_several_objects_at_a_time() {
    let url = format!("sim+memory://{}?latency_ms=2", crate::unique("log-ahead"));
    let writer = Store::open(&url, options()).await.unwrap();
    let stored = keys("log", 100);
    for key in &stored {
        put(&writer, key).await;
    }
    writer.close().await.unwrap();
    let reader = Store::open(&url, options()).await.unwrap();
    let stats = reader.backend_stats().expect("a sim+ store");
    assert!(stats.get.calls >= 100, "{} gets at open", stats.get.calls);
    assert_eq!(stats.get.peak_in_flight, 64, "log objects read at once");
    assert_eq!(stats.list.peak_in_flight, 2, "listings at once");
    check_all(&reader, &stored).await;
}

/// Opening loads the index, which is as good as a catch-up: a fresh
/// handle's first read, within the backend's read staleness (1 s on
/// `sim+`), fetches its item's pad and nothing else (before, it also
/// probed the log and listed the checkpoints: two round trips on S3). The
/// writer lock is held elsewhere meanwhile, so the reader does not take it
/// at open (a holder of the lock is current already).
#[tokio::test]
async fn a_fresh_handles_first_read_is_one_request() {
    let name = crate::unique("first-read");
    let url = format!("sim+memory://{name}");
    let writer = Store::open(&url, options()).await.unwrap();
    let stored = keys("first", 6);
    for key in &stored {
        put(&writer, key).await;
    }
    writer.flush().await.unwrap();
    writer.close().await.unwrap();
    let backend = anthill::pad_store::open(
        &format!("memory://{name}"),
        &anthill::pad_store::BackendOptions::default(),
    )
    .await
    .unwrap();
    let _elsewhere = backend.lock_writer(&[9; 16]).await.unwrap();
    let reader = Store::open(&url, options()).await.unwrap();
    let before = reader.backend_stats().expect("a sim+ store");
    check_all(&reader, &stored[..1]).await;
    let after = reader.backend_stats().expect("a sim+ store");
    assert_eq!(after.list.calls, before.list.calls, "listings");
    assert_eq!(after.get.calls - before.get.calls, 1, "gets");
}
