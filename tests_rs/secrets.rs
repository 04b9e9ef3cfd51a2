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

#[test]
fn a_shown_url_hides_every_credential() {
    use anthill::pad_store::redact_url;
    let url = "s3://KEYID:SECRETVALUE@bucket/prefix?endpoint=http://USER:PASS@host:9000\
               &region=garage&access_key_id=QKEY&secret_access_key=QSECRET\
               &AWS_SESSION_TOKEN=QTOKEN&token=QTOKEN2&sse_customer_key_base64=QSSE";
    let shown = redact_url(url);
    for secret in [
        "KEYID",
        "SECRETVALUE",
        "USER",
        "PASS",
        "QKEY",
        "QSECRET",
        "QTOKEN",
        "QSSE",
    ] {
        assert!(!shown.contains(secret), "{secret} shows in {shown}");
    }
    assert_eq!(
        shown,
        "s3://***@bucket/prefix?endpoint=http://***@host:9000&region=garage\
         &access_key_id=***&secret_access_key=***&AWS_SESSION_TOKEN=***&token=***\
         &sse_customer_key_base64=***"
    );
    // Under sim+, and percent-encoded values.
    assert_eq!(
        redact_url("sim+s3://b/p?latency_ms=5&secret_access_key=a%2Fb%3D"),
        "sim+s3://b/p?latency_ms=5&secret_access_key=***"
    );
    // Nothing to hide: unchanged, and a plain path is never parsed.
    for plain in [
        "memory://demo",
        "file:///data/store?fsync=true",
        "s3://b/p?endpoint=http://host:9000&region=r",
        "/home/me/user:pass@store?secret_access_key=x",
    ] {
        assert_eq!(redact_url(plain), plain);
    }
}

#[test]
fn store_options_debug_shows_no_secret_or_credential() {
    use anthill::StoreOptions;
    use anthill::pad_store::BackendOptions;
    let options = StoreOptions {
        secret: b"STORESECRET".to_vec(),
        backend: BackendOptions {
            options: vec![
                ("secret_access_key".into(), "KEYSECRET".into()),
                ("aws_session_token".into(), "TOKEN".into()),
                ("endpoint".into(), "http://USER:PASS@host".into()),
                ("region".into(), "garage".into()),
            ],
        },
        ..StoreOptions::default()
    };
    let shown = format!("{options:?} {options:#?}");
    for secret in ["STORESECRET", "KEYSECRET", "TOKEN", "USER", "PASS"] {
        assert!(!shown.contains(secret), "{secret} shows in {shown}");
    }
    assert!(shown.contains("garage") && shown.contains("retry_attempts"));
}

#[tokio::test]
async fn an_s3_endpoint_with_userinfo_is_refused_without_showing_it() {
    use anthill::pad_store::{BackendOptions, open};
    let url = "s3://b/p?endpoint=http://USER:PASSWORD@127.0.0.1:9&region=r";
    let error = match open(url, &BackendOptions::default()).await {
        Ok(_) => panic!("an endpoint with a password opened"),
        Err(error) => error,
    };
    let message = error.to_string();
    assert!(
        matches!(error, anthill::Error::InvalidInput(_)),
        "{message}"
    );
    assert!(message.contains("access_key_id"), "{message}");
    assert!(
        !message.contains("USER") && !message.contains("PASSWORD"),
        "{message}"
    );
}
