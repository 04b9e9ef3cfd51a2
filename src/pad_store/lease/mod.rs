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
//!   (see [`HeldLease::check`](held::HeldLease::check) for why no read of
//!   the lease is needed).
//! - **release** (on drop, in the background): delete the object if it
//!   still carries our token.
//! - A lease whose holder ran on this machine (same boot, same PID
//!   namespace: `host`) in a process that no longer exists is taken over
//!   two seconds after it is first seen so (its last requests may still
//!   land), rather than after its expiry: a crashed or exited script does
//!   not hold up the next one on the same machine for long.
//!
//! Whether the service honours conditional writes is probed once per handle,
//! on first use (a create-if-absent twice, then an update with a stale ETag,
//! on a scratch object), unless the `conditional_writes` option says so.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use object_store::ObjectStore;
use object_store::path::Path;
use tokio::sync::OnceCell;

use self::held::HeldState;
use super::BackendError;
use super::classify::classify_error;

// By concept: the object's text format (`record`), the probe of the
// service, acquisition, and the held lease with its fence and renewal.
mod acquire;
mod held;
mod probe;
mod record;
#[cfg(test)]
mod tests;

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

    fn error(&self, error: object_store::Error) -> BackendError {
        classify_error(error, LEASE_NAME, &self.url, Some(&self.bucket))
    }
}
