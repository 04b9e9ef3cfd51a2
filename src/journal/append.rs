//! Appending records: group-committed log writes, each creating one log
//! object, and the doubt a failed write may leave (see the module header).

use super::*;

/// A log write that may have landed (see the module header).
pub(super) struct Doubt {
    seq: u64,
    sealed: Bytes,
    records: Vec<Record>,
}

/// What a log write left at its sequence number, as far as can be told.
pub(super) enum Landed {
    /// This write's bytes.
    Ours,
    /// Nothing: the write never took effect.
    Nothing,
    /// Another write's bytes.
    Other,
    /// The backend could not be read.
    Unknown(Error),
}

/// The error of an append that found another write at its sequence number.
pub(super) fn taken_error(seq: u64) -> Error {
    Error::Backend(BackendError::Permanent(format!(
        "index log object {} holds a write this process has not read (another \
         writer's, or an earlier write of this process that reported failure but \
         landed); this change was not recorded, and the index is reloaded before the \
         next one: retry it",
        object_name(LOG_PREFIX, seq)
    )))
}

/// The item bytes in `records` (of small puts).
pub(super) fn inline_len<'a>(records: impl IntoIterator<Item = &'a Record>) -> u64 {
    records
        .into_iter()
        .map(|r| match r {
            Record::PutInline { data, .. } => data.len() as u64,
            _ => 0,
        })
        .sum()
}

/// What each caller of a batch is answered.
pub(super) type Answers = Vec<(Reply<Vec<Piece>>, Result<Vec<Piece>>)>;

/// One caller's records, answered with the pieces they released.
pub(super) struct Append {
    records: Vec<Record>,
    done: Reply<Vec<Piece>>,
}

impl Journal {
    /// Creates log object `seq` with `sealed`, only if absent. `Ok(false)`:
    /// something else is there (see `landed` for whose it is).
    pub(super) async fn create_log_object(&self, seq: u64, sealed: &Bytes) -> Result<bool> {
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
    pub(super) async fn landed(&self, seq: u64, sealed: &[u8]) -> Landed {
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

    /// Whether the index may be behind the backend's log because of this
    /// process's own writes: a log write failed that may have landed, or
    /// one found another write in its place. Then the next writer entry
    /// must refresh, and a failed put must keep its space (it may be live).
    pub fn in_doubt(&self) -> bool {
        let log = self.log.lock().expect("journal lock");
        log.doubt.is_some() || log.stale || log.rebuild_due
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
    pub(super) async fn commit_appends(&self, mut batch: Vec<Append>) {
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
    pub(super) fn apply_batch(
        &self,
        batch: Vec<Append>,
        seq: u64,
        sealed: &[u8],
    ) -> (LogPosition, Answers) {
        let mut log = self.log.lock().expect("journal lock");
        // Only this write applies its object (see `refresh`).
        debug_assert_eq!(log.state.next_seq, seq, "a log object applied twice");
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
    pub(super) async fn write_batch(&self, batch: &[Append]) -> Result<(u64, Bytes)> {
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
    pub(super) async fn settle_doubt(&self) -> Result<u64> {
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
}
