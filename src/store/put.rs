//! One `store_item` call, past its checks, as one object: what it stores and
//! replaces, what it holds while it runs (its place in the writer gate, the
//! turn to expand, its pending record) and the two ways it ends:
//! - a small item is committed in the index log, and its pads written back
//!   later ([`Put::commit_in_log`]);
//! - any other is written to its pads, then committed
//!   ([`Put::write_to_pads`]).
//!
//! Until it commits, the [`Allocation`] it holds gives its space back if the
//! put fails or is dropped.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::{Store, now};
use crate::allocator::{self, Allocation, ExpansionTurn, ItemData, PendingPut, PutUnderWay};
use crate::error::{Error, Result};
use crate::events::{EventSink, PutEvent};
use crate::index::{Entry, Record};
use crate::writer_gate::WriterGuard;

pub(super) struct Put<'a> {
    store: &'a Store,
    key: &'a str,
    data: ItemData,
    /// The entry this put replaces, if any.
    previous: Option<Entry>,
    /// This put's place in the writer gate, held until it ends.
    writing: WriterGuard,
    events: &'a Arc<EventSink<PutEvent>>,
    /// The right to reserve new pads, once waited for.
    turn: Option<ExpansionTurn>,
    /// The pending record of an item spanning pads, until it is written
    /// (by the expansion that reserves its pads, or by [`Put::write_to_pads`]).
    pending: Option<PendingPut>,
    /// Counted among this handle's puts under way while it lives.
    _under_way: PutUnderWay<'a>,
}

impl<'a> Put<'a> {
    pub(super) async fn new(
        store: &'a Store,
        key: &'a str,
        data: ItemData,
        previous: Option<Entry>,
        writing: WriterGuard,
        events: &'a Arc<EventSink<PutEvent>>,
    ) -> Result<Self> {
        let size = data.len();
        // Recorded as pending once its space is known, an item spanning pads
        // is resumable after an interruption rather than lost. Pending, it is
        // known by its fingerprint; its digest comes from its pieces as they
        // are written.
        let pending = if size > store.inner.allocator.pad_size() {
            Some(PendingPut {
                key: key.to_string(),
                size,
                fingerprint: data.fingerprint().await?,
            })
        } else {
            None
        };
        Ok(Self {
            store,
            key,
            data,
            previous,
            writing,
            events,
            turn: None,
            pending,
            _under_way: store.inner.allocator.put_under_way(),
        })
    }

    /// Allocates, never reserving more than `cap` new pads, then writes and
    /// commits.
    pub(super) async fn run(mut self, cap: Option<u64>) -> Result<()> {
        // Decided once: the expansion and the commit must agree on it.
        let log_first = self.store.inner.allocator.log_first(self.data.len());
        let allocation = self.allocate(cap, log_first).await?;
        // Recorded, and its unused space freed: the next expansion may start.
        self.turn = None;
        if log_first {
            self.commit_in_log(allocation).await
        } else {
            self.write_to_pads(allocation).await
        }
    }

    /// Finds space for the item: free space at once, else (with the turn to
    /// expand, and after `ConfirmReservation`) new pads.
    async fn allocate(&mut self, cap: Option<u64>, log_first: bool) -> Result<Allocation> {
        let allocator = &self.store.inner.allocator;
        let size = self.data.len();
        loop {
            let summary = self.store.summary_now();
            let needed = allocator.check_allocation_possible(size).unwrap_or(0);
            if needed > 0 {
                if self.turn.is_none() {
                    // Wait for any expansion under way; its pads may suffice.
                    self.turn = Some(allocator.expansion_turn().await);
                    continue;
                }
                if let Some(cap) = cap.filter(|cap| needed > *cap) {
                    return Err(Error::Cancelled(format!(
                        "storing {size} bytes needs {needed} new pads, but max_new_pads is {cap}"
                    )));
                }
                let estimated_cost = self
                    .store
                    .inner
                    .backend
                    .capabilities()
                    .price_per_pad
                    .map(|price| format!("{:.2}", price * needed as f64));
                self.events
                    .emit(|| PutEvent::ConfirmReservation {
                        needed,
                        data_size: size,
                        total_space: summary.total_space,
                        free_space: summary.free_space,
                        current_scratchpads: summary.total_pads,
                        estimated_cost,
                    })
                    .await?;
            }
            // Free space may have shrunk since the confirmation (a concurrent
            // put took it); then ask again rather than spend unconfirmed.
            if let Some(allocation) = allocator
                .allocate(
                    size,
                    log_first,
                    needed,
                    &mut self.turn,
                    &self.writing,
                    &mut self.pending,
                    self.events,
                )
                .await?
            {
                return Ok(allocation);
            }
        }
    }

    /// Commits an item smaller than a pad with its bytes in the index log:
    /// one write of about its size, instead of rewriting the pads it shares. Its pads are written
    /// back later (see `allocator/write_back.rs`). The upload events come
    /// before that log write, which commits the item.
    async fn commit_in_log(self, mut allocation: Allocation) -> Result<()> {
        let (store, events) = (self.store, self.events);
        let allocator = &store.inner.allocator;
        let size = self.data.len();
        events
            .emit(|| PutEvent::StartingUpload {
                total_bytes: size,
                total_pads: 0,
            })
            .await?;
        // The index keeps these bytes until they are written back: its own
        // copy, not a view of the caller's buffer.
        let data = match &self.data {
            ItemData::Memory(bytes) => Bytes::copy_from_slice(bytes),
            streamed => {
                let bytes = streamed.all().await?;
                streamed.check_unchanged().await?;
                bytes
            }
        };
        // New pads are recorded by the same index write as the item.
        let (new_pads, pieces) = allocation.placement_with_pads().await?;
        let (pads_added, settled) = new_pads.map(allocator::NewPads::split).unzip();
        let hash = allocator::inline_digest(&pieces, &data)?;
        let placed = (pieces.clone(), allocation.grows());
        events
            .emit(|| PutEvent::UploadProgress {
                bytes_written: size,
                total_bytes: size,
            })
            .await?;
        events.emit(|| PutEvent::UploadFinished).await?;
        let entry = Entry {
            data_id: allocation.data_id,
            size,
            hash,
            pieces,
            created: self.previous.as_ref().map_or_else(now, |e| e.created),
            modified: now(),
        };
        let record = Record::PutInline {
            key: self.key.to_string(),
            entry,
            data,
        };
        let records = pads_added.into_iter().chain([record]).collect();
        store
            .commit_records(records, allocation.into(), &self.writing)
            .await?;
        if let Some(settled) = settled {
            // The new pads' leftover is free once this returns, as after a
            // put whose expansion recorded them.
            settled.await;
        }
        store.inner.activity.notify_one();
        let (due, wait) = allocator.write_back_due(&placed.0, placed.1);
        if !due.is_empty() {
            let (allocator, writing) = (Arc::clone(allocator), self.writing);
            let work = tokio::spawn(async move {
                let written = allocator.write_back(due).await;
                drop(writing);
                written
            });
            if wait {
                // Over the memory bound: this put waits for room. Its item
                // is committed whatever the write-back does.
                if let Ok(Err(error)) = work.await {
                    log::warn!("writing small items back failed (they stay in the log): {error}");
                }
            }
        }
        events.finish(PutEvent::StoreComplete).await
    }

    /// Writes the item to its pads (uploads to new pads starting as each is
    /// reserved), records it as pending meanwhile if it spans pads, then
    /// commits it.
    async fn write_to_pads(mut self, mut allocation: Allocation) -> Result<()> {
        let (store, events, writing) = (self.store, self.events, &self.writing);
        let allocator = &store.inner.allocator;
        let size = self.data.len();
        let data_id = allocation.data_id;
        let placement = (size > allocator.pad_size()).then(|| allocation.placement());
        // Set once a pending record names the space (here or by the expansion).
        let pending_written = allocation.keeper();
        // No expansion took the pending record: it is written here, and the
        // space is its to keep or free from the moment it is under way.
        let pending = (self.pending.take())
            .filter(|_| placement.is_some())
            .map(|put| (put, allocation.recording()));
        let record_pending = async {
            let Some(placement) = placement else {
                return Ok(());
            };
            let placed = placement.await;
            match (placed, pending) {
                (Ok(pieces), Some((put, recording))) => {
                    let record = put.record(data_id, pieces);
                    store
                        .commit_records(vec![record], recording.into(), writing)
                        .await
                }
                (placed, pending) => {
                    if let Some((_, recording)) = pending {
                        recording.settle(false);
                    }
                    placed.map(|_| ())
                }
            }
        };
        let outcome = async {
            // Both run to their end (no early drop of a half-made pending
            // record), so the keeper tells exactly whether one was recorded.
            let (written, recorded) = futures::join!(
                allocator.write_data(&mut allocation, &self.data, events),
                record_pending
            );
            let (pieces, digest) = written?;
            recorded?;
            // A file changed meanwhile would be stored as a mix of versions.
            self.data.check_unchanged().await?;
            Ok::<_, Error>((pieces, digest))
        }
        .await;
        let committed = match outcome {
            Ok((pieces, digest)) => {
                let record = store.put_record(
                    self.key,
                    data_id,
                    size,
                    digest,
                    pieces,
                    self.previous.as_ref(),
                );
                store
                    .commit_records(vec![record], allocation.into(), writing)
                    .await
            }
            Err(error) => {
                drop(allocation);
                Err(error)
            }
        };
        if let Err(error) = committed {
            if pending_written.load(Ordering::Acquire) && !store.inner.journal.in_doubt() {
                store.abandon_pending(self.key, writing).await;
            }
            return Err(error);
        }
        events.finish(PutEvent::StoreComplete).await
    }
}
