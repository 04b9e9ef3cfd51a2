//! Encryption of everything a backend sees: keys derived from the store secret,
//! XChaCha20-Poly1305 with random nonces, and associated data that binds each
//! sealed object to its store, name and version (so a swapped or rolled-back
//! object fails to open).

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Key, Tag, XChaCha20Poly1305, XNonce};

use crate::error::{Error, Result};

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Bytes a sealed object adds to its plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// The keys of one store.
pub struct StoreKeys {
    pads: XChaCha20Poly1305,
    index: XChaCha20Poly1305,
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
        let key = |context: &str| {
            let bytes = blake3::derive_key(context, &material);
            XChaCha20Poly1305::new(Key::from_slice(&bytes))
        };
        Self {
            pads: key("anthill 2026-11 pad encryption"),
            index: key("anthill 2026-11 index encryption"),
        }
    }

    pub fn pads(&self) -> &XChaCha20Poly1305 {
        &self.pads
    }

    pub fn index(&self) -> &XChaCha20Poly1305 {
        &self.index
    }
}

/// Appends `nonce || ciphertext(plaintext) || tag` to `out`, which may
/// already hold a cleartext header (that the caller also puts in `aad`).
pub fn seal_into(
    cipher: &XChaCha20Poly1305,
    aad: &[u8],
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<()> {
    let nonce: [u8; NONCE_LEN] = rand::random();
    out.reserve(SEAL_OVERHEAD + plaintext.len());
    out.extend_from_slice(&nonce);
    let body = out.len();
    out.extend_from_slice(plaintext);
    let tag = cipher
        .encrypt_in_place_detached(XNonce::from_slice(&nonce), aad, &mut out[body..])
        .map_err(|_| Error::invalid("object too large to encrypt"))?;
    out.extend_from_slice(&tag);
    Ok(())
}

/// Seals `plaintext` into a new buffer.
pub fn seal(cipher: &XChaCha20Poly1305, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    seal_into(cipher, aad, plaintext, &mut out)?;
    Ok(out)
}

/// Opens what [`seal_into`] wrote, returning the plaintext.
/// `what` names the object in the error message.
pub fn open(cipher: &XChaCha20Poly1305, aad: &[u8], sealed: &[u8], what: &str) -> Result<Vec<u8>> {
    if sealed.len() < SEAL_OVERHEAD {
        return Err(Error::integrity(format!("{what} is truncated")));
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (body, tag) = rest.split_at(rest.len() - TAG_LEN);
    let mut plaintext = body.to_vec();
    cipher
        .decrypt_in_place_detached(
            XNonce::from_slice(nonce),
            aad,
            &mut plaintext,
            Tag::from_slice(tag),
        )
        .map_err(|_| {
            Error::integrity(format!(
                "{what} failed authentication: wrong secret, or the object was \
                 modified, swapped or rolled back"
            ))
        })?;
    Ok(plaintext)
}

/// Digest of an item's plaintext, kept in the (encrypted) index and checked on
/// every fetch: the last line of defence against returning wrong bytes.
pub fn content_hash(data: &[u8]) -> [u8; 32] {
    *blake3::hash(data).as_bytes()
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
