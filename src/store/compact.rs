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
//! Which pads to empty: the least-used first, each if what must leave it
//! (its pieces of large items, each unsplit, which keeps the item's digest;
//! small items whole) fits, piece by piece, best fit, into the free runs of
//! pads that stay; a pad planned to receive pieces is not emptied. While
//! pads are emptied they are fenced off: their free space, and the space
//! each move out of them frees, is held, so no later move of the pass (nor
//! any concurrent put) lands in them. Up to [`MAX_PASSES`] passes run, each
//! on the pads the previous one left.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;

use super::commit::Holds;
use super::{BusyKey, Store};
use crate::allocator::{Allocation, inline_digest};
use crate::error::{Error, Result};
use crate::events::{Callback, EventSink, OperationProgress, PutEvent};
use crate::index::{Entry, Index, Record};
use crate::pad_store::BackendError;
use crate::writer_gate::WriterGuard;

/// What [`Store::compact`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactReport {
    pub pads_before: u64,
    pub pads_after: u64,
    /// Bytes of the items moved.
    pub bytes_moved: u64,
    pub items_moved: u64,
    /// Pads emptied and deleted (0 where deleting refunds nothing).
    pub pads_released: u64,
}

/// Takes the free runs of pad `ordinal` out of a pool of runs by length.
fn remove_pad_runs(pool: &mut BTreeMap<u64, Vec<u64>>, ordinal: u64, runs: &[(u64, u64)]) {
    for &(pad, len) in runs.iter().filter(|(pad, _)| *pad == ordinal) {
        if let Some(pads) = pool.get_mut(&len) {
            if let Some(at) = pads.iter().position(|p| *p == pad) {
                pads.swap_remove(at);
            }
            if pads.is_empty() {
                pool.remove(&len);
            }
        }
    }
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

/// Places pieces of `sizes` (largest first) each in one free run of `pool`
/// (run length -> pads with a run of it), taking the shortest run that
/// holds it; returns the pad each went to, or `None` if one does not fit
/// (then `pool` is left part-used: the caller tries on a copy).
fn place_in_runs(pool: &mut BTreeMap<u64, Vec<u64>>, mut sizes: Vec<u64>) -> Option<Vec<u64>> {
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    let mut received = Vec::with_capacity(sizes.len());
    for size in sizes {
        let (&run, pads_with_run) = pool.range_mut(size..).next()?;
        let pad = pads_with_run.pop().expect("no empty lists are kept");
        if pads_with_run.is_empty() {
            pool.remove(&run);
        }
        if run > size {
            pool.entry(run - size).or_default().push(pad);
        }
        received.push(pad);
    }
    Some(received)
}

/// Most passes of one compaction.
const MAX_PASSES: usize = 8;
/// Small items moved per log write.
const MOVES_PER_RECORD_BATCH: usize = 64;
/// Bytes of moved small items held in the log before they are written back.
const LOG_BYTES_BEFORE_WRITE_BACK: u64 = 32 << 20;

/// The pads one pass empties and the items it moves out of them.
struct PassPlan {
    pads: Vec<u64>,
    items: Vec<(String, Entry)>,
}

/// Small items moved but not yet recorded, with what each holds until then.
#[derive(Default)]
struct Batch<'a> {
    records: Vec<Record>,
    /// Per item: its key's claim, its new places, its size.
    holds: Vec<(BusyKey<'a>, Vec<Allocation>, u64)>,
}

/// How moving one item went.
enum Moved<'a> {
    Done(Batch<'a>),
    /// Left where it is (busy, unreadable, or a piece would have to split).
    Skipped,
    /// Free space outside the pads being emptied ran out.
    NoRoom,
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
        let writing = self.inner.gate.enter().await?;
        let allocator = &self.inner.allocator;
        allocator.record_stray_pads().await?;
        let remove = self.inner.backend.capabilities().deleting_pads_refunds;
        let pads_before = allocator.summary().total_pads;
        let mut report = CompactReport {
            pads_before,
            pads_after: pads_before,
            ..CompactReport::default()
        };
        let mut progress = (0u64, 0u64);
        for _ in 0..MAX_PASSES {
            let plan = self.plan_pass(remove)?;
            if plan.pads.is_empty() {
                break;
            }
            progress.1 += plan.items.len() as u64;
            allocator.fence(&plan.pads);
            let moved = self
                .move_items(
                    plan.items,
                    &plan.pads,
                    &writing,
                    events,
                    &mut report,
                    &mut progress,
                )
                .await;
            let written_back = self.write_back_everything().await;
            let released = allocator.unfence(&plan.pads, remove);
            let freed = self.release_pads(released).await;
            moved?;
            written_back?;
            let freed = freed?;
            report.pads_released += freed;
            let emptied = if remove {
                freed
            } else {
                let usage = allocator.pad_usage();
                usage
                    .pads
                    .iter()
                    .filter(|(ordinal, used)| *used == 0 && plan.pads.contains(ordinal))
                    .count() as u64
            };
            if emptied == 0 {
                break;
            }
        }
        report.pads_after = allocator.summary().total_pads;
        events
            .finish(OperationProgress {
                operation: "compact",
                done: progress.0,
                total: progress.1,
            })
            .await?;
        Ok(report)
    }

    /// Chooses the pads one pass empties (see the module header).
    fn plan_pass(&self, remove: bool) -> Result<PassPlan> {
        let allocator = &self.inner.allocator;
        let usage = allocator.pad_usage();
        let pad_size = usage.pad_size;
        self.inner.journal.read(|index| {
            // Building the map (pad_usage) moved every entry into memory.
            let entries: HashMap<&String, &Entry> = index.items.in_memory()?.collect();
            let (pinned, by_pad) = keys_by_pad(index, &entries);
            let mut order: Vec<(u64, u64)> = usage
                .pads
                .iter()
                .filter(|(ordinal, used)| {
                    !pinned.contains(ordinal) && *used < pad_size && (remove || *used > 0)
                })
                .map(|&(ordinal, used)| (used, ordinal))
                .collect();
            order.sort_unstable();
            // Free runs of the pads that stay, by length: where the moves
            // would go (each piece to one run, as the move needs).
            let mut pool: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
            for &(pad, len) in &usage.free_runs {
                pool.entry(len).or_default().push(pad);
            }
            let mut pads = Vec::new();
            let mut targets: HashSet<u64> = HashSet::new();
            let mut moving: HashSet<&String> = HashSet::new();
            for (_, ordinal) in order {
                if targets.contains(&ordinal) {
                    continue; // planned to receive moved pieces
                }
                // A small item moves whole; a large one only its pieces here.
                let mut sizes = Vec::new();
                let mut joining = Vec::new();
                for key in by_pad.get(&ordinal).into_iter().flatten().copied() {
                    let entry = entries[key];
                    if !allocator.log_first(entry.size) {
                        sizes.extend(
                            entry
                                .pieces
                                .iter()
                                .filter(|p| p.pad == ordinal)
                                .map(|p| p.len),
                        );
                        joining.push(key);
                    } else if !moving.contains(key) {
                        sizes.push(entry.size);
                        joining.push(key);
                    }
                }
                let mut trial = pool.clone();
                remove_pad_runs(&mut trial, ordinal, &usage.free_runs);
                let Some(received) = place_in_runs(&mut trial, sizes) else {
                    continue;
                };
                pool = trial;
                targets.extend(received);
                pads.push(ordinal);
                moving.extend(joining);
            }
            let mut items: Vec<(String, Entry)> = moving
                .into_iter()
                .map(|key| (key.clone(), entries[key].clone()))
                .collect();
            // The largest first, while free space is least fragmented.
            items.sort_unstable_by(|a, b| b.1.size.cmp(&a.1.size).then(a.0.cmp(&b.0)));
            Ok(PassPlan { pads, items })
        })
    }

    /// Moves each item to free space outside the fenced pads and records
    /// its new place; stops when free space runs out.
    async fn move_items(
        &self,
        items: Vec<(String, Entry)>,
        pads: &[u64],
        writing: &WriterGuard,
        events: &EventSink<OperationProgress>,
        report: &mut CompactReport,
        progress: &mut (u64, u64),
    ) -> Result<()> {
        let allocator = &self.inner.allocator;
        let silent = Arc::new(EventSink::<PutEvent>::silent());
        let mut batch = Batch::default();
        for (key, entry) in items {
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
            let small = allocator.log_first(entry.size);
            let moved = if small {
                self.move_small(busy, key, entry, writing, &silent).await?
            } else {
                self.move_pieces(busy, key, entry, pads, writing, &silent)
                    .await?
            };
            match moved {
                // Small items' moves are recorded together, as small puts.
                Moved::Done(one) if small => {
                    batch.records.extend(one.records);
                    batch.holds.extend(one.holds);
                    if batch.records.len() >= MOVES_PER_RECORD_BATCH {
                        self.commit_moves(std::mem::take(&mut batch), writing, report)
                            .await?;
                    }
                }
                Moved::Done(one) => self.commit_moves(one, writing, report).await?,
                Moved::Skipped => {}
                // No room left outside the pads being emptied.
                Moved::NoRoom => break,
            }
        }
        self.commit_moves(batch, writing, report).await
    }

    /// Moves a small item whole: reads it and places it anew, to be
    /// recorded with its bytes, as a small put is (but under its own data
    /// id).
    async fn move_small<'a>(
        &'a self,
        busy: BusyKey<'a>,
        key: String,
        entry: Entry,
        writing: &WriterGuard,
        silent: &Arc<EventSink<PutEvent>>,
    ) -> Result<Moved<'a>> {
        let allocator = &self.inner.allocator;
        let size = entry.size;
        let buffer = vec![0u8; super::usize_size(size)?];
        let data = match allocator.read(&entry, buffer, &EventSink::silent()).await {
            Ok(data) => Bytes::from(data),
            Err(Error::Integrity(_) | Error::Backend(BackendError::NotFound(_))) => {
                log::warn!("compaction left {key:?} in place: it does not read back intact");
                return Ok(Moved::Skipped);
            }
            Err(error) => return Err(error),
        };
        let (mut turn, mut pending) = (None, None);
        let Some(mut allocation) = allocator
            .allocate(size, 0, &mut turn, writing, &mut pending, silent)
            .await?
        else {
            return Ok(Moved::NoRoom);
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
        Ok(Moved::Done(Batch {
            records: vec![Record::PutInline { key, entry, data }],
            holds: vec![(busy, vec![allocation], size)],
        }))
    }

    /// Moves the pieces of a large item that lie in `pads`, each to one free
    /// extent elsewhere: a piece's digest is the hash of its bytes wherever
    /// it lies (it never fills its pad: the pad would not be emptied), so
    /// the item keeps its digest and data id. A piece that would have to be
    /// split leaves the item where it is.
    async fn move_pieces<'a>(
        &'a self,
        busy: BusyKey<'a>,
        key: String,
        entry: Entry,
        pads: &[u64],
        writing: &WriterGuard,
        silent: &Arc<EventSink<PutEvent>>,
    ) -> Result<Moved<'a>> {
        let allocator = &self.inner.allocator;
        let mut pieces = entry.pieces.clone();
        let mut placed = Vec::new();
        for (at, piece) in entry.pieces.iter().enumerate() {
            if !pads.contains(&piece.pad) {
                continue;
            }
            let bytes = match allocator.read_piece(piece).await {
                Ok(bytes) => bytes,
                Err(Error::Integrity(_) | Error::Backend(BackendError::NotFound(_))) => {
                    log::warn!("compaction left {key:?} in place: its pad does not read back");
                    return Ok(Moved::Skipped);
                }
                Err(error) => return Err(error),
            };
            let (mut turn, mut pending) = (None, None);
            let Some(mut allocation) = allocator
                .allocate(piece.len, 0, &mut turn, writing, &mut pending, silent)
                .await?
            else {
                return Ok(Moved::NoRoom);
            };
            if allocation.placement().await?.len() != 1 {
                return Ok(Moved::Skipped); // dropping the allocations frees them
            }
            let (written, _) = allocator.write(&mut allocation, &bytes, silent).await?;
            pieces[at] = written[0];
            placed.push(allocation);
        }
        let size = entry.size;
        let record = Record::Put {
            key,
            entry: Entry { pieces, ..entry },
        };
        Ok(Moved::Done(Batch {
            records: vec![record],
            holds: vec![(busy, placed, size)],
        }))
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
        for id in allocator.forget_pads(&ordinals) {
            let name = id.object_name();
            if let Err(error) = retry.run(|_| self.inner.backend.delete(&name)).await {
                // Recorded as removed: the next open adopts it as free space.
                log::warn!("could not delete the emptied pad {name}: {error}");
            }
        }
        Ok(ordinals.len() as u64)
    }
}
