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
    let mut options = StoreOptions::default();
    options.secret = b"STORESECRET".to_vec();
    options.backend.options = vec![
        ("secret_access_key".into(), "KEYSECRET".into()),
        ("aws_session_token".into(), "TOKEN".into()),
        ("endpoint".into(), "http://USER:PASS@host".into()),
        ("region".into(), "garage".into()),
    ];
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

/// A passphrase protects a store only if guessing it offline is slow: the
/// store's keys come from the passphrase stretched with Argon2id, not from
/// the passphrase itself, and the parameters are in the metadata.
#[test]
fn a_passphrase_is_stretched_with_argon2id() {
    use anthill::meta::{ARGON2_PARAMS, Kdf, Meta};
    let meta = Meta::new(b"correct horse battery staple", 4096).unwrap();
    assert_eq!(
        meta.kdf,
        Kdf::Argon2id {
            memory_kib: ARGON2_PARAMS.memory_kib,
            iterations: ARGON2_PARAMS.iterations,
            lanes: ARGON2_PARAMS.lanes,
        }
    );
    assert_eq!(ARGON2_PARAMS.memory_kib, 19 * 1024);
    let decoded = Meta::decode(&meta.encode().unwrap()).unwrap();
    assert_eq!(decoded, meta);
    let keys = decoded.unlock(b"correct horse battery staple").unwrap();
    // The unstretched passphrase gives other keys: what they seal, the
    // store's keys do not open.
    let unstretched = StoreKeys::derive(b"correct horse battery staple", &meta.store_id);
    let sealed = crypto::seal(unstretched.index(), b"aad", b"x").unwrap();
    assert!(crypto::open(keys.index(), b"aad", &sealed, "x").is_err());
    assert!(matches!(
        decoded.unlock(b"correct horse battery stapler"),
        Err(anthill::Error::Integrity(_))
    ));
}

/// A key (64 hex digits, as in the key file, or 32 random bytes) has all
/// the entropy it needs: it is not stretched. It has one form, the key
/// file's lowercase hex, so its hex and its bytes open the same store.
#[test]
fn a_key_secret_is_not_stretched() {
    use anthill::meta::{Kdf, Meta};
    let hex_key = b"0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789abcdef";
    let mut raw_key = [0u8; 32];
    raw_key[0] = 0xff; // not text
    raw_key[1..].copy_from_slice(&crypto::os_random::<31>());
    let raw_hex: String = raw_key.iter().map(|byte| format!("{byte:02x}")).collect();
    for (secret, other_form) in [
        (&hex_key[..], hex_key.to_ascii_lowercase()),
        (&raw_key[..], raw_hex.clone().into_bytes()),
        (raw_hex.as_bytes(), raw_key.to_vec()),
    ] {
        assert!(crypto::is_key(secret));
        let meta = Meta::decode(&Meta::new(secret, 4096).unwrap().encode().unwrap()).unwrap();
        assert_eq!(meta.kdf, Kdf::None);
        let keys = meta.unlock(secret).unwrap();
        assert!(meta.unlock(&other_form).is_ok());
        let lowercase_hex = if secret.len() == 32 {
            raw_hex.as_bytes().to_vec()
        } else {
            secret.to_ascii_lowercase()
        };
        let direct = StoreKeys::derive(&lowercase_hex, &meta.store_id);
        let sealed = crypto::seal(direct.index(), b"aad", b"x").unwrap();
        assert_eq!(
            crypto::open(keys.index(), b"aad", &sealed, "x").unwrap(),
            b"x"
        );
        assert!(meta.unlock(b"another secret").is_err());
    }
    // Text of 32 characters is a passphrase; so is a short secret.
    assert!(!crypto::is_key(b"a passphrase of 32 characters!!!"));
    assert!(!crypto::is_key(b"s"));
}

/// Metadata asking for absurd stretching (a crafted object) is refused
/// before any memory is allocated for it.
#[test]
fn metadata_asking_for_huge_argon2_memory_is_refused() {
    use anthill::meta::{Kdf, Meta};
    let meta = Meta::new(b"passphrase", 4096).unwrap();
    let kdf = Kdf::Argon2id {
        memory_kib: 64 << 20,
        iterations: 2,
        lanes: 1,
    };
    // Format 4's fields in order, the KDF replaced.
    let bytes = anthill::index::to_bytes(&(
        &meta.format,
        meta.store_id,
        meta.pad_size,
        kdf,
        vec![0u8; 40],
    ))
    .unwrap();
    assert!(matches!(
        Meta::decode(&bytes),
        Err(anthill::Error::Integrity(_))
    ));
}
