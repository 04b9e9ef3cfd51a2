//! The options a store is opened with (and those of one put), their
//! defaults, and the checks `Store::open` makes on them.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::journal::DEFAULT_CHECKPOINT_INTERVAL;
use crate::meta::PAD_SIZES;
use crate::pad_store::{self, BackendOptions};
use crate::retry::RetryPolicy;

const MAX_CONCURRENCY: usize = 1024;

/// How to open a store.
#[derive(Clone)]
#[non_exhaustive]
pub struct StoreOptions {
    /// The secret all keys derive from (required).
    pub secret: Vec<u8>,
    /// Pad size of a new store; an existing store keeps its own (and a
    /// different value here is an error).
    pub pad_size: Option<u64>,
    /// Most new pads any one put may reserve.
    pub max_new_pads: Option<u64>,
    pub reservation_concurrency: usize,
    pub upload_concurrency: usize,
    pub download_concurrency: usize,
    /// Attempts per backend call (transient failures only).
    pub retry_attempts: u32,
    /// Extra backend settings (S3 endpoint, credentials…).
    pub backend: BackendOptions,
    /// Least bytes of index log between two index checkpoints (a checkpoint
    /// is also never smaller than the log it replaces).
    pub checkpoint_interval: u64,
    /// Where this machine remembers the newest index log position it has
    /// seen of each store, to detect a store rolled back to an older state
    /// (`None`: no memory, no check; memory stores are never checked).
    pub state_dir: Option<PathBuf>,
    /// Open a store that is behind what this machine has seen (a backup
    /// restored on purpose), and remember its state from now on.
    pub allow_rollback: bool,
    /// From how many items a store keeps a local copy of its index in
    /// `state_dir`, so that opening it reads a few kilobytes, not the whole
    /// index (see `index::cache`). Below it, loading is as fast.
    pub index_cache_min_items: u64,
}

/// See [`StoreOptions::index_cache_min_items`].
pub const DEFAULT_INDEX_CACHE_MIN_ITEMS: u64 = 10_000;

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            secret: Vec::new(),
            pad_size: None,
            max_new_pads: None,
            reservation_concurrency: 20,
            upload_concurrency: 20,
            download_concurrency: 20,
            retry_attempts: RetryPolicy::default().attempts,
            backend: BackendOptions::default(),
            checkpoint_interval: DEFAULT_CHECKPOINT_INTERVAL,
            state_dir: None,
            allow_rollback: false,
            index_cache_min_items: DEFAULT_INDEX_CACHE_MIN_ITEMS,
        }
    }
}

/// The secret redacted (and the backend's credentials, by
/// `BackendOptions`'s own `Debug`): debug output ends up in logs.
impl std::fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured, so a new field cannot be left out (or shown unredacted)
        // without this failing to compile.
        let StoreOptions {
            secret: _,
            pad_size,
            max_new_pads,
            reservation_concurrency,
            upload_concurrency,
            download_concurrency,
            retry_attempts,
            backend,
            checkpoint_interval,
            state_dir,
            allow_rollback,
            index_cache_min_items,
        } = self;
        f.debug_struct("StoreOptions")
            .field("secret", &pad_store::REDACTED)
            .field("pad_size", pad_size)
            .field("max_new_pads", max_new_pads)
            .field("reservation_concurrency", reservation_concurrency)
            .field("upload_concurrency", upload_concurrency)
            .field("download_concurrency", download_concurrency)
            .field("retry_attempts", retry_attempts)
            .field("backend", backend)
            .field("checkpoint_interval", checkpoint_interval)
            .field("state_dir", state_dir)
            .field("allow_rollback", allow_rollback)
            .field("index_cache_min_items", index_cache_min_items)
            .finish()
    }
}

/// Options of one put.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct PutOptions {
    /// Replace the key if it is stored.
    pub overwrite: bool,
    /// Finish an interrupted upload of the key (same data).
    pub resume: bool,
    /// Most new pads this put may reserve (overrides the store's cap).
    pub max_new_pads: Option<u64>,
}

pub(super) fn validate_options(options: &StoreOptions) -> Result<()> {
    if options.secret.is_empty() {
        return Err(Error::invalid("the store secret must not be empty"));
    }
    if let Some(size) = options.pad_size
        && !PAD_SIZES.contains(&size)
    {
        return Err(Error::invalid(format!(
            "pad_size must be between {} and {} bytes, got {size}",
            PAD_SIZES.start(),
            PAD_SIZES.end()
        )));
    }
    for (name, value) in [
        ("reservation_concurrency", options.reservation_concurrency),
        ("upload_concurrency", options.upload_concurrency),
        ("download_concurrency", options.download_concurrency),
    ] {
        if !(1..=MAX_CONCURRENCY).contains(&value) {
            return Err(Error::invalid(format!(
                "{name} must be between 1 and {MAX_CONCURRENCY}, got {value}"
            )));
        }
    }
    if !(1..=100).contains(&options.retry_attempts) {
        return Err(Error::invalid(format!(
            "retry_attempts must be between 1 and 100, got {}",
            options.retry_attempts
        )));
    }
    Ok(())
}
