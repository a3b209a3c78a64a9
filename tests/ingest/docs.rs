//! `docs/openapi.yaml` and `docs/protocol.md` cannot drift from the Rust
//! protocol structs and the command line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use mapscope::ingest::protocol::{
    ReportStatus, ReportedEvacuation, ReportedGrowthKind, ReportedMisuseKind, SourceInfo,
};
use mapscope::ingest::{ErrorBody, Limits, Report, ReportAccepted};
use mapscope::MisuseKind;
use serde_json::{json, Value};

use super::limit_cases::{set_at, with, REASONS};
use super::support::{at, growth_event, map, Sidecar, TOKEN};
use crate::common::process::mapscope_command;
use crate::common::run::run;
use crate::common::wait::WAIT;

fn doc(path: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A report with every optional field set and every collection non-empty.
fn full_report() -> Report {
    let mut map = map("orders", &[("tenant", "acme")], 1, 2);
    map.stats.evacuation = Some(ReportedEvacuation {
        kind: ReportedGrowthKind::Double,
        old_buckets: 4,
        evacuated_old_buckets: 1,
    });
    map.counters.misuse = BTreeMap::from([(ReportedMisuseKind::NilMapWrite, 1)]);
    let mut event = growth_event(1, "orders", 0.1);
    event.labels = BTreeMap::from([("tenant".to_owned(), "acme".to_owned())]);
    event.misuse_kind = Some(ReportedMisuseKind::NilMapWrite);
    event.trace_id = Some("0".repeat(32));
    event.span_id = Some("0".repeat(16));
    event.attributes = BTreeMap::from([("stack".to_owned(), "main.go:1".to_owned())]);
    Report {
        source: SourceInfo {
            app: "checkout".into(),
            instance: "pod-1".into(),
            language: Some("go".into()),
            sdk: Some("mapscope-go/0.1".into()),
            started_at: Some(at("2026-11-22T10:00:00Z")),
        },
        seq: 1,
        sent_at: Some(at("2026-11-22T10:00:10Z")),
        interval_seconds: Some(10.0),
        maps: vec![map],
        events: vec![event],
    }
}

/// Object keys of `value` by schema name, not descending into maps whose
/// keys are data (labels, misuse, attributes).
fn schema_keys(schema: &str, value: &Value, out: &mut BTreeMap<String, BTreeSet<String>>) {
    let Some(object) = value.as_object() else {
        return;
    };
    let keys = out.entry(schema.to_owned()).or_default();
    keys.extend(object.keys().cloned());
    for (key, child) in object {
        let child_schema = match (schema, key.as_str()) {
            ("Report", "source") => "SourceInfo",
            ("Report", "maps") => "ReportedMap",
            ("Report", "events") => "ReportedEvent",
            ("ReportedMap", "stats") => "ReportedStats",
            ("ReportedMap", "counters") => "ReportedCounters",
            ("ReportedStats", "evacuation") => "ReportedEvacuation",
            ("ReportedCounters", "growths") => "KindCounts",
            ("ReportedCounters", "growth_seconds") => "KindSeconds",
            _ => continue,
        };
        match child {
            Value::Array(items) => items.iter().for_each(|i| schema_keys(child_schema, i, out)),
            other => schema_keys(child_schema, other, out),
        }
    }
}

/// The fields the Rust side requires, by schema: a key is required when
/// deserialising without it fails.
fn required_keys(full: &Value) -> BTreeMap<String, BTreeSet<String>> {
    fn try_without(full: &Value, path: &[&str], key: &str) -> bool {
        let mut value = full.clone();
        let mut at = &mut value;
        for step in path {
            at = match step.parse::<usize>() {
                Ok(i) => &mut at[i],
                Err(_) => &mut at[*step],
            };
        }
        at.as_object_mut().expect("an object").remove(key);
        serde_json::from_value::<Report>(value).is_ok()
    }
    let mut out = BTreeMap::new();
    for (schema, path) in [
        ("Report", vec![]),
        ("SourceInfo", vec!["source"]),
        ("ReportedMap", vec!["maps", "0"]),
        ("ReportedStats", vec!["maps", "0", "stats"]),
        (
            "ReportedEvacuation",
            vec!["maps", "0", "stats", "evacuation"],
        ),
        ("ReportedCounters", vec!["maps", "0", "counters"]),
        ("KindCounts", vec!["maps", "0", "counters", "growths"]),
        (
            "KindSeconds",
            vec!["maps", "0", "counters", "growth_seconds"],
        ),
        ("ReportedEvent", vec!["events", "0"]),
    ] {
        let mut at = full;
        for step in &path {
            at = match step.parse::<usize>() {
                Ok(i) => &at[i],
                Err(_) => &at[*step],
            };
        }
        let required: BTreeSet<String> = at
            .as_object()
            .expect("an object")
            .keys()
            .filter(|key| !try_without(full, &path, key))
            .cloned()
            .collect();
        out.insert(schema.to_owned(), required);
    }
    out
}

/// Each schema of `docs/openapi.yaml`'s `components/schemas`: its
/// `properties` keys and its `required` list.
fn openapi_schemas(yaml: &str) -> BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> {
    let document: Value = serde_norway::from_str(yaml).expect("docs/openapi.yaml is YAML");
    let schemas = document["components"]["schemas"]
        .as_object()
        .expect("components/schemas");
    schemas
        .iter()
        .map(|(name, schema)| {
            let properties = schema["properties"]
                .as_object()
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default();
            let required = schema["required"]
                .as_array()
                .map(|r| {
                    r.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            (name.clone(), (properties, required))
        })
        .collect()
}

#[test]
fn openapi_matches_the_protocol_structs() {
    let yaml = doc("docs/openapi.yaml");
    let schemas = openapi_schemas(&yaml);
    let full = serde_json::to_value(full_report()).expect("serialise the report");
    assert_eq!(
        serde_json::from_value::<Report>(full.clone()).expect("round trip"),
        full_report()
    );
    let mut fields = BTreeMap::new();
    schema_keys("Report", &full, &mut fields);
    let accepted = ReportAccepted {
        status: ReportStatus::Accepted,
        source: "checkout".into(),
        maps: 1,
        events_accepted: 1,
        restarted: false,
    };
    schema_keys(
        "ReportAccepted",
        &serde_json::to_value(accepted).expect("json"),
        &mut fields,
    );
    let error = ErrorBody {
        error: "e".into(),
        field: Some("maps".into()),
        limit: Some(1),
    };
    schema_keys(
        "ErrorBody",
        &serde_json::to_value(error).expect("json"),
        &mut fields,
    );
    assert_eq!(fields.len(), 11, "{fields:?}");

    let mut required = required_keys(&full);
    for schema in ["ReportAccepted", "ErrorBody"] {
        required.insert(schema.to_owned(), fields[schema].clone());
    }
    for (schema, keys) in &fields {
        let (properties, yaml_required) = schemas
            .get(schema)
            .unwrap_or_else(|| panic!("docs/openapi.yaml has no schema {schema}"));
        assert_eq!(properties, keys, "properties of {schema}");
        assert_eq!(
            yaml_required, &required[schema],
            "required fields of {schema}"
        );
        for key in keys {
            assert!(yaml.contains(&format!("{key}:")), "{key}");
        }
    }
    for response in ["'200':", "'400':", "'401':", "'413':", "'415':", "'429':"] {
        assert!(
            yaml.contains(response),
            "docs/openapi.yaml has no response {response}"
        );
    }
    assert!(yaml.contains("/v1/report:"));
    let document: Value = serde_norway::from_str(&yaml).expect("YAML");
    assert_eq!(document["openapi"], "3.1.0", "OpenAPI 3.1");
}

#[test]
fn protocol_md_documents_fields_limits_flags_and_reasons() {
    let md = doc("docs/protocol.md");
    let full = serde_json::to_value(full_report()).expect("json");
    let mut fields = BTreeMap::new();
    schema_keys("Report", &full, &mut fields);
    for key in fields.values().flatten() {
        assert!(
            md.contains(&format!("`{key}`")),
            "docs/protocol.md does not mention `{key}`"
        );
    }
    for reason in REASONS {
        assert!(
            md.contains(&format!("`{reason}`")),
            "docs/protocol.md does not list reason `{reason}`"
        );
    }
    for kind in MisuseKind::CLIENT {
        assert!(md.contains(kind.as_str()), "{kind:?}");
    }
    // Every ingest flag with its env var, as `mapscope sidecar --help` prints them.
    let help = run(
        {
            let mut command = mapscope_command();
            command.args(["sidecar", "--help"]);
            command
        },
        WAIT,
    );
    assert!(help.status.success(), "{}", help.stderr);
    for (flag, env, default) in [
        ("--max-body-bytes", "MAPSCOPE_MAX_BODY_BYTES", "1048576"),
        ("--max-sources", "MAPSCOPE_MAX_SOURCES", "100"),
        (
            "--max-maps-per-source",
            "MAPSCOPE_MAX_MAPS_PER_SOURCE",
            "1000",
        ),
        (
            "--max-events-per-report",
            "MAPSCOPE_MAX_EVENTS_PER_REPORT",
            "1000",
        ),
        ("--source-ttl", "MAPSCOPE_SOURCE_TTL", "30"),
        ("--grace-period", "MAPSCOPE_GRACE_PERIOD", "30"),
        ("--ingest-token", "MAPSCOPE_INGEST_TOKEN", ""),
        ("--crash-dir", "MAPSCOPE_CRASH_DIR", ""),
        (
            "--ingest-listen",
            "MAPSCOPE_INGEST_LISTEN",
            "127.0.0.1:9848",
        ),
    ] {
        assert!(help.stdout.contains(flag), "--help has no {flag}");
        assert!(help.stdout.contains(env), "--help has no {env}");
        assert!(
            md.contains(flag),
            "docs/protocol.md does not mention {flag}"
        );
        assert!(md.contains(env), "docs/protocol.md does not mention {env}");
        assert!(
            md.contains(default),
            "docs/protocol.md does not give the default {default} of {flag}"
        );
    }
    for status in ["200", "400", "401", "413", "415", "429"] {
        assert!(md.contains(status), "{status}");
    }
}

/// The code block of `md` that follows the first line containing `marker`.
fn block_after(md: &str, marker: &str) -> String {
    let at = md
        .find(marker)
        .unwrap_or_else(|| panic!("docs/protocol.md has no {marker:?}"));
    let rest = &md[at..];
    let start = rest.find("```").expect("a code block") + 3;
    let start = start + rest[start..].find('\n').expect("a fence line") + 1;
    let end = start
        + rest[start..]
            .find("```")
            .expect("the end of the code block");
    rest[start..end].to_owned()
}

#[test]
fn protocol_md_example_is_answered_as_documented() {
    let md = doc("docs/protocol.md");
    let request = block_after(&md, "`report.json`:");
    let answer = block_after(&md, "Answer (`200 OK`");
    let excerpt = block_after(&md, "and in `/metrics` (excerpt):");
    let sidecar = Sidecar::start(Limits::default(), Some(TOKEN));
    let got = sidecar.post_raw(
        Some(TOKEN),
        Some("application/json"),
        request.clone().into_bytes(),
    );
    assert_eq!(got.status, 200, "{}", got.text);
    let documented: Value = serde_json::from_str(&answer).expect("the documented answer");
    assert_eq!(got.json(), documented);
    let text = sidecar.metrics_text();
    for line in excerpt.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            text.lines().any(|l| l == line),
            "/metrics has no line {line:?}"
        );
    }
    // The same request again is a duplicate.
    let again = sidecar.post_raw(Some(TOKEN), Some("application/json"), request.into_bytes());
    assert_eq!(again.accepted().status, ReportStatus::Duplicate);
    // The documented error for a bad label name.
    let error = block_after(&md, "as a label name:");
    let documented: Value = serde_json::from_str(&error).expect("the documented error");
    let bad = with("beta", |v| {
        set_at(v, "/maps/0/labels", json!({"tenant-id": "1"}))
    });
    let got = sidecar.post(Some(TOKEN), &bad);
    assert_eq!(got.status, 400);
    assert_eq!(got.json(), documented);
}
