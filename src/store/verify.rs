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
use std::sync::Arc;

use futures::stream::StreamExt;

use super::Store;
use crate::allocator::inline_digest;
use crate::crypto::{self, Digest};
use crate::error::{Error, Result};
use crate::events::{Callback, EventSink, OperationProgress};
use crate::index::{Entry, Piece};
use crate::pad::{PadId, fills_pad};
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
        // Inside the gate, no other process changes the store meanwhile.
        let _writing = self.inner.gate.enter().await?;
        let allocator = &self.inner.allocator;
        let io = Arc::clone(allocator.pad_io());
        let pad_size = io.pad_size;
        let (pads, items) = self.inner.journal.read(|index| {
            let pads: BTreeMap<u64, (PadId, u64)> = index.pads.clone();
            let items: Vec<(String, Entry, bool)> = index
                .items
                .iter()
                .map(|(k, e)| (k.clone(), e.clone(), index.inline.contains_key(&e.data_id)))
                .collect();
            (pads, items)
        });
        let listed: HashSet<String> = io
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
        for (ordinal, (id, version)) in &pads {
            let absent = !listed.contains(&id.object_name());
            // A folder pad recorded but never written has no file: empty.
            if absent && !(*version == 0 && empty_until_written) {
                missing.insert(*ordinal);
            }
        }

        let mut damaged = vec![false; items.len()];
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

        let mut pads_checked = 0;
        if deep {
            let total = by_pad.len() as u64;
            events
                .emit(|| OperationProgress {
                    operation: "verify",
                    done: 0,
                    total,
                })
                .await?;
            let mut digests: Vec<Vec<Digest>> = items
                .iter()
                .map(|(_, entry, _)| vec![Digest::default(); entry.pieces.len()])
                .collect();
            let mut reads = futures::stream::iter(by_pad)
                .map(|(ordinal, pieces)| {
                    let io = Arc::clone(&io);
                    let (id, _) = pads[&ordinal];
                    async move {
                        let min_version = pieces.iter().map(|(_, _, p)| p.version).max();
                        let read = io.read(id, min_version.unwrap_or(0)).await;
                        let content = match read {
                            Ok(content) => content,
                            Err(Error::Integrity(message)) => {
                                log::warn!("pad {} is damaged: {message}", id.object_name());
                                return Ok((pieces, None));
                            }
                            Err(Error::Backend(BackendError::NotFound(_))) => {
                                return Ok((pieces, None));
                            }
                            Err(other) => return Err(other),
                        };
                        let bytes: u64 = pieces.iter().map(|(_, _, p)| p.len).sum();
                        let digests = crypto::off_runtime(bytes as usize, move || {
                            piece_digests(&pieces, &content.plaintext, content.tag, pad_size)
                        })
                        .await;
                        Ok::<_, Error>((Vec::new(), Some(digests)))
                    }
                })
                .buffer_unordered(allocator.download_concurrency());
            while let Some(read) = reads.next().await {
                match read? {
                    (unread, None) => {
                        for (number, _, _) in unread {
                            damaged[number] = true;
                        }
                    }
                    (_, Some(found)) => {
                        for (number, at, digest) in found {
                            match digest {
                                Some(digest) => digests[number][at] = digest,
                                None => damaged[number] = true,
                            }
                        }
                    }
                }
                pads_checked += 1;
                events
                    .emit(|| OperationProgress {
                        operation: "verify",
                        done: pads_checked,
                        total,
                    })
                    .await?;
            }
            drop(reads);
            for (number, (_, entry, inline)) in items.iter().enumerate() {
                if !inline && !damaged[number] {
                    damaged[number] = crypto::item_digest(&digests[number]) != entry.hash;
                }
            }
        }

        // An item this process replaced or removed meanwhile was not damaged.
        let mut damaged_keys: Vec<String> = self.inner.journal.read(|index| {
            items
                .iter()
                .zip(&damaged)
                .filter(|((key, entry, _), bad)| {
                    **bad
                        && index
                            .items
                            .get(key)
                            .is_some_and(|now| now.data_id == entry.data_id)
                })
                .map(|((key, _, _), _)| key.clone())
                .collect()
        });
        damaged_keys.sort_unstable();
        let mut missing_pads: Vec<String> = missing
            .iter()
            .map(|ordinal| pads[ordinal].0.object_name())
            .collect();
        missing_pads.sort_unstable();
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
}

/// The digest of each piece as a read of the pad yields it (see
/// `allocator/read.rs`): a piece filling its pad is named by the pad's
/// tag, any other is hashed; bytes past what the pad holds read as zeros.
/// `None` for a whole piece of a pad never written.
fn piece_digests(
    pieces: &PiecesInPad,
    content: &[u8],
    tag: Option<crypto::AuthTag>,
    pad_size: u64,
) -> Vec<(usize, usize, Option<Digest>)> {
    pieces
        .iter()
        .map(|&(number, at, piece)| {
            let digest = if fills_pad(piece.offset, piece.len, pad_size) {
                tag
            } else {
                let from = (piece.offset as usize).min(content.len());
                let end = ((piece.offset + piece.len) as usize).min(content.len());
                let mut bytes = content[from..end].to_vec();
                bytes.resize(piece.len as usize, 0);
                Some(crypto::piece_digest(&bytes))
            };
            (number, at, digest)
        })
        .collect()
}
