//! The held lease: the fence every write is checked against, the renewal in
//! the background, and the release.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use object_store::{ObjectStoreExt, PutMode, UpdateVersion};
use tokio::sync::OwnedMutexGuard;

use super::record::{Current, Record};
use super::{BackendError, Lease, is_refused_condition, margin, now_ms};
use crate::pad_store::WriterLock;

/// How long a release on drop may take before it is left to expire.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);

impl Lease {
    /// Until when a write of this handle to `name` may still be sent (see the
    /// fence in the module documentation), or why none may: no lease held,
    /// the lease lost, or renewals too long overdue. Never a round trip.
    /// `started`: the write is under way already, and a refusal abandons it.
    pub fn write_deadline(&self, name: &str, started: bool) -> Result<Instant, BackendError> {
        let held = self.held.lock().expect("lease slot").clone();
        let Some(state) = held else {
            return Err(BackendError::Permanent(format!(
                "{name:?} was not written: this handle does not hold the writer lease of {}, \
                 and writes to the store are made only under it",
                self.url
            )));
        };
        let deadline = state.lock().expect("lease state").write_deadline(self);
        deadline.map_err(|why| {
            let outcome = if started {
                "the write of it was abandoned and may or may not have landed"
            } else {
                "it was not written"
            };
            BackendError::Permanent(format!(
                "lost the writer lease while writing {name:?}: {why}; {outcome}, as another \
                 writer may have taken over: retry the operation"
            ))
        })
    }

    /// Marks the held lease lost, as a renewal finding another writer's does.
    #[cfg(test)]
    pub fn mark_lost_for_test(&self) {
        if let Some(state) = self.held.lock().expect("lease slot").as_ref() {
            state.lock().expect("lease state").lost = Some("taken over (test)".into());
        }
    }

    /// Forgets the held lease: from now on the fence refuses every write.
    fn forget_held(&self) {
        *self.held.lock().expect("lease slot") = None;
    }

    /// Starts renewing a freshly written lease.
    pub(super) fn hold(
        self: &Arc<Self>,
        guard: OwnedMutexGuard<()>,
        record: Record,
        e_tag: Option<String>,
        renewed_at: Instant,
        conditional: bool,
    ) -> HeldLease {
        let state = Arc::new(std::sync::Mutex::new(HeldState {
            valid_until: renewed_at + self.config.ttl,
            expires_ms: record.expires_ms,
            e_tag,
            lost: None,
        }));
        *self.held.lock().expect("lease slot") = Some(Arc::clone(&state));
        let renewal = tokio::spawn(renew_forever(
            Arc::clone(self),
            record.clone(),
            Arc::clone(&state),
            conditional,
        ));
        HeldLease {
            lease: Arc::clone(self),
            token: record.token,
            state,
            renewal,
            guard: std::sync::Mutex::new(Some(guard)),
        }
    }

    /// Rewrites our lease with a later expiry. `Err(None)` if the lease is no
    /// longer ours, `Err(Some(_))` for a failure worth trying again.
    async fn renew(
        &self,
        record: &mut Record,
        e_tag: Option<String>,
        conditional: bool,
    ) -> Result<Option<String>, Option<BackendError>> {
        record.expires_ms = now_ms() + self.config.ttl.as_millis() as u64;
        if conditional {
            let mode = PutMode::Update(UpdateVersion {
                e_tag,
                version: None,
            });
            return match self.write(record, mode).await {
                Ok(result) => Ok(result.e_tag),
                Err(error) if is_refused_condition(&error) => Err(None),
                Err(error) => Err(Some(self.error(error))),
            };
        }
        let current = self.read().await.map_err(Some)?;
        let ours = current
            .as_ref()
            .and_then(|current| current.record.as_ref())
            .is_some_and(|current| current.token == record.token);
        if !ours {
            return Err(None);
        }
        self.write(record, PutMode::Overwrite)
            .await
            .map(|result| result.e_tag)
            .map_err(|error| Some(self.error(error)))
    }

    /// Deletes the lease if it still carries `token`.
    async fn release(&self, token: &str) {
        match self.read().await {
            Ok(Some(Current {
                record: Some(record),
                ..
            })) if record.token == token => {
                if let Err(error) = self.store.delete(&self.path).await {
                    log::warn!(
                        "{}: could not release the writer lease ({}); it expires in {} s",
                        self.url,
                        self.error(error),
                        self.config.ttl.as_secs()
                    );
                }
            }
            Ok(_) => {}
            Err(error) => log::warn!(
                "{}: could not release the writer lease ({error}); it expires in {} s",
                self.url,
                self.config.ttl.as_secs()
            ),
        }
    }
}

/// What the holder and its renewal task share. The mutex protects only
/// these fields and is never held across I/O.
#[derive(Debug)]
pub(super) struct HeldState {
    /// Until when the lease is surely ours: the start of the last successful
    /// write plus the lifetime.
    pub(super) valid_until: Instant,
    /// The expiry that write put in the object (wall-clock milliseconds),
    /// which other writers compare with their clocks. Checked as well as
    /// `valid_until` because the monotonic clock stops while the machine
    /// sleeps (a closed laptop lid) and the wall clock does not.
    pub(super) expires_ms: u64,
    e_tag: Option<String>,
    /// Why the lease is no longer ours, once it is not.
    pub(super) lost: Option<String>,
}

impl HeldState {
    /// Until when a write may be sent under this lease, or why none may.
    fn write_deadline(&self, lease: &Lease) -> Result<Instant, String> {
        if let Some(why) = &self.lost {
            return Err(why.clone());
        }
        let now = Instant::now();
        let by_wall_clock = Duration::from_millis(self.expires_ms.saturating_sub(now_ms()));
        let left = self
            .valid_until
            .saturating_duration_since(now)
            .min(by_wall_clock);
        let margin = margin(lease.config.ttl);
        if left <= margin {
            return Err(format!(
                "the writer lease of {} was not renewed in time (the process was paused, or \
                 the service unreachable) and may have expired",
                lease.url
            ));
        }
        Ok(now + (left - margin))
    }
}

/// Renews the lease every third of its lifetime (every second after a
/// failed renewal) until aborted or the lease is found lost.
async fn renew_forever(
    lease: Arc<Lease>,
    mut record: Record,
    state: Arc<std::sync::Mutex<HeldState>>,
    conditional: bool,
) {
    let period = lease.config.ttl / 3;
    let mut pause = period;
    loop {
        tokio::time::sleep(pause).await;
        let e_tag = state.lock().expect("lease state").e_tag.clone();
        let started = Instant::now();
        match lease.renew(&mut record, e_tag, conditional).await {
            Ok(e_tag) => {
                let mut state = state.lock().expect("lease state");
                state.valid_until = started + lease.config.ttl;
                state.expires_ms = record.expires_ms;
                state.e_tag = e_tag;
                pause = period;
            }
            Err(None) => {
                state.lock().expect("lease state").lost = Some(format!(
                    "another writer took over the writer lease of {}",
                    lease.url
                ));
                return;
            }
            Err(Some(error)) => {
                log::warn!("{}: renewing the writer lease failed: {error}", lease.url);
                pause = Duration::from_secs(1).min(period);
            }
        }
    }
}

/// A held lease: renewed in the background, released on drop.
pub(super) struct HeldLease {
    lease: Arc<Lease>,
    token: String,
    state: Arc<std::sync::Mutex<HeldState>>,
    renewal: tokio::task::JoinHandle<()>,
    /// This handle's in-process lock, let go after the release; `None` once
    /// released. The mutex guards only the slot, never held across I/O.
    guard: std::sync::Mutex<Option<OwnedMutexGuard<()>>>,
}

impl HeldLease {
    /// Lets go of the lease now: deletes it (if still ours) before returning,
    /// instead of in the background on drop, so that a process about to exit
    /// leaves it free for the next one. Later calls and the drop do nothing.
    // Meant to back a `WriterLock::release` that the writer gate awaits when
    // it lets go (and on `Store::close`); unused until the trait has it.
    #[allow(dead_code)]
    pub async fn release_now(&self) {
        let Some(guard) = self.guard.lock().expect("lease guard").take() else {
            return;
        };
        self.renewal.abort();
        self.lease.forget_held();
        release_then_unlock(Arc::clone(&self.lease), self.token.clone(), guard).await;
    }
}

/// Deletes the lease if it carries `token` (bounded in time), then lets go
/// of the handle's in-process lock.
async fn release_then_unlock(lease: Arc<Lease>, token: String, guard: OwnedMutexGuard<()>) {
    if tokio::time::timeout(RELEASE_TIMEOUT, lease.release(&token))
        .await
        .is_err()
    {
        log::warn!(
            "{}: releasing the writer lease timed out; it expires in {} s",
            lease.url,
            lease.config.ttl.as_secs()
        );
    }
    drop(guard);
}

#[async_trait]
impl WriterLock for HeldLease {
    async fn release(&self) {
        self.release_now().await;
    }

    /// The fence's own check: no request. Another writer takes the lease
    /// only once it reads it expired by its own wall clock (or its holder's
    /// process gone, which ours is not while it runs this), and the fence
    /// passes only while the lease is still valid, with a margin, by both
    /// of this process's clocks since the start of its last successful
    /// write of the lease: so while it passes, no writer keeping to the
    /// protocol can hold the lease (within the clock skew and pause the
    /// margin covers, as for every other write). Reading the lease object
    /// back before each index write would add one round trip per small put
    /// and catch only what the protocol itself cannot exclude on a service
    /// that ignores conditional writes: two writers taking a free lease at
    /// the same moment. That race stays best-effort (see `docs/s3.md`): the
    /// acquisition's read-back settles most of it, and each renewal reads
    /// the lease first and stops this holder if it is another's.
    async fn check(&self) -> Result<(), BackendError> {
        let deadline = self
            .state
            .lock()
            .expect("lease state")
            .write_deadline(&self.lease);
        deadline.map(drop).map_err(|why| {
            BackendError::Permanent(format!(
                "{why}; nothing more is written under this lock (another writer may be \
                 changing the store): retry the operation"
            ))
        })
    }
}

impl Drop for HeldLease {
    fn drop(&mut self) {
        let Some(guard) = self.guard.get_mut().expect("lease guard").take() else {
            return;
        };
        self.renewal.abort();
        self.lease.forget_held();
        // In the background: a drop may run under the caller's locks, where
        // blocking on I/O could stall the very runtime the I/O needs. The
        // in-process lock is let go after the release, so this handle's next
        // writer finds the lease free. Without a runtime, or if the process
        // exits first, the lease is left to expire (see `release_now`).
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let release = release_then_unlock(Arc::clone(&self.lease), self.token.clone(), guard);
            handle.spawn(release);
        }
    }
}
