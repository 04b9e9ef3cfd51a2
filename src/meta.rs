//! The store's metadata object: its format, random id and pad size in clear,
//! with a sealed check that tells a wrong secret apart at open.

use serde::{Deserialize, Serialize};

use crate::crypto::{self, StoreKeys};
use crate::error::{Error, Result};
use crate::index;

/// 3: a piece that fills its pad has the pad object's tag for digest.
const FORMAT: &str = "anthill-store-3";

/// Reads of the metadata object are capped at this: it holds a few short
/// fields and a sealed check, well under a kilobyte.
pub const MAX_OBJECT_LEN: u64 = 64 << 10;

/// The pad sizes a store may have, in bytes.
pub const PAD_SIZES: std::ops::RangeInclusive<u64> = 512..=(1 << 30);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub format: String,
    pub store_id: [u8; 16],
    pub pad_size: u64,
    /// Sealed with the index key; the associated data binds the id and pad
    /// size, so editing either fails the check.
    key_check: Vec<u8>,
}

fn associated_data(store_id: &[u8; 16], pad_size: u64) -> Vec<u8> {
    let mut aad = b"anthill meta".to_vec();
    aad.extend_from_slice(store_id);
    aad.extend_from_slice(&pad_size.to_le_bytes());
    aad
}

impl Meta {
    /// The metadata of a new store with a fresh random id.
    pub fn new(secret: &[u8], pad_size: u64) -> Result<Self> {
        let store_id: [u8; 16] = rand::random();
        let keys = StoreKeys::derive(secret, &store_id);
        let aad = associated_data(&store_id, pad_size);
        Ok(Self {
            format: FORMAT.into(),
            store_id,
            pad_size,
            key_check: crypto::seal(keys.index(), &aad, b"anthill")?,
        })
    }

    pub fn encode(&self) -> Result<Vec<u8>> {
        index::to_bytes(self)
    }

    /// Decodes the metadata object; anything malformed or of an unknown
    /// format is an integrity error.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let meta: Meta = index::from_bytes(bytes, "store metadata")?;
        if meta.format != FORMAT {
            return Err(Error::integrity(format!(
                "unknown store format {:?} (this anthill reads {FORMAT})",
                meta.format
            )));
        }
        if !PAD_SIZES.contains(&meta.pad_size) {
            return Err(Error::integrity(format!(
                "store metadata gives an impossible pad size ({} bytes)",
                meta.pad_size
            )));
        }
        Ok(meta)
    }

    /// The store's keys, if `secret` is the store's secret.
    pub fn unlock(&self, secret: &[u8]) -> Result<StoreKeys> {
        let keys = StoreKeys::derive(secret, &self.store_id);
        let aad = associated_data(&self.store_id, self.pad_size);
        crypto::open(keys.index(), &aad, &self.key_check, "store metadata").map_err(|_| {
            Error::integrity(
                "wrong secret for this store (or its metadata was tampered with): \
                 open it with the secret it was created with",
            )
        })?;
        Ok(keys)
    }
}
