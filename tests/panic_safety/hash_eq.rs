//! A `Hash` or `Eq` that panics during a write, including in the middle of
//! an incremental evacuation of each kind of growth, changes nothing.

use mapscope::GrowthKind;

use crate::checks::{check, deep_check, still_usable};
use crate::key::{arm_hash, mix, Key};
use crate::ops::{apply, Op, Site};
use crate::sims::{
    aimed, drive_growth_with_panics, mid_doubling, mid_same_size, mid_shrink, panic_at_every_call,
    Sim, Sites,
};

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
