//! Model-based property tests: random sequences of operations are applied
//! both to an [`InstrumentedMap`] and to a `std::collections::HashMap` (the
//! model). After every operation the return values and the stats
//! invariants are checked; periodically (after every operation while the
//! map is small) and at the end the whole contents are compared: `len`,
//! iteration, `get` of every model key, and absent keys.
//!
//! The operations cover the whole std-shaped API (insert, update, get,
//! get_mut, remove, remove_entry, every entry method, retain, iter,
//! iter_mut, keys, values, values_mut, full and abandoned drains, clear,
//! shrink_to_fit, shrink_to, complete_growth, set_auto_shrink, clone,
//! into_iter, into_keys, into_values), plus runs of inserts, removes,
//! random churn and sliding windows.
//!
//! The sequences run over small and large `u64` key spaces and over `String`
//! keys, with the default hasher and with degenerate hashers built here
//! (constant, `% 4`, few distinct tophash bytes, top byte only, blocks of
//! consecutive keys) that force long overflow chains, tophash collisions
//! and same-size growth. Runs of thousands of operations push the
//! large-space maps through many doublings, multi-chunk bucket arrays and
//! shrink halvings.
//!
//! Every shrunk failure found here is kept as a named test in
//! `tests/regressions.rs`.
//!
//! `MODEL_CASES_SCALE=10 cargo test --release --test model` runs ten times
//! as many cases, for a longer hunt; `MODEL_TRACE=1` (with `--nocapture`)
//! prints what each case went through (peak size, growths of each kind).

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::hash::{BuildHasher, Hash, Hasher};

use mapscope::{DefaultHashBuilder, Entry, GrowthKind, InstrumentedMap, MapStats};
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, RngAlgorithm};

// ---------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------

/// A key type the harness can build from, and map back to, a numeric id.
trait Key: Clone + Eq + Hash + Ord + Debug {
    fn from_id(id: u64) -> Self;
    fn id(&self) -> u64;
}

impl Key for u64 {
    fn from_id(id: u64) -> Self {
        id
    }
    fn id(&self) -> u64 {
        *self
    }
}

impl Key for String {
    fn from_id(id: u64) -> Self {
        format!("key-{id}")
    }
    fn id(&self) -> u64 {
        self["key-".len()..].parse().expect("a harness-made key")
    }
}

/// splitmix64's finaliser: a cheap, well-mixing bijection.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

// ---------------------------------------------------------------------------
// Degenerate hashers
// ---------------------------------------------------------------------------

/// How a [`Degenerate`] hasher throws entropy away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Entropy {
    /// Every key hashes to 0: one bucket, one tophash, the longest chains.
    /// (No same-size growth: one chain never has as many overflow buckets
    /// as a table sized for its entries has buckets.)
    Constant,
    /// `hash % 4`: four buckets at most, and every tophash is the same.
    Mod4,
    /// Well-spread low bits (buckets) but only three distinct top bytes,
    /// so most slots of a bucket share a tophash and key equality decides.
    FewTops,
    /// Only the top byte varies: every key in bucket 0, tophash filtering
    /// still works.
    TopOnly,
    /// `u64` keys hash as `key >> shift` (mixed), so each block of
    /// `2^shift` consecutive keys shares one bucket and one tophash. Churn
    /// that moves from block to block leaves overflow buckets behind in
    /// bucket after bucket: the way to same-size growth.
    Blocks(u8),
}

/// A `BuildHasher` that runs FNV-1a over the key's bytes, mixes, and then
/// degrades the result according to its [`Entropy`].
#[derive(Clone, Copy, Debug)]
struct Degenerate(Entropy);

impl BuildHasher for Degenerate {
    type Hasher = DegenerateHasher;
    fn build_hasher(&self) -> DegenerateHasher {
        DegenerateHasher {
            entropy: self.0,
            state: 0xcbf2_9ce4_8422_2325,
        }
    }
}

/// The hasher a [`Degenerate`] builds.
#[derive(Debug)]
struct DegenerateHasher {
    entropy: Entropy,
    state: u64,
}

impl Hasher for DegenerateHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.state ^= u64::from(b);
            self.state = self.state.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        match self.entropy {
            Entropy::Blocks(shift) => self.write(&(n >> shift).to_le_bytes()),
            _ => self.write(&n.to_le_bytes()),
        }
    }

    fn finish(&self) -> u64 {
        let h = mix(self.state);
        match self.entropy {
            Entropy::Constant => 0,
            Entropy::Mod4 => h % 4,
            Entropy::FewTops => (h & 0x00ff_ffff_ffff_ffff) | (((h >> 56) % 3) << 56),
            Entropy::TopOnly => h & 0xff00_0000_0000_0000,
            Entropy::Blocks(_) => h,
        }
    }
}

// ---------------------------------------------------------------------------
// Operations
// ---------------------------------------------------------------------------

/// Which key an operation uses.
#[derive(Clone, Copy, Debug)]
enum KeyRef {
    /// Key `id % space`: usually absent in a large space.
    Any(u64),
    /// The `i % len`-th live key (in the model's deterministic key order),
    /// so updates and removes hit in large spaces too. Falls back to
    /// `Any(i)` when the model is empty.
    Live(usize),
}

#[derive(Clone, Debug)]
enum Op {
    /// `insert`: of a new key with `Any`, an update with `Live`.
    Insert(KeyRef, u64),
    /// `get`, `contains_key`, `get_key_value` and `Index`.
    Get(KeyRef),
    /// `get_mut`, then xor the value with the operand.
    GetMut(KeyRef, u64),
    Remove(KeyRef),
    RemoveEntry(KeyRef),
    /// `entry(k).or_insert(v)`, then add 1 through the returned reference.
    EntryOrInsert(KeyRef, u64),
    /// `entry(k).and_modify(|v| *v ^= d).or_insert(d)`.
    EntryAndModify(KeyRef, u64),
    /// `*entry(k).or_default() += 7`.
    EntryOrDefault(KeyRef),
    /// Occupied: `OccupiedEntry::remove` (or `remove_entry` when the flag
    /// is set). Vacant: `VacantEntry::into_key`.
    EntryRemove(KeyRef, bool),
    /// Occupied: `OccupiedEntry::insert`. Vacant: `VacantEntry::insert`.
    EntryInsert(KeyRef, u64),
    /// `retain`, keeping about `keep_eighths / 8` of the keys (chosen by
    /// `mix(id ^ seed)`) and flipping the low bit of the kept values.
    Retain {
        seed: u64,
        keep_eighths: u8,
    },
    /// `iter`, compared in full with the model.
    Iter,
    /// `iter_mut` (or `values_mut`), adding `delta` to every value.
    IterMut {
        delta: u64,
        values_only: bool,
    },
    /// `keys` and `values`, compared in full with the model.
    KeysValues,
    /// A full `drain`.
    Drain,
    /// A `drain` dropped after yielding `len * eighths / 8` entries.
    DrainPart {
        eighths: u8,
    },
    Clear,
    /// `shrink_to(min)` (`shrink_to_fit` when `min` is `None`), then
    /// `complete_growth` if `complete`.
    Shrink {
        min: Option<usize>,
        complete: bool,
    },
    CompleteGrowth,
    SetAutoShrink(bool),
    /// `clone`, checked against the model; with `adopt` the harness carries
    /// on with the clone and drops the original.
    Clone {
        adopt: bool,
    },
    /// Inserts keys `start, start + 1, ..` (mod the key space), each one
    /// checked like a single `Insert`.
    InsertRun {
        start: u64,
        count: usize,
    },
    /// Removes `count` live keys, each one checked like a single `Remove`.
    RemoveRun {
        pick: usize,
        count: usize,
    },
    /// Removes keys `start, start + 1, ..` (mod the key space), present or
    /// not, each one checked like a single `Remove`.
    RemoveIdRun {
        start: u64,
        count: usize,
    },
    /// `count` rounds of removing a live key and inserting a random one:
    /// churn at a steady size, which leaves overflow buckets behind until
    /// a same-size growth compacts them.
    Churn {
        seed: u64,
        count: usize,
    },
    /// A sliding window over consecutive keys, as a FIFO cache sees them:
    /// `steps` rounds of inserting key `start + width + i` and removing key
    /// `start + i` (mod the key space). Leaves overflow buckets behind in
    /// bucket after bucket, until a same-size growth compacts them.
    Slide {
        start: u64,
        width: u64,
        steps: u64,
    },
    /// A full comparison with the model.
    Check,
}

/// The mix of operations a run draws from.
#[derive(Clone, Copy, Debug)]
enum Profile {
    /// Everything, with single-key operations dominating.
    Mixed,
    /// Insert-heavy with long insert and remove runs and rare resets:
    /// reaches thousands of entries, multi-chunk arrays and shrinks.
    Growth,
    /// Mostly sliding windows and churn at a steady size: same-size growth.
    Churn,
}

fn key_ref(space: u64) -> impl Strategy<Value = KeyRef> {
    prop_oneof![
        3 => (0..space).prop_map(KeyRef::Any),
        2 => any::<usize>().prop_map(KeyRef::Live),
    ]
}

fn op_strategy(space: u64, profile: Profile, max_run: usize) -> impl Strategy<Value = Op> {
    let k = move || key_ref(space);
    let v = any::<u64>;
    // (single-key writes, lookups, bulk, resets, runs)
    let (w, r, b, z, runs) = match profile {
        Profile::Mixed => (4, 2, 1, 1, 1),
        Profile::Growth => (8, 2, 2, 1, 6),
        Profile::Churn => (1, 1, 1, 1, 8),
    };
    prop_oneof![
        12 * w => (k(), v()).prop_map(|(k, v)| Op::Insert(k, v)),
        2 * w => (any::<usize>(), v()).prop_map(|(i, v)| Op::Insert(KeyRef::Live(i), v)),
        2 * r + 1 => k().prop_map(Op::Get),
        r + 1 => (k(), v()).prop_map(|(k, v)| Op::GetMut(k, v)),
        5 * w => k().prop_map(Op::Remove),
        w => k().prop_map(Op::RemoveEntry),
        w => (k(), v()).prop_map(|(k, v)| Op::EntryOrInsert(k, v)),
        w => (k(), v()).prop_map(|(k, v)| Op::EntryAndModify(k, v)),
        w => k().prop_map(Op::EntryOrDefault),
        w => (k(), any::<bool>()).prop_map(|(k, f)| Op::EntryRemove(k, f)),
        w => (k(), v()).prop_map(|(k, v)| Op::EntryInsert(k, v)),
        2 * b => (any::<u64>(), 0..=8u8)
            .prop_map(|(seed, keep_eighths)| Op::Retain { seed, keep_eighths }),
        b => Just(Op::Iter),
        b => (v(), any::<bool>())
            .prop_map(|(delta, values_only)| Op::IterMut { delta, values_only }),
        b => Just(Op::KeysValues),
        z => Just(Op::Drain),
        z => (0..8u8).prop_map(|eighths| Op::DrainPart { eighths }),
        z => Just(Op::Clear),
        2 * b => (proptest::option::of(0..4 * max_run), any::<bool>())
            .prop_map(|(min, complete)| Op::Shrink { min, complete }),
        2 * b => Just(Op::CompleteGrowth),
        2 * b => any::<bool>().prop_map(Op::SetAutoShrink),
        b => any::<bool>().prop_map(|adopt| Op::Clone { adopt }),
        2 * runs => (0..space, 0..=max_run)
            .prop_map(|(start, count)| Op::InsertRun { start, count }),
        runs => (any::<usize>(), 0..=max_run)
            .prop_map(|(pick, count)| Op::RemoveRun { pick, count }),
        runs => (0..space, 0..=max_run)
            .prop_map(|(start, count)| Op::RemoveIdRun { start, count }),
        2 * runs => (any::<u64>(), 0..=max_run)
            .prop_map(|(seed, count)| Op::Churn { seed, count }),
        2 * runs => (0..space, 0..=(max_run as u64).min(space), 0..=4 * max_run as u64)
            .prop_map(|(start, width, steps)| Op::Slide { start, width, steps }),
        b => Just(Op::Check),
    ]
}

fn ops(
    space: u64,
    profile: Profile,
    max_run: usize,
    len: std::ops::Range<usize>,
) -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op_strategy(space, profile, max_run), len)
}

// ---------------------------------------------------------------------------
// The harness
// ---------------------------------------------------------------------------

/// What an operation may do to the stats.
#[derive(Clone, Copy, Debug, Default)]
struct Expect {
    /// The stats must not change at all (lookups, iteration, `iter_mut`).
    unchanged: bool,
    /// Exact deltas of the lifetime counters.
    inserts: u64,
    updates: u64,
    removes: u64,
    /// The most old buckets the operation may evacuate; `None`: no bound.
    max_evacuated: Option<u64>,
    /// The operation inserted a new key: a doubling or a same-size growth
    /// must have started if the map needed one.
    inserted_new: bool,
}

impl Expect {
    const READ: Expect = Expect {
        unchanged: true,
        inserts: 0,
        updates: 0,
        removes: 0,
        max_evacuated: Some(0),
        inserted_new: false,
    };

    /// A single-key write (insert, remove, entry): at most two old buckets.
    fn write() -> Expect {
        Expect {
            max_evacuated: Some(2),
            ..Expect::default()
        }
    }

    /// A write that the model says inserted a new key, updated one, or
    /// removed one.
    fn keyed(inserted: bool, updated: bool, removed: bool) -> Expect {
        Expect {
            inserts: u64::from(inserted),
            updates: u64::from(updated),
            removes: u64::from(removed),
            inserted_new: inserted,
            ..Expect::write()
        }
    }

    /// A bulk operation that moves no entry (retain, clear, drain, shrink).
    fn moves_nothing(removes: u64) -> Expect {
        Expect {
            removes,
            max_evacuated: Some(0),
            ..Expect::default()
        }
    }
}

/// Go's `overLoadFactor`.
fn over_load_factor(count: usize, buckets: usize) -> bool {
    count > 8 && count > 13 * (buckets / 2)
}

/// The smallest `2^B` with `n <= 8` or `n <= 6.5 * 2^B`.
fn expected_buckets(n: usize) -> usize {
    let mut buckets = 1;
    while over_load_factor(n, buckets) {
        buckets *= 2;
    }
    buckets
}

/// Invariants every stats snapshot satisfies on its own.
fn check_stats_alone(stats: &MapStats, len: usize, ctx: &dyn Fn() -> String) {
    assert_eq!(stats.entries, len, "entries == len; {}", ctx());
    assert!(stats.peak_entries >= stats.entries, "peak; {}", ctx());
    assert_eq!(
        stats.inserts - stats.removes,
        len as u64,
        "inserts - removes == len; {}",
        ctx()
    );
    assert!(
        stats.max_overflow_chain <= stats.overflow_buckets,
        "longest chain <= overflow buckets; {}",
        ctx()
    );
    if stats.buckets == 0 {
        assert_eq!(stats.entries, 0, "no array, no entries; {}", ctx());
        assert_eq!(stats.growth, None, "{}", ctx());
    } else {
        assert!(stats.buckets.is_power_of_two(), "{}", ctx());
        assert!(
            stats.entries <= 8 * (stats.buckets + stats.overflow_buckets),
            "entries fit in the buckets; {}",
            ctx()
        );
    }
    if let Some(g) = stats.growth {
        assert!(
            g.evacuated_old_buckets <= g.old_buckets,
            "evacuated <= old; {}",
            ctx()
        );
        assert!(
            g.evacuated_old_buckets < g.old_buckets,
            "a growth with every old bucket evacuated is finished; {}",
            ctx()
        );
        assert!(
            g.helping_writes < g.old_buckets as u64,
            "every helping write advances the mark; {}",
            ctx()
        );
        let expected_old = match g.kind {
            GrowthKind::Double => stats.buckets / 2,
            GrowthKind::SameSize => stats.buckets,
            GrowthKind::Shrink => stats.buckets * 2,
        };
        assert_eq!(g.old_buckets, expected_old, "{:?}; {}", g.kind, ctx());
    }
}

/// Invariants between the stats before and after one operation.
fn check_stats_step(before: &MapStats, after: &MapStats, expect: Expect, ctx: &dyn Fn() -> String) {
    if expect.unchanged {
        assert_eq!(before, after, "stats must not change; {}", ctx());
        return;
    }
    assert_eq!(
        after.inserts - before.inserts,
        expect.inserts,
        "inserts delta; {}",
        ctx()
    );
    assert_eq!(
        after.updates - before.updates,
        expect.updates,
        "updates delta; {}",
        ctx()
    );
    assert_eq!(
        after.removes - before.removes,
        expect.removes,
        "removes delta; {}",
        ctx()
    );
    assert!(after.peak_entries >= before.peak_entries, "{}", ctx());
    assert!(
        after.growths[GrowthKind::Double] >= before.growths[GrowthKind::Double],
        "{}",
        ctx()
    );
    assert!(
        after.growths[GrowthKind::SameSize] >= before.growths[GrowthKind::SameSize],
        "{}",
        ctx()
    );
    assert!(
        after.growths[GrowthKind::Shrink] >= before.growths[GrowthKind::Shrink],
        "{}",
        ctx()
    );
    let evacuated = after
        .evacuated_buckets_total
        .checked_sub(before.evacuated_buckets_total)
        .unwrap_or_else(|| panic!("evacuated_buckets_total went down; {}", ctx()));
    if let Some(max) = expect.max_evacuated {
        assert!(
            evacuated <= max,
            "evacuated {evacuated} old buckets, at most {max} allowed; {}",
            ctx()
        );
    }
    if let (Some(b), Some(a)) = (before.growth, after.growth) {
        let same_growth = a.kind == b.kind
            && a.old_buckets == b.old_buckets
            && a.entries_at_start == b.entries_at_start
            && after.growths(a.kind) == before.growths(a.kind);
        if same_growth {
            assert!(
                a.evacuated_old_buckets >= b.evacuated_old_buckets,
                "{}",
                ctx()
            );
            assert!(a.helping_writes >= b.helping_writes, "{}", ctx());
        }
    }
    // An insert that already helped a growth (it evacuated something)
    // leaves a growth that came due to the next new key, so it never
    // evacuates more than two buckets. Such an insert may leave the map past
    // its thresholds: by one entry, or by what inserts added while a
    // halving (which no doubling can interrupt) was running.
    let helped = after.evacuated_buckets_total > before.evacuated_buckets_total;
    if expect.inserted_new && after.growth.is_none() && !helped {
        assert!(
            !over_load_factor(after.entries, after.buckets),
            "an insert left the map overloaded without a growth; {}",
            ctx()
        );
        assert!(
            after.overflow_buckets <= after.buckets,
            "an insert left too many overflow buckets without a growth; {}",
            ctx()
        );
    }
}

/// The model: std's map (with a fast hasher; any hasher does for std).
type Model<K> = HashMap<K, u64, DefaultHashBuilder>;

/// Checks that `entries` are exactly the model's: each one in the model
/// with the same value, none twice, and as many as the model holds.
fn assert_entries<'a, K: Key + 'a>(
    entries: impl Iterator<Item = (&'a K, u64)>,
    model: &Model<K>,
    what: &str,
    ctx: &dyn Fn() -> String,
) {
    let mut seen: HashSet<&K, DefaultHashBuilder> = HashSet::default();
    for (k, v) in entries {
        assert_eq!(
            model.get(k),
            Some(&v),
            "{what} yielded {k:?} => {v}; {}",
            ctx()
        );
        assert!(seen.insert(k), "{what} yielded {k:?} twice; {}", ctx());
    }
    assert_eq!(seen.len(), model.len(), "{what} missed entries; {}", ctx());
}

/// Compares a map with the model in full: length, iteration, every model
/// key, and keys the model does not hold.
fn check_contents<K: Key, S: BuildHasher>(
    map: &InstrumentedMap<K, u64, S>,
    model: &Model<K>,
    space: u64,
    ctx: &dyn Fn() -> String,
) {
    assert_eq!(map.len(), model.len(), "len; {}", ctx());
    assert_eq!(map.is_empty(), model.is_empty(), "is_empty; {}", ctx());
    let iter = map.iter();
    assert_eq!(iter.len(), model.len(), "iter().len(); {}", ctx());
    assert_entries(iter.map(|(k, v)| (k, *v)), model, "iter", ctx);
    for (k, v) in model {
        assert_eq!(map.get(k), Some(v), "get({k:?}); {}", ctx());
        assert_eq!(map.get_key_value(k), Some((k, v)), "{}", ctx());
        assert!(map.contains_key(k), "contains_key({k:?}); {}", ctx());
    }
    // Absent keys: a sample of the key space, and keys beyond it.
    let sample = space.min(24);
    for i in 0..sample {
        let id = if sample == space { i } else { mix(i) % space };
        let k = K::from_id(id);
        if !model.contains_key(&k) {
            assert_eq!(map.get(&k), None, "get({k:?}) of an absent key; {}", ctx());
        }
    }
    for id in space..space + 8 {
        assert!(!map.contains_key(&K::from_id(id)), "{}", ctx());
    }
}

struct Harness<K: Key, S: BuildHasher + Clone> {
    map: InstrumentedMap<K, u64, S>,
    model: Model<K>,
    /// The model's keys, in a deterministic order, for `KeyRef::Live`.
    order: Vec<K>,
    /// Each key's position in `order`.
    pos: HashMap<K, usize, DefaultHashBuilder>,
    space: u64,
    stats: MapStats,
    /// Operations applied, counting each element of a run.
    step: u64,
    next_full_check: u64,
    /// The top-level operation being applied, for failure messages.
    current: String,
    /// Whether a `shrink_to` may have queued halvings that have not all
    /// started yet (only `complete_growth` and `drain` surely end them).
    shrink_may_be_queued: bool,
}

impl<K: Key, S: BuildHasher + Clone> Harness<K, S> {
    fn new(map: InstrumentedMap<K, u64, S>, space: u64) -> Self {
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

    fn ctx(&self) -> String {
        format!(
            "step {} ({}); stats {:?}",
            self.step, self.current, self.stats
        )
    }

    fn resolve(&self, key: KeyRef) -> K {
        match key {
            KeyRef::Any(id) => K::from_id(id % self.space),
            KeyRef::Live(i) if !self.order.is_empty() => self.order[i % self.order.len()].clone(),
            KeyRef::Live(i) => K::from_id(i as u64 % self.space),
        }
    }

    // --- the model, keeping `order` in sync ---

    fn model_insert(&mut self, k: K, v: u64) -> Option<u64> {
        let old = self.model.insert(k.clone(), v);
        if old.is_none() {
            self.pos.insert(k.clone(), self.order.len());
            self.order.push(k);
        }
        old
    }

    fn model_remove(&mut self, k: &K) -> Option<u64> {
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

    fn model_clear(&mut self) {
        self.model.clear();
        self.order.clear();
        self.pos.clear();
    }

    fn model_resync_order(&mut self) {
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
    fn after(&mut self, expect: Expect) {
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

    fn full_check(&mut self) {
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

    fn apply(&mut self, op: &Op) {
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

    fn insert(&mut self, k: K, v: u64) {
        let want = self.model_insert(k.clone(), v);
        let got = self.map.insert(k, v);
        assert_eq!(got, want, "insert returned; {}", self.ctx());
        self.after(Expect::keyed(want.is_none(), want.is_some(), false));
    }

    fn remove(&mut self, k: K, whole: bool) {
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
    fn after_reset(&mut self, removed: u64, released: bool) {
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
    fn finish(mut self) {
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
fn run<K: Key, S: BuildHasher + Clone>(map: InstrumentedMap<K, u64, S>, space: u64, ops: &[Op]) {
    let mut harness = Harness::new(map, space);
    for op in ops {
        harness.apply(op);
    }
    harness.finish();
}

// ---------------------------------------------------------------------------
// The properties
// ---------------------------------------------------------------------------

/// `cases` cases, with failures persisted to `proptest-regressions/model.txt`
/// (the default location needs a `lib.rs` next to the test file).
/// `MODEL_CASES_SCALE=n` in the environment runs `n` times as many cases,
/// for a longer hunt than the default, CI-sized one; `PROPTEST_CASES=n`
/// runs `n` cases per property instead (the sanitizer and memcheck jobs of
/// `.ci/run` run few).
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(cases);
    let scale = std::env::var("MODEL_CASES_SCALE")
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(1);
    ProptestConfig {
        cases: cases * scale,
        // ChaCha costs a quarter of the run time in debug builds.
        rng_algorithm: RngAlgorithm::XorShift,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/model.txt",
        ))),
        ..ProptestConfig::default()
    }
}

/// Keys `0..64`: most operations hit, maps of at most 64 entries.
const SMALL: u64 = 64;
/// Keys `0..100_000`: inserts are mostly of new keys.
const LARGE: u64 = 100_000;
/// `String` keys `"key-0"..`.
const STRINGS: u64 = 3_000;

type U64Map<S = DefaultHashBuilder> = InstrumentedMap<u64, u64, S>;
type StringMap<S = DefaultHashBuilder> = InstrumentedMap<String, u64, S>;

fn degenerate<K>(entropy: Entropy) -> InstrumentedMap<K, u64, Degenerate> {
    InstrumentedMap::with_hasher(Degenerate(entropy))
}

// Small key space, every kind of hasher: a full comparison after nearly
// every operation.
proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn small_keys_default_hasher(ops in ops(SMALL, Profile::Mixed, 64, 1..400)) {
        run(U64Map::new(), SMALL, &ops);
    }

    #[test]
    fn small_keys_constant_hasher(ops in ops(SMALL, Profile::Mixed, 64, 1..400)) {
        run(degenerate::<u64>(Entropy::Constant), SMALL, &ops);
    }

    #[test]
    fn small_keys_mod4_hasher(ops in ops(SMALL, Profile::Mixed, 64, 1..400)) {
        run(degenerate::<u64>(Entropy::Mod4), SMALL, &ops);
    }

    #[test]
    fn small_keys_few_tophash_hasher(ops in ops(SMALL, Profile::Mixed, 64, 1..400)) {
        run(degenerate::<u64>(Entropy::FewTops), SMALL, &ops);
    }

    #[test]
    fn small_keys_top_only_hasher(ops in ops(SMALL, Profile::Mixed, 64, 1..400)) {
        run(degenerate::<u64>(Entropy::TopOnly), SMALL, &ops);
    }

    #[test]
    fn small_keys_block_hasher(ops in ops(SMALL, Profile::Mixed, 64, 1..400)) {
        run(degenerate::<u64>(Entropy::Blocks(4)), SMALL, &ops);
    }

    #[test]
    fn small_string_keys_mod4_hasher(ops in ops(SMALL, Profile::Mixed, 64, 1..400)) {
        run(degenerate::<String>(Entropy::Mod4), SMALL, &ops);
    }
}

// Large key spaces and String keys, mixed operations with runs of a few
// hundred; chains of hundreds of entries; churn at a steady size.
proptest! {
    #![proptest_config(config(16))]

    #[test]
    fn large_keys_default_hasher(ops in ops(LARGE, Profile::Mixed, 400, 1..600)) {
        run(U64Map::new(), LARGE, &ops);
    }

    #[test]
    fn string_keys_default_hasher(ops in ops(STRINGS, Profile::Mixed, 200, 1..500)) {
        run(StringMap::new(), STRINGS, &ops);
    }

    #[test]
    fn large_keys_few_tophash_hasher(ops in ops(LARGE, Profile::Mixed, 400, 1..600)) {
        run(degenerate::<u64>(Entropy::FewTops), LARGE, &ops);
    }

    #[test]
    fn large_keys_presized(
        capacity in 0..5_000usize,
        ops in ops(LARGE, Profile::Mixed, 400, 1..400),
    ) {
        run(U64Map::with_capacity(capacity), LARGE, &ops);
    }

    /// Chains of hundreds of entries: every lookup scans one long chain.
    #[test]
    fn large_keys_constant_hasher(ops in ops(LARGE, Profile::Mixed, 100, 1..400)) {
        run(degenerate::<u64>(Entropy::Constant), LARGE, &ops);
    }

    #[test]
    fn string_keys_constant_hasher(ops in ops(STRINGS, Profile::Mixed, 60, 1..400)) {
        run(degenerate::<String>(Entropy::Constant), STRINGS, &ops);
    }

    /// Sliding windows and churn at a steady size: with the block hasher
    /// most cases go through same-size growths.
    #[test]
    fn churn_block_hasher(ops in ops(LARGE, Profile::Churn, 64, 1..100)) {
        run(degenerate::<u64>(Entropy::Blocks(4)), LARGE, &ops);
    }

    #[test]
    fn churn_default_hasher(ops in ops(LARGE, Profile::Churn, 64, 1..100)) {
        run(U64Map::new(), LARGE, &ops);
    }
}

// Long runs: hundreds of thousands of single-key operations in all, through
// many doublings, multi-chunk arrays (more than 256 buckets of u64 pairs),
// evacuation marks that skip up to 1024 buckets, same-size growths and
// halvings.
proptest! {
    #![proptest_config(config(8))]

    #[test]
    fn large_keys_growth_default_hasher(ops in ops(LARGE, Profile::Growth, 4_000, 20..150)) {
        run(U64Map::new(), LARGE, &ops);
    }

    #[test]
    fn large_keys_growth_few_tophash_hasher(ops in ops(LARGE, Profile::Growth, 4_000, 20..150)) {
        run(degenerate::<u64>(Entropy::FewTops), LARGE, &ops);
    }

    #[test]
    fn large_keys_growth_block_hasher(ops in ops(LARGE, Profile::Growth, 1_000, 20..150)) {
        run(degenerate::<u64>(Entropy::Blocks(6)), LARGE, &ops);
    }

    #[test]
    fn large_keys_growth_mod4_hasher(ops in ops(LARGE, Profile::Growth, 300, 20..100)) {
        run(degenerate::<u64>(Entropy::Mod4), LARGE, &ops);
    }

    #[test]
    fn string_keys_growth_default_hasher(ops in ops(STRINGS, Profile::Growth, 2_000, 20..100)) {
        run(StringMap::new(), STRINGS, &ops);
    }
}
