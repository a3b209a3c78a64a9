//! The rules of report semantics and label validity (issue 13, "Reports
//! that cannot freeze a source", "Exposition validity" and the per-source
//! budget): each fault as a client would cause it, through the HTTP-free
//! `handle` with a manual clock, and one over a real sidecar process.
//!
//! Every rejection is checked the same way: status, reason, `field` and
//! `limit` of the JSON body; nothing of the source changed; the other
//! source's series untouched.

// Drives the sidecar (its binary or its ingest endpoint): `--features sidecar`.
#![cfg(feature = "sidecar")]

mod common {
    pub(crate) mod process;
    pub(crate) mod run;
    pub(crate) mod wait;
}

use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use mapscope::export::prometheus::MapscopeCollector;
use mapscope::ingest::protocol::{
    MAX_CLOCK_SKEW_SECONDS, MAX_INTERVAL_SECONDS, MAX_SEQ, MAX_SEQ_STEP,
};
use mapscope::ingest::{handle, ErrorBody, Limits, ReportAccepted, ReportStatus, Sources};
use mapscope::registry::ManualClock;
use mapscope::registry::{RegisterError, RESERVED_LABELS};
use mapscope::{InstrumentedMap, Registry};
use serde_json::{json, Value};

/// A registry on a manual clock standing at a fixed wall time, and its
/// sources.
struct Sidecar {
    clock: ManualClock,
    registry: Registry,
    sources: Sources,
}

const WALL: &str = "2026-11-30T04:00:00Z";

impl Sidecar {
    fn new(limits: Limits) -> Self {
        let wall = mapscope::timestamp::parse_rfc3339(WALL).expect("a timestamp");
        let clock = ManualClock::starting_at(wall);
        let registry = Registry::builder()
            .clock(clock.clone())
            .grace_period(Duration::from_secs(30))
            .build();
        let sources = Sources::new(&registry, limits);
        Sidecar {
            clock,
            registry,
            sources,
        }
    }

    fn post(&self, body: &Value) -> (StatusCode, Value) {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let bytes = serde_json::to_vec(body).expect("JSON");
        self.post_bytes(&bytes)
    }

    fn post_bytes(&self, bytes: &[u8]) -> (StatusCode, Value) {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let (status, body) = handle(&self.sources, None, &headers, bytes);
        (status, serde_json::from_str(&body).expect("a JSON answer"))
    }

    fn accept(&self, body: &Value) -> ReportAccepted {
        let (status, answer) = self.post(body);
        assert_eq!(status, StatusCode::OK, "{answer}");
        serde_json::from_value(answer).expect("a ReportAccepted")
    }

    /// The per-map series of `app`, as exposed.
    fn series(&self, app: &str) -> Vec<String> {
        let needle = format!("source=\"{app}\"");
        MapscopeCollector::new(self.registry.clone())
            .render()
            .lines()
            .filter(|l| !l.starts_with('#') && l.contains(&needle))
            .map(str::to_owned)
            .collect()
    }

    /// Rejects `body` as documented and changes nothing of `app`, nor of
    /// the bystander source `other`.
    fn reject(&self, body: &Value, reason: &str, field: &str, limit: Option<u64>) -> ErrorBody {
        let app = body["source"]["app"].as_str().unwrap_or("app").to_owned();
        let (before, other) = (self.series(&app), self.series("other"));
        let rejected_before = self.rejected(reason);
        let (status, answer) = self.post(body);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        let error: ErrorBody = serde_json::from_value(answer).expect("an ErrorBody");
        assert_eq!(error.field.as_deref(), Some(field), "{error:?}");
        assert_eq!(error.limit, limit, "{error:?}");
        assert_eq!(self.rejected(reason), rejected_before + 1, "{error:?}");
        assert_eq!(
            self.series(&app),
            before,
            "a rejected report changed the source"
        );
        assert_eq!(
            self.series("other"),
            other,
            "a rejected report touched another source"
        );
        error
    }

    fn rejected(&self, reason: &str) -> u64 {
        let ingest = self.registry.snapshot().ingest.expect("ingest stats");
        ingest.rejected.get(reason).copied().unwrap_or(0)
    }
}

/// A report of `app` with one map `m` with `inserts` inserts.
fn report(app: &str, seq: u64, inserts: u64) -> Value {
    json!({
        "source": {"app": app, "instance": "pod-1", "started_at": "2026-11-30T03:00:00Z"},
        "seq": seq,
        "maps": [{"name": "m", "labels": {"tenant": "a"}, "stats": {"entries": 1, "buckets": 1},
                  "counters": {"inserts": inserts}}],
        "events": []
    })
}

/// A sidecar with a bystander source `other` that must never change.
fn sidecar() -> Sidecar {
    let sidecar = Sidecar::new(Limits::default());
    sidecar.accept(&report("other", 1, 10));
    sidecar
}

fn growth_event(seq: u64) -> Value {
    json!({"seq": seq, "kind": "growth", "map": "m", "labels": {"tenant": "a"},
           "at": "2026-11-30T03:59:00Z"})
}

#[test]
fn a_seq_jump_is_rejected_and_never_freezes_the_source() {
    let sidecar = sidecar();
    sidecar.accept(&report("app", 5, 1));
    let error = sidecar.reject(
        &report("app", 5 + MAX_SEQ_STEP + 1, 2),
        "seq_jump",
        "seq",
        Some(MAX_SEQ_STEP),
    );
    assert!(error.error.contains("1000000"), "{}", error.error);
    // The largest u64 is no seq at all.
    sidecar.reject(
        &report("app", u64::MAX, 2),
        "invalid_value",
        "seq",
        Some(MAX_SEQ),
    );
    // The real next report is applied.
    let accepted = sidecar.accept(&report("app", 6, 3));
    assert_eq!(accepted.status, ReportStatus::Accepted);
    // A step of exactly MAX_SEQ_STEP is allowed.
    sidecar.accept(&report("app", 6 + MAX_SEQ_STEP, 4));
}

#[test]
fn a_source_left_at_a_huge_seq_expires_instead_of_answering_duplicate_forever() {
    let sidecar = sidecar();
    // A first report may carry any seq up to MAX_SEQ (a sidecar restart
    // meets clients mid-count) ...
    sidecar.accept(&report("app", MAX_SEQ, 1));
    // ... after which the process's real seq is far below: not a retry,
    // so a 400 that does not keep the source alive.
    sidecar.reject(&report("app", 2, 2), "seq_jump", "seq", Some(MAX_SEQ_STEP));
    sidecar.clock.advance(Duration::from_secs(31));
    sidecar.sources.sweep();
    sidecar.clock.advance(Duration::from_secs(31));
    sidecar.sources.sweep();
    assert!(sidecar.series("app").is_empty(), "the source expired");
    let accepted = sidecar.accept(&report("app", 3, 3));
    assert_eq!(accepted.status, ReportStatus::Accepted);
}

#[test]
fn an_event_seq_jump_is_rejected() {
    let sidecar = sidecar();
    let mut first = report("app", 1, 1);
    first["events"] = json!([growth_event(1)]);
    assert_eq!(sidecar.accept(&first).events_accepted, 1);
    let mut jump = report("app", 2, 2);
    jump["events"] = json!([growth_event(2), growth_event(3 + MAX_SEQ_STEP)]);
    sidecar.reject(&jump, "seq_jump", "events[1].seq", Some(MAX_SEQ_STEP));
    let mut next = report("app", 2, 2);
    next["events"] = json!([growth_event(2)]);
    assert_eq!(sidecar.accept(&next).events_accepted, 1);
}

#[test]
fn started_at_in_the_future_is_rejected_within_a_documented_skew() {
    let sidecar = sidecar();
    let mut future = report("app", 1, 1);
    future["source"]["started_at"] = json!("2099-01-01T00:00:00Z");
    let error = sidecar.reject(
        &future,
        "started_at_in_future",
        "source.started_at",
        Some(MAX_CLOCK_SKEW_SECONDS),
    );
    assert!(
        error.error.contains(WALL),
        "names the sidecar's time: {}",
        error.error
    );
    // Within the skew: accepted (clocks differ a little).
    let mut skewed = report("app", 1, 1);
    skewed["source"]["started_at"] = json!("2026-11-30T04:04:59Z");
    sidecar.accept(&skewed);
    // The clock is the registry's: later, the same start time is the past.
    let mut later = report("late", 1, 1);
    later["source"]["started_at"] = json!("2026-11-30T05:00:00Z");
    sidecar.reject(
        &later,
        "started_at_in_future",
        "source.started_at",
        Some(MAX_CLOCK_SKEW_SECONDS),
    );
    sidecar.clock.advance(Duration::from_secs(3600));
    sidecar.accept(&later);
}

#[test]
fn interval_seconds_above_the_maximum_is_rejected_and_says_seconds() {
    let sidecar = sidecar();
    // 1e9 pinned a slot for 95 years; 10000 is milliseconds.
    for interval in [1e9, 10_000.0, MAX_INTERVAL_SECONDS + 0.5] {
        let mut body = report("app", 1, 1);
        body["interval_seconds"] = json!(interval);
        let error = sidecar.reject(
            &body,
            "invalid_number",
            "interval_seconds",
            Some(MAX_INTERVAL_SECONDS as u64),
        );
        assert!(error.error.contains("second"), "{}", error.error);
    }
    let mut body = report("app", 1, 1);
    body["interval_seconds"] = json!(MAX_INTERVAL_SECONDS);
    sidecar.accept(&body);
}

/// 100 sources at the largest interval cannot lock out a new source past
/// their TTL (3 × 300 s) and the grace period.
#[test]
fn sources_at_the_largest_interval_free_their_slots() {
    let sidecar = Sidecar::new(Limits::default());
    for i in 0..Limits::default().max_sources {
        let mut body = report(&format!("app{i}"), 1, 1);
        body["interval_seconds"] = json!(MAX_INTERVAL_SECONDS);
        sidecar.accept(&body);
    }
    let (status, answer) = sidecar.post(&report("newcomer", 1, 1));
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{answer}");
    for _ in 0..2 {
        sidecar
            .clock
            .advance(Duration::from_secs(3 * MAX_INTERVAL_SECONDS as u64 + 1));
        sidecar.sources.sweep();
    }
    sidecar.accept(&report("newcomer", 1, 1));
}

#[test]
fn a_counter_going_backwards_is_rejected_and_the_series_are_kept() {
    let sidecar = sidecar();
    sidecar.accept(&report("app", 1, 100));
    let error = sidecar.reject(
        &report("app", 2, 99),
        "counter_went_backwards",
        "maps[0].counters.inserts",
        None,
    );
    assert!(
        error.error.contains("\"m\""),
        "names the map: {}",
        error.error
    );
    // By kind, and the client misuse counts.
    let mut grown = report("app", 2, 100);
    grown["maps"][0]["counters"]["growths"] = json!({"same_size": 3});
    grown["maps"][0]["counters"]["misuse"] = json!({"nil_map_write": 2});
    sidecar.accept(&grown);
    let mut fewer = grown.clone();
    fewer["seq"] = json!(3);
    fewer["maps"][0]["counters"]["growths"] = json!({"same_size": 2});
    sidecar.reject(
        &fewer,
        "counter_went_backwards",
        "maps[0].counters.growths.same_size",
        None,
    );
    let mut fewer = grown.clone();
    fewer["seq"] = json!(3);
    fewer["maps"][0]["counters"]["misuse"] = json!({"nil_map_write": 1});
    sidecar.reject(
        &fewer,
        "counter_went_backwards",
        "maps[0].counters.misuse.nil_map_write",
        None,
    );
    // A restart (a later started_at) starts the counters over.
    let mut restarted = report("app", 1, 5);
    restarted["source"]["started_at"] = json!("2026-11-30T03:30:00Z");
    assert!(sidecar.accept(&restarted).restarted);
}

#[test]
fn a_client_without_started_at_restarting_at_seq_1_keeps_its_events() {
    let sidecar = sidecar();
    let body = |inserts: u64, event: u64| {
        let mut r = report("app", 1, inserts);
        r["source"]
            .as_object_mut()
            .expect("object")
            .remove("started_at");
        r["events"] = json!([growth_event(event)]);
        r
    };
    let first = sidecar.accept(&body(10, 1));
    assert_eq!(first.events_accepted, 1);
    // A retry of the same report: a duplicate, nothing counted twice,
    // even once a later report was applied.
    let retry = sidecar.accept(&body(10, 1));
    assert_eq!(retry.status, ReportStatus::Duplicate);
    let mut second = body(11, 2);
    second["seq"] = json!(2);
    assert_eq!(sidecar.accept(&second).events_accepted, 1);
    let late_retry = sidecar.accept(&body(10, 1));
    assert_eq!(late_retry.status, ReportStatus::Duplicate);
    assert!(!late_retry.restarted);
    // The process restarted and sends seq 1 again, with its new counts
    // and its first event again: a restart, the event kept.
    let again = sidecar.accept(&body(3, 1));
    assert_eq!(again.status, ReportStatus::Accepted);
    assert!(again.restarted);
    assert_eq!(again.events_accepted, 1);
    let growths = sidecar
        .registry
        .snapshot()
        .recent_events
        .iter()
        .filter(|e| e.event.map().source.as_deref() == Some("app"))
        .count();
    assert_eq!(growths, 3, "both processes' events are in the ring");
}

#[test]
fn a_label_key_given_twice_is_rejected_naming_it() {
    let sidecar = sidecar();
    let body = br#"{"source": {"app": "app", "instance": "pod-1"}, "seq": 1,
        "maps": [{"name": "m", "labels": {"tenant": "a", "tenant": "b"},
                  "stats": {"entries": 1, "buckets": 1}}]}"#;
    let (status, answer) = sidecar.post_bytes(body);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["field"], "maps[0].labels.tenant", "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("tenant"),
        "{answer}"
    );
    assert_eq!(sidecar.rejected("duplicate_label"), 1);
    assert!(sidecar.series("app").is_empty());
    // In an event's labels too.
    let body = br#"{"source": {"app": "app", "instance": "pod-1"}, "seq": 1,
        "events": [{"seq": 1, "kind": "growth", "map": "m", "at": "2026-11-30T03:59:00Z",
                    "labels": {"x": "1", "y": "2", "x": "3"}}]}"#;
    let (status, answer) = sidecar.post_bytes(body);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["field"], "events[0].labels.x", "{answer}");
}

#[test]
fn labels_the_text_format_keeps_are_rejected_at_ingest_and_registration() {
    let sidecar = sidecar();
    for label in ["quantile", "le"] {
        let mut body = report("app", 1, 1);
        body["maps"][0]["labels"] = json!({label: "0.5"});
        let error = sidecar.reject(
            &body,
            "reserved_label",
            &format!("maps[0].labels.{label}"),
            None,
        );
        assert!(error.error.contains("reserved"), "{}", error.error);
        let registry = Registry::new();
        let err = InstrumentedMap::<u64, u64>::builder("m")
            .label(label, "0.5")
            .register(&registry)
            .expect_err("a reserved label");
        assert_eq!(err, RegisterError::ReservedLabel { name: label.into() });
        assert!(err.to_string().contains(label), "{err}");
    }
}

/// Every label a per-map metric sets itself is reserved: a map label of
/// that name would repeat a label in a series.
#[test]
fn every_label_of_a_per_map_metric_is_reserved() {
    use mapscope::export::catalog::{Scope, CATALOG};
    for metric in CATALOG.iter().filter(|m| m.scope == Scope::Map) {
        for label in metric.labels {
            assert!(RESERVED_LABELS.contains(label), "{}: {label}", metric.name);
        }
    }
}

#[test]
fn the_per_source_label_budget_names_the_limit_and_the_flag() {
    let mut limits = Limits::default();
    limits.max_label_bytes_per_source = 400;
    let sidecar = Sidecar::new(limits);
    sidecar.accept(&report("other", 1, 10));
    // app (3) + instance (5) + name (1) + `,tenant=""` (10) + value per map.
    let body = |value_len: usize| {
        let mut r = report("app", 1, 1);
        r["maps"] = (0..4)
            .map(|i| {
                json!({"name": format!("{i}"), "labels": {"tenant": "v".repeat(value_len)},
                       "stats": {"entries": 1, "buckets": 1}})
            })
            .collect();
        r
    };
    sidecar.accept(&body(100 - 19));
    let error = sidecar.reject(&body(100 - 18), "too_many_label_bytes", "maps", Some(400));
    assert!(
        error.error.contains("--max-label-bytes-per-source"),
        "{}",
        error.error
    );
    assert!(
        error.error.contains("404"),
        "names the cost: {}",
        error.error
    );
}

#[test]
fn the_default_budget_admits_a_typical_source_and_bounds_the_largest() {
    let limits = Limits::default();
    assert_eq!(limits.max_maps_per_source, 100);
    assert_eq!(limits.max_label_bytes_per_source, 8 * 1024);
    let sidecar = Sidecar::new(limits);
    // 100 maps of a pod-named source with a short label each; two labels
    // each for 60 maps.
    let mut typical = report("checkout", 1, 1);
    typical["source"]["instance"] = json!("checkout-7d9f8b6c5-x2x9z");
    typical["maps"] = (0..100)
        .map(|i| {
            json!({"name": format!("sessions_{i:03}"), "labels": {"tenant": "acme"},
                   "stats": {"entries": 1, "buckets": 1}})
        })
        .collect();
    sidecar.accept(&typical);
    let mut two = typical.clone();
    two["source"]["instance"] = json!("checkout-7d9f8b6c5-x2x9y");
    two["maps"] = (0..60)
        .map(|i| {
            json!({"name": format!("sessions_{i:03}"), "labels": {"tenant": "acme", "shard": format!("{}", i % 8)},
                   "stats": {"entries": 1, "buckets": 1}})
        })
        .collect();
    sidecar.accept(&two);
}

/// A label budget and a seq jump over a real sidecar process: the JSON
/// body of the 400 comes back on the wire, the flag and env var are read.
#[test]
fn the_sidecar_binary_enforces_the_rules_on_the_wire() {
    let sidecar = common::process::start_mapscope(&[
        "sidecar",
        "--listen",
        "127.0.0.1:0",
        "--ingest-listen",
        "127.0.0.1:0",
        "--max-label-bytes-per-source",
        "64",
    ]);
    let url = sidecar.ingest_url();
    let client = reqwest::blocking::Client::new();
    let post = |body: &Value| {
        let answer = client.post(&url).json(body).send().expect("an answer");
        let status = answer.status().as_u16();
        (status, answer.json::<Value>().expect("a JSON body"))
    };
    let (status, body) = post(&report("app", 1, 1));
    assert_eq!(status, 200, "{body}");
    let mut big = report("app", 2, 2);
    big["maps"][0]["labels"]["tenant"] = json!("x".repeat(64));
    let (status, body) = post(&big);
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "maps");
    assert_eq!(body["limit"], 64);
    let (status, body) = post(&report("app", 2 + MAX_SEQ_STEP + 1, 2));
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["field"], "seq");
    // The faults of the issue, as a client sends them.
    let (status, body) = post(&report("app", u64::MAX, 2));
    assert_eq!((status, &body["field"]), (400, &json!("seq")), "{body}");
    let mut future = report("app", 2, 2);
    future["source"]["started_at"] = json!("2099-01-01T00:00:00Z");
    let (status, body) = post(&future);
    assert_eq!(
        (status, &body["field"]),
        (400, &json!("source.started_at")),
        "{body}"
    );
    let mut slow = report("app", 2, 2);
    slow["interval_seconds"] = json!(1e9);
    let (status, body) = post(&slow);
    assert_eq!(
        (status, &body["field"]),
        (400, &json!("interval_seconds")),
        "{body}"
    );
    // None of them froze the source.
    let (status, body) = post(&report("app", 2, 2));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], "accepted", "{body}");
}

/// What the default budget lets 100 sources cost: each sends the largest
/// report the default limits allow (100 maps, 4 labels each, the label
/// bytes filled to 8 KiB). Prints exposition bytes, registry memory (RSS
/// growth of this process) and one render's time, for docs/benchmarks.md:
///
/// ```sh
/// cargo test --release --test report_rules -- --ignored --nocapture measure
/// ```
#[test]
#[ignore = "a measurement: run by hand for docs/benchmarks.md"]
fn measure_the_default_worst_case() {
    fn rss_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmRSS")
    }
    let limits = Limits::default();
    let sidecar = Sidecar::new(limits.clone());
    let keys: Vec<String> = ('a'..='d').map(String::from).collect();
    let largest = |source: usize| {
        let (app, instance) = ("a", format!("{source:02}"));
        let per_map = limits.max_label_bytes_per_source / limits.max_maps_per_source;
        let maps: Vec<Value> = (0..limits.max_maps_per_source)
            .map(|i| {
                let name = format!("{i:02}");
                let fixed = app.len() + instance.len() + name.len() + 5 * keys.len();
                let value_bytes = (per_map - fixed) / keys.len();
                let labels: serde_json::Map<String, Value> = keys
                    .iter()
                    .map(|k| (k.clone(), json!("v".repeat(value_bytes))))
                    .collect();
                json!({"name": name, "labels": labels,
                       "stats": {"entries": 1000, "buckets": 256, "overflow_buckets": 3,
                                 "evacuation": {"kind": "double", "old_buckets": 128, "evacuated_old_buckets": 5}},
                       "counters": {"inserts": 1000, "growths": {"double": 8},
                                    "misuse": {"nil_map_write": 1, "concurrent_write": 1, "iterate_while_mutating": 1}}})
            })
            .collect();
        json!({"source": {"app": app, "instance": instance}, "seq": 1, "maps": maps})
    };
    let before = rss_kib();
    let mut body_bytes = 0;
    for source in 0..limits.max_sources {
        let body = largest(source);
        body_bytes = serde_json::to_vec(&body).expect("JSON").len();
        sidecar.accept(&body);
    }
    let after = rss_kib();
    let collector = MapscopeCollector::new(sidecar.registry.clone());
    let started = std::time::Instant::now();
    let text = collector.render();
    let render = started.elapsed();
    let one_source = text
        .lines()
        .filter(|l| l.contains("source_instance=\"00\""))
        .map(|l| l.len() + 1)
        .sum::<usize>();
    println!(
        "{} sources x {} maps, {} label bytes each; body {} bytes per report",
        limits.max_sources,
        limits.max_maps_per_source,
        limits.max_label_bytes_per_source,
        body_bytes
    );
    println!(
        "exposition: {} bytes in all, {} bytes for one source; registry RSS growth {} KiB; one render {:?}",
        text.len(),
        one_source,
        after.saturating_sub(before),
        render
    );
}

/// A source that sends new maps in every report holds the ones it left out
/// for the grace period: they count against its series budget, so it
/// cannot grow its series without bound.
#[test]
fn maps_left_out_count_against_the_series_budget_until_the_grace_period_ends() {
    let mut limits = Limits::default();
    limits.max_maps_per_source = 4;
    let sidecar = Sidecar::new(limits);
    sidecar.accept(&report("other", 1, 10));
    let maps = |from: usize| -> Value {
        (from..from + 2)
            .map(|i| json!({"name": format!("m{i}"), "stats": {"entries": 1, "buckets": 1}}))
            .collect()
    };
    let mut body = report("app", 1, 1);
    body["maps"] = maps(0);
    sidecar.accept(&body);
    body["seq"] = json!(2);
    body["maps"] = maps(2);
    sidecar.accept(&body);
    body["seq"] = json!(3);
    body["maps"] = maps(4);
    let error = sidecar.reject(&body, "too_many_maps", "maps", Some(4));
    assert!(error.error.contains("--grace-period"), "{}", error.error);
    // Past the grace period the maps left out are gone, and so is the cost.
    // (No scrape needed: the rows go at the next observation.)
    sidecar.clock.advance(Duration::from_secs(31));
    sidecar.accept(&body);
}

/// docs/protocol.md lists every reason these rules answer, and the README
/// and `mapscope sidecar --help` the budget flag with its env var.
#[test]
fn the_rules_and_the_budget_are_documented() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let read = |path: &str| std::fs::read_to_string(root.join(path)).expect("a doc");
    let protocol = read("docs/protocol.md");
    for reason in [
        "seq_jump",
        "started_at_in_future",
        "counter_went_backwards",
        "duplicate_label",
        "too_many_label_bytes",
        "too_many_maps",
        "quantile",
    ] {
        assert!(
            protocol.contains(&format!("`{reason}`")),
            "docs/protocol.md: {reason}"
        );
    }
    let readme = read("README.md");
    for text in [
        "`--max-label-bytes-per-source` | `MAPSCOPE_MAX_LABEL_BYTES_PER_SOURCE` | `8192`",
        "`--max-maps-per-source` | `MAPSCOPE_MAX_MAPS_PER_SOURCE` | `100`",
    ] {
        assert!(readme.contains(text), "README limits table: {text}");
    }
    let mut help = common::process::mapscope_command();
    help.args(["sidecar", "--help"]);
    let out = common::run::run(help, Duration::from_secs(30));
    assert!(out.status.success(), "--help: {}", out.stderr);
    for text in [
        "--max-label-bytes-per-source",
        "MAPSCOPE_MAX_LABEL_BYTES_PER_SOURCE",
    ] {
        assert!(out.stdout.contains(text), "--help: {text}\n{}", out.stdout);
    }
}
