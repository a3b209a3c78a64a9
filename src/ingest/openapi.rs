//! `docs/openapi.yaml`, generated from the protocol types.
//!
//! The schemas are `schemars`' reading of `protocol.rs`: field names,
//! required fields, enums, nullability and integer types are the ones serde
//! enforces, and descriptions are the doc comments. The bounds serde cannot
//! enforce (lengths, patterns, limits) are the named schemas below, built
//! from the constants `check` and the registry use, so the document states
//! exactly what the sidecar accepts: a body the document allows is never
//! rejected, and the schemathesis test (`tests/protocol.rs`) checks both
//! directions against the running binary. Two rules JSON Schema cannot say
//! are marked `x-mapscope-rule` (each map once per report; evacuated at
//! most old buckets).
//!
//! After changing the protocol, regenerate the file with
//! `MAPSCOPE_BLESS_DOCS=1 cargo test --features sidecar --lib openapi`.

use std::borrow::Cow;
use std::path::PathBuf;

use schemars::generate::SchemaSettings;
use schemars::transform::RecursiveTransform;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::Serialize;
use serde_json::{json, Value};

use super::protocol::{
    ErrorBody, Report, ReportAccepted, ReportedMisuseKind, MAX_ATTRIBUTES, MAX_ATTRIBUTE_KEY_CHARS,
    MAX_ATTRIBUTE_VALUE_CHARS, MAX_INTERVAL_SECONDS, MAX_SECONDS, MAX_SEQ, MAX_SOURCE_CHARS,
};
use super::{check, Limits};
use crate::registry::{MAX_LABELS, MAX_VALUE_CHARS, OVERFLOW_MAP, RESERVED_LABELS};

/// `--max-maps-per-source`'s default: the document's `maxItems` of `maps`.
pub(super) const DEFAULT_MAX_MAPS_PER_SOURCE: usize = 100;
/// `--max-events-per-report`'s default: the document's `maxItems` of `events`.
pub(super) const DEFAULT_MAX_EVENTS_PER_REPORT: usize = 1000;

/// `x-mapscope-rule` of `Report.maps`.
pub(super) const UNIQUE_MAPS: &str =
    "each map (name and labels) appears at most once per report; a repeat is a 400 duplicate_map";
/// `x-mapscope-rule` of `ReportedEvacuation`.
pub(super) const EVACUATED_AT_MOST_OLD: &str =
    "evacuated_old_buckets <= old_buckets; more is a 400 invalid_value";

/// No control characters (Unicode category Cc, Rust's `char::is_control`).
const NO_CONTROL: &str = r"^[^\u0000-\u001F\u007F-\u009F]*$";
/// No control characters and no `/`.
const APP: &str = r"^[^/\u0000-\u001F\u007F-\u009F]*$";
/// No control characters, not starting with `__`.
const MAP_NAME: &str = r"^(?!__)[^\u0000-\u001F\u007F-\u009F]*$";
/// A Prometheus label name that does not start with `__`.
const LABEL_NAME: &str = r"^(?!__)[a-zA-Z_][a-zA-Z0-9_]*$";

/// A schema of its own in `components/schemas`, for a rule several fields
/// share.
macro_rules! named_schema {
    ($(#[$doc:meta])* $name:ident $schema:tt) => {
        $(#[$doc])*
        pub(super) struct $name;

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!($schema)
            }
        }
    };
}

named_schema! {
    /// `source.app`.
    App {
        "type": "string",
        "description": "An application name: 1 to 128 characters, no control characters, no `/` (mapscope names a source app/instance in logs and events).",
        "minLength": 1,
        "maxLength": MAX_SOURCE_CHARS,
        "pattern": APP,
    }
}

named_schema! {
    /// `source.instance`.
    Instance {
        "type": "string",
        "description": "A process (pod name, host:pid): 1 to 128 characters, no control characters.",
        "minLength": 1,
        "maxLength": MAX_SOURCE_CHARS,
        "pattern": NO_CONTROL,
    }
}

named_schema! {
    /// A map's name, reported or in an event.
    MapName {
        "type": "string",
        "description": "A map name (the `map` label): 1 to 256 characters of any Unicode but control characters; not `_overflow` (mapscope's fold of the maps past --max-maps), not starting with `__`.",
        "minLength": 1,
        "maxLength": MAX_VALUE_CHARS,
        "pattern": MAP_NAME,
        "not": {"const": OVERFLOW_MAP},
    }
}

named_schema! {
    /// A map's own labels.
    Labels {
        "type": "object",
        "description": "A map's own labels, at most 16, each key once (a repeat is a 400 duplicate_label). Names match [a-zA-Z_][a-zA-Z0-9_]*, do not start with `__`, and are not map, source, source_instance, kind (mapscope sets those), le or quantile (the text format keeps them for histograms and summaries); values are up to 256 characters without control characters. A map's name and labels identify it. All labels of a report, with the map names, app and instance, count against --max-label-bytes-per-source.",
        "maxProperties": MAX_LABELS,
        "propertyNames": {"pattern": LABEL_NAME, "not": {"enum": RESERVED_LABELS}},
        "additionalProperties": {
            "type": "string",
            "maxLength": MAX_VALUE_CHARS,
            "pattern": NO_CONTROL,
        },
    }
}

named_schema! {
    /// An event's free-form attributes.
    Attributes {
        "type": "object",
        "description": "Free-form details: at most 32, keys up to 256 characters, values up to 1024.",
        "maxProperties": MAX_ATTRIBUTES,
        "propertyNames": {"maxLength": MAX_ATTRIBUTE_KEY_CHARS},
        "additionalProperties": {"type": "string", "maxLength": MAX_ATTRIBUTE_VALUE_CHARS},
    }
}

/// `counters.misuse`: counts keyed by misuse kind.
pub(super) struct MisuseCounts;

impl JsonSchema for MisuseCounts {
    fn schema_name() -> Cow<'static, str> {
        "MisuseCounts".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let kinds = ReportedMisuseKind::ALL.map(ReportedMisuseKind::as_str);
        json_schema!({
            "type": "object",
            "description": "Counts by misuse kind; any other key is a 400.",
            "propertyNames": {"enum": kinds},
            "additionalProperties": generator.subschema_for::<u64>(),
        })
    }
}

named_schema! {
    /// A number of seconds.
    Seconds {
        "type": "number",
        "format": "double",
        "description": "Seconds: a finite number from 0 to 1e9 (NaN and Infinity are not JSON).",
        "minimum": 0,
        "maximum": MAX_SECONDS,
    }
}

named_schema! {
    /// `interval_seconds`.
    IntervalSeconds {
        "type": "number",
        "format": "double",
        "description": "How often the client reports, in seconds (not milliseconds): a finite number from 0 to 300.",
        "minimum": 0,
        "maximum": MAX_INTERVAL_SECONDS,
    }
}

named_schema! {
    /// A report's or an event's `seq`.
    Seq {
        "type": "integer",
        "format": "uint64",
        "description": "A sequence number from 0 to 2^53 - 1 (exact in every JSON parser). From one process it moves by at most 1000000 past the last one applied (a 400 seq_jump otherwise).",
        "minimum": 0,
        "maximum": MAX_SEQ,
    }
}

named_schema! {
    /// A W3C trace id.
    TraceId {
        "type": "string",
        "description": "A trace id: 32 hex digits.",
        "pattern": "^[0-9a-fA-F]{32}$",
    }
}

named_schema! {
    /// A W3C span id.
    SpanId {
        "type": "string",
        "description": "A span id: 16 hex digits.",
        "pattern": "^[0-9a-fA-F]{16}$",
    }
}

/// `ReportedEvent`: a misuse event needs its (non-null) `misuse_kind`.
pub(super) fn misuse_needs_its_kind(schema: &mut Schema) {
    schema.insert(
        "if".into(),
        json!({"properties": {"kind": {"const": "misuse"}}, "required": ["kind"]}),
    );
    schema.insert(
        "then".into(),
        json!({
            "required": ["misuse_kind"],
            "properties": {"misuse_kind": {"$ref": "#/components/schemas/ReportedMisuseKind"}},
        }),
    );
}

/// An answer's fields are all present, the nullable ones as `null`.
pub(super) fn every_field_required(schema: &mut Schema) {
    let names: Vec<Value> = schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|properties| properties.keys().cloned().map(Value::from).collect())
        .unwrap_or_default();
    schema.insert("required".into(), names.into());
}

/// Every `u64` says its upper bound: a generator that only knew
/// `minimum: 0` would send numbers serde rejects.
fn uint64_maximum(schema: &mut Schema) {
    if schema.get("format").and_then(Value::as_str) == Some("uint64")
        && schema.get("maximum").is_none()
    {
        schema.insert("maximum".into(), u64::MAX.into());
    }
}

/// The example of `docs/protocol.md`.
fn example_report() -> Value {
    json!({
        "source": {
            "app": "checkout",
            "instance": "checkout-7d9f-x2k4",
            "language": "go",
            "sdk": "mapscope-go/0.1.0",
            "started_at": "2026-11-22T10:00:00Z"
        },
        "seq": 42,
        "sent_at": "2026-11-22T10:07:00.250Z",
        "interval_seconds": 10,
        "maps": [{
            "name": "sessions",
            "labels": {"tenant": "acme"},
            "stats": {
                "entries": 52000, "peak_entries": 60000, "buckets": 8192,
                "overflow_buckets": 310, "memory_bytes": 5505024, "max_overflow_chain": 2,
                "evacuation": {"kind": "double", "old_buckets": 4096, "evacuated_old_buckets": 1024}
            },
            "counters": {
                "growths": {"double": 13, "same_size": 0, "shrink": 0},
                "growth_seconds": {"double": 0.084, "same_size": 0, "shrink": 0},
                "evacuated_buckets": 8191, "inserts": 180000, "updates": 950000,
                "removes": 128000, "misuse": {"nil_map_write": 2}
            }
        }],
        "events": [{
            "seq": 7, "kind": "misuse", "map": "sessions", "labels": {"tenant": "acme"},
            "at": "2026-11-22T10:06:58.120Z", "misuse_kind": "nil_map_write",
            "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7",
            "attributes": {"site": "handlers.go:88"}
        }]
    })
}

fn error_response(description: &str, example: Value) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/ErrorBody"},
            "example": example,
        }},
    })
}

/// The top level, in the order people read it.
#[derive(Serialize)]
struct Document {
    openapi: &'static str,
    info: Value,
    servers: Value,
    paths: Value,
    components: Value,
}

/// The whole document.
fn document() -> Document {
    let settings = SchemaSettings::draft2020_12()
        .with(|s| {
            s.definitions_path = "/components/schemas".into();
            s.meta_schema = None;
        })
        .with_transform(RecursiveTransform(uint64_maximum));
    let mut generator = settings.into_generator();
    let report = generator.subschema_for::<Report>();
    let accepted = generator.subschema_for::<ReportAccepted>();
    let error = generator.subschema_for::<ErrorBody>();
    let schemas = generator.take_definitions(true);
    let post = json!({
        "operationId": "report",
        "summary": "Report a source's maps and the events since its last report.",
        "description": "Checks run in this order, and the first failure answers. From the headers, before any byte of the body is read: bearer token (401, when the sidecar has a token), Content-Type (415), Content-Length over --max-body-bytes (413). Then, reading the body: framing (400 malformed_body), size of a chunked body (413), time (408 body_timeout). Then JSON syntax, types, enums and timestamps (400), lengths, names, limits and rules across fields (400), started_at in the future (400), sources (429), then the rules across reports (seq_jump, counter_went_backwards, 400). Nothing of a rejected report is applied. After an answer given without reading the body, the sidecar drains what the client still sends (up to --drain-max-bytes or --drain-timeout), so the client reads the answer. Unknown fields are ignored at every level. Other paths answer 404 and other methods 405, in the same JSON error shape.",
        "security": [{}, {"bearer": []}],
        "requestBody": {
            "required": true,
            "content": {"application/json": {"schema": report, "example": example_report()}},
        },
        "responses": {
            "200": {
                "description": "Applied (`accepted`), a retry of a report already applied (`duplicate`), or a late report from a process that has since restarted (`stale`); the last two change nothing.",
                "content": {"application/json": {
                    "schema": accepted,
                    "example": {"status": "accepted", "source": "checkout", "maps": 1, "events_accepted": 1, "restarted": false},
                }},
            },
            "400": error_response(
                "Not JSON, a wrong type, an unknown enum value, a bad timestamp, or a value or limit violated. `field` names the JSON path, `limit` the limit.",
                json!({"error": "events[0].growth_kind: unknown value \"triple\": expected one of double, same_size, shrink", "field": "events[0].growth_kind", "limit": null}),
            ),
            "401": error_response(
                "The sidecar has a token (--ingest-token, MAPSCOPE_INGEST_TOKEN) and the request has no `Authorization: Bearer <token>` or a wrong one.",
                json!({"error": "missing or invalid bearer token: send Authorization: Bearer <MAPSCOPE_INGEST_TOKEN>", "field": "Authorization", "limit": null}),
            ),
            "408": error_response(
                "The body did not arrive within --body-timeout (default 30 s); the connection is closed.",
                json!({"error": "the body did not arrive within 30 s (--body-timeout): send it at once after the headers", "field": null, "limit": 30}),
            ),
            "413": error_response(
                "The body is larger than --max-body-bytes (default 1 MiB), by its Content-Length (answered before reading it) or as it is read (chunked).",
                json!({"error": "the body exceeds 1048576 bytes (--max-body-bytes): send fewer maps or events per report", "field": null, "limit": 1048576}),
            ),
            "415": error_response(
                "The Content-Type is not application/json.",
                json!({"error": "Content-Type must be application/json, got \"text/plain\"", "field": "Content-Type", "limit": null}),
            ),
            "429": error_response(
                "A new source (app and instance) while the sidecar already tracks --max-sources sources. Accepted once a stale source expires.",
                json!({"error": "the sidecar already tracks 100 sources (--max-sources); a new source is accepted once a stale one expires", "field": "source", "limit": 100}),
            ),
            "500": {
                "description": "An internal error (a bug in the sidecar).",
                "content": {"application/json": {"schema": error}},
            },
        },
    });
    Document {
        openapi: "3.1.0",
        info: json!({
            "title": "mapscope sidecar ingest",
            "version": "1",
            "description": "Applications in any language push their hash maps' stats, cumulative counters and events to the mapscope sidecar, which exposes them in /metrics with `source` (the app) and `source_instance` (the process) labels. Counters are cumulative since the reporting process started, so a lost request or a sidecar restart loses nothing. Unknown fields are ignored. A rejected request changes nothing. The prose is docs/protocol.md.",
            "license": {"name": "MIT OR Apache-2.0", "identifier": "MIT OR Apache-2.0"},
        }),
        servers: json!([{
            "url": "http://127.0.0.1:9848",
            "description": "The sidecar's ingest listener (--ingest-listen, MAPSCOPE_INGEST_LISTEN; loopback by default, since the containers of a pod share it).",
        }]),
        paths: json!({"/v1/report": {"post": post}}),
        components: json!({
            "securitySchemes": {"bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "Required only when the sidecar is started with --ingest-token.",
            }},
            "schemas": schemas,
        }),
    }
}

const HEADER: &str = "\
# The mapscope sidecar's ingest endpoint, protocol v1 (OpenAPI 3.1).
# GENERATED from src/ingest/protocol.rs by src/ingest/openapi.rs: do not
# edit; regenerate with `MAPSCOPE_BLESS_DOCS=1 cargo test --features sidecar --lib openapi`.
# The prose is docs/protocol.md.
";

fn openapi_yaml() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.yaml")
}

/// `at: 2026-11-22T10:00:00Z` with the value quoted: YAML 1.2 (and
/// `serde_norway`) reads it as a string, but YAML 1.1 readers such as
/// PyYAML would make it a date.
fn quote_dates(yaml: &str) -> String {
    let looks_like_a_date = |value: &str| {
        let b = value.as_bytes();
        b.len() >= 10 && b[..4].iter().all(u8::is_ascii_digit) && b[4] == b'-' && b[7] == b'-'
    };
    let mut out = String::with_capacity(yaml.len() + 64);
    for line in yaml.lines() {
        match line.split_once(": ") {
            Some((key, value)) if looks_like_a_date(value) && !value.contains('\'') => {
                out.push_str(&format!("{key}: '{value}'"));
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// The first JSON pointer where `a` and `b` differ.
fn first_difference(a: &Value, b: &Value, at: String) -> Option<String> {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            keys.into_iter()
                .find_map(|key| match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => first_difference(x, y, format!("{at}/{key}")),
                    _ => Some(format!("{at}/{key}")),
                })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (x, y))| first_difference(x, y, format!("{at}/{i}"))),
        _ => (a != b).then_some(at),
    }
}

#[test]
fn openapi_yaml_is_generated_from_the_protocol_types() {
    let yaml = serde_norway::to_string(&document()).expect("the document is YAML");
    let generated = format!("{HEADER}{}", quote_dates(&yaml));
    let path = openapi_yaml();
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    if text == generated {
        return;
    }
    if std::env::var("MAPSCOPE_BLESS_DOCS").is_ok_and(|v| v.trim() == "1") {
        std::fs::write(&path, generated).expect("write docs/openapi.yaml");
        eprintln!("docs/openapi.yaml regenerated from the protocol types");
        return;
    }
    let on_disk: Value = serde_norway::from_str(&text).unwrap_or(Value::Null);
    let generated: Value = serde_norway::from_str(&generated).expect("the generated YAML reads");
    panic!(
        "docs/openapi.yaml is not what src/ingest/openapi.rs generates from the protocol \
         types (first difference at {:?}); regenerate it with \
         `MAPSCOPE_BLESS_DOCS=1 cargo test --features sidecar --lib openapi`",
        first_difference(&on_disk, &generated, String::new())
    );
}

/// The generated YAML means the generated document.
#[test]
fn the_yaml_reads_back_as_the_document() {
    let yaml = quote_dates(&serde_norway::to_string(&document()).expect("YAML"));
    let read: Value = serde_norway::from_str(&yaml).expect("the YAML reads");
    assert_eq!(read, serde_json::to_value(document()).expect("JSON"));
}

#[test]
fn the_documented_defaults_are_the_limits_defaults() {
    let limits = Limits::default();
    assert_eq!(limits.max_maps_per_source, DEFAULT_MAX_MAPS_PER_SOURCE);
    assert_eq!(limits.max_events_per_report, DEFAULT_MAX_EVENTS_PER_REPORT);
}

#[test]
fn the_example_is_a_valid_report() {
    let report: Report = serde_json::from_value(example_report()).expect("the example parses");
    check(&report, &Limits::default()).expect("the example passes the checks");
}

/// The schema of `components/schemas/{name}`.
fn schema(document: &Value, name: &str) -> Value {
    document["components"]["schemas"][name].clone()
}

#[test]
fn the_document_states_enums_formats_and_bounds() {
    let document = serde_json::to_value(document()).expect("JSON");
    // An enum whose values have docs is a `oneOf` of documented constants.
    let values = |name: &str| -> Vec<String> {
        let schema = schema(&document, name);
        let one_of = schema["oneOf"].as_array().expect("oneOf");
        one_of
            .iter()
            .map(|value| value["const"].as_str().expect("a const").to_owned())
            .collect()
    };
    assert_eq!(
        values("ReportedGrowthKind"),
        ["double", "same_size", "shrink"]
    );
    let misuse: Vec<&str> = crate::MisuseKind::ALL.map(|k| k.as_str()).into();
    assert_eq!(values("ReportedMisuseKind"), misuse);
    assert_eq!(values("EventKind"), ["growth", "misuse"]);
    assert_eq!(values("ReportStatus"), ["accepted", "duplicate", "stale"]);
    // Every misuse kind is a key of counters.misuse, and nothing else is.
    let counters = schema(&document, "ReportedCounters");
    assert_eq!(
        counters["properties"]["misuse"]["$ref"],
        "#/components/schemas/MisuseCounts"
    );
    assert_eq!(
        schema(&document, "MisuseCounts")["propertyNames"]["enum"],
        json!(misuse)
    );
    // Timestamps, integers and seconds.
    let event = schema(&document, "ReportedEvent");
    assert_eq!(event["properties"]["at"]["format"], "date-time");
    assert_eq!(
        event["properties"]["seq"]["$ref"],
        "#/components/schemas/Seq"
    );
    assert_eq!(schema(&document, "Seq")["maximum"], json!(MAX_SEQ));
    assert_eq!(schema(&document, "Seq")["minimum"], 0);
    let inner = schema(&document, "ReportedStats");
    assert_eq!(inner["properties"]["entries"]["maximum"], json!(u64::MAX));
    assert_eq!(schema(&document, "Seconds")["maximum"], json!(MAX_SECONDS));
    assert_eq!(
        schema(&document, "IntervalSeconds")["maximum"],
        json!(MAX_INTERVAL_SECONDS)
    );
    let source = schema(&document, "SourceInfo");
    assert_eq!(source["properties"]["started_at"]["format"], "date-time");
    assert_eq!(source["required"], json!(["app", "instance"]));
    let labels = schema(&document, "Labels");
    assert_eq!(labels["maxProperties"], MAX_LABELS);
    assert_eq!(labels["propertyNames"]["pattern"], LABEL_NAME);
    assert_eq!(schema(&document, "MapName")["maxLength"], MAX_VALUE_CHARS);
}
