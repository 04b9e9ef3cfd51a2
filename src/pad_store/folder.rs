//! Writing a folder store's objects: each put writes a staging file
//! `<name>#<n>` and renames it into place, so a reader (or a process that
//! crashed mid-write) never sees a torn object; with `fsync`, the file and
//! then its folder are flushed before the put returns. A create (only if
//! absent) links its staging file into place instead, which on Linux has
//! no name at all (`O_TMPFILE`). The naming is
//! `object_store`'s, whose `LocalFileSystem` still reads, lists, deletes and
//! reserves, so staging files left by either are cleaned up alike.
//!
//! The write is a plain blocking call, so a pad can be sealed and written by
//! one call on one thread, while its bytes are still in that core's cache:
//! a large put then takes less time than when a sealing thread hands each
//! pad to a writing one (see docs/benchmarks.md).

use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind, Read, Write};

use bytes::Bytes;
use std::path::{Path, PathBuf};

use super::classify::classify_io;
use super::{BackendError, PutReceipt, check_size};

/// Writes objects into a store folder (see the module header).
#[derive(Debug, Clone)]
pub struct FolderWriter {
    root: PathBuf,
    fsync: bool,
    /// What messages call the store (its URL).
    url: String,
}

impl FolderWriter {
    pub fn new(root: PathBuf, fsync: bool, url: String) -> Self {
        Self { root, fsync, url }
    }

    pub fn fsync(&self) -> bool {
        self.fsync
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Replaces the object `name` (a checked name such as `p/…`) with
    /// `content`, atomically. Blocks: call from a blocking thread.
    pub fn put(&self, name: &str, content: &[u8]) -> Result<PutReceipt, BackendError> {
        self.write(name, content, self.fsync)
    }

    /// Like `put`, but the file and its folder reach the disk before it
    /// returns even when the store does not fsync (see `Backend::put_durable`).
    pub fn put_durable(&self, name: &str, content: &[u8]) -> Result<PutReceipt, BackendError> {
        self.write(name, content, true)
    }

    /// Reads the object `name` whole if it holds at most `max_size` bytes
    /// (see `Backend::get_capped`). Blocks.
    pub fn read_capped(&self, name: &str, max_size: u64) -> Result<Bytes, BackendError> {
        let failed = |error: io::Error| match error.kind() {
            ErrorKind::NotFound => BackendError::NotFound(name.to_owned()),
            _ => BackendError::Transient(format!("cannot read {name:?} in {}: {error}", self.url)),
        };
        let mut file = File::open(self.root.join(name)).map_err(failed)?;
        let size = file.metadata().map_err(failed)?.len();
        check_size(name, size, max_size)?;
        let mut content = Vec::with_capacity(size as usize);
        file.read_to_end(&mut content).map_err(failed)?;
        Ok(Bytes::from(content))
    }

    /// Creates the object `name` with `content` only if it does not exist:
    /// `false` if it does (left untouched). Blocks.
    pub fn create(&self, name: &str, content: &[u8]) -> Result<bool, BackendError> {
        self.create_with(name, content, self.fsync)
    }

    /// Creates `name` with `content` only if it is absent, on stable storage
    /// before it returns whatever the store's fsync setting (see
    /// `Backend::reserve_durable`).
    pub fn reserve_durable(&self, name: &str, content: &[u8]) -> Result<(), BackendError> {
        if self.create_with(name, content, true)? {
            Ok(())
        } else {
            Err(BackendError::AlreadyExists(name.to_owned()))
        }
    }

    /// The staging file is written (and with `fsync` flushed), linked into
    /// place (a link never replaces a file), removed, and the folder flushed.
    /// On Linux the staging file has no name (`O_TMPFILE`), which spares
    /// two of the three changes to the folder: small puts create one such
    /// object each, and those changes were most of their time.
    fn create_with(&self, name: &str, content: &[u8], fsync: bool) -> Result<bool, BackendError> {
        let path = self.root.join(name);
        #[cfg(target_os = "linux")]
        match create_unnamed(&path, content, fsync) {
            Ok(linked) => {
                if linked {
                    sync_parent(&path, fsync).map_err(|error| self.error(&error, name))?;
                }
                return Ok(linked);
            }
            // The file system (or a missing /proc) does not allow it, or the
            // folder is missing: the named staging file below handles both.
            Err(Unnamed::Unsupported) => {}
            Err(Unnamed::Failed(error)) => return Err(self.error(&error, name)),
        }
        let (mut file, staging) = self
            .staging_file(&path, fsync)
            .map_err(|error| self.error(&error, name))?;
        let linked = file
            .write_all(content)
            .and_then(|()| if fsync { file.sync_all() } else { Ok(()) })
            .and_then(|()| {
                drop(file);
                std::fs::hard_link(&staging, &path)
            });
        let _ = std::fs::remove_file(&staging);
        match linked {
            Ok(()) => {}
            Err(error) if error.kind() == ErrorKind::AlreadyExists => return Ok(false),
            Err(error) => return Err(self.error(&error, name)),
        }
        // The link and the staging file's removal reach the disk together.
        sync_parent(&path, fsync).map_err(|error| self.error(&error, name))?;
        Ok(true)
    }

    fn write(&self, name: &str, content: &[u8], fsync: bool) -> Result<PutReceipt, BackendError> {
        let path = self.root.join(name);
        let (mut file, staging) = self
            .staging_file(&path, fsync)
            .map_err(|error| self.error(&error, name))?;
        let written = file
            .write_all(content)
            .and_then(|()| if fsync { file.sync_all() } else { Ok(()) })
            .and_then(|()| {
                drop(file);
                publish(&staging, &path)
            })
            .and_then(|()| sync_parent(&path, fsync));
        if let Err(error) = written {
            let _ = std::fs::remove_file(&staging);
            return Err(self.error(&error, name));
        }
        // A rename is atomic and needs no version tag: `verify` checks the
        // object is there with this size.
        Ok(PutReceipt {
            e_tag: None,
            size: content.len() as u64,
        })
    }

    /// A new staging file beside `path`, creating its folder if missing.
    fn staging_file(&self, path: &Path, fsync: bool) -> io::Result<(File, PathBuf)> {
        let (mut attempt, mut created_folder) = (1u32, false);
        loop {
            let mut staging = path.as_os_str().to_owned();
            staging.push(format!("#{attempt}"));
            let staging = PathBuf::from(staging);
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&staging)
            {
                Ok(file) => return Ok((file, staging)),
                // Another put of the same name is staging beside us.
                Err(error) if error.kind() == ErrorKind::AlreadyExists => attempt += 1,
                Err(error) if error.kind() == ErrorKind::NotFound && !created_folder => {
                    let folder = path.parent().unwrap_or(&self.root);
                    std::fs::create_dir_all(folder)?;
                    sync_parent(folder, fsync)?;
                    created_folder = true;
                }
                Err(error) => return Err(error),
            }
        }
    }

    fn error(&self, error: &io::Error, name: &str) -> BackendError {
        classify_io(error, name, &self.url, &error.to_string())
    }
}

#[cfg(target_os = "linux")]
enum Unnamed {
    Unsupported,
    Failed(io::Error),
}

/// Writes `content` to a new file without a name in `path`'s folder and
/// links it as `path`: `Ok(false)` if `path` exists (left untouched).
#[cfg(target_os = "linux")]
fn create_unnamed(path: &Path, content: &[u8], fsync: bool) -> Result<bool, Unnamed> {
    use rustix::fs::{AtFlags, CWD, Mode, OFlags, linkat, openat};
    use rustix::io::Errno;
    use std::os::fd::AsRawFd;

    let folder = path.parent().ok_or(Unnamed::Unsupported)?;
    let flags = OFlags::WRONLY | OFlags::TMPFILE | OFlags::CLOEXEC;
    let fd = match openat(CWD, folder, flags, Mode::from_raw_mode(0o666)) {
        Ok(fd) => fd,
        Err(Errno::NOENT | Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL) => {
            return Err(Unnamed::Unsupported);
        }
        Err(error) => return Err(Unnamed::Failed(error.into())),
    };
    let mut file = File::from(fd);
    file.write_all(content)
        .and_then(|()| if fsync { file.sync_all() } else { Ok(()) })
        .map_err(Unnamed::Failed)?;
    // The file's own entry in /proc names it without a name of its own.
    let proc_name = format!("/proc/self/fd/{}", file.as_raw_fd());
    match linkat(CWD, proc_name.as_str(), CWD, path, AtFlags::SYMLINK_FOLLOW) {
        Ok(()) => Ok(true),
        Err(Errno::EXIST) => Ok(false),
        Err(Errno::NOENT) if !Path::new("/proc/self/fd").exists() => Err(Unnamed::Unsupported),
        Err(error) => Err(Unnamed::Failed(error.into())),
    }
}

/// Creates the folder `path` and any missing folders above it, each on
/// stable storage before this returns: every new folder's entry is flushed
/// in its parent (a folder created but not flushed vanishes in a power
/// loss, with everything under it, however well its files were flushed).
pub(crate) fn create_folder_durably(path: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut folder = path;
    while !folder.is_dir() {
        missing.push(folder);
        match folder.parent() {
            Some(parent) => folder = parent,
            None => break,
        }
    }
    std::fs::create_dir_all(path)?;
    // Parents first: a folder's entry is durable once its parent is flushed.
    for created in missing.iter().rev() {
        sync_parent(created, true)?;
    }
    Ok(())
}

/// With `fsync`, flushes the folder holding `path` (its entry for it).
fn sync_parent(path: &Path, fsync: bool) -> io::Result<()> {
    match path.parent() {
        Some(folder) if fsync => File::open(folder)?.sync_all(),
        _ => Ok(()),
    }
}

/// Moves the staging file to `path`, atomically replacing what is there.
///
/// A plain rename over an existing file makes ext4 write the new file's data
/// out at once (`auto_da_alloc`, its guard for programs that never fsync),
/// which made a put reusing a store's pads several times slower than one
/// into new pads. On Linux the two files are swapped instead, as atomic,
/// and the old one deleted: a crash in between leaves a staging file, which
/// the next open removes.
pub(crate) fn publish(staging: &Path, path: &Path) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use rustix::fs::{CWD, RenameFlags, renameat_with};
        use rustix::io::Errno;
        match renameat_with(CWD, staging, CWD, path, RenameFlags::EXCHANGE) {
            Ok(()) => {
                // The old content; if it stays, it is a staging file like any.
                let _ = std::fs::remove_file(staging);
                return Ok(());
            }
            // Nothing to replace, or a file system that cannot swap.
            Err(Errno::NOENT | Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP) => {}
            Err(error) => return Err(error.into()),
        }
    }
    std::fs::rename(staging, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_put_replaces_the_object_and_leaves_no_staging_file() {
        let dir = tempfile::tempdir().unwrap();
        for fsync in [false, true] {
            let writer = FolderWriter::new(dir.path().into(), fsync, "test".into());
            let receipt = writer.put("p/abc", b"first").unwrap();
            assert_eq!(receipt.size, 5);
            writer.put("p/abc", b"second!").unwrap();
            assert_eq!(std::fs::read(dir.path().join("p/abc")).unwrap(), b"second!");
            let names: Vec<_> = std::fs::read_dir(dir.path().join("p"))
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            assert_eq!(names, ["abc"]);
        }
    }

    #[test]
    fn create_never_replaces_and_leaves_no_staging_file() {
        let dir = tempfile::tempdir().unwrap();
        for fsync in [false, true] {
            let writer = FolderWriter::new(dir.path().into(), fsync, "test".into());
            let name = format!("j/{fsync}");
            assert!(writer.create(&name, b"first").unwrap());
            assert!(!writer.create(&name, b"second").unwrap());
            assert_eq!(std::fs::read(dir.path().join(&name)).unwrap(), b"first");
        }
        let names: Vec<_> = std::fs::read_dir(dir.path().join("j"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
    }

    #[test]
    fn a_durable_reservation_creates_only_if_absent() {
        let dir = tempfile::tempdir().unwrap();
        let writer = FolderWriter::new(dir.path().into(), false, "test".into());
        writer.reserve_durable("meta", b"first").unwrap();
        let again = writer.reserve_durable("meta", b"second").unwrap_err();
        assert!(matches!(again, BackendError::AlreadyExists(_)), "{again:?}");
        assert_eq!(std::fs::read(dir.path().join("meta")).unwrap(), b"first");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["meta"], "no staging file left");
    }

    #[test]
    fn a_durable_folder_is_created_with_its_parents() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        create_folder_durably(&deep).unwrap();
        assert!(deep.is_dir());
        create_folder_durably(&deep).unwrap();
    }

    #[test]
    fn a_staging_name_in_use_is_stepped_over() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("p")).unwrap();
        std::fs::write(dir.path().join("p/abc#1"), b"left by a crash").unwrap();
        let writer = FolderWriter::new(dir.path().into(), false, "test".into());
        writer.put("p/abc", b"data").unwrap();
        assert_eq!(std::fs::read(dir.path().join("p/abc")).unwrap(), b"data");
        assert!(dir.path().join("p/abc#1").exists(), "not ours to remove");
    }

    #[test]
    fn a_file_in_the_way_is_a_permanent_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("p"), b"a file, not a folder").unwrap();
        let writer = FolderWriter::new(dir.path().into(), false, "test".into());
        let error = writer.put("p/abc", b"data").unwrap_err();
        assert!(matches!(error, BackendError::Permanent(_)), "{error:?}");
        let error = writer.create("p/abc", b"data").unwrap_err();
        assert!(matches!(error, BackendError::Permanent(_)), "{error:?}");
    }
}
