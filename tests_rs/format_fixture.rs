//! Stores written by earlier releases keep opening: a small folder store made
//! by the last landed format is kept in `tests_rs/fixtures/` and read here.

use anthill::{PutOptions, Store, StoreOptions};
use bytes::Bytes;

const SECRET: &[u8] = b"fixture secret";
/// Made at commit 574bc9b (store format 3) by the test `write` of the commit
/// that added this file: 12 small items, one over 2 pads, one overwritten, one
/// removed, with a checkpoint and a log object after it.
const FIXTURE: &str = "tests_rs/fixtures/store-3";

fn data(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// The items `write` stores, as they read after it.
fn expected() -> Vec<(String, Bytes)> {
    let mut items: Vec<(String, Bytes)> = (0..12u8)
        .map(|i| (format!("small/{i}"), data(100 + i as usize * 37, i)))
        .collect();
    items.push(("multi".into(), data(10_000, 7)));
    items.push(("overwritten".into(), data(500, 2)));
    items.push(("last".into(), data(50, 9)));
    items.sort();
    items
}

/// Copies the fixture into a scratch folder (opening a store writes to it).
fn fixture_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE);
    for entry in walk(&source) {
        let target = dir.path().join(entry.strip_prefix(&source).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &target).unwrap();
    }
    dir
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_of_format_3_opens_reads_and_takes_writes() {
    let dir = fixture_copy();
    let url = format!("file://{}", dir.path().display());
    let options = || {
        let mut options = StoreOptions::default();
        options.secret = SECRET.to_vec();
        options
    };
    let store = Store::open(&url, options()).await.unwrap();
    let mut keys = store.keys().await.unwrap();
    keys.sort();
    let expected = expected();
    assert_eq!(
        keys,
        expected.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>()
    );
    for (key, value) in &expected {
        assert_eq!(
            &store.fetch_item(key, None).await.unwrap()[..],
            &value[..],
            "{key}"
        );
    }
    // Reading leaves the store in its format, which its release still opens.
    assert_eq!(format_of(dir.path()), "anthill-store-3");
    store
        .store_item("new", data(3000, 5), PutOptions::default(), None)
        .await
        .unwrap();
    // A change moves it to the current format first: it may now hold pads
    // in segments, which releases before this one refuse by the format.
    assert_eq!(format_of(dir.path()), "anthill-store-5");
    store.close().await.unwrap();
    let reopened = Store::open(&url, options()).await.unwrap();
    assert_eq!(
        &reopened.fetch_item("new", None).await.unwrap()[..],
        &data(3000, 5)[..]
    );
    assert_eq!(reopened.len().await.unwrap(), expected.len() as u64 + 1);
    drop(reopened);

    // Its checkpoint carries no log chain value: the rollback check stands
    // on the checkpoint's bytes, and the next checkpoint (of the current
    // format) carries the chain on.
    let state = tempfile::tempdir().unwrap();
    let checking = || {
        let mut options = options();
        options.state_dir = Some(state.path().to_path_buf());
        options.checkpoint_interval = 1;
        options
    };
    let store = Store::open(&url, checking()).await.unwrap();
    for i in 0..4u8 {
        store
            .store_item(
                &format!("later/{i}"),
                data(200, i),
                PutOptions::default(),
                None,
            )
            .await
            .unwrap();
    }
    drop(store);
    let reopened = Store::open(&url, checking()).await.unwrap();
    for (key, value) in &expected {
        assert_eq!(
            &reopened.fetch_item(key, None).await.unwrap()[..],
            &value[..],
            "{key}"
        );
    }
    for i in 0..4u8 {
        let key = format!("later/{i}");
        assert_eq!(reopened.fetch_item(&key, None).await.unwrap(), data(200, i));
    }
    assert_eq!(reopened.len().await.unwrap(), expected.len() as u64 + 5);
}

/// The format named by a folder store's metadata.
fn format_of(folder: &std::path::Path) -> String {
    let meta = std::fs::read(folder.join("meta")).unwrap();
    anthill::meta::Meta::decode(&meta).unwrap().format
}

/// A store of a format newer than this release is refused by its format,
/// with what to do, not as damaged data.
#[tokio::test]
async fn a_store_of_a_newer_format_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let mut options = StoreOptions::default();
    options.secret = SECRET.to_vec();
    let store = Store::open(&url, options.clone()).await.unwrap();
    store
        .store_item("k", data(10, 1), PutOptions::default(), None)
        .await
        .unwrap();
    store.close().await.unwrap();
    drop(store);
    let path = dir.path().join("meta");
    let mut meta = anthill::meta::Meta::decode(&std::fs::read(&path).unwrap()).unwrap();
    meta.format = "anthill-store-6".into();
    std::fs::write(&path, meta.encode().unwrap()).unwrap();
    let Err(anthill::Error::Integrity(message)) = Store::open(&url, options).await else {
        panic!("a store of format 6 opened");
    };
    assert!(message.contains("newer anthill"), "{message}");
    assert!(message.contains("anthill-store-5"), "{message}");
}

/// The fixture's metadata is of format 3, which used the secret as it is:
/// it keeps that derivation (no stretching) and still unlocks, while a new
/// store records how its passphrase is stretched (format 4, and 5 after it).
#[test]
fn format_3_metadata_keeps_its_unstretched_secret() {
    use anthill::meta::{Kdf, Meta};
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(FIXTURE);
    let meta = Meta::decode(&std::fs::read(source.join("meta")).unwrap()).unwrap();
    assert_eq!(meta.format, "anthill-store-3");
    assert_eq!(meta.kdf, Kdf::None);
    assert!(meta.unlock(SECRET).is_ok());
    assert!(meta.unlock(b"another secret").is_err());
    assert_eq!(Meta::decode(&meta.encode().unwrap()).unwrap(), meta);
    let new = Meta::new(SECRET, 4096).unwrap();
    assert_eq!(new.format, "anthill-store-5");
    assert!(matches!(new.kdf, Kdf::Argon2id { .. }));
}

/// A store holding pads of both formats: made by the code before segmented
/// pads (format 2, one sealed frame per pad), then written to by this code
/// (format 3: pads it rewrote and pads it made). Made by `write_mixed_fixture`:
///
/// ```text
/// git archive 1df0f14 | tar -x -C /tmp/old      # the last commit before format 3
/// cp tests_rs/format_fixture.rs /tmp/old/tests_rs/
/// (cd /tmp/old && ANTHILL_FIXTURE_DIR=/tmp/fx ANTHILL_FIXTURE_PHASE=old \
///     cargo test --test tests_rs write_mixed_fixture -- --ignored)
/// ANTHILL_FIXTURE_DIR=/tmp/fx ANTHILL_FIXTURE_PHASE=new \
///     cargo test --test tests_rs write_mixed_fixture -- --ignored
/// cp -r /tmp/fx tests_rs/fixtures/pads-2-and-3
/// ```
///
/// It holds two format 2 pads (the pieces of `old/whole`, each filling its
/// pad, named in the index by format 2 tags) and three of format 3 (the
/// shared pad the old code wrote, rewritten when the new small items were
/// written back, and the new items' pads). Use a separate target folder
/// for the old checkout: cargo does not tell the two trees apart.
const MIXED: &str = "tests_rs/fixtures/pads-2-and-3";
const MIXED_PAD: u64 = 256 << 10;

fn mixed_options() -> StoreOptions {
    let mut options = StoreOptions::default();
    options.secret = SECRET.to_vec();
    options.pad_size = Some(MIXED_PAD);
    options
}

/// The items of the mixed fixture, as each phase of `write_mixed_fixture`
/// leaves them: `old` the previous code's, then this code's.
fn mixed_items(phase: &str) -> Vec<(String, Bytes)> {
    let mut items = vec![
        // Two pieces filling a pad each: their digests are format 2 tags.
        ("old/whole".to_string(), data(2 * MIXED_PAD as usize, 1)),
        ("old/medium".to_string(), data(100_000, 2)),
    ];
    items.extend((0..5u8).map(|i| (format!("old/small/{i}"), data(3000 + i as usize, 10 + i))));
    if phase == "new" {
        items.retain(|(key, _)| key != "old/small/4");
        items.extend((0..5u8).map(|i| (format!("new/small/{i}"), data(2000 + i as usize, 20 + i))));
        items.push(("new/big".into(), data(300_000, 30)));
        items.push(("new/whole".into(), data(MIXED_PAD as usize, 31)));
    }
    items.sort();
    items
}

/// Writes the mixed fixture into `ANTHILL_FIXTURE_DIR`, in phase
/// `ANTHILL_FIXTURE_PHASE`: `old` is run by the code before segmented pads
/// (this file copied into a checkout of 1df0f14), `new` by this code on
/// the folder `old` left. Ignored: it makes the fixture, it tests nothing.
#[ignore = "writes the fixture; see its documentation"]
#[tokio::test(flavor = "multi_thread")]
async fn write_mixed_fixture() {
    let dir = std::env::var("ANTHILL_FIXTURE_DIR").expect("ANTHILL_FIXTURE_DIR");
    let phase = std::env::var("ANTHILL_FIXTURE_PHASE").expect("ANTHILL_FIXTURE_PHASE");
    let store = Store::open(&format!("file://{dir}"), mixed_options())
        .await
        .unwrap();
    let before: Vec<String> = store.keys().await.unwrap();
    for (key, value) in mixed_items(&phase) {
        if !before.contains(&key) {
            store
                .store_item(&key, value, PutOptions::default(), None)
                .await
                .unwrap();
        }
    }
    if phase == "new" {
        store.remove_item("old/small/4").await.unwrap();
    }
    store.flush().await.unwrap();
    store.close().await.unwrap();
}

/// The magic of each pad object of a folder store.
fn pad_formats(folder: &std::path::Path) -> Vec<[u8; 4]> {
    walk(&folder.join("p"))
        .iter()
        .map(|path| std::fs::read(path).unwrap()[..4].try_into().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_store_with_pads_of_both_formats_reads_back_whole_and_verifies() {
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(MIXED);
    let formats = pad_formats(&source);
    assert!(formats.contains(b"AHP2"), "{formats:?}");
    assert!(formats.contains(b"AHP3"), "{formats:?}");
    let dir = tempfile::tempdir().unwrap();
    for entry in walk(&source) {
        let target = dir.path().join(entry.strip_prefix(&source).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &target).unwrap();
    }
    let url = format!("file://{}", dir.path().display());
    let store = Store::open(&url, mixed_options()).await.unwrap();
    let expected = mixed_items("new");
    let mut keys = store.keys().await.unwrap();
    keys.sort();
    assert_eq!(
        keys,
        expected.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>()
    );
    for (key, value) in &expected {
        assert!(store.fetch_item(key, None).await.unwrap() == value, "{key}");
        let len = value.len() as u64;
        let (offset, n) = (len / 3, (len / 3).min(5000));
        let range = store.fetch_range(key, offset, n).await.unwrap();
        assert_eq!(
            &range[..],
            &value[offset as usize..(offset + n) as usize],
            "{key}"
        );
    }
    let report = store.verify(true, None).await.unwrap();
    assert!(report.ok(), "{report:?}");
    // A write into a shared pad rewrites it in format 3; what it held reads.
    store
        .store_item("later", data(40_000, 40), PutOptions::default(), None)
        .await
        .unwrap();
    store.flush().await.unwrap();
    for (key, value) in &expected {
        assert!(store.fetch_item(key, None).await.unwrap() == value, "{key}");
    }
    assert!(store.verify(true, None).await.unwrap().ok());
}
