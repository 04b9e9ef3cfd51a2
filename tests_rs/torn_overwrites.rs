//! Where an interrupted overwrite may leave no object at all (Garage 2.x,
//! modelled by `sim+` with `torn_overwrites=true`), a pad's versions
//! alternate between two objects: no pad write replaces the object holding
//! the version the index names. The crash itself is tested with a SIGKILLed
//! process (`tests_py/test_crash.py`); here, which objects the writes go to.

use std::collections::HashMap;

use anthill::{PutOptions, Store, StoreOptions};
use bytes::Bytes;

const PAD: u64 = 16384;

fn options() -> StoreOptions {
    let mut options = StoreOptions::default();
    options.secret = b"torn overwrites secret".to_vec();
    options.pad_size = Some(PAD);
    options
}

fn value(key: &str, size: usize) -> Bytes {
    Bytes::from(
        key.as_bytes()
            .iter()
            .copied()
            .cycle()
            .take(size)
            .collect::<Vec<u8>>(),
    )
}

async fn put(store: &Store, key: &str, size: usize) {
    let mut options = PutOptions::default();
    options.overwrite = true;
    store
        .store_item(key, value(key, size), options, None)
        .await
        .unwrap();
}

/// The `(object, version)` of every pad write in a `record_pad_writes`
/// file, in the order they ended.
pub(crate) fn pad_writes(record: &std::path::Path) -> Vec<(String, u64)> {
    let text = std::fs::read_to_string(record).unwrap_or_default();
    let mut writes: Vec<(u128, String, u64)> = text
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            (
                fields[4].parse().unwrap(),
                fields[1].to_string(),
                fields[2].parse().unwrap(),
            )
        })
        .collect();
    writes.sort();
    writes
        .into_iter()
        .map(|(_, object, version)| (object, version))
        .collect()
}

fn pad_of(object: &str) -> &str {
    object.strip_suffix(".odd").unwrap_or(object)
}

/// Checks that each pad's versions were written to alternate objects (odd
/// versions to `.odd`), each rewrite to the other object than the write
/// before it; returns how many rewrites there were.
pub(crate) fn assert_alternating(writes: &[(String, u64)]) -> usize {
    let mut last: HashMap<&str, (&str, u64)> = HashMap::new();
    let mut rewrites = 0;
    for (object, version) in writes {
        let pad = pad_of(object);
        assert_eq!(
            object.ends_with(".odd"),
            version % 2 == 1,
            "{object} holds version {version}"
        );
        if let Some((before, before_version)) = last.insert(pad, (object, *version)) {
            assert!(
                *version > before_version,
                "{pad}: {version} after {before_version}"
            );
            assert_ne!(
                before, object,
                "{pad}: version {version} replaced {before_version}"
            );
            rewrites += 1;
        }
    }
    rewrites
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_pad_write_replaces_the_object_of_the_version_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("writes.txt");
    let url = format!(
        "sim+file://{}/store?torn_overwrites=true&record_pad_writes={}",
        dir.path().display(),
        record.display()
    );
    let store = Store::open(&url, options()).await.unwrap();
    // Small items written back again and again into shared pads, medium
    // ones rewriting them, some removed, and a reopen between rounds.
    for round in 0..6 {
        for i in 0..12 {
            let size = [100, 700, 3000, 6000][(i + round) % 4];
            put(&store, &format!("k{}", (i * 7 + round) % 20), size).await;
        }
        store.remove_item(&format!("k{}", round * 3)).await.ok();
        store.flush().await.unwrap();
    }
    store.close().await.unwrap();

    let writes = pad_writes(&record);
    let rewrites = assert_alternating(&writes);
    assert!(rewrites >= 5, "only {rewrites} pad rewrites: {writes:?}");

    let store = Store::open(&url, options()).await.unwrap();
    let report = store.verify(true, None).await.unwrap();
    assert!(report.ok(), "{report:?}");
    for key in store.keys().await.unwrap() {
        let data = store.fetch_item(&key, None).await.unwrap();
        assert_eq!(data, value(&key, data.len()), "{key}");
    }
}

/// A store written where overwrites are atomic (one object per pad, at
/// any version) opened where they are not: every item reads back, and a
/// rewrite of such a pad goes to its other object, leaving the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pads_of_one_object_are_read_and_rewritten_beside_it() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("store");
    let atomic = format!("sim+file://{}", folder.display());
    let store = Store::open(&atomic, options()).await.unwrap();
    for i in 0..5 {
        put(&store, &format!("a{i}"), 500).await;
    }
    store.close().await.unwrap(); // written back: version 1, in the pad's one object
    let objects = |folder: &std::path::Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(folder.join("p"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let before = objects(&folder);
    assert!(
        before.iter().all(|name| !name.ends_with(".odd")),
        "{before:?}"
    );

    let torn = format!("sim+file://{}?torn_overwrites=true", folder.display());
    let store = Store::open(&torn, options()).await.unwrap();
    for i in 0..5 {
        let key = format!("a{i}");
        assert_eq!(
            store.fetch_item(&key, None).await.unwrap(),
            value(&key, 500)
        );
    }
    put(&store, "b", 500).await;
    store.close().await.unwrap();
    let after = objects(&folder);
    for name in &before {
        assert!(after.contains(name), "{name} was removed: {after:?}");
    }
    // The pad "b" joined was rewritten into its other object.
    let rewritten: Vec<&String> = before
        .iter()
        .filter(|name| after.contains(&format!("{name}.odd")))
        .collect();
    assert_eq!(rewritten.len(), 1, "{before:?} -> {after:?}");

    let store = Store::open(&torn, options()).await.unwrap();
    for key in ["a0", "a1", "a2", "a3", "a4", "b"] {
        assert_eq!(
            store.fetch_item(key, None).await.unwrap(),
            value(key, 500),
            "{key}"
        );
    }
    assert!(store.verify(true, None).await.unwrap().ok());
}
