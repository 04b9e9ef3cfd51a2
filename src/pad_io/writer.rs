//! The pad writer: every change to a pad goes through its slot, which
//! applies all queued patches to the latest content and uploads them in one
//! write (group commit, `group_commit.rs`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::{PadIo, permits_closed};
use crate::crypto::AuthTag;
use crate::error::{Error, Result};
use crate::group_commit::{self, GroupCommit, Reply, Ticket};
use crate::pad::{self, PadId};

/// Most plaintext the writer keeps of partly filled pads, to patch them
/// without reading them back.
const CACHE_BUDGET: u64 = 64 << 20;

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
        // Where the version this write builds on lives: the write goes to
        // another object where versions alternate (a pad written before
        // they did may hold any version in its first object).
        let mut base_version = min_version;
        let mut base_object = (min_version > 0).then(|| self.io.object_name(slot.id, min_version));
        let mut plaintext = Vec::new();
        if whole.is_none() {
            let base;
            (base_version, plaintext, base) = self
                .content_to_patch(slot, parts, content, min_version, durable)
                .await?;
            base_object = base.or(base_object);
            patch(&mut plaintext, parts);
        }
        let mut version = {
            let state = slot.state.lock().expect("slot lock");
            state.next_version.max(base_version.saturating_add(1))
        };
        if self.io.alternating() && base_object == Some(self.io.object_name(slot.id, version)) {
            version = version.saturating_add(1);
        }
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

    /// The content that `parts` patch, its version, and the object it was
    /// read from: nothing if they cover the pad, else the cached content
    /// (of `min_version`), else the pad as read.
    async fn content_to_patch(
        &self,
        slot: &Slot,
        parts: &[(u64, Bytes)],
        content: Option<Bytes>,
        min_version: u64,
        durable: bool,
    ) -> Result<(u64, Vec<u8>, Option<String>)> {
        if covers(parts, self.io.pad_size) {
            return Ok((min_version, Vec::new(), None));
        }
        if let Some(content) = content {
            return Ok((min_version, content.to_vec(), None));
        }
        match self.io.read(slot.id, min_version).await {
            Ok(read) => Ok((read.version, read.plaintext, read.object)),
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
                Ok((min_version, Vec::new(), None))
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
