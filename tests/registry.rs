//! The registry: registration and its errors, drop and grace, the
//! `_overflow` cardinality cap, the bounded event queue and its cursors, the
//! data growth events carry, unregistered and global maps, and that a
//! snapshot taken while maps are being written is always one possible
//! moment of each map (the seqlock never hands out a torn copy).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use mapscope::registry::{
    EventRecord, GrowthFinished, GrowthStarted, ManualClock, MAX_LABELS, MAX_VALUE_CHARS,
    OVERFLOW_MAP, RESERVED_LABELS,
};
use mapscope::{
    Event, GrowthKind, InstrumentedMap, MapSnapshot, MapStats, RegisterError, Registry,
    RegistrySnapshot,
};

type Map = InstrumentedMap<u64, u64>;

fn register(
    registry: &Registry,
    name: &str,
    labels: &[(&str, &str)],
) -> Result<Map, RegisterError> {
    labels
        .iter()
        .fold(Map::builder(name), |builder, (k, v)| builder.label(*k, *v))
        .register(registry)
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn find<'a>(snapshot: &'a RegistrySnapshot, name: &str) -> Option<&'a MapSnapshot> {
    snapshot.map(name)
}

fn growth_started(record: &EventRecord) -> Option<&GrowthStarted> {
    match &record.event {
        Event::GrowthStarted(e) => Some(e),
        _ => None,
    }
}

fn growth_finished(record: &EventRecord) -> Option<&GrowthFinished> {
    match &record.event {
        Event::GrowthFinished(e) => Some(e),
        _ => None,
    }
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

// ---------------------------------------------------------------------------
// Registration errors
// ---------------------------------------------------------------------------

#[test]
fn invalid_map_names_are_rejected() {
    let registry = Registry::new();
    let too_long = "m".repeat(MAX_VALUE_CHARS + 1);
    for name in [
        "",
        "__internal",
        "bad\nname",
        "tab\there",
        too_long.as_str(),
    ] {
        assert_eq!(
            register(&registry, name, &[]).err(),
            Some(RegisterError::InvalidMapName {
                name: name.to_owned()
            }),
            "map name {name:?}"
        );
    }
    // The longest allowed name, and names that are fine as label values.
    let longest = "m".repeat(MAX_VALUE_CHARS);
    for name in [
        longest.as_str(),
        "user cache",
        "caché",
        "_leading_underscore",
    ] {
        assert!(register(&registry, name, &[]).is_ok(), "map name {name:?}");
    }
    assert_eq!(registry.snapshot().registrations, 4);
}

#[test]
fn invalid_label_names_are_rejected() {
    let registry = Registry::new();
    for name in [
        "",
        "9lives",
        "has-dash",
        "dotted.name",
        "spa ce",
        "ünï",
        "__name",
        "__",
    ] {
        assert_eq!(
            register(&registry, "m", &[(name, "v")]).err(),
            Some(RegisterError::InvalidLabelName {
                name: name.to_owned()
            }),
            "label name {name:?}"
        );
    }
    for (i, name) in ["tenant", "_x", "a1", "A_b_9"].into_iter().enumerate() {
        let map_name = format!("ok{i}");
        assert!(
            register(&registry, &map_name, &[(name, "v")]).is_ok(),
            "{name:?}"
        );
    }
}

#[test]
fn reserved_labels_are_rejected() {
    let registry = Registry::new();
    assert_eq!(
        RESERVED_LABELS,
        ["map", "source", "source_instance", "kind", "le", "quantile"]
    );
    for name in RESERVED_LABELS {
        let err = register(&registry, "m", &[(name, "v")]).unwrap_err();
        assert_eq!(
            err,
            RegisterError::ReservedLabel {
                name: name.to_owned()
            }
        );
        // The message says what to do, and names every reserved label.
        assert!(err.to_string().contains("rename"), "{err}");
        assert!(
            RESERVED_LABELS.iter().all(|l| err.to_string().contains(l)),
            "{err}"
        );
    }
    // Only the exact names are reserved.
    assert!(register(&registry, "m", &[("map_name", "v"), ("kinds", "v")]).is_ok());
}

#[test]
fn duplicate_label_is_rejected() {
    let registry = Registry::new();
    for pairs in [
        [("tenant", "a"), ("tenant", "b")],
        [("tenant", "a"), ("tenant", "a")],
    ] {
        assert_eq!(
            register(&registry, "m", &pairs).err(),
            Some(RegisterError::DuplicateLabel {
                name: "tenant".to_owned()
            })
        );
    }
    // Separated by another label, still found (labels are sorted first).
    assert_eq!(
        register(&registry, "m", &[("b", "1"), ("a", "1"), ("b", "2")]).err(),
        Some(RegisterError::DuplicateLabel {
            name: "b".to_owned()
        })
    );
}

#[test]
fn too_many_labels_are_rejected() {
    let registry = Registry::new();
    let names: Vec<String> = (0..=MAX_LABELS).map(|i| format!("l{i}")).collect();
    let pairs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "v")).collect();
    assert_eq!(pairs.len(), 17);
    assert_eq!(
        register(&registry, "m", &pairs).err(),
        Some(RegisterError::TooManyLabels { count: 17 })
    );
    assert!(register(&registry, "m", &pairs[..MAX_LABELS]).is_ok());
}

#[test]
fn invalid_label_values_are_rejected() {
    let registry = Registry::new();
    let too_long = "v".repeat(MAX_VALUE_CHARS + 1);
    // The limit counts characters, as JSON Schema's maxLength does.
    let too_long_utf8 = "é".repeat(MAX_VALUE_CHARS + 1);
    for value in [
        too_long.as_str(),
        too_long_utf8.as_str(),
        "new\nline",
        "nul\0",
    ] {
        assert_eq!(
            register(&registry, "m", &[("tenant", value)]).err(),
            Some(RegisterError::InvalidLabelValue {
                name: "tenant".to_owned()
            }),
            "value {value:?}"
        );
    }
    let longest = "v".repeat(MAX_VALUE_CHARS);
    assert!(register(&registry, "a", &[("tenant", longest.as_str())]).is_ok());
    let longest_utf8 = "🛒".repeat(MAX_VALUE_CHARS);
    assert!(register(&registry, "c", &[("tenant", longest_utf8.as_str())]).is_ok());
    assert!(register(&registry, "b", &[("tenant", "")]).is_ok());
}

#[test]
fn duplicate_name_and_labels_are_rejected_while_live() {
    let registry = Registry::new();
    let _first = register(&registry, "sessions", &[("a", "1"), ("b", "2")]).unwrap();
    // Label order does not matter: labels are sorted before comparing.
    let err = register(&registry, "sessions", &[("b", "2"), ("a", "1")]).unwrap_err();
    assert_eq!(
        err,
        RegisterError::Duplicate {
            name: "sessions".to_owned(),
            labels: labels(&[("a", "1"), ("b", "2")]),
        }
    );
    // Another name, or other labels, are distinct series.
    let _other_name = register(&registry, "orders", &[("a", "1"), ("b", "2")]).unwrap();
    let _other_labels = register(&registry, "sessions", &[("a", "1"), ("b", "3")]).unwrap();
    let _no_labels = register(&registry, "sessions", &[]).unwrap();
    let snapshot = registry.snapshot();
    assert_eq!(snapshot.registrations, 4);
    assert_eq!(snapshot.maps.len(), 4);
    // Sorted by name, then labels.
    let ids: Vec<(String, usize)> = snapshot
        .maps
        .iter()
        .map(|m| (m.id.name.to_string(), m.id.labels.len()))
        .collect();
    assert_eq!(
        ids,
        [
            ("orders".to_owned(), 2),
            ("sessions".to_owned(), 0),
            ("sessions".to_owned(), 2),
            ("sessions".to_owned(), 2),
        ]
    );
}

#[test]
fn reregistering_a_dropped_map_in_grace_works() {
    let registry = Registry::builder()
        .grace_period(Duration::from_secs(3600))
        .build();
    let mut old = register(&registry, "cache", &[("tenant", "acme")]).unwrap();
    old.insert(1, 1);
    drop(old);
    let snapshot = registry.snapshot();
    let dropped = find(&snapshot, "cache").unwrap();
    assert!(dropped.dropped);
    assert_eq!(dropped.stats.entries, 1);

    let mut new = register(&registry, "cache", &[("tenant", "acme")])
        .expect("a dropped map's name and labels are free again");
    new.insert(10, 10);
    new.insert(11, 11);
    new.publish();
    let snapshot = registry.snapshot();
    let cache: Vec<&MapSnapshot> = snapshot
        .maps
        .iter()
        .filter(|m| &*m.id.name == "cache")
        .collect();
    assert_eq!(cache.len(), 1, "the new map takes the old one's place");
    assert!(!cache[0].dropped);
    assert_eq!(cache[0].stats.entries, 2);
    assert_eq!(snapshot.registrations, 2);
    // And while the new one lives, the name is taken again.
    assert!(matches!(
        register(&registry, "cache", &[("tenant", "acme")]),
        Err(RegisterError::Duplicate { .. })
    ));
}

// ---------------------------------------------------------------------------
// Drop and grace
// ---------------------------------------------------------------------------

#[test]
fn dropped_map_stays_with_final_values_until_grace_passes() {
    let grace = Duration::from_secs(30);
    let clock = ManualClock::new();
    let registry = Registry::builder()
        .clock(clock.clone())
        .grace_period(grace)
        .build();
    let mut keep = register(&registry, "kept", &[]).unwrap();
    let mut map = register(&registry, "short_lived", &[("tenant", "acme")]).unwrap();
    for i in 0..1_000 {
        map.insert(i, i);
    }
    for i in 0..100 {
        map.remove(&i);
    }
    let final_stats = map.stats();
    // No publish(): dropping publishes the final values.
    drop(map);
    keep.insert(1, 1);
    keep.publish();

    let snapshot = registry.snapshot();
    let dropped = find(&snapshot, "short_lived").expect("visible during grace");
    assert!(dropped.dropped);
    assert_eq!(dropped.stats, final_stats);
    assert_eq!(dropped.stats.entries, 900);
    assert_eq!(dropped.stats.removes, 100);
    assert_eq!(
        &*dropped.id.labels,
        labels(&[("tenant", "acme")]).as_slice()
    );
    assert!(!find(&snapshot, "kept").unwrap().dropped);

    clock.advance(grace);
    let snapshot = registry.snapshot();
    assert!(
        find(&snapshot, "short_lived").is_some(),
        "visible for the whole grace period"
    );
    clock.advance(Duration::from_millis(1));
    let snapshot = registry.snapshot();
    assert!(find(&snapshot, "short_lived").is_none(), "gone after grace");
    assert!(find(&snapshot, "kept").is_some(), "live maps never expire");
    assert_eq!(snapshot.maps.len(), 1);
    // The name is free, and registering it again starts from zero.
    let again = register(&registry, "short_lived", &[("tenant", "acme")]).unwrap();
    assert_eq!(
        find(&registry.snapshot(), "short_lived").unwrap().stats,
        MapStats::default()
    );
    drop(again);
}

// ---------------------------------------------------------------------------
// Overflow folding
// ---------------------------------------------------------------------------

#[test]
fn maps_past_max_maps_fold_into_overflow() {
    let registry = Registry::builder().max_maps(3).build();
    let mut maps: Vec<Map> = (0..5)
        .map(|i| {
            register(&registry, &format!("m{i}"), &[("shard", &i.to_string())])
                .expect("registration succeeds past the cap")
        })
        .collect();
    for (i, map) in maps.iter_mut().enumerate() {
        for k in 0..(10 * (i as u64 + 1)) {
            map.insert(k, k);
        }
        map.publish();
    }
    let snapshot = registry.snapshot();
    assert_eq!(snapshot.registrations, 5);
    assert_eq!(snapshot.overflow_folds, 2);
    let names: Vec<&str> = snapshot.maps.iter().map(|m| &*m.id.name).collect();
    assert_eq!(names, ["m0", "m1", "m2", OVERFLOW_MAP]);
    for i in 0..3 {
        assert_eq!(snapshot.maps[i].stats.entries, 10 * (i + 1));
    }
    let overflow = find(&snapshot, "_overflow").unwrap();
    assert!(overflow.id.labels.is_empty());
    assert!(!overflow.dropped);
    // m3 (40 entries) and m4 (50 entries).
    assert_eq!(overflow.stats.entries, 90);
    assert_eq!(overflow.stats.inserts, 90);
    assert_eq!(
        overflow.stats.buckets,
        maps[3].stats().buckets + maps[4].stats().buckets
    );
    assert_eq!(
        overflow.stats.memory_bytes,
        maps[3].stats().memory_bytes + maps[4].stats().memory_bytes
    );
    assert_eq!(
        overflow.stats.load_factor,
        90.0 / overflow.stats.buckets as f64
    );
}

#[test]
fn overflow_folds_only_past_the_cap_of_live_maps() {
    let registry = Registry::builder()
        .max_maps(2)
        .grace_period(Duration::from_secs(3600))
        .build();
    let a = register(&registry, "a", &[]).unwrap();
    let _b = register(&registry, "b", &[]).unwrap();
    // A dropped map no longer counts against the cap.
    drop(a);
    let _c = register(&registry, "c", &[]).unwrap();
    let _d = register(&registry, "d", &[]).unwrap();
    let snapshot = registry.snapshot();
    let names: Vec<&str> = snapshot.maps.iter().map(|m| &*m.id.name).collect();
    assert_eq!(names, ["a", "b", "c", OVERFLOW_MAP]);
    assert!(snapshot.maps[0].dropped);
    assert_eq!(snapshot.overflow_folds, 1);
    assert_eq!(snapshot.registrations, 4);
}

/// Exporters turn the `_overflow` series' inserts, removes, growths and
/// misuse counts into Prometheus counters, which must never go down.
#[test]

fn overflow_counters_never_decrease() {
    let grace = Duration::from_secs(30);
    let clock = ManualClock::new();
    let registry = Registry::builder()
        .clock(clock.clone())
        .max_maps(1)
        .grace_period(grace)
        .build();
    let _own = register(&registry, "own", &[]).unwrap();
    let mut folded: Vec<Map> = (0..2)
        .map(|i| register(&registry, &format!("f{i}"), &[]).unwrap())
        .collect();
    for map in &mut folded {
        for k in 0..1_000 {
            map.insert(k, k);
        }
        map.publish();
    }
    let before = find(&registry.snapshot(), OVERFLOW_MAP).unwrap().stats;
    assert_eq!(before.inserts, 2_000);
    drop(folded.pop());
    clock.advance(grace * 2);
    let after = find(&registry.snapshot(), OVERFLOW_MAP).unwrap().stats;
    assert_eq!(after.entries, 1_000, "a gauge follows the live maps");
    assert!(
        after.inserts >= before.inserts
            && after.growths[GrowthKind::Double] >= before.growths[GrowthKind::Double]
            && after.evacuated_buckets_total >= before.evacuated_buckets_total,
        "counters went down: {} -> {} inserts",
        before.inserts,
        after.inserts
    );
}

/// A map may not take the name of the series the cardinality cap folds
/// into: two series with `map="_overflow"` and no labels would be one
/// Prometheus series reported twice.
#[test]

fn no_two_series_share_name_and_labels() {
    let registry = Registry::builder().max_maps(2).build();
    let user = register(&registry, OVERFLOW_MAP, &[]);
    let _a = register(&registry, "a", &[]).unwrap();
    let _b = register(&registry, "b", &[]).unwrap(); // folded
    let snapshot = registry.snapshot();
    let mut ids: Vec<(&str, &[(String, String)])> = snapshot
        .maps
        .iter()
        .map(|m| (&*m.id.name, &*m.id.labels))
        .collect();
    let total = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(
        ids.len(),
        total,
        "duplicate series (user map registered: {})",
        user.is_ok()
    );
}

// ---------------------------------------------------------------------------
// The event queue
// ---------------------------------------------------------------------------

#[test]
fn full_event_queue_drops_and_counts_without_blocking() {
    let registry = Registry::builder().event_queue(2).build();
    let mut map = register(&registry, "busy", &[]).unwrap();
    // Many growths and no reader: the queue fills after two events.
    let (done_tx, done_rx) = mpsc::channel();
    let writer = thread::spawn(move || {
        for i in 0..100_000 {
            map.insert(i, i);
        }
        map.publish();
        done_tx.send(()).unwrap();
        map
    });
    done_rx
        .recv_timeout(Duration::from_secs(15))
        .expect("inserts complete although nobody drains the queue");
    let mut map = writer.join().unwrap();
    let stats = map.stats();
    assert_eq!(stats.growths[GrowthKind::Double], 14);
    let started = stats.growths[GrowthKind::Double];
    let finished = started - u64::from(stats.growth.is_some());

    let snapshot = registry.snapshot();
    assert!(snapshot.events_dropped > 0);
    // Every growth event was either queued (two of them) or dropped and
    // counted. (Detector firings skip the queue: the snapshot records them
    // itself, after the queued events.)
    let growth_events: Vec<&EventRecord> = snapshot
        .recent_events
        .iter()
        .filter(|r| !matches!(r.event, Event::Misuse(_)))
        .collect();
    assert_eq!(growth_events.len(), 2);
    assert_eq!(snapshot.events_dropped, started + finished - 2);
    // The two that got through are the first growth's start and finish.
    assert!(growth_started(growth_events[0]).is_some());
    assert!(growth_finished(growth_events[1]).is_some());

    // Cursors: the reader sees the accepted events in order, once each.
    let first = registry.events_since(0);
    assert_eq!(first.missed, 0);
    let seqs: Vec<u64> = first.events.iter().map(|r| r.seq).collect();
    assert_eq!(&seqs[..2], [0, 1]);
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1));
    assert_eq!(first.next, seqs.len() as u64);
    assert!(registry.events_since(first.next).events.is_empty());

    // One more growth, drained in time: it is seen in full, after the rest.
    map.complete_growth();
    let drained = registry.events_since(first.next);
    assert!(
        drained.events.len() <= 1,
        "at most a pending growth finished"
    );
    let mut cursor = drained.next;
    let mut next = 1_000_000u64;
    insert_until_growth(&mut map, &mut next);
    map.complete_growth();
    let batch = registry.events_since(cursor);
    assert_eq!(batch.missed, 0);
    assert_eq!(batch.events.len(), 2);
    assert_eq!(batch.events[0].seq, cursor);
    assert_eq!(batch.events[1].seq, cursor + 1);
    assert_eq!(batch.next, cursor + 2);
    let started = growth_started(&batch.events[0]).expect("growth start first");
    let finished = growth_finished(&batch.events[1]).expect("then its finish");
    assert_eq!(started.old_buckets, finished.old_buckets);
    cursor = batch.next;
    assert!(registry.events_since(cursor).events.is_empty());

    // Every accepted event, from the start: strictly increasing seq.
    let all = registry.events_since(0);
    assert!(all.events.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    assert_eq!(all.events.first().map(|r| r.seq), Some(0));
    assert_eq!(all.next, cursor);
}

#[test]
fn events_past_the_recent_window_are_reported_missed() {
    let registry = Registry::builder().recent_events(4).build();
    let mut map = register(&registry, "m", &[]).unwrap();
    let mut next = 0;
    // Five growths, each drained: ten events, of which only four are kept.
    for _ in 0..5 {
        insert_until_growth(&mut map, &mut next);
        map.complete_growth();
        registry.events_since(0);
    }
    // Every growth started and finished: two events each, all accepted.
    let total = 2 * map.stats().growths[GrowthKind::Double];
    assert!(total > 4);
    let batch = registry.events_since(0);
    assert_eq!(batch.next, total);
    assert_eq!(batch.events.len(), 4);
    assert_eq!(batch.missed, total - 4);
    let seqs: Vec<u64> = batch.events.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, [total - 4, total - 3, total - 2, total - 1]);
    let later = registry.events_since(total - 2);
    assert_eq!(later.missed, 0);
    assert_eq!(later.events.len(), 2);
    // A cursor inside the window misses only what left it.
    assert_eq!(registry.events_since(total - 6).missed, 2);
    assert_eq!(registry.snapshot().recent_events.len(), 4);
}

#[test]
fn growth_events_carry_the_growth() {
    let registry = Registry::new();
    let mut map = InstrumentedMap::<u64, u64>::builder("orders")
        .label("tenant", "acme")
        .register(&registry)
        .unwrap();
    let mut next = 0;
    insert_until_growth(&mut map, &mut next);
    let growth = map.stats().growth.expect("in progress");
    let buckets = map.stats().buckets;
    assert_eq!(growth.kind, GrowthKind::Double);
    map.complete_growth();
    let after = map.stats();
    assert_eq!(after.growth, None);

    let events = registry.events_since(0).events;
    let finished: Vec<&GrowthFinished> = events.iter().filter_map(growth_finished).collect();
    let started: Vec<&GrowthStarted> = events.iter().filter_map(growth_started).collect();
    assert_eq!(started.len() as u64, after.growths[GrowthKind::Double]);
    assert_eq!(finished.len() as u64, after.growths[GrowthKind::Double]);

    // The growth completed explicitly is the last one.
    let last_start = started.last().unwrap();
    assert_eq!(&*last_start.map.name, "orders");
    assert_eq!(
        &*last_start.map.labels,
        labels(&[("tenant", "acme")]).as_slice()
    );
    assert_eq!(last_start.kind, GrowthKind::Double);
    assert_eq!(last_start.old_buckets, growth.old_buckets);
    assert_eq!(last_start.new_buckets, buckets);
    assert_eq!(last_start.new_buckets, 2 * last_start.old_buckets);
    assert_eq!(last_start.entries, growth.entries_at_start);

    let last = finished.last().unwrap();
    assert_eq!(&*last.map.name, "orders");
    assert_eq!(last.kind, GrowthKind::Double);
    assert_eq!(last.old_buckets, growth.old_buckets);
    assert_eq!(last.new_buckets, 2 * growth.old_buckets);
    assert_eq!(last.new_buckets, after.buckets);
    assert_eq!(last.entries_at_start, growth.entries_at_start);
    assert_eq!(last.entries, after.entries);
    assert!(last.helping_writes > 0, "the insert that started it helped");
    assert!(last.helping_writes >= growth.helping_writes);
    assert!(last.completed_explicitly);
    assert!(last.started_at <= std::time::SystemTime::now());

    // The growths before it were finished by writes.
    for earlier in &finished[..finished.len() - 1] {
        assert!(!earlier.completed_explicitly);
        assert!(earlier.helping_writes > 0);
        assert_eq!(earlier.new_buckets, 2 * earlier.old_buckets);
    }
    // Starts and finishes pair up, in order.
    for (s, f) in started.iter().zip(&finished) {
        assert_eq!(
            (s.old_buckets, s.new_buckets),
            (f.old_buckets, f.new_buckets)
        );
    }
}

#[test]
fn shrink_events_say_shrink() {
    let registry = Registry::new();
    let mut map = register(&registry, "shrinking", &[]).unwrap();
    for i in 0..10_000 {
        map.insert(i, i);
    }
    map.complete_growth();
    map.retain(|k, _| *k < 100);
    let buckets = map.stats().buckets;
    let cursor = registry.events_since(0).next;
    map.shrink_to_fit();
    map.complete_growth();
    let events = registry.events_since(cursor).events;
    let finished: Vec<&GrowthFinished> = events.iter().filter_map(growth_finished).collect();
    assert!(!finished.is_empty());
    assert!(finished.iter().all(|f| f.kind == GrowthKind::Shrink));
    assert!(finished.iter().all(|f| f.new_buckets * 2 == f.old_buckets));
    assert_eq!(finished[0].old_buckets, buckets);
    assert_eq!(finished.last().unwrap().new_buckets, map.stats().buckets);
    assert!(finished.iter().all(|f| f.completed_explicitly));
}

// ---------------------------------------------------------------------------
// Which registry a map is in
// ---------------------------------------------------------------------------

#[test]
fn built_maps_are_not_registered() {
    let registry = Registry::new();
    let mut built = Map::builder("registry_test_built_only")
        .label("tenant", "acme")
        .capacity(100)
        .build();
    built.insert(1, 1);
    built.publish(); // a no-op without a registry
    assert!(registry.snapshot().maps.is_empty());
    assert!(find(&Registry::global().snapshot(), "registry_test_built_only").is_none());
    assert_eq!(registry.snapshot().registrations, 0);
    // Its name is not taken either.
    assert!(Map::builder("registry_test_built_only")
        .label("tenant", "acme")
        .register(&registry)
        .is_ok());
}

#[test]
fn register_global_uses_the_global_registry() {
    let name = "registry_test_global_map";
    let mut map = Map::builder(name).register_global().unwrap();
    map.insert(7, 7);
    map.publish();
    let snapshot = Registry::global().snapshot();
    let seen = find(&snapshot, name).expect("in the global registry");
    assert_eq!(seen.stats.entries, 1);
    assert!(!seen.dropped);
    // Not in any other registry.
    assert!(find(&Registry::new().snapshot(), name).is_none());
    // And the global registry knows it is live.
    assert!(matches!(
        Map::builder(name).register_global(),
        Err(RegisterError::Duplicate { .. })
    ));
}

#[test]
fn registry_clones_share_one_registry() {
    let registry = Registry::new();
    let clone = registry.clone();
    let mut map = register(&clone, "shared", &[]).unwrap();
    map.insert(1, 1);
    map.publish();
    assert_eq!(
        find(&registry.snapshot(), "shared").unwrap().stats.entries,
        1
    );
}

// ---------------------------------------------------------------------------
// Publication
// ---------------------------------------------------------------------------

#[test]
fn published_stats_match_map_stats_after_publish() {
    let registry = Registry::new();
    let mut map = register(&registry, "exact", &[]).unwrap();
    // Registration publishes the empty map.
    assert_eq!(
        find(&registry.snapshot(), "exact").unwrap().stats,
        map.stats()
    );
    let mut next = 0;
    for round in 0..6u64 {
        insert_until_growth(&mut map, &mut next);
        for k in (0..next).step_by(3) {
            map.remove(&k);
        }
        map.insert(next, round);
        next += 1;
        map.insert(0, round); // an update, or an insert after the remove
        map.publish();
        let published = find(&registry.snapshot(), "exact").unwrap().stats;
        assert_eq!(published, map.stats(), "round {round}");
    }
    // Mid-growth, and after shrinking.
    insert_until_growth(&mut map, &mut next);
    map.publish();
    let published = find(&registry.snapshot(), "exact").unwrap().stats;
    assert!(published.growth.is_some());
    assert_eq!(published, map.stats());
    map.retain(|k, _| k % 50 == 0); // bulk ops publish by themselves
    assert_eq!(
        find(&registry.snapshot(), "exact").unwrap().stats,
        map.stats()
    );
    map.shrink_to_fit();
    map.complete_growth(); // publishes too
    let published = find(&registry.snapshot(), "exact").unwrap().stats;
    assert!(published.growths[GrowthKind::Shrink] > 0);
    assert_eq!(published, map.stats());
}

#[test]
fn stats_are_published_every_publish_every_writes() {
    let registry = Registry::new();
    let mut map = InstrumentedMap::<u64, u64>::builder("lazy")
        .capacity(1_000)
        .publish_every(NonZeroU32::new(10).unwrap())
        .register(&registry)
        .unwrap();
    for i in 0..9 {
        map.insert(i, i);
    }
    // Nine writes: nothing published since registration.
    assert_eq!(find(&registry.snapshot(), "lazy").unwrap().stats.entries, 0);
    for i in 9..100 {
        map.insert(i, i);
    }
    // A publication at least every ten writes: never more than ten behind.
    let published = find(&registry.snapshot(), "lazy").unwrap().stats.entries;
    assert!((90..=100).contains(&published), "published {published}");
    map.publish();
    assert_eq!(
        find(&registry.snapshot(), "lazy").unwrap().stats.entries,
        100
    );
}

/// With `publish_every(1)` every write publishes; what it publishes should
/// include that write.
#[test]

fn publish_every_one_publishes_every_write() {
    let registry = Registry::new();
    let mut map = InstrumentedMap::<u64, u64>::builder("eager")
        .publish_every(NonZeroU32::new(1).unwrap())
        .register(&registry)
        .unwrap();
    for i in 0..3u64 {
        map.insert(i, i);
        let published = find(&registry.snapshot(), "eager").unwrap().stats;
        assert_eq!(published.entries as u64, i + 1, "after {} inserts", i + 1);
    }
    map.remove(&0);
    assert_eq!(
        find(&registry.snapshot(), "eager").unwrap().stats,
        map.stats()
    );
}

// ---------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------

/// A tiny deterministic generator, so every thread runs its own sequence.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
}

/// Panics unless `stats` is a state a map could be in at one moment.
fn assert_possible(map: &MapSnapshot) {
    let s = &map.stats;
    let who = format!("{}{:?}: {s:?}", map.id.name, map.id.labels);
    if s.buckets > 0 {
        assert!(
            s.entries <= 8 * (s.buckets + s.overflow_buckets),
            "more entries than slots: {who}"
        );
        assert_eq!(
            s.load_factor,
            s.entries as f64 / s.buckets as f64,
            "load factor: {who}"
        );
    } else {
        assert_eq!(s.load_factor, 0.0, "load factor: {who}");
    }
    if let Some(g) = s.growth {
        assert!(
            g.evacuated_old_buckets <= g.old_buckets,
            "evacuated more than the old array: {who}"
        );
    }
    assert_eq!(
        s.inserts - s.removes,
        s.entries as u64,
        "inserts - removes != entries: {who}"
    );
    assert!(s.peak_entries >= s.entries, "peak below entries: {who}");
}

#[test]
fn snapshots_during_concurrent_writes_are_always_possible() {
    const WRITERS: usize = 8;
    const OPS: u64 = 120_000;
    let registry = Registry::new();
    let running = std::sync::Arc::new(AtomicUsize::new(WRITERS));

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let registry = registry.clone();
            let running = running.clone();
            thread::spawn(move || {
                let worker = w.to_string();
                // One map publishing at every write (the most contention on
                // its seqlock), one at the default interval.
                let mut eager = InstrumentedMap::<u64, u64>::builder("concurrent")
                    .label("worker", worker.as_str())
                    .label("publish", "every_write")
                    .publish_every(NonZeroU32::new(1).unwrap())
                    .register(&registry)
                    .unwrap();
                let mut lazy = InstrumentedMap::<u64, u64>::builder("concurrent")
                    .label("worker", worker.as_str())
                    .label("publish", "default")
                    .register(&registry)
                    .unwrap();
                let mut rng = Rng(w as u64 + 1);
                for op in 0..OPS {
                    // Phases: grow to a few thousand keys, then churn, then
                    // empty out, so there are doublings and halvings.
                    let phase = (op / 10_000) % 2;
                    let key = rng.next() % 8_192;
                    for map in [&mut eager, &mut lazy] {
                        if phase == 0 || rng.next().is_multiple_of(4) {
                            map.insert(key, op);
                        } else {
                            map.remove(&key);
                        }
                    }
                    if op % 10_000 == 9_999 {
                        eager.shrink_to_fit();
                        lazy.shrink_to_fit();
                    }
                    if op % 7_919 == 0 {
                        lazy.complete_growth();
                    }
                }
                eager.publish();
                lazy.publish();
                running.fetch_sub(1, Ordering::Release);
                (eager, lazy)
            })
        })
        .collect();

    let reader = {
        let registry = registry.clone();
        let running = running.clone();
        thread::spawn(move || {
            let mut snapshots = 0u64;
            let mut mid_growth = 0u64;
            loop {
                let done = running.load(Ordering::Acquire) == 0;
                let snapshot = registry.snapshot();
                for map in &snapshot.maps {
                    assert_possible(map);
                    mid_growth += u64::from(map.stats.growth.is_some());
                }
                snapshots += 1;
                if done {
                    return (snapshots, mid_growth);
                }
            }
        })
    };

    let maps: Vec<(Map, Map)> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    let (snapshots, mid_growth) = reader.join().unwrap();
    assert!(snapshots > 1, "the reader ran alongside the writers");
    eprintln!("{snapshots} snapshots, {mid_growth} maps seen mid-growth");

    // Once the writers are done and published, the registry agrees exactly.
    let snapshot = registry.snapshot();
    assert_eq!(snapshot.maps.len(), 2 * WRITERS);
    assert_eq!(snapshot.registrations, 2 * WRITERS as u64);
    let by_id: HashMap<Vec<(String, String)>, MapStats> = snapshot
        .maps
        .iter()
        .map(|m| (m.id.labels.to_vec(), m.stats))
        .collect();
    for (w, (eager, lazy)) in maps.iter().enumerate() {
        let worker = w.to_string();
        for (map, publish) in [(eager, "every_write"), (lazy, "default")] {
            let key = labels(&[("publish", publish), ("worker", worker.as_str())]);
            let stats = map.stats();
            assert_eq!(by_id[&key], stats, "worker {w}, {publish}");
            assert!(
                stats.growths[GrowthKind::Double] > 0 && stats.growths[GrowthKind::Shrink] > 0,
                "{stats:?}"
            );
        }
    }
}
