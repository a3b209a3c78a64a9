//! The alert rules: the test copy written by `deploy/generate.py
//! --rules-for`, the rules API (every rule loaded and evaluated without an
//! error) and the alerts API (which alerts fire, on what, with annotations
//! expanded).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::run::run;
use crate::prometheus::{api, api_url};
use crate::{Progress, GO_APP, GO_CRASH_APP, RULES_FOR};

/// Writes the test copy of the rules with `deploy/generate.py --rules-for`.
pub(crate) fn write_rules(python: &Path, out: &Path) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut command = Command::new(python);
    command
        .current_dir(root)
        .arg(root.join("deploy/generate.py"))
        .args(["--rules-for", RULES_FOR, "--out"])
        .arg(out);
    let output = run(command, Duration::from_secs(60));
    assert!(
        output.status.success(),
        "deploy/generate.py --rules-for {RULES_FOR}: {}\n{}{}",
        output.status,
        output.stdout,
        output.stderr
    );
}

/// The alert names a rules file declares.
pub(crate) fn declared_alerts(rules: &str) -> BTreeSet<String> {
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|n| n.trim().to_owned())
        .collect()
}

/// Checks the rules API: every declared alert loaded, with the test's
/// `for:`, and evaluated without an error.
pub(crate) fn check_rules(
    client: &reqwest::blocking::Client,
    base: &str,
    declared: &BTreeSet<String>,
) -> Result<(), String> {
    let data = api(client, api_url(base, "/api/v1/rules", &[]))?;
    let rules_for_seconds: f64 = RULES_FOR
        .strip_suffix('s')
        .and_then(|s| s.parse().ok())
        .expect("RULES_FOR is a number of seconds");
    let mut loaded = BTreeSet::new();
    let mut problems = Vec::new();
    for group in data["groups"].as_array().into_iter().flatten() {
        for rule in group["rules"].as_array().into_iter().flatten() {
            let name = rule["name"].as_str().unwrap_or_default().to_owned();
            match rule["health"].as_str() {
                Some("ok") => {}
                health => problems.push(format!(
                    "{name}: health {health:?}, last error {}",
                    rule["lastError"]
                )),
            }
            if rule["type"] == "alerting" && rule["duration"].as_f64() != Some(rules_for_seconds) {
                problems.push(format!(
                    "{name}: for {} s, expected {RULES_FOR}",
                    rule["duration"]
                ));
            }
            loaded.insert(name);
        }
    }
    if &loaded != declared {
        problems.push(format!("loaded {loaded:?}, the file declares {declared:?}"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Records firing alerts (and pending ones' names) from the alerts API.
pub(crate) fn check_alerts(
    client: &reqwest::blocking::Client,
    base: &str,
    progress: &mut Progress,
    elapsed: Duration,
) -> Result<(), String> {
    let data = api(client, api_url(base, "/api/v1/alerts", &[]))?;
    for alert in data["alerts"].as_array().into_iter().flatten() {
        let labels = &alert["labels"];
        let name = labels["alertname"].as_str().unwrap_or_default().to_owned();
        let state = alert["state"].as_str().unwrap_or_default().to_owned();
        progress
            .seen_states
            .entry(name.clone())
            .or_default()
            .insert(state.clone());
        if state != "firing" {
            continue;
        }
        if labels["map"] == "orders" {
            progress.violations.insert(format!(
                "{name} fired for the healthy baseline map orders: {labels}"
            ));
        }
        if labels["severity"].as_str().is_none_or(str::is_empty) {
            progress
                .violations
                .insert(format!("{name} fired without a severity: {labels}"));
        }
        if name == "MapscopeMapMisuse"
            && (labels["map"] != "carts" || labels["source"] != "go-checkout")
            && labels["source"] != GO_APP
            && labels["source"] != GO_CRASH_APP
        {
            progress.violations.insert(format!(
                "{name} fired for something else than the simulated Go client's carts \
                 or the real Go program: {labels}"
            ));
        }
        let annotations = &alert["annotations"];
        for key in ["summary", "description", "runbook_url"] {
            let text = annotations[key].as_str().unwrap_or_default();
            if text.is_empty()
                || text.contains("<no value>")
                || text.contains("error expanding template")
            {
                progress.violations.insert(format!(
                    "{name}: annotation {key} is {text:?} (labels {labels})"
                ));
            }
        }
        let anchor = format!("#{}", name.to_lowercase());
        if !annotations["runbook_url"]
            .as_str()
            .unwrap_or_default()
            .ends_with(&anchor)
        {
            progress.violations.insert(format!(
                "{name}: runbook_url {} does not end with {anchor}",
                annotations["runbook_url"]
            ));
        }
        for key in ["map", "kind", "source"] {
            if let Some(value) = labels[key].as_str() {
                progress
                    .fired
                    .entry((name.clone(), key.to_owned(), value.to_owned()))
                    .or_insert(elapsed);
            }
        }
    }
    Ok(())
}
