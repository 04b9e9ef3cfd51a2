//! The pad network: where pads (and the store's index objects) live.
//!
//! One small trait, [`PadStore`], over named objects. Every backend (memory,
//! local folder, S3) is an [`object::ObjectPadStore`] over an `object_store`
//! client; [`sim::SimPadStore`] wraps any of them with latency, failures,
//! prices and counters. [`open`] chooses by URL.

use async_trait::async_trait;
use bytes::Bytes;

mod folder;
mod lease;
pub mod object;
pub mod sim;
mod url;

pub use self::folder::FolderWriter;
pub(crate) use self::folder::{create_folder_durably, publish as replace_file};
pub use self::url::{
    BackendOptions, CREDENTIAL_OPTIONS, REDACTED, is_credential, open, redact_url,
};
pub use sim::{OpKind, SimConfig, SimPadStore, SimStats};

/// What a backend failure was, which decides whether to retry it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The object does not exist.
    #[error("object {0:?} is missing from the backend")]
    NotFound(String),
    /// `reserve` found the object already there.
    #[error("object {0:?} already exists on the backend")]
    AlreadyExists(String),
    /// A failure that may pass: timeout, connection reset, throttling, 5xx.
    #[error("{0} (transient; retried)")]
    Transient(String),
    /// A failure retrying will not fix: bad credentials, missing bucket,
    /// permission denied, disk full.
    #[error("{0}")]
    Permanent(String),
    /// [`PadStore::get_capped`] found the object larger than anything anthill
    /// writes under that name, and did not read it: not this store's object
    /// (or damaged). An integrity failure, not a backend one.
    #[error(
        "object {name:?} holds {size} bytes, more than the {max} anthill ever writes there: \
         it is not this store's (or it was damaged), and was not read"
    )]
    TooLarge { name: String, size: u64, max: u64 },
}

impl BackendError {
    pub fn is_transient(&self) -> bool {
        matches!(self, BackendError::Transient(_))
    }
}

/// [`BackendError::TooLarge`] if `size` exceeds `max_size`.
pub fn check_size(name: &str, size: u64, max_size: u64) -> Result<(), BackendError> {
    if size > max_size {
        return Err(BackendError::TooLarge {
            name: name.to_owned(),
            size,
            max: max_size,
        });
    }
    Ok(())
}

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
/// the methods retry (the caller does, see `retry.rs`).
#[async_trait]
pub trait PadStore: Send + Sync + std::fmt::Debug {
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
    /// [`PadStore::verify`] can later check against: how a local copy of an
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

    /// Names of all objects whose name starts with `prefix`, in no order.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, BackendError>;

    /// Deletes `name`; deleting a missing object is not an error.
    async fn delete(&self, name: &str) -> Result<(), BackendError>;

    /// The price of one new pad, where the network charges one.
    fn price_per_pad(&self) -> Option<f64> {
        None
    }

    /// Whether a pad costs nothing here until written (a local folder), so
    /// anthill reserves it without a call and its first write creates it. A
    /// file per reservation would cost an inode, and later a rename over it,
    /// for nothing: on a folder that was a third of a large put's time. A
    /// recorded pad without an object then holds nothing (version 0).
    fn pads_created_on_first_write(&self) -> bool {
        false
    }

    /// Whether a recorded pad with no object reads as empty (version 0):
    /// where pads are created on first write, by this handle or by another
    /// process that opened the store without a wrapper that reserves pads
    /// by a call (`sim+`, to count and price them).
    fn missing_pads_read_empty(&self) -> bool {
        self.pads_created_on_first_write()
    }

    /// Whether deleting a pad refunds what it cost (a folder frees disk, S3
    /// and memory stop storing it), so a compaction deletes the pads it
    /// empties; where a pad once paid for stays paid for, they are kept as
    /// free space instead.
    fn deleting_pads_refunds(&self) -> bool {
        true
    }

    /// A local folder's writer, whose blocking `put` lets a pad be sealed
    /// and written by one call on one thread (see `folder.rs`); `None` for
    /// every other backend, and for wrappers that must see each put.
    fn folder_writer(&self) -> Option<FolderWriter> {
        None
    }

    /// Counters of a simulated backend (`sim+` URLs); `None` for real ones.
    fn stats(&self) -> Option<SimStats> {
        None
    }

    /// A short description for messages, such as `file:///data/store`.
    fn describe(&self) -> String;

    /// Waits for and takes the exclusive right to change this store (append
    /// to its index, reserve pads), across processes and machines, for the
    /// store handle `holder` (a random id). Released when the returned lock
    /// is dropped.
    async fn lock_writer(&self, holder: &[u8; 16]) -> Result<Box<dyn WriterLock>, BackendError>;

    /// How long a process keeps the writer lock after its last change, so
    /// that a loop of changes takes it once, not once per change. Others
    /// wait that much longer for it.
    fn writer_lock_linger(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    /// Deletes what interrupted writes left behind (a local folder's staging
    /// files after a crash). Call with the writer lock held. Returns how many
    /// were removed.
    async fn remove_partial_writes(&self) -> Result<usize, BackendError> {
        Ok(0)
    }
}

/// A held writer lock (see [`PadStore::lock_writer`]); dropping releases it.
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
}
