//! A real Prometheus process and a temporary directory, both cleaned up on
//! drop (panics included), and the Prometheus HTTP API.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::common::ports::closed_port;
use crate::common::wait::wait_bounded;
use crate::STARTUP;

/// A directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new() -> Self {
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
pub(crate) struct Prometheus {
    pub(crate) child: Child,
    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub(crate) base: String,
    /// Its stdout and stderr.
    pub(crate) log: PathBuf,
}

impl Prometheus {
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The last `lines` lines of its log.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Asks it to quit (`--web.enable-lifecycle`) and waits for the exit.
    pub(crate) fn quit(&mut self, client: &reqwest::blocking::Client) -> Option<ExitStatus> {
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

pub(crate) enum StartError {
    /// Another process took the port between our probe and its bind.
    PortTaken,
    Fatal(String),
}

/// Starts Prometheus on a free loopback port and waits until `/-/ready`.
pub(crate) fn start_prometheus(
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

pub(crate) fn wait_ready(
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

pub(crate) fn http_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .build()
        .expect("build the HTTP client")
}

/// GETs an API URL and returns its `data`, or why it could not.
pub(crate) fn api(client: &reqwest::blocking::Client, url: reqwest::Url) -> Result<Value, String> {
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

pub(crate) fn api_url(base: &str, path: &str, params: &[(&str, &str)]) -> reqwest::Url {
    reqwest::Url::parse_with_params(&format!("{base}{path}"), params)
        .unwrap_or_else(|e| panic!("URL {base}{path}: {e}"))
}

/// The result of an instant query: the series of a vector (or matrix), or
/// the one value of a scalar or string.
pub(crate) fn query(
    client: &reqwest::blocking::Client,
    base: &str,
    expr: &str,
) -> Result<Vec<Value>, String> {
    let data = api(client, api_url(base, "/api/v1/query", &[("query", expr)]))?;
    match data["resultType"].as_str() {
        Some("vector" | "matrix") => Ok(data["result"].as_array().cloned().unwrap_or_default()),
        Some(_) => Ok(vec![data["result"].clone()]),
        None => Err(format!("query {expr}: no resultType in {data}")),
    }
}

/// Grafana's `label_values(selector, label)`, through the label values API
/// as Grafana runs it.
pub(crate) fn label_values(
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
