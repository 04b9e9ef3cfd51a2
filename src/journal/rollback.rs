//! The log's hash chain and the rollback check against this machine's
//! memory of the store (`seen_logs.rs`): see the module header.

use super::*;

/// The newest position not yet remembered, and whether a task is at it.
#[derive(Default)]
pub(super) struct Remembering {
    pub(super) waiting: Option<LogPosition>,
    pub(super) running: bool,
}

/// How opening checks the store against this machine's memory of it.
#[derive(Debug, Clone, Default)]
pub struct RollbackCheck {
    /// The memory; `None` checks nothing (memory stores, tests).
    pub seen: Option<SeenLogs>,
    /// Open a store that is behind the memory, and move the memory to it.
    pub allow_rollback: bool,
}

/// The chain value after log object `seq` whose sealed bytes are `sealed`,
/// given the value before it.
pub(super) fn chain_next(previous: &[u8; 32], seq: u64, sealed: &[u8]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key("anthill index log chain 1");
    hasher.update(previous);
    hasher.update(&seq.to_le_bytes());
    hasher.update(sealed);
    *hasher.finalize().as_bytes()
}

/// The chain value a format-3 checkpoint (which has none) stands for: its
/// own bytes, the same for every reader.
pub(super) fn chain_of_old_checkpoint(seq: u64, sealed: &[u8]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key("anthill format 3 checkpoint chain");
    hasher.update(&seq.to_le_bytes());
    hasher.update(sealed);
    *hasher.finalize().as_bytes()
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Journal {
    /// Where the store's log is now.
    pub(super) fn position(&self) -> LogPosition {
        let log = self.log.lock().expect("journal lock");
        LogPosition {
            position: log.state.next_seq,
            chain: log.state.chain,
        }
    }

    /// Compares the store with the newest position this machine has seen
    /// (see the module header), then remembers where it is.
    pub(super) async fn check_rollback(
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
    pub(super) fn remember_later(&self, at: LogPosition) {
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
    pub(super) async fn remember(&self, seen: SeenLogs, at: LogPosition, reset: bool) {
        let _ = tokio::task::spawn_blocking(move || {
            if reset {
                seen.reset(at);
            } else {
                seen.advance(at);
            }
        })
        .await;
    }
}
