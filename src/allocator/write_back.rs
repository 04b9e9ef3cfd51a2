//! Write-back: items smaller than a pad are committed with their bytes in
//! the index log (one write of about their size), and the pads they share
//! are written later, one write per pad carrying every piece queued for it,
//! as databases write pages back behind their write-ahead log.
//!
//! **Cost model.** A pad write costs the pad's prefix up to its highest
//! written byte. An item of `s` bytes written straight to a shared pad
//! rewrites what the pad already holds: filling a pad with `n` items writes
//! about `n / 2` pads' worth. Through the log it costs `s` in the log plus
//! its share of the pad's write-back; so a pad should be written back once,
//! when it is full, and the put path then writes each item about twice
//! with about one request per put.
//!
//! What is queued is not kept here but in the index ([`Index::inline`]),
//! since every process replaying the log must hold those bytes anyway. A pad
//! is written back when
//! - half a pad or more of it is log-only and it is full, as far as this
//!   put can tell: the put took the pad's last byte, or needed new pads (so
//!   the free space left could not hold it); the put starts the write in
//!   the background,
//! - the log-only bytes of the store pass [`MEMORY_BOUND`] (the put waits
//!   for the dirtiest pads to be written, so memory stays bounded),
//! - the store has been idle for [`IDLE`] (a background task),
//! - a checkpoint is due (the log objects it absorbs must not be the only
//!   copy of any item),
//! - on `flush` and `close`.
//!
//! Each write is recorded by a [`Record::WrittenBack`] naming the items it
//! holds, applied at once and carried by the next log write. (A writer that
//! gives the lock back before that leaves the pad to be written back again,
//! at the same version, by the next: harmless, since the index never named
//! the first write.) It goes to
//! stable storage whatever the store's fsync setting: a checkpoint may
//! delete the log objects that were the items' other copy, and an item
//! stored long ago must not be lost to an OS crash just after.
//!
//! [`Index::inline`]: crate::index::Index::inline

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};

use super::MemoryAllocator;
use crate::error::{Error, Result};
use crate::index::{Piece, Record};
use crate::journal::WriteBackAll;

/// Most item bytes held only in the log (and so in memory, by every process
/// that replayed it) before puts wait for pads to be written back.
pub const MEMORY_BOUND: u64 = 64 << 20;

/// A store idle this long writes back every pad it holds log-only bytes for.
pub const IDLE: Duration = Duration::from_secs(1);

/// Items of at most `pad_size / LOG_FIRST_FRACTION` are small: always
/// committed in the log, and moved whole by a compaction.
pub const LOG_FIRST_FRACTION: u64 = 16;

/// Items below a pad are committed in the log too (medium items), up to
/// this size: each stays in memory until written back, and an open replays
/// it. From a pad up an item fills pads of its own, written once directly.
pub const LOG_FIRST_MAX: u64 = MEMORY_BOUND / 8;

/// Pads being written back now, so triggers do not queue one twice; and
/// the puts under way, which decide where medium items go.
#[derive(Default)]
pub struct WriteBacks {
    in_flight: Mutex<HashSet<u64>>,
    idle: tokio::sync::Notify,
    puts: AtomicUsize,
}

/// One put under way in this handle (see [`MemoryAllocator::put_under_way`]),
/// counted until dropped.
pub struct PutUnderWay<'a> {
    puts: &'a AtomicUsize,
}

impl Drop for PutUnderWay<'_> {
    fn drop(&mut self) {
        self.puts.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Pads a write-back took (see [`WriteBacks::claim`]); given back when
/// dropped, also when the write-back is (a cancelled `flush`): a pad left
/// claimed would make every later wait for write-backs hang. Its pad write
/// goes on in the pad's writer task; without its record, the pad is simply
/// written back again later.
struct Claimed<'a> {
    write_backs: &'a WriteBacks,
    pads: Vec<u64>,
}

impl WriteBacks {
    /// Claims those of `pads` no write-back is writing now.
    fn claim(&self, pads: Vec<u64>) -> Claimed<'_> {
        let mut in_flight = self.in_flight.lock().expect("write-backs lock");
        let pads = pads
            .into_iter()
            .filter(|pad| in_flight.insert(*pad))
            .collect();
        Claimed {
            write_backs: self,
            pads,
        }
    }
}

impl Drop for Claimed<'_> {
    fn drop(&mut self) {
        let mut in_flight = self.write_backs.in_flight.lock().expect("write-backs lock");
        for pad in &self.pads {
            in_flight.remove(pad);
        }
        if in_flight.is_empty() {
            self.write_backs.idle.notify_waiters();
        }
    }
}

impl MemoryAllocator {
    /// Whether an item of `size` bytes is small: see [`LOG_FIRST_FRACTION`].
    pub fn small(&self, size: u64) -> bool {
        size <= self.io.pad_size / LOG_FIRST_FRACTION
    }

    /// Counts a put as under way until the returned guard is dropped.
    pub fn put_under_way(&self) -> PutUnderWay<'_> {
        self.write_backs.puts.fetch_add(1, Ordering::AcqRel);
        PutUnderWay {
            puts: &self.write_backs.puts,
        }
    }

    /// Whether an item of `size` bytes is committed in the log first: a
    /// small one always; a medium one (below a pad and [`LOG_FIRST_MAX`])
    /// only where rewriting a shared pad costs a request and its bytes (S3,
    /// memory, `sim+`), and only if it is this handle's one put under way.
    ///
    /// On a local folder rewriting a pad costs a write to the page cache,
    /// while the log path would add a durable write-back and a replay at
    /// every open: there medium items are written into their pads directly.
    /// And puts running together (zarr writes its chunks concurrently) are
    /// better off in their pads: each pad's writer slot carries every patch
    /// queued meanwhile in one write, pads upload in parallel, and each byte
    /// is written once, where the log writes one object at a time, every
    /// byte twice, and a put that needs a new pad holds the turn to expand
    /// until its log write lands, so concurrent puts took one pad per log
    /// round trip.
    pub fn log_first(&self, size: u64) -> bool {
        let medium_in_log = self.io.backend.capabilities().folder_writer.is_none()
            && self.write_backs.puts.load(Ordering::Acquire) <= 1;
        self.small(size) || (medium_in_log && size < self.io.pad_size && size <= LOG_FIRST_MAX)
    }

    /// The pads to write back after a put placed as `pieces` (that needed
    /// new pads if `grew`), and whether the put must wait for them (the
    /// memory bound is passed).
    pub fn write_back_due(&self, pieces: &[Piece], grew: bool) -> (Vec<u64>, bool) {
        let pad_size = self.io.pad_size;
        let half = pad_size / 2;
        let in_flight = self.write_backs.in_flight.lock().expect("write-backs lock");
        self.journal.read(|index| {
            let half_dirty = |pad: &u64| {
                index
                    .dirty_pads
                    .get(pad)
                    .is_some_and(|dirty| dirty.bytes >= half)
            };
            // Full: this put took its last byte, or (growing the store) the
            // free space of every pad could not hold it.
            let mut due: Vec<u64> = if grew {
                let touched: HashSet<u64> = pieces.iter().map(|p| p.pad).collect();
                (index.dirty_pads.keys())
                    .filter(|pad| !touched.contains(pad) && half_dirty(pad))
                    .copied()
                    .collect()
            } else {
                Vec::new()
            };
            due.extend(
                pieces
                    .iter()
                    .filter(|p| p.offset + p.len == pad_size)
                    .map(|p| p.pad)
                    .filter(half_dirty),
            );
            let over = index.inline_bytes > MEMORY_BOUND;
            if over {
                // The dirtiest pads, until half the bound would be left.
                let mut pads: Vec<(u64, u64)> = index
                    .dirty_pads
                    .iter()
                    .map(|(pad, dirty)| (dirty.bytes, *pad))
                    .collect();
                pads.sort_unstable_by(|a, b| b.cmp(a));
                let mut left = index.inline_bytes;
                for (bytes, pad) in pads {
                    if left <= MEMORY_BOUND / 2 {
                        break;
                    }
                    due.push(pad);
                    left -= bytes.min(left);
                }
            }
            due.sort_unstable();
            due.dedup();
            due.retain(|pad| !in_flight.contains(pad));
            (due, over)
        })
    }

    /// Every pad holding log-only bytes.
    pub fn dirty_pads(&self) -> Vec<u64> {
        self.journal
            .read(|index| index.dirty_pads.keys().copied().collect())
    }

    /// Bytes of items held only in the log.
    pub fn log_only_bytes(&self) -> u64 {
        self.journal.read(|index| index.inline_bytes)
    }

    /// Writes back `pads` (concurrently, within the store's upload limit)
    /// and notes each write in the journal. Call inside the writer gate.
    /// Fails with the first failure, after every pad was tried.
    pub async fn write_back(&self, pads: Vec<u64>) -> Result<()> {
        let (records, failure) = self.write_pads_back(pads).await;
        self.journal.note_written_back(records);
        failure.map_or(Ok(()), Err)
    }

    /// Resolves once no write-back of this store is under way.
    pub async fn write_backs_idle(&self) {
        loop {
            let notified = self.write_backs.idle.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if self
                .write_backs
                .in_flight
                .lock()
                .expect("write-backs lock")
                .is_empty()
            {
                return;
            }
            notified.await;
        }
    }

    async fn write_pads_back(&self, pads: Vec<u64>) -> (Vec<Record>, Option<Error>) {
        let claimed = self.write_backs.claim(pads);
        let mut writes: FuturesUnordered<_> = claimed
            .pads
            .iter()
            .map(|&pad| async move { (pad, self.write_pad_back(pad).await) })
            .collect();
        let (mut records, mut failure) = (Vec::new(), None);
        while let Some((pad, outcome)) = writes.next().await {
            match outcome {
                Ok(Some(record)) => records.push(record),
                Ok(None) => {}
                Err(error) => {
                    log::warn!(
                        "writing pad {pad} back failed (its items stay in the log): {error}"
                    );
                    failure.get_or_insert(error);
                }
            }
        }
        (records, failure)
    }

    /// Writes pad `pad`'s log-only parts into it in one pad write.
    async fn write_pad_back(&self, pad: u64) -> Result<Option<Record>> {
        let pad_size = self.io.pad_size;
        // The parts are queued in the pad's writer slot while the index
        // cannot change: if they were queued later, an item among them could
        // be removed and its place reused by a put whose patch is queued
        // first, which these stale bytes would then overwrite.
        let queued = self.journal.read(|index| {
            let parts = index.dirty_parts(pad)?;
            if parts.is_empty() {
                return Ok(None);
            }
            let mut data_ids = Vec::with_capacity(parts.len());
            let mut patches = Vec::with_capacity(parts.len());
            for (data_id, offset, bytes) in parts {
                let fits = offset
                    .checked_add(bytes.len() as u64)
                    .is_some_and(|end| end <= pad_size);
                if !fits {
                    return Err(Error::integrity(format!(
                        "the index places log-only bytes outside pad {pad}"
                    )));
                }
                data_ids.push(data_id);
                patches.push((offset, bytes));
            }
            data_ids.sort_unstable();
            data_ids.dedup();
            Ok(Some((data_ids, self.writer.write(pad, patches, true)?)))
        })?;
        let Some((data_ids, write)) = queued else {
            return Ok(None);
        };
        let (version, _tag) = write.committed.answer().await?;
        Ok(Some(Record::WrittenBack {
            pad,
            version,
            data_ids,
        }))
    }
}

#[async_trait::async_trait]
impl WriteBackAll for MemoryAllocator {
    async fn write_back_all(&self) -> Vec<Record> {
        let mut all = Vec::new();
        // A write-back a put started may be under way: its pads are left to
        // it, and written again here if it did not take everything.
        for _ in 0..3 {
            self.write_backs_idle().await;
            let pads = self.dirty_pads();
            if pads.is_empty() {
                break;
            }
            let (records, _) = self.write_pads_back(pads).await;
            self.journal.note_written_back(records.clone());
            all.extend(records);
        }
        all
    }
}

/// The background task of a store: writes everything back once the store
/// has been idle for [`IDLE`]. `activity` is told of each put; the task
/// ends when `alive` says the store is gone.
pub async fn write_back_when_idle<F, Fut>(activity: Arc<tokio::sync::Notify>, mut flush: F)
where
    F: FnMut() -> Option<Fut>,
    Fut: std::future::Future<Output = ()>,
{
    loop {
        activity.notified().await;
        // Wait until a whole idle period passes without a put.
        loop {
            let quiet = tokio::time::timeout(IDLE, activity.notified()).await;
            if quiet.is_err() {
                break;
            }
        }
        match flush() {
            Some(work) => work.await,
            None => return,
        }
    }
}
