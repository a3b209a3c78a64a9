//! The checks run after every operation: what an operation may do to the
//! stats, the stats invariants, and the comparison of the whole contents
//! with the model.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::hash::BuildHasher;

use mapscope::{DefaultHashBuilder, GrowthKind, InstrumentedMap, MapStats};

use crate::keys::{mix, Key};

/// What an operation may do to the stats.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Expect {
    /// The stats must not change at all (lookups, iteration, `iter_mut`).
    pub(crate) unchanged: bool,
    /// Exact deltas of the lifetime counters.
    pub(crate) inserts: u64,
    pub(crate) updates: u64,
    pub(crate) removes: u64,
    /// The most old buckets the operation may evacuate; `None`: no bound.
    pub(crate) max_evacuated: Option<u64>,
    /// The operation inserted a new key: a doubling or a same-size growth
    /// must have started if the map needed one.
    pub(crate) inserted_new: bool,
}

impl Expect {
    pub(crate) const READ: Expect = Expect {
        unchanged: true,
        inserts: 0,
        updates: 0,
        removes: 0,
        max_evacuated: Some(0),
        inserted_new: false,
    };

    /// A single-key write (insert, remove, entry): at most two old buckets.
    pub(crate) fn write() -> Expect {
        Expect {
            max_evacuated: Some(2),
            ..Expect::default()
        }
    }

    /// A write that the model says inserted a new key, updated one, or
    /// removed one.
    pub(crate) fn keyed(inserted: bool, updated: bool, removed: bool) -> Expect {
        Expect {
            inserts: u64::from(inserted),
            updates: u64::from(updated),
            removes: u64::from(removed),
            inserted_new: inserted,
            ..Expect::write()
        }
    }

    /// A bulk operation that moves no entry (retain, clear, drain, shrink).
    pub(crate) fn moves_nothing(removes: u64) -> Expect {
        Expect {
            removes,
            max_evacuated: Some(0),
            ..Expect::default()
        }
    }
}

/// Go's `overLoadFactor`.
pub(crate) fn over_load_factor(count: usize, buckets: usize) -> bool {
    count > 8 && count > 13 * (buckets / 2)
}

/// The smallest `2^B` with `n <= 8` or `n <= 6.5 * 2^B`.
pub(crate) fn expected_buckets(n: usize) -> usize {
    let mut buckets = 1;
    while over_load_factor(n, buckets) {
        buckets *= 2;
    }
    buckets
}

/// Invariants every stats snapshot satisfies on its own.
pub(crate) fn check_stats_alone(stats: &MapStats, len: usize, ctx: &dyn Fn() -> String) {
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
pub(crate) fn check_stats_step(
    before: &MapStats,
    after: &MapStats,
    expect: Expect,
    ctx: &dyn Fn() -> String,
) {
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
pub(crate) type Model<K> = HashMap<K, u64, DefaultHashBuilder>;

/// Checks that `entries` are exactly the model's: each one in the model
/// with the same value, none twice, and as many as the model holds.
pub(crate) fn assert_entries<'a, K: Key + 'a>(
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
pub(crate) fn check_contents<K: Key, S: BuildHasher>(
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
