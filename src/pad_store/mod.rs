//! The pad network: where a store's objects live (its pads, and its index
//! log, checkpoints, metadata and writer lease).
//!
//! The interface the core uses is [`Backend`]: object operations, plus a
//! [`Capabilities`] value the core asks instead of knowing which backend it
//! has, and writer locking ([`WriterLocking`]) as a small trait of its own.
//! Every backend (memory, local folder, S3) is an [`object::ObjectPadStore`]
//! over an `object_store` client; [`sim::SimPadStore`] wraps any of them with
//! latency, failures, prices and counters. [`open`] chooses by URL.
//!
//! A new `object_store` backend (GCS, Azure) is one file like `s3.rs`, which
//! parses its URL and options and builds an [`object::ObjectPadStore`], plus
//! one branch in `url.rs`'s scheme match. Failures it shares with S3 (HTTP
//! statuses, network errors) are classified already (`classify.rs`).

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

mod classify;
mod folder;
mod lease;
pub mod object;
mod redact;
mod s3;
pub mod sim;
mod url;

pub use self::folder::FolderWriter;
pub(crate) use self::folder::{create_folder_durably, publish as replace_file};
pub use self::redact::{CREDENTIAL_OPTIONS, REDACTED, is_credential, redact_url};
pub use self::url::{BackendOptions, is_url, open};
pub use sim::{OpKind, Phase, SimConfig, SimPadStore, SimStats};

pub use crate::backend_error::{BackendError, check_size};

/// What a backend answered to a `put`, to verify the commit against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PutReceipt {
    /// The backend's version tag (ETag or version id), if it gives one.
    pub e_tag: Option<String>,
    /// Bytes written.
    pub size: u64,
}

/// A store of named objects on a pad network.
///
/// Names are relative paths such as `p/3fa9…` made of `[a-z0-9/._-]`; every
/// method is safe to call concurrently. Errors are [`BackendError`]s; none of
/// the methods retry (the caller does, see `retry.rs`). `Any` lets a caller
/// find a wrapper it knows, such as the simulation's counters
/// ([`SimPadStore::of`]), without the interface carrying them.
#[async_trait]
pub trait Backend: WriterLocking + std::any::Any + Send + Sync + std::fmt::Debug {
    /// Creates `name` with `content` if it does not exist yet: the costly act
    /// on a pad network (a new scratchpad). [`BackendError::AlreadyExists`]
    /// if it is already there.
    async fn reserve(&self, name: &str, content: Bytes) -> Result<(), BackendError>;

    /// Replaces the whole content of `name` atomically (a reader sees the old
    /// or the new content, never a mix), creating it if absent.
    async fn put(&self, name: &str, content: Bytes) -> Result<PutReceipt, BackendError>;

    /// Like `put`, but on stable storage when it returns, whatever the
    /// store's own durability setting: for an object whose loss would lose
    /// others (an index checkpoint, written before the log objects it
    /// replaces are deleted). A put acknowledged by a network service is
    /// durable already, hence the default.
    async fn put_durable(&self, name: &str, content: Bytes) -> Result<PutReceipt, BackendError> {
        self.put(name, content).await
    }

    /// Like `reserve`, but on stable storage when it returns, whatever the
    /// store's own durability setting: for an object without which nothing
    /// else in the store can be read (a new store's metadata, which holds its
    /// id and so its keys).
    async fn reserve_durable(&self, name: &str, content: Bytes) -> Result<(), BackendError> {
        self.reserve(name, content).await
    }

    /// Checks that a put is durably accepted: the object exists with the
    /// receipt's size (and version tag, where the backend gives one).
    async fn verify(&self, name: &str, receipt: &PutReceipt) -> Result<(), BackendError>;

    /// What `name` holds now, as a receipt (size and version tag) that
    /// [`Backend::verify`] can later check against: how a local copy of an
    /// object's content notices that the object changed since. A backend
    /// that cannot tell refuses, and the copy is not kept.
    async fn head(&self, name: &str) -> Result<PutReceipt, BackendError> {
        Err(BackendError::Permanent(format!(
            "{} cannot describe object {name:?}",
            self.describe()
        )))
    }

    /// Reads the whole content of `name`.
    async fn get(&self, name: &str) -> Result<Bytes, BackendError>;

    /// Reads the whole content of `name` if it holds at most `max_size`
    /// bytes; [`BackendError::TooLarge`] if it holds more. A backend that
    /// learns the size before the content overrides this to refuse without
    /// reading (a foreign object of any size must not make anthill allocate
    /// its size); this default reads first, and a wrapper passes it on.
    async fn get_capped(&self, name: &str, max_size: u64) -> Result<Bytes, BackendError> {
        let content = self.get(name).await?;
        check_size(name, content.len() as u64, max_size)?;
        Ok(content)
    }

    /// Reads several objects whole, each as `get_capped` does: one result
    /// per name, in order. Default: all at once. A local folder reads them
    /// one after another on one blocking thread: a read each cost two
    /// handoffs between threads, most of the time a writer spent catching up
    /// on the log objects of another writer's turn.
    async fn get_many(&self, names: &[String], max_size: u64) -> Vec<Result<Bytes, BackendError>> {
        futures::future::join_all(names.iter().map(|name| self.get_capped(name, max_size))).await
    }

    /// Reads bytes `range` of `name` (one request). A range reaching past the end is cut
    /// at the end; one starting past it is an error. Default: `get` and slice.
    async fn get_range(
        &self,
        name: &str,
        range: std::ops::Range<u64>,
    ) -> Result<Bytes, BackendError> {
        let content = self.get(name).await?;
        let len = content.len() as u64;
        if range.start >= len || range.end < range.start {
            return Err(BackendError::Permanent(format!(
                "range {range:?} of object {name:?} starts past its {len} bytes"
            )));
        }
        Ok(content.slice(range.start as usize..range.end.min(len) as usize))
    }

    /// Names of all objects whose name starts with `prefix`, in no order.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, BackendError>;

    /// Deletes `name`; deleting a missing object is not an error.
    async fn delete(&self, name: &str) -> Result<(), BackendError>;

    /// Deletes what interrupted writes left behind (a local folder's staging
    /// files after a crash). Call with the writer lock held. Returns how many
    /// were removed.
    async fn remove_partial_writes(&self) -> Result<usize, BackendError> {
        Ok(0)
    }

    /// What this backend can do and what it charges (see [`Capabilities`]);
    /// fixed when the backend is opened.
    fn capabilities(&self) -> &Capabilities;

    /// A short description for messages, such as `file:///data/store`.
    fn describe(&self) -> String;
}

/// How far behind other writers an item read on a network service (S3, and
/// `sim+`, which models one) may be (`Capabilities::read_staleness`): a
/// loop of reads checks the log once a second, not once per read.
pub const NETWORK_READ_STALENESS: Duration = Duration::from_secs(1);

/// What a [`Backend`] can do, which the core asks instead of knowing which
/// backend it has. A wrapper passes its inner backend's on, changed where
/// it changes them (the simulation sets a price and sees every call).
#[derive(Debug, Clone)]
pub struct Capabilities {
    /// `reserve` is an atomic create-if-absent: of writers reserving one
    /// name at once, exactly one succeeds. Where it is not (an S3 service
    /// may ignore conditional writes), only the writer lock keeps two
    /// writers from creating the same object.
    pub atomic_create: bool,
    /// A pad costs nothing here until written (a local folder, S3), so
    /// anthill reserves it without a call and its first write creates it. A
    /// file per reservation would cost an inode, and later a rename over it,
    /// for nothing, and a large part of a large put's time on a folder. A
    /// recorded pad without an object then holds nothing (version 0).
    pub pads_created_on_first_write: bool,
    /// A recorded pad with no object reads as empty (version 0): where pads
    /// are created on first write, by this handle or by another process that
    /// opened the store without a wrapper that reserves pads by a call
    /// (`sim+`, to count and price them).
    pub missing_pads_read_empty: bool,
    /// Deleting a pad refunds what it cost (a folder frees disk, S3 and
    /// memory stop storing it), so a compaction deletes the pads it empties;
    /// where a pad once paid for stays paid for, they are kept as free
    /// space instead.
    pub deleting_pads_refunds: bool,
    /// The price of one new pad, where the network charges one.
    pub price_per_pad: Option<f64>,
    /// How far behind other writers an item read may be: a read first
    /// checks the log for what they committed unless this handle's view was
    /// current that recently. Zero where that check is a local file probe;
    /// on a network service, where it is a request, reads trade a bounded
    /// delay for not paying it every time (`Store::refresh` catches up now).
    pub read_staleness: Duration,
    /// A ranged read ([`Backend::get_range`]) costs only its range (memory
    /// slices, a folder reads just those bytes, S3 sends a `Range` header):
    /// then a reader fetches only the segments of a pad it needs. Where it
    /// is false `get_range` reads the whole object, and readers read pads
    /// whole instead.
    pub ranged_reads: bool,
    /// Where set, a ranged read of a pad asks for bytes up to the next
    /// multiple of this in the object (the object's end at most) and drops
    /// the extra. Garage streams an object in 64 KiB chunks of its 1 MiB
    /// blocks without `TCP_NODELAY`: a response ending in a short chunk
    /// (a pad's frames end a few bytes past a chunk, since each frame is 53
    /// bytes longer than its segment) waits for the client's delayed ACK,
    /// 40 ms on Linux, several times what the read costs otherwise.
    pub range_read_granule: Option<u64>,
    /// An acknowledged put is what every later read of the name sees, so a
    /// pad write needs no check after it (`Backend::verify`, a `HEAD` on
    /// S3): the service is read-after-write consistent (AWS S3, R2, MinIO;
    /// Garage with its default quorums) and the writer lease fences every
    /// other writer off the store, whose pad names are random besides. Not
    /// on a local folder or in memory, where the check costs no request.
    pub acknowledged_puts_visible: bool,
    /// A put over an existing object that is interrupted (its writer
    /// killed, its connection dropped) leaves the old object or the new
    /// one, never neither: a file renamed into place, memory. Not on S3:
    /// Garage 2.x then loses both (docs/s3.md), and a service cannot be
    /// told apart by its answers; there a pad's versions alternate between
    /// two objects (`PadId::object_name_for`).
    pub overwrites_atomic: bool,
    /// Direct folder writes: a local folder's writer, whose blocking `put`
    /// lets a pad be sealed and written by one call on one thread (see
    /// `folder.rs`). `None` for every other backend, and for wrappers that
    /// must see each put.
    pub folder_writer: Option<FolderWriter>,
}

/// What a plain backend offers (memory): atomic creates, pads reserved by a
/// call, deletes that refund, no price, no direct folder writes.
impl Default for Capabilities {
    fn default() -> Self {
        Capabilities {
            atomic_create: true,
            pads_created_on_first_write: false,
            missing_pads_read_empty: false,
            deleting_pads_refunds: true,
            price_per_pad: None,
            read_staleness: Duration::ZERO,
            ranged_reads: false,
            range_read_granule: None,
            acknowledged_puts_visible: false,
            overwrites_atomic: true,
            folder_writer: None,
        }
    }
}

/// How writers of one store exclude each other, across processes and
/// machines: a file lock on a local folder, a lease object on S3, a mutex
/// in memory.
#[async_trait]
pub trait WriterLocking: Send + Sync {
    /// Waits for and takes the exclusive right to change this store (append
    /// to its index, reserve pads), across processes and machines, for the
    /// store handle `holder` (a random id). Released when the returned lock
    /// is dropped.
    async fn lock_writer(&self, holder: &[u8; 16]) -> Result<Box<dyn WriterLock>, BackendError>;

    /// Takes the writer lock if no one holds it, without waiting: `None` if
    /// someone does, or where telling would mean waiting (an S3 lease).
    /// Opening uses it to tidy up after crashed writers when no writer is
    /// at work, and leaves that to its first change otherwise.
    async fn try_lock_writer(
        &self,
        _holder: &[u8; 16],
    ) -> Result<Option<Box<dyn WriterLock>>, BackendError> {
        Ok(None)
    }

    /// How long a process keeps the writer lock after its last change, so
    /// that a loop of changes takes it once, not once per change. Others
    /// wait that much longer for it.
    fn writer_lock_linger(&self) -> Duration {
        Duration::ZERO
    }

    /// How long a writer that gave the lock back at the end of its turn
    /// waits before asking again, so that a writer waiting for it takes it
    /// meanwhile: a moment where a release wakes the waiters (a file lock),
    /// longer where waiters find out by polling (an S3 lease).
    fn writer_lock_handover(&self) -> Duration {
        Duration::from_millis(2)
    }
}

/// A held writer lock (see [`WriterLocking::lock_writer`]); dropping
/// releases it.
#[async_trait]
pub trait WriterLock: Send + Sync {
    /// Fails if the lock is no longer ours (an expired lease); checked before
    /// every index write.
    async fn check(&self) -> Result<(), BackendError> {
        Ok(())
    }

    /// Gives the lock back now (a lease is deleted rather than left to
    /// expire); dropping without it releases in the background.
    async fn release(&self) {}

    /// Whether the holder that took this lock was also the last to hold it
    /// before: then nobody else changed the store in between, and the holder
    /// need not catch up (a round trip saved before a put's first
    /// reservation). `false` where the lock cannot tell (S3 leases).
    fn undisturbed(&self) -> bool {
        false
    }

    /// Whether another writer may be waiting for this lock: the holder
    /// gives it back at the end of its turn only then. `true` where the
    /// lock cannot tell (S3 leases, whose waiters only poll), so that a
    /// writer in a loop of changes never keeps the others out.
    fn others_waiting(&self) -> bool {
        true
    }
}
