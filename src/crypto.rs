//! Encryption of everything a backend sees: keys derived from the store secret,
//! AES-256-GCM under a fresh subkey per object, and associated data that binds
//! each sealed object to its store, name and version (so a swapped or
//! rolled-back object fails to open).
//!
//! Each object carries a random 192-bit nonce: its first 96 bits select the
//! object's subkey (a keyed BLAKE3 hash under the store key), the other 96
//! bits are the GCM nonce. A store may seal billions of objects over its
//! life; with subkeys no GCM key comes near its limit of 2^32 random
//! nonces. AES-GCM, through `ring`, runs at 9 GB/s per core on this machine
//! with VAES (6x XChaCha20-Poly1305 in RustCrypto): sealing stops being the
//! bottleneck of a large put (docs/benchmarks.md, P2).

use bytes::Bytes;
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};

use crate::error::{Error, Result};

const SUBKEY_SELECTOR_LEN: usize = 12;
const NONCE_LEN: usize = SUBKEY_SELECTOR_LEN + 12;
const TAG_LEN: usize = 16;
/// Bytes a sealed object adds to its plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// A store key: it never encrypts anything itself, it derives the subkey of
/// each object.
pub struct Cipher {
    key: [u8; 32],
}

impl Cipher {
    /// The AES-256-GCM key and GCM nonce of the object with this 192-bit nonce.
    fn object_key(&self, nonce: &[u8; NONCE_LEN]) -> (LessSafeKey, Nonce) {
        let (selector, gcm_nonce) = nonce.split_at(SUBKEY_SELECTOR_LEN);
        let subkey = blake3::keyed_hash(&self.key, selector);
        let key = UnboundKey::new(&AES_256_GCM, subkey.as_bytes()).expect("32-byte AES key");
        let nonce = Nonce::try_assume_unique_for_key(gcm_nonce).expect("96-bit GCM nonce");
        (LessSafeKey::new(key), nonce)
    }
}

/// The keys of one store.
pub struct StoreKeys {
    pads: Cipher,
    index: Cipher,
}

impl StoreKeys {
    /// Derives the keys from the user's secret and the store's random id, so
    /// one secret used for two stores gives unrelated keys.
    ///
    /// The secret is expected to be high-entropy (the default key file holds
    /// 32 random bytes); a passphrase would want a slow KDF in front.
    pub fn derive(secret: &[u8], store_id: &[u8; 16]) -> Self {
        let mut material = Vec::with_capacity(secret.len() + store_id.len());
        material.extend_from_slice(store_id);
        material.extend_from_slice(secret);
        let key = |context: &str| Cipher {
            key: blake3::derive_key(context, &material),
        };
        Self {
            pads: key("anthill 2026-11 pad encryption, AES-256-GCM subkeys"),
            index: key("anthill 2026-11 index encryption, AES-256-GCM subkeys"),
        }
    }

    pub fn pads(&self) -> &Cipher {
        &self.pads
    }

    pub fn index(&self) -> &Cipher {
        &self.index
    }
}

/// Appends `nonce || ciphertext(plaintext) || tag` to `out`, which may
/// already hold a cleartext header (that the caller also puts in `aad`).
pub fn seal_into(cipher: &Cipher, aad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let nonce: [u8; NONCE_LEN] = rand::random();
    out.reserve(SEAL_OVERHEAD + plaintext.len());
    out.extend_from_slice(&nonce);
    let body = out.len();
    out.extend_from_slice(plaintext);
    let (key, gcm_nonce) = cipher.object_key(&nonce);
    let tag = key
        .seal_in_place_separate_tag(gcm_nonce, Aad::from(aad), &mut out[body..])
        .map_err(|_| Error::invalid("object too large to encrypt"))?;
    out.extend_from_slice(tag.as_ref());
    Ok(())
}

/// Seals `plaintext` into a new buffer.
pub fn seal(cipher: &Cipher, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    seal_into(cipher, aad, plaintext, &mut out)?;
    Ok(out)
}

/// Opens what [`seal_into`] wrote, returning the plaintext.
/// `what` names the object in the error message.
pub fn open(cipher: &Cipher, aad: &[u8], sealed: &[u8], what: &str) -> Result<Vec<u8>> {
    open_owned(cipher, aad, sealed.to_vec(), 0, what)
}

/// Opens the sealed object that starts at `sealed[from..]`, decrypting in
/// place: the buffer becomes the plaintext (a large pad is never copied).
pub fn open_owned(
    cipher: &Cipher,
    aad: &[u8],
    mut sealed: Vec<u8>,
    from: usize,
    what: &str,
) -> Result<Vec<u8>> {
    if sealed.len() < from + SEAL_OVERHEAD {
        return Err(Error::integrity(format!("{what} is truncated")));
    }
    let nonce: [u8; NONCE_LEN] = sealed[from..from + NONCE_LEN]
        .try_into()
        .expect("nonce length");
    let tag_at = sealed.len() - TAG_LEN;
    let tag = Tag::try_from(&sealed[tag_at..]).expect("tag length");
    let (key, gcm_nonce) = cipher.object_key(&nonce);
    let body = from + NONCE_LEN;
    key.open_in_place_separate_tag(
        gcm_nonce,
        Aad::from(aad),
        tag,
        &mut sealed[..tag_at],
        body..,
    )
    .map_err(|_| {
        Error::integrity(format!(
            "{what} failed authentication: wrong secret, or the object was \
             modified, swapped or rolled back"
        ))
    })?;
    // The plaintext now starts at the front.
    sealed.truncate(tag_at - body);
    Ok(sealed)
}

/// Sealing, opening or hashing more bytes than this runs on tokio's blocking
/// pool: a 4 MiB pad takes about a millisecond of CPU, which would otherwise
/// stall the runtime's few workers (and every request and timer they drive)
/// and keep a large get on one core.
const OFF_RUNTIME_BYTES: usize = 256 << 10;

/// Runs `work` (sealing, opening or hashing `len` bytes) on the blocking pool
/// if it is large, inline otherwise.
pub async fn off_runtime<T: Send + 'static>(
    len: usize,
    work: impl FnOnce() -> T + Send + 'static,
) -> T {
    if len < OFF_RUNTIME_BYTES {
        return work();
    }
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => value,
        Err(error) => std::panic::resume_unwind(error.into_panic()),
    }
}

/// Starts hashing an item now, on the blocking pool if it is large, so the
/// digest is computed beside the put's allocation and upload; awaiting the
/// result (from any number of places) waits for it.
pub fn start_content_hash(data: Bytes) -> Shared<BoxFuture<'static, [u8; DIGEST_LEN]>> {
    if data.len() < OFF_RUNTIME_BYTES {
        return futures::future::ready(content_hash(&data)).boxed().shared();
    }
    let hashing = tokio::task::spawn_blocking(move || content_hash(&data));
    async move {
        match hashing.await {
            Ok(hash) => hash,
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        }
    }
    .boxed()
    .shared()
}

/// Bytes of an item digest.
pub const DIGEST_LEN: usize = 16;

/// Digest of an item's plaintext, kept in the (encrypted) index and checked
/// on every fetch: the last line of defence against returning wrong bytes.
///
/// Tampering is already caught by the AEAD and the pad versions the index
/// holds; what is left for the digest is anthill's own mistakes (bytes put
/// in the wrong place) and telling whether a resumed put has the same data.
/// For that a 128-bit non-cryptographic hash is as good as a cryptographic
/// one, and XXH3 runs at 22 GB/s here where BLAKE3 ran at 6.8 GB/s, a
/// quarter of the CPU time of a large put (docs/benchmarks.md, P2).
pub fn content_hash(data: &[u8]) -> [u8; DIGEST_LEN] {
    xxhash_rust::xxh3::xxh3_128(data).to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_object_opens_only_with_same_key_and_aad() {
        let keys = StoreKeys::derive(b"secret", &[7; 16]);
        let sealed = seal(keys.pads(), b"name-1", b"hello").unwrap();
        assert_eq!(
            open(keys.pads(), b"name-1", &sealed, "x").unwrap(),
            b"hello"
        );
        assert!(open(keys.pads(), b"name-2", &sealed, "x").is_err());
        assert!(open(keys.index(), b"name-1", &sealed, "x").is_err());
        let other = StoreKeys::derive(b"secret", &[8; 16]);
        assert!(open(other.pads(), b"name-1", &sealed, "x").is_err());
        let mut flipped = sealed.clone();
        flipped[30] ^= 1;
        assert!(open(keys.pads(), b"name-1", &flipped, "x").is_err());
    }
}
