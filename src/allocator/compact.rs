//! What compaction and the picture of a store need of the allocator: how
//! full each pad is, fencing off the free space of pads being emptied (so
//! nothing moves into them), and taking emptied pads out of the address
//! space. The decisions are `store/compact.rs`'s.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::{Allocation, MemoryAllocator};
use crate::error::{Error, Result};
use crate::index::Piece;
use crate::memory_map::{Extent, split_by_pad};
use crate::pad::PadId;
use crate::pad_io::PadIo;

/// How full the pads are, as the memory map says (no backend call).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PadUsage {
    pub pad_size: u64,
    /// (ordinal, bytes used) of every pad, ascending by ordinal.
    pub pads: Vec<(u64, u64)>,
    /// The longest run of free bytes (free space merges across pads).
    pub largest_free: u64,
    /// Each run of free bytes within one pad.
    pub free_runs: Vec<Extent>,
}

impl MemoryAllocator {
    /// Used bytes of every pad, and the longest free run.
    pub fn pad_usage(&self) -> PadUsage {
        let map = self.map.lock().expect("map lock");
        let pad_size = map.pad_size();
        let free = map.free_extents();
        let largest_free = free.iter().map(|e| e.len).max().unwrap_or(0);
        let free_runs = free
            .iter()
            .flat_map(|e| split_by_pad(*e, pad_size))
            .map(|(pad, offset, len)| Extent {
                start: pad * pad_size + offset,
                len,
            })
            .collect();
        let pads = map
            .free_per_pad()
            .into_iter()
            .map(|(ordinal, free)| (ordinal, pad_size - free))
            .collect();
        PadUsage {
            pad_size,
            pads,
            largest_free,
            free_runs,
        }
    }

    /// The bytes of one piece as its pad holds them (zeros past what was
    /// ever written, as a read of the item sees them). The pad is
    /// authenticated; the item's digest still covers the bytes wherever
    /// they are moved.
    pub async fn read_piece(&self, piece: &Piece) -> Result<bytes::Bytes> {
        piece.check(self.io.pad_size)?;
        let span = piece.offset..piece.offset + piece.len;
        let (bytes, _) =
            super::read::read_pad_range(&self.io, &self.writer, piece.pad, piece.version, span)
                .await?;
        Ok(bytes)
    }

    /// Takes `extents` (free space, each within one pad, in the order the
    /// bytes go there) for one item's bytes, as [`Self::allocate`] would
    /// have placed them; `None` if any is no longer free (a concurrent put
    /// took it). A compaction places what it moves where it planned.
    pub fn allocate_at(&self, extents: &[Extent]) -> Option<Allocation> {
        let mut map = self.map.lock().expect("map lock");
        map.take(extents).ok()?;
        Some(Allocation {
            data_id: self.next_data_id.fetch_add(1, Ordering::Relaxed),
            size: extents.iter().map(|e| e.len).sum(),
            existing: extents.to_vec(),
            new_pad_bytes: Vec::new(),
            expansion: None,
            map: Arc::clone(&self.map),
            kept: Arc::new(AtomicBool::new(false)),
            recordings: Default::default(),
            pads_landed: Mutex::new(None),
        })
    }

    /// Most pads read at once.
    pub fn download_concurrency(&self) -> usize {
        self.download_concurrency
    }

    /// The pad I/O (for reading pads directly: verification).
    pub fn pad_io(&self) -> &Arc<PadIo> {
        &self.io
    }

    /// Closes `pads` to allocation while they are emptied: their free space
    /// now and whatever is freed in them later is held, not handed out, so
    /// no move (nor any concurrent put) lands in them (see
    /// `MemoryMap::fence`), until [`Self::unfence`].
    pub fn fence(&self, pads: &[u64]) {
        let mut map = self.map.lock().expect("map lock");
        if let Err(error) = map.fence(pads) {
            // Free space just listed under the same lock: cannot happen.
            log::error!("fencing pads off failed: {error}");
        }
    }

    /// Opens the fenced pads again; then, if `remove`, takes those of
    /// `pads` that are wholly free out of the map and returns them. One
    /// critical section: nothing can allocate in a pad between the check
    /// and its removal.
    pub fn unfence(&self, pads: &[u64], remove: bool) -> Vec<u64> {
        let mut map = self.map.lock().expect("map lock");
        if let Err(error) = map.unfence() {
            log::error!("giving back fenced space failed: {error}");
            return Vec::new();
        }
        if !remove {
            return Vec::new();
        }
        let pad_size = map.pad_size();
        let empty: Vec<u64> = map
            .free_per_pad()
            .into_iter()
            .filter(|(ordinal, free)| *free == pad_size && pads.contains(ordinal))
            .map(|(ordinal, _)| ordinal)
            .collect();
        match map.remove_pads(&empty) {
            Ok(()) => empty,
            Err(error) => {
                log::error!("taking emptied pads out of the map failed: {error}");
                Vec::new()
            }
        }
    }

    /// Puts pads taken out by [`Self::unfence`] back (their removal could
    /// not be recorded).
    pub fn restore_pads(&self, ordinals: &[u64]) -> Result<()> {
        let mut map = self.map.lock().expect("map lock");
        for &ordinal in ordinals {
            map.add_pad(ordinal)
                .map_err(|e| Error::integrity(format!("cannot restore pad {ordinal}: {e}")))?;
        }
        Ok(())
    }

    /// Forgets pads whose removal the index recorded; returns their ids.
    pub fn forget_pads(&self, ordinals: &[u64]) -> Vec<PadId> {
        ordinals
            .iter()
            .filter_map(|&ordinal| {
                let id = self.writer.pad_id(ordinal).ok();
                self.writer.remove_pad(ordinal);
                id
            })
            .collect()
    }
}
