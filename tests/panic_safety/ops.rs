//! Operations, applied to the map and to the model; an op that panics
//! reports the site of the panic and leaves the model as the map should be.

use std::hash::Hash;
use std::panic;

use mapscope::{Entry, GrowthKind, MapStats};

use crate::key::{catch, mix, Fired, Injected, Key, Map, Model, HASH_CALLS};

#[derive(Clone, Debug)]
pub(crate) enum Op {
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
    pub(crate) fn hashes_its_key(&self) -> bool {
        matches!(
            self,
            Op::Insert(..) | Op::Remove(_) | Op::Get(_) | Op::EntryUpsert(..) | Op::EntryRemove(_)
        )
    }
}

/// Where an injected panic landed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Site {
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

pub(crate) fn growths_started(stats: &MapStats) -> u64 {
    stats.growths.iter().map(|(_, n)| n).sum::<u64>()
}

/// Applies `op` to both. The map's answers must match the model's; if the
/// map panics with an injected panic, the model keeps whatever the op is
/// allowed to have done by then (nothing, except for retain), and the site
/// of the panic is returned.
pub(crate) fn apply(map: &mut Map, model: &mut Model, op: &Op) -> Option<Site> {
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
