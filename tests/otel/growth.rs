//! Growth spans: a `mapscope.map.grow` span nests under the span that was
//! current when the growth started (an SDK span attached as the current
//! context, or a `tracing` span through `tracing-opentelemetry`, with and
//! without context activation), its timestamps bracket the evacuation and
//! its attributes match the map's stats; growths finished by
//! `complete_growth()`, halvings and abandoned growths are labelled as such.

use std::time::SystemTime;

use mapscope::otel::{GROW_SPAN, SCOPE};
use mapscope::{otel, GrowthKind, Registry};
use opentelemetry::trace::{Span as _, TraceContextExt as _, Tracer as _, TracerProvider as _};
use opentelemetry::Context;
use opentelemetry_proto::tonic::trace::v1::{span, status};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;

use crate::receiver::{
    attr_bool, attr_f64, attr_i64, attr_str, hex, named, nanos, of_map, render, Receiver,
};
use crate::{config_for, full_map, start, write_until_grown, FULL_512};

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
