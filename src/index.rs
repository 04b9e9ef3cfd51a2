//! The master index: which pads the store owns, and where each key's data
//! lives. It changes only by [`Record`]s appended to the journal, so replaying
//! the journal reproduces it exactly.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::memory_map::Extent;
use crate::pad::PadId;

/// A contiguous run of an item's bytes inside one pad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Piece {
    pub pad: u64,
    pub offset: u64,
    pub len: u64,
    /// The pad version that holds these bytes; an older pad is a rollback.
    pub version: u64,
}

impl Piece {
    /// The piece's place in the address space. Call only on pieces that
    /// passed [`Piece::check`] (the index checks every one it loads).
    pub fn extent(&self, pad_size: u64) -> Extent {
        Extent {
            start: self.pad * pad_size + self.offset,
            len: self.len,
        }
    }

    /// Whether the piece lies inside one pad of the address space. The index
    /// is authenticated, but a piece that does not fit is still refused
    /// rather than trusted with arithmetic that could overflow.
    pub fn check(&self, pad_size: u64) -> Result<()> {
        let fits = self.len > 0
            && self
                .offset
                .checked_add(self.len)
                .is_some_and(|end| end <= pad_size)
            && self
                .pad
                .checked_add(1)
                .and_then(|pads| pads.checked_mul(pad_size))
                .is_some();
        if fits {
            Ok(())
        } else {
            Err(Error::integrity(format!(
                "index places a piece outside its pad: {self:?}"
            )))
        }
    }
}

/// Where one item lives and how to check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub data_id: u64,
    pub size: u64,
    /// A committed item's digest (`crypto::item_digest`), checked on every
    /// fetch; a pending one's data fingerprint (`crypto::fingerprint`),
    /// checked when it is resumed.
    pub hash: crate::crypto::Digest,
    /// The item's bytes in order.
    pub pieces: Vec<Piece>,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub modified: u64,
}

/// A pad the store owns: its ordinal in the address space and its identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PadRecord {
    pub ordinal: u64,
    pub id: PadId,
}

/// One change to the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// New pads joined the address space (the memory map's persistence).
    PadsAdded(Vec<PadRecord>),
    /// An upload started whose pieces are now reserved for `key`; it becomes
    /// a `Put` when it finishes, or is dropped by `ClearPending`.
    Pending { key: String, entry: Entry },
    /// `key` now holds `entry`; its previous entry and pending upload go.
    Put { key: String, entry: Entry },
    /// `key` is removed (with any pending upload).
    Remove { key: String },
    /// The pending upload of `key` is abandoned.
    ClearPending { key: String },
}

/// The pads, items and pending uploads of a store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// ordinal -> (pad id, highest version any record has seen).
    pub pads: BTreeMap<u64, (PadId, u64)>,
    pub items: HashMap<String, Entry>,
    pub pending: HashMap<String, Entry>,
    pub next_data_id: u64,
}

impl Index {
    /// Applies one record; returns the pieces it released (an overwritten or
    /// removed item, an abandoned upload), which the allocator frees.
    pub fn apply(&mut self, record: &Record) -> Result<Vec<Piece>> {
        let mut released = Vec::new();
        match record {
            Record::PadsAdded(pads) => {
                for pad in pads {
                    if let Some((existing, _)) = self.pads.get(&pad.ordinal)
                        && *existing != pad.id
                    {
                        return Err(Error::integrity(format!(
                            "index gives pad ordinal {} to two pads",
                            pad.ordinal
                        )));
                    }
                    self.pads.entry(pad.ordinal).or_insert((pad.id, 0));
                }
            }
            Record::Pending { key, entry } => {
                self.note_entry(entry)?;
                if let Some(old) = self.pending.insert(key.clone(), entry.clone()) {
                    released.extend(old.pieces);
                }
            }
            Record::Put { key, entry } => {
                self.note_entry(entry)?;
                let pending = self.pending.remove(key);
                if let Some(old) = self.items.insert(key.clone(), entry.clone()) {
                    released.extend(old.pieces);
                }
                // A resumed upload's pieces become the item's; anything else
                // the pending entry held is released.
                if let Some(pending) = pending {
                    released.extend(
                        pending
                            .pieces
                            .into_iter()
                            .filter(|p| !entry.pieces.iter().any(|q| same_place(p, q))),
                    );
                }
            }
            Record::Remove { key } => {
                if let Some(old) = self.items.remove(key) {
                    released.extend(old.pieces);
                }
                if let Some(old) = self.pending.remove(key) {
                    released.extend(old.pieces);
                }
            }
            Record::ClearPending { key } => {
                if let Some(old) = self.pending.remove(key) {
                    released.extend(old.pieces);
                }
            }
        }
        Ok(released)
    }

    fn note_entry(&mut self, entry: &Entry) -> Result<()> {
        for piece in &entry.pieces {
            let Some((_, version)) = self.pads.get_mut(&piece.pad) else {
                return Err(Error::integrity(format!(
                    "index places data in pad ordinal {} which it does not own",
                    piece.pad
                )));
            };
            *version = (*version).max(piece.version);
        }
        let next = entry
            .data_id
            .checked_add(1)
            .ok_or_else(|| Error::integrity("index data id out of range"))?;
        self.next_data_id = self.next_data_id.max(next);
        Ok(())
    }

    /// All pieces in use: every item's and every pending upload's.
    pub fn used_pieces(&self) -> impl Iterator<Item = &Piece> {
        self.items
            .values()
            .chain(self.pending.values())
            .flat_map(|entry| entry.pieces.iter())
    }
}

fn same_place(a: &Piece, b: &Piece) -> bool {
    a.pad == b.pad && a.offset == b.offset && a.len == b.len
}

/// Encodes records or a whole index for the journal (before encryption).
pub fn to_bytes<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(|e| Error::invalid(format!("cannot encode index: {e}")))
}

/// Decodes what [`to_bytes`] wrote; malformed input is an integrity error.
pub fn from_bytes<'a, T: Deserialize<'a>>(bytes: &'a [u8], what: &str) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| Error::integrity(format!("{what} is malformed: {e}")))
}
