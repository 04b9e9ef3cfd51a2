//! The store's metadata object: its format, random id, pad size and how its
//! secret becomes keys, in clear, with a sealed check that tells a wrong
//! secret apart at open.
//!
//! Formats (the `format` string comes first in every one):
//! - `anthill-store-3`: the secret is used as it is, whatever it is. Such
//!   stores keep opening as they were made; their check costs an offline
//!   attacker one hash per guessed passphrase.
//! - `anthill-store-4`: records a [`Kdf`]. A passphrase is stretched with
//!   Argon2id (salt: the store id) under the recorded parameters, so each
//!   guess costs what an open costs; a key (`crypto::is_key`) is used as it
//!   is. The check's associated data binds the KDF too.
//! - `anthill-store-5`: as 4; its pads may be sealed in segments (pad
//!   format 3), and on S3 a pad's odd versions live in a second object
//!   (`p/<id>.odd`, see `PadId::object_name_for`), so releases that read
//!   only format 4 refuse it by name.

use serde::{Deserialize, Serialize};

use crate::crypto::{self, Argon2Params, StoreKeys};
use crate::error::{Error, Result};
use crate::index;

/// 3: a piece that fills its pad has the pad object's tag for digest.
const FORMAT_3: &str = "anthill-store-3";
/// 4: the metadata records how the secret is stretched ([`Kdf`]).
const FORMAT_4: &str = "anthill-store-4";
/// 5: pads may be sealed in segments (pad format 3, `pad.rs`) and, on S3,
/// alternate between two objects, which a release reading format 4 would
/// not find or open: it refuses the store by its
/// format instead. Same fields as 4. A store of format 3 or 4 is moved to 5
/// before this release's first change to it (`Meta::upgraded`).
const FORMAT: &str = "anthill-store-5";
/// Formats this release opens, oldest first.
const FORMATS: [&str; 3] = [FORMAT_3, FORMAT_4, FORMAT];

/// Reads of the metadata object are capped at this: it holds a few short
/// fields and a sealed check, well under a kilobyte.
pub const MAX_OBJECT_LEN: u64 = 64 << 10;

/// The pad sizes a store may have, in bytes.
pub const PAD_SIZES: std::ops::RangeInclusive<u64> = 512..=(1 << 30);

/// Argon2id parameters of new stores: OWASP's recommended 19 MiB, 2 passes,
/// 1 lane. A process pays them once per store and passphrase (the stretched
/// key is kept, see `crypto::stretch_passphrase`), which tests that create
/// many stores can afford.
pub const ARGON2_PARAMS: Argon2Params = Argon2Params {
    memory_kib: 19 * 1024,
    iterations: 2,
    lanes: 1,
};

/// The most a metadata object may ask of an open, so a crafted one cannot
/// make it allocate or spin without bound: 1 GiB, 16 passes, 8 lanes.
const ARGON2_LIMITS: Argon2Params = Argon2Params {
    memory_kib: 1 << 20,
    iterations: 16,
    lanes: 8,
};

/// How a store's secret becomes the material its keys derive from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Kdf {
    /// The secret is used as it is: a key (`crypto::is_key`), or any secret
    /// of a format-3 store.
    None,
    /// The secret is a passphrase, stretched with Argon2id; memory in KiB.
    Argon2id {
        memory_kib: u32,
        iterations: u32,
        lanes: u32,
    },
}

impl Kdf {
    /// What a new store with this secret records.
    fn for_secret(secret: &[u8]) -> Self {
        if crypto::is_key(secret) {
            Kdf::None
        } else {
            let Argon2Params {
                memory_kib,
                iterations,
                lanes,
            } = ARGON2_PARAMS;
            Kdf::Argon2id {
                memory_kib,
                iterations,
                lanes,
            }
        }
    }

    /// The material the keys derive from. A key is taken in one form
    /// whichever way it is written ([`key_text`]), so the key file's 64 hex
    /// digits and the 32 bytes they spell open the same store.
    fn material(&self, secret: &[u8], store_id: &[u8; 16]) -> Result<Vec<u8>> {
        match *self {
            Kdf::None => Ok(key_text(secret).unwrap_or_else(|| secret.to_vec())),
            Kdf::Argon2id {
                memory_kib,
                iterations,
                lanes,
            } => {
                let params = Argon2Params {
                    memory_kib,
                    iterations,
                    lanes,
                };
                Ok(crypto::stretch_passphrase(secret, store_id, params)?.to_vec())
            }
        }
    }

    fn check_limits(&self) -> Result<()> {
        if let Kdf::Argon2id {
            memory_kib,
            iterations,
            lanes,
        } = *self
            && (memory_kib > ARGON2_LIMITS.memory_kib
                || iterations > ARGON2_LIMITS.iterations
                || !(1..=ARGON2_LIMITS.lanes).contains(&lanes))
        {
            return Err(Error::integrity(format!(
                "store metadata asks for Argon2id parameters beyond what anthill accepts \
                 ({memory_kib} KiB, {iterations} passes, {lanes} lanes)"
            )));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub format: String,
    pub store_id: [u8; 16],
    pub pad_size: u64,
    /// How the secret is stretched ([`Kdf::None`] for a format-3 store).
    pub kdf: Kdf,
    /// Sealed with the index key; the associated data binds the id, pad
    /// size (and in format 4 the KDF), so editing any fails the check.
    key_check: Vec<u8>,
}

/// The metadata object of format 3, as written.
#[derive(Serialize, Deserialize)]
struct Format3 {
    format: String,
    store_id: [u8; 16],
    pad_size: u64,
    key_check: Vec<u8>,
}

/// The metadata object of format 4, as written.
#[derive(Serialize, Deserialize)]
struct Format4 {
    format: String,
    store_id: [u8; 16],
    pad_size: u64,
    kdf: Kdf,
    key_check: Vec<u8>,
}

/// A key (`crypto::is_key`) as lowercase hex, the key file's own form:
/// 32 raw bytes spelt out, 64 hex digits lowercased; `None` for a passphrase.
fn key_text(secret: &[u8]) -> Option<Vec<u8>> {
    if !crypto::is_key(secret) {
        return None;
    }
    let text: String = if secret.len() == 32 {
        secret.iter().map(|byte| format!("{byte:02x}")).collect()
    } else {
        String::from_utf8_lossy(secret).to_ascii_lowercase()
    };
    Some(text.into_bytes())
}

fn associated_data(format: &str, store_id: &[u8; 16], pad_size: u64, kdf: &Kdf) -> Result<Vec<u8>> {
    let mut aad = b"anthill meta".to_vec();
    aad.extend_from_slice(store_id);
    aad.extend_from_slice(&pad_size.to_le_bytes());
    if format != FORMAT_3 {
        aad.extend_from_slice(&index::to_bytes(kdf)?);
    }
    Ok(aad)
}

impl Meta {
    /// The metadata of a new store with a fresh random id. A passphrase
    /// secret is stretched here (tens of milliseconds).
    pub fn new(secret: &[u8], pad_size: u64) -> Result<Self> {
        let store_id: [u8; 16] = crypto::os_random();
        let kdf = Kdf::for_secret(secret);
        let keys = StoreKeys::derive(&kdf.material(secret, &store_id)?, &store_id);
        let aad = associated_data(FORMAT, &store_id, pad_size, &kdf)?;
        Ok(Self {
            format: FORMAT.into(),
            store_id,
            pad_size,
            kdf,
            key_check: crypto::seal(keys.index(), &aad, b"anthill")?,
        })
    }

    pub fn encode(&self) -> Result<Vec<u8>> {
        if self.format == FORMAT_3 {
            return index::to_bytes(&Format3 {
                format: self.format.clone(),
                store_id: self.store_id,
                pad_size: self.pad_size,
                key_check: self.key_check.clone(),
            });
        }
        index::to_bytes(&Format4 {
            format: self.format.clone(),
            store_id: self.store_id,
            pad_size: self.pad_size,
            kdf: self.kdf,
            key_check: self.key_check.clone(),
        })
    }

    /// Decodes the metadata object; anything malformed or of an unknown
    /// format is an integrity error.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        const WHAT: &str = "store metadata";
        // Every format starts with its name.
        let format: String = index::from_bytes(bytes, WHAT)?;
        let meta = match format.as_str() {
            FORMAT_3 => {
                let old: Format3 = index::from_bytes(bytes, WHAT)?;
                Meta {
                    format: old.format,
                    store_id: old.store_id,
                    pad_size: old.pad_size,
                    kdf: Kdf::None,
                    key_check: old.key_check,
                }
            }
            FORMAT_4 | FORMAT => {
                let new: Format4 = index::from_bytes(bytes, WHAT)?;
                new.kdf.check_limits()?;
                Meta {
                    format: new.format,
                    store_id: new.store_id,
                    pad_size: new.pad_size,
                    kdf: new.kdf,
                    key_check: new.key_check,
                }
            }
            _ => {
                let newer = format
                    .strip_prefix("anthill-store-")
                    .and_then(|n| n.parse::<u32>().ok())
                    .is_some_and(|n| n > 5);
                let why = if newer {
                    "written by a newer anthill: upgrade anthill to open it"
                } else {
                    "not a format any anthill wrote"
                };
                return Err(Error::integrity(format!(
                    "unknown store format {format:?}, {why} (this anthill reads {})",
                    FORMATS.join(", ")
                )));
            }
        };
        if !PAD_SIZES.contains(&meta.pad_size) {
            return Err(Error::integrity(format!(
                "store metadata gives an impossible pad size ({} bytes)",
                meta.pad_size
            )));
        }
        Ok(meta)
    }

    /// Whether this store must move to the current format before a change
    /// (it may then get pads of the current pad format).
    pub fn needs_upgrade(&self) -> bool {
        self.format != FORMAT
    }

    /// The same store's metadata in the current format: the check sealed
    /// again with `keys` (a format-3 check binds no KDF).
    pub fn upgraded(&self, keys: &StoreKeys) -> Result<Self> {
        let aad = associated_data(FORMAT, &self.store_id, self.pad_size, &self.kdf)?;
        Ok(Self {
            format: FORMAT.into(),
            store_id: self.store_id,
            pad_size: self.pad_size,
            kdf: self.kdf,
            key_check: crypto::seal(keys.index(), &aad, b"anthill")?,
        })
    }

    /// The store's keys, if `secret` is the store's secret.
    pub fn unlock(&self, secret: &[u8]) -> Result<StoreKeys> {
        let aad = associated_data(&self.format, &self.store_id, self.pad_size, &self.kdf)?;
        let mut materials = vec![self.kdf.material(secret, &self.store_id)?];
        if self.kdf == Kdf::None && materials[0] != secret {
            // A store made before keys had one form took a key as written.
            materials.push(secret.to_vec());
        }
        for material in materials {
            let keys = StoreKeys::derive(&material, &self.store_id);
            if crypto::open(keys.index(), &aad, &self.key_check, "store metadata").is_ok() {
                return Ok(keys);
            }
        }
        Err(Error::integrity(
            "wrong secret for this store (or its metadata was tampered with): \
             open it with the secret it was created with",
        ))
    }
}
