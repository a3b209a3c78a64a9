//! The OTLP/HTTP receiver the tests export to, which decodes every request
//! with the OTLP protobuf definitions and keeps the spans, and the helpers
//! that read attributes and events off the spans it received.

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
use mapscope::otel::{MISUSE_EVENT, MISUSE_SPAN};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{span, Span};
use prost::Message as _;

use crate::WAIT;

/// One span as the receiver got it.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    /// The request path it was posted to.
    pub(crate) path: String,
    /// The instrumentation scope's name.
    pub(crate) scope: String,
    /// The resource's attributes.
    pub(crate) resource: Vec<KeyValue>,
    pub(crate) span: Span,
}

#[derive(Debug, Default)]
pub(crate) struct Collected {
    pub(crate) spans: Vec<Received>,
    pub(crate) requests: usize,
    /// Anything the receiver did not like (bad content type, encoding,
    /// undecodable body). Checked by every test.
    pub(crate) problems: Vec<String>,
}

pub(crate) type Shared = Arc<Mutex<Collected>>;

/// An OTLP/HTTP traces receiver on `127.0.0.1:<ephemeral>`, answering
/// `POST /v1/traces` (and `POST /custom/traces`, for endpoints used as is).
pub(crate) struct Receiver {
    pub(crate) addr: SocketAddr,
    pub(crate) shared: Shared,
    pub(crate) stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub(crate) thread: Option<thread::JoinHandle<()>>,
}

impl Receiver {
    pub(crate) fn start() -> Self {
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
    pub(crate) fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The traces URL.
    pub(crate) fn url(&self) -> String {
        format!("{}/v1/traces", self.base())
    }

    pub(crate) fn spans(&self) -> Vec<Received> {
        self.shared.lock().unwrap().spans.clone()
    }

    pub(crate) fn requests(&self) -> usize {
        self.shared.lock().unwrap().requests
    }

    pub(crate) fn assert_no_problems(&self) {
        let problems = self.shared.lock().unwrap().problems.clone();
        assert!(problems.is_empty(), "the receiver saw: {problems:#?}");
    }

    /// Waits (at most [`WAIT`]) until `done` holds for the spans received.
    pub(crate) fn wait_for(&self, what: &str, done: impl Fn(&[Received]) -> bool) -> Vec<Received> {
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
pub(crate) async fn export(
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

pub(crate) fn attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

pub(crate) fn attr_str<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attr(attributes, key)? {
        any_value::Value::StringValue(s) => Some(s),
        other => panic!("{key} is not a string: {other:?}"),
    }
}

pub(crate) fn attr_i64(attributes: &[KeyValue], key: &str) -> Option<i64> {
    match attr(attributes, key)? {
        any_value::Value::IntValue(i) => Some(*i),
        other => panic!("{key} is not an int: {other:?}"),
    }
}

pub(crate) fn attr_f64(attributes: &[KeyValue], key: &str) -> Option<f64> {
    match attr(attributes, key)? {
        any_value::Value::DoubleValue(f) => Some(*f),
        other => panic!("{key} is not a double: {other:?}"),
    }
}

pub(crate) fn attr_bool(attributes: &[KeyValue], key: &str) -> Option<bool> {
    match attr(attributes, key)? {
        any_value::Value::BoolValue(b) => Some(*b),
        other => panic!("{key} is not a bool: {other:?}"),
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn nanos(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

pub(crate) fn value_json(value: Option<&any_value::Value>) -> serde_json::Value {
    match value {
        Some(any_value::Value::StringValue(s)) => s.clone().into(),
        Some(any_value::Value::IntValue(i)) => (*i).into(),
        Some(any_value::Value::DoubleValue(f)) => (*f).into(),
        Some(any_value::Value::BoolValue(b)) => (*b).into(),
        other => format!("{other:?}").into(),
    }
}

pub(crate) fn attributes_json(attributes: &[KeyValue]) -> serde_json::Value {
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
pub(crate) fn render(received: &Received) -> serde_json::Value {
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

pub(crate) fn describe(received: &Received) -> String {
    render(received).to_string()
}

pub(crate) fn named<'a>(spans: &'a [Received], name: &str) -> Vec<&'a Received> {
    spans.iter().filter(|r| r.span.name == name).collect()
}

/// mapscope spans of `name` about map `map`.
pub(crate) fn of_map<'a>(spans: &'a [Received], name: &str, map: &str) -> Vec<&'a Received> {
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
pub(crate) fn crossings<'a>(spans: &'a [Received], map: &str) -> Vec<&'a Received> {
    of_map(spans, MISUSE_SPAN, map)
        .into_iter()
        .filter(|r| {
            attr_str(&r.span.attributes, "mapscope.misuse.details")
                .is_some_and(|d| d.starts_with("an insert took the map"))
        })
        .collect()
}

pub(crate) fn misuse_events(span: &Span) -> Vec<&span::Event> {
    span.events
        .iter()
        .filter(|e| e.name == MISUSE_EVENT)
        .collect()
}
