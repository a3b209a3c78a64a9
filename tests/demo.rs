//! `mapscope demo` end to end: the real binary on ephemeral loopback ports
//! with a fast tick shows every scenario's map and detector kind in
//! `/metrics`, and exits cleanly on SIGTERM.

// Drives the sidecar (its binary or its ingest endpoint): `--features sidecar`.
#![cfg(feature = "sidecar")]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The demo process, killed if a test fails before stopping it.
struct Demo {
    child: Child,
    http: String,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_demo(tick_ms: u32) -> Demo {
    let mut child = Command::new(env!("CARGO_BIN_EXE_mapscope"))
        .args([
            "demo",
            "--listen",
            "127.0.0.1:0",
            "--ingest-listen",
            "127.0.0.1:0",
        ])
        .args(["--tick", &tick_ms.to_string(), "--log-format", "json"])
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("the mapscope binary starts");
    let stdout = child.stdout.take().expect("stdout is piped");
    // From here on the guard kills and reaps the child on every path.
    let mut demo = Demo {
        child,
        http: String::new(),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut lines = Vec::new();
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            if let Some(url) = line.strip_prefix("mapscope: http listening on ") {
                let http = url.trim().trim_end_matches('/').to_owned();
                // Keep draining stdout so the demo never blocks on a full pipe.
                std::thread::spawn(move || while rx.recv().is_ok() {});
                demo.http = http;
                return demo;
            }
            lines.push(line);
        }
    }
    panic!("the demo did not print its listening line within 30 s; it printed {lines:?}");
}

/// `(map, kind)` of every sample of `metric` whose value is above zero.
fn positive(text: &str, metric: &str) -> BTreeSet<(String, String)> {
    let label = |line: &str, name: &str| {
        let start = line.find(&format!("{name}=\""))? + name.len() + 2;
        let end = line[start..].find('"')? + start;
        Some(line[start..end].to_owned())
    };
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .filter(|l| {
            l.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<f64>().ok())
                .is_some_and(|v| v > 0.0)
        })
        .filter_map(|l| Some((label(l, "map")?, label(l, "kind")?)))
        .collect()
}

#[test]
fn every_scenario_shows_up_and_sigterm_stops_the_demo() {
    let mut demo = start_demo(5);
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let expected: BTreeSet<(String, String)> = [
        ("sessions", "unbounded_growth"),
        ("user_cache", "retained_capacity"),
        ("routes", "overflow_chain"),
        ("events", "presize_miss"),
        ("snapshot", "evacuation_stalled"),
        ("carts", "nil_map_write"),
        ("carts", "concurrent_write"),
        ("carts", "iterate_while_mutating"),
    ]
    .iter()
    .map(|(m, k)| (m.to_string(), k.to_string()))
    .collect();
    let mut seen_active = BTreeSet::new();
    let mut seen_counted = BTreeSet::new();
    let mut maps = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut text = String::new();
    while Instant::now() < deadline {
        text = client
            .get(format!("{}/metrics", demo.http))
            .send()
            .and_then(|r| r.text())
            .unwrap_or_default();
        seen_active.extend(positive(&text, "mapscope_map_condition_active"));
        seen_counted.extend(positive(&text, "mapscope_map_misuse_events_total"));
        for line in text
            .lines()
            .filter(|l| l.starts_with("mapscope_map_entries{"))
        {
            if let Some(start) = line.find("map=\"") {
                let rest = &line[start + 5..];
                maps.insert(rest[..rest.find('"').unwrap()].to_owned());
            }
        }
        if expected.is_subset(&seen_active) && expected.is_subset(&seen_counted) {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    for map in [
        "orders",
        "sessions",
        "user_cache",
        "routes",
        "events",
        "snapshot",
        "carts",
    ] {
        assert!(
            maps.contains(map),
            "map {map} never appeared; last scrape:\n{text}"
        );
    }
    let missing: Vec<_> = expected.difference(&seen_active).collect();
    assert!(missing.is_empty(), "never active: {missing:?}");
    let missing: Vec<_> = expected.difference(&seen_counted).collect();
    assert!(missing.is_empty(), "never counted: {missing:?}");
    assert!(
        !seen_active.iter().any(|(map, _)| map == "orders"),
        "the healthy baseline had a condition: {seen_active:?}"
    );

    let pid = demo.child.id().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = demo.child.try_wait().unwrap() {
            assert!(status.success(), "the demo exited with {status} on SIGTERM");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the demo did not exit within 20 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
