//! The memory allocator: the [`MemoryMap`] plus the I/O around it.
//!
//! `allocate` plans space, takes free blocks at once and, when free space is
//! short, expands by reserving new pads concurrently in a task of its own
//! (`expansion.rs`). `write` uploads and commits every pad of an allocation
//! concurrently, and starts on each new pad the moment it is reserved, so a
//! put that needs new pads takes about as long as its slowest phase
//! (`write.rs`). Small items skip that: they are committed in the index log
//! and their pads written back later (`write_back.rs`). `read.rs` reads
//! items back. This file holds the allocator, its map and the
//! [`Allocation`] a put holds until it commits.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::stream::StreamExt;

use crate::error::{Error, Result};
use crate::index::{Index, PadRecord, Piece, Record, SpaceChange};
use crate::journal::{Journal, Refreshed};
use crate::memory_map::{Extent, MapSummary, MemoryMap, split_by_pad};
use crate::pad::PadId;
use crate::pad_io::{PadIo, PadWriter};

mod compact;
pub mod compact_plan;
mod expansion;
mod read;
mod source;
mod write;
mod write_back;
pub use compact::PadUsage;
use expansion::{Expansion, PendingClaim, new_pieces};
pub use read::{ChunkSink, ItemStream, tile};
pub(crate) use read::{piece_bytes, piece_digest};
pub use source::{FileSource, ItemData};
pub use write::inline_digest;
pub use write_back::{IDLE, LOG_FIRST_FRACTION, MEMORY_BOUND, PutUnderWay, write_back_when_idle};

/// A put spanning pads, to be recorded as pending (`Record::Pending`) once
/// its space is known. The expansion that reserves its new pads writes it
/// in the same index write as them: a put needing new pads then waits for
/// one index write before its commit, not two.
pub struct PendingPut {
    pub key: String,
    pub size: u64,
    /// The data's fingerprint (`crypto::fingerprint`), to resume it by.
    pub fingerprint: crate::crypto::Digest,
}

impl PendingPut {
    /// The pending record of the put, given where its data goes.
    pub fn record(self, data_id: u64, pieces: Vec<Piece>) -> Record {
        let now = crate::index::now();
        let entry = crate::index::Entry {
            data_id,
            size: self.size,
            hash: self.fingerprint,
            pieces,
            created: now,
            modified: now,
        };
        Record::Pending {
            key: self.key,
            entry,
        }
    }
}

/// The right to reserve new pads; see [`MemoryAllocator::expansion_turn`].
pub type ExpansionTurn = tokio::sync::OwnedMutexGuard<()>;

pub struct MemoryAllocator {
    io: Arc<PadIo>,
    writer: Arc<PadWriter>,
    journal: Arc<Journal>,
    /// The address space. Held only for in-memory updates, never across I/O.
    /// Built from the index at the first change, not at open: building it
    /// takes every item's pieces, which only a writer needs (see
    /// `ensure_map`). Until then it is empty.
    map: Arc<Mutex<MemoryMap>>,
    /// Whether `map` describes the index (set once built).
    map_built: AtomicBool,
    /// Serialises the first build of `map`.
    map_building: Mutex<()>,
    /// How many times `map` was built from the index (opening and reading
    /// build it never; tests count this).
    map_builds: AtomicU64,
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
    /// then dropping must not free it. Changed under the map's lock.
    kept: Arc<AtomicBool>,
    /// Index writes under way that name this space (see [`Recording`]).
    recordings: Arc<Mutex<Recordings>>,
    /// For an item committed in the log that needed new pads: tells the
    /// expansion that the index write carrying them landed (see
    /// [`Allocation::placement_with_pads`]); dropped unsent, it did not.
    pads_landed: Mutex<Option<tokio::sync::oneshot::Sender<bool>>>,
}

/// New pads an item committed in the log records itself (see
/// [`Allocation::placement_with_pads`]).
pub struct NewPads {
    /// Their record, to write before the item's.
    pub record: Record,
    /// Answered once the expansion knows that write's outcome and freed
    /// what the item leaves of the pads.
    settled: tokio::sync::oneshot::Receiver<Result<Vec<u64>>>,
}

impl NewPads {
    /// The record, and what resolves once the leftover space is free.
    pub fn split(self) -> (Record, impl std::future::Future<Output = ()>) {
        let settled = self.settled;
        (self.record, async move {
            let _ = settled.await;
        })
    }
}

/// The index writes under way that name an allocation's space, and what the
/// allocation gave up meanwhile. Such a write lands or not whatever happens
/// to the caller that asked for it (it runs in a task of its own), so the
/// space given up while it is under way is its to keep or free.
#[derive(Default)]
struct Recordings {
    under_way: usize,
    given_up: Vec<Extent>,
}

/// An index write under way that names an allocation's space; settled by
/// whoever learns whether it landed. Dropped unsettled, it counts as landed:
/// space kept by mistake is found free by the next rebuild, while space
/// freed by mistake would be handed to two items.
pub struct Recording {
    map: Arc<Mutex<MemoryMap>>,
    kept: Arc<AtomicBool>,
    recordings: Arc<Mutex<Recordings>>,
    settled: bool,
}

impl MemoryAllocator {
    /// Builds the allocator over the pads of the index; the map of used
    /// space waits for the first change (`ensure_map`).
    pub fn new(
        io: Arc<PadIo>,
        journal: Arc<Journal>,
        reservation_concurrency: usize,
        download_concurrency: usize,
    ) -> Result<Arc<Self>> {
        let writer = PadWriter::new(Arc::clone(&io));
        journal.read(|index| index.check(io.pad_size))?;
        let next_data_id = build_pad_table(&journal, &writer);
        let allocator = Arc::new(Self {
            map: Arc::new(Mutex::new(MemoryMap::new(io.pad_size))),
            io,
            writer,
            journal,
            map_built: AtomicBool::new(false),
            map_building: Mutex::new(()),
            map_builds: AtomicU64::new(0),
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
    /// changed the store. Only with nothing of this process in flight. A
    /// map not built yet stays so (it is built from the index when needed).
    pub fn rebuild(&self) -> Result<()> {
        let _building = self.map_building.lock().expect("map build lock");
        self.writer.clear();
        let next_data_id = build_pad_table(&self.journal, &self.writer);
        self.next_data_id.fetch_max(next_data_id, Ordering::Relaxed);
        if self.map_built.load(Ordering::Acquire) {
            self.build_map()?;
        }
        Ok(())
    }

    /// Follows what catching up with other writers changed in the index:
    /// the pad table is rebuilt (a few entries per pad) and the map, if
    /// built, takes the replayed records' changes to space one by one, so a
    /// writer taking over from another pays for what that one wrote, not
    /// for every item in the store. Anything else, or a change that does not
    /// fit the map, rebuilds it from the index. Only with nothing of this
    /// process in flight.
    pub fn follow(&self, refreshed: Refreshed) -> Result<()> {
        let changes = match refreshed {
            Refreshed::Unchanged => return Ok(()),
            Refreshed::Reloaded => return self.rebuild(),
            Refreshed::Replayed(changes) => changes,
        };
        let _building = self.map_building.lock().expect("map build lock");
        self.writer.clear();
        let next_data_id = build_pad_table(&self.journal, &self.writer);
        self.next_data_id.fetch_max(next_data_id, Ordering::Relaxed);
        if !self.map_built.load(Ordering::Acquire) {
            return Ok(());
        }
        let followed = {
            let mut map = self.map.lock().expect("map lock");
            changes
                .iter()
                .try_for_each(|change| follow_change(&mut map, change, self.io.pad_size))
        };
        if followed.is_err() {
            // The map and the index disagree: the index is the truth.
            return self.build_map();
        }
        #[cfg(debug_assertions)]
        self.check_map_follows_index()?;
        Ok(())
    }

    /// Debug builds (the test suites) check every followed map against the
    /// one the index describes.
    #[cfg(debug_assertions)]
    fn check_map_follows_index(&self) -> Result<()> {
        let built = self
            .journal
            .read(|index| map_from_index(index, self.io.pad_size))?;
        let map = self.map.lock().expect("map lock");
        let fenced = map.fenced_pads();
        let mut expected = built;
        if !fenced.is_empty() {
            expected
                .fence(&fenced)
                .map_err(|e| Error::internal(format!("cannot fence pads off again: {e}")))?;
        }
        assert!(
            *map == expected,
            "the map followed from replayed records differs from the index's"
        );
        Ok(())
    }

    /// Builds the map from the index unless it is built. The writer gate
    /// calls it on entry, with nothing of this process in flight: a release
    /// applied to the index but not yet freed would otherwise be free in the
    /// new map and then freed twice. Reads never need the map, so opening
    /// and fetching cost nothing per key; the first change pays once.
    pub fn ensure_map(&self) -> Result<()> {
        if self.map_built.load(Ordering::Acquire) {
            return Ok(());
        }
        let _building = self.map_building.lock().expect("map build lock");
        if self.map_built.load(Ordering::Acquire) {
            return Ok(());
        }
        self.build_map()
    }

    /// Replaces the map with the one the index describes. Call holding
    /// `map_building`.
    fn build_map(&self) -> Result<()> {
        // A writer changes many entries: each would read a cache block.
        self.journal.load_all_items()?;
        let (map, next_data_id) = self.journal.read(|index| {
            map_from_index(index, self.io.pad_size).map(|map| (map, index.next_data_id))
        })?;
        let mut current = self.map.lock().expect("map lock");
        // Pads a compaction is emptying stay closed to allocation.
        let fenced = current.fenced_pads();
        *current = map;
        if !fenced.is_empty() {
            current
                .fence(&fenced)
                .map_err(|e| Error::internal(format!("cannot fence pads off again: {e}")))?;
        }
        drop(current);
        self.next_data_id.fetch_max(next_data_id, Ordering::Relaxed);
        self.map_builds.fetch_add(1, Ordering::Relaxed);
        self.map_built.store(true, Ordering::Release);
        Ok(())
    }

    /// How many times the map was built from the index.
    pub fn map_builds(&self) -> u64 {
        self.map_builds.load(Ordering::Relaxed)
    }

    /// Resolves once no pad upload of this store is in flight.
    pub fn writer_idle(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.writer.idle()
    }

    pub fn pad_size(&self) -> u64 {
        self.io.pad_size
    }

    /// The map's figures; outside the writer gate, call `ensure_map` first.
    pub fn summary(&self) -> MapSummary {
        self.map.lock().expect("map lock").summary()
    }

    /// `None` if `size` fits in free space, else the number of new pads
    /// needed; outside the writer gate, call `ensure_map` first.
    pub fn check_allocation_possible(&self, size: u64) -> Option<u64> {
        let needed = self.map.lock().expect("map lock").new_pads_needed(size);
        (needed > 0).then_some(needed)
    }

    /// Removes partial writes left by crashed writers, and adopts pads
    /// reserved but never recorded (a crash in between). Call holding the
    /// writer lock, so that no writer is reserving meanwhile. The map of
    /// used space is built only if there are any.
    async fn adopt_stray_pads(&self) -> Result<()> {
        let backend = &self.io.backend;
        let removed = backend.remove_partial_writes().await?;
        if removed > 0 {
            log::info!("removed {removed} partial writes left by an interrupted process");
        }
        let names = self.io.retry.run(|_| backend.list(PadId::PREFIX)).await?;
        let known: std::collections::HashSet<PadId> = self
            .journal
            .read(|index| index.pads.values().map(|p| p.0).collect());
        let mut orphans: Vec<PadId> = names
            .iter()
            .filter_map(|n| PadId::from_object_name(n))
            .filter(|id| !known.contains(id))
            .collect();
        orphans.sort();
        orphans.dedup(); // a pad whose versions alternate has two objects
        self.adopt_pads(orphans).await
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
        self.ensure_map()?;
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

/// Fills the pad table from the index (a few entries per pad, never per
/// item); returns the next data id.
fn build_pad_table(journal: &Journal, writer: &PadWriter) -> u64 {
    journal.read(|index| {
        for (ordinal, (id, version)) in &index.pads {
            writer.add_pad(*ordinal, *id, *version, false);
        }
        index.next_data_id
    })
}

/// Applies one replayed record's change to space to `map`: pads added,
/// released pieces freed, pads removed, and the pieces its entry uses taken
/// where still free (the rest were used already: a resumed upload's, pieces
/// a compaction left in place). An error means the map does not fit the
/// index.
fn follow_change(map: &mut MemoryMap, change: &SpaceChange, pad_size: u64) -> Result<(), String> {
    for &ordinal in &change.pads_added {
        if !map.has_pad(ordinal) {
            map.add_pad(ordinal).map_err(|e| e.to_string())?;
        }
    }
    let extents = |pieces: &[Piece]| -> Result<Vec<Extent>, String> {
        pieces
            .iter()
            .map(|piece| {
                piece.check(pad_size).map_err(|e| e.to_string())?;
                Ok(piece.extent(pad_size))
            })
            .collect()
    };
    map.free(&extents(&change.released)?)
        .map_err(|e| e.to_string())?;
    if !change.pads_removed.is_empty() {
        map.remove_pads(&change.pads_removed)
            .map_err(|e| e.to_string())?;
    }
    let mut taken = Vec::new();
    for extent in extents(&change.used)? {
        if map.is_free(extent) {
            taken.push(extent);
        } else if !map.is_used(extent) {
            return Err(format!(
                "a replayed piece lies partly in free space: {extent:?}"
            ));
        }
    }
    map.take(&taken).map_err(|e| e.to_string())
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
    let mut failed = None;
    index.for_each_used_piece(|piece| match piece.check(pad_size) {
        Ok(()) => extents.push(piece.extent(pad_size)),
        Err(error) => failed = failed.take().or(Some(error)),
    })?;
    if let Some(error) = failed {
        return Err(error);
    }
    // In address order, each take carves the front of a pad's free run: in
    // the index's hash order each split a run in the middle, inserting into
    // the pad's free list (a writer's first change on a large store).
    extents.sort_unstable_by_key(|extent| extent.start);
    map.take(&extents)
        .map_err(|e| Error::integrity(format!("index places two items in the same space: {e}")))?;
    Ok(map)
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

    /// Keeps the space on drop: the index refers to it.
    pub fn keep(&self) {
        let _map = self.map.lock().expect("map lock");
        self.kept.store(true, Ordering::Release);
        if let Some(landed) = self.pads_landed.lock().expect("pads landed lock").take() {
            let _ = landed.send(true);
        }
    }

    /// The item's pieces, as [`Allocation::placement`], and, for an item
    /// committed in the log, its new pads: their record, for the caller to
    /// write first in its own index write (then [`Allocation::keep`] tells
    /// the expansion it landed; dropping the allocation, that it did not,
    /// and the expansion records them itself).
    pub async fn placement_with_pads(&mut self) -> Result<(Option<NewPads>, Vec<Piece>)> {
        let expansion = self.expansion.as_mut();
        let Some((along, complete)) =
            expansion.and_then(|e| Some((e.pads_along.take()?, e.complete.take()?)))
        else {
            return Ok((None, self.placement().await?));
        };
        let Ok((records, ordinals)) = along.await else {
            // The reservations failed: the expansion says how.
            complete
                .await
                .map_err(|_| Error::Cancelled("pad reservation did not complete".into()))??;
            return Err(Error::Cancelled("pad reservation did not complete".into()));
        };
        let pad_size = self.map.lock().expect("map lock").pad_size();
        let mut pieces = existing_pieces(&self.existing, pad_size);
        pieces.extend(new_pieces(&ordinals, &self.new_pad_bytes));
        let new_pads = NewPads {
            record: Record::PadsAdded(records),
            settled: complete,
        };
        Ok((Some(new_pads), pieces))
    }

    /// Notes an index write naming this space: until it is settled, dropping
    /// the allocation leaves the space to it (see [`Recording`]).
    pub fn recording(&self) -> Recording {
        self.recordings.lock().expect("recordings lock").under_way += 1;
        Recording {
            map: Arc::clone(&self.map),
            kept: Arc::clone(&self.kept),
            recordings: Arc::clone(&self.recordings),
            settled: false,
        }
    }

    /// Whether the item needs new pads (the free space could not hold it).
    pub fn grows(&self) -> bool {
        !self.new_pad_bytes.is_empty()
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

impl Recording {
    /// Whether the write landed (or may have: a write in doubt keeps the
    /// space until the journal knows, and the next rebuild frees it if not).
    pub fn settle(mut self, landed: bool) {
        self.settled = true;
        self.apply(landed);
    }

    fn apply(&self, landed: bool) {
        let mut map = self.map.lock().expect("map lock");
        if landed {
            self.kept.store(true, Ordering::Release);
        }
        let mut recordings = self.recordings.lock().expect("recordings lock");
        recordings.under_way -= 1;
        if self.kept.load(Ordering::Acquire) {
            recordings.given_up.clear();
        } else if recordings.under_way == 0 {
            let given_up = std::mem::take(&mut recordings.given_up);
            if let Err(error) = map.free(&given_up) {
                log::error!("giving back an abandoned allocation failed: {error}");
            }
        }
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        if !self.settled {
            self.apply(true);
        }
    }
}

impl Drop for Allocation {
    fn drop(&mut self) {
        let mut map = self.map.lock().expect("map lock");
        if self.kept.load(Ordering::Acquire) {
            return;
        }
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
        let mut recordings = self.recordings.lock().expect("recordings lock");
        if recordings.under_way > 0 {
            // An index write naming this space may still land: it decides.
            recordings.given_up.extend(extents);
            return;
        }
        if let Err(error) = map.free(&extents) {
            log::error!("giving back an abandoned allocation failed: {error}");
        }
    }
}

impl crate::writer_gate::IndexFollower for MemoryAllocator {
    fn follow(&self, refreshed: Refreshed) -> Result<()> {
        MemoryAllocator::follow(self, refreshed)
    }

    fn ensure_map(&self) -> Result<()> {
        MemoryAllocator::ensure_map(self)
    }

    fn writer_idle(&self) -> futures::future::BoxFuture<'static, ()> {
        Box::pin(MemoryAllocator::writer_idle(self))
    }

    fn tidy_after_crashes(&self) -> futures::future::BoxFuture<'_, Result<()>> {
        Box::pin(self.adopt_stray_pads())
    }
}
