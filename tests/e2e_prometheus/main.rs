//! End to end against a real Prometheus: the real `mapscope demo` binary is
//! scraped by a real `prometheus` (Debian package `prometheus`) that loads
//! the plain rules file, and the test checks through Prometheus's HTTP API
//! that
//!
//! - the target is up and every alert rule loads and evaluates without an
//!   error, with the shortened `for:` of the test copy;
//! - every Grafana variable of `dashboards/*.json` resolves to the demo's
//!   namespace, pod, sources and maps, and every panel query, with the
//!   variables substituted as Grafana would, returns data;
//! - every alert whose scenario the demo reproduces reaches `firing`, on the
//!   map (or source, or misuse kind) of that scenario, with its annotations
//!   expanded without template errors, and no alert fires for the healthy
//!   baseline map `orders`;
//! - `MapscopeMapMisuse` also fires from a real Go program: the Go client's
//!   `examples/sessions`, built with the newest toolchain of
//!   `MAPSCOPE_GO_BINS` (see `tests/common/go.rs`), reports its
//!   `concurrent_write` and `nil_map_write` events to the demo's ingest
//!   listener; and from a Go crash nothing could stop: `examples/rawcrash`
//!   dies of `fatal error: concurrent map writes` with `CaptureCrashes()`
//!   on, and the demo reads its crash file from `--crash-dir`.
//!
//! The rules are a copy written by `deploy/generate.py --rules-for`, with
//! every `for:` shortened so the test takes seconds, not minutes.
//!
//! Needs `prometheus` and `python3` on `PATH`. Without them the test prints
//! a loud SKIPPED line and passes, unless `MAPSCOPE_REQUIRE_E2E=1`.
//!
//! One test binary: the test and its polling loop are here; [`prometheus`]
//! starts Prometheus and queries its HTTP API, [`alerts`] writes the test
//! copy of the rules and checks the rules and alerts APIs, [`dashboards`]
//! loads the Grafana dashboards, resolves their variables and runs their
//! panel queries.

// Drives the sidecar (its binary or its ingest endpoint): `--features sidecar`.
#![cfg(feature = "sidecar")]

mod alerts;
#[path = "../common"]
mod common {
    pub(crate) mod e2e;
    pub(crate) mod go;
    pub(crate) mod ports;
    pub(crate) mod process;
    pub(crate) mod programs;
    pub(crate) mod run;
    pub(crate) mod wait;
}
mod dashboards;
mod prometheus;

use std::collections::{BTreeMap, BTreeSet};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::alerts::{check_alerts, check_rules, declared_alerts, write_rules};
use crate::common::go::{toolchains, GoProgram};
use crate::common::process::{start_mapscope, MapscopeProcess};
use crate::common::programs::require_program;
use crate::common::wait::wait_bounded;
use crate::dashboards::{
    check_panels, check_variables, load_dashboards, resolve_variables, PanelQuery,
};
use crate::prometheus::{api, api_url, http_client, query, start_prometheus, TempDir};

const PROMETHEUS_HINT: &str =
    "install Debian package prometheus (apt-get install -y prometheus) or a Prometheus release";

/// The demo's tick in milliseconds. Every scenario and detector window of
/// the demo is a number of ticks; at 50 ms, `retained_capacity` holds for
/// about 5 s of every 10 s cycle, `evacuation_stalled` about 3 s of every
/// 4 s cycle, and `unbounded_growth` about 5 s of every 7.5 s cycle. At 20 ms
/// they hold for only 1 to 3 scrapes and an alert with a `for:` of 2 s or
/// more can stay pending. A loaded machine only makes the cycles longer (a
/// step takes longer, the windows do not), so conditions hold longer.
const DEMO_TICK_MS: &str = "50";

/// The `for:` of every rule in the test copy: one evaluation interval, so
/// each alert goes through `pending` into `firing` on two consecutive
/// evaluations that see its condition.
const RULES_FOR: &str = "1s";

/// The demo's `--source-ttl`, in seconds, so the probe source goes stale
/// (and `MapscopeSourceDown` fires) within seconds. The demo's own simulated
/// Go client reports every 10 ticks (0.5 s), far inside it.
const SOURCE_TTL: &str = "3";

/// What `$__rate_interval` becomes. Grafana's value is
/// max(4 × scrape interval, `$__interval` + scrape interval): 4 s here, but
/// 60 s at the 15 s scrape interval of `deploy/`; 30 s is in between and
/// keeps the `increase(...) > 0` panels from flickering.
const RATE_INTERVAL: &str = "30s";

/// What `$__range` becomes: the dashboards' default time range.
const RANGE: &str = "1h";

/// Target labels that stand in for Kubernetes pod discovery's
/// `namespace` and `pod`, which the dashboards' variables need.
const NAMESPACE: &str = "mapscope-e2e";
const POD: &str = "mapscope-demo-0";

/// The app name of a second source the test reports as until Prometheus has
/// scraped it, then abandons.
const PROBE_APP: &str = "e2e-probe";

/// The app name the real Go program reports as.
const GO_APP: &str = "go-sessions";

/// The app name of the Go program that crashes on a raw map.
const GO_CRASH_APP: &str = "go-rawcrash";

/// The maps of `mapscope demo` (`carts` is the simulated Go client's).
const DEMO_MAPS: [&str; 7] = [
    "orders",
    "sessions",
    "user_cache",
    "routes",
    "events",
    "snapshot",
    "carts",
];

/// The alerts the demo reproduces: (alert, label, value) that must be seen
/// firing.
///
/// Not reproduced: `MapscopeEventsDropped`, since the demo never fills its
/// event queue (`mapscope_events_dropped_total` stays 0). `MapscopeSourceDown`
/// is not reproduced by the demo itself (its Go client never stops); the
/// test triggers it with a second source, [`PROBE_APP`], that reports until
/// Prometheus has scraped it and then goes silent.
const EXPECTED_FIRING: [(&str, &str, &str); 9] = [
    ("MapscopeMapUnboundedGrowth", "map", "sessions"),
    ("MapscopeMapRetainedCapacity", "map", "user_cache"),
    ("MapscopeMapEvacuationStalled", "map", "snapshot"),
    ("MapscopeMapOverflowChains", "map", "routes"),
    ("MapscopeMapPresizeMiss", "map", "events"),
    ("MapscopeMapMisuse", "kind", "nil_map_write"),
    ("MapscopeMapMisuse", "kind", "concurrent_write"),
    ("MapscopeMapMisuse", "kind", "iterate_while_mutating"),
    ("MapscopeSourceDown", "source", PROBE_APP),
];

/// How long Prometheus may take to become ready.
const STARTUP: Duration = Duration::from_secs(30);

/// How long, once Prometheus is ready, the first successful scrape may
/// take (about 6 s: target discovery sends its first update after 5 s).
const TARGET_UP: Duration = Duration::from_secs(20);

/// How long, once the target is up, the alerts and panels may take (about
/// 8 s on an idle or a loaded 2-core machine).
const CHECKS: Duration = Duration::from_secs(75);

/// Posts one report as the probe source (no maps).
fn post_probe_report(
    client: &reqwest::blocking::Client,
    ingest_url: &str,
    seq: u64,
) -> Result<(), String> {
    let report = json!({
        "source": {
            "app": PROBE_APP,
            "instance": "e2e-1",
            "language": "rust",
            "sdk": "tests/e2e_prometheus",
        },
        "seq": seq,
        "maps": [],
        "events": [],
    });
    let response = client
        .post(ingest_url)
        .json(&report)
        .send()
        .map_err(|e| format!("POST {ingest_url}: {e}"))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!(
            "POST {ingest_url}: {status}: {}",
            response.text().unwrap_or_default()
        ))
    }
}

/// Everything the polling loop has established so far.
#[derive(Debug, Default)]
struct Progress {
    /// Every rule loaded and evaluated without an error.
    rules_ok: Option<Duration>,
    rules_problem: String,
    /// Variables resolved as expected, per dashboard.
    variables: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    variables_problem: BTreeMap<String, String>,
    /// Panel queries that returned data: description to when, and with
    /// which single-value variable values.
    panels_ok: BTreeMap<String, (Duration, Vec<String>)>,
    /// The last error of a panel query, if any.
    panel_errors: BTreeMap<String, String>,
    /// When each (alert, label, value) was first seen firing.
    fired: BTreeMap<(String, String, String), Duration>,
    /// The last error of the alerts API, if any.
    alerts_problem: String,
    /// Every alert name seen pending or firing.
    seen_states: BTreeMap<String, BTreeSet<String>>,
    /// Firing alerts on the healthy baseline, and annotation problems.
    violations: BTreeSet<String>,
    /// When Prometheus first had the probe's series.
    probe_scraped: Option<Duration>,
    probe_problem: String,
    /// Alerts expected beyond [`EXPECTED_FIRING`]: the real Go program's.
    also_expected: Vec<(String, String, String)>,
}

impl Progress {
    fn missing_alerts(&self) -> Vec<String> {
        EXPECTED_FIRING
            .iter()
            .map(|(a, k, v)| ((*a).to_owned(), (*k).to_owned(), (*v).to_owned()))
            .chain(self.also_expected.iter().cloned())
            .filter(|key| !self.fired.contains_key(key))
            .map(|(a, k, v)| format!("{a}{{{k}=\"{v}\"}}"))
            .collect()
    }
}

#[test]
fn prometheus_scrapes_the_demo_fires_its_alerts_and_fills_the_dashboards() {
    // The Debian package also installs a service; the test runs its own
    // Prometheus on a free port, so a running service does not disturb it.
    let Some(prometheus_bin) = require_program("prometheus", PROMETHEUS_HINT) else {
        return;
    };
    let Some(python) = require_program("python3", "install Python 3 (apt-get install -y python3)")
    else {
        return;
    };
    let started = Instant::now();
    let client = http_client();
    let dashboards = load_dashboards();
    let total_queries: usize = dashboards.iter().map(|d| d.queries.len()).sum();
    let distinct: BTreeSet<String> = dashboards
        .iter()
        .flat_map(|d| d.queries.iter().map(PanelQuery::describe))
        .collect();
    assert_eq!(
        distinct.len(),
        total_queries,
        "two panel targets with the same panel id, refId and expr"
    );

    // Dropped last: after Prometheus and the demo have stopped.
    let dir = TempDir::new();
    let rules_path = dir.0.join("mapscope-rules.yml");
    write_rules(&python, &rules_path);
    let rules_text = std::fs::read_to_string(&rules_path).expect("the rules copy");
    let declared = declared_alerts(&rules_text);
    for (alert, _, _) in EXPECTED_FIRING {
        assert!(
            declared.contains(alert),
            "{alert} is not in the rules: {declared:?}"
        );
    }

    let crash_dir = dir.0.join("crashes");
    std::fs::create_dir_all(&crash_dir).expect("create the crash directory");
    let crash_dir_arg = crash_dir.to_string_lossy().into_owned();
    let mut demo: MapscopeProcess = start_mapscope(&[
        "demo",
        "--crash-dir",
        &crash_dir_arg,
        "--listen",
        "127.0.0.1:0",
        "--ingest-listen",
        "127.0.0.1:0",
        "--tick",
        DEMO_TICK_MS,
        "--source-ttl",
        SOURCE_TTL,
    ]);
    let target = demo
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let ingest_url = demo.ingest_url();

    // The real Go programs, reporting to the demo's ingest listener.
    let go = toolchains().pop();
    let crasher = go.as_ref().map(|go| go.build("examples/rawcrash", &dir.0));
    let go_program = go.map(|go| {
        let binary = go.build("examples/sessions", &dir.0);
        let mut program = GoProgram::start(
            &binary,
            &[
                ("MAPSCOPE_ENDPOINT", ingest_url.clone()),
                ("MAPSCOPE_APP", GO_APP.to_owned()),
                ("MAPSCOPE_INSTANCE", "e2e-0".to_owned()),
                ("MAPSCOPE_REPORT_INTERVAL", "500ms".to_owned()),
                ("MAPSCOPE_EXAMPLE_LISTEN", "127.0.0.1:0".to_owned()),
            ],
        );
        let addr = program.wait_line("listening on ", Duration::from_secs(30));
        let base = format!(
            "http://{}",
            addr.trim_start_matches("http://").trim_end_matches('/')
        );
        eprintln!("e2e: Go example ({}) at {base}", go.version);
        (program, base)
    });

    let config = format!(
        "# Written by tests/e2e_prometheus.\n\
         global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - '{rules}'\n\
         scrape_configs:\n  - job_name: mapscope\n    metrics_path: /metrics\n    static_configs:\n      \
         - targets: ['{target}']\n        labels:\n          namespace: {NAMESPACE}\n          pod: {POD}\n",
        rules = rules_path.display()
    );
    let config_path = dir.0.join("prometheus.yml");
    std::fs::write(&config_path, &config).expect("write prometheus.yml");

    let mut prometheus = start_prometheus(&prometheus_bin, &dir.0, &config_path, &client);
    let base = prometheus.base.clone();
    eprintln!(
        "e2e: demo at {target} (tick {DEMO_TICK_MS} ms), Prometheus at {base}, ready after {:?}",
        started.elapsed()
    );

    // The target is up.
    let deadline = Instant::now() + TARGET_UP;
    loop {
        let health = api(&client, api_url(&base, "/api/v1/targets", &[]))
            .map(|data| {
                data["activeTargets"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|t| format!("{} {} {}", t["scrapeUrl"], t["health"], t["lastError"]))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_else(|e| e);
        let up = query(&client, &base, "up{job=\"mapscope\"} == 1")
            .map(|r| r.len() == 1)
            .unwrap_or(false);
        if up && health.contains("\"up\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the demo target is not up within {TARGET_UP:?}: {health}\n--- Prometheus log\n{}\n--- demo stderr\n{}",
            prometheus.log_tail(40),
            demo.stderr_text()
        );
        thread::sleep(Duration::from_millis(250));
    }
    let checks_started = Instant::now();
    eprintln!("e2e: target up after {:?}", started.elapsed());

    let mut progress = Progress::default();
    if go_program.is_some() {
        // The kinds are already expected from the simulated client; an
        // alert with source="go-sessions" can only come from the real one.
        for app in [GO_APP, GO_CRASH_APP] {
            progress.also_expected.push((
                "MapscopeMapMisuse".to_owned(),
                "source".to_owned(),
                app.to_owned(),
            ));
        }
    }
    let mut probe_seq = 0u64;
    let mut go_bugs_triggered = false;
    let deadline = checks_started + CHECKS;
    loop {
        let elapsed = checks_started.elapsed();

        // The probe source reports until Prometheus has scraped it, then
        // stops: it goes stale after --source-ttl and MapscopeSourceDown
        // fires.
        if progress.probe_scraped.is_none() {
            probe_seq += 1;
            if let Err(error) = post_probe_report(&client, &ingest_url, probe_seq) {
                progress.probe_problem = error;
            }
            let selector =
                format!("mapscope_source_last_report_timestamp_seconds{{source=\"{PROBE_APP}\"}}");
            if query(&client, &base, &selector).is_ok_and(|r| !r.is_empty()) {
                progress.probe_scraped = Some(elapsed);
            }
        }

        // The real Go program's bugs, once Prometheus scrapes the target
        // (so the alert sees the counter rise rather than start high).
        if let (Some((_, go_base)), false) = (&go_program, go_bugs_triggered) {
            for bug in ["/bug/race", "/bug/nil"] {
                // /bug/nil fails by design: the handler panics after the
                // middleware recorded the nil-map write.
                let _ = client.get(format!("{go_base}{bug}")).send();
            }
            if let Some(crasher) = &crasher {
                // Dies of the runtime's fatal error; the crash file it
                // leaves is all the demo gets.
                let mut crash = GoProgram::start(
                    crasher,
                    &[
                        ("MAPSCOPE_ENDPOINT", ingest_url.clone()),
                        ("MAPSCOPE_APP", GO_CRASH_APP.to_owned()),
                        ("MAPSCOPE_INSTANCE", "e2e-0".to_owned()),
                        ("MAPSCOPE_CRASH_DIR", crash_dir_arg.clone()),
                    ],
                );
                let status = wait_bounded(&mut crash.child, Duration::from_secs(60));
                assert_eq!(
                    status.and_then(|s| s.code()),
                    Some(2),
                    "rawcrash must die of a fatal error:\n{}",
                    crash.text()
                );
            }
            go_bugs_triggered = true;
        }

        if progress.rules_ok.is_none() {
            match check_rules(&client, &base, &declared) {
                Ok(()) => progress.rules_ok = Some(elapsed),
                Err(problem) => progress.rules_problem = problem,
            }
        }

        if let Err(error) = check_alerts(&client, &base, &mut progress, elapsed) {
            progress.alerts_problem = error;
        }

        for dashboard in &dashboards {
            if progress.variables.contains_key(&dashboard.file) {
                continue;
            }
            match resolve_variables(&client, &base, dashboard)
                .and_then(|r| check_variables(&r).map(|()| r))
            {
                Ok(resolved) => {
                    progress.variables_problem.remove(&dashboard.file);
                    progress.variables.insert(dashboard.file.clone(), resolved);
                }
                Err(problem) => {
                    progress
                        .variables_problem
                        .insert(dashboard.file.clone(), problem);
                }
            }
        }
        check_panels(&client, &base, &dashboards, &mut progress, elapsed);

        let done = progress.rules_ok.is_some()
            && progress.missing_alerts().is_empty()
            && progress.variables.len() == dashboards.len()
            && progress.panels_ok.len() == total_queries;
        if done || Instant::now() > deadline {
            break;
        }
        thread::sleep(Duration::from_millis(500));
    }

    // Report, then assert.
    eprintln!("e2e: --- after {:?}", checks_started.elapsed());
    eprintln!("e2e: rules ok after {:?}", progress.rules_ok);
    eprintln!(
        "e2e: probe source scraped after {:?}",
        progress.probe_scraped
    );
    for ((alert, key, value), at) in &progress.fired {
        eprintln!("e2e: firing after {at:>8.1?}: {alert}{{{key}=\"{value}\"}}");
    }
    for (alert, states) in &progress.seen_states {
        eprintln!("e2e: {alert} seen {states:?}");
    }
    for (file, vars) in &progress.variables {
        eprintln!("e2e: {file}: variables {vars:?}");
    }
    for (panel, (at, with)) in &progress.panels_ok {
        eprintln!("e2e: data after {at:>8.1?} [{}]: {panel}", with.join(" | "));
    }

    let mut failures = Vec::new();
    if progress.rules_ok.is_none() {
        failures.push(format!("rules: {}", progress.rules_problem));
    }
    let missing = progress.missing_alerts();
    if !missing.is_empty() {
        failures.push(format!(
            "never firing within {CHECKS:?}: {missing:?} (states seen: {:?}; last API error: {:?})",
            progress.seen_states, progress.alerts_problem
        ));
    }
    if progress.probe_scraped.is_none() {
        failures.push(format!(
            "the probe source never reached Prometheus: {}",
            progress.probe_problem
        ));
    }
    for (file, problem) in &progress.variables_problem {
        failures.push(format!("{file}: variables: {problem}"));
    }
    for dashboard in &dashboards {
        for panel in &dashboard.queries {
            let key = panel.describe();
            if !progress.panels_ok.contains_key(&key) {
                let error = progress
                    .panel_errors
                    .get(&key)
                    .map_or(String::new(), |e| format!(" (error: {e})"));
                failures.push(format!("no data: {key}{error}"));
            }
        }
    }
    failures.extend(progress.violations.iter().cloned());

    if failures.is_empty() {
        let quit = prometheus.quit(&client);
        let stopped = demo.terminate(Duration::from_secs(15));
        eprintln!(
            "e2e: passed in {:?} ({} panel queries, {} alerts); Prometheus exited {quit:?}, demo {stopped:?}",
            started.elapsed(),
            total_queries,
            EXPECTED_FIRING.len()
        );
    } else {
        panic!(
            "{} problem(s):\n  {}\n--- Prometheus log (tail)\n{}\n--- demo stderr\n{}",
            failures.len(),
            failures.join("\n  "),
            prometheus.log_tail(40),
            demo.stderr_text()
        );
    }
}
