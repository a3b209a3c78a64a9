//! Go crash files end to end: the real `mapscope` binary with `--crash-dir`
//! on a temporary directory, real crash output from
//! `tests/fixtures/crashes` copied in under the names the Go client's
//! `CaptureCrashes` uses, and a real HTTP client reading `/metrics` and
//! `/api/v1/maps`.
//!
//! - a crash of a map no report describes: a misuse-only row
//!   (`mapscope_map_misuse_events_total` and `mapscope_map_condition_active`,
//!   no gauges), the event with its code site in the JSON API, the files
//!   removed, `mapscope_crash_files_total{result="map_crash"}`;
//! - a crash of a reported map adds to that map's series (no duplicate):
//!   the same app, instance (`source`, `source_instance`), map and labels;
//! - a crash that is not a map's is counted and changes no map;
//! - a `--crash-dir` that is not a directory stops the sidecar with an
//!   error naming the flag.
//!
//! Every wait is bounded and on loopback.

// Drives the sidecar (its binary or its ingest endpoint): `--features sidecar`.
#![cfg(feature = "sidecar")]

mod common {
    pub(crate) mod blocking;
    pub(crate) mod exposition;
    pub(crate) mod process;
    pub(crate) mod run;
    pub(crate) mod wait;
}

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use common::blocking::{blocking_client, scrape_blocking};
use common::exposition::Exposition;
use common::process::{mapscope_command, start_mapscope, MapscopeProcess};
use common::run::run;
use common::wait::WAIT;
use mapscope::http::ApiSnapshot;

/// A fresh directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("mapscope-crash-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the crash directory");
        TempDir(dir)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temp path")
    }

    fn is_empty(&self) -> bool {
        std::fs::read_dir(&self.0)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn fixture(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/crashes")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Puts a fixture pair into `dir` as the Go client names it: the log
/// first (the runtime writes it), then the metadata.
fn drop_crash(dir: &TempDir, fixture_name: &str, stem: &str) {
    std::fs::write(
        dir.0.join(format!("{stem}.log")),
        fixture(&format!("{fixture_name}.log")),
    )
    .expect("write the crash log");
    std::fs::write(
        dir.0.join(format!("{stem}.json")),
        fixture(&format!("{fixture_name}.json")),
    )
    .expect("write the crash metadata");
}

fn sidecar(dir: &TempDir) -> MapscopeProcess {
    start_mapscope(&[
        "sidecar",
        "--listen",
        "127.0.0.1:0",
        "--ingest-listen",
        "127.0.0.1:0",
        "--crash-dir",
        dir.path(),
    ])
}

fn metrics(sidecar: &MapscopeProcess) -> Exposition {
    scrape_blocking(&sidecar.url)
}

fn api(sidecar: &MapscopeProcess) -> ApiSnapshot {
    blocking_client()
        .get(sidecar.url("api/v1/maps"))
        .send()
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.json())
        .expect("GET /api/v1/maps")
}

/// The one sample of `name` with exactly these labels, if any.
fn find(m: &Exposition, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    m.samples
        .iter()
        .find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| s.label(k) == Some(*v))
        })
        .map(|s| s.value)
}

/// Scrapes every 50 ms until `done` holds, for at most [`WAIT`] (the
/// scanner needs two of its once-a-second scans).
fn wait_for(
    sidecar: &MapscopeProcess,
    what: &str,
    done: impl Fn(&Exposition) -> bool,
) -> Exposition {
    let deadline = Instant::now() + WAIT;
    loop {
        let m = metrics(sidecar);
        if done(&m) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what}\n--- stderr\n{}",
            sidecar.stderr_text()
        );
        thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_crash_of_an_unreported_map_is_a_misuse_only_row_with_its_site() {
    let dir = TempDir::new("unreported");
    let sidecar = sidecar(&dir);
    drop_crash(
        &dir,
        "go1.27.3-system-write_str",
        "mapscope-crash-1795998026805086478-15133",
    );
    let series = [
        ("map", "sessions"),
        ("source", "checkout"),
        ("source_instance", "checkout-7d9f-x2k4"),
        ("tenant", "acme"),
        ("kind", "concurrent_write"),
    ];
    let m = wait_for(&sidecar, "the crash counted", |m| {
        find(m, "mapscope_map_misuse_events_total", &series) == Some(1.0)
    });
    assert_eq!(
        find(&m, "mapscope_map_condition_active", &series),
        Some(1.0)
    );
    assert_eq!(
        find(&m, "mapscope_crash_files_total", &[("result", "map_crash")]),
        Some(1.0)
    );
    // A misuse-only row: the client kinds' misuse series, nothing else.
    let of_sessions: Vec<_> = m
        .samples
        .iter()
        .filter(|s| s.label("map") == Some("sessions"))
        .collect();
    assert!(
        of_sessions.iter().all(|s| {
            s.name == "mapscope_map_misuse_events_total"
                || s.name == "mapscope_map_condition_active"
        }),
        "{of_sessions:#?}"
    );
    assert_eq!(
        of_sessions.len(),
        6,
        "3 client kinds x 2 metrics: {of_sessions:#?}"
    );
    assert_eq!(find(&m, "mapscope_maps", &[]), Some(0.0));
    assert!(dir.is_empty(), "the processed files are removed");

    let api = api(&sidecar);
    let event = api
        .recent_events
        .iter()
        .find(|e| e.event == "misuse" && e.map == "sessions")
        .unwrap_or_else(|| panic!("no crash event in {:#?}", api.recent_events));
    assert_eq!(event.kind, "concurrent_write");
    assert_eq!(event.source.as_deref(), Some("checkout"));
    let site = event.site.as_ref().expect("the crash site");
    assert_eq!(
        (site.function.as_str(), site.file.as_str(), site.line),
        ("main.writeStr", "/tmp/gocrash/main.go", 57)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&fixture("go1.27.3-system-write_str.json")).unwrap();
    assert_eq!(event.pid.map(u64::from), metadata["pid"].as_u64());
    let details = event.details.as_deref().unwrap_or_default();
    assert!(details.contains("checkout-7d9f-x2k4"), "{details}");
    let row = api
        .maps
        .iter()
        .find(|m| m.name == "sessions")
        .expect("the row");
    assert!(row.misuse_only);
    assert_eq!(row.misuse.get("concurrent_write"), Some(&1));

    let landing = blocking_client()
        .get(sidecar.url(""))
        .send()
        .and_then(|r| r.text())
        .expect("GET /");
    assert!(landing.contains("known from crashes only"), "{landing}");

    // The log line people grep for.
    let stderr = sidecar.stderr_text();
    assert!(
        stderr.contains("a Go process crashed on a map misuse")
            && stderr.contains("main.writeStr")
            && stderr.contains("/tmp/gocrash/main.go:57"),
        "{stderr}"
    );
}

#[test]
fn a_crash_of_a_reported_map_adds_to_its_series() {
    let dir = TempDir::new("reported");
    let sidecar = sidecar(&dir);
    // The application reported the map (and two concurrent writes its
    // client caught) before a raw-map write killed it.
    let report = serde_json::json!({
        "source": {"app": "checkout", "instance": "checkout-7d9f-x2k4", "language": "go",
                   "started_at": "2026-11-22T10:00:00Z"},
        "seq": 1,
        "maps": [{
            "name": "sessions", "labels": {"tenant": "acme"},
            "stats": {"entries": 10, "buckets": 2},
            "counters": {"misuse": {"concurrent_write": 2}}
        }]
    });
    let answer = blocking_client()
        .post(sidecar.ingest_url())
        .json(&report)
        .send()
        .expect("POST /v1/report");
    assert_eq!(answer.status(), 200);
    drop_crash(
        &dir,
        "go1.24.11-system-write_str",
        "mapscope-crash-1795998025933813115-14764",
    );
    let series = [
        ("map", "sessions"),
        ("source", "checkout"),
        ("source_instance", "checkout-7d9f-x2k4"),
        ("tenant", "acme"),
        ("kind", "concurrent_write"),
    ];
    let m = wait_for(&sidecar, "the crash added to the reported count", |m| {
        find(m, "mapscope_map_misuse_events_total", &series) == Some(3.0)
    });
    let misuse = m.matching("mapscope_map_misuse_events_total", &series);
    assert_eq!(misuse.len(), 1, "one series, not two: {misuse:#?}");
    assert_eq!(
        find(&m, "mapscope_map_entries", &series[..4]),
        Some(10.0),
        "the reported map keeps its gauges"
    );
    assert_eq!(find(&m, "mapscope_maps", &[]), Some(1.0));
}

#[test]
fn a_crash_that_is_not_a_maps_changes_no_map() {
    let dir = TempDir::new("other");
    let sidecar = sidecar(&dir);
    drop_crash(&dir, "go1.27.3-system-nil_pointer", "mapscope-crash-1-2");
    let m = wait_for(&sidecar, "the crash counted", |m| {
        find(
            m,
            "mapscope_crash_files_total",
            &[("result", "other_crash")],
        ) == Some(1.0)
    });
    assert!(m
        .series("mapscope_map_misuse_events_total")
        .next()
        .is_none());
    assert!(dir.is_empty());
    assert!(
        sidecar.stderr_text().contains("nil pointer dereference"),
        "{}",
        sidecar.stderr_text()
    );
}

#[test]
fn a_crash_dir_that_is_not_a_directory_stops_the_sidecar() {
    let dir = TempDir::new("missing");
    let missing = dir.0.join("nope");
    let mut command = mapscope_command();
    command.args([
        "sidecar",
        "--listen",
        "127.0.0.1:0",
        "--ingest-listen",
        "127.0.0.1:0",
    ]);
    command.env("MAPSCOPE_CRASH_DIR", &missing);
    let out = run(command, WAIT);
    assert!(
        !out.status.success(),
        "succeeded with a missing crash dir: {}",
        out.stdout
    );
    assert!(
        out.stderr.contains("--crash-dir") && out.stderr.contains("MAPSCOPE_CRASH_DIR"),
        "{}",
        out.stderr
    );
}
