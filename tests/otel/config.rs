//! Switches and configuration: `OTEL_SDK_DISABLED`,
//! `OTEL_TRACES_EXPORTER=none` and a missing endpoint export nothing;
//! unsupported values fail naming the variable; endpoint resolution
//! (`/v1/traces` appended or not) and the environment reach the receiver.

use std::time::Duration;

use mapscope::otel::{OtelConfig, OtelError, Protocol, GROW_SPAN};
use mapscope::{otel, Registry};
use opentelemetry::trace::{Tracer as _, TracerProvider as _};

use crate::receiver::{of_map, Receiver};
use crate::{env, full_map, Map, FULL_512, POLL};

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
