//! Sidecar ingest end to end, over real HTTP on loopback: protocol v1
//! (`POST /v1/report`, see `docs/protocol.md`) in, `/metrics` out.
//!
//! - the Rust [`mapscope::Reporter`] → sidecar → `/metrics` round trip;
//! - a sidecar restart (the real binary, killed and started again on the
//!   same ports) in the middle of a stream: counters stay continuous;
//! - a source restart (new `started_at`, seq back to 1) is a counter reset,
//!   retries are duplicates, events are deduplicated by seq;
//! - stable source labels: `source` is the app and `source_instance` the
//!   process, from the first report, however many instances report;
//! - reported maps are rows of the one registry: the `--max-maps` cap and
//!   `_overflow` folding, the grace period of a map left out of a report,
//!   and client conditions that keep the time they fired;
//! - TTL, stale and grace: in process on the registry's manual clock, and
//!   in the binary with `--source-ttl 1 --grace-period 1`;
//! - every limit, table-driven: status, JSON error body naming field and
//!   limit, other sources' series untouched, and the ingest counters;
//! - property tests: `mapscope::ingest::handle` never panics and always
//!   answers 200 or 4xx with a JSON body, for arbitrary JSON;
//! - `docs/openapi.yaml` and `docs/protocol.md` cannot drift from the Rust
//!   protocol structs and the command line.

// Drives the sidecar (its binary or its ingest endpoint): `--features sidecar`.
#![cfg(feature = "sidecar")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, HeaderValue};
use common::{
    blocking_client as client, closed_port, mapscope_command, parse_exposition, poll,
    scrape_blocking as scrape, serve_router, wait_bounded, Exposition, Sample, TestServer, WAIT,
};
use mapscope::export::prometheus::MapscopeCollector;
use mapscope::http::{router_with, HttpState};
use mapscope::ingest::protocol::{
    EventKind, KindCounts, KindSeconds, ReportStatus, ReportedCounters, ReportedEvacuation,
    ReportedEvent, ReportedGrowthKind, ReportedMap, ReportedMisuseKind, ReportedStats, SourceInfo,
    Timestamp, MAX_CLOCK_SKEW_SECONDS, MAX_SEQ_STEP,
};
use mapscope::ingest::{ErrorBody, IngestState, Limits, Report, ReportAccepted, Sources};
use mapscope::registry::{ManualClock, RegistryBuilder, OVERFLOW_MAP};
use mapscope::{GrowthKind, InstrumentedMap, MisuseKind, Registry};
use proptest::prelude::*;
use serde_json::{json, Value};

const TOKEN: &str = "s3cret-token";

// ---------------------------------------------------------------------------
// Helpers: an in-process sidecar, a blocking client, the binary
// ---------------------------------------------------------------------------

/// The ingest router and the HTTP router over one registry, each on its
/// own loopback port, as the binary wires them; the registry's clock is a
/// manual one the test advances.
struct Sidecar {
    sources: Arc<Sources>,
    registry: Registry,
    clock: ManualClock,
    ingest: TestServer,
    http: TestServer,
}

impl Sidecar {
    fn start(limits: Limits, token: Option<&str>) -> Sidecar {
        Sidecar::start_with(Registry::builder(), limits, token)
    }

    /// Like [`Sidecar::start`], over a registry built from `builder`.
    fn start_with(builder: RegistryBuilder, limits: Limits, token: Option<&str>) -> Sidecar {
        let clock = ManualClock::new();
        let registry = builder.clock(clock.clone()).build();
        let sources = Arc::new(Sources::new(&registry, limits));
        let ingest = serve_router(mapscope::ingest::router(IngestState::new(
            sources.clone(),
            token.map(str::to_owned),
        )));
        let http = serve_router(router_with(HttpState::new(registry.clone())));
        Sidecar {
            sources,
            registry,
            clock,
            ingest,
            http,
        }
    }

    fn report_url(&self) -> String {
        self.ingest.url("/v1/report")
    }

    fn metrics(&self) -> Exposition {
        scrape(&self.http.base_url())
    }
}

/// Like [`scrape`], but `None` when the server does not answer.
fn try_scrape(base: &str) -> Option<Exposition> {
    let url = format!("{}/metrics", base.trim_end_matches('/'));
    let response = client().get(&url).send().ok()?;
    if response.status() != 200 {
        return None;
    }
    parse_exposition(&response.text().ok()?).ok()
}

/// One answer of the ingest endpoint.
#[derive(Debug)]
struct Answer {
    status: u16,
    content_type: String,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("answer {} is not JSON ({e}): {:?}", self.status, self.text))
    }

    fn accepted(&self) -> ReportAccepted {
        assert_eq!(self.status, 200, "expected 200: {}", self.text);
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not a ReportAccepted ({e}): {}", self.text))
    }
}

fn post_raw(url: &str, token: Option<&str>, content_type: Option<&str>, body: Vec<u8>) -> Answer {
    let mut request = client().post(url).body(body);
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().expect("read the answer");
    Answer {
        status,
        content_type,
        text,
    }
}

fn post(url: &str, token: Option<&str>, body: &impl serde::Serialize) -> Answer {
    let bytes = serde_json::to_vec(body).expect("serialise the report");
    post_raw(url, token, Some("application/json"), bytes)
}

/// A report of `maps` (and no events) from `app`/`instance`.
/// An RFC 3339 timestamp written in a test.
fn at(text: &str) -> Timestamp {
    text.parse().expect("an RFC 3339 timestamp")
}

fn report(app: &str, instance: &str, seq: u64, maps: Vec<ReportedMap>) -> Report {
    Report {
        source: SourceInfo {
            app: app.into(),
            instance: instance.into(),
            language: Some("test".into()),
            sdk: None,
            started_at: Some(at("2026-11-22T10:00:00Z")),
        },
        seq,
        sent_at: None,
        interval_seconds: None,
        maps,
        events: vec![],
    }
}

/// A map with `entries` entries, `inserts` inserts and some other numbers
/// derived from them, so every series has a distinct expected value.
fn map(name: &str, labels: &[(&str, &str)], entries: u64, inserts: u64) -> ReportedMap {
    ReportedMap {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        stats: ReportedStats {
            entries,
            peak_entries: entries + 1,
            buckets: 8,
            overflow_buckets: 1,
            memory_bytes: 4096,
            max_overflow_chain: 1,
            evacuation: None,
        },
        counters: ReportedCounters {
            growths: KindCounts {
                double: 3,
                same_size: 1,
                shrink: 0,
            },
            growth_seconds: KindSeconds {
                double: 0.25,
                same_size: 0.5,
                shrink: 0.0,
            },
            evacuated_buckets: 12,
            inserts,
            updates: inserts / 2,
            removes: inserts - entries,
            misuse: BTreeMap::new(),
        },
    }
}

fn growth_event(seq: u64, map: &str, seconds: f64) -> ReportedEvent {
    ReportedEvent {
        seq,
        kind: EventKind::Growth,
        map: map.into(),
        labels: BTreeMap::new(),
        at: at("2026-11-22T10:00:01Z"),
        duration_seconds: Some(seconds),
        growth_kind: Some(ReportedGrowthKind::Double),
        misuse_kind: None,
        trace_id: None,
        span_id: None,
        attributes: BTreeMap::new(),
    }
}

/// The one sample of `name` with exactly these labels, if any.
fn find(exposition: &Exposition, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    exposition
        .series(name)
        .find(|s| {
            s.labels.len() == labels.len() && labels.iter().all(|(k, v)| s.label(k) == Some(*v))
        })
        .map(|s| s.value)
}

fn has_source(exposition: &Exposition, source: &str) -> bool {
    exposition
        .samples
        .iter()
        .any(|s| s.label("source") == Some(source))
}

/// Every sample of the given sources, keyed for comparison.
fn series_of(exposition: &Exposition, sources: &[&str]) -> BTreeMap<String, f64> {
    exposition
        .samples
        .iter()
        .filter(|s| s.label("source").is_some_and(|src| sources.contains(&src)))
        .map(|s: &Sample| (format!("{}{:?}", s.name, s.labels), s.value))
        .collect()
}

/// The per-map samples (`mapscope_map_*`) of the given sources.
fn map_series_of(exposition: &Exposition, sources: &[&str]) -> BTreeMap<String, f64> {
    series_of(exposition, sources)
        .into_iter()
        .filter(|(key, _)| key.starts_with("mapscope_map_"))
        .collect()
}

/// A `mapscope sidecar` child process with both listening lines read.
struct SidecarProcess {
    child: Child,
    /// `http://127.0.0.1:P` (no trailing slash).
    http: String,
    /// `http://127.0.0.1:Q/v1/report`.
    ingest: String,
    stderr: Arc<Mutex<String>>,
}

impl SidecarProcess {
    /// Starts `mapscope sidecar` with `args`; `Err` with its stderr when
    /// it exits (for example, a port is taken) or prints nothing in time.
    fn spawn(args: &[String]) -> Result<SidecarProcess, String> {
        let mut child = mapscope_command()
            .arg("sidecar")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("spawn mapscope: {e}"))?;
        let stderr = Arc::new(Mutex::new(String::new()));
        {
            let stderr = stderr.clone();
            let pipe = child.stderr.take().expect("piped stderr");
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut text = stderr.lock().unwrap_or_else(|e| e.into_inner());
                    text.push_str(&line);
                    text.push('\n');
                }
            });
        }
        let (tx, rx) = mpsc::channel();
        let pipe = child.stdout.take().expect("piped stdout");
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("mapscope: http listening on ") {
                    let _ = tx.send(("http", url.trim().trim_end_matches('/').to_owned()));
                } else if let Some(url) = line.strip_prefix("mapscope: ingest listening on ") {
                    let _ = tx.send(("ingest", url.trim().to_owned()));
                }
            }
        });
        let deadline = Instant::now() + WAIT;
        let (mut http, mut ingest) = (None, None);
        while http.is_none() || ingest.is_none() {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(("http", url)) => http = Some(url),
                Ok((_, url)) => ingest = Some(url),
                Err(_) => {
                    let exited = child.try_wait().ok().flatten();
                    if exited.is_some() || Instant::now() > deadline {
                        let _ = child.kill();
                        let _ = wait_bounded(&mut child, Duration::from_secs(5));
                        thread::sleep(Duration::from_millis(50));
                        let text = stderr.lock().unwrap_or_else(|e| e.into_inner()).clone();
                        return Err(format!("mapscope sidecar {args:?} ({exited:?}): {text}"));
                    }
                }
            }
        }
        Ok(SidecarProcess {
            child,
            http: http.expect("http line"),
            ingest: ingest.expect("ingest line"),
            stderr,
        })
    }

    /// Starts the sidecar on fixed loopback ports, retrying for a while in
    /// case a port is still held (a restart on the same ports).
    fn spawn_on(http: u16, ingest: u16, extra: &[&str]) -> Result<SidecarProcess, String> {
        let mut args = vec![
            "--listen".to_owned(),
            format!("127.0.0.1:{http}"),
            "--ingest-listen".to_owned(),
            format!("127.0.0.1:{ingest}"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match SidecarProcess::spawn(&args) {
                Ok(process) => return Ok(process),
                Err(error) if Instant::now() > deadline => return Err(error),
                Err(_) => thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// Kills the process (SIGKILL: no goodbye) and reaps it.
    fn kill(mut self) {
        let _ = self.child.kill();
        assert!(
            wait_bounded(&mut self.child, Duration::from_secs(5)).is_some(),
            "the killed sidecar was not reaped"
        );
    }
}

impl Drop for SidecarProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = wait_bounded(&mut self.child, Duration::from_secs(5));
        }
        if thread::panicking() {
            let text = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
            eprintln!("--- sidecar stderr\n{text}");
        }
    }
}

// ---------------------------------------------------------------------------
// Round trip: Reporter -> sidecar -> /metrics
// ---------------------------------------------------------------------------

#[test]
fn reporter_round_trip_values_and_labels() {
    let sidecar = Sidecar::start(Limits::default(), Some(TOKEN));
    let app = Registry::new();
    let mut orders: InstrumentedMap<u64, u64> = InstrumentedMap::builder("orders")
        .label("tenant", "acme")
        .register(&app)
        .expect("register orders");
    for i in 0..3000 {
        orders.insert(i, i);
    }
    for i in 0..500 {
        orders.insert(i, i + 1); // updates
    }
    for i in 0..1000 {
        orders.remove(&i);
    }
    orders.publish();
    let mut sessions: InstrumentedMap<u64, u64> = InstrumentedMap::builder("sessions")
        .register(&app)
        .expect("register sessions");
    for i in 0..10 {
        sessions.insert(i, i);
    }
    sessions.publish();

    let reporter = mapscope::Reporter::builder()
        .endpoint(sidecar.report_url())
        .token(TOKEN)
        .interval(Duration::from_millis(100))
        .app("checkout")
        .instance("pod-1")
        .spawn(&app)
        .expect("start the reporter");

    let expected = app.snapshot();
    let stats = expected.map("orders").expect("orders").stats;
    assert_eq!(stats.entries, 2000);
    let labels = [
        ("map", "orders"),
        ("source", "checkout"),
        ("source_instance", "pod-1"),
        ("tenant", "acme"),
    ];
    let metrics = poll(WAIT, "orders reported with its entries", || {
        let metrics = sidecar.metrics();
        (find(&metrics, "mapscope_map_entries", &labels) == Some(2000.0)).then_some(metrics)
    });

    let value =
        |name: &str| find(&metrics, name, &labels).unwrap_or_else(|| panic!("no {name}{labels:?}"));
    assert_eq!(value("mapscope_map_entries"), stats.entries as f64);
    assert_eq!(
        value("mapscope_map_peak_entries"),
        stats.peak_entries as f64
    );
    assert_eq!(value("mapscope_map_buckets"), stats.buckets as f64);
    assert_eq!(
        value("mapscope_map_overflow_buckets"),
        stats.overflow_buckets as f64
    );
    assert_eq!(
        value("mapscope_map_memory_bytes"),
        stats.memory_bytes as f64
    );
    assert_eq!(value("mapscope_map_inserts_total"), stats.inserts as f64);
    assert_eq!(value("mapscope_map_updates_total"), stats.updates as f64);
    assert_eq!(value("mapscope_map_removes_total"), stats.removes as f64);
    assert_eq!(stats.inserts, 3000);
    assert_eq!(stats.updates, 500);
    assert_eq!(stats.removes, 1000);
    assert_eq!(
        value("mapscope_map_evacuated_buckets_total"),
        stats.evacuated_buckets_total as f64
    );
    let load = value("mapscope_map_load_factor");
    assert!(
        (load - stats.load_factor).abs() < 1e-9,
        "{load} vs {stats:?}"
    );
    for kind in GrowthKind::ALL {
        let with_kind = [
            ("kind", kind.as_str()),
            ("map", "orders"),
            ("source", "checkout"),
            ("source_instance", "pod-1"),
            ("tenant", "acme"),
        ];
        assert_eq!(
            find(&metrics, "mapscope_map_growths_total", &with_kind),
            Some(stats.growths(kind) as f64),
            "{kind:?}"
        );
        let seconds = find(&metrics, "mapscope_map_growth_seconds_total", &with_kind)
            .expect("growth seconds");
        assert!(
            (seconds - stats.growth_seconds(kind)).abs() < 1e-9,
            "{kind:?}"
        );
        // Client-side misuse kinds get series (zero) for reported maps.
    }
    assert!(stats.growths(GrowthKind::Double) >= 5, "{stats:?}");
    for kind in MisuseKind::CLIENT {
        let with_kind = [
            ("kind", kind.as_str()),
            ("map", "orders"),
            ("source", "checkout"),
            ("source_instance", "pod-1"),
            ("tenant", "acme"),
        ];
        assert_eq!(
            find(&metrics, "mapscope_map_misuse_events_total", &with_kind),
            Some(0.0),
            "{kind:?}"
        );
    }
    // The second map, with no labels of its own.
    assert_eq!(
        find(
            &metrics,
            "mapscope_map_entries",
            &[
                ("map", "sessions"),
                ("source", "checkout"),
                ("source_instance", "pod-1")
            ]
        ),
        Some(10.0)
    );
    // Every reported series has source="checkout"; nothing else is a map.
    let sources = metrics.label_values("mapscope_map_entries", "source");
    assert_eq!(sources, BTreeSet::from(["checkout".to_owned()]));
    assert_eq!(metrics.series("mapscope_map_entries").count(), 2);
    assert_eq!(metrics.value("mapscope_sources", &[]), 1.0);
    let last = metrics.value(
        "mapscope_source_last_report_timestamp_seconds",
        &[("source", "checkout"), ("source_instance", "pod-1")],
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64();
    assert!((now - last).abs() < 60.0, "last report {last}, now {now}");

    // Growth events travel too: the sidecar's histogram counts every
    // growth the app finished.
    let finished = app
        .events_since(0)
        .events
        .iter()
        .filter(|r| matches!(r.event, mapscope::registry::Event::GrowthFinished(_)))
        .count();
    assert!(finished >= 5, "{finished} growths finished");
    let histogram = poll(WAIT, "every growth event counted", || {
        let metrics = sidecar.metrics();
        let count: f64 = metrics
            .series("mapscope_growth_duration_seconds_count")
            .map(|s| s.value)
            .sum();
        (count == finished as f64).then_some(count)
    });
    assert_eq!(histogram, finished as f64);
    let ok = sidecar
        .metrics()
        .value("mapscope_ingest_requests_total", &[("code", "200")]);
    assert!(ok >= 1.0);
    assert!(reporter.stats().reports_sent >= 1);
    assert_eq!(reporter.stats().reports_failed, 0);
    reporter.shutdown();
}

// ---------------------------------------------------------------------------
// Sidecar restart in the middle of a stream
// ---------------------------------------------------------------------------

#[test]
fn sidecar_restart_keeps_counters_continuous() {
    // Free ports for both listeners, reused by the second process.
    let (mut http_port, mut ingest_port) = (closed_port(), closed_port());
    let mut first = None;
    for _ in 0..5 {
        match SidecarProcess::spawn_on(http_port, ingest_port, &[]) {
            Ok(process) => {
                first = Some(process);
                break;
            }
            Err(_) => (http_port, ingest_port) = (closed_port(), closed_port()),
        }
    }
    let first = first.expect("start the first sidecar");
    let ingest_url = first.ingest.clone();
    let http_url = first.http.clone();

    // The application: a map written continuously on its own thread.
    let app = Registry::new();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let app = app.clone();
        let stop = stop.clone();
        thread::spawn(move || {
            let mut map: InstrumentedMap<u64, u64> = InstrumentedMap::builder("orders")
                .register(&app)
                .expect("register orders");
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut next = 0u64;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                for _ in 0..10 {
                    map.insert(next, next);
                    next += 1;
                }
                map.publish();
                thread::sleep(Duration::from_millis(5));
            }
            map.publish();
            map
        })
    };
    let reporter = mapscope::Reporter::builder()
        .endpoint(ingest_url.clone())
        .interval(Duration::from_millis(100))
        .max_backoff(Duration::from_millis(300))
        .app("checkout")
        .instance("pod-1")
        .spawn(&app)
        .expect("start the reporter");

    let labels = [
        ("map", "orders"),
        ("source", "checkout"),
        ("source_instance", "pod-1"),
    ];
    let mut seen: Vec<(u8, f64)> = Vec::new();
    let mut observe = |process: u8, base: &str| -> Option<f64> {
        let value = find(&try_scrape(base)?, "mapscope_map_inserts_total", &labels)?;
        seen.push((process, value));
        Some(value)
    };
    // Before: a few increasing values from the first sidecar.
    let before = poll(WAIT, "inserts reported to the first sidecar", || {
        observe(1, &http_url).filter(|v| *v >= 200.0)
    });
    thread::sleep(Duration::from_millis(300));
    let before = observe(1, &http_url).unwrap_or(before);

    // Kill it mid-stream; the client keeps writing and reporting (and fails).
    first.kill();
    thread::sleep(Duration::from_millis(700));
    let second = SidecarProcess::spawn_on(http_port, ingest_port, &[])
        .expect("restart the sidecar on the same ports");
    assert_eq!(second.ingest, ingest_url);
    let after = poll(WAIT, "inserts reported to the restarted sidecar", || {
        observe(2, &second.http)
    });
    assert!(
        after >= before,
        "the counter dropped across the restart: {before} -> {after}"
    );

    // Stop writing: the restarted sidecar converges on the client's exact
    // cumulative total, with nothing lost and nothing counted twice.
    stop.store(true, Ordering::Relaxed);
    let map = writer.join().expect("the writer thread");
    let total = map.stats().inserts as f64;
    let converged = poll(
        WAIT,
        "the restarted sidecar shows the client's total",
        || observe(2, &second.http).filter(|v| *v == total),
    );
    assert_eq!(converged, total);
    assert!(
        total > before,
        "the client kept writing through the restart"
    );
    for pair in seen.windows(2) {
        assert!(
            pair[1].1 >= pair[0].1,
            "inserts_total went backwards: {pair:?} in {seen:?}"
        );
    }
    assert!(
        reporter.stats().reports_failed >= 1,
        "the reporter saw the outage"
    );
    reporter.shutdown();
    drop(second);
}

// ---------------------------------------------------------------------------
// Source restart, duplicates, event dedup
// ---------------------------------------------------------------------------

fn incarnation(mut report: Report, started_at: &str) -> Report {
    report.source.started_at = Some(at(started_at));
    report
}

/// A growth reported without `duration_seconds` is an event (in the JSON
/// API's recent events, without a duration) but no observation of the
/// growth-duration histogram: a 0 s sample would drag every quantile down.
#[test]
fn a_growth_without_duration_is_not_a_zero_second_observation() {
    let registry = Registry::new();
    let store = Sources::new(&registry, Limits::default());
    let mut r = report("checkout", "pod-1", 1, vec![map("orders", &[], 10, 100)]);
    let mut unmeasured = growth_event(2, "orders", 0.0);
    unmeasured.duration_seconds = None;
    r.events = vec![growth_event(1, "orders", 0.002), unmeasured];
    assert_eq!(store.apply(r).unwrap().events_accepted, 2);
    let snapshot = registry.snapshot();
    // GrowthDurations are indexed like GrowthKind::ALL.
    let double = GrowthKind::ALL
        .iter()
        .position(|k| *k == GrowthKind::Double)
        .unwrap();
    assert_eq!(
        snapshot.growth_durations.count[double], 1,
        "one measured growth"
    );
    assert!((snapshot.growth_durations.sum[double] - 0.002).abs() < 1e-12);
    let api = mapscope::http::ApiSnapshot::from_snapshot(&snapshot);
    let durations: Vec<Option<f64>> = api
        .recent_events
        .iter()
        .filter(|e| e.event == "growth_finished")
        .map(|e| e.duration_seconds)
        .collect();
    assert_eq!(durations, [Some(0.002), None]);
    let text = MapscopeCollector::new(registry).render();
    let m = parse_exposition(&text).unwrap();
    assert_eq!(
        m.value(
            "mapscope_growth_duration_seconds_count",
            &[("kind", "double")]
        ),
        1.0
    );
    assert_eq!(
        m.value(
            "mapscope_growth_duration_seconds_bucket",
            &[("kind", "double"), ("le", "0.0001")]
        ),
        0.0,
        "no 0 s observation"
    );
}

#[test]
fn source_restart_is_a_counter_reset_and_retries_are_duplicates() {
    let sidecar = Sidecar::start(Limits::default(), None);
    let url = sidecar.report_url();
    let labels = [
        ("map", "orders"),
        ("source", "checkout"),
        ("source_instance", "pod-1"),
    ];
    let inserts = |sidecar: &Sidecar| {
        find(&sidecar.metrics(), "mapscope_map_inserts_total", &labels).expect("inserts")
    };
    let growths_counted = |sidecar: &Sidecar| {
        sidecar.metrics().value(
            "mapscope_growth_duration_seconds_count",
            &[("kind", "double")],
        )
    };
    const FIRST: &str = "2026-11-22T10:00:00Z";
    const SECOND: &str = "2026-11-22T11:00:00.5+01:00";

    // Incarnation 1: seq 1..3, cumulative inserts 100, 200, 300.
    let mut r1 = incarnation(
        report("checkout", "pod-1", 1, vec![map("orders", &[], 10, 100)]),
        FIRST,
    );
    r1.events = vec![
        growth_event(1, "orders", 0.002),
        growth_event(2, "orders", 0.003),
    ];
    let a = post(&url, None, &r1).accepted();
    assert_eq!(
        (a.status.as_str(), a.events_accepted, a.restarted),
        ("accepted", 2, false)
    );
    assert_eq!(a.source, "checkout");
    assert_eq!(a.maps, 1);
    let mut r2 = incarnation(
        report("checkout", "pod-1", 2, vec![map("orders", &[], 10, 200)]),
        FIRST,
    );
    // Event 2 again (the client did not see the first answer) and a new one.
    r2.events = vec![
        growth_event(2, "orders", 0.003),
        growth_event(3, "orders", 0.004),
    ];
    let a = post(&url, None, &r2).accepted();
    assert_eq!((a.status.as_str(), a.events_accepted), ("accepted", 1));
    let r3 = incarnation(
        report("checkout", "pod-1", 3, vec![map("orders", &[], 10, 300)]),
        FIRST,
    );
    post(&url, None, &r3).accepted();
    assert_eq!(inserts(&sidecar), 300.0);
    assert_eq!(growths_counted(&sidecar), 3.0, "event 2 counted once");

    // A retry of seq 2 from the same incarnation: duplicate, nothing changes
    // (but its last-report time: a duplicate is still a sign of life).
    let before = map_series_of(&sidecar.metrics(), &["checkout"]);
    let a = post(&url, None, &r2).accepted();
    assert_eq!(
        (a.status.as_str(), a.events_accepted, a.restarted),
        ("duplicate", 0, false)
    );
    assert_eq!(map_series_of(&sidecar.metrics(), &["checkout"]), before);
    assert_eq!(
        inserts(&sidecar),
        300.0,
        "an old seq must not roll counters back"
    );
    assert_eq!(growths_counted(&sidecar), 3.0);
    // Same seq again: duplicate too.
    assert_eq!(
        post(&url, None, &r3).accepted().status,
        ReportStatus::Duplicate
    );

    // Incarnation 2: new started_at, seq back to 1, lower counters.
    let mut n1 = incarnation(
        report("checkout", "pod-1", 1, vec![map("orders", &[], 3, 7)]),
        SECOND,
    );
    n1.events = vec![growth_event(1, "orders", 0.001)];
    let a = post(&url, None, &n1).accepted();
    assert_eq!(
        (a.status.as_str(), a.events_accepted, a.restarted),
        ("accepted", 1, true),
        "event seq starts over with the process"
    );
    assert_eq!(inserts(&sidecar), 7.0, "a restart shows as a counter reset");
    assert_eq!(
        find(&sidecar.metrics(), "mapscope_map_entries", &labels),
        Some(3.0)
    );
    assert_eq!(growths_counted(&sidecar), 4.0);
    let n2 = incarnation(
        report("checkout", "pod-1", 2, vec![map("orders", &[], 3, 9)]),
        SECOND,
    );
    assert!(!post(&url, None, &n2).accepted().restarted);
    assert_eq!(inserts(&sidecar), 9.0);
    // A retry of the new incarnation's seq 1: duplicate.
    let a = post(&url, None, &n1).accepted();
    assert_eq!((a.status.as_str(), a.restarted), ("duplicate", false));
    assert_eq!(inserts(&sidecar), 9.0);
    assert_eq!(growths_counted(&sidecar), 4.0);

    // A client without started_at: a lower seq means a restart.
    let mut plain = report("legacy", "pod-1", 5, vec![map("orders", &[], 1, 50)]);
    plain.source.started_at = None;
    assert!(!post(&url, None, &plain).accepted().restarted);
    plain.seq = 1;
    plain.maps = vec![map("orders", &[], 1, 2)];
    assert!(post(&url, None, &plain).accepted().restarted);
    assert_eq!(
        find(
            &sidecar.metrics(),
            "mapscope_map_inserts_total",
            &[
                ("map", "orders"),
                ("source", "legacy"),
                ("source_instance", "pod-1")
            ]
        ),
        Some(2.0)
    );
}

/// A report that arrives late from a process that has since restarted
/// (its `started_at` is older than the current one) must not be applied:
/// it would roll every counter back up to the dead process's totals, and
/// the next report of the live process would reset them again, so
/// `rate()` counts the old totals a second time.
#[test]
fn late_report_from_a_previous_incarnation_is_not_applied() {
    let sidecar = Sidecar::start(Limits::default(), None);
    let url = sidecar.report_url();
    let labels = [
        ("map", "orders"),
        ("source", "checkout"),
        ("source_instance", "pod-1"),
    ];
    let old = incarnation(
        report("checkout", "pod-1", 41, vec![map("orders", &[], 10, 5000)]),
        "2026-11-22T10:00:00Z",
    );
    post(&url, None, &old).accepted();
    let new = incarnation(
        report("checkout", "pod-1", 1, vec![map("orders", &[], 1, 10)]),
        "2026-11-22T12:00:00Z",
    );
    assert!(post(&url, None, &new).accepted().restarted);
    // The old process's last report, retried late (a proxy, a slow
    // shutdown): older started_at, higher counters.
    let late = incarnation(
        report("checkout", "pod-1", 42, vec![map("orders", &[], 10, 5100)]),
        "2026-11-22T10:00:00Z",
    );
    let answer = post(&url, None, &late);
    let inserts = find(&sidecar.metrics(), "mapscope_map_inserts_total", &labels);
    assert_eq!(
        inserts,
        Some(10.0),
        "a stale incarnation changed the counters; answer {}",
        answer.text
    );
}

/// A process restarts with a client that now sends `started_at` (the old
/// one did not): its seq starts at 1 again, below the last seq seen. The
/// report must be applied as a restart, not answered `duplicate` (which
/// would hide the new process's counters until its seq passes the old one).
#[test]
fn restart_that_adds_started_at_is_a_restart() {
    let sidecar = Sidecar::start(Limits::default(), None);
    let url = sidecar.report_url();
    let mut old = report("checkout", "pod-1", 100, vec![map("orders", &[], 10, 5000)]);
    old.source.started_at = None;
    post(&url, None, &old).accepted();
    let new = incarnation(
        report("checkout", "pod-1", 1, vec![map("orders", &[], 1, 10)]),
        "2026-11-22T12:00:00Z",
    );
    let answer = post(&url, None, &new).accepted();
    assert_eq!(
        (answer.status.as_str(), answer.restarted),
        ("accepted", true)
    );
}

// ---------------------------------------------------------------------------
// The source label
// ---------------------------------------------------------------------------

/// A reported map's series identity is fixed by its first report: `source`
/// is the app and `source_instance` the process. A second instance of the
/// app reporting, or leaving, changes nothing about the first one's series
/// (so `rate()` over them never breaks).
#[test]
fn source_labels_are_app_and_instance_and_never_move() {
    let sidecar = Sidecar::start(Limits::default(), None);
    let url = sidecar.report_url();
    let a_series = [
        ("map", "orders"),
        ("source", "checkout"),
        ("source_instance", "a"),
    ];
    let one = post(
        &url,
        None,
        &report("checkout", "a", 1, vec![map("orders", &[], 1, 1)]),
    );
    assert_eq!(one.accepted().source, "checkout");
    let before = sidecar.metrics();
    assert_eq!(find(&before, "mapscope_map_entries", &a_series), Some(1.0));
    let a_before = before
        .series("mapscope_map_inserts_total")
        .find(|s| s.label("source_instance") == Some("a"))
        .expect("a's series")
        .labels
        .clone();

    // A second instance of the same app: series of its own, a's unchanged.
    let two = post(
        &url,
        None,
        &report("checkout", "b", 1, vec![map("orders", &[], 2, 2)]),
    );
    assert_eq!(two.accepted().source, "checkout");
    let metrics = sidecar.metrics();
    assert_eq!(find(&metrics, "mapscope_map_entries", &a_series), Some(1.0));
    assert_eq!(
        find(
            &metrics,
            "mapscope_map_entries",
            &[
                ("map", "orders"),
                ("source", "checkout"),
                ("source_instance", "b")
            ]
        ),
        Some(2.0)
    );
    let a_after = metrics
        .series("mapscope_map_inserts_total")
        .find(|s| s.label("source_instance") == Some("a"))
        .expect("a's series")
        .labels
        .clone();
    assert_eq!(a_before, a_after, "a's label set did not move");
    assert_eq!(metrics.value("mapscope_sources", &[]), 2.0);
    for instance in ["a", "b"] {
        metrics.value(
            "mapscope_source_last_report_timestamp_seconds",
            &[("source", "checkout"), ("source_instance", instance)],
        );
    }

    // b stops; a keeps reporting. Once b is gone, a's series are the same.
    let mut r = report("checkout", "a", 2, vec![map("orders", &[], 1, 1)]);
    r.interval_seconds = Some(60.0);
    sidecar.clock.advance(Duration::from_secs(31));
    post(&url, None, &r).accepted();
    sidecar.sources.sweep();
    sidecar.clock.advance(Duration::from_secs(31));
    sidecar.sources.sweep();
    let metrics = sidecar.metrics();
    assert_eq!(find(&metrics, "mapscope_map_entries", &a_series), Some(1.0));
    assert!(metrics
        .series("mapscope_map_entries")
        .all(|s| s.label("source_instance") != Some("b")));
    assert_eq!(metrics.value("mapscope_sources", &[]), 1.0);
}

/// A map may not take the label names mapscope sets: `source_instance` is
/// reserved like `source`.
#[test]
fn source_instance_is_a_reserved_label() {
    let sidecar = Sidecar::start(Limits::default(), None);
    let answer = post(
        &sidecar.report_url(),
        None,
        &report(
            "checkout",
            "a",
            1,
            vec![map("orders", &[("source_instance", "x")], 1, 1)],
        ),
    );
    assert_eq!(answer.status, 400, "{}", answer.text);
    let error: ErrorBody = serde_json::from_str(&answer.text).expect("an error body");
    assert_eq!(
        error.field.as_deref(),
        Some("maps[0].labels.source_instance")
    );
    assert!(
        error.error.contains("source_instance") && error.error.contains("reserved"),
        "{}",
        error.error
    );
    let registered = InstrumentedMap::<u64, u64>::builder("m")
        .label("source_instance", "x")
        .register(&Registry::new());
    assert!(registered.is_err());
}

/// Two different clients must never produce the same series: an app named
/// `checkout/a` (names may contain `/`) collides with instance `a` of app
/// `checkout` while `checkout` has several instances, and `/metrics` then
/// holds duplicate series, which breaks the whole scrape.
#[test]
fn source_labels_of_different_clients_never_collide() {
    let sidecar = Sidecar::start(Limits::default(), None);
    let url = sidecar.report_url();
    post(
        &url,
        None,
        &report("checkout", "a", 1, vec![map("orders", &[], 1, 1)]),
    )
    .accepted();
    post(
        &url,
        None,
        &report("checkout", "b", 1, vec![map("orders", &[], 2, 2)]),
    )
    .accepted();
    let answer = post(
        &url,
        None,
        &report("checkout/a", "x", 1, vec![map("orders", &[], 3, 3)]),
    );
    // Either rejected, or given a label of its own.
    let response = client()
        .get(sidecar.http.url("/metrics"))
        .send()
        .expect("GET /metrics");
    let text = response.text().expect("read /metrics");
    let parsed = parse_exposition(&text);
    assert!(
        parsed.is_ok(),
        "answer {} {}; /metrics: {:?}",
        answer.status,
        answer.text,
        parsed.err()
    );
}

// ---------------------------------------------------------------------------
// TTL, stale, grace
// ---------------------------------------------------------------------------

#[test]
fn stale_sources_are_swept_after_ttl_and_grace() {
    let mut limits = Limits::default();
    limits.source_ttl = Duration::from_secs(10);
    let grace = Duration::from_secs(20);
    let sidecar = Sidecar::start_with(Registry::builder().grace_period(grace), limits, None);
    let url = sidecar.report_url();
    let clock = &sidecar.clock;
    post(
        &url,
        None,
        &report("quiet", "a", 1, vec![map("orders", &[], 1, 1)]),
    )
    .accepted();
    // Declares a 60 s interval: stale after 3 intervals, not after the TTL.
    let mut slow = report("slow", "a", 1, vec![map("orders", &[], 2, 2)]);
    slow.interval_seconds = Some(60.0);
    post(&url, None, &slow).accepted();
    let metrics = sidecar.metrics();
    assert_eq!(metrics.value("mapscope_sources", &[]), 2.0);

    // At the TTL: nothing happens yet.
    clock.advance(Duration::from_secs(10));
    sidecar.sources.sweep();
    assert_eq!(sidecar.metrics().value("mapscope_sources", &[]), 2.0);
    // Past the TTL: quiet is stale, its series stay for the grace period.
    clock.advance(Duration::from_millis(1));
    sidecar.sources.sweep();
    let metrics = sidecar.metrics();
    assert_eq!(metrics.value("mapscope_sources", &[]), 1.0);
    assert!(
        has_source(&metrics, "quiet"),
        "series stay during the grace period"
    );
    assert!(find(
        &metrics,
        "mapscope_source_last_report_timestamp_seconds",
        &[("source", "quiet"), ("source_instance", "a")]
    )
    .is_none());
    let stale = sidecar.registry.snapshot();
    assert!(stale
        .map("orders")
        .is_some_and(|m| m.id.source.as_deref() == Some("quiet") && m.dropped));
    // Scrapes never sweep: however late, a scrape leaves the series.
    clock.advance(grace);
    assert!(
        has_source(&sidecar.metrics(), "quiet"),
        "at the grace period's end"
    );
    // Past the grace period, the sweep removes it.
    clock.advance(Duration::from_millis(1));
    sidecar.sources.sweep();
    let metrics = sidecar.metrics();
    assert!(!has_source(&metrics, "quiet"));
    assert!(has_source(&metrics, "slow"), "3 x 60 s have not passed");
    assert_eq!(metrics.value("mapscope_sources", &[]), 1.0);
    // Slow goes stale after 3 of its intervals, then after the grace.
    clock.advance(Duration::from_secs(180) - Duration::from_secs(30));
    sidecar.sources.sweep();
    assert_eq!(sidecar.metrics().value("mapscope_sources", &[]), 0.0);
    assert!(has_source(&sidecar.metrics(), "slow"));
    clock.advance(grace + Duration::from_millis(1));
    sidecar.sources.sweep();
    assert!(!has_source(&sidecar.metrics(), "slow"));

    // A source that comes back after removal starts afresh.
    let back = post(
        &url,
        None,
        &report("quiet", "a", 2, vec![map("orders", &[], 1, 1)]),
    );
    assert!(!back.accepted().restarted);
    assert!(has_source(&sidecar.metrics(), "quiet"));
}

/// A stale source's maps keep their last values, but the detectors stop
/// evaluating them; a report makes the source live again.
#[test]
fn a_report_revives_a_stale_source() {
    let mut limits = Limits::default();
    limits.source_ttl = Duration::from_secs(10);
    let sidecar = Sidecar::start(limits, None);
    let url = sidecar.report_url();
    post(
        &url,
        None,
        &report("app", "a", 1, vec![map("orders", &[], 1, 1)]),
    )
    .accepted();
    sidecar.clock.advance(Duration::from_secs(11));
    sidecar.sources.sweep();
    assert!(sidecar.registry.snapshot().map("orders").unwrap().dropped);
    // A retry of the last report is a sign of life too.
    post(
        &url,
        None,
        &report("app", "a", 1, vec![map("orders", &[], 1, 1)]),
    )
    .accepted();
    let snapshot = sidecar.registry.snapshot();
    assert!(!snapshot.map("orders").unwrap().dropped, "live again");
    assert_eq!(snapshot.ingest.unwrap().sources.len(), 1);
}

// ---------------------------------------------------------------------------
// Reported maps are rows of the one registry
// ---------------------------------------------------------------------------

/// `--max-maps` caps reported maps as it caps in-process ones: 12 sources
/// of 10 maps each under a cap of 25 give 25 maps with series of their own
/// and one `_overflow`, and count every fold.
#[test]
fn reported_maps_fold_into_overflow_past_max_maps() {
    const CAP: usize = 25;
    let sidecar = Sidecar::start_with(Registry::builder().max_maps(CAP), Limits::default(), None);
    // One in-process map of the sidecar's own takes a place too.
    let mut own = InstrumentedMap::<u64, u64>::builder("own")
        .register(&sidecar.registry)
        .unwrap();
    own.insert(1, 1);
    own.publish();
    let url = sidecar.report_url();
    for source in 0..12 {
        let maps = (0..10).map(|i| map(&format!("m{i}"), &[], 1, 10)).collect();
        post(
            &url,
            None,
            &report("app", &format!("pod-{source}"), 1, maps),
        )
        .accepted();
    }
    let metrics = sidecar.metrics();
    let series = metrics.series("mapscope_map_entries").count();
    assert_eq!(series, CAP + 1, "the cap plus _overflow");
    let folds = metrics.value("mapscope_map_overflow_folds_total", &[]);
    assert_eq!(folds, (12 * 10 + 1 - CAP) as f64);
    let overflow = [("map", OVERFLOW_MAP)];
    assert_eq!(
        metrics.value("mapscope_map_entries", &overflow),
        (12 * 10 + 1 - CAP) as f64
    );
    assert_eq!(
        metrics.value("mapscope_map_inserts_total", &overflow),
        10.0 * (12 * 10 + 1 - CAP) as f64
    );
    assert_eq!(metrics.value("mapscope_maps", &[]), 121.0);
    // The same reports again fold nothing new: a row keeps its place.
    for source in 0..12 {
        let maps = (0..10).map(|i| map(&format!("m{i}"), &[], 1, 20)).collect();
        post(
            &url,
            None,
            &report("app", &format!("pod-{source}"), 2, maps),
        )
        .accepted();
    }
    let metrics = sidecar.metrics();
    assert_eq!(metrics.series("mapscope_map_entries").count(), CAP + 1);
    assert_eq!(
        metrics.value("mapscope_map_overflow_folds_total", &[]),
        folds
    );
    assert_eq!(
        metrics.value("mapscope_map_inserts_total", &overflow),
        20.0 * (12 * 10 + 1 - CAP) as f64
    );
    // A folded source that restarts (counters from zero) never takes the
    // `_overflow` counters down.
    let mut restarted = report(
        "app",
        "pod-11",
        1,
        (0..10).map(|i| map(&format!("m{i}"), &[], 1, 1)).collect(),
    );
    restarted.source.started_at = Some(at("2026-11-22T11:00:00Z"));
    assert!(post(&url, None, &restarted).accepted().restarted);
    let after = sidecar
        .metrics()
        .value("mapscope_map_inserts_total", &overflow);
    assert!(
        after >= 20.0 * (12 * 10 + 1 - CAP) as f64,
        "the _overflow counter went down to {after}"
    );
}

/// A client-reported misuse count that rises holds its condition for the
/// detectors' `event_hold`, and the condition says when it fired: the first
/// rise, not the time of every later request.
#[test]
fn a_reported_condition_keeps_the_time_it_fired() {
    let sidecar = Sidecar::start(Limits::default(), None);
    let url = sidecar.report_url();
    let hold = sidecar.registry.detector_config().event_hold;
    let with_misuse = |seq: u64, count: u64| {
        let mut m = map("carts", &[], 1, 1);
        m.counters
            .misuse
            .insert(ReportedMisuseKind::NilMapWrite, count);
        report("checkout", "pod-1", seq, vec![m])
    };
    let since = |sidecar: &Sidecar| {
        let snapshot = sidecar.registry.snapshot();
        let carts = snapshot.map("carts").expect("carts");
        carts
            .conditions
            .iter()
            .find(|c| c.kind == MisuseKind::NilMapWrite)
            .map(|c| (c.since, c.value))
    };
    post(&url, None, &with_misuse(1, 1)).accepted();
    let (fired, value) = since(&sidecar).expect("active after the first rise");
    assert_eq!(value, 1.0);
    // Later requests, a rise among them: the condition stays, dated from
    // when it fired.
    for (seq, count) in [(2, 1), (3, 2), (4, 2)] {
        sidecar.clock.advance(Duration::from_secs(10));
        post(&url, None, &with_misuse(seq, count)).accepted();
        assert_eq!(since(&sidecar).map(|(at, _)| at), Some(fired), "seq {seq}");
    }
    assert_eq!(since(&sidecar).map(|(_, v)| v), Some(2.0));
    // Held for event_hold after the last rise (at seq 3, 20 s in)...
    sidecar.clock.advance(hold - Duration::from_secs(10));
    assert!(since(&sidecar).is_some());
    // ...then cleared; a new rise fires anew, at its own time.
    sidecar.clock.advance(Duration::from_secs(1));
    assert!(since(&sidecar).is_none());
    post(&url, None, &with_misuse(5, 3)).accepted();
    let (again, _) = since(&sidecar).expect("fired again");
    assert_eq!(
        again.duration_since(fired).unwrap(),
        Duration::from_secs(30) + hold - Duration::from_secs(10) + Duration::from_secs(1)
    );
}

/// A map a report leaves out was dropped by the client: like a dropped
/// in-process map, it keeps its last values for the grace period, then
/// leaves. Reported again in time, it is the same series.
#[test]
fn a_map_left_out_of_a_report_stays_for_the_grace_period() {
    let grace = Duration::from_secs(30);
    let sidecar = Sidecar::start_with(
        Registry::builder().grace_period(grace),
        Limits::default(),
        None,
    );
    let url = sidecar.report_url();
    post(
        &url,
        None,
        &report(
            "checkout",
            "pod-1",
            1,
            vec![map("orders", &[], 5, 5), map("carts", &[], 7, 7)],
        ),
    )
    .accepted();
    post(
        &url,
        None,
        &report("checkout", "pod-1", 2, vec![map("orders", &[], 5, 6)]),
    )
    .accepted();
    let carts = [("map", "carts"), ("source", "checkout")];
    let snapshot = sidecar.registry.snapshot();
    assert!(snapshot.map("carts").unwrap().dropped);
    assert!(!snapshot.map("orders").unwrap().dropped);
    sidecar.clock.advance(grace);
    assert_eq!(
        find(
            &sidecar.metrics(),
            "mapscope_map_entries",
            &[carts[0], carts[1], ("source_instance", "pod-1")]
        ),
        Some(7.0),
        "final values during the grace period"
    );
    sidecar.clock.advance(Duration::from_millis(1));
    let metrics = sidecar.metrics();
    assert!(metrics.matching("mapscope_map_entries", &carts).is_empty());
    assert_eq!(
        metrics
            .matching("mapscope_map_entries", &[("map", "orders")])
            .len(),
        1
    );
    // Back in a later report: a row again.
    post(
        &url,
        None,
        &report(
            "checkout",
            "pod-1",
            3,
            vec![map("orders", &[], 5, 6), map("carts", &[], 8, 8)],
        ),
    )
    .accepted();
    assert_eq!(sidecar.metrics().value("mapscope_map_entries", &carts), 8.0);
}

#[test]
fn binary_sweeps_a_silent_source_after_ttl_plus_grace() {
    let sidecar = SidecarProcess::spawn(&[
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--ingest-listen".into(),
        "127.0.0.1:0".into(),
        "--source-ttl".into(),
        "1".into(),
        "--grace-period".into(),
        "1".into(),
    ])
    .expect("start the sidecar");
    // A source that keeps reporting, on its own thread, bounded.
    let stop = Arc::new(AtomicBool::new(false));
    let keeper = {
        let (url, stop) = (sidecar.ingest.clone(), stop.clone());
        thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            let mut seq = 0;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                seq += 1;
                let mut r = report("keeper", "a", seq, vec![map("orders", &[], 1, seq)]);
                r.interval_seconds = Some(0.2);
                assert_eq!(post(&url, None, &r).status, 200);
                thread::sleep(Duration::from_millis(200));
            }
        })
    };
    let mut silent = report("silent", "a", 1, vec![map("orders", &[], 1, 1)]);
    silent.interval_seconds = Some(0.2);
    post(&sidecar.ingest, None, &silent).accepted();
    let last_report = Instant::now();
    let both = poll(WAIT, "both sources counted", || {
        let m = try_scrape(&sidecar.http)?;
        (m.value("mapscope_sources", &[]) == 2.0).then_some(m)
    });
    assert!(has_source(&both, "silent"));

    let mut saw_stale_with_series = false;
    let gone_after = poll(Duration::from_secs(15), "the silent source swept", || {
        let m = try_scrape(&sidecar.http)?;
        let sources = m.value("mapscope_sources", &[]);
        let present = has_source(&m, "silent");
        if sources == 1.0 && present {
            saw_stale_with_series = true;
        }
        assert!(has_source(&m, "keeper"), "the live source must stay");
        (!present).then(|| (last_report.elapsed(), sources))
    });
    let (elapsed, sources) = gone_after;
    assert_eq!(sources, 1.0, "mapscope_sources dropped to the live source");
    assert!(
        elapsed >= Duration::from_secs(2),
        "removed after {elapsed:?}, before ttl + grace"
    );
    assert!(
        saw_stale_with_series,
        "a stale source keeps its series for the grace period"
    );
    stop.store(true, Ordering::Relaxed);
    keeper.join().expect("the keeper thread");
}

// ---------------------------------------------------------------------------
// Every limit, table-driven
// ---------------------------------------------------------------------------

/// Every `reason` label of `mapscope_ingest_rejected_total`; the limits
/// table covers each, and `docs/protocol.md` documents each.
const REASONS: &[&str] = &[
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
enum Field {
    Null,
    Is(String),
    StartsWith(&'static str),
}

#[derive(Debug)]
struct Case {
    name: &'static str,
    token: Option<&'static str>,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    /// The rejection reason; empty for an accepted request.
    reason: &'static str,
    field: Field,
    limit: Option<u64>,
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
fn good(app: &str, seq: u64) -> Value {
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
fn with(app: &str, edit: impl FnOnce(&mut Value)) -> Value {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(100);
    let mut value = good(app, SEQ.fetch_add(1, Ordering::Relaxed));
    edit(&mut value);
    value
}

fn map_with_labels(labels: Value) -> Value {
    json!({"name": "bad_map", "labels": labels, "stats": {"entries": 1, "buckets": 1}})
}

const MAX_SOURCES: usize = 3;
const MAX_MAPS: usize = 10;
const MAX_EVENTS: usize = 5;

/// Sets the value at JSON pointer `pointer` (whose parent exists).
fn set_at(value: &mut Value, pointer: &str, new: Value) {
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

fn limit_cases() -> Vec<Case> {
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

#[test]
fn every_limit_answers_with_a_json_error_and_touches_nothing_else() {
    let mut limits = Limits::default();
    limits.max_sources = MAX_SOURCES;
    limits.max_maps_per_source = MAX_MAPS;
    limits.max_events_per_report = MAX_EVENTS;
    let sidecar = Sidecar::start(limits, Some(TOKEN));
    let url = sidecar.report_url();
    // Three good sources: alpha and beta are compared after every request;
    // delta takes the accepted edge cases.
    for (app, n) in [("alpha", 1), ("beta", 2), ("delta", 3)] {
        let mut r = report(
            app,
            "i1",
            1,
            vec![map("orders", &[("tenant", app)], n, 10 * n)],
        );
        r.maps.push(map("sessions", &[], n + 1, 20 * n));
        post(&url, Some(TOKEN), &r).accepted();
    }
    let baseline_metrics = sidecar.metrics();
    let baseline = series_of(&baseline_metrics, &["alpha", "beta"]);
    assert_eq!(baseline_metrics.value("mapscope_sources", &[]), 3.0);
    assert!(baseline.len() > 40, "{baseline:?}");

    let mut codes: BTreeMap<String, f64> = BTreeMap::from([("200".to_owned(), 3.0)]);
    let mut reasons: BTreeMap<String, f64> = BTreeMap::new();
    let mut failures = Vec::new();
    for case in limit_cases() {
        let answer = post_raw(&url, case.token, case.content_type, case.body.clone());
        *codes.entry(case.status.to_string()).or_default() += 1.0;
        if !case.reason.is_empty() {
            *reasons.entry(case.reason.to_owned()).or_default() += 1.0;
        }
        let mut problems = Vec::new();
        if answer.status != case.status {
            problems.push(format!(
                "status {} (expected {})",
                answer.status, case.status
            ));
        }
        if answer.content_type != "application/json" {
            problems.push(format!("content type {:?}", answer.content_type));
        }
        let body = answer.json();
        if case.status == 200 {
            if serde_json::from_value::<ReportAccepted>(body.clone()).is_err() {
                problems.push("not a ReportAccepted".into());
            }
        } else {
            let keys: BTreeSet<&str> = body
                .as_object()
                .map(|o| o.keys().map(String::as_str).collect())
                .unwrap_or_default();
            if keys != BTreeSet::from(["error", "field", "limit"]) {
                problems.push(format!("error body keys {keys:?}"));
            }
            match serde_json::from_value::<ErrorBody>(body.clone()) {
                Err(e) => problems.push(format!("not an ErrorBody: {e}")),
                Ok(error) => {
                    if error.error.trim().is_empty() {
                        problems.push("empty error message".into());
                    }
                    let field_ok = match (&case.field, &error.field) {
                        (Field::Null, None) => true,
                        (Field::Is(want), Some(got)) => want == got,
                        (Field::StartsWith(prefix), Some(got)) => got.starts_with(prefix),
                        _ => false,
                    };
                    if !field_ok {
                        problems.push(format!(
                            "field {:?} (expected {:?})",
                            error.field, case.field
                        ));
                    }
                    if error.limit != case.limit {
                        problems.push(format!(
                            "limit {:?} (expected {:?})",
                            error.limit, case.limit
                        ));
                    }
                    if case.reason == "too_many_maps"
                        && !error.error.contains("max-maps-per-source")
                    {
                        problems.push("the error does not name --max-maps-per-source".into());
                    }
                }
            }
        }
        // Nothing of other sources changed, and nothing of a rejected request appeared.
        let metrics = sidecar.metrics();
        if series_of(&metrics, &["alpha", "beta"]) != baseline {
            problems.push("the series of alpha or beta changed".into());
        }
        if case.status != 200 {
            let leaked: Vec<&Sample> = metrics
                .samples
                .iter()
                .filter(|s| {
                    let source = s.label("source").unwrap_or_default();
                    (s.label("map").is_some_and(|m| m.starts_with("bad")) && source != "delta")
                        || source.starts_with("gamma")
                })
                .collect();
            if !leaked.is_empty() {
                problems.push(format!(
                    "series of a rejected request appeared: {:?}",
                    leaked[0]
                ));
            }
            if metrics.value("mapscope_sources", &[]) != 3.0 {
                problems.push("mapscope_sources changed".into());
            }
        }
        if !problems.is_empty() {
            let text: String = answer.text.chars().take(300).collect();
            failures.push(format!(
                "{}: {} — answer: {text}",
                case.name,
                problems.join("; ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // The ingest counters count every request, by code and by reason.
    let metrics = sidecar.metrics();
    let got_codes: BTreeMap<String, f64> = metrics
        .series("mapscope_ingest_requests_total")
        .map(|s| (s.label("code").unwrap_or_default().to_owned(), s.value))
        .collect();
    assert_eq!(got_codes, codes);
    let got_reasons: BTreeMap<String, f64> = metrics
        .series("mapscope_ingest_rejected_total")
        .map(|s| (s.label("reason").unwrap_or_default().to_owned(), s.value))
        .collect();
    assert_eq!(got_reasons, reasons);
    let covered: BTreeSet<&str> = reasons.keys().map(String::as_str).collect();
    assert_eq!(
        covered,
        REASONS.iter().copied().collect(),
        "every reason is exercised"
    );
    // The accepted edge cases rendered as they were sent.
    assert_eq!(
        find(
            &metrics,
            "mapscope_map_entries",
            &[
                ("map", "bad_map"),
                ("source", "delta"),
                ("source_instance", "i1"),
                ("tenant", "acme")
            ]
        ),
        Some(1.0),
        "the last accepted delta report replaced its maps"
    );
}

#[test]
fn accepted_edge_values_render_exactly() {
    let sidecar = Sidecar::start(Limits::default(), None);
    let url = sidecar.report_url();
    let body = json!({
        "source": {"app": "édition", "instance": "pod-1", "future": 1},
        "seq": mapscope::ingest::protocol::MAX_SEQ,
        "sent_at": "2026-11-22T10:00:00Z",
        "interval_seconds": 0.5,
        "maps": [{
            "name": "заказы 🛒",
            "labels": {"tenant": "Zürich \"q\" \\ b"},
            "stats": {"entries": u64::MAX, "buckets": 0},
            "counters": {"inserts": u64::MAX, "misuse": {"nil_map_write": 3, "concurrent_write": 1}}
        }]
    });
    post(&url, None, &body).accepted();
    let metrics = sidecar.metrics();
    let labels = [
        ("map", "заказы 🛒"),
        ("source", "édition"),
        ("source_instance", "pod-1"),
        ("tenant", "Zürich \"q\" \\ b"),
    ];
    assert_eq!(
        find(&metrics, "mapscope_map_entries", &labels),
        Some(u64::MAX as f64)
    );
    assert_eq!(
        find(&metrics, "mapscope_map_inserts_total", &labels),
        Some(u64::MAX as f64)
    );
    assert_eq!(
        find(&metrics, "mapscope_map_load_factor", &labels),
        Some(0.0)
    );
    let kind = |k: &'static str| {
        [
            ("kind", k),
            ("map", "заказы 🛒"),
            ("source", "édition"),
            ("source_instance", "pod-1"),
            ("tenant", "Zürich \"q\" \\ b"),
        ]
    };
    assert_eq!(
        find(
            &metrics,
            "mapscope_map_misuse_events_total",
            &kind("nil_map_write")
        ),
        Some(3.0)
    );
    assert_eq!(
        find(
            &metrics,
            "mapscope_map_misuse_events_total",
            &kind("concurrent_write")
        ),
        Some(1.0)
    );
    assert_eq!(
        find(
            &metrics,
            "mapscope_map_condition_active",
            &kind("nil_map_write")
        ),
        Some(1.0),
        "a rising client misuse count holds the condition"
    );
    assert_eq!(
        find(
            &metrics,
            "mapscope_map_condition_active",
            &kind("iterate_while_mutating")
        ),
        Some(0.0)
    );
}

#[test]
fn body_limit_is_the_configured_one_not_a_framework_default() {
    // A 3 MiB body (whitespace-padded) under a 4 MiB --max-body-bytes.
    let mut limits = Limits::default();
    limits.max_body_bytes = 4 * 1024 * 1024;
    let sidecar = Sidecar::start(limits, None);
    let mut body =
        serde_json::to_vec(&report("big", "i", 1, vec![map("orders", &[], 1, 1)])).expect("json");
    body.resize(3 * 1024 * 1024, b' ');
    let answer = post_raw(&sidecar.report_url(), None, Some("application/json"), body);
    assert_eq!(answer.status, 200, "{}", answer.text);
    let mut body = b"{}".to_vec();
    body.resize(4 * 1024 * 1024 + 1, b' ');
    let answer = post_raw(&sidecar.report_url(), None, Some("application/json"), body);
    assert_eq!(answer.status, 413, "{}", answer.text);
    assert_eq!(answer.json()["limit"], json!(4 * 1024 * 1024));
}

/// Seconds that do not fit a `Duration` must be rejected with a 400, not
/// panic: `handle` promises never to panic, and a panic inside `apply`
/// leaves a half-applied report behind (maps replaced, event seq moved on).
#[test]
fn seconds_too_large_for_a_duration_are_rejected_not_a_panic() {
    for (field, value) in [("interval_seconds", 1e19), ("interval_seconds", 1e300)] {
        let store = Sources::new(&Registry::new(), Limits::default());
        let mut body = good("alpha", 1);
        body[field] = json!(value);
        let bytes = serde_json::to_vec(&body).expect("json");
        // The store is not UnwindSafe (the registry holds trait objects);
        // nothing here is looked at after a panic but the panic itself.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            mapscope::ingest::handle(&store, None, &json_headers(), &bytes)
        }));
        let (status, text) = outcome.unwrap_or_else(|_| panic!("{field} = {value} panicked"));
        assert_eq!(status, 400, "{field} = {value}: {text}");
    }
    let store = Sources::new(&Registry::new(), Limits::default());
    let mut body = good("alpha", 1);
    body["events"][0]["duration_seconds"] = json!(1e300);
    let bytes = serde_json::to_vec(&body).expect("json");
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        mapscope::ingest::handle(&store, None, &json_headers(), &bytes)
    }));
    let (status, text) = outcome.unwrap_or_else(|_| panic!("duration_seconds = 1e300 panicked"));
    assert_eq!(status, 400, "{text}");
}

/// The same through HTTP: the panic becomes a 500 whose body is JSON, but
/// the report is half applied.
#[test]
fn a_failed_report_changes_nothing() {
    let sidecar = Sidecar::start(Limits::default(), None);
    let url = sidecar.report_url();
    post(
        &url,
        None,
        &report("alpha", "i1", 1, vec![map("orders", &[], 1, 1)]),
    )
    .accepted();
    let before = map_series_of(&sidecar.metrics(), &["alpha"]);
    let mut body = serde_json::to_value(report("alpha", "i1", 2, vec![map("orders", &[], 9, 9)]))
        .expect("json");
    let mut event = json!({"seq": 1, "kind": "growth", "map": "orders"});
    event["at"] = json!("2026-11-22T10:00:01Z");
    event["duration_seconds"] = json!(1e300);
    body["events"] = json!([event]);
    let answer = post(&url, None, &body);
    let after = map_series_of(&sidecar.metrics(), &["alpha"]);
    let entries = |series: &BTreeMap<String, f64>| {
        series
            .iter()
            .find(|(k, _)| k.starts_with("mapscope_map_entries"))
            .map(|(_, v)| *v)
    };
    assert!(
        answer.status == 200 || after == before,
        "answered {} {} but the report was applied: entries {:?} -> {:?}",
        answer.status,
        answer.text,
        entries(&before),
        entries(&after)
    );
    assert!(answer.status < 500, "{} {}", answer.status, answer.text);
}

// ---------------------------------------------------------------------------
// Property test: `handle` never panics
// ---------------------------------------------------------------------------

fn json_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers
}

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

/// The seconds fields the store turns into a `Duration`.
const DURATION_FIELDS: &[&str] = &["interval_seconds", "duration_seconds"];

/// Clamps the numbers of [`DURATION_FIELDS`] anywhere in `value` to
/// 1e15 s: larger ones trip the bug documented by
/// `seconds_too_large_for_a_duration_are_rejected_not_a_panic`. Every
/// other number stays as generated (huge integers and floats included).
fn tame(mut value: Value) -> Value {
    fn walk(value: &mut Value) {
        match value {
            Value::Object(object) => {
                for (key, child) in object.iter_mut() {
                    let huge =
                        child.as_f64().is_some_and(|x| x > 1e15) || child.as_str() == Some(HUGE);
                    if DURATION_FIELDS.contains(&key.as_str()) && huge {
                        *child = json!(1e15);
                    }
                    walk(child);
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut value);
    value
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
        check_handle(&to_body(&tame(value)))?;
    }

    #[test]
    fn handle_never_panics_on_report_like_json(value in report_like()) {
        check_handle(&to_body(&tame(value)))?;
    }

    #[test]
    fn handle_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        check_handle(&bytes)?;
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
        fn handle_never_panics_on_report_like_json_untamed(value in report_like()) {
        check_handle(&to_body(&value))?;
    }
}

// ---------------------------------------------------------------------------
// Docs: openapi.yaml and protocol.md match the code
// ---------------------------------------------------------------------------

fn doc(path: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A report with every optional field set and every collection non-empty.
fn full_report() -> Report {
    let mut map = map("orders", &[("tenant", "acme")], 1, 2);
    map.stats.evacuation = Some(ReportedEvacuation {
        kind: ReportedGrowthKind::Double,
        old_buckets: 4,
        evacuated_old_buckets: 1,
    });
    map.counters.misuse = BTreeMap::from([(ReportedMisuseKind::NilMapWrite, 1)]);
    let mut event = growth_event(1, "orders", 0.1);
    event.labels = BTreeMap::from([("tenant".to_owned(), "acme".to_owned())]);
    event.misuse_kind = Some(ReportedMisuseKind::NilMapWrite);
    event.trace_id = Some("0".repeat(32));
    event.span_id = Some("0".repeat(16));
    event.attributes = BTreeMap::from([("stack".to_owned(), "main.go:1".to_owned())]);
    Report {
        source: SourceInfo {
            app: "checkout".into(),
            instance: "pod-1".into(),
            language: Some("go".into()),
            sdk: Some("mapscope-go/0.1".into()),
            started_at: Some(at("2026-11-22T10:00:00Z")),
        },
        seq: 1,
        sent_at: Some(at("2026-11-22T10:00:10Z")),
        interval_seconds: Some(10.0),
        maps: vec![map],
        events: vec![event],
    }
}

/// Object keys of `value` by schema name, not descending into maps whose
/// keys are data (labels, misuse, attributes).
fn schema_keys(schema: &str, value: &Value, out: &mut BTreeMap<String, BTreeSet<String>>) {
    let Some(object) = value.as_object() else {
        return;
    };
    let keys = out.entry(schema.to_owned()).or_default();
    keys.extend(object.keys().cloned());
    for (key, child) in object {
        let child_schema = match (schema, key.as_str()) {
            ("Report", "source") => "SourceInfo",
            ("Report", "maps") => "ReportedMap",
            ("Report", "events") => "ReportedEvent",
            ("ReportedMap", "stats") => "ReportedStats",
            ("ReportedMap", "counters") => "ReportedCounters",
            ("ReportedStats", "evacuation") => "ReportedEvacuation",
            ("ReportedCounters", "growths") => "KindCounts",
            ("ReportedCounters", "growth_seconds") => "KindSeconds",
            _ => continue,
        };
        match child {
            Value::Array(items) => items.iter().for_each(|i| schema_keys(child_schema, i, out)),
            other => schema_keys(child_schema, other, out),
        }
    }
}

/// The fields the Rust side requires, by schema: a key is required when
/// deserialising without it fails.
fn required_keys(full: &Value) -> BTreeMap<String, BTreeSet<String>> {
    fn try_without(full: &Value, path: &[&str], key: &str) -> bool {
        let mut value = full.clone();
        let mut at = &mut value;
        for step in path {
            at = match step.parse::<usize>() {
                Ok(i) => &mut at[i],
                Err(_) => &mut at[*step],
            };
        }
        at.as_object_mut().expect("an object").remove(key);
        serde_json::from_value::<Report>(value).is_ok()
    }
    let mut out = BTreeMap::new();
    for (schema, path) in [
        ("Report", vec![]),
        ("SourceInfo", vec!["source"]),
        ("ReportedMap", vec!["maps", "0"]),
        ("ReportedStats", vec!["maps", "0", "stats"]),
        (
            "ReportedEvacuation",
            vec!["maps", "0", "stats", "evacuation"],
        ),
        ("ReportedCounters", vec!["maps", "0", "counters"]),
        ("KindCounts", vec!["maps", "0", "counters", "growths"]),
        (
            "KindSeconds",
            vec!["maps", "0", "counters", "growth_seconds"],
        ),
        ("ReportedEvent", vec!["events", "0"]),
    ] {
        let mut at = full;
        for step in &path {
            at = match step.parse::<usize>() {
                Ok(i) => &at[i],
                Err(_) => &at[*step],
            };
        }
        let required: BTreeSet<String> = at
            .as_object()
            .expect("an object")
            .keys()
            .filter(|key| !try_without(full, &path, key))
            .cloned()
            .collect();
        out.insert(schema.to_owned(), required);
    }
    out
}

/// Each schema of `docs/openapi.yaml`'s `components/schemas`: its
/// `properties` keys and its `required` list.
fn openapi_schemas(yaml: &str) -> BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> {
    let document: Value = serde_norway::from_str(yaml).expect("docs/openapi.yaml is YAML");
    let schemas = document["components"]["schemas"]
        .as_object()
        .expect("components/schemas");
    schemas
        .iter()
        .map(|(name, schema)| {
            let properties = schema["properties"]
                .as_object()
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default();
            let required = schema["required"]
                .as_array()
                .map(|r| {
                    r.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            (name.clone(), (properties, required))
        })
        .collect()
}

#[test]
fn openapi_matches_the_protocol_structs() {
    let yaml = doc("docs/openapi.yaml");
    let schemas = openapi_schemas(&yaml);
    let full = serde_json::to_value(full_report()).expect("serialise the report");
    assert_eq!(
        serde_json::from_value::<Report>(full.clone()).expect("round trip"),
        full_report()
    );
    let mut fields = BTreeMap::new();
    schema_keys("Report", &full, &mut fields);
    let accepted = ReportAccepted {
        status: ReportStatus::Accepted,
        source: "checkout".into(),
        maps: 1,
        events_accepted: 1,
        restarted: false,
    };
    schema_keys(
        "ReportAccepted",
        &serde_json::to_value(accepted).expect("json"),
        &mut fields,
    );
    let error = ErrorBody {
        error: "e".into(),
        field: Some("maps".into()),
        limit: Some(1),
    };
    schema_keys(
        "ErrorBody",
        &serde_json::to_value(error).expect("json"),
        &mut fields,
    );
    assert_eq!(fields.len(), 11, "{fields:?}");

    let mut required = required_keys(&full);
    for schema in ["ReportAccepted", "ErrorBody"] {
        required.insert(schema.to_owned(), fields[schema].clone());
    }
    for (schema, keys) in &fields {
        let (properties, yaml_required) = schemas
            .get(schema)
            .unwrap_or_else(|| panic!("docs/openapi.yaml has no schema {schema}"));
        assert_eq!(properties, keys, "properties of {schema}");
        assert_eq!(
            yaml_required, &required[schema],
            "required fields of {schema}"
        );
        for key in keys {
            assert!(yaml.contains(&format!("{key}:")), "{key}");
        }
    }
    for response in ["'200':", "'400':", "'401':", "'413':", "'415':", "'429':"] {
        assert!(
            yaml.contains(response),
            "docs/openapi.yaml has no response {response}"
        );
    }
    assert!(yaml.contains("/v1/report:"));
    let document: Value = serde_norway::from_str(&yaml).expect("YAML");
    assert_eq!(document["openapi"], "3.1.0", "OpenAPI 3.1");
}

#[test]
fn protocol_md_documents_fields_limits_flags_and_reasons() {
    let md = doc("docs/protocol.md");
    let full = serde_json::to_value(full_report()).expect("json");
    let mut fields = BTreeMap::new();
    schema_keys("Report", &full, &mut fields);
    for key in fields.values().flatten() {
        assert!(
            md.contains(&format!("`{key}`")),
            "docs/protocol.md does not mention `{key}`"
        );
    }
    for reason in REASONS {
        assert!(
            md.contains(&format!("`{reason}`")),
            "docs/protocol.md does not list reason `{reason}`"
        );
    }
    for kind in MisuseKind::CLIENT {
        assert!(md.contains(kind.as_str()), "{kind:?}");
    }
    // Every ingest flag with its env var, as `mapscope sidecar --help` prints them.
    let help = common::run(
        {
            let mut command = mapscope_command();
            command.args(["sidecar", "--help"]);
            command
        },
        WAIT,
    );
    assert!(help.status.success(), "{}", help.stderr);
    for (flag, env, default) in [
        ("--max-body-bytes", "MAPSCOPE_MAX_BODY_BYTES", "1048576"),
        ("--max-sources", "MAPSCOPE_MAX_SOURCES", "100"),
        (
            "--max-maps-per-source",
            "MAPSCOPE_MAX_MAPS_PER_SOURCE",
            "1000",
        ),
        (
            "--max-events-per-report",
            "MAPSCOPE_MAX_EVENTS_PER_REPORT",
            "1000",
        ),
        ("--source-ttl", "MAPSCOPE_SOURCE_TTL", "30"),
        ("--grace-period", "MAPSCOPE_GRACE_PERIOD", "30"),
        ("--ingest-token", "MAPSCOPE_INGEST_TOKEN", ""),
        ("--crash-dir", "MAPSCOPE_CRASH_DIR", ""),
        (
            "--ingest-listen",
            "MAPSCOPE_INGEST_LISTEN",
            "127.0.0.1:9848",
        ),
    ] {
        assert!(help.stdout.contains(flag), "--help has no {flag}");
        assert!(help.stdout.contains(env), "--help has no {env}");
        assert!(
            md.contains(flag),
            "docs/protocol.md does not mention {flag}"
        );
        assert!(md.contains(env), "docs/protocol.md does not mention {env}");
        assert!(
            md.contains(default),
            "docs/protocol.md does not give the default {default} of {flag}"
        );
    }
    for status in ["200", "400", "401", "413", "415", "429"] {
        assert!(md.contains(status), "{status}");
    }
}

/// The code block of `md` that follows the first line containing `marker`.
fn block_after(md: &str, marker: &str) -> String {
    let at = md
        .find(marker)
        .unwrap_or_else(|| panic!("docs/protocol.md has no {marker:?}"));
    let rest = &md[at..];
    let start = rest.find("```").expect("a code block") + 3;
    let start = start + rest[start..].find('\n').expect("a fence line") + 1;
    let end = start
        + rest[start..]
            .find("```")
            .expect("the end of the code block");
    rest[start..end].to_owned()
}

#[test]
fn protocol_md_example_is_answered_as_documented() {
    let md = doc("docs/protocol.md");
    let request = block_after(&md, "`report.json`:");
    let answer = block_after(&md, "Answer (`200 OK`");
    let excerpt = block_after(&md, "and in `/metrics` (excerpt):");
    let sidecar = Sidecar::start(Limits::default(), Some(TOKEN));
    let got = post_raw(
        &sidecar.report_url(),
        Some(TOKEN),
        Some("application/json"),
        request.clone().into_bytes(),
    );
    assert_eq!(got.status, 200, "{}", got.text);
    let documented: Value = serde_json::from_str(&answer).expect("the documented answer");
    assert_eq!(got.json(), documented);
    let response = client()
        .get(sidecar.http.url("/metrics"))
        .send()
        .expect("GET /metrics");
    let text = response.text().expect("read /metrics");
    for line in excerpt.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            text.lines().any(|l| l == line),
            "/metrics has no line {line:?}"
        );
    }
    // The same request again is a duplicate.
    let again = post_raw(
        &sidecar.report_url(),
        Some(TOKEN),
        Some("application/json"),
        request.into_bytes(),
    );
    assert_eq!(again.accepted().status, ReportStatus::Duplicate);
    // The documented error for a bad label name.
    let error = block_after(&md, "as a label name:");
    let documented: Value = serde_json::from_str(&error).expect("the documented error");
    let bad = with("beta", |v| {
        set_at(v, "/maps/0/labels", json!({"tenant-id": "1"}))
    });
    let got = post(&sidecar.report_url(), Some(TOKEN), &bad);
    assert_eq!(got.status, 400);
    assert_eq!(got.json(), documented);
}
