//! [`ObjectPadStore`]: the one real backend, a [`Backend`] over an
//! `object_store` client (in-memory, local folder or S3) and a key prefix.
//!
//! Everything backend-specific lives in two places: how `reserve` creates an
//! object only if it is absent ([`CreateCheck`]), and how an
//! `object_store::Error` becomes a [`BackendError`] (`classify.rs`).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

use std::path::PathBuf;

use super::NETWORK_READ_STALENESS;
use super::classify::classify_error;
use super::folder::FolderWriter;
use super::lease::{Lease, LeaseConfig};
use super::{Backend, BackendError, Capabilities, PutReceipt, check_size};

// By concept: writer locking (a mutex, a folder's file lock, the S3 lease).
mod locking;
pub use locking::Locking;

/// Where an S3 ranged read of a pad ends (`Capabilities::range_read_granule`):
/// Garage's chunk, and a bound on what a read fetches beyond its frames.
const S3_RANGE_READ_GRANULE: u64 = 64 << 10;

/// How `reserve` makes sure it does not overwrite an existing object.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CreateCheck {
    /// The store honours `PutMode::Create` atomically (memory, local folder).
    Conditional,
    /// An S3-compatible service: `head` first, then a conditional put (a
    /// plain one where the service is known to ignore conditions). AWS S3,
    /// MinIO and R2 honour `If-None-Match: *`; Garage and some others ignore
    /// it and overwrite, so there the check is best-effort (a race between
    /// the `head` and the put of two writers of the same name can overwrite).
    /// What is reserved here is an index log object or `meta` (pads are
    /// created by their first write), and the writer lease keeps other
    /// processes out of both.
    HeadThenPut,
}

/// A [`Backend`] over any `object_store` client, with every object name
/// placed under `prefix`.
#[derive(Debug)]
pub struct ObjectPadStore {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    /// What `describe` says: the URL the store was opened with (secrets removed).
    url: String,
    /// The S3 bucket, for the "bucket does not exist" message.
    bucket: Option<String>,
    create_check: CreateCheck,
    locking: Locking,
    /// A local folder's writes, which bypass `object_store` (see `folder.rs`).
    folder: Option<FolderWriter>,
    capabilities: Capabilities,
}

impl ObjectPadStore {
    /// A store whose client honours `PutMode::Create` (memory, local folder).
    pub fn new(
        store: Arc<dyn ObjectStore>,
        locking: Locking,
        prefix: Path,
        url: impl Into<String>,
    ) -> Self {
        ObjectPadStore {
            store,
            prefix,
            url: url.into(),
            bucket: None,
            create_check: CreateCheck::Conditional,
            locking,
            folder: None,
            // `object_store`'s `get_range`: a slice in memory, a read of
            // just those bytes from a file.
            capabilities: Capabilities {
                ranged_reads: true,
                ..Capabilities::default()
            },
        }
    }

    /// A local folder store: `store` is a `LocalFileSystem` rooted at `root`.
    pub fn new_folder(
        store: Arc<dyn ObjectStore>,
        root: PathBuf,
        fsync: bool,
        url: impl Into<String>,
    ) -> Self {
        let url = url.into();
        let locking = Locking::Folder {
            file: root.join(".lock"),
            fsync,
        };
        let folder = FolderWriter::new(root, fsync, url.clone());
        let mut store = Self::new(store, locking, Path::default(), url);
        store.capabilities = Capabilities {
            pads_created_on_first_write: true,
            missing_pads_read_empty: true,
            folder_writer: Some(folder.clone()),
            ..store.capabilities
        };
        store.folder = Some(folder);
        store
    }

    /// A store on a network object service (S3 and its kin), where
    /// conditional creates may be ignored: unless the lease's probe finds
    /// them honoured, `reserve` checks with a `head` first (best-effort, see
    /// [`CreateCheck::HeadThenPut`]); writers exclude each other by a lease
    /// object (see `lease/`).
    pub fn new_leased(
        store: Arc<dyn ObjectStore>,
        bucket: impl Into<String>,
        prefix: Path,
        url: impl Into<String>,
        lease: LeaseConfig,
    ) -> Self {
        let url = url.into();
        let bucket = bucket.into();
        let lease = Lease::new(
            Arc::clone(&store),
            prefix.clone(),
            url.clone(),
            bucket.clone(),
            lease,
        );
        ObjectPadStore {
            store,
            prefix,
            url,
            bucket: Some(bucket),
            create_check: CreateCheck::HeadThenPut,
            locking: Locking::Lease(Arc::new(lease)),
            folder: None,
            // An empty object per reservation (a PUT, and on a service
            // ignoring conditional writes a HEAD before it) would be replaced
            // by the pad's first write anyway: twice the requests of a large
            // put for nothing a reader needs, since a recorded pad without an
            // object reads as empty. Pad names are random, so the first write
            // cannot meet another pad's object.
            // A pad's `PUT` answered is its commit: no `HEAD` after it
            // (see `Capabilities::acknowledged_puts_visible`).
            capabilities: Capabilities {
                atomic_create: false,
                pads_created_on_first_write: true,
                missing_pads_read_empty: true,
                read_staleness: NETWORK_READ_STALENESS,
                // A GET with a `Range` header.
                ranged_reads: true,
                range_read_granule: Some(S3_RANGE_READ_GRANULE),
                acknowledged_puts_visible: true,
                overwrites_atomic: false,
                ..Capabilities::default()
            },
        }
    }

    /// Whether the service is known to honour conditional writes (`None`
    /// until probed, and always for non-S3 stores, which do).
    fn conditional_writes_known(&self) -> Option<bool> {
        match &self.locking {
            Locking::Lease(lease) => lease.conditional_known(),
            _ => Some(true),
        }
    }

    /// Runs a folder write of `name` on a blocking thread: it fsyncs.
    async fn on_folder<T: Send + 'static>(
        &self,
        name: &str,
        write: impl FnOnce(&str) -> Result<T, BackendError> + Send + 'static,
    ) -> Result<T, BackendError> {
        self.path_of(name)?;
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || write(&name))
            .await
            .map_err(|e| BackendError::Permanent(format!("write task failed: {e}")))?
    }

    /// The full object path of `name` under the prefix.
    fn path_of(&self, name: &str) -> Result<Path, BackendError> {
        let invalid = |why: String| {
            BackendError::Permanent(format!(
                "invalid object name {name:?} on {}: {why}",
                self.url
            ))
        };
        if name.is_empty() || name.starts_with('/') || name.ends_with('/') {
            return Err(invalid("names are non-empty relative paths".into()));
        }
        let full = if self.prefix.as_ref().is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.prefix.as_ref())
        };
        Path::parse(full).map_err(|error| invalid(error.to_string()))
    }

    /// `name` relative to the prefix, for `list`.
    fn relative_name<'a>(&self, location: &'a Path) -> Option<&'a str> {
        let full = location.as_ref();
        let prefix = self.prefix.as_ref();
        if prefix.is_empty() {
            Some(full)
        } else {
            full.strip_prefix(prefix)?.strip_prefix('/')
        }
    }

    fn error(&self, error: object_store::Error, name: &str) -> BackendError {
        classify_error(error, name, &self.url, self.bucket.as_deref())
    }

    /// Runs `write` (of `name`) only while this handle provably holds the
    /// writer lease, where writers are fenced by one (S3): refused unless
    /// the lease is held and valid by this process's clocks, and abandoned
    /// (dropped, so nothing more is sent) once that stops being true before
    /// it completes. Here rather than in the callers, so no write path can
    /// forget it. The lease object's own writes do not come through here.
    async fn fenced<T>(
        &self,
        name: &str,
        write: impl Future<Output = Result<T, BackendError>>,
    ) -> Result<T, BackendError> {
        let Locking::Lease(lease) = &self.locking else {
            return write.await;
        };
        let mut deadline = lease.write_deadline(name, false)?;
        let mut write = std::pin::pin!(write);
        loop {
            let until = tokio::time::Instant::from_std(deadline);
            match tokio::time::timeout_at(until, write.as_mut()).await {
                Ok(result) => return result,
                // Renewals may have moved the deadline meanwhile.
                Err(_) => deadline = lease.write_deadline(name, true)?,
            }
        }
    }

    async fn reserve_unfenced(&self, name: &str, content: Bytes) -> Result<(), BackendError> {
        let path = self.path_of(name)?;
        let conditional = self.conditional_writes_known();
        if self.create_check == CreateCheck::HeadThenPut && conditional != Some(true) {
            match self.store.head(&path).await {
                Ok(_) => return Err(BackendError::AlreadyExists(name.to_owned())),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(self.error(error, name)),
            }
        }
        // A service known to ignore conditions (or configured so) gets a
        // plain put: some reject the condition header instead of ignoring it.
        let mode = if conditional == Some(false) {
            PutMode::Overwrite
        } else {
            PutMode::Create
        };
        let options = PutOptions {
            mode,
            ..PutOptions::default()
        };
        self.store
            .put_opts(&path, PutPayload::from(content), options)
            .await
            .map(|_| ())
            .map_err(|error| self.error(error, name))
    }

    async fn put_unfenced(&self, name: &str, content: Bytes) -> Result<PutReceipt, BackendError> {
        let path = self.path_of(name)?;
        if let Some(folder) = self.folder.clone() {
            let name = name.to_owned();
            return tokio::task::spawn_blocking(move || folder.put(&name, &content))
                .await
                .map_err(|e| BackendError::Permanent(format!("write task failed: {e}")))?;
        }
        let size = content.len() as u64;
        let result = self
            .store
            .put(&path, PutPayload::from(content))
            .await
            .map_err(|error| self.error(error, name))?;
        Ok(PutReceipt {
            e_tag: result.e_tag,
            size,
        })
    }
}

#[async_trait]
impl Backend for ObjectPadStore {
    async fn reserve(&self, name: &str, content: Bytes) -> Result<(), BackendError> {
        self.fenced(name, self.reserve_unfenced(name, content))
            .await
    }

    async fn put(&self, name: &str, content: Bytes) -> Result<PutReceipt, BackendError> {
        self.fenced(name, self.put_unfenced(name, content)).await
    }

    // Only a folder may hold a write in the page cache; elsewhere an
    // acknowledged put is durable.
    async fn put_durable(&self, name: &str, content: Bytes) -> Result<PutReceipt, BackendError> {
        let Some(folder) = self.folder.clone() else {
            return self.put(name, content).await;
        };
        self.on_folder(name, move |name| folder.put_durable(name, &content))
            .await
    }

    async fn reserve_durable(&self, name: &str, content: Bytes) -> Result<(), BackendError> {
        let Some(folder) = self.folder.clone() else {
            return self.reserve(name, content).await;
        };
        self.on_folder(name, move |name| folder.reserve_durable(name, &content))
            .await
    }

    async fn head(&self, name: &str) -> Result<PutReceipt, BackendError> {
        let path = self.path_of(name)?;
        let meta = self
            .store
            .head(&path)
            .await
            .map_err(|error| self.error(error, name))?;
        Ok(PutReceipt {
            e_tag: meta.e_tag,
            size: meta.size,
        })
    }

    async fn verify(&self, name: &str, receipt: &PutReceipt) -> Result<(), BackendError> {
        let meta = self.head(name).await?;
        let size_matches = meta.size == receipt.size;
        let tag_matches = match (&meta.e_tag, &receipt.e_tag) {
            (Some(found), Some(expected)) => found == expected,
            _ => true,
        };
        if size_matches && tag_matches {
            return Ok(());
        }
        // Transient, not Permanent: the usual cause is a replica that has not
        // seen the put yet (eventually consistent S3-compatible services,
        // multi-node Garage), which a retry resolves. The other cause, a
        // concurrent overwrite by another writer, is not fixed by retrying,
        // but the caller's retries run out and surface it as an error anyway,
        // and the caller may re-put, which is the right repair in both cases.
        Err(BackendError::Transient(format!(
            "object {name:?} on {} does not show the put yet: found {} bytes (tag {:?}), \
             expected {} bytes (tag {:?})",
            self.url, meta.size, meta.e_tag, receipt.size, receipt.e_tag
        )))
    }

    async fn get(&self, name: &str) -> Result<Bytes, BackendError> {
        self.get_capped(name, u64::MAX).await
    }

    async fn get_capped(&self, name: &str, max_size: u64) -> Result<Bytes, BackendError> {
        let path = self.path_of(name)?;
        let result = self
            .store
            .get(&path)
            .await
            .map_err(|error| self.error(error, name))?;
        // The size comes with the answer (a file's length, an HTTP
        // Content-Length) before any content: refuse before reading, and
        // `bytes()` then reads no more than that size.
        check_size(name, result.meta.size, max_size)?;
        result
            .bytes()
            .await
            .map_err(|error| self.error(error, name))
    }

    async fn get_many(&self, names: &[String], max_size: u64) -> Vec<Result<Bytes, BackendError>> {
        let Some(folder) = self.folder.clone() else {
            let reads = names.iter().map(|name| self.get_capped(name, max_size));
            return futures::future::join_all(reads).await;
        };
        let checked: Vec<_> = names.iter().map(|name| self.path_of(name)).collect();
        let names = names.to_vec();
        let count = names.len();
        let read = tokio::task::spawn_blocking(move || {
            let reads = names.iter().zip(checked);
            reads
                .map(|(name, checked)| checked.and_then(|_| folder.read_capped(name, max_size)))
                .collect::<Vec<_>>()
        });
        read.await.unwrap_or_else(|error| {
            let failed = || {
                Err(BackendError::Transient(format!(
                    "read task failed: {error}"
                )))
            };
            std::iter::repeat_with(failed).take(count).collect()
        })
    }

    async fn get_range(
        &self,
        name: &str,
        range: std::ops::Range<u64>,
    ) -> Result<Bytes, BackendError> {
        let path = self.path_of(name)?;
        match self.store.get_range(&path, range.clone()).await {
            Ok(bytes) => Ok(bytes),
            Err(error @ object_store::Error::NotFound { .. }) => Err(self.error(error, name)),
            Err(error) => {
                // Each client says "the range starts past the end" its own
                // way (a local error, an HTTP 416): ask the size to tell it
                // from a failure worth retrying.
                let error = self.error(error, name);
                match self.store.head(&path).await {
                    Ok(meta) if range.start >= meta.size => Err(BackendError::Permanent(format!(
                        "range {range:?} of object {name:?} starts past its {} bytes",
                        meta.size
                    ))),
                    _ => Err(error),
                }
            }
        }
    }

    async fn list(&self, prefix: &str) -> Result<Vec<String>, BackendError> {
        // `object_store` lists by whole path segments ("p/a" lists "p/a/…",
        // not "p/abc"), while our prefix is a plain string prefix: list the
        // folder part, then filter by the full string.
        let folder = match prefix.rfind('/') {
            Some(slash) => &prefix[..slash],
            None => "",
        };
        let list_path = if folder.is_empty() {
            self.prefix.clone()
        } else {
            self.path_of(folder)?
        };
        let list_path = (!list_path.as_ref().is_empty()).then_some(list_path);
        let metas: Vec<_> = self
            .store
            .list(list_path.as_ref())
            .try_collect()
            .await
            .map_err(|error| self.error(error, prefix))?;
        Ok(metas
            .iter()
            .filter_map(|meta| self.relative_name(&meta.location))
            .filter(|name| name.starts_with(prefix))
            .map(str::to_owned)
            .collect())
    }

    async fn delete(&self, name: &str) -> Result<(), BackendError> {
        let path = self.path_of(name)?;
        self.fenced(name, async {
            match self.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(error) => Err(self.error(error, name)),
            }
        })
        .await
    }

    async fn remove_partial_writes(&self) -> Result<usize, BackendError> {
        let Some(root) = self.folder.as_ref().map(|f| f.root().to_path_buf()) else {
            return Ok(0);
        };
        // A local put writes `<name>#<n>` and renames it; a crash between the
        // two leaves the staging file, which no listing shows.
        tokio::task::spawn_blocking(move || {
            let mut removed = 0;
            for folder in ["p", "j", "c"] {
                let Ok(entries) = std::fs::read_dir(root.join(folder)) else {
                    continue;
                };
                for entry in entries.flatten() {
                    if entry.file_name().to_string_lossy().contains('#')
                        && std::fs::remove_file(entry.path()).is_ok()
                    {
                        removed += 1;
                    }
                }
            }
            removed
        })
        .await
        .map_err(|e| BackendError::Permanent(format!("clean-up task failed: {e}")))
    }

    fn capabilities(&self) -> &Capabilities {
        &self.capabilities
    }

    fn describe(&self) -> String {
        self.url.clone()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::pad_store::WriterLocking;

    fn fenced_store(ttl: Duration) -> ObjectPadStore {
        let lease = LeaseConfig {
            conditional_writes: super::super::lease::ConditionalWrites::Honoured,
            ttl,
            wait_limit: Duration::from_secs(5),
        };
        let memory: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        ObjectPadStore::new_leased(
            memory,
            "bucket",
            Path::from("pre"),
            "s3://bucket/pre",
            lease,
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_write_is_fenced_by_the_lease() {
        let store = fenced_store(Duration::from_secs(30));
        let content = || Bytes::from_static(b"content");
        let refused = |result: Result<(), BackendError>| match result {
            Err(BackendError::Permanent(message)) => message,
            other => panic!("expected a refusal, got {other:?}"),
        };
        // No lease held: nothing is written.
        refused(store.put("p/a", content()).await.map(drop));
        refused(store.reserve("p/b", content()).await);
        refused(store.delete("p/a").await);
        assert!(store.list("").await.unwrap().is_empty());

        let lock = store.lock_writer(&[1; 16]).await.unwrap();
        store.put("p/a", content()).await.unwrap();
        store.reserve("p/b", content()).await.unwrap();
        store.delete("p/b").await.unwrap();
        lock.release().await;
        drop(lock);

        let message = refused(
            store
                .put("p/a", Bytes::from_static(b"late"))
                .await
                .map(drop),
        );
        assert!(
            message.contains("does not hold the writer lease"),
            "{message}"
        );
        assert_eq!(store.get("p/a").await.unwrap(), content());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reserve_on_s3_checks_for_an_existing_object_first() {
        // A service that ignores conditional puts gets a plain put: the head
        // before it must find the object and refuse.
        let lease = LeaseConfig {
            conditional_writes: super::super::lease::ConditionalWrites::Ignored,
            ttl: Duration::from_secs(30),
            wait_limit: Duration::from_secs(5),
        };
        let memory: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let store =
            ObjectPadStore::new_leased(memory, "bucket", Path::from("pre"), "s3://b/p", lease);
        let lock = store.lock_writer(&[1; 16]).await.unwrap();
        store
            .put("p/a", Bytes::from_static(b"first"))
            .await
            .unwrap();
        assert_eq!(
            store.reserve("p/a", Bytes::from_static(b"second")).await,
            Err(BackendError::AlreadyExists("p/a".into()))
        );
        assert_eq!(
            store.get("p/a").await.unwrap(),
            Bytes::from_static(b"first")
        );
        drop(lock);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_outliving_the_lease_is_abandoned() {
        let store = fenced_store(Duration::from_secs(1));
        let Locking::Lease(lease) = &store.locking else {
            unreachable!()
        };
        let lock = store.lock_writer(&[1; 16]).await.unwrap();
        let sent = std::sync::atomic::AtomicBool::new(false);
        // The write has passed the fence when the renewal finds the lease
        // taken (as after a pause); the request then takes longer than the
        // lease's deadline: it is dropped there, never sent.
        let slow_write = async {
            lease.mark_lost_for_test();
            tokio::time::sleep(Duration::from_secs(3)).await; // the request's latency
            sent.store(true, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        };
        let error = store.fenced("p/a", slow_write).await.unwrap_err();
        assert!(error.to_string().contains("abandoned"), "{error}");
        assert!(!sent.load(std::sync::atomic::Ordering::SeqCst));
        drop(lock);
    }
}
