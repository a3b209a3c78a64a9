//! Drop accounting: every key and value the map is given is dropped exactly
//! once, never twice, and never while the map still owns it, whichever way
//! it leaves the map (remove, overwrite, clear, drain, retain, into_iter,
//! the entry API, dropping the map mid-growth, clones) and however long its
//! overflow chain is.
//!
//! Every [`Item`] carries a unique id; a shared [`Tracker`] counts the drops
//! of each id. A clone of an item is a new item with a new id.
//!
//! A `Drop` that panics (mid-retain, mid-clear, while dropping a map in the
//! middle of a growth, in an overwrite, in a half-consumed `into_iter`) may
//! leak the entries after it, but never drops one twice, and the map stays
//! consistent and usable.

use std::collections::HashSet;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::thread;

use mapscope::{DefaultHashBuilder, Entry, GrowthKind, InstrumentedMap};

/// Counts the drops of every item it created.
#[derive(Debug, Default)]
struct Tracker {
    /// `drops[id]`: how many times item `id` was dropped.
    drops: Mutex<Vec<u32>>,
    /// When nonzero, the clone that brings it to zero panics.
    clone_countdown: AtomicUsize,
    /// When nonzero, the drop that brings it to zero panics (after being
    /// counted, and never while already unwinding).
    drop_countdown: AtomicUsize,
    /// When set, hashing an item panics, unless its `val` is `spared`.
    poison_hash: AtomicBool,
    spared: AtomicU64,
}

/// Payload of the panics this file injects on purpose.
struct Injected;

impl Tracker {
    fn new() -> Arc<Tracker> {
        Arc::new(Tracker::default())
    }

    fn item(self: &Arc<Self>, val: u64) -> Item {
        let mut drops = self.drops.lock().unwrap();
        drops.push(0);
        Item {
            val,
            id: drops.len() - 1,
            tracker: Arc::clone(self),
        }
    }

    /// A fresh key item and value item.
    fn pair(self: &Arc<Self>, val: u64) -> (Item, Item) {
        (self.item(val), self.item(val + 1_000_000_000))
    }

    fn drops_of(&self, id: usize) -> u32 {
        self.drops.lock().unwrap()[id]
    }

    fn created(&self) -> usize {
        self.drops.lock().unwrap().len()
    }

    /// Items created and not dropped yet.
    fn live(&self) -> usize {
        let drops = self.drops.lock().unwrap();
        assert_no_double_drop(&drops);
        drops.iter().filter(|&&n| n == 0).count()
    }

    /// Every item ever created was dropped exactly once.
    fn assert_dropped_at_most_once(&self) {
        assert_no_double_drop(&self.drops.lock().unwrap());
    }

    fn assert_all_dropped_once(&self) {
        let drops = self.drops.lock().unwrap();
        assert_no_double_drop(&drops);
        let leaked: Vec<usize> = (0..drops.len()).filter(|&id| drops[id] == 0).collect();
        assert!(
            leaked.is_empty(),
            "{} of {} items never dropped, e.g. ids {:?}",
            leaked.len(),
            drops.len(),
            &leaked[..leaked.len().min(10)]
        );
    }
}

fn assert_no_double_drop(drops: &[u32]) {
    if let Some(id) = drops.iter().position(|&n| n > 1) {
        panic!("item {id} dropped {} times", drops[id]);
    }
}

/// A key or value that reports its drop. Hashes and compares by `val` only.
#[derive(Debug)]
struct Item {
    val: u64,
    id: usize,
    tracker: Arc<Tracker>,
}

impl Drop for Item {
    fn drop(&mut self) {
        // Recover from poisoning: a drop may run while a test unwinds.
        let mut drops = self.tracker.drops.lock().unwrap_or_else(|e| e.into_inner());
        drops[self.id] += 1;
        drop(drops);
        let countdown = &self.tracker.drop_countdown;
        if !thread::panicking()
            && countdown.load(Ordering::Relaxed) > 0
            && countdown.fetch_sub(1, Ordering::Relaxed) == 1
        {
            panic::panic_any(Injected);
        }
    }
}

impl Clone for Item {
    fn clone(&self) -> Self {
        let countdown = &self.tracker.clone_countdown;
        if countdown.load(Ordering::Relaxed) > 0 && countdown.fetch_sub(1, Ordering::Relaxed) == 1 {
            panic::panic_any(Injected);
        }
        self.tracker.item(self.val)
    }
}

impl Hash for Item {
    fn hash<H: Hasher>(&self, state: &mut H) {
        if self.tracker.poison_hash.load(Ordering::Relaxed)
            && self.tracker.spared.load(Ordering::Relaxed) != self.val
        {
            panic::panic_any(Injected);
        }
        state.write_u64(self.val);
    }
}

impl PartialEq for Item {
    fn eq(&self, other: &Self) -> bool {
        self.val == other.val
    }
}

impl Eq for Item {}

type Map<S = DefaultHashBuilder> = InstrumentedMap<Item, Item, S>;

/// Keeps the panics this file injects on purpose out of the test output.
fn quiet_injected_panics() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !info.payload().is::<Injected>() {
                previous(info);
            }
        }));
    });
}

/// Runs `f`, which must panic with [`Injected`].
fn expect_injected_panic<R>(f: impl FnOnce() -> R) {
    quiet_injected_panics();
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(_) => panic!("expected an injected panic"),
        Err(payload) if payload.is::<Injected>() => {}
        Err(payload) => panic::resume_unwind(payload),
    }
}

/// Inserts keys `range`; returns the ids of the stored keys and values.
fn fill<S: BuildHasher>(
    tracker: &Arc<Tracker>,
    map: &mut Map<S>,
    range: std::ops::Range<u64>,
) -> Vec<(usize, usize)> {
    range
        .map(|i| {
            let (k, v) = tracker.pair(i);
            let ids = (k.id, v.id);
            assert!(map.insert(k, v).is_none());
            ids
        })
        .collect()
}

/// A map in the middle of a doubling of 2048 old buckets, about half of
/// them evacuated (so some old chunks are already freed).
fn mid_doubling(tracker: &Arc<Tracker>) -> Map {
    let mut map: Map = Map::default();
    let mut i = 0;
    while map.stats().growth.is_none() || i < 13_000 {
        fill(tracker, &mut map, i..i + 1);
        i += 1;
    }
    while let Some(growth) = map.stats().growth {
        if growth.evacuated_old_buckets >= growth.old_buckets / 2 {
            break;
        }
        fill(tracker, &mut map, i..i + 1);
        i += 1;
    }
    let growth = map.stats().growth.expect("still growing");
    assert_eq!(growth.kind, GrowthKind::Double);
    assert!(growth.old_buckets >= 1024, "{growth:?}");
    assert_eq!(tracker.live(), 2 * map.len());
    map
}

/// A map in the middle of a halving, part of it evacuated.
fn mid_shrink(tracker: &Arc<Tracker>) -> Map {
    let mut map: Map = Map::default();
    fill(tracker, &mut map, 0..20_000);
    map.complete_growth();
    map.retain(|k, _| k.val % 8 == 0);
    map.shrink_to_fit();
    assert_eq!(map.stats().growth.map(|g| g.kind), Some(GrowthKind::Shrink));
    for i in 0..500 {
        // Writes drive the halving: a remove of an absent key is a write.
        map.remove(&tracker.item(1_000_000 + i));
    }
    let growth = map.stats().growth.expect("still shrinking");
    assert_eq!(growth.kind, GrowthKind::Shrink);
    assert!(growth.evacuated_old_buckets > 0);
    assert_eq!(tracker.live(), 2 * map.len());
    map
}

#[test]
fn remove_drops_the_entry_once_and_nothing_else() {
    let t = Tracker::new();
    let mut map: Map = Map::default();
    let ids = fill(&t, &mut map, 0..5_000);
    for (i, &(kid, vid)) in ids.iter().enumerate().step_by(2) {
        let query = t.item(i as u64);
        let value = map.remove(&query).expect("present");
        drop(query);
        assert_eq!(value.id, vid);
        assert_eq!(t.drops_of(kid), 1, "the stored key is dropped by remove");
        assert_eq!(t.drops_of(vid), 0, "the value is handed back");
        drop(value);
        assert_eq!(t.drops_of(vid), 1);
    }
    for (i, &(kid, vid)) in ids.iter().enumerate().skip(1).step_by(4) {
        let (k, v) = map.remove_entry(&t.item(i as u64)).expect("present");
        assert_eq!((k.id, v.id), (kid, vid));
        assert_eq!((t.drops_of(kid), t.drops_of(vid)), (0, 0));
    }
    assert!(map.remove(&t.item(0)).is_none());
    assert_eq!(t.live(), 2 * map.len());
    drop(map);
    t.assert_all_dropped_once();
}

#[test]
fn overwriting_insert_drops_the_new_key_and_returns_the_old_value() {
    let t = Tracker::new();
    let mut map: Map = Map::default();
    let ids = fill(&t, &mut map, 0..3_000);
    // Overwrites interleaved with new inserts, so growths run meanwhile.
    let mut saw_growth = false;
    for (i, &(kid, vid)) in ids.iter().enumerate() {
        let (k, v) = t.pair(i as u64);
        let (new_kid, new_vid) = (k.id, v.id);
        let old = map.insert(k, v).expect("an overwrite");
        assert_eq!(old.id, vid);
        assert_eq!(t.drops_of(new_kid), 1, "the new key is dropped by insert");
        assert_eq!(t.drops_of(kid), 0, "the stored key is kept");
        drop(old);
        assert_eq!(t.drops_of(vid), 1);
        let (stored_k, stored_v) = map.get_key_value(&t.item(i as u64)).unwrap();
        assert_eq!((stored_k.id, stored_v.id), (kid, new_vid));
        fill(&t, &mut map, 10_000 + i as u64..10_001 + i as u64);
        saw_growth |= map.stats().growth.is_some();
    }
    assert!(saw_growth);
    assert_eq!(t.live(), 2 * map.len());
    drop(map);
    t.assert_all_dropped_once();
}

#[test]
fn clear_drops_everything_once_and_the_map_is_reusable() {
    let t = Tracker::new();
    let mut map = mid_doubling(&t);
    map.clear();
    assert!(map.is_empty());
    assert_eq!(t.live(), 0);
    fill(&t, &mut map, 0..1_000);
    assert_eq!(t.live(), 2_000);
    map.clear();
    assert_eq!(t.live(), 0);
    let mut map = mid_shrink(&t);
    map.clear();
    assert_eq!(t.live(), 0);
    fill(&t, &mut map, 0..100);
    drop(map);
    t.assert_all_dropped_once();
}

#[test]
fn drain_fully_yields_every_entry_once() {
    for make in [mid_doubling, mid_shrink] {
        let t = Tracker::new();
        let mut map = make(&t);
        let len = map.len();
        let mut seen = HashSet::new();
        let mut drained = 0;
        for (k, v) in map.drain() {
            assert!(seen.insert(k.val), "key {} yielded twice", k.val);
            assert_eq!(v.val, k.val + 1_000_000_000);
            drained += 1;
            drop((k, v));
            if drained % 1_000 == 0 {
                assert_eq!(t.live(), 2 * (len - drained), "the drain holds the rest");
            }
        }
        assert_eq!(drained, len);
        assert!(map.is_empty());
        assert_eq!(map.stats().growth, None);
        fill(&t, &mut map, 0..100);
        assert_eq!(map.len(), 100);
        drop(map);
        t.assert_all_dropped_once();
    }
}

#[test]
fn drain_dropped_half_way_drops_the_rest() {
    for make in [mid_doubling, mid_shrink] {
        let t = Tracker::new();
        let mut map = make(&t);
        let len = map.len();
        let mut drain = map.drain();
        let taken: Vec<(Item, Item)> = drain.by_ref().take(len / 2).collect();
        assert_eq!(drain.len(), len - len / 2);
        drop(drain);
        assert_eq!(t.live(), 2 * taken.len(), "only what was taken is alive");
        assert!(map.is_empty());
        drop(taken);
        assert_eq!(t.live(), 0);
        fill(&t, &mut map, 0..100);
        drop(map);
        t.assert_all_dropped_once();
    }
}

#[test]
fn leaked_drain_leaves_an_empty_map() {
    let t = Tracker::new();
    let mut map = mid_doubling(&t);
    let len = map.len();
    std::mem::forget(map.drain());
    assert!(map.is_empty());
    assert_eq!(map.iter().count(), 0);
    // Leaking is safe, not tidy: nothing was dropped twice.
    assert_eq!(t.live(), 2 * len);
    fill(&t, &mut map, 0..100);
    assert_eq!(map.len(), 100);
}

#[test]
fn retain_drops_exactly_the_rejected_entries() {
    for make in [mid_doubling, mid_shrink] {
        let t = Tracker::new();
        let mut map = make(&t);
        let before: Vec<(u64, usize, usize)> =
            map.iter().map(|(k, v)| (k.val, k.id, v.id)).collect();
        let mut visited = 0;
        map.retain(|k, _| {
            visited += 1;
            k.val % 3 != 0
        });
        assert_eq!(visited, before.len());
        for (val, kid, vid) in before {
            let expect = u32::from(val % 3 == 0);
            assert_eq!((t.drops_of(kid), t.drops_of(vid)), (expect, expect));
        }
        assert_eq!(t.live(), 2 * map.len());
        map.complete_growth();
        assert_eq!(t.live(), 2 * map.len());
        drop(map);
        t.assert_all_dropped_once();
    }
}

#[test]
fn retain_whose_predicate_panics_drops_nothing_it_kept() {
    quiet_injected_panics();
    let t = Tracker::new();
    let mut map = mid_doubling(&t);
    let mut calls = 0;
    expect_injected_panic(|| {
        map.retain(|k, _| {
            calls += 1;
            if calls == 5_000 {
                panic::panic_any(Injected);
            }
            k.val % 2 == 0
        })
    });
    assert_eq!(t.live(), 2 * map.len());
    assert_eq!(map.iter().count(), map.len());
    drop(map);
    t.assert_all_dropped_once();
}

#[test]
fn into_iter_fully_yields_every_entry_once() {
    for make in [mid_doubling, mid_shrink] {
        let t = Tracker::new();
        let map = make(&t);
        let len = map.len();
        let mut seen = HashSet::new();
        for (n, (k, v)) in map.into_iter().enumerate() {
            assert!(seen.insert(k.val), "key {} yielded twice", k.val);
            assert_eq!(v.val, k.val + 1_000_000_000);
            drop((k, v));
            if n % 1_000 == 0 {
                assert_eq!(t.live(), 2 * (len - n - 1));
            }
        }
        assert_eq!(seen.len(), len);
        t.assert_all_dropped_once();
    }
}

#[test]
fn into_iter_dropped_half_way_drops_the_rest() {
    for make in [mid_doubling, mid_shrink] {
        let t = Tracker::new();
        let map = make(&t);
        let len = map.len();
        let mut iter = map.into_iter();
        let taken: Vec<(Item, Item)> = iter.by_ref().take(len / 3).collect();
        drop(iter);
        assert_eq!(t.live(), 2 * taken.len());
        drop(taken);
        t.assert_all_dropped_once();

        let t = Tracker::new();
        let mut keys = make(&t).into_keys();
        let key = keys.next().unwrap();
        drop(keys);
        assert_eq!(t.live(), 1);
        drop(key);
        let values: Vec<Item> = make(&t).into_values().take(7).collect();
        assert_eq!(t.live(), 7);
        drop(values);
        t.assert_all_dropped_once();
    }
}

#[test]
fn dropping_a_map_mid_doubling_drops_everything_once() {
    let t = Tracker::new();
    let map = mid_doubling(&t);
    drop(map);
    t.assert_all_dropped_once();
}

#[test]
fn dropping_a_map_mid_shrink_drops_everything_once() {
    let t = Tracker::new();
    let map = mid_shrink(&t);
    drop(map);
    t.assert_all_dropped_once();
}

#[test]
fn growth_moves_entries_without_dropping_or_copying_them() {
    for make in [mid_doubling, mid_shrink] {
        let t = Tracker::new();
        let mut map = make(&t);
        let created = t.created();
        let ids: HashSet<(usize, usize)> = map.iter().map(|(k, v)| (k.id, v.id)).collect();
        map.complete_growth();
        assert_eq!(map.stats().growth, None);
        assert_eq!(t.created(), created, "no item was cloned");
        assert_eq!(t.live(), 2 * map.len(), "no item was dropped");
        let after: HashSet<(usize, usize)> = map.iter().map(|(k, v)| (k.id, v.id)).collect();
        assert_eq!(after, ids, "the very same items, moved");
        drop(map);
        t.assert_all_dropped_once();
    }
}

#[test]
fn clone_and_drop_both() {
    for make in [mid_doubling, mid_shrink] {
        let t = Tracker::new();
        let map = make(&t);
        let len = map.len();
        let mut copy = map.clone();
        assert_eq!(t.live(), 4 * len);
        assert_eq!(copy.stats().growth, map.stats().growth);
        assert_eq!(copy.stats().entries, len);
        drop(map);
        assert_eq!(t.live(), 2 * len, "the clone owns its own items");
        let mut n = 0;
        for (k, v) in copy.iter() {
            assert_eq!(v.val, k.val + 1_000_000_000);
            n += 1;
        }
        assert_eq!(n, len);
        // The clone carries on the growth it inherited.
        fill(&t, &mut copy, 5_000_000..5_000_100);
        copy.complete_growth();
        assert_eq!(t.live(), 2 * copy.len());
        let copy2 = copy.clone();
        drop(copy);
        drop(copy2);
        t.assert_all_dropped_once();
    }
}

#[test]
fn clone_that_panics_half_way_leaks_nothing() {
    quiet_injected_panics();
    for make in [mid_doubling, mid_shrink] {
        let t = Tracker::new();
        let map = make(&t);
        let len = map.len();
        for countdown in [1, 2, 3, len / 2, 2 * len - 1] {
            t.clone_countdown.store(countdown, Ordering::Relaxed);
            expect_injected_panic(|| map.clone());
            assert_eq!(t.live(), 2 * len, "countdown {countdown}");
        }
        t.clone_countdown.store(0, Ordering::Relaxed);
        drop(map);
        t.assert_all_dropped_once();
    }
}

#[test]
fn insert_whose_hash_panics_drops_its_key_and_value_once() {
    quiet_injected_panics();
    let t = Tracker::new();
    let mut map = mid_doubling(&t);
    let len = map.len();
    let (k, v) = t.pair(99_999_999);
    let (kid, vid) = (k.id, v.id);
    t.poison_hash.store(true, Ordering::Relaxed);
    expect_injected_panic(|| map.insert(k, v));
    t.poison_hash.store(false, Ordering::Relaxed);
    assert_eq!((t.drops_of(kid), t.drops_of(vid)), (1, 1));
    assert_eq!(map.len(), len);
    assert_eq!(t.live(), 2 * len);
    drop(map);
    t.assert_all_dropped_once();
}

#[test]
fn write_that_panics_mid_evacuation_drops_only_its_own_key_and_value() {
    quiet_injected_panics();
    for make in [mid_doubling, mid_shrink] {
        let t = Tracker::new();
        let mut map = make(&t);
        let len = map.len();
        let (mut panics, mut inserted) = (0, 0);
        for i in 0..50u64 {
            // The new key hashes; rehashing any stored key panics.
            let val = 70_000_000 + i;
            t.spared.store(val, Ordering::Relaxed);
            t.poison_hash.store(true, Ordering::Relaxed);
            let (k, v) = t.pair(val);
            let (kid, vid) = (k.id, v.id);
            let result = panic::catch_unwind(AssertUnwindSafe(|| map.insert(k, v)));
            t.poison_hash.store(false, Ordering::Relaxed);
            match result {
                Err(payload) if payload.is::<Injected>() => panics += 1,
                Err(payload) => panic::resume_unwind(payload),
                // Both old buckets it evacuated were empty.
                Ok(old) => assert!(old.is_none()),
            }
            let kept = map.contains_key(&t.item(val));
            let dropped = u32::from(!kept);
            assert_eq!((t.drops_of(kid), t.drops_of(vid)), (dropped, dropped));
            inserted += usize::from(kept);
            assert_eq!(map.len(), len + inserted);
            assert_eq!(t.live(), 2 * map.len(), "no stored entry was dropped");
        }
        assert!(panics > 10, "{panics}");
        map.complete_growth();
        assert_eq!(t.live(), 2 * map.len());
        drop(map);
        t.assert_all_dropped_once();
    }
}

#[test]
fn entry_api_drops_what_it_does_not_keep() {
    let t = Tracker::new();
    let mut map = mid_doubling(&t);
    let base = map.len();

    // Vacant + insert: both are kept.
    let (k, v) = t.pair(50_000_000);
    let (kid, vid) = (k.id, v.id);
    match map.entry(k) {
        Entry::Vacant(e) => {
            e.insert(v);
        }
        Entry::Occupied(_) => panic!("absent key"),
    }
    assert_eq!((t.drops_of(kid), t.drops_of(vid)), (0, 0));

    // Vacant, given back: nothing is kept, nothing dropped twice.
    let k = t.item(50_000_001);
    let id = k.id;
    let back = match map.entry(k) {
        Entry::Vacant(e) => e.into_key(),
        Entry::Occupied(_) => panic!("absent key"),
    };
    assert_eq!((back.id, t.drops_of(id)), (id, 0));
    drop(back);
    assert_eq!(t.drops_of(id), 1);
    assert!(map.get(&t.item(50_000_001)).is_none());

    // Occupied + or_insert: the new key and the default are dropped.
    let (k, v) = t.pair(50_000_000);
    let (new_kid, new_vid) = (k.id, v.id);
    assert_eq!(map.entry(k).or_insert(v).id, vid);
    assert_eq!((t.drops_of(new_kid), t.drops_of(new_vid)), (1, 1));
    assert_eq!((t.drops_of(kid), t.drops_of(vid)), (0, 0));

    // Occupied + insert: the old value is handed back.
    let k = t.item(50_000_000);
    let new_v = t.item(7);
    let new_vid = new_v.id;
    let old = match map.entry(k) {
        Entry::Occupied(mut e) => e.insert(new_v),
        Entry::Vacant(_) => panic!("present key"),
    };
    assert_eq!((old.id, t.drops_of(vid)), (vid, 0));
    drop(old);
    assert_eq!(t.drops_of(vid), 1);

    // Occupied + remove_entry: the stored key comes back.
    let (k, v) = match map.entry(t.item(50_000_000)) {
        Entry::Occupied(e) => e.remove_entry(),
        Entry::Vacant(_) => panic!("present key"),
    };
    assert_eq!((k.id, v.id), (kid, new_vid));
    assert_eq!((t.drops_of(kid), t.drops_of(new_vid)), (0, 0));
    drop((k, v));

    // Occupied + remove on a pre-existing entry.
    let (kid, vid) = {
        let (k, v) = map.get_key_value(&t.item(17)).unwrap();
        (k.id, v.id)
    };
    let v = match map.entry(t.item(17)) {
        Entry::Occupied(e) => e.remove(),
        Entry::Vacant(_) => panic!("present key"),
    };
    assert_eq!((v.id, t.drops_of(kid), t.drops_of(vid)), (vid, 1, 0));
    drop(v);

    // or_insert_with on vacant and occupied keys, across the growth.
    for i in 0..3_000u64 {
        let (k, v) = t.pair(60_000_000 + i % 1_500);
        map.entry(k).or_insert(v);
    }
    assert_eq!(map.len(), base - 1 + 1_500);
    assert_eq!(t.live(), 2 * map.len());
    drop(map);
    t.assert_all_dropped_once();
}

/// Hashes every key to bucket 0 (all low bits zero); only the top byte, the
/// tophash, varies, so the map builds one overflow chain holding every
/// entry while probing it compares few keys (a fully constant hash would
/// make building it quadratic in key comparisons, too slow in debug mode).
#[derive(Clone, Copy, Default)]
struct OneChainHasher(u64);

impl Hasher for OneChainHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
    fn finish(&self) -> u64 {
        self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) & 0xFF00_0000_0000_0000
    }
}

type OneChain = BuildHasherDefault<OneChainHasher>;

/// Runs `f` on a thread with a 256 KiB stack.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("the small-stack thread panicked (a stack overflow aborts instead)")
}

/// One overflow chain of 4_000 buckets. Measured in a debug build, drop
/// glue that recursed down such a chain overflows a 256 KiB stack from about
/// 1_800 buckets on, and a recursive clone from fewer than 500. (Building
/// the chain is quadratic: every insert probes the whole chain, so 100_000
/// entries would take minutes in debug mode.)
#[test]
fn long_overflow_chain_drops_and_clones_on_a_small_stack() {
    const N: usize = 32_000;
    let t = Tracker::new();
    // Presized so no growth re-chains the whole chain while it is built.
    let mut map: Map<OneChain> = InstrumentedMap::with_capacity_and_hasher(N, OneChain::default());
    fill(&t, &mut map, 0..N as u64);
    let stats = map.stats();
    assert_eq!(stats.growth, None);
    assert_eq!(
        stats.max_overflow_chain,
        N / 8 - 1,
        "one chain of every entry"
    );
    assert_eq!(stats.overflow_buckets, N / 8 - 1);

    let t2 = Arc::clone(&t);
    on_small_stack(move || {
        let copy = map.clone();
        assert_eq!(t2.live(), 4 * N);
        assert_eq!(copy.stats().max_overflow_chain, N / 8 - 1);
        let (copy2, copy3, copy4) = (copy.clone(), copy.clone(), copy.clone());
        drop(map);
        assert_eq!(t2.live(), 8 * N);

        // Half an into_iter, then the rest of the chain with the iterator.
        let mut iter = copy.into_iter();
        let taken: Vec<(Item, Item)> = iter.by_ref().take(N / 2).collect();
        drop(iter);
        assert_eq!(t2.live(), 6 * N + taken.len() * 2);
        drop(taken);

        // A drain dropped after one entry.
        let mut copy2 = copy2;
        let mut drain = copy2.drain();
        drain.next();
        drop(drain);
        assert!(copy2.is_empty());
        assert_eq!(t2.live(), 4 * N);

        // retain along the chain, then clear it.
        let mut copy3 = copy3;
        copy3.retain(|k, _| k.val % 2 == 0);
        assert_eq!(copy3.len(), N / 2);
        assert_eq!(t2.live(), 3 * N);
        assert_eq!(
            copy3.get(&t2.item(N as u64 - 2)).map(|v| v.val),
            Some(N as u64 - 2 + 1_000_000_000)
        );
        copy3.clear();
        assert_eq!(t2.live(), 2 * N);
        drop(copy4);
        assert_eq!(t2.live(), 0);
    });
    t.assert_all_dropped_once();
}

/// The map holds exactly what it iterates, and finds all of it.
fn assert_consistent(map: &Map) {
    let mut n = 0;
    for (k, v) in map.iter() {
        assert_eq!(v.val, k.val + 1_000_000_000);
        assert_eq!(map.get(k).map(|v| v.id), Some(v.id));
        n += 1;
    }
    assert_eq!(n, map.len());
    assert_eq!(map.stats().entries, map.len());
}

#[test]
fn drop_that_panics_mid_retain_drops_nothing_twice() {
    quiet_injected_panics();
    for make in [mid_doubling, mid_shrink] {
        for countdown in [1, 2, 3, 501] {
            let t = Tracker::new();
            let mut map = make(&t);
            t.drop_countdown.store(countdown, Ordering::Relaxed);
            expect_injected_panic(|| map.retain(|k, _| k.val % 3 == 0));
            t.drop_countdown.store(0, Ordering::Relaxed);
            // The entry whose key panicked was removed, its value dropped
            // while unwinding.
            assert_eq!(t.live(), 2 * map.len(), "countdown {countdown}");
            assert_consistent(&map);
            map.retain(|k, _| k.val % 3 == 0);
            assert!(map.iter().all(|(k, _)| k.val % 3 == 0));
            fill(&t, &mut map, 90_000_000..90_000_100);
            map.complete_growth();
            assert_consistent(&map);
            drop(map);
            t.assert_all_dropped_once();
        }
    }
}

#[test]
fn drop_that_panics_while_dropping_a_growing_map_drops_nothing_twice() {
    quiet_injected_panics();
    for make in [mid_doubling, mid_shrink] {
        for countdown in [1, 2, 1_000] {
            let t = Tracker::new();
            let map = make(&t);
            t.drop_countdown.store(countdown, Ordering::Relaxed);
            expect_injected_panic(|| drop(map));
            t.drop_countdown.store(0, Ordering::Relaxed);
            // The entries after the panicking one leak; none is dropped twice.
            t.assert_dropped_at_most_once();
        }
    }
}

#[test]
fn drop_that_panics_in_clear_leaves_an_empty_usable_map() {
    quiet_injected_panics();
    for make in [mid_doubling, mid_shrink] {
        let t = Tracker::new();
        let mut map = make(&t);
        t.drop_countdown.store(7, Ordering::Relaxed);
        expect_injected_panic(|| map.clear());
        t.drop_countdown.store(0, Ordering::Relaxed);
        assert_eq!(map.len(), 0);
        assert_consistent(&map);
        fill(&t, &mut map, 0..3_000);
        assert_consistent(&map);
        drop(map);
        t.assert_dropped_at_most_once();
    }
}

#[test]
fn drop_that_panics_in_an_overwrite_or_remove_drops_nothing_twice() {
    quiet_injected_panics();
    for make in [mid_doubling, mid_shrink] {
        let t = Tracker::new();
        let mut map = make(&t);
        let key = map.keys().next().expect("a key").val;
        // Overwriting drops the caller's new key inside the map.
        t.drop_countdown.store(1, Ordering::Relaxed);
        let (k, v) = t.pair(key);
        expect_injected_panic(|| map.insert(k, v));
        assert_consistent(&map);
        // Removing hands the entry out; the panic is the caller's.
        t.drop_countdown.store(2, Ordering::Relaxed);
        expect_injected_panic(|| map.remove(&t.item(key)));
        t.drop_countdown.store(0, Ordering::Relaxed);
        assert_consistent(&map);
        assert!(map.get(&t.item(key)).is_none());
        drop(map);
        // A value being returned while a local's drop panics may leak
        // (rust-lang/rust#47949); nothing is dropped twice.
        t.assert_dropped_at_most_once();
    }
}

#[test]
fn drop_that_panics_in_a_half_consumed_into_iter_drops_nothing_twice() {
    quiet_injected_panics();
    for make in [mid_doubling, mid_shrink] {
        let t = Tracker::new();
        let map = make(&t);
        let mut entries = map.into_iter();
        for _ in 0..100 {
            drop(entries.next());
        }
        t.drop_countdown.store(5, Ordering::Relaxed);
        expect_injected_panic(|| drop(entries));
        t.drop_countdown.store(0, Ordering::Relaxed);
        t.assert_dropped_at_most_once();
    }
}

#[test]
fn clone_that_panics_mid_clone_of_a_colliding_map_leaks_nothing() {
    quiet_injected_panics();
    let t = Tracker::new();
    let mut map: Map<BuildHasherDefault<OneChainHasher>> = Map::default();
    fill(&t, &mut map, 0..500);
    let len = map.len();
    for countdown in [1, 9, 17, 400, 2 * len - 1] {
        t.clone_countdown.store(countdown, Ordering::Relaxed);
        expect_injected_panic(|| map.clone());
        assert_eq!(t.live(), 2 * len, "countdown {countdown}");
    }
    t.clone_countdown.store(0, Ordering::Relaxed);
    let copy = map.clone();
    assert_eq!(copy.len(), len);
    drop(map);
    drop(copy);
    t.assert_all_dropped_once();
}
