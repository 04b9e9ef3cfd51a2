//! End to end: a store whose journal holds arbitrary (authentic) records.
//!
//! The input builds records as `records_roundtrip` does, splits them into log
//! batches `j/0, j/1, …`, optionally writes a checkpoint over the first
//! batches, and seals everything with the store's real keys in a fresh
//! in-memory backend. Then `Store::open_with_backend` (journal load, replay,
//! the allocator's map rebuild, orphan adoption), `summary`, a put of fresh
//! data, a fetch of it (which must return the same bytes), and a remove.
//! Some of the index's pads get a genuine pad object of the version the
//! index expects and of any length, and the index's items are fetched.
//! Errors are fine (an inconsistent index is an integrity error); panics,
//! hangs and wrong bytes are not.
#![no_main]

use std::sync::{Arc, OnceLock};

use anthill::index::{self, Index, Record};
use anthill::meta::Meta;
use anthill::pad;
use anthill::pad_store::{self, Backend, BackendOptions};
use anthill::{PutOptions, Store, StoreOptions};
use anthill_fuzz::{SECRET, apply_all, journal_object, number, records};
use arbitrary::{Result as ArbResult, Unstructured};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tokio::runtime::Runtime;

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

struct Layout {
    pad_size: u64,
    batches: Vec<Vec<Record>>,
    /// Checkpoint the index as of this log sequence number.
    checkpoint: Option<u64>,
    /// Keep the log objects the checkpoint absorbed (a crash before cleanup).
    keep_absorbed: bool,
    new_key: String,
    new_size: u64,
    /// Plaintext lengths of the pad objects written for the index's first
    /// pads (as many as given; the other pads have no object).
    pad_lens: Vec<u64>,
}

fn layout(u: &mut Unstructured) -> ArbResult<Layout> {
    let pad_size = *u.choose(&[512u64, 4096, 65536])?;
    let batch_count = u.int_in_range(1..=3usize)?;
    let checkpoint = if u.ratio(1, 3)? {
        Some(u.int_in_range(0..=batch_count as u64 - 1)?)
    } else {
        None
    };
    let keep_absorbed = u.arbitrary()?;
    let new_key = (*u.choose(&["a", "b", "fresh"])?).to_string();
    let new_size = number(u, 3 * pad_size)?.min(3 * pad_size);
    let pad_count = u.int_in_range(0..=4usize)?;
    let pad_lens = (0..pad_count)
        .map(|_| Ok(number(u, pad_size)?.min(pad_size)))
        .collect::<ArbResult<_>>()?;
    let mut batches = vec![Vec::new(); batch_count];
    let all = records(u, pad_size, 64)?;
    let per = all.len().div_ceil(batch_count).max(1);
    for (i, record) in all.into_iter().enumerate() {
        batches[(i / per).min(batch_count - 1)].push(record);
    }
    Ok(Layout {
        pad_size,
        batches,
        checkpoint,
        keep_absorbed,
        new_key,
        new_size,
        pad_lens,
    })
}

/// A fresh anonymous memory backend holding the store that `layout` describes.
async fn write_store(layout: &Layout) -> Arc<dyn Backend> {
    let backend = pad_store::open("memory://", &BackendOptions::default())
        .await
        .expect("memory backend");
    let meta = Meta::new(SECRET, layout.pad_size).expect("meta");
    let keys = meta.unlock(SECRET).expect("unlock");
    let mut objects = vec![("meta".to_string(), meta.encode().expect("encode meta"))];
    let mut index = Index::default();
    for (seq, batch) in layout.batches.iter().enumerate() {
        let seq = seq as u64;
        apply_all(&mut index, batch);
        let absorbed = layout.checkpoint.is_some_and(|c| seq <= c);
        if !absorbed || layout.keep_absorbed {
            let plaintext = index::to_bytes(batch).expect("encode batch");
            objects.push(journal_object(
                &keys,
                &meta.store_id,
                false,
                seq,
                &plaintext,
            ));
        }
        if layout.checkpoint == Some(seq) {
            let plaintext = index::to_bytes(&index).expect("encode checkpoint");
            objects.push(journal_object(&keys, &meta.store_id, true, seq, &plaintext));
        }
    }
    // Pad objects for the first pads the final index owns, at the version
    // the index expects, holding a prefix of a recognisable pattern.
    for (len, (_, (id, version))) in layout.pad_lens.iter().zip(&index.pads) {
        let plaintext: Vec<u8> = (0..*len).map(|i| (i % 253) as u8).collect();
        let sealed = pad::encode(&keys, &meta.store_id, *id, *version, &plaintext).expect("pad");
        objects.push((id.object_name(), sealed));
    }
    for (name, content) in objects {
        backend
            .put(&name, Bytes::from(content))
            .await
            .expect("memory put");
    }
    backend
}

fn options() -> StoreOptions {
    let mut options = StoreOptions::default();
    options.secret = SECRET.to_vec();
    options.retry_attempts = 1;
    options
}

async fn exercise(layout: Layout) {
    let backend = write_store(&layout).await;
    let Ok(store) = Store::open_with_backend("memory://", backend, options()).await else {
        return;
    };
    if let Ok(summary) = store.summary().await {
        assert!(summary.used_space <= summary.total_space, "{summary:?}");
        assert_eq!(summary.used_space + summary.free_space, summary.total_space);
    }
    // Items of the decoded index, read from the pads written above (their
    // digests will not match, so errors are expected; panics are not).
    if let Ok(keys) = store.keys().await {
        for key in keys.iter().take(4) {
            let _ = store.fetch_item(key, None).await;
        }
    }
    let data = Bytes::from(
        (0..layout.new_size)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    let mut put = PutOptions::default();
    put.overwrite = true;
    if store
        .store_item(&layout.new_key, data.clone(), put, None)
        .await
        .is_ok()
    {
        let fetched = store.fetch_item(&layout.new_key, None).await;
        match fetched {
            Ok(bytes) => assert!(bytes == data, "fetch returned other bytes than were put"),
            // Other items' pads are absent from the backend; only a pad this
            // put wrote may be read. An error is allowed, wrong bytes not.
            Err(_) => {}
        }
        let _ = store.remove_item(&layout.new_key).await;
    }
    let _ = store.close().await;
}

fuzz_target!(
    init: {
        // The journal format is mirrored in anthill_fuzz::journal_object: a
        // store written that way must open, or this target tests nothing.
        let layout = Layout {
            pad_size: 4096,
            batches: vec![anthill_fuzz::sample_records()],
            checkpoint: None,
            keep_absorbed: false,
            new_key: "fresh".into(),
            new_size: 10,
            pad_lens: vec![4096, 100],
        };
        runtime().block_on(async {
            let backend = write_store(&layout).await;
            let store = Store::open_with_backend("memory://", backend, options())
                .await
                .unwrap_or_else(|e| {
                    panic!("a store written by the fuzz crate does not open ({e}); update anthill_fuzz::journal_object to the journal's format")
                });
            let summary = store.summary().await.expect("summary");
            assert_eq!(summary.items, 1, "{summary:?}");
        });
    },
    |data: &[u8]| {
        let mut u = Unstructured::new(data);
        let Ok(layout) = layout(&mut u) else {
            return;
        };
        runtime().block_on(exercise(layout));
    }
);
