//! Whether the service honours conditional writes: probed once per handle
//! on a scratch object, unless the `conditional_writes` option says so.

use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};

use super::{BackendError, LEASE_NAME, Lease, is_refused_condition, random_hex};

impl Lease {
    /// Whether the service honours conditional writes, if known yet.
    pub fn conditional_known(&self) -> Option<bool> {
        self.conditional.get().copied()
    }

    /// Whether the service honours conditional writes: probed once.
    pub async fn conditional_writes(&self) -> Result<bool, BackendError> {
        self.conditional
            .get_or_try_init(|| self.probe_conditional_writes())
            .await
            .copied()
    }

    /// Creates a scratch object twice with create-if-absent, then updates it
    /// with a stale ETag: a service that honours conditional writes refuses
    /// both the second create and the update.
    async fn probe_conditional_writes(&self) -> Result<bool, BackendError> {
        let name = format!("{LEASE_NAME}-probe-{}", random_hex());
        let path = if self.prefix.as_ref().is_empty() {
            Path::from(name.as_str())
        } else {
            self.prefix.clone().join(name.as_str())
        };
        let put = |mode: PutMode| {
            let options = PutOptions {
                mode,
                ..PutOptions::default()
            };
            self.store
                .put_opts(&path, PutPayload::from_static(b"probe"), options)
        };
        let honoured = async {
            match put(PutMode::Create).await {
                Ok(_) => {}
                // The client itself refuses (conditional_put=disabled).
                Err(object_store::Error::NotImplemented { .. }) => return Ok(false),
                Err(error) => return Err(self.error(error)),
            }
            match put(PutMode::Create).await {
                Err(error) if is_refused_condition(&error) => {}
                Ok(_) => return Ok(false),
                Err(_) => return Ok(false),
            }
            let stale = UpdateVersion {
                e_tag: Some("\"anthill-stale-etag\"".into()),
                version: None,
            };
            match put(PutMode::Update(stale)).await {
                Err(error) if is_refused_condition(&error) => Ok(true),
                _ => Ok(false),
            }
        }
        .await;
        let _ = self.store.delete(&path).await;
        let honoured = honoured?;
        if honoured {
            log::debug!("{} honours conditional writes", self.url);
        } else {
            log::info!(
                "{} ignores conditional writes: writers exclude each other by a lease \
                 with expiry (best-effort, see docs/s3.md)",
                self.url
            );
        }
        Ok(honoured)
    }
}
