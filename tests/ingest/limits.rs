//! Every limit, table-driven ([`super::limit_cases`]): status, JSON error
//! body naming field and limit, other sources' series untouched, and the
//! ingest counters.

use std::collections::{BTreeMap, BTreeSet};

use mapscope::ingest::{ErrorBody, Limits, ReportAccepted, Sources};
use mapscope::Registry;
use serde_json::json;

use super::limit_cases::{
    good, limit_cases, set_at, Field, MAX_EVENTS, MAX_MAPS, MAX_SOURCES, REASONS,
};
use super::support::{find, json_headers, map, map_series_of, report, series_of, Sidecar, TOKEN};
use crate::common::exposition::Sample;

#[test]
fn every_limit_answers_with_a_json_error_and_touches_nothing_else() {
    let mut limits = Limits::default();
    limits.max_sources = MAX_SOURCES;
    limits.max_maps_per_source = MAX_MAPS;
    limits.max_events_per_report = MAX_EVENTS;
    let sidecar = Sidecar::start(limits, Some(TOKEN));
    // Three good sources: alpha and beta are compared after every request;
    // delta takes the accepted edge cases.
    for (app, n) in [("alpha", 1), ("beta", 2), ("delta", 3)] {
        let mut r = report(
            app,
            "i1",
            1,
            vec![map("orders", &[("tenant", app)], n, 10 * n)],
        );
        r.maps.push(map("sessions", &[], n + 1, 20 * n));
        sidecar.post(Some(TOKEN), &r).accepted();
    }
    let baseline_metrics = sidecar.metrics();
    let baseline = series_of(&baseline_metrics, &["alpha", "beta"]);
    assert_eq!(baseline_metrics.value("mapscope_sources", &[]), 3.0);
    assert!(baseline.len() > 40, "{baseline:?}");

    let mut codes: BTreeMap<String, f64> = BTreeMap::from([("200".to_owned(), 3.0)]);
    let mut reasons: BTreeMap<String, f64> = BTreeMap::new();
    let mut failures = Vec::new();
    for case in limit_cases() {
        let answer = sidecar.post_raw(case.token, case.content_type, case.body.clone());
        *codes.entry(case.status.to_string()).or_default() += 1.0;
        if !case.reason.is_empty() {
            *reasons.entry(case.reason.to_owned()).or_default() += 1.0;
        }
        let mut problems = Vec::new();
        if answer.status != case.status {
            problems.push(format!(
                "status {} (expected {})",
                answer.status, case.status
            ));
        }
        if answer.content_type != "application/json" {
            problems.push(format!("content type {:?}", answer.content_type));
        }
        let body = answer.json();
        if case.status == 200 {
            if serde_json::from_value::<ReportAccepted>(body.clone()).is_err() {
                problems.push("not a ReportAccepted".into());
            }
        } else {
            let keys: BTreeSet<&str> = body
                .as_object()
                .map(|o| o.keys().map(String::as_str).collect())
                .unwrap_or_default();
            if keys != BTreeSet::from(["error", "field", "limit"]) {
                problems.push(format!("error body keys {keys:?}"));
            }
            match serde_json::from_value::<ErrorBody>(body.clone()) {
                Err(e) => problems.push(format!("not an ErrorBody: {e}")),
                Ok(error) => {
                    if error.error.trim().is_empty() {
                        problems.push("empty error message".into());
                    }
                    let field_ok = match (&case.field, &error.field) {
                        (Field::Null, None) => true,
                        (Field::Is(want), Some(got)) => want == got,
                        (Field::StartsWith(prefix), Some(got)) => got.starts_with(prefix),
                        _ => false,
                    };
                    if !field_ok {
                        problems.push(format!(
                            "field {:?} (expected {:?})",
                            error.field, case.field
                        ));
                    }
                    if error.limit != case.limit {
                        problems.push(format!(
                            "limit {:?} (expected {:?})",
                            error.limit, case.limit
                        ));
                    }
                    if case.reason == "too_many_maps"
                        && !error.error.contains("max-maps-per-source")
                    {
                        problems.push("the error does not name --max-maps-per-source".into());
                    }
                }
            }
        }
        // Nothing of other sources changed, and nothing of a rejected request appeared.
        let metrics = sidecar.metrics();
        if series_of(&metrics, &["alpha", "beta"]) != baseline {
            problems.push("the series of alpha or beta changed".into());
        }
        if case.status != 200 {
            let leaked: Vec<&Sample> = metrics
                .samples
                .iter()
                .filter(|s| {
                    let source = s.label("source").unwrap_or_default();
                    (s.label("map").is_some_and(|m| m.starts_with("bad")) && source != "delta")
                        || source.starts_with("gamma")
                })
                .collect();
            if !leaked.is_empty() {
                problems.push(format!(
                    "series of a rejected request appeared: {:?}",
                    leaked[0]
                ));
            }
            if metrics.value("mapscope_sources", &[]) != 3.0 {
                problems.push("mapscope_sources changed".into());
            }
        }
        if !problems.is_empty() {
            let text: String = answer.text.chars().take(300).collect();
            failures.push(format!(
                "{}: {} — answer: {text}",
                case.name,
                problems.join("; ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // The ingest counters count every request, by code and by reason.
    let metrics = sidecar.metrics();
    let got_codes: BTreeMap<String, f64> = metrics
        .series("mapscope_ingest_requests_total")
        .map(|s| (s.label("code").unwrap_or_default().to_owned(), s.value))
        .collect();
    assert_eq!(got_codes, codes);
    let got_reasons: BTreeMap<String, f64> = metrics
        .series("mapscope_ingest_rejected_total")
        .map(|s| (s.label("reason").unwrap_or_default().to_owned(), s.value))
        .collect();
    assert_eq!(got_reasons, reasons);
    let covered: BTreeSet<&str> = reasons.keys().map(String::as_str).collect();
    assert_eq!(
        covered,
        REASONS.iter().copied().collect(),
        "every reason is exercised"
    );
    // The accepted edge cases rendered as they were sent.
    assert_eq!(
        find(
            &metrics,
            "mapscope_map_entries",
            &[
                ("map", "bad_map"),
                ("source", "delta"),
                ("source_instance", "i1"),
                ("tenant", "acme")
            ]
        ),
        Some(1.0),
        "the last accepted delta report replaced its maps"
    );
}

#[test]
fn accepted_edge_values_render_exactly() {
    let sidecar = Sidecar::start(Limits::default(), None);
    let body = json!({
        "source": {"app": "édition", "instance": "pod-1", "future": 1},
        "seq": mapscope::ingest::protocol::MAX_SEQ,
        "sent_at": "2026-11-22T10:00:00Z",
        "interval_seconds": 0.5,
        "maps": [{
            "name": "заказы 🛒",
            "labels": {"tenant": "Zürich \"q\" \\ b"},
            "stats": {"entries": u64::MAX, "buckets": 0},
            "counters": {"inserts": u64::MAX, "misuse": {"nil_map_write": 3, "concurrent_write": 1}}
        }]
    });
    sidecar.post(None, &body).accepted();
    let metrics = sidecar.metrics();
    let labels = [
        ("map", "заказы 🛒"),
        ("source", "édition"),
        ("source_instance", "pod-1"),
        ("tenant", "Zürich \"q\" \\ b"),
    ];
    assert_eq!(
        find(&metrics, "mapscope_map_entries", &labels),
        Some(u64::MAX as f64)
    );
    assert_eq!(
        find(&metrics, "mapscope_map_inserts_total", &labels),
        Some(u64::MAX as f64)
    );
    assert_eq!(
        find(&metrics, "mapscope_map_load_factor", &labels),
        Some(0.0)
    );
    let kind = |k: &'static str| {
        [
            ("kind", k),
            ("map", "заказы 🛒"),
            ("source", "édition"),
            ("source_instance", "pod-1"),
            ("tenant", "Zürich \"q\" \\ b"),
        ]
    };
    assert_eq!(
        find(
            &metrics,
            "mapscope_map_misuse_events_total",
            &kind("nil_map_write")
        ),
        Some(3.0)
    );
    assert_eq!(
        find(
            &metrics,
            "mapscope_map_misuse_events_total",
            &kind("concurrent_write")
        ),
        Some(1.0)
    );
    assert_eq!(
        find(
            &metrics,
            "mapscope_map_condition_active",
            &kind("nil_map_write")
        ),
        Some(1.0),
        "a rising client misuse count holds the condition"
    );
    assert_eq!(
        find(
            &metrics,
            "mapscope_map_condition_active",
            &kind("iterate_while_mutating")
        ),
        Some(0.0)
    );
}

#[test]
fn body_limit_is_the_configured_one_not_a_framework_default() {
    // A 3 MiB body (whitespace-padded) under a 4 MiB --max-body-bytes.
    let mut limits = Limits::default();
    limits.max_body_bytes = 4 * 1024 * 1024;
    let sidecar = Sidecar::start(limits, None);
    let mut body =
        serde_json::to_vec(&report("big", "i", 1, vec![map("orders", &[], 1, 1)])).expect("json");
    body.resize(3 * 1024 * 1024, b' ');
    let answer = sidecar.post_raw(None, Some("application/json"), body);
    assert_eq!(answer.status, 200, "{}", answer.text);
    let mut body = b"{}".to_vec();
    body.resize(4 * 1024 * 1024 + 1, b' ');
    let answer = sidecar.post_raw(None, Some("application/json"), body);
    assert_eq!(answer.status, 413, "{}", answer.text);
    assert_eq!(answer.json()["limit"], json!(4 * 1024 * 1024));
}

/// Seconds that do not fit a `Duration` (on the report or on an event) are
/// a 400, never a panic: `handle` does not panic, and a panic inside the
/// store would leave a half-applied report behind.
#[test]
fn seconds_too_large_for_a_duration_are_rejected_not_a_panic() {
    for (pointer, value) in [
        ("/interval_seconds", 1e19),
        ("/interval_seconds", 1e300),
        ("/events/0/duration_seconds", 1e300),
    ] {
        let store = Sources::new(&Registry::new(), Limits::default());
        let mut body = good("alpha", 1);
        set_at(&mut body, pointer, json!(value));
        let bytes = serde_json::to_vec(&body).expect("json");
        // The store is not UnwindSafe (the registry holds trait objects);
        // nothing here is looked at after a panic but the panic itself.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            mapscope::ingest::handle(&store, None, &json_headers(), &bytes)
        }));
        let (status, text) = outcome.unwrap_or_else(|_| panic!("{pointer} = {value} panicked"));
        assert_eq!(status, 400, "{pointer} = {value}: {text}");
    }
}

/// Through HTTP, a report with one bad field (an event duration that does
/// not fit a `Duration`) is never a 5xx, and a refused report changes none
/// of its source's series.
#[test]
fn a_failed_report_changes_nothing() {
    let sidecar = Sidecar::start(Limits::default(), None);
    sidecar
        .post(
            None,
            &report("alpha", "i1", 1, vec![map("orders", &[], 1, 1)]),
        )
        .accepted();
    let before = map_series_of(&sidecar.metrics(), &["alpha"]);
    let mut body = serde_json::to_value(report("alpha", "i1", 2, vec![map("orders", &[], 9, 9)]))
        .expect("json");
    let mut event = json!({"seq": 1, "kind": "growth", "map": "orders"});
    event["at"] = json!("2026-11-22T10:00:01Z");
    event["duration_seconds"] = json!(1e300);
    body["events"] = json!([event]);
    let answer = sidecar.post(None, &body);
    let after = map_series_of(&sidecar.metrics(), &["alpha"]);
    let entries = |series: &BTreeMap<String, f64>| {
        series
            .iter()
            .find(|(k, _)| k.starts_with("mapscope_map_entries"))
            .map(|(_, v)| *v)
    };
    assert!(
        answer.status == 200 || after == before,
        "answered {} {} but the report was applied: entries {:?} -> {:?}",
        answer.status,
        answer.text,
        entries(&before),
        entries(&after)
    );
    assert!(answer.status < 500, "{} {}", answer.status, answer.text);
}
