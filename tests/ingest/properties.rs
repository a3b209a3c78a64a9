//! Property tests: `mapscope::ingest::handle` never panics and always
//! answers 200 or 4xx with a JSON body, for arbitrary JSON.

use std::collections::BTreeSet;

use mapscope::export::prometheus::MapscopeCollector;
use mapscope::ingest::{Limits, ReportAccepted, Sources};
use mapscope::Registry;
use proptest::prelude::*;
use serde_json::{json, Value};

use super::support::json_headers;
use crate::common::exposition::parse_exposition;

/// Every field name of protocol v1, for keys of generated objects.
const FIELD_NAMES: &[&str] = &[
    "source",
    "app",
    "instance",
    "language",
    "sdk",
    "started_at",
    "seq",
    "sent_at",
    "interval_seconds",
    "maps",
    "events",
    "name",
    "labels",
    "stats",
    "counters",
    "entries",
    "peak_entries",
    "buckets",
    "overflow_buckets",
    "memory_bytes",
    "max_overflow_chain",
    "evacuation",
    "kind",
    "old_buckets",
    "evacuated_old_buckets",
    "growths",
    "double",
    "same_size",
    "shrink",
    "growth_seconds",
    "evacuated_buckets",
    "inserts",
    "updates",
    "removes",
    "misuse",
    "map",
    "at",
    "duration_seconds",
    "growth_kind",
    "misuse_kind",
    "trace_id",
    "span_id",
    "attributes",
    "nil_map_write",
    "concurrent_write",
    "iterate_while_mutating",
];

/// Stands for a number literal larger than u64::MAX in generated JSON.
const HUGE: &str = "\u{1}HUGE\u{1}";

fn text() -> BoxedStrategy<String> {
    prop_oneof![
        3 => "[a-z_]{0,10}",
        2 => ".{0,8}",
        2 => proptest::sample::select(FIELD_NAMES).prop_map(str::to_owned),
        1 => proptest::sample::select(vec![
            "2026-11-22T10:00:00Z", "2026-11-22T10:00:00.123456+01:00", "2026-02-31T25:61:61Z",
            "yesterday", "0123456789abcdef0123456789abcdef", "0123456789abcdef", "double",
            "same_size", "shrink", "growth", "misuse", "map", "source", "le", "_overflow", "__x",
        ])
        .prop_map(str::to_owned),
        1 => Just(HUGE.to_owned()),
    ]
    .boxed()
}

fn number() -> BoxedStrategy<Value> {
    prop_oneof![
        3 => (0u64..10).prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<f64>().prop_map(Value::from),
        1 => (0.0..1.0f64).prop_map(Value::from),
        1 => (0i32..308).prop_map(|e| Value::from(10f64.powi(e))),
    ]
    .boxed()
}

fn leaf() -> BoxedStrategy<Value> {
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::Bool),
        3 => number(),
        3 => text().prop_map(Value::String),
    ]
    .boxed()
}

fn arbitrary_json() -> BoxedStrategy<Value> {
    leaf()
        .prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec((text(), inner), 0..6)
                    .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
            ]
        })
        .boxed()
}

/// `valid` mostly, sometimes anything, sometimes absent.
fn field(valid: BoxedStrategy<Value>, any: BoxedStrategy<Value>) -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        6 => valid.prop_map(Some),
        1 => any.prop_map(Some),
        1 => Just(None),
    ]
    .boxed()
}

fn object(fields: Vec<(&'static str, Option<Value>)>) -> Value {
    Value::Object(
        fields
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
            .collect(),
    )
}

/// Reports that are mostly well-formed, so generated input reaches the
/// checks and the store, not only the JSON parser.
fn report_like() -> BoxedStrategy<Value> {
    let any = arbitrary_json();
    let small = || (0u64..20).prop_map(Value::from).boxed();
    let seconds = number;
    let name = || {
        proptest::sample::select(vec!["orders", "sessions", "заказы", "", "_overflow", "m"])
            .prop_map(Value::from)
            .boxed()
    };
    let label_key = || {
        proptest::sample::select(vec![
            "tenant",
            "shard",
            "source",
            "le",
            "город",
            "__x",
            "a-b",
        ])
    };
    let labels = move || {
        proptest::collection::btree_map(label_key(), text(), 0..3)
            .prop_map(|m| json!(m))
            .boxed()
    };
    let kind = || {
        proptest::sample::select(vec!["double", "same_size", "shrink", "triple"])
            .prop_map(Value::from)
            .boxed()
    };
    let evacuation = (kind(), small(), small())
        .prop_map(|(k, o, e)| json!({"kind": k, "old_buckets": o, "evacuated_old_buckets": e}))
        .boxed();
    let stats = (
        small(),
        small(),
        small(),
        field(evacuation, Just(Value::Null).boxed()),
    )
        .prop_map(|(entries, buckets, peak, evacuation)| {
            object(vec![
                ("entries", Some(entries)),
                ("buckets", Some(buckets)),
                ("peak_entries", Some(peak)),
                ("evacuation", evacuation),
            ])
        })
        .boxed();
    let misuse = proptest::collection::btree_map(
        proptest::sample::select(vec![
            "nil_map_write",
            "concurrent_write",
            "unbounded_growth",
            "segfault",
        ]),
        0u64..5,
        0..3,
    )
    .prop_map(|m| json!(m))
    .boxed();
    let counters = (small(), seconds(), misuse)
        .prop_map(|(inserts, seconds, misuse)| {
            let mut counters = json!({"inserts": inserts, "growths": {"double": 1}});
            counters["growth_seconds"] = json!({ "double": seconds });
            counters["misuse"] = misuse;
            counters
        })
        .boxed();
    let map = (
        field(name(), any.clone()),
        field(labels(), any.clone()),
        field(stats, any.clone()),
        field(counters, any.clone()),
    )
        .prop_map(|(name, labels, stats, counters)| {
            object(vec![
                ("name", name),
                ("labels", labels),
                ("stats", stats),
                ("counters", counters),
            ])
        })
        .boxed();
    let timestamp = || {
        proptest::sample::select(vec![
            "2026-11-22T10:00:00Z",
            "2026-11-22T10:00:00.5-03:30",
            "nope",
        ])
        .prop_map(Value::from)
        .boxed()
    };
    let hex = |len: usize| {
        prop_oneof![
            proptest::string::string_regex(&format!("[0-9a-f]{{{len}}}")).expect("regex"),
            "[0-9a-z]{0,40}",
        ]
        .prop_map(Value::from)
        .boxed()
    };
    let event = (
        (
            field(small(), any.clone()),
            field(
                proptest::sample::select(vec!["growth", "misuse", "other"])
                    .prop_map(Value::from)
                    .boxed(),
                any.clone(),
            ),
            field(name(), any.clone()),
            field(labels(), any.clone()),
            field(timestamp(), any.clone()),
            field(seconds(), any.clone()),
        ),
        (
            field(kind(), any.clone()),
            field(
                proptest::sample::select(vec![
                    "nil_map_write",
                    "concurrent_write",
                    "presize_miss",
                    "segfault",
                ])
                .prop_map(Value::from)
                .boxed(),
                any.clone(),
            ),
            field(hex(32), any.clone()),
            field(hex(16), any.clone()),
            field(
                proptest::collection::btree_map("[a-z]{1,5}", text(), 0..3)
                    .prop_map(|m| json!(m))
                    .boxed(),
                any.clone(),
            ),
        ),
    )
        .prop_map(
            |((seq, kind, map, labels, at, duration), (gk, mk, trace, span, attributes))| {
                object(vec![
                    ("seq", seq),
                    ("kind", kind),
                    ("map", map),
                    ("labels", labels),
                    ("at", at),
                    ("duration_seconds", duration),
                    ("growth_kind", gk),
                    ("misuse_kind", mk),
                    ("trace_id", trace),
                    ("span_id", span),
                    ("attributes", attributes),
                ])
            },
        )
        .boxed();
    let app = || {
        prop_oneof![
            proptest::sample::select(vec!["checkout", "billing", "checkout/a"])
                .prop_map(Value::from),
            ".{0,4}".prop_map(Value::from),
        ]
        .boxed()
    };
    let source = (
        field(app(), any.clone()),
        field(app(), any.clone()),
        field(timestamp(), any.clone()),
    )
        .prop_map(|(app, instance, started_at)| {
            object(vec![
                ("app", app),
                ("instance", instance),
                ("started_at", started_at),
            ])
        })
        .boxed();
    (
        field(source, any.clone()),
        field(small(), any.clone()),
        field(seconds(), any.clone()),
        field(
            proptest::collection::vec(map, 0..4)
                .prop_map(Value::Array)
                .boxed(),
            any.clone(),
        ),
        field(
            proptest::collection::vec(event, 0..4)
                .prop_map(Value::Array)
                .boxed(),
            any.clone(),
        ),
        proptest::option::of((text(), any)),
    )
        .prop_map(|(source, seq, interval, maps, events, extra)| {
            let mut value = object(vec![
                ("source", source),
                ("seq", seq),
                ("interval_seconds", interval),
                ("maps", maps),
                ("events", events),
            ]);
            if let (Some((key, extra)), Some(object)) = (extra, value.as_object_mut()) {
                object.insert(key, extra);
            }
            value
        })
        .boxed()
}

/// Serialises `value`, turning [`HUGE`] strings into integer literals
/// beyond u64.
fn to_body(value: &Value) -> Vec<u8> {
    let text = serde_json::to_string(value).expect("a Value serialises");
    let huge = serde_json::to_string(HUGE).expect("a string serialises");
    text.replace(&huge, "184467440737095516160000000")
        .into_bytes()
}

/// Feeds `body` to `handle` twice (the second time a retry) and checks the
/// answers and that the store still renders a valid exposition.
fn check_handle(body: &[u8]) -> Result<(), TestCaseError> {
    let registry = Registry::new();
    let store = Sources::new(&registry, Limits::default());
    for attempt in 0..2 {
        let (status, text) = mapscope::ingest::handle(&store, None, &json_headers(), body);
        prop_assert!(
            status.as_u16() == 200 || status.is_client_error(),
            "status {} on attempt {}: {}",
            status,
            attempt,
            text
        );
        let answer: Value = serde_json::from_str(&text)
            .map_err(|e| TestCaseError::fail(format!("body is not JSON ({e}): {text}")))?;
        if status == 200 {
            let accepted: ReportAccepted = serde_json::from_value(answer)
                .map_err(|e| TestCaseError::fail(format!("not a ReportAccepted ({e}): {text}")))?;
            let expected = if attempt == 0 {
                "accepted"
            } else {
                "duplicate"
            };
            prop_assert_eq!(accepted.status.as_str(), expected);
        } else {
            let keys: BTreeSet<String> = answer
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            prop_assert_eq!(
                keys,
                ["error", "field", "limit"]
                    .map(String::from)
                    .into_iter()
                    .collect::<BTreeSet<_>>()
            );
        }
    }
    let text = MapscopeCollector::new(registry).render();
    parse_exposition(&text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
    Ok(())
}

/// 300 cases, no regression files (the failing input is printed).
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 300,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn handle_never_panics_on_arbitrary_json(value in arbitrary_json()) {
        check_handle(&to_body(&value))?;
    }

    #[test]
    fn handle_never_panics_on_report_like_json(value in report_like()) {
        check_handle(&to_body(&value))?;
    }

    #[test]
    fn handle_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        check_handle(&bytes)?;
    }
}
