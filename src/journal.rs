//! The durable, encrypted log of index [`Record`]s, with checkpoints.
//!
//! Each write is one object `j/<seq>` holding a batch of records; concurrent
//! appends are group-committed into one write, so many small puts share one
//! index write. A checkpoint `c/<seq>` holds the whole index as of `seq`, and
//! is written when the log since the last one outgrows it, so the cost per
//! put stays constant however many keys the store holds. Objects are sealed
//! with the index key; the associated data binds their kind and sequence
//! number, so a swapped or reordered object fails to open.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::oneshot;

use crate::crypto::{self, StoreKeys};
use crate::error::{Error, Result};
use crate::index::{self, Index, Piece, Record};
use crate::pad_store::{BackendError, PadStore, WriterLock};
use crate::retry::RetryPolicy;

const LOG_PREFIX: &str = "j/";
const CHECKPOINT_PREFIX: &str = "c/";
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

pub struct Journal {
    backend: Arc<dyn PadStore>,
    keys: Arc<StoreKeys>,
    store_id: [u8; 16],
    retry: RetryPolicy,
    /// Least log bytes between checkpoints.
    checkpoint_interval: u64,
    /// The writer lock this process holds, checked before every write.
    writer_lock: Mutex<Option<Arc<dyn WriterLock>>>,
    /// The index as of the last durable record, and the queue of appends.
    /// Held only for short in-memory updates, never across backend I/O.
    log: Mutex<Log>,
    /// Told when the flush loop ends (`Log::flushing` turns false).
    flushed: tokio::sync::Notify,
}

struct Log {
    index: Index,
    waiting: Vec<Append>,
    flushing: bool,
    next_seq: u64,
    /// Sequence numbers of log objects a checkpoint has not yet absorbed.
    uncheckpointed: Vec<u64>,
    log_bytes: u64,
    checkpoint_bytes: u64,
    /// A log write failed and may have landed all the same: only a refresh
    /// tells, so the next writer entry must not skip it.
    in_doubt: bool,
}

struct Append {
    records: Vec<Record>,
    done: oneshot::Sender<Result<Vec<Piece>>>,
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
        backend: Arc<dyn PadStore>,
        keys: Arc<StoreKeys>,
        store_id: [u8; 16],
        retry: RetryPolicy,
        checkpoint_interval: u64,
    ) -> Result<Arc<Self>> {
        let journal = Journal {
            backend,
            keys,
            store_id,
            retry,
            checkpoint_interval,
            writer_lock: Mutex::new(None),
            flushed: tokio::sync::Notify::new(),
            log: Mutex::new(Log {
                index: Index::default(),
                waiting: Vec::new(),
                flushing: false,
                next_seq: 0,
                uncheckpointed: Vec::new(),
                log_bytes: 0,
                checkpoint_bytes: 0,
                in_doubt: false,
            }),
        };
        journal.load().await?;
        Ok(Arc::new(journal))
    }

    /// Replaces the in-memory index with what the backend holds.
    async fn load(&self) -> Result<()> {
        let checkpoints = self.list_seqs(CHECKPOINT_PREFIX).await?;
        let mut index = Index::default();
        let mut next_seq = 0;
        let mut checkpoint_bytes = 0;
        if let Some(&seq) = checkpoints.last() {
            let plaintext = self
                .read_sealed("checkpoint", CHECKPOINT_PREFIX, seq)
                .await?;
            checkpoint_bytes = plaintext.len() as u64;
            index = index::from_bytes(&plaintext, "index checkpoint")?;
            next_seq = seq + 1;
        }
        let mut uncheckpointed = Vec::new();
        let mut log_bytes = 0;
        for seq in self.list_seqs(LOG_PREFIX).await? {
            if seq < next_seq {
                continue; // absorbed by the checkpoint; left over from a crash
            }
            if seq != next_seq {
                return Err(Error::integrity(format!(
                    "index log object {} is missing (found {} next)",
                    object_name(LOG_PREFIX, next_seq),
                    object_name(LOG_PREFIX, seq)
                )));
            }
            let plaintext = self.read_sealed("journal", LOG_PREFIX, seq).await?;
            log_bytes += plaintext.len() as u64;
            let records: Vec<Record> = index::from_bytes(&plaintext, "index log")?;
            for record in &records {
                index.apply(record)?;
            }
            uncheckpointed.push(seq);
            next_seq = seq + 1;
        }
        let mut log = self.log.lock().expect("journal lock");
        log.index = index;
        log.next_seq = next_seq;
        log.uncheckpointed = uncheckpointed;
        log.log_bytes = log_bytes;
        log.checkpoint_bytes = checkpoint_bytes;
        Ok(())
    }

    async fn list_seqs(&self, prefix: &str) -> Result<Vec<u64>> {
        let names = self.retry.run(|_| self.backend.list(prefix)).await?;
        let mut seqs: Vec<u64> = names.iter().filter_map(|n| parse_seq(prefix, n)).collect();
        seqs.sort_unstable();
        Ok(seqs)
    }

    async fn read_sealed(&self, kind: &str, prefix: &str, seq: u64) -> Result<Vec<u8>> {
        let name = object_name(prefix, seq);
        let sealed = self
            .retry
            .run(|_| self.backend.get_capped(&name, MAX_OBJECT_LEN))
            .await?;
        let aad = associated_data(kind, &self.store_id, seq);
        crypto::open(
            self.keys.index(),
            &aad,
            &sealed,
            &format!("index object {name}"),
        )
    }

    async fn write_sealed(
        &self,
        kind: &str,
        prefix: &str,
        seq: u64,
        plaintext: &[u8],
    ) -> Result<u64> {
        let name = object_name(prefix, seq);
        let aad = associated_data(kind, &self.store_id, seq);
        let sealed = Bytes::from(crypto::seal(self.keys.index(), &aad, plaintext)?);
        let size = sealed.len() as u64;
        if size > MAX_OBJECT_LEN {
            return Err(Error::invalid(format!(
                "index object {name} would hold {size} bytes, more than the {MAX_OBJECT_LEN} \
                 anthill reads back: not written"
            )));
        }
        self.retry
            .run(|_| async {
                let receipt = self.backend.put(&name, sealed.clone()).await?;
                self.backend.verify(&name, &receipt).await
            })
            .await?;
        Ok(size)
    }

    /// Catches up with records other processes appended since this one last
    /// looked. Call with no append under way.
    /// Returns whether the index changed.
    ///
    /// `writer_locked`: the caller holds the writer lock, so nobody writes
    /// meanwhile and both requests go out at once (one round trip, not two,
    /// before a put's first reservation).
    pub async fn refresh(&self, writer_locked: bool) -> Result<bool> {
        let changed = self.read_news(writer_locked).await?;
        self.log.lock().expect("journal lock").in_doubt = false;
        Ok(changed)
    }

    /// Whether a log write failed that may have landed (see `refresh`).
    pub fn in_doubt(&self) -> bool {
        self.log.lock().expect("journal lock").in_doubt
    }

    async fn read_news(&self, writer_locked: bool) -> Result<bool> {
        let next_seq = self.log.lock().expect("journal lock").next_seq;
        // Read the log on from where we are, then look at the checkpoints
        // (few: older ones are deleted): two requests when nothing changed,
        // however long the log. In that order when another writer may be
        // at work, because a writer deletes log objects only after writing
        // the checkpoint that absorbs them: a missing object then always
        // shows as a newer checkpoint.
        let first_log = self.try_read_sealed("journal", LOG_PREFIX, next_seq);
        let (first_log, listed) = if writer_locked {
            let (first_log, listed) = futures::join!(first_log, self.list_seqs(CHECKPOINT_PREFIX));
            (first_log?, Some(listed?))
        } else {
            (first_log.await?, None)
        };
        let mut batches = Vec::new();
        let mut seq = next_seq;
        let mut next = first_log;
        while let Some(plaintext) = next {
            let records: Vec<Record> = index::from_bytes(&plaintext, "index log")?;
            batches.push((seq, plaintext.len() as u64, records));
            seq += 1;
            next = self.try_read_sealed("journal", LOG_PREFIX, seq).await?;
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
        for (seq, size, records) in batches {
            for record in &records {
                log.index.apply(record)?;
            }
            log.uncheckpointed.push(seq);
            log.log_bytes += size;
            log.next_seq = seq + 1;
        }
        Ok(true)
    }

    /// Like `read_sealed`, but `None` if the object does not exist.
    async fn try_read_sealed(&self, kind: &str, prefix: &str, seq: u64) -> Result<Option<Vec<u8>>> {
        match self.read_sealed(kind, prefix, seq).await {
            Ok(plaintext) => Ok(Some(plaintext)),
            Err(Error::Backend(BackendError::NotFound(_))) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Waits until no index write of this handle is under way: the batch of
    /// a (possibly cancelled) append, or the checkpoint and deletes after
    /// it. The writer lock must outlive them, as every write needs it.
    pub async fn flushed(&self) {
        loop {
            let notified = self.flushed.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            if !self.log.lock().expect("journal lock").flushing {
                return;
            }
            notified.await;
        }
    }

    /// Sets (or clears) the writer lock checked before every write.
    pub fn set_writer_lock(&self, lock: Option<Arc<dyn WriterLock>>) {
        *self.writer_lock.lock().expect("writer lock slot") = lock;
    }

    /// Reads the durable index.
    pub fn read<R>(&self, f: impl FnOnce(&Index) -> R) -> R {
        f(&self.log.lock().expect("journal lock").index)
    }

    /// Makes `records` durable and applies them to the index, in order after
    /// every earlier append. Returns the pieces they released.
    pub async fn append(self: &Arc<Self>, records: Vec<Record>) -> Result<Vec<Piece>> {
        let (done, finished) = oneshot::channel();
        let lead = {
            let mut log = self.log.lock().expect("journal lock");
            log.waiting.push(Append { records, done });
            !std::mem::replace(&mut log.flushing, true)
        };
        if lead {
            // A task of its own, so that a caller dropping its future (a
            // cancelled put) never stops a write that others are waiting on.
            tokio::spawn(Arc::clone(self).flush());
        }
        finished
            .await
            .map_err(|_| Error::Backend(BackendError::Permanent("index writer stopped".into())))?
    }

    async fn flush(self: Arc<Self>) {
        loop {
            let (batch, seq) = {
                let mut log = self.log.lock().expect("journal lock");
                if log.waiting.is_empty() {
                    log.flushing = false;
                    drop(log);
                    self.flushed.notify_waiters();
                    return;
                }
                (std::mem::take(&mut log.waiting), log.next_seq)
            };
            let records: Vec<&Record> = batch.iter().flat_map(|a| a.records.iter()).collect();
            let written = match index::to_bytes(&records) {
                Ok(plaintext) => match self.check_writer_lock().await {
                    Ok(()) => {
                        self.write_sealed("journal", LOG_PREFIX, seq, &plaintext)
                            .await
                    }
                    Err(error) => Err(error),
                },
                Err(error) => Err(error),
            };
            match written {
                Ok(size) => {
                    let mut log = self.log.lock().expect("journal lock");
                    log.next_seq = seq + 1;
                    log.uncheckpointed.push(seq);
                    log.log_bytes += size;
                    for append in batch {
                        let mut released = Ok(Vec::new());
                        for record in &append.records {
                            match (log.index.apply(record), &mut released) {
                                (Ok(pieces), Ok(all)) => all.extend(pieces),
                                (Err(error), _) => released = Err(error),
                                _ => {}
                            }
                        }
                        let _ = append.done.send(released);
                    }
                }
                Err(error) => {
                    self.log.lock().expect("journal lock").in_doubt = true;
                    for append in batch {
                        let _ = append.done.send(Err(error.clone()));
                    }
                }
            }
            self.checkpoint_if_due().await;
        }
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
    /// the flush loop, so no append interleaves. A failure only postpones it.
    async fn checkpoint_if_due(&self) {
        let (seq, plaintext, absorbed) = {
            let log = self.log.lock().expect("journal lock");
            let due = log.log_bytes > self.checkpoint_interval.max(log.checkpoint_bytes);
            let Some(&seq) = log.uncheckpointed.last() else {
                return;
            };
            if !due {
                return;
            }
            let Ok(plaintext) = index::to_bytes(&log.index) else {
                return;
            };
            (seq, plaintext, log.uncheckpointed.clone())
        };
        if let Err(error) = self
            .write_sealed("checkpoint", CHECKPOINT_PREFIX, seq, &plaintext)
            .await
        {
            log::warn!("index checkpoint postponed: {error}");
            return;
        }
        {
            let mut log = self.log.lock().expect("journal lock");
            log.uncheckpointed.retain(|s| *s > seq);
            log.log_bytes = 0;
            log.checkpoint_bytes = plaintext.len() as u64;
        }
        // Older objects are now garbage; leftovers are skipped on load.
        for old in absorbed {
            let _ = self.backend.delete(&object_name(LOG_PREFIX, old)).await;
        }
        if let Ok(checkpoints) = self.list_seqs(CHECKPOINT_PREFIX).await {
            for old in checkpoints.into_iter().filter(|s| *s < seq) {
                let _ = self
                    .backend
                    .delete(&object_name(CHECKPOINT_PREFIX, old))
                    .await;
            }
        }
    }
}
