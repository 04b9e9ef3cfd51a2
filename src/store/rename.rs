//! Renaming an item: one index record, no data moved. The record is the
//! whole change, so after a crash the item is under exactly one of the two
//! names: the old one if the record did not land, the new one if it did.

use super::{Store, validate_key};
use crate::error::{Error, Result};
use crate::index::Record;

impl Store {
    /// Moves the item stored under `from` to `to`. A missing `from` is
    /// `KeyNotFound`; an existing `to` is `KeyExists` unless `overwrite`
    /// (then the item it held is removed in the same record).
    pub async fn rename_item(&self, from: &str, to: &str, overwrite: bool) -> Result<()> {
        self.check_open()?;
        validate_key(from)?;
        validate_key(to)?;
        let _busy_from = self.claim_key(from)?;
        let _busy_to = if from == to {
            None
        } else {
            Some(self.claim_key(to)?)
        };
        let writing = self.inner.gate.enter().await?;
        let (source, source_pending, target, target_pending) = self
            .inner
            .journal
            .read_items(|index| {
                Ok((
                    index.items.contains_key(from)?,
                    index.pending.contains_key(from),
                    index.items.contains_key(to)?,
                    index.pending.contains_key(to),
                ))
            })
            .await?;
        if !source {
            return Err(Error::KeyNotFound(from.to_string()));
        }
        for (key, pending) in [(from, source_pending), (to, target_pending)] {
            if pending {
                return Err(Error::UploadPending {
                    key: key.to_string(),
                    reason: "has an interrupted upload; finish it with store_item(..., \
                             resume=True) or discard it with remove_item() before renaming"
                        .into(),
                });
            }
        }
        if from == to {
            return Ok(());
        }
        if target && !overwrite {
            return Err(Error::KeyExists(to.to_string()));
        }
        let record = Record::Rename {
            from: from.to_string(),
            to: to.to_string(),
        };
        self.commit_records(vec![record], Default::default(), &writing)
            .await
    }
}
