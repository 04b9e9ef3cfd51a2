//! Taking the lease: waiting until it is free (or expired, or its holder
//! gone), then writing ours, with or without conditional writes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use object_store::{PutMode, UpdateVersion};

use super::record::{Current, Record, local_host};
use super::{
    BackendError, Lease, POLL_JITTER_MS, POLL_MIN_MS, SETTLE, is_refused_condition, now_ms,
    random_hex,
};
use crate::pad_store::WriterLock;

/// How long a lease whose holder's process has exited (on this machine) is
/// still waited for: a request that process sent before it died may yet
/// land, the service having it whole, and must not land over the next
/// holder's writes. The same bound the R9 harness grants a killed call on S3:
/// 2 s proved short on a loaded Garage, where a dead writer's log `PUT`
/// landed more than 2 s after its death (in CI, and locally after the S3 suite).
pub(super) const EXITED_HOLDER_SETTLE: Duration = Duration::from_secs(5);

impl Lease {
    /// Waits for the lease and takes it (see the module documentation).
    pub async fn acquire(self: &Arc<Self>) -> Result<Box<dyn WriterLock>, BackendError> {
        let guard = Arc::clone(&self.in_process).lock_owned().await;
        let conditional = self.conditional_writes().await?;
        let token = random_hex();
        let started = Instant::now();
        let mut exited_since = None;
        loop {
            let current = self.read().await?;
            let now = now_ms();
            if let Some(holder) = self.other_holder(current.as_ref(), now, &mut exited_since) {
                if started.elapsed() >= self.config.wait_limit {
                    return Err(self.gave_up_waiting(holder, now));
                }
                let pause = POLL_MIN_MS + rand::random::<u64>() % POLL_JITTER_MS;
                tokio::time::sleep(Duration::from_millis(pause)).await;
                continue;
            }
            // Free, expired, unreadable or a leftover of this handle: take it.
            let renewed_at = Instant::now();
            let record = Record {
                owner: self.owner.clone(),
                token: token.clone(),
                expires_ms: now_ms() + self.config.ttl.as_millis() as u64,
                pid: std::process::id(),
                host: local_host().cloned().unwrap_or_else(|| "-".into()),
            };
            let e_tag = if conditional {
                let mode = match current {
                    None => PutMode::Create,
                    Some(Current { e_tag, .. }) => PutMode::Update(UpdateVersion {
                        e_tag,
                        version: None,
                    }),
                };
                match self.write(&record, mode).await {
                    Ok(result) => result.e_tag,
                    // Another writer took it between our read and write.
                    Err(error) if is_refused_condition(&error) => continue,
                    Err(error) => return Err(self.error(error)),
                }
            } else {
                self.write(&record, PutMode::Overwrite)
                    .await
                    .map_err(|error| self.error(error))?;
                tokio::time::sleep(SETTLE).await;
                let back = self.read().await?;
                let ours = back
                    .as_ref()
                    .and_then(|back| back.record.as_ref())
                    .is_some_and(|back| back.token == token);
                if !ours {
                    // A racing writer's put landed after ours: it holds the lease.
                    continue;
                }
                back.and_then(|back| back.e_tag)
            };
            return Ok(Box::new(self.hold(
                guard,
                record,
                e_tag,
                renewed_at,
                conditional,
            )));
        }
    }

    /// The holder of `current` if it is another writer's and still valid:
    /// unexpired at `now`, and its process not seen exited for
    /// [`EXITED_HOLDER_SETTLE`] (`exited_since`: which lease this
    /// acquisition first saw so, and when).
    fn other_holder<'a>(
        &self,
        current: Option<&'a Current>,
        now: u64,
        exited_since: &mut Option<(String, tokio::time::Instant)>,
    ) -> Option<&'a Record> {
        let record = current?.record.as_ref()?;
        if record.expires_ms <= now || record.owner == self.owner {
            return None;
        }
        if !record.holder_has_exited() {
            return Some(record);
        }
        let seen = match exited_since {
            Some((token, seen)) if *token == record.token => *seen,
            _ => {
                exited_since
                    .insert((record.token.clone(), tokio::time::Instant::now()))
                    .1
            }
        };
        (seen.elapsed() < EXITED_HOLDER_SETTLE).then_some(record)
    }

    fn gave_up_waiting(&self, holder: &Record, now: u64) -> BackendError {
        BackendError::Permanent(format!(
            "gave up after {} s waiting for the writer lease of {}: another writer ({}) holds \
             it for {} s more; if that writer is gone, the lease expires by itself",
            self.config.wait_limit.as_secs(),
            self.url,
            holder.owner,
            (holder.expires_ms - now).div_ceil(1000)
        ))
    }
}
