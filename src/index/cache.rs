//! A local copy of a store's index, so that opening a store of any size
//! reads a few kilobytes instead of the whole index.
//!
//! One file per store in the state folder (`<state>/index-cache/<store id>`):
//!
//! ```text
//! header   MAGIC, format (u32), store id, file id, position (u64), head length (u64)
//! head     sealed: the caller's state, the index without its items, the block table
//! blocks   each sealed on its own: the items whose key hashes to it, sorted
//! ```
//!
//! Everything is sealed with the store's index key, bound to the store id,
//! this file's random id and the position (and a block to its number), so a
//! file from another secret or store fails to open, and no block can be
//! moved between files or places. A key's block is chosen by a hash of the
//! key (XXH3), so a lookup reads, opens and decodes one block, checked when
//! read, and writing the file needs no sort of all keys (which took seconds
//! at 10^6 keys): opening the file checks only the header and the head, so
//! its cost does not grow with the number of keys.
//!
//! The file is a cache, never the truth: the journal decides whether it
//! still describes the store (see `journal/`) and rebuilds it from the
//! backend when not. It is written to a new file renamed over the old one,
//! so a reader holds one whole version, and with no fsync: a file lost or
//! torn in a crash fails to open and is rebuilt.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::{Entry, Index, from_bytes, to_bytes};
use crate::crypto::{self, StoreKeys};
use crate::error::{Error, Result};
use crate::pad::PadId;

const MAGIC: &[u8; 16] = b"anthill-idxcache";
/// The format of the file; a later one gets a new number and older files
/// are simply rebuilt.
const FORMAT: u32 = 1;
const FOLDER: &str = "index-cache";
const HEADER_LEN: usize = 16 + 4 + 16 + 16 + 8 + 8;
/// Items per block on average: about 8 KiB of a store of small items, one
/// read, decryption and decoding of about 15 microseconds per lookup (a
/// block of 512 took 115: replaying the log over the cache does one per
/// record). The table of blocks in the head stays small: 6-7 bytes a block.
const BLOCK_ENTRIES: usize = 64;
/// Most bytes a head or block may claim: bounds what a damaged length
/// could make a reader allocate.
const MOST_SECTION_BYTES: u64 = 1 << 30;
/// Blocks kept decoded, for repeated lookups of one key.
const RECENT_BLOCKS: usize = 8;

/// Where a store's cache file lives.
pub fn path(state_dir: &Path, store_id: &[u8; 16]) -> PathBuf {
    let name: String = store_id.iter().map(|b| format!("{b:02x}")).collect();
    state_dir.join(FOLDER).join(name)
}

/// The index without its items, and where the items' blocks are (block `n`
/// holds the keys that [`block_of`] puts there).
#[derive(Serialize, Deserialize)]
struct Head {
    /// What the caller keeps with the index (the journal's log state).
    state: Vec<u8>,
    pads: BTreeMap<u64, (PadId, u64)>,
    pending: HashMap<String, Entry>,
    next_data_id: u64,
    items: u64,
    blocks: Vec<BlockRef>,
}

#[derive(Serialize, Deserialize)]
struct BlockRef {
    offset: u64,
    len: u64,
}

/// The block of `blocks` that holds `key`.
fn block_of(key: &str, blocks: usize) -> usize {
    (twox_hash::XxHash3_128::oneshot(key.as_bytes()) % blocks as u128) as usize
}

/// What [`open`] read: the index without its items, the items (read on
/// demand), the caller's state and the position the file was written at.
pub struct Opened {
    pub pads: BTreeMap<u64, (PadId, u64)>,
    pub pending: HashMap<String, Entry>,
    pub next_data_id: u64,
    pub items: CachedItems,
    pub state: Vec<u8>,
    pub position: u64,
}

/// Writes the cache file of `index` as of `position`, with the caller's
/// `state`. Call only for an index whose items are all in memory and with
/// nothing held in the log (`inline` empty): the file holds no item data.
/// Blocks.
pub fn write(
    path: &Path,
    keys: &StoreKeys,
    store_id: &[u8; 16],
    position: u64,
    state: Vec<u8>,
    index: &Index,
) -> Result<()> {
    let failed =
        |e: std::io::Error| Error::internal(format!("cannot write {}: {e}", path.display()));
    let folder = path.parent().expect("a cache file is inside its folder");
    std::fs::create_dir_all(folder).map_err(failed)?;
    let count = index.items.len();
    let mut buckets: Vec<Vec<(&String, &Entry)>> =
        vec![Vec::with_capacity(BLOCK_ENTRIES + BLOCK_ENTRIES / 4); count.div_ceil(BLOCK_ENTRIES)];
    for (key, entry) in index.items.in_memory()? {
        let at = block_of(key, buckets.len());
        buckets[at].push((key, entry));
    }

    let file_id: [u8; 16] = crypto::os_random();
    let binding = Binding {
        store_id: *store_id,
        file_id,
        position,
    };
    let mut blocks = Vec::new();
    let mut body = Vec::new();
    for (number, bucket) in buckets.iter_mut().enumerate() {
        bucket.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let sealed = crypto::seal(keys.index(), &binding.block(number), &to_bytes(&bucket)?)?;
        blocks.push(BlockRef {
            offset: body.len() as u64,
            len: sealed.len() as u64,
        });
        body.extend_from_slice(&sealed);
    }
    let head = Head {
        state,
        pads: index.pads.clone(),
        pending: index.pending.clone(),
        next_data_id: index.next_data_id,
        items: count as u64,
        blocks,
    };
    let head = crypto::seal(keys.index(), &binding.head(), &to_bytes(&head)?)?;
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&FORMAT.to_le_bytes());
    header.extend_from_slice(store_id);
    header.extend_from_slice(&file_id);
    header.extend_from_slice(&position.to_le_bytes());
    header.extend_from_slice(&(head.len() as u64).to_le_bytes());
    header.resize(HEADER_LEN, 0);

    let random: [u8; 8] = crypto::os_random();
    let staging = folder.join(format!(".{}.tmp", u64::from_le_bytes(random)));
    let written = (|| {
        let mut file = File::create(&staging)?;
        file.write_all(&header)?;
        file.write_all(&head)?;
        file.write_all(&body)?;
        std::fs::rename(&staging, path)
    })();
    if let Err(error) = written {
        let _ = std::fs::remove_file(&staging);
        return Err(failed(error));
    }
    Ok(())
}

/// Opens the cache file at `path`: `None` if there is none, an error if it
/// is not a whole cache file of this store under these keys. Reads only
/// its header and head. Blocks.
pub fn open(path: &Path, keys: Arc<StoreKeys>, store_id: &[u8; 16]) -> Result<Option<Opened>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(damaged(path, &error.to_string())),
    };
    let mut header = [0u8; HEADER_LEN];
    file.read_exact_at(&mut header, 0)
        .map_err(|e| damaged(path, &e.to_string()))?;
    let field = |from: usize, to: usize| &header[from..to];
    if field(0, 16) != MAGIC || field(16, 20) != FORMAT.to_le_bytes() {
        return Err(damaged(path, "not a cache file of this version"));
    }
    if field(20, 36) != store_id {
        return Err(damaged(path, "the file is another store's"));
    }
    let binding = Binding {
        store_id: *store_id,
        file_id: field(36, 52).try_into().expect("16 bytes"),
        position: u64::from_le_bytes(field(52, 60).try_into().expect("8 bytes")),
    };
    let head_len = u64::from_le_bytes(field(60, 68).try_into().expect("8 bytes"));
    let sealed = read_section(&file, path, HEADER_LEN as u64, head_len)?;
    let head = crypto::open(keys.index(), &binding.head(), &sealed, "index cache")
        .map_err(|_| damaged(path, "its head does not open with this store's keys"))?;
    let head: Head = from_bytes(&head, "index cache")?;
    let body_at = HEADER_LEN as u64 + head_len;
    let cached = CachedItems {
        file,
        path: path.to_owned(),
        keys,
        binding,
        body_at,
        count: head.items as usize,
        blocks: head.blocks,
        recent: Mutex::new(Vec::new()),
    };
    Ok(Some(Opened {
        pads: head.pads,
        pending: head.pending,
        next_data_id: head.next_data_id,
        items: cached,
        state: head.state,
        position: binding.position,
    }))
}

fn damaged(path: &Path, why: &str) -> Error {
    Error::integrity(format!("index cache {} unusable: {why}", path.display()))
}

fn read_section(file: &File, path: &Path, offset: u64, len: u64) -> Result<Vec<u8>> {
    if len > MOST_SECTION_BYTES {
        return Err(damaged(path, "a section claims too many bytes"));
    }
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, offset)
        .map_err(|e| damaged(path, &e.to_string()))?;
    Ok(bytes)
}

/// What each sealed part of one file is bound to.
#[derive(Clone, Copy)]
struct Binding {
    store_id: [u8; 16],
    file_id: [u8; 16],
    position: u64,
}

impl Binding {
    fn aad(&self, part: &str, number: u64) -> Vec<u8> {
        let mut aad = Vec::with_capacity(64);
        aad.extend_from_slice(b"anthill index cache 1 ");
        aad.extend_from_slice(part.as_bytes());
        aad.extend_from_slice(&self.store_id);
        aad.extend_from_slice(&self.file_id);
        aad.extend_from_slice(&self.position.to_le_bytes());
        aad.extend_from_slice(&number.to_le_bytes());
        aad
    }

    fn head(&self) -> Vec<u8> {
        self.aad("head", 0)
    }

    fn block(&self, number: usize) -> Vec<u8> {
        self.aad("block", number as u64)
    }
}

type Block = Arc<Vec<(String, Entry)>>;

/// The items of an open cache file, read a block at a time.
pub struct CachedItems {
    file: File,
    path: PathBuf,
    keys: Arc<StoreKeys>,
    binding: Binding,
    body_at: u64,
    count: usize,
    blocks: Vec<BlockRef>,
    /// Recently decoded blocks, newest last.
    recent: Mutex<Vec<(usize, Block)>>,
}

impl CachedItems {
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn get(&self, key: &str) -> Result<Option<Entry>> {
        if self.blocks.is_empty() {
            return Ok(None);
        }
        let block = self.block(block_of(key, self.blocks.len()))?;
        Ok(block
            .binary_search_by(|(k, _)| k.as_str().cmp(key))
            .ok()
            .map(|at| block[at].1.clone()))
    }

    pub fn for_each(&self, mut f: impl FnMut(&str, &Entry)) -> Result<()> {
        for number in 0..self.blocks.len() {
            for (key, entry) in self.read_block(number)?.iter() {
                f(key, entry);
            }
        }
        Ok(())
    }

    fn block(&self, number: usize) -> Result<Block> {
        let recent = self.recent.lock().expect("cache lock");
        if let Some((_, block)) = recent.iter().find(|(n, _)| *n == number) {
            return Ok(Arc::clone(block));
        }
        drop(recent);
        let block = self.read_block(number)?;
        let mut recent = self.recent.lock().expect("cache lock");
        if recent.len() == RECENT_BLOCKS {
            recent.remove(0);
        }
        recent.push((number, Arc::clone(&block)));
        Ok(block)
    }

    /// Reads, opens and decodes block `number`, checking that it holds what
    /// it should (sorted keys, each of this block).
    fn read_block(&self, number: usize) -> Result<Block> {
        let at = &self.blocks[number];
        let sealed = read_section(&self.file, &self.path, self.body_at + at.offset, at.len)?;
        let plain = crypto::open(
            self.keys.index(),
            &self.binding.block(number),
            &sealed,
            "index cache block",
        )
        .map_err(|_| damaged(&self.path, &format!("block {number} does not open")))?;
        let block: Vec<(String, Entry)> = from_bytes(&plain, "index cache block")?;
        let sorted = block.windows(2).all(|pair| pair[0].0 < pair[1].0);
        let placed = block
            .iter()
            .all(|(key, _)| block_of(key, self.blocks.len()) == number);
        if !sorted || !placed {
            return Err(damaged(
                &self.path,
                &format!("block {number} is out of order"),
            ));
        }
        Ok(Arc::new(block))
    }
}
