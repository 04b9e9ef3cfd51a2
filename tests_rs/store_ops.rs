//! Store operations in the core: rename, verify, compaction (and what it
//! needs of the memory map and the index), across handles and failures.

use std::sync::Arc;

use anthill::index::{Entry, Index, PadRecord, Piece, Record};
use anthill::memory_map::{Extent, MemoryMap};
use anthill::pad::PadId;
use anthill::pad_store::{self, Backend, BackendOptions, OpKind, SimConfig, SimPadStore};
use anthill::{PutOptions, Store, StoreOptions};
use bytes::Bytes;

const PAD: u64 = 4096;

fn options() -> StoreOptions {
    let mut options = StoreOptions::default();
    options.secret = b"test secret".to_vec();
    options.pad_size = Some(PAD);
    options
}

fn data(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<u8>>()
        .into()
}

/// Items of mixed sizes, then three in four removed; the survivors.
async fn fill_and_thin(store: &Store) -> Vec<(String, Bytes)> {
    let sizes = [30, 700, 1500, 3000, 5000, 9000];
    let mut kept = Vec::new();
    for i in 0..80usize {
        let key = format!("k{i}");
        let value = data(sizes[i % sizes.len()], i as u8);
        store
            .store_item(&key, value.clone(), PutOptions::default(), None)
            .await
            .unwrap();
        if i % 4 == 0 {
            kept.push((key, value));
        } else {
            store.remove_item(&key).await.unwrap();
        }
    }
    kept
}

#[test]
fn removing_wholly_free_pads_leaves_the_rest_of_the_map_as_it_was() {
    let mut map = MemoryMap::new(PAD);
    for ordinal in 0..5 {
        map.add_pad(ordinal).unwrap();
    }
    let used = [
        Extent {
            start: 10,
            len: 100,
        },
        Extent {
            start: 2 * PAD + 7,
            len: PAD,
        },
        Extent {
            start: 4 * PAD,
            len: 5,
        },
    ];
    map.take(&used).unwrap();
    // Pad 1 is wholly free; pad 2 and 3 share an item; pad 0 and 4 hold some.
    assert!(map.remove_pads(&[2]).is_err());
    map.remove_pads(&[1]).unwrap();
    map.check_invariants().unwrap();
    assert_eq!(map.pads(), vec![0, 2, 3, 4]);
    assert_eq!(map.holes(), vec![1]);
    assert_eq!(map.used_space(), 105 + PAD);
    // What stayed used is still used: freeing it works, freeing it twice fails.
    map.free(&used).unwrap();
    assert!(map.free(&used[..1]).is_err());
    map.check_invariants().unwrap();
    assert_eq!(map.free_space(), 4 * PAD);
    // The hole can be filled again.
    map.add_pad(1).unwrap();
    map.check_invariants().unwrap();
    assert_eq!(
        map.free_extents(),
        vec![Extent {
            start: 0,
            len: 5 * PAD
        }]
    );
}

fn piece(pad: u64, offset: u64, len: u64, version: u64) -> Piece {
    Piece {
        pad,
        offset,
        len,
        version,
    }
}

fn entry(data_id: u64, pieces: Vec<Piece>) -> Entry {
    let size = pieces.iter().map(|p| p.len).sum();
    Entry {
        data_id,
        size,
        hash: [0; 16],
        pieces,
        created: 0,
        modified: 0,
    }
}

#[test]
fn a_rename_carries_a_log_only_item_and_releases_the_replaced_one() {
    let mut index = Index::default();
    let pads = (0..2)
        .map(|ordinal| PadRecord {
            ordinal,
            id: PadId::random(),
        })
        .collect();
    index.apply(&Record::PadsAdded(pads)).unwrap();
    let small = entry(1, vec![piece(0, 0, 4, 0)]);
    index
        .apply(&Record::PutInline {
            key: "small".into(),
            entry: small,
            data: Bytes::from_static(b"abcd"),
        })
        .unwrap();
    let target = entry(2, vec![piece(1, 0, 10, 1)]);
    index
        .apply(&Record::Put {
            key: "target".into(),
            entry: target,
        })
        .unwrap();
    let released = index
        .apply(&Record::Rename {
            from: "small".into(),
            to: "target".into(),
        })
        .unwrap();
    assert_eq!(released, vec![piece(1, 0, 10, 1)]);
    assert!(!index.items.contains_key("small").unwrap());
    // The write-back of pad 0 finds the item under its new name.
    let parts = index.dirty_parts(0);
    assert_eq!(parts.unwrap(), vec![(1, 0, Bytes::from_static(b"abcd"))]);
    index
        .apply(&Record::WrittenBack {
            pad: 0,
            version: 3,
            data_ids: vec![1],
        })
        .unwrap();
    assert_eq!(
        index.items.get("target").unwrap().unwrap().pieces[0].version,
        3
    );
    assert!(index.inline.is_empty() && index.dirty_pads.is_empty());
    // A pad still holding data cannot be removed; an empty one can.
    assert!(index.apply(&Record::PadsRemoved(vec![0])).is_err());
    index.apply(&Record::PadsRemoved(vec![1])).unwrap();
    assert_eq!(index.pads.keys().copied().collect::<Vec<_>>(), vec![0]);
}

/// A handle that read the index before another one compacted (deleting
/// pads) still reads every item: a pad gone means the item moved, so the
/// read catches up and follows it. It then writes into the store with
/// holes in its ordinals, and the compacting handle reads that back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_handle_follows_items_a_compaction_moved() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().to_str().unwrap().to_string();
    let a = Store::open(&url, options()).await.unwrap();
    let kept = fill_and_thin(&a).await;
    a.flush().await.unwrap();
    let b = Store::open(&url, options()).await.unwrap();
    let report = a.compact(None).await.unwrap();
    assert!(report.pads_released > 0, "{report:?}");
    for (key, value) in &kept {
        assert_eq!(&b.fetch_item(key, None).await.unwrap(), value, "{key}");
    }
    b.store_item(
        "after",
        data(3 * PAD as usize, 9),
        PutOptions::default(),
        None,
    )
    .await
    .unwrap();
    b.close().await.unwrap();
    assert_eq!(
        a.fetch_item("after", None).await.unwrap(),
        data(3 * PAD as usize, 9)
    );
    assert!(a.verify(true, None).await.unwrap().ok());
    a.close().await.unwrap();
}

/// Emptied pads whose deletion failed stay on the backend, unknown to the
/// index (their removal is recorded): the next open adopts them as free
/// space, and nothing is lost or damaged.
#[tokio::test]
async fn a_pad_left_undeleted_by_a_compaction_is_adopted_as_free_space() {
    let inner = pad_store::open("memory://", &BackendOptions::default())
        .await
        .unwrap();
    let sim = Arc::new(SimPadStore::new(Arc::clone(&inner), SimConfig::default()));
    let store =
        Store::open_with_backend("sim+memory://", sim.clone() as Arc<dyn Backend>, options())
            .await
            .unwrap();
    let kept = fill_and_thin(&store).await;
    for _ in 0..4 {
        sim.fail_next_on(OpKind::Delete, "p/", true);
    }
    let report = store.compact(None).await.unwrap();
    assert!(report.pads_released >= 4, "{report:?}");
    assert_eq!(sim.sim_stats().pads_deleted, report.pads_released - 4);
    store.close().await.unwrap();
    drop(store);
    let reopened = Store::open_with_backend("memory://", inner, options())
        .await
        .unwrap();
    let summary = reopened.summary().await.unwrap();
    assert_eq!(summary.total_pads, report.pads_after + 4);
    for (key, value) in &kept {
        assert_eq!(&reopened.fetch_item(key, None).await.unwrap(), value);
    }
    let verified = reopened.verify(true, None).await.unwrap();
    assert!(verified.ok(), "{verified:?}");
    assert_eq!(verified.items_checked, kept.len() as u64);
    // A second compaction releases them.
    let again = reopened.compact(None).await.unwrap();
    assert!(again.pads_after <= report.pads_after, "{again:?}");
}

/// `pads_refund=false` on a sim+ URL models a network where a pad once
/// paid for stays paid for; anything but a boolean is refused.
#[tokio::test]
async fn the_sim_models_both_kinds_of_backend() {
    let no_options = BackendOptions::default();
    let refunding = pad_store::open("sim+memory://r1", &no_options)
        .await
        .unwrap();
    assert!(refunding.capabilities().deleting_pads_refunds);
    let keeping = pad_store::open("sim+memory://r2?pads_refund=false", &no_options)
        .await
        .unwrap();
    assert!(!keeping.capabilities().deleting_pads_refunds);
    assert!(keeping.describe().contains("pads_refund=false"));
    let bad = pad_store::open("sim+memory://r3?pads_refund=maybe", &no_options).await;
    assert!(
        matches!(bad, Err(anthill::Error::InvalidInput(_))),
        "{bad:?}"
    );
}

/// Space a move frees in a pad being emptied is not handed to the next
/// move of the same pass: one compaction empties the pad. Pad 0 holds `a`
/// (and room, once `b` is removed); pad 1 a small item then a large one.
/// The large one moves first (largest first), freeing 400 bytes in pad 1,
/// which fit the small one better than pad 0's run does.
#[tokio::test]
async fn a_compaction_never_moves_an_item_into_a_pad_it_is_emptying() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().to_str().unwrap().to_string();
    let store = Store::open(&url, options()).await.unwrap();
    let items = [
        ("a", data(2000, 1)),
        ("b", data(2000, 2)),
        ("small", data(PAD as usize / 16 - 56, 3)),
        ("large", data(400, 4)),
    ];
    for (key, value) in &items {
        store
            .store_item(key, value.clone(), PutOptions::default(), None)
            .await
            .unwrap();
    }
    store.flush().await.unwrap();
    assert_eq!(store.summary().await.unwrap().total_pads, 2);
    store.remove_item("b").await.unwrap();
    let report = store.compact(None).await.unwrap();
    assert_eq!(
        (report.items_moved, report.pads_released, report.pads_after),
        (2, 1, 1),
        "{report:?}"
    );
    let usage = store.pad_usage().unwrap();
    assert_eq!(usage.pads.len(), 1, "{usage:?}");
    for (key, value) in items.iter().filter(|(key, _)| *key != "b") {
        assert_eq!(&store.fetch_item(key, None).await.unwrap(), value, "{key}");
    }
    assert!(store.verify(true, None).await.unwrap().ok());
    store.close().await.unwrap();
}
