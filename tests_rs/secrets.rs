//! Secrets and randomness: nonces and ids after `fork()`, passphrase
//! stretching, and what a store's metadata records about its key.

use anthill::crypto::{self, StoreKeys};
use anthill::pad::PadId;

/// What a process draws right after a fork: a pad id and a sealed object's
/// nonce (its first 24 bytes).
fn draw(keys: &StoreKeys, out: &mut Vec<u8>) -> [u8; 40] {
    out.clear();
    let id = PadId::random();
    crypto::seal_into(keys.pads(), b"aad", b"same plaintext", out).expect("seal");
    let mut drawn = [0u8; 40];
    drawn[..16].copy_from_slice(&id.0);
    drawn[16..].copy_from_slice(&out[..24]);
    drawn
}

/// A forked child shares its parent's memory, so a generator kept in the
/// process would draw the same ids and nonces in both.
#[test]
fn a_forked_child_draws_other_nonces_and_ids_than_its_parent() {
    let keys = StoreKeys::derive(b"secret", &[3; 16]);
    // Allocated before the fork: the child must not allocate (another
    // thread of the test harness may hold the allocator's lock).
    let mut out = Vec::with_capacity(1024);
    // Draw once first, so any generator in the process is seeded.
    draw(&keys, &mut out);
    let mut pipe = [0 as libc::c_int; 2];
    // SAFETY: a plain pipe(2) into a two-int array.
    assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
    // SAFETY: the child only draws (no allocation, no lock), writes to the
    // pipe and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let drawn = draw(&keys, &mut out);
        // SAFETY: writes the 40 bytes of `drawn` to the pipe, then exits
        // without running the parent's destructors or atexit handlers.
        unsafe {
            libc::write(pipe[1], drawn.as_ptr().cast(), drawn.len());
            libc::_exit(0);
        }
    }
    let parent = draw(&keys, &mut out);
    let mut child = [0u8; 40];
    // SAFETY: reads into `child`; the child writes 40 bytes in one go
    // (under PIPE_BUF, so atomically).
    let read = unsafe { libc::read(pipe[0], child.as_mut_ptr().cast(), child.len()) };
    let mut status = 0;
    // SAFETY: waits for our own child and closes our pipe ends.
    unsafe {
        libc::waitpid(pid, &mut status, 0);
        libc::close(pipe[0]);
        libc::close(pipe[1]);
    }
    assert_eq!(read, 40, "the child reported nothing");
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    assert_ne!(
        parent[..16],
        child[..16],
        "parent and child drew the same pad id"
    );
    assert_ne!(
        parent[16..],
        child[16..],
        "parent and child drew the same nonce"
    );
}
