//! Misuse: an insert past `max_entries` is a `mapscope.misuse` event on the
//! active span, or a standalone `mapscope.map.misuse` root span; a detector
//! firing is a standalone span; client-reported program errors (reports
//! applied to the same registry) are error spans in the client's trace with
//! `error.type`; a Go crash file read by the sidecar's scanner, and a client
//! event with `code.*` attributes, carry the code site as `code.function`,
//! `code.filepath` and `code.lineno`.

use std::time::SystemTime;

use mapscope::ingest::{check, Limits, Report, Sources};
use mapscope::otel::{OtelGuard, GROW_SPAN, MISUSE_SPAN, SCOPE};
use mapscope::{otel, Registry};
use opentelemetry::trace::{TraceContextExt as _, Tracer as _, TracerProvider as _};
use opentelemetry::Context;
use opentelemetry_proto::tonic::trace::v1::status;
use tracing_subscriber::layer::SubscriberExt as _;

use crate::receiver::{
    attr, attr_i64, attr_str, crossings, describe, hex, misuse_events, named, nanos, of_map,
    Receiver,
};
use crate::{config_for, start, Map};

#[test]
fn misuse_is_an_event_on_the_active_span_or_a_standalone_span() {
    let receiver = Receiver::start();
    let registry = Registry::new();
    let guard = start(&registry, &receiver);
    let tracer = guard.provider().expect("enabled").tracer("app");

    // Under an application span: an event on it.
    let mut orders = Map::builder("orders")
        .label("region", "eu")
        .max_entries(5)
        .register(&registry)
        .unwrap();
    let (trace_id, span_id) = tracer.in_span("POST /orders", |cx| {
        for key in 0..6 {
            orders.insert(key, key);
        }
        // Back under the limit and over it again: a second crossing.
        orders.remove(&0);
        orders.insert(0, 0);
        let ids = cx.span().span_context().clone();
        (ids.trace_id(), ids.span_id())
    });

    // With no span: a standalone root span.
    let mut ledger = Map::builder("ledger")
        .max_entries(3)
        .register(&registry)
        .unwrap();
    assert!(!Context::current().has_active_span());
    let before = SystemTime::now();
    for key in 0..4 {
        ledger.insert(key, key);
    }
    let after = SystemTime::now();

    // Under a tracing span (context activation on): an event on its span.
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(tracer.clone()));
    let mut carts = Map::builder("carts")
        .max_entries(1)
        .register(&registry)
        .unwrap();
    tracing::subscriber::with_default(subscriber, || {
        let span = tracing::info_span!("PUT /carts");
        let _entered = span.enter();
        carts.insert(1, 1);
        carts.insert(2, 2);
    });

    // The detectors see the same condition at the next snapshot (a scrape):
    // a standalone span for the condition, besides the event on the request.
    let mut detected = Map::builder("detected")
        .max_entries(2)
        .register(&registry)
        .unwrap();
    tracer.in_span("PUT /detected", |_cx| {
        for key in 0..3 {
            detected.insert(key, key);
        }
    });
    detected.publish();
    registry.snapshot();

    guard.shutdown();
    let spans = receiver.wait_for("the app spans and the standalone misuse span", |spans| {
        !named(spans, "POST /orders").is_empty()
            && !named(spans, "PUT /carts").is_empty()
            && !crossings(spans, "ledger").is_empty()
    });

    let request = named(&spans, "POST /orders");
    assert_eq!(request.len(), 1);
    let request = &request[0].span;
    assert_eq!(hex(&request.trace_id), trace_id.to_string());
    assert_eq!(hex(&request.span_id), span_id.to_string());
    let events = misuse_events(request);
    assert_eq!(
        events.len(),
        2,
        "two crossings: {}",
        describe(named(&spans, "POST /orders")[0])
    );
    for event in &events {
        let a = &event.attributes;
        assert_eq!(
            attr_str(a, "mapscope.misuse.kind"),
            Some("unbounded_growth")
        );
        assert_eq!(attr_str(a, "mapscope.map.name"), Some("orders"));
        assert_eq!(attr_str(a, "mapscope.map.label.region"), Some("eu"));
        let details = attr_str(a, "mapscope.misuse.details").unwrap();
        assert!(details.contains("past max_entries 5"), "{details}");
        // A health condition, not a program error.
        assert_eq!(attr(a, "error.type"), None);
        assert!(event.time_unix_nano >= request.start_time_unix_nano);
        assert!(event.time_unix_nano <= request.end_time_unix_nano);
    }
    assert_eq!(attr(&request.attributes, "error.type"), None);
    assert_ne!(
        request.status.as_ref().map(|st| st.code()),
        Some(status::StatusCode::Error)
    );
    // Recorded on the span, so not exported again on its own.
    assert!(crossings(&spans, "orders").is_empty());

    let standalone = crossings(&spans, "ledger");
    assert_eq!(standalone.len(), 1, "{standalone:#?}");
    assert_eq!(standalone[0].scope, SCOPE);
    let s = &standalone[0].span;
    assert!(
        s.parent_span_id.is_empty(),
        "no span was active: a root span"
    );
    assert_eq!(
        attr_str(&s.attributes, "mapscope.misuse.kind"),
        Some("unbounded_growth")
    );
    assert!(attr_str(&s.attributes, "mapscope.misuse.details")
        .unwrap()
        .contains("past max_entries 3"));
    assert!(s.start_time_unix_nano >= nanos(before));
    assert!(s.start_time_unix_nano <= nanos(after));
    assert!(s.start_time_unix_nano <= s.end_time_unix_nano);
    let events = misuse_events(s);
    assert_eq!(events.len(), 1);
    assert_eq!(
        attr_str(&events[0].attributes, "mapscope.map.name"),
        Some("ledger")
    );

    let carts_span = named(&spans, "PUT /carts");
    assert_eq!(carts_span.len(), 1);
    let events = misuse_events(&carts_span[0].span);
    assert_eq!(events.len(), 1, "{}", describe(carts_span[0]));
    assert_eq!(
        attr_str(&events[0].attributes, "mapscope.map.name"),
        Some("carts")
    );
    assert!(crossings(&spans, "carts").is_empty());

    let detected_span = named(&spans, "PUT /detected");
    assert_eq!(detected_span.len(), 1);
    assert_eq!(misuse_events(&detected_span[0].span).len(), 1);
    let condition = of_map(&spans, MISUSE_SPAN, "detected");
    assert_eq!(condition.len(), 1, "the detector's firing: {condition:#?}");
    let a = &condition[0].span.attributes;
    assert_eq!(
        attr_str(a, "mapscope.misuse.kind"),
        Some("unbounded_growth")
    );
    assert!(attr_str(a, "mapscope.misuse.details")
        .unwrap()
        .contains("exceed max_entries 2"));
    assert!(condition[0].span.parent_span_id.is_empty());

    assert_eq!(registry.snapshot().trace_events_suppressed, 0);
}

/// A client report (applied to the registry through `ingest::Sources`), with `events`.
fn client_report(events: serde_json::Value) -> Report {
    let report: Report = serde_json::from_value(serde_json::json!({
        "source": {"app": "checkout", "instance": "pod-1", "language": "go"},
        "seq": 1,
        "maps": [{"name": "carts", "labels": {"shard": "3"}, "stats": {"entries": 10, "buckets": 2}}],
        "events": events,
    }))
    .expect("a valid protocol v1 report");
    check(&report, &Limits::default()).expect("the report passes validation");
    report
}

/// A registry exporting to `receiver`, with a report store that applies
/// client reports to it (as the sidecar does).
fn client_store(receiver: &Receiver) -> (Registry, Sources, OtelGuard) {
    let registry = Registry::new();
    let store = Sources::new(&registry, Limits::default());
    let guard = otel::init_with(&registry, config_for(receiver)).unwrap();
    (registry, store, guard)
}

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
const CLIENT_AT: &str = "2026-01-01T12:00:00.5Z";

/// Program errors reported by clients in other languages (through the
/// sidecar) become standalone spans in the client's trace, with
/// `error.type` and an error status (OTel's recording-errors conventions).
#[test]
fn client_reported_misuse_is_an_error_span_in_the_clients_trace() {
    let receiver = Receiver::start();
    let (_registry, store, guard) = client_store(&receiver);
    let mut events = Vec::new();
    for (seq, kind) in [
        "nil_map_write",
        "concurrent_write",
        "iterate_while_mutating",
    ]
    .into_iter()
    .enumerate()
    {
        events.push(serde_json::json!({
            "seq": seq + 1, "kind": "misuse", "map": "carts", "labels": {"shard": "3"},
            "at": CLIENT_AT, "misuse_kind": kind,
            "trace_id": CLIENT_TRACE, "span_id": CLIENT_SPAN,
            "attributes": {"goroutine": "17"},
        }));
    }
    store
        .apply(client_report(serde_json::Value::Array(events)))
        .unwrap();
    guard.shutdown();
    let spans = receiver.wait_for("three client misuse spans", |spans| {
        of_map(spans, MISUSE_SPAN, "carts").len() >= 3
    });
    let at = nanos(mapscope::timestamp::parse_rfc3339(CLIENT_AT).unwrap());
    let mut kinds = Vec::new();
    for received in of_map(&spans, MISUSE_SPAN, "carts") {
        let s = &received.span;
        let a = &s.attributes;
        let kind = attr_str(a, "mapscope.misuse.kind").unwrap().to_owned();
        assert_eq!(attr_str(a, "error.type"), Some(kind.as_str()));
        assert_eq!(attr_str(a, "mapscope.source"), Some("checkout"));
        assert_eq!(attr_str(a, "mapscope.source.instance"), Some("pod-1"));
        assert_eq!(attr_str(a, "mapscope.map.label.shard"), Some("3"));
        assert!(attr_str(a, "mapscope.misuse.details")
            .unwrap()
            .contains("goroutine=17"));
        assert_eq!(hex(&s.trace_id), CLIENT_TRACE);
        assert_eq!(hex(&s.parent_span_id), CLIENT_SPAN);
        assert_eq!(s.start_time_unix_nano, at);
        let status = s.status.as_ref().expect("a status");
        assert_eq!(status.code(), status::StatusCode::Error);
        assert_eq!(misuse_events(s).len(), 1);
        kinds.push(kind);
    }
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "concurrent_write",
            "iterate_while_mutating",
            "nil_map_write"
        ]
    );
}

/// A growth a client reports with its trace and span ids nests in the
/// client's trace, as its misuse events do.
#[test]
fn client_reported_growth_nests_in_the_clients_trace() {
    let receiver = Receiver::start();
    let (_registry, store, guard) = client_store(&receiver);
    store
        .apply(client_report(serde_json::json!([{
            "seq": 1, "kind": "growth", "map": "carts", "labels": {"shard": "3"},
            "at": CLIENT_AT, "duration_seconds": 0.25, "growth_kind": "double",
            "trace_id": CLIENT_TRACE, "span_id": CLIENT_SPAN,
        }])))
        .unwrap();
    guard.shutdown();
    let spans = receiver.wait_for("the client grow span", |spans| {
        !of_map(spans, GROW_SPAN, "carts").is_empty()
    });
    let s = &of_map(&spans, GROW_SPAN, "carts")[0].span;
    assert_eq!(
        s.end_time_unix_nano,
        nanos(mapscope::timestamp::parse_rfc3339(CLIENT_AT).unwrap())
    );
    assert_eq!(hex(&s.trace_id), CLIENT_TRACE);
    assert_eq!(hex(&s.parent_span_id), CLIENT_SPAN);
}

/// The crash fixtures (`tests/fixtures/crashes`, real Go crash output).
fn crash_fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/crashes")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A Go crash file the sidecar's scanner reads becomes a standalone misuse
/// span with the crash's code site and the crashed process's id.
#[test]
fn a_crash_file_becomes_a_misuse_span_with_its_code_site() {
    let receiver = Receiver::start();
    let registry = Registry::new();
    let guard = otel::init_with(&registry, config_for(&receiver)).unwrap();
    let dir = std::env::temp_dir().join(format!("mapscope-otel-crashes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let json = crash_fixture("go1.27.3-system-write_str.json");
    let pid = serde_json::from_slice::<serde_json::Value>(&json).unwrap()["pid"]
        .as_i64()
        .unwrap();
    std::fs::write(
        dir.join("mapscope-crash-1-2.log"),
        crash_fixture("go1.27.3-system-write_str.log"),
    )
    .unwrap();
    std::fs::write(dir.join("mapscope-crash-1-2.json"), json).unwrap();
    let mut scanner = mapscope::ingest::CrashDir::new(&dir, &registry);
    scanner.scan();
    assert_eq!(scanner.scan().map_crashes, 1, "stable after one scan");
    guard.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    let spans = receiver.wait_for("the crash's misuse span", |spans| {
        !of_map(spans, MISUSE_SPAN, "sessions").is_empty()
    });
    let s = &of_map(&spans, MISUSE_SPAN, "sessions")[0].span;
    let a = &s.attributes;
    assert_eq!(
        attr_str(a, "mapscope.misuse.kind"),
        Some("concurrent_write")
    );
    assert_eq!(attr_str(a, "error.type"), Some("concurrent_write"));
    assert_eq!(attr_str(a, "mapscope.source"), Some("checkout"));
    assert_eq!(attr_str(a, "mapscope.map.label.tenant"), Some("acme"));
    assert_eq!(attr_str(a, "code.function"), Some("main.writeStr"));
    assert_eq!(attr_str(a, "code.filepath"), Some("/tmp/gocrash/main.go"));
    assert_eq!(attr_i64(a, "code.lineno"), Some(57));
    assert_eq!(attr_i64(a, "process.pid"), Some(pid));
    let details = attr_str(a, "mapscope.misuse.details").unwrap();
    assert!(
        details.contains("checkout-7d9f-x2k4") && details.contains("main.writeStr"),
        "{details}"
    );
    let event = misuse_events(s)[0];
    assert_eq!(attr_i64(&event.attributes, "code.lineno"), Some(57));
    assert_eq!(
        s.status.as_ref().expect("a status").code(),
        status::StatusCode::Error
    );
}

/// A client event whose attributes carry OpenTelemetry's `code.*` keys
/// gets the same structured site as a crash (`code.lineno` an integer).
#[test]
fn a_reported_misuse_with_code_attributes_carries_the_site() {
    let receiver = Receiver::start();
    let (_registry, store, guard) = client_store(&receiver);
    store
        .apply(client_report(serde_json::json!([
            {
                "seq": 1, "kind": "misuse", "map": "carts", "labels": {"shard": "3"},
                "at": CLIENT_AT, "misuse_kind": "nil_map_write",
                "attributes": {
                    "code.function": "github.com/acme/shop.(*Cart).Add",
                    "code.filepath": "/src/shop/cart.go",
                    "code.lineno": "88",
                },
            },
            {
                "seq": 2, "kind": "misuse", "map": "carts", "labels": {"shard": "3"},
                "at": CLIENT_AT, "misuse_kind": "concurrent_write",
                // Not a number: no structured site (the details keep it).
                "attributes": {"code.function": "f", "code.filepath": "x.go", "code.lineno": "x"},
            },
        ])))
        .unwrap();
    guard.shutdown();
    let spans = receiver.wait_for("two client misuse spans", |spans| {
        of_map(spans, MISUSE_SPAN, "carts").len() >= 2
    });
    for received in of_map(&spans, MISUSE_SPAN, "carts") {
        let a = &received.span.attributes;
        match attr_str(a, "mapscope.misuse.kind") {
            Some("nil_map_write") => {
                assert_eq!(
                    attr_str(a, "code.function"),
                    Some("github.com/acme/shop.(*Cart).Add")
                );
                assert_eq!(attr_str(a, "code.filepath"), Some("/src/shop/cart.go"));
                assert_eq!(attr_i64(a, "code.lineno"), Some(88));
                assert_eq!(attr_i64(a, "process.pid"), None, "not a crash");
            }
            _ => {
                assert_eq!(attr(a, "code.lineno"), None);
                assert!(attr_str(a, "mapscope.misuse.details")
                    .unwrap()
                    .contains("code.lineno=x"));
            }
        }
    }
}
