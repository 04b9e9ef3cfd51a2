//! Loading the index from the local index cache, and keeping that copy
//! (see "The local index cache" in docs/architecture.md).

use super::*;

/// What the index cache keeps beside the index: the log state, and the
/// object it was read up to, whose receipt tells whether the store still
/// holds it.
#[derive(serde::Serialize)]
pub(super) struct CachedLogOut<'a> {
    anchor: &'a str,
    receipt: (u64, Option<&'a str>),
    log: &'a LogState,
}

#[derive(serde::Deserialize)]
pub(super) struct CachedLogIn {
    anchor: String,
    receipt: (u64, Option<String>),
    log: LogState,
}

impl Journal {
    /// Whether opening read the index from the local cache.
    pub fn opened_from_cache(&self) -> bool {
        self.opened_from_cache
    }

    /// Loads the index from the local cache if it still describes the
    /// store, returning how many log records it replayed over it; `None`
    /// (the caller loads from the backend) if there is none, if it cannot
    /// be read, or if it is not on the store's history.
    pub(super) async fn load_from_cache(&self) -> Option<usize> {
        let cache = self.cache.as_ref()?;
        match self.try_load_from_cache(cache).await {
            Ok(replayed) => replayed,
            Err(error) => {
                log::info!("loading the index from the backend: {error}");
                None
            }
        }
    }

    /// The cache is never trusted over the backend: it is used only if the
    /// object it was read up to (the last log object it covers, or the
    /// checkpoint it starts from) is still there unchanged, no checkpoint
    /// has absorbed the log past it, and the log after it is all there;
    /// that log is then replayed on top, as a load replays the log after a
    /// checkpoint. The store's objects are write-once (see the module
    /// header), so the same object at the anchor means the same history.
    pub(super) async fn try_load_from_cache(&self, cache: &IndexCache) -> Result<Option<usize>> {
        let Some((cached, state, position)) =
            index::open_cache(&cache.path, Arc::clone(&self.keys), &self.store_id)?
        else {
            return Ok(None);
        };
        let state: CachedLogIn = index::from_bytes(&state, "index cache")?;
        let (checkpoints, logs) = futures::try_join!(
            self.list_seqs(CHECKPOINT_PREFIX),
            self.list_seqs(LOG_PREFIX)
        )?;
        let newest = checkpoints.last().copied();
        if newest.is_some_and(|checkpoint| checkpoint >= position) {
            return Ok(None);
        }
        let receipt = PutReceipt {
            size: state.receipt.0,
            e_tag: state.receipt.1,
        };
        if let Err(error) = self.backend.verify(&state.anchor, &receipt).await {
            log::info!("the index cache is not on the store's history: {error}");
            return Ok(None);
        }
        let last = newest_log(logs).filter(|last| *last >= position);
        let most_records =
            MOST_CACHE_TAIL_RECORDS.max(cached.items.len() / CACHE_ITEMS_PER_TAIL_RECORD);
        let mut loaded = LogState {
            index: cached,
            next_seq: position,
            ..state.log
        };
        let mut records = 0;
        for seq in position..last.map_or(position, |last| last + 1) {
            let Some((plaintext, sealed)) = self.try_read_sealed(LOG_KIND, LOG_PREFIX, seq).await?
            else {
                return Ok(None); // a gap: the full load tells what it is
            };
            records += loaded.replay(seq, &plaintext, &sealed)?;
            if records > most_records {
                return Ok(None);
            }
        }
        if self.checkpointed_since(newest).await? {
            return Ok(None);
        }
        self.install(loaded);
        Ok(Some(records))
    }

    /// Writes the local index cache if this store keeps one, after a load
    /// from the backend paid for the whole index or a long replay over the
    /// old cache: the next open then reads a few kilobytes. An index that fails its check is not kept (opening
    /// then fails on it). Failures are only reported: the cache is an
    /// optimisation.
    pub(super) async fn keep_cache(&mut self) {
        let journal = self;
        let Some(cache) = journal.cache.clone() else {
            return;
        };
        let anchor = {
            let log = journal.log.get_mut().expect("journal lock");
            let small = (log.state.index.items.len() as u64) < cache.min_items;
            let Some(last) = log.state.next_seq.checked_sub(1) else {
                return;
            };
            if small || !log.state.index.inline.is_empty() || log.doubt.is_some() {
                return;
            }
            if let Err(error) = log.state.index.check(cache.pad_size) {
                log::info!("no local index cache: {error}");
                return;
            }
            // After a replay over the old cache: the file needs every entry.
            if let Err(error) = log.state.index.items.load_all() {
                log::info!("no local index cache: {error}");
                return;
            }
            if log.state.uncheckpointed.last() == Some(&last) {
                object_name(LOG_PREFIX, last)
            } else {
                object_name(CHECKPOINT_PREFIX, last)
            }
        };
        let receipt = match journal.backend.head(&anchor).await {
            Ok(receipt) => receipt,
            Err(error) => {
                log::info!("no local index cache: {error}");
                return;
            }
        };
        let log = journal.log.get_mut().expect("journal lock");
        let kept = CachedLogOut {
            anchor: &anchor,
            receipt: (receipt.size, receipt.e_tag.as_deref()),
            log: &log.state,
        };
        let Ok(state) = index::to_bytes(&kept) else {
            return;
        };
        let index = std::mem::take(&mut log.state.index);
        let (keys, store_id, position) = (
            Arc::clone(&journal.keys),
            journal.store_id,
            log.state.next_seq,
        );
        let started = std::time::Instant::now();
        let (index, written) = blocking::on_blocking_pool(move || {
            let written =
                index::cache::write(&cache.path, &keys, &store_id, position, state, &index);
            (index, written)
        })
        .await;
        journal.log.get_mut().expect("journal lock").state.index = index;
        match written {
            Ok(()) => log::debug!("local index cache written in {:?}", started.elapsed()),
            Err(error) => log::warn!("no local index cache: {error}"),
        }
    }

    /// Reads the index with `f`, which may fail only where it reads items:
    /// if they come from a local cache file that turns out damaged, the
    /// file is deleted, the index is loaded from the backend, and `f` runs
    /// again.
    pub async fn read_items<R>(&self, f: impl Fn(&Index) -> Result<R>) -> Result<R> {
        let (result, cached) = {
            let log = self.log.lock().expect("journal lock");
            (f(&log.state.index), log.state.index.items.is_cached())
        };
        match result {
            Err(error) if cached => {
                log::warn!("reading the index from the backend: {error}");
                if let Some(cache) = &self.cache {
                    let _ = std::fs::remove_file(&cache.path);
                }
                self.load().await?;
                self.read(f)
            }
            result => result,
        }
    }
}
