//! Growth semantics: when growth starts, how far each write evacuates, and
//! shrinking. Every expectation is derived from Go's rules, not observed.

use mapscope::{GrowthKind, InstrumentedMap};

/// Go's `overLoadFactor`.
fn over_load_factor(count: usize, log2: u32) -> bool {
    count > 8 && count > 13 * ((1usize << log2) / 2)
}

/// The smallest 2^B with n <= 8 or n <= 6.5 * 2^B.
fn expected_buckets(n: usize) -> usize {
    let mut log2 = 0;
    while over_load_factor(n, log2) {
        log2 += 1;
    }
    1 << log2
}

#[test]
fn doubling_follows_go_load_factor() {
    let mut map = InstrumentedMap::new();
    for n in 1..=60_000usize {
        map.insert(n as u64, n);
        let stats = map.stats();
        assert_eq!(stats.buckets, expected_buckets(n), "after {n} inserts");
        assert_eq!(stats.growths[GrowthKind::SameSize], 0);
        assert_eq!(
            stats.growths[GrowthKind::Double],
            u64::from(stats.buckets.trailing_zeros()),
            "after {n} inserts"
        );
        assert!(stats.entries <= 8 || stats.load_factor <= 6.5);
    }
}

#[test]
fn hundred_thousand_inserts_give_16384_buckets_after_14_doublings() {
    let mut map = InstrumentedMap::new();
    for i in 0..100_000u32 {
        map.insert(i, ());
    }
    let stats = map.stats();
    assert_eq!(stats.buckets, 16_384);
    assert_eq!(stats.growths[GrowthKind::Double], 14);
    assert_eq!(stats.inserts, 100_000);
    assert_eq!(stats.peak_entries, 100_000);
}

#[test]
fn presized_map_never_grows() {
    for n in [0usize, 1, 8, 9, 13, 14, 100, 1_000, 6_656, 6_657, 50_000] {
        let mut map = InstrumentedMap::with_capacity(n);
        let buckets = map.stats().buckets;
        for i in 0..n {
            map.insert(i, i);
        }
        let stats = map.stats();
        assert_eq!(
            stats.growths[GrowthKind::Double] + stats.growths[GrowthKind::SameSize],
            0,
            "n = {n}"
        );
        if n > 0 {
            assert_eq!(stats.buckets, buckets);
            assert_eq!(stats.buckets, expected_buckets(n), "n = {n}");
        }
    }
}

#[test]
fn no_write_evacuates_more_than_two_buckets() {
    let mut map = InstrumentedMap::new();
    let mut last = 0;
    let mut saw_growth = false;
    for i in 0..200_000u64 {
        if i % 3 == 2 {
            map.remove(&(i / 2));
        } else {
            map.insert(i, i);
        }
        let stats = map.stats();
        assert!(stats.evacuated_buckets_total - last <= 2, "write {i}");
        saw_growth |= stats.growth.is_some();
        last = stats.evacuated_buckets_total;
    }
    assert!(saw_growth);
}

#[test]
fn lookups_never_move_entries() {
    let mut map = InstrumentedMap::new();
    let mut i = 0u64;
    while map.stats().growth.is_none() || i < 1000 {
        map.insert(i, i);
        i += 1;
    }
    let before = map.stats();
    for k in 0..i {
        assert_eq!(map.get(&k), Some(&k));
        assert!(!map.contains_key(&(k + 1_000_000)));
    }
    assert_eq!(map.stats(), before);
}

#[test]
fn growth_reports_progress_and_finishes() {
    let mut map = InstrumentedMap::new();
    for i in 0..6_656u64 {
        map.insert(i, i);
    }
    assert_eq!(map.stats().growth, None);
    map.insert(6_656, 0); // 6657 > 6.5 * 1024: doubles
    let growth = map.stats().growth.expect("a doubling started");
    assert_eq!(growth.kind, GrowthKind::Double);
    assert_eq!(growth.old_buckets, 1024);
    assert!(growth.evacuated_old_buckets >= 1 && growth.evacuated_old_buckets <= 2);
    assert_eq!(growth.entries_at_start, 6_656);
    let mut writes = 0;
    while map.stats().growth.is_some() {
        map.insert(10_000_000 + writes, 0);
        writes += 1;
        assert!(
            writes <= 1024,
            "a growth finishes within old_buckets writes"
        );
    }
    assert_eq!(map.stats().buckets, 2048);
    assert!(map.stats().growth_seconds[GrowthKind::Double] > 0.0);
}

#[test]
fn complete_growth_leaves_no_growth() {
    let mut map = InstrumentedMap::new();
    for i in 0..6_657u64 {
        map.insert(i, i);
    }
    assert!(map.stats().growth.is_some());
    map.complete_growth();
    let stats = map.stats();
    assert_eq!(stats.growth, None);
    // Every doubling from 1 to 2048 buckets evacuated all of its old buckets.
    assert_eq!(
        stats.evacuated_buckets_total,
        (0..=10).map(|b| 1u64 << b).sum::<u64>()
    );
    for i in 0..6_657u64 {
        assert_eq!(map.get(&i), Some(&i));
    }
}

#[test]
fn shrink_to_fit_halves_until_it_cannot() {
    let mut map = InstrumentedMap::new();
    for i in 0..100_000u64 {
        map.insert(i, i);
    }
    map.complete_growth();
    let full = map.stats();
    map.retain(|k, _| k % 10 == 0);
    assert_eq!(
        map.stats().buckets,
        full.buckets,
        "deletes alone keep capacity"
    );
    map.shrink_to_fit();
    let growth = map.stats().growth.expect("shrink started");
    assert_eq!(growth.kind, GrowthKind::Shrink);
    map.complete_growth();
    let stats = map.stats();
    assert_eq!(stats.buckets, expected_buckets(10_000));
    assert_eq!(
        stats.growths[GrowthKind::Shrink],
        u64::from((full.buckets / stats.buckets).trailing_zeros())
    );
    assert!(stats.memory_bytes < full.memory_bytes / 4);
    for i in 0..100_000u64 {
        assert_eq!(map.get(&i).is_some(), i % 10 == 0);
    }
}

#[test]
fn shrink_is_driven_by_writes_too() {
    let mut map = InstrumentedMap::new();
    for i in 0..50_000u64 {
        map.insert(i, i);
    }
    map.complete_growth();
    for i in 0..49_000u64 {
        map.remove(&i);
    }
    map.shrink_to(0);
    // Each halving starts on the write after the previous one finished.
    let mut writes = 0u64;
    while map.stats().growth.is_some() || map.stats().buckets != expected_buckets(1_000) {
        map.insert(1_000_000 + writes, writes);
        map.remove(&(1_000_000 + writes));
        writes += 1;
        assert!(writes < 100_000, "{:?}", map.stats());
    }
    assert_eq!(map.stats().growths[GrowthKind::Shrink], 5); // 8192 -> 256 buckets
    assert_eq!(map.len(), 1_000);
}

#[test]
fn auto_shrink_is_off_by_default_and_shrinks_when_on() {
    let mut plain = InstrumentedMap::new();
    let mut auto = InstrumentedMap::new();
    auto.set_auto_shrink(true);
    for i in 0..20_000u64 {
        plain.insert(i, i);
        auto.insert(i, i);
    }
    for i in 0..19_900u64 {
        plain.remove(&i);
        auto.remove(&i);
    }
    assert_eq!(plain.stats().growths[GrowthKind::Shrink], 0);
    assert!(auto.stats().growths[GrowthKind::Shrink] > 0);
    assert!(auto.stats().buckets < plain.stats().buckets);
    for i in 19_900..20_000u64 {
        assert_eq!(auto.get(&i), Some(&i));
    }
}

#[test]
fn empty_map_shrinks_to_nothing() {
    let mut map = InstrumentedMap::new();
    for i in 0..1000 {
        map.insert(i, i);
    }
    map.complete_growth();
    map.retain(|_, _| false);
    assert!(map.stats().memory_bytes > 0);
    map.shrink_to_fit();
    assert_eq!(map.stats().memory_bytes, 0);
    assert_eq!(map.stats().buckets, 0);
    map.insert(1, 1);
    assert_eq!(map[&1], 1);
}

/// A hasher that puts every key in bucket 0 with the same tophash.
#[derive(Clone, Default)]
struct Colliding;
impl std::hash::BuildHasher for Colliding {
    type Hasher = CollidingHasher;
    fn build_hasher(&self) -> CollidingHasher {
        CollidingHasher
    }
}
struct CollidingHasher;
impl std::hash::Hasher for CollidingHasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, _: &[u8]) {}
}

#[test]
fn colliding_hasher_builds_chains_and_same_size_growth() {
    let mut map = InstrumentedMap::with_hasher(Colliding);
    for i in 0..200u32 {
        map.insert(i, i);
    }
    let stats = map.stats();
    assert!(stats.max_overflow_chain >= 200 / 8 - 1, "{stats:?}");
    for i in 0..200u32 {
        assert_eq!(map.get(&i), Some(&i));
    }
    // Deleting and inserting keeps overflow buckets until a same-size growth compacts them.
    for round in 0..50u32 {
        for i in 0..200u32 {
            map.remove(&(i + round * 200));
            map.insert(i + (round + 1) * 200, i);
        }
    }
    assert!(
        map.stats().growths[GrowthKind::SameSize] > 0
            || map.stats().growths[GrowthKind::Double] > 0
    );
    assert_eq!(map.len(), 200);
}

#[test]
fn memory_accounts_for_both_arrays_during_growth() {
    let mut map = InstrumentedMap::new();
    for i in 0..53_248u64 {
        map.insert(i, i);
    }
    map.complete_growth();
    let before = map.stats().memory_bytes;
    map.insert(u64::MAX, 0);
    let during = map.stats();
    assert!(during.growth.is_some());
    assert!(
        during.memory_bytes > before,
        "the new array's first chunks are counted"
    );
    map.complete_growth();
    assert!(map.stats().memory_bytes > before);
}
