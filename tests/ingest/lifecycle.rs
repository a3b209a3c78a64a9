//! The life of a source: restarts and duplicates, event dedup, stable
//! source labels, TTL/stale/grace (on the manual clock and in the binary),
//! and reported maps as rows of the one registry.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use mapscope::export::prometheus::MapscopeCollector;
use mapscope::ingest::protocol::{ReportStatus, ReportedMisuseKind};
use mapscope::ingest::{ErrorBody, Limits, Report, Sources};
use mapscope::registry::OVERFLOW_MAP;
use mapscope::{GrowthKind, InstrumentedMap, MisuseKind, Registry};

use super::support::{
    at, find, growth_event, has_source, map, map_series_of, post, report, try_scrape, Sidecar,
};
use crate::common::exposition::parse_exposition;
use crate::common::poll::poll;
use crate::common::process::start_mapscope;
use crate::common::wait::WAIT;

// ---------------------------------------------------------------------------
// Source restart, duplicates, event dedup
// ---------------------------------------------------------------------------

fn incarnation(mut report: Report, started_at: &str) -> Report {
    report.source.started_at = Some(at(started_at));
    report
}

/// A growth reported without `duration_seconds` is an event (in the JSON
/// API's recent events, without a duration) but no observation of the
/// growth-duration histogram: a 0 s sample would drag every quantile down.
#[test]
fn a_growth_without_duration_is_not_a_zero_second_observation() {
    let registry = Registry::new();
    let store = Sources::new(&registry, Limits::default());
    let mut r = report("checkout", "pod-1", 1, vec![map("orders", &[], 10, 100)]);
    let mut unmeasured = growth_event(2, "orders", 0.0);
    unmeasured.duration_seconds = None;
    r.events = vec![growth_event(1, "orders", 0.002), unmeasured];
    assert_eq!(store.apply(r).unwrap().events_accepted, 2);
    let snapshot = registry.snapshot();
    // GrowthDurations are indexed like GrowthKind::ALL.
    let double = GrowthKind::ALL
        .iter()
        .position(|k| *k == GrowthKind::Double)
        .unwrap();
    assert_eq!(
        snapshot.growth_durations.count[double], 1,
        "one measured growth"
    );
    assert!((snapshot.growth_durations.sum[double] - 0.002).abs() < 1e-12);
    let api = mapscope::http::ApiSnapshot::from_snapshot(&snapshot);
    let durations: Vec<Option<f64>> = api
        .recent_events
        .iter()
        .filter(|e| e.event == "growth_finished")
        .map(|e| e.duration_seconds)
        .collect();
    assert_eq!(durations, [Some(0.002), None]);
    let text = MapscopeCollector::new(registry).render();
    let m = parse_exposition(&text).unwrap();
    assert_eq!(
        m.value(
            "mapscope_growth_duration_seconds_count",
            &[("kind", "double")]
        ),
        1.0
    );
    assert_eq!(
        m.value(
            "mapscope_growth_duration_seconds_bucket",
            &[("kind", "double"), ("le", "0.0001")]
        ),
        0.0,
        "no 0 s observation"
    );
}

#[test]
fn source_restart_is_a_counter_reset_and_retries_are_duplicates() {
    let sidecar = Sidecar::start(Limits::default(), None);
    let labels = [
        ("map", "orders"),
        ("source", "checkout"),
        ("source_instance", "pod-1"),
    ];
    let inserts = |sidecar: &Sidecar| {
        find(&sidecar.metrics(), "mapscope_map_inserts_total", &labels).expect("inserts")
    };
    let growths_counted = |sidecar: &Sidecar| {
        sidecar.metrics().value(
            "mapscope_growth_duration_seconds_count",
            &[("kind", "double")],
        )
    };
    const FIRST: &str = "2026-11-22T10:00:00Z";
    const SECOND: &str = "2026-11-22T11:00:00.5+01:00";

    // Incarnation 1: seq 1..3, cumulative inserts 100, 200, 300.
    let mut r1 = incarnation(
        report("checkout", "pod-1", 1, vec![map("orders", &[], 10, 100)]),
        FIRST,
    );
    r1.events = vec![
        growth_event(1, "orders", 0.002),
        growth_event(2, "orders", 0.003),
    ];
    let a = sidecar.post(None, &r1).accepted();
    assert_eq!(
        (a.status.as_str(), a.events_accepted, a.restarted),
        ("accepted", 2, false)
    );
    assert_eq!(a.source, "checkout");
    assert_eq!(a.maps, 1);
    let mut r2 = incarnation(
        report("checkout", "pod-1", 2, vec![map("orders", &[], 10, 200)]),
        FIRST,
    );
    // Event 2 again (the client did not see the first answer) and a new one.
    r2.events = vec![
        growth_event(2, "orders", 0.003),
        growth_event(3, "orders", 0.004),
    ];
    let a = sidecar.post(None, &r2).accepted();
    assert_eq!((a.status.as_str(), a.events_accepted), ("accepted", 1));
    let r3 = incarnation(
        report("checkout", "pod-1", 3, vec![map("orders", &[], 10, 300)]),
        FIRST,
    );
    sidecar.post(None, &r3).accepted();
    assert_eq!(inserts(&sidecar), 300.0);
    assert_eq!(growths_counted(&sidecar), 3.0, "event 2 counted once");

    // A retry of seq 2 from the same incarnation: duplicate, nothing changes
    // (but its last-report time: a duplicate is still a sign of life).
    let before = map_series_of(&sidecar.metrics(), &["checkout"]);
    let a = sidecar.post(None, &r2).accepted();
    assert_eq!(
        (a.status.as_str(), a.events_accepted, a.restarted),
        ("duplicate", 0, false)
    );
    assert_eq!(map_series_of(&sidecar.metrics(), &["checkout"]), before);
    assert_eq!(
        inserts(&sidecar),
        300.0,
        "an old seq must not roll counters back"
    );
    assert_eq!(growths_counted(&sidecar), 3.0);
    // Same seq again: duplicate too.
    assert_eq!(
        sidecar.post(None, &r3).accepted().status,
        ReportStatus::Duplicate
    );

    // Incarnation 2: new started_at, seq back to 1, lower counters.
    let mut n1 = incarnation(
        report("checkout", "pod-1", 1, vec![map("orders", &[], 3, 7)]),
        SECOND,
    );
    n1.events = vec![growth_event(1, "orders", 0.001)];
    let a = sidecar.post(None, &n1).accepted();
    assert_eq!(
        (a.status.as_str(), a.events_accepted, a.restarted),
        ("accepted", 1, true),
        "event seq starts over with the process"
    );
    assert_eq!(inserts(&sidecar), 7.0, "a restart shows as a counter reset");
    assert_eq!(
        find(&sidecar.metrics(), "mapscope_map_entries", &labels),
        Some(3.0)
    );
    assert_eq!(growths_counted(&sidecar), 4.0);
    let n2 = incarnation(
        report("checkout", "pod-1", 2, vec![map("orders", &[], 3, 9)]),
        SECOND,
    );
    assert!(!sidecar.post(None, &n2).accepted().restarted);
    assert_eq!(inserts(&sidecar), 9.0);
    // A retry of the new incarnation's seq 1: duplicate.
    let a = sidecar.post(None, &n1).accepted();
    assert_eq!((a.status.as_str(), a.restarted), ("duplicate", false));
    assert_eq!(inserts(&sidecar), 9.0);
    assert_eq!(growths_counted(&sidecar), 4.0);

    // A client without started_at: a lower seq means a restart.
    let mut plain = report("legacy", "pod-1", 5, vec![map("orders", &[], 1, 50)]);
    plain.source.started_at = None;
    assert!(!sidecar.post(None, &plain).accepted().restarted);
    plain.seq = 1;
    plain.maps = vec![map("orders", &[], 1, 2)];
    assert!(sidecar.post(None, &plain).accepted().restarted);
    assert_eq!(
        find(
            &sidecar.metrics(),
            "mapscope_map_inserts_total",
            &[
                ("map", "orders"),
                ("source", "legacy"),
                ("source_instance", "pod-1")
            ]
        ),
        Some(2.0)
    );
}

/// A report that arrives late from a process that has since restarted
/// (its `started_at` is older than the current one) must not be applied:
/// it would roll every counter back up to the dead process's totals, and
/// the next report of the live process would reset them again, so
/// `rate()` counts the old totals a second time.
#[test]
fn late_report_from_a_previous_incarnation_is_not_applied() {
    let sidecar = Sidecar::start(Limits::default(), None);
    let labels = [
        ("map", "orders"),
        ("source", "checkout"),
        ("source_instance", "pod-1"),
    ];
    let old = incarnation(
        report("checkout", "pod-1", 41, vec![map("orders", &[], 10, 5000)]),
        "2026-11-22T10:00:00Z",
    );
    sidecar.post(None, &old).accepted();
    let new = incarnation(
        report("checkout", "pod-1", 1, vec![map("orders", &[], 1, 10)]),
        "2026-11-22T12:00:00Z",
    );
    assert!(sidecar.post(None, &new).accepted().restarted);
    // The old process's last report, retried late (a proxy, a slow
    // shutdown): older started_at, higher counters.
    let late = incarnation(
        report("checkout", "pod-1", 42, vec![map("orders", &[], 10, 5100)]),
        "2026-11-22T10:00:00Z",
    );
    let answer = sidecar.post(None, &late);
    let inserts = find(&sidecar.metrics(), "mapscope_map_inserts_total", &labels);
    assert_eq!(
        inserts,
        Some(10.0),
        "a stale incarnation changed the counters; answer {}",
        answer.text
    );
}

/// A process restarts with a client that now sends `started_at` (the old
/// one did not): its seq starts at 1 again, below the last seq seen. The
/// report must be applied as a restart, not answered `duplicate` (which
/// would hide the new process's counters until its seq passes the old one).
#[test]
fn restart_that_adds_started_at_is_a_restart() {
    let sidecar = Sidecar::start(Limits::default(), None);
    let mut old = report("checkout", "pod-1", 100, vec![map("orders", &[], 10, 5000)]);
    old.source.started_at = None;
    sidecar.post(None, &old).accepted();
    let new = incarnation(
        report("checkout", "pod-1", 1, vec![map("orders", &[], 1, 10)]),
        "2026-11-22T12:00:00Z",
    );
    let answer = sidecar.post(None, &new).accepted();
    assert_eq!(
        (answer.status.as_str(), answer.restarted),
        ("accepted", true)
    );
}

// ---------------------------------------------------------------------------
// The source label
// ---------------------------------------------------------------------------

/// A reported map's series identity is fixed by its first report: `source`
/// is the app and `source_instance` the process. A second instance of the
/// app reporting, or leaving, changes nothing about the first one's series
/// (so `rate()` over them never breaks).
#[test]
fn source_labels_are_app_and_instance_and_never_move() {
    let sidecar = Sidecar::start(Limits::default(), None);
    let a_series = [
        ("map", "orders"),
        ("source", "checkout"),
        ("source_instance", "a"),
    ];
    let one = sidecar.post(
        None,
        &report("checkout", "a", 1, vec![map("orders", &[], 1, 1)]),
    );
    assert_eq!(one.accepted().source, "checkout");
    let before = sidecar.metrics();
    assert_eq!(find(&before, "mapscope_map_entries", &a_series), Some(1.0));
    let a_before = before
        .series("mapscope_map_inserts_total")
        .find(|s| s.label("source_instance") == Some("a"))
        .expect("a's series")
        .labels
        .clone();

    // A second instance of the same app: series of its own, a's unchanged.
    let two = sidecar.post(
        None,
        &report("checkout", "b", 1, vec![map("orders", &[], 2, 2)]),
    );
    assert_eq!(two.accepted().source, "checkout");
    let metrics = sidecar.metrics();
    assert_eq!(find(&metrics, "mapscope_map_entries", &a_series), Some(1.0));
    assert_eq!(
        find(
            &metrics,
            "mapscope_map_entries",
            &[
                ("map", "orders"),
                ("source", "checkout"),
                ("source_instance", "b")
            ]
        ),
        Some(2.0)
    );
    let a_after = metrics
        .series("mapscope_map_inserts_total")
        .find(|s| s.label("source_instance") == Some("a"))
        .expect("a's series")
        .labels
        .clone();
    assert_eq!(a_before, a_after, "a's label set did not move");
    assert_eq!(metrics.value("mapscope_sources", &[]), 2.0);
    for instance in ["a", "b"] {
        metrics.value(
            "mapscope_source_last_report_timestamp_seconds",
            &[("source", "checkout"), ("source_instance", instance)],
        );
    }

    // b stops; a keeps reporting. Once b is gone, a's series are the same.
    let mut r = report("checkout", "a", 2, vec![map("orders", &[], 1, 1)]);
    r.interval_seconds = Some(60.0);
    sidecar.clock.advance(Duration::from_secs(31));
    sidecar.post(None, &r).accepted();
    sidecar.sources.sweep();
    sidecar.clock.advance(Duration::from_secs(31));
    sidecar.sources.sweep();
    let metrics = sidecar.metrics();
    assert_eq!(find(&metrics, "mapscope_map_entries", &a_series), Some(1.0));
    assert!(metrics
        .series("mapscope_map_entries")
        .all(|s| s.label("source_instance") != Some("b")));
    assert_eq!(metrics.value("mapscope_sources", &[]), 1.0);
}

/// A map may not take the label names mapscope sets: `source_instance` is
/// reserved like `source`.
#[test]
fn source_instance_is_a_reserved_label() {
    let sidecar = Sidecar::start(Limits::default(), None);
    let answer = sidecar.post(
        None,
        &report(
            "checkout",
            "a",
            1,
            vec![map("orders", &[("source_instance", "x")], 1, 1)],
        ),
    );
    assert_eq!(answer.status, 400, "{}", answer.text);
    let error: ErrorBody = serde_json::from_str(&answer.text).expect("an error body");
    assert_eq!(
        error.field.as_deref(),
        Some("maps[0].labels.source_instance")
    );
    assert!(
        error.error.contains("source_instance") && error.error.contains("reserved"),
        "{}",
        error.error
    );
    let registered = InstrumentedMap::<u64, u64>::builder("m")
        .label("source_instance", "x")
        .register(&Registry::new());
    assert!(registered.is_err());
}

/// Two different clients must never produce the same series: an app named
/// `checkout/a` (names may contain `/`) collides with instance `a` of app
/// `checkout` while `checkout` has several instances, and `/metrics` then
/// holds duplicate series, which breaks the whole scrape.
#[test]
fn source_labels_of_different_clients_never_collide() {
    let sidecar = Sidecar::start(Limits::default(), None);
    sidecar
        .post(
            None,
            &report("checkout", "a", 1, vec![map("orders", &[], 1, 1)]),
        )
        .accepted();
    sidecar
        .post(
            None,
            &report("checkout", "b", 1, vec![map("orders", &[], 2, 2)]),
        )
        .accepted();
    let answer = sidecar.post(
        None,
        &report("checkout/a", "x", 1, vec![map("orders", &[], 3, 3)]),
    );
    // Either rejected, or given a label of its own.
    let text = sidecar.metrics_text();
    let parsed = parse_exposition(&text);
    assert!(
        parsed.is_ok(),
        "answer {} {}; /metrics: {:?}",
        answer.status,
        answer.text,
        parsed.err()
    );
}

// ---------------------------------------------------------------------------
// TTL, stale, grace
// ---------------------------------------------------------------------------

#[test]
fn stale_sources_are_swept_after_ttl_and_grace() {
    let mut limits = Limits::default();
    limits.source_ttl = Duration::from_secs(10);
    let grace = Duration::from_secs(20);
    let sidecar = Sidecar::start_with(Registry::builder().grace_period(grace), limits, None);
    let clock = &sidecar.clock;
    sidecar
        .post(
            None,
            &report("quiet", "a", 1, vec![map("orders", &[], 1, 1)]),
        )
        .accepted();
    // Declares a 60 s interval: stale after 3 intervals, not after the TTL.
    let mut slow = report("slow", "a", 1, vec![map("orders", &[], 2, 2)]);
    slow.interval_seconds = Some(60.0);
    sidecar.post(None, &slow).accepted();
    let metrics = sidecar.metrics();
    assert_eq!(metrics.value("mapscope_sources", &[]), 2.0);

    // At the TTL: nothing happens yet.
    clock.advance(Duration::from_secs(10));
    sidecar.sources.sweep();
    assert_eq!(sidecar.metrics().value("mapscope_sources", &[]), 2.0);
    // Past the TTL: quiet is stale, its series stay for the grace period.
    clock.advance(Duration::from_millis(1));
    sidecar.sources.sweep();
    let metrics = sidecar.metrics();
    assert_eq!(metrics.value("mapscope_sources", &[]), 1.0);
    assert!(
        has_source(&metrics, "quiet"),
        "series stay during the grace period"
    );
    assert!(find(
        &metrics,
        "mapscope_source_last_report_timestamp_seconds",
        &[("source", "quiet"), ("source_instance", "a")]
    )
    .is_none());
    let stale = sidecar.registry.snapshot();
    assert!(stale
        .map("orders")
        .is_some_and(|m| m.id.source.as_deref() == Some("quiet") && m.dropped));
    // Scrapes never sweep: however late, a scrape leaves the series.
    clock.advance(grace);
    assert!(
        has_source(&sidecar.metrics(), "quiet"),
        "at the grace period's end"
    );
    // Past the grace period, the sweep removes it.
    clock.advance(Duration::from_millis(1));
    sidecar.sources.sweep();
    let metrics = sidecar.metrics();
    assert!(!has_source(&metrics, "quiet"));
    assert!(has_source(&metrics, "slow"), "3 x 60 s have not passed");
    assert_eq!(metrics.value("mapscope_sources", &[]), 1.0);
    // Slow goes stale after 3 of its intervals, then after the grace.
    clock.advance(Duration::from_secs(180) - Duration::from_secs(30));
    sidecar.sources.sweep();
    assert_eq!(sidecar.metrics().value("mapscope_sources", &[]), 0.0);
    assert!(has_source(&sidecar.metrics(), "slow"));
    clock.advance(grace + Duration::from_millis(1));
    sidecar.sources.sweep();
    assert!(!has_source(&sidecar.metrics(), "slow"));

    // A source that comes back after removal starts afresh.
    let back = sidecar.post(
        None,
        &report("quiet", "a", 2, vec![map("orders", &[], 1, 1)]),
    );
    assert!(!back.accepted().restarted);
    assert!(has_source(&sidecar.metrics(), "quiet"));
}

/// A stale source's maps keep their last values, but the detectors stop
/// evaluating them; a report makes the source live again.
#[test]
fn a_report_revives_a_stale_source() {
    let mut limits = Limits::default();
    limits.source_ttl = Duration::from_secs(10);
    let sidecar = Sidecar::start(limits, None);
    sidecar
        .post(None, &report("app", "a", 1, vec![map("orders", &[], 1, 1)]))
        .accepted();
    sidecar.clock.advance(Duration::from_secs(11));
    sidecar.sources.sweep();
    assert!(sidecar.registry.snapshot().map("orders").unwrap().dropped);
    // A retry of the last report is a sign of life too.
    sidecar
        .post(None, &report("app", "a", 1, vec![map("orders", &[], 1, 1)]))
        .accepted();
    let snapshot = sidecar.registry.snapshot();
    assert!(!snapshot.map("orders").unwrap().dropped, "live again");
    assert_eq!(snapshot.ingest.unwrap().sources.len(), 1);
}

// ---------------------------------------------------------------------------
// Reported maps are rows of the one registry
// ---------------------------------------------------------------------------

/// `--max-maps` caps reported maps as it caps in-process ones: 12 sources
/// of 10 maps each under a cap of 25 give 25 maps with series of their own
/// and one `_overflow`, and count every fold.
#[test]
fn reported_maps_fold_into_overflow_past_max_maps() {
    const CAP: usize = 25;
    let sidecar = Sidecar::start_with(Registry::builder().max_maps(CAP), Limits::default(), None);
    // One in-process map of the sidecar's own takes a place too.
    let mut own = InstrumentedMap::<u64, u64>::builder("own")
        .register(&sidecar.registry)
        .unwrap();
    own.insert(1, 1);
    own.publish();
    for source in 0..12 {
        let maps = (0..10).map(|i| map(&format!("m{i}"), &[], 1, 10)).collect();
        sidecar
            .post(None, &report("app", &format!("pod-{source}"), 1, maps))
            .accepted();
    }
    let metrics = sidecar.metrics();
    let series = metrics.series("mapscope_map_entries").count();
    assert_eq!(series, CAP + 1, "the cap plus _overflow");
    let folds = metrics.value("mapscope_map_overflow_folds_total", &[]);
    assert_eq!(folds, (12 * 10 + 1 - CAP) as f64);
    let overflow = [("map", OVERFLOW_MAP)];
    assert_eq!(
        metrics.value("mapscope_map_entries", &overflow),
        (12 * 10 + 1 - CAP) as f64
    );
    assert_eq!(
        metrics.value("mapscope_map_inserts_total", &overflow),
        10.0 * (12 * 10 + 1 - CAP) as f64
    );
    assert_eq!(metrics.value("mapscope_maps", &[]), 121.0);
    // The same reports again fold nothing new: a row keeps its place.
    for source in 0..12 {
        let maps = (0..10).map(|i| map(&format!("m{i}"), &[], 1, 20)).collect();
        sidecar
            .post(None, &report("app", &format!("pod-{source}"), 2, maps))
            .accepted();
    }
    let metrics = sidecar.metrics();
    assert_eq!(metrics.series("mapscope_map_entries").count(), CAP + 1);
    assert_eq!(
        metrics.value("mapscope_map_overflow_folds_total", &[]),
        folds
    );
    assert_eq!(
        metrics.value("mapscope_map_inserts_total", &overflow),
        20.0 * (12 * 10 + 1 - CAP) as f64
    );
    // A folded source that restarts (counters from zero) never takes the
    // `_overflow` counters down.
    let mut restarted = report(
        "app",
        "pod-11",
        1,
        (0..10).map(|i| map(&format!("m{i}"), &[], 1, 1)).collect(),
    );
    restarted.source.started_at = Some(at("2026-11-22T11:00:00Z"));
    assert!(sidecar.post(None, &restarted).accepted().restarted);
    let after = sidecar
        .metrics()
        .value("mapscope_map_inserts_total", &overflow);
    assert!(
        after >= 20.0 * (12 * 10 + 1 - CAP) as f64,
        "the _overflow counter went down to {after}"
    );
}

/// A client-reported misuse count that rises holds its condition for the
/// detectors' `event_hold`, and the condition says when it fired: the first
/// rise, not the time of every later request.
#[test]
fn a_reported_condition_keeps_the_time_it_fired() {
    let sidecar = Sidecar::start(Limits::default(), None);
    let hold = sidecar.registry.detector_config().event_hold;
    let with_misuse = |seq: u64, count: u64| {
        let mut m = map("carts", &[], 1, 1);
        m.counters
            .misuse
            .insert(ReportedMisuseKind::NilMapWrite, count);
        report("checkout", "pod-1", seq, vec![m])
    };
    let since = |sidecar: &Sidecar| {
        let snapshot = sidecar.registry.snapshot();
        let carts = snapshot.map("carts").expect("carts");
        carts
            .conditions
            .iter()
            .find(|c| c.kind == MisuseKind::NilMapWrite)
            .map(|c| (c.since, c.value))
    };
    sidecar.post(None, &with_misuse(1, 1)).accepted();
    let (fired, value) = since(&sidecar).expect("active after the first rise");
    assert_eq!(value, 1.0);
    // Later requests, a rise among them: the condition stays, dated from
    // when it fired.
    for (seq, count) in [(2, 1), (3, 2), (4, 2)] {
        sidecar.clock.advance(Duration::from_secs(10));
        sidecar.post(None, &with_misuse(seq, count)).accepted();
        assert_eq!(since(&sidecar).map(|(at, _)| at), Some(fired), "seq {seq}");
    }
    assert_eq!(since(&sidecar).map(|(_, v)| v), Some(2.0));
    // Held for event_hold after the last rise (at seq 3, 20 s in)...
    sidecar.clock.advance(hold - Duration::from_secs(10));
    assert!(since(&sidecar).is_some());
    // ...then cleared; a new rise fires anew, at its own time.
    sidecar.clock.advance(Duration::from_secs(1));
    assert!(since(&sidecar).is_none());
    sidecar.post(None, &with_misuse(5, 3)).accepted();
    let (again, _) = since(&sidecar).expect("fired again");
    assert_eq!(
        again.duration_since(fired).unwrap(),
        Duration::from_secs(30) + hold - Duration::from_secs(10) + Duration::from_secs(1)
    );
}

/// A map a report leaves out was dropped by the client: like a dropped
/// in-process map, it keeps its last values for the grace period, then
/// leaves. Reported again in time, it is the same series.
#[test]
fn a_map_left_out_of_a_report_stays_for_the_grace_period() {
    let grace = Duration::from_secs(30);
    let sidecar = Sidecar::start_with(
        Registry::builder().grace_period(grace),
        Limits::default(),
        None,
    );
    sidecar
        .post(
            None,
            &report(
                "checkout",
                "pod-1",
                1,
                vec![map("orders", &[], 5, 5), map("carts", &[], 7, 7)],
            ),
        )
        .accepted();
    sidecar
        .post(
            None,
            &report("checkout", "pod-1", 2, vec![map("orders", &[], 5, 6)]),
        )
        .accepted();
    let carts = [("map", "carts"), ("source", "checkout")];
    let snapshot = sidecar.registry.snapshot();
    assert!(snapshot.map("carts").unwrap().dropped);
    assert!(!snapshot.map("orders").unwrap().dropped);
    sidecar.clock.advance(grace);
    assert_eq!(
        find(
            &sidecar.metrics(),
            "mapscope_map_entries",
            &[carts[0], carts[1], ("source_instance", "pod-1")]
        ),
        Some(7.0),
        "final values during the grace period"
    );
    sidecar.clock.advance(Duration::from_millis(1));
    let metrics = sidecar.metrics();
    assert!(metrics.matching("mapscope_map_entries", &carts).is_empty());
    assert_eq!(
        metrics
            .matching("mapscope_map_entries", &[("map", "orders")])
            .len(),
        1
    );
    // Back in a later report: a row again.
    sidecar
        .post(
            None,
            &report(
                "checkout",
                "pod-1",
                3,
                vec![map("orders", &[], 5, 6), map("carts", &[], 8, 8)],
            ),
        )
        .accepted();
    assert_eq!(sidecar.metrics().value("mapscope_map_entries", &carts), 8.0);
}

#[test]
fn binary_sweeps_a_silent_source_after_ttl_plus_grace() {
    let sidecar = start_mapscope(&[
        "sidecar",
        "--listen",
        "127.0.0.1:0",
        "--ingest-listen",
        "127.0.0.1:0",
        "--source-ttl",
        "1",
        "--grace-period",
        "1",
    ]);
    // A source that keeps reporting, on its own thread, bounded.
    let stop = Arc::new(AtomicBool::new(false));
    let keeper = {
        let (url, stop) = (sidecar.ingest_url(), stop.clone());
        thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut seq = 0;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                seq += 1;
                let mut r = report("keeper", "a", seq, vec![map("orders", &[], 1, seq)]);
                r.interval_seconds = Some(0.2);
                assert_eq!(post(&url, None, &r).status, 200);
                thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let mut silent = report("silent", "a", 1, vec![map("orders", &[], 1, 1)]);
    silent.interval_seconds = Some(0.2);
    post(&sidecar.ingest_url(), None, &silent).accepted();
    let last_report = Instant::now();
    let both = poll(WAIT, "both sources counted", || {
        let m = try_scrape(&sidecar.url)?;
        (m.value("mapscope_sources", &[]) == 2.0).then_some(m)
    });
    assert!(has_source(&both, "silent"));

    let mut saw_stale_with_series = false;
    let gone_after = poll(Duration::from_secs(15), "the silent source swept", || {
        let m = try_scrape(&sidecar.url)?;
        let sources = m.value("mapscope_sources", &[]);
        let present = has_source(&m, "silent");
        if sources == 1.0 && present {
            saw_stale_with_series = true;
        }
        assert!(has_source(&m, "keeper"), "the live source must stay");
        (!present).then(|| (last_report.elapsed(), sources))
    });
    let (elapsed, sources) = gone_after;
    assert_eq!(sources, 1.0, "mapscope_sources dropped to the live source");
    assert!(
        elapsed >= Duration::from_secs(2),
        "removed after {elapsed:?}, before ttl + grace"
    );
    assert!(
        saw_stale_with_series,
        "a stale source keeps its series for the grace period"
    );
    stop.store(true, Ordering::Relaxed);
    keeper.join().expect("the keeper thread");
}
