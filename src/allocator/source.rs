//! Where a put's bytes come from: a buffer in memory, or a file read a
//! part at a time (`store_file`), so an item larger than memory is stored
//! with at most a few pads' worth of it in memory.
//!
//! A file is read with positioned reads (`pread`), so each pad's upload
//! reads its own range when it starts, in whatever order reservations
//! finish. What the file was when the put began (its length and
//! modification time) is recorded; a short read, or a file found changed
//! before the commit, fails the put: a file changing under a put would
//! otherwise be stored as a mix of two versions.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use twox_hash::XxHash3_128;

use crate::blocking::on_blocking_pool;
use crate::crypto::Digest;
use crate::error::{Error, Result};

/// Bytes sampled from each MiB by the fingerprint (as `crypto::fingerprint`).
const FINGERPRINT_SAMPLE: u64 = 4096;
const MIB: u64 = 1 << 20;

/// A put's data.
#[derive(Clone)]
pub enum ItemData {
    Memory(Bytes),
    File(Arc<FileSource>),
}

impl ItemData {
    pub fn len(&self) -> u64 {
        match self {
            ItemData::Memory(bytes) => bytes.len() as u64,
            ItemData::File(file) => file.len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the bytes are read as the put needs them (and so must be
    /// bounded by the writer) rather than all in memory already.
    pub fn is_streamed(&self) -> bool {
        matches!(self, ItemData::File(_))
    }

    /// `len` bytes at `at`.
    pub async fn slice(&self, at: u64, len: u64) -> Result<Bytes> {
        match self {
            ItemData::Memory(bytes) => Ok(bytes.slice(at as usize..(at + len) as usize)),
            ItemData::File(file) => file.read(at, len).await,
        }
    }

    /// All of it, in memory (a small item).
    pub async fn all(&self) -> Result<Bytes> {
        self.slice(0, self.len()).await
    }

    /// `crypto::fingerprint` of the data, reading only its samples.
    pub async fn fingerprint(&self) -> Result<Digest> {
        match self {
            ItemData::Memory(bytes) => Ok(crate::crypto::fingerprint(bytes)),
            ItemData::File(file) => {
                let file = Arc::clone(file);
                on_blocking_pool(move || file.fingerprint()).await
            }
        }
    }

    /// Fails if the file changed since the put began.
    pub async fn check_unchanged(&self) -> Result<()> {
        match self {
            ItemData::Memory(_) => Ok(()),
            ItemData::File(file) => {
                let file = Arc::clone(file);
                on_blocking_pool(move || file.check_unchanged()).await
            }
        }
    }
}

/// What identifies one state of a file: a change of either means its
/// content changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
}

impl FileStamp {
    fn of(file: &File) -> std::io::Result<Self> {
        let meta = file.metadata()?;
        Ok(Self {
            len: meta.len(),
            modified: meta.modified().ok(),
        })
    }
}

/// The bytes of a regular file from `start` to its end.
pub struct FileSource {
    file: File,
    start: u64,
    len: u64,
    stamp: FileStamp,
    /// For messages.
    name: String,
}

impl FileSource {
    /// The whole file at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let name = path.display().to_string();
        if path.is_dir() {
            return Err(Error::invalid(format!(
                "{name} is a directory; store_file stores one file"
            )));
        }
        let file = File::open(path)
            .map_err(|error| Error::invalid(format!("cannot read {name}: {error}")))?;
        Self::from_file(file, 0, name)
    }

    /// The bytes of an open file from `start` on.
    pub fn from_file(file: File, start: u64, name: String) -> Result<Self> {
        let stamp = FileStamp::of(&file)
            .map_err(|error| Error::invalid(format!("cannot read {name}: {error}")))?;
        let meta = file
            .metadata()
            .map_err(|error| Error::invalid(format!("cannot read {name}: {error}")))?;
        if meta.is_dir() {
            return Err(Error::invalid(format!(
                "{name} is a directory; store_file stores one file"
            )));
        }
        if !meta.is_file() {
            return Err(Error::invalid(format!(
                "{name} is not a regular file (its size is unknown in advance)"
            )));
        }
        let len = stamp.len.checked_sub(start).ok_or_else(|| {
            Error::invalid(format!(
                "{name} is {} bytes long; reading from {start} is past its end",
                stamp.len
            ))
        })?;
        Ok(Self {
            file,
            start,
            len,
            stamp,
            name,
        })
    }

    /// Bytes of the source (its length, fixed when the put began).
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `len` bytes at `at` (of the source), on the blocking pool.
    pub async fn read(self: &Arc<Self>, at: u64, len: u64) -> Result<Bytes> {
        let this = Arc::clone(self);
        on_blocking_pool(move || this.read_now(at, len).map(Bytes::from)).await
    }

    fn read_now(&self, at: u64, len: u64) -> Result<Vec<u8>> {
        let size = usize::try_from(len).map_err(|_| Error::invalid("a part larger than memory"))?;
        let mut buffer = vec![0u8; size];
        let mut filled = 0;
        while filled < size {
            match self
                .file
                .read_at(&mut buffer[filled..], self.start + at + filled as u64)
            {
                Ok(0) => return Err(self.changed()),
                Ok(n) => filled += n,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => {
                    return Err(Error::invalid(format!(
                        "reading {} failed: {error}",
                        self.name
                    )));
                }
            }
        }
        Ok(buffer)
    }

    fn changed(&self) -> Error {
        Error::invalid(format!(
            "{} changed while it was being stored (it was {} bytes long); \
             nothing was stored under the key",
            self.name, self.stamp.len
        ))
    }

    fn check_unchanged(&self) -> Result<()> {
        match FileStamp::of(&self.file) {
            Ok(stamp) if stamp == self.stamp => Ok(()),
            Ok(_) => Err(self.changed()),
            Err(error) => Err(Error::invalid(format!(
                "reading {} failed: {error}",
                self.name
            ))),
        }
    }

    /// `crypto::fingerprint` of the bytes, reading 4 KiB of each MiB.
    fn fingerprint(&self) -> Result<Digest> {
        let mut hasher = XxHash3_128::new();
        hasher.write(&self.len.to_le_bytes());
        if self.len <= 4 * MIB {
            hasher.write(&self.read_now(0, self.len)?);
        } else {
            let mut at = 0;
            while at < self.len {
                let sample = FINGERPRINT_SAMPLE.min(self.len - at);
                hasher.write(&self.read_now(at, sample)?);
                at += MIB;
            }
            hasher.write(&self.read_now(self.len - FINGERPRINT_SAMPLE, FINGERPRINT_SAMPLE)?);
        }
        Ok(hasher.finish_128().to_le_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[tokio::test]
    async fn a_file_fingerprint_matches_the_fingerprint_of_its_bytes() {
        for len in [0usize, 10, 4 << 20, (4 << 20) + 1, (9 << 20) + 12345] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let mut file = tempfile::tempfile().unwrap();
            file.write_all(b"xyz").unwrap();
            file.write_all(&data).unwrap();
            let source = ItemData::File(Arc::new(
                FileSource::from_file(file, 3, "test".into()).unwrap(),
            ));
            assert_eq!(source.len(), len as u64);
            assert_eq!(
                source.fingerprint().await.unwrap(),
                crate::crypto::fingerprint(&data),
                "{len}"
            );
        }
    }

    #[tokio::test]
    async fn a_file_that_shrank_is_an_error_not_zeros() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(&[1u8; 1000]).unwrap();
        let source = Arc::new(FileSource::open(file.path()).unwrap());
        file.as_file().set_len(500).unwrap();
        let error = source.read(400, 200).await.unwrap_err();
        assert!(error.to_string().contains("changed while"), "{error}");
        let data = ItemData::File(source);
        assert!(data.check_unchanged().await.is_err());
    }
}
