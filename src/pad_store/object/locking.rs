//! How writers of one [`ObjectPadStore`] exclude each other: a mutex in
//! process (memory stores), an OS file lock (a local folder), or the S3
//! lease (`lease/`); and how long each lingers and hands over.

use std::io::{self, Read, Seek, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::ObjectPadStore;
use crate::pad_store::lease::Lease;
use crate::pad_store::{BackendError, WriterLock, WriterLocking};

/// How writers of one store exclude each other (see [`WriterLocking`]).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Locking {
    /// Every handle on the store lives in this process (memory stores): an
    /// async mutex shared by all handles on the same store, holding the id
    /// of the last holder.
    InProcess(Arc<tokio::sync::Mutex<Option<[u8; 16]>>>),
    /// A local folder: an OS file lock (`flock`) on this file, which also
    /// excludes other handles in the same process. The file holds the id of
    /// the last holder (written, and with `fsync` flushed, before it writes
    /// anything else).
    Folder { file: PathBuf, fsync: bool },
    /// An S3 prefix: a lease object with expiry (see `lease/`).
    Lease(Arc<Lease>),
}

impl Locking {
    pub fn in_process() -> Self {
        Locking::InProcess(Arc::new(tokio::sync::Mutex::new(None)))
    }

    /// Takes the lock for `holder`, waiting for it if `wait`, else `None`
    /// if someone holds it (never for a lease: see `try_lock_writer`).
    async fn lock(
        &self,
        holder: &[u8; 16],
        wait: bool,
    ) -> Result<Option<Box<dyn WriterLock>>, BackendError> {
        match self {
            Locking::InProcess(mutex) => {
                let mut guard = if wait {
                    Arc::clone(mutex).lock_owned().await
                } else {
                    match Arc::clone(mutex).try_lock_owned() {
                        Ok(guard) => guard,
                        Err(_) => return Ok(None),
                    }
                };
                let undisturbed = guard.replace(*holder) == Some(*holder);
                Ok(Some(Box::new(InProcessLock {
                    _guard: guard,
                    undisturbed,
                })))
            }
            Locking::Folder { file, fsync } => {
                let (path, fsync, holder) = (file.clone(), *fsync, *holder);
                // `flock` blocks: wait for it on a thread of the blocking pool.
                let locked =
                    tokio::task::spawn_blocking(move || lock_folder(&path, fsync, &holder, wait))
                        .await
                        .map_err(|e| BackendError::Permanent(format!("lock task failed: {e}")))?
                        .map_err(|e| {
                            BackendError::Permanent(format!("cannot lock the store folder: {e}"))
                        })?;
                Ok(locked.map(|(file, waiting, undisturbed)| {
                    Box::new(FolderLock {
                        _held: crate::held_files::hold(&file),
                        _file: file,
                        waiting,
                        undisturbed,
                    }) as Box<dyn WriterLock>
                }))
            }
            Locking::Lease(lease) => lease.acquire().await.map(Some),
        }
    }
}

/// Locks a store folder's lock file for `holder` (`None` if `!wait` and
/// another holds it); with the folder's waiting file (see
/// [`FolderLock::others_waiting`]) and whether `holder` was also the
/// lock's last holder.
fn lock_folder(
    path: &std::path::Path,
    fsync: bool,
    holder: &[u8; 16],
    wait: bool,
) -> io::Result<Option<(std::fs::File, PathBuf, bool)>> {
    let open = |path: &std::path::Path| {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
    };
    let mut file = open(path)?;
    let waiting_path = waiting_file(path);
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) if wait => {
            // A shared lock on the waiting file while this waits, which the
            // holder sees at the end of its turn. Made by the first writer
            // that ever waited: a store with one writer has none.
            let waiting = open(&waiting_path)?;
            let _held = crate::held_files::hold(&waiting);
            waiting.lock_shared()?;
            let locked = file.lock();
            waiting.unlock()?;
            locked?;
        }
        Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
        Err(std::fs::TryLockError::Error(error)) => return Err(error),
    }
    let mut last = [0u8; 16];
    let undisturbed = file.read_exact(&mut last).is_ok() && last == *holder;
    if !undisturbed {
        file.seek(io::SeekFrom::Start(0))?;
        file.write_all(holder)?;
        if fsync {
            file.sync_data()?;
        }
    }
    Ok(Some((file, waiting_path, undisturbed)))
}

/// `.lock-waiting` beside the lock file `.lock`.
fn waiting_file(lock: &std::path::Path) -> PathBuf {
    let mut name = lock.as_os_str().to_owned();
    name.push("-waiting");
    name.into()
}

struct InProcessLock {
    _guard: tokio::sync::OwnedMutexGuard<Option<[u8; 16]>>,
    undisturbed: bool,
}

impl WriterLock for InProcessLock {
    fn undisturbed(&self) -> bool {
        self.undisturbed
    }
}

/// Holds an OS lock on the store folder's lock file until dropped (closing
/// the file releases it).
struct FolderLock {
    /// Lets a forked child go of the lock (dropped before the file).
    _held: crate::held_files::Held,
    _file: std::fs::File,
    /// `.lock-waiting` beside the lock file, share-locked by every writer
    /// waiting for the lock.
    waiting: PathBuf,
    undisturbed: bool,
}

impl WriterLock for FolderLock {
    fn undisturbed(&self) -> bool {
        self.undisturbed
    }

    /// Whether a writer holds the waiting file's shared lock: then this
    /// one cannot lock it exclusively. A waiter just about to take it is
    /// seen at the end of the next turn.
    fn others_waiting(&self) -> bool {
        let waiting = match std::fs::File::open(&self.waiting) {
            Ok(waiting) => waiting,
            Err(error) => return error.kind() != io::ErrorKind::NotFound,
        };
        match waiting.try_lock() {
            Ok(()) => false, // unlocked as the file closes
            Err(_) => true,
        }
    }
}

#[async_trait]
impl WriterLocking for ObjectPadStore {
    async fn lock_writer(&self, holder: &[u8; 16]) -> Result<Box<dyn WriterLock>, BackendError> {
        self.locking
            .lock(holder, true)
            .await
            .map(|lock| lock.expect("waited for"))
    }

    async fn try_lock_writer(
        &self,
        holder: &[u8; 16],
    ) -> Result<Option<Box<dyn WriterLock>>, BackendError> {
        match self.locking {
            Locking::Lease(_) => Ok(None),
            Locking::Folder { .. } | Locking::InProcess(_) => {
                self.locking.lock(holder, false).await
            }
        }
    }

    fn writer_lock_linger(&self) -> Duration {
        match self.locking {
            // Taking a lease costs several round trips and a pause.
            Locking::Lease(_) => Duration::from_secs(1),
            // A file lock or a mutex costs a hand-off between threads.
            Locking::Folder { .. } | Locking::InProcess(_) => Duration::from_millis(5),
        }
    }

    fn writer_lock_handover(&self) -> Duration {
        match self.locking {
            // Waiters poll the lease, then settle their claim.
            Locking::Lease(_) => crate::pad_store::lease::HANDOVER,
            Locking::Folder { .. } | Locking::InProcess(_) => Duration::from_millis(2),
        }
    }
}
