//! Encryption of everything a backend sees: keys derived from the store secret,
//! AES-256-GCM under a fresh subkey per object, and associated data that binds
//! each sealed object to its store, name and version (so a swapped or
//! rolled-back object fails to open).
//!
//! Each object carries a random 192-bit nonce: its first 96 bits select the
//! object's subkey (a keyed BLAKE3 hash under the store key), the other 96
//! bits are the GCM nonce. A store may seal billions of objects over its
//! life; with subkeys no GCM key comes near its limit of 2^32 random
//! nonces. AES-GCM, through `ring`, uses the CPU's AES instructions (VAES
//! where present), several times faster than XChaCha20-Poly1305 in
//! RustCrypto, so sealing is not what bounds a large put (measurements in
//! docs/benchmarks.md).

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};
use twox_hash::XxHash3_128;

use crate::error::{Error, Result};

const SUBKEY_SELECTOR_LEN: usize = 12;
const NONCE_LEN: usize = SUBKEY_SELECTOR_LEN + 12;
const TAG_LEN: usize = 16;
/// Bytes a sealed object adds to its plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// `N` random bytes from the operating system's generator. Nonces and ids
/// never come from a generator kept in the process (like `rand`'s thread
/// RNG): after a `fork()` parent and child would hold the same state and
/// draw the same nonces, ids and keys.
pub fn os_random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    if let Err(error) = getrandom::fill(&mut bytes) {
        // Nothing sound can be sealed or named without randomness.
        panic!("the operating system's random generator failed: {error}");
    }
    bytes
}

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

/// Whether `secret` is a key rather than a passphrase: 64 hex digits (what
/// the key file anthill creates holds) or 32 bytes that are not text (random
/// bytes; a 32-character passphrase is text). A key has the full 256 bits of
/// entropy and is used as it is; anything else is stretched with
/// [`stretch_passphrase`] first.
pub fn is_key(secret: &[u8]) -> bool {
    let hex_key = secret.len() == 64 && secret.iter().all(u8::is_ascii_hexdigit);
    let raw_key = secret.len() == 32
        && std::str::from_utf8(secret).map_or(true, |text| text.chars().any(char::is_control));
    hex_key || raw_key
}

/// Argon2id parameters: memory in KiB, passes, lanes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Argon2Params {
    pub memory_kib: u32,
    pub iterations: u32,
    pub lanes: u32,
}

/// Passphrases stretched in this process, so reopening a store does not pay
/// the stretching again: (digest of secret, salt and parameters) -> key.
/// Bounded; the oldest goes first.
type StretchedKeys = std::sync::Mutex<std::collections::VecDeque<([u8; 32], [u8; 32])>>;
const STRETCHED_KEPT: usize = 32;

/// A passphrase stretched with Argon2id (salt: the store id) into a 32-byte
/// key, so that each guess of an offline attacker costs the same memory
/// and time. `Err` only for parameters Argon2 refuses (a crafted metadata
/// object).
pub fn stretch_passphrase(
    secret: &[u8],
    store_id: &[u8; 16],
    params: Argon2Params,
) -> Result<[u8; 32]> {
    static STRETCHED: std::sync::OnceLock<StretchedKeys> = std::sync::OnceLock::new();
    let mut lookup = blake3::Hasher::new_derive_key("anthill 2026-11 stretched passphrase cache");
    lookup.update(store_id);
    for value in [params.memory_kib, params.iterations, params.lanes] {
        lookup.update(&value.to_le_bytes());
    }
    lookup.update(secret);
    let lookup: [u8; 32] = lookup.finalize().into();
    let stretched = STRETCHED.get_or_init(Default::default);
    let cached = |stretched: &StretchedKeys| {
        stretched
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .find(|(id, _)| *id == lookup)
            .map(|(_, key)| *key)
    };
    if let Some(key) = cached(stretched) {
        return Ok(key);
    }
    let argon_params =
        argon2::Params::new(params.memory_kib, params.iterations, params.lanes, Some(32))
            .map_err(|error| Error::integrity(format!("unusable Argon2id parameters: {error}")))?;
    let argon = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon_params,
    );
    let mut key = [0u8; 32];
    argon
        .hash_password_into(secret, store_id, &mut key)
        .map_err(|error| Error::integrity(format!("cannot stretch the secret: {error}")))?;
    // Protects only the cache; held for a lookup or an insert, never for
    // the stretching itself.
    let mut kept = stretched
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if kept.len() == STRETCHED_KEPT {
        kept.pop_front();
    }
    kept.push_back((lookup, key));
    Ok(key)
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
    /// `secret` is a key (see [`is_key`]) or a passphrase already
    /// stretched by [`stretch_passphrase`] (the store's metadata says which);
    /// stores of format 3 used any secret as it is.
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

/// An object's authentication tag (GCM's), 16 bytes.
pub type AuthTag = [u8; TAG_LEN];

/// Appends `nonce || ciphertext(plaintext) || tag` to `out`, which may
/// already hold a cleartext header (that the caller also puts in `aad`).
/// Returns the tag.
pub fn seal_into(
    cipher: &Cipher,
    aad: &[u8],
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<AuthTag> {
    let nonce: [u8; NONCE_LEN] = os_random();
    out.reserve(SEAL_OVERHEAD + plaintext.len());
    out.extend_from_slice(&nonce);
    let body = out.len();
    out.extend_from_slice(plaintext);
    let (key, gcm_nonce) = cipher.object_key(&nonce);
    let tag = key
        .seal_in_place_separate_tag(gcm_nonce, Aad::from(aad), &mut out[body..])
        .map_err(|_| {
            // Only above AES-GCM's limit of 64 GiB per key and nonce, far
            // above the largest pad or index object anthill writes.
            Error::internal(format!("AES-GCM refused to seal {} bytes", plaintext.len()))
        })?;
    out.extend_from_slice(tag.as_ref());
    Ok(auth_tag(out).expect("just appended"))
}

/// The tag of a sealed object: its last 16 bytes. Authentic once the
/// object has opened.
pub fn auth_tag(sealed: &[u8]) -> Option<AuthTag> {
    sealed.last_chunk().copied()
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

/// Opens the sealed object `buffer[sealed]` (as [`seal_into`] wrote it),
/// decrypting in place: its plaintext moves to `buffer[to..]` (`to` at or
/// before the object's start), so frames laid end to end open into one
/// contiguous plaintext without a copy. Returns the plaintext's length.
pub fn open_within(
    cipher: &Cipher,
    aad: &[u8],
    buffer: &mut [u8],
    to: usize,
    sealed: std::ops::Range<usize>,
    what: &str,
) -> Result<usize> {
    if sealed.len() < SEAL_OVERHEAD || to > sealed.start || sealed.end > buffer.len() {
        return Err(Error::integrity(format!("{what} is truncated")));
    }
    let nonce: [u8; NONCE_LEN] = buffer[sealed.start..sealed.start + NONCE_LEN]
        .try_into()
        .expect("nonce length");
    let tag_at = sealed.end - TAG_LEN;
    let tag = Tag::try_from(&buffer[tag_at..sealed.end]).expect("tag length");
    let (key, gcm_nonce) = cipher.object_key(&nonce);
    let body = sealed.start + NONCE_LEN;
    key.open_in_place_separate_tag(
        gcm_nonce,
        Aad::from(aad),
        tag,
        &mut buffer[to..tag_at],
        body - to..,
    )
    .map_err(|_| {
        Error::integrity(format!(
            "{what} failed authentication: wrong secret, or the object was \
             modified, swapped or rolled back"
        ))
    })?;
    Ok(tag_at - body)
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

/// Bytes of a digest.
pub const DIGEST_LEN: usize = 16;

/// A 128-bit digest (XXH3-128, or an authentication tag; see [`item_digest`]).
pub type Digest = [u8; DIGEST_LEN];

/// The digest of one piece of an item that shares its pad; see [`item_digest`].
pub fn piece_digest(bytes: &[u8]) -> Digest {
    XxHash3_128::oneshot(bytes).to_le_bytes()
}

/// An item's digest, kept in the (encrypted) index and checked on every
/// fetch: the digest of its pieces' digests, in data order.
///
/// Tampering is already caught by the AEAD and the pad versions the index
/// holds; what is left for the digest is anthill's own mistakes (bytes put
/// in the wrong place). So a piece that fills its pad (most of a large
/// item) is identified by the pad object's authentication tag, which the
/// AEAD ties to those very bytes, the pad and its version: hashing them
/// again would repeat that check at a sizeable share of a put's CPU. A piece
/// that shares its pad is hashed (XXH3-128) where it is written or read,
/// while its bytes are in the cache.
pub fn item_digest(pieces: &[Digest]) -> Digest {
    piece_digest(pieces.as_flattened())
}

/// Bytes sampled from each MiB by [`fingerprint`].
const FINGERPRINT_SAMPLE: usize = 4096;

/// A cheap fingerprint of an item's data: its size and 4 KiB of every MiB
/// (all of it up to 4 MiB). A resumed put must bring the data of the
/// interrupted one; this catches a mistaken file at 1/256 of the cost of a
/// full hash. (A resume re-checks every pad against the data anyway, so
/// what it stores is always the data it was given.)
pub fn fingerprint(data: &[u8]) -> Digest {
    let mut hasher = XxHash3_128::new();
    hasher.write(&(data.len() as u64).to_le_bytes());
    if data.len() <= 4 << 20 {
        hasher.write(data);
    } else {
        for chunk in data.chunks(1 << 20) {
            hasher.write(&chunk[..chunk.len().min(FINGERPRINT_SAMPLE)]);
        }
        hasher.write(&data[data.len() - FINGERPRINT_SAMPLE..]);
    }
    hasher.finish_128().to_le_bytes()
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

    #[test]
    fn an_item_digest_depends_on_every_piece_and_their_order() {
        let (a, b) = (piece_digest(b"first"), piece_digest(b"second"));
        assert_ne!(item_digest(&[a, b]), item_digest(&[b, a]));
        assert_ne!(
            item_digest(&[a, b]),
            item_digest(&[a, piece_digest(b"secont")])
        );
        assert_eq!(item_digest(&[a, b]), item_digest(&[a, b]));
    }

    /// Digests are part of the store format: XXH3-128, little-endian.
    #[test]
    fn piece_digests_are_xxh3_128() {
        let digest = |bytes: &[u8]| u128::from_le_bytes(piece_digest(bytes));
        assert_eq!(digest(b""), 0x99aa06d3014798d86001c324468d497f);
        let long: Vec<u8> = (0..100_000u32).map(|i| (i * 31 + 7) as u8).collect();
        assert_eq!(digest(&long), 0x8ce7a24d31cd94b1ccf90df7e7e37036);
    }

    #[test]
    fn sealing_returns_the_tag_that_ends_the_object() {
        let keys = StoreKeys::derive(b"secret", &[7; 16]);
        let plaintext: Vec<u8> = (0..100_000).map(|i| (i % 253) as u8).collect();
        let mut out = b"header".to_vec();
        let tag = seal_into(keys.pads(), b"aad", &plaintext, &mut out).unwrap();
        assert_eq!(auth_tag(&out), Some(tag));
        assert_eq!(
            open_owned(keys.pads(), b"aad", out.clone(), 6, "x").unwrap(),
            plaintext
        );
        // The same bytes sealed again: another nonce, another tag.
        let mut again = b"header".to_vec();
        assert_ne!(
            seal_into(keys.pads(), b"aad", &plaintext, &mut again).unwrap(),
            tag
        );
    }

    #[test]
    fn a_fingerprint_sees_the_size_and_the_sampled_bytes() {
        let data: Vec<u8> = (0..(9 << 20) + 77).map(|i| (i % 251) as u8).collect();
        assert_eq!(fingerprint(&data), fingerprint(&data.clone()));
        assert_ne!(fingerprint(&data), fingerprint(&data[..data.len() - 1]));
        for at in [0, 5 << 20, data.len() - 1] {
            let mut changed = data.clone();
            changed[at] ^= 1;
            assert_ne!(fingerprint(&data), fingerprint(&changed), "byte {at}");
        }
        // Small data is hashed whole.
        let small = vec![3u8; 1 << 20];
        let mut changed = small.clone();
        changed[700_000] = 4;
        assert_ne!(fingerprint(&small), fingerprint(&changed));
    }
}
