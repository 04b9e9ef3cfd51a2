//! Reads fetch the segments under what they need, not whole pads (issue 27):
//! counted by `sim+` on a folder, from a fresh handle on written-back pads,
//! and tampered segments on the folder are integrity errors.

use anthill::{Error, PutOptions, Store, StoreOptions};
use bytes::Bytes;

const PAD: u64 = 4 << 20;
/// What a read may fetch beyond its bytes: a partial segment at each end.
const SLACK: u64 = 128 << 10;

fn options() -> StoreOptions {
    let mut options = StoreOptions::default();
    options.secret = b"ranged reads secret".to_vec();
    options.pad_size = Some(PAD);
    options
}

fn data(len: u64, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(29).wrapping_add(seed))
        .collect()
}

/// Bytes fetched so far by the store's `sim+` backend (whole and ranged gets).
fn fetched(store: &Store) -> u64 {
    store.backend_stats().expect("a sim+ store").get.bytes
}

/// A `sim+` folder store holding `items` (key, size), written back to their
/// pads and closed; its folder and URL.
async fn written_back(items: &[(&str, u64)]) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sim+file://{}", dir.path().display());
    let store = Store::open(&url, options()).await.unwrap();
    for (i, (key, size)) in items.iter().enumerate() {
        store
            .store_item(key, data(*size, i as u8), PutOptions::default(), None)
            .await
            .unwrap();
    }
    store.flush().await.unwrap();
    store.close().await.unwrap();
    (dir, url)
}

/// A get of an item of `s` bytes, sharing written-back 4 MiB pads with
/// others, from a fresh handle, fetches at most `s` + 128 KiB of pads.
#[tokio::test(flavor = "multi_thread")]
async fn a_get_fetches_about_the_item_not_its_pads() {
    for size in [1 << 10, 16 << 10, 300 << 10, 1 << 20] {
        let keys = ["before", "item", "after"];
        let items: Vec<(&str, u64)> = keys.iter().map(|k| (*k, size)).collect();
        let (_dir, url) = written_back(&items).await;
        let store = Store::open(&url, options()).await.unwrap();
        let before = fetched(&store);
        let item = store.fetch_item("item", None).await.unwrap();
        let cost = fetched(&store) - before;
        assert!(item == data(size, 1), "{size}-byte item");
        println!("a get of a {size}-byte item fetched {cost} bytes");
        assert!(
            cost <= size + SLACK,
            "a get of a {size}-byte item fetched {cost} bytes"
        );
        // Verify reads only what the items need too, and finds them sound.
        let before = fetched(&store);
        let report = store.verify(true, None).await.unwrap();
        assert!(report.ok());
        assert!(
            fetched(&store) - before <= 3 * size + SLACK,
            "{size}: verify"
        );
    }
}

/// A 1 KiB `fetch_range` in a 20 MiB item fetches at most 128 KiB, and so
/// does a read of an open item.
#[tokio::test(flavor = "multi_thread")]
async fn a_range_read_fetches_about_the_range() {
    let size = 20 << 20;
    let (_dir, url) = written_back(&[("big", size)]).await;
    let store = Store::open(&url, options()).await.unwrap();
    let whole = data(size, 0);
    for offset in [0, 7 * PAD / 2 + 12_345, size - 1024] {
        let before = fetched(&store);
        let range = store.fetch_range("big", offset, 1024).await.unwrap();
        assert_eq!(range, whole.slice(offset as usize..offset as usize + 1024));
        let cost = fetched(&store) - before;
        println!("a 1 KiB fetch_range at {offset} fetched {cost} bytes");
        assert!(
            cost <= SLACK,
            "fetch_range at {offset} fetched {cost} bytes"
        );
    }
    let handle = store.open_item("big").await.unwrap();
    let before = fetched(&store);
    let read = handle.read(9 << 20, 1024).await.unwrap();
    assert_eq!(read, whole.slice(9 << 20..(9 << 20) + 1024));
    assert!(fetched(&store) - before <= SLACK);
}

/// The pad file of a folder store (its only one).
fn only_pad(dir: &std::path::Path) -> std::path::PathBuf {
    let pads: Vec<_> = std::fs::read_dir(dir.join("p"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(pads.len(), 1);
    pads[0].clone()
}

/// Segments of a written-back pad flipped, swapped, cut or extended on the
/// folder: reads of the item through the store are integrity errors.
#[tokio::test(flavor = "multi_thread")]
async fn tampered_segments_are_integrity_errors() {
    let frame = anthill::pad::FRAME as usize;
    let segment = anthill::pad::SEGMENT;
    // One item of 2.5 segments: three frames, the last one short.
    let size = segment * 5 / 2;
    type Tamper = fn(&mut Vec<u8>, usize);
    // Each with a range read that meets the tampered frames.
    let tampers: [(&str, Tamper, u64); 4] = [
        ("flipped", |pad, frame| pad[frame + 200] ^= 4, segment + 100),
        (
            "swapped",
            |pad, frame| {
                let first: Vec<u8> = pad[..frame].to_vec();
                pad.copy_within(frame..2 * frame, 0);
                pad[frame..2 * frame].copy_from_slice(&first);
            },
            0,
        ),
        (
            "last dropped",
            |pad, frame| pad.truncate(2 * frame),
            size - 100,
        ),
        (
            "one appended",
            |pad, frame| {
                let copy = pad[frame..2 * frame].to_vec();
                pad.extend_from_slice(&copy);
            },
            size - 100,
        ),
    ];
    for (what, tamper, offset) in tampers {
        let (dir, url) = written_back(&[("item", size)]).await;
        let path = only_pad(dir.path());
        let mut pad = std::fs::read(&path).unwrap();
        tamper(&mut pad, frame);
        std::fs::write(&path, &pad).unwrap();
        let store = Store::open(&url, options()).await.unwrap();
        let range = store.fetch_range("item", offset, 100).await;
        assert!(
            matches!(range, Err(Error::Integrity(_))),
            "{what}: {range:?}"
        );
        let whole = store.fetch_item("item", None).await;
        assert!(
            matches!(whole, Err(Error::Integrity(_))),
            "{what}: {whole:?}"
        );
        let report = store.verify(true, None).await.unwrap();
        assert_eq!(report.damaged, ["item"], "{what}");
    }
}
