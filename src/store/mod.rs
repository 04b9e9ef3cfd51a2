//! The store: `store_item`, `fetch_item`, `remove_item` and friends, step by
//! step as docs/architecture.md ("The path of one `store_item`") tells them.
//! It checks keys, asks for confirmation, and then leaves space to the
//! allocator and durability to the journal.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::allocator::{self, ItemData, MemoryAllocator};
use crate::crypto::{self, StoreKeys};
use crate::error::{Error, Result};
use crate::events::{Callback, EventSink, GetEvent, PutEvent};
use crate::index::{self, Entry, Piece, Record};
use crate::journal::{DEFAULT_CHECKPOINT_INTERVAL, IndexCache, Journal, RollbackCheck};
use crate::meta::{self, Meta, PAD_SIZES};
use crate::pad_io::PadIo;
use crate::pad_store::{self, Backend, BackendError, SimPadStore};
// The backend types a caller of the store sees (options in, counters out).
pub use crate::pad_store::{BackendOptions, SimStats, is_url, sim::OpStats};
use crate::retry::RetryPolicy;
use crate::seen_logs::SeenLogs;
use crate::writer_gate::{WriterGate, WriterGuard};

mod commit;
mod compact;
mod follow;
mod put;
mod rename;
mod stream;
mod verify;
use commit::Holds;
pub use compact::CompactReport;
use put::Put;
pub use stream::{FileDest, ItemHandle};
pub use verify::VerifyReport;

/// The Autonomi scratchpad payload.
pub const DEFAULT_PAD_SIZE: u64 = 4 << 20;
const MAX_KEY_BYTES: usize = 4096;
const MAX_CONCURRENCY: usize = 1024;
const META_NAME: &str = "meta";

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

/// The store's journal, with the index loaded, checked against this
/// machine's memory of the store, and its local cache if it keeps one.
async fn open_journal(
    backend: &Arc<dyn Backend>,
    keys: &Arc<StoreKeys>,
    meta: &Meta,
    options: &StoreOptions,
    retry: RetryPolicy,
) -> Result<Arc<Journal>> {
    let store_id = meta.store_id;
    let seen = SeenLogs::for_store(options.state_dir.as_deref(), &backend.describe(), &store_id);
    // Kept wherever the log position is remembered: both describe a store
    // that outlives the process.
    let cache = seen
        .as_ref()
        .and(options.state_dir.as_deref())
        .map(|state_dir| IndexCache {
            path: index::cache::path(state_dir, &store_id),
            min_items: options.index_cache_min_items,
            pad_size: meta.pad_size,
        });
    let rollback = RollbackCheck {
        seen,
        allow_rollback: options.allow_rollback,
    };
    Journal::open(
        Arc::clone(backend),
        Arc::clone(keys),
        store_id,
        retry,
        options.checkpoint_interval,
        rollback,
        cache,
    )
    .await
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

/// The state of a store's space and keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageSummary {
    pub total_pads: u64,
    pub pad_size: u64,
    pub total_space: u64,
    pub used_space: u64,
    pub free_space: u64,
    pub items: u64,
    pub pending: u64,
}

/// One stored item, as `list_items` describes it (no data read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemInfo {
    pub key: String,
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub created: u64,
    pub modified: u64,
}

/// A handle on an open store; clones share it.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    backend: Arc<dyn Backend>,
    allocator: Arc<MemoryAllocator>,
    journal: Arc<Journal>,
    gate: Arc<WriterGate>,
    max_new_pads: Option<u64>,
    /// Keys with a put or remove under way in this process.
    busy_keys: Mutex<HashSet<String>>,
    closed: AtomicBool,
    /// The process that opened the store: a handle is refused in a child
    /// made by `fork` (see `check_open`).
    process: u32,
    /// Told of every small put, for the write-back once the store is idle.
    activity: Arc<tokio::sync::Notify>,
    /// Held by a verification or a compaction: a verification reading pads
    /// a compaction of this process is emptying would report damage that
    /// is not there.
    maintenance: tokio::sync::Mutex<()>,
}

pub(crate) use crate::index::now;

fn validate_options(options: &StoreOptions) -> Result<()> {
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

fn validate_key(key: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::invalid("key must not be empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(Error::invalid(format!(
            "key is {} bytes long; the limit is {MAX_KEY_BYTES}",
            key.len()
        )));
    }
    if key.contains('\0') {
        return Err(Error::invalid("key must not contain NUL characters"));
    }
    Ok(())
}

/// Removes a key from the busy set when a put or remove ends, however it ends.
struct BusyKey<'a> {
    keys: &'a Mutex<HashSet<String>>,
    key: String,
}

impl Drop for BusyKey<'_> {
    fn drop(&mut self) {
        self.keys.lock().expect("busy keys lock").remove(&self.key);
    }
}

impl Store {
    /// Opens (or creates) the store at `url`.
    pub async fn open(url: &str, options: StoreOptions) -> Result<Store> {
        validate_options(&options)?;
        let backend = pad_store::open(url, &options.backend).await?;
        Self::open_with_backend(url, backend, options).await
    }

    /// Opens (or creates) a store on a backend built by the caller (to keep a
    /// handle on a simulated backend, for instance).
    pub async fn open_with_backend(
        url: &str,
        backend: Arc<dyn Backend>,
        options: StoreOptions,
    ) -> Result<Store> {
        validate_options(&options)?;
        let retry = RetryPolicy {
            attempts: options.retry_attempts,
            ..RetryPolicy::default()
        };
        let (meta, keys) = open_meta(&backend, &options, &retry).await?;
        let (store_id, pad_size) = (meta.store_id, meta.pad_size);
        let keys = Arc::new(keys);
        let keys_kept = Arc::clone(&keys);
        let journal = open_journal(&backend, &keys, &meta, &options, retry).await?;
        let io = Arc::new(PadIo {
            backend: Arc::clone(&backend),
            keys,
            store_id,
            pad_size,
            retry,
            upload_permits: Semaphore::new(options.upload_concurrency),
            download_permits: Semaphore::new(options.download_concurrency),
            buffers: Default::default(),
            formats: Default::default(),
        });
        let allocator = MemoryAllocator::new(
            io,
            Arc::clone(&journal),
            options.reservation_concurrency,
            options.download_concurrency,
        )?;
        let gate = WriterGate::new(
            Arc::clone(&backend),
            Arc::clone(&journal),
            Arc::clone(&allocator),
        );
        // A store of an older format moves to this one before this
        // handle's first change, which may write pads of the new format.
        if meta.needs_upgrade() {
            let (backend, retry, keys) = (Arc::clone(&backend), retry, Arc::clone(&keys_kept));
            gate.set_before_first_change(Arc::new(move || {
                let (backend, keys) = (Arc::clone(&backend), Arc::clone(&keys));
                Box::pin(async move { upgrade_meta(&backend, &retry, &keys).await })
            }));
        }
        // Tidies up after crashed writers now if no writer is at work (a
        // writer may be mid-reservation), else at this handle's first change.
        let no_writer = gate.try_enter_unmapped().await?.is_some();
        let store = Store {
            inner: Arc::new(Inner {
                // Shown in reprs, messages and logs: never its credentials.
                url: pad_store::redact_url(url),
                backend,
                allocator,
                journal,
                gate,
                max_new_pads: options.max_new_pads,
                busy_keys: Mutex::new(HashSet::new()),
                closed: AtomicBool::new(false),
                process: std::process::id(),
                activity: Arc::new(tokio::sync::Notify::new()),
                maintenance: tokio::sync::Mutex::new(()),
            }),
        };
        store.spawn_idle_write_back();
        if no_writer && store.inner.allocator.log_only_bytes() > 0 {
            // Small items another process committed and never wrote back,
            // and no writer at work: it crashed, and this one takes them on
            // (a live writer writes back its own).
            store.inner.activity.notify_one();
        }
        Ok(store)
    }

    /// The task that writes everything back once the store is idle. It holds
    /// the store weakly, so dropping the last handle ends it.
    fn spawn_idle_write_back(&self) {
        let weak = Arc::downgrade(&self.inner);
        let activity = Arc::clone(&self.inner.activity);
        tokio::spawn(allocator::write_back_when_idle(activity, move || {
            let inner = weak.upgrade()?;
            if inner.closed.load(Ordering::Acquire) {
                return None;
            }
            Some(async move {
                if let Err(error) = (Store { inner }).write_back_everything().await {
                    log::warn!(
                        "writing small items back to their pads failed (they stay in the log): {error}"
                    );
                }
            })
        }));
    }

    /// The URL the store was opened with, credentials redacted
    /// (`pad_store::redact_url`).
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// The backend's counters, for a simulated (`sim+`) backend.
    pub fn backend_stats(&self) -> Option<SimStats> {
        SimPadStore::of(self.inner.backend.as_ref()).map(SimPadStore::sim_stats)
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(Error::invalid("store is closed"));
        }
        if self.inner.process != std::process::id() {
            // A child made by fork() shares the parent's writer lock (a
            // folder's lock file, a lease) and none of its threads: used
            // here, the handle would write beside its parent as one writer.
            return Err(Error::invalid(format!(
                "this store handle was opened by process {} before it forked; open the \
                 store again in this process (multiprocessing: the 'spawn' or 'forkserver' \
                 start method does so for you)",
                self.inner.process
            )));
        }
        Ok(())
    }

    fn claim_key(&self, key: &str) -> Result<BusyKey<'_>> {
        let mut busy = self.inner.busy_keys.lock().expect("busy keys lock");
        if !busy.insert(key.to_string()) {
            return Err(Error::UploadPending {
                key: key.to_string(),
                reason: "is being stored or removed by another call right now; wait for it".into(),
            });
        }
        Ok(BusyKey {
            keys: &self.inner.busy_keys,
            key: key.to_string(),
        })
    }

    /// Stores `data` under `key`, emitting put events to `callback`: asks
    /// for confirmation if new pads are needed, reserves and uploads them,
    /// then records the key (see docs/architecture.md).
    pub async fn store_item(
        &self,
        key: &str,
        data: Bytes,
        options: PutOptions,
        callback: Option<Callback<PutEvent>>,
    ) -> Result<()> {
        let events = Arc::new(EventSink::new(callback));
        let result = self
            .put(key, ItemData::Memory(data), &options, &events)
            .await;
        events.close();
        result
    }

    async fn put(
        &self,
        key: &str,
        data: ItemData,
        options: &PutOptions,
        events: &Arc<EventSink<PutEvent>>,
    ) -> Result<()> {
        self.check_open()?;
        validate_key(key)?;
        let _busy = self.claim_key(key)?;
        let writing = self.inner.gate.enter().await?;
        self.inner.allocator.record_stray_pads().await?;
        let (exists, pending) = self
            .inner
            .journal
            .read_items(|index| Ok((index.items.get(key)?, index.pending.get(key).cloned())))
            .await?;
        if let Some(pending) = pending {
            if options.resume {
                return self.resume(key, data, pending, &writing, events).await;
            }
            return Err(Error::UploadPending {
                key: key.to_string(),
                reason: "has an interrupted upload; call store_item(..., resume=True) with the \
                         same data to finish it, or remove_item() to discard it"
                    .into(),
            });
        }
        if options.resume {
            return Err(Error::invalid(format!(
                "resume=True, but key {key:?} has no interrupted upload"
            )));
        }
        if exists.is_some() && !options.overwrite {
            return Err(Error::KeyExists(key.to_string()));
        }
        let cap = options.max_new_pads.or(self.inner.max_new_pads);
        Put::new(self, key, data, exists, writing, events)
            .await?
            .run(cap)
            .await
    }

    /// Writes every pad holding log-only bytes and records that in the log.
    async fn write_back_everything(&self) -> Result<()> {
        self.write_back(false).await
    }

    /// `write_back_everything`, or (`unless_busy`) only if no other writer
    /// holds the writer lock right now: a handle that only read takes on
    /// what a crashed writer left, never waits for a live one.
    async fn write_back(&self, unless_busy: bool) -> Result<()> {
        if self.inner.allocator.log_only_bytes() == 0 && !self.inner.journal.has_deferred() {
            return Ok(()); // nothing to do: not even the writer lock is needed
        }
        let _writing = if unless_busy {
            match self.inner.gate.try_enter().await? {
                Some(writing) => writing,
                None => return Ok(()),
            }
        } else {
            self.inner.gate.enter().await?
        };
        let allocator = &self.inner.allocator;
        allocator.write_backs_idle().await;
        allocator.write_back(allocator.dirty_pads()).await?;
        self.inner.journal.write_deferred().await
    }

    /// Writes back everything this store holds only in its log: afterwards
    /// every item is in its pads, and the log holds records only.
    pub async fn flush(&self) -> Result<()> {
        self.check_open()?;
        self.write_back_everything().await
    }

    /// How full each pad is, from the memory map alone (no backend call).
    pub fn pad_usage(&self) -> Result<allocator::PadUsage> {
        self.check_open()?;
        self.inner.allocator.ensure_map()?;
        Ok(self.inner.allocator.pad_usage())
    }

    /// Bytes of small items committed in the log and not yet written back
    /// to their pads (held in memory by every process that read the log).
    pub fn log_only_bytes(&self) -> u64 {
        self.inner.allocator.log_only_bytes()
    }

    /// How many times this handle built its map of used space from the
    /// index: 0 until its first change (opening and reading never do).
    pub fn map_builds(&self) -> u64 {
        self.inner.allocator.map_builds()
    }

    /// Whether opening read the index from this machine's local copy of it
    /// (see [`StoreOptions::index_cache_min_items`]) rather than the backend.
    pub fn index_from_cache(&self) -> bool {
        self.inner.journal.opened_from_cache()
    }

    /// The record that stores `key -> pieces` in the index.
    fn put_record(
        &self,
        key: &str,
        data_id: u64,
        size: u64,
        digest: crypto::Digest,
        pieces: Vec<Piece>,
        previous: Option<&Entry>,
    ) -> Record {
        let entry = Entry {
            data_id,
            size,
            hash: digest,
            pieces,
            created: previous.map_or_else(now, |e| e.created),
            modified: now(),
        };
        let key = key.to_string();
        Record::Put { key, entry }
    }

    /// Drops the pending record of a failed put, so the key is absent again
    /// and its space free. If even that fails, the key stays pending
    /// (resumable) and its space stays reserved for it.
    async fn abandon_pending(&self, key: &str, writing: &WriterGuard) {
        let key = key.to_string();
        let record = Record::ClearPending { key };
        let _ = self
            .commit_records(vec![record], Holds::default(), writing)
            .await;
    }

    /// Finishes an interrupted upload: pads that already hold their part of
    /// the data are checked, not uploaded again.
    async fn resume(
        &self,
        key: &str,
        data: ItemData,
        pending: Entry,
        writing: &WriterGuard,
        events: &Arc<EventSink<PutEvent>>,
    ) -> Result<()> {
        if data.len() != pending.size || data.fingerprint().await? != pending.hash {
            return Err(Error::invalid(format!(
                "resume=True needs the same data as the interrupted upload of {key:?} \
                 ({} bytes); remove_item() discards that upload instead",
                pending.size
            )));
        }
        let (pieces, digest) = self
            .inner
            .allocator
            .rewrite(&pending.pieces, &data, events)
            .await?;
        data.check_unchanged().await?;
        let previous = self
            .inner
            .journal
            .read_items(|index| index.items.get(key))
            .await?;
        let record = self.put_record(
            key,
            pending.data_id,
            pending.size,
            digest,
            pieces,
            previous.as_ref(),
        );
        self.commit_records(vec![record], Holds::default(), writing)
            .await?;
        events.finish(PutEvent::StoreComplete).await
    }

    /// Reads the item stored under `key`, emitting get events to `callback`.
    pub async fn fetch_item(
        &self,
        key: &str,
        callback: Option<Callback<GetEvent>>,
    ) -> Result<Bytes> {
        // calloc'ed: the pages are zeroed lazily, as the read first writes them.
        let buffer = |size: usize| Ok(vec![0u8; size]);
        self.fetch_item_into(key, buffer, callback)
            .await
            .map(Bytes::from)
    }

    /// Reads the item stored under `key` into a buffer of the item's size
    /// made by `make_buffer`, emitting get events to `callback`. Every byte
    /// of the buffer is written, so it need not be initialised: the Python
    /// package reads straight into a new `bytes` object this way.
    pub async fn fetch_item_into<B: AsMut<[u8]> + Send + 'static>(
        &self,
        key: &str,
        mut make_buffer: impl FnMut(usize) -> Result<B>,
        callback: Option<Callback<GetEvent>>,
    ) -> Result<B> {
        self.check_open()?;
        validate_key(key)?;
        let events = EventSink::new(callback);
        let result = self.fetch(key, &mut make_buffer, &events).await;
        events.close();
        result
    }

    async fn fetch<B: AsMut<[u8]> + Send + 'static>(
        &self,
        key: &str,
        make_buffer: &mut impl FnMut(usize) -> Result<B>,
        events: &EventSink<GetEvent>,
    ) -> Result<B> {
        let mut found = self.lookup(key).await?;
        let allocator = &self.inner.allocator;
        let read = |(entry, inline): (Entry, Option<Bytes>), buffer: B| async move {
            match inline {
                Some(data) => allocator.read_inline(&entry, data, buffer, events).await,
                None => allocator.read(&entry, buffer, events).await,
            }
        };
        // An item another process moved (or replaced) is read where it is now.
        let mut follow = follow::FollowMoves::new(self, key);
        loop {
            let buffer = sized_buffer(make_buffer, found.0.size)?;
            match read(found.clone(), buffer).await {
                Err(error) => found = follow.after(&found.0, error).await?,
                result => return result,
            }
        }
    }

    /// Removes `key` (or discards its interrupted upload) and frees its space.
    pub async fn remove_item(&self, key: &str) -> Result<()> {
        self.check_open()?;
        validate_key(key)?;
        let _busy = self.claim_key(key)?;
        let writing = self.inner.gate.enter().await?;
        let known = self
            .inner
            .journal
            .read_items(|index| {
                Ok(index.items.contains_key(key)? || index.pending.contains_key(key))
            })
            .await?;
        if !known {
            return Err(Error::KeyNotFound(key.to_string()));
        }
        let record = Record::Remove {
            key: key.to_string(),
        };
        self.commit_records(vec![record], Holds::default(), &writing)
            .await
    }

    fn summary_now(&self) -> StorageSummary {
        let map = self.inner.allocator.summary();
        let (items, pending) = self
            .inner
            .journal
            .read(|index| (index.items.len() as u64, index.pending.len() as u64));
        StorageSummary {
            total_pads: map.total_pads,
            pad_size: map.pad_size,
            total_space: map.total_space,
            used_space: map.used_space,
            free_space: map.free_space,
            items,
            pending,
        }
    }

    /// Brings this handle up to date with what other writers (processes,
    /// machines) committed: reads after it see all of it. Reads also catch
    /// up by themselves, at most the backend's `read_staleness` late.
    pub async fn refresh(&self) -> Result<()> {
        self.check_open()?;
        self.inner.gate.catch_up().await
    }

    /// Pads, space and keys as they are now.
    pub async fn summary(&self) -> Result<StorageSummary> {
        self.check_open()?;
        self.inner.gate.catch_up().await?;
        self.inner.allocator.ensure_map()?;
        Ok(self.summary_now())
    }

    /// `None` if `size` bytes fit in free space, else the new pads needed.
    pub async fn check_allocation_possible(&self, size: u64) -> Result<Option<u64>> {
        self.check_open()?;
        self.inner.allocator.ensure_map()?;
        Ok(self.inner.allocator.check_allocation_possible(size))
    }

    /// Stored keys, sorted (pending uploads are not listed).
    pub async fn keys(&self) -> Result<Vec<String>> {
        self.check_open()?;
        self.inner.gate.catch_up().await?;
        let mut keys: Vec<String> = self
            .inner
            .journal
            .read_items(|index| index.items.keys())
            .await?;
        keys.sort_unstable();
        Ok(keys)
    }

    /// Keys with an interrupted upload (pending: a put with `resume` finishes
    /// one, `remove_item` discards it) and their sizes, sorted by key.
    pub async fn pending_items(&self) -> Result<Vec<(String, u64)>> {
        self.check_open()?;
        self.inner.gate.catch_up().await?;
        let mut pending: Vec<(String, u64)> = self.inner.journal.read(|index| {
            index
                .pending
                .iter()
                .map(|(key, entry)| (key.clone(), entry.size))
                .collect()
        });
        pending.sort_unstable();
        Ok(pending)
    }

    /// Stored items with their sizes and times, sorted by key.
    pub async fn list_items(&self) -> Result<Vec<ItemInfo>> {
        self.check_open()?;
        self.inner.gate.catch_up().await?;
        let mut items: Vec<ItemInfo> = self
            .inner
            .journal
            .read_items(|index| {
                let mut items = Vec::with_capacity(index.items.len());
                index.items.for_each(|key, entry| {
                    items.push(ItemInfo {
                        key: key.to_owned(),
                        size: entry.size,
                        created: entry.created,
                        modified: entry.modified,
                    })
                })?;
                Ok(items)
            })
            .await?;
        items.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        Ok(items)
    }

    pub async fn contains(&self, key: &str) -> Result<bool> {
        self.check_open()?;
        self.inner.gate.catch_up().await?;
        self.inner
            .journal
            .read_items(|index| index.items.contains_key(key))
            .await
    }

    pub async fn len(&self) -> Result<u64> {
        self.check_open()?;
        self.inner.gate.catch_up().await?;
        Ok(self.inner.journal.read(|index| index.items.len() as u64))
    }

    /// Closes the handle: later calls fail with `InvalidInput`. Every
    /// completed call is already durable; closing also waits until the
    /// writer lock is given back (an S3 lease deleted, not left to expire).
    pub async fn close(&self) -> Result<()> {
        if self.inner.process != std::process::id() {
            // A handle a forked child inherited: the store and its writer
            // lock are its parent's to flush and release.
            self.inner.closed.store(true, Ordering::Release);
            return Ok(());
        }
        // A handle that only read writes back what other writers left only
        // if none is at work (theirs crashed): closing it never waits for one.
        let flushed = if self.inner.closed.load(Ordering::Acquire) {
            Ok(())
        } else {
            self.write_back(!self.inner.journal.wrote()).await
        };
        self.inner.closed.store(true, Ordering::Release);
        self.inner.activity.notify_one(); // the idle task sees it is closed
        self.inner.gate.released().await;
        self.inner.journal.settled().await;
        flushed
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Wakes the idle write-back task, which then finds the store gone.
        self.activity.notify_one();
    }
}

/// Reads the store's metadata, or creates it for a new store, and checks
/// the secret against it.
async fn open_meta(
    backend: &Arc<dyn Backend>,
    options: &StoreOptions,
    retry: &RetryPolicy,
) -> Result<(Meta, StoreKeys)> {
    let bytes = match read_meta(backend, retry).await? {
        Some(bytes) => bytes,
        None if options.backend.must_exist => {
            return Err(Error::invalid(format!(
                "no store at {}: it holds no store metadata (a store is created by its \
                 first put; check the location)",
                backend.describe()
            )));
        }
        None => create_meta(backend, options, retry).await?,
    };
    let meta = Meta::decode(&bytes)?;
    let keys = meta.unlock(&options.secret)?;
    if let Some(asked) = options.pad_size
        && asked != meta.pad_size
    {
        return Err(Error::invalid(format!(
            "this store has {}-byte pads; pad_size={asked} only applies to new stores",
            meta.pad_size
        )));
    }
    Ok((meta, keys))
}

/// Moves the store's metadata to the current format, unless another
/// handle did already. Call under the writer lock.
async fn upgrade_meta(
    backend: &Arc<dyn Backend>,
    retry: &RetryPolicy,
    keys: &crate::crypto::StoreKeys,
) -> Result<()> {
    let Some(bytes) = read_meta(backend, retry).await? else {
        return Err(Error::Backend(BackendError::Permanent(format!(
            "the store metadata of {} vanished",
            backend.describe()
        ))));
    };
    let meta = Meta::decode(&bytes)?;
    if !meta.needs_upgrade() {
        return Ok(());
    }
    let upgraded = Bytes::from(meta.upgraded(keys)?.encode()?);
    retry
        .run(|_| backend.put_durable(META_NAME, upgraded.clone()))
        .await?;
    log::info!("store {} moved to the current format", backend.describe());
    Ok(())
}

/// The store's metadata object, or `None` if the store does not exist yet.
async fn read_meta(backend: &Arc<dyn Backend>, retry: &RetryPolicy) -> Result<Option<Bytes>> {
    match retry
        .run(|_| backend.get_capped(META_NAME, meta::MAX_OBJECT_LEN))
        .await
    {
        Ok(bytes) => Ok(Some(bytes)),
        Err(BackendError::NotFound(_)) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// Creates a new store's metadata, unless another process creating the same
/// store at this moment wins: then its metadata (its store id) is the
/// store's, and is returned instead. Two ids would mean two stores under one
/// name, each unable to read what the other wrote.
///
/// The creation runs under the writer lock, and the metadata is written only
/// if absent: either alone decides the race where it is reliable (a folder's
/// lock and atomic create, a memory store's, an S3 service honouring
/// conditional writes); on a service that ignores conditions (Garage), the
/// lease is what keeps a second creator out (best-effort, see docs/s3.md).
async fn create_meta(
    backend: &Arc<dyn Backend>,
    options: &StoreOptions,
    retry: &RetryPolicy,
) -> Result<Bytes> {
    let holder: [u8; 16] = crypto::os_random();
    let lock = backend.lock_writer(&holder).await?;
    let created = async {
        if let Some(bytes) = read_meta(backend, retry).await? {
            return Ok(bytes); // created while we waited for the lock
        }
        let meta = Meta::new(
            &options.secret,
            options.pad_size.unwrap_or(DEFAULT_PAD_SIZE),
        )?;
        let bytes = Bytes::from(meta.encode()?);
        lock.check().await?;
        match retry
            .run(|_| backend.reserve_durable(META_NAME, bytes.clone()))
            .await
        {
            Ok(()) | Err(BackendError::AlreadyExists(_)) => {}
            Err(error) => return Err(error.into()),
        }
        // Read back, whoever won: what the backend holds is the store.
        read_meta(backend, retry).await?.ok_or_else(|| {
            Error::Backend(BackendError::Transient(format!(
                "the metadata of the new store {} vanished right after it was created",
                backend.describe()
            )))
        })
    }
    .await;
    lock.release().await;
    created
}

/// A buffer for an item of `size` bytes from the caller's `make_buffer`,
/// which must make it of that size.
fn sized_buffer<B: AsMut<[u8]>>(
    make_buffer: &mut impl FnMut(usize) -> Result<B>,
    size: u64,
) -> Result<B> {
    let size = usize_size(size)?;
    let mut buffer = make_buffer(size)?;
    let made = buffer.as_mut().len();
    if made != size {
        return Err(Error::invalid(format!(
            "the output buffer is not the item's size ({made} bytes for {size})"
        )));
    }
    Ok(buffer)
}

/// An item's size as a buffer length.
fn usize_size(size: u64) -> Result<usize> {
    usize::try_from(size)
        .map_err(|_| Error::invalid(format!("an item of {size} bytes does not fit in memory")))
}
