//! The writer gate: who may change a store, across processes.
//!
//! Every change (a put, a remove, adopting pads) happens inside the gate.
//! The first caller in a process takes the backend's writer lock (a file lock
//! on a local folder, a lease on S3) and catches up with what other processes
//! wrote meanwhile; later callers in the same process share it. The last one
//! out leaves it held a short while (the backend's linger), so a loop of puts
//! takes it once; then it is released, once no pad upload of this process is
//! still in flight.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

use crate::error::Result;
use crate::journal::{Journal, Refreshed};
use crate::pad_store::{Backend, WriterLock, WriterLocking};

/// What the gate keeps in step with the index and waits for before letting
/// the lock go: the allocator, which the gate knows only through this, so
/// that the allocator may hold the gate (an expansion keeps it entered)
/// without the two modules depending on each other.
pub trait IndexFollower: Send + Sync {
    /// Follows what catching up changed in the index.
    fn follow(&self, refreshed: Refreshed) -> Result<()>;

    /// Builds the map of used space, unless built already.
    fn ensure_map(&self) -> Result<()>;

    /// Resolves once no pad write of this process is in flight.
    fn writer_idle(&self) -> BoxFuture<'static, ()>;

    /// Tidies up after writers that crashed (pads reserved but never
    /// recorded, partial writes); run once per handle, at its first
    /// holding of the lock, since only then can nobody be mid-reservation.
    fn tidy_after_crashes(&self) -> BoxFuture<'_, Result<()>>;
}

/// How many times a reader reads the log anew before it reads it under the
/// writer lock (see `catch_up`).
const UNLOCKED_CATCH_UPS: usize = 4;

/// A process in a loop of changes enters again within the linger, so it
/// would keep the lock for as long as the loop runs while writers of other
/// processes wait. After holding it this many lingers (and at least
/// `MIN_TURN`) it gives the lock back as its last caller leaves, and waits
/// the backend's handover (`WriterLocking::writer_lock_handover`) before
/// asking again: a writer waiting for the lock takes it meanwhile. Alone, a
/// writer pays one release and that wait per turn.
const TURN_LINGERS: u32 = 10;
const MIN_TURN: Duration = Duration::from_millis(50);

/// A turn also lasts this many times what catching up cost the writer as
/// it took the lock (a round trip or three on S3), so that handovers take
/// at most about a tenth of the writers' time however slow the backend;
/// but no longer than `MAX_TURN` (unless the lingers ask for more), so a
/// writer waits a bounded time for its turn.
const TURN_PER_CATCH_UP: u32 = 10;
const MAX_TURN: Duration = Duration::from_secs(1);

pub struct WriterGate {
    backend: Arc<dyn WriterLocking>,
    journal: Arc<Journal>,
    allocator: Arc<dyn IndexFollower>,
    /// Serialises taking the lock, so one caller waits on the backend while
    /// the others of this process wait here. Held across that wait on purpose.
    entry: tokio::sync::Mutex<()>,
    /// How many callers are inside, and the lock they share.
    held: Mutex<Held>,
    /// The release of the last lock held, running in the background.
    releasing: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Wakes a release waiting out the linger (see `released`).
    linger_cut: tokio::sync::Notify,
    /// This handle's random id, for the writer lock to tell whether anyone
    /// else held it since.
    holder: [u8; 16],
    /// Whether this handle tidied up after crashed writers (see
    /// `IndexFollower::tidy_after_crashes`).
    tidied: AtomicBool,
    /// When this handle's view of the index was last known current: a
    /// catch-up, or the writer lock given back (see `catch_up_within`).
    current_at: Mutex<Option<Instant>>,
    /// Run under the lock before this handle's first change (moving the
    /// store to the current format), until it succeeds once.
    before_first_change: Mutex<Option<FirstChange>>,
    /// How many times this handle took the writer lock.
    locks_taken: AtomicU64,
}

/// What must happen under the writer lock before a handle's first change.
pub type FirstChange = Arc<dyn Fn() -> BoxFuture<'static, Result<()>> + Send + Sync>;

#[derive(Default)]
struct Held {
    holders: usize,
    /// Held while there are holders, and for a linger after the last.
    lock: Option<Arc<dyn WriterLock>>,
    /// Entries so far: a lingering release gives up if it changed.
    entries: u64,
    /// When the lock held now was taken.
    taken_at: Option<Instant>,
    /// How long the turn that began then lasts (see `TURN_PER_CATCH_UP`).
    turn: Duration,
    /// The lock was given back at the end of a turn: the next entry waits
    /// until then before asking for it again.
    handover_until: Option<Instant>,
}

/// A caller's place inside the gate; clones count as callers too.
pub struct WriterGuard {
    gate: Arc<WriterGate>,
}

impl WriterGate {
    /// A gate over `backend`'s writer lock, of which it uses nothing else.
    pub fn new(
        backend: Arc<dyn Backend>,
        journal: Arc<Journal>,
        allocator: Arc<impl IndexFollower + 'static>,
    ) -> Arc<Self> {
        Arc::new(Self {
            backend,
            journal,
            allocator,
            entry: tokio::sync::Mutex::new(()),
            held: Mutex::new(Held::default()),
            releasing: Mutex::new(None),
            linger_cut: tokio::sync::Notify::new(),
            holder: crate::crypto::os_random(),
            tidied: AtomicBool::new(false),
            current_at: Mutex::new(None),
            before_first_change: Mutex::new(None),
            locks_taken: AtomicU64::new(0),
        })
    }

    /// Sets what must run under the lock before this handle's first change.
    pub fn set_before_first_change(&self, first: FirstChange) {
        *self.before_first_change.lock().expect("gate lock") = Some(first);
    }

    /// Runs the first-change hook, if it has not succeeded yet. Call inside
    /// the gate.
    async fn first_change(&self) -> Result<()> {
        let first = self.before_first_change.lock().expect("gate lock").clone();
        if let Some(first) = first {
            first().await?;
            self.before_first_change.lock().expect("gate lock").take();
        }
        Ok(())
    }

    /// Enters the gate, taking the writer lock and catching up if this
    /// process did not hold it. The first caller in also has the
    /// allocator's map built (nothing of this process is in flight then).
    pub async fn enter(self: &Arc<Self>) -> Result<WriterGuard> {
        self.enter_with(true).await
    }

    async fn enter_with(self: &Arc<Self>, map: bool) -> Result<WriterGuard> {
        let _entry = self.entry.lock().await;
        let lingering = {
            let mut held = self.held.lock().expect("gate lock");
            held.entries += 1;
            if held.holders > 0 {
                held.holders += 1;
                return Ok(WriterGuard {
                    gate: Arc::clone(self),
                });
            }
            if held.lock.is_some() {
                held.holders = 1;
            }
            held.lock.is_some()
        };
        // A lock that lapsed while lingering (the process was paused past
        // its lease) is taken anew below: nothing of this entry is written
        // yet, so it goes on as if the lock had been released in time.
        let lingering = lingering && self.lingering_lock_still_ours().await;
        if lingering {
            // Held all along: nobody else wrote. Unless a write of ours may
            // have landed unseen: then catch up, as a fresh holder would.
            let guard = WriterGuard {
                gate: Arc::clone(self),
            };
            if self.journal.in_doubt() {
                self.allocator.follow(self.journal.refresh(true).await?)?;
            }
            if map {
                self.allocator.ensure_map()?;
                self.first_change().await?;
            }
            return Ok(guard);
        }
        let handover = self.held.lock().expect("gate lock").handover_until.take();
        if let Some(until) = handover {
            tokio::time::sleep_until(until.into()).await;
        }
        let lock = self.backend.lock_writer(&self.holder).await?;
        let guard = self.take(lock, map).await?;
        if map {
            self.first_change().await?;
        }
        Ok(guard)
    }

    /// Whether the lingering lock, which `enter_with` just counted itself a
    /// holder of, still passes its check; if not, gives it back (once this
    /// process's writes under it are done) and counts the holder out again.
    async fn lingering_lock_still_ours(&self) -> bool {
        let lock = self.held.lock().expect("gate lock").lock.clone();
        let Some(lock) = lock else { return true };
        if lock.check().await.is_ok() {
            return true;
        }
        let stale = {
            let mut held = self.held.lock().expect("gate lock");
            held.holders = 0;
            held.lock.take()
        };
        if let Some(stale) = stale {
            self.release(stale).await;
        }
        false
    }

    /// Enters the gate if the writer lock is free right now, without
    /// waiting for a writer (`None` then, or where that cannot be told),
    /// leaving the map unbuilt: opening tidies up after crashed writers this
    /// way, and never waits (it builds the map only if it adopts pads).
    pub async fn try_enter_unmapped(self: &Arc<Self>) -> Result<Option<WriterGuard>> {
        self.try_enter_with(false).await
    }

    /// Enters the gate with `lock`, the writer lock this handle took for
    /// something else (creating the store), as `try_enter_unmapped` does
    /// when the lock is free.
    pub async fn enter_unmapped_with(
        self: &Arc<Self>,
        lock: Box<dyn WriterLock>,
    ) -> Result<WriterGuard> {
        let _entry = self.entry.lock().await;
        self.take(lock, false).await
    }

    /// Like `try_enter_unmapped`, with the map built as `enter` builds it.
    pub async fn try_enter(self: &Arc<Self>) -> Result<Option<WriterGuard>> {
        self.try_enter_with(true).await
    }

    async fn try_enter_with(self: &Arc<Self>, map: bool) -> Result<Option<WriterGuard>> {
        let entry = self.entry.lock().await;
        if self.held.lock().expect("gate lock").lock.is_some() {
            drop(entry); // this process holds it: enter as it does
            return self.enter_with(map).await.map(Some);
        }
        match self.backend.try_lock_writer(&self.holder).await? {
            Some(lock) => {
                let guard = self.take(lock, map).await?;
                if map {
                    self.first_change().await?;
                }
                Ok(Some(guard))
            }
            None => Ok(None),
        }
    }

    /// Holds `lock`, just taken: catches up with other writers, and the
    /// first time tidies up after crashed ones. Call holding `entry`.
    async fn take(self: &Arc<Self>, lock: Box<dyn WriterLock>, map: bool) -> Result<WriterGuard> {
        let lock: Arc<dyn WriterLock> = Arc::from(lock);
        self.locks_taken.fetch_add(1, Ordering::Relaxed);
        let catching_up = Instant::now();
        // Nothing of this process is in flight: safe to catch up and rebuild.
        // Unless this handle held the lock last: then nobody else wrote, and
        // the index it has is the store's (if its own writes are certain).
        let current = lock.undisturbed() && !self.journal.in_doubt();
        if !current {
            self.allocator.follow(self.journal.refresh(true).await?)?;
        }
        if map {
            // Before the lock is noted as held: a failed build leaves the
            // gate as if never entered (the lock is dropped, so released).
            self.allocator.ensure_map()?;
        }
        self.journal.set_writer_lock(Some(Arc::clone(&lock)));
        {
            let mut held = self.held.lock().expect("gate lock");
            held.holders = 1;
            held.entries += 1;
            held.lock = Some(lock);
            held.taken_at = Some(Instant::now());
            held.turn = self.turn(catching_up.elapsed());
        }
        let guard = WriterGuard {
            gate: Arc::clone(self),
        };
        if !self.tidied.load(Ordering::Acquire) {
            self.allocator.tidy_after_crashes().await?;
            self.tidied.store(true, Ordering::Release);
        }
        Ok(guard)
    }

    /// How many times this handle took the writer lock.
    pub fn locks_taken(&self) -> u64 {
        self.locks_taken.load(Ordering::Relaxed)
    }

    /// How long a turn lasts whose catch-up took `catch_up`.
    fn turn(&self, catch_up: Duration) -> Duration {
        turn_length(self.backend.writer_lock_linger(), catch_up)
    }

    /// Catches up with other writers, for reads that must see their work.
    /// Reading the log needs no lock (its objects appear whole and in
    /// order); only if it looks inconsistent (a writer checkpointing and
    /// deleting old objects right then) is it read again under the lock.
    pub async fn catch_up(self: &Arc<Self>) -> Result<()> {
        let started = Instant::now();
        // Concurrent reads share one catch-up: one that began after this
        // call did is as good as this call's own.
        self.catch_up_unless(|at| at >= started).await
    }

    /// [`Self::catch_up`], unless, once no other catch-up runs, the view
    /// was current at an instant that `current_enough` accepts.
    async fn catch_up_unless(
        self: &Arc<Self>,
        current_enough: impl Fn(Instant) -> bool,
    ) -> Result<()> {
        let started = Instant::now();
        let entry = self.entry.lock().await;
        if self.held.lock().expect("gate lock").lock.is_some() {
            return Ok(()); // this process is the writer: its view is current
        }
        if self
            .current_at
            .lock()
            .expect("gate lock")
            .is_some_and(&current_enough)
        {
            return Ok(());
        }
        // Read again a few times before asking for the lock: a reader
        // waiting for it would wait for as long as a writer is at work.
        for _ in 0..UNLOCKED_CATCH_UPS {
            if let Ok(refreshed) = self.journal.refresh(false).await {
                self.allocator.follow(refreshed)?;
                self.note_current(started);
                return Ok(());
            }
        }
        drop(entry);
        drop(self.enter().await?);
        self.note_current(started);
        Ok(())
    }

    /// Catches up unless this handle's view was current within `staleness`
    /// (or it holds the writer lock); returns whether it read the log now.
    pub async fn catch_up_within(self: &Arc<Self>, staleness: Duration) -> Result<bool> {
        let recent = self
            .current_at
            .lock()
            .expect("gate lock")
            .is_some_and(|at| at.elapsed() < staleness);
        if recent || self.held.lock().expect("gate lock").lock.is_some() {
            return Ok(false);
        }
        // Reads that found the view stale together share one catch-up
        // (one that began before them is recent enough): each waiting for
        // its own, in turn, held a zarr read of 1,000 chunks on Garage
        // behind 25 catch-ups of two requests each.
        let started = Instant::now();
        self.catch_up_unless(|at| at >= started || at.elapsed() < staleness)
            .await?;
        Ok(true)
    }

    /// Notes that the index was loaded from the backend, by a load begun
    /// at `at`: reads within the backend's staleness of it need no catch-up.
    pub fn note_loaded(&self, at: Instant) {
        self.note_current(at);
    }

    /// Notes that the view was current at `at` (what was committed before
    /// it is in the index).
    fn note_current(&self, at: Instant) {
        let mut current_at = self.current_at.lock().expect("gate lock");
        if current_at.is_none_or(|before| before < at) {
            *current_at = Some(at);
        }
    }

    /// Gives back a lingering writer lock now, and waits until the last one
    /// this process held is given back.
    pub async fn released(&self) {
        let lingering = {
            let mut held = self.held.lock().expect("gate lock");
            if held.holders == 0 {
                held.lock.take()
            } else {
                None
            }
        };
        let took_lingering = lingering.is_some();
        if let Some(lock) = lingering {
            self.release(lock).await;
        }
        let task = self.releasing.lock().expect("gate lock").take();
        if let Some(task) = task {
            if took_lingering {
                // A release after the linger, whose lock was just released
                // here: it need not sleep the linger out (a second on S3,
                // which every `close` waited).
                self.linger_cut.notify_waiters();
            }
            let _ = task.await;
        }
    }

    /// Gives the writer lock back now (unless a caller of this process is
    /// inside) and leaves it free for the backend's linger, so that a
    /// writer of another process waiting for it takes it: a long job that
    /// enters the gate again and again (compaction) lets others write in
    /// between.
    pub async fn yield_lock(&self) {
        self.released().await;
        tokio::time::sleep(self.backend.writer_lock_linger()).await;
    }

    /// Releases `lock`, taken out of `held`, once this process's writes are done.
    fn release(&self, lock: Arc<dyn WriterLock>) -> impl std::future::Future<Output = ()> + use<> {
        // Up to here nobody else could write: the view is current now.
        self.note_current(Instant::now());
        self.journal.set_writer_lock(None);
        // A failed put may leave pad uploads in flight; they must land
        // before another process may write those pads. So must the index
        // write after the last append (a checkpoint, deletes).
        let (allocator, journal) = (Arc::clone(&self.allocator), Arc::clone(&self.journal));
        async move {
            allocator.writer_idle().await;
            journal.flushed().await;
            lock.release().await;
            drop(lock);
        }
    }

    /// After the last holder left: releases the lock after the linger,
    /// unless the gate was entered again meanwhile.
    async fn release_after_linger(self: Arc<Self>, entries: u64) {
        // Cut short by `released`; waking early only shortens the linger.
        let cut = self.linger_cut.notified();
        tokio::select! {
            () = tokio::time::sleep(self.backend.writer_lock_linger()) => {}
            () = cut => {}
        }
        let lock = {
            let mut held = self.held.lock().expect("gate lock");
            if held.holders > 0 || held.entries != entries {
                return;
            }
            held.lock.take()
        };
        if let Some(lock) = lock {
            self.release(lock).await;
        }
    }
}

/// How long a writer keeps the lock, on a backend whose lock lingers
/// `linger`, when catching up as it took the lock took `catch_up`.
fn turn_length(linger: Duration, catch_up: Duration) -> Duration {
    let base = (linger * TURN_LINGERS).max(MIN_TURN);
    (catch_up * TURN_PER_CATCH_UP).clamp(base, base.max(MAX_TURN))
}

impl Clone for WriterGuard {
    fn clone(&self) -> Self {
        self.gate.held.lock().expect("gate lock").holders += 1;
        Self {
            gate: Arc::clone(&self.gate),
        }
    }
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        let mut held = self.gate.held.lock().expect("gate lock");
        held.holders -= 1;
        if held.holders > 0 {
            return;
        }
        let turn = held.turn;
        let turn_over = held.taken_at.is_some_and(|at| at.elapsed() >= turn);
        let hand_over = turn_over && held.lock.as_ref().is_some_and(|l| l.others_waiting());
        if turn_over && !hand_over {
            // Nobody waits: a new turn, without a release and a handover.
            held.taken_at = Some(Instant::now());
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) if hand_over => {
                // End of a turn: give the lock back now, and let the next
                // entry of this process wait for a writer of another.
                let lock = held.lock.take().expect("checked");
                held.handover_until =
                    Some(Instant::now() + self.gate.backend.writer_lock_handover());
                let task = runtime.spawn(self.gate.release(lock));
                *self.gate.releasing.lock().expect("gate lock") = Some(task);
            }
            Ok(runtime) => {
                let task = runtime.spawn(Arc::clone(&self.gate).release_after_linger(held.entries));
                *self.gate.releasing.lock().expect("gate lock") = Some(task);
            }
            Err(_) => {
                self.gate.journal.set_writer_lock(None);
                drop(held.lock.take());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_turn_outlasts_the_catch_up_that_began_it_within_bounds() {
        let ms = Duration::from_millis;
        // A folder: 5 ms lingers, a quick catch-up: the 50 ms floor.
        assert_eq!(turn_length(ms(5), ms(1)), MIN_TURN);
        // Catching up took three 20 ms round trips: ten times that.
        assert_eq!(turn_length(ms(5), ms(60)), ms(600));
        // A slower one is capped, so a waiting writer's wait is bounded.
        assert_eq!(turn_length(ms(5), ms(400)), MAX_TURN);
        // S3's lease lingers a second: ten lingers, neither less nor more.
        assert_eq!(turn_length(ms(1000), ms(60)), ms(10_000));
        assert_eq!(turn_length(ms(1000), ms(2000)), ms(10_000));
    }
}
