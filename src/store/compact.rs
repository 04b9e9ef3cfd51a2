//! Compaction: moves the live items out of the least-used pads into the
//! free space of the others, then releases the pads so emptied. It never
//! reserves a pad.
//!
//! Crash safety comes from the order of each move: the new copy is written
//! to free space (or, for a small item, committed in the log like any small
//! put), then the item's new place is recorded, and only then is its old
//! place freed. A crash before the record leaves the item where it was, and
//! the new copy in space the index calls free. Emptied pads are released
//! only once the index records that nothing lives in them
//! (`Record::PadsRemoved`), and their objects deleted after that record is
//! durable; a crash in between leaves objects the index does not know,
//! which the next open adopts as free space.
//!
//! Where deleting a pad refunds nothing (a network where a pad once paid
//! for stays paid for, `Capabilities::deleting_pads_refunds`), the emptied
//! pads are kept as free space: the moves still gather the live data, and
//! the free space into whole pads.
//!
//! Which pads to empty, and where each byte leaving them goes, is planned
//! by `allocator::compact_plan` from the map: as many pads as the free space
//! of the others can absorb, the least-used; a small item moves whole (in
//! the log, as a small put), a large item only its pieces in those pads,
//! each cut over as many free runs as it needs. A cut piece changes the
//! item's pieces, so its digest (the digest of its pieces' digests) is
//! recomputed from the digests of the pieces left in place (read with the
//! item) and of the new ones. While pads are emptied they are fenced off:
//! their free space, and the space each move out of them frees, is held,
//! so no later move of the pass (nor any concurrent put) lands in them. Up
//! to [`MAX_PASSES`] passes run, each on the pads the previous one left.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;

use super::commit::Holds;
use super::{BusyKey, Store};
use crate::allocator::compact_plan::{self, PlanInput};
use crate::allocator::{Allocation, MemoryAllocator, inline_digest};
use crate::crypto;
use crate::error::{Error, Result};
use crate::events::{Callback, EventSink, OperationProgress, PutEvent};
use crate::index::{Entry, Index, Piece, Record};
use crate::memory_map::Extent;
use crate::pad::fills_pad;
use crate::pad_store::BackendError;
use crate::writer_gate::WriterGuard;

/// What [`Store::compact`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactReport {
    pub pads_before: u64,
    pub pads_after: u64,
    /// Bytes copied to new places: a small item's whole, a large item's
    /// pieces that left the emptied pads.
    pub bytes_moved: u64,
    pub items_moved: u64,
    /// Pads emptied and deleted (0 where deleting refunds nothing).
    pub pads_released: u64,
}

/// The pads that compaction leaves as they are (holding bytes only in the
/// log, or an interrupted upload's pieces), and the keys of the items
/// (`entries`: the index's, all in memory) in each other pad.
fn keys_by_pad<'a>(
    index: &Index,
    entries: &HashMap<&'a String, &Entry>,
) -> (HashSet<u64>, HashMap<u64, Vec<&'a String>>) {
    let mut pinned: HashSet<u64> = index.dirty_pads.keys().copied().collect();
    pinned.extend(
        index
            .pending
            .values()
            .flat_map(|e| e.pieces.iter().map(|p| p.pad)),
    );
    let mut by_pad: HashMap<u64, Vec<&String>> = HashMap::new();
    for (&key, entry) in entries {
        let stays = index.inline.contains_key(&entry.data_id) || index.pending.contains_key(key);
        for piece in &entry.pieces {
            if stays {
                pinned.insert(piece.pad);
            } else {
                by_pad.entry(piece.pad).or_default().push(key);
            }
        }
    }
    for keys in by_pad.values_mut() {
        keys.sort_unstable();
        keys.dedup();
    }
    (pinned, by_pad)
}

/// Most passes of one compaction (each empties at least one pad, or is
/// the last).
const MAX_PASSES: usize = 1 << 20;
/// Most pads one pass empties: a pass holds the writer lock, so writers of
/// other processes wait at most one pass.
const MAX_PADS_PER_PASS: usize = 16;
/// Small items moved per log write.
const MOVES_PER_RECORD_BATCH: usize = 64;
/// Bytes of moved small items held in the log before they are written back.
const LOG_BYTES_BEFORE_WRITE_BACK: u64 = 32 << 20;

/// The pads one pass empties and the items it moves out of them.
struct PassPlan {
    pads: Vec<u64>,
    items: Vec<ItemMove>,
}

/// One item a pass moves, and where to.
struct ItemMove {
    key: String,
    entry: Entry,
    places: Places,
}

/// Where a moved item's bytes go (free extents, each within one pad, in
/// data order).
enum Places {
    /// A small item, whole.
    Whole(Vec<Extent>),
    /// Some pieces of a large item, by index in the item.
    Pieces(Vec<(usize, Vec<Extent>)>),
}

/// What must leave each candidate pad, as the planner sees it: units (a
/// small item whole, a large item's piece) and what each unit is.
#[derive(Default)]
struct Units<'a> {
    input: PlanInput,
    /// Per unit: the item's key and, for a large item, the piece's index.
    of: Vec<(&'a String, Option<usize>)>,
    /// The unit of each small item.
    small: HashMap<&'a String, usize>,
}

impl<'a> Units<'a> {
    fn add(&mut self, ordinal: u64, key: &'a String, piece: Option<usize>, len: u64) {
        let unit = match piece {
            None if self.small.contains_key(key) => self.small[key],
            _ => {
                self.input.units.push(len);
                self.of.push((key, piece));
                if piece.is_none() {
                    self.small.insert(key, self.of.len() - 1);
                }
                self.of.len() - 1
            }
        };
        self.input
            .units_by_pad
            .entry(ordinal)
            .or_default()
            .push(unit);
    }
}

/// Small items moved but not yet recorded, with what each holds until then.
#[derive(Default)]
struct Batch<'a> {
    records: Vec<Record>,
    /// Per item: its key's claim, its new places, its size.
    holds: Vec<(BusyKey<'a>, Vec<Allocation>, u64)>,
}

/// Pads fenced off while a pass empties them (see the module header),
/// opened again however the pass ends: a compaction dropped mid-pass (a
/// cancelled `compact_async`) leaves no space held.
struct Fenced<'a> {
    allocator: &'a MemoryAllocator,
    pads: Vec<u64>,
    open: bool,
}

impl<'a> Fenced<'a> {
    fn new(allocator: &'a MemoryAllocator, pads: Vec<u64>) -> Self {
        allocator.fence(&pads);
        Self {
            allocator,
            pads,
            open: false,
        }
    }

    /// Opens the pads; returns those taken out of the map, wholly free (if
    /// `remove`), and all of them.
    fn open(mut self, remove: bool) -> (Vec<u64>, Vec<u64>) {
        self.open = true;
        let pads = std::mem::take(&mut self.pads);
        (self.allocator.unfence(&pads, remove), pads)
    }
}

impl Drop for Fenced<'_> {
    fn drop(&mut self) {
        if !self.open {
            self.allocator.unfence(&self.pads, false);
        }
    }
}

impl Store {
    /// Compacts the store (see the module header), emitting
    /// `OperationProgress` (items moved of items to move) to `callback`.
    pub async fn compact(
        &self,
        callback: Option<Callback<OperationProgress>>,
    ) -> Result<CompactReport> {
        self.check_open()?;
        let events = EventSink::new(callback);
        let result = self.compact_inner(&events).await;
        events.close();
        result
    }

    async fn compact_inner(&self, events: &EventSink<OperationProgress>) -> Result<CompactReport> {
        let _maintenance = self.inner.maintenance.lock().await;
        // Every item in its pads first: a pad's fill is then what the map
        // says, and every move is of bytes in pads.
        self.write_back_everything().await?;
        let gate = &self.inner.gate;
        let allocator = &self.inner.allocator;
        let remove = self.inner.backend.capabilities().deleting_pads_refunds;
        let mut writing = Some(gate.enter().await?);
        allocator.record_stray_pads().await?;
        let pads_before = allocator.summary().total_pads;
        let mut report = CompactReport {
            pads_before,
            pads_after: pads_before,
            ..CompactReport::default()
        };
        let mut progress = (0u64, 0u64);
        for _ in 0..MAX_PASSES {
            // Each pass holds the writer lock (and catches up with other
            // writers as it takes it); between passes it is left free.
            let guard = match writing.take() {
                Some(guard) => guard,
                None => gate.enter().await?,
            };
            let emptied = self
                .compact_pass(remove, &guard, events, &mut report, &mut progress)
                .await;
            report.pads_after = allocator.summary().total_pads;
            drop(guard);
            gate.yield_lock().await;
            if emptied? == 0 {
                break;
            }
        }
        events
            .finish(OperationProgress {
                operation: "compact",
                done: progress.0,
                total: progress.1,
            })
            .await?;
        Ok(report)
    }

    /// One pass: empties at most [`MAX_PADS_PER_PASS`] pads; returns how
    /// many it emptied.
    async fn compact_pass(
        &self,
        remove: bool,
        writing: &WriterGuard,
        events: &EventSink<OperationProgress>,
        report: &mut CompactReport,
        progress: &mut (u64, u64),
    ) -> Result<u64> {
        let allocator = &self.inner.allocator;
        let plan = self.plan_pass(remove)?;
        if plan.pads.is_empty() {
            return Ok(0);
        }
        progress.1 += plan.items.len() as u64;
        let fenced = Fenced::new(allocator, plan.pads);
        let moved = self
            .move_items(plan.items, writing, events, report, progress)
            .await;
        let written_back = self.write_back_everything().await;
        let (released, pads) = fenced.open(remove);
        let freed = self.release_pads(released).await;
        moved?;
        written_back?;
        let freed = freed?;
        report.pads_released += freed;
        if remove {
            return Ok(freed);
        }
        let usage = allocator.pad_usage();
        Ok(usage
            .pads
            .iter()
            .filter(|(ordinal, used)| *used == 0 && pads.contains(ordinal))
            .count() as u64)
    }

    /// Chooses the pads one pass empties and where what leaves them goes
    /// (`allocator::compact_plan`).
    fn plan_pass(&self, remove: bool) -> Result<PassPlan> {
        let allocator = &self.inner.allocator;
        let usage = allocator.pad_usage();
        let pad_size = usage.pad_size;
        self.inner.journal.read(|index| {
            // Building the map (pad_usage) moved every entry into memory.
            let entries: HashMap<&String, &Entry> = index.items.in_memory()?.collect();
            let (pinned, by_pad) = keys_by_pad(index, &entries);
            let mut units = Units {
                input: PlanInput {
                    pad_size,
                    pads: usage.pads.clone(),
                    free: usage.free_runs.clone(),
                    ..PlanInput::default()
                },
                ..Units::default()
            };
            for &(ordinal, used) in &usage.pads {
                if pinned.contains(&ordinal) || used >= pad_size || !(remove || used > 0) {
                    continue;
                }
                units.input.candidates.insert(ordinal);
                for &key in by_pad.get(&ordinal).into_iter().flatten() {
                    let entry = entries[key];
                    if allocator.small(entry.size) {
                        units.add(ordinal, key, None, entry.size);
                        continue;
                    }
                    for (at, piece) in entry.pieces.iter().enumerate() {
                        if piece.pad == ordinal {
                            units.add(ordinal, key, Some(at), piece.len);
                        }
                    }
                }
            }
            let plan = compact_plan::plan(&units.input).first_pads(MAX_PADS_PER_PASS, &units.input);
            let mut moving: BTreeMap<&String, Places> = BTreeMap::new();
            for (unit, extents) in plan.moves {
                let (key, piece) = units.of[unit];
                match piece {
                    None => {
                        moving.insert(key, Places::Whole(extents));
                    }
                    Some(at) => {
                        let places = moving.entry(key).or_insert(Places::Pieces(Vec::new()));
                        if let Places::Pieces(pieces) = places {
                            pieces.push((at, extents));
                        }
                    }
                }
            }
            let mut items: Vec<ItemMove> = moving
                .into_iter()
                .map(|(key, places)| ItemMove {
                    key: key.clone(),
                    entry: entries[key].clone(),
                    places,
                })
                .collect();
            // The largest first (the order is only for progress: every
            // place is planned).
            items.sort_by_key(|item| std::cmp::Reverse(item.entry.size));
            Ok(PassPlan {
                pads: plan.pads,
                items,
            })
        })
    }

    /// Moves each item to the free space planned for it (outside the
    /// fenced pads) and records its new place.
    async fn move_items(
        &self,
        items: Vec<ItemMove>,
        writing: &WriterGuard,
        events: &EventSink<OperationProgress>,
        report: &mut CompactReport,
        progress: &mut (u64, u64),
    ) -> Result<()> {
        let silent = Arc::new(EventSink::<PutEvent>::silent());
        let mut batch = Batch::default();
        for ItemMove { key, entry, places } in items {
            progress.0 += 1;
            let (done, total) = *progress;
            events
                .emit(|| OperationProgress {
                    operation: "compact",
                    done,
                    total,
                })
                .await?;
            // A key being stored or removed right now is left alone.
            let Ok(busy) = self.claim_key(&key) else {
                continue;
            };
            let unchanged = self
                .inner
                .journal
                .read_items(|index| {
                    Ok(index.items.get(&key)?.as_ref() == Some(&entry)
                        && !index.pending.contains_key(&key)
                        && !index.inline.contains_key(&entry.data_id))
                })
                .await?;
            if !unchanged {
                continue;
            }
            match places {
                // Small items' moves are recorded together, as small puts.
                Places::Whole(extents) => {
                    if let Some(one) = self.move_small(busy, key, entry, &extents).await? {
                        batch.records.extend(one.records);
                        batch.holds.extend(one.holds);
                    }
                    if batch.records.len() >= MOVES_PER_RECORD_BATCH {
                        self.commit_moves(std::mem::take(&mut batch), writing, report)
                            .await?;
                    }
                }
                Places::Pieces(pieces) => {
                    if let Some(one) = self.move_pieces(busy, key, entry, pieces, &silent).await? {
                        self.commit_moves(one, writing, report).await?;
                    }
                }
            }
        }
        self.commit_moves(batch, writing, report).await
    }

    /// Moves a small item whole to `extents`: reads it and places it anew,
    /// to be recorded with its bytes, as a small put is (but under its own
    /// data id). `None` if it is left where it is (unreadable, or its new
    /// place was taken meanwhile).
    async fn move_small<'a>(
        &'a self,
        busy: BusyKey<'a>,
        key: String,
        entry: Entry,
        extents: &[Extent],
    ) -> Result<Option<Batch<'a>>> {
        let allocator = &self.inner.allocator;
        let size = entry.size;
        let buffer = vec![0u8; super::usize_size(size)?];
        let data = match allocator.read(&entry, buffer, &EventSink::silent()).await {
            Ok(data) => Bytes::from(data),
            Err(Error::Integrity(_) | Error::Backend(BackendError::NotFound(_))) => {
                log::warn!("compaction left {key:?} in place: it does not read back intact");
                return Ok(None);
            }
            Err(error) => return Err(error),
        };
        let Some(mut allocation) = allocator.allocate_at(extents) else {
            return Ok(None);
        };
        let pieces = allocation.placement().await?;
        let hash = inline_digest(&pieces, &data)?;
        // The item keeps its data id, as a large item's move does: a data
        // id names one item's content, and a reader that opened the item
        // tells a move from a replacement by it. Write-back records name
        // items by data id too, which stays sound: the item was written
        // back (not in the log) before it moved, so every write-back of
        // its old place is applied, and `commit_moves` logs any still
        // waiting before the move, so no process applies one to its new
        // place.
        let entry = Entry {
            pieces,
            hash,
            ..entry
        };
        Ok(Some(Batch {
            records: vec![Record::PutInline { key, entry, data }],
            holds: vec![(busy, vec![allocation], size)],
        }))
    }

    /// Moves the pieces `places` names of a large item, each to its planned
    /// extents, where it may be cut into several pieces. The item keeps its
    /// data id; its digest (the digest of its pieces' digests) is
    /// recomputed if a piece was cut (see [`Self::recut_digest`]). `None` if it
    /// is left where it is.
    async fn move_pieces<'a>(
        &'a self,
        busy: BusyKey<'a>,
        key: String,
        entry: Entry,
        places: Vec<(usize, Vec<Extent>)>,
        silent: &Arc<EventSink<PutEvent>>,
    ) -> Result<Option<Batch<'a>>> {
        let allocator = &self.inner.allocator;
        let mut pieces: Vec<Vec<Piece>> = entry.pieces.iter().map(|p| vec![*p]).collect();
        let mut moved: HashMap<usize, Bytes> = HashMap::new();
        let mut placed = Vec::with_capacity(places.len());
        for (at, extents) in places {
            let Some(piece) = entry.pieces.get(at) else {
                continue;
            };
            let bytes = match allocator.read_piece(piece).await {
                Ok(bytes) => bytes,
                Err(Error::Integrity(_) | Error::Backend(BackendError::NotFound(_))) => {
                    log::warn!("compaction left {key:?} in place: its pad does not read back");
                    return Ok(None);
                }
                Err(error) => return Err(error),
            };
            // Dropping the allocations made so far frees them.
            let Some(mut allocation) = allocator.allocate_at(&extents) else {
                return Ok(None);
            };
            let (written, _) = allocator.write(&mut allocation, &bytes, silent).await?;
            pieces[at] = written;
            moved.insert(at, bytes);
            placed.push(allocation);
        }
        let bytes_moved = moved.values().map(|b| b.len() as u64).sum();
        let hash = if pieces.iter().all(|cut| cut.len() == 1) {
            // Each moved piece is still one piece, named by its bytes.
            entry.hash
        } else {
            match self.recut_digest(&entry, &pieces, &moved).await {
                Ok(hash) => hash,
                Err(Error::Integrity(_) | Error::Backend(BackendError::NotFound(_))) => {
                    log::warn!("compaction left {key:?} in place: it does not read back intact");
                    return Ok(None);
                }
                Err(error) => return Err(error),
            }
        };
        let pieces: Vec<Piece> = pieces.into_iter().flatten().collect();
        let record = Record::Put {
            key,
            entry: Entry {
                pieces,
                hash,
                ..entry
            },
        };
        Ok(Some(Batch {
            records: vec![record],
            holds: vec![(busy, placed, bytes_moved)],
        }))
    }

    /// The digest of `entry` once its pieces are cut as `pieces` (per old
    /// piece, the pieces it became), `moved` holding the bytes of each old
    /// piece that moved: the digests of the pieces left in place are read
    /// (with the item, whose old digest is checked on the way), those of
    /// the new pieces hashed. A moved piece never fills its pad (its old
    /// pad was not full, and it is no longer), so it is named by its bytes.
    async fn recut_digest(
        &self,
        entry: &Entry,
        pieces: &[Vec<Piece>],
        moved: &HashMap<usize, Bytes>,
    ) -> Result<crate::crypto::Digest> {
        let allocator = &self.inner.allocator;
        let buffer = vec![0u8; super::usize_size(entry.size)?];
        let (_, old) = allocator
            .read_with_digests(entry, buffer, &EventSink::silent())
            .await?;
        let pad_size = allocator.pad_size();
        let mut digests = Vec::with_capacity(pieces.iter().map(Vec::len).sum());
        for (at, cut) in pieces.iter().enumerate() {
            let Some(bytes) = moved.get(&at) else {
                digests.push(old[at]);
                continue;
            };
            let mut from = 0usize;
            for piece in cut {
                if fills_pad(piece.offset, piece.len, pad_size) {
                    return Err(Error::internal("a moved piece would fill its pad"));
                }
                let to = from + super::usize_size(piece.len)?;
                digests.push(crypto::piece_digest(&bytes[from..to]));
                from = to;
            }
        }
        Ok(crypto::item_digest(&digests))
    }

    /// Records moved items' new places, then frees their old ones (see
    /// `commit.rs`: the pieces a large item leaves in place are not
    /// released by its record).
    async fn commit_moves(
        &self,
        batch: Batch<'_>,
        writing: &WriterGuard,
        report: &mut CompactReport,
    ) -> Result<()> {
        if batch.records.is_empty() {
            return Ok(());
        }
        // A moved small item keeps its data id (see `move_small`), and the
        // log carries write-back records after a write's other records: so
        // any still waiting (one may name this item's old place, in a pad
        // that it now moves into) go first, never after its move.
        let journal = &self.inner.journal;
        if journal.has_deferred() {
            journal.write_deferred().await?;
        }
        let mut holds = Holds::default();
        let mut moved = (0, 0);
        let mut claims = Vec::with_capacity(batch.holds.len());
        for (busy, placed, size) in batch.holds {
            holds.allocations.extend(placed);
            moved = (moved.0 + size, moved.1 + 1);
            claims.push(busy);
        }
        self.commit_records(batch.records, holds, writing).await?;
        drop(claims);
        report.bytes_moved += moved.0;
        report.items_moved += moved.1;
        if self.inner.allocator.log_only_bytes() > LOG_BYTES_BEFORE_WRITE_BACK {
            self.write_back_everything().await?;
        }
        Ok(())
    }

    /// Records that the emptied pads `ordinals` left the store, then deletes
    /// their objects; returns how many were released.
    async fn release_pads(&self, ordinals: Vec<u64>) -> Result<u64> {
        if ordinals.is_empty() {
            return Ok(0);
        }
        let (allocator, journal) = (&self.inner.allocator, &self.inner.journal);
        if let Err(error) = journal
            .append(vec![Record::PadsRemoved(ordinals.clone())])
            .await
        {
            if !journal.in_doubt() {
                allocator.restore_pads(&ordinals)?;
            }
            return Err(error);
        }
        let retry = allocator.pad_io().retry;
        let alternating = !self.inner.backend.capabilities().overwrites_atomic;
        for id in allocator.forget_pads(&ordinals) {
            let names = if alternating {
                vec![id.object_name(), id.odd_object_name()]
            } else {
                vec![id.object_name()]
            };
            for name in names {
                match retry.run(|_| self.inner.backend.delete(&name)).await {
                    Ok(()) | Err(BackendError::NotFound(_)) => {}
                    // Recorded as removed: the next open adopts it as free space.
                    Err(error) => log::warn!("could not delete the emptied pad {name}: {error}"),
                }
            }
        }
        Ok(ordinals.len() as u64)
    }
}
