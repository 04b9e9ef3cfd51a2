//! Following an item that another process moved while this one read it.
//!
//! A reader's index may be older than the store: another process may have
//! compacted it (moving items and deleting the pads they left) or replaced
//! or removed the item since. A read from such an index fails in one of two
//! ways, never with wrong bytes: a pad is gone (`NotFound`), or what is read
//! does not authenticate against the entry (`Integrity`: the place was
//! reused). Either may mean the reader is merely behind, so the read catches
//! up with the other writers and, if the item's entry changed, reads again
//! where the item is now; if nothing changed, the failure stands.
//!
//! `fetch_item`, `fetch_file` and `fetch_to` all follow moves through
//! [`FollowMoves`]; whether the read can start again (or go on) after bytes
//! were handed out is the reader's decision (`ItemStream::follow`).

use bytes::Bytes;

use super::Store;
use crate::error::{Error, Result};
use crate::index::Entry;
use crate::pad_store::BackendError;

/// How many times one read follows its item before the failure stands:
/// each time another process must have moved it again meanwhile.
const MOST_FOLLOWS: u32 = 3;

/// Where an item is now, after a read of it failed; see the module header.
pub(super) struct FollowMoves<'a> {
    store: &'a Store,
    key: &'a str,
    followed: u32,
}

impl<'a> FollowMoves<'a> {
    pub(super) fn new(store: &'a Store, key: &'a str) -> Self {
        Self {
            store,
            key,
            followed: 0,
        }
    }

    /// After a read of the item at `read` failed with `error`: the item's
    /// entry (and bytes, if still in the log) now, if it changed, to read
    /// again from; else `error` (or `KeyNotFound`, if it was removed).
    pub(super) async fn after(
        &mut self,
        read: &Entry,
        error: Error,
    ) -> Result<(Entry, Option<Bytes>)> {
        let may_have_moved = matches!(
            error,
            Error::Integrity(_) | Error::Backend(BackendError::NotFound(_))
        );
        if !may_have_moved || self.followed == MOST_FOLLOWS {
            return Err(error);
        }
        self.followed += 1;
        self.store.inner.gate.catch_up().await?;
        match self.store.lookup_here(self.key).await? {
            Some(now) if now.0 != *read => Ok(now),
            Some(_) => Err(error),
            None => Err(Error::KeyNotFound(self.key.to_string())),
        }
    }
}
