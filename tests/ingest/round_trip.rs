//! The Rust `Reporter` → sidecar → `/metrics` round trip, and a sidecar
//! restart (the real binary, killed and started again on the same ports)
//! in the middle of a stream.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use mapscope::ingest::Limits;
use mapscope::{GrowthKind, InstrumentedMap, MisuseKind, Registry};

use super::support::{find, sidecar_on, try_scrape, Sidecar, TOKEN};
use crate::common::poll::poll;
use crate::common::ports::closed_port;
use crate::common::wait::WAIT;

#[test]
fn reporter_round_trip_values_and_labels() {
    let sidecar = Sidecar::start(Limits::default(), Some(TOKEN));
    let ingest = sidecar.serve_ingest();
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
        .endpoint(ingest.url("/v1/report"))
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
        match sidecar_on(http_port, ingest_port, &[]) {
            Ok(process) => {
                first = Some(process);
                break;
            }
            Err(_) => (http_port, ingest_port) = (closed_port(), closed_port()),
        }
    }
    let first = first.expect("start the first sidecar");
    let ingest_url = first.ingest_url();
    let http_url = first.url.clone();

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
    let second =
        sidecar_on(http_port, ingest_port, &[]).expect("restart the sidecar on the same ports");
    assert_eq!(second.ingest_url(), ingest_url);
    let after = poll(WAIT, "inserts reported to the restarted sidecar", || {
        observe(2, &second.url)
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
        || observe(2, &second.url).filter(|v| *v == total),
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
