//! Fuzz-style property test of the engine's memory safety: random sequences
//! of operations, with a panic injected into a random `Hash`, `Eq`, `Clone`
//! or `Drop` call of the keys and values, under hashers from good to
//! fully colliding, checked against a `std::collections::HashMap` model.
//!
//! What it asserts:
//! - no key or value is ever dropped twice, and (unless a `Drop` panicked,
//!   which may leak) every one is dropped exactly once by the end;
//! - after every operation, panicking or not, the map is internally
//!   consistent: `len`, iteration, `get` of every iterated key and `stats`
//!   agree;
//! - an operation that did not panic did exactly what the model did; a
//!   write whose `Hash` or `Eq` panicked, and a `clone` whose `Clone`
//!   panicked, changed nothing.
//!
//! Run under AddressSanitizer and valgrind by `.ci/run`, it is what shows
//! that the unsafe storage layer (`src/map/table/mod.rs`) never reads
//! uninitialised or freed memory. `PROPTEST_CASES` sets the case count
//! (default 96).

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hash, Hasher};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

use mapscope::{Entry, InstrumentedMap};
use proptest::prelude::*;

/// Payload of the panics this file injects.
struct Injected;

/// Which user call panics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Hash,
    Eq,
    Clone,
    Drop,
}

thread_local! {
    /// The armed kind and how many of its calls still pass before one panics.
    static ARMED: Cell<Option<(Kind, u32)>> = const { Cell::new(None) };
    /// Whether an injected panic fired since the last `catch`.
    static FIRED: Cell<Option<Kind>> = const { Cell::new(None) };
    /// `DROPS[tag]`: how many times item `tag` was dropped.
    static DROPS: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn maybe_panic(kind: Kind) {
    if let Some((armed, left)) = ARMED.get() {
        if armed == kind {
            if left == 0 {
                ARMED.set(None);
                FIRED.set(Some(kind));
                panic::panic_any(Injected);
            }
            ARMED.set(Some((armed, left - 1)));
        }
    }
}

fn new_tag() -> usize {
    DROPS.with_borrow_mut(|drops| {
        drops.push(0);
        drops.len() - 1
    })
}

/// A key or value: compares and hashes by `id`; `tag` tracks this instance.
#[derive(Debug)]
struct Item {
    id: u64,
    tag: usize,
}

impl Item {
    fn new(id: u64) -> Item {
        Item { id, tag: new_tag() }
    }
}

impl Drop for Item {
    fn drop(&mut self) {
        if self.tag == usize::MAX {
            // A probe key, never counted.
            return;
        }
        DROPS.with_borrow_mut(|drops| drops[self.tag] = drops[self.tag].saturating_add(1));
        // A second panic while unwinding would abort the test process.
        if !std::thread::panicking() {
            maybe_panic(Kind::Drop);
        }
    }
}

impl Clone for Item {
    fn clone(&self) -> Item {
        maybe_panic(Kind::Clone);
        Item::new(self.id)
    }
}

impl Hash for Item {
    fn hash<H: Hasher>(&self, state: &mut H) {
        maybe_panic(Kind::Hash);
        state.write_u64(self.id);
    }
}

impl PartialEq for Item {
    fn eq(&self, other: &Item) -> bool {
        maybe_panic(Kind::Eq);
        self.id == other.id
    }
}

impl Eq for Item {}

fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// From a good hash to one that sends every key to one bucket.
#[derive(Clone, Copy, Debug)]
enum Spread {
    Mixed,
    Mod4,
    FewTops,
    Constant,
}

#[derive(Clone, Copy, Debug)]
struct Hashing(Spread);

struct IdHasher(Spread, u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.1 = self.1.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.1 = n;
    }
    fn finish(&self) -> u64 {
        let h = mix(self.1);
        match self.0 {
            Spread::Mixed => h,
            Spread::Mod4 => (h % 4) | (7 << 56),
            Spread::FewTops => (h & 0x00ff_ffff_ffff_ffff) | ((h % 3) << 56),
            Spread::Constant => 0,
        }
    }
}

impl BuildHasher for Hashing {
    type Hasher = IdHasher;
    fn build_hasher(&self) -> IdHasher {
        IdHasher(self.0, 0)
    }
}

type Map = InstrumentedMap<Item, Item, Hashing>;
type Model = HashMap<u64, u64>;

#[derive(Clone, Debug)]
enum Op {
    Insert(u64, u64),
    InsertRun(u64, u16),
    Remove(u64),
    RemoveRun(u64, u16),
    Get(u64),
    EntryOrInsert(u64, u64),
    EntryRemove(u64),
    Retain(u64),
    Clone,
    ShrinkToFit,
    CompleteGrowth,
    Clear,
    Drain(u16),
    IntoIter(u16),
    IterMut,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let key = 0..600u64;
    prop_oneof![
        8 => (key.clone(), any::<u64>()).prop_map(|(k, v)| Op::Insert(k, v % 1000)),
        2 => (key.clone(), 1..200u16).prop_map(|(k, n)| Op::InsertRun(k, n)),
        5 => key.clone().prop_map(Op::Remove),
        1 => (key.clone(), 1..200u16).prop_map(|(k, n)| Op::RemoveRun(k, n)),
        3 => key.clone().prop_map(Op::Get),
        2 => (key.clone(), any::<u64>()).prop_map(|(k, v)| Op::EntryOrInsert(k, v % 1000)),
        1 => key.clone().prop_map(Op::EntryRemove),
        1 => (2..7u64).prop_map(Op::Retain),
        1 => Just(Op::Clone),
        1 => Just(Op::ShrinkToFit),
        1 => Just(Op::CompleteGrowth),
        1 => Just(Op::Clear),
        1 => (0..50u16).prop_map(Op::Drain),
        1 => (0..50u16).prop_map(Op::IntoIter),
        1 => Just(Op::IterMut),
    ]
}

fn arm_strategy() -> impl Strategy<Value = Option<(Kind, u32)>> {
    prop_oneof![
        4 => Just(None),
        1 => (0..40u32).prop_map(|n| Some((Kind::Hash, n))),
        1 => (0..40u32).prop_map(|n| Some((Kind::Eq, n))),
        1 => (0..200u32).prop_map(|n| Some((Kind::Clone, n))),
        1 => (0..200u32).prop_map(|n| Some((Kind::Drop, n))),
    ]
}

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

/// Runs `f` with `arm` armed; the injected panic that fired, if any. Any
/// other panic is a real failure and propagates.
fn catch(arm: Option<(Kind, u32)>, f: impl FnOnce()) -> Option<Kind> {
    quiet_injected_panics();
    FIRED.set(None);
    ARMED.set(arm);
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    ARMED.set(None);
    let fired = FIRED.take();
    match result {
        Ok(()) => None,
        Err(payload) if payload.is::<Injected>() => Some(fired.expect("an injected panic fired")),
        Err(payload) => panic::resume_unwind(payload),
    }
}

/// The map's contents as `id -> id`, checking it is internally consistent.
fn contents(map: &Map) -> BTreeMap<u64, u64> {
    let mut seen = BTreeMap::new();
    for (k, v) in map.iter() {
        assert!(seen.insert(k.id, v.id).is_none(), "key {} twice", k.id);
    }
    assert_eq!(seen.len(), map.len(), "iteration and len agree");
    assert_eq!(map.stats().entries, map.len(), "stats and len agree");
    for (&k, &v) in &seen {
        assert_eq!(map.get(&probe(k)).map(|v| v.id), Some(v), "get({k})");
    }
    seen
}

fn sorted(model: &Model) -> BTreeMap<u64, u64> {
    model.iter().map(|(&k, &v)| (k, v)).collect()
}

/// A key to look up with, outside the drop accounting.
fn probe(id: u64) -> Item {
    Item {
        id,
        tag: usize::MAX,
    }
}

fn with_probe<R>(id: u64, f: impl FnOnce(&Item) -> R) -> R {
    f(&probe(id))
}

fn apply(map: &mut Map, model: &mut Model, op: &Op) {
    match *op {
        Op::Insert(k, v) => {
            let old = map.insert(Item::new(k), Item::new(v));
            assert_eq!(old.map(|v| v.id), model.insert(k, v));
        }
        Op::InsertRun(start, n) => {
            for k in start..start + u64::from(n) {
                map.insert(Item::new(k), Item::new(k));
                model.insert(k, k);
            }
        }
        Op::Remove(k) => {
            let old = with_probe(k, |key| map.remove(key));
            assert_eq!(old.map(|v| v.id), model.remove(&k));
        }
        Op::RemoveRun(start, n) => {
            for k in start..start + u64::from(n) {
                let old = with_probe(k, |key| map.remove_entry(key));
                assert_eq!(old.map(|(_, v)| v.id), model.remove(&k));
            }
        }
        Op::Get(k) => {
            let got = with_probe(k, |key| map.get(key).map(|v| v.id));
            assert_eq!(got, model.get(&k).copied());
        }
        Op::EntryOrInsert(k, v) => {
            let stored = map.entry(Item::new(k)).or_insert_with(|| Item::new(v)).id;
            assert_eq!(stored, *model.entry(k).or_insert(v));
        }
        Op::EntryRemove(k) => match map.entry(Item::new(k)) {
            Entry::Occupied(entry) => {
                assert_eq!(entry.remove().id, model.remove(&k).expect("in the model"));
            }
            Entry::Vacant(_) => assert!(!model.contains_key(&k)),
        },
        Op::Retain(m) => {
            map.retain(|k, _| k.id % m != 0);
            model.retain(|k, _| k % m != 0);
        }
        Op::Clone => {
            let copy = map.clone();
            assert_eq!(contents(&copy), sorted(model));
            *map = copy;
        }
        Op::ShrinkToFit => map.shrink_to_fit(),
        Op::CompleteGrowth => map.complete_growth(),
        Op::Clear => {
            map.clear();
            model.clear();
        }
        Op::Drain(n) => {
            let mut drain = map.drain();
            for _ in 0..n {
                let Some((k, v)) = drain.next() else { break };
                assert_eq!(model.get(&k.id), Some(&v.id));
            }
            drop(drain);
            model.clear();
        }
        Op::IntoIter(n) => {
            let taken = std::mem::replace(map, Map::with_hasher(*map.hasher()));
            let mut entries = taken.into_iter();
            for _ in 0..n {
                let Some((k, v)) = entries.next() else { break };
                assert_eq!(model.get(&k.id), Some(&v.id));
            }
            drop(entries);
            model.clear();
        }
        Op::IterMut => {
            for (k, v) in map.iter_mut() {
                assert_eq!(model.get(&k.id), Some(&v.id));
            }
        }
    }
}

/// Whether a panic of `kind` in `op` must leave the map untouched.
fn panic_changes_nothing(op: &Op, kind: Kind) -> bool {
    match kind {
        Kind::Hash | Kind::Eq => matches!(
            op,
            Op::Insert(..)
                | Op::Remove(_)
                | Op::Get(_)
                | Op::EntryOrInsert(..)
                | Op::EntryRemove(_)
        ),
        Kind::Clone => matches!(op, Op::Clone),
        Kind::Drop => false,
    }
}

fn run(spread: Spread, steps: &[(Op, Option<(Kind, u32)>)]) {
    DROPS.with_borrow_mut(Vec::clear);
    let mut map = Map::with_hasher(Hashing(spread));
    let mut model = Model::new();
    let mut drop_panicked = false;
    for (step, (op, arm)) in steps.iter().enumerate() {
        let before = sorted(&model);
        let mut scratch_model = model.clone();
        let fired = catch(*arm, || apply(&mut map, &mut scratch_model, op));
        let now = contents(&map);
        match fired {
            None => {
                assert_eq!(now, sorted(&scratch_model), "step {step}: {op:?}");
                model = scratch_model;
            }
            Some(kind) => {
                drop_panicked |= kind == Kind::Drop;
                if panic_changes_nothing(op, kind) {
                    assert_eq!(now, before, "step {step}: {op:?} panicked in {kind:?}");
                }
                model = now.into_iter().collect();
            }
        }
    }
    let fired = catch(None, || drop(map));
    assert_eq!(fired, None);
    DROPS.with_borrow(|drops| {
        if let Some(tag) = drops.iter().position(|&n| n > 1) {
            panic!("item {tag} dropped {} times", drops[tag]);
        }
        if !drop_panicked {
            let leaked = drops.iter().filter(|&&n| n == 0).count();
            assert_eq!(leaked, 0, "items never dropped, with no Drop panic");
        }
    });
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(96)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_operations_with_injected_panics(
        spread in prop_oneof![
            Just(Spread::Mixed),
            Just(Spread::Mod4),
            Just(Spread::FewTops),
            Just(Spread::Constant),
        ],
        steps in proptest::collection::vec((op_strategy(), arm_strategy()), 1..120),
    ) {
        run(spread, &steps);
    }
}
