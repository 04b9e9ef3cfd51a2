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

/// What the index cache keeps beside the index: the log state, and the
/// object it was read up to, whose receipt tells whether the store still
/// holds it.
#[derive(serde::Serialize)]
struct CachedLogOut<'a> {
    anchor: &'a str,
    receipt: (u64, Option<&'a str>),
    log: &'a LogState,
}

#[derive(serde::Deserialize)]
struct CachedLogIn {
    anchor: String,
    receipt: (u64, Option<String>),
    log: LogState,
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

/// The newest position not yet remembered, and whether a task is at it.
#[derive(Default)]
struct Remembering {
    waiting: Option<LogPosition>,
    running: bool,
}

/// How opening checks the store against this machine's memory of it.
#[derive(Debug, Clone, Default)]
pub struct RollbackCheck {
    /// The memory; `None` checks nothing (memory stores, tests).
    pub seen: Option<SeenLogs>,
    /// Open a store that is behind the memory, and move the memory to it.
    pub allow_rollback: bool,
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

/// A log write that may have landed (see the module header).
struct Doubt {
    seq: u64,
    sealed: Bytes,
    records: Vec<Record>,
}

/// What a log write left at its sequence number, as far as can be told.
enum Landed {
    /// This write's bytes.
    Ours,
    /// Nothing: the write never took effect.
    Nothing,
    /// Another write's bytes.
    Other,
    /// The backend could not be read.
    Unknown(Error),
}

#[derive(serde::Serialize)]
struct CheckpointOut<'a> {
    chain: [u8; 32],
    index: &'a Index,
}

#[derive(serde::Deserialize)]
struct CheckpointIn {
    chain: [u8; 32],
    index: Index,
}

/// The chain value after log object `seq` whose sealed bytes are `sealed`,
/// given the value before it.
fn chain_next(previous: &[u8; 32], seq: u64, sealed: &[u8]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key("anthill index log chain 1");
    hasher.update(previous);
    hasher.update(&seq.to_le_bytes());
    hasher.update(sealed);
    *hasher.finalize().as_bytes()
}

/// The chain value a format-3 checkpoint (which has none) stands for: its
/// own bytes, the same for every reader.
fn chain_of_old_checkpoint(seq: u64, sealed: &[u8]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key("anthill format 3 checkpoint chain");
    hasher.update(&seq.to_le_bytes());
    hasher.update(sealed);
    *hasher.finalize().as_bytes()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The error of an append that found another write at its sequence number.
fn taken_error(seq: u64) -> Error {
    Error::Backend(BackendError::Permanent(format!(
        "index log object {} holds a write this process has not read (another \
         writer's, or an earlier write of this process that reported failure but \
         landed); this change was not recorded, and the index is reloaded before the \
         next one: retry it",
        object_name(LOG_PREFIX, seq)
    )))
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

/// The item bytes in `records` (of small puts).
fn inline_len<'a>(records: impl IntoIterator<Item = &'a Record>) -> u64 {
    records
        .into_iter()
        .map(|r| match r {
            Record::PutInline { data, .. } => data.len() as u64,
            _ => 0,
        })
        .sum()
}

/// What each caller of a batch is answered.
type Answers = Vec<(Reply<Vec<Piece>>, Result<Vec<Piece>>)>;

/// One caller's records, answered with the pieces they released.
struct Append {
    records: Vec<Record>,
    done: Reply<Vec<Piece>>,
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

    /// Whether opening read the index from the local cache.
    pub fn opened_from_cache(&self) -> bool {
        self.opened_from_cache
    }

    /// Loads the index from the local cache if it still describes the
    /// store, returning how many log records it replayed over it; `None`
    /// (the caller loads from the backend) if there is none, if it cannot
    /// be read, or if it is not on the store's history.
    async fn load_from_cache(&self) -> Option<usize> {
        let cache = self.cache.as_ref()?;
        match self.try_load_from_cache(cache).await {
            Ok(replayed) => replayed,
            Err(error) => {
                log::info!("loading the index from the backend: {error}");
                None
            }
        }
    }

    /// The cache is never trusted over the backend: it is used only if the
    /// object it was read up to (the last log object it covers, or the
    /// checkpoint it starts from) is still there unchanged, no checkpoint
    /// has absorbed the log past it, and the log after it is all there;
    /// that log is then replayed on top, as a load replays the log after a
    /// checkpoint. The store's objects are write-once (see the module
    /// header), so the same object at the anchor means the same history.
    async fn try_load_from_cache(&self, cache: &IndexCache) -> Result<Option<usize>> {
        let Some((cached, state, position)) =
            index::open_cache(&cache.path, Arc::clone(&self.keys), &self.store_id)?
        else {
            return Ok(None);
        };
        let state: CachedLogIn = index::from_bytes(&state, "index cache")?;
        let (checkpoints, logs) = futures::try_join!(
            self.list_seqs(CHECKPOINT_PREFIX),
            self.list_seqs(LOG_PREFIX)
        )?;
        let newest = checkpoints.last().copied();
        if newest.is_some_and(|checkpoint| checkpoint >= position) {
            return Ok(None);
        }
        let receipt = PutReceipt {
            size: state.receipt.0,
            e_tag: state.receipt.1,
        };
        if let Err(error) = self.backend.verify(&state.anchor, &receipt).await {
            log::info!("the index cache is not on the store's history: {error}");
            return Ok(None);
        }
        let last = newest_log(logs).filter(|last| *last >= position);
        let most_records =
            MOST_CACHE_TAIL_RECORDS.max(cached.items.len() / CACHE_ITEMS_PER_TAIL_RECORD);
        let mut loaded = LogState {
            index: cached,
            next_seq: position,
            ..state.log
        };
        let mut records = 0;
        for seq in position..last.map_or(position, |last| last + 1) {
            let Some((plaintext, sealed)) = self.try_read_sealed(LOG_KIND, LOG_PREFIX, seq).await?
            else {
                return Ok(None); // a gap: the full load tells what it is
            };
            records += loaded.replay(seq, &plaintext, &sealed)?;
            if records > most_records {
                return Ok(None);
            }
        }
        if self.checkpointed_since(newest).await? {
            return Ok(None);
        }
        self.install(loaded);
        Ok(Some(records))
    }

    /// Writes the local index cache if this store keeps one, after a load
    /// from the backend paid for the whole index or a long replay over the
    /// old cache: the next open then reads a few kilobytes. An index that fails its check is not kept (opening
    /// then fails on it). Failures are only reported: the cache is an
    /// optimisation.
    async fn keep_cache(&mut self) {
        let journal = self;
        let Some(cache) = journal.cache.clone() else {
            return;
        };
        let anchor = {
            let log = journal.log.get_mut().expect("journal lock");
            let small = (log.state.index.items.len() as u64) < cache.min_items;
            let Some(last) = log.state.next_seq.checked_sub(1) else {
                return;
            };
            if small || !log.state.index.inline.is_empty() || log.doubt.is_some() {
                return;
            }
            if let Err(error) = log.state.index.check(cache.pad_size) {
                log::info!("no local index cache: {error}");
                return;
            }
            // After a replay over the old cache: the file needs every entry.
            if let Err(error) = log.state.index.items.load_all() {
                log::info!("no local index cache: {error}");
                return;
            }
            if log.state.uncheckpointed.last() == Some(&last) {
                object_name(LOG_PREFIX, last)
            } else {
                object_name(CHECKPOINT_PREFIX, last)
            }
        };
        let receipt = match journal.backend.head(&anchor).await {
            Ok(receipt) => receipt,
            Err(error) => {
                log::info!("no local index cache: {error}");
                return;
            }
        };
        let log = journal.log.get_mut().expect("journal lock");
        let kept = CachedLogOut {
            anchor: &anchor,
            receipt: (receipt.size, receipt.e_tag.as_deref()),
            log: &log.state,
        };
        let Ok(state) = index::to_bytes(&kept) else {
            return;
        };
        let index = std::mem::take(&mut log.state.index);
        let (keys, store_id, position) = (
            Arc::clone(&journal.keys),
            journal.store_id,
            log.state.next_seq,
        );
        let started = std::time::Instant::now();
        let (index, written) = blocking::on_blocking_pool(move || {
            let written =
                index::cache::write(&cache.path, &keys, &store_id, position, state, &index);
            (index, written)
        })
        .await;
        journal.log.get_mut().expect("journal lock").state.index = index;
        match written {
            Ok(()) => log::debug!("local index cache written in {:?}", started.elapsed()),
            Err(error) => log::warn!("no local index cache: {error}"),
        }
    }

    /// Reads the index with `f`, which may fail only where it reads items:
    /// if they come from a local cache file that turns out damaged, the
    /// file is deleted, the index is loaded from the backend, and `f` runs
    /// again.
    pub async fn read_items<R>(&self, f: impl Fn(&Index) -> Result<R>) -> Result<R> {
        let (result, cached) = {
            let log = self.log.lock().expect("journal lock");
            (f(&log.state.index), log.state.index.items.is_cached())
        };
        match result {
            Err(error) if cached => {
                log::warn!("reading the index from the backend: {error}");
                if let Some(cache) = &self.cache {
                    let _ = std::fs::remove_file(&cache.path);
                }
                self.load().await?;
                self.read(f)
            }
            result => result,
        }
    }

    /// Where the store's log is now.
    fn position(&self) -> LogPosition {
        let log = self.log.lock().expect("journal lock");
        LogPosition {
            position: log.state.next_seq,
            chain: log.state.chain,
        }
    }

    /// Compares the store with the newest position this machine has seen
    /// (see the module header), then remembers where it is.
    async fn check_rollback(
        &self,
        remembered: Option<LogPosition>,
        allow_rollback: bool,
    ) -> Result<()> {
        let Some(seen) = self.seen.clone() else {
            return Ok(());
        };
        let now = self.position();
        let problem = remembered.and_then(|known| {
            let chain_there = self
                .log
                .lock()
                .expect("journal lock")
                .state
                .chains
                .get(&known.position)
                .copied();
            if now.position < known.position {
                Some(format!(
                    "this machine has seen its index log at position {}, but the store's log \
                     ends at position {} (an older copy of the store was restored, or its \
                     newest log objects were deleted)",
                    known.position, now.position
                ))
            } else if chain_there.is_some_and(|chain| chain != known.chain) {
                Some(format!(
                    "its index log at position {} is not the one this machine has seen there \
                     (chain {} expected, {} found): the store was replaced by another copy of \
                     its history",
                    known.position,
                    hex(&known.chain),
                    hex(&chain_there.unwrap_or_default())
                ))
            } else {
                None
            }
        });
        match problem {
            Some(problem) if !allow_rollback => {
                return Err(Error::integrity(format!(
                    "rollback detected in store {}: {problem}. Opening it would bring back \
                     removed items and old values. If you restored an older copy on purpose, \
                     open it with allow_rollback=True (this machine then accepts its state; \
                     the memory is {})",
                    hex(&self.store_id),
                    seen.path().display()
                )));
            }
            Some(problem) => {
                log::warn!("opening a rolled-back store as asked (allow_rollback): {problem}");
                self.remember(seen, now, true).await;
            }
            None => self.remember(seen, now, false).await,
        }
        Ok(())
    }

    /// Remembers position `at` after a log write, in the background: the
    /// update (a small file replaced under a file lock) takes longer than a
    /// small put itself, so the put does not wait for it. Updates coalesce:
    /// under a stream of puts, each writes the newest position. A process
    /// that dies right after a put may leave the memory a few writes behind;
    /// `settled` (called by `close`) and dropping the journal catch up.
    fn remember_later(&self, at: LogPosition) {
        let Some(seen) = self.seen.clone() else {
            return;
        };
        {
            let mut queue = self.remembering.lock().expect("memory queue");
            if queue.waiting.is_none_or(|w| w.position < at.position) {
                queue.waiting = Some(at);
            }
            if std::mem::replace(&mut queue.running, true) {
                return; // the running task takes it
            }
        }
        let queue = Arc::clone(&self.remembering);
        let task = tokio::task::spawn_blocking(move || {
            loop {
                let next = {
                    let mut queue = queue.lock().expect("memory queue");
                    let next = queue.waiting.take();
                    queue.running = next.is_some();
                    next
                };
                match next {
                    Some(at) => {
                        seen.advance(at);
                        // Under a stream of puts, one update per period:
                        // each is a file replaced under a lock.
                        std::thread::sleep(REMEMBER_PERIOD);
                    }
                    None => return,
                }
            }
        });
        *self.remembering_task.lock().expect("memory task") = Some(task);
    }

    /// Waits until this machine's memory holds every log write made so far.
    pub async fn settled(&self) {
        loop {
            let task = self.remembering_task.lock().expect("memory task").take();
            match task {
                Some(task) => {
                    let _ = task.await;
                }
                None => return,
            }
        }
    }

    /// Updates this machine's memory of the store's log position (on a
    /// blocking thread: it is file I/O under a lock).
    async fn remember(&self, seen: SeenLogs, at: LogPosition, reset: bool) {
        let _ = tokio::task::spawn_blocking(move || {
            if reset {
                seen.reset(at);
            } else {
                seen.advance(at);
            }
        })
        .await;
    }

    /// Replaces the in-memory index with what the backend holds.
    ///
    /// A writer checkpointing meanwhile (a reader loads without the writer
    /// lock) deletes the log objects it absorbed: an object listed a moment ago can be gone,
    /// or the log listing can miss objects the checkpoint listed before it
    /// absorbed. Either way that checkpoint exists by then (it is written
    /// before the deletes), so loading again starts from it. Without this,
    /// a load could stop at an older checkpoint with no log after it, and
    /// its writer would append after a stale index, losing what the newer
    /// checkpoint held once it checkpointed in turn.
    async fn load(&self) -> Result<()> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            match self.load_once().await {
                Ok(true) => return Ok(()),
                Ok(false) if attempts < 8 => {}
                Err(Error::Backend(BackendError::NotFound(_))) if attempts < 8 => {}
                Ok(false) => {
                    return Err(Error::Backend(BackendError::Transient(
                        "the index kept changing while it was read".into(),
                    )));
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Whether a checkpoint newer than `loaded` exists now.
    async fn checkpointed_since(&self, loaded: Option<u64>) -> Result<bool> {
        Ok(self.list_seqs(CHECKPOINT_PREFIX).await?.last().copied() > loaded)
    }

    /// One attempt of `load`: `false` if another writer checkpointed
    /// meanwhile and it must start again.
    async fn load_once(&self) -> Result<bool> {
        let checkpoints = self.list_seqs(CHECKPOINT_PREFIX).await?;
        let newest = checkpoints.last().copied();
        let mut loaded = match newest {
            Some(seq) => {
                let (index, size, chain) = self.read_checkpoint(seq).await?;
                LogState::starting(index, seq + 1, size, chain)
            }
            None => LogState::starting(Index::default(), 0, 0, CHAIN_START),
        };
        // Objects below the checkpoint are left over from a crash. Those
        // after it are read by number up to the newest listed (see
        // `newest_log`), so a listing that missed one is no gap.
        let last = newest_log(self.list_seqs(LOG_PREFIX).await?);
        for seq in loaded.next_seq..last.map_or(loaded.next_seq, |last| last + 1) {
            let Some((plaintext, sealed)) = self.try_read_sealed(LOG_KIND, LOG_PREFIX, seq).await?
            else {
                if self.checkpointed_since(newest).await? {
                    return Ok(false);
                }
                return Err(Error::integrity(format!(
                    "index log object {} is missing (found {} after it)",
                    object_name(LOG_PREFIX, seq),
                    object_name(LOG_PREFIX, last.unwrap_or(seq))
                )));
            };
            loaded.replay(seq, &plaintext, &sealed)?;
        }
        if self.checkpointed_since(newest).await? {
            return Ok(false);
        }
        self.install(loaded);
        Ok(true)
    }

    /// Makes `loaded` the journal's index and log state.
    fn install(&self, loaded: LogState) {
        let mut log = self.log.lock().expect("journal lock");
        log.state = loaded;
        // Facts about this index (write-backs) that the new one may lack:
        // still true of the pads, and harmless to apply again.
        for record in log.deferred.clone() {
            let _ = log.state.index.apply(&record);
        }
    }

    /// Reads checkpoint `c/<seq>`: the index, its plaintext size and the
    /// chain value after log object `seq`. A checkpoint of store format 3
    /// (the index alone) stands for a chain value of its own bytes.
    async fn read_checkpoint(&self, seq: u64) -> Result<(Index, u64, [u8; 32])> {
        let name = object_name(CHECKPOINT_PREFIX, seq);
        let sealed = self
            .retry
            .run(|_| self.backend.get_capped(&name, MAX_OBJECT_LEN))
            .await?;
        let what = format!("index object {name}");
        let open = |kind: &str| {
            let aad = associated_data(kind, &self.store_id, seq);
            crypto::open(self.keys.index(), &aad, &sealed, &what)
        };
        match open(CHECKPOINT_KIND) {
            Ok(plaintext) => {
                let checkpoint: CheckpointIn = index::from_bytes(&plaintext, "index checkpoint")?;
                Ok((checkpoint.index, plaintext.len() as u64, checkpoint.chain))
            }
            Err(error) => match open(CHECKPOINT_KIND_1) {
                Ok(plaintext) => {
                    let index = index::from_bytes(&plaintext, "index checkpoint")?;
                    let chain = chain_of_old_checkpoint(seq, &sealed);
                    Ok((index, plaintext.len() as u64, chain))
                }
                Err(_) => Err(error),
            },
        }
    }

    async fn list_seqs(&self, prefix: &str) -> Result<Vec<u64>> {
        let names = self.retry.run(|_| self.backend.list(prefix)).await?;
        let mut seqs: Vec<u64> = names.iter().filter_map(|n| parse_seq(prefix, n)).collect();
        seqs.sort_unstable();
        Ok(seqs)
    }

    /// Reads and opens an index object: its plaintext and sealed bytes.
    async fn read_sealed(&self, kind: &str, prefix: &str, seq: u64) -> Result<(Vec<u8>, Bytes)> {
        let name = object_name(prefix, seq);
        let sealed = self
            .retry
            .run(|_| self.backend.get_capped(&name, MAX_OBJECT_LEN))
            .await?;
        let aad = associated_data(kind, &self.store_id, seq);
        let plaintext = crypto::open(
            self.keys.index(),
            &aad,
            &sealed,
            &format!("index object {name}"),
        )?;
        Ok((plaintext, sealed))
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

    /// Creates log object `seq` with `sealed`, only if absent. `Ok(false)`:
    /// something else is there (see `landed` for whose it is).
    async fn create_log_object(&self, seq: u64, sealed: &Bytes) -> Result<bool> {
        let name = object_name(LOG_PREFIX, seq);
        if let Some(folder) = self.backend.capabilities().folder_writer.clone() {
            // A local folder: created, linked into place and (with fsync)
            // flushed by one blocking call; a link that succeeded needs no
            // check. Most of a small put's time is handing work between
            // threads, so no hand-off at all where it can be avoided.
            let created = self
                .retry
                .run(|_| {
                    let (folder, name, sealed) = (folder.clone(), name.clone(), sealed.clone());
                    // Unflushed, a small object reaches the page cache sooner
                    // than a hop to the blocking pool and back would take,
                    // and that hop is most of a small put's time.
                    let cost = if folder.fsync() {
                        usize::MAX
                    } else {
                        sealed.len()
                    };
                    blocking::off_runtime(cost, move || folder.create(&name, &sealed))
                })
                .await?;
            return Ok(created);
        }
        // A reserve that answered success has created the object (a service
        // that acknowledges a put has stored it, and AWS S3 and Garage read
        // their writes back at once): reading its size back would cost a
        // round trip per small put and prove nothing more. Whether it is
        // ours, not a racing writer's, rests on the writer lease either way.
        let created = self
            .retry
            .run(|_| async {
                match self.backend.reserve(&name, sealed.clone()).await {
                    Ok(()) => Ok(true),
                    // Perhaps an earlier attempt of ours whose answer was lost.
                    Err(BackendError::AlreadyExists(_)) => Ok(false),
                    Err(error) => Err(error),
                }
            })
            .await?;
        Ok(created)
    }

    /// What is at log object `seq` compared with a write of `sealed` there.
    async fn landed(&self, seq: u64, sealed: &[u8]) -> Landed {
        let name = object_name(LOG_PREFIX, seq);
        match self
            .retry
            .run(|_| self.backend.get_capped(&name, MAX_OBJECT_LEN))
            .await
        {
            Ok(found) if found == sealed => Landed::Ours,
            Ok(_) => Landed::Other,
            Err(BackendError::NotFound(_)) => Landed::Nothing,
            Err(error) => Landed::Unknown(error.into()),
        }
    }

    /// Catches up with records other processes appended since this one last
    /// looked. Call with no append under way.
    /// Returns whether the index changed.
    ///
    /// `writer_locked`: the caller holds the writer lock, so nobody writes
    /// meanwhile and both requests go out at once (one round trip, not two,
    /// before a put's first reservation).
    /// A refresh also settles any doubt about this process's own writes
    /// (their objects are read like anyone's), so it then reports a change:
    /// the allocator must rebuild, since a doubtful put's space was kept.
    pub async fn refresh(&self, writer_locked: bool) -> Result<bool> {
        let changed = self.read_news(writer_locked).await?;
        let mut log = self.log.lock().expect("journal lock");
        let settled = log.doubt.take().is_some()
            | std::mem::take(&mut log.stale)
            | std::mem::take(&mut log.rebuild_due);
        Ok(changed || settled)
    }

    /// Whether the index may be behind the backend's log because of this
    /// process's own writes: a log write failed that may have landed, or
    /// one found another write in its place. Then the next writer entry
    /// must refresh, and a failed put must keep its space (it may be live).
    pub fn in_doubt(&self) -> bool {
        let log = self.log.lock().expect("journal lock");
        log.doubt.is_some() || log.stale || log.rebuild_due
    }

    async fn read_news(&self, writer_locked: bool) -> Result<bool> {
        let next_seq = self.log.lock().expect("journal lock").state.next_seq;
        // Read the log on from where we are, then look at the checkpoints
        // (few: older ones are deleted): two requests when nothing changed,
        // however long the log. In that order when another writer may be
        // at work, because a writer deletes log objects only after writing
        // the checkpoint that absorbs them: a missing object then always
        // shows as a newer checkpoint.
        let first_log = self.try_read_sealed(LOG_KIND, LOG_PREFIX, next_seq);
        let (first_log, listed) = if writer_locked {
            let (first_log, listed) = futures::join!(first_log, self.list_seqs(CHECKPOINT_PREFIX));
            (first_log?, Some(listed?))
        } else {
            (first_log.await?, None)
        };
        let mut batches = Vec::new();
        let mut seq = next_seq;
        let mut next = first_log;
        while let Some((plaintext, sealed)) = next {
            let records: Vec<Record> = index::from_bytes(&plaintext, "index log")?;
            batches.push((seq, plaintext.len() as u64, records, sealed));
            seq += 1;
            next = self.try_read_sealed(LOG_KIND, LOG_PREFIX, seq).await?;
        }
        let checkpoints = match listed {
            Some(listed) => listed,
            None => self.list_seqs(CHECKPOINT_PREFIX).await?,
        };
        if checkpoints
            .last()
            .is_some_and(|&checkpoint| checkpoint >= seq)
        {
            // Another writer checkpointed past what we read: load from it.
            self.load().await?;
            return Ok(true);
        }
        if batches.is_empty() {
            return Ok(false);
        }
        let mut log = self.log.lock().expect("journal lock");
        for (seq, size, records, sealed) in batches {
            for record in &records {
                log.state.index.apply(record)?;
            }
            log.state.applied(seq, size, inline_len(&records), &sealed);
        }
        Ok(true)
    }

    /// Like `read_sealed`, but `None` if the object does not exist.
    async fn try_read_sealed(
        &self,
        kind: &str,
        prefix: &str,
        seq: u64,
    ) -> Result<Option<(Vec<u8>, Bytes)>> {
        match self.read_sealed(kind, prefix, seq).await {
            Ok(plaintext) => Ok(Some(plaintext)),
            Err(Error::Backend(BackendError::NotFound(_))) => Ok(None),
            Err(error) => Err(error),
        }
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

    /// Writes the records kept by `note_written_back`, if any, as a log
    /// object of their own (`flush`, `close`, idle time).
    pub async fn write_deferred(self: &Arc<Self>) -> Result<()> {
        if self.log.lock().expect("journal lock").deferred.is_empty() {
            return Ok(());
        }
        self.append(Vec::new()).await.map(|_| ())
    }

    /// Makes `records` durable and applies them to the index, in order after
    /// every earlier append. Returns the pieces they released.
    pub async fn append(self: &Arc<Self>, records: Vec<Record>) -> Result<Vec<Piece>> {
        let (done, answer) = group_commit::ticket();
        if self.appends.push(Append { records, done }) {
            // A task of its own, so that a caller dropping its future (a
            // cancelled put) never stops a write that others are waiting on.
            let journal = Arc::clone(self);
            tokio::spawn(async move {
                journal
                    .appends
                    .run(|batch| journal.commit_appends(batch))
                    .await;
            });
        }
        answer.answer().await
    }

    /// Writes one batch of appends (and the write-back records waiting for
    /// a log write) as one log object, applies it and answers its callers.
    async fn commit_appends(&self, mut batch: Vec<Append>) {
        let deferred = std::mem::take(&mut self.log.lock().expect("journal lock").deferred);
        if !deferred.is_empty() {
            // Last: a write-back applies only to items already recorded.
            let (done, _) = group_commit::ticket();
            batch.push(Append {
                records: deferred.clone(),
                done,
            });
        }
        let written = self.write_batch(&batch).await;
        if written.is_err() {
            let mut log = self.log.lock().expect("journal lock");
            let newer = std::mem::replace(&mut log.deferred, deferred);
            log.deferred.extend(newer);
        }
        match written {
            Ok((seq, sealed)) => {
                self.wrote.store(true, std::sync::atomic::Ordering::Release);
                let (at, answers) = self.apply_batch(batch, seq, &sealed);
                self.remember_later(at);
                // Before answering: the callers hold the writer lock
                // until then. A checkpoint deletes log objects, which
                // must not happen while another writer catches up (it
                // lists checkpoints and probes the log at once, trusting
                // that nobody writes meanwhile); that race lost items.
                self.checkpoint_if_due().await;
                for (done, released) in answers {
                    done.send(released);
                }
            }
            Err(error) => {
                group_commit::fail_all(batch.into_iter().map(|append| append.done), &error);
            }
        }
    }

    /// Applies a batch written as log object `seq`; returns the log's new
    /// position and the answer for each caller.
    fn apply_batch(&self, batch: Vec<Append>, seq: u64, sealed: &[u8]) -> (LogPosition, Answers) {
        let mut log = self.log.lock().expect("journal lock");
        let inline = inline_len(batch.iter().flat_map(|a| a.records.iter()));
        log.state.applied(seq, sealed.len() as u64, inline, sealed);
        let mut answers = Vec::with_capacity(batch.len());
        for append in batch {
            let mut released = Ok(Vec::new());
            for record in &append.records {
                match (log.state.index.apply(record), &mut released) {
                    (Ok(pieces), Ok(all)) => all.extend(pieces),
                    (Err(error), _) => released = Err(error),
                    _ => {}
                }
            }
            answers.push((append.done, released));
        }
        let at = LogPosition {
            position: log.state.next_seq,
            chain: log.state.chain,
        };
        (at, answers)
    }

    /// Writes one batch as the next log object: its sequence number and
    /// sealed bytes once it is certainly there (see the module header).
    async fn write_batch(&self, batch: &[Append]) -> Result<(u64, Bytes)> {
        let records: Vec<&Record> = batch.iter().flat_map(|a| a.records.iter()).collect();
        let plaintext = index::to_bytes(&records)?;
        self.check_writer_lock().await?;
        let seq = self.settle_doubt().await?;
        let sealed = self.seal(LOG_KIND, seq, &plaintext)?;
        let failure = match self.create_log_object(seq, &sealed).await {
            Ok(true) => return Ok((seq, sealed)),
            Ok(false) => None,
            Err(error) => Some(error),
        };
        // Something is there, or the write failed and may have landed.
        match (self.landed(seq, &sealed).await, failure) {
            (Landed::Ours, _) => Ok((seq, sealed)),
            (Landed::Nothing, Some(failure)) => Err(failure),
            // Another write's, or there a moment ago and gone (another
            // writer checkpointed it).
            (Landed::Nothing | Landed::Other, _) => {
                self.log.lock().expect("journal lock").stale = true;
                Err(taken_error(seq))
            }
            (Landed::Unknown(_), failure) => {
                self.log.lock().expect("journal lock").doubt = Some(Doubt {
                    seq,
                    sealed,
                    records: records.into_iter().cloned().collect(),
                });
                Err(failure.unwrap_or_else(|| taken_error(seq)))
            }
        }
    }

    /// Before a log write: settles an earlier write left in doubt, and
    /// refuses to write past a log object this index has not read. Returns
    /// the sequence number to write.
    async fn settle_doubt(&self) -> Result<u64> {
        let (seq, sealed) = {
            let log = self.log.lock().expect("journal lock");
            if log.stale {
                return Err(taken_error(log.state.next_seq));
            }
            match &log.doubt {
                None => return Ok(log.state.next_seq),
                Some(doubt) => (doubt.seq, doubt.sealed.clone()),
            }
        };
        let landed = self.landed(seq, &sealed).await;
        let mut log = self.log.lock().expect("journal lock");
        match landed {
            Landed::Unknown(error) => return Err(error),
            Landed::Other => {
                log.doubt = None;
                log.stale = true;
                return Err(taken_error(seq));
            }
            Landed::Nothing => log.doubt = None,
            Landed::Ours => {
                // The batch is in the store's history although its callers
                // saw an error: the index takes it; the space it released
                // is left to the rebuild.
                let Some(doubt) = log.doubt.take() else {
                    return Err(taken_error(seq));
                };
                for record in &doubt.records {
                    if let Err(error) = log.state.index.apply(record) {
                        log.stale = true;
                        return Err(error);
                    }
                }
                let inline = inline_len(&doubt.records);
                log.state
                    .applied(doubt.seq, doubt.sealed.len() as u64, inline, &doubt.sealed);
            }
        }
        // The doubtful put kept its space, which is live only if it landed.
        log.rebuild_due = true;
        Ok(log.state.next_seq)
    }

    /// Writes checkpoint `c/<seq>` to stable storage (whatever the store's
    /// fsync setting: the log objects it absorbs are deleted next).
    async fn write_checkpoint(&self, seq: u64, plaintext: &[u8]) -> Result<()> {
        let name = object_name(CHECKPOINT_PREFIX, seq);
        let sealed = self.seal(CHECKPOINT_KIND, seq, plaintext)?;
        self.retry
            .run(|_| async {
                let receipt = self.backend.put_durable(&name, sealed.clone()).await?;
                self.backend.verify(&name, &receipt).await
            })
            .await?;
        Ok(())
    }

    async fn check_writer_lock(&self) -> Result<()> {
        let lock = self.writer_lock.lock().expect("writer lock slot").clone();
        if let Some(lock) = lock {
            lock.check().await?;
        }
        Ok(())
    }

    /// Writes a checkpoint once the log since the last one is larger than it
    /// (and than a floor), then deletes the absorbed log objects. Runs inside
    /// the batch's commit, before its callers are answered, so no append
    /// interleaves and the writer lock is held. A failure only postpones it.
    async fn checkpoint_if_due(&self) {
        let (due, dirty) = {
            let log = self.log.lock().expect("journal lock");
            let records = log
                .state
                .log_bytes
                .saturating_sub(log.state.inline_log_bytes);
            let due = records > self.checkpoint_interval.max(log.state.checkpoint_bytes)
                || log.state.inline_log_bytes > INLINE_LOG_LIMIT.max(self.checkpoint_interval);
            (due, !log.state.index.inline.is_empty())
        };
        if !due {
            return;
        }
        if dirty {
            // The log objects about to be absorbed hold item bytes: they
            // must be in their pads first.
            let write_back = self
                .write_back
                .lock()
                .expect("write-back slot")
                .as_ref()
                .and_then(std::sync::Weak::upgrade);
            if let Some(write_back) = write_back {
                let records = write_back.write_back_all().await;
                self.note_written_back(records);
            }
        }
        let (seq, plaintext, absorbed) = {
            let log = self.log.lock().expect("journal lock");
            let Some(&seq) = log.state.uncheckpointed.last() else {
                return;
            };
            if log.doubt.is_some() || log.stale {
                return;
            }
            if !log.state.index.inline.is_empty() {
                log::warn!("index checkpoint postponed: some small items are not written back yet");
                return;
            }
            let checkpoint = CheckpointOut {
                chain: log.state.chain,
                index: &log.state.index,
            };
            let Ok(plaintext) = index::to_bytes(&checkpoint) else {
                return;
            };
            (seq, plaintext, log.state.uncheckpointed.clone())
        };
        if let Err(error) = self.write_checkpoint(seq, &plaintext).await {
            log::warn!("index checkpoint postponed: {error}");
            return;
        }
        {
            let mut log = self.log.lock().expect("journal lock");
            log.state.uncheckpointed.retain(|s| *s > seq);
            log.state.log_bytes = 0;
            log.state.inline_log_bytes = 0;
            log.state.checkpoint_bytes = plaintext.len() as u64;
            log.state.chains = log.state.chains.split_off(&(seq + 1));
        }
        self.delete_absorbed(seq, absorbed).await;
    }

    /// Deletes the log objects checkpoint `seq` absorbed and the older
    /// checkpoints: garbage now (leftovers are skipped on load). Deleted
    /// concurrently: a checkpoint absorbs thousands of small log objects,
    /// and the caller that made it due waits for this.
    async fn delete_absorbed(&self, seq: u64, absorbed: Vec<u64>) {
        let mut garbage: Vec<String> = absorbed
            .into_iter()
            .map(|old| object_name(LOG_PREFIX, old))
            .collect();
        if let Ok(checkpoints) = self.list_seqs(CHECKPOINT_PREFIX).await {
            garbage.extend(
                checkpoints
                    .into_iter()
                    .filter(|s| *s < seq)
                    .map(|old| object_name(CHECKPOINT_PREFIX, old)),
            );
        }
        futures::stream::iter(garbage)
            .map(|name| async move {
                let _ = self.backend.delete(&name).await;
            })
            .buffer_unordered(DELETE_CONCURRENCY)
            .collect::<()>()
            .await;
    }
}

/// The newest of the log objects a listing found. Log objects are read by
/// number from the first one needed up to it, never from the listing
/// itself: a listing taken while a writer creates objects may hold n+1
/// without n (a folder's directory read sees some entries added meanwhile
/// and not others), and a gap seen there is no damage. Only an object
/// missing when read by its name is missing.
fn newest_log(listed: Vec<u64>) -> Option<u64> {
    listed.into_iter().max()
}
