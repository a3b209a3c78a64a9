//! OpenTelemetry: growth spans and misuse events in the application's
//! traces, exported over OTLP.
//!
//! One call, [`init`], reads the standard `OTEL_*` variables, builds an
//! OTLP exporter (http/protobuf; gRPC with the `grpc` feature) behind a
//! batch processor, and hooks the registry:
//! - at **growth start** (inside the write that triggers it) the current
//!   context is captured: the plain OTel `Context::current()`, or the
//!   current `tracing` span through `tracing-opentelemetry`. When neither
//!   has an active span this costs a thread-local check;
//! - when the growth **finishes**, a `mapscope.map.grow` span is exported
//!   with explicit timestamps (growth start to last evacuated bucket),
//!   child of the captured context, so it nests under the request that
//!   triggered it;
//! - a **misuse** in a thread with an active span becomes a
//!   `mapscope.misuse` event on that span; otherwise a short standalone
//!   `mapscope.map.misuse` span. At most `misuse_per_second` per map per
//!   second of the registry's clock: the registry applies the limit (one
//!   limit for in-process maps, client reports and crashes) and marks what
//!   it kept from tracing, so this module traces what it is given.
//!
//! In the sidecar, client reports and crash files are rows and events of
//! the same registry, so their misuse and growth spans come from the same
//! event ring.
//!
//! With no endpoint configured, `OTEL_SDK_DISABLED=true` or
//! `OTEL_TRACES_EXPORTER=none`, nothing is installed and nothing is paid.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{SdkTracerProvider, Tracer};
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::registry::{
    CapturedContext, Event, GrowthFinished, GrowthStarted, MapId, MisuseEvent, Registry,
    TracingHooks,
};

/// The name of the span exported for each growth.
pub const GROW_SPAN: &str = "mapscope.map.grow";
/// The name of the standalone span for a misuse with no active span.
pub const MISUSE_SPAN: &str = "mapscope.map.misuse";
/// The name of the span event recorded for a misuse.
pub const MISUSE_EVENT: &str = "mapscope.misuse";
/// The instrumentation scope of mapscope's spans.
pub const SCOPE: &str = "mapscope";

/// OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// `http/protobuf` (the default).
    HttpProtobuf,
    /// `grpc` (needs the `grpc` cargo feature).
    Grpc,
}

/// What [`init_with`] sets up.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct OtelConfig {
    /// The traces endpoint; `None` disables tracing export.
    pub endpoint: Option<String>,
    /// The transport.
    pub protocol: Protocol,
    /// Why export is off, when it is.
    pub disabled: Option<String>,
    /// Most misuse events per map per second that reach tracing. Default 10.
    pub misuse_per_second: u32,
    /// How often events are turned into spans. Default 200 ms.
    pub poll_interval: Duration,
    /// Whether to install the provider as the global one, so the
    /// application's own spans go to the same exporter. Default true.
    pub set_global: bool,
}

/// Why OpenTelemetry could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtelError {
    /// An `OTEL_*` variable has a value mapscope does not support.
    #[error("{variable}={value:?} is not supported: {hint}")]
    Unsupported {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
        /// What to set instead.
        hint: &'static str,
    },
    /// The exporter could not be built.
    #[error("cannot build the OTLP exporter for {endpoint}: {message}")]
    Exporter {
        /// The endpoint.
        endpoint: String,
        /// The exporter's error.
        message: String,
    },
}

impl OtelConfig {
    /// Reads the standard variables: `OTEL_SDK_DISABLED`,
    /// `OTEL_TRACES_EXPORTER`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`,
    /// and `MAPSCOPE_OTEL_MISUSE_PER_SECOND`. (Headers, timeout, service
    /// name, resource attributes and the sampler are read by the
    /// OpenTelemetry SDK and exporter themselves.)
    pub fn from_env() -> Result<Self, OtelError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`OtelConfig::from_env`], over any lookup (tests use a map).
    ///
    /// ```
    /// use mapscope::otel::OtelConfig;
    /// let vars = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")];
    /// let lookup = |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.to_string());
    /// let config = OtelConfig::from_lookup(lookup).unwrap();
    /// assert_eq!(config.endpoint.as_deref(), Some("http://127.0.0.1:4318/v1/traces"));
    ///
    /// let off = OtelConfig::from_lookup(|name| (name == "OTEL_SDK_DISABLED").then(|| "true".into())).unwrap();
    /// assert!(off.endpoint.is_none() && off.disabled.is_some());
    /// ```
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, OtelError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mut config = OtelConfig {
            endpoint: None,
            protocol: Protocol::HttpProtobuf,
            disabled: None,
            misuse_per_second: 10,
            poll_interval: Duration::from_millis(200),
            set_global: true,
        };
        if let Some(value) = get("MAPSCOPE_OTEL_MISUSE_PER_SECOND") {
            config.misuse_per_second = value.parse().map_err(|_| OtelError::Unsupported {
                variable: "MAPSCOPE_OTEL_MISUSE_PER_SECOND",
                value,
                hint: "use a whole number of events per map per second",
            })?;
        }
        if get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            config.disabled = Some("OTEL_SDK_DISABLED=true".into());
            return Ok(config);
        }
        if let Some(exporters) = get("OTEL_TRACES_EXPORTER") {
            let exporters: Vec<&str> = exporters.split(',').map(str::trim).collect();
            if exporters.contains(&"none") {
                config.disabled = Some("OTEL_TRACES_EXPORTER=none".into());
                return Ok(config);
            }
            if let Some(other) = exporters.iter().find(|e| **e != "otlp") {
                return Err(OtelError::Unsupported {
                    variable: "OTEL_TRACES_EXPORTER",
                    value: (*other).to_owned(),
                    hint: "mapscope exports traces with otlp; use otlp or none",
                });
            }
        }
        let (variable, protocol) = match get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") {
            Some(value) => ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", Some(value)),
            None => (
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                get("OTEL_EXPORTER_OTLP_PROTOCOL"),
            ),
        };
        config.protocol = match protocol.as_deref() {
            None | Some("http/protobuf") => Protocol::HttpProtobuf,
            Some("grpc") if cfg!(feature = "grpc") => Protocol::Grpc,
            Some(other) => {
                return Err(OtelError::Unsupported {
                    variable,
                    value: other.to_owned(),
                    hint: "use http/protobuf (or grpc with mapscope's `grpc` cargo feature)",
                })
            }
        };
        config.endpoint = match (
            get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            get("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            (Some(traces), _) => Some(traces),
            (None, Some(base)) if config.protocol == Protocol::HttpProtobuf => {
                Some(format!("{}/v1/traces", base.trim_end_matches('/')))
            }
            (None, Some(base)) => Some(base),
            (None, None) => {
                config.disabled = Some("no OTEL_EXPORTER_OTLP_ENDPOINT configured".into());
                None
            }
        };
        Ok(config)
    }

    /// Exports to `endpoint` (a full traces URL) over http/protobuf.
    #[must_use]
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self.disabled = None;
        self
    }

    /// Sets [`OtelConfig::misuse_per_second`].
    #[must_use]
    pub fn with_misuse_per_second(mut self, per_second: u32) -> Self {
        self.misuse_per_second = per_second;
        self
    }

    /// Sets [`OtelConfig::poll_interval`].
    #[must_use]
    pub fn with_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Sets [`OtelConfig::set_global`].
    #[must_use]
    pub fn with_set_global(mut self, set_global: bool) -> Self {
        self.set_global = set_global;
        self
    }
}

/// Keeps tracing export running; flushes and shuts it down when dropped
/// (or on [`OtelGuard::shutdown`]).
#[derive(Debug)]
pub struct OtelGuard {
    provider: Option<SdkTracerProvider>,
    pump: Option<(Arc<AtomicBool>, JoinHandle<()>)>,
    disabled: Option<String>,
}

impl OtelGuard {
    /// Whether spans are being exported.
    pub fn is_enabled(&self) -> bool {
        self.provider.is_some()
    }

    /// Why export is off, if it is.
    pub fn disabled_reason(&self) -> Option<&str> {
        self.disabled.as_deref()
    }

    /// The tracer provider, for the application's own spans.
    pub fn provider(&self) -> Option<&SdkTracerProvider> {
        self.provider.as_ref()
    }

    /// Exports the spans made so far. (Events become spans on the event
    /// thread every `poll_interval`; `shutdown` converts the rest.)
    pub fn flush(&self) {
        if let Some(provider) = &self.provider {
            let _ = provider.force_flush();
        }
    }

    /// Stops the event pump (turning what is left into spans), flushes and
    /// shuts the exporter down.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some((stop, pump)) = self.pump.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = pump.join();
        }
        if let Some(provider) = self.provider.take() {
            let _ = provider.force_flush();
            if let Err(error) = provider.shutdown() {
                tracing::warn!(%error, "OpenTelemetry shutdown failed");
            }
        }
    }
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sets up tracing export from the `OTEL_*` environment and hooks `registry`.
///
/// ```
/// // With no OTEL_EXPORTER_OTLP_ENDPOINT this installs nothing.
/// let registry = mapscope::Registry::new();
/// # std::env::remove_var("OTEL_EXPORTER_OTLP_ENDPOINT");
/// # std::env::remove_var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
/// let guard = mapscope::otel::init(&registry).unwrap();
/// assert!(!guard.is_enabled());
/// ```
pub fn init(registry: &Registry) -> Result<OtelGuard, OtelError> {
    init_with(registry, OtelConfig::from_env()?)
}

/// Sets up tracing export from an explicit configuration. In the sidecar,
/// the events of client reports and crash files are the registry's too,
/// so they become spans the same way.
pub fn init_with(registry: &Registry, config: OtelConfig) -> Result<OtelGuard, OtelError> {
    let Some(endpoint) = config.endpoint.clone() else {
        return Ok(OtelGuard {
            provider: None,
            pump: None,
            disabled: config.disabled.clone(),
        });
    };
    if endpoint.starts_with("https://") && config.protocol == Protocol::HttpProtobuf {
        return Err(OtelError::Unsupported {
            variable: "OTEL_EXPORTER_OTLP_ENDPOINT",
            value: endpoint,
            hint: "mapscope's OTLP/HTTP exporter is built without TLS: send to a local collector over http:// (the usual sidecar or node-agent setup), which forwards over TLS",
        });
    }
    let provider = build_provider(&endpoint, config.protocol)?;
    if config.set_global {
        opentelemetry::global::set_tracer_provider(provider.clone());
    }
    let tracer = provider.tracer(SCOPE);
    registry.set_tracing_hooks(TracingHooks {
        // Only the span context is kept: holding the whole Context would hold
        // the application's span open until the event left the registry.
        capture: Box::new(|| {
            current_context().map(|cx| {
                let parent =
                    Context::new().with_remote_span_context(cx.span().span_context().clone());
                Arc::new(parent) as CapturedContext
            })
        }),
        record_misuse: Box::new(record_on_current_span),
        misuse_per_second: config.misuse_per_second,
    });
    let stop = Arc::new(AtomicBool::new(false));
    let pump = {
        let (stop, registry) = (stop.clone(), registry.clone());
        let mut pump = Pump::new(tracer);
        let interval = config.poll_interval;
        std::thread::Builder::new()
            .name("mapscope-otel".into())
            .spawn(move || {
                let mut cursor = 0;
                loop {
                    let stopping = stop.load(Ordering::Relaxed);
                    let batch = registry.events_since(cursor);
                    cursor = batch.next;
                    pump.handle(batch.events.into_iter().map(|r| r.event));
                    if stopping {
                        break;
                    }
                    std::thread::sleep(interval);
                }
            })
            .map_err(|e| OtelError::Exporter {
                endpoint: endpoint.clone(),
                message: format!("cannot start the event thread: {e}"),
            })?
    };
    tracing::info!(%endpoint, "mapscope: exporting growth and misuse spans over OTLP");
    Ok(OtelGuard {
        provider: Some(provider),
        pump: Some((stop, pump)),
        disabled: None,
    })
}

fn build_provider(endpoint: &str, protocol: Protocol) -> Result<SdkTracerProvider, OtelError> {
    let endpoint = endpoint.to_owned();
    // The blocking HTTP client must not be created on an async runtime's
    // thread: build it on a plain one.
    let built = std::thread::spawn(move || {
        let exporter = match protocol {
            Protocol::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(endpoint.clone())
                .build(),
            #[cfg(feature = "grpc")]
            Protocol::Grpc => opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .build(),
            #[cfg(not(feature = "grpc"))]
            Protocol::Grpc => unreachable!("OtelConfig only selects grpc with the grpc feature"),
        };
        exporter
            .map(|exporter| {
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(Resource::builder().build())
                    .build()
            })
            .map_err(|e| OtelError::Exporter {
                endpoint,
                message: e.to_string(),
            })
    })
    .join();
    built.unwrap_or_else(|_| {
        Err(OtelError::Exporter {
            endpoint: "(unknown)".into(),
            message: "the exporter builder panicked".into(),
        })
    })
}

/// The context to parent mapscope spans on: the active OTel context, or
/// the current `tracing` span's. `None` (after one thread-local check each)
/// when neither has a span.
fn current_context() -> Option<Context> {
    if Context::map_current(|cx| cx.has_active_span() && cx.span().span_context().is_valid()) {
        return Some(Context::current());
    }
    let span = tracing::Span::current();
    if span.is_none() {
        return None;
    }
    let cx = span.context();
    cx.span().span_context().is_valid().then_some(cx)
}

fn misuse_attributes(event: &MisuseEvent) -> Vec<KeyValue> {
    let mut attributes = map_attributes(&event.map);
    attributes.push(KeyValue::new("mapscope.misuse.kind", event.kind.as_str()));
    attributes.push(KeyValue::new(
        "mapscope.misuse.details",
        event.details.clone(),
    ));
    if event.kind.is_error() {
        attributes.push(KeyValue::new("error.type", event.kind.as_str()));
    }
    // OpenTelemetry's code attributes, so a crash read from a file and a
    // misuse a client reported with its call site look alike in traces.
    if let Some(site) = &event.site {
        attributes.extend([
            KeyValue::new("code.function", site.function.clone()),
            KeyValue::new("code.filepath", site.file.clone()),
            KeyValue::new("code.lineno", i64::from(site.line)),
        ]);
    }
    if let Some(pid) = event.pid {
        attributes.push(KeyValue::new("process.pid", i64::from(pid)));
    }
    attributes
}

/// Adds the misuse to the span active in this thread. Error kinds also set
/// `error.type` and an error status on it (OpenTelemetry's recording-errors
/// conventions).
fn record_on_current_span(event: &MisuseEvent) -> bool {
    let attributes = misuse_attributes(event);
    let recorded = Context::map_current(|cx| {
        let span = cx.span();
        if !cx.has_active_span() || !span.span_context().is_valid() {
            return false;
        }
        span.add_event(MISUSE_EVENT, attributes.clone());
        if event.kind.is_error() {
            span.set_attribute(KeyValue::new("error.type", event.kind.as_str()));
            span.set_status(Status::error(event.details.clone()));
        }
        true
    });
    if recorded {
        return true;
    }
    let span = tracing::Span::current();
    if span.is_none() || !span.context().span().span_context().is_valid() {
        return false;
    }
    span.add_event(MISUSE_EVENT, attributes);
    if event.kind.is_error() {
        span.set_attribute("error.type", event.kind.as_str());
        span.set_status(Status::error(event.details.clone()));
    }
    true
}

fn map_attributes(map: &MapId) -> Vec<KeyValue> {
    let mut attributes = vec![KeyValue::new("mapscope.map.name", map.name.to_string())];
    if let Some(source) = &map.source {
        attributes.push(KeyValue::new("mapscope.source", source.to_string()));
    }
    if let Some(instance) = &map.instance {
        attributes.push(KeyValue::new(
            "mapscope.source.instance",
            instance.to_string(),
        ));
    }
    for (name, value) in map.labels.iter() {
        attributes.push(KeyValue::new(
            format!("mapscope.map.label.{name}"),
            value.clone(),
        ));
    }
    attributes
}

/// Turns registry events into spans, on the event thread.
struct Pump {
    tracer: Tracer,
    started: HashMap<MapId, GrowthStarted>,
}

impl Pump {
    fn new(tracer: Tracer) -> Self {
        Pump {
            tracer,
            started: HashMap::new(),
        }
    }

    /// Traces every event not traced yet: a misuse already recorded on the
    /// span active when it happened, or kept from tracing by the
    /// registry's rate limit, is marked `traced`.
    fn handle(&mut self, events: impl Iterator<Item = Event>) {
        for event in events {
            match event {
                Event::GrowthStarted(started) => {
                    self.started.insert(started.map.clone(), started);
                }
                Event::GrowthFinished(finished) => self.grow_span(&finished),
                Event::Misuse(misuse) if !misuse.traced => self.misuse_span(&misuse),
                _ => {}
            }
        }
    }

    fn grow_span(&mut self, finished: &GrowthFinished) {
        let started = self.started.remove(&finished.map);
        let parent = started
            .as_ref()
            .and_then(|s| s.context.as_ref())
            .and_then(|cx| cx.downcast_ref::<Context>().cloned())
            .or_else(|| {
                let (trace_id, span_id) = finished.trace.as_ref()?;
                remote_parent(trace_id, span_id)
            })
            .unwrap_or_default();
        let finished_by = if finished.completed_explicitly {
            "complete_growth"
        } else {
            "writes"
        };
        let mut attributes = map_attributes(&finished.map);
        attributes.extend([
            KeyValue::new("mapscope.growth.kind", finished.kind.as_str()),
            KeyValue::new("mapscope.buckets.before", finished.old_buckets as i64),
            KeyValue::new("mapscope.buckets.after", finished.new_buckets as i64),
            KeyValue::new(
                "mapscope.entries.at_start",
                finished.entries_at_start as i64,
            ),
            KeyValue::new("mapscope.entries.at_end", finished.entries as i64),
            KeyValue::new(
                "mapscope.evacuated_old_buckets",
                finished.evacuated_old_buckets as i64,
            ),
            KeyValue::new("mapscope.helping_writes", finished.helping_writes as i64),
            KeyValue::new(
                "mapscope.evacuation.work_seconds",
                finished.evacuation_work.as_secs_f64(),
            ),
            KeyValue::new("mapscope.growth.finished_by", finished_by),
            KeyValue::new(
                "mapscope.growth.shrink",
                finished.kind == crate::GrowthKind::Shrink,
            ),
        ]);
        let mut span = self
            .tracer
            .span_builder(GROW_SPAN)
            .with_kind(SpanKind::Internal)
            .with_start_time(finished.started_at)
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &parent);
        span.end_with_timestamp(finished.started_at + finished.duration);
    }

    fn misuse_span(&mut self, misuse: &MisuseEvent) {
        let parent = match &misuse.trace {
            Some((trace_id, span_id)) => remote_parent(trace_id, span_id).unwrap_or_default(),
            None => Context::new(),
        };
        let attributes = misuse_attributes(misuse);
        let mut span = self
            .tracer
            .span_builder(MISUSE_SPAN)
            .with_kind(SpanKind::Internal)
            .with_start_time(misuse.at)
            .with_attributes(attributes.clone())
            .start_with_context(&self.tracer, &parent);
        span.add_event_with_timestamp(MISUSE_EVENT, misuse.at, attributes);
        if misuse.kind.is_error() {
            span.set_status(Status::error(misuse.details.clone()));
        }
        span.end_with_timestamp(misuse.at.max(SystemTime::UNIX_EPOCH) + Duration::from_micros(1));
    }
}

/// A context whose parent is a span in another process (client reports).
fn remote_parent(trace_id: &str, span_id: &str) -> Option<Context> {
    let trace_id = TraceId::from_hex(trace_id).ok()?;
    let span_id = SpanId::from_hex(span_id).ok()?;
    let span_context = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::SAMPLED,
        true,
        TraceState::default(),
    );
    span_context
        .is_valid()
        .then(|| Context::new().with_remote_span_context(span_context))
}
