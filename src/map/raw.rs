//! `RawMap`: the bucket arrays, the growth in progress and the counters,
//! driven by precomputed hashes. It knows nothing about `Hash` or
//! `BuildHasher`; the safe map in `mod.rs` supplies hashes and key equality.

use std::mem;

use super::grow::{log2_for_capacity, Evacuation};
use super::observe::Observed;
use super::stats::{Growth, GrowthKind, MapStats, PerKind};
use super::table::{Probe, Slot, Table};
use super::tophash::tophash;

/// Lifetime counters. Plain integers bumped by the map's single owner: no
/// atomics and no shared writes on the hot path.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counters {
    pub(crate) peak: usize,
    pub(crate) inserts: u64,
    pub(crate) updates: u64,
    pub(crate) removes: u64,
    pub(crate) growths: [u64; 3],
    pub(crate) growth_nanos: [u64; 3],
    pub(crate) evacuated_buckets: u64,
}

pub(crate) struct RawMap<K, V> {
    /// The current bucket array; during a growth, the new one.
    pub(crate) table: Table<K, V>,
    pub(crate) growth: Option<Evacuation<K, V>>,
    pub(crate) len: usize,
    pub(crate) counters: Counters,
    pub(crate) auto_shrink: bool,
    /// The size (`B`) queued halvings stop at.
    pub(crate) shrink_target: Option<u8>,
    /// Who hears about this map, and when next.
    pub(crate) observed: Observed,
    /// Entries past which an insert reports `limit_exceeded` (builder's
    /// `max_entries`); `usize::MAX` when unset.
    pub(crate) max_entries: usize,
    /// Whether the map is past `max_entries` and has said so.
    over_limit: bool,
    /// Whether the write in progress already helped a growth.
    helped: bool,
    /// Reused buffer of hashes for the evacuation of one chain.
    pub(crate) scratch: Vec<u64>,
}

impl<K: Clone, V: Clone> Clone for RawMap<K, V> {
    fn clone(&self) -> Self {
        RawMap {
            table: self.table.clone(),
            growth: self.growth.clone(),
            len: self.len,
            counters: self.counters,
            auto_shrink: self.auto_shrink,
            shrink_target: self.shrink_target,
            // A clone is a new, unregistered map: two writers must never
            // publish into one registry slot.
            observed: Observed::none(),
            max_entries: self.max_entries,
            over_limit: false,
            helped: false,
            scratch: Vec::new(),
        }
    }
}

impl<K, V> Drop for RawMap<K, V> {
    fn drop(&mut self) {
        if let Some(observer) = self.observed.observer.take() {
            observer.dropped(&self.stats());
        }
    }
}

impl<K, V> RawMap<K, V> {
    /// Hands the current stats to the observer, if any.
    #[cold]
    pub(crate) fn publish(&self) {
        if let Some(observer) = &self.observed.observer {
            observer.publish(&self.stats());
        }
    }

    pub(crate) const fn new() -> Self {
        RawMap {
            table: Table::unallocated(),
            growth: None,
            len: 0,
            counters: Counters {
                peak: 0,
                inserts: 0,
                updates: 0,
                removes: 0,
                growths: [0; 3],
                growth_nanos: [0; 3],
                evacuated_buckets: 0,
            },
            auto_shrink: false,
            shrink_target: None,
            observed: Observed::none(),
            max_entries: usize::MAX,
            over_limit: false,
            helped: false,
            scratch: Vec::new(),
        }
    }

    pub(crate) fn with_capacity(capacity: usize) -> Self {
        let mut raw = Self::new();
        if capacity > 0 {
            raw.table = Table::new(log2_for_capacity(capacity), true);
        }
        raw
    }

    /// Finds an entry. Reads the old bucket while it is not evacuated;
    /// never moves anything.
    #[inline]
    pub(crate) fn get(&self, hash: u64, eq: impl FnMut(&K) -> bool) -> Option<&(K, V)> {
        if self.len == 0 {
            return None;
        }
        if let Some(growth) = &self.growth {
            if let Some(index) = growth.unevacuated(hash) {
                return growth.old.get(index, tophash(hash), eq);
            }
        }
        self.table
            .get(hash as usize & self.table.mask(), tophash(hash), eq)
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, hash: u64, eq: impl FnMut(&K) -> bool) -> Option<&mut (K, V)> {
        if self.len == 0 {
            return None;
        }
        let old_index = self.growth.as_ref().and_then(|g| g.unevacuated(hash));
        let (table, index) = match (old_index, &mut self.growth) {
            (Some(index), Some(growth)) => (&mut growth.old, index),
            _ => {
                let mask = self.table.mask();
                (&mut self.table, hash as usize & mask)
            }
        };
        table.get_mut(index, tophash(hash), eq)
    }

    /// What every write does first: allocate the first array, and help a
    /// growth in progress.
    #[inline]
    fn prepare_write(&mut self, hash: u64, hasher: &impl Fn(&K) -> u64) {
        if !self.table.is_allocated() {
            self.allocate();
        }
        if self.shrink_target.is_some() {
            self.start_queued_shrink();
        }
        self.helped = self.growth.is_some();
        if self.helped {
            self.grow_work(hash, hasher);
        }
    }

    #[cold]
    fn allocate(&mut self) {
        self.table = Table::new(0, true);
    }

    /// Counts a finished write, publishing every `publish_every` writes, so
    /// a publication includes the write that triggered it.
    #[inline]
    fn written(&mut self) {
        if self.observed.tick() {
            self.publish();
        }
    }

    /// Locates `hash`'s key for a write (insert or entry).
    #[inline]
    pub(crate) fn probe_for_write(
        &mut self,
        hash: u64,
        eq: impl FnMut(&K) -> bool,
        hasher: &impl Fn(&K) -> u64,
    ) -> Probe {
        self.prepare_write(hash, hasher);
        self.table
            .probe(hash as usize & self.table.mask(), tophash(hash), eq)
    }

    /// Inserts or overwrites. Returns the previous value of an existing key.
    #[inline]
    pub(crate) fn insert(
        &mut self,
        hash: u64,
        key: K,
        value: V,
        hasher: &impl Fn(&K) -> u64,
    ) -> Option<V>
    where
        K: Eq,
    {
        self.prepare_write(hash, hasher);
        if self.growth_needed().is_some() && !self.helped {
            // A new key starts a growth: find out whether it is new first.
            let index = hash as usize & self.table.mask();
            return match self.table.probe(index, tophash(hash), |k| *k == key) {
                Probe::Found(slot) => Some(self.overwrite(slot, value)),
                Probe::Vacant(free) => {
                    self.insert_absent(hash, free, key, value, hasher);
                    None
                }
            };
        }
        // No growth can start: one pass finds the key or stores it.
        let index = hash as usize & self.table.mask();
        match self.table.upsert(index, tophash(hash), key, value) {
            Some(old) => {
                self.counters.updates += 1;
                self.written();
                Some(old)
            }
            None => {
                self.inserted();
                self.written();
                None
            }
        }
    }

    pub(crate) fn overwrite(&mut self, slot: Slot, value: V) -> V {
        self.counters.updates += 1;
        let old = mem::replace(&mut self.table.entry_mut(slot).1, value);
        self.written();
        old
    }

    /// Stores a key known to be absent, whose chain `probe_for_write` just
    /// scanned. Starts a growth first if this new key needs one (Go's
    /// `mapassign`: only new keys, only when not already growing).
    #[inline]
    pub(crate) fn insert_absent(
        &mut self,
        hash: u64,
        mut free: Option<Slot>,
        key: K,
        value: V,
        hasher: &impl Fn(&K) -> u64,
    ) -> Slot {
        // A write that already helped a growth (which may have just
        // finished) leaves the next one to the next new key, so no write
        // evacuates more than two old buckets. The table is then one entry
        // past its load factor for one write.
        if let Some(kind) = self.growth_needed().filter(|_| !self.helped) {
            self.start_growth(kind);
            self.grow_work(hash, hasher);
            // The scanned chain belonged to the old array: let `place`
            // find the first free slot of the new one.
            free = None;
        }
        self.inserted();
        let index = hash as usize & self.table.mask();
        let slot = self.table.place(index, free, tophash(hash), key, value);
        self.written();
        slot
    }

    #[inline]
    pub(crate) fn remove(
        &mut self,
        hash: u64,
        eq: impl FnMut(&K) -> bool,
        hasher: &impl Fn(&K) -> u64,
    ) -> Option<(K, V)> {
        if self.len == 0 {
            return None;
        }
        self.prepare_write(hash, hasher);
        let index = hash as usize & self.table.mask();
        let Some(entry) = self.table.remove(index, tophash(hash), eq) else {
            self.written();
            return None;
        };
        self.removed();
        Some(entry)
    }

    /// The bookkeeping of a new key.
    #[inline]
    fn inserted(&mut self) {
        self.len += 1;
        self.counters.inserts += 1;
        if self.len > self.counters.peak {
            self.counters.peak = self.len;
        }
        // The one compare the limit costs per insert.
        if self.len > self.max_entries {
            self.limit_exceeded();
        }
    }

    #[cold]
    fn limit_exceeded(&mut self) {
        if !self.over_limit {
            self.over_limit = true;
            if let Some(observer) = &self.observed.observer {
                observer.limit_exceeded(&self.stats(), self.max_entries);
            }
        }
    }

    /// Removes the entry at a slot of the current array.
    pub(crate) fn take(&mut self, slot: Slot) -> (K, V) {
        let entry = self.table.take(slot);
        self.removed();
        entry
    }

    /// The bookkeeping of a removal from the current array.
    #[inline]
    fn removed(&mut self) {
        self.len -= 1;
        if self.over_limit && self.len <= self.max_entries {
            self.over_limit = false;
        }
        self.counters.removes += 1;
        self.maybe_auto_shrink();
        self.written();
    }

    /// Removes every entry; keeps the current array's size, drops the old one.
    pub(crate) fn clear(&mut self) {
        self.counters.removes += self.len as u64;
        self.len = 0;
        self.over_limit = false;
        let old = self.abandon_growth();
        let table = if self.table.is_allocated() {
            let log2 = self.table.log2;
            mem::replace(&mut self.table, Table::new(log2, true))
        } else {
            Table::unallocated()
        };
        self.publish();
        // The entries are dropped last, with the map already empty: a
        // panicking `Drop` leaks the entries after it and nothing else.
        drop((table, old));
    }

    /// Empties the map and hands its arrays to the caller (drain, into_iter).
    pub(crate) fn take_tables(&mut self) -> (Table<K, V>, Option<Table<K, V>>) {
        self.counters.removes += self.len as u64;
        self.len = 0;
        self.over_limit = false;
        self.shrink_target = None;
        let old = self.abandon_growth();
        let table = mem::replace(&mut self.table, Table::unallocated());
        self.publish();
        (table, old)
    }

    /// Keeps the entries `keep` accepts. Visits every entry once, wherever
    /// an evacuation has left it, and moves nothing.
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&K, &mut V) -> bool) {
        let RawMap {
            table,
            growth,
            len,
            counters,
            ..
        } = self;
        table.retain(&mut keep, len, &mut counters.removes);
        if let Some(growth) = growth {
            growth.old.retain(&mut keep, len, &mut counters.removes);
        }
        if self.len <= self.max_entries {
            self.over_limit = false;
        }
        self.maybe_auto_shrink();
        self.publish();
    }

    pub(crate) fn stats(&self) -> MapStats {
        let old = self.growth.as_ref().map(|g| &g.old);
        let overflow_buckets = self.table.overflow_buckets + old.map_or(0, |t| t.overflow_buckets);
        let memory_bytes = self.table.heap_bytes()
            + old.map_or(0, Table::heap_bytes)
            + self.scratch.capacity() * mem::size_of::<u64>();
        let buckets = if self.table.is_allocated() {
            self.table.buckets()
        } else {
            0
        };
        let seconds = |kind: GrowthKind| self.counters.growth_nanos[kind.index()] as f64 / 1e9;
        MapStats {
            entries: self.len,
            peak_entries: self.counters.peak,
            buckets,
            overflow_buckets,
            load_factor: if buckets == 0 {
                0.0
            } else {
                self.len as f64 / buckets as f64
            },
            memory_bytes,
            growth: self.growth.as_ref().map(|g| Growth {
                kind: g.kind,
                old_buckets: g.old.buckets(),
                evacuated_old_buckets: g.evacuated,
                entries_at_start: g.entries_at_start,
                helping_writes: g.helping_writes,
            }),
            growths: PerKind::from_fn(|kind| self.counters.growths[kind.index()]),
            growth_seconds: PerKind::from_fn(seconds),
            evacuated_buckets_total: self.counters.evacuated_buckets,
            inserts: self.counters.inserts,
            updates: self.counters.updates,
            removes: self.counters.removes,
            max_overflow_chain: self.table.max_chain().max(old.map_or(0, Table::max_chain)),
            #[cfg(test)]
            test_writes: self.counters.inserts + self.counters.updates + self.counters.removes,
        }
    }
}
