//! The per-map misuse rate limit, for detector-fired and insert-time
//! misuse, with `trace_events_suppressed`, in seconds of the registry's
//! manual clock (no sleeps, no wall-clock bounds).

use std::collections::BTreeMap;
use std::time::Duration;

use mapscope::otel::MISUSE_SPAN;
use mapscope::registry::ManualClock;
use mapscope::{otel, DetectorConfig, Registry};
use opentelemetry::trace::{Tracer as _, TracerProvider as _};

use crate::receiver::{attr_str, misuse_events, named, of_map, Receiver};
use crate::{config_for, Map};

/// Detector firings: a map flapping across the registry's `max_entries`
/// with a snapshot after every change fires `unbounded_growth` at every
/// crossing, each one an untraced misuse event for the same map. The limit
/// counts seconds of the registry's clock, which stands still here until
/// the test advances it.
#[test]
fn detector_misuse_is_rate_limited_per_map() {
    let receiver = Receiver::start();
    let clock = ManualClock::new();
    let registry = Registry::builder()
        .clock(clock.clone())
        .detectors(
            DetectorConfig::default()
                .with_window(Duration::ZERO)
                .with_max_entries(Some(4))
                .with_growth_windows(0),
        )
        .build();
    let guard = otel::init_with(&registry, config_for(&receiver).with_misuse_per_second(2))
        .expect("init_with");
    // Registered without the builder's max_entries: only the detector
    // reports, at snapshot time.
    let mut flappy = Map::builder("flappy").register(&registry).unwrap();
    let mut steady = Map::builder("steady").register(&registry).unwrap();
    for key in 0..4 {
        flappy.insert(key, key);
        steady.insert(key, key);
    }
    // `steady` crosses once: per map, so it is not limited by `flappy`.
    steady.insert(4, 4);

    let burst = |flappy: &mut Map, crossings: u64| {
        for _ in 0..crossings {
            flappy.insert(100, 100);
            flappy.publish();
            steady.publish();
            registry.snapshot();
            flappy.remove(&100);
            flappy.publish();
            registry.snapshot();
        }
    };
    // One second of the registry's clock.
    burst(&mut flappy, 30);
    let snapshot = registry.snapshot();
    assert_eq!(
        snapshot.maps[0].misuse[0], 30,
        "every crossing fired unbounded_growth"
    );
    // The registry applies the limit as it records each firing.
    assert_eq!(snapshot.trace_events_suppressed, 28);
    guard.flush();
    let spans = receiver.wait_for("two flappy misuse spans", |spans| {
        of_map(spans, MISUSE_SPAN, "flappy").len() >= 2
    });
    assert_eq!(
        of_map(&spans, MISUSE_SPAN, "flappy").len(),
        2,
        "at most 2 per map per second"
    );

    // The next second lets two more through.
    clock.advance(Duration::from_secs(1));
    burst(&mut flappy, 10);
    guard.shutdown();
    let spans = receiver.wait_for("four flappy misuse spans", |spans| {
        of_map(spans, MISUSE_SPAN, "flappy").len() >= 4
    });
    assert_eq!(of_map(&spans, MISUSE_SPAN, "flappy").len(), 4);
    assert_eq!(of_map(&spans, MISUSE_SPAN, "steady").len(), 1);
    let snapshot = registry.snapshot();
    assert_eq!(snapshot.trace_events_suppressed, 28 + 8);
    for s in of_map(&spans, MISUSE_SPAN, "flappy") {
        assert!(s.span.parent_span_id.is_empty());
        assert_eq!(
            attr_str(&s.span.attributes, "mapscope.misuse.kind"),
            Some("unbounded_growth")
        );
    }
    // Spans per second of misuse time (the registry clock's wall time).
    let mut per_window: BTreeMap<u64, usize> = BTreeMap::new();
    let first = of_map(&spans, MISUSE_SPAN, "flappy")
        .iter()
        .map(|s| s.span.start_time_unix_nano)
        .min()
        .unwrap();
    for s in of_map(&spans, MISUSE_SPAN, "flappy") {
        *per_window
            .entry((s.span.start_time_unix_nano - first) / 1_000_000_000)
            .or_default() += 1;
    }
    assert_eq!(per_window, BTreeMap::from([(0, 2), (1, 2)]));
}

/// Insert-time misuse: the limit applies on the inserting thread, both
/// to events on the active span and to standalone spans, in seconds of the
/// registry's clock.
#[test]
fn insert_time_misuse_is_rate_limited_per_map() {
    let receiver = Receiver::start();
    let clock = ManualClock::new();
    let registry = Registry::builder().clock(clock.clone()).build();
    let guard = otel::init_with(&registry, config_for(&receiver).with_misuse_per_second(2))
        .expect("init_with");
    let tracer = guard.provider().expect("enabled").tracer("app");
    let mut traced = Map::builder("traced")
        .max_entries(1)
        .register(&registry)
        .unwrap();
    let mut untraced = Map::builder("untraced")
        .max_entries(1)
        .register(&registry)
        .unwrap();
    traced.insert(0, 0);
    untraced.insert(0, 0);
    tracer.in_span("many-crossings", |_cx| {
        for _ in 0..20 {
            traced.insert(1, 1);
            traced.remove(&1);
        }
    });
    for _ in 0..20 {
        untraced.insert(1, 1);
        untraced.remove(&1);
    }
    // A second later, two more of each get through.
    clock.advance(Duration::from_secs(1));
    tracer.in_span("next-second", |_cx| {
        for _ in 0..5 {
            traced.insert(1, 1);
            traced.remove(&1);
        }
    });
    guard.shutdown();
    let spans = receiver.wait_for("the app spans and untraced misuse spans", |spans| {
        !named(spans, "many-crossings").is_empty()
            && !named(spans, "next-second").is_empty()
            && of_map(spans, MISUSE_SPAN, "untraced").len() >= 2
    });
    let events = misuse_events(&named(&spans, "many-crossings")[0].span).len();
    let next = misuse_events(&named(&spans, "next-second")[0].span).len();
    let standalone = of_map(&spans, MISUSE_SPAN, "untraced").len();
    assert_eq!(
        (events, next, standalone),
        (2, 2, 2),
        "2 per map per second, on the span or standalone"
    );
    assert_eq!(
        registry.snapshot().trace_events_suppressed,
        (20 - 2) + (5 - 2) + (20 - 2),
        "every crossing is either traced or counted as suppressed"
    );
}
