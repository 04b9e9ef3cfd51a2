//! Writing an item into its allocation: every pad written and committed
//! concurrently through its writer slot, uploads to new pads starting the
//! moment each is reserved (so a put that needs new pads takes about as long
//! as its slowest phase); and rewriting a resumed upload's pieces, checking
//! rather than uploading the pads that already hold their part.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::Semaphore;

use super::{Allocation, ItemData, MemoryAllocator};
use crate::blocking;
use crate::crypto::{self, Digest};
use crate::error::{Error, Result};
use crate::events::{EventSink, PutEvent};
use crate::index::Piece;
use crate::memory_map::split_by_pad;
use crate::pad::fills_pad;

/// Parts of a streamed item (read from a file) held in memory at once, each
/// at most a pad: enough to keep the uploads busy, few enough that an item
/// of any size is stored in bounded memory.
const STREAMED_PARTS_IN_MEMORY: usize = 16;

impl MemoryAllocator {
    /// Uploads `data` into the allocation and commits every pad, emitting
    /// `StartingUpload`, `UploadProgress`, `ScratchpadUploadComplete`,
    /// `ScratchpadCommitComplete` and `UploadFinished`. Uploads to new pads
    /// start as each is reserved. Returns the item's pieces in data order.
    /// Returns the item's pieces and digest.
    pub async fn write(
        &self,
        allocation: &mut Allocation,
        data: &Bytes,
        events: &EventSink<PutEvent>,
    ) -> Result<(Vec<Piece>, Digest)> {
        self.write_data(allocation, &ItemData::Memory(data.clone()), events)
            .await
    }

    /// [`Self::write`] for data in memory or read from a file as needed.
    pub async fn write_data(
        &self,
        allocation: &mut Allocation,
        data: &ItemData,
        events: &EventSink<PutEvent>,
    ) -> Result<(Vec<Piece>, Digest)> {
        let result = self.write_all(allocation, data, events).await;
        if result.is_err() {
            // Reserve no more pads for a put that failed.
            allocation.stop_expanding();
        }
        result
    }

    async fn write_all(
        &self,
        allocation: &mut Allocation,
        data: &ItemData,
        events: &EventSink<PutEvent>,
    ) -> Result<(Vec<Piece>, Digest)> {
        let pad_size = self.io.pad_size;
        debug_assert_eq!(data.len(), allocation.size);
        let parts_in_memory = streamed_bound(data);
        // The item's pieces in data order; new pads' ordinals fill in later.
        let mut pieces: Vec<Piece> = Vec::new();
        let mut by_pad: BTreeMap<u64, Vec<Part>> = BTreeMap::new();
        let mut cursor = 0u64;
        for extent in &allocation.existing {
            for (pad, offset, len) in split_by_pad(*extent, pad_size) {
                let piece = pieces.len();
                by_pad.entry(pad).or_default().push(Part {
                    offset,
                    at: cursor,
                    len,
                    piece,
                });
                pieces.push(Piece {
                    pad,
                    offset,
                    len,
                    version: 0,
                });
                cursor += len;
            }
        }
        let new_start: Vec<u64> = allocation
            .new_pad_bytes
            .iter()
            .scan(cursor, |at, len| {
                let start = *at;
                *at += len;
                Some(start)
            })
            .collect();
        let first_new_piece = pieces.len();
        pieces.extend(allocation.new_pad_bytes.iter().map(|&len| Piece {
            pad: u64::MAX,
            offset: 0,
            len,
            version: 0,
        }));

        let progress = WriteProgress::new(
            allocation.size,
            (by_pad.len() + allocation.new_pad_bytes.len()) as u64,
        );
        events
            .emit(|| PutEvent::StartingUpload {
                total_bytes: progress.total_bytes,
                total_pads: progress.total_pads,
            })
            .await?;

        let mut uploads = FuturesUnordered::new();
        for (pad, parts) in by_pad {
            uploads.push(self.write_pad(pad, parts, data, &parts_in_memory, &progress, events));
        }
        let mut versions: BTreeMap<u64, u64> = BTreeMap::new();
        let mut digests = vec![Digest::default(); pieces.len()];
        let placed = allocation.expansion.as_ref().map(|e| Arc::clone(&e.placed));
        let mut reserving = allocation
            .expansion
            .as_mut()
            .and_then(|e| e.reserved.take());
        loop {
            tokio::select! {
                k = async { reserving.as_mut().expect("guarded").recv().await }, if reserving.is_some() => {
                    let Some(k) = k else {
                        reserving = None;
                        continue;
                    };
                    let placed = placed.as_ref().expect("expanding");
                    let ordinal = placed.lock().expect("placed lock").ordinals[k]
                        .expect("sent after placing");
                    pieces[first_new_piece + k].pad = ordinal;
                    let part = Part {
                        offset: 0,
                        at: new_start[k],
                        len: allocation.new_pad_bytes[k],
                        piece: first_new_piece + k,
                    };
                    uploads.push(self.write_pad(ordinal, vec![part], data, &parts_in_memory, &progress, events));
                }
                done = uploads.next(), if !uploads.is_empty() => {
                    let (pad, version, written) = done.expect("not empty")?;
                    versions.insert(pad, version);
                    for (piece, digest) in written {
                        digests[piece] = digest;
                    }
                }
                else => break,
            }
        }
        if let Some(expansion) = allocation.expansion.as_mut()
            && let Some(task) = expansion.task.take()
        {
            task.await
                .map_err(|e| Error::internal(format!("pad reservation task failed: {e}")))??;
        }
        for piece in &mut pieces {
            piece.version = versions[&piece.pad];
        }
        events.emit(|| PutEvent::UploadFinished).await?;
        Ok((pieces, crypto::item_digest(&digests)))
    }

    /// Writes `parts` into pad `pad`; returns the pad, the version that
    /// holds them and the digest of each part's piece. A part filling the
    /// pad (most of a large item) has the sealed object's tag for digest;
    /// others are hashed here, just before the writer copies them.
    async fn write_pad(
        &self,
        pad: u64,
        parts: Vec<Part>,
        data: &ItemData,
        parts_in_memory: &Option<Semaphore>,
        progress: &WriteProgress,
        events: &EventSink<PutEvent>,
    ) -> Result<PadWritten> {
        // Held until the pad is committed: the writer keeps its bytes until then.
        let _in_memory = match parts_in_memory {
            Some(bound) => Some(bound.acquire().await.map_err(bound_closed)?),
            None => None,
        };
        let parts = load_parts(parts, data).await?;
        self.write_loaded(pad, parts, progress, events).await
    }

    async fn write_loaded(
        &self,
        pad: u64,
        parts: Vec<LoadedPart>,
        progress: &WriteProgress,
        events: &EventSink<PutEvent>,
    ) -> Result<PadWritten> {
        let whole_piece = self.whole_piece(&parts);
        let (parts, mut digests) = match whole_piece {
            Some(piece) => {
                let parts = parts.into_iter().map(|p| (p.offset, p.bytes)).collect();
                (parts, vec![(piece, Digest::default())])
            }
            None => hash_parts(parts).await,
        };
        let bytes: u64 = parts.iter().map(|(_, b)| b.len() as u64).sum();
        let write = self.writer.write(pad, parts, false)?;
        write.uploaded.answer().await?;
        progress.report_uploaded(bytes, events).await?;
        let (version, tag) = write.committed.answer().await?;
        if whole_piece.is_some() {
            digests[0].1 = tag;
        }
        progress.report_committed(events).await?;
        Ok((pad, version, digests))
    }

    /// The piece of `parts` if it is their only one and fills its pad.
    fn whole_piece(&self, parts: &[LoadedPart]) -> Option<usize> {
        match parts {
            [part] if fills_pad(part.offset, part.bytes.len() as u64, self.io.pad_size) => {
                Some(part.piece)
            }
            _ => None,
        }
    }

    /// Writes `data` over pieces the index already holds for it (a resumed
    /// upload): a pad whose part already holds the data is checked, not
    /// uploaded again. Emits the same events as [`Self::write`].
    pub async fn rewrite(
        &self,
        pieces: &[Piece],
        data: &ItemData,
        events: &EventSink<PutEvent>,
    ) -> Result<(Vec<Piece>, Digest)> {
        let mut by_pad: BTreeMap<u64, Vec<Part>> = BTreeMap::new();
        let mut cursor = 0u64;
        for (index, piece) in pieces.iter().enumerate() {
            by_pad.entry(piece.pad).or_default().push(Part {
                offset: piece.offset,
                at: cursor,
                len: piece.len,
                piece: index,
            });
            cursor += piece.len;
        }
        let parts_in_memory = streamed_bound(data);
        let progress = WriteProgress::new(data.len(), by_pad.len() as u64);
        events
            .emit(|| PutEvent::StartingUpload {
                total_bytes: progress.total_bytes,
                total_pads: progress.total_pads,
            })
            .await?;
        let written: Vec<PadWritten> = futures::stream::iter(by_pad)
            .map(|(pad, parts)| {
                self.rewrite_pad(pad, parts, data, &parts_in_memory, &progress, events)
            })
            .buffer_unordered(self.download_concurrency)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_>>()?;
        events.emit(|| PutEvent::UploadFinished).await?;
        let mut versions = BTreeMap::new();
        let mut digests = vec![Digest::default(); pieces.len()];
        for (pad, version, written) in written {
            versions.insert(pad, version);
            for (piece, digest) in written {
                digests[piece] = digest;
            }
        }
        let pieces = pieces
            .iter()
            .map(|p| Piece {
                version: versions[&p.pad],
                ..*p
            })
            .collect();
        Ok((pieces, crypto::item_digest(&digests)))
    }

    async fn rewrite_pad(
        &self,
        pad: u64,
        parts: Vec<Part>,
        data: &ItemData,
        parts_in_memory: &Option<Semaphore>,
        progress: &WriteProgress,
        events: &EventSink<PutEvent>,
    ) -> Result<PadWritten> {
        let _in_memory = match parts_in_memory {
            Some(bound) => Some(bound.acquire().await.map_err(bound_closed)?),
            None => None,
        };
        let parts = load_parts(parts, data).await?;
        let id = self.writer.pad_id(pad)?;
        let holds_data = match self.io.read(id, 0).await {
            Ok(read) => parts
                .iter()
                .all(|part| {
                    let from = part.offset as usize;
                    read.plaintext.get(from..from + part.bytes.len()) == Some(&part.bytes[..])
                })
                .then_some(read),
            Err(Error::Integrity(_)) => None,
            Err(error) => return Err(error),
        };
        let Some(read) = holds_data else {
            return self.write_loaded(pad, parts, progress, events).await;
        };
        let version = read.version;
        // A pad that holds a whole part was written, so it has a tag.
        let (parts, digests) = match (self.whole_piece(&parts), read.tag) {
            (Some(piece), Some(tag)) => {
                let parts: Vec<(u64, Bytes)> =
                    parts.into_iter().map(|p| (p.offset, p.bytes)).collect();
                (parts, vec![(piece, tag)])
            }
            _ => hash_parts(parts).await,
        };
        let bytes: u64 = parts.iter().map(|(_, b)| b.len() as u64).sum();
        progress.report_uploaded(bytes, events).await?;
        progress.report_committed(events).await?;
        Ok((pad, version, digests))
    }
}

/// The digest of an item whose pieces all share pads, from its bytes: what
/// reading its pieces back yields (see `crypto::item_digest`).
pub fn inline_digest(pieces: &[Piece], data: &[u8]) -> Result<Digest> {
    let mut digests = Vec::with_capacity(pieces.len());
    let mut at = 0usize;
    for piece in pieces {
        let end = usize::try_from(piece.len)
            .ok()
            .and_then(|len| at.checked_add(len))
            .filter(|&end| end <= data.len())
            .ok_or_else(|| Error::integrity("an item's pieces do not tile its bytes"))?;
        digests.push(crypto::piece_digest(&data[at..end]));
        at = end;
    }
    if at != data.len() {
        return Err(Error::integrity("an item's pieces do not tile its bytes"));
    }
    Ok(crypto::item_digest(&digests))
}

/// A pad written for an item: its ordinal, the version that holds the
/// item's parts, and each part's (piece index, digest).
type PadWritten = (u64, u64, Vec<(usize, Digest)>);

/// A part of an item to write: its offset in its pad, where its bytes lie
/// in the item, and the index of its piece in the item.
struct Part {
    offset: u64,
    at: u64,
    len: u64,
    piece: usize,
}

/// A part with its bytes.
struct LoadedPart {
    offset: u64,
    bytes: Bytes,
    piece: usize,
}

/// Reads the bytes of `parts` from the item's data.
async fn load_parts(parts: Vec<Part>, data: &ItemData) -> Result<Vec<LoadedPart>> {
    let mut loaded = Vec::with_capacity(parts.len());
    for part in parts {
        loaded.push(LoadedPart {
            offset: part.offset,
            bytes: data.slice(part.at, part.len).await?,
            piece: part.piece,
        });
    }
    Ok(loaded)
}

/// The bound on parts in memory for a streamed item (none for one already
/// in memory: its parts are views of the caller's buffer).
fn streamed_bound(data: &ItemData) -> Option<Semaphore> {
    data.is_streamed()
        .then(|| Semaphore::new(STREAMED_PARTS_IN_MEMORY))
}

/// The error of acquiring a permit of the bound on parts in memory, a
/// semaphore nothing closes: reaching it is a bug.
fn bound_closed(_: tokio::sync::AcquireError) -> Error {
    Error::internal("the bound on a put's parts in memory was closed, which nothing does")
}

/// Hashes each part's bytes (on the blocking pool if large), returning the
/// parts as the pad writer takes them and the digest of each part's piece.
async fn hash_parts(parts: Vec<LoadedPart>) -> (Vec<(u64, Bytes)>, Vec<(usize, Digest)>) {
    let bytes: usize = parts.iter().map(|p| p.bytes.len()).sum();
    blocking::off_runtime(bytes, move || {
        let digests = parts
            .iter()
            .map(|p| (p.piece, crypto::piece_digest(&p.bytes)))
            .collect();
        let parts = parts.into_iter().map(|p| (p.offset, p.bytes)).collect();
        (parts, digests)
    })
    .await
}

/// The counters of one put's upload events; each is advanced inside the
/// event sink's delivery lock, so the callback sees them increase.
struct WriteProgress {
    total_bytes: u64,
    total_pads: u64,
    bytes_written: AtomicU64,
    uploaded: AtomicU64,
    committed: AtomicU64,
}

impl WriteProgress {
    fn new(total_bytes: u64, total_pads: u64) -> Self {
        Self {
            total_bytes,
            total_pads,
            bytes_written: AtomicU64::new(0),
            uploaded: AtomicU64::new(0),
            committed: AtomicU64::new(0),
        }
    }

    async fn report_uploaded(&self, bytes: u64, events: &EventSink<PutEvent>) -> Result<()> {
        events
            .emit(|| PutEvent::UploadProgress {
                bytes_written: self.bytes_written.fetch_add(bytes, Ordering::Relaxed) + bytes,
                total_bytes: self.total_bytes,
            })
            .await?;
        events
            .emit(|| PutEvent::ScratchpadUploadComplete {
                index: self.uploaded.fetch_add(1, Ordering::Relaxed) + 1,
                total: self.total_pads,
            })
            .await
    }

    async fn report_committed(&self, events: &EventSink<PutEvent>) -> Result<()> {
        events
            .emit(|| PutEvent::ScratchpadCommitComplete {
                index: self.committed.fetch_add(1, Ordering::Relaxed) + 1,
                total: self.total_pads,
            })
            .await
    }
}
