//! The harness: applies each operation to the map and to the model, checks
//! return values and stats after every step, and compares the whole
//! contents periodically and at the end.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;

use mapscope::{DefaultHashBuilder, Entry, GrowthKind, InstrumentedMap, MapStats};

use crate::checks::{
    assert_entries, check_contents, check_stats_alone, check_stats_step, expected_buckets, Expect,
    Model,
};
use crate::keys::{mix, Key};
use crate::ops::{KeyRef, Op};

pub(crate) struct Harness<K: Key, S: BuildHasher + Clone> {
    pub(crate) map: InstrumentedMap<K, u64, S>,
    pub(crate) model: Model<K>,
    /// The model's keys, in a deterministic order, for `KeyRef::Live`.
    pub(crate) order: Vec<K>,
    /// Each key's position in `order`.
    pub(crate) pos: HashMap<K, usize, DefaultHashBuilder>,
    pub(crate) space: u64,
    pub(crate) stats: MapStats,
    /// Operations applied, counting each element of a run.
    pub(crate) step: u64,
    pub(crate) next_full_check: u64,
    /// The top-level operation being applied, for failure messages.
    pub(crate) current: String,
    /// Whether a `shrink_to` may have queued halvings that have not all
    /// started yet (only `complete_growth` and `drain` surely end them).
    pub(crate) shrink_may_be_queued: bool,
}

impl<K: Key, S: BuildHasher + Clone> Harness<K, S> {
    pub(crate) fn new(map: InstrumentedMap<K, u64, S>, space: u64) -> Self {
        let stats = map.stats();
        let harness = Harness {
            map,
            model: Model::default(),
            order: Vec::new(),
            pos: HashMap::default(),
            space,
            stats,
            step: 0,
            next_full_check: 0,
            current: String::new(),
            shrink_may_be_queued: false,
        };
        check_stats_alone(&harness.stats, 0, &|| "a new map".into());
        harness
    }

    pub(crate) fn ctx(&self) -> String {
        format!(
            "step {} ({}); stats {:?}",
            self.step, self.current, self.stats
        )
    }

    pub(crate) fn resolve(&self, key: KeyRef) -> K {
        match key {
            KeyRef::Any(id) => K::from_id(id % self.space),
            KeyRef::Live(i) if !self.order.is_empty() => self.order[i % self.order.len()].clone(),
            KeyRef::Live(i) => K::from_id(i as u64 % self.space),
        }
    }

    // --- the model, keeping `order` in sync ---

    pub(crate) fn model_insert(&mut self, k: K, v: u64) -> Option<u64> {
        let old = self.model.insert(k.clone(), v);
        if old.is_none() {
            self.pos.insert(k.clone(), self.order.len());
            self.order.push(k);
        }
        old
    }

    pub(crate) fn model_remove(&mut self, k: &K) -> Option<u64> {
        let old = self.model.remove(k);
        if old.is_some() {
            let i = self.pos.remove(k).expect("order tracks the model");
            self.order.swap_remove(i);
            if let Some(moved) = self.order.get(i) {
                self.pos.insert(moved.clone(), i);
            }
        }
        old
    }

    pub(crate) fn model_clear(&mut self) {
        self.model.clear();
        self.order.clear();
        self.pos.clear();
    }

    pub(crate) fn model_resync_order(&mut self) {
        let model = &self.model;
        self.order.retain(|k| model.contains_key(k));
        self.pos = self
            .order
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), i))
            .collect();
    }

    // --- checks ---

    /// Runs after every operation (and every element of a run).
    pub(crate) fn after(&mut self, expect: Expect) {
        self.step += 1;
        let stats = self.map.stats();
        let ctx = || format!("{}; now {:?}", self.ctx(), stats);
        check_stats_alone(&stats, self.model.len(), &ctx);
        check_stats_step(&self.stats, &stats, expect, &ctx);
        assert_eq!(self.map.len(), self.model.len(), "len; {}", ctx());
        let capacity = match stats.buckets {
            0 => 0,
            1 => 8,
            n => 13 * (n / 2),
        };
        assert_eq!(self.map.capacity(), capacity, "capacity; {}", ctx());
        self.stats = stats;
        if self.step >= self.next_full_check {
            self.full_check();
        }
    }

    pub(crate) fn full_check(&mut self) {
        let ctx = || self.ctx();
        check_contents(&self.map, &self.model, self.space, &ctx);
        // Lookups never move anything.
        assert_eq!(
            self.map.stats(),
            self.stats,
            "a full check changed the stats"
        );
        // Every operation while that is cheap; then about one bucket visit
        // per operation.
        let chain = 1 + self.stats.max_overflow_chain as u64;
        let cost = self.model.len() as u64 * chain + 2 * self.stats.buckets as u64;
        self.next_full_check = self.step + if cost <= 256 { 1 } else { cost / 16 };
    }

    // --- operations ---

    pub(crate) fn apply(&mut self, op: &Op) {
        self.current = format!("{op:?}");
        match *op {
            Op::Insert(k, v) => {
                let k = self.resolve(k);
                self.insert(k, v);
            }
            Op::Get(k) => {
                let k = self.resolve(k);
                let want = self.model.get(&k).copied();
                assert_eq!(self.map.get(&k).copied(), want, "get; {}", self.ctx());
                assert_eq!(self.map.contains_key(&k), want.is_some(), "{}", self.ctx());
                match want {
                    Some(v) => {
                        assert_eq!(self.map.get_key_value(&k), Some((&k, &v)));
                        assert_eq!(self.map[&k], v);
                    }
                    None => assert_eq!(self.map.get_key_value(&k), None),
                }
                self.after(Expect::READ);
            }
            Op::GetMut(k, d) => {
                let k = self.resolve(k);
                let ctx = self.ctx();
                let want = self.model.get_mut(&k);
                let got = self.map.get_mut(&k);
                assert_eq!(got.as_deref(), want.as_deref(), "get_mut; {ctx}");
                if let (Some(got), Some(want)) = (got, want) {
                    *got ^= d;
                    *want ^= d;
                }
                self.after(Expect::READ);
            }
            Op::Remove(k) => {
                let k = self.resolve(k);
                self.remove(k, false);
            }
            Op::RemoveEntry(k) => {
                let k = self.resolve(k);
                self.remove(k, true);
            }
            Op::EntryOrInsert(k, v) => {
                let k = self.resolve(k);
                let had = self.model.get(&k).copied();
                let got = {
                    let slot = self.map.entry(k.clone()).or_insert(v);
                    let got = *slot;
                    *slot = slot.wrapping_add(1);
                    got
                };
                assert_eq!(got, had.unwrap_or(v), "or_insert; {}", self.ctx());
                self.model_insert(k, got.wrapping_add(1));
                self.after(Expect::keyed(had.is_none(), false, false));
            }
            Op::EntryAndModify(k, d) => {
                let k = self.resolve(k);
                let had = self.model.get(&k).copied();
                let got = *self
                    .map
                    .entry(k.clone())
                    .and_modify(|v| *v ^= d)
                    .or_insert(d);
                let want = had.map_or(d, |v| v ^ d);
                assert_eq!(got, want, "and_modify/or_insert; {}", self.ctx());
                self.model_insert(k, want);
                self.after(Expect::keyed(had.is_none(), false, false));
            }
            Op::EntryOrDefault(k) => {
                let k = self.resolve(k);
                let had = self.model.get(&k).copied();
                let ctx = self.ctx();
                let entry = self.map.entry(k.clone());
                assert_eq!(entry.key(), &k);
                let slot = entry.or_default();
                assert_eq!(*slot, had.unwrap_or(0), "or_default; {ctx}");
                *slot = slot.wrapping_add(7);
                self.model_insert(k, had.unwrap_or(0).wrapping_add(7));
                self.after(Expect::keyed(had.is_none(), false, false));
            }
            Op::EntryRemove(k, whole) => {
                let k = self.resolve(k);
                let had = self.model.get(&k).copied();
                let ctx = self.ctx();
                match self.map.entry(k.clone()) {
                    Entry::Occupied(entry) => {
                        assert_eq!(entry.key(), &k, "{ctx}");
                        assert_eq!(Some(*entry.get()), had, "occupied get; {ctx}");
                        let value = if whole {
                            let (key, value) = entry.remove_entry();
                            assert_eq!(key, k, "{ctx}");
                            value
                        } else {
                            entry.remove()
                        };
                        assert_eq!(Some(value), had, "OccupiedEntry::remove; {ctx}");
                    }
                    Entry::Vacant(entry) => {
                        assert_eq!(had, None, "vacant entry for a present key; {ctx}");
                        assert_eq!(entry.key(), &k, "{ctx}");
                        assert_eq!(entry.into_key(), k, "{ctx}");
                    }
                }
                self.model_remove(&k);
                self.after(Expect::keyed(false, false, had.is_some()));
            }
            Op::EntryInsert(k, v) => {
                let k = self.resolve(k);
                let had = self.model.get(&k).copied();
                let ctx = self.ctx();
                match self.map.entry(k.clone()) {
                    Entry::Occupied(mut entry) => {
                        assert_eq!(Some(*entry.get()), had, "{ctx}");
                        assert_eq!(Some(entry.insert(v)), had, "{ctx}");
                        assert_eq!(*entry.get(), v, "{ctx}");
                        *entry.get_mut() ^= 1;
                        assert_eq!(*entry.into_mut(), v ^ 1, "{ctx}");
                    }
                    Entry::Vacant(entry) => {
                        assert_eq!(had, None, "vacant entry for a present key; {ctx}");
                        let slot = entry.insert(v);
                        assert_eq!(*slot, v, "{ctx}");
                        *slot ^= 1;
                    }
                }
                self.model_insert(k, v ^ 1);
                self.after(Expect::keyed(had.is_none(), had.is_some(), false));
            }
            Op::Retain { seed, keep_eighths } => {
                let keep = |k: &K| mix(k.id() ^ seed) % 8 < u64::from(keep_eighths);
                let before = self.model.len();
                let mut visited = HashSet::new();
                self.map.retain(|k, v| {
                    assert!(visited.insert(k.clone()), "retain visited {k:?} twice");
                    if keep(k) {
                        *v ^= 1;
                        true
                    } else {
                        false
                    }
                });
                assert_eq!(
                    visited.len(),
                    before,
                    "retain visits every entry; {}",
                    self.ctx()
                );
                self.model.retain(|k, v| {
                    *v ^= 1;
                    keep(k)
                });
                self.model_resync_order();
                let removed = (before - self.model.len()) as u64;
                self.after(Expect::moves_nothing(removed));
            }
            Op::Iter => {
                let ctx = || self.ctx();
                check_contents(&self.map, &self.model, self.space, &ctx);
                let by_ref: usize = (&self.map).into_iter().count();
                assert_eq!(by_ref, self.model.len(), "{}", ctx());
                self.after(Expect::READ);
            }
            Op::IterMut { delta, values_only } => {
                let mut seen = 0;
                if values_only {
                    let values = self.map.values_mut();
                    assert_eq!(values.len(), self.model.len());
                    for v in values {
                        *v = v.wrapping_add(delta);
                        seen += 1;
                    }
                } else {
                    let mut keys = HashSet::new();
                    for (k, v) in &mut self.map {
                        assert!(keys.insert(k.clone()), "iter_mut yielded {k:?} twice");
                        *v = v.wrapping_add(delta);
                        seen += 1;
                    }
                }
                assert_eq!(seen, self.model.len(), "iter_mut count; {}", self.ctx());
                for v in self.model.values_mut() {
                    *v = v.wrapping_add(delta);
                }
                self.after(Expect::READ);
                self.full_check();
            }
            Op::KeysValues => {
                let ctx = || self.ctx();
                let keys = self
                    .map
                    .keys()
                    .map(|k| (k, self.model.get(k).copied().unwrap_or(!0)));
                assert_entries(keys, &self.model, "keys", &ctx);
                let mut values: Vec<u64> = self.map.values().copied().collect();
                values.sort_unstable();
                let mut want: Vec<u64> = self.model.values().copied().collect();
                want.sort_unstable();
                assert_eq!(values, want, "values; {}", self.ctx());
                assert_eq!(self.map.keys().len(), self.model.len());
                assert_eq!(self.map.values().len(), self.model.len());
                self.after(Expect::READ);
            }
            Op::Drain => {
                let len = self.model.len();
                let drain = self.map.drain();
                assert_eq!(drain.len(), len, "drain().len()");
                let got: Vec<(K, u64)> = drain.collect();
                let ctx = || self.ctx();
                assert_entries(got.iter().map(|(k, v)| (k, *v)), &self.model, "drain", &ctx);
                self.model_clear();
                self.after_reset(len as u64, true);
            }
            Op::DrainPart { eighths } => {
                let len = self.model.len();
                let take = len * usize::from(eighths) / 8;
                let mut seen = HashSet::new();
                {
                    let mut drain = self.map.drain();
                    for _ in 0..take {
                        let (k, v) = drain.next().expect("drain ended early");
                        assert_eq!(self.model.get(&k), Some(&v), "drained {k:?}");
                        assert!(seen.insert(k), "drain yielded a key twice");
                    }
                    assert_eq!(drain.len(), len - take, "drain remaining");
                }
                self.model_clear();
                self.after_reset(len as u64, true);
            }
            Op::Clear => {
                let len = self.model.len() as u64;
                let buckets = self.stats.buckets;
                self.map.clear();
                self.model_clear();
                assert_eq!(
                    self.map.stats().buckets,
                    buckets,
                    "clear keeps the array size"
                );
                self.after_reset(len, false);
            }
            Op::Shrink { min, complete } => {
                let before = self.stats;
                match min {
                    Some(min) => self.map.shrink_to(min),
                    None => self.map.shrink_to_fit(),
                }
                let len = self.model.len();
                if len == 0 && min.unwrap_or(0) == 0 && before.growth.is_none() {
                    let stats = self.map.stats();
                    assert_eq!(stats.buckets, 0, "an empty map releases its array");
                    assert_eq!(stats.memory_bytes, 0, "an empty map releases everything");
                }
                self.after(Expect::moves_nothing(0));
                if complete {
                    self.map.complete_growth();
                    self.after(Expect::default());
                    let stats = self.map.stats();
                    assert_eq!(stats.growth, None);
                    if before.buckets > 0 && stats.buckets > 0 {
                        let want = before
                            .buckets
                            .min(expected_buckets(len.max(min.unwrap_or(0))));
                        if self.shrink_may_be_queued {
                            // An earlier, lower target may still be queued
                            // and applies too, as if it had completed (std's
                            // `shrink_to` never grows either).
                            assert!(stats.buckets <= want, "shrink target; {}", self.ctx());
                        } else {
                            assert_eq!(stats.buckets, want, "shrink target; {}", self.ctx());
                        }
                    }
                }
                self.shrink_may_be_queued = !complete;
            }
            Op::CompleteGrowth => {
                let before = self.stats;
                self.map.complete_growth();
                self.shrink_may_be_queued = false;
                self.after(Expect::default());
                assert_eq!(self.stats.growth, None, "{}", self.ctx());
                if let Some(g) = before.growth {
                    let remaining = (g.old_buckets - g.evacuated_old_buckets) as u64;
                    assert!(
                        self.stats.evacuated_buckets_total - before.evacuated_buckets_total
                            >= remaining,
                        "complete_growth evacuates what was left; {}",
                        self.ctx()
                    );
                }
            }
            Op::SetAutoShrink(on) => {
                self.map.set_auto_shrink(on);
                assert_eq!(self.map.auto_shrink(), on);
                self.after(Expect::READ);
            }
            Op::Clone { adopt } => {
                let clone = self.map.clone();
                let ctx = || format!("clone: {}", self.ctx());
                check_contents(&clone, &self.model, self.space, &ctx);
                let mut a = clone.stats();
                let mut b = self.stats;
                a.memory_bytes = 0;
                b.memory_bytes = 0;
                assert_eq!(a, b, "a clone's stats; {}", ctx());
                assert!(clone == self.map, "clone == original; {}", ctx());
                assert_eq!(clone.auto_shrink(), self.map.auto_shrink());
                if adopt {
                    self.map = clone;
                    self.stats = self.map.stats();
                } else {
                    // The clone is independent of the original.
                    let mut clone = clone;
                    clone.insert(K::from_id(self.space), 1);
                    clone.clear();
                    assert!(!self.map.contains_key(&K::from_id(self.space)));
                }
                self.after(Expect::READ);
                self.full_check();
            }
            Op::InsertRun { start, count } => {
                for i in 0..count as u64 {
                    let k = K::from_id((start + i) % self.space);
                    self.insert(k, i);
                }
            }
            Op::RemoveRun { pick, count } => {
                for i in 0..count {
                    if self.order.is_empty() {
                        break;
                    }
                    let k = self.order[pick.wrapping_add(i * 7) % self.order.len()].clone();
                    self.remove(k, i % 2 == 1);
                }
            }
            Op::RemoveIdRun { start, count } => {
                for i in 0..count as u64 {
                    let k = K::from_id((start + i) % self.space);
                    self.remove(k, i % 2 == 1);
                }
            }
            Op::Churn { seed, count } => {
                for i in 0..count as u64 {
                    if !self.order.is_empty() {
                        let pick = mix(seed ^ i) as usize % self.order.len();
                        let k = self.order[pick].clone();
                        self.remove(k, false);
                    }
                    let k = K::from_id(mix(seed.wrapping_add(i)) % self.space);
                    self.insert(k, i);
                }
            }
            Op::Slide {
                start,
                width,
                steps,
            } => {
                for i in 0..steps {
                    let k = K::from_id((start + width + i) % self.space);
                    self.insert(k, i);
                    let k = K::from_id((start + i) % self.space);
                    self.remove(k, false);
                }
            }
            Op::Check => {
                self.full_check();
            }
        }
    }

    pub(crate) fn insert(&mut self, k: K, v: u64) {
        let want = self.model_insert(k.clone(), v);
        let got = self.map.insert(k, v);
        assert_eq!(got, want, "insert returned; {}", self.ctx());
        self.after(Expect::keyed(want.is_none(), want.is_some(), false));
    }

    pub(crate) fn remove(&mut self, k: K, whole: bool) {
        let want = self.model_remove(&k);
        if whole {
            let got = self.map.remove_entry(&k);
            assert_eq!(got, want.map(|v| (k, v)), "remove_entry; {}", self.ctx());
        } else {
            let got = self.map.remove(&k);
            assert_eq!(got, want, "remove; {}", self.ctx());
        }
        self.after(Expect::keyed(false, false, want.is_some()));
    }

    /// Checks after `clear` or `drain`: the map is empty, has no growth,
    /// and a drain released its arrays.
    pub(crate) fn after_reset(&mut self, removed: u64, released: bool) {
        if released {
            self.shrink_may_be_queued = false;
        }
        assert!(self.map.is_empty(), "{}", self.ctx());
        assert_eq!(self.map.iter().next(), None, "{}", self.ctx());
        let stats = self.map.stats();
        assert_eq!(stats.growth, None, "{}", self.ctx());
        if released {
            assert_eq!(
                stats.buckets,
                0,
                "drain releases the arrays; {}",
                self.ctx()
            );
        }
        self.after(Expect::moves_nothing(removed));
    }

    /// The final checks, consuming the map with `into_iter` (and a clone
    /// with `into_keys` and another with `into_values`).
    pub(crate) fn finish(mut self) {
        self.current = "finish".into();
        if std::env::var_os("MODEL_TRACE").is_some() {
            // What a case went through, to check that the strategies reach
            // the growths they are meant to.
            let s = self.map.stats();
            eprintln!(
                "TRACE steps={} peak={} buckets={} doublings={} same_size={} shrinks={} \
                 evacuated={} max_chain={}",
                self.step,
                s.peak_entries,
                s.buckets,
                s.growths[GrowthKind::Double],
                s.growths[GrowthKind::SameSize],
                s.growths[GrowthKind::Shrink],
                s.evacuated_buckets_total,
                s.max_overflow_chain
            );
        }
        self.full_check();
        let model = &self.model;
        let ctx = || "finish".to_string();
        let keys: Vec<K> = self.map.clone().into_keys().collect();
        let keys = keys
            .iter()
            .map(|k| (k, model.get(k).copied().unwrap_or(!0)));
        assert_entries(keys, model, "into_keys", &ctx);
        let mut values: Vec<u64> = self.map.clone().into_values().collect();
        values.sort_unstable();
        let mut want: Vec<u64> = model.values().copied().collect();
        want.sort_unstable();
        assert_eq!(values, want, "into_values");
        let iter = self.map.into_iter();
        assert_eq!(iter.len(), model.len(), "into_iter().len()");
        let got: Vec<(K, u64)> = iter.collect();
        assert_entries(got.iter().map(|(k, v)| (k, *v)), model, "into_iter", &ctx);
    }
}

/// Applies `ops` to `map` and to the model, checking as it goes.
pub(crate) fn run<K: Key, S: BuildHasher + Clone>(
    map: InstrumentedMap<K, u64, S>,
    space: u64,
    ops: &[Op],
) {
    let mut harness = Harness::new(map, space);
    for op in ops {
        harness.apply(op);
    }
    harness.finish();
}
