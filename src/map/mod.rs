//! The engine: a hash map laid out like the Go runtime's classic map, with
//! its growth and evacuation visible through [`InstrumentedMap::stats`].
//!
//! Layers, from the bottom:
//! - `tophash`: tophash bytes and eight-at-a-time matching;
//! - `table`: buckets, overflow chains, chunked bucket arrays (the crate's
//!   only `unsafe` code, behind a safe API);
//! - `grow`: when growth starts and the incremental evacuation;
//! - `raw`: a map driven by precomputed hashes, with the counters;
//! - this module: the safe, std-shaped [`InstrumentedMap`].

use std::borrow::Borrow;
use std::fmt;
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;
use std::ops::Index;

mod entry;
mod grow;
mod iter;
mod observe;
mod raw;
mod stats;
// The crate's one module with `unsafe` code: `MaybeUninit` slots whose
// occupancy is the tophash byte, behind a safe API (invariants at its top).
#[allow(unsafe_code)]
mod table;
mod tophash;

pub use entry::{Entry, OccupiedEntry, VacantEntry};
pub(crate) use grow::{LOAD_FACTOR_DEN, LOAD_FACTOR_NUM};
pub use iter::{Drain, IntoIter, IntoKeys, IntoValues, Iter, IterMut, Keys, Values, ValuesMut};
pub(crate) use stats::map_stats;
pub use stats::{Growth, GrowthKind, MapStats, PerKind};

pub(crate) use observe::{FinishedGrowth, Observer, DEFAULT_PUBLISH_EVERY};
use raw::RawMap;
use table::Probe;

/// The default hasher: foldhash, the fast seeded hash hashbrown uses. Each
/// map built with it gets its own per-map seed, like Go's `hash0`.
pub type DefaultHashBuilder = foldhash::fast::RandomState;

/// A hash map with Go's bucket layout and growth policy, whose internals are
/// observable.
///
/// - Buckets hold 8 slots, each with a tophash byte; full buckets chain
///   overflow buckets.
/// - Inserting a new key doubles the bucket array when the average load
///   would pass 6.5 entries per bucket, or starts a same-size growth when
///   overflow buckets pile up.
/// - Old buckets are evacuated incrementally, at most two per insert or
///   remove, and the new array is materialised in chunks as it is
///   evacuated into, so no single write pays for a whole resize.
/// - Unlike Go, the map can shrink: [`shrink_to_fit`](Self::shrink_to_fit),
///   [`shrink_to`](Self::shrink_to), or the opt-in
///   [`set_auto_shrink`](Self::set_auto_shrink).
///
/// The API follows `std::collections::HashMap`.
///
/// ```
/// use mapscope::InstrumentedMap;
///
/// let mut sessions = InstrumentedMap::new();
/// sessions.insert("alice", 3);
/// sessions.insert("bob", 5);
/// assert_eq!(sessions.get("alice"), Some(&3));
/// assert_eq!(sessions.remove("bob"), Some(5));
/// assert_eq!(sessions.len(), 1);
/// assert_eq!(sessions.stats().inserts, 2);
/// ```
pub struct InstrumentedMap<K, V, S = DefaultHashBuilder> {
    pub(crate) hash_builder: S,
    pub(crate) raw: RawMap<K, V>,
}

impl<K, V> InstrumentedMap<K, V, DefaultHashBuilder> {
    /// An empty map. Allocates nothing until the first insert.
    ///
    /// ```
    /// let map: mapscope::InstrumentedMap<u64, u64> = mapscope::InstrumentedMap::new();
    /// assert_eq!(map.stats().memory_bytes, 0);
    /// ```
    pub fn new() -> Self {
        Self::with_hasher(DefaultHashBuilder::default())
    }

    /// An empty map whose bucket array holds `capacity` entries without
    /// growing: the smallest `2^B` with `capacity <= 8` or
    /// `capacity <= 6.5 * 2^B`, as Go's `makemap` picks it.
    ///
    /// ```
    /// let mut map = mapscope::InstrumentedMap::with_capacity(1000);
    /// for i in 0..1000 {
    ///     map.insert(i, ());
    /// }
    /// assert_eq!(map.stats().growths(mapscope::GrowthKind::Double), 0);
    /// ```
    pub fn with_capacity(capacity: usize) -> Self {
        Self::with_capacity_and_hasher(capacity, DefaultHashBuilder::default())
    }
}

impl<K, V, S> InstrumentedMap<K, V, S> {
    /// An empty map that hashes with `hash_builder`.
    ///
    /// ```
    /// let map: mapscope::InstrumentedMap<u64, u64, std::hash::RandomState> =
    ///     mapscope::InstrumentedMap::with_hasher(std::hash::RandomState::new());
    /// assert!(map.is_empty());
    /// ```
    pub const fn with_hasher(hash_builder: S) -> Self {
        InstrumentedMap {
            hash_builder,
            raw: RawMap::new(),
        }
    }

    /// An empty map presized for `capacity` entries that hashes with `hash_builder`.
    pub fn with_capacity_and_hasher(capacity: usize, hash_builder: S) -> Self {
        InstrumentedMap {
            hash_builder,
            raw: RawMap::with_capacity(capacity),
        }
    }

    /// The map's hasher.
    pub fn hasher(&self) -> &S {
        &self.hash_builder
    }

    /// Live entries.
    pub fn len(&self) -> usize {
        self.raw.len
    }

    /// Whether the map has no entries.
    pub fn is_empty(&self) -> bool {
        self.raw.len == 0
    }

    /// How many entries the current bucket array holds before the next
    /// insert of a new key doubles it.
    ///
    /// ```
    /// let map = mapscope::InstrumentedMap::<u32, u32>::with_capacity(100);
    /// assert_eq!(map.capacity(), 104); // 16 buckets * 6.5
    /// ```
    pub fn capacity(&self) -> usize {
        if !self.raw.table.is_allocated() {
            0
        } else if self.raw.table.log2 == 0 {
            8
        } else {
            13 * (self.raw.table.buckets() / 2)
        }
    }

    /// A snapshot of the map's internals and lifetime counters. O(1).
    ///
    /// ```
    /// let mut map = mapscope::InstrumentedMap::new();
    /// map.insert(1, "one");
    /// map.insert(1, "uno");
    /// let stats = map.stats();
    /// assert_eq!((stats.inserts, stats.updates, stats.entries), (1, 1, 1));
    /// ```
    pub fn stats(&self) -> MapStats {
        self.raw.stats()
    }

    /// Turns the opt-in auto-shrink on or off (off by default). When on, a
    /// remove that leaves fewer entries than 1/8 of the slots (`8 * 2^B`)
    /// starts an incremental halving, the fill at which Redis shrinks.
    ///
    /// ```
    /// let mut map = mapscope::InstrumentedMap::new();
    /// map.set_auto_shrink(true);
    /// for i in 0..10_000 { map.insert(i, i); }
    /// for i in 0..9_990 { map.remove(&i); }
    /// assert!(map.stats().growths(mapscope::GrowthKind::Shrink) > 0);
    /// ```
    pub fn set_auto_shrink(&mut self, enabled: bool) {
        self.raw.auto_shrink = enabled;
    }

    /// Publishes the map's stats to its registry now. A registered map
    /// publishes by itself every `publish_every` writes (64 by default) and
    /// at every growth start and finish; call this after the last write of
    /// a burst so observers see exact counts. No-op for unregistered maps.
    ///
    /// ```
    /// let registry = mapscope::Registry::new();
    /// let mut map = mapscope::InstrumentedMap::builder("m").register(&registry).unwrap();
    /// map.insert(1, 1);
    /// map.publish();
    /// assert_eq!(registry.snapshot().map("m").unwrap().stats.inserts, 1);
    /// ```
    pub fn publish(&self) {
        self.raw.publish();
    }

    /// Connects the map to its registry entry and publishes once.
    pub(crate) fn attach(&mut self, observer: std::sync::Arc<dyn Observer>, publish_every: u32) {
        self.raw.observed.observer = Some(observer);
        self.raw.observed.publish_every = publish_every;
        self.raw.observed.until_publish = publish_every;
        self.raw.publish();
    }

    /// Whether auto-shrink is on.
    pub fn auto_shrink(&self) -> bool {
        self.raw.auto_shrink
    }

    /// An iterator over `(&K, &V)`, in no particular order.
    ///
    /// ```
    /// let map: mapscope::InstrumentedMap<_, _> = [(1, 10), (2, 20)].into_iter().collect();
    /// let sum: i32 = map.iter().map(|(_, v)| v).sum();
    /// assert_eq!(sum, 30);
    /// ```
    pub fn iter(&self) -> Iter<'_, K, V> {
        Iter::new(
            &self.raw.table,
            self.raw.growth.as_ref().map(|g| &g.old),
            self.raw.len,
        )
    }

    /// An iterator over `(&K, &mut V)`.
    pub fn iter_mut(&mut self) -> IterMut<'_, K, V> {
        let len = self.raw.len;
        IterMut::new(
            &mut self.raw.table,
            self.raw.growth.as_mut().map(|g| &mut g.old),
            len,
        )
    }

    /// An iterator over the keys.
    pub fn keys(&self) -> Keys<'_, K, V> {
        Keys { inner: self.iter() }
    }

    /// An iterator over the values.
    pub fn values(&self) -> Values<'_, K, V> {
        Values { inner: self.iter() }
    }

    /// An iterator over the values, mutably.
    pub fn values_mut(&mut self) -> ValuesMut<'_, K, V> {
        ValuesMut {
            inner: self.iter_mut(),
        }
    }

    /// Consumes the map, yielding its keys.
    pub fn into_keys(self) -> IntoKeys<K, V> {
        IntoKeys {
            inner: self.into_iter(),
        }
    }

    /// Consumes the map, yielding its values.
    pub fn into_values(self) -> IntoValues<K, V> {
        IntoValues {
            inner: self.into_iter(),
        }
    }

    /// Removes every entry and yields them. Unlike std, the bucket arrays
    /// are released too (the map starts over from `new()`); use
    /// [`clear`](Self::clear) to keep them. Entries not yielded are dropped
    /// with the iterator.
    ///
    /// ```
    /// let mut map: mapscope::InstrumentedMap<_, _> = (0..100).map(|i| (i, i)).collect();
    /// assert_eq!(map.drain().count(), 100);
    /// assert!(map.is_empty());
    /// ```
    pub fn drain(&mut self) -> Drain<'_, K, V> {
        let len = self.raw.len;
        let (table, old) = self.raw.take_tables();
        Drain {
            inner: IntoIter::new(table, old, len),
            marker: PhantomData,
        }
    }

    /// Keeps only the entries for which `keep` returns true. Moves nothing,
    /// and visits every entry once even during an evacuation.
    ///
    /// ```
    /// let mut map: mapscope::InstrumentedMap<_, _> = (0..10).map(|i| (i, i)).collect();
    /// map.retain(|k, _| k % 2 == 0);
    /// assert_eq!(map.len(), 5);
    /// ```
    pub fn retain<F: FnMut(&K, &mut V) -> bool>(&mut self, keep: F) {
        self.raw.retain(keep);
    }

    /// Removes every entry, keeping the current bucket array's size (an old
    /// array of a growth in progress is dropped).
    pub fn clear(&mut self) {
        self.raw.clear();
    }
}

impl<K, V, S> InstrumentedMap<K, V, S>
where
    K: Eq + Hash,
    S: BuildHasher,
{
    #[inline]
    fn hash<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.hash_builder.hash_one(key)
    }

    /// Splits the map into its raw part and a hasher closure for evacuation.
    #[inline]
    fn parts(&mut self) -> (&mut RawMap<K, V>, impl Fn(&K) -> u64 + '_) {
        let InstrumentedMap { hash_builder, raw } = self;
        (raw, move |key: &K| hash_builder.hash_one(key))
    }

    /// The value for `key`. Reads an old bucket while it awaits evacuation;
    /// never moves entries.
    ///
    /// ```
    /// let mut map = mapscope::InstrumentedMap::new();
    /// map.insert(String::from("k"), 1);
    /// assert_eq!(map.get("k"), Some(&1));
    /// assert_eq!(map.get("missing"), None);
    /// ```
    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get_key_value(key).map(|(_, v)| v)
    }

    /// The stored key and value for `key`.
    #[inline]
    pub fn get_key_value<Q>(&self, key: &Q) -> Option<(&K, &V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        self.raw
            .get(hash, |k| k.borrow() == key)
            .map(|(k, v)| (k, v))
    }

    /// The value for `key`, mutably.
    ///
    /// ```
    /// let mut map = mapscope::InstrumentedMap::new();
    /// map.insert(1, 1);
    /// *map.get_mut(&1).unwrap() += 1;
    /// assert_eq!(map[&1], 2);
    /// ```
    #[inline]
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        self.raw
            .get_mut(hash, |k| k.borrow() == key)
            .map(|(_, v)| v)
    }

    /// Whether `key` is present.
    #[inline]
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.get_key_value(key).is_some()
    }

    /// Inserts `value` for `key`, returning the previous value if the key was
    /// present. Inserting a new key may start a growth; during a growth the
    /// insert evacuates at most two old buckets.
    ///
    /// ```
    /// let mut map = mapscope::InstrumentedMap::new();
    /// assert_eq!(map.insert(7, "a"), None);
    /// assert_eq!(map.insert(7, "b"), Some("a"));
    /// ```
    #[inline]
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let hash = self.hash(&key);
        let (raw, hasher) = self.parts();
        raw.insert(hash, key, value, &hasher)
    }

    /// Removes `key`, returning its value. During a growth the remove
    /// evacuates at most two old buckets, whether or not the key is present.
    #[inline]
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.remove_entry(key).map(|(_, v)| v)
    }

    /// Removes `key`, returning the stored key and value.
    #[inline]
    pub fn remove_entry<Q>(&mut self, key: &Q) -> Option<(K, V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hash(key);
        let (raw, hasher) = self.parts();
        raw.remove(hash, |k| k.borrow() == key, &hasher)
    }

    /// The entry for `key`, for in-place manipulation. Counts as a write:
    /// during a growth it evacuates like an insert.
    pub fn entry(&mut self, key: K) -> Entry<'_, K, V, S> {
        let hash = self.hash(&key);
        let probe = {
            let (raw, hasher) = self.parts();
            raw.probe_for_write(hash, |k| *k == key, &hasher)
        };
        match probe {
            Probe::Found(slot) => Entry::Occupied(OccupiedEntry { map: self, slot }),
            Probe::Vacant(free) => Entry::Vacant(VacantEntry {
                map: self,
                hash,
                key,
                free,
            }),
        }
    }

    /// Starts shrinking to the smallest bucket array that holds the current
    /// entries: one incremental halving after another, driven by writes like
    /// any growth (or finished at once by [`complete_growth`](Self::complete_growth)).
    /// An empty map releases its array immediately.
    ///
    /// ```
    /// let mut map: mapscope::InstrumentedMap<_, _> = (0..100_000).map(|i| (i, i)).collect();
    /// map.retain(|k, _| k % 10 == 0);
    /// map.shrink_to_fit();
    /// map.complete_growth();
    /// assert_eq!(map.stats().buckets, 2048); // 10_000 entries <= 6.5 * 2048
    /// ```
    pub fn shrink_to_fit(&mut self) {
        self.shrink_to(0);
    }

    /// Like [`shrink_to_fit`](Self::shrink_to_fit), but keeps room for at
    /// least `min_capacity` entries.
    pub fn shrink_to(&mut self, min_capacity: usize) {
        self.raw.shrink_to(min_capacity);
    }

    /// Finishes the evacuation in progress (and any queued halvings) now.
    /// A Go map that stops being written keeps both bucket arrays forever;
    /// this is the way out.
    ///
    /// ```
    /// let mut map = mapscope::InstrumentedMap::new();
    /// for i in 0..1000 { map.insert(i, i); }
    /// map.complete_growth();
    /// assert_eq!(map.stats().growth, None);
    /// ```
    pub fn complete_growth(&mut self) {
        let (raw, hasher) = self.parts();
        raw.complete_growth(&hasher);
    }
}

impl<K, V, S> Clone for InstrumentedMap<K, V, S>
where
    K: Clone,
    V: Clone,
    S: Clone,
{
    fn clone(&self) -> Self {
        InstrumentedMap {
            hash_builder: self.hash_builder.clone(),
            raw: self.raw.clone(),
        }
    }
}

impl<K: fmt::Debug, V: fmt::Debug, S> fmt::Debug for InstrumentedMap<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K, V, S: Default> Default for InstrumentedMap<K, V, S> {
    fn default() -> Self {
        Self::with_hasher(S::default())
    }
}

impl<K, V, S> PartialEq for InstrumentedMap<K, V, S>
where
    K: Eq + Hash,
    V: PartialEq,
    S: BuildHasher,
{
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len()
            && self
                .iter()
                .all(|(key, value)| other.get(key).is_some_and(|v| *value == *v))
    }
}

impl<K, V, S> Eq for InstrumentedMap<K, V, S>
where
    K: Eq + Hash,
    V: Eq,
    S: BuildHasher,
{
}

impl<K, Q, V, S> Index<&Q> for InstrumentedMap<K, V, S>
where
    K: Eq + Hash + Borrow<Q>,
    Q: Eq + Hash + ?Sized,
    S: BuildHasher,
{
    type Output = V;

    /// # Panics
    /// When the key is absent, like `std::collections::HashMap`.
    fn index(&self, key: &Q) -> &V {
        self.get(key).expect("key not present in InstrumentedMap")
    }
}

impl<K, V, S> Extend<(K, V)> for InstrumentedMap<K, V, S>
where
    K: Eq + Hash,
    S: BuildHasher,
{
    fn extend<T: IntoIterator<Item = (K, V)>>(&mut self, iter: T) {
        for (key, value) in iter {
            self.insert(key, value);
        }
    }
}

impl<'a, K, V, S> Extend<(&'a K, &'a V)> for InstrumentedMap<K, V, S>
where
    K: Eq + Hash + Copy,
    V: Copy,
    S: BuildHasher,
{
    fn extend<T: IntoIterator<Item = (&'a K, &'a V)>>(&mut self, iter: T) {
        for (key, value) in iter {
            self.insert(*key, *value);
        }
    }
}

impl<K, V, S> FromIterator<(K, V)> for InstrumentedMap<K, V, S>
where
    K: Eq + Hash,
    S: BuildHasher + Default,
{
    fn from_iter<T: IntoIterator<Item = (K, V)>>(iter: T) -> Self {
        let iter = iter.into_iter();
        let mut map = Self::with_capacity_and_hasher(iter.size_hint().0, S::default());
        map.extend(iter);
        map
    }
}

impl<K, V, S> IntoIterator for InstrumentedMap<K, V, S> {
    type Item = (K, V);
    type IntoIter = IntoIter<K, V>;

    /// Consumes the map, yielding every entry once.
    fn into_iter(mut self) -> IntoIter<K, V> {
        let len = self.raw.len;
        let (table, old) = self.raw.take_tables();
        IntoIter::new(table, old, len)
    }
}

impl<'a, K, V, S> IntoIterator for &'a InstrumentedMap<K, V, S> {
    type Item = (&'a K, &'a V);
    type IntoIter = Iter<'a, K, V>;

    fn into_iter(self) -> Iter<'a, K, V> {
        self.iter()
    }
}

impl<'a, K, V, S> IntoIterator for &'a mut InstrumentedMap<K, V, S> {
    type Item = (&'a K, &'a mut V);
    type IntoIter = IterMut<'a, K, V>;

    fn into_iter(self) -> IterMut<'a, K, V> {
        self.iter_mut()
    }
}
