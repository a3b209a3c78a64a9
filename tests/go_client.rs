//! The Go client end to end: real Go programs from `clients/go/examples`,
//! built with real Go toolchains (classic maps on Go 1.23, swiss tables on
//! Go 1.27), reporting to the real `mapscope` sidecar, read back through
//! `/metrics` and `GET /api/v1/maps` with a real HTTP client.
//!
//! Skipped loudly without Go, unless `MAPSCOPE_REQUIRE_E2E=1` (CI sets it,
//! and `MAPSCOPE_GO_BINS`).

// Drives the sidecar (its binary or its ingest endpoint): `--features sidecar`.
#![cfg(feature = "sidecar")]

mod common {
    pub(crate) mod e2e;
    pub(crate) mod exposition;
    pub(crate) mod go;
    pub(crate) mod process;
    pub(crate) mod programs;
    pub(crate) mod run;
    pub(crate) mod wait;
}

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use common::exposition::{parse_exposition, Exposition};
use common::go::{client_dir, toolchains, GoProgram, GoToolchain};
use common::process::{start_mapscope, MapscopeProcess};
use common::wait::wait_bounded;
use serde_json::Value;

/// The map layout a Go version compiles maps to, by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// `runtime/map.go` (Go 1.23 and earlier): incremental evacuation.
    Classic,
    /// `internal/runtime/maps` (Go 1.24 and later): growth inside one write.
    Swiss,
}

/// The default map layout of `go`'s version.
fn layout(go: &GoToolchain) -> Layout {
    if go.minor() >= 24 {
        Layout::Swiss
    } else {
        Layout::Classic
    }
}

/// How long a Go program's reports may take to show up in the sidecar.
const SETTLE: Duration = Duration::from_secs(30);

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir =
            std::env::temp_dir().join(format!("mapscope-go-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client")
}

fn metrics(client: &reqwest::blocking::Client, sidecar: &MapscopeProcess) -> Exposition {
    let text = client
        .get(sidecar.url("/metrics"))
        .send()
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.text())
        .unwrap_or_else(|e| panic!("GET /metrics: {e}"));
    parse_exposition(&text).unwrap_or_else(|e| panic!("invalid exposition: {e}\n{text}"))
}

/// Polls `/metrics` until `check` passes, at most [`SETTLE`]; on timeout
/// panics with the last failure and the last exposition's mapscope lines.
fn eventually<T>(
    client: &reqwest::blocking::Client,
    sidecar: &MapscopeProcess,
    what: &str,
    mut check: impl FnMut(&Exposition) -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + SETTLE;
    loop {
        let exposition = metrics(client, sidecar);
        match check(&exposition) {
            Ok(value) => return value,
            Err(why) if Instant::now() >= deadline => {
                let lines: Vec<String> = exposition
                    .samples
                    .iter()
                    .filter(|s| s.labels.contains_key("source"))
                    .map(|s| format!("{} {:?} {}", s.name, s.labels, s.value))
                    .collect();
                panic!(
                    "{what}: {why}\n--- reported series\n{}\n--- sidecar stderr\n{}",
                    lines.join("\n"),
                    sidecar.stderr_text()
                );
            }
            Err(_) => thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// The one sample of `name` whose labels include `labels`, as a result.
fn value(exposition: &Exposition, name: &str, labels: &[(&str, &str)]) -> Result<f64, String> {
    match exposition.matching(name, labels).as_slice() {
        [one] => Ok(one.value),
        [] => Err(format!("no sample {name}{labels:?}")),
        many => Err(format!("{} samples {name}{labels:?}", many.len())),
    }
}

fn start_sidecar(extra: &[&str]) -> MapscopeProcess {
    let mut args = vec![
        "sidecar",
        "--listen",
        "127.0.0.1:0",
        "--ingest-listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    start_mapscope(&args)
}

fn go_env(sidecar: &MapscopeProcess, app: &str, instance: &str) -> Vec<(&'static str, String)> {
    vec![
        ("MAPSCOPE_ENDPOINT", sidecar.ingest_url()),
        ("MAPSCOPE_APP", app.to_owned()),
        ("MAPSCOPE_INSTANCE", instance.to_owned()),
        ("MAPSCOPE_REPORT_INTERVAL", "200ms".to_owned()),
    ]
}

/// The sessions example against the sidecar, on one toolchain: the real
/// map's buckets and growths, the misuse counts, and on classic Go the
/// stalled evacuation of the observed `routes` map.
fn sessions_example(go: &GoToolchain, out: &Path) {
    let binary = go.build("examples/sessions", out);
    let sidecar = start_sidecar(&[]);
    let app = format!("sessions-{}", go.minor());
    let mut env = go_env(&sidecar, &app, "e2e-0");
    env.push(("MAPSCOPE_EXAMPLE_LISTEN", "127.0.0.1:0".to_owned()));
    let mut program = GoProgram::start(&binary, &env);
    let addr = program.wait_line("listening on ", Duration::from_secs(30));
    let base = if addr.starts_with("http") {
        addr.trim_end_matches('/').to_owned()
    } else {
        format!("http://{addr}")
    };
    let client = http();
    const USERS: u64 = 200;
    for i in 0..USERS {
        let response = client
            .get(format!("{base}/login?user=user-{i}"))
            .send()
            .unwrap_or_else(|e| panic!("GET /login: {e}\n{}", program.text()));
        assert!(
            response.status().is_success(),
            "/login: {}",
            response.status()
        );
    }
    // The nil-map bug: the handler panics as before (net/http drops the
    // connection or answers 500); the middleware recorded it first.
    let nil = client.get(format!("{base}/bug/nil")).send();
    assert!(
        nil.as_ref().map_or(true, |r| !r.status().is_success()),
        "/bug/nil succeeded: {nil:?}"
    );
    let race = client
        .get(format!("{base}/bug/race"))
        .send()
        .unwrap_or_else(|e| panic!("GET /bug/race: {e}\n{}", program.text()));
    assert!(race.status().is_success(), "/bug/race: {}", race.status());

    let source = app.as_str();
    let sessions = [("map", "sessions"), ("source", source)];
    let buckets = eventually(&client, &sidecar, "the sessions map", |m| {
        let entries = value(m, "mapscope_map_entries", &sessions)?;
        if entries != USERS as f64 {
            return Err(format!("entries {entries}, want {USERS}"));
        }
        let inserts = value(m, "mapscope_map_inserts_total", &sessions)?;
        if inserts != USERS as f64 {
            return Err(format!("inserts {inserts}, want {USERS}"));
        }
        value(m, "mapscope_map_buckets", &sessions)
    });
    // 200 entries: classic Go has 2^5 buckets (200 <= 6.5 * 32); a swiss
    // table of capacity 256 holds them (200 <= 7/8 * 256), 256/8 = 32.
    assert_eq!(buckets, 32.0, "{}: buckets of 200 entries", go.version);

    eventually(&client, &sidecar, "growths and misuse", |m| {
        let doubles = value(
            m,
            "mapscope_map_growths_total",
            &[("map", "sessions"), ("source", source), ("kind", "double")],
        )?;
        // Grown from one bucket to 32 by doublings only.
        if doubles != 5.0 {
            return Err(format!("double growths {doubles}, want 5"));
        }
        let nil = m
            .matching(
                "mapscope_map_misuse_events_total",
                &[("source", source), ("kind", "nil_map_write")],
            )
            .iter()
            .map(|s| s.value)
            .sum::<f64>();
        if nil < 1.0 {
            return Err(format!("nil_map_write {nil}"));
        }
        let concurrent = m
            .matching(
                "mapscope_map_misuse_events_total",
                &[("source", source), ("kind", "concurrent_write")],
            )
            .iter()
            .map(|s| s.value)
            .sum::<f64>();
        if concurrent < 1.0 {
            return Err(format!("concurrent_write {concurrent}"));
        }
        let measured: f64 = m
            .series("mapscope_growth_duration_seconds_count")
            .map(|s| s.value)
            .sum();
        if measured < 1.0 {
            return Err(format!("growth durations observed: {measured}"));
        }
        Ok(())
    });

    let routes = [("map", "routes"), ("source", source)];
    match layout(go) {
        Layout::Classic => eventually(&client, &sidecar, "the stalled evacuation", |m| {
            // 6657 = 6.5 * 2^10 + 1 entries: the insert that crossed the
            // load factor started a doubling to 2^11 buckets, then writes
            // stopped, so evacuation stays where that insert left it.
            let entries = value(m, "mapscope_map_entries", &routes)?;
            let buckets = value(m, "mapscope_map_buckets", &routes)?;
            let in_progress = value(
                m,
                "mapscope_map_evacuation_in_progress",
                &[("map", "routes"), ("source", source), ("kind", "double")],
            )?;
            let ratio = value(m, "mapscope_map_evacuation_progress_ratio", &routes)?;
            if entries != 6657.0 || buckets != 2048.0 || in_progress != 1.0 || ratio >= 1.0 {
                return Err(format!(
                    "entries {entries} buckets {buckets} in_progress {in_progress} ratio {ratio}"
                ));
            }
            Ok(())
        }),
        Layout::Swiss => eventually(&client, &sidecar, "the routes map", |m| {
            // Swiss tables grow inside one write: never an evacuation.
            let entries = value(m, "mapscope_map_entries", &routes)?;
            let evacuating: f64 = m
                .matching("mapscope_map_evacuation_in_progress", &routes)
                .iter()
                .map(|s| s.value)
                .sum();
            if entries != 6657.0 || evacuating != 0.0 {
                return Err(format!("entries {entries} evacuating {evacuating}"));
            }
            Ok(())
        }),
    }
    eprintln!("go_client: {} sessions example passed", go.version);
}

#[test]
fn go_example_reports_real_maps_misuse_and_growth_to_the_sidecar() {
    let toolchains = toolchains();
    let out = TempDir::new("bin");
    for go in &toolchains {
        sessions_example(go, &out.0);
    }
}

/// The line of `// mapscope:crash-site` in the rawcrash example.
fn crash_site_line() -> (PathBuf, u64) {
    let file = client_dir().join("examples/rawcrash/main.go");
    let source =
        std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("read {}: {e}", file.display()));
    let line = source
        .lines()
        .position(|l| l.contains("// mapscope:crash-site"))
        .unwrap_or_else(|| panic!("no `// mapscope:crash-site` in {}", file.display()));
    (file, line as u64 + 1)
}

/// A raw map written from two goroutines kills the Go process with a
/// fatal error no `recover()` catches; `CaptureCrashes` left the stack in
/// the shared directory, and the sidecar turns it into a
/// `concurrent_write` on the observed map, with the function and file:line.
fn raw_map_crash(go: &GoToolchain, out: &Path) {
    let binary = go.build("examples/rawcrash", out);
    let crashes = TempDir::new("crashes");
    let crash_dir = crashes.0.to_string_lossy().into_owned();
    let sidecar = start_sidecar(&["--crash-dir", &crash_dir]);
    let app = format!("rawcrash-{}", go.minor());
    let mut env = go_env(&sidecar, &app, "e2e-0");
    env.push(("MAPSCOPE_CRASH_DIR", crash_dir.clone()));
    let mut program = GoProgram::start(&binary, &env);
    let status = wait_bounded(&mut program.child, Duration::from_secs(60));
    let output = program.text();
    let status = status.unwrap_or_else(|| panic!("rawcrash did not crash in 60 s:\n{output}"));
    assert_eq!(
        status.code(),
        Some(2),
        "rawcrash must die of the runtime's fatal error:\n{output}"
    );
    assert!(
        output.contains("concurrent map"),
        "no fatal error on stderr:\n{output}"
    );

    let client = http();
    let source = app.as_str();
    eventually(&client, &sidecar, "the crash in /metrics", |m| {
        let crashes = value(
            m,
            "mapscope_map_misuse_events_total",
            &[
                ("map", "counters"),
                ("source", source),
                ("kind", "concurrent_write"),
            ],
        )?;
        if crashes < 1.0 {
            return Err(format!("concurrent_write {crashes}"));
        }
        Ok(())
    });

    let (file, line) = crash_site_line();
    let api: Value = client
        .get(sidecar.url("/api/v1/maps"))
        .send()
        .and_then(|r| r.json())
        .unwrap_or_else(|e| panic!("GET /api/v1/maps: {e}"));
    let events = api["recent_events"].as_array().cloned().unwrap_or_default();
    let crash = events
        .iter()
        .find(|e| e["kind"] == "concurrent_write" && e["site"].is_object())
        .unwrap_or_else(|| panic!("no concurrent_write event with a site: {events:#?}"));
    let site = &crash["site"];
    assert_eq!(site["function"], "main.hammer", "{crash:#}");
    assert_eq!(site["line"].as_u64(), Some(line), "{crash:#}");
    let reported_file = site["file"].as_str().unwrap_or_default();
    assert!(
        reported_file.ends_with("examples/rawcrash/main.go")
            && Path::new(reported_file).file_name() == file.file_name(),
        "site file {reported_file:?}, want {}",
        file.display()
    );

    // The processed crash files are gone; the sidecar never reads them twice.
    let deadline = Instant::now() + SETTLE;
    loop {
        let left: Vec<_> = std::fs::read_dir(&crashes.0)
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "crash files left in {}: {left:?}",
            crashes.0.display()
        );
        thread::sleep(Duration::from_millis(200));
    }
    eprintln!("go_client: {} raw map crash passed", go.version);
}

#[test]
fn raw_map_crash_becomes_a_concurrent_write_with_its_code_site() {
    let toolchains = toolchains();
    let out = TempDir::new("bin");
    for go in &toolchains {
        raw_map_crash(go, &out.0);
    }
}
