//! Pad I/O: reserving, reading and writing sealed pads, with retries and the
//! concurrency limits of a store. Writes to one pad are group-committed
//! (`group_commit.rs`): every change to a pad goes through its [`PadWriter`]
//! slot, which applies all queued patches to the latest content and uploads
//! them in one write, so two puts sharing a pad never lose each other's
//! bytes and many small puts share one upload.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::blocking;
use crate::crypto::{AuthTag, StoreKeys};
use crate::error::{Error, Result};
use crate::group_commit::{self, GroupCommit, Reply, Ticket};
use crate::pad::{self, PadId};
use crate::pad_store::{Backend, BackendError};
use crate::retry::RetryPolicy;

/// Most plaintext the writer keeps of partly filled pads, to patch them
/// without reading them back.
const CACHE_BUDGET: u64 = 64 << 20;

/// Most bytes of idle buffers kept for sealing pads into.
const BUFFER_POOL_BUDGET: usize = 64 << 20;

/// Buffers for sealed pads, reused: a fresh 4 MiB buffer costs a thousand
/// page faults and zeroed pages, as much CPU as sealing into it.
#[derive(Default)]
pub struct BufferPool {
    idle: Mutex<Vec<Vec<u8>>>,
}

impl BufferPool {
    fn take(&self) -> Vec<u8> {
        self.idle
            .lock()
            .expect("pool lock")
            .pop()
            .unwrap_or_default()
    }

    /// `buffer` as `Bytes` that go back to the pool once the last clone
    /// is dropped (the backend is done with them).
    fn share(self: &Arc<Self>, buffer: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled {
            buffer,
            pool: Arc::clone(self),
        })
    }
}

struct Pooled {
    buffer: Vec<u8>,
    pool: Arc<BufferPool>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let buffer = std::mem::take(&mut self.buffer);
        let mut idle = self.pool.idle.lock().expect("pool lock");
        let held: usize = idle.iter().map(Vec::capacity).sum();
        if held + buffer.capacity() <= BUFFER_POOL_BUDGET {
            idle.push(buffer);
        }
    }
}

/// What every pad operation of a store needs.
pub struct PadIo {
    pub backend: Arc<dyn Backend>,
    pub keys: Arc<StoreKeys>,
    pub store_id: [u8; 16],
    pub pad_size: u64,
    pub retry: RetryPolicy,
    /// Uploads (and their commit checks) in flight.
    pub upload_permits: Semaphore,
    /// Pad reads in flight.
    pub download_permits: Semaphore,
    pub buffers: Arc<BufferPool>,
    /// Pads known to be in the previous format.
    pub formats: PadFormats,
}

impl PadIo {
    /// Creates a new, empty pad on the backend: the costly act. Nothing to do
    /// where pads are created by their first write.
    pub async fn reserve(&self, id: PadId) -> Result<()> {
        if self.backend.capabilities().pads_created_on_first_write {
            return Ok(());
        }
        let name = id.object_name();
        let empty = Bytes::from(pad::encode(&self.keys, &self.store_id, id, 0, &[])?);
        self.retry
            .run(|attempt| {
                let (name, empty) = (&name, empty.clone());
                async move {
                    match self.backend.reserve(name, empty).await {
                        // The id is random and ours: on a retry this means an
                        // earlier attempt landed but its answer was lost.
                        Err(BackendError::AlreadyExists(_)) if attempt > 0 => Ok(()),
                        other => other,
                    }
                }
            })
            .await?;
        Ok(())
    }

    /// Reads and opens a pad, whole.
    pub async fn read(&self, id: PadId, min_version: u64) -> Result<PadContent> {
        let name = id.object_name();
        let max_size = pad::max_object_len(self.pad_size);
        let sealed = match self
            .retry
            .run(|_| self.backend.get_capped(&name, max_size))
            .await
        {
            // Reserved without a call and never written: empty. A pad that
            // was written (version >= 1) and is missing stays an error.
            Err(BackendError::NotFound(_))
                if min_version == 0 && self.backend.capabilities().missing_pads_read_empty =>
            {
                return Ok(PadContent {
                    version: 0,
                    plaintext: Vec::new(),
                    tag: None,
                });
            }
            other => other?,
        };
        self.formats.saw(id, pad::is_frame(&sealed));
        let (keys, store_id, pad_size) = (Arc::clone(&self.keys), self.store_id, self.pad_size);
        blocking::off_runtime(sealed.len(), move || {
            // Without a copy when the backend handed over its own buffer.
            let opened = pad::open(
                &keys,
                &store_id,
                id,
                min_version,
                pad_size,
                Vec::from(sealed),
            )?;
            Ok(PadContent {
                version: opened.version,
                plaintext: opened.plaintext,
                tag: Some(opened.tag),
            })
        })
        .await
    }

    /// Reads bytes `range` of a pad's content (zeros past its stored
    /// prefix) and the pad's version: where the backend reads ranges and
    /// the pad is sealed in segments, by one ranged request for just the
    /// frames under them, opened alone; else by reading the pad whole.
    pub async fn read_range(
        &self,
        id: PadId,
        min_version: u64,
        range: std::ops::Range<u64>,
    ) -> Result<(u64, Bytes)> {
        let whole = |read: PadContent| {
            let content = Bytes::from(read.plaintext);
            (read.version, window(&content, range.clone()))
        };
        if range.is_empty() {
            return Ok((min_version, Bytes::new()));
        }
        if !self.backend.capabilities().ranged_reads || self.formats.is_format2(id) {
            return Ok(whole(self.read(id, min_version).await?));
        }
        let name = id.object_name();
        let (first, frames) = pad::frames_of(range.clone());
        let requested = frames.end - frames.start;
        let fetched = match self
            .retry
            .run(|_| self.backend.get_range(&name, frames.clone()))
            .await
        {
            Ok(fetched) if pad::is_frame(&fetched) => fetched,
            // A format 2 pad: its bytes at a frame's place are no frame.
            Ok(_) => {
                self.formats.saw(id, false);
                return Ok(whole(self.read(id, min_version).await?));
            }
            Err(BackendError::NotFound(_))
                if min_version == 0 && self.backend.capabilities().missing_pads_read_empty =>
            {
                return Ok((
                    0,
                    Bytes::from(vec![0u8; (range.end - range.start) as usize]),
                ));
            }
            // The range starts past the object's end (a pad cut short, or
            // shorter than a reader expects): the whole read says which.
            Err(BackendError::Permanent(_)) => {
                return Ok(whole(self.read(id, min_version).await?));
            }
            Err(error) => return Err(error.into()),
        };
        let at = pad::FramesAt {
            first,
            ends_object: (fetched.len() as u64) < requested,
        };
        let (keys, store_id, pad_size) = (Arc::clone(&self.keys), self.store_id, self.pad_size);
        let range_in_frames = range.clone();
        let opened = blocking::off_runtime(fetched.len(), move || {
            let range = range_in_frames;
            let (version, plaintext, _) = pad::open_frames(
                &keys,
                &store_id,
                id,
                at,
                min_version,
                pad_size,
                Vec::from(fetched),
            )?;
            let base = first * pad::SEGMENT;
            let plaintext = Bytes::from(plaintext);
            Ok((
                version,
                window(&plaintext, range.start - base..range.end - base),
            ))
        })
        .await;
        match opened {
            // Frames that do not open: a damaged pad, which the whole read
            // reports too (it opens every frame), or, once in 2^32, a
            // format 2 pad whose bytes there look like a frame's magic.
            Err(Error::Integrity(_)) => Ok(whole(self.read(id, min_version).await?)),
            other => other,
        }
    }

    /// Uploads `plaintext` as `version` of pad `id`, then checks the backend
    /// holds it; `durable`: on stable storage whatever the store's fsync
    /// setting (`Backend::put_durable`). `on_uploaded` runs between the two. The upload permit (one
    /// of the store's upload slots) covers the upload only: the commit check
    /// moves no data, and holding a slot through it would slow the pipeline.
    async fn upload(
        &self,
        id: PadId,
        version: u64,
        plaintext: Bytes,
        durable: bool,
        permit: tokio::sync::SemaphorePermit<'_>,
        on_uploaded: impl FnOnce(),
    ) -> Result<AuthTag> {
        let name = id.object_name();
        let (keys, store_id, len) = (Arc::clone(&self.keys), self.store_id, plaintext.len());
        let mut buffer = self.buffers.take();
        let seal = move |buffer: &mut Vec<u8>| {
            pad::encode_into(&keys, &store_id, id, version, &plaintext, buffer)
        };
        let (buffer, tag, written) = match self.backend.capabilities().folder_writer.clone() {
            // A local folder: sealed and written by one call on one thread,
            // while the sealed bytes are still in that core's cache.
            Some(folder) => {
                let name = name.clone();
                blocking::on_blocking_pool(move || {
                    let tag = seal(&mut buffer)?;
                    let written = if durable {
                        folder.put_durable(&name, &buffer)
                    } else {
                        folder.put(&name, &buffer)
                    };
                    Ok::<_, Error>((buffer, tag, Some(written)))
                })
                .await?
            }
            None => {
                blocking::off_runtime(len, move || Ok::<_, Error>((seal(&mut buffer)?, buffer)))
                    .await
                    .map(|(tag, buffer)| (buffer, tag, None))?
            }
        };
        let sealed = self.buffers.share(buffer);
        let receipt = match written {
            Some(Ok(receipt)) => receipt,
            Some(Err(error)) if !error.is_transient() => return Err(error.into()),
            // Not yet written, or a transient failure: (re)tried as any put.
            _ => {
                self.retry
                    .run(|_| async {
                        if durable {
                            self.backend.put_durable(&name, sealed.clone()).await
                        } else {
                            self.backend.put(&name, sealed.clone()).await
                        }
                    })
                    .await?
            }
        };
        drop(sealed);
        drop(permit);
        self.formats.saw(id, true);
        on_uploaded();
        if !self.backend.capabilities().acknowledged_puts_visible {
            self.retry
                .run(|_| self.backend.verify(&name, &receipt))
                .await?;
        }
        Ok(tag)
    }
}

/// The error of acquiring a permit of [`PadIo`]'s semaphores, which
/// nothing closes: reaching it is a bug.
pub fn permits_closed(_: tokio::sync::AcquireError) -> Error {
    Error::internal("a pad I/O semaphore was closed, which nothing does")
}

/// Bytes `range` of `content`, a pad's stored prefix (zeros past it).
fn window(content: &Bytes, range: std::ops::Range<u64>) -> Bytes {
    let (start, end) = (range.start as usize, range.end as usize);
    if end <= content.len() {
        return content.slice(start..end);
    }
    let mut bytes = vec![0u8; end - start];
    let available = content.len().saturating_sub(start);
    if available > 0 {
        bytes[..available].copy_from_slice(&content[start..]);
    }
    Bytes::from(bytes)
}

/// The pads this handle found in format 2 (sealed whole, before segments):
/// read whole, without first trying a ranged read. Forgotten when the pad
/// is found or written in format 3. Protects only the set.
#[derive(Default)]
pub struct PadFormats {
    format2: Mutex<std::collections::HashSet<PadId>>,
}

impl PadFormats {
    fn is_format2(&self, id: PadId) -> bool {
        self.format2.lock().expect("formats lock").contains(&id)
    }

    /// Records the format a read or write found `id` in.
    fn saw(&self, id: PadId, segmented: bool) {
        let mut format2 = self.format2.lock().expect("formats lock");
        if segmented {
            format2.remove(&id);
        } else {
            format2.insert(id);
        }
    }
}

/// A pad as read.
pub struct PadContent {
    pub version: u64,
    /// The plaintext prefix ever written.
    pub plaintext: Vec<u8>,
    /// The pad's tag (see `pad::PadTag`); `None` for a pad never written.
    pub tag: Option<AuthTag>,
}

/// Where a pad write stands, as seen by the put that asked for it.
pub struct PadWrite {
    /// Resolves when the upload is done (before its commit check).
    pub uploaded: Ticket<()>,
    /// Resolves with the pad version that holds the patches, once
    /// committed, and the authentication tag of that version's object.
    pub committed: Ticket<(u64, AuthTag)>,
}

struct Patch {
    /// `(offset in pad, bytes)`.
    parts: Vec<(u64, Bytes)>,
    /// Must reach stable storage (see `PadWriter::write`).
    durable: bool,
    uploaded: Reply<()>,
    committed: Reply<(u64, AuthTag)>,
}

struct Slot {
    id: PadId,
    /// Patches waiting for the pad's next upload, group-committed.
    patches: GroupCommit<Patch>,
    /// Protects what is known of the pad; held only briefly.
    state: Mutex<SlotState>,
}

struct SlotState {
    /// The pad's committed plaintext, when known (cached or fresh).
    content: Option<Bytes>,
    /// Lowest version the backend may hold (what a read must accept).
    min_version: u64,
    /// Next version to write: above every version ever attempted.
    next_version: u64,
}

/// Serialises and batches all writes to each pad of a store.
pub struct PadWriter {
    io: Arc<PadIo>,
    /// ordinal -> slot. Protects only the map itself.
    slots: Mutex<HashMap<u64, Arc<Slot>>>,
    cached_bytes: AtomicU64,
    /// Flush tasks running, and a signal when that drops to zero.
    flushing: AtomicU64,
    idle: tokio::sync::Notify,
}

impl PadWriter {
    pub fn new(io: Arc<PadIo>) -> Arc<Self> {
        Arc::new(Self {
            io,
            slots: Mutex::new(HashMap::new()),
            cached_bytes: AtomicU64::new(0),
            flushing: AtomicU64::new(0),
            idle: tokio::sync::Notify::new(),
        })
    }

    /// Registers a pad. `fresh` pads were just reserved empty, so patching
    /// them needs no read; `version` is the highest version the index knows.
    pub fn add_pad(&self, ordinal: u64, id: PadId, version: u64, fresh: bool) {
        let slot = Arc::new(Slot {
            id,
            patches: GroupCommit::default(),
            state: Mutex::new(SlotState {
                content: fresh.then(Bytes::new),
                min_version: version,
                next_version: version.saturating_add(1),
            }),
        });
        self.slots.lock().expect("slots lock").insert(ordinal, slot);
    }

    fn slot(&self, ordinal: u64) -> Result<Arc<Slot>> {
        self.slots
            .lock()
            .expect("slots lock")
            .get(&ordinal)
            .cloned()
            .ok_or_else(|| Error::integrity(format!("no pad with ordinal {ordinal}")))
    }

    /// Queues `parts` (`(offset, bytes)` within pad `ordinal`) for writing;
    /// `durable`: to stable storage whatever the store's fsync setting (a
    /// write-back, after which the log may be the only other copy to go).
    pub fn write(
        self: &Arc<Self>,
        ordinal: u64,
        parts: Vec<(u64, Bytes)>,
        durable: bool,
    ) -> Result<PadWrite> {
        let slot = self.slot(ordinal)?;
        let (uploaded_reply, uploaded) = group_commit::ticket();
        let (committed_reply, committed) = group_commit::ticket();
        let patch = Patch {
            parts,
            durable,
            uploaded: uploaded_reply,
            committed: committed_reply,
        };
        if slot.patches.push(patch) {
            // Its own task: a put dropping its future must not strand the
            // other puts whose patches ride in the same upload.
            self.flushing.fetch_add(1, Ordering::AcqRel);
            let writer = Arc::clone(self);
            tokio::spawn(async move {
                slot.patches.run(|batch| writer.flush(&slot, batch)).await;
                if writer.flushing.fetch_sub(1, Ordering::AcqRel) == 1 {
                    writer.idle.notify_waiters();
                }
            });
        }
        Ok(PadWrite {
            uploaded,
            committed,
        })
    }

    /// Resolves once no pad upload is in flight.
    pub fn idle(self: &Arc<Self>) -> impl std::future::Future<Output = ()> + Send + 'static {
        let writer = Arc::clone(self);
        async move {
            loop {
                let notified = writer.idle.notified();
                if writer.flushing.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        }
    }

    /// Forgets every pad (and cached content): the caller re-adds them after
    /// another process changed the store.
    pub fn clear(&self) {
        let mut slots = self.slots.lock().expect("slots lock");
        for slot in slots.values() {
            let mut state = slot.state.lock().expect("slot lock");
            self.replace_cache(&mut state, None);
        }
        slots.clear();
    }

    /// Forgets one pad (it left the store) and its cached content.
    pub fn remove_pad(&self, ordinal: u64) {
        if let Some(slot) = self.slots.lock().expect("slots lock").remove(&ordinal) {
            let mut state = slot.state.lock().expect("slot lock");
            self.replace_cache(&mut state, None);
        }
    }

    /// The committed plaintext and version of a pad, if the writer holds it.
    pub fn cached(&self, ordinal: u64) -> Option<(u64, Bytes)> {
        let slot = self
            .slots
            .lock()
            .expect("slots lock")
            .get(&ordinal)
            .cloned()?;
        let state = slot.state.lock().expect("slot lock");
        state.content.clone().map(|c| (state.min_version, c))
    }

    pub fn pad_id(&self, ordinal: u64) -> Result<PadId> {
        Ok(self.slot(ordinal)?.id)
    }

    /// Uploads one batch of patches to the slot's pad and answers them.
    async fn flush(&self, slot: &Slot, batch: Vec<Patch>) {
        let (content, min_version) = {
            let state = slot.state.lock().expect("slot lock");
            (state.content.clone(), state.min_version)
        };
        let mut parts = Vec::new();
        let mut uploaded = Vec::with_capacity(batch.len());
        let mut committed = Vec::with_capacity(batch.len());
        let durable = batch.iter().any(|patch| patch.durable);
        for patch in batch {
            parts.extend(patch.parts);
            uploaded.push(patch.uploaded);
            committed.push(patch.committed);
        }
        let outcome = self
            .flush_batch(slot, &parts, content, min_version, durable, &mut uploaded)
            .await;
        // Let go of the callers' data before telling them it is written.
        drop(parts);
        let mut state = slot.state.lock().expect("slot lock");
        match outcome {
            Ok((version, plaintext, tag)) => {
                state.min_version = version;
                state.next_version = state.next_version.max(version.saturating_add(1));
                self.replace_cache(&mut state, plaintext);
                for done in committed {
                    done.send(Ok((version, tag)));
                }
            }
            Err(error) => {
                // The upload may or may not have landed: forget the
                // content and never reuse the attempted version.
                state.next_version = state.next_version.saturating_add(1);
                self.replace_cache(&mut state, None);
                group_commit::fail_all(uploaded, &error);
                group_commit::fail_all(committed, &error);
            }
        }
    }

    /// Applies patches to the pad's latest content and uploads the result.
    /// Returns the version written and the new plaintext.
    async fn flush_batch(
        &self,
        slot: &Slot,
        parts: &[(u64, Bytes)],
        content: Option<Bytes>,
        min_version: u64,
        durable: bool,
        uploaded: &mut Vec<Reply<()>>,
    ) -> Result<(u64, Option<Bytes>, AuthTag)> {
        let permit = self
            .io
            .upload_permits
            .acquire()
            .await
            .map_err(permits_closed)?;
        // One part filling the whole pad (most pads of a large item): seal
        // it straight from the caller's bytes, with no plaintext copy.
        let whole = match parts {
            [(offset, bytes)] if pad::fills_pad(*offset, bytes.len() as u64, self.io.pad_size) => {
                Some(bytes.clone())
            }
            _ => None,
        };
        let mut base_version = min_version;
        let mut plaintext = Vec::new();
        if whole.is_none() {
            (base_version, plaintext) = self
                .content_to_patch(slot, parts, content, min_version, durable)
                .await?;
            patch(&mut plaintext, parts);
        }
        let version = {
            let state = slot.state.lock().expect("slot lock");
            state.next_version.max(base_version.saturating_add(1))
        };
        if version == u64::MAX {
            return Err(Error::integrity(format!(
                "pad {} claims the last possible version",
                slot.id.object_name()
            )));
        }
        let is_whole = whole.is_some();
        let content = whole.unwrap_or_else(|| Bytes::from(plaintext));
        let tag = self
            .io
            .upload(slot.id, version, content.clone(), durable, permit, || {
                for done in uploaded.drain(..) {
                    done.send(Ok(()));
                }
            })
            .await?;
        // A full pad is not worth caching (see `replace_cache`).
        Ok((version, (!is_whole).then_some(content), tag))
    }

    /// The content that `parts` patch, and its version: nothing if they
    /// cover the pad, else the cached content, else the pad as read.
    async fn content_to_patch(
        &self,
        slot: &Slot,
        parts: &[(u64, Bytes)],
        content: Option<Bytes>,
        min_version: u64,
        durable: bool,
    ) -> Result<(u64, Vec<u8>)> {
        if covers(parts, self.io.pad_size) {
            return Ok((min_version, Vec::new()));
        }
        if let Some(content) = content {
            return Ok((min_version, content.to_vec()));
        }
        match self.io.read(slot.id, min_version).await {
            Ok(read) => Ok((read.version, read.plaintext)),
            // A write-back into a pad whose content is gone (an OS crash
            // without fsync left its file empty or torn): the items it
            // held are lost already (their reads fail their checks);
            // the ones still in the log are not, so the pad is rebuilt
            // from them rather than leave them in the log for ever.
            Err(Error::Integrity(message)) if durable => {
                log::warn!(
                    "pad {} is damaged ({message}); rewriting it with the small items \
                     still in the index log (items it held otherwise stay unreadable)",
                    slot.id.object_name()
                );
                Ok((min_version, Vec::new()))
            }
            Err(error) => Err(error),
        }
    }

    /// Keeps a partly filled pad's plaintext if the cache budget allows.
    fn replace_cache(&self, state: &mut SlotState, plaintext: Option<Bytes>) {
        if let Some(old) = state.content.take() {
            self.cached_bytes
                .fetch_sub(old.len() as u64, Ordering::Relaxed);
        }
        let Some(plaintext) = plaintext else { return };
        let len = plaintext.len() as u64;
        let partly_filled = len < self.io.pad_size;
        if partly_filled
            && self.cached_bytes.fetch_add(len, Ordering::Relaxed) + len <= CACHE_BUDGET
        {
            state.content = Some(plaintext);
        } else if partly_filled {
            self.cached_bytes.fetch_sub(len, Ordering::Relaxed);
        }
    }
}

/// Writes `parts` (`(offset, bytes)`) over `plaintext`, extending it with
/// zeros as far as they reach.
fn patch(plaintext: &mut Vec<u8>, parts: &[(u64, Bytes)]) {
    let end = parts
        .iter()
        .map(|(o, b)| o + b.len() as u64)
        .max()
        .unwrap_or(0);
    if (plaintext.len() as u64) < end {
        plaintext.resize(end as usize, 0);
    }
    for (offset, bytes) in parts {
        let offset = *offset as usize;
        plaintext[offset..offset + bytes.len()].copy_from_slice(bytes);
    }
}

/// Whether the parts together cover `[0, pad_size)`.
fn covers(parts: &[(u64, Bytes)], pad_size: u64) -> bool {
    let mut ranges: Vec<(u64, u64)> = parts
        .iter()
        .map(|(o, b)| (*o, o + b.len() as u64))
        .collect();
    ranges.sort_unstable();
    let mut reached = 0;
    for (start, end) in ranges {
        if start > reached {
            return false;
        }
        reached = reached.max(end);
    }
    reached >= pad_size
}
