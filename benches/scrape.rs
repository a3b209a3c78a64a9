//! Scrape cost of the sidecar: `/metrics` over 10,000 *reported* maps
//! (100 sources × 100 maps, applied through the ingest's `Sources`, the
//! shape of `examples/ingest_load.rs`), three ways:
//!
//! - `sidecar/render/{fresh,shared}/10000`: rendering alone, in process (one
//!   registry observation and the text writer): `render()` into a new
//!   string, and `render_shared()` (what `/metrics` runs) into the last
//!   render's reused buffer;
//! - `sidecar/http/1`: one `GET /metrics` over loopback from a real HTTP
//!   client asking for gzip, as Prometheus does (`Accept-Encoding: gzip`),
//!   through the router the binary serves: render and gzip on a blocking
//!   thread, and the transfer. The client keeps the body compressed (its
//!   decompression is Prometheus's cost, not the sidecar's, and would run
//!   on the same two cores);
//! - `sidecar/http/identity/1`: the same without compression (a client
//!   that sends no `Accept-Encoding`): render and transfer only;
//! - `sidecar/http/4`: four gzip scrapes started together, timed until the
//!   last one is answered: what N concurrent scrapes cost against one.
//!
//! Target: `/metrics` for 10,000 reported maps ≤ 100 ms (issue 13).
//!
//! ```sh
//! cargo bench --bench scrape
//! cargo bench --bench scrape -- sidecar/http/   # only the HTTP groups
//! ```
//!
//! Under `cargo test --benches` (criterion's test mode) the fixture has 10
//! sources × 10 maps, so the smoke run is quick.

use std::hint::black_box;
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread;

use criterion::{BenchmarkId, Criterion};
use mapscope::export::prometheus::MapscopeCollector;
use mapscope::ingest::protocol::{
    KindCounts, KindSeconds, Report, ReportedCounters, ReportedMap, ReportedStats, SourceInfo,
};
use mapscope::ingest::{Limits, Sources};
use mapscope::Registry;

/// The reports of `sources` sources with `maps` maps each: one label per
/// map, values that fire no detector.
fn reports(sources: usize, maps: usize) -> impl Iterator<Item = Report> {
    (0..sources).map(move |source| Report {
        source: SourceInfo {
            app: format!("app{source:03}"),
            instance: "pod-0".into(),
            language: Some("rust".into()),
            sdk: Some("scrape-bench".into()),
            started_at: None,
        },
        seq: 1,
        sent_at: None,
        interval_seconds: Some(10.0),
        maps: (0..maps)
            .map(|m| ReportedMap {
                name: format!("map_{m:03}"),
                labels: [("shard".to_owned(), (m % 8).to_string())].into(),
                stats: ReportedStats {
                    entries: 1000 + m as u64,
                    peak_entries: 2000,
                    buckets: 256,
                    overflow_buckets: 3,
                    memory_bytes: 256 * 208,
                    max_overflow_chain: 1,
                    evacuation: None,
                },
                counters: ReportedCounters {
                    growths: KindCounts {
                        double: 2,
                        ..KindCounts::default()
                    },
                    growth_seconds: KindSeconds {
                        double: 0.002,
                        ..KindSeconds::default()
                    },
                    evacuated_buckets: 255,
                    ..ReportedCounters::default()
                },
            })
            .collect(),
        events: Vec::new(),
    })
}

/// A registry holding `sources × maps` reported maps. The `Sources` is
/// kept alive with it: it owns the ingest statistics the exposition shows.
struct Fixture {
    registry: Registry,
    _sources: Arc<Sources>,
}

impl Fixture {
    fn new(sources: usize, maps: usize) -> Fixture {
        let registry = Registry::builder().max_maps(sources * maps).build();
        let store = Arc::new(Sources::new(&registry, Limits::default()));
        for report in reports(sources, maps) {
            // UNWRAP: valid reports within the default limits.
            store.apply(report).expect("a valid report");
        }
        Fixture {
            registry,
            _sources: store,
        }
    }
}

/// The mapscope router over `registry`, served on a loopback port by a
/// runtime on a thread of its own (the binary's shape: 2 worker threads).
fn serve(registry: Registry) -> SocketAddr {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        // UNWRAP: a runtime builds on any machine the bench runs on.
        .expect("tokio runtime");
    // UNWRAP: binding an ephemeral loopback port.
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("bound address");
    thread::spawn(move || {
        runtime.block_on(async move {
            let _ = axum::serve(listener, mapscope::http::router(registry)).await;
        })
    });
    addr
}

/// One scrape; returns the body's length (as sent: compressed or not).
fn scrape(client: &reqwest::blocking::Client, url: &str) -> usize {
    // UNWRAP: the bench's own server on loopback.
    let mut response = client.get(url).send().expect("GET /metrics");
    assert!(response.status().is_success(), "{}", response.status());
    let mut body = Vec::new();
    response.read_to_end(&mut body).expect("read the body");
    body.len()
}

fn benches(c: &mut Criterion, test: bool) {
    let (sources, maps) = if test { (10, 10) } else { (100, 100) };
    let n = sources * maps;
    let fixture = Fixture::new(sources, maps);
    let collector = MapscopeCollector::new(fixture.registry.clone());
    let bytes = collector.render().len();
    println!(
        "scrape: {n} reported maps, {bytes} bytes of exposition ({:.0} per map)",
        bytes as f64 / n as f64
    );

    let mut group = c.benchmark_group("sidecar/render");
    group.sample_size(10);
    group.bench_function(BenchmarkId::new("fresh", n), |b| {
        b.iter(|| black_box(collector.render()))
    });
    // What `/metrics` runs: the last render's buffer is reused.
    group.bench_function(BenchmarkId::new("shared", n), |b| {
        b.iter(|| black_box(collector.render_shared()))
    });
    group.finish();

    let url = format!("http://{}/metrics", serve(fixture.registry.clone()));
    // Asks for gzip as Prometheus does, but leaves the body compressed:
    // the client's decompression would otherwise be timed too, on the same
    // two cores as the sidecar.
    // UNWRAP: building a client with default settings.
    let gzip = reqwest::blocking::Client::builder()
        .no_gzip()
        .default_headers(
            [(
                reqwest::header::ACCEPT_ENCODING,
                reqwest::header::HeaderValue::from_static("gzip"),
            )]
            .into_iter()
            .collect(),
        )
        .build()
        .expect("HTTP client");
    let client = &gzip;
    let identity = reqwest::blocking::Client::builder()
        .no_gzip()
        .build()
        .expect("HTTP client");
    let mut group = c.benchmark_group("sidecar/http");
    group.sample_size(10);
    group.bench_function(BenchmarkId::from_parameter(1), |b| {
        b.iter(|| black_box(scrape(client, &url)))
    });
    group.bench_function(BenchmarkId::new("identity", 1), |b| {
        b.iter(|| black_box(scrape(&identity, &url)))
    });
    group.bench_function(BenchmarkId::from_parameter(4), |b| {
        b.iter(|| {
            thread::scope(|s| {
                let scrapes: Vec<_> = (0..4).map(|_| s.spawn(|| scrape(client, &url))).collect();
                for scrape in scrapes {
                    // UNWRAP: a scrape thread panics only on a failed scrape.
                    black_box(scrape.join().expect("scrape thread"));
                }
            })
        })
    });
    group.finish();
}

fn main() {
    // Criterion's test mode: `--test`, or run without `--bench` (as
    // `cargo test --benches` runs it).
    let args: Vec<String> = std::env::args().collect();
    let test = args.iter().any(|a| a == "--test") || !args.iter().any(|a| a == "--bench");
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c, test);
    c.final_summary();
}
