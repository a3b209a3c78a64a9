//! The HTTP endpoint: its routes called in process with
//! `tower::ServiceExt::oneshot`, gzip negotiation with a real client over a
//! loopback socket, and the real `mapscope` binary.
//!
//! - `/metrics`: exact Content-Type, gzip on request, a strictly parsed
//!   body in which every catalog metric has `# HELP`, `# TYPE` and samples,
//!   and values that match known operations (growths, evacuation in
//!   progress, drop and grace, the `_overflow` cap, the growth histogram,
//!   build info, label escaping);
//! - `/healthz`, `/readyz`, `/` and `/api/v1/maps`;
//! - the binary: `version`, `healthcheck`, and a clean exit on SIGTERM.

// Drives the sidecar (its binary or its ingest endpoint): `--features sidecar`.
#![cfg(feature = "sidecar")]

mod common {
    pub(crate) mod client;
    pub(crate) mod exposition;
    pub(crate) mod ports;
    pub(crate) mod process;
    pub(crate) mod router;
    pub(crate) mod run;
    pub(crate) mod server;
    pub(crate) mod wait;
}

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::client::{client, get_text};
use common::exposition::{parse_exposition, Exposition};
use common::ports::closed_port;
use common::process::{mapscope_command, start_mapscope};
use common::router::Routes;
use common::server::{serve_router, TestServer};
use common::wait::WAIT;
use mapscope::export::catalog::{MetricType, Scope, CATALOG};
use mapscope::export::prometheus::{CONTENT_TYPE, GROWTH_DURATION_BUCKETS, VERSION};
use mapscope::http::{router, router_with, ApiSnapshot, HttpState};
use mapscope::registry::{ManualClock, OVERFLOW_MAP};
use mapscope::{GrowthKind, InstrumentedMap, MisuseKind, Registry};

type Map = InstrumentedMap<u64, u64>;

/// A client that neither asks for nor decodes compression, so headers and
/// bytes are seen as the server sent them.
fn raw_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .no_gzip()
        .connect_timeout(Duration::from_secs(5))
        .timeout(WAIT)
        .build()
        .expect("build the HTTP client")
}

/// Serves `mapscope::http::router(registry)` on a fresh loopback port.
fn serve_registry(registry: mapscope::Registry) -> TestServer {
    serve_router(router(registry))
}

/// GETs `/metrics` from `base` and parses it strictly.
async fn scrape(base: &str) -> Exposition {
    let text = get_text(&format!("{base}/metrics")).await;
    parse_exposition(&text).unwrap_or_else(|e| panic!("unparsable /metrics: {e}\n{text}"))
}

/// A registered map named `name` with `n` distinct keys, published.
fn filled(registry: &Registry, name: &str, labels: &[(&str, &str)], n: u64) -> Map {
    let mut map = labels
        .iter()
        .fold(Map::builder(name), |b, (k, v)| b.label(*k, *v))
        .register(registry)
        .expect("valid, unique map");
    for i in 0..n {
        map.insert(i, i);
    }
    map.publish();
    map
}

// ---------------------------------------------------------------------------
// /metrics: format
// ---------------------------------------------------------------------------

#[tokio::test]
async fn metrics_content_type_is_exactly_the_text_format() {
    let registry = Registry::new();
    let _map = filled(&registry, "orders", &[], 10);
    let routes = Routes::new(router(registry));
    for accept_encoding in [&[][..], &[("accept-encoding", "gzip")][..]] {
        let answer = routes.get_with("/metrics", accept_encoding).await;
        assert_eq!(answer.status, 200);
        assert_eq!(
            answer.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8"),
            "{accept_encoding:?}"
        );
    }
    assert_eq!(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8");
}

#[tokio::test]
async fn metrics_are_gzipped_only_when_the_client_asks() {
    let registry = Registry::new();
    let _map = filled(&registry, "orders", &[("tenant", "acme")], 1_000);
    let server = serve_registry(registry);
    let url = server.url("/metrics");

    let plain = raw_client().get(&url).send().await.expect("GET");
    assert_eq!(plain.status(), 200);
    assert!(
        plain.headers().get("content-encoding").is_none(),
        "no Accept-Encoding, yet {:?}",
        plain.headers().get("content-encoding")
    );
    let plain = plain.text().await.expect("plain body");
    assert!(plain.starts_with("# HELP "), "{plain}");

    let gzipped = raw_client()
        .get(&url)
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("GET with Accept-Encoding: gzip");
    assert_eq!(gzipped.status(), 200);
    assert_eq!(
        gzipped
            .headers()
            .get("content-encoding")
            .map(|v| v.to_str().unwrap()),
        Some("gzip")
    );
    let bytes = gzipped.bytes().await.expect("gzip body");
    assert_eq!(bytes.get(..2), Some(&[0x1f, 0x8b][..]), "not a gzip stream");
    assert!(
        bytes.len() < plain.len() / 2,
        "{} gzip bytes for {} plain bytes",
        bytes.len(),
        plain.len()
    );

    // A decompressing client asks for gzip by itself and gets the same text
    // (nothing writes to the registry, and no growth finished in between).
    let decoded = client().get(&url).send().await.expect("GET");
    assert_eq!(decoded.status(), 200);
    let decoded = decoded.text().await.expect("decoded body");
    assert_eq!(decoded, plain);
}

/// Checks that every catalog metric of the scopes `expected` has its
/// `# HELP`, its `# TYPE` and a sample, that the others are absent, and
/// that nothing outside the catalog is exported.
fn assert_catalog_complete(metrics: &Exposition, expected: &[Scope]) {
    for def in CATALOG {
        if !expected.contains(&def.scope) {
            assert!(
                !metrics.types.contains_key(def.name),
                "{} ({:?}) is exported here",
                def.name,
                def.scope
            );
            continue;
        }
        assert_eq!(
            metrics.help.get(def.name).map(String::as_str),
            Some(def.help),
            "# HELP of {}",
            def.name
        );
        assert_eq!(
            metrics.types.get(def.name).map(String::as_str),
            Some(def.kind.as_str()),
            "# TYPE of {}",
            def.name
        );
        let series = if def.kind == MetricType::Histogram {
            format!("{}_bucket", def.name)
        } else {
            def.name.to_owned()
        };
        assert!(
            metrics.series(&series).next().is_some(),
            "{} has no sample",
            def.name
        );
    }
    for name in metrics.types.keys() {
        assert!(
            CATALOG.iter().any(|d| d.name == name),
            "{name} is exported but not in the catalog"
        );
    }
    for sample in &metrics.samples {
        assert!(
            mapscope::export::catalog::owner(&sample.name).is_some(),
            "{} belongs to no catalog metric",
            sample.name
        );
    }
}

#[tokio::test]
async fn every_catalog_metric_has_help_type_and_a_sample() {
    let registry = Registry::new();
    let _map = filled(&registry, "orders", &[("tenant", "acme")], 5_000);
    let routes = Routes::new(router(registry));
    let metrics = routes.scrape().await;
    // The sidecar's ingest series exist only where reports are ingested:
    // see `sidecar_exports_reported_maps_and_ingest_metrics`.
    assert_catalog_complete(&metrics, &[Scope::Map, Scope::Process]);
}

#[tokio::test]
async fn label_values_are_escaped() {
    let registry = Registry::new();
    let name = r#"odd "name" with \ and {braces}, commas"#;
    let _map = filled(&registry, name, &[("path", r"C:\tmp\x")], 3);
    let routes = Routes::new(router(registry));
    let metrics = routes.scrape().await;
    assert_eq!(
        metrics.value(
            "mapscope_map_entries",
            &[("map", name), ("path", r"C:\tmp\x")]
        ),
        3.0
    );
}

// ---------------------------------------------------------------------------
// /metrics: values
// ---------------------------------------------------------------------------

#[tokio::test]
async fn values_match_a_hundred_thousand_inserts() {
    let registry = Registry::new();
    let _map = filled(
        &registry,
        "sessions",
        &[("tenant", "acme"), ("shard", "7")],
        100_000,
    );
    let routes = Routes::new(router(registry));
    let m = routes.scrape().await;
    let map = [("map", "sessions"), ("tenant", "acme"), ("shard", "7")];
    assert_eq!(m.value("mapscope_map_buckets", &map), 16_384.0);
    assert_eq!(m.value("mapscope_map_entries", &map), 100_000.0);
    assert_eq!(m.value("mapscope_map_peak_entries", &map), 100_000.0);
    assert_eq!(m.value("mapscope_map_inserts_total", &map), 100_000.0);
    assert_eq!(m.value("mapscope_map_updates_total", &map), 0.0);
    assert_eq!(m.value("mapscope_map_removes_total", &map), 0.0);
    let kind = |k: &'static str| [map[0], map[1], map[2], ("kind", k)];
    assert_eq!(m.value("mapscope_map_growths_total", &kind("double")), 14.0);
    assert_eq!(
        m.value("mapscope_map_growths_total", &kind("same_size")),
        0.0
    );
    assert_eq!(m.value("mapscope_map_growths_total", &kind("shrink")), 0.0);
    assert!(m.value("mapscope_map_growth_seconds_total", &kind("double")) > 0.0);
    let load = m.value("mapscope_map_load_factor", &map);
    assert!((load - 100_000.0 / 16_384.0).abs() < 1e-9, "{load}");
    assert!(m.value("mapscope_map_memory_bytes", &map) > 0.0);
    // 2^14 - 1 old buckets were evacuated over the 14 doublings.
    assert_eq!(
        m.value("mapscope_map_evacuated_buckets_total", &map),
        16_383.0
    );
    // No growth in progress: 100,000 is far past the last doubling's end.
    for kind_name in ["double", "same_size", "shrink"] {
        assert_eq!(
            m.value("mapscope_map_evacuation_in_progress", &kind(kind_name)),
            0.0
        );
    }
    assert_eq!(m.value("mapscope_map_evacuation_progress_ratio", &map), 0.0);
    // Every series of the map carries its labels, and only its labels.
    for sample in m
        .samples
        .iter()
        .filter(|s| s.label("map") == Some("sessions"))
    {
        let names: BTreeSet<&str> = sample.labels.keys().map(String::as_str).collect();
        let expected: BTreeSet<&str> = ["map", "tenant", "shard"]
            .into_iter()
            .chain(sample.labels.contains_key("kind").then_some("kind"))
            .collect();
        assert_eq!(names, expected, "{sample:?}");
    }
    assert_eq!(m.value("mapscope_maps", &[]), 1.0);
}

#[tokio::test]
async fn evacuation_gauges_reflect_a_growth_in_progress() {
    let registry = Registry::new();
    let mut map = Map::builder("growing").register(&registry).unwrap();
    let mut next = 0u64;
    while map.stats().growth.is_none() {
        map.insert(next, next);
        next += 1;
        assert!(next < 1_000_000, "no growth ever started");
    }
    // Stop at a point inside a big doubling: keep writing until the map has
    // at least 1024 old buckets and the evacuation is under way.
    while map.stats().growth.is_none_or(|g| g.old_buckets < 1024) {
        map.insert(next, next);
        next += 1;
        assert!(next < 1_000_000, "no big growth ever started");
    }
    for _ in 0..100 {
        map.insert(next, next);
        next += 1;
    }
    map.publish();
    let growth = map.stats().growth.expect("still growing after 100 writes");
    assert_eq!(growth.kind, GrowthKind::Double);

    let routes = Routes::new(router(registry));
    let m = routes.scrape().await;
    let g = |kind: &'static str| [("map", "growing"), ("kind", kind)];
    assert_eq!(
        m.value("mapscope_map_evacuation_in_progress", &g("double")),
        1.0
    );
    assert_eq!(
        m.value("mapscope_map_evacuation_in_progress", &g("same_size")),
        0.0
    );
    assert_eq!(
        m.value("mapscope_map_evacuation_in_progress", &g("shrink")),
        0.0
    );
    let ratio = m.value(
        "mapscope_map_evacuation_progress_ratio",
        &[("map", "growing")],
    );
    let expected = growth.evacuated_old_buckets as f64 / growth.old_buckets as f64;
    assert!(ratio > 0.0 && ratio < 1.0, "{ratio}");
    assert!((ratio - expected).abs() < 1e-12, "{ratio} != {expected}");
    assert_eq!(
        m.value("mapscope_map_buckets", &[("map", "growing")]),
        (growth.old_buckets * 2) as f64,
        "during a growth, buckets is the new array"
    );
    // Both arrays are held during the growth.
    let memory = m.value("mapscope_map_memory_bytes", &[("map", "growing")]);
    assert_eq!(memory, map.stats().memory_bytes as f64);

    // Finish it: the gauges go back to zero.
    map.complete_growth();
    map.publish();
    let m = routes.scrape().await;
    assert_eq!(
        m.value("mapscope_map_evacuation_in_progress", &g("double")),
        0.0
    );
    assert_eq!(
        m.value(
            "mapscope_map_evacuation_progress_ratio",
            &[("map", "growing")]
        ),
        0.0
    );
    assert!(m.value("mapscope_map_memory_bytes", &[("map", "growing")]) < memory);
}

#[tokio::test]
async fn a_dropped_map_stays_for_its_grace_period_then_leaves() {
    let clock = ManualClock::new();
    let grace = Duration::from_secs(30);
    let registry = Registry::builder()
        .clock(clock.clone())
        .grace_period(grace)
        .build();
    let _kept = filled(&registry, "kept", &[], 10);
    let dropped = filled(&registry, "dropped", &[("tenant", "gone")], 42);
    let routes = Routes::new(router(registry));

    drop(dropped);
    // Until the grace period has passed on the registry's clock, the final
    // values are exported.
    for advance in [Duration::ZERO, grace] {
        clock.advance(advance);
        let m = routes.scrape().await;
        assert_eq!(
            m.value(
                "mapscope_map_entries",
                &[("map", "dropped"), ("tenant", "gone")]
            ),
            42.0,
            "final values stay visible during the grace period"
        );
        assert_eq!(m.value("mapscope_maps", &[]), 2.0);
    }
    clock.advance(Duration::from_millis(1));
    let m = routes.scrape().await;
    assert!(
        m.samples.iter().all(|s| s.label("map") != Some("dropped")),
        "gone once the grace period has passed"
    );
    assert_eq!(m.value("mapscope_map_entries", &[("map", "kept")]), 10.0);
    assert_eq!(m.value("mapscope_maps", &[]), 1.0);
}

#[tokio::test]
async fn maps_past_the_cap_fold_into_overflow() {
    let registry = Registry::builder().max_maps(2).build();
    let _a = filled(&registry, "a", &[], 10);
    let _b = filled(&registry, "b", &[], 20);
    let _c = filled(&registry, "c", &[("tenant", "x")], 30);
    let _d = filled(&registry, "d", &[], 40);
    let routes = Routes::new(router(registry));
    let m = routes.scrape().await;
    assert_eq!(m.value("mapscope_map_overflow_folds_total", &[]), 2.0);
    assert_eq!(m.value("mapscope_map_entries", &[("map", "a")]), 10.0);
    assert_eq!(m.value("mapscope_map_entries", &[("map", "b")]), 20.0);
    assert_eq!(
        m.value("mapscope_map_entries", &[("map", OVERFLOW_MAP)]),
        70.0
    );
    assert_eq!(
        m.value("mapscope_map_inserts_total", &[("map", OVERFLOW_MAP)]),
        70.0
    );
    let maps = m.label_values("mapscope_map_entries", "map");
    assert_eq!(
        maps,
        ["a", "b", OVERFLOW_MAP]
            .into_iter()
            .map(str::to_owned)
            .collect::<BTreeSet<_>>()
    );
    // The folded maps' own labels do not leak into the _overflow series.
    let overflow = m.matching("mapscope_map_entries", &[("map", OVERFLOW_MAP)])[0];
    assert_eq!(overflow.labels.len(), 1, "{overflow:?}");
}

/// `mapscope_maps` is documented as "Maps registered, including those in
/// their grace period", but the collector counts exported series: folded
/// maps count as one (`_overflow`) whatever their number.
#[tokio::test]
async fn maps_gauge_counts_every_registered_map() {
    let registry = Registry::builder().max_maps(2).build();
    let _maps: Vec<Map> = (0..5)
        .map(|i| filled(&registry, &format!("m{i}"), &[], 1))
        .collect();
    let routes = Routes::new(router(registry));
    let m = routes.scrape().await;
    assert_eq!(m.value("mapscope_map_overflow_folds_total", &[]), 3.0);
    assert_eq!(m.value("mapscope_maps", &[]), 5.0);
}

#[tokio::test]
async fn growth_duration_histogram_has_buckets_sum_and_count() {
    let registry = Registry::new();
    let _map = filled(&registry, "grown", &[], 100_000);
    let routes = Routes::new(router(registry));
    let m = routes.scrape().await;
    let name = "mapscope_growth_duration_seconds";
    for kind in GrowthKind::ALL {
        let k = kind.as_str();
        let buckets: Vec<_> = m.matching("mapscope_growth_duration_seconds_bucket", &[("kind", k)]);
        let bounds: Vec<String> = buckets
            .iter()
            .map(|s| s.label("le").unwrap().to_owned())
            .collect();
        let expected: Vec<String> = GROWTH_DURATION_BUCKETS
            .iter()
            .map(|b| b.to_string())
            .chain(["+Inf".to_owned()])
            .collect();
        assert_eq!(bounds, expected, "le of kind {k}");
        assert!(
            buckets.windows(2).all(|w| w[0].value <= w[1].value),
            "buckets of {k} are not cumulative"
        );
        let count = m.value(&format!("{name}_count"), &[("kind", k)]);
        assert_eq!(buckets.last().unwrap().value, count, "+Inf == _count");
        let sum = m.value(&format!("{name}_sum"), &[("kind", k)]);
        let per_map = m.value(
            "mapscope_map_growth_seconds_total",
            &[("map", "grown"), ("kind", k)],
        );
        assert!((sum - per_map).abs() < 1e-6, "{k}: sum {sum} vs {per_map}");
    }
    assert_eq!(
        m.value(&format!("{name}_count"), &[("kind", "double")]),
        14.0
    );
    assert_eq!(
        m.value(&format!("{name}_count"), &[("kind", "shrink")]),
        0.0
    );

    // Counted once: a second scrape does not count the same growths again.
    let again = routes.scrape().await;
    assert_eq!(
        again.value(&format!("{name}_count"), &[("kind", "double")]),
        14.0
    );
}

/// The histogram learns about growths from the registry's recent-events
/// window (256 events by default), and a scrape ignores `missed` events:
/// when more growth events happen between two scrapes than the window
/// holds, the histogram silently undercounts.
#[tokio::test]
async fn histogram_counts_every_growth_between_scrapes() {
    let registry = Registry::new();
    // 15 maps x 11 doublings (10,000 keys) x 2 events = 330 events > 256.
    let maps: Vec<Map> = (0..15)
        .map(|i| filled(&registry, &format!("m{i}"), &[], 10_000))
        .collect();
    let finished: u64 = maps
        .iter()
        .map(|m| m.stats().growths[GrowthKind::Double])
        .sum();
    assert_eq!(finished, 15 * 11);
    let routes = Routes::new(router(registry));
    let m = routes.scrape().await;
    assert_eq!(
        m.value(
            "mapscope_growth_duration_seconds_count",
            &[("kind", "double")]
        ),
        finished as f64
    );
}

#[tokio::test]
async fn misuse_and_condition_series_cover_detector_kinds() {
    let registry = Registry::new();
    let _map = filled(&registry, "cache", &[], 100_000);
    let routes = Routes::new(router(registry));
    let m = routes.scrape().await;
    let kinds = |name| -> BTreeSet<String> {
        m.matching(name, &[("map", "cache")])
            .into_iter()
            .map(|s| s.label("kind").unwrap().to_owned())
            .collect()
    };
    let detected: BTreeSet<String> = MisuseKind::DETECTED
        .iter()
        .map(|k| k.as_str().to_owned())
        .collect();
    // Client-only kinds appear on in-process maps only once non-zero.
    assert_eq!(kinds("mapscope_map_misuse_events_total"), detected);
    assert_eq!(kinds("mapscope_map_condition_active"), detected);
    // 14 doublings from empty: presize_miss is active and counted once.
    let presize = [("map", "cache"), ("kind", "presize_miss")];
    assert_eq!(m.value("mapscope_map_condition_active", &presize), 1.0);
    assert_eq!(m.value("mapscope_map_misuse_events_total", &presize), 1.0);
}

#[tokio::test]
async fn build_info_is_one_with_the_version() {
    let registry = Registry::new();
    let _map = filled(&registry, "orders", &[], 1);
    let routes = Routes::new(router(registry));
    let m = routes.scrape().await;
    let info: Vec<_> = m.series("mapscope_build_info").collect();
    assert_eq!(info.len(), 1, "{info:?}");
    assert_eq!(info[0].value, 1.0);
    assert_eq!(info[0].label("version"), Some(env!("CARGO_PKG_VERSION")));
    assert_eq!(info[0].label("version"), Some(VERSION));
    assert!(info[0].label("revision").is_some_and(|r| !r.is_empty()));
    assert_eq!(m.value("mapscope_maps", &[]), 1.0);
    assert_eq!(m.value("mapscope_map_overflow_folds_total", &[]), 0.0);
    assert_eq!(m.value("mapscope_events_dropped_total", &[]), 0.0);
}

/// A sidecar before any client reports, or a service whose maps were all
/// dropped, has no maps: per-map families are empty, and the `prometheus`
/// crate's `TextEncoder` refuses an empty family ("MetricFamily has no
/// metrics"), which once made `/metrics` answer 500. Empty families must be
/// left out instead.
#[tokio::test]
async fn metrics_are_served_when_no_map_is_registered() {
    let clock = ManualClock::new();
    let grace = Duration::from_secs(30);
    let registry = Registry::builder()
        .clock(clock.clone())
        .grace_period(grace)
        .build();
    let routes = Routes::new(router(registry.clone()));
    let m = routes.scrape().await;
    assert_eq!(m.value("mapscope_maps", &[]), 0.0);
    assert_eq!(m.value("mapscope_build_info", &[]), 1.0);
    assert_eq!(m.value("mapscope_map_overflow_folds_total", &[]), 0.0);
    assert!(m.series("mapscope_map_entries").next().is_none());

    // The same once the last map has left.
    drop(filled(&registry, "short_lived", &[], 1));
    clock.advance(grace + Duration::from_secs(1));
    let m = routes.scrape().await;
    assert_eq!(m.value("mapscope_maps", &[]), 0.0);
}

// ---------------------------------------------------------------------------
// Other routes
// ---------------------------------------------------------------------------

#[tokio::test]
async fn healthz_and_readyz_answer_200() {
    let routes = Routes::new(router(Registry::new()));
    for path in ["/healthz", "/readyz"] {
        assert_eq!(routes.get(path).await.status, 200, "{path}");
    }
}

#[tokio::test]
async fn readyz_follows_the_readiness_flag() {
    let state = HttpState::new(Registry::new());
    let ready = state.readiness();
    let routes = Routes::new(router_with(state));
    let status = || async { routes.get("/readyz").await.status };
    assert_eq!(status().await, 200);
    ready.store(false, Ordering::Relaxed);
    assert_eq!(status().await, 503);
    let health = routes.get("/healthz").await;
    assert_eq!(health.status, 200, "liveness does not follow readiness");
    ready.store(true, Ordering::Relaxed);
    assert_eq!(status().await, 200);
}

#[tokio::test]
async fn landing_page_is_html_listing_the_maps() {
    let registry = Registry::new();
    let _orders = filled(&registry, "orders", &[("tenant", "acme")], 10);
    let _users = filled(&registry, "user_cache", &[("team", "<script>")], 10);
    let routes = Routes::new(router(registry));
    let answer = routes.get("/").await;
    assert_eq!(answer.status, 200);
    let content_type = answer.header("content-type").unwrap_or_default();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let page = answer.text();
    assert!(page.contains("<html"), "{page}");
    assert!(page.contains("orders"), "{page}");
    assert!(page.contains("user_cache"), "{page}");
    assert!(page.contains("tenant=acme"), "{page}");
    assert!(
        page.contains("team=&lt;script&gt;"),
        "label values are escaped"
    );
    assert!(!page.contains("<script>"), "label values are escaped");
    assert!(page.contains("href=\"/metrics\""));
}

#[tokio::test]
async fn api_lists_maps_with_stats_and_active_conditions() {
    let registry = Registry::new();
    let _big = filled(&registry, "big", &[("tenant", "acme")], 100_000);
    // 50 keys: 3 doublings, under presize_miss's 4.
    let _small = filled(&registry, "small", &[], 50);
    let routes = Routes::new(router(registry));
    let answer = routes.get("/api/v1/maps").await;
    assert_eq!(answer.status, 200);
    assert!(answer
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/json")));
    let api: ApiSnapshot = serde_json::from_slice(&answer.body).expect("an ApiSnapshot");
    let names: Vec<&str> = api.maps.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["big", "small"]);
    let big = &api.maps[0];
    assert_eq!(big.stats.entries, 100_000);
    assert_eq!(big.stats.buckets, 16_384);
    assert_eq!(big.stats.inserts, 100_000);
    assert_eq!(big.stats.growths[GrowthKind::Double], 14);
    assert_eq!(big.labels.get("tenant").map(String::as_str), Some("acme"));
    assert!(!big.dropped);
    assert!(big.stats.growth.is_none());
    let conditions: Vec<&str> = big.conditions.iter().map(|c| c.kind.as_str()).collect();
    assert_eq!(conditions, ["presize_miss"]);
    assert!(big.conditions[0].since > 0.0);
    assert!(!big.conditions[0].details.is_empty());
    assert_eq!(big.misuse.get("presize_miss"), Some(&1));
    let small = &api.maps[1];
    assert_eq!((small.stats.entries, small.stats.buckets), (50, 8));
    assert!(small.conditions.is_empty());
    assert_eq!(api.overflow_folds, 0);
    assert!(api
        .recent_events
        .iter()
        .any(|e| e.event == "growth_finished" && e.map == "big"));
}

// ---------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------

#[test]
fn version_prints_the_crate_version() {
    let mut command = mapscope_command();
    command.arg("version");
    let out = common::run::run(command, Duration::from_secs(10));
    assert!(out.status.success(), "{out:?}");
    let expected = format!("mapscope {}", env!("CARGO_PKG_VERSION"));
    assert!(out.stdout.starts_with(&expected), "{out:?}");
}

#[test]
fn healthcheck_passes_against_a_running_demo_and_fails_on_a_closed_port() {
    let demo = start_mapscope(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--ingest-listen",
        "127.0.0.1:0",
        "--tick",
        "10",
    ]);
    let healthcheck = |url: &str| {
        let mut command = mapscope_command();
        command.args(["healthcheck", "--url", url, "--timeout", "3"]);
        common::run::run(command, Duration::from_secs(10))
    };
    let ok = healthcheck(&demo.url("healthz"));
    assert!(
        ok.status.success(),
        "{ok:?}\n--- demo stderr\n{}",
        demo.stderr_text()
    );
    let ready = healthcheck(&demo.url("readyz"));
    assert!(ready.status.success(), "{ready:?}");

    let closed = format!("http://127.0.0.1:{}/healthz", closed_port());
    let failed = healthcheck(&closed);
    assert!(!failed.status.success(), "{failed:?}");
    assert!(failed.stderr.contains("mapscope healthcheck"), "{failed:?}");
    let missing = healthcheck(&demo.url("no-such-page"));
    assert!(
        !missing.status.success(),
        "a 404 is not healthy: {missing:?}"
    );
}

#[test]
fn healthcheck_gives_up_after_its_timeout_and_follows_no_redirect() {
    let healthcheck = |url: &str, timeout: &str| {
        let mut command = mapscope_command();
        command.args(["healthcheck", "--url", url, "--timeout", timeout]);
        // A proxy from the environment must not be used for the probe.
        let proxy = format!("http://127.0.0.1:{}", closed_port());
        command.env("HTTP_PROXY", &proxy).env("http_proxy", &proxy);
        let started = std::time::Instant::now();
        (
            common::run::run(command, Duration::from_secs(20)),
            started.elapsed(),
        )
    };
    // A listener that accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/healthz", silent.local_addr().expect("address"));
    let (out, took) = healthcheck(&url, "1");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains("mapscope healthcheck"), "{out:?}");
    assert!(
        took < Duration::from_secs(10),
        "the timeout was not applied: {took:?}"
    );

    // MAPSCOPE_HEALTHCHECK_URL and a redirect, which is not healthy.
    let app = axum::Router::new()
        .route(
            "/healthz",
            axum::routing::get(|| async { axum::response::Redirect::temporary("/elsewhere") }),
        )
        .route("/ok", axum::routing::get(|| async { "ok" }));
    let server = serve_router(app);
    let (redirected, _) = healthcheck(&server.url("/healthz"), "3");
    assert_eq!(redirected.status.code(), Some(1), "{redirected:?}");
    assert!(redirected.stderr.contains("307"), "{redirected:?}");
    let mut command = mapscope_command();
    command
        .arg("healthcheck")
        .env("MAPSCOPE_HEALTHCHECK_URL", server.url("/ok"))
        .env("MAPSCOPE_HEALTHCHECK_TIMEOUT", "3");
    let ok = common::run::run(command, Duration::from_secs(20));
    assert!(ok.status.success(), "{ok:?}");
}

#[test]
fn demo_exits_cleanly_on_sigterm() {
    let mut demo = start_mapscope(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--ingest-listen",
        "127.0.0.1:0",
        "--tick",
        "10",
    ]);
    // Serve at least one scrape first, so shutdown has something to finish.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let text = runtime.block_on(get_text(&demo.url("metrics")));
    assert!(text.contains("mapscope_build_info"), "{text}");
    let status = demo
        .terminate(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no exit within 10 s of SIGTERM\n{}", demo.stderr_text()));
    assert!(
        status.success(),
        "exit status {status} after SIGTERM\n--- stderr\n{}",
        demo.stderr_text()
    );
}

/// The default command, a sidecar no client has reported to yet, has no
/// maps and no ingest requests: see
/// `metrics_are_served_when_no_map_is_registered`.
#[test]
fn sidecar_without_maps_serves_metrics() {
    let sidecar = start_mapscope(&[
        "sidecar",
        "--listen",
        "127.0.0.1:0",
        "--ingest-listen",
        "127.0.0.1:0",
    ]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let text = runtime.block_on(get_text(&sidecar.url("metrics")));
    let m = parse_exposition(&text).expect("a valid exposition");
    assert_eq!(m.value("mapscope_maps", &[]), 0.0);
    assert_eq!(m.value("mapscope_sources", &[]), 0.0);
    assert_eq!(m.value("mapscope_build_info", &[]), 1.0);
}

/// A report as the Go client would send it: one map with labels and client
/// misuse counts.
fn go_report() -> serde_json::Value {
    serde_json::json!({
        "source": {"app": "go-checkout", "instance": "pod-1", "language": "go"},
        "seq": 1,
        "interval_seconds": 10,
        "maps": [{
            "name": "carts",
            "labels": {"tenant": "acme"},
            "stats": {"entries": 3072, "peak_entries": 4000, "buckets": 512, "memory_bytes": 65536},
            "counters": {
                "growths": {"double": 9},
                "inserts": 4000,
                "removes": 928,
                "misuse": {"concurrent_write": 2}
            }
        }],
        "events": []
    })
}

#[test]
fn sidecar_exports_reported_maps_and_ingest_metrics() {
    // A crash directory (empty), so mapscope_crash_files_total has samples.
    let crash_dir =
        std::env::temp_dir().join(format!("mapscope-http-crashes-{}", std::process::id()));
    std::fs::create_dir_all(&crash_dir).expect("create the crash directory");
    let sidecar = start_mapscope(&[
        "sidecar",
        "--listen",
        "127.0.0.1:0",
        "--ingest-listen",
        "127.0.0.1:0",
        "--crash-dir",
        crash_dir.to_str().expect("a UTF-8 temp path"),
    ]);
    let ingest = sidecar.ingest_url();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let m = runtime.block_on(async {
        let accepted = client()
            .post(&ingest)
            .json(&go_report())
            .send()
            .await
            .expect("POST /v1/report");
        assert_eq!(accepted.status(), 200, "{:?}", accepted.text().await);
        // One rejected request, so every ingest series has a sample.
        let rejected = client()
            .post(&ingest)
            .header("content-type", "text/plain")
            .body("{}")
            .send()
            .await
            .expect("POST /v1/report");
        assert_eq!(rejected.status(), 415);
        scrape(sidecar.url.trim_end_matches('/')).await
    });
    assert_catalog_complete(&m, &[Scope::Map, Scope::Process, Scope::Ingest]);

    let carts = [
        ("map", "carts"),
        ("source", "go-checkout"),
        ("tenant", "acme"),
    ];
    assert_eq!(m.value("mapscope_map_entries", &carts), 3072.0);
    assert_eq!(m.value("mapscope_map_buckets", &carts), 512.0);
    assert_eq!(m.value("mapscope_map_inserts_total", &carts), 4000.0);
    let carts_series = m.matching("mapscope_map_entries", &[("map", "carts")]);
    let labels: Vec<&str> = carts_series[0].labels.keys().map(String::as_str).collect();
    // A stable label set from the first report: the app and the process
    // are separate labels, whatever other instances report.
    assert_eq!(labels, ["map", "source", "source_instance", "tenant"]);
    let growths = [carts[0], carts[1], carts[2], ("kind", "double")];
    assert_eq!(m.value("mapscope_map_growths_total", &growths), 9.0);
    // Reported maps have a series for every misuse kind, client kinds included.
    let kinds: BTreeSet<String> = m
        .matching("mapscope_map_misuse_events_total", &carts)
        .into_iter()
        .map(|s| s.label("kind").unwrap().to_owned())
        .collect();
    let all: BTreeSet<String> = MisuseKind::ALL
        .iter()
        .map(|k| k.as_str().to_owned())
        .collect();
    assert_eq!(kinds, all);
    let concurrent = [carts[0], carts[1], carts[2], ("kind", "concurrent_write")];
    assert_eq!(
        m.value("mapscope_map_misuse_events_total", &concurrent),
        2.0
    );

    assert_eq!(m.value("mapscope_sources", &[]), 1.0);
    let last = m.value(
        "mapscope_source_last_report_timestamp_seconds",
        &[("source", "go-checkout"), ("source_instance", "pod-1")],
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        (now - last).abs() < 60.0,
        "last report at {last}, now {now}"
    );
    assert_eq!(
        m.value("mapscope_ingest_requests_total", &[("code", "200")]),
        1.0
    );
    assert_eq!(
        m.value("mapscope_ingest_requests_total", &[("code", "415")]),
        1.0
    );
    assert_eq!(
        m.value(
            "mapscope_ingest_rejected_total",
            &[("reason", "content_type")]
        ),
        1.0
    );
    // The sidecar has no maps of its own; the reported one is counted.
    assert_eq!(m.value("mapscope_maps", &[]), 1.0);
    for result in ["map_crash", "other_crash", "invalid"] {
        assert_eq!(
            m.value("mapscope_crash_files_total", &[("result", result)]),
            0.0
        );
    }
    drop(sidecar);
    let _ = std::fs::remove_dir_all(&crash_dir);
}
