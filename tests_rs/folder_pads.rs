//! A pad on a local folder, from its first write to its reads: no file
//! until that write (a recorded pad never written reads as empty), and a
//! piece that fills a whole pad checked against the object it was committed
//! in.

use std::sync::Arc;

use anthill::pad_store::BackendError;
use anthill::{Callback, Error, PutEvent, PutOptions, Store};
use bytes::Bytes;
use futures::FutureExt;

use crate::store::{PAD, data, options, put};

/// On a local folder a pad costs nothing until written: reserving it creates
/// no file, its first write does, and a pad recorded but never written (its
/// put stopped before uploading) reads as empty, so its space serves later.
#[tokio::test]
async fn a_folder_creates_each_pad_with_its_first_write() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().to_str().unwrap().to_string();
    let pad_files = || std::fs::read_dir(dir.path().join("p")).map_or(0, |d| d.count());
    let store = Store::open(&url, options()).await.unwrap();
    // Stops the put at its first upload, once all three pads are reserved
    // and mapped (the map changes before each reservation's event).
    let watch = store.clone();
    let stop: Callback<PutEvent> = Arc::new(move |event| {
        let watch = watch.clone();
        async move {
            if matches!(event, PutEvent::StartingUpload { .. }) {
                while watch.summary().await?.total_pads < 3 {
                    tokio::task::yield_now().await;
                }
                return Ok(false);
            }
            Ok(true)
        }
        .boxed()
    });
    let value = data(3 * PAD as usize, 1);
    let stopped = store
        .store_item("big", value.clone(), PutOptions::default(), Some(stop))
        .await;
    assert!(matches!(stopped, Err(Error::Cancelled(_))), "{stopped:?}");
    let summary = store.summary().await.unwrap();
    assert_eq!((summary.total_pads, summary.free_space), (3, 3 * PAD));
    assert_eq!(pad_files(), 0, "reserving a folder pad writes nothing");
    drop(store);

    // A new handle knows nothing of the pads' content: each half-pad write
    // reads its pad first, and finds it empty.
    let store = Store::open(&url, options()).await.unwrap();
    let halves: Vec<Bytes> = (0..6).map(|i| data(PAD as usize / 2, 10 + i)).collect();
    for (i, half) in halves.iter().enumerate() {
        put(&store, &format!("half{i}"), half).await;
    }
    assert_eq!(store.summary().await.unwrap().total_pads, 3, "no new pad");
    store.flush().await.unwrap(); // the halves are written back
    assert_eq!(pad_files(), 3);
    drop(store);
    let store = Store::open(&url, options()).await.unwrap();
    for (i, half) in halves.iter().enumerate() {
        assert_eq!(
            &store.fetch_item(&format!("half{i}"), None).await.unwrap(),
            half
        );
    }

    // A written pad that goes missing is an error, never an empty pad.
    let victim = std::fs::read_dir(dir.path().join("p"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::remove_file(victim).unwrap();
    let store = Store::open(&url, options()).await.unwrap();
    let mut failures = Vec::new();
    for i in 0..halves.len() {
        if let Err(error) = store.fetch_item(&format!("half{i}"), None).await {
            failures.push(error);
        }
    }
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(
        failures
            .iter()
            .all(|e| matches!(e, Error::Backend(BackendError::NotFound(_)))),
        "{failures:?}"
    );
}

/// A piece that fills its pad is checked against the very object its put
/// committed (the object's tag is its digest): another object for the same
/// pad and version, valid under the store's keys (a second writer's, say),
/// is refused even though the AEAD accepts it, and even with equal bytes.
#[tokio::test]
async fn a_whole_pad_piece_is_checked_against_the_object_it_was_committed_in() {
    use anthill::meta::Meta;
    use anthill::pad::{self, PadId};

    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().to_str().unwrap().to_string();
    let store = Store::open(&url, options()).await.unwrap();
    let value = data(2 * PAD as usize, 4);
    put(&store, "big", &value).await;
    drop(store);

    let meta = Meta::decode(&std::fs::read(dir.path().join("meta")).unwrap()).unwrap();
    let keys = meta.unlock(&options().secret).unwrap();
    let pad_file = std::fs::read_dir(dir.path().join("p"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let name = format!("p/{}", pad_file.file_name().unwrap().to_str().unwrap());
    let id = PadId::from_object_name(&name).unwrap();
    let sealed = std::fs::read(&pad_file).unwrap();
    let (version, plaintext) = pad::decode(&keys, &meta.store_id, id, 0, PAD, &sealed).unwrap();
    let resealed = pad::encode(&keys, &meta.store_id, id, version, &plaintext).unwrap();
    std::fs::write(&pad_file, resealed).unwrap();

    let store = Store::open(&url, options()).await.unwrap();
    let fetched = store.fetch_item("big", None).await;
    assert!(
        matches!(fetched, Err(Error::Integrity(ref m)) if m.contains("digest")),
        "{fetched:?}"
    );
}
