//! Objects a store did not write are never trusted: an object under a pad's
//! name is adopted only if it opens with the store's keys.

use anthill::meta::Meta;
use anthill::pad::{self, PadId};
use anthill::{PutOptions, Store, StoreOptions};
use bytes::Bytes;

fn options() -> StoreOptions {
    let mut options = StoreOptions::default();
    options.secret = b"hardening secret".to_vec();
    options.pad_size = Some(4096);
    options
}

async fn put(store: &Store, key: &str, value: &[u8]) {
    store
        .store_item(
            key,
            Bytes::copy_from_slice(value),
            PutOptions::default(),
            None,
        )
        .await
        .unwrap();
}

/// A pad object whose name looks right but which is garbage, or a pad of
/// another store, is left alone at open: the store does not count it as
/// space, and keeps working. A genuine unrecorded pad is still adopted.
#[tokio::test(flavor = "multi_thread")]
async fn only_objects_that_open_with_the_stores_keys_are_adopted_as_pads() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().to_str().unwrap().to_string();
    let store = Store::open(&url, options()).await.unwrap();
    put(&store, "kept", b"some bytes").await;
    let pads = store.summary().await.unwrap().total_pads;
    store.close().await.unwrap();
    drop(store);

    let pad_dir = dir.path().join("p");
    // Garbage, with and without the pad magic.
    std::fs::write(
        pad_dir.join(&PadId::random().object_name()[2..]),
        b"not a pad at all",
    )
    .unwrap();
    let mut fake = b"AHP2".to_vec();
    fake.extend_from_slice(&[0u8; 8]);
    fake.extend_from_slice(&[7u8; 100]);
    std::fs::write(pad_dir.join(&PadId::random().object_name()[2..]), &fake).unwrap();
    // A genuine pad of another store with the same secret.
    let other = Meta::new(&options().secret, 4096).unwrap();
    let other_keys = other.unlock(&options().secret).unwrap();
    let foreign = PadId::random();
    let sealed = pad::encode(&other_keys, &other.store_id, foreign, 1, b"x").unwrap();
    std::fs::write(pad_dir.join(&foreign.object_name()[2..]), sealed).unwrap();

    let store = Store::open(&url, options()).await.unwrap();
    assert_eq!(store.summary().await.unwrap().total_pads, pads);
    assert_eq!(
        &store.fetch_item("kept", None).await.unwrap()[..],
        b"some bytes"
    );
    put(&store, "new", &[5u8; 6000]).await;
    assert_eq!(
        &store.fetch_item("new", None).await.unwrap()[..],
        &[5u8; 6000]
    );
    let pads = store.summary().await.unwrap().total_pads;
    store.close().await.unwrap();
    drop(store);

    // A pad of this store the index does not know (a crash between its
    // reservation and its record) is still adopted.
    let meta = Meta::decode(&std::fs::read(dir.path().join("meta")).unwrap()).unwrap();
    let keys = meta.unlock(&options().secret).unwrap();
    let orphan = PadId::random();
    let sealed = pad::encode(&keys, &meta.store_id, orphan, 1, b"orphan").unwrap();
    std::fs::write(pad_dir.join(&orphan.object_name()[2..]), sealed).unwrap();
    let store = Store::open(&url, options()).await.unwrap();
    assert_eq!(store.summary().await.unwrap().total_pads, pads + 1);
    assert_eq!(
        &store.fetch_item("new", None).await.unwrap()[..],
        &[5u8; 6000]
    );
    store.close().await.unwrap();
}
