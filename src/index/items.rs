//! The items of an index: each key's [`Entry`], held in memory, or read on
//! demand from a local cache file ([`CachedItems`]) with the changes since
//! it was written held in memory on top.
//!
//! Lookups that reach the cache file read one block of it, so they can fail
//! (a damaged file): they return `Result`. An index without a cache file
//! never fails them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::cache::CachedItems;
use super::{Entry, MOST_PRESIZED};
use crate::error::Result;

/// A map of keys to entries (see the module header).
#[derive(Clone, Default)]
pub struct Items {
    /// Entries changed since `base` was written (`None`: removed from it),
    /// or every entry when there is no base.
    changes: HashMap<String, Option<Entry>>,
    base: Option<Arc<CachedItems>>,
    len: usize,
}

impl Items {
    /// The items of `base`, with no change yet.
    pub fn from_cache(base: Arc<CachedItems>) -> Self {
        Self {
            changes: HashMap::new(),
            len: base.len(),
            base: Some(base),
        }
    }

    /// Whether entries are read from a cache file.
    pub fn is_cached(&self) -> bool {
        self.base.is_some()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, key: &str) -> Result<Option<Entry>> {
        match (self.changes.get(key), &self.base) {
            (Some(changed), _) => Ok(changed.clone()),
            (None, Some(base)) => base.get(key),
            (None, None) => Ok(None),
        }
    }

    pub fn contains_key(&self, key: &str) -> Result<bool> {
        match (self.changes.get(key), &self.base) {
            (Some(changed), _) => Ok(changed.is_some()),
            (None, Some(base)) => Ok(base.get(key)?.is_some()),
            (None, None) => Ok(false),
        }
    }

    /// The entry of `key` to change in place (copied from the cache file
    /// into memory first, if it is there).
    pub fn get_mut(&mut self, key: &str) -> Result<Option<&mut Entry>> {
        if !self.changes.contains_key(key) {
            let Some(base) = &self.base else {
                return Ok(None);
            };
            let Some(entry) = base.get(key)? else {
                return Ok(None);
            };
            self.changes.insert(key.to_owned(), Some(entry));
        }
        Ok(self.changes.get_mut(key).and_then(Option::as_mut))
    }

    /// Sets the entry of `key`; returns the one it replaced.
    pub fn insert(&mut self, key: String, entry: Entry) -> Result<Option<Entry>> {
        let old = match &self.base {
            None => self.changes.insert(key, Some(entry)).flatten(),
            Some(base) => {
                let from_base = if self.changes.contains_key(&key) {
                    None
                } else {
                    base.get(&key)?
                };
                let changed = self.changes.insert(key, Some(entry)).flatten();
                changed.or(from_base)
            }
        };
        if old.is_none() {
            self.len += 1;
        }
        Ok(old)
    }

    /// Removes the entry of `key`; returns it.
    pub fn remove(&mut self, key: &str) -> Result<Option<Entry>> {
        let old = match (self.changes.remove(key), &self.base) {
            (Some(changed), None) => changed,
            (Some(changed), Some(_)) => {
                // The base may hold the key: keep it hidden.
                self.changes.insert(key.to_owned(), None);
                changed
            }
            (None, Some(base)) => {
                let old = base.get(key)?;
                if old.is_some() {
                    self.changes.insert(key.to_owned(), None);
                }
                old
            }
            (None, None) => None,
        };
        if old.is_some() {
            self.len -= 1;
        }
        Ok(old)
    }

    /// Calls `f` with every key and entry, in no order.
    pub fn for_each(&self, mut f: impl FnMut(&str, &Entry)) -> Result<()> {
        if let Some(base) = &self.base {
            base.for_each(|key, entry| {
                if !self.changes.contains_key(key) {
                    f(key, entry);
                }
            })?;
        }
        self.for_each_in_memory(f);
        Ok(())
    }

    /// Calls `f` with every key and entry held in memory (all of them
    /// without a cache file; the changes since it with one).
    pub fn for_each_in_memory(&self, mut f: impl FnMut(&str, &Entry)) {
        for (key, entry) in &self.changes {
            if let Some(entry) = entry {
                f(key, entry);
            }
        }
    }

    /// Every entry, by reference: only once all are held in memory (after
    /// `load_all`, which building the allocator's map does).
    pub fn in_memory(&self) -> Result<impl Iterator<Item = (&String, &Entry)>> {
        if self.base.is_some() {
            return Err(crate::error::Error::internal(
                "index entries read before they were loaded into memory",
            ));
        }
        Ok(self
            .changes
            .iter()
            .filter_map(|(key, entry)| entry.as_ref().map(|entry| (key, entry))))
    }

    /// Every key, in no order.
    pub fn keys(&self) -> Result<Vec<String>> {
        let mut keys = Vec::with_capacity(self.len);
        self.for_each(|key, _| keys.push(key.to_owned()))?;
        Ok(keys)
    }

    /// Moves every entry into memory and lets go of the cache file: a writer
    /// changes many entries, each of which would otherwise read a block.
    pub fn load_all(&mut self) -> Result<()> {
        let Some(base) = self.base.take() else {
            return Ok(());
        };
        let mut all = HashMap::with_capacity(self.len);
        let loaded = base.for_each(|key, entry| {
            if !self.changes.contains_key(key) {
                all.insert(key.to_owned(), Some(entry.clone()));
            }
        });
        if let Err(error) = loaded {
            self.base = Some(base);
            return Err(error);
        }
        all.extend(self.changes.drain().filter(|(_, entry)| entry.is_some()));
        self.changes = all;
        Ok(())
    }

    fn sorted(&self) -> Result<BTreeMap<String, Entry>> {
        let mut all = BTreeMap::new();
        self.for_each(|key, entry| {
            all.insert(key.to_owned(), entry.clone());
        })?;
        Ok(all)
    }
}

impl PartialEq for Items {
    /// Same keys and entries, wherever they are held; a cache file that
    /// cannot be read equals nothing.
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && matches!((self.sorted(), other.sorted()), (Ok(a), Ok(b)) if a == b)
    }
}

impl Eq for Items {}

impl std::fmt::Debug for Items {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Items")
            .field("len", &self.len)
            .field("changes", &self.changes.len())
            .field("cached", &self.base.is_some())
            .finish()
    }
}

/// Written as a map of keys to entries, as an index checkpoint holds them.
impl Serialize for Items {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::{Error as _, SerializeMap};
        let mut map = serializer.serialize_map(Some(self.len))?;
        let mut failed = None;
        let read = self.for_each(|key, entry| {
            if failed.is_none()
                && let Err(error) = map.serialize_entry(key, entry)
            {
                failed = Some(error);
            }
        });
        if let Some(error) = failed {
            return Err(error);
        }
        read.map_err(S::Error::custom)?;
        map.end()
    }
}

/// Read with room for all entries from the start (see [`MOST_PRESIZED`]).
impl<'de> Deserialize<'de> for Items {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Items;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of keys to entries")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut access: A,
            ) -> std::result::Result<Items, A::Error> {
                let room = access.size_hint().unwrap_or(0).min(MOST_PRESIZED);
                let mut changes = HashMap::with_capacity(room);
                while let Some((key, entry)) = access.next_entry::<String, Entry>()? {
                    changes.insert(key, Some(entry));
                }
                Ok(Items {
                    len: changes.len(),
                    changes,
                    base: None,
                })
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}
