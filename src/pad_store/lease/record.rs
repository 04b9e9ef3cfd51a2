//! The lease object: its text format, and reading and writing it.

use bytes::Bytes;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload, PutResult};

use super::{BackendError, Lease};

const FORMAT: &str = "anthill-lease 1";
/// A lease object is a few short lines; a larger one is not a lease and is
/// not read.
const MAX_LEASE_LEN: u64 = 4096;

/// What a lease object says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Record {
    pub(super) owner: String,
    pub(super) token: String,
    pub(super) expires_ms: u64,
    /// The holder's process id, and where that id means something (see
    /// [`local_host`]; `-` if unknown).
    pub(super) pid: u32,
    pub(super) host: String,
}

impl Record {
    pub(super) fn encode(&self) -> Bytes {
        Bytes::from(format!(
            "{FORMAT}\nowner {}\ntoken {}\nexpires_ms {}\npid {}\nhost {}\n",
            self.owner, self.token, self.expires_ms, self.pid, self.host
        ))
    }

    /// `None` for anything that is not a lease of this format.
    pub(super) fn decode(content: &[u8]) -> Option<Record> {
        let text = std::str::from_utf8(content).ok()?;
        let mut lines = text.lines();
        if lines.next()? != FORMAT {
            return None;
        }
        let mut field = |name: &str| -> Option<String> {
            let (key, value) = lines.next()?.split_once(' ')?;
            (key == name).then(|| value.to_owned())
        };
        Some(Record {
            owner: field("owner")?,
            token: field("token")?,
            expires_ms: field("expires_ms")?.parse().ok()?,
            pid: field("pid")?.parse().ok()?,
            host: field("host")?,
        })
    }

    /// Whether the holder is a process of this machine that has exited.
    pub(super) fn holder_has_exited(&self) -> bool {
        let Some(host) = local_host() else {
            return false;
        };
        self.host == *host
            && self.pid != std::process::id()
            && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

/// Where process ids of this process mean the same processes: the boot of
/// this machine and the PID namespace (a container sharing the host name
/// has its own). `None` where `/proc` does not tell (not Linux).
pub(super) fn local_host() -> Option<&'static String> {
    static HOST: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
        let namespace = std::fs::read_link("/proc/self/ns/pid").ok()?;
        let host = format!("{}/{}", boot.trim(), namespace.display());
        (!host.contains(char::is_whitespace)).then_some(host)
    })
    .as_ref()
}

/// A lease object as read: its record (`None` if unreadable, which counts as
/// expired) and version tag.
pub(super) struct Current {
    pub(super) record: Option<Record>,
    pub(super) e_tag: Option<String>,
}

impl Lease {
    /// Reads the lease object; `None` if there is none.
    pub(super) async fn read(&self) -> Result<Option<Current>, BackendError> {
        let result = match self.store.get(&self.path).await {
            Ok(result) => result,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(error) => return Err(self.error(error)),
        };
        let e_tag = result.meta.e_tag.clone();
        let record = if result.meta.size > MAX_LEASE_LEN {
            None
        } else {
            let content = result.bytes().await.map_err(|error| self.error(error))?;
            Record::decode(&content)
        };
        if record.is_none() {
            log::warn!(
                "{}: the lease object {} is not an anthill lease; treating it as expired",
                self.url,
                self.path
            );
        }
        Ok(Some(Current { record, e_tag }))
    }

    pub(super) async fn write(
        &self,
        record: &Record,
        mode: PutMode,
    ) -> object_store::Result<PutResult> {
        let options = PutOptions {
            mode,
            ..PutOptions::default()
        };
        self.store
            .put_opts(&self.path, PutPayload::from(record.encode()), options)
            .await
    }
}
