//! Helpers shared by the HTTP, promtool and docs tests: an in-process
//! server on a loopback port, the real `mapscope` binary as a child
//! process, a strict parser for the Prometheus text exposition format, and
//! a check for external programs that skips loudly.
//!
//! Everything is bounded: servers and children are stopped on drop with a
//! deadline, and every wait has a timeout, so a broken build fails a test
//! instead of hanging it.

// Not every test binary uses every helper; the helpers are `pub` for the
// binaries that include this module, not for export.
#![allow(dead_code, unreachable_pub)]

pub mod go;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long any single wait in these helpers may take.
pub const WAIT: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------------------
// In-process server
// ---------------------------------------------------------------------------

/// An axum router served on `127.0.0.1:<ephemeral>` by a tokio runtime on
/// its own thread. Dropping it shuts the server down (gracefully, then by
/// force after a deadline).
#[derive(Debug)]
pub struct TestServer {
    /// The bound address.
    pub addr: SocketAddr,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    done: mpsc::Receiver<()>,
    thread: Option<thread::JoinHandle<()>>,
}

impl TestServer {
    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `base_url()` followed by `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        // The server thread forces its way out 2 s after the signal; wait a
        // little longer than that, then leave it detached rather than hang.
        if self.done.recv_timeout(Duration::from_secs(5)).is_ok() {
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        } else {
            eprintln!(
                "warning: test server on {} did not stop within 5 s",
                self.addr
            );
        }
    }
}

/// Serves `app` on a fresh loopback port.
pub fn serve_router(app: axum::Router) -> TestServer {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener
        .set_nonblocking(true)
        .expect("set the listener non-blocking");
    let addr = listener.local_addr().expect("local address");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (done_tx, done_rx) = mpsc::channel();
    let thread = thread::Builder::new()
        .name(format!("test-server-{}", addr.port()))
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("build the server runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                let mut graceful = stop_rx.clone();
                let server = axum::serve(listener, app).with_graceful_shutdown(async move {
                    let _ = graceful.wait_for(|stop| *stop).await;
                });
                let mut forced = stop_rx;
                let deadline = async move {
                    let _ = forced.wait_for(|stop| *stop).await;
                    tokio::time::sleep(Duration::from_secs(2)).await;
                };
                tokio::select! {
                    result = server => {
                        if let Err(error) = result {
                            eprintln!("test server on {addr}: {error}");
                        }
                    }
                    () = deadline => {}
                }
            });
            runtime.shutdown_timeout(Duration::from_secs(1));
            let _ = done_tx.send(());
        })
        .expect("spawn the server thread");
    TestServer {
        addr,
        stop: Some(stop_tx),
        done: done_rx,
        thread: Some(thread),
    }
}

/// Serves `mapscope::http::router(registry)` on a fresh loopback port.
pub fn serve_registry(registry: mapscope::Registry) -> TestServer {
    serve_router(mapscope::http::router(registry))
}

/// A reqwest client for loopback tests: no proxy, bounded timeouts, and
/// (with the `gzip` feature) transparent gzip decoding.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .timeout(WAIT)
        .build()
        .expect("build the HTTP client")
}

/// A client that neither asks for nor decodes compression, so headers and
/// bytes are seen as the server sent them.
pub fn raw_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .no_gzip()
        .connect_timeout(Duration::from_secs(5))
        .timeout(WAIT)
        .build()
        .expect("build the HTTP client")
}

/// A blocking reqwest client for loopback tests: no proxy, bounded
/// timeouts.
pub fn blocking_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .timeout(WAIT)
        .build()
        .expect("build the blocking HTTP client")
}

/// GETs `{base}/metrics` with a blocking client and parses it strictly.
pub fn scrape_blocking(base: &str) -> Exposition {
    let url = format!("{}/metrics", base.trim_end_matches('/'));
    let response = blocking_client()
        .get(&url)
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(response.status(), 200, "GET {url}");
    let text = response.text().expect("read /metrics");
    parse_exposition(&text).unwrap_or_else(|e| panic!("unparsable /metrics: {e}\n{text}"))
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `limit`.
pub fn poll<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?}: {what}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// GETs `url` and returns the body, panicking on a non-200 answer.
pub async fn get_text(url: &str) -> String {
    let response = client()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(response.status(), 200, "GET {url}");
    response
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: reading the body: {e}"))
}

// ---------------------------------------------------------------------------
// External programs
// ---------------------------------------------------------------------------

/// Whether end-to-end prerequisites are mandatory (CI sets
/// `MAPSCOPE_REQUIRE_E2E=1` so a missing tool fails instead of skipping).
pub fn e2e_required() -> bool {
    std::env::var("MAPSCOPE_REQUIRE_E2E").is_ok_and(|v| v.trim() == "1")
}

/// The path of `name` on `PATH`. When it is missing, prints a loud
/// `SKIPPED` line naming `install_hint` and returns `None`, or panics if
/// `MAPSCOPE_REQUIRE_E2E=1`.
pub fn require_program(name: &str, install_hint: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| is_executable(candidate))
    });
    match found {
        Some(path) => Some(path),
        None if e2e_required() => {
            panic!("{name} not found on PATH and MAPSCOPE_REQUIRE_E2E=1: {install_hint}")
        }
        None => {
            eprintln!();
            eprintln!("================================================================");
            eprintln!("SKIPPED: {name} not found on PATH; {install_hint}");
            eprintln!("(set MAPSCOPE_REQUIRE_E2E=1 to make this a failure)");
            eprintln!("================================================================");
            eprintln!();
            None
        }
    }
}

fn is_executable(path: &std::path::Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        path.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

/// What a finished child process did.
#[derive(Debug)]
pub struct Output {
    /// Its exit status.
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

/// Runs `command` with `stdin` as its input, killing it after `timeout`.
pub fn run_with_input(mut command: Command, stdin: &[u8], timeout: Duration) -> Output {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    {
        let mut input = child.stdin.take().expect("piped stdin");
        // A child that exits early closes the pipe; its status tells why.
        let _ = input.write_all(stdin);
    }
    let status = wait_bounded(&mut child, timeout)
        .unwrap_or_else(|| panic!("{command:?} did not finish within {timeout:?}"));
    Output {
        status,
        stdout: stdout.join(),
        stderr: stderr.join(),
    }
}

/// Runs `command` without input, killing it after `timeout`.
pub fn run(command: Command, timeout: Duration) -> Output {
    run_with_input(command, b"", timeout)
}

/// Collects a pipe on a thread so the child never blocks on a full pipe.
#[derive(Debug)]
pub struct Drained(thread::JoinHandle<String>);

impl Drained {
    /// Everything read until EOF.
    pub fn join(self) -> String {
        self.0.join().unwrap_or_default()
    }
}

/// Reads `pipe` to the end on a thread.
pub fn drain(mut pipe: impl Read + Send + 'static) -> Drained {
    Drained(thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    }))
}

/// Polls `child` until it exits or `timeout` passes; on timeout it is
/// killed and reaped, and `None` is returned.
pub fn wait_bounded(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                // After SIGKILL the exit is immediate; still bound the reap.
                let reap_deadline = Instant::now() + Duration::from_secs(5);
                while Instant::now() < reap_deadline {
                    if let Ok(Some(_)) = child.try_wait() {
                        break;
                    }
                    thread::sleep(Duration::from_millis(20));
                }
                return None;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The mapscope binary
// ---------------------------------------------------------------------------

/// The path of the `mapscope` binary cargo built for these tests.
pub fn mapscope_bin() -> &'static str {
    env!("CARGO_BIN_EXE_mapscope")
}

/// A `Command` for the `mapscope` binary, isolated from `MAPSCOPE_*`
/// variables of the environment running the tests.
pub fn mapscope_command() -> Command {
    let mut command = Command::new(mapscope_bin());
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("MAPSCOPE_") {
            command.env_remove(key);
        }
    }
    command.env("MAPSCOPE_LOG", "warn");
    command
}

/// A running `mapscope` server process (`demo` or `sidecar`), killed on
/// drop.
#[derive(Debug)]
pub struct MapscopeProcess {
    child: Child,
    /// `http://127.0.0.1:PORT/`, as printed by the process.
    pub url: String,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

/// The line the binary prints once its listener is bound.
pub const LISTENING: &str = "mapscope: http listening on ";

/// The line the binary prints once its ingest listener is bound.
pub const INGEST_LISTENING: &str = "mapscope: ingest listening on ";

/// Starts `mapscope` with `args` and waits (at most [`WAIT`]) for its
/// listening line. Pass `--listen 127.0.0.1:0` and, for `sidecar` and
/// `demo`, `--ingest-listen 127.0.0.1:0` too: the ingest listener's default
/// is a fixed port, which parallel tests (or a real sidecar) would share.
pub fn start_mapscope(args: &[&str]) -> MapscopeProcess {
    let mut child = mapscope_command()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {} {args:?}: {e}", mapscope_bin()));
    let stdout_lines = Arc::new(Mutex::new(Vec::new()));
    let stderr_lines = Arc::new(Mutex::new(Vec::new()));
    let (url_tx, url_rx) = mpsc::channel();
    follow_stdout(
        child.stdout.take().expect("piped stdout"),
        stdout_lines.clone(),
        url_tx,
    );
    follow_lines(
        child.stderr.take().expect("piped stderr"),
        stderr_lines.clone(),
    );
    let mut process = MapscopeProcess {
        child,
        url: String::new(),
        stdout: stdout_lines,
        stderr: stderr_lines,
    };
    match url_rx.recv_timeout(WAIT) {
        Ok(url) => process.url = url,
        Err(_) => {
            let status = process.child.try_wait().ok().flatten();
            let (out, err) = (process.stdout_text(), process.stderr_text());
            panic!(
                "mapscope {args:?} printed no {LISTENING:?} line within {WAIT:?} \
                 (status {status:?})\n--- stdout\n{out}\n--- stderr\n{err}"
            );
        }
    }
    process
}

fn follow_stdout(pipe: ChildStdout, lines: Arc<Mutex<Vec<String>>>, url: mpsc::Sender<String>) {
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix(LISTENING) {
                let _ = url.send(rest.trim().to_owned());
            }
            lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    });
}

fn follow_lines(pipe: impl Read + Send + 'static, lines: Arc<Mutex<Vec<String>>>) {
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    });
}

impl MapscopeProcess {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `url` joined with `path` (`path` without a leading `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.url, path.trim_start_matches('/'))
    }

    /// The ingest URL (`http://127.0.0.1:PORT/v1/report`) the process
    /// printed, waiting at most [`WAIT`] for it.
    pub fn ingest_url(&self) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let found = self
                .stdout
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .find_map(|line| {
                    line.strip_prefix(INGEST_LISTENING)
                        .map(|u| u.trim().to_owned())
                });
            if let Some(url) = found {
                return url;
            }
            assert!(
                Instant::now() < deadline,
                "no {INGEST_LISTENING:?} line within {WAIT:?}\n--- stdout\n{}",
                self.stdout_text()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Everything printed on stdout so far.
    pub fn stdout_text(&self) -> String {
        self.stdout
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    /// Everything printed on stderr so far.
    pub fn stderr_text(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    /// Sends SIGTERM with the `kill` program and waits at most `timeout`
    /// for the exit. `None` if it did not exit in time (it is then killed).
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status()
            .expect("run kill -TERM");
        assert!(sent.success(), "kill -TERM {} failed: {sent}", self.pid());
        wait_bounded(&mut self.child, timeout)
    }
}

impl Drop for MapscopeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = wait_bounded(&mut self.child, Duration::from_secs(5));
        }
    }
}

/// A loopback port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("local address").port();
    drop(listener);
    port
}

// ---------------------------------------------------------------------------
// Exposition format parser
// ---------------------------------------------------------------------------

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The series name (`_bucket`, `_sum`, `_count` included).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, if set.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.get(name).map(String::as_str)
    }
}

/// A parsed exposition: `# HELP` and `# TYPE` by family, and every sample
/// in order.
#[derive(Debug, Clone, Default)]
pub struct Exposition {
    /// Family name to help text.
    pub help: BTreeMap<String, String>,
    /// Family name to type (`gauge`, `counter`, ...).
    pub types: BTreeMap<String, String>,
    /// Every sample, in order.
    pub samples: Vec<Sample>,
}

impl Exposition {
    /// Samples named exactly `name`.
    pub fn series<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.samples.iter().filter(move |s| s.name == name)
    }

    /// Samples named `name` whose labels include every pair of `labels`,
    /// in exposition order.
    pub fn matching(&self, name: &str, labels: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(*v)))
            .collect()
    }

    /// The value of the one sample named `name` whose labels include
    /// `labels`; panics when there is none or several.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let found = self.matching(name, labels);
        match found.as_slice() {
            [one] => one.value,
            [] => panic!("no sample {name}{labels:?}"),
            many => panic!("{} samples match {name}{labels:?}: {many:?}", many.len()),
        }
    }

    /// The values of label `label` over the samples of `name`.
    pub fn label_values(&self, name: &str, label: &str) -> BTreeSet<String> {
        self.series(name)
            .filter_map(|s| s.label(label).map(str::to_owned))
            .collect()
    }
}

fn valid_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ if text
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E')) =>
        {
            text.parse().ok()
        }
        _ => None,
    }
}

/// The family a series belongs to, given the families declared so far.
fn family_of<'a>(name: &'a str, types: &BTreeMap<String, String>) -> &'a str {
    if types.contains_key(name) {
        return name;
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if types
                .get(base)
                .is_some_and(|t| t == "histogram" || t == "summary")
            {
                return base;
            }
        }
    }
    name
}

/// Parses `{a="1",b="2"}`, returning the labels and the rest of the line.
fn parse_labels(text: &str) -> Result<(BTreeMap<String, String>, &str), String> {
    let mut labels = BTreeMap::new();
    let mut rest = text
        .strip_prefix('{')
        .ok_or_else(|| "expected '{'".to_owned())?;
    loop {
        rest = rest.trim_start_matches(' ');
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let eq = rest
            .find('=')
            .ok_or_else(|| format!("label without '=' in {rest:?}"))?;
        let name = rest[..eq].trim();
        if !valid_label_name(name) {
            return Err(format!("invalid label name {name:?}"));
        }
        rest = rest[eq + 1..]
            .strip_prefix('"')
            .ok_or_else(|| format!("value of label {name:?} is not quoted"))?;
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                None => return Err(format!("unterminated value of label {name:?}")),
                Some((i, '"')) => break i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, '\\')) => value.push('\\'),
                    Some((_, '"')) => value.push('"'),
                    Some((_, 'n')) => value.push('\n'),
                    other => return Err(format!("invalid escape {other:?} in label {name:?}")),
                },
                Some((_, '\n')) => return Err(format!("raw newline in label {name:?}")),
                Some((_, c)) => value.push(c),
            }
        };
        if labels.insert(name.to_owned(), value).is_some() {
            return Err(format!("label {name:?} given twice"));
        }
        rest = &rest[end + 1..];
        rest = rest.trim_start_matches(' ');
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else if !rest.starts_with('}') {
            return Err(format!("expected ',' or '}}' after label {name:?}"));
        }
    }
}

/// Parses the text exposition format (version 0.0.4) strictly: every line
/// must be a `# HELP`, a `# TYPE`, another comment, blank, or a
/// well-formed sample; a family's `# TYPE` comes at most once and before
/// its samples; no series appears twice.
pub fn parse_exposition(text: &str) -> Result<Exposition, String> {
    let mut out = Exposition::default();
    let mut seen = BTreeSet::new();
    let mut sampled_families = BTreeSet::new();
    for (number, line) in text.lines().enumerate() {
        let at = |message: String| format!("line {}: {message}: {line:?}", number + 1);
        if line.trim().is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let comment = comment.trim_start();
            if let Some(rest) = comment.strip_prefix("HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                if !valid_metric_name(name) {
                    return Err(at(format!("invalid metric name {name:?}")));
                }
                if out.help.insert(name.to_owned(), help.to_owned()).is_some() {
                    return Err(at(format!("second # HELP for {name}")));
                }
            } else if let Some(rest) = comment.strip_prefix("TYPE ") {
                let (name, kind) = rest
                    .split_once(' ')
                    .ok_or_else(|| at("# TYPE without a type".into()))?;
                if !valid_metric_name(name) {
                    return Err(at(format!("invalid metric name {name:?}")));
                }
                if !matches!(
                    kind,
                    "counter" | "gauge" | "histogram" | "summary" | "untyped"
                ) {
                    return Err(at(format!("unknown type {kind:?}")));
                }
                if sampled_families.contains(name) {
                    return Err(at(format!("# TYPE for {name} after its samples")));
                }
                if out.types.insert(name.to_owned(), kind.to_owned()).is_some() {
                    return Err(at(format!("second # TYPE for {name}")));
                }
            }
            continue;
        }
        let name_end = line
            .find(['{', ' '])
            .ok_or_else(|| at("sample without a value".into()))?;
        let name = &line[..name_end];
        if !valid_metric_name(name) {
            return Err(at(format!("invalid metric name {name:?}")));
        }
        let (labels, rest) = if line[name_end..].starts_with('{') {
            parse_labels(&line[name_end..]).map_err(at)?
        } else {
            (BTreeMap::new(), &line[name_end..])
        };
        let rest = rest
            .strip_prefix(' ')
            .ok_or_else(|| at("expected a space before the value".into()))?;
        let mut fields = rest.split(' ');
        let value_text = fields.next().unwrap_or_default();
        let value =
            parse_value(value_text).ok_or_else(|| at(format!("invalid value {value_text:?}")))?;
        if let Some(timestamp) = fields.next() {
            if timestamp.parse::<i64>().is_err() {
                return Err(at(format!("invalid timestamp {timestamp:?}")));
            }
        }
        if fields.next().is_some() {
            return Err(at("trailing fields".into()));
        }
        let key = format!("{name}{labels:?}");
        if !seen.insert(key) {
            return Err(at("duplicate series".into()));
        }
        sampled_families.insert(family_of(name, &out.types).to_owned());
        out.samples.push(Sample {
            name: name.to_owned(),
            labels,
            value,
        });
    }
    Ok(out)
}
