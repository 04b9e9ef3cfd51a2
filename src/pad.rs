//! One pad on the backend: its opaque name and its sealed format.
//!
//! A pad holds `pad_size` bytes of the address space. Its object stores only
//! the prefix up to the highest byte ever written (the rest reads as zeros),
//! so a pad shared by a few small items costs little bandwidth:
//!
//! `"AHP2" | version (u64 LE) | nonce | ciphertext | tag`
//!
//! The associated data binds the store id, the pad id and the version: a pad
//! swapped for another, or moved to another store, fails authentication, and a
//! reader rejects a version older than the one it expects (rollback).

use serde::{Deserialize, Serialize};

use crate::crypto::{self, StoreKeys};
use crate::error::{Error, Result};

const MAGIC: &[u8; 4] = b"AHP2";
const HEADER_LEN: usize = 4 + 8;

/// The random identity of a pad; its object name reveals nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PadId(pub [u8; 16]);

impl PadId {
    pub fn random() -> Self {
        PadId(crypto::os_random())
    }

    pub const PREFIX: &'static str = "p/";

    /// The backend object name, `p/<32 hex digits>`.
    pub fn object_name(&self) -> String {
        let mut name = String::with_capacity(2 + 32);
        name.push_str(Self::PREFIX);
        for byte in self.0 {
            name.push_str(&format!("{byte:02x}"));
        }
        name
    }

    /// The pad id of a listed object name, if it is one.
    pub fn from_object_name(name: &str) -> Option<Self> {
        let hex = name.strip_prefix(Self::PREFIX)?;
        if hex.len() != 32 {
            return None;
        }
        let mut id = [0u8; 16];
        for (i, byte) in id.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(PadId(id))
    }
}

fn associated_data(store_id: &[u8; 16], pad: PadId, version: u64) -> Vec<u8> {
    let mut aad = Vec::with_capacity(11 + 16 + 16 + 8);
    aad.extend_from_slice(b"anthill pad");
    aad.extend_from_slice(store_id);
    aad.extend_from_slice(&pad.0);
    aad.extend_from_slice(&version.to_le_bytes());
    aad
}

/// Seals `plaintext` (a prefix of the pad's content) as version `version`.
pub fn encode(
    keys: &StoreKeys,
    store_id: &[u8; 16],
    pad: PadId,
    version: u64,
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    encode_into(keys, store_id, pad, version, plaintext, &mut out)?;
    Ok(out)
}

/// [`encode`] into `out` (emptied first), reusing its allocation. Returns
/// the object's authentication tag.
pub fn encode_into(
    keys: &StoreKeys,
    store_id: &[u8; 16],
    pad: PadId,
    version: u64,
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<crypto::AuthTag> {
    out.clear();
    out.reserve(HEADER_LEN + crypto::SEAL_OVERHEAD + plaintext.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&version.to_le_bytes());
    let aad = associated_data(store_id, pad, version);
    crypto::seal_into(keys.pads(), &aad, plaintext, out)
}

/// The largest pad object of a store with `pad_size`-byte pads: a full pad
/// sealed, with its header. Reads of pad objects are capped at it.
pub fn max_object_len(pad_size: u64) -> u64 {
    pad_size + (HEADER_LEN + crypto::SEAL_OVERHEAD) as u64
}

/// Whether `len` bytes at `offset` are the whole of a pad of `pad_size`.
pub fn fills_pad(offset: u64, len: u64, pad_size: u64) -> bool {
    offset == 0 && len == pad_size
}

/// Opens a pad object: its version and plaintext prefix. Fails with
/// [`Error::Integrity`] if it does not authenticate, or if its version is
/// older than `min_version` (a rollback), or longer than a pad.
pub fn decode(
    keys: &StoreKeys,
    store_id: &[u8; 16],
    pad: PadId,
    min_version: u64,
    pad_size: u64,
    object: &[u8],
) -> Result<(u64, Vec<u8>)> {
    decode_owned(keys, store_id, pad, min_version, pad_size, object.to_vec())
}

/// [`decode`], decrypting in place: the object's buffer becomes the plaintext.
pub fn decode_owned(
    keys: &StoreKeys,
    store_id: &[u8; 16],
    pad: PadId,
    min_version: u64,
    pad_size: u64,
    object: Vec<u8>,
) -> Result<(u64, Vec<u8>)> {
    let name = pad.object_name();
    if object.len() < HEADER_LEN || &object[..4] != MAGIC {
        return Err(Error::integrity(format!(
            "pad {name} is not an anthill pad"
        )));
    }
    let version = u64::from_le_bytes(object[4..12].try_into().expect("8 header bytes"));
    let aad = associated_data(store_id, pad, version);
    let plaintext = crypto::open_owned(
        keys.pads(),
        &aad,
        object,
        HEADER_LEN,
        &format!("pad {name}"),
    )?;
    if version < min_version {
        return Err(Error::integrity(format!(
            "pad {name} was rolled back to version {version}; the index expects at least {min_version}"
        )));
    }
    if plaintext.len() as u64 > pad_size {
        return Err(Error::integrity(format!("pad {name} is larger than a pad")));
    }
    Ok((version, plaintext))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_reject_others() {
        let id = PadId::random();
        assert_eq!(PadId::from_object_name(&id.object_name()), Some(id));
        assert_eq!(PadId::from_object_name("p/xyz"), None);
        assert_eq!(PadId::from_object_name("j/0000"), None);
    }

    #[test]
    fn pads_detect_swap_and_rollback() {
        let keys = StoreKeys::derive(b"s", &[1; 16]);
        let (a, b) = (PadId::random(), PadId::random());
        let v3 = encode(&keys, &[1; 16], a, 3, b"abc").unwrap();
        assert_eq!(
            decode(&keys, &[1; 16], a, 3, 64, &v3).unwrap(),
            (3, b"abc".to_vec())
        );
        assert!(
            decode(&keys, &[1; 16], b, 0, 64, &v3).is_err(),
            "swapped pad"
        );
        assert!(
            decode(&keys, &[1; 16], a, 4, 64, &v3).is_err(),
            "rolled back"
        );
        let mut forged = v3.clone();
        forged[4] = 9; // claim a newer version
        assert!(decode(&keys, &[1; 16], a, 0, 64, &forged).is_err());
    }
}
