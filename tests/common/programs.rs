//! External programs (promtool, prometheus, go, ...): finding them with a
//! loud skip unless `MAPSCOPE_REQUIRE_E2E=1`, and running them with a
//! deadline and their output collected.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::thread;
use std::time::Duration;

use super::wait::wait_bounded;

/// Whether end-to-end prerequisites are mandatory (CI sets
/// `MAPSCOPE_REQUIRE_E2E=1` so a missing tool fails instead of skipping).
pub(crate) fn e2e_required() -> bool {
    std::env::var("MAPSCOPE_REQUIRE_E2E").is_ok_and(|v| v.trim() == "1")
}

/// The path of `name` on `PATH`. When it is missing, prints a loud
/// `SKIPPED` line naming `install_hint` and returns `None`, or panics if
/// `MAPSCOPE_REQUIRE_E2E=1`.
pub(crate) fn require_program(name: &str, install_hint: &str) -> Option<PathBuf> {
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
