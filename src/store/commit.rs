//! Committing index records in a task of their own.
//!
//! An index write lands or not whatever happens to the caller that asked for
//! it: the journal writes each batch in a task of its own, so a put cancelled
//! (an `asyncio` timeout, a Ctrl-C) while its record is being written may
//! still be stored. What the record decides about space must then follow
//! the write, not the caller: the space it takes is kept only if it landed,
//! the space it releases is freed only then. So the whole commit, the append
//! and what follows it, runs in a task that owns what it decides (the
//! allocations the records name, a place in the writer gate so that no
//! rebuild of the map runs meanwhile); the caller only waits for its answer.

use std::sync::Arc;

use super::Store;
use crate::allocator::{Allocation, Recording};
use crate::error::{Error, Result};
use crate::index::Record;
use crate::writer_gate::WriterGuard;

/// What a commit's records name, settled by the commit's task.
#[derive(Default)]
pub(super) struct Holds {
    /// Space the records take: kept if they land, freed if not.
    pub allocations: Vec<Allocation>,
    /// Index writes whose allocation the caller keeps using (a pending
    /// record written while the item's pads are written).
    pub recordings: Vec<Recording>,
}

impl From<Allocation> for Holds {
    fn from(allocation: Allocation) -> Self {
        Self {
            allocations: vec![allocation],
            recordings: Vec::new(),
        }
    }
}

impl From<Recording> for Holds {
    fn from(recording: Recording) -> Self {
        Self {
            allocations: Vec::new(),
            recordings: vec![recording],
        }
    }
}

impl Store {
    /// Appends `records` and settles `holds` by the outcome, in a task of
    /// its own (see the module header), then frees the space the records
    /// released. A write in doubt (it may have landed) keeps the space until
    /// the journal knows: the next rebuild frees it if not.
    pub(super) async fn commit_records(
        &self,
        records: Vec<Record>,
        holds: Holds,
        writing: &WriterGuard,
    ) -> Result<()> {
        let (journal, allocator) = (
            Arc::clone(&self.inner.journal),
            Arc::clone(&self.inner.allocator),
        );
        let writing = writing.clone();
        let task = tokio::spawn(async move {
            let appended = journal.append(records).await;
            let landed = appended.is_ok() || journal.in_doubt();
            for allocation in holds.allocations {
                if landed {
                    allocation.keep();
                }
            }
            for recording in holds.recordings {
                recording.settle(landed);
            }
            if let Ok(released) = &appended {
                allocator.free(released);
            }
            drop(writing);
            appended.map(|_| ())
        });
        task.await
            .map_err(|error| Error::internal(format!("an index commit stopped: {error}")))?
    }
}
