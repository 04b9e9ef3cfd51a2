//! The master index: which pads the store owns, and where each key's data
//! lives. It changes only by [`Record`]s appended to the journal, so replaying
//! the journal reproduces it exactly.
//!
//! A small item is committed with its bytes in the log record itself
//! ([`Record::PutInline`]): one small write instead of rewriting the pads it
//! shares. Until its pads are written back ([`Record::WrittenBack`]) its
//! pieces have version [`IN_LOG`] and its bytes are held here, in
//! [`Index::inline`], for every process that replayed the record. A
//! checkpoint is only written once nothing is held so (it carries no item
//! data), so `inline` is never part of one.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::memory_map::Extent;
use crate::pad::PadId;

pub mod cache;
mod items;
pub use items::Items;

/// A contiguous run of an item's bytes inside one pad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Piece {
    pub pad: u64,
    pub offset: u64,
    pub len: u64,
    /// The pad version that holds these bytes; an older pad is a rollback.
    /// [`IN_LOG`] while the bytes are only in the log.
    pub version: u64,
}

/// The version of a piece whose bytes are only in the index log so far: no
/// pad write ever has version 0 (a new pad's first write is version 1).
pub const IN_LOG: u64 = 0;

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
    /// `key` now holds `entry`, whose bytes are `data` (the item, in data
    /// order); its pieces have version [`IN_LOG`] until written back.
    PutInline {
        key: String,
        entry: Entry,
        data: Bytes,
    },
    /// Version `version` of pad `pad` holds the pieces in it of the items
    /// with these data ids (written back from the log). Names items by data
    /// id, never by place: a place freed and reused meanwhile belongs to
    /// another item, which this does not cover.
    WrittenBack {
        pad: u64,
        version: u64,
        data_ids: Vec<u64>,
    },
    /// The item under `from` is now under `to` (no data moves); an item
    /// `to` held before is released.
    Rename { from: String, to: String },
    /// The pads with these ordinals left the address space (emptied by a
    /// compaction). Their objects may be deleted once this is durable.
    PadsRemoved(Vec<u64>),
}

/// A committed item whose bytes are (partly) only in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inline {
    pub key: String,
    pub data: Bytes,
}

/// The pads, items and pending uploads of a store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// ordinal -> (pad id, highest version any record has seen).
    pub pads: BTreeMap<u64, (PadId, u64)>,
    pub items: Items,
    #[serde(deserialize_with = "presized_map")]
    pub pending: HashMap<String, Entry>,
    pub next_data_id: u64,
    /// data id -> the item whose pieces are not all written back yet. Not
    /// in checkpoints: one is written only when this is empty.
    #[serde(skip)]
    pub inline: HashMap<u64, Inline>,
    /// pad ordinal -> the `inline` items with a piece in it still only in
    /// the log: the pads to write back.
    #[serde(skip)]
    pub dirty_pads: BTreeMap<u64, DirtyPad>,
    /// Bytes of the items in `inline` (what it holds in memory).
    #[serde(skip)]
    pub inline_bytes: u64,
}

/// A pad some of whose bytes are only in the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirtyPad {
    /// Data ids of the items with a piece here only in the log.
    pub data_ids: BTreeSet<u64>,
    /// The bytes of those pieces.
    pub bytes: u64,
}

/// What one applied record did to the store's space, for a writer that
/// catches up with it to follow in its map without rebuilding the map from
/// the whole index (`MemoryAllocator::follow`).
#[derive(Debug, Default)]
pub struct SpaceChange {
    /// Pads that joined the address space.
    pub pads_added: Vec<u64>,
    /// Pads that left it.
    pub pads_removed: Vec<u64>,
    /// Pieces no longer used (freed first).
    pub released: Vec<Piece>,
    /// Pieces the record's entry uses, some of them used already (a resumed
    /// upload's, a compaction's pieces left in place): the rest are taken.
    pub used: Vec<Piece>,
}

impl SpaceChange {
    /// The change `record`, applied, made: `released` is what
    /// [`Index::apply`] returned for it.
    pub fn of(record: &Record, released: Vec<Piece>) -> Self {
        let mut change = SpaceChange {
            released,
            ..Self::default()
        };
        match record {
            Record::PadsAdded(pads) => change.pads_added = pads.iter().map(|p| p.ordinal).collect(),
            Record::PadsRemoved(ordinals) => change.pads_removed = ordinals.clone(),
            Record::Pending { entry, .. }
            | Record::Put { entry, .. }
            | Record::PutInline { entry, .. } => change.used = entry.pieces.clone(),
            Record::Remove { .. }
            | Record::ClearPending { .. }
            | Record::WrittenBack { .. }
            | Record::Rename { .. } => {}
        }
        change
    }
}

impl Index {
    /// Applies one record; returns the pieces it released (an overwritten or
    /// removed item, an abandoned upload), which the allocator frees.
    pub fn apply(&mut self, record: &Record) -> Result<Vec<Piece>> {
        let mut released = Vec::new();
        match record {
            Record::PadsAdded(pads) => self.add_pads(pads)?,
            Record::Pending { key, entry } => {
                self.note_entry(entry)?;
                if let Some(old) = self.pending.insert(key.clone(), entry.clone()) {
                    released = old.pieces;
                }
            }
            Record::Put { key, entry } => {
                self.note_entry(entry)?;
                let pending = self.pending.remove(key);
                released = self.set_item(key.clone(), entry.clone())?;
                // A resumed upload's pieces become the item's, and so do the
                // pieces a compaction left in place: the rest is released.
                released.extend(pending.into_iter().flat_map(|p| p.pieces));
                released.retain(|p| !entry.pieces.iter().any(|q| same_place(p, q)));
            }
            Record::Remove { key } => {
                released = self.take_item(key)?;
                released.extend(self.clear_pending(key));
            }
            Record::ClearPending { key } => released = self.clear_pending(key),
            Record::PutInline { key, entry, data } => {
                released = self.put_inline(key, entry, data)?
            }
            Record::WrittenBack {
                pad,
                version,
                data_ids,
            } => self.written_back(*pad, *version, data_ids)?,
            Record::Rename { from, to } => {
                if from != to
                    && let Some(entry) = self.items.remove(from)?
                {
                    if let Some(inline) = self.inline.get_mut(&entry.data_id) {
                        inline.key = to.clone();
                    }
                    released = self.set_item(to.clone(), entry)?;
                }
            }
            Record::PadsRemoved(ordinals) => self.remove_pads(ordinals)?,
        }
        Ok(released)
    }

    fn add_pads(&mut self, pads: &[PadRecord]) -> Result<()> {
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
        Ok(())
    }

    fn remove_pads(&mut self, ordinals: &[u64]) -> Result<()> {
        let removed: BTreeSet<u64> = ordinals.iter().copied().collect();
        let mut in_use = None;
        self.for_each_used_piece(|p| {
            if removed.contains(&p.pad) {
                in_use.get_or_insert(p.pad);
            }
        })?;
        if let Some(pad) = in_use {
            return Err(Error::integrity(format!(
                "index removes pad ordinal {pad} while data lives in it"
            )));
        }
        for ordinal in &removed {
            self.pads.remove(ordinal);
            self.dirty_pads.remove(ordinal);
        }
        Ok(())
    }

    fn put_inline(&mut self, key: &str, entry: &Entry, data: &Bytes) -> Result<Vec<Piece>> {
        check_inline(entry, data)?;
        self.note_entry(entry)?;
        let mut released = self.clear_pending(key);
        released.extend(self.set_item(key.to_owned(), entry.clone())?);
        for piece in &entry.pieces {
            let dirty = self.dirty_pads.entry(piece.pad).or_default();
            dirty.data_ids.insert(entry.data_id);
            dirty.bytes += piece.len;
        }
        if !entry.pieces.is_empty() {
            let inline = Inline {
                key: key.to_owned(),
                data: data.clone(),
            };
            self.inline_bytes += data.len() as u64;
            if let Some(old) = self.inline.insert(entry.data_id, inline) {
                self.inline_bytes -= old.data.len() as u64;
            }
        }
        Ok(released)
    }

    /// Sets the item under `key`; returns the pieces of the one it replaced.
    fn set_item(&mut self, key: String, entry: Entry) -> Result<Vec<Piece>> {
        match self.items.insert(key, entry)? {
            Some(old) => {
                self.forget_inline(&old);
                Ok(old.pieces)
            }
            None => Ok(Vec::new()),
        }
    }

    /// Removes the item under `key`; returns its pieces.
    fn take_item(&mut self, key: &str) -> Result<Vec<Piece>> {
        match self.items.remove(key)? {
            Some(old) => {
                self.forget_inline(&old);
                Ok(old.pieces)
            }
            None => Ok(Vec::new()),
        }
    }

    /// Drops the pending upload of `key`; returns its pieces.
    fn clear_pending(&mut self, key: &str) -> Vec<Piece> {
        self.pending
            .remove(key)
            .map(|old| old.pieces)
            .unwrap_or_default()
    }

    /// Notes that `version` of `pad` holds the pieces there of `data_ids`;
    /// an item none of whose pieces is left only in the log is dropped from
    /// `inline`. Items gone meanwhile (removed, replaced) are skipped, so
    /// applying this twice, or late, changes nothing more.
    fn written_back(&mut self, pad: u64, version: u64, data_ids: &[u64]) -> Result<()> {
        if version == IN_LOG {
            return Err(Error::integrity("index records a write-back as version 0"));
        }
        if let Some((_, known)) = self.pads.get_mut(&pad) {
            *known = (*known).max(version);
        }
        for data_id in data_ids {
            let Some(inline) = self.inline.get(data_id) else {
                continue;
            };
            let Some(entry) = self
                .items
                .get_mut(&inline.key)?
                .filter(|e| e.data_id == *data_id)
            else {
                continue;
            };
            let mut flushed = 0;
            for piece in entry.pieces.iter_mut().filter(|p| p.pad == pad) {
                if piece.version == IN_LOG {
                    flushed += piece.len;
                }
                piece.version = piece.version.max(version);
            }
            let done = entry.pieces.iter().all(|p| p.version != IN_LOG);
            undirty(&mut self.dirty_pads, pad, *data_id, flushed);
            if done && let Some(gone) = self.inline.remove(data_id) {
                self.inline_bytes -= gone.data.len() as u64;
            }
        }
        Ok(())
    }

    /// Drops what `inline` holds for an entry leaving the index.
    fn forget_inline(&mut self, entry: &Entry) {
        let Some(gone) = self.inline.remove(&entry.data_id) else {
            return;
        };
        self.inline_bytes -= gone.data.len() as u64;
        for piece in entry.pieces.iter().filter(|p| p.version == IN_LOG) {
            undirty(&mut self.dirty_pads, piece.pad, entry.data_id, piece.len);
        }
    }

    /// The bytes of a committed item held in the log, if any of it is.
    pub fn inline_data(&self, entry: &Entry) -> Option<Bytes> {
        self.inline.get(&entry.data_id).map(|i| i.data.clone())
    }

    /// The parts of pad `pad` only in the log: `(data id, offset, bytes)`.
    pub fn dirty_parts(&self, pad: u64) -> Result<Vec<(u64, u64, Bytes)>> {
        let mut parts = Vec::new();
        let Some(dirty) = self.dirty_pads.get(&pad) else {
            return Ok(parts);
        };
        for data_id in &dirty.data_ids {
            let Some(inline) = self.inline.get(data_id) else {
                continue;
            };
            let Some(entry) = self.items.get(&inline.key)? else {
                continue;
            };
            let mut at = 0u64;
            for piece in &entry.pieces {
                if piece.pad == pad && piece.version == IN_LOG {
                    let (from, to) = (at as usize, (at + piece.len) as usize);
                    parts.push((*data_id, piece.offset, inline.data.slice(from..to)));
                }
                at += piece.len;
            }
        }
        Ok(parts)
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

    /// Refuses an index with a piece outside its pad or in a pad it does
    /// not own (a checkpoint is decoded whole, not record by record), so a
    /// damaged index fails at open, not at some later fetch or first write:
    /// a pass over the pieces, far cheaper than building the map from them.
    /// Items in a cache file are skipped: they passed this check before it
    /// was written, and fetches and the map check every piece they use.
    pub fn check(&self, pad_size: u64) -> Result<()> {
        let mut failed = None;
        let mut check = |piece: &Piece| {
            if failed.is_some() {
                return;
            }
            if let Err(error) = piece.check(pad_size) {
                failed = Some(error);
            } else if !self.pads.contains_key(&piece.pad) {
                failed = Some(Error::integrity(format!(
                    "index places data in pad ordinal {} which it does not own",
                    piece.pad
                )));
            }
        };
        self.items
            .for_each_in_memory(|_, entry| entry.pieces.iter().for_each(&mut check));
        self.pending
            .values()
            .flat_map(|entry| entry.pieces.iter())
            .for_each(&mut check);
        failed.map_or(Ok(()), Err)
    }

    /// Calls `f` with every piece in use: every item's and every pending
    /// upload's.
    pub fn for_each_used_piece(&self, mut f: impl FnMut(&Piece)) -> Result<()> {
        self.items
            .for_each(|_, entry| entry.pieces.iter().for_each(&mut f))?;
        self.pending
            .values()
            .flat_map(|entry| entry.pieces.iter())
            .for_each(f);
        Ok(())
    }
}

/// Takes `bytes` of item `data_id` off pad `pad`'s log-only parts.
fn undirty(dirty_pads: &mut BTreeMap<u64, DirtyPad>, pad: u64, data_id: u64, bytes: u64) {
    if let Some(dirty) = dirty_pads.get_mut(&pad) {
        dirty.data_ids.remove(&data_id);
        dirty.bytes = dirty.bytes.saturating_sub(bytes);
        if dirty.data_ids.is_empty() {
            dirty_pads.remove(&pad);
        }
    }
}

/// An inline record whose data does not match its entry (size, pieces
/// tiling it, versions) would make every reader slice out of bounds.
fn check_inline(entry: &Entry, data: &Bytes) -> Result<()> {
    let total = entry
        .pieces
        .iter()
        .try_fold(0u64, |sum, p| sum.checked_add(p.len));
    let fits = total == Some(entry.size)
        && data.len() as u64 == entry.size
        && entry.pieces.iter().all(|p| p.version == IN_LOG);
    if fits {
        Ok(())
    } else {
        Err(Error::integrity(
            "an inline index record does not match its entry",
        ))
    }
}

fn same_place(a: &Piece, b: &Piece) -> bool {
    a.pad == b.pad && a.offset == b.offset && a.len == b.len
}

/// Most entries a decoded map makes room for at once; a larger one grows as
/// it fills. Checkpoints are authenticated and capped in size, so the count
/// is the writer's; the cap only bounds what a bad count could reserve.
const MOST_PRESIZED: usize = 1 << 24;

/// Decodes a map with room for all its entries from the start. Serde's own
/// guess is cautious (about 8,000 entries here), so a map of a million keys
/// grew by doubling, each growth rehashing it into fresh memory the kernel
/// must zero: measured as 30% of opening a store of 10^6 keys.
fn presized_map<'de, D, V>(deserializer: D) -> std::result::Result<HashMap<String, V>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: Deserialize<'de>,
{
    struct Presized<V>(std::marker::PhantomData<V>);
    impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Presized<V> {
        type Value = HashMap<String, V>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a map of keys to entries")
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut access: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let room = access.size_hint().unwrap_or(0).min(MOST_PRESIZED);
            let mut map = HashMap::with_capacity(room);
            while let Some((key, value)) = access.next_entry()? {
                map.insert(key, value);
            }
            Ok(map)
        }
    }
    deserializer.deserialize_map(Presized(std::marker::PhantomData))
}

/// The index in the local cache file at `path` (its items read on demand),
/// the state kept with it and its log position; `None` if there is no file
/// (see [`cache::open`]).
pub fn open_cache(
    path: &std::path::Path,
    keys: std::sync::Arc<crate::crypto::StoreKeys>,
    store_id: &[u8; 16],
) -> Result<Option<(Index, Vec<u8>, u64)>> {
    let Some(opened) = cache::open(path, keys, store_id)? else {
        return Ok(None);
    };
    let index = Index {
        pads: opened.pads,
        items: Items::from_cache(std::sync::Arc::new(opened.items)),
        pending: opened.pending,
        next_data_id: opened.next_data_id,
        ..Index::default()
    };
    Ok(Some((index, opened.state, opened.position)))
}

/// Encodes records or a whole index for the journal (before encryption).
pub fn to_bytes<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    postcard::to_stdvec(value).map_err(|e| Error::internal(format!("cannot encode index: {e}")))
}

/// Decodes what [`to_bytes`] wrote; malformed input is an integrity error.
pub fn from_bytes<'a, T: Deserialize<'a>>(bytes: &'a [u8], what: &str) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| Error::integrity(format!("{what} is malformed: {e}")))
}

/// The time for an entry's `created` and `modified`: seconds since the Unix
/// epoch (0 on a clock set before it).
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(data_id: u64) -> Entry {
        Entry {
            data_id,
            size: 3,
            hash: [data_id as u8; crate::crypto::DIGEST_LEN],
            pieces: vec![Piece {
                pad: 0,
                offset: data_id * 3,
                len: 3,
                version: 1,
            }],
            created: 1,
            modified: 2,
        }
    }

    #[test]
    fn a_checkpointed_index_decodes_to_the_same_index() {
        let mut index = Index::default();
        index.pads.insert(0, (PadId([7; 16]), 1));
        for i in 0..20_000 {
            index.items.insert(format!("key {i}"), entry(i)).unwrap();
        }
        index.pending.insert("half".into(), entry(20_000));
        index.next_data_id = 20_001;
        let decoded: Index = from_bytes(&to_bytes(&index).unwrap(), "test").unwrap();
        assert_eq!(decoded, index);
        assert_eq!(decoded.pending.len(), 1);
    }

    #[test]
    fn a_map_that_claims_more_entries_than_it_holds_is_refused() {
        // Two items claimed, one present: malformed, not a huge reservation.
        let mut index = Index::default();
        index.items.insert("a".into(), entry(0)).unwrap();
        let mut bytes = to_bytes(&index).unwrap();
        let at = bytes.iter().position(|b| *b == 1).unwrap();
        bytes[at] = 2;
        assert!(from_bytes::<Index>(&bytes, "test").is_err());
    }
}
