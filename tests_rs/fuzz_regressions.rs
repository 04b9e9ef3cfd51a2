//! Regressions found by fuzzing (`scripts/fuzz.sh`, see fuzz/regressions.md).
//! Each input is authentic (sealed with the store's keys), so only a writer
//! holding the secret, or a bug, can produce it; still, loading it must give
//! an error or a working store, never a panic (a panic under the journal
//! lock poisons it, and every later call on the store panics too).

use std::sync::Arc;
use std::time::Duration;

use anthill::crypto;
use anthill::index::{self, Entry, Index, PadRecord, Piece, Record};
use anthill::meta::Meta;
use anthill::pad::PadId;
use anthill::pad_store::{self, Backend, BackendOptions};
use anthill::{Error, PutOptions, Store, StoreOptions};
use bytes::Bytes;

const SECRET: &[u8] = b"regression secret";

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A fresh in-memory store (4096-byte pads) whose journal is the log object
/// `j/0` holding `log`, and optionally the checkpoint `c/0` (which then
/// absorbs `j/0`), sealed as `journal/` seals them.
async fn open_store(log: &[Record], checkpoint: Option<&Index>) -> anthill::Result<Store> {
    open_store_with_pads(log, checkpoint, &[]).await
}

/// [`open_store`], plus genuine pad objects `(id, version, plaintext)`.
async fn open_store_with_pads(
    log: &[Record],
    checkpoint: Option<&Index>,
    pads: &[(PadId, u64, Vec<u8>)],
) -> anthill::Result<Store> {
    let backend: Arc<dyn Backend> =
        pad_store::open("memory://", &BackendOptions::default()).await?;
    let meta = Meta::new(SECRET, 4096)?;
    let keys = meta.unlock(SECRET)?;
    backend.put("meta", Bytes::from(meta.encode()?)).await?;
    let seal = |kind: &str, plaintext: Vec<u8>| {
        let mut aad = format!("anthill {kind}").into_bytes();
        aad.extend_from_slice(&meta.store_id);
        aad.extend_from_slice(&0u64.to_le_bytes());
        crypto::seal(keys.index(), &aad, &plaintext).map(Bytes::from)
    };
    backend
        .put(
            "j/0000000000000000",
            seal("journal", index::to_bytes(&log.to_vec())?)?,
        )
        .await?;
    if let Some(index) = checkpoint {
        backend
            .put(
                "c/0000000000000000",
                seal("checkpoint", index::to_bytes(index)?)?,
            )
            .await?;
    }
    for (id, version, plaintext) in pads {
        let sealed = anthill::pad::encode(&keys, &meta.store_id, *id, *version, plaintext)?;
        backend.put(&id.object_name(), Bytes::from(sealed)).await?;
    }
    let mut options = StoreOptions::default();
    options.secret = SECRET.to_vec();
    Store::open_with_backend("memory://", backend, options).await
}

/// An open store is fine, so is an integrity error; anything else is not.
fn opened_or_refused(result: anthill::Result<Store>) -> Option<Store> {
    match result {
        Ok(store) => Some(store),
        Err(Error::Integrity(_)) => None,
        Err(other) => panic!("expected a store or an integrity error, got {other}"),
    }
}

fn entry(data_id: u64, pieces: Vec<Piece>) -> Entry {
    Entry {
        data_id,
        size: pieces.iter().map(|p| p.len).sum(),
        hash: [0; 16],
        pieces,
        created: 0,
        modified: 0,
    }
}

fn pad_1() -> Record {
    Record::PadsAdded(vec![PadRecord {
        ordinal: 1,
        id: PadId([1; 16]),
    }])
}

/// Bug A: `Index::apply` computes `entry.data_id + 1` (index.rs, note_entry).
/// journal_records input; panicked "attempt to add with overflow".
#[test]
fn fuzz_a_data_id_max_is_applied_without_overflow() {
    let bytes = hex("01 02 01 6b ffffffffffffffffff01 00
         00000000000000000000000000000000 00 00 00");
    let records: Vec<Record> = index::from_bytes(&bytes, "index log").unwrap();
    assert_eq!(
        records,
        vec![Record::Put {
            key: "k".into(),
            entry: entry(u64::MAX, vec![]),
        }]
    );
    let mut index = Index::default();
    for record in &records {
        let _ = index.apply(record); // Ok or Err, no panic
    }
}

/// Bug A through the store: an index whose highest data id is u64::MAX - 1
/// opens, the next put hands out data id u64::MAX and its record panics in
/// the journal's flush task ("index writer stopped"), poisoning the journal
/// lock: every later call panicked on `expect("journal lock")`.
#[tokio::test]
async fn fuzz_a_store_survives_the_last_data_id() {
    let log = vec![Record::Put {
        key: "k".into(),
        entry: entry(u64::MAX - 1, vec![]),
    }];
    let Some(store) = opened_or_refused(open_store(&log, None).await) else {
        return;
    };
    for key in ["new", "other"] {
        let put = store.store_item(key, Bytes::from_static(b"x"), PutOptions::default(), None);
        let _ = tokio::time::timeout(Duration::from_secs(10), put)
            .await
            .expect("put hangs");
    }
    let _ = store.summary().await;
}

/// Bug B: `Piece::extent` computes `pad * pad_size + offset` unchecked
/// (index.rs), called by the allocator's map rebuild at open. Journal
/// input: pad 1 added, then a piece in pad 1 at offset u64::MAX.
/// Panicked "attempt to add with overflow" at index.rs `extent`.
#[tokio::test]
async fn fuzz_b_piece_offset_past_the_address_space() {
    let bytes = hex("02 00 01 01 01010101010101010101010101010101
         02 01 6b 00 01 00000000000000000000000000000000
         01 01 ffffffffffffffffff01 01 00 00 00");
    let records: Vec<Record> = index::from_bytes(&bytes, "index log").unwrap();
    assert_eq!(
        records,
        vec![
            pad_1(),
            Record::Put {
                key: "k".into(),
                entry: entry(
                    0,
                    vec![Piece {
                        pad: 1,
                        offset: u64::MAX,
                        len: 1,
                        version: 0
                    }]
                ),
            },
        ]
    );
    assert!(opened_or_refused(open_store(&records, None).await).is_none());
}

/// Bug B via a checkpoint: a checkpoint is decoded as a whole `Index`, never
/// through `apply`, so its pieces may name pads it does not own. Here pad
/// u64::MAX: `pad * pad_size` panicked "attempt to multiply with overflow".
#[tokio::test]
async fn fuzz_b_checkpoint_piece_in_a_pad_it_does_not_own() {
    let bytes = hex("00 01 01 6b 00 01 00000000000000000000000000000000
         01 ffffffffffffffffff01 00 01 00 00 00 00 00");
    let checkpoint: Index = index::from_bytes(&bytes, "index checkpoint").unwrap();
    assert_eq!(checkpoint.pads.len(), 0);
    assert_eq!(
        checkpoint.items.get("k").unwrap().unwrap().pieces[0].pad,
        u64::MAX
    );
    assert!(opened_or_refused(open_store(&[], Some(&checkpoint)).await).is_none());
}

/// Bug C: pad versions near u64::MAX. A piece of version u64::MAX makes the
/// pad's version u64::MAX, and opening the store panicked in
/// `PadWriter::add_pad` (`version + 1`, pad_io.rs).
#[tokio::test]
async fn fuzz_c_pad_version_max_at_open() {
    let log = vec![
        pad_1(),
        Record::Put {
            key: "k".into(),
            entry: entry(
                0,
                vec![Piece {
                    pad: 1,
                    offset: 0,
                    len: 1,
                    version: u64::MAX,
                }],
            ),
        },
    ];
    let _ = opened_or_refused(open_store(&log, None).await);
}

/// Bug C, the write path: version u64::MAX - 1 opens; a put into the pad's
/// free space fails (its object is absent here) and the flush's error path
/// panicked (`state.next_version += 1`, pad_io.rs), so the put returned
/// "the pad writer stopped". `flush_batch`'s `base_version + 1` has the same
/// overflow once a pad of version u64::MAX is read.
#[tokio::test]
async fn fuzz_c_pad_version_near_max_on_write() {
    let log = vec![
        pad_1(),
        Record::Put {
            key: "k".into(),
            entry: entry(
                0,
                vec![Piece {
                    pad: 1,
                    offset: 0,
                    len: 1,
                    version: u64::MAX - 1,
                }],
            ),
        },
    ];
    let Some(store) = opened_or_refused(open_store(&log, None).await) else {
        return;
    };
    let put = store.store_item("new", Bytes::from_static(b"x"), PutOptions::default(), None);
    match tokio::time::timeout(Duration::from_secs(10), put)
        .await
        .expect("put hangs")
    {
        Ok(()) => {}
        Err(error) => assert!(
            !error.to_string().contains("stopped"),
            "a task of the store died: {error}"
        ),
    }
}

/// Hardening (needs the secret): metadata with a pad size of 0 authenticates
/// and opening the store panicked in `MemoryMap::new` ("pad size must be
/// positive"). `Meta::decode`/`open_meta` could refuse pad sizes outside
/// 512 ..= 1 GiB as an integrity error.
#[tokio::test]
async fn fuzz_d_metadata_with_pad_size_zero() {
    let backend: Arc<dyn Backend> = pad_store::open("memory://", &BackendOptions::default())
        .await
        .unwrap();
    let meta = Meta::new(SECRET, 0).unwrap();
    backend
        .put("meta", Bytes::from(meta.encode().unwrap()))
        .await
        .unwrap();
    let mut options = StoreOptions::default();
    options.secret = SECRET.to_vec();
    let result = Store::open_with_backend("memory://", backend, options).await;
    assert!(matches!(
        result,
        Err(Error::Integrity(_)) | Err(Error::InvalidInput(_))
    ));
}

/// Bug E: `MemoryAllocator::read` slices `content[from..from + available]`
/// where `from` is the piece's offset; when the pad's stored prefix is
/// shorter than that offset, `available` is 0 but the slice start is out of
/// range: "range start index 100 out of range for slice of length 50"
/// (allocator.rs, `read`). An index slicing panic, so release builds panic
/// too. Expected: zeros (as the code intends for bytes past the prefix),
/// then the digest check's integrity error.
#[tokio::test]
async fn fuzz_e_fetch_piece_past_the_pad_prefix() {
    let log = vec![
        pad_1(),
        Record::Put {
            key: "k".into(),
            entry: entry(
                0,
                vec![Piece {
                    pad: 1,
                    offset: 100,
                    len: 10,
                    version: 3,
                }],
            ),
        },
    ];
    let pads = [(PadId([1; 16]), 3, vec![7u8; 50])];
    let store = open_store_with_pads(&log, None, &pads)
        .await
        .expect("opens");
    match store.fetch_item("k", None).await {
        Err(Error::Integrity(_)) => {}
        other => panic!(
            "expected an integrity error, got {:?}",
            other.map(|b| b.len())
        ),
    }
}
