//! Items larger than memory: `store_file` (a put whose bytes are read from
//! a file as each pad's upload needs them), `fetch_file` (a get streamed to
//! a sink in order, a few pads at a time) and [`ItemHandle`] (reads of
//! ranges of an item, as `open_item` and `fetch_range` do).
//!
//! What is checked, and when:
//! 1. A whole read (`fetch_to`) checks the item's digest after its last
//!    byte: a file destination is renamed into place only then; bytes
//!    already handed to a file object are not taken back, but the call
//!    fails.
//! 2. A range read cannot check the item's digest (it covers the whole
//!    item). Every byte it returns comes from a pad that its AEAD
//!    authenticated, bound to the pad's id and a version at least the
//!    one the item's entry names. A pad newer than that was rewritten
//!    since (it is shared with other items, or the item was replaced):
//!    the handle then catches up with the index and fails unless its item
//!    is still the one stored, so a range read never returns another
//!    item's bytes. A small item still in the log is checked whole, by
//!    its digest, when the handle opens.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::follow::FollowMoves;
use super::{Store, validate_key};
use crate::allocator::{ChunkSink, FileSource, ItemData, ItemStream, inline_digest};
use crate::blocking::on_blocking_pool;
use crate::error::{Error, Result};
use crate::events::{Callback, EventSink, GetEvent, PutEvent};
use crate::index::Entry;
use crate::pad_store::BackendError;

/// A file written beside its destination and renamed into place once
/// complete and verified; removed if dropped before (an error, a cancel).
/// A process killed meanwhile leaves the temporary file, never a partial
/// file at the destination. A destination that is not a file (a device, a
/// pipe) is written directly.
pub struct FileDest {
    /// The temporary file's path, until it is renamed into place.
    temp: Option<PathBuf>,
    dest: PathBuf,
    writer: std::io::BufWriter<File>,
}

impl FileDest {
    pub fn create(dest: &Path) -> Result<Self> {
        let failed = |error: std::io::Error| {
            Error::invalid(format!("cannot write {}: {error}", dest.display()))
        };
        match std::fs::metadata(dest) {
            Ok(meta) if meta.is_dir() => {
                return Err(Error::invalid(format!(
                    "{} is a directory; fetch_file writes one file",
                    dest.display()
                )));
            }
            // A device, a pipe or a socket (`/dev/null`, `/dev/stdout`, a
            // FIFO) is written as it is: renaming over it would replace it
            // with a file (as root, even /dev/null).
            Ok(meta) if !meta.is_file() => {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .open(dest)
                    .map_err(failed)?;
                return Ok(Self {
                    temp: None,
                    dest: dest.to_path_buf(),
                    writer: std::io::BufWriter::with_capacity(1 << 20, file),
                });
            }
            _ => {}
        }
        // Through a link to a file, the file is replaced, not the link.
        let resolved = match std::fs::symlink_metadata(dest) {
            Ok(meta) if meta.file_type().is_symlink() => std::fs::canonicalize(dest).ok(),
            _ => None,
        };
        let dest = resolved.as_deref().unwrap_or(dest);
        let file_name = dest
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let random: [u8; 8] = crate::crypto::os_random();
        let suffix: String = random.iter().map(|b| format!("{b:02x}")).collect();
        // Hidden, beside the destination: the rename stays on one file system.
        let temp = dest.with_file_name(format!(".{file_name}.{suffix}.anthill-part"));
        let replaced = std::fs::metadata(dest).ok();
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        if replaced.is_some() {
            // Readable by no one else until it has the replaced file's mode.
            options.mode(0o600);
        }
        let file = options.open(&temp).map_err(failed)?;
        let dest_file = Self {
            temp: Some(temp),
            dest: dest.to_path_buf(),
            writer: std::io::BufWriter::with_capacity(1 << 20, file),
        };
        if let Some(replaced) = replaced {
            keep_owner_and_mode(dest_file.writer.get_ref(), &replaced).map_err(failed)?;
        }
        Ok(dest_file)
    }

    /// Moves the complete file into place.
    fn commit(mut self) -> Result<()> {
        let dest = self.dest.clone();
        let failed = |error: std::io::Error| {
            Error::invalid(format!("cannot write {}: {error}", dest.display()))
        };
        self.writer.flush().map_err(failed)?;
        if let Some(temp) = &self.temp {
            std::fs::rename(temp, &self.dest).map_err(failed)?;
        }
        self.temp = None;
        Ok(())
    }
}

impl Drop for FileDest {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            let _ = std::fs::remove_file(temp); // not renamed: incomplete
        }
    }
}

/// Gives a new file (still empty) the owner and mode of the file it will
/// replace, as writing into that file would have kept them: a file of
/// secrets stays private. The owner only where this process may set it (as
/// root, or the group where it owns the file and is in that group); the
/// mode after the owner, since changing an owner clears set-id bits.
fn keep_owner_and_mode(file: &File, replaced: &std::fs::Metadata) -> std::io::Result<()> {
    let mine = file.metadata()?;
    if (mine.uid(), mine.gid()) != (replaced.uid(), replaced.gid()) {
        let uid = (mine.uid() != replaced.uid()).then_some(replaced.uid());
        // Refused unless allowed (EPERM): the file then keeps ours, with the
        // replaced file's mode, so it is no more readable than that one.
        let _ = std::os::unix::fs::fchown(file, uid, Some(replaced.gid()));
    }
    file.set_permissions(std::fs::Permissions::from_mode(replaced.mode() & 0o7777))
}

impl ChunkSink for FileDest {
    fn write_chunk(&mut self, chunk: &[u8]) -> Result<()> {
        self.writer.write_all(chunk).map_err(|error| {
            Error::invalid(format!("cannot write {}: {error}", self.dest.display()))
        })
    }

    /// A temporary file starts over; a device or a pipe cannot.
    fn restart(&mut self) -> Result<bool> {
        if self.temp.is_none() {
            return Ok(false);
        }
        let failed = |error: std::io::Error| {
            Error::invalid(format!("cannot write {}: {error}", self.dest.display()))
        };
        self.writer.seek(SeekFrom::Start(0)).map_err(failed)?;
        self.writer.get_ref().set_len(0).map_err(failed)?;
        Ok(true)
    }
}

/// An item as it was when opened, for reads of ranges of it.
pub struct ItemHandle {
    store: Store,
    key: String,
    size: u64,
    /// Where the item lies: its entry when opened, updated when a
    /// compaction moves it (same data id, other places), and its bytes
    /// while they are still in the log (checked by its digest).
    pinned: std::sync::Mutex<(Entry, Option<Bytes>)>,
}

/// What the index says of a handle's item now.
enum Current {
    /// Where it was: the bytes read are its own.
    Unmoved,
    /// The same item, moved by a compaction: read again from here (its
    /// entry, and its bytes if they are in the log again).
    Moved((Entry, Option<Bytes>)),
}

impl ItemHandle {
    pub fn size(&self) -> u64 {
        self.size
    }

    fn pinned(&self) -> (Entry, Option<Bytes>) {
        self.pinned.lock().expect("item handle lock").clone()
    }

    /// `len` bytes at `offset`; the range must lie inside the item.
    pub async fn read(&self, offset: u64, len: u64) -> Result<Bytes> {
        self.store.check_open()?;
        check_range(self.size, offset, len)?;
        if len == 0 {
            return Ok(Bytes::new());
        }
        let allocator = &self.store.inner.allocator;
        // Another pass only if a compaction moved the item meanwhile.
        for _ in 0..3 {
            let (entry, inline) = self.pinned();
            if let Some(data) = inline {
                return Ok(data.slice(offset as usize..(offset + len) as usize));
            }
            let check = match allocator.read_range(&entry, offset, len).await {
                Ok((bytes, false)) => return Ok(bytes),
                Ok((bytes, true)) => Ok(bytes),
                // Another process may have moved, replaced or removed it.
                Err(error @ (Error::Integrity(_) | Error::Backend(BackendError::NotFound(_)))) => {
                    Err(error)
                }
                Err(error) => return Err(error),
            };
            match (self.current(&entry).await?, check) {
                (Current::Unmoved, outcome) => return outcome,
                (Current::Moved(moved), _) => {
                    *self.pinned.lock().expect("item handle lock") = moved;
                }
            }
        }
        Err(Error::integrity(format!(
            "item {:?} kept moving while it was read; open it again",
            self.key
        )))
    }

    /// Whether the item is still the one this handle opened, and still
    /// where `entry` places it; an error if it was replaced or removed.
    ///
    /// The same item is the same data id: every put takes a new one, and a
    /// compaction moving an item keeps it (its digest may change, since a
    /// small item moved whole may be cut into other pieces).
    async fn current(&self, entry: &Entry) -> Result<Current> {
        self.store.inner.gate.catch_up().await?;
        let Some((now, inline)) = self.store.lookup_here(&self.key).await? else {
            return Err(Error::KeyNotFound(self.key.clone()));
        };
        if now.data_id != entry.data_id || now.size != entry.size {
            return Err(Error::integrity(format!(
                "item {:?} was replaced while it was open for reading; open it again",
                self.key
            )));
        }
        // Written back or rewritten around it, a piece keeps its place and
        // only its version grows.
        let places = |e: &Entry| -> Vec<(u64, u64, u64)> {
            e.pieces.iter().map(|p| (p.pad, p.offset, p.len)).collect()
        };
        if places(&now) == places(entry) && inline.is_none() {
            return Ok(Current::Unmoved);
        }
        if let Some(data) = &inline {
            check_inline(&now, data)?;
        }
        Ok(Current::Moved((now, inline)))
    }
}

/// Checks the bytes of an item still in the log against its digest.
fn check_inline(entry: &Entry, data: &[u8]) -> Result<()> {
    if inline_digest(&entry.pieces, data)? != entry.hash {
        return Err(Error::integrity(
            "item content does not match its digest: its index log record was modified",
        ));
    }
    Ok(())
}

fn check_range(size: u64, offset: u64, len: u64) -> Result<()> {
    if offset.checked_add(len).is_none_or(|end| end > size) {
        return Err(Error::invalid(format!(
            "the range of {len} bytes at {offset} is past the end of the {size}-byte item"
        )));
    }
    Ok(())
}

impl Store {
    /// Stores the bytes of `source` under `key`, reading each pad's part
    /// as its upload starts: memory holds a bounded number of parts
    /// whatever the item's size. Fails (the key absent or pending) if the
    /// file changes meanwhile.
    pub async fn store_file(
        &self,
        key: &str,
        source: FileSource,
        options: super::PutOptions,
        callback: Option<Callback<PutEvent>>,
    ) -> Result<()> {
        let events = Arc::new(EventSink::new(callback));
        let data = ItemData::File(Arc::new(source));
        let result = self.put(key, data, &options, &events).await;
        events.close();
        result
    }

    /// The item's entry and, if it is still in the log, its bytes; from
    /// this process's index, else after catching up with other writers.
    /// Reads see what other writers committed at most the backend's
    /// `read_staleness` late (at once on a folder); a key not found here is
    /// looked for again after catching up.
    pub(super) async fn lookup(&self, key: &str) -> Result<(Entry, Option<Bytes>)> {
        let staleness = self.inner.backend.capabilities().read_staleness;
        let caught_up = self.inner.gate.catch_up_within(staleness).await?;
        if let Some(found) = self.lookup_here(key).await? {
            return Ok(found);
        }
        if caught_up {
            return Err(Error::KeyNotFound(key.to_string()));
        }
        self.inner.gate.catch_up().await?;
        self.lookup_here(key)
            .await?
            .ok_or_else(|| Error::KeyNotFound(key.to_string()))
    }

    /// Like `lookup`, in this process's index only.
    pub(super) async fn lookup_here(&self, key: &str) -> Result<Option<(Entry, Option<Bytes>)>> {
        self.inner
            .journal
            .read_items(|index| {
                let Some(entry) = index.items.get(key)? else {
                    return Ok(None);
                };
                let inline = index.inline_data(&entry);
                Ok(Some((entry, inline)))
            })
            .await
    }

    /// Opens the item stored under `key` for reads of its ranges.
    pub async fn open_item(&self, key: &str) -> Result<ItemHandle> {
        self.check_open()?;
        validate_key(key)?;
        let (entry, inline) = self.lookup(key).await?;
        if let Some(data) = &inline {
            check_inline(&entry, data)?;
        }
        Ok(ItemHandle {
            store: self.clone(),
            key: key.to_string(),
            size: entry.size,
            pinned: std::sync::Mutex::new((entry, inline)),
        })
    }

    /// `len` bytes at `offset` of the item stored under `key`, reading only
    /// the pad segments that hold them.
    pub async fn fetch_range(&self, key: &str, offset: u64, len: u64) -> Result<Bytes> {
        let handle = self.open_item(key).await?;
        check_range(handle.size(), offset, len)?;
        match handle.read(offset, len).await {
            // The item moved (another process replaced or compacted it):
            // read it where it is now.
            Err(Error::Integrity(_) | Error::Backend(BackendError::NotFound(_)))
                if handle.pinned().1.is_none() =>
            {
                let handle = self.open_item(key).await?;
                check_range(handle.size(), offset, len)?;
                handle.read(offset, len).await
            }
            result => result,
        }
    }

    /// Streams the item stored under `key` to `dest`, a file written beside
    /// its place and renamed into it once complete and verified. Returns
    /// the bytes written.
    pub async fn fetch_file(
        &self,
        key: &str,
        dest: &Path,
        callback: Option<Callback<GetEvent>>,
    ) -> Result<u64> {
        self.check_open()?;
        validate_key(key)?;
        let dest = dest.to_path_buf();
        let events = EventSink::new(callback);
        let result = async {
            let found = self.lookup(key).await?;
            let file = on_blocking_pool(move || FileDest::create(&dest)).await?;
            let mut stream = ItemStream::new(file);
            self.stream_following(key, found, &mut stream, &events)
                .await?;
            let written = stream.written();
            let file = stream.into_sink()?;
            on_blocking_pool(move || file.commit()).await?;
            events.finish(GetEvent::DownloadFinished).await?;
            Ok(written)
        }
        .await;
        events.close();
        result
    }

    /// Streams the item stored under `key` to `sink`, then checks its
    /// digest. Returns the bytes written.
    pub async fn fetch_to<S: ChunkSink>(
        &self,
        key: &str,
        sink: S,
        callback: Option<Callback<GetEvent>>,
    ) -> Result<u64> {
        self.check_open()?;
        validate_key(key)?;
        let events = EventSink::new(callback);
        let result = async {
            let found = self.lookup(key).await?;
            let mut stream = ItemStream::new(sink);
            self.stream_following(key, found, &mut stream, &events)
                .await?;
            events.finish(GetEvent::DownloadFinished).await?;
            Ok(stream.written())
        }
        .await;
        events.close();
        result
    }

    /// Streams the item `found` under `key` to `stream`, following it if
    /// another process moves it meanwhile (see `follow.rs`): on from where
    /// the read stopped if only its place changed, else over again if the
    /// sink can take back what it was given (see `ItemStream::follow`).
    async fn stream_following<S: ChunkSink>(
        &self,
        key: &str,
        mut found: (Entry, Option<Bytes>),
        stream: &mut ItemStream<S>,
        events: &EventSink<GetEvent>,
    ) -> Result<()> {
        let mut follow = FollowMoves::new(self, key);
        loop {
            let error = match self
                .stream_to(&found.0, found.1.clone(), stream, events)
                .await
            {
                Ok(()) => return Ok(()),
                Err(error) if stream.sink_failed() => return Err(error),
                Err(error) => error,
            };
            let now = follow.after(&found.0, error).await?;
            if !stream.follow(&found.0, &now.0, now.1.is_some()).await? {
                return Err(Error::integrity(format!(
                    "item {key:?} was replaced while it was read, after {} bytes of it were \
                     written to the file object; fetch it again",
                    stream.written()
                )));
            }
            found = now;
        }
    }

    async fn stream_to<S: ChunkSink>(
        &self,
        entry: &Entry,
        inline: Option<Bytes>,
        stream: &mut ItemStream<S>,
        events: &EventSink<GetEvent>,
    ) -> Result<()> {
        let allocator = &self.inner.allocator;
        match inline {
            Some(data) => {
                // Small (at most a sixteenth of a pad): read whole, checked.
                let buffer = vec![0u8; data.len()];
                let silent = EventSink::new(None);
                let buffer = allocator.read_inline(entry, data, buffer, &silent).await?;
                stream.starting(entry.size, events).await?;
                stream.write(buffer).await?;
                stream.progress(entry.size, events).await
            }
            None => {
                if entry.size == 0 {
                    stream.write(Vec::new()).await?;
                }
                allocator.read_to(entry, stream, events).await
            }
        }
    }
}
