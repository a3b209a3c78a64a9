//! Named regression tests for the failures the model-based tests in
//! `tests/model.rs` found, each reduced to a minimal, deterministic sequence
//! (whatever the default hasher's per-map seed) with a comment on what went
//! wrong.
//!
//! Tests marked `#[ignore = "engine bug: ..."]` pin engine bugs that are not
//! fixed yet; run them with `cargo test --test regressions -- --ignored`.

use std::hash::{BuildHasher, Hasher};

use mapscope::{GrowthKind, InstrumentedMap, MapStats};

/// Every key hashes to 0: one bucket, one tophash.
#[derive(Clone, Copy, Debug, Default)]
struct Constant;

impl BuildHasher for Constant {
    type Hasher = ConstantHasher;
    fn build_hasher(&self) -> ConstantHasher {
        ConstantHasher
    }
}

/// The hasher [`Constant`] builds.
#[derive(Debug)]
struct ConstantHasher;

impl Hasher for ConstantHasher {
    fn finish(&self) -> u64 {
        0
    }
    fn write(&mut self, _: &[u8]) {}
}

/// `u64` keys hash to themselves: key `k` lives in bucket `k % 2^B`, and
/// every small key has the same tophash.
#[derive(Clone, Copy, Debug, Default)]
struct Identity;

impl BuildHasher for Identity {
    type Hasher = IdentityHasher;
    fn build_hasher(&self) -> IdentityHasher {
        IdentityHasher(0)
    }
}

/// The hasher [`Identity`] builds.
#[derive(Debug)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

fn growths(stats: &MapStats) -> u64 {
    stats.growths.iter().map(|(_, n)| n).sum::<u64>()
}

/// Runs `write` and returns how many old buckets it evacuated.
fn evacuated_by<K, S>(
    map: &mut InstrumentedMap<K, u64, S>,
    write: impl FnOnce(&mut InstrumentedMap<K, u64, S>),
) -> u64 {
    let before = map.stats().evacuated_buckets_total;
    write(map);
    map.stats().evacuated_buckets_total - before
}

/// A map of 13 `u64` keys in 4 buckets (one removal after a doubling) with a
/// halving to 2 buckets just started by `shrink_to_fit`: 13 entries fill 2
/// buckets exactly (`13 <= 6.5 * 2`), so the next new keys push it past
/// the load factor while the halving is still running.
fn full_map_halving() -> InstrumentedMap<u64, u64> {
    let mut map = InstrumentedMap::new();
    for k in 0..14 {
        map.insert(k, k);
    }
    map.complete_growth();
    assert_eq!(map.stats().buckets, 4);
    map.remove(&0);
    map.shrink_to_fit();
    let growth = map.stats().growth.expect("a halving started");
    assert_eq!((growth.kind, growth.old_buckets), (GrowthKind::Shrink, 4));
    map
}

// Found by `small_keys_default_hasher` and `large_keys_default_hasher`;
// their shrunk sequences, reduced by hand: fill a table until it doubles,
// delete back to exactly 6.5 entries per bucket of the halved size,
// `shrink_to_fit`, then insert new keys.
//
// What goes wrong: the insert whose growth work evacuates the last old
// buckets of the halving (up to 2) finds the finished map overloaded
// (14 > 6.5 * 2), starts a doubling in `insert_absent` and helps it at once
// with another `grow_work` (up to 2 more). That insert evacuates 3 or 4 old
// buckets, although the crate documents "at most two old buckets per insert
// or remove" and `MapStats` readers rely on it.
//
// Cause: `RawMap::insert_absent` calls `grow_work` after `start_growth` even
// when `prepare_write` already helped (and finished) a growth during this
// same write. Go's `mapassign` has the same shape (`hashGrow; goto again`),
// but Go never shrinks, and there a doubling can only be due right after a
// same-size growth (see the last of these tests); halvings make it easy to
// reach here.
// Skipping that second `grow_work` is not an option: the key's old bucket
// must be evacuated before the key goes into the new array, or lookups,
// which read an unevacuated old bucket, would miss it. A fix: when this
// write's `prepare_write` already did growth work, place the key in the
// just-finished array and leave the due growth to the next insert of a new
// key (the load factor is then exceeded by one entry for one write).
#[test]
fn insert_that_finishes_a_shrink_and_starts_a_doubling_evacuates_at_most_two_buckets() {
    let mut map = full_map_halving();
    let doublings = map.stats().growths[GrowthKind::Double];
    let mut next = 100;
    while map.stats().growths[GrowthKind::Double] == doublings {
        let n = evacuated_by(&mut map, |map| {
            map.insert(next, next);
        });
        next += 1;
        assert!(
            n <= 2,
            "insert of key {} evacuated {n} old buckets",
            next - 1
        );
    }
}

// The same bug through the entry API: `entry()` helps (and finishes) the
// halving in `probe_for_write`, then `VacantEntry::insert` starts a doubling
// and helps it too.
#[test]
fn vacant_entry_insert_that_finishes_a_shrink_evacuates_at_most_two_buckets() {
    let mut map = full_map_halving();
    let doublings = map.stats().growths[GrowthKind::Double];
    let mut next = 100;
    while map.stats().growths[GrowthKind::Double] == doublings {
        let n = evacuated_by(&mut map, |map| {
            map.entry(next).or_insert(next);
        });
        next += 1;
        assert!(n <= 2, "entry({}) evacuated {n} old buckets", next - 1);
    }
}

// Found by `small_keys_constant_hasher`; its shrunk sequence, reduced by
// hand: 9 inserts, which double the single bucket; 1 remove;
// `shrink_to_fit`; 1 insert of a new key.
//
// With every key in bucket 0: the halving 2 -> 1 bucket evacuates both old
// buckets during the insert (2), the finished 1-bucket map holds 8 entries
// so the new key needs a doubling, which evacuates its single old bucket
// (1): 3 old buckets for one insert.
#[test]
fn constant_hasher_insert_after_shrink_to_fit_evacuates_at_most_two_buckets() {
    let mut map = InstrumentedMap::with_hasher(Constant);
    for k in 0..9u64 {
        map.insert(k, k);
    }
    assert_eq!(map.stats().buckets, 2);
    map.remove(&0);
    map.shrink_to_fit();
    assert_eq!(map.stats().growth.map(|g| g.kind), Some(GrowthKind::Shrink));
    let before = map.stats();
    let n = evacuated_by(&mut map, |map| {
        map.insert(100, 100);
    });
    let after = map.stats();
    assert!(n <= 2, "one insert evacuated {n} old buckets: {after:?}");
    // The fix: the insert that helped the halving leaves the due doubling
    // to the next new key.
    assert_eq!(growths(&after) - growths(&before), 0, "the doubling waits");
    let n = evacuated_by(&mut map, |map| {
        map.insert(101, 101);
    });
    assert!(n <= 2, "the next insert evacuated {n} old buckets");
    assert_eq!(
        growths(&map.stats()) - growths(&before),
        1,
        "a doubling started"
    );
}

// The same bug when no growth is running yet, but `shrink_to_fit` queued a
// second halving: the insert starts the queued halving (2 -> 1 bucket) in
// `prepare_write`, evacuates both of its old buckets, and then starts and
// helps a doubling because the 1-bucket map is full.
#[test]
fn insert_that_runs_a_queued_halving_and_starts_a_doubling_evacuates_at_most_two_buckets() {
    let mut map = InstrumentedMap::with_hasher(Constant);
    for k in 0..14u64 {
        map.insert(k, k);
    }
    map.complete_growth();
    assert_eq!(map.stats().buckets, 4);
    for k in 0..6u64 {
        map.remove(&k);
    }
    // 8 entries: halvings queued down to 1 bucket; the first one starts now.
    map.shrink_to_fit();
    // Drive the first halving to its end with writes that insert nothing.
    while map.stats().growth.is_some() {
        map.remove(&1_000);
    }
    assert_eq!(map.stats().buckets, 2);
    let before = map.stats();
    let n = evacuated_by(&mut map, |map| {
        map.insert(100, 100);
    });
    let after = map.stats();
    assert!(n <= 2, "one insert evacuated {n} old buckets: {after:?}");
    // The fix: the halving runs in this insert, the doubling waits for the
    // next new key.
    assert_eq!(growths(&after) - growths(&before), 1, "the halving only");
    let n = evacuated_by(&mut map, |map| {
        map.insert(101, 101);
    });
    assert!(n <= 2, "the next insert evacuated {n} old buckets");
}

// The same bug without any shrinking: a same-size growth that finishes in
// the insert that also needs a doubling. Constructed from the diagnosis of
// the tests above rather than found by the model (the model's sequences
// rarely fill a table to exactly 6.5 entries per bucket while a same-size
// growth runs); this shape is reachable in Go's `mapassign` too.
//
// With identity hashes: 17 keys in bucket 0 leave 2 overflow buckets behind
// when removed; 17 keys in bucket 1 add 2 more, so 4 buckets have 4
// overflow buckets; 7 keys in buckets 2 and 3 bring the map to 25 entries.
// The 26th entry starts a same-size growth (26 <= 6.5 * 4) that evacuates
// old buckets 1 and 0; the 27th finishes it (old buckets 2 and 3), needs a
// doubling and evacuates two more: 4 old buckets for one insert.
#[test]
fn insert_that_finishes_a_same_size_growth_and_starts_a_doubling_evacuates_at_most_two_buckets() {
    let mut map = InstrumentedMap::with_hasher(Identity);
    for i in 0..17u64 {
        map.insert(4 * i, i);
    }
    map.complete_growth();
    assert_eq!((map.stats().buckets, map.stats().overflow_buckets), (4, 2));
    for i in 1..17u64 {
        map.remove(&(4 * i));
    }
    for k in [2, 6, 10, 14, 3, 7, 11] {
        map.insert(k, k);
    }
    for i in 0..17u64 {
        map.insert(4 * i + 1, i);
    }
    let stats = map.stats();
    assert_eq!(
        (stats.entries, stats.buckets, stats.overflow_buckets),
        (25, 4, 4)
    );
    assert_eq!(stats.growth, None);
    map.insert(69, 69); // bucket 1
    let growth = map.stats().growth.expect("a same-size growth started");
    assert_eq!(growth.kind, GrowthKind::SameSize);
    let before = map.stats();
    let n = evacuated_by(&mut map, |map| {
        map.insert(18, 18); // bucket 2
    });
    let after = map.stats();
    assert!(n <= 2, "one insert evacuated {n} old buckets: {after:?}");
    // The doubling that came due waits for the next new key.
    assert_eq!(
        after.growths[GrowthKind::Double] - before.growths[GrowthKind::Double],
        0,
        "{after:?}"
    );
    let n = evacuated_by(&mut map, |map| {
        map.insert(19, 19);
    });
    assert!(n <= 2, "the next insert evacuated {n} old buckets");
    assert_eq!(
        map.stats().growths[GrowthKind::Double] - before.growths[GrowthKind::Double],
        1
    );
}

// Not an engine bug: a false alarm of the first model, kept because it pins
// the semantics the model now encodes. Found by every small-key property
// (shrunk to: 14 inserts, `clear`, 1 insert, `shrink_to_fit`,
// `shrink_to(124)`, `complete_growth`).
//
// `shrink_to_fit` on 1 entry in 4 buckets starts a halving and queues a
// second one down to 1 bucket. A later `shrink_to(124)` finds the table
// (2 buckets) already below 124 entries of capacity and, like std's
// `shrink_to`, does nothing: it neither grows the table nor cancels the
// queued halving, so `complete_growth` ends at 1 bucket, where the
// `shrink_to_fit` was heading. The first model expected 2 buckets.
#[test]
fn shrink_to_does_not_cancel_a_lower_queued_target() {
    let mut map = InstrumentedMap::new();
    for k in 0..14u64 {
        map.insert(k, k);
    }
    map.complete_growth();
    assert_eq!(map.stats().buckets, 4);
    map.clear();
    map.insert(1, 1);
    map.shrink_to_fit();
    assert_eq!(map.stats().buckets, 2, "the first halving started");
    map.shrink_to(124);
    map.complete_growth();
    let stats = map.stats();
    assert_eq!(stats.growth, None);
    assert_eq!(stats.buckets, 1, "{stats:?}");
    assert_eq!(stats.growths[GrowthKind::Shrink], 2);
    assert_eq!(map.get(&1), Some(&1));
    assert_eq!(map.len(), 1);
}
