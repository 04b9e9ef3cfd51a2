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
use tokio::sync::{Semaphore, SemaphorePermit};

use super::{Allocation, ItemData, MemoryAllocator};
use crate::blocking;
use crate::crypto::{self, AuthTag, Digest};
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
    /// start as each is reserved. Returns the item's pieces, in data order,
    /// and its digest.
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
        // The item's pieces in data order: first in existing free space,
        // then one per new pad, whose ordinal is known once it is placed.
        let mut pieces: Vec<Piece> = allocation
            .existing
            .iter()
            .flat_map(|extent| split_by_pad(*extent, pad_size))
            .map(|(pad, offset, len)| Piece {
                pad,
                offset,
                len,
                version: 0,
            })
            .collect();
        let by_pad = parts_by_pad(&pieces);
        let first_new_piece = pieces.len();
        let mut new_parts = Vec::with_capacity(allocation.new_pad_bytes.len());
        let mut at: u64 = pieces.iter().map(|piece| piece.len).sum();
        for &len in &allocation.new_pad_bytes {
            new_parts.push(Part {
                offset: 0,
                at,
                len,
                piece: pieces.len(),
            });
            pieces.push(Piece {
                pad: u64::MAX,
                offset: 0,
                len,
                version: 0,
            });
            at += len;
        }
        let total_pads = by_pad.len() + new_parts.len();
        let item = ItemWrite::start(data, total_pads, events).await?;
        let mut uploads: FuturesUnordered<_> = by_pad
            .into_iter()
            .map(|(pad, parts)| self.write_pad(pad, parts, &item))
            .collect();
        let mut written = WrittenPads::new(pieces.len());
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
                    let part = std::mem::take(&mut new_parts[k]);
                    uploads.push(self.write_pad(ordinal, vec![part], &item));
                }
                done = uploads.next(), if !uploads.is_empty() => {
                    written.record(done.expect("not empty")?);
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
        item.finish(written, pieces).await
    }

    /// Writes `parts` into pad `pad`; returns the pad, the version that
    /// holds them and the digest of each part's piece. A part filling the
    /// pad (most of a large item) has the sealed object's tag for digest;
    /// others are hashed here, just before the writer copies them.
    async fn write_pad(
        &self,
        pad: u64,
        parts: Vec<Part>,
        item: &ItemWrite<'_>,
    ) -> Result<PadWritten> {
        // Held until the pad is committed: the writer keeps its bytes until then.
        let (_in_memory, parts) = item.load(parts).await?;
        self.write_loaded(pad, parts, item).await
    }

    async fn write_loaded(
        &self,
        pad: u64,
        parts: Vec<LoadedPart>,
        item: &ItemWrite<'_>,
    ) -> Result<PadWritten> {
        let whole_piece = self.whole_piece(&parts);
        // A whole piece's digest is its pad's tag, known once committed.
        let (parts, mut digests) = self.digest_parts(parts, Some(AuthTag::default())).await;
        let bytes: u64 = parts.iter().map(|(_, b)| b.len() as u64).sum();
        let write = self.writer.write(pad, parts, false)?;
        write.uploaded.answer().await?;
        item.progress.report_uploaded(bytes, item.events).await?;
        let (version, tag) = write.committed.answer().await?;
        if whole_piece.is_some() {
            digests[0].1 = tag;
        }
        item.progress.report_committed(item.events).await?;
        Ok((pad, version, digests))
    }

    /// The parts as the pad writer takes them, and the digest of each
    /// part's piece: `tag` (the pad object's) for a single part filling its
    /// pad, if given; else the hash of the part's bytes.
    async fn digest_parts(
        &self,
        parts: Vec<LoadedPart>,
        tag: Option<AuthTag>,
    ) -> (Vec<(u64, Bytes)>, Vec<(usize, Digest)>) {
        match (self.whole_piece(&parts), tag) {
            (Some(piece), Some(tag)) => {
                let parts = parts.into_iter().map(|p| (p.offset, p.bytes)).collect();
                (parts, vec![(piece, tag)])
            }
            _ => hash_parts(parts).await,
        }
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
        let by_pad = parts_by_pad(pieces);
        let item = ItemWrite::start(data, by_pad.len(), events).await?;
        // Every pad is seen to the end before a failure is reported.
        let done: Vec<Result<PadWritten>> = futures::stream::iter(by_pad)
            .map(|(pad, parts)| self.rewrite_pad(pad, parts, &item))
            .buffer_unordered(self.download_concurrency)
            .collect()
            .await;
        let mut written = WrittenPads::new(pieces.len());
        for pad in done {
            written.record(pad?);
        }
        item.finish(written, pieces.to_vec()).await
    }

    async fn rewrite_pad(
        &self,
        pad: u64,
        parts: Vec<Part>,
        item: &ItemWrite<'_>,
    ) -> Result<PadWritten> {
        let (_in_memory, parts) = item.load(parts).await?;
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
            return self.write_loaded(pad, parts, item).await;
        };
        let version = read.version;
        // A pad that holds a whole part was written, so it has a tag.
        let (parts, digests) = self.digest_parts(parts, read.tag).await;
        let bytes: u64 = parts.iter().map(|(_, b)| b.len() as u64).sum();
        item.progress.report_uploaded(bytes, item.events).await?;
        item.progress.report_committed(item.events).await?;
        Ok((pad, version, digests))
    }
}

/// One item's write into its pads, once its pads are known: its data, the
/// bound on its parts in memory and its upload events.
struct ItemWrite<'a> {
    data: &'a ItemData,
    /// For a streamed item (read from a file): parts in memory at once.
    /// None for one already in memory: its parts are views of its buffer.
    parts_in_memory: Option<Semaphore>,
    progress: WriteProgress,
    events: &'a EventSink<PutEvent>,
}

impl<'a> ItemWrite<'a> {
    /// Emits `StartingUpload` for writing `data` into `total_pads` pads.
    async fn start(
        data: &'a ItemData,
        total_pads: usize,
        events: &'a EventSink<PutEvent>,
    ) -> Result<Self> {
        let item = Self {
            data,
            parts_in_memory: data
                .is_streamed()
                .then(|| Semaphore::new(STREAMED_PARTS_IN_MEMORY)),
            progress: WriteProgress::new(data.len(), total_pads as u64),
            events,
        };
        events
            .emit(|| PutEvent::StartingUpload {
                total_bytes: item.progress.total_bytes,
                total_pads: item.progress.total_pads,
            })
            .await?;
        Ok(item)
    }

    /// The bytes of `parts`, within the bound on parts in memory; the
    /// permit is to be held until the pad holding them is committed.
    async fn load(
        &self,
        parts: Vec<Part>,
    ) -> Result<(Option<SemaphorePermit<'_>>, Vec<LoadedPart>)> {
        let permit = match &self.parts_in_memory {
            Some(bound) => Some(bound.acquire().await.map_err(bound_closed)?),
            None => None,
        };
        let mut loaded = Vec::with_capacity(parts.len());
        for part in parts {
            loaded.push(LoadedPart {
                offset: part.offset,
                bytes: self.data.slice(part.at, part.len).await?,
                piece: part.piece,
            });
        }
        Ok((permit, loaded))
    }

    /// Emits `UploadFinished`; returns the item's pieces, each at the
    /// version of its pad that holds it, and the item's digest.
    async fn finish(
        &self,
        written: WrittenPads,
        mut pieces: Vec<Piece>,
    ) -> Result<(Vec<Piece>, Digest)> {
        for piece in &mut pieces {
            piece.version = written.versions[&piece.pad];
        }
        self.events.emit(|| PutEvent::UploadFinished).await?;
        Ok((pieces, crypto::item_digest(&written.digests)))
    }
}

/// What the pads written for an item hold: each pad's version, each
/// piece's digest.
struct WrittenPads {
    versions: BTreeMap<u64, u64>,
    digests: Vec<Digest>,
}

impl WrittenPads {
    fn new(pieces: usize) -> Self {
        Self {
            versions: BTreeMap::new(),
            digests: vec![Digest::default(); pieces],
        }
    }

    fn record(&mut self, (pad, version, digests): PadWritten) {
        self.versions.insert(pad, version);
        for (piece, digest) in digests {
            self.digests[piece] = digest;
        }
    }
}

/// The parts of an item's pieces (in data order), grouped by pad.
fn parts_by_pad(pieces: &[Piece]) -> BTreeMap<u64, Vec<Part>> {
    let mut by_pad: BTreeMap<u64, Vec<Part>> = BTreeMap::new();
    let mut at = 0u64;
    for (index, piece) in pieces.iter().enumerate() {
        by_pad.entry(piece.pad).or_default().push(Part {
            offset: piece.offset,
            at,
            len: piece.len,
            piece: index,
        });
        at += piece.len;
    }
    by_pad
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
#[derive(Default)]
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
