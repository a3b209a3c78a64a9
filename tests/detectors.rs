//! The detectors, each driven by a real registered map: when it fires, what
//! number and sentence it carries, when it clears, that each firing is
//! counted once, and that it shows up as a `Misuse` event.
//!
//! Every registry here uses `DetectorConfig::default().with_window(Duration::ZERO)`,
//! so each `snapshot()` is one observation window, and small thresholds.
//! Time is the registry's manual clock: each observation comes one second
//! after the previous one ([`TICK`]), and a test that waits for a hold or a
//! stall advances the clock past it. Nothing sleeps.

use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Deref;
use std::time::Duration;

use mapscope::registry::{ManualClock, MisuseEvent};
use mapscope::{
    DetectorConfig, Event, GrowthKind, InstrumentedMap, MapSnapshot, MisuseKind, Registry,
    RegistrySnapshot,
};

/// The hold of the event-triggered conditions in these tests.
const HOLD: Duration = Duration::from_secs(60);

/// How far the clock moves before each observation.
const TICK: Duration = Duration::from_secs(1);

fn config() -> DetectorConfig {
    DetectorConfig::default().with_window(Duration::ZERO)
}

/// A registry and its manual clock.
struct Clocked {
    registry: Registry,
    clock: ManualClock,
}

impl Deref for Clocked {
    type Target = Registry;

    fn deref(&self) -> &Registry {
        &self.registry
    }
}

fn registry(config: DetectorConfig) -> Clocked {
    let clock = ManualClock::new();
    let registry = Registry::builder()
        .clock(clock.clone())
        .detectors(config)
        .build();
    Clocked { registry, clock }
}

type Map = InstrumentedMap<u64, u64>;

fn register(registry: &Registry, name: &str) -> Map {
    Map::builder(name).register(registry).unwrap()
}

/// Publishes `map`, moves the clock one [`TICK`], takes one snapshot (one
/// window), returns it and the map's part.
fn observe<K, V, S>(
    registry: &Clocked,
    map: &InstrumentedMap<K, V, S>,
    name: &str,
) -> (RegistrySnapshot, MapSnapshot) {
    map.publish();
    registry.clock.advance(TICK);
    let snapshot = registry.snapshot();
    let one = snapshot.map(name).expect("registered").clone();
    (snapshot, one)
}

fn misuse_events<'a>(
    snapshot: &'a RegistrySnapshot,
    name: &str,
    kind: MisuseKind,
) -> Vec<&'a MisuseEvent> {
    snapshot
        .recent_events
        .iter()
        .filter_map(|r| match &r.event {
            Event::Misuse(e) if &*e.map.name == name && e.kind == kind => Some(e),
            _ => None,
        })
        .collect()
}

fn condition(map: &MapSnapshot, kind: MisuseKind) -> &mapscope::Condition {
    map.conditions
        .iter()
        .find(|c| c.kind == kind)
        .unwrap_or_else(|| panic!("{kind} is not active: {:?}", map.conditions))
}

/// Checks that exactly the firing counted so far is active and was
/// reported, with the condition's number and sentence.
fn assert_fired(snapshot: &RegistrySnapshot, map: &MapSnapshot, kind: MisuseKind, firings: u64) {
    assert!(map.is_active(kind), "{kind} should be active");
    assert_eq!(map.misuse_count(kind), firings, "{kind} firings");
    let active = condition(map, kind);
    assert!(!active.details.is_empty());
    let events = misuse_events(snapshot, &map.id.name, kind);
    assert_eq!(events.len() as u64, firings, "one Misuse event per firing");
    let last = events.last().unwrap();
    assert_eq!(active.since, last.at, "the condition dates from its firing");
    assert_eq!(last.map, map.id);
    assert!(!last.details.is_empty());
    assert_eq!(last.trace, None);
}

/// Inserts fresh keys from `*next` until a growth is left in progress.
fn insert_until_growth(map: &mut Map, next: &mut u64) {
    for _ in 0..1_000_000 {
        map.insert(*next, *next);
        *next += 1;
        if map.stats().growth.is_some() {
            return;
        }
    }
    panic!("no growth was ever left in progress");
}

/// Hashes every key to the same value: one bucket takes every key.
#[derive(Debug, Default)]
struct ConstantHasher;

impl Hasher for ConstantHasher {
    fn finish(&self) -> u64 {
        0x9e37_79b9_7f4a_7c15
    }
    fn write(&mut self, _bytes: &[u8]) {}
}

/// Hashes a `u64` key to itself, so a test picks each key's bucket.
#[derive(Debug, Default)]
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

// ---------------------------------------------------------------------------
// unbounded_growth
// ---------------------------------------------------------------------------

#[test]
fn unbounded_growth_fires_past_max_entries_and_clears_below() {
    let kind = MisuseKind::UnboundedGrowth;
    // Only the max_entries trigger: the windows heuristic is off.
    let registry = registry(config().with_growth_windows(0));
    let mut map = Map::builder("sessions")
        .max_entries(100)
        .register(&registry)
        .unwrap();
    for i in 0..100 {
        map.insert(i, i);
    }
    let (_, seen) = observe(&registry, &map, "sessions");
    assert!(!seen.is_active(kind), "100 entries do not exceed 100");

    map.insert(100, 100);
    let (snapshot, seen) = observe(&registry, &map, "sessions");
    assert_fired(&snapshot, &seen, kind, 1);
    assert!(
        condition(&seen, kind).details.contains("max_entries 100"),
        "{}",
        condition(&seen, kind).details
    );
    // Still over: stays active, and is not counted again.
    map.insert(101, 101);
    let (snapshot, seen) = observe(&registry, &map, "sessions");
    assert_fired(&snapshot, &seen, kind, 1);

    for i in 0..10 {
        map.remove(&i);
    }
    let (_, seen) = observe(&registry, &map, "sessions");
    assert!(!seen.is_active(kind), "92 entries: cleared");
    assert_eq!(seen.misuse_count(kind), 1, "clearing keeps the count");

    for i in 200..220 {
        map.insert(i, i);
    }
    let (snapshot, seen) = observe(&registry, &map, "sessions");
    assert_fired(&snapshot, &seen, kind, 2);
}

#[test]
fn unbounded_growth_fires_after_growing_windows_without_removes() {
    let kind = MisuseKind::UnboundedGrowth;
    let registry = registry(config().with_growth_windows(3));
    let mut map = register(&registry, "ids");
    let mut next = 0;
    let mut grow = |map: &mut Map| {
        for _ in 0..50 {
            map.insert(next, next);
            next += 1;
        }
    };
    observe(&registry, &map, "ids"); // the first observation starts the windows
    for window in 1..=2 {
        grow(&mut map);
        let (_, seen) = observe(&registry, &map, "ids");
        assert!(!seen.is_active(kind), "only {window} growing windows");
    }
    grow(&mut map);
    let (snapshot, seen) = observe(&registry, &map, "ids");
    assert_fired(&snapshot, &seen, kind, 1);
    let active = condition(&seen, kind);
    // 50 entries per window, one window per second of the registry's clock.
    assert_eq!(active.value, 50.0, "the growth rate in entries/s");
    assert!(active.details.contains("no removes"), "{}", active.details);
    let event = misuse_events(&snapshot, "ids", kind)[0];
    assert_eq!(event.value, active.value);

    // Keeps firing while it keeps growing...
    grow(&mut map);
    let (_, seen) = observe(&registry, &map, "ids");
    assert!(seen.is_active(kind));
    // ...and clears at the first window with a remove, even one that grew.
    grow(&mut map);
    map.remove(&0);
    let (_, seen) = observe(&registry, &map, "ids");
    assert!(!seen.is_active(kind), "a remove clears it");
    assert_eq!(seen.misuse_count(kind), 1);

    // A window without growth restarts the count too.
    for _ in 0..2 {
        grow(&mut map);
        observe(&registry, &map, "ids");
    }
    let (_, seen) = observe(&registry, &map, "ids"); // no writes
    assert!(!seen.is_active(kind));
    for _ in 0..2 {
        grow(&mut map);
        let (_, seen) = observe(&registry, &map, "ids");
        assert!(!seen.is_active(kind), "the count started over");
    }
}

#[test]
fn windows_advance_at_most_once_per_window() {
    let kind = MisuseKind::UnboundedGrowth;
    // One growing window would be enough, but the window is an hour long:
    // however often it is observed, it does not advance.
    let registry = registry(
        DetectorConfig::default()
            .with_window(Duration::from_secs(3600))
            .with_growth_windows(1),
    );
    let mut map = register(&registry, "slow");
    observe(&registry, &map, "slow");
    for i in 0..20 {
        map.insert(i, i);
        let (_, seen) = observe(&registry, &map, "slow");
        assert!(!seen.is_active(kind));
    }
}

// ---------------------------------------------------------------------------
// retained_capacity
// ---------------------------------------------------------------------------

#[test]
fn retained_capacity_fires_after_bulk_deletes_and_clears_after_shrink() {
    let kind = MisuseKind::RetainedCapacity;
    let registry = registry(config().with_retained_windows(2));
    let mut map = register(&registry, "cache");
    for i in 0..20_000 {
        map.insert(i, i);
    }
    map.complete_growth();
    let (_, seen) = observe(&registry, &map, "cache");
    assert!(!seen.is_active(kind), "full");
    assert_eq!(seen.stats.buckets, 4_096);

    // Delete 95%: 1,000 entries in 32,768 slots.
    for i in 1_000..20_000 {
        map.remove(&i);
    }
    let (_, seen) = observe(&registry, &map, "cache");
    assert!(!seen.is_active(kind), "one low window of the two required");
    let (snapshot, seen) = observe(&registry, &map, "cache");
    assert_fired(&snapshot, &seen, kind, 1);
    let reclaimable = condition(&seen, kind).value;
    assert!(reclaimable > 0.0);
    assert!(
        reclaimable >= DetectorConfig::default().retained_min_bytes as f64,
        "{reclaimable}"
    );
    assert!(reclaimable < seen.stats.memory_bytes as f64);
    assert!(
        condition(&seen, kind).details.contains("shrink_to_fit"),
        "{}",
        condition(&seen, kind).details
    );
    assert_eq!(
        misuse_events(&snapshot, "cache", kind)[0].value,
        reclaimable
    );

    let before = seen.stats.memory_bytes;
    map.shrink_to_fit();
    map.complete_growth();
    let (_, seen) = observe(&registry, &map, "cache");
    assert_eq!(seen.stats.buckets, 256);
    assert!(!seen.is_active(kind), "shrunk: cleared");
    assert_eq!(seen.misuse_count(kind), 1);
    // What the shrink gave back is about what the detector estimated.
    let reclaimed = (before - seen.stats.memory_bytes) as f64;
    assert!(
        (reclaimed / reclaimable - 1.0).abs() < 0.25,
        "estimated {reclaimable}, reclaimed {reclaimed}"
    );
}

#[test]
fn retained_capacity_ignores_small_reclaims() {
    let kind = MisuseKind::RetainedCapacity;
    let registry = registry(
        config()
            .with_retained_windows(1)
            .with_retained_min_bytes(usize::MAX),
    );
    let mut map = register(&registry, "small");
    for i in 0..20_000 {
        map.insert(i, i);
    }
    map.retain(|k, _| *k < 100);
    for _ in 0..4 {
        let (_, seen) = observe(&registry, &map, "small");
        assert!(!seen.is_active(kind));
    }
}

// ---------------------------------------------------------------------------
// overflow_chain
// ---------------------------------------------------------------------------

#[test]
fn overflow_chain_fires_on_a_long_chain() {
    let kind = MisuseKind::OverflowChain;
    let registry = registry(config().with_max_overflow_chain(2).with_event_hold(HOLD));
    let mut map = InstrumentedMap::<u64, u64, _>::builder("flooded")
        .hasher(BuildHasherDefault::<ConstantHasher>::default())
        .register(&registry)
        .unwrap();
    observe(&registry, &map, "flooded");
    for i in 0..16 {
        map.insert(i, i);
    }
    let (_, seen) = observe(&registry, &map, "flooded");
    assert_eq!(seen.stats.max_overflow_chain, 1);
    assert!(!seen.is_active(kind), "a chain of 1 is within 2");

    for i in 16..60 {
        map.insert(i, i);
    }
    let (snapshot, seen) = observe(&registry, &map, "flooded");
    let chain = seen.stats.max_overflow_chain;
    assert!(chain > 2, "every key in one bucket: chain {chain}");
    assert_fired(&snapshot, &seen, kind, 1);
    assert_eq!(condition(&seen, kind).value, chain as f64);
    assert!(condition(&seen, kind).details.contains("overflow chain"));

    // The chain goes away (clear() starts a fresh array); once the hold of
    // any same-size growth has passed too, the condition clears.
    map.clear();
    registry.clock.advance(HOLD);
    let (_, seen) = observe(&registry, &map, "flooded");
    assert_eq!(seen.stats.max_overflow_chain, 0);
    assert!(!seen.is_active(kind));
    assert_eq!(seen.misuse_count(kind), 1);
}

#[test]
fn overflow_chain_clears_as_soon_as_the_chain_is_gone_without_same_size_growth() {
    let kind = MisuseKind::OverflowChain;
    // An hour-long hold: only the chain itself can be what keeps it active.
    let registry = registry(config().with_max_overflow_chain(2));
    let mut map = InstrumentedMap::<u64, u64, _>::builder("one_bucket")
        .hasher(BuildHasherDefault::<IdentityHasher>::default())
        .capacity(200)
        .register(&registry)
        .unwrap();
    // 32 entries in bucket 0 of 32: a chain of 3, far below any growth.
    for j in 0..32 {
        map.insert(32 * j, j);
    }
    let (snapshot, seen) = observe(&registry, &map, "one_bucket");
    assert_eq!(seen.stats.growths[GrowthKind::SameSize], 0);
    assert_eq!(seen.stats.max_overflow_chain, 3);
    assert_fired(&snapshot, &seen, kind, 1);
    map.clear();
    let (_, seen) = observe(&registry, &map, "one_bucket");
    assert!(!seen.is_active(kind), "no chain, no same-size growth");
}

#[test]
fn overflow_chain_fires_on_a_same_size_growth_and_clears_after_the_hold() {
    let kind = MisuseKind::OverflowChain;
    // Default chain threshold (4): the chains here stay at 1.
    let registry = registry(config().with_event_hold(HOLD));
    let mut map = InstrumentedMap::<u64, u64, _>::builder("churn")
        .hasher(BuildHasherDefault::<IdentityHasher>::default())
        .capacity(20) // 4 buckets
        .register(&registry)
        .unwrap();
    observe(&registry, &map, "churn");
    assert_eq!(map.stats().buckets, 4);
    // Overflow one bucket after the other, deleting in between: deletes
    // never free overflow buckets, so they pile up while entries stay few.
    for bucket in 0..4u64 {
        let keys: Vec<u64> = (0..9).map(|j| bucket + 4 * j).collect();
        for &k in &keys {
            map.insert(k, k);
        }
        for k in &keys {
            map.remove(k);
        }
    }
    let (_, seen) = observe(&registry, &map, "churn");
    assert_eq!(seen.stats.overflow_buckets, 4);
    assert_eq!(seen.stats.max_overflow_chain, 1);
    assert_eq!(seen.stats.growths[GrowthKind::SameSize], 0);
    assert!(!seen.is_active(kind));

    // The next new key starts a same-size growth (Go's tooManyOverflowBuckets).
    map.insert(1_000, 0);
    map.complete_growth();
    let (snapshot, seen) = observe(&registry, &map, "churn");
    assert_eq!(seen.stats.growths[GrowthKind::SameSize], 1);
    assert_eq!(seen.stats.max_overflow_chain, 0);
    assert_eq!(seen.stats.buckets, 4);
    assert_fired(&snapshot, &seen, kind, 1);
    assert!(
        condition(&seen, kind).details.contains("same-size"),
        "{}",
        condition(&seen, kind).details
    );

    let (_, seen) = observe(&registry, &map, "churn");
    assert!(seen.is_active(kind), "held");
    registry.clock.advance(HOLD);
    let (_, seen) = observe(&registry, &map, "churn");
    assert!(!seen.is_active(kind), "cleared after the hold");
    assert_eq!(seen.misuse_count(kind), 1);
}

// ---------------------------------------------------------------------------
// presize_miss
// ---------------------------------------------------------------------------

#[test]
fn presize_miss_fires_after_four_doublings_and_clears_after_the_hold() {
    let kind = MisuseKind::PresizeMiss;
    let registry = registry(config().with_event_hold(HOLD));
    let mut map = register(&registry, "unsized");
    observe(&registry, &map, "unsized");
    // 52 entries fit 8 buckets (6.5 * 8): three doublings, one short.
    for i in 0..52 {
        map.insert(i, i);
    }
    let (_, seen) = observe(&registry, &map, "unsized");
    assert_eq!(seen.stats.growths[GrowthKind::Double], 3);
    assert!(!seen.is_active(kind));
    // The 53rd doubles a fourth time.
    map.insert(52, 52);
    let (snapshot, seen) = observe(&registry, &map, "unsized");
    assert_eq!(seen.stats.growths[GrowthKind::Double], 4);
    assert_fired(&snapshot, &seen, kind, 1);
    assert_eq!(condition(&seen, kind).value, 53.0);

    // More doublings: still active, the suggestion follows the peak.
    for i in 53..1_000 {
        map.insert(i, i);
    }
    let (_, seen) = observe(&registry, &map, "unsized");
    assert!(seen.stats.growths[GrowthKind::Double] >= 7);
    assert_fired(&snapshot, &seen, kind, 1);
    assert_eq!(condition(&seen, kind).value, 1_000.0);
    assert!(
        condition(&seen, kind)
            .details
            .contains("with_capacity(1000)"),
        "{}",
        condition(&seen, kind).details
    );

    // No doubling since: clears once the hold has passed.
    registry.clock.advance(HOLD);
    let (_, seen) = observe(&registry, &map, "unsized");
    assert!(!seen.is_active(kind));
    assert_eq!(seen.misuse_count(kind), 1);
}

#[test]
fn presized_map_never_fires_presize_miss() {
    let kind = MisuseKind::PresizeMiss;
    let registry = registry(config());
    let mut map = Map::builder("presized")
        .capacity(100_000)
        .register(&registry)
        .unwrap();
    observe(&registry, &map, "presized");
    for i in 0..100_000 {
        map.insert(i, i);
        if i % 10_000 == 0 {
            let (_, seen) = observe(&registry, &map, "presized");
            assert!(!seen.is_active(kind));
        }
    }
    let (snapshot, seen) = observe(&registry, &map, "presized");
    assert_eq!(seen.stats.growths[GrowthKind::Double], 0);
    assert!(!seen.is_active(kind));
    assert_eq!(seen.misuse_count(kind), 0);
    assert!(misuse_events(&snapshot, "presized", kind).is_empty());
}

// ---------------------------------------------------------------------------
// evacuation_stalled
// ---------------------------------------------------------------------------

#[test]
fn evacuation_stalled_fires_when_writes_stop_mid_growth() {
    let kind = MisuseKind::EvacuationStalled;
    let registry = registry(config().with_stall_after(Duration::ZERO));
    let mut map = register(&registry, "stalled");
    let mut next = 0;
    insert_until_growth(&mut map, &mut next);
    // Writes stop here. No publish(): the growth start published itself.
    let snapshot = registry.snapshot();
    let seen = snapshot.map("stalled").unwrap().clone();
    assert!(seen.stats.growth.is_some());
    assert_fired(&snapshot, &seen, kind, 1);
    assert!(condition(&seen, kind).value >= 0.0, "seconds in progress");
    assert!(
        condition(&seen, kind).details.contains("complete_growth()"),
        "{}",
        condition(&seen, kind).details
    );

    map.complete_growth();
    map.publish();
    let (_, seen) = observe(&registry, &map, "stalled");
    assert_eq!(seen.stats.growth, None);
    assert!(!seen.is_active(kind), "completed: cleared");
    assert_eq!(seen.misuse_count(kind), 1);
}

#[test]
fn evacuation_stalled_waits_for_stall_after() {
    let kind = MisuseKind::EvacuationStalled;
    let stall = Duration::from_secs(30);
    let registry = registry(config().with_stall_after(stall));
    let mut map = register(&registry, "waiting");
    let mut next = 0;
    insert_until_growth(&mut map, &mut next);
    let (_, seen) = observe(&registry, &map, "waiting");
    assert!(!seen.is_active(kind), "in progress for one second");
    registry.clock.advance(stall);
    let (snapshot, seen) = observe(&registry, &map, "waiting");
    assert_fired(&snapshot, &seen, kind, 1);
    // Started one tick before the first observation: two ticks and the stall.
    let seconds = condition(&seen, kind).value;
    assert_eq!(seconds, (stall + 2 * TICK).as_secs_f64());

    // A shrink left mid-way stalls just the same.
    map.complete_growth();
    for i in 0..next {
        if i % 64 != 0 {
            map.remove(&i);
        }
    }
    map.shrink_to_fit();
    assert_eq!(map.stats().growth.map(|g| g.kind), Some(GrowthKind::Shrink));
    let (_, seen) = observe(&registry, &map, "waiting");
    assert!(!seen.is_active(kind), "a new growth, just started");
    registry.clock.advance(stall);
    let (_, seen) = observe(&registry, &map, "waiting");
    assert!(seen.is_active(kind));
    assert_eq!(seen.misuse_count(kind), 2);
}

#[test]
fn evacuation_stalled_does_not_fire_before_stall_after() {
    let kind = MisuseKind::EvacuationStalled;
    let registry = registry(config().with_stall_after(Duration::from_secs(3600)));
    let mut map = register(&registry, "patient");
    let mut next = 0;
    insert_until_growth(&mut map, &mut next);
    for _ in 0..3 {
        let (_, seen) = observe(&registry, &map, "patient");
        assert!(seen.stats.growth.is_some());
        assert!(!seen.is_active(kind));
    }
}

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

#[test]
fn per_map_detector_config_overrides_the_registry() {
    let kind = MisuseKind::UnboundedGrowth;
    let registry = registry(config().with_max_entries(Some(5)).with_growth_windows(0));
    assert_eq!(registry.detector_config().max_entries, Some(5));
    // Inherits the registry's thresholds.
    let mut inherits = register(&registry, "inherits");
    // Its own config replaces the registry's entirely (no max_entries).
    let mut own = Map::builder("own")
        .detectors(config().with_growth_windows(0))
        .register(&registry)
        .unwrap();
    // max_entries() overrides only max_entries, on top of the registry's.
    let mut raised = Map::builder("raised")
        .max_entries(100)
        .register(&registry)
        .unwrap();
    // ... or on top of the map's own config.
    let mut both = Map::builder("both")
        .detectors(config().with_growth_windows(0))
        .max_entries(3)
        .register(&registry)
        .unwrap();
    for map in [&mut inherits, &mut own, &mut raised, &mut both] {
        for i in 0..10 {
            map.insert(i, i);
        }
        map.publish();
    }
    let snapshot = registry.snapshot();
    let active = |name: &str| snapshot.map(name).unwrap().is_active(kind);
    assert!(active("inherits"));
    assert!(!active("own"));
    assert!(!active("raised"));
    assert!(active("both"));
}

#[test]
fn detectors_leave_dropped_maps_alone() {
    let kind = MisuseKind::UnboundedGrowth;
    let clock = ManualClock::new();
    let registry = Clocked {
        registry: Registry::builder()
            .clock(clock.clone())
            .detectors(config().with_growth_windows(0))
            .grace_period(Duration::from_secs(3600))
            .build(),
        clock,
    };
    let mut map = Map::builder("gone")
        .max_entries(5)
        .register(&registry)
        .unwrap();
    observe(&registry, &map, "gone");
    for i in 0..10 {
        map.insert(i, i);
    }
    drop(map);
    let snapshot = registry.snapshot();
    let seen = snapshot.map("gone").unwrap();
    assert!(seen.dropped);
    assert_eq!(seen.stats.entries, 10);
    assert!(!seen.is_active(kind), "no detector runs over a dropped map");
    assert_eq!(seen.misuse_count(kind), 0);
}
