//! The real `mapscope` binary as a child process: started with its
//! listening lines read, killed on drop.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::wait::{wait_bounded, WAIT};

/// The path of the `mapscope` binary cargo built for these tests.
pub(crate) fn mapscope_bin() -> &'static str {
    env!("CARGO_BIN_EXE_mapscope")
}

/// A `Command` for the `mapscope` binary, isolated from `MAPSCOPE_*`
/// variables of the environment running the tests.
pub(crate) fn mapscope_command() -> Command {
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
pub(crate) struct MapscopeProcess {
    child: Child,
    /// `http://127.0.0.1:PORT/`, as printed by the process.
    pub(crate) url: String,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

/// The line the binary prints once its listener is bound.
const LISTENING: &str = "mapscope: http listening on ";

/// The line the binary prints once its ingest listener is bound.
const INGEST_LISTENING: &str = "mapscope: ingest listening on ";

/// Starts `mapscope` with `args` and waits (at most [`WAIT`]) for its
/// listening line. Pass `--listen 127.0.0.1:0` and, for `sidecar` and
/// `demo`, `--ingest-listen 127.0.0.1:0` too: the ingest listener's default
/// is a fixed port, which parallel tests (or a real sidecar) would share.
pub(crate) fn start_mapscope(args: &[&str]) -> MapscopeProcess {
    try_start_mapscope(args).unwrap_or_else(|error| panic!("{error}"))
}

/// Like [`start_mapscope`], but `Err` with the process's output when it
/// exits first (a port is taken, say) or prints no listening line within
/// [`WAIT`]; the process is then killed.
pub(crate) fn try_start_mapscope(args: &[&str]) -> Result<MapscopeProcess, String> {
    let mut child = mapscope_command()
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn {} {args:?}: {e}", mapscope_bin()))?;
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
    let deadline = Instant::now() + WAIT;
    loop {
        match url_rx.recv_timeout(Duration::from_millis(50)) {
            Ok(url) => {
                process.url = url;
                return Ok(process);
            }
            Err(_) => {
                let status = process.child.try_wait().ok().flatten();
                if status.is_some() || Instant::now() > deadline {
                    let _ = process.child.kill();
                    let _ = wait_bounded(&mut process.child, Duration::from_secs(5));
                    // The reader threads see EOF once the process is gone.
                    thread::sleep(Duration::from_millis(50));
                    let (out, err) = (process.stdout_text(), process.stderr_text());
                    return Err(format!(
                        "mapscope {args:?} printed no {LISTENING:?} line within {WAIT:?} \
                         (status {status:?})\n--- stdout\n{out}\n--- stderr\n{err}"
                    ));
                }
            }
        }
    }
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
    #[allow(
        dead_code,
        reason = "only the tests that watch the process (its RSS, its signals) ask for its pid"
    )]
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `url` joined with `path` (`path` without a leading `/`).
    #[allow(
        dead_code,
        reason = "tests that build URLs from `url` themselves do not call it"
    )]
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{}", self.url, path.trim_start_matches('/'))
    }

    /// The ingest URL (`http://127.0.0.1:PORT/v1/report`) the process
    /// printed, waiting at most [`WAIT`] for it.
    pub(crate) fn ingest_url(&self) -> String {
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
    pub(crate) fn stdout_text(&self) -> String {
        self.stdout
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    /// Everything printed on stderr so far.
    pub(crate) fn stderr_text(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    /// Kills the process (SIGKILL: no goodbye) and reaps it.
    #[allow(
        dead_code,
        reason = "only the restart and outage tests kill the process"
    )]
    pub(crate) fn kill(mut self) {
        let _ = self.child.kill();
        assert!(
            wait_bounded(&mut self.child, Duration::from_secs(5)).is_some(),
            "the killed mapscope was not reaped"
        );
    }

    /// Sends SIGTERM with the `kill` program and waits at most `timeout`
    /// for the exit. `None` if it did not exit in time (it is then killed).
    #[allow(dead_code, reason = "only the shutdown tests send SIGTERM")]
    pub(crate) fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
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
        if thread::panicking() {
            eprintln!("--- mapscope stderr\n{}", self.stderr_text());
        }
    }
}
