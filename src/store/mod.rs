//! The store: `store_item`, `fetch_item`, `remove_item` and friends, step by
//! step as docs/architecture.md ("The path of one `store_item`") tells them.
//! It checks keys, asks for confirmation, and then leaves space to the
//! allocator and durability to the journal.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::allocator::{self, ItemData, MemoryAllocator};
use crate::crypto;
use crate::error::{Error, Result};
use crate::events::{Callback, EventSink, GetEvent, PutEvent};
use crate::index::{Entry, Piece, Record};
use crate::journal::Journal;
use crate::pad_store::{Backend, SimPadStore};
// The backend types a caller of the store sees (options in, counters out).
pub use crate::pad_store::{BackendOptions, SimStats, is_url, sim::OpStats};
use crate::writer_gate::{WriterGate, WriterGuard};

mod commit;
mod compact;
mod follow;
mod open;
mod options;
mod put;
mod rename;
mod stream;
mod verify;
use commit::Holds;
pub use compact::CompactReport;
pub use options::{DEFAULT_INDEX_CACHE_MIN_ITEMS, PutOptions, StoreOptions};
use put::Put;
pub use stream::{FileDest, ItemHandle};
pub use verify::VerifyReport;

/// The Autonomi scratchpad payload.
pub const DEFAULT_PAD_SIZE: u64 = 4 << 20;
const MAX_KEY_BYTES: usize = 4096;

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

    /// How many times this handle took the store's writer lock: once for a
    /// writer alone however long its loop of changes; once per turn when
    /// writers take turns.
    pub fn writer_locks_taken(&self) -> u64 {
        self.inner.gate.locks_taken()
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
