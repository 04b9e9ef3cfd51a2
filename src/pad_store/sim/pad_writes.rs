//! The record of pad writes (`SimConfig::record_pad_writes`): a line per
//! pad write, from which tests check that writes of a pad never overlapped
//! and that its versions only grew.

use super::SimPadStore;
use crate::pad_store::BackendError;

/// A pad write under way, for `SimConfig::record_pad_writes`.
pub(super) struct PadWrite {
    name: String,
    /// The version in the pad's header (after its 4-byte format tag).
    version: u64,
    started: u128,
}

impl PadWrite {
    pub(super) fn start(name: &str, content: &[u8]) -> Option<Self> {
        let header = content.get(4..12)?;
        name.starts_with("p/").then(|| PadWrite {
            name: name.to_string(),
            version: u64::from_le_bytes(header.try_into().expect("8 bytes")),
            started: unix_nanos(),
        })
    }
}

fn unix_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos())
}

impl SimPadStore {
    /// Appends a finished pad write to the record file, if one is kept.
    pub(super) fn record<T>(&self, write: Option<PadWrite>, done: &Result<T, BackendError>) {
        let (Some(path), Some(write), Ok(_)) = (&self.config.record_pad_writes, write, done) else {
            return;
        };
        let line = format!(
            "{} {} {} {} {}\n",
            self.writer_id,
            write.name,
            write.version,
            write.started,
            unix_nanos()
        );
        let appended = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut file| std::io::Write::write_all(&mut file, line.as_bytes()));
        if let Err(error) = appended {
            log::warn!("cannot record a pad write in {}: {error}", path.display());
        }
    }
}
