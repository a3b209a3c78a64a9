//! OpenTelemetry export end to end: `mapscope::otel::init_with` exports
//! over real OTLP/HTTP (protobuf) to an in-test receiver, which decodes
//! every request with the OTLP protobuf definitions and keeps the spans.
//!
//! - growth: a `mapscope.map.grow` span nests under the span that was
//!   current when the growth started (an SDK span attached as the current
//!   context, or a `tracing` span through `tracing-opentelemetry`, with and
//!   without context activation), its timestamps bracket the evacuation
//!   and its attributes match the map's stats; growths finished by
//!   `complete_growth()` and halvings are labelled as such;
//! - misuse: an insert past `max_entries` is a `mapscope.misuse` event on
//!   the active span, or a standalone `mapscope.map.misuse` root span; a
//!   detector firing is a standalone span; client-reported program errors
//!   (reports applied to the same registry) are error spans in the client's trace
//!   with `error.type`; a Go crash file read by the sidecar's scanner, and
//!   a client event with `code.*` attributes, carry the code site as
//!   `code.function`, `code.filepath` and `code.lineno`;
//! - switches: `OTEL_SDK_DISABLED`, `OTEL_TRACES_EXPORTER=none` and a
//!   missing endpoint export nothing; unsupported values fail clearly;
//!   endpoint resolution (`/v1/traces` appended or not);
//! - the per-map misuse rate limit, for detector-fired and insert-time
//!   misuse, with `trace_events_suppressed`, in seconds of the registry's
//!   manual clock (no sleeps, no wall-clock bounds).
//!
//! Every test uses its own `Registry`, receiver and tracer provider, with
//! `set_global(false)` (except the one test about the global provider), so
//! the tests are independent of each other and of the process-wide
//! provider. Every wait is bounded.
//!
//! Tests marked `` describe known defects of
//! `src/` (listed under "Known issues" in `docs/tracing.md`); they pass
//! once the defect is fixed.

// Drives the sidecar (its binary or its ingest endpoint): `--features sidecar`.
#![cfg(feature = "sidecar")]

#![cfg(feature = "otel")]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use opentelemetry::trace::{Span as _, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::Context;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{span, status, Span};
use prost::Message as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;

use mapscope::ingest::{check, Limits, Report, Sources};
use mapscope::otel::{
    self, OtelConfig, OtelError, OtelGuard, Protocol, GROW_SPAN, MISUSE_EVENT, MISUSE_SPAN, SCOPE,
};
use mapscope::registry::ManualClock;
use mapscope::{DetectorConfig, GrowthKind, InstrumentedMap, Registry};

type Map = InstrumentedMap<u64, u64>;

/// The longest any wait in this file may take.
const WAIT: Duration = Duration::from_secs(10);
/// How often the event pump turns registry events into spans here.
const POLL: Duration = Duration::from_millis(20);

/// 6.5 entries per bucket at 512 buckets: the next new key doubles the map.
const FULL_512: u64 = 13 * 512 / 2;

// ---------------------------------------------------------------------------
// The OTLP/HTTP receiver
// ---------------------------------------------------------------------------

/// One span as the receiver got it.
#[derive(Debug, Clone)]
struct Received {
    /// The request path it was posted to.
    path: String,
    /// The instrumentation scope's name.
    scope: String,
    /// The resource's attributes.
    resource: Vec<KeyValue>,
    span: Span,
}

#[derive(Debug, Default)]
struct Collected {
    spans: Vec<Received>,
    requests: usize,
    /// Anything the receiver did not like (bad content type, encoding,
    /// undecodable body). Checked by every test.
    problems: Vec<String>,
}

type Shared = Arc<Mutex<Collected>>;

/// An OTLP/HTTP traces receiver on `127.0.0.1:<ephemeral>`, answering
/// `POST /v1/traces` (and `POST /custom/traces`, for endpoints used as is).
struct Receiver {
    addr: SocketAddr,
    shared: Shared,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Receiver {
    fn start() -> Self {
        let shared: Shared = Arc::default();
        let app = Router::new()
            .route("/v1/traces", post(export))
            .route("/custom/traces", post(export))
            .with_state(shared.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let addr = listener.local_addr().expect("local address");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = thread::Builder::new()
            .name(format!("otlp-receiver-{}", addr.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("receiver runtime");
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    let server = axum::serve(listener, app).with_graceful_shutdown(async {
                        let _ = stop_rx.await;
                    });
                    // Graceful shutdown waits for open connections; the
                    // exporter's may be kept alive, so bound it.
                    let _ = tokio::time::timeout(Duration::from_secs(60), server).await;
                });
                runtime.shutdown_timeout(Duration::from_millis(200));
            })
            .expect("spawn the receiver thread");
        Receiver {
            addr,
            shared,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT`.
    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The traces URL.
    fn url(&self) -> String {
        format!("{}/v1/traces", self.base())
    }

    fn spans(&self) -> Vec<Received> {
        self.shared.lock().unwrap().spans.clone()
    }

    fn requests(&self) -> usize {
        self.shared.lock().unwrap().requests
    }

    fn assert_no_problems(&self) {
        let problems = self.shared.lock().unwrap().problems.clone();
        assert!(problems.is_empty(), "the receiver saw: {problems:#?}");
    }

    /// Waits (at most [`WAIT`]) until `done` holds for the spans received.
    fn wait_for(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
        let deadline = Instant::now() + WAIT;
        loop {
            let spans = self.spans();
            if done(&spans) {
                self.assert_no_problems();
                return spans;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out after {WAIT:?} waiting for {what}; received:\n{}",
                    spans.iter().map(describe).collect::<Vec<_>>().join("\n")
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // Detach rather than hang if keep-alive connections linger.
            let (done_tx, done_rx) = mpsc::channel();
            thread::spawn(move || {
                let _ = thread.join();
                let _ = done_tx.send(());
            });
            let _ = done_rx.recv_timeout(Duration::from_secs(2));
        }
    }
}

/// `POST /v1/traces`: decode the protobuf body, keep the spans, answer
/// with an empty `ExportTraceServiceResponse`.
async fn export(
    State(shared): State<Shared>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut collected = shared.lock().unwrap();
    collected.requests += 1;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type != "application/x-protobuf" {
        collected
            .problems
            .push(format!("content-type {content_type:?}"));
        return StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response();
    }
    // The exporter is built without compression features: any encoding
    // would be a surprise worth failing on, not something to decode.
    if let Some(encoding) = headers.get(header::CONTENT_ENCODING) {
        collected
            .problems
            .push(format!("unexpected content-encoding {encoding:?}"));
        return StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response();
    }
    let request = match ExportTraceServiceRequest::decode(body) {
        Ok(request) => request,
        Err(error) => {
            collected
                .problems
                .push(format!("undecodable body: {error}"));
            return StatusCode::BAD_REQUEST.into_response();
        }
    };
    for resource_spans in request.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| r.attributes)
            .unwrap_or_default();
        for scope_spans in resource_spans.scope_spans {
            let scope = scope_spans.scope.map(|s| s.name).unwrap_or_default();
            for span in scope_spans.spans {
                collected.spans.push(Received {
                    path: uri.path().to_owned(),
                    scope: scope.clone(),
                    resource: resource.clone(),
                    span,
                });
            }
        }
    }
    (
        [(header::CONTENT_TYPE, "application/x-protobuf")],
        ExportTraceServiceResponse::default().encode_to_vec(),
    )
        .into_response()
}

// ---------------------------------------------------------------------------
// Reading received spans
// ---------------------------------------------------------------------------

fn attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn attr_str<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attr(attributes, key)? {
        any_value::Value::StringValue(s) => Some(s),
        other => panic!("{key} is not a string: {other:?}"),
    }
}

fn attr_i64(attributes: &[KeyValue], key: &str) -> Option<i64> {
    match attr(attributes, key)? {
        any_value::Value::IntValue(i) => Some(*i),
        other => panic!("{key} is not an int: {other:?}"),
    }
}

fn attr_f64(attributes: &[KeyValue], key: &str) -> Option<f64> {
    match attr(attributes, key)? {
        any_value::Value::DoubleValue(f) => Some(*f),
        other => panic!("{key} is not a double: {other:?}"),
    }
}

fn attr_bool(attributes: &[KeyValue], key: &str) -> Option<bool> {
    match attr(attributes, key)? {
        any_value::Value::BoolValue(b) => Some(*b),
        other => panic!("{key} is not a bool: {other:?}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn nanos(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

fn value_json(value: Option<&any_value::Value>) -> serde_json::Value {
    match value {
        Some(any_value::Value::StringValue(s)) => s.clone().into(),
        Some(any_value::Value::IntValue(i)) => (*i).into(),
        Some(any_value::Value::DoubleValue(f)) => (*f).into(),
        Some(any_value::Value::BoolValue(b)) => (*b).into(),
        other => format!("{other:?}").into(),
    }
}

fn attributes_json(attributes: &[KeyValue]) -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> = attributes
        .iter()
        .map(|kv| {
            let value = kv.value.as_ref().and_then(|v| v.value.as_ref());
            (kv.key.clone(), value_json(value))
        })
        .collect();
    serde_json::Value::Object(map)
}

/// A JSON rendering of a received span, for failure messages (and for
/// the example in docs/tracing.md).
fn render(received: &Received) -> serde_json::Value {
    let s = &received.span;
    serde_json::json!({
        "name": s.name,
        "scope": received.scope,
        "kind": s.kind().as_str_name(),
        "trace_id": hex(&s.trace_id),
        "span_id": hex(&s.span_id),
        "parent_span_id": hex(&s.parent_span_id),
        "start_time_unix_nano": s.start_time_unix_nano,
        "end_time_unix_nano": s.end_time_unix_nano,
        "attributes": attributes_json(&s.attributes),
        "events": s.events.iter().map(|e| serde_json::json!({
            "name": e.name,
            "time_unix_nano": e.time_unix_nano,
            "attributes": attributes_json(&e.attributes),
        })).collect::<Vec<_>>(),
        "status": s.status.as_ref().map(|st| serde_json::json!({
            "code": st.code().as_str_name(),
            "message": st.message,
        })),
        "resource": attributes_json(&received.resource),
    })
}

fn describe(received: &Received) -> String {
    render(received).to_string()
}

fn named<'a>(spans: &'a [Received], name: &str) -> Vec<&'a Received> {
    spans.iter().filter(|r| r.span.name == name).collect()
}

/// mapscope spans of `name` about map `map`.
fn of_map<'a>(spans: &'a [Received], name: &str, map: &str) -> Vec<&'a Received> {
    spans
        .iter()
        .filter(|r| {
            r.span.name == name && attr_str(&r.span.attributes, "mapscope.map.name") == Some(map)
        })
        .collect()
}

/// Standalone misuse spans for `max_entries` crossings of map `map` (as
/// opposed to the detector's `unbounded_growth` firings, which say
/// "exceed max_entries").
fn crossings<'a>(spans: &'a [Received], map: &str) -> Vec<&'a Received> {
    of_map(spans, MISUSE_SPAN, map)
        .into_iter()
        .filter(|r| {
            attr_str(&r.span.attributes, "mapscope.misuse.details")
                .is_some_and(|d| d.starts_with("an insert took the map"))
        })
        .collect()
}

fn misuse_events(span: &Span) -> Vec<&span::Event> {
    span.events
        .iter()
        .filter(|e| e.name == MISUSE_EVENT)
        .collect()
}

// ---------------------------------------------------------------------------
// Setup
// ---------------------------------------------------------------------------

/// A configuration exporting to `receiver`, polling fast, not global.
fn config_for(receiver: &Receiver) -> OtelConfig {
    OtelConfig::from_lookup(|_| None)
        .expect("an empty environment is valid")
        .with_endpoint(receiver.url())
        .with_poll_interval(POLL)
        .with_set_global(false)
}

fn start(registry: &Registry, receiver: &Receiver) -> OtelGuard {
    let guard = otel::init_with(registry, config_for(receiver)).expect("init_with");
    assert!(guard.is_enabled());
    assert_eq!(guard.disabled_reason(), None);
    guard
}

/// A lookup over fixed variables.
fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: BTreeMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| vars.get(name).cloned()
}

/// A registered map presized to 512 buckets and filled to the brim: the
/// next new key starts a doubling with 512 old buckets to evacuate.
fn full_map(registry: &Registry, name: &str) -> Map {
    let mut map = Map::builder(name)
        .label("tenant", "acme")
        .capacity(FULL_512 as usize)
        .register(registry)
        .expect("register");
    for key in 0..FULL_512 {
        map.insert(key, key);
    }
    let stats = map.stats();
    assert_eq!(stats.buckets, 512);
    assert_eq!(stats.growth, None);
    assert_eq!(
        stats.growths[GrowthKind::Double],
        0,
        "presized: no growth while filling"
    );
    map
}

/// Inserts new keys from `next` until the growth in progress finishes.
/// Returns the number of writes and the next unused key.
fn write_until_grown(map: &mut Map, mut next: u64) -> (u64, u64) {
    let mut writes = 0;
    while map.stats().growth.is_some() {
        map.insert(next, next);
        next += 1;
        writes += 1;
        assert!(writes <= 10_000, "the growth never finished");
    }
    (writes, next)
}

// ---------------------------------------------------------------------------
// Growth
// ---------------------------------------------------------------------------

#[test]
fn grow_span_nests_under_the_span_current_at_growth_start() {
    let receiver = Receiver::start();
    let registry = Registry::new();
    let guard = start(&registry, &receiver);
    let tracer = guard.provider().expect("enabled").tracer("app");
    let mut map = full_map(&registry, "sessions");

    // The application span is current while the insert that starts the
    // doubling runs, and while a few more writes help evacuate.
    let app_span = tracer.start("GET /sessions");
    let app = app_span.span_context().clone();
    let cx = Context::current_with_span(app_span);
    let attached = cx.clone().attach();
    let before = SystemTime::now();
    map.insert(FULL_512, 0);
    let started = map.stats().growth.expect("the insert started a doubling");
    assert_eq!(started.old_buckets, 512);
    assert_eq!(
        started.helping_writes, 1,
        "the triggering insert helps once"
    );
    let mut next = FULL_512 + 1;
    for _ in 0..10 {
        map.insert(next, next);
        next += 1;
    }
    assert!(map.stats().growth.is_some(), "still evacuating");
    drop(attached);
    cx.span().end();

    // The rest of the evacuation runs outside any span: the grow span
    // still belongs to the request that started it.
    assert!(!Context::current().has_active_span());
    let (writes_after, _) = write_until_grown(&mut map, next);
    let after = SystemTime::now();
    let stats = map.stats();
    assert_eq!(stats.growth, None);
    assert_eq!(stats.buckets, 1024);
    assert_eq!(stats.growths[GrowthKind::Double], 1);
    let helping = 1 + 10 + writes_after;

    guard.shutdown();
    let spans = receiver.wait_for("the grow span and the app span", |spans| {
        !of_map(spans, GROW_SPAN, "sessions").is_empty()
            && !named(spans, "GET /sessions").is_empty()
    });
    let grows = of_map(&spans, GROW_SPAN, "sessions");
    assert_eq!(grows.len(), 1, "one growth, one span: {grows:#?}");
    let grow = grows[0];
    eprintln!(
        "grow span:\n{}",
        serde_json::to_string_pretty(&render(grow)).unwrap()
    );
    let s = &grow.span;
    let a = &s.attributes;

    // Parent: the application span.
    assert_eq!(hex(&s.trace_id), app.trace_id().to_string());
    assert_eq!(hex(&s.parent_span_id), app.span_id().to_string());
    assert_ne!(s.span_id, s.parent_span_id);
    let app_received = named(&spans, "GET /sessions")[0];
    assert_eq!(app_received.span.span_id, s.parent_span_id);
    assert_eq!(grow.scope, SCOPE);
    assert_eq!(s.kind(), span::SpanKind::Internal);
    assert_eq!(grow.path, "/v1/traces");

    // Timestamps: the evacuation, from the triggering insert to the write
    // that moved the last old bucket.
    assert!(s.start_time_unix_nano <= s.end_time_unix_nano);
    assert!(
        s.start_time_unix_nano >= nanos(before),
        "start {} is before the triggering insert {}",
        s.start_time_unix_nano,
        nanos(before)
    );
    assert!(
        s.end_time_unix_nano <= nanos(after),
        "end {} is after the growth finished {}",
        s.end_time_unix_nano,
        nanos(after)
    );
    let wall = (s.end_time_unix_nano - s.start_time_unix_nano) as f64 / 1e9;

    // Attributes: the map's stats.
    assert_eq!(attr_str(a, "mapscope.map.name"), Some("sessions"));
    assert_eq!(attr_str(a, "mapscope.map.label.tenant"), Some("acme"));
    assert_eq!(attr_str(a, "mapscope.growth.kind"), Some("double"));
    assert_eq!(attr_i64(a, "mapscope.buckets.before"), Some(512));
    assert_eq!(attr_i64(a, "mapscope.buckets.after"), Some(1024));
    assert_eq!(
        attr_i64(a, "mapscope.entries.at_start"),
        Some(started.entries_at_start as i64)
    );
    assert_eq!(
        attr_i64(a, "mapscope.entries.at_start"),
        Some(FULL_512 as i64)
    );
    // The write that finishes the evacuation helps before it inserts.
    assert_eq!(
        attr_i64(a, "mapscope.entries.at_end"),
        Some(stats.entries as i64 - 1)
    );
    assert_eq!(attr_i64(a, "mapscope.evacuated_old_buckets"), Some(512));
    assert_eq!(attr_i64(a, "mapscope.helping_writes"), Some(helping as i64));
    assert!(helping > 1 && helping <= 512, "{helping} helping writes");
    let work = attr_f64(a, "mapscope.evacuation.work_seconds").expect("work_seconds");
    assert!(work > 0.0, "evacuating 512 buckets took no time?");
    assert!(
        work <= wall + 1e-6,
        "evacuation work {work}s exceeds the wall duration {wall}s"
    );
    assert_eq!(attr_str(a, "mapscope.growth.finished_by"), Some("writes"));
    assert_eq!(attr_bool(a, "mapscope.growth.shrink"), Some(false));
    assert!(s.events.is_empty());
    assert_ne!(
        s.status.as_ref().map(|st| st.code()),
        Some(status::StatusCode::Error)
    );
    // The resource comes from the SDK (service.name is always set).
    assert!(attr_str(&grow.resource, "service.name").is_some());
    // The span's wall duration is the one the map's stats count.
    assert!(
        (stats.growth_seconds[GrowthKind::Double] - wall).abs() < 1e-6,
        "stats say {}s, the span {wall}s",
        stats.growth_seconds[GrowthKind::Double]
    );
}

#[test]
fn complete_growth_and_shrink_are_labelled() {
    let receiver = Receiver::start();
    let registry = Registry::new();
    let guard = start(&registry, &receiver);

    // A doubling that complete_growth() finishes, with no span current:
    // the grow span is a root span.
    let mut jobs = full_map(&registry, "jobs");
    let before = SystemTime::now();
    jobs.insert(FULL_512, 0);
    jobs.insert(FULL_512 + 1, 0);
    let growth = jobs.stats().growth.expect("doubling in progress");
    assert_eq!(growth.helping_writes, 2);
    jobs.complete_growth();
    let after = SystemTime::now();
    assert_eq!(jobs.stats().growth, None);

    // Halvings: remove most entries and shrink to fit.
    let mut cache = full_map(&registry, "cache");
    for key in 100..FULL_512 {
        cache.remove(&key);
    }
    cache.shrink_to_fit();
    cache.complete_growth();
    let cache_stats = cache.stats();
    assert_eq!(cache_stats.growth, None);
    assert!(cache_stats.growths[GrowthKind::Shrink] >= 1);

    guard.shutdown();
    let spans = receiver.wait_for("the jobs and cache grow spans", |spans| {
        !of_map(spans, GROW_SPAN, "jobs").is_empty()
            && of_map(spans, GROW_SPAN, "cache").len() as u64
                >= cache_stats.growths[GrowthKind::Shrink]
    });

    let jobs_spans = of_map(&spans, GROW_SPAN, "jobs");
    assert_eq!(jobs_spans.len(), 1, "{jobs_spans:#?}");
    let s = &jobs_spans[0].span;
    let a = &s.attributes;
    assert_eq!(
        attr_str(a, "mapscope.growth.finished_by"),
        Some("complete_growth")
    );
    assert_eq!(attr_str(a, "mapscope.growth.kind"), Some("double"));
    assert_eq!(attr_i64(a, "mapscope.helping_writes"), Some(2));
    assert_eq!(attr_i64(a, "mapscope.evacuated_old_buckets"), Some(512));
    assert_eq!(attr_i64(a, "mapscope.buckets.before"), Some(512));
    assert_eq!(attr_i64(a, "mapscope.buckets.after"), Some(1024));
    assert!(
        s.parent_span_id.is_empty(),
        "no span was current: a root span"
    );
    assert!(s.start_time_unix_nano >= nanos(before));
    assert!(s.start_time_unix_nano <= s.end_time_unix_nano);
    assert!(s.end_time_unix_nano <= nanos(after));

    let halvings = of_map(&spans, GROW_SPAN, "cache");
    assert_eq!(
        halvings.len() as u64,
        cache_stats.growths[GrowthKind::Shrink],
        "{halvings:#?}"
    );
    for halving in halvings {
        let a = &halving.span.attributes;
        assert_eq!(attr_str(a, "mapscope.growth.kind"), Some("shrink"));
        assert_eq!(attr_bool(a, "mapscope.growth.shrink"), Some(true));
        let before = attr_i64(a, "mapscope.buckets.before").unwrap();
        let after = attr_i64(a, "mapscope.buckets.after").unwrap();
        assert_eq!(after * 2, before, "a halving halves");
        assert_eq!(attr_i64(a, "mapscope.evacuated_old_buckets"), Some(before));
        assert_eq!(attr_i64(a, "mapscope.entries.at_start"), Some(100));
    }
}

/// A growth started inside a `tracing` span nests under that span's
/// OpenTelemetry span. `activation` is tracing-opentelemetry's context
/// activation: on, the span's context is also the current OTel context;
/// off, mapscope finds it through `tracing::Span::current()`.
fn grow_under_tracing_span(activation: bool) {
    let receiver = Receiver::start();
    let registry = Registry::new();
    let guard = start(&registry, &receiver);
    let tracer = guard.provider().expect("enabled").tracer("app-tracing");
    let name = if activation {
        "activated"
    } else {
        "not_activated"
    };
    let mut map = full_map(&registry, name);

    let subscriber = tracing_subscriber::registry().with(
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_context_activation(activation),
    );
    let (trace_id, span_id) = tracing::subscriber::with_default(subscriber, || {
        let request = tracing::info_span!("handle_request", map = name);
        let _entered = request.enter();
        map.insert(FULL_512, 0);
        assert!(map.stats().growth.is_some());
        let cx = request.context();
        let ids = cx.span().span_context().clone();
        assert!(ids.is_valid());
        (ids.trace_id(), ids.span_id())
    });
    map.complete_growth();

    guard.shutdown();
    let spans = receiver.wait_for("the grow span and the tracing span", |spans| {
        !of_map(spans, GROW_SPAN, name).is_empty() && !named(spans, "handle_request").is_empty()
    });
    let request = named(&spans, "handle_request");
    assert_eq!(request.len(), 1);
    let request = &request[0].span;
    assert_eq!(hex(&request.span_id), span_id.to_string());
    let grow = &of_map(&spans, GROW_SPAN, name)[0].span;
    assert_eq!(hex(&grow.trace_id), trace_id.to_string());
    assert_eq!(grow.trace_id, request.trace_id);
    assert_eq!(grow.parent_span_id, request.span_id);
}

#[test]
fn grow_span_nests_under_a_tracing_span() {
    grow_under_tracing_span(true);
}

#[test]
fn grow_span_nests_under_a_tracing_span_without_context_activation() {
    grow_under_tracing_span(false);
}

#[test]
fn global_provider_carries_application_and_mapscope_spans() {
    // The only test that installs a global provider; no other test reads it.
    let receiver = Receiver::start();
    let registry = Registry::new();
    let guard =
        otel::init_with(&registry, config_for(&receiver).with_set_global(true)).expect("init_with");
    let mut map = full_map(&registry, "global");
    opentelemetry::global::tracer("app").in_span("global-request", |cx| {
        map.insert(FULL_512, 0);
        // Ended explicitly: see
        // `capturing_the_context_does_not_keep_the_application_span_open`.
        cx.span().end();
    });
    map.complete_growth();
    guard.shutdown();
    let spans = receiver.wait_for("the global app span and its grow span", |spans| {
        !of_map(spans, GROW_SPAN, "global").is_empty() && !named(spans, "global-request").is_empty()
    });
    let request = &named(&spans, "global-request")[0].span;
    let grow = &of_map(&spans, GROW_SPAN, "global")[0].span;
    assert_eq!(grow.parent_span_id, request.span_id);
    assert_eq!(grow.trace_id, request.trace_id);
}

/// The context captured at growth start must not own the application's
/// span: a span that ends when it is dropped (`Tracer::in_span`, the usual
/// way) must end when the application drops it, not when mapscope lets go
/// of the growth event.
#[test]
fn capturing_the_context_does_not_keep_the_application_span_open() {
    let receiver = Receiver::start();
    let registry = Registry::new();
    let guard = start(&registry, &receiver);
    let tracer = guard.provider().expect("enabled").tracer("app");
    let mut map = full_map(&registry, "open");
    tracer.in_span("ends-on-drop", |_cx| {
        map.insert(FULL_512, 0);
    });
    let returned = SystemTime::now();
    map.complete_growth();
    // The registry (and its recent events) are still alive here, as they
    // are in a running service.
    guard.shutdown();
    let spans = receiver.wait_for("the application span, ended by drop", |spans| {
        !named(spans, "ends-on-drop").is_empty()
    });
    let request = &named(&spans, "ends-on-drop")[0].span;
    assert!(request.end_time_unix_nano <= nanos(returned));
    let grow = &of_map(&spans, GROW_SPAN, "open")[0].span;
    assert_eq!(grow.parent_span_id, request.span_id);
    drop(registry);
}

/// A growth that `clear()` abandons mid-evacuation still ends with a
/// span, and the span says how much of the evacuation actually happened.
#[test]
fn abandoned_growth_reports_what_was_evacuated() {
    let receiver = Receiver::start();
    let registry = Registry::new();
    let guard = start(&registry, &receiver);
    let mut map = full_map(&registry, "abandoned");
    let evacuated_before = map.stats().evacuated_buckets_total;
    map.insert(FULL_512, 0);
    map.insert(FULL_512 + 1, 0);
    assert!(map.stats().growth.is_some());
    map.clear();
    let stats = map.stats();
    assert_eq!(stats.growth, None, "clear() ends the growth");
    let evacuated = stats.evacuated_buckets_total - evacuated_before;
    assert!(
        evacuated < 512,
        "two writes cannot have evacuated 512 buckets"
    );
    guard.shutdown();
    let spans = receiver.wait_for("the abandoned growth's span", |spans| {
        !of_map(spans, GROW_SPAN, "abandoned").is_empty()
    });
    let a = &of_map(&spans, GROW_SPAN, "abandoned")[0].span.attributes;
    assert_eq!(attr_i64(a, "mapscope.buckets.before"), Some(512));
    assert_eq!(attr_i64(a, "mapscope.helping_writes"), Some(2));
    assert_eq!(
        attr_i64(a, "mapscope.evacuated_old_buckets"),
        Some(evacuated as i64)
    );
}

// ---------------------------------------------------------------------------
// Misuse
// ---------------------------------------------------------------------------

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

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
const CLIENT_AT: &str = "2026-01-01T12:00:00.5Z";

/// Program errors reported by clients in other languages (through the
/// sidecar) become standalone spans in the client's trace, with
/// `error.type` and an error status (OTel's recording-errors conventions).
#[test]
fn client_reported_misuse_is_an_error_span_in_the_clients_trace() {
    let receiver = Receiver::start();
    let registry = Registry::new();
    let store = Sources::new(&registry, Limits::default());
    let guard = otel::init_with(&registry, config_for(&receiver)).unwrap();
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
    let registry = Registry::new();
    let store = Sources::new(&registry, Limits::default());
    let guard = otel::init_with(&registry, config_for(&receiver)).unwrap();
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
    let registry = Registry::new();
    let store = Sources::new(&registry, Limits::default());
    let guard = otel::init_with(&registry, config_for(&receiver)).unwrap();
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

// ---------------------------------------------------------------------------
// Rate limit
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Switches and configuration
// ---------------------------------------------------------------------------

/// Grows a map and crosses `max_entries`, with and without a span, and
/// runs the detectors: everything that would produce spans.
fn provoke(registry: &Registry, name: &str) {
    let mut map = Map::builder(name)
        .max_entries(10)
        .register(registry)
        .unwrap();
    // A provider of its own (no exporter), so a span is really active
    // without touching the global provider.
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
    let tracer = provider.tracer("provoke");
    tracer.in_span("provoke", |_cx| {
        for key in 0..20 {
            map.insert(key, key);
        }
    });
    for key in 20..2000 {
        map.insert(key, key);
    }
    map.complete_growth();
    map.publish();
    registry.snapshot();
}

#[test]
fn disabled_configurations_export_nothing() {
    let receiver = Receiver::start();
    let traces = receiver.url();
    let base = receiver.base();
    let cases: [(&str, Vec<(&str, &str)>); 5] = [
        (
            "OTEL_SDK_DISABLED",
            vec![
                ("OTEL_SDK_DISABLED", "true"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", base.as_str()),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces.as_str()),
            ],
        ),
        (
            "OTEL_SDK_DISABLED",
            vec![
                ("OTEL_SDK_DISABLED", " TRUE "),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", base.as_str()),
            ],
        ),
        (
            "OTEL_TRACES_EXPORTER",
            vec![
                ("OTEL_TRACES_EXPORTER", "none"),
                ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces.as_str()),
            ],
        ),
        (
            "OTEL_TRACES_EXPORTER",
            vec![
                ("OTEL_TRACES_EXPORTER", "otlp, none"),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", base.as_str()),
            ],
        ),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            vec![
                ("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
                ("OTEL_SERVICE_NAME", "x"),
            ],
        ),
    ];
    let mut guards = Vec::new();
    let mut registries = Vec::new();
    for (i, (reason, vars)) in cases.iter().enumerate() {
        let config = OtelConfig::from_lookup(env(vars)).expect("valid configuration");
        assert_eq!(config.endpoint, None, "case {i}");
        let why = config.disabled.clone().expect("a reason");
        assert!(
            why.contains(reason),
            "case {i}: {why:?} should name {reason}"
        );
        let registry = Registry::new();
        let guard = otel::init_with(&registry, config.with_poll_interval(POLL)).unwrap();
        assert!(!guard.is_enabled(), "case {i}");
        assert!(guard.provider().is_none());
        assert_eq!(guard.disabled_reason(), Some(why.as_str()));
        provoke(&registry, "disabled");
        guard.flush();
        guards.push(guard);
        registries.push(registry);
    }
    // With export off nothing is installed (no provider, no event thread),
    // so nothing can reach the receiver: no need to wait for it.
    for guard in guards {
        guard.shutdown();
    }
    for registry in &registries {
        assert_eq!(registry.snapshot().trace_events_suppressed, 0);
    }
    assert_eq!(receiver.requests(), 0, "{:#?}", receiver.spans());
    assert!(receiver.spans().is_empty());

    // OTEL_SDK_DISABLED=false does not disable.
    let config = OtelConfig::from_lookup(env(&[
        ("OTEL_SDK_DISABLED", "false"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", base.as_str()),
    ]))
    .unwrap();
    assert_eq!(config.disabled, None);
    assert_eq!(config.endpoint.as_deref(), Some(traces.as_str()));
}

#[test]
fn unsupported_values_fail_naming_the_variable() {
    let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
    let error = OtelConfig::from_lookup(env(&[
        endpoint,
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
    ]))
    .expect_err("http/json is not supported");
    match &error {
        OtelError::Unsupported {
            variable, value, ..
        } => {
            assert_eq!(*variable, "OTEL_EXPORTER_OTLP_PROTOCOL");
            assert_eq!(value, "http/json");
        }
        other => panic!("unexpected error {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains("OTEL_EXPORTER_OTLP_PROTOCOL"), "{message}");
    assert!(message.contains("http/json"), "{message}");
    assert!(
        message.contains("http/protobuf"),
        "{message}: says what to use"
    );

    let error = OtelConfig::from_lookup(env(&[endpoint, ("OTEL_TRACES_EXPORTER", "console")]))
        .expect_err("console is not supported");
    assert!(
        error.to_string().contains("OTEL_TRACES_EXPORTER"),
        "{error}"
    );
    assert!(error.to_string().contains("console"), "{error}");

    let error = OtelConfig::from_lookup(env(&[
        endpoint,
        ("MAPSCOPE_OTEL_MISUSE_PER_SECOND", "lots"),
    ]))
    .expect_err("not a number");
    assert!(
        error
            .to_string()
            .contains("MAPSCOPE_OTEL_MISUSE_PER_SECOND"),
        "{error}"
    );

    let grpc = OtelConfig::from_lookup(env(&[endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]));
    if cfg!(feature = "grpc") {
        let config = grpc.expect("grpc with the grpc feature");
        assert_eq!(config.protocol, Protocol::Grpc);
        // gRPC endpoints are used as given.
        assert_eq!(config.endpoint.as_deref(), Some("http://127.0.0.1:4318"));
    } else {
        let error = grpc.expect_err("grpc needs the grpc feature");
        assert!(
            error.to_string().contains("OTEL_EXPORTER_OTLP_PROTOCOL"),
            "{error}"
        );
        assert!(error.to_string().contains("grpc"), "{error}");
    }
}

#[test]

fn unsupported_traces_protocol_names_the_traces_variable() {
    let error = OtelConfig::from_lookup(env(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
    ]))
    .expect_err("http/json is not supported");
    assert!(
        error
            .to_string()
            .starts_with("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="),
        "the error names the variable that was set: {error}"
    );
}

#[test]
fn configuration_from_the_environment() {
    let config = |vars: &[(&str, &str)]| OtelConfig::from_lookup(env(vars)).unwrap();

    let defaults = config(&[]);
    assert_eq!(defaults.endpoint, None);
    assert!(defaults
        .disabled
        .unwrap()
        .contains("OTEL_EXPORTER_OTLP_ENDPOINT"));
    assert_eq!(defaults.protocol, Protocol::HttpProtobuf);
    assert_eq!(defaults.misuse_per_second, 10);
    assert_eq!(defaults.poll_interval, Duration::from_millis(200));
    assert!(defaults.set_global);

    // The base endpoint gets the signal path; the traces endpoint is used
    // as is, and wins.
    for base in ["http://collector:4318", "http://collector:4318/"] {
        let c = config(&[("OTEL_EXPORTER_OTLP_ENDPOINT", base)]);
        assert_eq!(
            c.endpoint.as_deref(),
            Some("http://collector:4318/v1/traces")
        );
        assert_eq!(c.disabled, None);
    }
    let c = config(&[(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "http://collector:4318/custom",
    )]);
    assert_eq!(c.endpoint.as_deref(), Some("http://collector:4318/custom"));
    let c = config(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://base:4318"),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:4318/x"),
    ]);
    assert_eq!(c.endpoint.as_deref(), Some("http://traces:4318/x"));

    let c = config(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://base:4318"),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_TRACES_EXPORTER", "otlp"),
        ("MAPSCOPE_OTEL_MISUSE_PER_SECOND", "3"),
    ]);
    assert_eq!(c.protocol, Protocol::HttpProtobuf);
    assert_eq!(c.misuse_per_second, 3);

    // Builders override the environment.
    let c = config(&[])
        .with_endpoint("http://x/v1/traces")
        .with_misuse_per_second(1)
        .with_poll_interval(POLL)
        .with_set_global(false);
    assert_eq!(c.endpoint.as_deref(), Some("http://x/v1/traces"));
    assert_eq!(c.disabled, None, "an explicit endpoint enables export");
    assert_eq!(c.misuse_per_second, 1);
    assert_eq!(c.poll_interval, POLL);
    assert!(!c.set_global);
}

/// An `https://` endpoint cannot work in this build: the OTLP exporter's
/// reqwest client has no TLS feature. It must fail at `init_with` (or
/// TLS must be enabled, and this test replaced by one against a TLS
/// receiver), not be accepted and then drop every export.
#[test]
fn https_endpoint_without_tls_is_rejected_at_init() {
    let registry = Registry::new();
    let config = OtelConfig::from_lookup(env(&[(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "https://collector.example:4318",
    )]))
    .unwrap()
    .with_set_global(false);
    let result = otel::init_with(&registry, config);
    let error = result.expect_err("https needs TLS, which this build lacks");
    assert!(error.to_string().contains("https"), "{error}");
}

/// The resolved endpoints work end to end: `OTEL_EXPORTER_OTLP_ENDPOINT`
/// reaches `/v1/traces`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` its own path.
#[test]
fn endpoints_from_the_environment_reach_the_receiver() {
    let receiver = Receiver::start();
    let custom = format!("{}/custom/traces", receiver.base());
    let cases = [
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            receiver.base(),
            "via_base",
            "/v1/traces",
        ),
        (
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            custom,
            "via_traces",
            "/custom/traces",
        ),
    ];
    for (variable, value, name, path) in cases {
        let config = OtelConfig::from_lookup(env(&[(variable, &value)]))
            .unwrap()
            .with_poll_interval(POLL)
            .with_set_global(false);
        let registry = Registry::new();
        let guard = otel::init_with(&registry, config).unwrap();
        assert!(guard.is_enabled());
        let mut map = full_map(&registry, name);
        map.insert(FULL_512, 0);
        map.complete_growth();
        guard.shutdown();
        let spans = receiver.wait_for(variable, |spans| !of_map(spans, GROW_SPAN, name).is_empty());
        assert_eq!(of_map(&spans, GROW_SPAN, name)[0].path, path);
    }
}
