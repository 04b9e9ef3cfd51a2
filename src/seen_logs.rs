//! This machine's memory of how far it has seen each store's index log, so
//! that a store rolled back to an older state is noticed when opened.
//!
//! The log is a hash chain (see `journal/`): a position (how many log
//! objects the store's history holds) and the chain value there name one
//! history. For each store id this module keeps the newest position seen
//! and its chain value, in a small file in the user's state folder
//! (`<state>/seen-logs/<store id>`).
//!
//! 1. Opening a store compares it with the memory (`journal/rollback.rs` does):
//!    behind it, or not on the remembered history, is a rollback.
//! 2. The memory only moves forward: every update takes an OS lock on the
//!    store's lock file, reads the file, and replaces it (a new file renamed
//!    over it) only if the new position is further on. Two processes on one
//!    machine, each at its own position, never move it back. An update
//!    waits at most a second for that lock, then is skipped: a process
//!    stopped while holding it (Ctrl-Z) must not hang every open.
//! 3. `allow_rollback=True` moves it to wherever the store is (`reset`).
//!
//! The file is replaced the way a folder store replaces its objects
//! (`replace_file`: a swap, not a rename over it, which on ext4 would write
//! the new file out at once and make every small put several times slower).
//! No fsync: losing the newest update in a power loss only makes the check
//! weaker for the writes just before it, and an fsync would cost more than
//! the small put that triggers the update. A file that cannot be read is
//! reported and treated as no memory; a failed update is reported and the
//! store stays usable (the memory is a check, not a part of the store).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::pad_store::replace_file;

/// First line of a memory file; a later format gets a new one.
const FORMAT: &str = "anthill-seen-log-1";
const FOLDER: &str = "seen-logs";

/// A place in a store's log history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogPosition {
    /// Log objects in the history up to here (the next sequence number).
    pub position: u64,
    /// The log's chain value after them.
    pub chain: [u8; 32],
}

/// The memory of one store on this machine.
#[derive(Debug, Clone)]
pub struct SeenLogs {
    file: PathBuf,
}

impl SeenLogs {
    /// The memory of the store `store_id` kept under the state folder `state_dir`.
    pub fn new(state_dir: &Path, store_id: &[u8; 16]) -> Self {
        let name: String = store_id.iter().map(|b| format!("{b:02x}")).collect();
        Self {
            file: state_dir.join(FOLDER).join(name),
        }
    }

    /// The memory of a store on the backend described as `backend` (its
    /// URL), or `None` without a state folder, or for an in-process memory
    /// store (it cannot outlive the process, let alone be rolled back).
    pub fn for_store(state_dir: Option<&Path>, backend: &str, store_id: &[u8; 16]) -> Option<Self> {
        let mut inner = backend;
        while let Some(rest) = inner.strip_prefix("sim+") {
            inner = rest;
        }
        if inner.starts_with("memory:") {
            return None;
        }
        Some(Self::new(state_dir?, store_id))
    }

    /// The file that holds the memory.
    pub fn path(&self) -> &Path {
        &self.file
    }

    /// The newest position this machine has seen, if any. Blocks.
    pub fn load(&self) -> Option<LogPosition> {
        match std::fs::read_to_string(&self.file) {
            Ok(text) => {
                let parsed = parse(&text);
                if parsed.is_none() {
                    log::warn!(
                        "ignoring {}: not a memory of a log position this anthill can read",
                        self.file.display()
                    );
                }
                parsed
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => None,
            Err(error) => {
                log::warn!("cannot read {}: {error}", self.file.display());
                None
            }
        }
    }

    /// Remembers `seen` if it is further on than what is remembered. Blocks.
    pub fn advance(&self, seen: LogPosition) {
        self.update(seen, false);
    }

    /// Remembers `seen` whatever is remembered (a rollback the user accepted).
    pub fn reset(&self, seen: LogPosition) {
        self.update(seen, true);
    }

    fn update(&self, seen: LogPosition, force: bool) {
        if let Err(error) = self.try_update(seen, force) {
            log::warn!(
                "cannot remember the store's log position in {}: {error}",
                self.file.display()
            );
        }
    }

    fn try_update(&self, seen: LogPosition, force: bool) -> io::Result<()> {
        let folder = self.file.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(folder)?;
        let mut lock_path = self.file.clone().into_os_string();
        lock_path.push(".lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)?;
        // Released when `lock` is closed, at the end of this call.
        lock_within(&lock, LOCK_WAIT)?;
        #[cfg(unix)]
        let _held = crate::held_files::hold(&lock);
        if !force
            && self
                .load()
                .is_some_and(|known| known.position >= seen.position)
        {
            return Ok(());
        }
        let mut staging = self.file.clone().into_os_string();
        staging.push(format!(".{}.tmp", std::process::id()));
        let staging = PathBuf::from(staging);
        let written = File::create(&staging)
            .and_then(|mut file| file.write_all(render(&seen).as_bytes()))
            .and_then(|()| replace_file(&staging, &self.file));
        if written.is_err() {
            let _ = std::fs::remove_file(&staging);
        }
        written
    }
}

/// The longest an update waits for the memory's lock. Its holders keep it
/// for a file write; one that holds it longer is stopped (Ctrl-Z, a
/// debugger, SIGSTOP), and waiting for it would hang every open of the
/// store on this machine. The update is skipped instead: the memory is a
/// check, and one position not remembered only weakens it.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Takes `lock` if it comes free within `wait`.
fn lock_within(lock: &File, wait: std::time::Duration) -> io::Result<()> {
    let started = std::time::Instant::now();
    loop {
        match lock.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::Error(error)) => return Err(error),
            Err(std::fs::TryLockError::WouldBlock) if started.elapsed() < wait => {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "another process has held its lock for over {wait:?} (a stopped process?)"
                    ),
                ));
            }
        }
    }
}

fn render(seen: &LogPosition) -> String {
    let chain: String = seen.chain.iter().map(|b| format!("{b:02x}")).collect();
    format!("{FORMAT}\n{}\n{chain}\n", seen.position)
}

fn parse(text: &str) -> Option<LogPosition> {
    let mut lines = text.lines();
    if lines.next()? != FORMAT {
        return None;
    }
    let position = lines.next()?.parse().ok()?;
    let hex = lines.next()?;
    if hex.len() != 64 {
        return None;
    }
    let mut chain = [0u8; 32];
    for (i, byte) in chain.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(LogPosition { position, chain })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(position: u64, fill: u8) -> LogPosition {
        LogPosition {
            position,
            chain: [fill; 32],
        }
    }

    #[test]
    fn the_memory_only_moves_forward_unless_reset() {
        let dir = tempfile::tempdir().unwrap();
        let seen = SeenLogs::new(dir.path(), &[7; 16]);
        assert_eq!(seen.load(), None);
        seen.advance(at(5, 1));
        assert_eq!(seen.load(), Some(at(5, 1)));
        seen.advance(at(3, 2));
        seen.advance(at(5, 3));
        assert_eq!(seen.load(), Some(at(5, 1)), "never backwards");
        seen.advance(at(9, 4));
        assert_eq!(seen.load(), Some(at(9, 4)));
        seen.reset(at(2, 5));
        assert_eq!(seen.load(), Some(at(2, 5)));
        let other = SeenLogs::new(dir.path(), &[8; 16]);
        assert_eq!(other.load(), None, "one memory per store");
    }

    #[test]
    fn an_unreadable_memory_counts_as_none() {
        let dir = tempfile::tempdir().unwrap();
        let seen = SeenLogs::new(dir.path(), &[7; 16]);
        std::fs::create_dir_all(seen.path().parent().unwrap()).unwrap();
        std::fs::write(seen.path(), "something else\n").unwrap();
        assert_eq!(seen.load(), None);
        seen.advance(at(1, 1));
        assert_eq!(seen.load(), Some(at(1, 1)));
    }
}
