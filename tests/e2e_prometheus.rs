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

mod common {
    pub(crate) mod e2e;
    pub(crate) mod go;
    pub(crate) mod ports;
    pub(crate) mod process;
    pub(crate) mod programs;
    pub(crate) mod run;
    pub(crate) mod wait;
}

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::go::{toolchains, GoProgram};
use common::ports::closed_port;
use common::process::{start_mapscope, MapscopeProcess};
use common::programs::require_program;
use common::run::run;
use common::wait::wait_bounded;
use serde_json::{json, Value};

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

// ---------------------------------------------------------------------------
// Processes and files, cleaned up on drop (panics included)
// ---------------------------------------------------------------------------

/// A directory under the system temp dir, removed on drop.
#[derive(Debug)]
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "mapscope-e2e-prometheus-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("create {path:?}: {e}"));
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if let Err(error) = std::fs::remove_dir_all(&self.0) {
            eprintln!("warning: cannot remove {:?}: {error}", self.0);
        }
    }
}

/// A running Prometheus, killed and reaped on drop unless already stopped.
#[derive(Debug)]
struct Prometheus {
    child: Child,
    /// `http://127.0.0.1:PORT` (no trailing slash).
    base: String,
    /// Its stdout and stderr.
    log: PathBuf,
}

impl Prometheus {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The last `lines` lines of its log.
    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Asks it to quit (`--web.enable-lifecycle`) and waits for the exit.
    fn quit(&mut self, client: &reqwest::blocking::Client) -> Option<ExitStatus> {
        let _ = client.post(self.url("/-/quit")).send();
        wait_bounded(&mut self.child, Duration::from_secs(15))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = wait_bounded(&mut self.child, Duration::from_secs(5));
        }
    }
}

enum StartError {
    /// Another process took the port between our probe and its bind.
    PortTaken,
    Fatal(String),
}

/// Starts Prometheus on a free loopback port and waits until `/-/ready`.
fn start_prometheus(
    bin: &Path,
    dir: &Path,
    config: &Path,
    client: &reqwest::blocking::Client,
) -> Prometheus {
    for attempt in 1..=3 {
        let port = closed_port();
        let log = dir.join(format!("prometheus-{attempt}.log"));
        let file = File::create(&log).unwrap_or_else(|e| panic!("create {log:?}: {e}"));
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join(format!("data-{attempt}")).display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-lifecycle")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("clone the log file handle"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {bin:?}: {e}"));
        let mut prometheus = Prometheus {
            child,
            base: format!("http://127.0.0.1:{port}"),
            log,
        };
        match wait_ready(&mut prometheus, client) {
            Ok(()) => return prometheus,
            Err(StartError::PortTaken) if attempt < 3 => {
                eprintln!("e2e: port {port} was taken; trying another");
            }
            Err(StartError::PortTaken) => panic!("no free port for Prometheus in 3 attempts"),
            Err(StartError::Fatal(why)) => panic!(
                "Prometheus did not start: {why}\n--- log\n{}",
                prometheus.log_tail(60)
            ),
        }
    }
    unreachable!("the loop returns or panics")
}

fn wait_ready(
    prometheus: &mut Prometheus,
    client: &reqwest::blocking::Client,
) -> Result<(), StartError> {
    let deadline = Instant::now() + STARTUP;
    loop {
        if let Ok(Some(status)) = prometheus.child.try_wait() {
            let log = prometheus.log_tail(60);
            return Err(if log.contains("address already in use") {
                StartError::PortTaken
            } else {
                StartError::Fatal(format!("it exited with {status}"))
            });
        }
        if client
            .get(prometheus.url("/-/ready"))
            .send()
            .is_ok_and(|r| r.status() == 200)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(StartError::Fatal(format!("not ready within {STARTUP:?}")));
        }
        thread::sleep(Duration::from_millis(200));
    }
}

// ---------------------------------------------------------------------------
// Prometheus HTTP API
// ---------------------------------------------------------------------------

fn http_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("build the HTTP client")
}

/// GETs an API URL and returns its `data`, or why it could not.
fn api(client: &reqwest::blocking::Client, url: reqwest::Url) -> Result<Value, String> {
    let response = client
        .get(url.clone())
        .send()
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = response.status();
    let body: Value = response
        .json()
        .map_err(|e| format!("GET {url}: {status}: not JSON: {e}"))?;
    if status != 200 || body["status"] != "success" {
        return Err(format!("GET {url}: {status}: {body}"));
    }
    Ok(body["data"].clone())
}

fn api_url(base: &str, path: &str, params: &[(&str, &str)]) -> reqwest::Url {
    reqwest::Url::parse_with_params(&format!("{base}{path}"), params)
        .unwrap_or_else(|e| panic!("URL {base}{path}: {e}"))
}

/// The result of an instant query: the series of a vector (or matrix), or
/// the one value of a scalar or string.
fn query(client: &reqwest::blocking::Client, base: &str, expr: &str) -> Result<Vec<Value>, String> {
    let data = api(client, api_url(base, "/api/v1/query", &[("query", expr)]))?;
    match data["resultType"].as_str() {
        Some("vector" | "matrix") => Ok(data["result"].as_array().cloned().unwrap_or_default()),
        Some(_) => Ok(vec![data["result"].clone()]),
        None => Err(format!("query {expr}: no resultType in {data}")),
    }
}

/// Grafana's `label_values(selector, label)`, through the label values API
/// as Grafana runs it.
fn label_values(
    client: &reqwest::blocking::Client,
    base: &str,
    definition: &str,
) -> Result<BTreeSet<String>, String> {
    let inner = definition
        .strip_prefix("label_values(")
        .and_then(|d| d.strip_suffix(')'))
        .ok_or_else(|| format!("not label_values(selector, label): {definition}"))?;
    let (selector, label) = inner
        .rsplit_once(',')
        .ok_or_else(|| format!("not label_values(selector, label): {definition}"))?;
    let data = api(
        client,
        api_url(
            base,
            &format!("/api/v1/label/{}/values", label.trim()),
            &[("match[]", selector.trim())],
        ),
    )?;
    Ok(data
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect())
}

// ---------------------------------------------------------------------------
// Dashboards
// ---------------------------------------------------------------------------

/// A query variable of a dashboard.
#[derive(Debug)]
struct Variable {
    name: String,
    definition: String,
    /// `Some(allValue)` for multi-value variables with "All" (the test
    /// selects All); `None` for single-value ones (the test tries each
    /// value).
    all_value: Option<String>,
}

/// One panel target.
#[derive(Debug)]
struct PanelQuery {
    dashboard: String,
    panel_id: u64,
    panel: String,
    ref_id: String,
    expr: String,
}

impl PanelQuery {
    fn describe(&self) -> String {
        format!(
            "{} / panel {} {:?} / {}: {}",
            self.dashboard, self.panel_id, self.panel, self.ref_id, self.expr
        )
    }
}

#[derive(Debug)]
struct Dashboard {
    file: String,
    variables: Vec<Variable>,
    queries: Vec<PanelQuery>,
}

fn load_dashboards() -> Vec<Dashboard> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir:?}: {e}"))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no dashboards in {dir:?}");
    files
        .iter()
        .map(|path| {
            let file = path
                .file_name()
                .expect("a file name")
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
            let json: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"));
            let variables = json["templating"]["list"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|v| v["type"] == "query")
                .map(|v| Variable {
                    name: v["name"].as_str().expect("variable name").to_owned(),
                    definition: v["definition"]
                        .as_str()
                        .expect("variable definition")
                        .to_owned(),
                    all_value: (v["includeAll"] == true).then(|| {
                        v["allValue"]
                            .as_str()
                            .expect("an includeAll variable has an allValue")
                            .to_owned()
                    }),
                })
                .collect();
            let mut panels = Vec::new();
            for panel in json["panels"].as_array().expect("panels") {
                panels.push(panel);
                panels.extend(panel["panels"].as_array().into_iter().flatten());
            }
            let queries = panels
                .into_iter()
                .flat_map(|panel| {
                    let title = panel["title"].as_str().unwrap_or_default().to_owned();
                    let panel_id = panel["id"].as_u64().unwrap_or_default();
                    let file = file.clone();
                    panel["targets"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(move |t| PanelQuery {
                            dashboard: file.clone(),
                            panel_id,
                            panel: title.clone(),
                            ref_id: t["refId"].as_str().unwrap_or_default().to_owned(),
                            expr: t["expr"].as_str().unwrap_or_default().to_owned(),
                        })
                })
                .collect();
            Dashboard {
                file,
                variables,
                queries,
            }
        })
        .collect()
}

/// `expr` with Grafana's built-in and the dashboard's variables replaced.
fn substitute(expr: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = expr
        .replace("$__rate_interval", RATE_INTERVAL)
        .replace("${__rate_interval}", RATE_INTERVAL)
        .replace("$__range", RANGE)
        .replace("${__range}", RANGE);
    // Longest names first, so `$map` cannot eat the start of `$mapping`.
    let mut names: Vec<&String> = values.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for name in names {
        out = out
            .replace(&format!("${{{name}}}"), &values[name])
            .replace(&format!("${name}"), &values[name]);
    }
    assert!(
        !out.contains('$'),
        "a variable the test does not know in {expr:?} (after substitution: {out:?})"
    );
    out
}

/// Every combination of variable values to try for `expr`: multi-value
/// variables are All; a single-value variable the expression uses takes
/// each of its values in turn.
fn combinations(
    expr: &str,
    variables: &[Variable],
    resolved: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<BTreeMap<String, String>> {
    let mut combos = vec![BTreeMap::new()];
    for variable in variables {
        let choices: Vec<String> = match &variable.all_value {
            Some(all) => vec![all.clone()],
            None if expr.contains(&format!("${}", variable.name))
                || expr.contains(&format!("${{{}}}", variable.name)) =>
            {
                resolved
                    .get(&variable.name)
                    .map(|v| v.iter().cloned().collect())
                    .unwrap_or_default()
            }
            // Not used by this expression: any value will do.
            None => vec![resolved
                .get(&variable.name)
                .and_then(|v| v.iter().next().cloned())
                .unwrap_or_default()],
        };
        combos = combos
            .into_iter()
            .flat_map(|combo| {
                choices.iter().map(move |choice| {
                    let mut combo = combo.clone();
                    combo.insert(variable.name.clone(), choice.clone());
                    combo
                })
            })
            .collect();
    }
    combos
}

/// Resolves a dashboard's variables in order, each chained on the previous
/// ones as Grafana does.
fn resolve_variables(
    client: &reqwest::blocking::Client,
    base: &str,
    dashboard: &Dashboard,
) -> Result<BTreeMap<String, BTreeSet<String>>, String> {
    let mut resolved = BTreeMap::new();
    let mut selected = BTreeMap::new();
    for variable in &dashboard.variables {
        let definition = substitute(&variable.definition, &selected);
        let values = label_values(client, base, &definition)?;
        if values.is_empty() {
            return Err(format!(
                "{}: variable {} ({definition}) has no values",
                dashboard.file, variable.name
            ));
        }
        let choice = variable
            .all_value
            .clone()
            .unwrap_or_else(|| values.iter().next().cloned().unwrap_or_default());
        selected.insert(variable.name.clone(), choice);
        resolved.insert(variable.name.clone(), values);
    }
    Ok(resolved)
}

/// What a dashboard's variables must offer with the demo behind them.
fn check_variables(resolved: &BTreeMap<String, BTreeSet<String>>) -> Result<(), String> {
    let get = |name: &str| resolved.get(name).cloned().unwrap_or_default();
    let mut problems = Vec::new();
    if get("namespace") != BTreeSet::from([NAMESPACE.to_owned()]) {
        problems.push(format!("namespace = {:?}", get("namespace")));
    }
    if get("pod") != BTreeSet::from([POD.to_owned()]) {
        problems.push(format!("pod = {:?}", get("pod")));
    }
    if !get("source").contains("go-checkout") {
        problems.push(format!("source = {:?} (no go-checkout)", get("source")));
    }
    let maps = get("map");
    let missing: Vec<&str> = DEMO_MAPS
        .iter()
        .copied()
        .filter(|m| !maps.contains(*m))
        .collect();
    if !missing.is_empty() {
        problems.push(format!("map = {maps:?} (missing {missing:?})"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

// ---------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------

/// Writes the test copy of the rules with `deploy/generate.py --rules-for`.
fn write_rules(python: &Path, out: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut command = Command::new(python);
    command
        .current_dir(root)
        .arg(root.join("deploy/generate.py"))
        .args(["--rules-for", RULES_FOR, "--out"])
        .arg(out);
    let output = run(command, Duration::from_secs(60));
    assert!(
        output.status.success(),
        "deploy/generate.py --rules-for {RULES_FOR}: {}\n{}{}",
        output.status,
        output.stdout,
        output.stderr
    );
}

/// The alert names a rules file declares.
fn declared_alerts(rules: &str) -> BTreeSet<String> {
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|n| n.trim().to_owned())
        .collect()
}

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
            "sdk": "tests/e2e_prometheus.rs",
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

/// Checks the rules API: every declared alert loaded, with the test's
/// `for:`, and evaluated without an error.
fn check_rules(
    client: &reqwest::blocking::Client,
    base: &str,
    declared: &BTreeSet<String>,
) -> Result<(), String> {
    let data = api(client, api_url(base, "/api/v1/rules", &[]))?;
    let rules_for_seconds: f64 = RULES_FOR
        .strip_suffix('s')
        .and_then(|s| s.parse().ok())
        .expect("RULES_FOR is a number of seconds");
    let mut loaded = BTreeSet::new();
    let mut problems = Vec::new();
    for group in data["groups"].as_array().into_iter().flatten() {
        for rule in group["rules"].as_array().into_iter().flatten() {
            let name = rule["name"].as_str().unwrap_or_default().to_owned();
            match rule["health"].as_str() {
                Some("ok") => {}
                health => problems.push(format!(
                    "{name}: health {health:?}, last error {}",
                    rule["lastError"]
                )),
            }
            if rule["type"] == "alerting" && rule["duration"].as_f64() != Some(rules_for_seconds) {
                problems.push(format!(
                    "{name}: for {} s, expected {RULES_FOR}",
                    rule["duration"]
                ));
            }
            loaded.insert(name);
        }
    }
    if &loaded != declared {
        problems.push(format!("loaded {loaded:?}, the file declares {declared:?}"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Records firing alerts (and pending ones' names) from the alerts API.
fn check_alerts(
    client: &reqwest::blocking::Client,
    base: &str,
    progress: &mut Progress,
    elapsed: Duration,
) -> Result<(), String> {
    let data = api(client, api_url(base, "/api/v1/alerts", &[]))?;
    for alert in data["alerts"].as_array().into_iter().flatten() {
        let labels = &alert["labels"];
        let name = labels["alertname"].as_str().unwrap_or_default().to_owned();
        let state = alert["state"].as_str().unwrap_or_default().to_owned();
        progress
            .seen_states
            .entry(name.clone())
            .or_default()
            .insert(state.clone());
        if state != "firing" {
            continue;
        }
        if labels["map"] == "orders" {
            progress.violations.insert(format!(
                "{name} fired for the healthy baseline map orders: {labels}"
            ));
        }
        if labels["severity"].as_str().is_none_or(str::is_empty) {
            progress
                .violations
                .insert(format!("{name} fired without a severity: {labels}"));
        }
        if name == "MapscopeMapMisuse"
            && (labels["map"] != "carts" || labels["source"] != "go-checkout")
            && labels["source"] != GO_APP
            && labels["source"] != GO_CRASH_APP
        {
            progress.violations.insert(format!(
                "{name} fired for something else than the simulated Go client's carts \
                 or the real Go program: {labels}"
            ));
        }
        let annotations = &alert["annotations"];
        for key in ["summary", "description", "runbook_url"] {
            let text = annotations[key].as_str().unwrap_or_default();
            if text.is_empty()
                || text.contains("<no value>")
                || text.contains("error expanding template")
            {
                progress.violations.insert(format!(
                    "{name}: annotation {key} is {text:?} (labels {labels})"
                ));
            }
        }
        let anchor = format!("#{}", name.to_lowercase());
        if !annotations["runbook_url"]
            .as_str()
            .unwrap_or_default()
            .ends_with(&anchor)
        {
            progress.violations.insert(format!(
                "{name}: runbook_url {} does not end with {anchor}",
                annotations["runbook_url"]
            ));
        }
        for key in ["map", "kind", "source"] {
            if let Some(value) = labels[key].as_str() {
                progress
                    .fired
                    .entry((name.clone(), key.to_owned(), value.to_owned()))
                    .or_insert(elapsed);
            }
        }
    }
    Ok(())
}

/// Runs every panel query that has not returned data yet.
fn check_panels(
    client: &reqwest::blocking::Client,
    base: &str,
    dashboards: &[Dashboard],
    progress: &mut Progress,
    elapsed: Duration,
) {
    for dashboard in dashboards {
        let Some(resolved) = progress.variables.get(&dashboard.file).cloned() else {
            continue;
        };
        for panel in &dashboard.queries {
            let key = panel.describe();
            if progress.panels_ok.contains_key(&key) {
                continue;
            }
            let mut with_data = Vec::new();
            for combo in combinations(&panel.expr, &dashboard.variables, &resolved) {
                let expr = substitute(&panel.expr, &combo);
                match query(client, base, &expr) {
                    Ok(result) if !result.is_empty() => {
                        let single: Vec<String> = dashboard
                            .variables
                            .iter()
                            .filter(|v| v.all_value.is_none())
                            .filter(|v| panel.expr.contains(&format!("${}", v.name)))
                            .map(|v| format!("{}={}", v.name, combo[&v.name]))
                            .collect();
                        with_data.push(single.join(","));
                    }
                    Ok(_) => {}
                    Err(error) => {
                        progress.panel_errors.insert(key.clone(), error);
                    }
                }
            }
            if !with_data.is_empty() {
                progress.panel_errors.remove(&key);
                progress.panels_ok.insert(key, (elapsed, with_data));
            }
        }
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
        "# Written by tests/e2e_prometheus.rs.\n\
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
