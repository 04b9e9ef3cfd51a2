//! Checkpoints: the whole index written as one object when the log since
//! the last one outgrows it, and the log objects it absorbs deleted after.

use super::*;

#[derive(serde::Serialize)]
pub(super) struct CheckpointOut<'a> {
    chain: [u8; 32],
    index: &'a Index,
}

#[derive(serde::Deserialize)]
pub(super) struct CheckpointIn {
    chain: [u8; 32],
    index: Index,
}

impl Journal {
    /// Reads checkpoint `c/<seq>`: the index, its plaintext size and the
    /// chain value after log object `seq`. A checkpoint of store format 3
    /// (the index alone) stands for a chain value of its own bytes.
    pub(super) async fn read_checkpoint(&self, seq: u64) -> Result<(Index, u64, [u8; 32])> {
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

    /// Writes checkpoint `c/<seq>` to stable storage (whatever the store's
    /// fsync setting: the log objects it absorbs are deleted next).
    pub(super) async fn write_checkpoint(&self, seq: u64, plaintext: &[u8]) -> Result<()> {
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

    /// Writes a checkpoint once the log since the last one is larger than it
    /// (and than a floor), then deletes the absorbed log objects. Runs inside
    /// the batch's commit, before its callers are answered, so no append
    /// interleaves and the writer lock is held. A failure only postpones it.
    pub(super) async fn checkpoint_if_due(&self) {
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
    pub(super) async fn delete_absorbed(&self, seq: u64, absorbed: Vec<u64>) {
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
