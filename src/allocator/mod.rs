//! The memory allocator: the [`MemoryMap`] plus the I/O around it.
//!
//! `allocate` plans space, takes free blocks at once and, when free space is
//! short, expands by reserving new pads concurrently in a task of its own.
//! `write` uploads and commits every pad of an allocation concurrently, and
//! starts on each new pad the moment it is reserved, so a put that needs new
//! pads takes about as long as its slowest phase (the seed plan's V3 speed).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::crypto::{self, AuthTag, Digest};
use crate::error::{Error, Result};
use crate::events::{EventSink, GetEvent, PutEvent};
use crate::index::{Entry, Index, PadRecord, Piece, Record};
use crate::journal::Journal;
use crate::memory_map::{Extent, MapSummary, MemoryMap, split_by_pad};
use crate::pad::PadId;
use crate::pad::fills_pad;
use crate::pad_io::{PadIo, PadWriter};
use crate::writer_gate::WriterGuard;

mod write_back;
pub use write_back::{IDLE, LOG_FIRST_FRACTION, MEMORY_BOUND, write_back_when_idle};

/// Makes a put's pending record (`Record::Pending`) from its data id and
/// pieces, for the expansion to write in the same index write as the new
/// pads it reserved: a put needing new pads then waits for one index write
/// before its commit, not two.
pub type PendingRecord = Box<dyn FnOnce(u64, Vec<Piece>) -> Record + Send>;

/// The right to reserve new pads; see [`MemoryAllocator::expansion_turn`].
pub type ExpansionTurn = tokio::sync::OwnedMutexGuard<()>;

pub struct MemoryAllocator {
    io: Arc<PadIo>,
    writer: Arc<PadWriter>,
    journal: Arc<Journal>,
    /// The address space. Held only for in-memory updates, never across I/O.
    map: Arc<Mutex<MemoryMap>>,
    next_data_id: AtomicU64,
    /// Pads reserved and mapped (wholly taken) whose recording failed.
    stray_pads: Mutex<Vec<PadRecord>>,
    /// Held by the one expansion under way (see `expansion_turn`).
    expansion: Arc<tokio::sync::Mutex<()>>,
    reservation_concurrency: usize,
    download_concurrency: usize,
    write_backs: write_back::WriteBacks,
}

/// Space handed out for one item, not yet committed to the index.
///
/// Dropping an uncommitted allocation (an error, a cancelled put) gives its
/// space back; pads its reservations still bring in join the map as free
/// space, so no reserved pad is ever forgotten.
pub struct Allocation {
    pub data_id: u64,
    pub size: u64,
    /// Free space taken at once, in data order.
    existing: Vec<Extent>,
    /// Bytes of the item that go into each new pad, in data order.
    new_pad_bytes: Vec<u64>,
    expansion: Option<Expansion>,
    map: Arc<Mutex<MemoryMap>>,
    /// Set while the index refers to this space (committed or pending):
    /// then dropping must not free it.
    kept: Arc<AtomicBool>,
}

/// The reservations of an allocation, running in their own task.
struct Expansion {
    /// Shared with the task: which new pads it has placed, and whether the
    /// allocation was given up (then the task frees what it places).
    placed: Arc<Mutex<Placed>>,
    /// The index `k` of each new pad as soon as it is reserved and mapped.
    reserved: Option<mpsc::UnboundedReceiver<usize>>,
    /// Every new pad's ordinal once all are reserved and recorded.
    complete: Option<oneshot::Receiver<Result<Vec<u64>>>>,
    task: Option<JoinHandle<Result<()>>>,
    cancel: Arc<AtomicBool>,
}

#[derive(Default)]
struct Placed {
    /// The ordinal of each new pad, once reserved.
    ordinals: Vec<Option<u64>>,
    /// The bytes of the item each new pad holds.
    bytes: Vec<u64>,
    /// The put gave up its allocation.
    abandoned: bool,
    /// The pads are in the index (and their unused space was freed).
    recorded: bool,
    /// Where the put's pending record stands, if the expansion writes it.
    pending: PendingClaim,
    /// Free space the put took, given up while its pending record was being
    /// written: the expansion frees it if that write fails, and keeps it
    /// (for the pending key) if it succeeds.
    deferred: Vec<Extent>,
}

/// The expansion's writing of a put's pending record (see `Placed`).
#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum PendingClaim {
    #[default]
    None,
    Writing,
    Written,
}

impl MemoryAllocator {
    /// Builds the allocator over the pads and used pieces of the index.
    pub fn new(
        io: Arc<PadIo>,
        journal: Arc<Journal>,
        reservation_concurrency: usize,
        download_concurrency: usize,
    ) -> Result<Arc<Self>> {
        let writer = PadWriter::new(Arc::clone(&io));
        let (map, next_data_id) = build_map(&journal, &writer, io.pad_size)?;
        let allocator = Arc::new(Self {
            io,
            writer,
            journal,
            map: Arc::new(Mutex::new(map)),
            next_data_id: AtomicU64::new(next_data_id),
            stray_pads: Mutex::new(Vec::new()),
            expansion: Arc::new(tokio::sync::Mutex::new(())),
            reservation_concurrency,
            download_concurrency,
            write_backs: Default::default(),
        });
        let hook: std::sync::Weak<dyn crate::journal::WriteBackAll> =
            Arc::downgrade(&allocator) as _;
        allocator.journal.set_write_back(hook);
        Ok(allocator)
    }

    /// Rebuilds the map and pad table from the index, after another process
    /// changed the store. Only with nothing of this process in flight.
    pub fn rebuild(&self) -> Result<()> {
        self.writer.clear();
        let (map, next_data_id) = build_map(&self.journal, &self.writer, self.io.pad_size)?;
        *self.map.lock().expect("map lock") = map;
        self.next_data_id.fetch_max(next_data_id, Ordering::Relaxed);
        Ok(())
    }

    /// Resolves once no pad upload of this store is in flight.
    pub fn writer_idle(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.writer.idle()
    }

    pub fn pad_size(&self) -> u64 {
        self.io.pad_size
    }

    pub fn summary(&self) -> MapSummary {
        self.map.lock().expect("map lock").summary()
    }

    /// `None` if `size` fits in free space, else the number of new pads needed.
    pub fn check_allocation_possible(&self, size: u64) -> Option<u64> {
        let needed = self.map.lock().expect("map lock").new_pads_needed(size);
        (needed > 0).then_some(needed)
    }

    /// Adopts pads found on the backend that the index does not know (from a
    /// crash between reservation and record): they join as free space.
    ///
    /// Only an object that opens with this store's keys is one of its pads:
    /// anything else under a pad's name (another store's, garbage) is left
    /// alone with a warning, since adopting it would give the store space
    /// it cannot read back.
    pub async fn adopt_pads(&self, ids: Vec<PadId>) -> Result<()> {
        let mut checks = futures::stream::iter(ids)
            .map(|id| async move { (id, self.io.read(id, 0).await) })
            .buffered(self.download_concurrency);
        let mut authentic = Vec::new();
        while let Some((id, read)) = checks.next().await {
            match read {
                Ok(_) => authentic.push(id),
                Err(Error::Integrity(message)) => log::warn!(
                    "left {} alone: it is not a pad of this store ({message})",
                    id.object_name()
                ),
                Err(other) => return Err(other),
            }
        }
        drop(checks);
        let ids = authentic;
        if ids.is_empty() {
            return Ok(());
        }
        let records: Vec<PadRecord> = {
            let map = self.map.lock().expect("map lock");
            let mut ordinals = map.holes().into_iter().chain(map.next_ordinal()..);
            ids.into_iter()
                .map(|id| PadRecord {
                    ordinal: ordinals.next().expect("unbounded"),
                    id,
                })
                .collect()
        };
        self.journal
            .append(vec![Record::PadsAdded(records.clone())])
            .await?;
        let mut map = self.map.lock().expect("map lock");
        for pad in records {
            map.add_pad(pad.ordinal)
                .map_err(|e| Error::integrity(format!("cannot adopt pad: {e}")))?;
            self.writer.add_pad(pad.ordinal, pad.id, 0, false);
        }
        Ok(())
    }

    /// Waits for the turn to expand. One expansion runs at a time, so puts
    /// that find no free space at once wait and then share the leftover of
    /// the pads the previous expansion brought, instead of each paying for
    /// pads of its own.
    pub async fn expansion_turn(&self) -> ExpansionTurn {
        Arc::clone(&self.expansion).lock_owned().await
    }

    /// Finds space for `size` bytes. Takes free space at once and, with the
    /// expansion turn, starts reserving the new pads needed (never more than
    /// `max_new_pads`, which the caller has confirmed). Returns `None` if
    /// that is not enough, or if new pads are needed without the turn: the
    /// caller asks again. An expansion takes `pending` and records it with
    /// its pads (then the allocation's keeper is set).
    pub async fn allocate(
        self: &Arc<Self>,
        size: u64,
        max_new_pads: u64,
        turn: &mut Option<ExpansionTurn>,
        writing: &WriterGuard,
        pending: &mut Option<PendingRecord>,
        events: &Arc<EventSink<PutEvent>>,
    ) -> Result<Option<Allocation>> {
        let pad_size = self.io.pad_size;
        let plan = {
            let mut map = self.map.lock().expect("map lock");
            let plan = map.plan(size);
            if plan.new_pads > max_new_pads || (plan.new_pads > 0 && turn.is_none()) {
                return Ok(None);
            }
            map.take(&plan.from_free)
                .expect("a plan only uses free space");
            plan
        };
        let new_pad_bytes: Vec<u64> = (0..plan.new_pads)
            .map(|k| (plan.new_bytes - k * pad_size).min(pad_size))
            .collect();
        let mut allocation = Allocation {
            data_id: self.next_data_id.fetch_add(1, Ordering::Relaxed),
            size,
            existing: plan.from_free,
            new_pad_bytes,
            expansion: None,
            map: Arc::clone(&self.map),
            kept: Arc::new(AtomicBool::new(false)),
        };
        if let (true, Some(turn)) = (plan.new_pads > 0, turn.take()) {
            events
                .emit(|| PutEvent::ReservingScratchpads {
                    needed: plan.new_pads,
                })
                .await?;
            let bytes = allocation.new_pad_bytes.clone();
            let pending = pending.take().map(|make| PendingAlong {
                make,
                data_id: allocation.data_id,
                existing: existing_pieces(&allocation.existing, pad_size),
                kept: allocation.keeper(),
            });
            allocation.expansion = Some(self.expand(bytes, turn, writing.clone(), pending, events));
        }
        Ok(Some(allocation))
    }

    /// Reserves one pad per entry of `bytes` (the bytes of the item each will
    /// hold), at most `reservation_concurrency` at once, with retries; maps
    /// each as soon as it is reserved and emits `ReservationProgress` after
    /// that map update; records all of them in the index at the end.
    fn expand(
        self: &Arc<Self>,
        bytes: Vec<u64>,
        turn: ExpansionTurn,
        writing: WriterGuard,
        pending: Option<PendingAlong>,
        events: &Arc<EventSink<PutEvent>>,
    ) -> Expansion {
        let total = bytes.len();
        let placed = Arc::new(Mutex::new(Placed {
            ordinals: vec![None; total],
            bytes: bytes.clone(),
            ..Placed::default()
        }));
        let (reserved_tx, reserved) = mpsc::unbounded_channel();
        let (complete_tx, complete) = oneshot::channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let task = {
            let (this, events) = (Arc::clone(self), Arc::clone(events));
            let (placed, cancel) = (Arc::clone(&placed), Arc::clone(&cancel));
            tokio::spawn(async move {
                let progress = AtomicU64::new(0);
                let reserve_one = |k: usize| {
                    let (this, events, placed) = (&this, &events, &placed);
                    let (cancel, progress, reserved_tx) = (&cancel, &progress, &reserved_tx);
                    async move {
                        if cancel.load(Ordering::Acquire) {
                            return Err(Error::Cancelled("the put was abandoned".into()));
                        }
                        let id = PadId::random();
                        this.io.reserve(id).await?;
                        let ordinal = this.map_new_pad(id, k, placed);
                        let record = PadRecord { ordinal, id };
                        let _ = reserved_tx.send(k);
                        events
                            .emit(|| PutEvent::ReservationProgress {
                                current: progress.fetch_add(1, Ordering::Relaxed) + 1,
                                total: total as u64,
                            })
                            .await
                            .inspect_err(|_| cancel.store(true, Ordering::Release))?;
                        Ok::<_, Error>(record)
                    }
                };
                let results: Vec<Result<PadRecord>> = futures::stream::iter(0..total)
                    .map(reserve_one)
                    .buffer_unordered(this.reservation_concurrency)
                    .collect()
                    .await;
                drop(reserved_tx);
                let outcome = this.record_expansion(results, &placed, pending).await;
                // Recorded and unused space freed: the next expansion may
                // start, and this process may let other writers in.
                drop(turn);
                drop(writing);
                let _ = complete_tx.send(outcome.clone());
                outcome.map(|_| ())
            })
        };
        Expansion {
            placed,
            reserved: Some(reserved),
            complete: Some(complete),
            task: Some(task),
            cancel,
        }
    }

    /// Records every pad an expansion reserved, whatever happened to the put
    /// (reserved pads are paid for), and returns the new pads' ordinals.
    async fn record_expansion(
        &self,
        results: Vec<Result<PadRecord>>,
        placed: &Mutex<Placed>,
        pending: Option<PendingAlong>,
    ) -> Result<Vec<u64>> {
        {
            let mut records = Vec::new();
            let mut first_error = None;
            for result in results {
                match result {
                    Ok(record) => records.push(record),
                    Err(Error::Cancelled(_)) if first_error.is_some() => {}
                    Err(error) => {
                        first_error.get_or_insert(error);
                    }
                }
            }
            records.sort_by_key(|r| r.ordinal);
            if !records.is_empty() {
                let mut batch = vec![Record::PadsAdded(records.clone())];
                // The put's pending record rides along if the put is still
                // on, claimed first so that a put given up meanwhile leaves
                // its space to this task (see `Allocation::drop`).
                let new_pieces = {
                    let mut placed = placed.lock().expect("placed lock");
                    let all: Option<Vec<u64>> = placed.ordinals.iter().copied().collect();
                    let claimed = all
                        .filter(|_| first_error.is_none() && !placed.abandoned && pending.is_some())
                        .map(|ordinals| new_pieces(&ordinals, &placed.bytes));
                    if claimed.is_some() {
                        placed.pending = PendingClaim::Writing;
                    }
                    claimed
                };
                let pending = match (pending, new_pieces) {
                    (Some(pending), Some(new_pieces)) => {
                        let mut pieces = pending.existing;
                        pieces.extend(new_pieces);
                        batch.push((pending.make)(pending.data_id, pieces));
                        Some(pending.kept)
                    }
                    _ => None,
                };
                // If this fails the pads stay wholly taken (never hand out
                // unrecorded space) until a later put records them.
                let appended = self.journal.append(batch).await;
                if let Some(kept) = pending {
                    let mut map = self.map.lock().expect("map lock");
                    let mut placed = placed.lock().expect("placed lock");
                    if appended.is_ok() {
                        // Under the lock `Allocation::drop` checks it with.
                        kept.store(true, Ordering::Release);
                        placed.pending = PendingClaim::Written;
                        placed.deferred.clear();
                    } else {
                        placed.pending = PendingClaim::None;
                        let deferred = std::mem::take(&mut placed.deferred);
                        if let Err(error) = map.free(&deferred) {
                            log::error!("giving back an abandoned allocation failed: {error}");
                        }
                    }
                }
                if let Err(error) = appended {
                    self.stray_pads
                        .lock()
                        .expect("stray pads lock")
                        .extend(records);
                    return Err(error);
                }
            }
            self.release_unused(placed);
            if let Some(error) = first_error {
                return Err(error);
            }
            let placed = placed.lock().expect("placed lock");
            placed
                .ordinals
                .iter()
                .map(|o| o.ok_or_else(|| Error::Cancelled("the put was abandoned".into())))
                .collect()
        }
    }

    /// Adds a just-reserved pad to the map, wholly taken: its leftover (and,
    /// for an abandoned put, its part too) becomes free only once the pad is
    /// recorded in the index, so no other put can commit data into a pad the
    /// index does not know yet.
    fn map_new_pad(&self, id: PadId, k: usize, placed: &Mutex<Placed>) -> u64 {
        let pad_size = self.io.pad_size;
        let mut map = self.map.lock().expect("map lock");
        let ordinal = map.next_ordinal();
        map.add_pad(ordinal).expect("next ordinal is new");
        map.take(&[Extent {
            start: ordinal * pad_size,
            len: pad_size,
        }])
        .expect("a new pad is free");
        self.writer.add_pad(ordinal, id, 0, true);
        placed.lock().expect("placed lock").ordinals[k] = Some(ordinal);
        ordinal
    }

    /// Records pads whose recording failed earlier (their put failed with
    /// it), and frees them: they hold nothing. Call inside the writer gate.
    pub async fn record_stray_pads(&self) -> Result<()> {
        let stray = std::mem::take(&mut *self.stray_pads.lock().expect("stray pads lock"));
        if stray.is_empty() {
            return Ok(());
        }
        if let Err(error) = self
            .journal
            .append(vec![Record::PadsAdded(stray.clone())])
            .await
        {
            self.stray_pads
                .lock()
                .expect("stray pads lock")
                .extend(stray);
            return Err(error);
        }
        let pad_size = self.io.pad_size;
        let whole: Vec<Extent> = stray
            .iter()
            .map(|pad| Extent {
                start: pad.ordinal * pad_size,
                len: pad_size,
            })
            .collect();
        if let Err(error) = self.map.lock().expect("map lock").free(&whole) {
            log::error!("freeing recorded stray pads failed: {error}");
        }
        Ok(())
    }

    /// Once an expansion's pads are recorded: frees what its put does not
    /// use (the leftovers, or everything if the put was abandoned).
    fn release_unused(&self, placed: &Mutex<Placed>) {
        let pad_size = self.io.pad_size;
        let mut map = self.map.lock().expect("map lock");
        let mut placed = placed.lock().expect("placed lock");
        placed.recorded = true;
        // An abandoned put's parts are free, unless its pending record
        // holds them (the key is then resumable).
        let keep = !placed.abandoned || placed.pending == PendingClaim::Written;
        let used = |len: u64| if keep { len } else { 0 };
        let unused: Vec<Extent> = placed
            .ordinals
            .iter()
            .zip(&placed.bytes)
            .filter_map(|(ordinal, &len)| {
                let ordinal = (*ordinal)?;
                let used = used(len);
                (used < pad_size).then_some(Extent {
                    start: ordinal * pad_size + used,
                    len: pad_size - used,
                })
            })
            .collect();
        if let Err(error) = map.free(&unused) {
            log::error!("freeing the unused part of new pads failed: {error}");
        }
    }

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
        data: &Bytes,
        events: &EventSink<PutEvent>,
    ) -> Result<(Vec<Piece>, Digest)> {
        let pad_size = self.io.pad_size;
        debug_assert_eq!(data.len() as u64, allocation.size);
        // The item's pieces in data order; new pads' ordinals fill in later.
        let mut pieces: Vec<Piece> = Vec::new();
        let mut by_pad: BTreeMap<u64, Vec<Part>> = BTreeMap::new();
        let mut cursor = 0u64;
        for extent in &allocation.existing {
            for (pad, offset, len) in split_by_pad(*extent, pad_size) {
                let bytes = data.slice(cursor as usize..(cursor + len) as usize);
                let piece = pieces.len();
                by_pad.entry(pad).or_default().push(Part {
                    offset,
                    bytes,
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
            uploads.push(self.write_pad(pad, parts, &progress, events));
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
                    let start = new_start[k] as usize;
                    let part = Part {
                        offset: 0,
                        bytes: data.slice(start..start + allocation.new_pad_bytes[k] as usize),
                        piece: first_new_piece + k,
                    };
                    uploads.push(self.write_pad(ordinal, vec![part], &progress, events));
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
                .map_err(|e| Error::invalid(format!("pad reservation task failed: {e}")))??;
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
        let write = self.writer.write(pad, parts)?;
        write.uploaded.await.map_err(writer_gone)??;
        progress.report_uploaded(bytes, events).await?;
        let (version, tag) = write.committed.await.map_err(writer_gone)??;
        if whole_piece.is_some() {
            digests[0].1 = tag;
        }
        progress.report_committed(events).await?;
        Ok((pad, version, digests))
    }

    /// The piece of `parts` if it is their only one and fills its pad.
    fn whole_piece(&self, parts: &[Part]) -> Option<usize> {
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
        data: &Bytes,
        events: &EventSink<PutEvent>,
    ) -> Result<(Vec<Piece>, Digest)> {
        let mut by_pad: BTreeMap<u64, Vec<Part>> = BTreeMap::new();
        let mut cursor = 0u64;
        for (index, piece) in pieces.iter().enumerate() {
            by_pad.entry(piece.pad).or_default().push(Part {
                offset: piece.offset,
                bytes: data.slice(cursor as usize..(cursor + piece.len) as usize),
                piece: index,
            });
            cursor += piece.len;
        }
        let progress = WriteProgress::new(data.len() as u64, by_pad.len() as u64);
        events
            .emit(|| PutEvent::StartingUpload {
                total_bytes: progress.total_bytes,
                total_pads: progress.total_pads,
            })
            .await?;
        let written: Vec<PadWritten> = futures::stream::iter(by_pad)
            .map(|(pad, parts)| self.rewrite_pad(pad, parts, &progress, events))
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
        progress: &WriteProgress,
        events: &EventSink<PutEvent>,
    ) -> Result<PadWritten> {
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
            return self.write_pad(pad, parts, progress, events).await;
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
        let total_bytes = entry.size;
        events
            .emit(|| GetEvent::StartingDownload { total_bytes })
            .await?;
        // pad -> (newest version its pieces need, [(data offset, piece, index)])
        let mut by_pad: BTreeMap<u64, (u64, PiecesInPad)> = BTreeMap::new();
        let pad_size = self.io.pad_size;
        let mut cursor: u64 = 0;
        for (index, piece) in entry.pieces.iter().enumerate() {
            // The index is authenticated, but an entry applied from the log
            // may not have been through the map's checks yet: nothing below
            // computes with or slices by a piece that does not fit its pad.
            piece.check(pad_size)?;
            let slot = by_pad.entry(piece.pad).or_default();
            slot.0 = slot.0.max(piece.version);
            slot.1.push((cursor, *piece, index));
            cursor = cursor.checked_add(piece.len).ok_or_else(|| {
                Error::integrity("index entry pieces add up to more bytes than any item has")
            })?;
        }
        if cursor != entry.size {
            return Err(Error::integrity(
                "index entry pieces do not add up to its size",
            ));
        }
        let out = ItemBuffer::new(out, entry.size)?;
        let mut reads = futures::stream::iter(by_pad)
            .map(|(pad, (min_version, pieces))| {
                let io = Arc::clone(&self.io);
                let writer = Arc::clone(&self.writer);
                let out = Arc::clone(&out);
                let task = tokio::spawn(async move {
                    let pad_size = io.pad_size;
                    let whole = move |piece: &Piece| fills_pad(piece.offset, piece.len, pad_size);
                    let need_tag = pieces.iter().any(|(_, piece, _)| whole(piece));
                    let (content, tag) = read_pad(&io, &writer, pad, min_version, need_tag).await?;
                    let bytes: u64 = pieces.iter().map(|(_, piece, _)| piece.len).sum();
                    let digests = crypto::off_runtime(bytes as usize, move || {
                        let mut digests = Vec::with_capacity(pieces.len());
                        for (at, piece, index) in pieces {
                            // SAFETY: pieces tile the item (offsets are the
                            // running sum of lengths, checked above), and
                            // each piece is written by this task alone.
                            let target = unsafe { out.range(at, piece.len) }?;
                            let from = piece.offset as usize;
                            // A pad stores only the prefix ever written; past it, zeros.
                            let available = content.len().saturating_sub(from).min(target.len());
                            if available > 0 {
                                target[..available]
                                    .copy_from_slice(&content[from..from + available]);
                            }
                            target[available..].fill(0);
                            let digest = match (whole(&piece), tag) {
                                // Opened, so the tag is authentic.
                                (true, Some(tag)) => tag,
                                (true, None) => {
                                    return Err(Error::integrity(format!(
                                        "pad {pad} holds a whole piece but was never written"
                                    )));
                                }
                                // Hashed while the copy is still in the cache.
                                (false, _) => crypto::piece_digest(target),
                            };
                            digests.push((index, digest));
                        }
                        Ok(digests)
                    })
                    .await?;
                    Ok::<_, Error>((bytes, digests))
                });
                async move {
                    match task.await {
                        Ok(outcome) => outcome,
                        Err(error) => std::panic::resume_unwind(error.into_panic()),
                    }
                }
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
        if crypto::item_digest(&digests) != entry.hash {
            return Err(Error::integrity(
                "item content does not match its digest: a pad was modified or rolled back",
            ));
        }
        events.finish(GetEvent::DownloadFinished).await?;
        Ok(out)
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
        let total_bytes = entry.size;
        events
            .emit(|| GetEvent::StartingDownload { total_bytes })
            .await?;
        if inline_digest(&entry.pieces, &data)? != entry.hash {
            return Err(Error::integrity(
                "item content does not match its digest: its index log record was modified",
            ));
        }
        let target = out.as_mut();
        if target.len() != data.len() {
            return Err(Error::invalid("the output buffer is not the item's size"));
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

    /// Returns pieces to free space (after the index released them).
    pub fn free(&self, pieces: &[Piece]) {
        let pad_size = self.io.pad_size;
        let extents: Vec<Extent> = pieces
            .iter()
            .filter(|p| match p.check(pad_size) {
                Ok(()) => true,
                Err(error) => {
                    log::error!("not freeing a released piece: {error}");
                    false
                }
            })
            .map(|p| p.extent(pad_size))
            .collect();
        if let Err(error) = self.map.lock().expect("map lock").free(&extents) {
            log::error!("freeing released space failed: {error}");
        }
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

/// An item's pieces in one pad: (offset in the item, piece, piece index).
type PiecesInPad = Vec<(u64, Piece, usize)>;

/// A part of an item to write: its offset in its pad, its bytes, and the
/// index of its piece in the item.
struct Part {
    offset: u64,
    bytes: Bytes,
    piece: usize,
}

/// Hashes each part's bytes (on the blocking pool if large), returning the
/// parts as the pad writer takes them and the digest of each part's piece.
async fn hash_parts(parts: Vec<Part>) -> (Vec<(u64, Bytes)>, Vec<(usize, Digest)>) {
    let bytes: usize = parts.iter().map(|p| p.bytes.len()).sum();
    crypto::off_runtime(bytes, move || {
        let digests = parts
            .iter()
            .map(|p| (p.piece, crypto::piece_digest(&p.bytes)))
            .collect();
        let parts = parts.into_iter().map(|p| (p.offset, p.bytes)).collect();
        (parts, digests)
    })
    .await
}

/// A put's pending record, handed to the expansion that reserves its pads.
struct PendingAlong {
    make: PendingRecord,
    data_id: u64,
    /// The item's pieces in free space it took at once.
    existing: Vec<Piece>,
    /// The allocation's keeper, set once the record is written.
    kept: Arc<AtomicBool>,
}

/// The pieces of free space an allocation took, in data order.
fn existing_pieces(existing: &[Extent], pad_size: u64) -> Vec<Piece> {
    existing
        .iter()
        .flat_map(|e| split_by_pad(*e, pad_size))
        .map(|(pad, offset, len)| Piece {
            pad,
            offset,
            len,
            version: 0,
        })
        .collect()
}

/// The pieces in new pads (each from its first byte), in data order.
fn new_pieces(ordinals: &[u64], bytes: &[u64]) -> Vec<Piece> {
    ordinals
        .iter()
        .zip(bytes)
        .map(|(&pad, &len)| Piece {
            pad,
            offset: 0,
            len,
            version: 0,
        })
        .collect()
}

/// The committed plaintext of a pad: the writer's copy if it holds one at
/// least as new as `min_version` (and the object's tag is not needed), else
/// the backend's, with its tag.
async fn read_pad(
    io: &PadIo,
    writer: &PadWriter,
    pad: u64,
    min_version: u64,
    need_tag: bool,
) -> Result<(Bytes, Option<AuthTag>)> {
    if !need_tag
        && let Some((version, content)) = writer.cached(pad)
        && version >= min_version
    {
        return Ok((content, None));
    }
    let _permit = io
        .download_permits
        .acquire()
        .await
        .map_err(|_| Error::invalid("store is closed"))?;
    let id = writer.pad_id(pad)?;
    let read = io.read(id, min_version).await?;
    Ok((Bytes::from(read.plaintext), read.tag))
}

/// An item's output buffer while the tasks reading its pads fill it, each
/// its own pieces. Shared by reference count, so the tasks of a cancelled
/// read still write into live memory.
struct ItemBuffer<B> {
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
    fn new(buffer: B, size: u64) -> Result<Arc<Self>> {
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
            return Err(Error::invalid("the output buffer is not the item's size"));
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
    unsafe fn range(&self, at: u64, len: u64) -> Result<&mut [u8]> {
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
    fn into_inner(shared: Arc<Self>) -> B {
        let Ok(this) = Arc::try_unwrap(shared) else {
            unreachable!("every read task has finished")
        };
        this.buffer.into_inner()
    }
}

/// The counters of one put's upload events; each is advanced inside the
/// event sink's delivery lock, so the callback sees them increase.
/// The map and pad table the index describes, and the next data id.
fn build_map(journal: &Journal, writer: &PadWriter, pad_size: u64) -> Result<(MemoryMap, u64)> {
    journal.read(|index| {
        let map = map_from_index(index, pad_size)?;
        for (ordinal, (id, version)) in &index.pads {
            writer.add_pad(*ordinal, *id, *version, false);
        }
        Ok((map, index.next_data_id))
    })
}

/// The memory map an index describes: its pads as space, every item's and
/// pending upload's pieces taken. An index that does not fit (a piece
/// outside its pad, two items in one place) is an integrity error.
pub fn map_from_index(index: &Index, pad_size: u64) -> Result<MemoryMap> {
    let mut map = MemoryMap::new(pad_size);
    for ordinal in index.pads.keys() {
        map.add_pad(*ordinal)
            .map_err(|e| Error::integrity(format!("index pads are inconsistent: {e}")))?;
    }
    let mut extents = Vec::new();
    for piece in index.used_pieces() {
        piece.check(pad_size)?;
        extents.push(piece.extent(pad_size));
    }
    map.take(&extents)
        .map_err(|e| Error::integrity(format!("index places two items in the same space: {e}")))?;
    Ok(map)
}

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

fn writer_gone(_: oneshot::error::RecvError) -> Error {
    Error::invalid("the pad writer stopped")
}

impl Allocation {
    /// Starts no further reservation for this allocation.
    pub fn stop_expanding(&self) {
        if let Some(expansion) = &self.expansion {
            expansion.cancel.store(true, Ordering::Release);
        }
    }

    /// The flag that keeps the space on drop; the store sets it while the
    /// index refers to the space (a pending or committed entry).
    pub fn keeper(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.kept)
    }

    /// Resolves, once every new pad is reserved and recorded, to the item's
    /// pieces in data order (versions still 0). Can be taken once.
    pub fn placement(&mut self) -> impl std::future::Future<Output = Result<Vec<Piece>>> + use<> {
        let pad_size = self.map.lock().expect("map lock").pad_size();
        let mut pieces = existing_pieces(&self.existing, pad_size);
        let new_pad_bytes = self.new_pad_bytes.clone();
        let complete = self.expansion.as_mut().and_then(|e| e.complete.take());
        async move {
            if let Some(complete) = complete {
                let ordinals = complete
                    .await
                    .map_err(|_| Error::Cancelled("pad reservation did not complete".into()))??;
                pieces.extend(new_pieces(&ordinals, &new_pad_bytes));
            }
            Ok(pieces)
        }
    }
}

impl Drop for Allocation {
    fn drop(&mut self) {
        if self.kept.load(Ordering::Acquire) {
            return;
        }
        let mut map = self.map.lock().expect("map lock");
        let pad_size = map.pad_size();
        let mut extents = self.existing.clone();
        if let Some(expansion) = &self.expansion {
            expansion.cancel.store(true, Ordering::Release);
            let mut placed = expansion.placed.lock().expect("placed lock");
            if self.kept.load(Ordering::Acquire) {
                // The expansion recorded the put as pending meanwhile.
                return;
            }
            placed.abandoned = true;
            if placed.pending == PendingClaim::Writing {
                // The expansion is recording the put as pending: it keeps
                // or frees this space once it knows whether that landed.
                placed.deferred = extents;
                return;
            }
            // Before the pads are recorded, the expansion task frees them
            // whole once they are; after, their parts are ours to free.
            if placed.recorded {
                for (ordinal, len) in placed.ordinals.iter().zip(&self.new_pad_bytes) {
                    if let Some(ordinal) = ordinal {
                        extents.push(Extent {
                            start: ordinal * pad_size,
                            len: *len,
                        });
                    }
                }
            }
        }
        if let Err(error) = map.free(&extents) {
            log::error!("giving back an abandoned allocation failed: {error}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::StoreKeys;
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
