//! Running a child process with a deadline, its input fed and its output
//! collected on threads (so it never blocks on a full pipe).

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::Duration;

use super::wait::wait_bounded;

/// What a finished child process did.
#[derive(Debug)]
pub(crate) struct Output {
    /// Its exit status.
    pub(crate) status: ExitStatus,
    /// Everything it wrote to stdout.
    pub(crate) stdout: String,
    /// Everything it wrote to stderr.
    pub(crate) stderr: String,
}

/// Runs `command` with `stdin` as its input, killing it after `timeout`.
pub(crate) fn run_with_input(mut command: Command, stdin: &[u8], timeout: Duration) -> Output {
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
#[allow(dead_code, reason = "tests/promtool always feeds input")]
pub(crate) fn run(command: Command, timeout: Duration) -> Output {
    run_with_input(command, b"", timeout)
}

/// Collects a pipe on a thread so the child never blocks on a full pipe.
#[derive(Debug)]
pub(crate) struct Drained(thread::JoinHandle<String>);

impl Drained {
    /// Everything read until EOF.
    pub(crate) fn join(self) -> String {
        self.0.join().unwrap_or_default()
    }
}

/// Reads `pipe` to the end on a thread.
pub(crate) fn drain(mut pipe: impl Read + Send + 'static) -> Drained {
    Drained(thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    }))
}
