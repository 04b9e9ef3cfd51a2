//! Helpers shared by anthill's fuzz targets: fixed keys, a generator of
//! index records, the checks every decoded index must pass, and the sealed
//! object formats of the journal (mirrored here, see [`journal_object`]).
//!
//! Nothing here may hide a failure of anthill: the targets panic (a crash
//! libFuzzer reports) whenever a documented property does not hold.

use std::sync::OnceLock;

use anthill::crypto::{self, StoreKeys};
use anthill::index::{self, Entry, Index, PadRecord, Piece, Record};
use anthill::memory_map::MemoryMap;
use anthill::pad::PadId;
use arbitrary::{Result as ArbResult, Unstructured};

/// The secret every fuzz target seals and opens with.
pub const SECRET: &[u8] = b"anthill fuzz secret";
/// The store id of the pad and crypto targets.
pub const STORE_ID: [u8; 16] = [0x5a; 16];
/// The pad id of the pad target.
pub const PAD_ID: PadId = PadId([0xa5; 16]);
/// Pad sizes the store accepts: its minimum, a small one, its default and its
/// maximum (`store.rs`: 512 ..= 1 GiB, default 4 MiB).
pub const PAD_SIZES: [u64; 4] = [512, 4096, 4 << 20, 1 << 30];

/// The keys of [`SECRET`] and [`STORE_ID`], derived once.
pub fn keys() -> &'static StoreKeys {
    static KEYS: OnceLock<StoreKeys> = OnceLock::new();
    KEYS.get_or_init(|| StoreKeys::derive(SECRET, &STORE_ID))
}

/// Reads a little-endian u64 from the front of `data`, if there are 8 bytes.
pub fn take_u64(data: &mut &[u8]) -> Option<u64> {
    let (head, rest) = data.split_first_chunk::<8>()?;
    *data = rest;
    Some(u64::from_le_bytes(*head))
}

// ---------------------------------------------------------------------------
// Index checks
// ---------------------------------------------------------------------------

/// Encodes `value` as the journal does and decodes it again: it must come
/// back equal. Returns the encoding.
pub fn assert_round_trip<T>(value: &T, what: &str) -> Vec<u8>
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let bytes = index::to_bytes(value).unwrap_or_else(|e| panic!("{what} does not encode: {e}"));
    let back: T = index::from_bytes(&bytes, what)
        .unwrap_or_else(|e| panic!("{what} does not decode after encoding: {e}"));
    assert_eq!(
        &back, value,
        "{what} changed in an encode/decode round trip"
    );
    bytes
}

/// Applies `records` in order, as the journal replays a log, and returns what
/// each application gave: the released pieces, or `None` for an error (the
/// index refused the record; that is allowed, a panic is not).
pub fn apply_all(index: &mut Index, records: &[Record]) -> Vec<Option<Vec<Piece>>> {
    records.iter().map(|r| index.apply(r).ok()).collect()
}

/// What the allocator does with a loaded index
/// (`anthill::allocator::map_from_index`). Errors are allowed (a corrupt
/// index is an integrity error); a panic is not, and an accepted map must
/// satisfy the map's own invariants.
pub fn rebuild_map(index: &Index, pad_size: u64) -> Result<MemoryMap, String> {
    let map = anthill::allocator::map_from_index(index, pad_size).map_err(|e| e.to_string())?;
    if let Err(broken) = map.check_invariants() {
        panic!("memory map rebuilt from an index breaks its invariants: {broken}");
    }
    Ok(map)
}

/// Everything a decoded index must survive: a round trip through its
/// encoding, and the allocator's rebuild of the memory map.
pub fn check_index(index: &Index, pad_size: u64) {
    assert_round_trip(index, "index checkpoint");
    let _ = rebuild_map(index, pad_size);
}

/// Everything a decoded batch of records must survive: a round trip, replay
/// onto an empty index (twice, with the same outcome: replaying the journal
/// reproduces the index exactly), the index checks on the result, and the
/// checkpoint property: checkpointing after any prefix and replaying the
/// rest gives the same index as replaying everything.
pub fn check_records(records: &[Record], split: usize, pad_size: u64) {
    assert_round_trip(&records.to_vec(), "index log batch");

    let mut first = Index::default();
    let outcomes = apply_all(&mut first, records);
    let mut again = Index::default();
    assert_eq!(
        apply_all(&mut again, records),
        outcomes,
        "replaying the same records gave other results"
    );
    assert_eq!(
        again, first,
        "replaying the same records gave another index"
    );
    check_index(&first, pad_size);

    let split = split.min(records.len());
    let mut prefix = Index::default();
    let head = apply_all(&mut prefix, &records[..split]);
    let bytes = assert_round_trip(&prefix, "index checkpoint");
    let mut resumed: Index = index::from_bytes(&bytes, "index checkpoint").expect("round trip");
    let tail = apply_all(&mut resumed, &records[split..]);
    assert_eq!(
        head.into_iter().chain(tail).collect::<Vec<_>>(),
        outcomes,
        "checkpoint after {split} records changed what later records released"
    );
    assert_eq!(
        resumed, first,
        "checkpoint after {split} records plus the rest of the log differs from the whole log"
    );
}

// ---------------------------------------------------------------------------
// Record generator (structure-aware targets)
// ---------------------------------------------------------------------------

/// A number that is mostly small (so records refer to each other: the same
/// pads, offsets that collide), sometimes an edge value, sometimes anything.
pub fn number(u: &mut Unstructured, small: u64) -> ArbResult<u64> {
    Ok(match u.arbitrary::<u8>()? {
        0..=214 => u.int_in_range(0..=small)?,
        215..=239 => *u.choose(&[
            0,
            1,
            u64::MAX,
            u64::MAX - 1,
            1 << 63,
            (1 << 63) - 1,
            u32::MAX as u64,
            4 << 20,
            1 << 30,
        ])?,
        _ => u.arbitrary()?,
    })
}

fn key(u: &mut Unstructured) -> ArbResult<String> {
    if u.ratio(1, 8)? {
        return u.arbitrary();
    }
    Ok((*u.choose(&["a", "b", "c", "dir/item", ""])?).to_string())
}

fn pad_id(u: &mut Unstructured, ordinal: u64) -> ArbResult<PadId> {
    // Mostly the id a given ordinal always has, so re-adding a pad agrees.
    if u.ratio(1, 8)? {
        return Ok(PadId(u.arbitrary()?));
    }
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&ordinal.to_le_bytes());
    Ok(PadId(id))
}

/// A piece inside one of the first few pads, for pads of `pad_size` bytes.
pub fn piece(u: &mut Unstructured, pad_size: u64) -> ArbResult<Piece> {
    Ok(Piece {
        pad: number(u, 6)?,
        offset: number(u, pad_size.saturating_sub(1))?,
        len: number(u, pad_size)?,
        version: number(u, 4)?,
    })
}

pub fn entry(u: &mut Unstructured, pad_size: u64) -> ArbResult<Entry> {
    let most = if u.ratio(1, 16)? { 64 } else { 4 };
    let count = u.int_in_range(0..=most)?;
    let pieces: Vec<Piece> = (0..count)
        .map(|_| piece(u, pad_size))
        .collect::<ArbResult<_>>()?;
    Ok(Entry {
        data_id: number(u, 32)?,
        // Mostly the sum of the pieces, as a genuine entry has, so that
        // reads get past that check.
        size: if u.ratio(7, 8)? {
            pieces
                .iter()
                .fold(0u64, |sum: u64, p: &Piece| sum.wrapping_add(p.len))
        } else {
            number(u, 4 * pad_size)?
        },
        hash: if u.ratio(1, 4)? {
            u.arbitrary()?
        } else {
            [0; crypto::DIGEST_LEN]
        },
        pieces,
        created: u.arbitrary()?,
        modified: u.arbitrary()?,
    })
}

pub fn record(u: &mut Unstructured, pad_size: u64) -> ArbResult<Record> {
    Ok(match u.int_in_range(0..=5u8)? {
        0 | 1 => {
            let count = u.int_in_range(0..=4)?;
            let mut pads = Vec::with_capacity(count);
            for _ in 0..count {
                let ordinal = number(u, 6)?;
                pads.push(PadRecord {
                    ordinal,
                    id: pad_id(u, ordinal)?,
                });
            }
            Record::PadsAdded(pads)
        }
        2 => Record::Pending {
            key: key(u)?,
            entry: entry(u, pad_size)?,
        },
        3 => Record::Put {
            key: key(u)?,
            entry: entry(u, pad_size)?,
        },
        4 => Record::Remove { key: key(u)? },
        _ => Record::ClearPending { key: key(u)? },
    })
}

/// Up to `max` records, until the input runs out.
pub fn records(u: &mut Unstructured, pad_size: u64, max: usize) -> ArbResult<Vec<Record>> {
    let mut out = Vec::new();
    while out.len() < max && !u.is_empty() {
        out.push(record(u, pad_size)?);
    }
    Ok(out)
}

/// A plausible history: two pads, an upload, a put, an overwrite, a remove.
pub fn sample_records() -> Vec<Record> {
    let piece = |pad, offset, len| Piece {
        pad,
        offset,
        len,
        version: 1,
    };
    let entry = |data_id, pieces: Vec<Piece>| Entry {
        data_id,
        size: pieces.iter().map(|p| p.len).sum(),
        hash: crypto::piece_digest(b"fuzz"),
        pieces,
        created: 1_700_000_000,
        modified: 1_700_000_000,
    };
    vec![
        Record::PadsAdded(vec![
            PadRecord {
                ordinal: 0,
                id: PadId([1; 16]),
            },
            PadRecord {
                ordinal: 1,
                id: PadId([2; 16]),
            },
        ]),
        Record::Pending {
            key: "big".into(),
            entry: entry(0, vec![piece(0, 100, 412), piece(1, 0, 300)]),
        },
        Record::Put {
            key: "big".into(),
            entry: entry(0, vec![piece(0, 100, 412), piece(1, 0, 300)]),
        },
        Record::Put {
            key: "small".into(),
            entry: entry(1, vec![piece(0, 0, 100)]),
        },
        Record::Put {
            key: "small".into(),
            entry: entry(2, vec![piece(1, 300, 50)]),
        },
        Record::Pending {
            key: "cut".into(),
            entry: entry(3, vec![piece(1, 350, 10)]),
        },
        Record::ClearPending { key: "cut".into() },
        Record::Remove {
            key: "small".into(),
        },
    ]
}

// ---------------------------------------------------------------------------
// Sealed journal objects (mirror of `journal/`)
// ---------------------------------------------------------------------------

/// The name and sealed content of journal object `seq`: the log batch
/// `j/<seq>` (`checkpoint == false`) or the checkpoint `c/<seq>`.
///
/// This mirrors the private `object_name` and `associated_data` of
/// `journal/`. If that format changes, `store_open` notices at start-up
/// (its init opens a store written this way and panics if that fails) and
/// this function must follow.
pub fn journal_object(
    keys: &StoreKeys,
    store_id: &[u8; 16],
    checkpoint: bool,
    seq: u64,
    plaintext: &[u8],
) -> (String, Vec<u8>) {
    let (prefix, kind) = if checkpoint {
        ("c/", "checkpoint")
    } else {
        ("j/", "journal")
    };
    let mut aad = format!("anthill {kind}").into_bytes();
    aad.extend_from_slice(store_id);
    aad.extend_from_slice(&seq.to_le_bytes());
    let sealed = crypto::seal(keys.index(), &aad, plaintext).expect("seal");
    (format!("{prefix}{seq:016x}"), sealed)
}
