//! The entry API, shaped like `std::collections::hash_map::Entry`.

use std::fmt;
use std::hash::{BuildHasher, Hash};

use super::table::Slot;
use super::InstrumentedMap;

/// A view into a single entry of a map, which is either vacant or occupied.
/// Created by [`InstrumentedMap::entry`].
///
/// ```
/// let mut hits = mapscope::InstrumentedMap::new();
/// for path in ["/", "/login", "/"] {
///     *hits.entry(path).or_insert(0) += 1;
/// }
/// assert_eq!(hits["/"], 2);
/// ```
pub enum Entry<'a, K, V, S> {
    /// The key is present.
    Occupied(OccupiedEntry<'a, K, V, S>),
    /// The key is absent.
    Vacant(VacantEntry<'a, K, V, S>),
}

/// A view into an occupied entry. Part of [`Entry`].
pub struct OccupiedEntry<'a, K, V, S> {
    pub(crate) map: &'a mut InstrumentedMap<K, V, S>,
    pub(crate) slot: Slot,
}

/// A view into a vacant entry. Part of [`Entry`].
pub struct VacantEntry<'a, K, V, S> {
    pub(crate) map: &'a mut InstrumentedMap<K, V, S>,
    pub(crate) hash: u64,
    pub(crate) key: K,
    pub(crate) free: Option<Slot>,
}

impl<'a, K: Hash, V, S: BuildHasher> Entry<'a, K, V, S> {
    /// Inserts `default` if the entry is vacant; returns the value.
    pub fn or_insert(self, default: V) -> &'a mut V {
        match self {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => entry.insert(default),
        }
    }

    /// Inserts the result of `default` if the entry is vacant; returns the value.
    pub fn or_insert_with<F: FnOnce() -> V>(self, default: F) -> &'a mut V {
        match self {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => entry.insert(default()),
        }
    }

    /// Inserts `default(&key)` if the entry is vacant; returns the value.
    pub fn or_insert_with_key<F: FnOnce(&K) -> V>(self, default: F) -> &'a mut V {
        match self {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) => {
                let value = default(&entry.key);
                entry.insert(value)
            }
        }
    }

    /// Inserts `V::default()` if the entry is vacant; returns the value.
    pub fn or_default(self) -> &'a mut V
    where
        V: Default,
    {
        self.or_insert_with(V::default)
    }

    /// Calls `f` on the value if the entry is occupied.
    ///
    /// ```
    /// let mut map = mapscope::InstrumentedMap::new();
    /// map.entry("a").and_modify(|v| *v += 1).or_insert(1);
    /// map.entry("a").and_modify(|v| *v += 1).or_insert(1);
    /// assert_eq!(map["a"], 2);
    /// ```
    pub fn and_modify<F: FnOnce(&mut V)>(self, f: F) -> Self {
        match self {
            Entry::Occupied(mut entry) => {
                f(entry.get_mut());
                Entry::Occupied(entry)
            }
            vacant => vacant,
        }
    }

    /// The entry's key.
    pub fn key(&self) -> &K {
        match self {
            Entry::Occupied(entry) => entry.key(),
            Entry::Vacant(entry) => entry.key(),
        }
    }
}

impl<'a, K, V, S> OccupiedEntry<'a, K, V, S> {
    /// The key in the map.
    pub fn key(&self) -> &K {
        &self.map.raw.table.entry(self.slot).0
    }

    /// The value.
    pub fn get(&self) -> &V {
        &self.map.raw.table.entry(self.slot).1
    }

    /// The value, mutably, for the life of this entry.
    pub fn get_mut(&mut self) -> &mut V {
        &mut self.map.raw.table.entry_mut(self.slot).1
    }

    /// The value, mutably, for the life of the map borrow.
    pub fn into_mut(self) -> &'a mut V {
        &mut self.map.raw.table.entry_mut(self.slot).1
    }

    /// Replaces the value and returns the old one. Counts as an update.
    pub fn insert(&mut self, value: V) -> V {
        self.map.raw.overwrite(self.slot, value)
    }

    /// Removes the entry and returns its value.
    pub fn remove(self) -> V {
        self.remove_entry().1
    }

    /// Removes the entry and returns it.
    pub fn remove_entry(self) -> (K, V) {
        self.map.raw.take(self.slot)
    }
}

impl<'a, K: Hash, V, S: BuildHasher> VacantEntry<'a, K, V, S> {
    /// The key that would be inserted.
    pub fn key(&self) -> &K {
        &self.key
    }

    /// Gives back the key.
    pub fn into_key(self) -> K {
        self.key
    }

    /// Inserts the value and returns a reference to it. May start a growth,
    /// exactly like [`InstrumentedMap::insert`] of a new key.
    pub fn insert(self, value: V) -> &'a mut V {
        let InstrumentedMap { hash_builder, raw } = self.map;
        let hasher = |key: &K| hash_builder.hash_one(key);
        let slot = raw.insert_absent(self.hash, self.free, self.key, value, &hasher);
        &mut raw.table.entry_mut(slot).1
    }
}

impl<K: fmt::Debug, V: fmt::Debug, S> fmt::Debug for Entry<'_, K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Occupied(entry) => f.debug_tuple("Entry").field(entry).finish(),
            Entry::Vacant(entry) => f.debug_tuple("Entry").field(entry).finish(),
        }
    }
}

impl<K: fmt::Debug, V: fmt::Debug, S> fmt::Debug for OccupiedEntry<'_, K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OccupiedEntry")
            .field("key", self.key())
            .field("value", self.get())
            .finish()
    }
}

impl<K: fmt::Debug, V, S> fmt::Debug for VacantEntry<'_, K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("VacantEntry").field(&self.key).finish()
    }
}
