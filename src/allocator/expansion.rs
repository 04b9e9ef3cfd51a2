//! Expansion: when free space cannot hold an item, new pads are reserved
//! concurrently in a task of their own, each mapped (wholly taken) as soon as
//! it is reserved, then all recorded in the index at once, with the put's
//! pending record when it has one; only then is their leftover space freed.
//! An item committed in the log records its new pads itself, in its own
//! index write (one write instead of two): the expansion hands them over
//! and waits for that write, and records them itself if the put stops
//! first. One expansion runs at a time, so concurrent puts share its pads.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::stream::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::{Allocation, ExpansionTurn, MemoryAllocator, PendingPut, existing_pieces};
use crate::error::{Error, Result};
use crate::events::{EventSink, PutEvent};
use crate::index::{PadRecord, Piece, Record};
use crate::memory_map::Extent;
use crate::pad::PadId;
use crate::writer_gate::WriterGuard;

/// The reservations of an allocation, running in their own task.
pub(super) struct Expansion {
    /// Shared with the task: which new pads it has placed, and whether the
    /// allocation was given up (then the task frees what it places).
    pub(super) placed: Arc<Mutex<Placed>>,
    /// The index `k` of each new pad as soon as it is reserved and mapped.
    pub(super) reserved: Option<mpsc::UnboundedReceiver<usize>>,
    /// Every new pad's ordinal once all are reserved and recorded.
    pub(super) complete: Option<oneshot::Receiver<Result<Vec<u64>>>>,
    pub(super) task: Option<JoinHandle<Result<()>>>,
    pub(super) cancel: Arc<AtomicBool>,
    /// For a put that records its new pads itself: they come here once all
    /// are reserved (records, and ordinals in data order).
    pub(super) pads_along: Option<oneshot::Receiver<(Vec<PadRecord>, Vec<u64>)>>,
}

/// The expansion's side of a put that records the new pads itself.
struct PadsAlong {
    pads: oneshot::Sender<(Vec<PadRecord>, Vec<u64>)>,
    /// Whether the put's index write carrying them landed (or may have);
    /// dropped unsent if the put stopped before it.
    landed: oneshot::Receiver<bool>,
}

#[derive(Default)]
pub(super) struct Placed {
    /// The ordinal of each new pad, once reserved.
    pub(super) ordinals: Vec<Option<u64>>,
    /// The bytes of the item each new pad holds.
    pub(super) bytes: Vec<u64>,
    /// The put gave up its allocation.
    pub(super) abandoned: bool,
    /// The pads are in the index (and their unused space was freed).
    pub(super) recorded: bool,
    /// Where the put's pending record stands, if the expansion writes it.
    pub(super) pending: PendingClaim,
    /// Free space the put took, given up while its pending record was being
    /// written: the expansion frees it if that write fails, and keeps it
    /// (for the pending key) if it succeeds.
    pub(super) deferred: Vec<Extent>,
}

/// The expansion's writing of a put's pending record (see `Placed`).
#[derive(Default, Clone, Copy, PartialEq, Eq)]
pub(super) enum PendingClaim {
    #[default]
    None,
    Writing,
    Written,
}

impl MemoryAllocator {
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
    /// its pads (then the allocation's keeper is set); an item committed in
    /// the log (`log_first`) records the new pads itself.
    #[allow(clippy::too_many_arguments)]
    pub async fn allocate(
        self: &Arc<Self>,
        size: u64,
        log_first: bool,
        max_new_pads: u64,
        turn: &mut Option<ExpansionTurn>,
        writing: &WriterGuard,
        pending: &mut Option<PendingPut>,
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
            recordings: Default::default(),
            pads_landed: Mutex::new(None),
        };
        if let (true, Some(turn)) = (plan.new_pads > 0, turn.take()) {
            events
                .emit(|| PutEvent::ReservingScratchpads {
                    needed: plan.new_pads,
                })
                .await?;
            let bytes = allocation.new_pad_bytes.clone();
            let pending = pending.take().map(|put| PendingAlong {
                put,
                data_id: allocation.data_id,
                existing: existing_pieces(&allocation.existing, pad_size),
                kept: allocation.keeper(),
            });
            // An item committed in the log records its new pads itself.
            let along = (pending.is_none() && log_first).then(|| {
                let (pads, pads_rx) = oneshot::channel();
                let (landed_tx, landed) = oneshot::channel();
                *allocation.pads_landed.lock().expect("pads landed lock") = Some(landed_tx);
                (PadsAlong { pads, landed }, pads_rx)
            });
            let (along, pads_rx) = along.unzip();
            let mut expansion = self.expand(bytes, turn, writing.clone(), pending, along, events);
            expansion.pads_along = pads_rx;
            allocation.expansion = Some(expansion);
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
        along: Option<PadsAlong>,
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
                let outcome = this
                    .record_expansion(results, &placed, pending, along)
                    .await;
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
            pads_along: None,
        }
    }

    /// Records every pad an expansion reserved, whatever happened to the put
    /// (reserved pads are paid for), and returns the new pads' ordinals.
    async fn record_expansion(
        &self,
        results: Vec<Result<PadRecord>>,
        placed: &Mutex<Placed>,
        pending: Option<PendingAlong>,
        along: Option<PadsAlong>,
    ) -> Result<Vec<u64>> {
        let (records, first_error) = reserved_pads(results);
        let mut recorded_by_put = false;
        if let Some(along) = along.filter(|_| first_error.is_none() && !records.is_empty()) {
            let ordinals: Option<Vec<u64>> = {
                let placed = placed.lock().expect("placed lock");
                placed.ordinals.iter().copied().collect()
            };
            if let Some(ordinals) = ordinals
                && along.pads.send((records.clone(), ordinals)).is_ok()
            {
                recorded_by_put = along.landed.await.unwrap_or(false);
            }
        }
        if !records.is_empty() && !recorded_by_put {
            let mut batch = vec![Record::PadsAdded(records.clone())];
            let kept = match pending {
                Some(pending) if first_error.is_none() => {
                    claim_pending(placed, pending).map(|(record, kept)| {
                        batch.push(record);
                        kept
                    })
                }
                _ => None,
            };
            // If this fails the pads stay wholly taken (never hand out
            // unrecorded space) until a later put records them.
            let appended = self.journal.append(batch).await;
            if let Some(kept) = kept {
                self.settle_pending(placed, &kept, appended.is_ok());
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

    /// After the index write that carried a put's pending record: the put's
    /// space is kept if it was written, else what it deferred is freed.
    fn settle_pending(&self, placed: &Mutex<Placed>, kept: &AtomicBool, written: bool) {
        let mut map = self.map.lock().expect("map lock");
        let mut placed = placed.lock().expect("placed lock");
        if written {
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
}

/// A put's pending record, handed to the expansion that reserves its pads.
pub(super) struct PendingAlong {
    pub(super) put: PendingPut,
    pub(super) data_id: u64,
    /// The item's pieces in free space it took at once.
    pub(super) existing: Vec<Piece>,
    /// The allocation's keeper, set once the record is written.
    pub(super) kept: Arc<AtomicBool>,
}

/// The pads an expansion reserved, by ordinal, and its first failure (a
/// cancellation after another failure only follows from it).
fn reserved_pads(results: Vec<Result<PadRecord>>) -> (Vec<PadRecord>, Option<Error>) {
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
    (records, first_error)
}

/// The put's pending record, to ride along with its new pads' record, if
/// the put is still on and every new pad is placed; claimed first, so that
/// a put given up meanwhile leaves its space to the expansion task (see
/// `Allocation::drop`). With it, the keeper to set once it is written.
fn claim_pending(
    placed: &Mutex<Placed>,
    pending: PendingAlong,
) -> Option<(Record, Arc<AtomicBool>)> {
    let new_pieces = {
        let mut placed = placed.lock().expect("placed lock");
        let all: Option<Vec<u64>> = placed.ordinals.iter().copied().collect();
        let new_pieces = all
            .filter(|_| !placed.abandoned)
            .map(|ordinals| new_pieces(&ordinals, &placed.bytes))?;
        placed.pending = PendingClaim::Writing;
        new_pieces
    };
    let mut pieces = pending.existing;
    pieces.extend(new_pieces);
    Some((pending.put.record(pending.data_id, pieces), pending.kept))
}

/// The pieces in new pads (each from its first byte), in data order.
pub(super) fn new_pieces(ordinals: &[u64], bytes: &[u64]) -> Vec<Piece> {
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
