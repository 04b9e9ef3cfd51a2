//! Lock files this process holds, which a child made by `fork` must not go
//! on holding. An OS file lock (`flock`) belongs to the open file, which a
//! forked child shares through its copy of the descriptor: the lock then
//! stays held until both processes close it, so a child (a `multiprocessing`
//! worker) forked while its parent held a store's writer lock kept that
//! store locked, for the parent and for itself, as long as it lived.
//! [`release_in_forked_child`], run in the child right after the fork
//! (Python's `os.register_at_fork`), points the child's copy of each
//! descriptor at `/dev/null`: the lock is the parent's alone again, and the
//! inherited handle that later closes it closes `/dev/null`.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

/// Most lock files held at once that a fork can let go of; beyond it a
/// lock is still taken, only not released in a forked child.
const SLOTS: usize = 64;
const EMPTY: RawFd = -1;

/// The descriptors of the lock files held now. Atomics, not a mutex: the
/// child's hook must not wait for a lock some parent thread held mid-fork.
static HELD: [AtomicI32; SLOTS] = [const { AtomicI32::new(EMPTY) }; SLOTS];

/// A lock file noted as held until dropped: keep it in the same struct as
/// the file, declared before it (so it is dropped first, while the
/// descriptor still names the file).
pub struct Held {
    slot: Option<usize>,
}

/// Notes that `file` holds a lock this process must not pass to a fork.
pub fn hold(file: &impl AsRawFd) -> Held {
    let fd = file.as_raw_fd();
    let slot = HELD.iter().position(|slot| {
        slot.compare_exchange(EMPTY, fd, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    });
    if slot.is_none() {
        log::debug!("more than {SLOTS} lock files held: a fork now keeps this one");
    }
    Held { slot }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            HELD[slot].store(EMPTY, Ordering::Release);
        }
    }
}

/// In a child just forked: lets go of the child's share of every lock file
/// its parent held (see the module header).
pub fn release_in_forked_child() {
    let Ok(null) = std::fs::File::open("/dev/null") else {
        return;
    };
    for slot in &HELD {
        let fd = slot.swap(EMPTY, Ordering::AcqRel);
        if fd != EMPTY {
            // SAFETY: `dup2` onto a descriptor number this process owns (its
            // copy of the parent's); it only replaces what that number names.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
}
