//! `complete_growth` under panics, retried until it finishes, and a
//! `retain` predicate that panics part way.

use crate::checks::{check, deep_check, still_usable};
use crate::key::arm_hash;
use crate::ops::{apply, Op, Site};
use crate::sims::{mid_doubling, mid_same_size, mid_shrink, panic_at_every_call, Sim, Sites};

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
