//! The operations a sequence is made of, and the proptest strategies that
//! generate sequences of them (mixed, churn and growth profiles).

use std::fmt::Debug;

use proptest::prelude::*;

/// Which key an operation uses.
#[derive(Clone, Copy, Debug)]
pub(crate) enum KeyRef {
    /// Key `id % space`: usually absent in a large space.
    Any(u64),
    /// The `i % len`-th live key (in the model's deterministic key order),
    /// so updates and removes hit in large spaces too. Falls back to
    /// `Any(i)` when the model is empty.
    Live(usize),
}

#[derive(Clone, Debug)]
pub(crate) enum Op {
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
pub(crate) enum Profile {
    /// Everything, with single-key operations dominating.
    Mixed,
    /// Insert-heavy with long insert and remove runs and rare resets:
    /// reaches thousands of entries, multi-chunk arrays and shrinks.
    Growth,
    /// Mostly sliding windows and churn at a steady size: same-size growth.
    Churn,
}

pub(crate) fn key_ref(space: u64) -> impl Strategy<Value = KeyRef> {
    prop_oneof![
        3 => (0..space).prop_map(KeyRef::Any),
        2 => any::<usize>().prop_map(KeyRef::Live),
    ]
}

pub(crate) fn op_strategy(
    space: u64,
    profile: Profile,
    max_run: usize,
) -> impl Strategy<Value = Op> {
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

pub(crate) fn ops(
    space: u64,
    profile: Profile,
    max_run: usize,
    len: std::ops::Range<usize>,
) -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op_strategy(space, profile, max_run), len)
}
