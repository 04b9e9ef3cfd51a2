//! Reading the index from the backend: the newest checkpoint, then the log
//! after it, and later the records other writers appended (`refresh`).

use super::*;
use crate::index::SpaceChange;

/// Log objects read at once when the log is read on from a position.
const READ_AHEAD: u64 = 16;

/// Log objects read at once by a load, which knows from a listing how many
/// there are: on S3 each round is a round trip, and a fresh reader of a
/// store whose puts went through the log read 200 objects in 13 of them.
const LOAD_READ_AHEAD: u64 = 64;

/// What a refresh found, for the allocator to follow.
pub enum Refreshed {
    /// Nothing new.
    Unchanged,
    /// Records other writers appended, now applied to the index: what each
    /// did to the store's space, in order.
    Replayed(Vec<SpaceChange>),
    /// The index was loaded anew (another writer checkpointed past it), or
    /// may differ from what the allocator saw (a doubtful write of this
    /// process settled): whatever follows the index rebuilds from it.
    Reloaded,
}

impl Refreshed {
    /// Whether the index changed.
    pub fn changed(&self) -> bool {
        !matches!(self, Refreshed::Unchanged)
    }
}

/// The newest of the log objects a listing found. Log objects are read by
/// number from the first one needed up to it, never from the listing
/// itself: a listing taken while a writer creates objects may hold n+1
/// without n (a folder's directory read sees some entries added meanwhile
/// and not others), and a gap seen there is no damage. Only an object
/// missing when read by its name is missing.
pub(super) fn newest_log(listed: Vec<u64>) -> Option<u64> {
    listed.into_iter().max()
}

impl Journal {
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
    pub(super) async fn load(&self) -> Result<()> {
        self.flushed().await; // as in `refresh`
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
    pub(super) async fn checkpointed_since(&self, loaded: Option<u64>) -> Result<bool> {
        Ok(self.list_seqs(CHECKPOINT_PREFIX).await?.last().copied() > loaded)
    }

    /// One attempt of `load`: `false` if another writer checkpointed
    /// meanwhile and it must start again.
    pub(super) async fn load_once(&self) -> Result<bool> {
        // Both listings at once (one round trip, not two): a checkpoint
        // written between them absorbs log objects this load then misses,
        // which `checkpointed_since` below catches.
        let (checkpoints, logs) = futures::join!(
            self.list_seqs(CHECKPOINT_PREFIX),
            self.list_seqs(LOG_PREFIX)
        );
        let newest = checkpoints?.last().copied();
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
        let last = newest_log(logs?);
        let end = last.map_or(loaded.next_seq, |last| last + 1);
        // Read LOAD_READ_AHEAD at a time (`read_logs`) and replayed in
        // order: one round trip per object made a fresh reader of a Garage
        // store whose puts went through the log take 3.5 to 7 s over 200
        // objects. The log's item bytes are bounded (a checkpoint is due
        // past `INLINE_LOG_LIMIT`), so reading ahead holds little more.
        let mut read = Vec::new().into_iter();
        for seq in loaded.next_seq..end {
            if read.as_slice().is_empty() {
                read = self
                    .read_logs(seq..(seq + LOAD_READ_AHEAD).min(end))
                    .await
                    .into_iter();
            }
            let object = read
                .next()
                .expect("read_logs reads up to the first missing");
            let Some((plaintext, sealed)) = object? else {
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
    pub(super) fn install(&self, loaded: LogState) {
        let mut log = self.log.lock().expect("journal lock");
        log.state = loaded;
        // Facts about this index (write-backs) that the new one may lack:
        // still true of the pads, and harmless to apply again.
        for record in log.deferred.clone() {
            let _ = log.state.index.apply(&record);
        }
    }

    pub(super) async fn list_seqs(&self, prefix: &str) -> Result<Vec<u64>> {
        let names = self.retry.run(|_| self.backend.list(prefix)).await?;
        let mut seqs: Vec<u64> = names.iter().filter_map(|n| parse_seq(prefix, n)).collect();
        seqs.sort_unstable();
        Ok(seqs)
    }

    /// Reads and opens an index object: its plaintext and sealed bytes.
    pub(super) async fn read_sealed(
        &self,
        kind: &str,
        prefix: &str,
        seq: u64,
    ) -> Result<(Vec<u8>, Bytes)> {
        let name = object_name(prefix, seq);
        let sealed = self
            .retry
            .run(|_| self.backend.get_capped(&name, MAX_OBJECT_LEN))
            .await?;
        self.open_sealed(kind, &name, seq, sealed)
    }

    /// Opens the sealed index object `name`, number `seq`.
    fn open_sealed(
        &self,
        kind: &str,
        name: &str,
        seq: u64,
        sealed: Bytes,
    ) -> Result<(Vec<u8>, Bytes)> {
        let aad = associated_data(kind, &self.store_id, seq);
        let plaintext = crypto::open(
            self.keys.index(),
            &aad,
            &sealed,
            &format!("index object {name}"),
        )?;
        Ok((plaintext, sealed))
    }

    /// Reads and opens the log objects `seqs` with one call to the backend
    /// (`Backend::get_many`), in order, up to the first that does not exist
    /// (`None`, and the last entry). One whose read failed is read again
    /// alone, with retries.
    async fn read_logs(&self, seqs: std::ops::Range<u64>) -> Vec<Result<Option<(Vec<u8>, Bytes)>>> {
        let names: Vec<String> = seqs
            .clone()
            .map(|seq| object_name(LOG_PREFIX, seq))
            .collect();
        let fetched = self.backend.get_many(&names, MAX_OBJECT_LEN).await;
        let mut read = Vec::with_capacity(names.len());
        for ((seq, name), fetched) in seqs.zip(&names).zip(fetched) {
            let object = match fetched {
                Ok(sealed) => self.open_sealed(LOG_KIND, name, seq, sealed).map(Some),
                Err(BackendError::NotFound(_)) => Ok(None),
                Err(_) => self.try_read_sealed(LOG_KIND, LOG_PREFIX, seq).await,
            };
            let missing = matches!(object, Ok(None));
            read.push(object);
            if missing {
                break;
            }
        }
        read
    }

    /// Catches up with records other processes appended since this one last
    /// looked, once this handle's own log writes are done. Call where no
    /// new append can start (inside the writer gate's entry).
    /// Returns what changed (see [`Refreshed`]).
    ///
    /// `writer_locked`: the caller holds the writer lock, so nobody writes
    /// meanwhile and both requests go out at once (one round trip, not two,
    /// before a put's first reservation).
    /// A refresh also settles any doubt about this process's own writes
    /// (their objects are read like anyone's), so it then reports
    /// [`Refreshed::Reloaded`]: the allocator must rebuild, since a doubtful
    /// put's space was kept.
    pub async fn refresh(&self, writer_locked: bool) -> Result<Refreshed> {
        // A log write of this handle may still be under way, its caller
        // gone (a cancelled flush): it applies its own object once it
        // lands. Read meanwhile, that object was applied twice, and the
        // handle's chain went wrong (every later open saw a "rollback").
        self.flushed().await;
        let news = self.read_news(writer_locked).await?;
        let mut log = self.log.lock().expect("journal lock");
        let settled = log.doubt.take().is_some()
            | std::mem::take(&mut log.stale)
            | std::mem::take(&mut log.rebuild_due);
        Ok(if settled { Refreshed::Reloaded } else { news })
    }

    pub(super) async fn read_news(&self, writer_locked: bool) -> Result<Refreshed> {
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
            (first_log, Some(listed?))
        } else {
            (first_log.await, None)
        };
        // Then the objects after it, in rounds of twice as many at once (up
        // to READ_AHEAD): a writer taking the lock over reads what the
        // others wrote in their turns in a few round trips, not one per
        // object, for at most as many reads of absent objects as it found.
        // The log ends at the first object missing, as when read one by one:
        // what a round read past it is dropped, errors included.
        let mut batches = Vec::new();
        let mut seq = next_seq;
        let mut round = vec![first_log];
        let mut asked = 1;
        'rounds: loop {
            for object in round {
                let Some((plaintext, sealed)) = object? else {
                    break 'rounds;
                };
                let records: Vec<Record> = index::from_bytes(&plaintext, "index log")?;
                batches.push((seq, plaintext.len() as u64, records, sealed));
                seq += 1;
            }
            asked = (asked * 2).min(READ_AHEAD);
            round = self.read_logs(seq..seq + asked).await;
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
            return Ok(Refreshed::Reloaded);
        }
        if batches.is_empty() {
            return Ok(Refreshed::Unchanged);
        }
        let mut changes = Vec::new();
        let mut log = self.log.lock().expect("journal lock");
        if log.state.next_seq != next_seq {
            // An append of this handle applied meanwhile: its objects are
            // among those read, and applying them again would corrupt the
            // index and the chain.
            return Err(Error::internal(format!(
                "the index log moved from {next_seq} to {} while it was read",
                log.state.next_seq
            )));
        }
        for (seq, size, records, sealed) in batches {
            for record in &records {
                let released = log.state.index.apply(record)?;
                changes.push(SpaceChange::of(record, released));
            }
            log.state.applied(seq, size, inline_len(&records), &sealed);
        }
        Ok(Refreshed::Replayed(changes))
    }

    /// Like `read_sealed`, but `None` if the object does not exist.
    pub(super) async fn try_read_sealed(
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
}
