//! The writer lease of an S3 store: how two processes (or machines) writing
//! one S3 prefix keep out of each other's way.
//!
//! A lease is one small object, `<prefix>/lease`, naming its holder and an
//! expiry (wall-clock milliseconds):
//!
//! ```text
//! anthill-lease 1
//! owner 4f1c…-pid-1234
//! token 9ab0…
//! expires_ms 1767225600000
//! pid 1234
//! host 6ffe50b0-…/pid:[4026531836]
//! ```
//!
//! - **acquire**: wait until the lease is absent or expired, then write ours.
//!   Where the service honours conditional writes, the write is a
//!   create-if-absent or an update-if-unchanged (ETag), so exactly one of two
//!   racing writers wins. Where it ignores them (Garage 2.x answers 200 to a
//!   stale `If-Match`), the write is a plain put followed by a pause
//!   ([`SETTLE`]) and a read-back: the writer whose token is there after the
//!   pause holds it, the other goes back to waiting. That is best-effort (see
//!   `docs/s3.md`).
//! - **renew**: a background task rewrites the expiry every third of the
//!   lease's lifetime while the lock is held; a renewal that finds another
//!   token marks the lease lost.
//! - **fence** (every write of the store, see [`Lease::write_deadline`]):
//!   a write is sent only while this handle holds the lease and can prove,
//!   by its own clocks, that nobody else can see it expired yet: the last
//!   successful write of the lease, plus its lifetime, minus a margin
//!   ([`margin`]), is still ahead on the monotonic clock and on the wall
//!   clock. That is a local check, no round trip; a write still running at
//!   that deadline (unless renewals moved it) is abandoned.
//! - **check** (before every index write): the fence, without a request
//!   (see [`HeldLease::check`] for why no read of the lease is needed).
//! - **release** (on drop, in the background): delete the object if it
//!   still carries our token.
//! - A lease whose holder ran on this machine (same boot, same PID
//!   namespace: `host`) in a process that no longer exists is taken over at
//!   once rather than after its expiry: a crashed or exited script does not
//!   hold up the next one on the same machine.
//!
//! Whether the service honours conditional writes is probed once per handle,
//! on first use (a create-if-absent twice, then an update with a stale ETag,
//! on a scratch object), unless the `conditional_writes` option says so.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use object_store::path::Path;
use object_store::{
    ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, PutResult, UpdateVersion,
};
use tokio::sync::{OnceCell, OwnedMutexGuard};

use super::classify::classify_error;
use super::{BackendError, WriterLock};

/// The lease object's name under the store's prefix.
pub const LEASE_NAME: &str = "lease";
/// How long a lease lives without renewal, unless `lease_ttl_secs` says otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);
/// How long `lock_writer` waits for another writer's lease before giving up.
pub const DEFAULT_WAIT_LIMIT: Duration = Duration::from_secs(300);
/// Without conditional writes: the pause between writing our lease and
/// reading it back. A racing writer that saw the lease free at the same
/// moment as us has written its own by then (unless its request took longer
/// than this between its read and its write), and the later write wins.
const SETTLE: Duration = Duration::from_millis(250);
/// Polling a held lease: every 100–300 ms.
const POLL_MIN_MS: u64 = 100;
const POLL_JITTER_MS: u64 = 200;
/// How long a writer giving the lease back at the end of its turn waits
/// before asking again (`WriterLocking::writer_lock_handover`): a poll's
/// longest pause and a settle, so that a waiting writer finds it free and
/// has written its own claim by then. With the 2 ms a file lock needs, a
/// writer in a loop took the lease straight back, and R9 saw another wait
/// for it for minutes.
pub const HANDOVER: Duration =
    Duration::from_millis(POLL_MIN_MS + POLL_JITTER_MS + SETTLE.as_millis() as u64);
/// The part of a lease's lifetime its holder leaves unused: what may pass
/// between the fence's check and the request reaching the service, plus the
/// skew between this machine's clock and other writers' (they judge expiry
/// by the wall clock against the expiry we wrote).
pub fn margin(ttl: Duration) -> Duration {
    ttl / 6
}
/// How long a release on drop may take before it is left to expire.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(5);
const FORMAT: &str = "anthill-lease 1";
/// A lease object is a few short lines; a larger one is not a lease and is
/// not read.
const MAX_LEASE_LEN: u64 = 4096;

/// Whether to rely on the service's conditional writes (`If-None-Match: *`,
/// `If-Match`): the `conditional_writes` option of `s3://` URLs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConditionalWrites {
    /// Probe the service on first use.
    Auto,
    /// The service honours them (AWS S3, MinIO, R2): trust them.
    Honoured,
    /// The service ignores them (Garage 2.x): never rely on them.
    Ignored,
}

impl ConditionalWrites {
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "auto" => Some(Self::Auto),
            "true" | "yes" | "1" | "on" => Some(Self::Honoured),
            "false" | "no" | "0" | "off" => Some(Self::Ignored),
            _ => None,
        }
    }
}

/// The lease settings of one S3 store.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct LeaseConfig {
    pub conditional_writes: ConditionalWrites,
    /// Lifetime of a lease without renewal; renewed every third of it.
    pub ttl: Duration,
    /// How long to wait for another writer's lease.
    pub wait_limit: Duration,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            conditional_writes: ConditionalWrites::Auto,
            ttl: DEFAULT_TTL,
            wait_limit: DEFAULT_WAIT_LIMIT,
        }
    }
}

/// The lease object of one store handle, and the probe result.
#[derive(Debug)]
pub struct Lease {
    store: Arc<dyn ObjectStore>,
    /// `<prefix>/lease`.
    path: Path,
    /// The store's prefix, for the probe object.
    prefix: Path,
    url: String,
    bucket: String,
    config: LeaseConfig,
    /// This handle's name in the lease: a lease of ours left behind (a
    /// release that failed) is ours to take over, since `in_process` already
    /// excludes every other holder in this handle.
    owner: String,
    /// Excludes the writers of this handle from each other before any of
    /// them touches the lease object; held as long as the lease is.
    in_process: Arc<tokio::sync::Mutex<()>>,
    /// Whether the service honours conditional writes, once known.
    conditional: OnceCell<bool>,
    /// The state of the lease this handle holds, if any: what the fence
    /// checks every write against. The mutex guards only the slot.
    held: std::sync::Mutex<Option<Arc<std::sync::Mutex<HeldState>>>>,
}

/// What a lease object says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    owner: String,
    token: String,
    expires_ms: u64,
    /// The holder's process id, and where that id means something (see
    /// [`local_host`]; `-` if unknown).
    pid: u32,
    host: String,
}

impl Record {
    fn encode(&self) -> Bytes {
        Bytes::from(format!(
            "{FORMAT}\nowner {}\ntoken {}\nexpires_ms {}\npid {}\nhost {}\n",
            self.owner, self.token, self.expires_ms, self.pid, self.host
        ))
    }

    /// `None` for anything that is not a lease of this format.
    fn decode(content: &[u8]) -> Option<Record> {
        let text = std::str::from_utf8(content).ok()?;
        let mut lines = text.lines();
        if lines.next()? != FORMAT {
            return None;
        }
        let mut field = |name: &str| -> Option<String> {
            let (key, value) = lines.next()?.split_once(' ')?;
            (key == name).then(|| value.to_owned())
        };
        Some(Record {
            owner: field("owner")?,
            token: field("token")?,
            expires_ms: field("expires_ms")?.parse().ok()?,
            pid: field("pid")?.parse().ok()?,
            host: field("host")?,
        })
    }

    /// Whether the holder is a process of this machine that has exited.
    fn holder_has_exited(&self) -> bool {
        let Some(host) = local_host() else {
            return false;
        };
        self.host == *host
            && self.pid != std::process::id()
            && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

/// Where process ids of this process mean the same processes: the boot of
/// this machine and the PID namespace (a container sharing the host name
/// has its own). `None` where `/proc` does not tell (not Linux).
fn local_host() -> Option<&'static String> {
    static HOST: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        let namespace = std::fs::read_link("/proc/self/ns/pid").ok()?;
        let host = format!("{}/{}", boot.trim(), namespace.display());
        (!host.contains(char::is_whitespace)).then_some(host)
    })
    .as_ref()
}

/// A lease object as read: its record (`None` if unreadable, which counts as
/// expired) and version tag.
struct Current {
    record: Option<Record>,
    e_tag: Option<String>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as u64)
        .unwrap_or(0)
}

/// A lease token: from the OS generator, so a process forked from a holder
/// never draws the same one.
fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    if let Err(error) = getrandom::fill(&mut bytes) {
        panic!("the operating system's random generator failed: {error}");
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn is_refused_condition(error: &object_store::Error) -> bool {
    matches!(
        error,
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }
    )
}

impl Lease {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        prefix: Path,
        url: String,
        bucket: String,
        config: LeaseConfig,
    ) -> Self {
        let path = if prefix.as_ref().is_empty() {
            Path::from(LEASE_NAME)
        } else {
            prefix.clone().join(LEASE_NAME)
        };
        let conditional = match config.conditional_writes {
            ConditionalWrites::Auto => OnceCell::new(),
            ConditionalWrites::Honoured => OnceCell::new_with(Some(true)),
            ConditionalWrites::Ignored => OnceCell::new_with(Some(false)),
        };
        Lease {
            store,
            path,
            prefix,
            url,
            bucket,
            config,
            owner: format!("{}-pid-{}", random_hex(), std::process::id()),
            in_process: Arc::new(tokio::sync::Mutex::new(())),
            conditional,
            held: std::sync::Mutex::new(None),
        }
    }

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

    /// Whether the service honours conditional writes, if known yet.
    pub fn conditional_known(&self) -> Option<bool> {
        self.conditional.get().copied()
    }

    fn error(&self, error: object_store::Error) -> BackendError {
        classify_error(error, LEASE_NAME, &self.url, Some(&self.bucket))
    }

    /// Whether the service honours conditional writes: probed once.
    pub async fn conditional_writes(&self) -> Result<bool, BackendError> {
        self.conditional
            .get_or_try_init(|| self.probe_conditional_writes())
            .await
            .copied()
    }

    /// Creates a scratch object twice with create-if-absent, then updates it
    /// with a stale ETag: a service that honours conditional writes refuses
    /// both the second create and the update.
    async fn probe_conditional_writes(&self) -> Result<bool, BackendError> {
        let name = format!("{LEASE_NAME}-probe-{}", random_hex());
        let path = if self.prefix.as_ref().is_empty() {
            Path::from(name.as_str())
        } else {
            self.prefix.clone().join(name.as_str())
        };
        let put = |mode: PutMode| {
            let options = PutOptions {
                mode,
                ..PutOptions::default()
            };
            self.store
                .put_opts(&path, PutPayload::from_static(b"probe"), options)
        };
        let honoured = async {
            match put(PutMode::Create).await {
                Ok(_) => {}
                // The client itself refuses (conditional_put=disabled).
                Err(object_store::Error::NotImplemented { .. }) => return Ok(false),
                Err(error) => return Err(self.error(error)),
            }
            match put(PutMode::Create).await {
                Err(error) if is_refused_condition(&error) => {}
                Ok(_) => return Ok(false),
                Err(_) => return Ok(false),
            }
            let stale = UpdateVersion {
                e_tag: Some("\"anthill-stale-etag\"".into()),
                version: None,
            };
            match put(PutMode::Update(stale)).await {
                Err(error) if is_refused_condition(&error) => Ok(true),
                _ => Ok(false),
            }
        }
        .await;
        let _ = self.store.delete(&path).await;
        let honoured = honoured?;
        if honoured {
            log::debug!("{} honours conditional writes", self.url);
        } else {
            log::info!(
                "{} ignores conditional writes: writers exclude each other by a lease \
                 with expiry (best-effort, see docs/s3.md)",
                self.url
            );
        }
        Ok(honoured)
    }

    /// Reads the lease object; `None` if there is none.
    async fn read(&self) -> Result<Option<Current>, BackendError> {
        let result = match self.store.get(&self.path).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(self.error(error)),
        };
        let e_tag = result.meta.e_tag.clone();
        let record = if result.meta.size > MAX_LEASE_LEN {
            None
        } else {
            let content = result.bytes().await.map_err(|error| self.error(error))?;
            Record::decode(&content)
        };
        if record.is_none() {
            log::warn!(
                "{}: the lease object {} is not an anthill lease; treating it as expired",
                self.url,
                self.path
            );
        }
        Ok(Some(Current { record, e_tag }))
    }

    async fn write(&self, record: &Record, mode: PutMode) -> object_store::Result<PutResult> {
        let options = PutOptions {
            mode,
            ..PutOptions::default()
        };
        self.store
            .put_opts(&self.path, PutPayload::from(record.encode()), options)
            .await
    }

    /// Waits for the lease and takes it (see the module documentation).
    pub async fn acquire(self: &Arc<Self>) -> Result<Box<dyn WriterLock>, BackendError> {
        let guard = Arc::clone(&self.in_process).lock_owned().await;
        let conditional = self.conditional_writes().await?;
        let token = random_hex();
        let started = Instant::now();
        loop {
            let current = self.read().await?;
            let now = now_ms();
            if let Some(holder) = self.other_holder(current.as_ref(), now) {
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

    /// The holder of `current` if it is another writer's and still valid
    /// (unexpired at `now`, and its process not known to have exited).
    fn other_holder<'a>(&self, current: Option<&'a Current>, now: u64) -> Option<&'a Record> {
        current
            .and_then(|current| current.record.as_ref())
            .filter(|record| {
                record.expires_ms > now && record.owner != self.owner && !record.holder_has_exited()
            })
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

    /// Starts renewing a freshly written lease.
    fn hold(
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
struct HeldState {
    /// Until when the lease is surely ours: the start of the last successful
    /// write plus the lifetime.
    valid_until: Instant,
    /// The expiry that write put in the object (wall-clock milliseconds),
    /// which other writers compare with their clocks. Checked as well as
    /// `valid_until` because the monotonic clock stops while the machine
    /// sleeps (a closed laptop lid) and the wall clock does not.
    expires_ms: u64,
    e_tag: Option<String>,
    /// Why the lease is no longer ours, once it is not.
    lost: Option<String>,
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
struct HeldLease {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_garbage_is_none() {
        let record = Record {
            owner: "abc-pid-7".into(),
            token: "0123".into(),
            expires_ms: 1_700_000_000_000,
            pid: 7,
            host: "boot/pid:[1]".into(),
        };
        assert_eq!(Record::decode(&record.encode()), Some(record));
        assert_eq!(Record::decode(b"not a lease"), None);
        assert_eq!(Record::decode(b"anthill-lease 1\nowner x\n"), None);
    }

    #[test]
    fn conditional_writes_option_values() {
        assert_eq!(
            ConditionalWrites::parse("auto"),
            Some(ConditionalWrites::Auto)
        );
        assert_eq!(
            ConditionalWrites::parse("TRUE"),
            Some(ConditionalWrites::Honoured)
        );
        assert_eq!(
            ConditionalWrites::parse("false"),
            Some(ConditionalWrites::Ignored)
        );
        assert_eq!(ConditionalWrites::parse("maybe"), None);
    }

    fn memory_lease(conditional: ConditionalWrites, ttl: Duration) -> Arc<Lease> {
        let store: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        Arc::new(Lease::new(
            store,
            Path::from("pre"),
            "memory://lease-test".into(),
            "bucket".into(),
            LeaseConfig {
                conditional_writes: conditional,
                ttl,
                wait_limit: Duration::from_secs(5),
            },
        ))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_memory_honours_conditional_writes() {
        let lease = memory_lease(ConditionalWrites::Auto, DEFAULT_TTL);
        assert!(lease.conditional_writes().await.unwrap());
        // The probe cleaned up after itself.
        let left: Vec<_> = futures::TryStreamExt::try_collect::<Vec<_>>(lease.store.list(None))
            .await
            .unwrap();
        assert!(left.is_empty(), "{left:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stolen_lease_stops_its_holder_and_is_not_deleted_on_release() {
        for conditional in [ConditionalWrites::Honoured, ConditionalWrites::Ignored] {
            let ttl = Duration::from_millis(900);
            let lease = memory_lease(conditional, ttl);
            let held = lease.acquire().await.unwrap();
            held.check().await.unwrap();
            // Another writer overwrites it (as if ours had expired).
            let thief = Record {
                owner: "thief".into(),
                token: "stolen".into(),
                expires_ms: now_ms() + 60_000,
                pid: 1,
                host: "elsewhere".into(),
            };
            lease.write(&thief, PutMode::Overwrite).await.unwrap();
            // A renewal (every third of the lifetime) finds it taken; on a
            // busy machine perhaps not the first one due.
            let mut refused = None;
            for _ in 0..100 {
                tokio::time::sleep(ttl / 3).await;
                if let Err(error) = held.check().await {
                    refused = Some(error);
                    break;
                }
            }
            let error = refused.expect("a renewal stopped the holder");
            assert!(
                error.to_string().contains("another writer took over"),
                "{conditional:?}: {error}"
            );
            assert!(lease.write_deadline("p/x", false).is_err());
            drop(held);
            // The release runs in the background and lets go of this lock last.
            drop(lease.in_process.lock().await);
            let left = lease.read().await.unwrap().unwrap().record.unwrap();
            assert_eq!(left, thief, "{conditional:?}: the thief's lease stays");
        }
    }

    #[test]
    fn a_holder_that_exited_on_this_machine_is_gone() {
        let Some(host) = local_host() else {
            return; // not Linux: such leases wait for their expiry
        };
        // A child that has exited (and been reaped) is surely gone.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let record = |pid, host: &str| Record {
            owner: "o".into(),
            token: "t".into(),
            expires_ms: u64::MAX,
            pid,
            host: host.into(),
        };
        assert!(record(pid, host).holder_has_exited());
        assert!(!record(pid, "another-machine").holder_has_exited());
        assert!(!record(std::process::id(), host).holder_has_exited());
        assert!(!record(1, host).holder_has_exited(), "init is alive");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn release_now_deletes_the_lease_before_returning() {
        let lease = memory_lease(ConditionalWrites::Ignored, DEFAULT_TTL);
        let guard = Arc::clone(&lease.in_process).lock_owned().await;
        let record = Record {
            owner: lease.owner.clone(),
            token: "t".into(),
            expires_ms: now_ms() + 60_000,
            pid: std::process::id(),
            host: "-".into(),
        };
        lease.write(&record, PutMode::Overwrite).await.unwrap();
        let held = lease.hold(guard, record, None, Instant::now(), false);
        held.release_now().await;
        assert!(lease.read().await.unwrap().is_none());
        assert!(lease.in_process.try_lock().is_ok(), "unlocked");
        held.release_now().await;
        drop(held);
    }

    /// The state the fence checks, as the renewal task sees it.
    fn held_state(lease: &Lease) -> Arc<std::sync::Mutex<HeldState>> {
        lease.held.lock().unwrap().clone().expect("a lease is held")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_fence_refuses_writes_unless_the_lease_is_provably_ours() {
        let lease = memory_lease(ConditionalWrites::Honoured, Duration::from_secs(6));
        let refused = |lease: &Lease| lease.write_deadline("p/x", false).unwrap_err().to_string();
        assert!(refused(&lease).contains("does not hold the writer lease"));

        let held = lease.acquire().await.unwrap();
        let deadline = lease.write_deadline("p/x", false).unwrap();
        // The lifetime less the margin, from the write of the lease.
        assert!(deadline <= Instant::now() + Duration::from_secs(5));
        assert!(deadline > Instant::now() + Duration::from_secs(4));

        // Paused past the lifetime: the last renewal is too long ago.
        let state = held_state(&lease);
        let renewed = state.lock().unwrap().valid_until;
        state.lock().unwrap().valid_until = Instant::now() + margin(lease.config.ttl);
        assert!(
            refused(&lease).contains("lost the writer lease"),
            "{}",
            refused(&lease)
        );
        assert!(held.check().await.is_err());
        state.lock().unwrap().valid_until = renewed;
        lease.write_deadline("p/x", false).unwrap();

        // The machine slept (the monotonic clock stood still): the expiry
        // others read, by the wall clock, is what counts.
        let expires_ms = state.lock().unwrap().expires_ms;
        state.lock().unwrap().expires_ms = now_ms() + 500;
        assert!(refused(&lease).contains("lost the writer lease"));
        state.lock().unwrap().expires_ms = expires_ms;
        lease.write_deadline("p/x", false).unwrap();

        state.lock().unwrap().lost = Some("another writer took over".into());
        assert!(refused(&lease).contains("another writer took over"));

        drop(held);
        assert!(refused(&lease).contains("does not hold the writer lease"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_expired_lease_is_taken_over_and_renewal_keeps_it() {
        let lease = memory_lease(ConditionalWrites::Ignored, Duration::from_millis(600));
        let stale = Record {
            owner: "crashed".into(),
            token: "old".into(),
            expires_ms: now_ms().saturating_sub(1),
            pid: 1,
            host: "elsewhere".into(),
        };
        lease.write(&stale, PutMode::Overwrite).await.unwrap();
        let held = lease.acquire().await.unwrap();
        // Longer than the lifetime: only renewals keep it valid.
        tokio::time::sleep(Duration::from_millis(900)).await;
        held.check().await.unwrap();
        drop(held);
        drop(lease.in_process.lock().await);
        assert!(lease.read().await.unwrap().is_none(), "released on drop");
    }
}
