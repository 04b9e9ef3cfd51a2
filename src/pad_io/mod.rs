//! Pad I/O: reserving, reading and writing sealed pads, with retries and the
//! concurrency limits of a store. Writes to one pad are group-committed
//! (`writer.rs`): every change to a pad goes through its [`PadWriter`]
//! slot, which applies all queued patches to the latest content and uploads
//! them in one write, so two puts sharing a pad never lose each other's
//! bytes and many small puts share one upload.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Semaphore;

use crate::blocking;
use crate::crypto::{AuthTag, StoreKeys};
use crate::error::{Error, Result};
use crate::pad::{self, PadId};
use crate::pad_store::{Backend, BackendError};
use crate::retry::RetryPolicy;

mod writer;
pub use writer::PadWriter;

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

    /// Whether a pad's versions alternate between its two objects (see
    /// `PadId::object_name_for`).
    fn alternating(&self) -> bool {
        !self.backend.capabilities().overwrites_atomic
    }

    /// The object that holds (or will hold) `version` of pad `id`.
    pub fn object_name(&self, id: PadId, version: u64) -> String {
        id.object_name_for(version, self.alternating())
    }

    /// Reads and opens a pad, whole: at least `min_version`, from the object
    /// that version was written to. Where versions alternate between two
    /// objects, the other one is read if that one is missing or fails (a
    /// pad written before they alternated, or a write that the service
    /// lost), and both when the version is unknown (`min_version` 0), the
    /// newer winning.
    pub async fn read(&self, id: PadId, min_version: u64) -> Result<PadContent> {
        let first = self.object_name(id, min_version);
        let found = self.read_object(id, &first, min_version).await;
        let found = match found {
            found if !self.alternating() => found,
            Ok(Some(content)) if min_version > 0 => Ok(Some(content)),
            found => {
                let other = if first == id.object_name() {
                    id.odd_object_name()
                } else {
                    id.object_name()
                };
                match (found, self.read_object(id, &other, min_version).await) {
                    (Ok(Some(a)), Ok(Some(b))) => {
                        Ok(Some(if b.version > a.version { b } else { a }))
                    }
                    (Ok(Some(content)), _) | (_, Ok(Some(content))) => Ok(Some(content)),
                    (Ok(None), other) => other,
                    (Err(error), _) => Err(error),
                }
            }
        };
        match found? {
            Some(content) => Ok(content),
            // Reserved without a call and never written: empty. A pad that
            // was written (version >= 1) and is missing stays an error.
            None if min_version == 0 && self.backend.capabilities().missing_pads_read_empty => {
                Ok(PadContent {
                    version: 0,
                    plaintext: Vec::new(),
                    tag: None,
                    object: None,
                })
            }
            None => Err(BackendError::NotFound(first).into()),
        }
    }

    /// Reads and opens the pad object `name` of pad `id`; `None` if absent.
    async fn read_object(
        &self,
        id: PadId,
        name: &str,
        min_version: u64,
    ) -> Result<Option<PadContent>> {
        let max_size = pad::max_object_len(self.pad_size);
        let sealed = match self
            .retry
            .run(|_| self.backend.get_capped(name, max_size))
            .await
        {
            Err(BackendError::NotFound(_)) => return Ok(None),
            other => other?,
        };
        self.formats.saw(id, pad::is_frame(&sealed));
        let (keys, store_id, pad_size) = (Arc::clone(&self.keys), self.store_id, self.pad_size);
        let name = name.to_string();
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
            Ok(Some(PadContent {
                version: opened.version,
                plaintext: opened.plaintext,
                tag: Some(opened.tag),
                object: Some(name),
            }))
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
        let name = self.object_name(id, min_version);
        let (first, frames) = pad::frames_of(range.clone());
        let requested = frames.end - frames.start;
        let granule = self.backend.capabilities().range_read_granule;
        let asked = range_to_ask(frames, granule);
        let mut fetched = match self
            .retry
            .run(|_| self.backend.get_range(&name, asked.clone()))
            .await
        {
            Ok(fetched) if pad::is_frame(&fetched) => fetched,
            // A format 2 pad: its bytes at a frame's place are no frame.
            Ok(_) => {
                self.formats.saw(id, false);
                return Ok(whole(self.read(id, min_version).await?));
            }
            // Where versions alternate, the pad may be in its other object
            // (written before they did): the whole read looks there.
            Err(BackendError::NotFound(_)) if self.alternating() => {
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
        // What was asked for past the frames only to end on a granule.
        fetched.truncate(requested as usize);
        let at = pad::FramesAt {
            first,
            ends_object: (fetched.len() as u64) < requested,
        };
        let opened = self
            .open_frames(id, at, min_version, fetched, range.clone())
            .await;
        match opened {
            // Frames that do not open: a damaged pad, which the whole read
            // reports too (it opens every frame), or, once in 2^32, a
            // format 2 pad whose bytes there look like a frame's magic.
            Err(Error::Integrity(_)) => Ok(whole(self.read(id, min_version).await?)),
            other => other,
        }
    }

    /// Opens frames fetched by a ranged read (`at` says where they are)
    /// and cuts bytes `range` of the pad's content from them.
    async fn open_frames(
        &self,
        id: PadId,
        at: pad::FramesAt,
        min_version: u64,
        fetched: Bytes,
        range: std::ops::Range<u64>,
    ) -> Result<(u64, Bytes)> {
        let (keys, store_id, pad_size) = (Arc::clone(&self.keys), self.store_id, self.pad_size);
        blocking::off_runtime(fetched.len(), move || {
            let base = at.first * pad::SEGMENT;
            let (version, plaintext, _) = pad::open_frames(
                &keys,
                &store_id,
                id,
                at,
                min_version,
                pad_size,
                Vec::from(fetched),
            )?;
            let plaintext = Bytes::from(plaintext);
            Ok((
                version,
                window(&plaintext, range.start - base..range.end - base),
            ))
        })
        .await
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
        let name = self.object_name(id, version);
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

/// The object bytes a ranged read of `frames` asks for: up to the next
/// multiple of the backend's `granule`, if it has one (see
/// `Capabilities::range_read_granule`).
fn range_to_ask(frames: std::ops::Range<u64>, granule: Option<u64>) -> std::ops::Range<u64> {
    match granule {
        Some(granule) if granule > 0 => frames.start..frames.end.next_multiple_of(granule),
        _ => frames,
    }
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
    /// The object it was read from; `None` for a pad never written.
    pub object: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read of frames ending a few bytes past a granule asks for the rest
    /// of it; one ending on a granule, or without one, asks for the frames.
    #[test]
    fn ranged_reads_end_on_the_backends_granule() {
        let granule = Some(64 << 10);
        let (_, one_frame) = pad::frames_of(5 * pad::SEGMENT..6 * pad::SEGMENT);
        assert_eq!(one_frame.end % (64 << 10), 6 * 53);
        assert_eq!(
            range_to_ask(one_frame.clone(), granule),
            one_frame.start..7 * (64 << 10)
        );
        assert_eq!(range_to_ask(one_frame.clone(), None), one_frame);
        assert_eq!(range_to_ask(0..128 << 10, granule), 0..128 << 10);
    }
}
