//! Maps in every kind of growth (mid-doubling, mid-same-size, mid-shrink),
//! and the sweeps that panic at every hash or eq call an op makes on them.

use std::collections::BTreeMap;
use std::panic;

use mapscope::GrowthKind;

use crate::checks::{check, deep_check, still_usable};
use crate::key::{arm_eq, arm_hash, new_map, Key, Map, Model, EQ_CALLS, HASH_CALLS};
use crate::ops::{apply, Op, Site};

/// A map and its model, grown by unarmed ops.
pub(crate) struct Sim {
    pub(crate) map: Map,
    pub(crate) model: Model,
    /// Every op applied, for the scripted sweeps.
    pub(crate) ops: Vec<Op>,
}

impl Sim {
    pub(crate) fn new() -> Sim {
        Sim {
            map: new_map(),
            model: Model::default(),
            ops: Vec::new(),
        }
    }

    pub(crate) fn op(&mut self, op: Op) {
        assert_eq!(apply(&mut self.map, &mut self.model, &op), None);
        self.ops.push(op);
    }

    pub(crate) fn growth(&self) -> Option<mapscope::Growth> {
        self.map.stats().growth
    }

    pub(crate) fn growing(&self, kind: GrowthKind) -> bool {
        self.growth().is_some_and(|g| g.kind == kind)
    }

    pub(crate) fn fork(&self) -> Sim {
        Sim {
            map: self.map.clone(),
            model: self.model.clone(),
            ops: Vec::new(),
        }
    }
}

/// A key aimed at `bucket` (for every table of at most 2^32 buckets).
pub(crate) fn aimed(bucket: u64, n: u64) -> u64 {
    (n + 1) << 32 | bucket
}

/// Mid-doubling: old array of 64 buckets, a few of them evacuated.
pub(crate) fn mid_doubling() -> Sim {
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
pub(crate) fn start_same_size(sim: &mut Sim) {
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

pub(crate) fn mid_same_size() -> Sim {
    let mut sim = Sim::new();
    start_same_size(&mut sim);
    sim
}

/// Mid-shrink: 3_000 keys down to 100, then `shrink_to_fit` queues halvings
/// from 512 buckets to 16; the first one is under way.
pub(crate) fn mid_shrink() -> Sim {
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

pub(crate) type Sites = BTreeMap<Site, usize>;

pub(crate) fn calls(eq: bool) -> u64 {
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
pub(crate) fn panic_at_every_call_then(
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

pub(crate) fn panic_at_every_call(sim: &mut Sim, op: &Op, eq: bool, deep: bool, sites: &mut Sites) {
    panic_at_every_call_then(sim, op, &[], eq, deep, sites);
}

/// Writes through the growth in progress, and the halvings queued behind
/// it, until the map is down to `buckets`, every hash (or eq) call of every
/// write panicking once; then checks that nothing was lost or duplicated.
pub(crate) fn drive_growth_with_panics(mut sim: Sim, buckets: usize, eq: bool) -> Sites {
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
