//! Checking a store without changing it: every pad the index knows must
//! exist on the backend, and (deep) every pad that holds items must open
//! with the store's keys and every item must match its digest.
//!
//! Pads are read one at a time each, at most `download_concurrency` at
//! once, and dropped once the digests of the pieces in them are taken: the
//! memory used is that many pads plus 16 bytes per piece, whatever the
//! store's size. Items still held in the log are checked against their
//! digest from the index's copy, as a fetch serves them.

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use futures::stream::StreamExt;

use super::Store;
use crate::allocator::{inline_digest, piece_bytes, piece_digest};
use crate::blocking;
use crate::crypto::{self, Digest};
use crate::error::{Error, Result};
use crate::events::{Callback, EventSink, OperationProgress};
use crate::index::{Entry, Piece};
use crate::pad::{PadId, fills_pad};
use crate::pad_io::PadIo;
use crate::pad_store::BackendError;

/// What [`Store::verify`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Items checked (all committed items).
    pub items_checked: u64,
    /// Keys of the items that cannot be read back intact, sorted.
    pub damaged: Vec<String>,
    /// Object names of the pads the index knows that the backend lacks, sorted.
    pub missing_pads: Vec<String>,
    /// Pads read and authenticated (0 unless deep).
    pub pads_checked: u64,
}

impl VerifyReport {
    /// Nothing damaged, nothing missing.
    pub fn ok(&self) -> bool {
        self.damaged.is_empty() && self.missing_pads.is_empty()
    }
}

/// (item number, piece number in the item, piece) of each piece in a pad.
type PiecesInPad = Vec<(usize, usize, Piece)>;

impl Store {
    /// Checks the store (see the module header); never changes it.
    pub async fn verify(
        &self,
        deep: bool,
        callback: Option<Callback<OperationProgress>>,
    ) -> Result<VerifyReport> {
        self.check_open()?;
        let events = EventSink::new(callback);
        let result = self.verify_inner(deep, &events).await;
        events.close();
        result
    }

    async fn verify_inner(
        &self,
        deep: bool,
        events: &EventSink<OperationProgress>,
    ) -> Result<VerifyReport> {
        let _maintenance = self.inner.maintenance.lock().await;
        // Outside the writer gate: other processes write meanwhile (what
        // they change is looked at again at the end, see `recheck`).
        self.inner.gate.catch_up().await?;
        let (pads, items) = self
            .inner
            .journal
            .read_items(|index| {
                let pads: Pads = index.pads.clone();
                let mut items: Vec<Item> = Vec::with_capacity(index.items.len());
                index.items.for_each(|k, e| {
                    items.push((
                        k.to_owned(),
                        e.clone(),
                        index.inline.contains_key(&e.data_id),
                    ));
                })?;
                Ok((pads, items))
            })
            .await?;
        let missing = self.missing_pads(&pads).await?;
        let mut damaged = vec![false; items.len()];
        let by_pad = self.pieces_by_pad(&items, &pads, &missing, &mut damaged)?;
        let pads_checked = if deep {
            self.check_pads(&items, &pads, by_pad, &mut damaged, events)
                .await?
        } else {
            0
        };

        let (damaged_keys, missing_pads) = self.recheck(&items, &damaged, &missing, &pads).await?;
        events
            .finish(OperationProgress {
                operation: "verify",
                done: pads_checked,
                total: pads_checked,
            })
            .await?;
        Ok(VerifyReport {
            items_checked: items.len() as u64,
            damaged: damaged_keys,
            missing_pads,
            pads_checked,
        })
    }

    /// What was found damaged or missing, looked at again after catching
    /// up with other writers (verification holds no lock): a pad another
    /// process removed since (a compaction) is not missing, an item it
    /// replaced or removed was not damaged, and one it moved (same data id)
    /// is read where it is now. Returns the damaged keys and the missing
    /// pads' object names, sorted.
    async fn recheck(
        &self,
        items: &[Item],
        damaged: &[bool],
        missing: &HashSet<u64>,
        pads: &Pads,
    ) -> Result<(Vec<String>, Vec<String>)> {
        if missing.is_empty() && !damaged.contains(&true) {
            return Ok((Vec::new(), Vec::new()));
        }
        self.inner.gate.catch_up().await?;
        let (mut damaged_keys, moved, mut missing_pads) = self
            .inner
            .journal
            .read_items(|index| {
                let (mut keys, mut moved) = (Vec::new(), Vec::new());
                for ((key, entry, _), bad) in items.iter().zip(damaged) {
                    match index.items.get(key)? {
                        Some(now) if *bad && now == *entry => keys.push(key.clone()),
                        Some(now) if *bad && now.data_id == entry.data_id => {
                            moved.push(key.clone())
                        }
                        _ => {}
                    }
                }
                let gone: Vec<String> = missing
                    .iter()
                    .filter(|o| index.pads.get(o).map(|p| p.0) == Some(pads[o].0))
                    .map(|o| pads[o].0.object_name())
                    .collect();
                Ok((keys, moved, gone))
            })
            .await?;
        for key in moved {
            match self.fetch_item(&key, None).await {
                Ok(_) | Err(Error::KeyNotFound(_)) => {}
                Err(Error::Integrity(_) | Error::Backend(BackendError::NotFound(_))) => {
                    damaged_keys.push(key)
                }
                Err(error) => return Err(error),
            }
        }
        damaged_keys.sort_unstable();
        missing_pads.sort_unstable();
        Ok((damaged_keys, missing_pads))
    }

    /// The ordinals of the pads the index knows that the backend lacks.
    async fn missing_pads(&self, pads: &Pads) -> Result<HashSet<u64>> {
        let listed: HashSet<String> = self
            .inner
            .allocator
            .pad_io()
            .retry
            .run(|_| self.inner.backend.list(PadId::PREFIX))
            .await?
            .into_iter()
            .collect();
        let empty_until_written = self
            .inner
            .backend
            .capabilities()
            .pads_created_on_first_write;
        let mut missing = HashSet::new();
        for (ordinal, (id, version)) in pads {
            // Either object of a pad whose versions alternate.
            let absent =
                !listed.contains(&id.object_name()) && !listed.contains(&id.odd_object_name());
            // A folder pad recorded but never written has no file: empty.
            if absent && !(*version == 0 && empty_until_written) {
                missing.insert(*ordinal);
            }
        }
        Ok(missing)
    }

    /// The pieces of the items in pads, by pad. Marks `damaged` the items
    /// still in the log that fail their digest, and those with a piece that
    /// does not fit its pad or lies in a pad unknown or missing.
    fn pieces_by_pad(
        &self,
        items: &[Item],
        pads: &Pads,
        missing: &HashSet<u64>,
        damaged: &mut [bool],
    ) -> Result<BTreeMap<u64, PiecesInPad>> {
        let pad_size = self.inner.allocator.pad_io().pad_size;
        let mut by_pad: BTreeMap<u64, PiecesInPad> = BTreeMap::new();
        for (number, (_, entry, inline)) in items.iter().enumerate() {
            if *inline {
                if let Some(data) = self.inner.journal.read(|index| index.inline_data(entry)) {
                    damaged[number] = inline_digest(&entry.pieces, &data)? != entry.hash;
                }
                continue;
            }
            for (at, piece) in entry.pieces.iter().enumerate() {
                if piece.check(pad_size).is_err()
                    || !pads.contains_key(&piece.pad)
                    || missing.contains(&piece.pad)
                {
                    damaged[number] = true;
                } else {
                    by_pad
                        .entry(piece.pad)
                        .or_default()
                        .push((number, at, *piece));
                }
            }
        }
        Ok(by_pad)
    }

    /// Reads every pad of `by_pad` and marks `damaged` the items whose
    /// pieces do not read back to their digest; returns the pads read.
    async fn check_pads(
        &self,
        items: &[Item],
        pads: &Pads,
        by_pad: BTreeMap<u64, PiecesInPad>,
        damaged: &mut [bool],
        events: &EventSink<OperationProgress>,
    ) -> Result<u64> {
        let allocator = &self.inner.allocator;
        let total = by_pad.len() as u64;
        let progress = |done| OperationProgress {
            operation: "verify",
            done,
            total,
        };
        events.emit(|| progress(0)).await?;
        let mut digests: Vec<Vec<Digest>> = items
            .iter()
            .map(|(_, entry, _)| vec![Digest::default(); entry.pieces.len()])
            .collect();
        let mut reads = futures::stream::iter(by_pad)
            .map(|(ordinal, pieces)| read_digests(allocator.pad_io(), pads[&ordinal].0, pieces))
            .buffer_unordered(allocator.download_concurrency());
        let mut pads_checked = 0;
        while let Some(read) = reads.next().await {
            match read? {
                PadDigests::Unreadable(unread) => {
                    for (number, _, _) in unread {
                        damaged[number] = true;
                    }
                }
                PadDigests::Read(found) => {
                    for (number, at, digest) in found {
                        match digest {
                            Some(digest) => digests[number][at] = digest,
                            None => damaged[number] = true,
                        }
                    }
                }
            }
            pads_checked += 1;
            events.emit(|| progress(pads_checked)).await?;
        }
        drop(reads);
        for (number, (_, entry, inline)) in items.iter().enumerate() {
            if !inline && !damaged[number] {
                damaged[number] = crypto::item_digest(&digests[number]) != entry.hash;
            }
        }
        Ok(pads_checked)
    }
}

/// The pads the index knows: ordinal -> (id, version).
type Pads = BTreeMap<u64, (PadId, u64)>;

/// An item as verification found it: key, entry, whether its bytes are
/// still in the log.
type Item = (String, Entry, bool);

/// What reading a pad for verification found.
enum PadDigests {
    /// (item number, piece number, digest) of each piece in it (see
    /// [`piece_digests`]).
    Read(Vec<(usize, usize, Option<Digest>)>),
    /// The pad is damaged or gone: these pieces cannot be read.
    Unreadable(PiecesInPad),
}

/// Reads pad `id` and takes the digest of each of its `pieces`.
async fn read_digests(io: &PadIo, id: PadId, pieces: PiecesInPad) -> Result<PadDigests> {
    let min_version = pieces.iter().map(|(_, _, p)| p.version).max().unwrap_or(0);
    let pad_size = io.pad_size;
    // Only the bytes under the pieces (one ranged read), unless one fills
    // the pad: its digest is the pad's tag, of the whole pad.
    let whole = pieces
        .iter()
        .any(|(_, _, p)| fills_pad(p.offset, p.len, pad_size));
    let read = if whole {
        io.read(id, min_version)
            .await
            .map(|content| (Bytes::from(content.plaintext), 0, content.tag))
    } else {
        let start = pieces.iter().map(|(_, _, p)| p.offset).min().unwrap_or(0);
        let end = pieces
            .iter()
            .map(|(_, _, p)| p.offset + p.len)
            .max()
            .unwrap_or(0);
        io.read_range(id, min_version, start..end.max(start))
            .await
            .map(|(_, bytes)| (bytes, start, None))
    };
    let (content, base, tag) = match read {
        Ok(read) => read,
        Err(Error::Integrity(message)) => {
            log::warn!("pad {} is damaged: {message}", id.object_name());
            return Ok(PadDigests::Unreadable(pieces));
        }
        Err(Error::Backend(BackendError::NotFound(_))) => {
            return Ok(PadDigests::Unreadable(pieces));
        }
        Err(other) => return Err(other),
    };
    let bytes: u64 = pieces.iter().map(|(_, _, p)| p.len).sum();
    let digests = blocking::off_runtime(bytes as usize, move || {
        piece_digests(&pieces, content, base, tag, pad_size)
    })
    .await;
    Ok(PadDigests::Read(digests))
}

/// The digest of each piece as a read of the pad yields it (see
/// `allocator::piece_digest`); `None` for a whole piece of a pad never
/// written.
fn piece_digests(
    pieces: &PiecesInPad,
    content: Bytes,
    base: u64,
    tag: Option<crypto::AuthTag>,
    pad_size: u64,
) -> Vec<(usize, usize, Option<Digest>)> {
    pieces
        .iter()
        .map(|&(number, at, piece)| {
            let placed = Piece {
                offset: piece.offset - base,
                ..piece
            };
            let bytes = piece_bytes(&content, &placed, 0, piece.len);
            (number, at, piece_digest(&piece, pad_size, tag, &bytes).ok())
        })
        .collect()
}
