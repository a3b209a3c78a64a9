//! Growth: when it starts, and the incremental evacuation that carries it out.
//!
//! This follows Go's `hashGrow`/`growWork`/`evacuate` (runtime/map.go before
//! Go 1.24) and adds halving, which uses the same machinery. A growth swaps
//! in a new, lazily materialised bucket array and keeps the old one; every
//! write then evacuates at most two old buckets: the one its key maps to, so
//! the write lands in the new array, and the one at the evacuation mark, so
//! the growth finishes within `old_buckets` writes. Lookups read an old
//! bucket until it is evacuated and never move anything.

use std::mem;
use std::time::{Duration, Instant};

use super::observe::FinishedGrowth;
use super::raw::RawMap;
use super::stats::GrowthKind;
use super::table::Table;
use super::tophash::is_evacuated;

/// How far one advance of the evacuation mark may scan, as in Go's
/// `advanceEvacuationMark`, so no single write scans the whole old array.
const MARK_SCAN_LIMIT: usize = 1024;

/// Go's load factor, `loadFactorNum / loadFactorDen` = 13 / 2: a doubling
/// starts when the average bucket would hold more than 6.5 entries. The one
/// definition: the growth trigger, [`Table`]'s `max_load` and the exported
/// `catalog::LOAD_FACTOR` (dashboards, docs) all derive from it.
pub(crate) const LOAD_FACTOR_NUM: usize = 13;
/// The denominator of the load factor; see [`LOAD_FACTOR_NUM`].
pub(crate) const LOAD_FACTOR_DEN: usize = 2;

/// Go's `overLoadFactor`: more than 8 entries and more than 6.5 per bucket.
/// `13 * (2^B / 2)` is Go's integer form of `6.5 * 2^B` (0 when `B == 0`).
#[inline]
pub(crate) fn over_load_factor(count: usize, log2: u8) -> bool {
    count > 8
        && (count as u128) > LOAD_FACTOR_NUM as u128 * ((1u128 << log2) / LOAD_FACTOR_DEN as u128)
}

/// Go's `tooManyOverflowBuckets`: as many overflow buckets as buckets.
///
/// Go compares its `noverflow` counter with `2^min(B, 15)`, but for
/// `B >= 16` that counter is approximate: `incrnoverflow` counts one in
/// `2^(B-15)` overflow allocations. Either way the threshold is about `2^B`
/// real overflow buckets; this counts exactly and compares with `2^B`.
/// (Comparing an exact count with `2^15` would start same-size growths on
/// plain inserts into tables past ~425k entries, where ~20% of buckets
/// overflow at full load; Go does not.)
#[inline]
pub(crate) fn too_many_overflow_buckets(overflow: usize, log2: u8) -> bool {
    overflow >= 1usize << log2
}

/// The smallest `B` whose table holds `count` entries without a doubling
/// (Go's `makemap` hint loop).
pub(crate) fn log2_for_capacity(count: usize) -> u8 {
    let mut log2 = 0u8;
    while over_load_factor(count, log2) {
        log2 += 1;
    }
    log2
}

/// The state of an evacuation in progress.
pub(crate) struct Evacuation<K, V> {
    pub(crate) old: Table<K, V>,
    pub(crate) kind: GrowthKind,
    /// Every old bucket below the mark is evacuated (Go's `nevacuate`).
    pub(crate) mark: usize,
    /// Old buckets evacuated, in or out of mark order.
    pub(crate) evacuated: usize,
    /// Old chunks below this index have been freed.
    freed_chunks: usize,
    pub(crate) started: Instant,
    pub(crate) entries_at_start: usize,
    pub(crate) helping_writes: u64,
    /// Time spent evacuating, measured only for an observed (registered)
    /// map, the only one whose finished growths report it: two clock reads
    /// per helping write would otherwise cost every insert during a growth.
    pub(crate) work: Duration,
    /// Whether `complete_growth` finished the work rather than writes.
    pub(crate) completed_explicitly: bool,
}

impl<K: Clone, V: Clone> Clone for Evacuation<K, V> {
    fn clone(&self) -> Self {
        Evacuation {
            old: self.old.clone(),
            kind: self.kind,
            mark: self.mark,
            evacuated: self.evacuated,
            freed_chunks: self.freed_chunks,
            started: self.started,
            entries_at_start: self.entries_at_start,
            helping_writes: self.helping_writes,
            work: self.work,
            completed_explicitly: self.completed_explicitly,
        }
    }
}

impl<K, V> Evacuation<K, V> {
    /// The old bucket `hash` maps to, if it has not been evacuated yet.
    #[inline]
    pub(crate) fn unevacuated(&self, hash: u64) -> Option<usize> {
        let index = hash as usize & self.old.mask();
        // Below the mark the old chunk may already be freed: never read it.
        if index < self.mark || is_evacuated(self.old.first_tophash(index)) {
            None
        } else {
            Some(index)
        }
    }
}

impl<K, V> RawMap<K, V> {
    /// The growth, if any, that inserting one more new key must start:
    /// Go's `mapassign` checks, in Go's order.
    #[inline]
    pub(crate) fn growth_needed(&self) -> Option<GrowthKind> {
        if self.growth.is_some() {
            None
        } else if self.len >= self.table.max_load {
            // Same as over_load_factor(len + 1, B), without the arithmetic.
            Some(GrowthKind::Double)
        } else if too_many_overflow_buckets(self.table.overflow_buckets, self.table.log2) {
            Some(GrowthKind::SameSize)
        } else {
            None
        }
    }

    /// Swaps in a new, unmaterialised bucket array and keeps the old one for
    /// incremental evacuation (Go's `hashGrow`). O(chunks), not O(buckets).
    #[cold]
    #[inline(never)]
    pub(crate) fn start_growth(&mut self, kind: GrowthKind) {
        debug_assert!(self.growth.is_none(), "a growth is already in progress");
        let log2 = self.table.log2;
        let new_log2 = match kind {
            GrowthKind::Double => log2 + 1,
            GrowthKind::SameSize => log2,
            GrowthKind::Shrink => log2 - 1,
        };
        let old = mem::replace(&mut self.table, Table::new(new_log2, false));
        let started = Instant::now();
        self.growth = Some(Evacuation {
            old,
            kind,
            mark: 0,
            evacuated: 0,
            freed_chunks: 0,
            started,
            entries_at_start: self.len,
            helping_writes: 0,
            work: Duration::ZERO,
            completed_explicitly: false,
        });
        self.counters.growths[kind.index()] += 1;
        if let Some(observer) = &self.observed.observer {
            observer.growth_started(&self.stats(), started);
        }
    }

    /// Go's `growWork`: evacuate the old bucket `hash` maps to, then the one
    /// at the mark. At most two old buckets per write.
    #[inline(never)]
    pub(crate) fn grow_work(&mut self, hash: u64, hasher: &impl Fn(&K) -> u64) {
        let Some(growth) = &mut self.growth else {
            return;
        };
        growth.helping_writes += 1;
        let started = self.observed.observer.is_some().then(Instant::now);
        let index = hash as usize & growth.old.mask();
        let mut done = self.evacuate(index, hasher);
        if !done {
            let mark = self.growth.as_ref().map_or(0, |g| g.mark);
            done = self.evacuate(mark, hasher);
        }
        if let (Some(started), Some(growth)) = (started, &mut self.growth) {
            growth.work += started.elapsed();
        }
        if done {
            self.finish_growth();
        }
    }

    /// Finishes the evacuation in progress, and any halvings queued behind it.
    pub(crate) fn complete_growth(&mut self, hasher: &impl Fn(&K) -> u64) {
        self.start_queued_shrink();
        while let Some(growth) = &mut self.growth {
            growth.completed_explicitly = true;
            let started = Instant::now();
            loop {
                let mark = self.growth.as_ref().map_or(0, |g| g.mark);
                if self.evacuate(mark, hasher) {
                    break;
                }
            }
            if let Some(growth) = &mut self.growth {
                growth.work += started.elapsed();
            }
            self.finish_growth();
            self.start_queued_shrink();
        }
        self.publish();
    }

    /// Moves every entry of old bucket `index`'s chain into the new array
    /// (Go's `evacuate`), then advances the mark if it pointed here. Returns
    /// whether every old bucket is now evacuated; the caller then finishes
    /// the growth.
    fn evacuate(&mut self, index: usize, hasher: &impl Fn(&K) -> u64) -> bool {
        let RawMap {
            table,
            growth,
            counters,
            scratch,
            ..
        } = self;
        let growth = growth
            .as_mut()
            .expect("invariant: evacuate runs only during a growth");
        let old = &mut growth.old;
        if index >= growth.mark && !is_evacuated(old.first_tophash(index)) {
            // Phase 1 runs the user's Hash impl and changes nothing, so a
            // panic there leaves the bucket whole and still findable.
            scratch.clear();
            old.chain_hashes(index, hasher, scratch);
            // Phase 2 runs no user code. Destination chunks are materialised
            // for every bucket this one maps to, whether or not it receives an
            // entry, so later lookups and writes there find it.
            let x = index & table.mask();
            table.materialize(x);
            if growth.kind == GrowthKind::Double {
                table.materialize(x + old.buckets());
            }
            old.evacuate_into(index, scratch, table);
            growth.evacuated += 1;
            counters.evacuated_buckets += 1;
        }
        if index == growth.mark {
            let stop = growth.mark + MARK_SCAN_LIMIT;
            let end = old.buckets();
            growth.mark += 1;
            while growth.mark < end
                && growth.mark != stop
                && is_evacuated(old.first_tophash(growth.mark))
            {
                growth.mark += 1;
            }
            growth.freed_chunks = old.free_chunks_below(growth.freed_chunks, growth.mark);
        }
        growth.mark == growth.old.buckets()
    }

    /// Drops the old array and records the growth.
    #[cold]
    fn finish_growth(&mut self) {
        let mut growth = self
            .growth
            .take()
            .expect("invariant: finish_growth runs only during a growth");
        debug_assert_eq!(growth.evacuated, growth.old.buckets());
        growth.old.forget_evacuated_arena();
        self.record_finished(&growth);
    }

    /// Ends a growth whose old array `clear`, `drain` or `into_iter` threw
    /// away, so observers see every growth that started also finish.
    /// Returns the old array.
    pub(crate) fn abandon_growth(&mut self) -> Option<Table<K, V>> {
        let growth = self.growth.take()?;
        self.shrink_target = None;
        self.record_finished(&growth);
        Some(growth.old)
    }

    fn record_finished(&mut self, growth: &Evacuation<K, V>) {
        let finished = Instant::now();
        let kind = growth.kind;
        self.counters.growth_nanos[kind.index()] +=
            finished.duration_since(growth.started).as_nanos() as u64;
        let finished = FinishedGrowth {
            kind,
            old_buckets: growth.old.buckets(),
            new_buckets: self.table.buckets(),
            entries_at_start: growth.entries_at_start,
            entries: self.len,
            started: growth.started,
            finished,
            helping_writes: growth.helping_writes,
            work: growth.work,
            completed_explicitly: growth.completed_explicitly,
            evacuated_old_buckets: growth.evacuated,
        };
        if let Some(observer) = &self.observed.observer {
            observer.growth_finished(&finished, &self.stats());
        }
    }

    /// Starts the next queued halving, if one is due. Called before a write
    /// helps, never from inside an evacuation: a write must find the bucket
    /// its key maps to evacuated in the growth it is about to write into.
    pub(crate) fn start_queued_shrink(&mut self) {
        if let (None, Some(target)) = (&self.growth, self.shrink_target) {
            let log2 = self.table.log2;
            if log2 > target && !over_load_factor(self.len, log2 - 1) {
                self.start_growth(GrowthKind::Shrink);
            } else {
                self.shrink_target = None;
            }
        }
    }

    /// Queues halvings down to the smallest table that holds
    /// `max(len, min_capacity)` entries, and starts the first one unless a
    /// growth is already running (it then starts when that one finishes).
    pub(crate) fn shrink_to(&mut self, min_capacity: usize) {
        if self.len == 0 && min_capacity == 0 && self.growth.is_none() {
            // Nothing to move: release the array outright.
            self.table = Table::unallocated();
            self.scratch = Vec::new();
            self.shrink_target = None;
            self.publish();
            return;
        }
        if !self.table.is_allocated() {
            return;
        }
        let target = log2_for_capacity(self.len.max(min_capacity));
        if target >= self.table.log2 {
            return;
        }
        self.shrink_target = Some(target);
        if self.growth.is_none() && !over_load_factor(self.len, self.table.log2 - 1) {
            self.start_growth(GrowthKind::Shrink);
        }
        self.publish();
    }

    /// The opt-in auto-shrink: halve once entries fall below 1/8 of slot
    /// capacity (`8 * 2^B` slots, so below `2^B` entries), the fill at which
    /// Redis shrinks its dicts. One halving at a time; the next remove after
    /// it finishes checks again.
    #[inline]
    pub(crate) fn maybe_auto_shrink(&mut self) {
        if self.auto_shrink
            && self.growth.is_none()
            && self.table.log2 > 0
            && self.len < self.table.buckets()
        {
            self.start_growth(GrowthKind::Shrink);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_factor_matches_go() {
        // B = 0: a single bucket holds 8 entries; the 9th doubles.
        assert!(!over_load_factor(8, 0));
        assert!(over_load_factor(9, 0));
        // B = 1: 6.5 * 2 = 13.
        assert!(!over_load_factor(13, 1));
        assert!(over_load_factor(14, 1));
        assert!(!over_load_factor(106_496, 14));
        assert!(over_load_factor(106_497, 14));
        assert_eq!(log2_for_capacity(0), 0);
        assert_eq!(log2_for_capacity(8), 0);
        assert_eq!(log2_for_capacity(9), 1);
        assert_eq!(log2_for_capacity(100_000), 14);
        for log2 in 0..40 {
            let max = super::super::table::max_load(log2);
            assert!(!over_load_factor(max, log2) && over_load_factor(max + 1, log2));
        }
    }

    #[test]
    fn overflow_threshold_is_one_overflow_bucket_per_bucket() {
        assert!(!too_many_overflow_buckets(3, 2));
        assert!(too_many_overflow_buckets(4, 2));
        // Go's approximate counter for B >= 16 amounts to 2^B, not 2^15.
        assert!(!too_many_overflow_buckets(1 << 15, 20));
        assert!(too_many_overflow_buckets(1 << 20, 20));
    }
}
