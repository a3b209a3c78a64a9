//! Protocol v1's types on the wire (`docs/protocol.md`,
//! `docs/openapi.yaml`):
//!
//! - every enum-typed field (evacuation kind, event kind, growth kind,
//!   misuse kind, the keys of `counters.misuse`): an unknown value is a 400
//!   `invalid_value` whose `field` names it and whose message lists the
//!   values allowed, and a report that changes nothing;
//! - every timestamp (`source.started_at`, `sent_at`, events' `at`): an
//!   impossible date or offset is a 400 `invalid_timestamp` naming it;
//! - integers as JSON Schema reads them (`1037.0` is 1037), unknown fields
//!   accepted at every level, a growth kind defaulting to `double` only
//!   when absent;
//! - the answer's `status` enum in the document is the code's, `stale`
//!   included, and each status is answered;
//! - schemathesis against the real binary: every body `docs/openapi.yaml`
//!   allows is accepted, every body it forbids is rejected, and every
//!   answer matches its documented status, content type and schema.

// Drives the sidecar (its binary or its ingest endpoint): `--features sidecar`.
#![cfg(feature = "sidecar")]

mod common {
    pub(crate) mod e2e;
    pub(crate) mod process;
    pub(crate) mod programs;
    pub(crate) mod run;
    pub(crate) mod wait;
}

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use mapscope::ingest::protocol::{ReportStatus, ReportedGrowthKind, ReportedMisuseKind};
use mapscope::ingest::{handle, ErrorBody, Limits, ReportAccepted, Sources};
use mapscope::{GrowthKind, MisuseKind, Registry};
use serde_json::{json, Value};

fn json_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers
}

/// A report that uses every enum-typed and timestamp field.
fn good() -> Value {
    json!({
        "source": {"app": "checkout", "instance": "pod-1", "started_at": "2026-11-22T10:00:00Z"},
        "seq": 1,
        "sent_at": "2026-11-22T10:00:10Z",
        "maps": [{
            "name": "sessions",
            "stats": {
                "entries": 1, "buckets": 2,
                "evacuation": {"kind": "double", "old_buckets": 1, "evacuated_old_buckets": 0}
            },
            "counters": {"misuse": {"nil_map_write": 1}}
        }],
        "events": [
            {"seq": 1, "kind": "growth", "map": "sessions", "at": "2026-11-22T10:00:01Z",
             "duration_seconds": 0.001, "growth_kind": "same_size"},
            {"seq": 2, "kind": "misuse", "map": "sessions", "at": "2026-11-22T10:00:02Z",
             "misuse_kind": "concurrent_write"}
        ]
    })
}

/// What one report to a fresh sidecar answered, and which rejection reasons
/// it counted.
struct Answer {
    status: StatusCode,
    body: Value,
    registry: Registry,
}

impl Answer {
    fn error(&self) -> ErrorBody {
        serde_json::from_value(self.body.clone()).expect("an error body")
    }

    fn rejected(&self) -> Vec<String> {
        let ingest = self.registry.snapshot().ingest.expect("ingest stats");
        ingest.rejected.keys().cloned().collect()
    }

    fn maps(&self) -> usize {
        self.registry.snapshot().maps.len()
    }
}

fn send(body: &[u8]) -> Answer {
    let registry = Registry::new();
    let sources = Sources::new(&registry, Limits::default());
    let (status, body) = handle(&sources, None, &json_headers(), body);
    let body = serde_json::from_str(&body).expect("every answer is JSON");
    Answer {
        status,
        body,
        registry,
    }
}

fn send_value(value: &Value) -> Answer {
    send(&serde_json::to_vec(value).expect("JSON"))
}

fn with(pointer: &str, new: Value) -> Value {
    let mut report = good();
    *report.pointer_mut(pointer).expect("the field exists") = new;
    report
}

fn names<T: Copy>(all: &[T], name: fn(T) -> &'static str) -> String {
    all.iter().map(|v| name(*v)).collect::<Vec<_>>().join(", ")
}

#[test]
fn the_good_report_is_accepted_with_its_kinds() {
    let answer = send_value(&good());
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let accepted: ReportAccepted = serde_json::from_value(answer.body.clone()).expect("accepted");
    assert_eq!(accepted.status, ReportStatus::Accepted);
    assert_eq!(accepted.events_accepted, 2);
    let snapshot = answer.registry.snapshot();
    let sessions = snapshot.map("sessions").expect("the reported map");
    let growth = sessions.stats.growth.expect("an evacuation in progress");
    assert_eq!(growth.kind, GrowthKind::Double);
    assert_eq!(sessions.misuse_count(MisuseKind::NilMapWrite), 1);
}

#[test]
fn every_unknown_enum_value_is_a_400_naming_the_field_and_the_allowed_values() {
    let growth = names(&ReportedGrowthKind::ALL, ReportedGrowthKind::as_str);
    let misuse = names(&ReportedMisuseKind::ALL, ReportedMisuseKind::as_str);
    let misuse_keys = {
        let mut report = good();
        report["maps"][0]["counters"]["misuse"] = json!({"nil_map_write": 1, "segfault": 2});
        report
    };
    let cases = [
        (
            with("/maps/0/stats/evacuation/kind", json!("triple")),
            "maps[0].stats.evacuation.kind",
            "\"triple\"",
            growth.clone(),
        ),
        (
            with("/events/0/kind", json!("explosion")),
            "events[0].kind",
            "\"explosion\"",
            "growth, misuse".to_owned(),
        ),
        (
            with("/events/0/growth_kind", json!("triple")),
            "events[0].growth_kind",
            "\"triple\"",
            growth.clone(),
        ),
        (
            with("/events/1/misuse_kind", json!("segfault")),
            "events[1].misuse_kind",
            "\"segfault\"",
            misuse.clone(),
        ),
        (
            misuse_keys,
            "maps[0].counters.misuse.segfault",
            "\"segfault\"",
            misuse.clone(),
        ),
        // Case matters: the values are snake_case, exactly.
        (
            with("/events/0/growth_kind", json!("Double")),
            "events[0].growth_kind",
            "\"Double\"",
            growth,
        ),
        (
            with("/events/1/misuse_kind", json!("")),
            "events[1].misuse_kind",
            "\"\"",
            misuse,
        ),
    ];
    for (report, field, value, allowed) in cases {
        let answer = send_value(&report);
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{field}: {}",
            answer.body
        );
        let error = answer.error();
        assert_eq!(error.field.as_deref(), Some(field), "{}", error.error);
        assert_eq!(
            error.error,
            format!("{field}: unknown value {value}: expected one of {allowed}")
        );
        assert_eq!(error.limit, None);
        assert_eq!(answer.rejected(), ["invalid_value"], "{field}");
        assert_eq!(
            answer.maps(),
            0,
            "{field}: a rejected report changes nothing"
        );
    }
}

#[test]
fn a_wrong_type_for_an_enum_is_a_schema_error() {
    for (report, field) in [
        (with("/events/0/kind", json!(1)), "events[0].kind"),
        (
            with("/events/0/growth_kind", json!(["double"])),
            "events[0].growth_kind",
        ),
        (
            with("/maps/0/stats/evacuation/kind", Value::Null),
            "maps[0].stats.evacuation.kind",
        ),
    ] {
        let answer = send_value(&report);
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{field}");
        assert_eq!(answer.error().field.as_deref(), Some(field));
        assert_eq!(answer.rejected(), ["schema"], "{field}");
    }
}

#[test]
fn a_misuse_event_needs_its_kind_and_a_growth_kind_defaults_only_when_absent() {
    let mut report = good();
    report["events"][1]
        .as_object_mut()
        .expect("an event")
        .remove("misuse_kind");
    let answer = send_value(&report);
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let error = answer.error();
    assert_eq!(error.field.as_deref(), Some("events[1].misuse_kind"));
    assert!(error.error.contains("nil_map_write"), "{}", error.error);
    assert_eq!(answer.rejected(), ["invalid_value"]);

    // Absent or null: double.
    for growth_kind in [None, Some(Value::Null)] {
        let mut report = good();
        let event = report["events"][0].as_object_mut().expect("an event");
        match growth_kind {
            Some(value) => {
                event.insert("growth_kind".into(), value);
            }
            None => {
                event.remove("growth_kind");
            }
        }
        let answer = send_value(&report);
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        let events = answer.registry.events_since(0).events;
        let growth = events
            .iter()
            .find_map(|record| match &record.event {
                mapscope::Event::GrowthFinished(g) => Some(g.kind),
                _ => None,
            })
            .expect("the growth event");
        assert_eq!(growth, GrowthKind::Double);
    }
}

#[test]
fn impossible_dates_and_offsets_are_400s_naming_the_field() {
    let fields = [
        ("/source/started_at", "source.started_at"),
        ("/sent_at", "sent_at"),
        ("/events/0/at", "events[0].at"),
        ("/events/1/at", "events[1].at"),
    ];
    let bad = [
        "2026-02-31T00:00:00Z",
        "2026-02-29T10:00:00Z",
        "2026-11-22T10:00:00+99:99",
        "2026-11-22T10:00:00+24:00",
        "2026-11-22T10:00:00-01:60",
        "2026-11-22T24:00:00Z",
        "2026-11-22T10:00:00",
        "2026-11-22 10:00:00Z",
        "yesterday",
        "",
    ];
    for (pointer, field) in fields {
        for text in bad {
            let answer = send_value(&with(pointer, json!(text)));
            assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{field} = {text:?}");
            let error = answer.error();
            assert_eq!(error.field.as_deref(), Some(field), "{}", error.error);
            assert!(
                error
                    .error
                    .starts_with(&format!("{field}: not an RFC 3339 timestamp: {text:?}")),
                "{}",
                error.error
            );
            assert_eq!(
                answer.rejected(),
                ["invalid_timestamp"],
                "{field} = {text:?}"
            );
            assert_eq!(answer.maps(), 0);
        }
        // A number is a wrong type, not a bad timestamp.
        let answer = send_value(&with(pointer, json!(1_795_305_600)));
        assert_eq!(answer.rejected(), ["schema"], "{field}");
    }
    // Every zone, leap day and leap second RFC 3339 allows is accepted.
    for good_text in [
        "2028-02-29T10:00:00Z",
        "2026-11-22T10:00:00.123456789+05:45",
        "2026-11-22t10:00:00z",
        "2026-12-31T23:59:60Z",
        "0001-01-01T00:00:00-23:59",
        "9999-12-31T23:59:59+23:59",
    ] {
        let answer = send_value(&with("/events/0/at", json!(good_text)));
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{good_text}: {}",
            answer.body
        );
    }
}

#[test]
fn integers_are_read_as_json_schema_reads_them() {
    // 1037.0 and 1.037e3 are the integer 1037; a whole float is read
    // exactly (found by schemathesis: a float parser off by one ulp made
    // 4209859211653378.0 a fraction).
    let text = serde_json::to_string(&good()).expect("JSON");
    for (written, value) in [
        ("1037.0", 1037),
        ("1.037e3", 1037),
        ("4209859211653378.0", 4_209_859_211_653_378),
        ("9007199254740992.0", 1 << 53),
    ] {
        let body = text.replacen("\"entries\":1", &format!("\"entries\":{written}"), 1);
        let answer = send(body.as_bytes());
        assert_eq!(answer.status, StatusCode::OK, "{written}: {}", answer.body);
        let snapshot = answer.registry.snapshot();
        assert_eq!(
            snapshot.map("sessions").expect("the map").stats.entries,
            value,
            "{written}"
        );
    }
    for bad in [
        "1037.5",
        "-1",
        "-1.0",
        "18446744073709551616",
        "1e20",
        "\"1\"",
    ] {
        let body = text.replacen("\"entries\":1", &format!("\"entries\":{bad}"), 1);
        let answer = send(body.as_bytes());
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(
            answer.error().field.as_deref(),
            Some("maps[0].stats.entries"),
            "{bad}"
        );
        assert_eq!(answer.rejected(), ["schema"], "{bad}");
    }
    let max = text.replacen("\"entries\":1", "\"entries\":18446744073709551615", 1);
    assert_eq!(send(max.as_bytes()).status, StatusCode::OK);
}

#[test]
fn unknown_fields_are_accepted_at_every_level() {
    let mut report = good();
    report["future"] = json!({"nested": [1, 2]});
    report["source"]["region"] = json!("eu");
    report["maps"][0]["future"] = json!(1);
    report["maps"][0]["stats"]["future"] = json!(true);
    report["maps"][0]["stats"]["evacuation"]["future"] = json!(null);
    report["maps"][0]["counters"]["future"] = json!("x");
    report["maps"][0]["counters"]["growths"] = json!({"double": 1, "quadruple": 2});
    report["events"][0]["future"] = json!([]);
    let answer = send_value(&report);
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
}

fn openapi() -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.yaml");
    let text = std::fs::read_to_string(&path).expect("read docs/openapi.yaml");
    serde_norway::from_str(&text).expect("docs/openapi.yaml is YAML")
}

/// The values of a documented enum (a `oneOf` of constants).
fn documented_values(openapi: &Value, schema: &str) -> Vec<String> {
    openapi["components"]["schemas"][schema]["oneOf"]
        .as_array()
        .unwrap_or_else(|| panic!("{schema} is a oneOf of constants"))
        .iter()
        .map(|v| v["const"].as_str().expect("a const").to_owned())
        .collect()
}

#[test]
fn the_documented_enums_are_the_code_s_stale_included() {
    let openapi = openapi();
    let statuses: Vec<&str> = ReportStatus::ALL.map(ReportStatus::as_str).into();
    assert_eq!(documented_values(&openapi, "ReportStatus"), statuses);
    assert!(statuses.contains(&"stale"));
    assert_eq!(
        documented_values(&openapi, "ReportedGrowthKind"),
        GrowthKind::ALL.map(GrowthKind::as_str)
    );
    assert_eq!(
        documented_values(&openapi, "ReportedMisuseKind"),
        MisuseKind::ALL.map(MisuseKind::as_str)
    );
    assert_eq!(
        documented_values(&openapi, "EventKind"),
        ["growth", "misuse"]
    );
}

#[test]
fn every_status_is_answered() {
    let registry = Registry::new();
    let sources = Sources::new(&registry, Limits::default());
    let post = |report: &Value| -> ReportStatus {
        let body = serde_json::to_vec(report).expect("JSON");
        let (status, body) = handle(&sources, None, &json_headers(), &body);
        assert_eq!(status, StatusCode::OK, "{body}");
        let accepted: ReportAccepted = serde_json::from_str(&body).expect("accepted");
        accepted.status
    };
    let first = good();
    assert_eq!(post(&first), ReportStatus::Accepted);
    assert_eq!(post(&first), ReportStatus::Duplicate);
    let mut restarted = good();
    restarted["source"]["started_at"] = json!("2026-11-22T11:00:00Z");
    assert_eq!(post(&restarted), ReportStatus::Accepted);
    // A late report from the process before the restart.
    let mut late = good();
    late["seq"] = json!(7);
    assert_eq!(post(&late), ReportStatus::Stale);
    assert_eq!(
        serde_json::to_value(ReportStatus::Stale).expect("JSON"),
        json!("stale")
    );
}

/// Cases schemathesis generates per phase (`--max-examples`): with the
/// coverage phase's boundary cases, about 800 requests in under a minute.
const SCHEMATHESIS_EXAMPLES: &str = "150";

/// A fixed seed: CI runs the same cases every time; set
/// `MAPSCOPE_SCHEMATHESIS_SEED` to explore others.
const SCHEMATHESIS_SEED: &str = "20261122";

#[test]
fn schemathesis_finds_nothing_the_document_and_the_sidecar_disagree_on() {
    let Some(schemathesis) = common::programs::require_program(
        "schemathesis",
        "install it with `python3 -m pip install schemathesis==4.32.5` (.ci/run does)",
    ) else {
        return;
    };
    // Sources, body size and label bytes are limits of the deployment, not
    // of a report: generated reports come from thousands of sources, some
    // large.
    let sidecar = common::process::start_mapscope(&[
        "sidecar",
        "--listen",
        "127.0.0.1:0",
        "--ingest-listen",
        "127.0.0.1:0",
        "--max-sources",
        "1000000",
        "--max-body-bytes",
        "67108864",
        "--max-label-bytes-per-source",
        "67108864",
    ]);
    let ingest = sidecar.ingest_url();
    let base = ingest.trim_end_matches("/v1/report");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let work = std::env::temp_dir().join(format!("mapscope-schemathesis-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("a working directory");
    let seed =
        std::env::var("MAPSCOPE_SCHEMATHESIS_SEED").unwrap_or_else(|_| SCHEMATHESIS_SEED.into());
    let mut command = Command::new(schemathesis);
    command
        .current_dir(&work)
        .env(
            "SCHEMATHESIS_HOOKS",
            root.join("tests/schemathesis/hooks.py"),
        )
        .args(["run", &root.join("docs/openapi.yaml").to_string_lossy()])
        .args(["--url", base])
        // Every check: server errors, documented statuses, content types
        // and schemas of answers, and both directions of the contract:
        // positive data accepted, negative data rejected.
        .args(["--checks", "all"])
        .args(["--max-examples", SCHEMATHESIS_EXAMPLES, "--seed", &seed])
        // Hypothesis's speed heuristics would fail a run on a busy CI
        // machine; they say nothing about the sidecar.
        .args(["--suppress-health-check", "too_slow,data_too_large"])
        .args(["--generation-database", "none", "--no-color"]);
    let started = std::time::Instant::now();
    let out = common::run::run(command, Duration::from_secs(300));
    let _ = std::fs::remove_dir_all(&work);
    eprintln!(
        "schemathesis (seed {seed}) took {:.0?}:\n{}",
        started.elapsed(),
        summary(&out.stdout)
    );
    assert!(
        out.status.success(),
        "schemathesis failed ({:?})\n--- stdout\n{}\n--- stderr\n{}\n--- sidecar stderr\n{}",
        out.status,
        out.stdout,
        out.stderr,
        sidecar.stderr_text()
    );
    assert!(out.stdout.contains("No issues found"), "{}", out.stdout);
}

/// The summary at the end of schemathesis's output.
fn summary(stdout: &str) -> String {
    let lines: Vec<&str> = stdout.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.contains("Test cases:"))
        .unwrap_or(lines.len().saturating_sub(10));
    lines[start..].join("\n")
}
