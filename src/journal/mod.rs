//! The durable, encrypted log of index [`Record`]s, with checkpoints.
//!
//! Each write is one object `j/<seq>` holding a batch of records; concurrent
//! appends are group-committed into one write (`group_commit.rs`), so many
//! small puts share one index write. A checkpoint `c/<seq>` holds the whole index as of `seq`, and
//! is written when the log since the last one outgrows it, so the cost per
//! put stays constant however many keys the store holds. Objects are sealed
//! with the index key; the associated data binds their kind and sequence
//! number, so a swapped or reordered object fails to open.
//!
//! A sequence number names one content forever:
//! 1. Log objects are created only if absent (`Backend::reserve`; atomic on
//!    memory, folders and S3 services that honour `If-None-Match`), so a
//!    write never replaces one another write made.
//! 2. A log write that fails may still have landed. The writer reads the
//!    object back at once: its own bytes there mean success, nothing there
//!    means nothing was written. If even that read fails, the write stays
//!    in doubt: the store keeps the put's space (it may be live), and the
//!    next write first settles the doubt (applying the batch if it landed).
//! 3. Anything else at the number (another writer's batch) is never
//!    overwritten: the append fails, and appends are refused until a
//!    refresh under the writer lock has read it and the allocator rebuilt.
//!
//! Rollback: the log is a hash chain. The chain value after log object `n`
//! covers the value before it, `n` and the object's sealed bytes, so it
//! names the whole history up to `n`; a checkpoint carries the value at its
//! sequence number, so the chain survives the deletion of the log objects
//! it absorbs. Opening compares the store with the newest position this
//! machine has seen (`seen_logs.rs`): a store behind it, or whose chain
//! there differs, has been rolled back. Where the remembered position has
//! since been absorbed into a checkpoint, only "behind" can be checked.
//!
//! Checkpoints are written to stable storage (`Backend::put_durable`)
//! before any log object they absorb is deleted, whatever the store's
//! fsync setting: otherwise a power loss could lose both.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::StreamExt;

use crate::blocking;
use crate::crypto::{self, StoreKeys};
use crate::error::{Error, Result};
use crate::group_commit::{self, GroupCommit, Reply};
use crate::index::{self, Index, Piece, Record};
use crate::pad_store::{Backend, BackendError, PutReceipt, WriterLock};
use crate::retry::RetryPolicy;
use crate::seen_logs::{LogPosition, SeenLogs};

mod append;
mod cached;
mod checkpoint;
mod load;
mod rollback;

use self::append::{Append, Doubt, inline_len};
pub use self::load::Refreshed;
use self::load::newest_log;
pub use self::rollback::RollbackCheck;
use self::rollback::{Remembering, chain_next, chain_of_old_checkpoint};

const LOG_PREFIX: &str = "j/";
const CHECKPOINT_PREFIX: &str = "c/";
/// Log objects: their sealing kind (associated data).
const LOG_KIND: &str = "journal";
/// Checkpoints carrying the chain value (postcard of [`CheckpointOut`]).
const CHECKPOINT_KIND: &str = "checkpoint-2";
/// Checkpoints of store format 3, the index alone; still read.
const CHECKPOINT_KIND_1: &str = "checkpoint";
/// Deletes of absorbed objects in flight at once after a checkpoint.
const DELETE_CONCURRENCY: usize = 16;
/// The chain value before the first log object.
const CHAIN_START: [u8; 32] = [0; 32];
/// The largest index object (log or checkpoint), sealed: reads are capped at
/// it, so a foreign object under `j/` or `c/` cannot make anthill allocate
/// its size, and writes above it are refused, so anthill never writes one it
/// would not read. At about 100 bytes per item a checkpoint this size holds
/// ten million items, whose index would need several GiB of memory; a log
/// object holds one batch of records, far smaller. A checkpoint refused for
/// its size only postpones it (the log keeps the records).
const MAX_OBJECT_LEN: u64 = 1 << 30;
/// The log may grow to this many bytes before a checkpoint is considered.
pub const DEFAULT_CHECKPOINT_INTERVAL: u64 = 1 << 20;
/// Least time between two updates of this machine's memory of the log
/// position (`remember_later`).
const REMEMBER_PERIOD: std::time::Duration = std::time::Duration::from_millis(50);
/// Item bytes the log may hold (in records of small puts) before a
/// checkpoint is due, whatever the interval: they are read again by every
/// open. Counted apart from the records themselves, so a loop of small puts
/// checkpoints (and so writes its pads back) as rarely as one of large puts.
const INLINE_LOG_LIMIT: u64 = 32 << 20;
/// Most records replayed over the local index cache: each may read a block
/// of it (tens of microseconds), so past this, or past one record for every
/// `CACHE_ITEMS_PER_TAIL_RECORD` cached items, a load from the backend
/// (which also writes a new cache) costs less.
const MOST_CACHE_TAIL_RECORDS: usize = 4096;
const CACHE_ITEMS_PER_TAIL_RECORD: usize = 64;
/// Past this many records replayed over the cache, opening writes a new
/// one, so that the next open does not replay them again.
const CACHE_REWRITE_TAIL_RECORDS: usize = 1024;

/// Writes back every pad holding bytes only in the log; the journal calls
/// it before a checkpoint, which must carry no item data.
#[async_trait::async_trait]
pub trait WriteBackAll: Send + Sync {
    /// The records saying what was written back (applied by the journal).
    async fn write_back_all(&self) -> Vec<Record>;
}

pub struct Journal {
    backend: Arc<dyn Backend>,
    keys: Arc<StoreKeys>,
    store_id: [u8; 16],
    retry: RetryPolicy,
    /// Least log bytes between checkpoints.
    checkpoint_interval: u64,
    /// The writer lock this process holds, checked before every write.
    writer_lock: Mutex<Option<Arc<dyn WriterLock>>>,
    /// The index as of the last durable record. Held only for short
    /// in-memory updates, never across backend I/O.
    log: Mutex<Log>,
    /// Appends waiting for the next log write, group-committed.
    appends: GroupCommit<Append>,
    /// Whether this handle wrote a log object (see `wrote`).
    wrote: std::sync::atomic::AtomicBool,
    /// This machine's memory of the store's log position (`None`: off).
    seen: Option<SeenLogs>,
    /// Updates of the memory after log writes (see `remember_later`).
    remembering: Arc<Mutex<Remembering>>,
    /// The task making them, while one runs.
    remembering_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// What writes pads back before a checkpoint (the allocator).
    write_back: Mutex<Option<std::sync::Weak<dyn WriteBackAll>>>,
    /// The local copy of the index, if this store keeps one.
    cache: Option<IndexCache>,
    /// Whether opening read the index from that copy.
    opened_from_cache: bool,
}

/// Where a store keeps its local index cache (`index::cache`), and from
/// what size: a small index loads faster than the cache is checked.
#[derive(Debug, Clone)]
pub struct IndexCache {
    pub path: PathBuf,
    pub min_items: u64,
    /// The store's pad size, to check the index against before keeping it.
    pub pad_size: u64,
}

/// The index and the log it was read from: what a load builds (from the
/// backend or the cache) before it replaces the journal's. The index cache
/// keeps all but the index.
#[derive(serde::Serialize, serde::Deserialize)]
struct LogState {
    #[serde(skip)]
    index: Index,
    /// The next log object's sequence number.
    next_seq: u64,
    /// Sequence numbers of log objects a checkpoint has not yet absorbed.
    uncheckpointed: Vec<u64>,
    log_bytes: u64,
    /// The part of `log_bytes` that is item data (inline records).
    inline_log_bytes: u64,
    checkpoint_bytes: u64,
    /// The chain value after log object `next_seq - 1`.
    chain: [u8; 32],
    /// Chain values at each position from the newest checkpoint's on, to
    /// check a remembered position against.
    chains: BTreeMap<u64, [u8; 32]>,
}

impl LogState {
    /// An empty store's, or one that starts from a checkpoint at
    /// `next_seq - 1` with chain value `chain`.
    fn starting(index: Index, next_seq: u64, checkpoint_bytes: u64, chain: [u8; 32]) -> Self {
        Self {
            index,
            next_seq,
            uncheckpointed: Vec::new(),
            log_bytes: 0,
            inline_log_bytes: 0,
            checkpoint_bytes,
            chain,
            chains: BTreeMap::from([(next_seq, chain)]),
        }
    }

    /// Notes that log object `seq` of `size` bytes (`inline` of them item
    /// data), sealed as `sealed`, is applied to the index.
    fn applied(&mut self, seq: u64, size: u64, inline: u64, sealed: &[u8]) {
        self.uncheckpointed.push(seq);
        self.log_bytes += size;
        self.inline_log_bytes += inline;
        self.next_seq = seq + 1;
        self.chain = chain_next(&self.chain, seq, sealed);
        self.chains.insert(self.next_seq, self.chain);
    }

    /// Applies log object `seq`, which must be the next; returns how many
    /// records it held.
    fn replay(&mut self, seq: u64, plaintext: &[u8], sealed: &[u8]) -> Result<usize> {
        let records: Vec<Record> = index::from_bytes(plaintext, "index log")?;
        for record in &records {
            self.index.apply(record)?;
        }
        self.applied(seq, plaintext.len() as u64, inline_len(&records), sealed);
        Ok(records.len())
    }
}

struct Log {
    state: LogState,
    /// Records applied to the index but not yet in the log (write-backs):
    /// they ride along with the next log write.
    deferred: Vec<Record>,
    /// A log write that failed, may have landed, and could not be checked.
    doubt: Option<Doubt>,
    /// The backend holds a log object at `next_seq` that this index has not
    /// applied: appends are refused until a refresh reads it.
    stale: bool,
    /// The index changed without the allocator seeing it (a batch that
    /// landed in doubt), or the space of a doubtful put was kept: the next
    /// entry of the writer gate must refresh and rebuild.
    rebuild_due: bool,
}

impl Drop for Journal {
    fn drop(&mut self) {
        // A position left by a task that could not run (no runtime).
        let queue = self.remembering.lock().map(|mut q| q.waiting.take());
        if let (Some(seen), Ok(Some(at))) = (&self.seen, queue) {
            seen.advance(at);
        }
    }
}

fn object_name(prefix: &str, seq: u64) -> String {
    format!("{prefix}{seq:016x}")
}

fn parse_seq(prefix: &str, name: &str) -> Option<u64> {
    u64::from_str_radix(name.strip_prefix(prefix)?, 16).ok()
}

fn associated_data(kind: &str, store_id: &[u8; 16], seq: u64) -> Vec<u8> {
    let mut aad = format!("anthill {kind}").into_bytes();
    aad.extend_from_slice(store_id);
    aad.extend_from_slice(&seq.to_le_bytes());
    aad
}

impl Journal {
    /// Loads the index: the newest checkpoint, then every later log object in
    /// order. A gap in the log is an integrity error (an object was deleted).
    pub async fn open(
        backend: Arc<dyn Backend>,
        keys: Arc<StoreKeys>,
        store_id: [u8; 16],
        retry: RetryPolicy,
        checkpoint_interval: u64,
        rollback: RollbackCheck,
        cache: Option<IndexCache>,
    ) -> Result<Arc<Self>> {
        let mut journal = Journal {
            backend,
            keys,
            store_id,
            retry,
            checkpoint_interval,
            writer_lock: Mutex::new(None),
            appends: GroupCommit::default(),
            wrote: Default::default(),
            log: Mutex::new(Log {
                state: LogState::starting(Index::default(), 0, 0, CHAIN_START),
                deferred: Vec::new(),
                doubt: None,
                stale: false,
                rebuild_due: false,
            }),
            seen: rollback.seen.clone(),
            remembering: Arc::default(),
            remembering_task: Mutex::new(None),
            write_back: Mutex::new(None),
            cache,
            opened_from_cache: false,
        };
        // The memory first: it only ever holds positions whose log writes
        // had landed, so a store read after it is at least there unless it
        // was rolled back, however other processes write meanwhile.
        let remembered = match &journal.seen {
            Some(seen) => {
                let seen = seen.clone();
                tokio::task::spawn_blocking(move || seen.load())
                    .await
                    .map_err(|e| Error::internal(format!("state folder task failed: {e}")))?
            }
            None => None,
        };
        let started = std::time::Instant::now();
        let replayed = journal.load_from_cache().await;
        journal.opened_from_cache = replayed.is_some();
        if replayed.is_none() {
            journal.load().await?;
        }
        log::debug!(
            "index loaded from the {} in {:?}",
            if journal.opened_from_cache {
                "local cache"
            } else {
                "backend"
            },
            started.elapsed()
        );
        journal
            .check_rollback(remembered, rollback.allow_rollback)
            .await?;
        if replayed.is_none_or(|records| records > CACHE_REWRITE_TAIL_RECORDS) {
            journal.keep_cache().await;
        }
        Ok(Arc::new(journal))
    }

    fn seal(&self, kind: &str, seq: u64, plaintext: &[u8]) -> Result<Bytes> {
        let aad = associated_data(kind, &self.store_id, seq);
        let sealed = Bytes::from(crypto::seal(self.keys.index(), &aad, plaintext)?);
        let size = sealed.len() as u64;
        if size > MAX_OBJECT_LEN {
            return Err(Error::invalid(format!(
                "index object {kind} {seq} would hold {size} bytes, more than the \
                 {MAX_OBJECT_LEN} anthill reads back: not written"
            )));
        }
        Ok(sealed)
    }

    /// Whether this handle changed the store (wrote a log object). A handle
    /// that only read leaves other writers' small items for them to write
    /// back, rather than wait for their writer lock when it closes.
    pub fn wrote(&self) -> bool {
        self.wrote.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Waits until no index write of this handle is under way: the batch of
    /// a (possibly cancelled) append, or the checkpoint and deletes after
    /// it. The writer lock must outlive them, as every write needs it.
    pub async fn flushed(&self) {
        self.appends.idle().await;
    }

    /// Sets (or clears) the writer lock checked before every write.
    pub fn set_writer_lock(&self, lock: Option<Arc<dyn WriterLock>>) {
        *self.writer_lock.lock().expect("writer lock slot") = lock;
    }

    /// Moves every item of the index into memory (see `Items::load_all`).
    pub fn load_all_items(&self) -> Result<()> {
        self.log
            .lock()
            .expect("journal lock")
            .state
            .index
            .items
            .load_all()
    }

    /// Reads the durable index.
    pub fn read<R>(&self, f: impl FnOnce(&Index) -> R) -> R {
        f(&self.log.lock().expect("journal lock").state.index)
    }

    /// Sets what writes pads back before a checkpoint.
    pub fn set_write_back(&self, write_back: std::sync::Weak<dyn WriteBackAll>) {
        *self.write_back.lock().expect("write-back slot") = Some(write_back);
    }

    /// Applies write-back records now (they are true of the pads as soon as
    /// written) and keeps them to ride along with the next log write. Until
    /// then another process still holds those items' bytes from the log,
    /// and would at worst write them back again.
    pub fn note_written_back(&self, records: Vec<Record>) {
        if records.is_empty() {
            return;
        }
        let mut log = self.log.lock().expect("journal lock");
        for record in &records {
            if let Err(error) = log.state.index.apply(record) {
                log::error!("a write-back record does not apply: {error}");
            }
        }
        log.deferred.extend(records);
    }

    /// Whether write-back records wait for the next log write.
    pub fn has_deferred(&self) -> bool {
        !self.log.lock().expect("journal lock").deferred.is_empty()
    }

    async fn check_writer_lock(&self) -> Result<()> {
        let lock = self.writer_lock.lock().expect("writer lock slot").clone();
        if let Some(lock) = lock {
            lock.check().await?;
        }
        Ok(())
    }
}
