//! The local index cache: opening a store reads it instead of the whole
//! index, and it is never trusted over the backend. Each test checks both
//! where the index came from and that every item reads back as stored.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anthill::crypto::StoreKeys;
use anthill::index::{self, Index};
use anthill::{PutOptions, Store, StoreOptions};
use bytes::Bytes;

const PAD: u64 = 4096;

struct Setup {
    _dir: tempfile::TempDir,
    store: PathBuf,
    state: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let (store, state) = (dir.path().join("store"), dir.path().join("state"));
    Setup {
        _dir: dir,
        store,
        state,
    }
}

fn options(setup: &Setup) -> StoreOptions {
    let mut options = StoreOptions::default();
    options.secret = b"index cache secret".to_vec();
    options.pad_size = Some(PAD);
    options.state_dir = Some(setup.state.clone());
    options.index_cache_min_items = 1;
    options
}

async fn open_with(setup: &Setup, options: StoreOptions) -> Store {
    Store::open(&format!("file://{}", setup.store.display()), options)
        .await
        .unwrap()
}

async fn open(setup: &Setup) -> Store {
    open_with(setup, options(setup)).await
}

fn value(key: &str, round: u8) -> Bytes {
    let size = 10 + key.len() * 97 % 5000;
    (0..size)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(round))
        .collect()
}

/// Stores `count` items named `{tag}{i}`, written as `round`; returns what
/// the store should now hold of them.
async fn fill(store: &Store, tag: &str, count: usize, round: u8) -> BTreeMap<String, Bytes> {
    let mut expected = BTreeMap::new();
    let mut options = PutOptions::default();
    options.overwrite = true;
    for i in 0..count {
        let key = format!("{tag}{i}");
        let data = value(&key, round);
        store
            .store_item(&key, data.clone(), options.clone(), None)
            .await
            .unwrap();
        expected.insert(key, data);
    }
    store.flush().await.unwrap();
    expected
}

async fn check(store: &Store, expected: &BTreeMap<String, Bytes>) {
    let keys: Vec<String> = expected.keys().cloned().collect();
    assert_eq!(store.keys().await.unwrap(), keys);
    assert_eq!(store.len().await.unwrap(), expected.len() as u64);
    for (key, data) in expected {
        assert_eq!(&store.fetch_item(key, None).await.unwrap(), data, "{key}");
    }
}

/// The one cache file under the state folder.
fn cache_file(setup: &Setup) -> PathBuf {
    let folder = setup.state.join("index-cache");
    let files: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files[0].clone()
}

/// The newest index log object of the store.
fn newest_log_object(store: &Path) -> PathBuf {
    std::fs::read_dir(store.join("j"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap()
}

#[tokio::test]
async fn a_second_open_reads_the_index_from_the_cache() {
    let setup = self::setup();
    let store = open(&setup).await;
    let mut expected = fill(&store, "a", 200, 1).await;
    store.close().await.unwrap();

    let store = open(&setup).await;
    assert!(
        !store.index_from_cache(),
        "no cache yet: loaded from the backend"
    );
    check(&store, &expected).await;
    store.close().await.unwrap();

    let store = open(&setup).await;
    assert!(store.index_from_cache());
    check(&store, &expected).await;
    let items = store.list_items().await.unwrap();
    assert_eq!(items.len(), expected.len());
    assert_eq!(store.map_builds(), 0, "reading moves nothing into memory");
    // A change from a cached index: the map is built once, and the store
    // holds what it should, in this handle and the next.
    expected.extend(fill(&store, "a", 50, 2).await);
    store.remove_item("a199").await.unwrap();
    expected.remove("a199");
    assert_eq!(store.map_builds(), 1);
    check(&store, &expected).await;
    let summary = store.summary().await.unwrap();
    store.close().await.unwrap();

    let store = open(&setup).await;
    check(&store, &expected).await;
    assert_eq!(
        store.summary().await.unwrap().used_space,
        summary.used_space
    );
}

#[tokio::test]
async fn another_handles_later_writes_are_replayed_over_the_cache() {
    let setup = self::setup();
    let writer = open(&setup).await;
    let mut expected = fill(&writer, "b", 100, 1).await;
    drop(open(&setup).await); // writes the cache

    // Changes after the cache: new keys, overwrites, a removal, a rename.
    expected.extend(fill(&writer, "b", 20, 2).await);
    expected.extend(fill(&writer, "new", 5, 3).await);
    writer.remove_item("b50").await.unwrap();
    expected.remove("b50");
    writer.rename_item("b60", "renamed", false).await.unwrap();
    let moved = expected.remove("b60").unwrap();
    expected.insert("renamed".into(), moved);
    writer.flush().await.unwrap();

    let reader = open(&setup).await;
    assert!(
        reader.index_from_cache(),
        "a short log after the cache is replayed"
    );
    check(&reader, &expected).await;
    // And a reader that opened from the cache catches up like any other.
    expected.extend(fill(&writer, "later", 3, 4).await);
    check(&reader, &expected).await;
}

#[tokio::test]
async fn a_checkpoint_past_the_cache_makes_it_load_from_the_backend() {
    let setup = self::setup();
    let store = open(&setup).await;
    let mut expected = fill(&store, "c", 60, 1).await;
    store.close().await.unwrap();
    drop(open(&setup).await); // writes the cache

    let mut checkpointing = options(&setup);
    checkpointing.checkpoint_interval = 1;
    let writer = open_with(&setup, checkpointing).await;
    expected.extend(fill(&writer, "c", 30, 2).await);
    writer.close().await.unwrap();

    let store = open(&setup).await;
    assert!(
        !store.index_from_cache(),
        "the cache is older than the checkpoint"
    );
    check(&store, &expected).await;
    store.close().await.unwrap();
    let store = open(&setup).await;
    assert!(store.index_from_cache(), "rewritten by the load before");
    check(&store, &expected).await;
}

#[tokio::test]
async fn a_rolled_back_cache_file_is_never_trusted_over_the_backend() {
    let setup = self::setup();
    let store = open(&setup).await;
    let mut expected = fill(&store, "d", 80, 1).await;
    store.close().await.unwrap();
    drop(open(&setup).await);
    let old = std::fs::read(cache_file(&setup)).unwrap();

    // Later writes, still in the log: the old file is replayed forward.
    let writer = open(&setup).await;
    expected.extend(fill(&writer, "d", 10, 2).await);
    writer.close().await.unwrap();
    std::fs::write(cache_file(&setup), &old).unwrap();
    let store = open(&setup).await;
    assert!(store.index_from_cache());
    check(&store, &expected).await;
    store.close().await.unwrap();

    // Later writes a checkpoint absorbed: the old file is not used.
    let mut checkpointing = options(&setup);
    checkpointing.checkpoint_interval = 1;
    let writer = open_with(&setup, checkpointing).await;
    expected.extend(fill(&writer, "d", 40, 3).await);
    writer.close().await.unwrap();
    std::fs::write(cache_file(&setup), &old).unwrap();
    let store = open(&setup).await;
    assert!(!store.index_from_cache());
    check(&store, &expected).await;
}

#[tokio::test]
async fn a_replaced_log_object_at_the_cache_position_is_noticed() {
    let setup = self::setup();
    let store = open(&setup).await;
    let expected = fill(&store, "e", 50, 1).await;
    store.close().await.unwrap();
    drop(open(&setup).await);

    // The same bytes in a new file: as when a backup is restored over the
    // store. The cache cannot tell it holds the same history, so it loads.
    let newest = newest_log_object(&setup.store);
    let bytes = std::fs::read(&newest).unwrap();
    std::fs::remove_file(&newest).unwrap();
    std::fs::write(&newest, &bytes).unwrap();
    let store = open(&setup).await;
    assert!(!store.index_from_cache());
    check(&store, &expected).await;
}

#[tokio::test]
async fn a_cache_of_another_secret_or_store_is_rebuilt() {
    let setup = self::setup();
    let store = open(&setup).await;
    let expected = fill(&store, "f", 40, 1).await;
    store.close().await.unwrap();
    drop(open(&setup).await);
    let path = cache_file(&setup);
    let store_id: [u8; 16] = {
        let name = path.file_name().unwrap().to_str().unwrap();
        let bytes: Vec<u8> = (0..16)
            .map(|i| u8::from_str_radix(&name[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        bytes.try_into().unwrap()
    };

    // A well-formed cache of this store id, sealed under another secret and
    // claiming a far later position with no items.
    let other = StoreKeys::derive(b"another secret", &store_id);
    index::cache::write(
        &path,
        &other,
        &store_id,
        1 << 40,
        Vec::new(),
        &Index::default(),
    )
    .unwrap();
    let store = open(&setup).await;
    assert!(!store.index_from_cache());
    check(&store, &expected).await;
    store.close().await.unwrap();

    // Another store's cache file in this one's place.
    let elsewhere = self::setup();
    let other_store = open(&elsewhere).await;
    fill(&other_store, "g", 10, 1).await;
    other_store.close().await.unwrap();
    drop(open(&elsewhere).await);
    std::fs::copy(cache_file(&elsewhere), &path).unwrap();
    let store = open(&setup).await;
    assert!(!store.index_from_cache());
    check(&store, &expected).await;
    store.close().await.unwrap();
    let store = open(&setup).await;
    assert!(store.index_from_cache(), "rebuilt by the load before");
}

#[tokio::test]
async fn a_damaged_cache_block_is_read_from_the_backend_instead() {
    let setup = self::setup();
    let store = open(&setup).await;
    let expected = fill(&store, "h", 3000, 1).await;
    store.close().await.unwrap();
    drop(open(&setup).await);
    let path = cache_file(&setup);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 100;
    bytes[last] ^= 1; // inside the last block
    std::fs::write(&path, &bytes).unwrap();

    let store = open(&setup).await;
    assert!(
        store.index_from_cache(),
        "only the header and head are read at open"
    );
    check(&store, &expected).await;
    assert!(!path.exists(), "the damaged file was removed");
}

#[tokio::test]
async fn a_small_store_keeps_no_cache() {
    let setup = self::setup();
    let mut options = options(&setup);
    options.index_cache_min_items = 1000;
    let store = open_with(&setup, options.clone()).await;
    let expected = fill(&store, "s", 20, 1).await;
    store.close().await.unwrap();
    drop(open_with(&setup, options.clone()).await);
    let store = open_with(&setup, options).await;
    assert!(!store.index_from_cache());
    assert!(!setup.state.join("index-cache").exists());
    check(&store, &expected).await;
}

#[tokio::test]
async fn a_long_log_after_the_cache_makes_opening_write_a_new_one() {
    let setup = setup();
    let store = open(&setup).await;
    let mut expected = fill(&store, "l", 50, 1).await;
    store.close().await.unwrap();
    drop(open(&setup).await);
    let old = std::fs::read(cache_file(&setup)).unwrap();

    // More records after the cache than opening replays without rewriting.
    let writer = open(&setup).await;
    for i in 0..1100 {
        let key = format!("tiny{i}");
        let data = Bytes::from(format!("{i}"));
        writer
            .store_item(&key, data.clone(), PutOptions::default(), None)
            .await
            .unwrap();
        expected.insert(key, data);
    }
    writer.close().await.unwrap();

    let store = open(&setup).await;
    assert!(store.index_from_cache());
    check(&store, &expected).await;
    store.close().await.unwrap();
    let new = std::fs::read(cache_file(&setup)).unwrap();
    assert_ne!(new, old, "replaced after the long replay");

    let store = open(&setup).await;
    assert!(store.index_from_cache());
    check(&store, &expected).await;
    assert_eq!(
        std::fs::read(cache_file(&setup)).unwrap(),
        new,
        "nothing left to replay"
    );
}
