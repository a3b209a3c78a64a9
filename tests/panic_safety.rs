//! Panic safety (after hashbrown's `tests/hasher_unwind.rs`): a `Hash` or
//! `Eq` impl, or a `retain` predicate, that panics at any point of any
//! operation, including in the middle of an incremental evacuation, leaves
//! the map usable and exactly consistent with a `std::collections::HashMap`
//! model.
//!
//! The key type counts its `hash` and `eq` calls in thread-locals and panics
//! on the call a test arms. Every write hashes its key first and runs all
//! user code (its key's hash, the rehashing of evacuated keys, key
//! comparisons while probing) before it changes anything, so a write that
//! panics must have had no effect at all; the model is left untouched. A
//! `retain` that panics has removed exactly the entries its predicate
//! rejected before the panic.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;
use std::thread::LocalKey;

use mapscope::{Entry, GrowthKind, InstrumentedMap, MapStats};
use proptest::prelude::*;

// ---------------------------------------------------------------------------
// A key whose Hash and Eq panic on command.
// ---------------------------------------------------------------------------

/// Payload of the panics this file injects on purpose; any other panic
/// caught while an injected one is expected is a real failure and resumed.
struct Injected;

thread_local! {
    /// Which of `hash` or `eq` raised the last injected panic.
    static FIRED: Cell<Fired> = const { Cell::new(Fired::Nothing) };
    static HASH_CALLS: Cell<u64> = const { Cell::new(0) };
    /// The `HASH_CALLS` value whose call panics (`u64::MAX`: never).
    static HASH_PANIC_AT: Cell<u64> = const { Cell::new(u64::MAX) };
    static EQ_CALLS: Cell<u64> = const { Cell::new(0) };
    static EQ_PANIC_AT: Cell<u64> = const { Cell::new(u64::MAX) };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fired {
    Nothing,
    Hash,
    Eq,
}

fn tick(calls: &'static LocalKey<Cell<u64>>, panic_at: &'static LocalKey<Cell<u64>>, which: Fired) {
    let n = calls.get() + 1;
    calls.set(n);
    if n == panic_at.get() {
        panic_at.set(u64::MAX);
        FIRED.set(which);
        panic::panic_any(Injected);
    }
}

/// Panic on the `n`-th `hash` call from now (1 = the next one).
fn arm_hash(n: u64) {
    HASH_PANIC_AT.set(HASH_CALLS.get() + n);
}

/// Panic on the `n`-th `eq` call from now.
fn arm_eq(n: u64) {
    EQ_PANIC_AT.set(EQ_CALLS.get() + n);
}

fn disarm() {
    FIRED.set(Fired::Nothing);
    HASH_PANIC_AT.set(u64::MAX);
    EQ_PANIC_AT.set(u64::MAX);
}

fn armed() -> bool {
    HASH_PANIC_AT.get() != u64::MAX || EQ_PANIC_AT.get() != u64::MAX
}

#[derive(Clone, Copy, Debug)]
struct Key(u64);

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        tick(&HASH_CALLS, &HASH_PANIC_AT, Fired::Hash);
        state.write_u64(self.0);
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        tick(&EQ_CALLS, &EQ_PANIC_AT, Fired::Eq);
        self.0 == other.0
    }
}

impl Eq for Key {}

fn mix(mut x: u64) -> u64 {
    // splitmix64's finaliser.
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A deterministic hasher: the low 32 bits of the hash (the bucket index)
/// are the key's own low bits, so a test can aim keys at chosen buckets;
/// the high 32 bits (the tophash) are mixed.
#[derive(Clone, Copy, Default)]
struct LowBitsHasher(u64);

impl Hasher for LowBitsHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
    fn finish(&self) -> u64 {
        (mix(self.0) & 0xFFFF_FFFF_0000_0000) | (self.0 & 0xFFFF_FFFF)
    }
}

type Map = InstrumentedMap<Key, u64, BuildHasherDefault<LowBitsHasher>>;
/// The model: a std `HashMap` (with a fixed hasher, so that tests picking
/// "some existing key" pick the same one on every run).
type Model = HashMap<u64, u64, BuildHasherDefault<LowBitsHasher>>;

fn new_map() -> Map {
    Map::default()
}

/// Keeps the injected panics out of the test output; real ones still print.
fn quiet_injected_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !info.payload().is::<Injected>() {
                previous(info);
            }
        }));
    });
}

/// Runs `f`, then disarms; `Err(which)` if it panicked with [`Injected`],
/// raised by `which`. Any other panic (an assertion or an invariant check
/// inside the map) propagates.
fn catch<R>(f: impl FnOnce() -> R) -> Result<R, Fired> {
    quiet_injected_panics();
    FIRED.set(Fired::Nothing);
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    let fired = FIRED.get();
    disarm();
    match result {
        Ok(r) => Ok(r),
        Err(payload) if payload.is::<Injected>() => Err(fired),
        Err(payload) => panic::resume_unwind(payload),
    }
}

// ---------------------------------------------------------------------------
// Consistency checks.
// ---------------------------------------------------------------------------

fn check_stats(stats: &MapStats, len: usize, ctx: &str) {
    assert_eq!(stats.entries, len, "{ctx}: stats.entries");
    if let Some(growth) = stats.growth {
        assert!(
            growth.evacuated_old_buckets <= growth.old_buckets,
            "{ctx}: {growth:?}"
        );
        assert!(growth.old_buckets.is_power_of_two(), "{ctx}: {growth:?}");
    }
    assert!(stats.peak_entries >= len, "{ctx}: {stats:?}");
}

/// The map holds exactly the model's entries: same len, every model key
/// found with its value, iteration yields each model entry once and nothing
/// else, and the stats agree.
fn check(map: &Map, model: &Model, ctx: &str) {
    assert!(!armed(), "checks run disarmed");
    assert_eq!(map.len(), model.len(), "{ctx}: len");
    assert_eq!(map.is_empty(), model.is_empty(), "{ctx}: is_empty");
    check_stats(&map.stats(), model.len(), ctx);
    let mut seen = BTreeMap::new();
    for (k, v) in map.iter() {
        assert!(seen.insert(k.0, *v).is_none(), "{ctx}: key {} twice", k.0);
    }
    assert_eq!(map.iter().len(), model.len(), "{ctx}: iter().len()");
    let expected: BTreeMap<u64, u64> = model.iter().map(|(&k, &v)| (k, v)).collect();
    assert_eq!(seen, expected, "{ctx}: iterated entries");
    for (&k, &v) in model {
        assert_eq!(map.get(&Key(k)), Some(&v), "{ctx}: get({k})");
    }
}

/// [`check`], plus: a clone gives back every model entry exactly once
/// through `remove` (so no duplicate hides behind the one `get` finds), and
/// the clone's growth runs to completion.
fn deep_check(map: &Map, model: &Model, ctx: &str) {
    check(map, model, ctx);
    let mut copy = map.clone();
    check_stats(&copy.stats(), model.len(), ctx);
    for (&k, &v) in model {
        assert_eq!(copy.remove(&Key(k)), Some(v), "{ctx}: clone remove({k})");
        assert_eq!(
            copy.get(&Key(k)),
            None,
            "{ctx}: clone get({k}) after remove"
        );
    }
    assert!(copy.is_empty(), "{ctx}");
    assert_eq!(copy.iter().count(), 0, "{ctx}");
    copy.complete_growth();
    assert_eq!(copy.stats().growth, None, "{ctx}");
    let mut copy = map.clone();
    copy.complete_growth();
    assert_eq!(copy.stats().growth, None, "{ctx}");
    check(&copy, model, ctx);
}

/// Whatever happened before, the map still takes writes and finishes its
/// growths; consumes the map.
fn still_usable(mut map: Map, mut model: Model, ctx: &str) {
    for i in 0..300u64 {
        let k = 1 << 40 | i;
        assert_eq!(map.insert(Key(k), i), model.insert(k, i), "{ctx}");
        if i % 3 == 0 {
            let k = 1 << 40 | (i / 2);
            assert_eq!(map.remove(&Key(k)), model.remove(&k), "{ctx}");
        }
    }
    check(&map, &model, ctx);
    map.complete_growth();
    assert_eq!(map.stats().growth, None, "{ctx}");
    check(&map, &model, ctx);
    map.shrink_to_fit();
    map.complete_growth();
    check(&map, &model, ctx);
    let drained: BTreeMap<u64, u64> = map.drain().map(|(k, v)| (k.0, v)).collect();
    let expected: BTreeMap<u64, u64> = model.into_iter().collect();
    assert_eq!(drained, expected, "{ctx}: drained");
    assert!(map.is_empty());
}

// ---------------------------------------------------------------------------
// Operations, applied to the map and to the model.
// ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum Op {
    Insert(u64, u64),
    Remove(u64),
    Get(u64),
    /// `entry(k).and_modify(|v| *v += x).or_insert(x)`.
    EntryUpsert(u64, u64),
    /// Removes through an occupied entry.
    EntryRemove(u64),
    /// Keeps the keys with `mix(k ^ salt) % 3 != 0`, adding 1 to every
    /// value it visits; the predicate panics on its `panic_at`-th call.
    Retain {
        salt: u64,
        panic_at: Option<usize>,
    },
    ShrinkToFit,
    ShrinkTo(usize),
    CompleteGrowth,
    AutoShrink(bool),
    Clear,
}

impl Op {
    /// Whether the op's first `hash` call is of its own key.
    fn hashes_its_key(&self) -> bool {
        matches!(
            self,
            Op::Insert(..) | Op::Remove(_) | Op::Get(_) | Op::EntryUpsert(..) | Op::EntryRemove(_)
        )
    }
}

/// Where an injected panic landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Site {
    /// Hashing the key a write or lookup was given.
    KeyHash,
    /// Rehashing a stored key while evacuating an old bucket.
    Evacuation(GrowthKind),
    /// Rehashing, in the growth the very same write had just started.
    EvacuationJustStarted(GrowthKind),
    /// Rehashing inside `complete_growth`.
    CompleteGrowth(GrowthKind),
    /// Comparing keys while probing.
    Eq,
    /// The retain predicate.
    Retain,
}

fn growths_started(stats: &MapStats) -> u64 {
    stats.growths.iter().map(|(_, n)| n).sum::<u64>()
}

/// Applies `op` to both. The map's answers must match the model's; if the
/// map panics with an injected panic, the model keeps whatever the op is
/// allowed to have done by then (nothing, except for retain), and the site
/// of the panic is returned.
fn apply(map: &mut Map, model: &mut Model, op: &Op) -> Option<Site> {
    let hash_start = HASH_CALLS.get();
    let before = map.stats();
    let mut touched = Vec::new();
    let mut rejected = Vec::new();
    let result = catch(|| match *op {
        Op::Insert(k, v) => map.insert(Key(k), v),
        Op::Remove(k) => map.remove(&Key(k)),
        Op::Get(k) => map.get(&Key(k)).copied(),
        Op::EntryUpsert(k, x) => Some(
            *map.entry(Key(k))
                .and_modify(|v| *v = v.wrapping_add(x))
                .or_insert(x),
        ),
        Op::EntryRemove(k) => match map.entry(Key(k)) {
            Entry::Occupied(e) => Some(e.remove()),
            Entry::Vacant(e) => {
                assert_eq!(e.key().0, k);
                None
            }
        },
        Op::Retain { salt, panic_at } => {
            let mut calls = 0;
            map.retain(|k, v| {
                calls += 1;
                if Some(calls) == panic_at {
                    panic::panic_any(Injected);
                }
                *v = v.wrapping_add(1);
                touched.push(k.0);
                let keep = !mix(k.0 ^ salt).is_multiple_of(3);
                if !keep {
                    rejected.push(k.0);
                }
                keep
            });
            None
        }
        Op::ShrinkToFit => {
            map.shrink_to_fit();
            None
        }
        Op::ShrinkTo(n) => {
            map.shrink_to(n);
            None
        }
        Op::CompleteGrowth => {
            map.complete_growth();
            assert_eq!(map.stats().growth, None);
            None
        }
        Op::AutoShrink(on) => {
            map.set_auto_shrink(on);
            None
        }
        Op::Clear => {
            map.clear();
            None
        }
    });

    // Retain's effects stand whether or not it panicked: each entry it
    // visited was visited once, and the rejected ones are gone.
    if let Op::Retain { .. } = op {
        let mut sorted = touched.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), touched.len(), "retain visited a key twice");
        if result.is_ok() {
            assert_eq!(touched.len(), model.len(), "retain visits every entry");
        }
        for k in &touched {
            let v = model
                .get_mut(k)
                .expect("retain visited a key the model lacks");
            *v = v.wrapping_add(1);
        }
        for k in &rejected {
            model.remove(k);
        }
    }

    let answer = match result {
        Ok(answer) => answer,
        Err(fired) => {
            // The op did not happen: no counter moved (retain removed
            // exactly what its predicate rejected before the panic).
            let after = map.stats();
            assert_eq!(
                (after.inserts, after.updates, after.removes),
                (
                    before.inserts,
                    before.updates,
                    before.removes + rejected.len() as u64
                ),
                "{op:?} panicked but counted"
            );
            let hash_calls = HASH_CALLS.get() - hash_start;
            let site = match (op, fired) {
                (Op::Retain { .. }, _) => Site::Retain,
                (_, Fired::Eq) => Site::Eq,
                (_, Fired::Hash) if op.hashes_its_key() && hash_calls == 1 => Site::KeyHash,
                (_, Fired::Hash) => {
                    // Any other hash call rehashes a stored key during an
                    // evacuation, and the panic leaves that growth running.
                    let growth = after.growth.unwrap_or_else(|| {
                        panic!("{op:?}: a rehash panicked with no growth in progress")
                    });
                    if let Op::CompleteGrowth = op {
                        Site::CompleteGrowth(growth.kind)
                    } else if growths_started(&after) > growths_started(&before) {
                        Site::EvacuationJustStarted(growth.kind)
                    } else {
                        Site::Evacuation(growth.kind)
                    }
                }
                (_, Fired::Nothing) => unreachable!("an injected panic records its source"),
            };
            return Some(site);
        }
    };
    let expected = match *op {
        Op::Insert(k, v) => model.insert(k, v),
        Op::Remove(k) => model.remove(&k),
        Op::Get(k) => model.get(&k).copied(),
        Op::EntryUpsert(k, x) => {
            let v = model
                .entry(k)
                .and_modify(|v| *v = v.wrapping_add(x))
                .or_insert(x);
            Some(*v)
        }
        Op::EntryRemove(k) => model.remove(&k),
        Op::Clear => {
            model.clear();
            None
        }
        _ => None,
    };
    assert_eq!(answer, expected, "{op:?}");
    None
}

// ---------------------------------------------------------------------------
// Maps in every kind of growth.
// ---------------------------------------------------------------------------

/// A map and its model, grown by unarmed ops.
struct Sim {
    map: Map,
    model: Model,
    /// Every op applied, for the scripted sweeps.
    ops: Vec<Op>,
}

impl Sim {
    fn new() -> Sim {
        Sim {
            map: new_map(),
            model: Model::default(),
            ops: Vec::new(),
        }
    }

    fn op(&mut self, op: Op) {
        assert_eq!(apply(&mut self.map, &mut self.model, &op), None);
        self.ops.push(op);
    }

    fn growth(&self) -> Option<mapscope::Growth> {
        self.map.stats().growth
    }

    fn growing(&self, kind: GrowthKind) -> bool {
        self.growth().is_some_and(|g| g.kind == kind)
    }

    fn fork(&self) -> Sim {
        Sim {
            map: self.map.clone(),
            model: self.model.clone(),
            ops: Vec::new(),
        }
    }
}

/// A key aimed at `bucket` (for every table of at most 2^32 buckets).
fn aimed(bucket: u64, n: u64) -> u64 {
    (n + 1) << 32 | bucket
}

/// Mid-doubling: old array of 64 buckets, a few of them evacuated.
fn mid_doubling() -> Sim {
    let mut sim = Sim::new();
    for k in 0..416 {
        sim.op(Op::Insert(k, k));
    }
    sim.map.complete_growth();
    sim.op(Op::Insert(416, 416));
    let growth = sim.growth().expect("the 417th key doubles 64 buckets");
    assert_eq!((growth.kind, growth.old_buckets), (GrowthKind::Double, 64));
    for k in 0..5 {
        sim.op(Op::Insert(k, k + 1));
    }
    sim
}

/// Starts a same-size growth at 8 buckets: 33 keys put in bucket 0 and
/// removed, then 33 in bucket 1, leave 8 overflow buckets (the 33rd key of
/// a chain opens its 4th), so the next new key (aimed at bucket 5) starts a
/// same-size growth. The old bucket 1 still holds its chain of 33 keys.
fn start_same_size(sim: &mut Sim) {
    for k in 0..30 {
        sim.op(Op::Insert(k, k));
    }
    for k in (0..30).filter(|k| ![2, 3, 5].contains(k)) {
        sim.op(Op::Remove(k));
    }
    sim.op(Op::CompleteGrowth);
    assert_eq!(sim.map.stats().buckets, 8);
    for n in 0..33 {
        sim.op(Op::Insert(aimed(0, n), n));
    }
    for n in 0..33 {
        sim.op(Op::Remove(aimed(0, n)));
    }
    for n in 0..33 {
        sim.op(Op::Insert(aimed(1, n), n));
    }
    let stats = sim.map.stats();
    assert_eq!(
        (stats.growth, stats.overflow_buckets),
        (None, 8),
        "{stats:?}"
    );
    sim.op(Op::Insert(aimed(5, 0), 0));
    let growth = sim.growth().expect("a same-size growth");
    assert_eq!((growth.kind, growth.old_buckets), (GrowthKind::SameSize, 8));
    assert_eq!(sim.map.stats().buckets, 8);
}

fn mid_same_size() -> Sim {
    let mut sim = Sim::new();
    start_same_size(&mut sim);
    sim
}

/// Mid-shrink: 3_000 keys down to 100, then `shrink_to_fit` queues halvings
/// from 512 buckets to 16; the first one is under way.
fn mid_shrink() -> Sim {
    let mut sim = Sim::new();
    for k in 0..3_000 {
        sim.map.insert(Key(k), k);
        sim.model.insert(k, k);
    }
    sim.map.complete_growth();
    sim.map.retain(|k, _| k.0 < 100);
    sim.model.retain(|&k, _| k < 100);
    assert_eq!(sim.map.stats().buckets, 512);
    sim.op(Op::ShrinkToFit);
    assert!(sim.growing(GrowthKind::Shrink));
    for k in 0..3 {
        sim.op(Op::Remove(5_000 + k));
    }
    sim
}

// ---------------------------------------------------------------------------
// Focused tests.
// ---------------------------------------------------------------------------

type Sites = BTreeMap<Site, usize>;

fn calls(eq: bool) -> u64 {
    if eq {
        EQ_CALLS.get()
    } else {
        HASH_CALLS.get()
    }
}

/// For each hash (or eq) call `op` makes from `sim`'s state: on a clone,
/// panic at that call and check the clone; then apply `op` again, unarmed,
/// and the ops of `tail`, checking again. Finally applies `op` to `sim`
/// itself. Every call the op makes panics once.
fn panic_at_every_call_then(
    sim: &mut Sim,
    op: &Op,
    tail: &[Op],
    eq: bool,
    deep: bool,
    sites: &mut Sites,
) {
    let mut dry = sim.fork();
    let start = calls(eq);
    assert_eq!(apply(&mut dry.map, &mut dry.model, op), None);
    let total = calls(eq) - start;
    for n in 1..=total {
        let mut fork = sim.fork();
        if eq {
            arm_eq(n);
        } else {
            arm_hash(n);
        }
        let site = apply(&mut fork.map, &mut fork.model, op)
            .unwrap_or_else(|| panic!("{op:?} made {total} calls, but not a {n}th"));
        *sites.entry(site).or_default() += 1;
        let ctx = format!("{op:?} after a panic at call {n} ({site:?})");
        if deep {
            deep_check(&fork.map, &fork.model, &ctx);
        } else {
            check(&fork.map, &fork.model, &ctx);
        }
        for op in std::iter::once(op).chain(tail) {
            assert_eq!(apply(&mut fork.map, &mut fork.model, op), None);
        }
        check(
            &fork.map,
            &fork.model,
            &format!("{ctx}, then {} ops", tail.len() + 1),
        );
    }
    assert_eq!(apply(&mut sim.map, &mut sim.model, op), None);
}

fn panic_at_every_call(sim: &mut Sim, op: &Op, eq: bool, deep: bool, sites: &mut Sites) {
    panic_at_every_call_then(sim, op, &[], eq, deep, sites);
}

/// Writes through the growth in progress, and the halvings queued behind
/// it, until the map is down to `buckets`, every hash (or eq) call of every
/// write panicking once; then checks that nothing was lost or duplicated.
fn drive_growth_with_panics(mut sim: Sim, buckets: usize, eq: bool) -> Sites {
    let mut sites = Sites::new();
    let mut i = 0u64;
    while sim.growth().is_some() || sim.map.stats().buckets != buckets {
        // Alternate overwrites, inserts of new keys, removes and lookups.
        let nth = i as usize % sim.model.len().max(1);
        let existing = sim.model.keys().nth(nth).copied().unwrap_or(0);
        let op = match i % 4 {
            0 => Op::Insert(existing, i),
            1 => Op::Insert(7 << 48 | i, i),
            2 => Op::Remove(7 << 48 | (i - 1)),
            _ => Op::EntryUpsert(existing, 1),
        };
        panic_at_every_call(&mut sim, &op, eq, i.is_multiple_of(8), &mut sites);
        if i.is_multiple_of(4) {
            panic_at_every_call(&mut sim, &Op::Get(existing), eq, false, &mut sites);
        }
        i += 1;
        assert!(i < 100_000, "the growth never finished");
    }
    deep_check(&sim.map, &sim.model, "after the growth");
    still_usable(sim.map, sim.model, "after the growth");
    sites
}

#[test]
fn panic_hashing_the_key_changes_nothing() {
    for (name, make) in [
        (
            "no growth",
            (|| {
                let mut sim = Sim::new();
                for k in 0..100 {
                    sim.op(Op::Insert(k, k));
                }
                sim.map.complete_growth();
                sim
            }) as fn() -> Sim,
        ),
        ("mid-doubling", mid_doubling),
        ("mid-same-size", mid_same_size),
        ("mid-shrink", mid_shrink),
    ] {
        let mut sim = make();
        let before = sim.map.stats();
        let present = *sim.model.keys().next().unwrap();
        for op in [
            Op::Insert(1 << 60, 1),
            Op::Insert(present, 1),
            Op::Remove(present),
            Op::Remove(1 << 60),
            Op::Get(present),
            Op::EntryUpsert(present, 1),
            Op::EntryUpsert(1 << 60, 1),
            Op::EntryRemove(present),
        ] {
            arm_hash(1);
            let site = apply(&mut sim.map, &mut sim.model, &op);
            assert_eq!(site, Some(Site::KeyHash), "{name}: {op:?}");
            check(&sim.map, &sim.model, &format!("{name}: {op:?}"));
            let after = sim.map.stats();
            assert_eq!(after.growth, before.growth, "{name}: nothing evacuated");
            assert_eq!(
                (after.inserts, after.updates, after.removes),
                (before.inserts, before.updates, before.removes),
                "{name}: {op:?} did not happen"
            );
        }
        deep_check(&sim.map, &sim.model, name);
        still_usable(sim.map, sim.model, name);
    }
}

#[test]
fn panic_in_eq_while_probing_changes_nothing() {
    // Keys in one bucket whose tophashes are all equal, so probing compares
    // every one of them.
    let top = mix(aimed(3, 0)) >> 56;
    let keys: Vec<u64> = (0..)
        .map(|n| aimed(3, n))
        .filter(|&k| mix(k) >> 56 == top)
        .take(20)
        .collect();
    for (name, mut sim) in [
        ("no growth", Sim::new()),
        ("mid-doubling", mid_doubling()),
        ("mid-shrink", mid_shrink()),
    ] {
        for &k in &keys[..19] {
            sim.op(Op::Insert(k, k));
        }
        let mut sites = Sites::new();
        for op in [
            Op::Insert(keys[18], 1),
            Op::Insert(keys[19], 1),
            Op::EntryUpsert(keys[18], 1),
            Op::Get(keys[18]),
            Op::Remove(keys[18]),
            Op::Remove(keys[18]),
            Op::EntryRemove(keys[17]),
        ] {
            panic_at_every_call(&mut sim, &op, true, true, &mut sites);
        }
        assert!(sites[&Site::Eq] >= 5 * 17, "{name}: {sites:?}");
        deep_check(&sim.map, &sim.model, name);
        still_usable(sim.map, sim.model, name);
    }
}

#[test]
fn panic_mid_doubling_evacuation() {
    let sites = drive_growth_with_panics(mid_doubling(), 128, false);
    eprintln!("{sites:?}");
    assert!(
        sites[&Site::Evacuation(GrowthKind::Double)] > 300,
        "{sites:?}"
    );
    assert!(sites[&Site::KeyHash] > 30, "{sites:?}");
}

#[test]
fn panic_mid_same_size_evacuation() {
    let sites = drive_growth_with_panics(mid_same_size(), 8, false);
    eprintln!("{sites:?}");
    assert!(
        sites[&Site::Evacuation(GrowthKind::SameSize)] >= 33,
        "{sites:?}"
    );
}

#[test]
fn panic_mid_shrink_evacuation() {
    let sites = drive_growth_with_panics(mid_shrink(), 16, false);
    eprintln!("{sites:?}");
    assert!(
        sites[&Site::Evacuation(GrowthKind::Shrink)] > 100,
        "{sites:?}"
    );
    // Queued halvings start at a write, which then evacuates in them.
    assert!(
        sites[&Site::EvacuationJustStarted(GrowthKind::Shrink)] > 0,
        "{sites:?}"
    );
}

#[test]
fn panic_in_eq_mid_growth() {
    for (sim, buckets) in [
        (mid_doubling(), 128),
        (mid_same_size(), 8),
        (mid_shrink(), 16),
    ] {
        let sites = drive_growth_with_panics(sim, buckets, true);
        eprintln!("{sites:?}");
        assert!(sites[&Site::Eq] >= 5, "{sites:?}");
    }
}

#[test]
fn panic_right_after_a_write_starts_a_growth() {
    // The 417th key doubles 64 buckets: the insert starts the growth, then
    // panics rehashing the first old bucket. The growth stays, the key is
    // not inserted.
    for n in 2..=14 {
        let mut sim = Sim::new();
        for k in 0..416 {
            sim.op(Op::Insert(k, k));
        }
        sim.map.complete_growth();
        arm_hash(n);
        let site = apply(&mut sim.map, &mut sim.model, &Op::Insert(416, 416));
        assert_eq!(
            site,
            Some(Site::EvacuationJustStarted(GrowthKind::Double)),
            "n = {n}"
        );
        let stats = sim.map.stats();
        assert_eq!(stats.growths[GrowthKind::Double], 7);
        assert_eq!(sim.map.get(&Key(416)), None);
        check(&sim.map, &sim.model, &format!("n = {n}"));
        sim.op(Op::Insert(416, 416));
        deep_check(&sim.map, &sim.model, &format!("n = {n}"));
        still_usable(sim.map, sim.model, &format!("n = {n}"));
    }
}

#[test]
fn panic_in_complete_growth() {
    for (name, make) in [
        ("mid-doubling", mid_doubling as fn() -> Sim),
        ("mid-same-size", mid_same_size),
        ("mid-shrink", mid_shrink),
    ] {
        let mut sim = make();
        let mut sites = Sites::new();
        panic_at_every_call(&mut sim, &Op::CompleteGrowth, false, false, &mut sites);
        eprintln!("{name}: {sites:?}");
        assert!(sites.values().sum::<usize>() >= 33, "{name}: {sites:?}");
        assert!(
            sites.keys().all(|s| matches!(s, Site::CompleteGrowth(_))),
            "{sites:?}"
        );
        deep_check(&sim.map, &sim.model, name);
    }
}

#[test]
fn complete_growth_retried_after_panics_finishes() {
    for make in [mid_doubling as fn() -> Sim, mid_same_size, mid_shrink] {
        let mut sim = make();
        // Each retry gets one more hash call before it panics, so it
        // evacuates a little further than the last.
        let mut n = 1;
        while apply(&mut sim.map, &mut sim.model, &{
            arm_hash(n);
            Op::CompleteGrowth
        })
        .is_some()
        {
            check(&sim.map, &sim.model, &format!("retry {n}"));
            n += 1;
        }
        assert!(n > 5);
        assert_eq!(sim.growth(), None);
        deep_check(&sim.map, &sim.model, "retried");
        still_usable(sim.map, sim.model, "retried");
    }
}

#[test]
fn panic_in_retain_predicate() {
    for (name, make) in [
        (
            "no growth",
            (|| {
                let mut sim = Sim::new();
                for k in 0..300 {
                    sim.op(Op::Insert(k, k));
                }
                sim.map.complete_growth();
                sim
            }) as fn() -> Sim,
        ),
        ("mid-doubling", mid_doubling),
        ("mid-same-size", mid_same_size),
        ("mid-shrink", mid_shrink),
    ] {
        let base = make();
        let len = base.map.len();
        for panic_at in (1..=len).step_by(7).chain([len]) {
            let mut map = base.map.clone();
            let mut model = base.model.clone();
            let op = Op::Retain {
                salt: panic_at as u64,
                panic_at: Some(panic_at),
            };
            assert_eq!(apply(&mut map, &mut model, &op), Some(Site::Retain));
            let ctx = format!("{name}: retain panicking at call {panic_at}");
            check(&map, &model, &ctx);
            // Auto-shrink then retain again, with no panic.
            map.set_auto_shrink(true);
            let op = Op::Retain {
                salt: 99,
                panic_at: None,
            };
            assert_eq!(apply(&mut map, &mut model, &op), None);
            check(&map, &model, &ctx);
            if panic_at % 5 == 1 {
                deep_check(&map, &model, &ctx);
                still_usable(map, model, &ctx);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Every call of a whole workload.
// ---------------------------------------------------------------------------

/// A workload through every kind of growth: a same-size growth over a long
/// chain; doublings with overwrites, removes, lookups and entry writes, and
/// a `complete_growth` mid-doubling; queued halvings from `shrink_to_fit`
/// with a `retain` in the middle and a `complete_growth` near the end;
/// auto-shrink; `clear`.
fn script() -> Vec<Op> {
    let mut sim = Sim::new();
    start_same_size(&mut sim);
    let mut i = 0;
    while sim.growth().is_some() {
        sim.op(Op::Get(aimed(1, i % 33)));
        sim.op(Op::Insert(aimed(6, i), i));
        i += 1;
    }

    let mut completed = false;
    for k in 0..300 {
        sim.op(Op::Insert(k, k));
        if k % 5 == 0 {
            sim.op(Op::Insert(k / 2, k));
        }
        if k % 7 == 0 {
            sim.op(Op::Remove(k / 3));
        }
        if k % 11 == 0 {
            sim.op(Op::Get(k / 4));
        }
        if k % 13 == 0 {
            sim.op(Op::EntryUpsert(k / 2, 1));
        }
        if k % 17 == 0 {
            sim.op(Op::EntryRemove(k / 5));
        }
        if !completed
            && sim
                .growth()
                .is_some_and(|g| g.old_buckets >= 16 && g.evacuated_old_buckets >= 4)
        {
            sim.op(Op::CompleteGrowth);
            completed = true;
        }
    }
    assert!(completed);

    let mut keys: Vec<u64> = sim.model.keys().copied().collect();
    keys.sort_unstable();
    for &k in &keys[40..] {
        sim.op(Op::Remove(k));
    }
    sim.op(Op::ShrinkToFit);
    assert!(sim.growing(GrowthKind::Shrink));
    let (mut retained, mut completed) = (false, false);
    let mut i = 0;
    // 64 buckets, down to 8 for 40 keys: three halvings.
    assert_eq!(sim.growth().unwrap().old_buckets, 64);
    while sim.growth().is_some() || sim.map.stats().buckets > 8 {
        sim.op(Op::Insert(9 << 48 | i, i));
        sim.op(Op::Get(keys[i as usize % 40]));
        sim.op(Op::Remove(9 << 48 | i));
        let stats = sim.map.stats();
        if !retained && stats.growths[GrowthKind::Shrink] == 2 {
            sim.op(Op::Retain {
                salt: 1,
                panic_at: None,
            });
            retained = true;
        }
        if !completed && stats.growths[GrowthKind::Shrink] == 3 && stats.growth.is_some() {
            sim.op(Op::CompleteGrowth);
            completed = true;
        }
        i += 1;
    }
    assert!(retained && completed);

    sim.op(Op::AutoShrink(true));
    for k in 0..200 {
        sim.op(Op::Insert(8 << 48 | k, k));
    }
    for k in 0..190 {
        sim.op(Op::Remove(8 << 48 | k));
    }
    assert!(sim.growing(GrowthKind::Shrink), "{:?}", sim.map.stats());
    for k in 0..20 {
        sim.op(Op::EntryUpsert(8 << 48 | k, k));
    }
    sim.op(Op::AutoShrink(false));
    sim.op(Op::Clear);
    for k in 0..20 {
        sim.op(Op::Insert(k, k));
    }
    sim.ops
}

#[test]
fn panic_at_every_hash_and_eq_call_of_a_workload() {
    let script = script();
    let mut sim = Sim::new();
    let mut sites = Sites::new();
    for (i, op) in script.iter().enumerate() {
        if let Op::Retain { salt, .. } = *op {
            for panic_at in 1..=sim.map.len() {
                let mut fork = sim.fork();
                let armed = Op::Retain {
                    salt,
                    panic_at: Some(panic_at),
                };
                let site = apply(&mut fork.map, &mut fork.model, &armed);
                *sites.entry(site.expect("retain panics")).or_default() += 1;
                check(&fork.map, &fork.model, &format!("{armed:?}"));
            }
            assert_eq!(apply(&mut sim.map, &mut sim.model, op), None);
            continue;
        }
        let deep = i % 8 == 0;
        let tail = &script[i + 1..(i + 26).min(script.len())];
        panic_at_every_call_then(&mut sim.fork(), op, tail, false, deep, &mut sites);
        panic_at_every_call_then(&mut sim, op, tail, true, deep, &mut sites);
    }
    eprintln!("{} ops: {sites:?}", script.len());
    for site in [
        Site::KeyHash,
        Site::Eq,
        Site::Retain,
        Site::Evacuation(GrowthKind::Double),
        Site::Evacuation(GrowthKind::SameSize),
        Site::Evacuation(GrowthKind::Shrink),
        Site::EvacuationJustStarted(GrowthKind::Double),
        Site::EvacuationJustStarted(GrowthKind::SameSize),
        Site::EvacuationJustStarted(GrowthKind::Shrink),
        Site::CompleteGrowth(GrowthKind::Double),
        Site::CompleteGrowth(GrowthKind::Shrink),
    ] {
        assert!(sites.contains_key(&site), "no panic at {site:?}: {sites:?}");
    }
    deep_check(&sim.map, &sim.model, "end of the workload");
    still_usable(sim.map, sim.model, "end of the workload");
}

// ---------------------------------------------------------------------------
// Random workloads with random panics.
// ---------------------------------------------------------------------------

/// Where the next op panics, if anywhere.
#[derive(Clone, Copy, Debug)]
enum Arm {
    No,
    /// At the op's n-th hash call, if it makes that many.
    Hash(u64),
    /// At the op's n-th eq call, if it makes that many.
    Eq(u64),
}

fn arm_strategy() -> impl Strategy<Value = Arm> {
    prop_oneof![
        3 => Just(Arm::No),
        2 => (1..3u64).prop_map(Arm::Hash),
        3 => (2..20u64).prop_map(Arm::Hash),
        1 => (1..4u64).prop_map(Arm::Eq),
    ]
}

/// Ops on `keys` keys spaced `stride` apart (a stride of 64 puts every key
/// of a table of at most 64 buckets in bucket 0), inserting with weight
/// `inserts` against removes with weight `removes`.
fn op_strategy(keys: u64, stride: u64, inserts: u32, removes: u32) -> impl Strategy<Value = Op> {
    let key = move || (0..keys).prop_map(move |k| k * stride);
    prop_oneof![
        inserts => (key(), any::<u64>()).prop_map(|(k, v)| Op::Insert(k, v)),
        removes => key().prop_map(Op::Remove),
        3 => key().prop_map(Op::Get),
        2 => (key(), 0..100u64).prop_map(|(k, x)| Op::EntryUpsert(k, x)),
        removes / 2 => key().prop_map(Op::EntryRemove),
        1 => (any::<u64>(), proptest::option::of(1..1_000usize))
            .prop_map(|(salt, panic_at)| Op::Retain { salt, panic_at }),
        1 => Just(Op::ShrinkToFit),
        1 => (0..500usize).prop_map(Op::ShrinkTo),
        1 => Just(Op::CompleteGrowth),
        1 => any::<bool>().prop_map(Op::AutoShrink),
    ]
}

/// A growing phase, then a shrinking one, on the same keys.
fn workload_strategy() -> impl Strategy<Value = Vec<(Op, Arm)>> {
    (64..1_200u64, prop_oneof![Just(1u64), Just(8), Just(64)]).prop_flat_map(|(keys, stride)| {
        (
            prop::collection::vec(
                (op_strategy(keys, stride, 12, 3), arm_strategy()),
                100..1_000,
            ),
            prop::collection::vec(
                (op_strategy(keys, stride, 2, 12), arm_strategy()),
                100..1_000,
            ),
        )
            .prop_map(|(mut grow, shrink)| {
                grow.extend(shrink);
                grow
            })
    })
}

/// 64 cases, or `PROPTEST_CASES` (the sanitizer and memcheck jobs of
/// `.ci/run` run few).
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(64)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_workload_with_random_panics(steps in workload_strategy()) {
        let mut sim = Sim::new();
        let mut panics = 0;
        for (i, (op, arm)) in steps.iter().enumerate() {
            match *arm {
                Arm::No => {}
                Arm::Hash(n) => arm_hash(n),
                Arm::Eq(n) => arm_eq(n),
            }
            // An armed call the op does not reach is disarmed after it.
            if let Some(site) = apply(&mut sim.map, &mut sim.model, op) {
                panics += 1;
                check(&sim.map, &sim.model, &format!("step {i}: {op:?} panicked at {site:?}"));
            } else {
                assert_eq!(sim.map.len(), sim.model.len(), "step {i}: {op:?}");
                check_stats(&sim.map.stats(), sim.model.len(), &format!("step {i}"));
            }
        }
        prop_assert!(panics > 0 || steps.len() < 300);
        deep_check(&sim.map, &sim.model, "end");
        still_usable(sim.map, sim.model, "end");
    }
}
