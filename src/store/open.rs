//! Opening a store: its metadata (read, created for a new store, or moved
//! to the current format), its journal, and the handle built on them.

use std::collections::HashSet;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::Semaphore;

use super::options::validate_options;
use super::{DEFAULT_PAD_SIZE, Inner, Store, StoreOptions};
use crate::allocator::MemoryAllocator;
use crate::crypto::{self, StoreKeys};
use crate::error::{Error, Result};
use crate::index;
use crate::journal::{IndexCache, Journal, RollbackCheck};
use crate::meta::{self, Meta};
use crate::pad_io::PadIo;
use crate::pad_store::{self, Backend, BackendError, WriterLock};
use crate::retry::RetryPolicy;
use crate::seen_logs::SeenLogs;
use crate::writer_gate::WriterGate;

const META_NAME: &str = "meta";

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
        let (meta, keys, creation_lock) = open_meta(&backend, &options, &retry).await?;
        let (store_id, pad_size) = (meta.store_id, meta.pad_size);
        let keys = Arc::new(keys);
        let keys_kept = Arc::clone(&keys);
        let loading_from = std::time::Instant::now();
        let journal = open_journal(&backend, &keys, &meta, &options, retry).await?;
        let io = pad_io(&backend, keys, store_id, pad_size, retry, &options);
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
        // The load was a catch-up: a fresh handle's first read needs none.
        gate.note_loaded(loading_from);
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
        // The lock that created the store is held: the gate keeps it for its
        // linger, so a first put soon after does not take it again.
        let no_writer = match creation_lock {
            Some(lock) => gate.enter_unmapped_with(lock).await.map(Some)?,
            None => gate.try_enter_unmapped().await?,
        }
        .is_some();
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
}

/// Pad reads and writes of one handle, within the options' concurrency.
fn pad_io(
    backend: &Arc<dyn Backend>,
    keys: Arc<StoreKeys>,
    store_id: [u8; 16],
    pad_size: u64,
    retry: RetryPolicy,
    options: &StoreOptions,
) -> Arc<PadIo> {
    Arc::new(PadIo {
        backend: Arc::clone(backend),
        keys,
        store_id,
        pad_size,
        retry,
        upload_permits: Semaphore::new(options.upload_concurrency),
        download_permits: Semaphore::new(options.download_concurrency),
        buffers: Default::default(),
        formats: Default::default(),
    })
}

/// Reads the store's metadata, or creates it for a new store, and checks
/// the secret against it. A creation returns the writer lock it took too.
async fn open_meta(
    backend: &Arc<dyn Backend>,
    options: &StoreOptions,
    retry: &RetryPolicy,
) -> Result<(Meta, StoreKeys, Option<Box<dyn WriterLock>>)> {
    let mut creation_lock = None;
    let bytes = match read_meta(backend, retry).await? {
        Some(bytes) => bytes,
        None if options.backend.must_exist => {
            return Err(Error::invalid(format!(
                "no store at {}: it holds no store metadata (a store is created by its \
                 first put; check the location)",
                backend.describe()
            )));
        }
        None => {
            let (bytes, lock) = create_meta(backend, options, retry).await?;
            creation_lock = Some(lock);
            bytes
        }
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
    Ok((meta, keys, creation_lock))
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
///
/// Returns the writer lock too, still held: a new store is usually written
/// next, and the handle's first change keeps it rather than taking it again
/// (on S3 a lease costs several round trips and a pause).
async fn create_meta(
    backend: &Arc<dyn Backend>,
    options: &StoreOptions,
    retry: &RetryPolicy,
) -> Result<(Bytes, Box<dyn WriterLock>)> {
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
    match created {
        Ok(bytes) => Ok((bytes, lock)),
        Err(error) => {
            lock.release().await;
            Err(error)
        }
    }
}
