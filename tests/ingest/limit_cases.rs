//! The table of limit cases the tests in [`super::limits`] run, and the
//! builders of the bodies in it.

use std::sync::atomic::Ordering;

use mapscope::ingest::protocol::{MAX_CLOCK_SKEW_SECONDS, MAX_SEQ_STEP};
use mapscope::ingest::Limits;
use serde_json::{json, Value};

use super::support::TOKEN;

/// Every `reason` label of `mapscope_ingest_rejected_total`; the limits
/// table covers each, and `docs/protocol.md` documents each.
pub(crate) const REASONS: &[&str] = &[
    "unauthorized",
    "content_type",
    "body_too_large",
    "invalid_json",
    "schema",
    "invalid_value",
    "invalid_number",
    "invalid_timestamp",
    "invalid_map_name",
    "invalid_label",
    "reserved_label",
    "too_many_labels",
    "duplicate_map",
    "too_many_maps",
    "too_many_events",
    "too_many_sources",
    "duplicate_label",
    "started_at_in_future",
    "seq_jump",
    "counter_went_backwards",
    "too_many_label_bytes",
];

/// What the `field` of an error body must be.
#[derive(Debug, Clone)]
pub(crate) enum Field {
    Null,
    Is(String),
    StartsWith(&'static str),
}

#[derive(Debug)]
pub(crate) struct Case {
    pub(crate) name: &'static str,
    pub(crate) token: Option<&'static str>,
    pub(crate) content_type: Option<&'static str>,
    pub(crate) body: Vec<u8>,
    pub(crate) status: u16,
    /// The rejection reason; empty for an accepted request.
    pub(crate) reason: &'static str,
    pub(crate) field: Field,
    pub(crate) limit: Option<u64>,
}

impl Case {
    fn bad(name: &'static str, body: Value, status: u16, reason: &'static str) -> Case {
        Case::raw(
            name,
            serde_json::to_vec(&body).expect("json"),
            status,
            reason,
        )
    }

    fn raw(name: &'static str, body: Vec<u8>, status: u16, reason: &'static str) -> Case {
        Case {
            name,
            token: Some(TOKEN),
            content_type: Some("application/json"),
            body,
            status,
            reason,
            field: Field::Null,
            limit: None,
        }
    }

    fn ok(name: &'static str, body: Value) -> Case {
        Case::bad(name, body, 200, "")
    }

    fn field(mut self, field: &str) -> Case {
        self.field = Field::Is(field.to_owned());
        self
    }

    fn field_prefix(mut self, prefix: &'static str) -> Case {
        self.field = Field::StartsWith(prefix);
        self
    }

    fn limit(mut self, limit: u64) -> Case {
        self.limit = Some(limit);
        self
    }

    fn token(mut self, token: Option<&'static str>) -> Case {
        self.token = token;
        self
    }

    fn content_type(mut self, content_type: Option<&'static str>) -> Case {
        self.content_type = content_type;
        self
    }
}

/// A valid report body as JSON, to break in one place.
pub(crate) fn good(app: &str, seq: u64) -> Value {
    json!({
        "source": {"app": app, "instance": "i1", "started_at": "2026-11-22T10:00:00Z"},
        "seq": seq,
        "maps": [{
            "name": "bad_map",
            "labels": {"tenant": "acme"},
            "stats": {"entries": 1, "buckets": 1},
            "counters": {"inserts": 1}
        }],
        "events": [{
            "seq": 1, "kind": "growth", "map": "bad_map",
            "at": "2026-11-22T10:00:01Z", "duration_seconds": 0.001, "growth_kind": "double"
        }]
    })
}

/// `good(app, seq)` with `edit` applied, each with a higher seq (so that
/// accepted ones are not duplicates).
pub(crate) fn with(app: &str, edit: impl FnOnce(&mut Value)) -> Value {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(100);
    let mut value = good(app, SEQ.fetch_add(1, Ordering::Relaxed));
    edit(&mut value);
    value
}

fn map_with_labels(labels: Value) -> Value {
    json!({"name": "bad_map", "labels": labels, "stats": {"entries": 1, "buckets": 1}})
}

pub(crate) const MAX_SOURCES: usize = 3;
pub(crate) const MAX_MAPS: usize = 10;
pub(crate) const MAX_EVENTS: usize = 5;

/// Sets the value at JSON pointer `pointer` (whose parent exists).
pub(crate) fn set_at(value: &mut Value, pointer: &str, new: Value) {
    let (parent, key) = pointer.rsplit_once('/').expect("a JSON pointer");
    let parent = value.pointer_mut(parent).expect("the parent exists");
    match parent {
        Value::Object(object) => {
            object.insert(key.to_owned(), new);
        }
        Value::Array(items) => items[key.parse::<usize>().expect("an index")] = new,
        other => panic!("{pointer}: {other} is not a container"),
    }
}

/// A good report from beta with `pointer` set to `new`.
fn set(pointer: &str, new: Value) -> Value {
    with("beta", |v| set_at(v, pointer, new))
}

/// A good report from beta without the key at `pointer`.
fn without(pointer: &str) -> Value {
    with("beta", |v| {
        let (parent, key) = pointer.rsplit_once('/').expect("a JSON pointer");
        let parent = v.pointer_mut(parent).expect("the parent exists");
        parent.as_object_mut().expect("an object").remove(key);
    })
}

/// The good report's text with `from` replaced by `to` (for bodies that
/// are not JSON, or numbers a `Value` cannot hold).
fn replaced(text: &str, from: &str, to: &str) -> Vec<u8> {
    assert!(text.contains(from), "{from} not in {text}");
    text.replacen(from, to, 1).into_bytes()
}

pub(crate) fn limit_cases() -> Vec<Case> {
    let max_body = Limits::default().max_body_bytes;
    let good_bytes = serde_json::to_vec(&good("beta", 100)).expect("json");
    let text = String::from_utf8(good_bytes.clone()).expect("utf-8");
    let many_labels: serde_json::Map<String, Value> = (0..10_000)
        .map(|i| (format!("l{i}"), Value::from("v")))
        .collect();
    let huge_value = "x".repeat(1_000_000);
    let oversized = {
        let mut body = good_bytes.clone();
        body.resize(max_body + 1, b' ');
        body
    };
    let not_utf8 = b"{\"source\":{\"app\":\"\xff\xfe\",\"instance\":\"i\"},\"seq\":1}".to_vec();
    let too_many_maps: Vec<Value> = (0..=MAX_MAPS)
        .map(|i| json!({"name": format!("bad_{i}"), "stats": {"entries": 1, "buckets": 1}}))
        .collect();
    let event = |seq: u64| {
        let mut e = json!({"seq": seq, "kind": "growth", "map": "bad_map"});
        e["at"] = json!("2026-11-22T10:00:01Z");
        e
    };
    let label_heavy_maps: Vec<Value> = (0..MAX_MAPS)
        .map(|i| {
            let labels: serde_json::Map<String, Value> = (0..16)
                .map(|l| (format!("l{l:02}"), json!("v".repeat(100))))
                .collect();
            json!({"name": format!("bad_{i}"), "labels": labels, "stats": {"entries": 1, "buckets": 1}})
        })
        .collect();
    let too_many_events: Vec<Value> = (1..=MAX_EVENTS as u64 + 1).map(event).collect();
    let misuse_event = |kind: Option<&str>| {
        let mut e = json!({"seq": 1, "kind": "misuse", "map": "bad_map"});
        e["at"] = json!("2026-11-22T10:00:01Z");
        if let Some(kind) = kind {
            e["misuse_kind"] = json!(kind);
        }
        e
    };
    let evacuation = |kind: &str, old: u64, done: u64| {
        let mut e = json!({ "kind": kind, "old_buckets": old });
        e["evacuated_old_buckets"] = json!(done);
        e
    };
    let attributes: serde_json::Map<String, Value> =
        (0..33).map(|i| (format!("k{i}"), json!("v"))).collect();
    let labels = |labels: Value| json!([map_with_labels(labels)]);
    let seconds = "\"duration_seconds\":0.001";
    let mut cases = vec![
        // Authentication and transport.
        Case::bad("no token", good("beta", 100), 401, "unauthorized")
            .token(None)
            .field("Authorization"),
        Case::bad("wrong token", good("beta", 100), 401, "unauthorized")
            .token(Some("guess"))
            .field("Authorization"),
        Case::bad("text/plain", good("beta", 100), 415, "content_type")
            .content_type(Some("text/plain"))
            .field("Content-Type"),
        Case::bad("no content type", good("beta", 100), 415, "content_type")
            .content_type(None)
            .field("Content-Type"),
        Case::bad("form content type", good("beta", 100), 415, "content_type")
            .content_type(Some("application/x-www-form-urlencoded"))
            .field("Content-Type"),
        Case::raw("body over the limit", oversized, 413, "body_too_large").limit(max_body as u64),
        // JSON syntax.
        Case::raw("empty body", vec![], 400, "invalid_json"),
        Case::raw(
            "truncated JSON",
            good_bytes[..good_bytes.len() / 2].to_vec(),
            400,
            "invalid_json",
        )
        .field_prefix("maps"),
        Case::raw(
            "NaN is not JSON",
            replaced(&text, "\"seq\":100", "\"seq\":NaN"),
            400,
            "invalid_json",
        )
        .field("seq"),
        Case::raw(
            "NaN seconds",
            replaced(&text, seconds, "\"duration_seconds\":NaN"),
            400,
            "invalid_json",
        )
        .field("events[0].duration_seconds"),
        Case::raw(
            "Infinity is not JSON",
            replaced(&text, seconds, "\"duration_seconds\":Infinity"),
            400,
            "invalid_json",
        )
        .field("events[0].duration_seconds"),
        Case::raw(
            "trailing data",
            [good_bytes.clone(), b" {}".to_vec()].concat(),
            400,
            "invalid_json",
        ),
        Case::raw("not UTF-8", not_utf8, 400, "invalid_json").field("source.app"),
        // Types.
        Case::bad("body is an array", json!([]), 400, "schema"),
        Case::bad("body is null", Value::Null, 400, "schema"),
        Case::bad("seq is a string", set("/seq", json!("1")), 400, "schema").field("seq"),
        Case::bad("seq is a float", set("/seq", json!(1.5)), 400, "schema").field("seq"),
        Case::bad("maps is an object", set("/maps", json!({})), 400, "schema").field("maps"),
        Case::bad(
            "entries is a string",
            set("/maps/0/stats/entries", json!("5")),
            400,
            "schema",
        )
        .field("maps[0].stats.entries"),
        Case::bad(
            "label value is a number",
            set("/maps/0/labels/tenant", json!(5)),
            400,
            "schema",
        )
        .field("maps[0].labels.tenant"),
        Case::bad("missing source", without("/source"), 400, "schema"),
        Case::bad(
            "missing instance",
            without("/source/instance"),
            400,
            "schema",
        )
        .field("source"),
        Case::bad("missing stats", without("/maps/0/stats"), 400, "schema").field("maps[0]"),
        Case::bad(
            "started_at is a number",
            set("/source/started_at", json!(1_700_000_000)),
            400,
            "schema",
        )
        .field("source.started_at"),
        // Numbers.
        Case::bad("negative seq", set("/seq", json!(-1)), 400, "schema").field("seq"),
        Case::bad(
            "negative entries",
            set("/maps/0/stats/entries", json!(-5)),
            400,
            "schema",
        )
        .field("maps[0].stats.entries"),
        Case::raw(
            "seq > u64",
            replaced(&text, "\"seq\":100", "\"seq\":18446744073709551616"),
            400,
            "schema",
        )
        .field("seq"),
        Case::raw(
            "inserts > u64",
            replaced(
                &text,
                "\"inserts\":1",
                "\"inserts\":1000000000000000000000000000000",
            ),
            400,
            "schema",
        )
        .field("maps[0].counters.inserts"),
        Case::raw(
            "float out of f64 range",
            replaced(&text, seconds, "\"duration_seconds\":1e400"),
            400,
            "invalid_json",
        )
        .field("events[0].duration_seconds"),
        Case::bad(
            "negative interval",
            set("/interval_seconds", json!(-1.0)),
            400,
            "invalid_number",
        )
        .field("interval_seconds"),
        Case::bad(
            "negative growth seconds",
            set("/maps/0/counters/growth_seconds", json!({"double": -0.5})),
            400,
            "invalid_number",
        )
        .field("maps[0].counters.growth_seconds.double"),
        Case::bad(
            "negative event duration",
            set("/events/0/duration_seconds", json!(-1)),
            400,
            "invalid_number",
        )
        .field("events[0].duration_seconds"),
        // Source.
        Case::bad(
            "empty app",
            set("/source/app", json!("")),
            400,
            "invalid_value",
        )
        .field("source.app")
        .limit(128),
        Case::bad(
            "app over 128 bytes",
            set("/source/app", json!("a".repeat(129))),
            400,
            "invalid_value",
        )
        .field("source.app")
        .limit(128),
        Case::bad(
            "control character in instance",
            set("/source/instance", json!("i\u{7}")),
            400,
            "invalid_value",
        )
        .field("source.instance")
        .limit(128),
        // Names and labels.
        Case::bad(
            "10,000 labels",
            set("/maps", labels(Value::Object(many_labels))),
            400,
            "too_many_labels",
        )
        .field("maps[0].labels")
        .limit(16),
        Case::bad(
            "1 MB label value",
            set("/maps", labels(json!({ "tenant": huge_value }))),
            400,
            "invalid_label",
        )
        .field("maps[0].labels.tenant")
        .limit(256),
        Case::bad(
            "unicode label name",
            set("/maps", labels(json!({"город": "москва"}))),
            400,
            "invalid_label",
        )
        .field("maps[0].labels.город"),
        Case::bad(
            "label name with a dash",
            set("/maps", labels(json!({"tenant-id": "1"}))),
            400,
            "invalid_label",
        )
        .field("maps[0].labels.tenant-id"),
        Case::bad(
            "label name __x",
            set("/maps", labels(json!({"__x": "1"}))),
            400,
            "invalid_label",
        )
        .field("maps[0].labels.__x"),
        Case::bad(
            "control character in label value",
            set("/maps", labels(json!({"tenant": "a\nb"}))),
            400,
            "invalid_label",
        )
        .field("maps[0].labels.tenant")
        .limit(256),
        Case::bad(
            "empty map name",
            set("/maps/0/name", json!("")),
            400,
            "invalid_map_name",
        )
        .field("maps[0].name")
        .limit(256),
        Case::bad(
            "map name over 256 bytes",
            set("/maps/0/name", json!("m".repeat(257))),
            400,
            "invalid_map_name",
        )
        .field("maps[0].name")
        .limit(256),
        Case::bad(
            "map name _overflow",
            set("/maps/0/name", json!("_overflow")),
            400,
            "invalid_map_name",
        )
        .field("maps[0].name")
        .limit(256),
        Case::bad(
            "duplicate map",
            with("beta", |v| {
                let first = v["maps"][0].clone();
                v["maps"].as_array_mut().expect("array").push(first);
            }),
            400,
            "duplicate_map",
        )
        .field("maps[1].name"),
        Case::bad(
            "reserved label on an event",
            set("/events/0/labels", json!({"source": "x"})),
            400,
            "reserved_label",
        )
        .field_prefix("events[0]"),
        // Reports that cannot freeze a source (tests/report_rules.rs has
        // each rule in full).
        Case::raw(
            "a label key twice",
            replaced(
                &text,
                r#""tenant":"acme""#,
                r#""tenant":"acme","tenant":"evil""#,
            ),
            400,
            "duplicate_label",
        )
        .field("maps[0].labels.tenant"),
        Case::bad(
            "started_at in the future",
            set("/source/started_at", json!("2099-01-01T00:00:00Z")),
            400,
            "started_at_in_future",
        )
        .field("source.started_at")
        .limit(MAX_CLOCK_SKEW_SECONDS),
        Case::bad("seq jump", set("/seq", json!(50_000_000)), 400, "seq_jump")
            .field("seq")
            .limit(MAX_SEQ_STEP),
        Case::bad(
            "label bytes over the per-source budget",
            set("/maps", Value::Array(label_heavy_maps)),
            400,
            "too_many_label_bytes",
        )
        .field("maps")
        .limit(Limits::default().max_label_bytes_per_source as u64),
        // Counts.
        Case::bad(
            "too many maps",
            set("/maps", Value::Array(too_many_maps)),
            400,
            "too_many_maps",
        )
        .field("maps")
        .limit(MAX_MAPS as u64),
        Case::bad(
            "too many events",
            set("/events", Value::Array(too_many_events)),
            400,
            "too_many_events",
        )
        .field("events")
        .limit(MAX_EVENTS as u64),
        Case::bad(
            "too many sources",
            good("gamma", 1),
            429,
            "too_many_sources",
        )
        .field("source")
        .limit(MAX_SOURCES as u64),
        // Timestamps, ids, kinds.
        Case::bad(
            "bad started_at",
            set("/source/started_at", json!("yesterday")),
            400,
            "invalid_timestamp",
        )
        .field("source.started_at"),
        Case::bad(
            "started_at without zone",
            set("/source/started_at", json!("2026-11-22T10:00:00")),
            400,
            "invalid_timestamp",
        )
        .field("source.started_at"),
        Case::bad(
            "event at month 13",
            set("/events/0/at", json!("2026-13-01T00:00:00Z")),
            400,
            "invalid_timestamp",
        )
        .field("events[0].at"),
        Case::bad(
            "event at unix seconds",
            set("/events/0/at", json!("1795305600")),
            400,
            "invalid_timestamp",
        )
        .field("events[0].at"),
        Case::bad(
            "trace_id not hex",
            set("/events/0/trace_id", json!("zz".repeat(16))),
            400,
            "invalid_value",
        )
        .field("events[0].trace_id"),
        Case::bad(
            "trace_id too short",
            set("/events/0/trace_id", json!("ab".repeat(8))),
            400,
            "invalid_value",
        )
        .field("events[0].trace_id"),
        Case::bad(
            "span_id 15 digits",
            set("/events/0/span_id", json!("a".repeat(15))),
            400,
            "invalid_value",
        )
        .field("events[0].span_id"),
        Case::bad(
            "unknown misuse kind in counters",
            set("/maps/0/counters/misuse", json!({"segfault": 1})),
            400,
            "invalid_value",
        )
        .field("maps[0].counters.misuse.segfault"),
        Case::bad(
            "unknown misuse kind in an event",
            set("/events/0", misuse_event(Some("segfault"))),
            400,
            "invalid_value",
        )
        .field("events[0].misuse_kind"),
        Case::bad(
            "misuse event without a kind",
            set("/events/0", misuse_event(None)),
            400,
            "invalid_value",
        )
        .field("events[0].misuse_kind"),
        Case::bad(
            "unknown event kind",
            set("/events/0/kind", json!("explosion")),
            400,
            "invalid_value",
        )
        .field("events[0].kind"),
        Case::bad(
            "unknown growth kind",
            set("/events/0/growth_kind", json!("triple")),
            400,
            "invalid_value",
        )
        .field("events[0].growth_kind"),
        Case::bad(
            "unknown evacuation kind",
            set("/maps/0/stats/evacuation", evacuation("triple", 4, 1)),
            400,
            "invalid_value",
        )
        .field("maps[0].stats.evacuation.kind"),
        Case::bad(
            "evacuated more than old",
            set("/maps/0/stats/evacuation", evacuation("double", 4, 5)),
            400,
            "invalid_value",
        )
        .field("maps[0].stats.evacuation.evacuated_old_buckets"),
        Case::bad(
            "33 attributes",
            set("/events/0/attributes", Value::Object(attributes)),
            400,
            "invalid_value",
        )
        .field("events[0].attributes")
        .limit(32),
        // Accepted: from source "delta", whose series are not compared.
        Case::ok(
            "empty maps and events",
            with("delta", |v| {
                v["maps"] = json!([]);
                v["events"] = json!([]);
            }),
        ),
        Case::ok(
            "unknown fields are ignored",
            with("delta", |v| {
                v["future_field"] = json!({"nested": [1, 2, 3]});
                v["source"]["region"] = json!("eu");
                v["maps"][0]["stats"]["future"] = json!(true);
            }),
        ),
        Case::ok(
            "unicode map name and label values",
            with("delta", |v| {
                v["maps"][0]["name"] = json!("заказы 🛒");
                v["maps"][0]["labels"]["tenant"] = json!("Zürich \"quoted\" \\ back");
            }),
        ),
        Case::ok(
            "u64::MAX counters",
            with("delta", |v| {
                v["maps"][0]["counters"]["inserts"] = json!(u64::MAX);
                v["maps"][0]["stats"]["entries"] = json!(u64::MAX);
            }),
        ),
        // Counters never go down within a process (counter_went_backwards).
        Case::ok(
            "content type with charset",
            with("delta", |v| {
                v["maps"][0]["counters"]["inserts"] = json!(u64::MAX);
            }),
        )
        .content_type(Some("application/json; charset=utf-8")),
        // After delta's accepted reports: its counters only go up.
        Case::bad(
            "a counter going backwards",
            with("delta", |v| {
                v["maps"][0]["counters"]["inserts"] = json!(0);
            }),
            400,
            "counter_went_backwards",
        )
        .field("maps[0].counters.inserts"),
    ];
    for case in &mut cases {
        if case.status == 200 {
            case.field = Field::Null;
        }
    }
    cases
}
