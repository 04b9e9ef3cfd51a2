//! Reading an item: each pad its pieces lie in is fetched, opened and copied
//! into the caller's buffer by a task of its own (so decryption and copying
//! use every core), and the item's digest checked last; an item still held
//! in the log is served from the index's copy, checked the same way.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::StreamExt;

use super::{MemoryAllocator, inline_digest};
use crate::blocking;
use crate::crypto::{self, AuthTag, Digest};
use crate::error::{Error, Result};
use crate::events::{EventSink, GetEvent};
use crate::index::{Entry, Piece};
use crate::pad::fills_pad;
use crate::pad_io::{PadIo, PadWriter, permits_closed};

impl MemoryAllocator {
    /// Reads an item into `out` (of the item's size, in any state: every
    /// byte is written), and checks its digest. Each pad is fetched, opened
    /// and copied into place by a task of its own, so a large item is
    /// decrypted and copied on every core.
    pub async fn read<B: AsMut<[u8]> + Send + 'static>(
        &self,
        entry: &Entry,
        out: B,
        events: &EventSink<GetEvent>,
    ) -> Result<B> {
        let (out, _) = self.read_with_digests(entry, out, events).await?;
        Ok(out)
    }

    /// [`Self::read`], also returning the digest of each of the item's
    /// pieces (what its digest is the digest of): a compaction that cuts a
    /// piece anew recomputes the item's digest from them.
    pub async fn read_with_digests<B: AsMut<[u8]> + Send + 'static>(
        &self,
        entry: &Entry,
        out: B,
        events: &EventSink<GetEvent>,
    ) -> Result<(B, Vec<Digest>)> {
        let total_bytes = starting_download(events, entry).await?;
        // pad -> (newest version its pieces need, [(data offset, piece, index)])
        let mut by_pad: BTreeMap<u64, (u64, PiecesInPad)> = BTreeMap::new();
        let pad_size = self.io.pad_size;
        for (index, (at, piece)) in tile(entry, pad_size)?.into_iter().enumerate() {
            let slot = by_pad.entry(piece.pad).or_default();
            slot.0 = slot.0.max(piece.version);
            slot.1.push((at, piece, index));
        }
        let out = ItemBuffer::new(out, entry.size)?;
        let mut reads = futures::stream::iter(by_pad)
            .map(|(pad, (min_version, pieces))| {
                let out = Arc::clone(&out);
                let need_tag = pieces
                    .iter()
                    .any(|(_, piece, _)| fills_pad(piece.offset, piece.len, pad_size));
                let bytes: u64 = pieces.iter().map(|(_, piece, _)| piece.len).sum();
                // Only the bytes under the pieces, unless one fills the pad
                // (its digest is the pad's tag, of the whole pad).
                let span = (!need_tag).then(|| span_of(pieces.iter().map(|(_, p, _)| p)));
                self.read_pad_task(pad, min_version, span, bytes, move |content, base, tag| {
                    let mut digests = Vec::with_capacity(pieces.len());
                    for (at, piece, index) in pieces {
                        // SAFETY: pieces tile the item (offsets are the
                        // running sum of lengths, checked by `tile`), and
                        // each piece is written by this task alone.
                        let target = unsafe { out.range(at, piece.len) }?;
                        copy_piece(&content, &shifted(&piece, base), target);
                        // Hashed while the copy is still in the cache.
                        digests.push((index, piece_digest(&piece, pad_size, tag, target)?));
                    }
                    Ok((bytes, digests))
                })
            })
            .buffer_unordered(self.download_concurrency);
        let mut bytes_read = 0;
        let mut digests = vec![Digest::default(); entry.pieces.len()];
        while let Some(result) = reads.next().await {
            let (bytes, read) = result?;
            bytes_read += bytes;
            for (index, digest) in read {
                digests[index] = digest;
            }
            events
                .emit(|| GetEvent::DownloadProgress {
                    bytes_read,
                    total_bytes,
                })
                .await?;
        }
        drop(reads);
        let out = ItemBuffer::into_inner(out);
        check_item_digest(&digests, entry)?;
        events.finish(GetEvent::DownloadFinished).await?;
        Ok((out, digests))
    }

    /// Reads an item whose bytes the index holds (committed in the log and
    /// not yet written back) into `out`, checking its digest as a read from
    /// its pads would.
    pub async fn read_inline<B: AsMut<[u8]> + Send + 'static>(
        &self,
        entry: &Entry,
        data: Bytes,
        mut out: B,
        events: &EventSink<GetEvent>,
    ) -> Result<B> {
        let total_bytes = starting_download(events, entry).await?;
        if inline_digest(&entry.pieces, &data)? != entry.hash {
            return Err(Error::integrity(
                "item content does not match its digest: its index log record was modified",
            ));
        }
        let target = out.as_mut();
        if target.len() != data.len() {
            return Err(wrong_buffer_size(target.len(), entry.size));
        }
        target.copy_from_slice(&data);
        events
            .emit(|| GetEvent::DownloadProgress {
                bytes_read: total_bytes,
                total_bytes,
            })
            .await?;
        events.finish(GetEvent::DownloadFinished).await?;
        Ok(out)
    }
}

/// The error of a read into a buffer of another size than the item's: the
/// store makes the buffer of the item's size (and checks one a caller
/// made), so reaching it is a bug.
fn wrong_buffer_size(buffer: usize, item: u64) -> Error {
    Error::internal(format!(
        "a read of a {item}-byte item was given a {buffer}-byte buffer"
    ))
}

/// An item's pieces in one pad: (offset in the item, piece, piece index).
type PiecesInPad = Vec<(u64, Piece, usize)>;

impl MemoryAllocator {
    /// Reads pad `pad` (at `min_version` or newer) in a task of its own:
    /// its bytes `span` (see [`read_pad_range`]), or the whole pad, with its
    /// tag, if `span` is `None`; then runs `take` on the bytes, the offset
    /// in the pad they begin at, and the tag, on the blocking pool if it
    /// copies or hashes `bytes` bytes or more (see
    /// `blocking::off_runtime`): so a large item is decrypted, copied and
    /// hashed on every core.
    fn read_pad_task<T: Send + 'static>(
        &self,
        pad: u64,
        min_version: u64,
        span: Option<Range<u64>>,
        bytes: u64,
        take: impl FnOnce(Bytes, u64, Option<AuthTag>) -> Result<T> + Send + 'static,
    ) -> impl Future<Output = Result<T>> {
        let (io, writer) = (Arc::clone(&self.io), Arc::clone(&self.writer));
        let task = tokio::spawn(async move {
            let (content, base, tag) = match span {
                Some(span) => {
                    let base = span.start;
                    let (content, _) = read_pad_range(&io, &writer, pad, min_version, span).await?;
                    (content, base, None)
                }
                None => {
                    let (content, tag, _) = read_pad(&io, &writer, pad, min_version, true).await?;
                    (content, 0, tag)
                }
            };
            let bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
            blocking::off_runtime(bytes, move || take(content, base, tag)).await
        });
        blocking::joined(task)
    }
}

/// `piece` as placed in a part of its pad that begins at `base` (which a
/// ranged read fetched).
fn shifted(piece: &Piece, base: u64) -> Piece {
    Piece {
        offset: piece.offset - base,
        ..*piece
    }
}

/// The bytes of a pad that `pieces` (of one pad) lie in, from the first
/// to the end of the last: what one ranged read fetches for them.
fn span_of<'a>(pieces: impl Iterator<Item = &'a Piece>) -> Range<u64> {
    let (mut start, mut end) = (u64::MAX, 0);
    for piece in pieces {
        start = start.min(piece.offset);
        end = end.max(piece.offset + piece.len);
    }
    start.min(end)..end
}

/// The digest of a piece read from its pad (see `crypto::item_digest`): the
/// pad object's tag for a piece filling its pad (authentic, since the pad
/// opened), else the hash of the piece's bytes.
pub(crate) fn piece_digest(
    piece: &Piece,
    pad_size: u64,
    tag: Option<AuthTag>,
    bytes: &[u8],
) -> Result<Digest> {
    match (fills_pad(piece.offset, piece.len, pad_size), tag) {
        (true, Some(tag)) => Ok(tag),
        (true, None) => Err(Error::integrity(format!(
            "pad {} holds a whole piece but was never written",
            piece.pad
        ))),
        (false, _) => Ok(crypto::piece_digest(bytes)),
    }
}

/// The committed plaintext of a pad, its tag and version: the writer's copy
/// if it holds one at least as new as `min_version` (and the object's tag
/// is not needed), else the backend's, with its tag.
pub(super) async fn read_pad(
    io: &PadIo,
    writer: &PadWriter,
    pad: u64,
    min_version: u64,
    need_tag: bool,
) -> Result<(Bytes, Option<AuthTag>, u64)> {
    if !need_tag
        && let Some((version, content)) = writer.cached(pad)
        && version >= min_version
    {
        return Ok((content, None, version));
    }
    let _permit = io
        .download_permits
        .acquire()
        .await
        .map_err(permits_closed)?;
    let id = writer.pad_id(pad)?;
    let read = io.read(id, min_version).await?;
    Ok((Bytes::from(read.plaintext), read.tag, read.version))
}

/// Bytes `span` of a pad's committed content (zeros past what was ever
/// written) and the version they are of: the writer's copy if it holds one
/// at least as new as `min_version`, else only the segments under them
/// from the backend (see [`PadIo::read_range`]).
pub(crate) async fn read_pad_range(
    io: &PadIo,
    writer: &PadWriter,
    pad: u64,
    min_version: u64,
    span: Range<u64>,
) -> Result<(Bytes, u64)> {
    if let Some((version, content)) = writer.cached(pad)
        && version >= min_version
    {
        let piece = Piece {
            pad,
            offset: span.start,
            len: span.end - span.start,
            version,
        };
        return Ok((piece_bytes(&content, &piece, 0, piece.len), version));
    }
    let _permit = io
        .download_permits
        .acquire()
        .await
        .map_err(permits_closed)?;
    let id = writer.pad_id(pad)?;
    let (version, bytes) = io.read_range(id, min_version, span).await?;
    Ok((bytes, version))
}

/// Emits `StartingDownload` for `entry`; returns its size.
async fn starting_download(events: &EventSink<GetEvent>, entry: &Entry) -> Result<u64> {
    let total_bytes = entry.size;
    events
        .emit(|| GetEvent::StartingDownload { total_bytes })
        .await?;
    Ok(total_bytes)
}

/// Checks the digests of an item's pieces, read from its pads, against the
/// item's digest.
fn check_item_digest(pieces: &[Digest], entry: &Entry) -> Result<()> {
    if crypto::item_digest(pieces) != entry.hash {
        return Err(Error::integrity(
            "item content does not match its digest: a pad was modified or rolled back",
        ));
    }
    Ok(())
}

/// Copies a piece out of its pad's plaintext into `target`, of the piece's
/// length (a pad stores only the prefix ever written; past it, zeros).
fn copy_piece(content: &[u8], piece: &Piece, target: &mut [u8]) {
    let from = piece.offset as usize;
    let available = content.len().saturating_sub(from).min(target.len());
    if available > 0 {
        target[..available].copy_from_slice(&content[from..from + available]);
    }
    target[available..].fill(0);
}

/// The bytes `[from, from + len)` of a piece, out of its pad's plaintext
/// (a pad stores only the prefix ever written; past it, zeros).
pub(crate) fn piece_bytes(content: &Bytes, piece: &Piece, from: u64, len: u64) -> Bytes {
    let start = (piece.offset + from) as usize;
    let end = start + len as usize;
    if end <= content.len() {
        return content.slice(start..end);
    }
    let mut bytes = vec![0u8; len as usize];
    let available = content.len().saturating_sub(start);
    if available > 0 {
        bytes[..available].copy_from_slice(&content[start..]);
    }
    Bytes::from(bytes)
}

/// An item's pieces with the offset of each in the item, checked to fit
/// their pads and to tile the item. The index is authenticated, but an
/// entry applied from the log may not have been through the map's checks
/// yet: no read computes with or slices by a piece that does not fit.
pub fn tile(entry: &Entry, pad_size: u64) -> Result<Vec<(u64, Piece)>> {
    let mut tiles = Vec::with_capacity(entry.pieces.len());
    let mut cursor: u64 = 0;
    for piece in &entry.pieces {
        piece.check(pad_size)?;
        tiles.push((cursor, *piece));
        cursor = cursor.checked_add(piece.len).ok_or_else(|| {
            Error::integrity("index entry pieces add up to more bytes than any item has")
        })?;
    }
    if cursor != entry.size {
        return Err(Error::integrity(
            "index entry pieces do not add up to its size",
        ));
    }
    Ok(tiles)
}

/// Where a streamed read sends an item's bytes, in order. Called on the
/// blocking pool.
pub trait ChunkSink: Send + 'static {
    fn write_chunk(&mut self, chunk: &[u8]) -> Result<()>;

    /// Takes back every byte written, so that a read can start over;
    /// false if the sink cannot (bytes handed to a file object are gone).
    fn restart(&mut self) -> Result<bool> {
        Ok(false)
    }
}

impl MemoryAllocator {
    /// Reads `len` bytes at `offset` of an item (a range inside it), from
    /// only the pads that hold them, concurrently. Every byte comes from a
    /// pad opened (authenticated) at the version the entry names, or a
    /// newer one; the flag says whether any was newer: then the pad was
    /// rewritten since, and the caller checks the entry is still current
    /// (a pad is shared by several items; the item's own bytes in it change
    /// only when the item is replaced or removed).
    pub async fn read_range(&self, entry: &Entry, offset: u64, len: u64) -> Result<(Bytes, bool)> {
        let tiles = tile(entry, self.io.pad_size)?;
        let end = offset
            .checked_add(len)
            .filter(|&end| end <= entry.size)
            .ok_or_else(|| Error::invalid("the range is past the item's end"))?;
        let wanted: Vec<(u64, Piece, u64, u64)> = tiles
            .into_iter()
            .filter(|(at, piece)| *at < end && at + piece.len > offset)
            .map(|(at, piece)| {
                let from = offset.saturating_sub(at);
                let to = (end - at).min(piece.len);
                (at, piece, from, to - from)
            })
            .collect();
        let reads = futures::stream::iter(wanted)
            .map(|(_, piece, from, len)| async move {
                let start = piece.offset + from;
                let (bytes, version) = read_pad_range(
                    &self.io,
                    &self.writer,
                    piece.pad,
                    piece.version,
                    start..start + len,
                )
                .await?;
                Ok::<_, Error>((bytes, version > piece.version))
            })
            .buffered(self.download_concurrency)
            .collect::<Vec<_>>()
            .await;
        let mut out = Vec::with_capacity(len as usize);
        let mut newer = false;
        for read in reads {
            let (bytes, newer_pad) = read?;
            out.extend_from_slice(&bytes);
            newer |= newer_pad;
        }
        Ok((Bytes::from(out), newer))
    }

    /// Streams an item to `stream`'s sink, piece by piece in order, with up
    /// to `download_concurrency` pieces read ahead (so at most that many in
    /// memory), then checks the item's digest. Starts after the pieces the
    /// stream already wrote (see [`ItemStream::follow`]). Emits the events
    /// of [`Self::read`] but `DownloadFinished`, which the caller emits once
    /// the sink is complete.
    pub async fn read_to<S: ChunkSink>(
        &self,
        entry: &Entry,
        stream: &mut ItemStream<S>,
        events: &EventSink<GetEvent>,
    ) -> Result<()> {
        let tiles = tile(entry, self.io.pad_size)?;
        stream.starting(entry.size, events).await?;
        let pad_size = self.io.pad_size;
        let mut reads = futures::stream::iter(tiles.into_iter().skip(stream.lengths.len()))
            .map(|(_, piece)| {
                let whole = fills_pad(piece.offset, piece.len, pad_size);
                // A whole piece's digest is its pad's tag: nothing to hash.
                let hashed = if whole { 0 } else { piece.len };
                let span = (!whole).then_some(piece.offset..piece.offset + piece.len);
                self.read_pad_task(
                    piece.pad,
                    piece.version,
                    span,
                    hashed,
                    move |content, base, tag| {
                        let bytes = piece_bytes(&content, &shifted(&piece, base), 0, piece.len);
                        let digest = piece_digest(&piece, pad_size, tag, &bytes)?;
                        Ok((bytes, digest))
                    },
                )
            })
            .buffered(self.download_concurrency);
        while let Some(result) = reads.next().await {
            let (bytes, digest) = result?;
            let len = bytes.len() as u64;
            stream.write(bytes).await?;
            stream.digests.push(digest);
            stream.lengths.push(len);
            stream.progress(entry.size, events).await?;
        }
        check_item_digest(&stream.digests, entry)
    }
}

/// A streamed read of one item in progress: its sink and how far it got.
/// It outlives a read that fails, so that a read finding its item moved by
/// another process's compaction (a pad gone) can go on from where the item
/// lies now ([`Self::follow`]).
pub struct ItemStream<S> {
    /// `None` only if a write to it panicked (or while one runs).
    sink: Option<S>,
    /// Whether the sink refused a chunk: the error is the sink's, not a
    /// sign that the item moved.
    sink_failed: bool,
    /// The digests and lengths of the pieces written so far, in order.
    digests: Vec<Digest>,
    lengths: Vec<u64>,
    /// Bytes written to the sink.
    written: u64,
    /// The total of the `StartingDownload` emitted, if any.
    started: Option<u64>,
    /// The most bytes a `DownloadProgress` reported: a read that starts
    /// over reports nothing until it passes them, so counters never go back.
    reported: u64,
}

impl<S: ChunkSink> ItemStream<S> {
    pub fn new(sink: S) -> Self {
        Self {
            sink: Some(sink),
            sink_failed: false,
            digests: Vec::new(),
            lengths: Vec::new(),
            written: 0,
            started: None,
            reported: 0,
        }
    }

    /// Bytes written to the sink.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Whether the last failure was the sink's own.
    pub fn sink_failed(&self) -> bool {
        self.sink_failed
    }

    /// The sink, once the read is complete.
    pub fn into_sink(self) -> Result<S> {
        self.sink
            .ok_or_else(|| Error::internal("the sink of a stream was lost"))
    }

    /// Writes `chunk` to the sink, on the blocking pool.
    pub async fn write(&mut self, chunk: impl AsRef<[u8]> + Send + 'static) -> Result<()> {
        let mut sink = self
            .sink
            .take()
            .ok_or_else(|| Error::internal("the sink of a stream was lost"))?;
        let len = chunk.as_ref().len() as u64;
        let (sink, written) = blocking::on_blocking_pool(move || {
            let written = sink.write_chunk(chunk.as_ref());
            (sink, written)
        })
        .await;
        self.sink = Some(sink);
        if written.is_err() {
            self.sink_failed = true;
        }
        written?;
        self.written += len;
        Ok(())
    }

    /// Emits `StartingDownload` unless this stream already did for `total`
    /// (a replaced item of another size is a new download, counted anew).
    pub async fn starting(&mut self, total: u64, events: &EventSink<GetEvent>) -> Result<()> {
        if self.started != Some(total) {
            self.started = Some(total);
            self.reported = 0;
            events
                .emit(|| GetEvent::StartingDownload { total_bytes: total })
                .await?;
        }
        Ok(())
    }

    /// Emits `DownloadProgress` if more bytes are written than reported.
    pub async fn progress(&mut self, total: u64, events: &EventSink<GetEvent>) -> Result<()> {
        if self.written > self.reported {
            self.reported = self.reported.max(self.written);
            let bytes_read = self.written;
            events
                .emit(|| GetEvent::DownloadProgress {
                    bytes_read,
                    total_bytes: total,
                })
                .await?;
        }
        Ok(())
    }

    /// Prepares to read `now` (the item's entry now; `in_log` if its bytes
    /// are read from the log, whole) after a read of `before` stopped;
    /// false if it cannot.
    ///
    /// The same item (its data id: a compaction keeps it, every put takes a
    /// new one) cut into the same pieces up to where the read stopped goes
    /// on from there, unless it is to be read whole: the bytes written are
    /// that item's, and the digests of its pieces so far still make up its
    /// digest with the rest, checked at the end. Otherwise the read starts
    /// over, if nothing was written yet or the sink can take its bytes
    /// back (a temporary file can; a file object cannot, and then the item
    /// replaced under the read is an error: part of the old item was
    /// handed over).
    pub async fn follow(&mut self, before: &Entry, now: &Entry, in_log: bool) -> Result<bool> {
        let same_cut = now.pieces.len() >= self.lengths.len()
            && now
                .pieces
                .iter()
                .zip(&self.lengths)
                .all(|(p, len)| p.len == *len);
        let same_item = now.data_id == before.data_id && now.size == before.size;
        if same_item && same_cut && !(in_log && self.written > 0) {
            return Ok(true);
        }
        if self.written > 0 {
            let Some(mut sink) = self.sink.take() else {
                return Ok(false);
            };
            let (sink, restarted) = blocking::on_blocking_pool(move || {
                let restarted = sink.restart();
                (sink, restarted)
            })
            .await;
            self.sink = Some(sink);
            if !restarted? {
                return Ok(false);
            }
        }
        self.digests.clear();
        self.lengths.clear();
        self.written = 0;
        Ok(true)
    }
}

/// An item's output buffer while the tasks reading its pads fill it, each
/// its own pieces. Shared by reference count, so the tasks of a cancelled
/// read still write into live memory.
pub(super) struct ItemBuffer<B> {
    buffer: std::cell::UnsafeCell<B>,
    start: *mut u8,
    len: usize,
}

// SAFETY: the tasks only write disjoint ranges through `range` (its caller's
// promise), and the buffer itself moves out only in `into_inner`, once no
// task holds it.
unsafe impl<B: Send> Send for ItemBuffer<B> {}
unsafe impl<B: Send> Sync for ItemBuffer<B> {}

impl<B: AsMut<[u8]>> ItemBuffer<B> {
    pub(super) fn new(buffer: B, size: u64) -> Result<Arc<Self>> {
        let mut shared = Arc::new(Self {
            buffer: std::cell::UnsafeCell::new(buffer),
            start: std::ptr::null_mut(),
            len: 0,
        });
        // Only now, with the buffer at its final address (a buffer may point
        // into itself), take the pointer the tasks write through.
        let this = Arc::get_mut(&mut shared).expect("not shared yet");
        let bytes = this.buffer.get_mut().as_mut();
        if bytes.len() as u64 != size {
            return Err(wrong_buffer_size(bytes.len(), size));
        }
        (this.start, this.len) = (bytes.as_mut_ptr(), bytes.len());
        Ok(shared)
    }

    /// `len` bytes at `at`; an integrity error if they are not all inside
    /// the buffer (an index entry whose pieces do not tile the item).
    ///
    /// # Safety
    /// No two live slices of one buffer may overlap.
    #[allow(clippy::mut_from_ref)]
    pub(super) unsafe fn range(&self, at: u64, len: u64) -> Result<&mut [u8]> {
        let inside = usize::try_from(at)
            .ok()
            .zip(usize::try_from(len).ok())
            .filter(|&(at, len)| at.checked_add(len).is_some_and(|end| end <= self.len));
        let Some((at, len)) = inside else {
            return Err(Error::integrity(format!(
                "an index entry places {len} bytes at {at} of a {}-byte item",
                self.len
            )));
        };
        // SAFETY: in bounds (checked); exclusive by the caller's promise.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.start.add(at), len) })
    }

    /// The buffer, once every task has let go of it.
    pub(super) fn into_inner(shared: Arc<Self>) -> B {
        let Ok(this) = Arc::try_unwrap(shared) else {
            unreachable!("every read task has finished")
        };
        this.buffer.into_inner()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::StoreKeys;
    use crate::journal::Journal;
    use crate::pad_store::{self, BackendOptions};
    use crate::retry::RetryPolicy;
    use tokio::sync::Semaphore;

    const PAD: u64 = 4096;

    async fn allocator() -> Arc<MemoryAllocator> {
        let backend = pad_store::open("memory://", &BackendOptions::default())
            .await
            .unwrap();
        let keys = Arc::new(StoreKeys::derive(b"secret", &[1; 16]));
        let retry = RetryPolicy::default();
        let journal = Journal::open(
            Arc::clone(&backend),
            Arc::clone(&keys),
            [1; 16],
            retry,
            1 << 20,
            crate::journal::RollbackCheck::default(),
            None,
        )
        .await
        .unwrap();
        let io = Arc::new(PadIo {
            backend,
            keys,
            store_id: [1; 16],
            pad_size: PAD,
            retry,
            upload_permits: Semaphore::new(4),
            download_permits: Semaphore::new(4),
            buffers: Default::default(),
            formats: Default::default(),
        });
        MemoryAllocator::new(io, journal, 4, 4).unwrap()
    }

    fn entry(size: u64, pieces: &[(u64, u64)]) -> Entry {
        Entry {
            data_id: 0,
            size,
            hash: [0; 16],
            pieces: pieces
                .iter()
                .map(|&(offset, len)| Piece {
                    pad: 0,
                    offset,
                    len,
                    version: 0,
                })
                .collect(),
            created: 0,
            modified: 0,
        }
    }

    /// An entry whose piece lengths overflow when summed (and wrap to its
    /// size), or whose pieces do not fit their pad, is an integrity error
    /// before any byte of the output is sliced: never a panic.
    #[tokio::test]
    async fn a_read_of_pieces_that_do_not_fit_is_an_integrity_error() {
        let allocator = allocator().await;
        let events = EventSink::new(None);
        for bad in [
            entry(1, &[(0, u64::MAX), (0, 2)]),
            entry(u64::MAX, &[(0, u64::MAX)]),
            entry(10, &[(PAD - 5, 10)]),
            entry(0, &[(0, 0)]),
        ] {
            let size = usize::try_from(bad.size).unwrap_or(0).min(64);
            let result = allocator.read(&bad, vec![0u8; size], &events).await;
            assert!(
                matches!(
                    result,
                    Err(Error::Integrity(_)) | Err(Error::InvalidInput(_))
                ),
                "{bad:?}: {result:?}"
            );
        }
    }

    #[test]
    fn an_item_buffer_refuses_a_range_outside_it() {
        let buffer = ItemBuffer::new(vec![0u8; 10], 10).unwrap();
        // SAFETY: no slice of the buffer is alive while these are taken.
        unsafe {
            assert_eq!(buffer.range(2, 8).unwrap().len(), 8);
            assert!(buffer.range(3, 8).is_err());
            assert!(buffer.range(u64::MAX, 2).is_err());
            assert!(buffer.range(1, u64::MAX).is_err());
        }
    }
}
