//! A panic at every hash and eq call of a scripted workload through every
//! kind of growth, and random workloads with random panics.

use mapscope::GrowthKind;
use proptest::prelude::*;

use crate::checks::{check, check_stats, deep_check, still_usable};
use crate::key::{arm_eq, arm_hash};
use crate::ops::{apply, Op, Site};
use crate::sims::{aimed, panic_at_every_call_then, start_same_size, Sim, Sites};

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
