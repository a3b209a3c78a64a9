//! Kubernetes manifests (`deploy/base`, `deploy/overlays`) and the
//! Dockerfile: they build, validate, and agree with `src/cli.rs`.

use super::common::programs::require_program;
use super::{read, run, run_ok, PIP_HINT};

/// `kubectl kustomize dir`, then `kubernetes-validate --strict` on it,
/// tolerating only the missing schemas of the Prometheus Operator's CRDs.
fn kustomize_and_validate(dir: &str) -> Option<String> {
    let kubectl = require_program("kubectl", "install kubectl (it embeds kustomize)")?;
    let built = run_ok(&kubectl, &["kustomize", dir], None);
    let validate = require_program("kubernetes-validate", PIP_HINT)?;
    let out = run(&validate, &["--strict", "-"], Some(built.as_bytes()));
    let report = format!("{}{}", out.stdout, out.stderr);
    assert!(
        out.status.success(),
        "kubernetes-validate --strict on {dir}:\n{report}"
    );
    let crd_warning = |line: &str| {
        ["PodMonitor", "PrometheusRule"].iter().any(|kind| {
            line.contains(&format!(
                "Couldn't find schema for kind {kind} with api version monitoring.coreos.com/v1"
            ))
        })
    };
    let mut passed = 0;
    for line in report.lines().filter(|l| !l.trim().is_empty()) {
        if line.starts_with("INFO") && line.contains(" passed for resource ") {
            passed += 1;
        } else {
            assert!(
                line.starts_with("WARN") && crd_warning(line),
                "kubernetes-validate --strict on {dir}: only the Prometheus Operator CRDs may lack a schema:\n{line}\n--- full report\n{report}"
            );
        }
    }
    let crds = built
        .matches("apiVersion: monitoring.coreos.com/v1")
        .count();
    let documents = built.matches("\nkind: ").count() + usize::from(built.starts_with("kind: "));
    assert_eq!(
        passed + crds,
        documents,
        "{dir}: every built-in resource validated\n{report}"
    );
    Some(built)
}

#[test]
fn kustomize_base_builds_and_validates() {
    let Some(built) = kustomize_and_validate("deploy/base") else {
        return;
    };
    for needle in [
        "kind: PodMonitor",
        "kind: PrometheusRule",
        "kind: NetworkPolicy",
        "restartPolicy: Always",
        "image: ghcr.io/mapscope/mapscope:0.1.0",
        "path: /readyz",
        "path: /healthz",
        "readOnlyRootFilesystem: true",
        "value: http://127.0.0.1:9848/v1/report",
    ] {
        assert!(
            built.contains(needle),
            "deploy/base lacks {needle:?}:\n{built}"
        );
    }
    assert!(!built.contains("prometheus.io/scrape"), "{built}");
    for exposed in ["containerPort: 9848", "port: 9848"] {
        assert!(
            !built.contains(exposed),
            "nothing may expose 9848:\n{built}"
        );
    }
}

#[test]
fn kustomize_plain_prometheus_overlay_builds_and_validates() {
    let Some(built) = kustomize_and_validate("deploy/overlays/plain-prometheus") else {
        return;
    };
    assert!(
        !built.contains("monitoring.coreos.com"),
        "no Operator CRDs:\n{built}"
    );
    for needle in [
        "prometheus.io/scrape: \"true\"",
        "prometheus.io/port: \"9847\"",
        "prometheus.io/path: /metrics",
        "name: mapscope-rules",
        "mapscope-rules.yml: |",
        "alert: MapscopeSourceDown",
    ] {
        assert!(
            built.contains(needle),
            "the overlay lacks {needle:?}:\n{built}"
        );
    }
}

/// The default of `flag` as `mapscope sidecar --help` states it.
fn cli_default(flag: &str) -> String {
    let help = run_ok(
        std::path::Path::new(env!("CARGO_BIN_EXE_mapscope")),
        &["sidecar", "--help"],
        None,
    );
    let start = help
        .find(&format!("{flag} <"))
        .unwrap_or_else(|| panic!("`mapscope sidecar --help` has no {flag}:\n{help}"));
    let rest = &help[start..];
    let end = rest.find("\n\n").unwrap_or(rest.len());
    let default = rest[..end]
        .split("[default: ")
        .nth(1)
        .and_then(|d| d.split(']').next())
        .unwrap_or_else(|| panic!("{flag} states no default:\n{}", &rest[..end]));
    default.to_owned()
}

/// The manifests agree with the binary's defaults.
#[test]
fn manifests_match_the_cli() {
    let listen = cli_default("--listen");
    let ingest_listen = cli_default("--ingest-listen");
    let config = read("deploy/base/configmap.yaml");
    assert!(
        config.contains(&format!("MAPSCOPE_LISTEN: \"{listen}\"")),
        "{config}"
    );
    assert!(
        config.contains(&format!("MAPSCOPE_INGEST_LISTEN: \"{ingest_listen}\"")),
        "{config}"
    );
    let deployment = read("deploy/base/deployment.yaml");
    let ingest = format!("http://{ingest_listen}/v1/report");
    assert!(
        deployment.contains(&format!("value: {ingest}")),
        "MAPSCOPE_ENDPOINT is {ingest}"
    );
    // The crash directory: one emptyDir, mounted at the same path into the
    // application and the sidecar, and named to both by MAPSCOPE_CRASH_DIR.
    let crash_dir = "/var/run/mapscope/crashes";
    for (needle, times) in [
        ("- name: MAPSCOPE_CRASH_DIR".to_owned(), 2),
        (format!("value: {crash_dir}"), 2),
        (format!("mountPath: {crash_dir}"), 2),
        ("- name: mapscope-crashes".to_owned(), 3),
    ] {
        assert_eq!(
            deployment.matches(&needle).count(),
            times,
            "deploy/base/deployment.yaml: {needle:?} (the shared crash directory)"
        );
    }
    let policy = read("deploy/base/networkpolicy.yaml");
    assert!(
        policy.contains("port: 9847") && !policy.contains("port: 9848"),
        "{policy}"
    );
    assert!(
        policy.contains("kubernetes.io/metadata.name: monitoring"),
        "{policy}"
    );
}

#[test]
fn dockerfile_matches_the_cli_and_its_build_check() {
    let dockerfile = read("Dockerfile");
    let build = "cargo build --release --locked --features sidecar --bin mapscope";
    assert!(dockerfile.contains(build), "Dockerfile must run {build}");
    let script = read("deploy/check-dockerfile-build.sh");
    assert!(
        script.contains(&format!("build_cmd='{build}'")),
        "check script runs {build}"
    );
    for line in [
        "USER 65532:65532",
        "EXPOSE 9847",
        "ENTRYPOINT [\"/usr/local/bin/mapscope\"]",
        "CMD [\"sidecar\"]",
        "ENV MAPSCOPE_LISTEN=0.0.0.0:9847 \\",
        "FROM gcr.io/distroless/cc-debian12:nonroot",
        "    CMD [\"/usr/local/bin/mapscope\", \"healthcheck\", \"--url\", \"http://127.0.0.1:9847/healthz\"]",
    ] {
        assert!(dockerfile.lines().any(|l| l == line), "Dockerfile lacks the line {line:?}");
    }
    assert_eq!(cli_default("--listen"), "0.0.0.0:9847");
    for label in ["title", "description", "source", "licenses", "version"] {
        assert!(
            dockerfile.contains(&format!("org.opencontainers.image.{label}=")),
            "Dockerfile lacks the OCI label {label}"
        );
    }
    let from_rust = dockerfile
        .lines()
        .find(|l| l.starts_with("FROM rust:"))
        .expect("a rust build stage");
    assert!(
        !from_rust.contains("latest"),
        "pin the rust image: {from_rust}"
    );
}

#[test]
fn dockerfile_passes_hadolint() {
    let Some(hadolint) = require_program("hadolint", PIP_HINT) else {
        return;
    };
    let out = run_ok(&hadolint, &["Dockerfile"], None);
    assert!(out.trim().is_empty(), "hadolint findings:\n{out}");
}
