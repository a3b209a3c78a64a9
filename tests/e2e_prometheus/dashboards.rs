//! The Grafana dashboards: their variables and panel queries, the
//! variables resolved and substituted as Grafana would, and the panel
//! queries run against Prometheus.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use crate::prometheus::{label_values, query};
use crate::{Progress, DEMO_MAPS, NAMESPACE, POD, RANGE, RATE_INTERVAL};

/// A query variable of a dashboard.
#[derive(Debug)]
pub(crate) struct Variable {
    pub(crate) name: String,
    pub(crate) definition: String,
    /// `Some(allValue)` for multi-value variables with "All" (the test
    /// selects All); `None` for single-value ones (the test tries each
    /// value).
    pub(crate) all_value: Option<String>,
}

/// One panel target.
#[derive(Debug)]
pub(crate) struct PanelQuery {
    pub(crate) dashboard: String,
    pub(crate) panel_id: u64,
    pub(crate) panel: String,
    pub(crate) ref_id: String,
    pub(crate) expr: String,
}

impl PanelQuery {
    pub(crate) fn describe(&self) -> String {
        format!(
            "{} / panel {} {:?} / {}: {}",
            self.dashboard, self.panel_id, self.panel, self.ref_id, self.expr
        )
    }
}

#[derive(Debug)]
pub(crate) struct Dashboard {
    pub(crate) file: String,
    pub(crate) variables: Vec<Variable>,
    pub(crate) queries: Vec<PanelQuery>,
}

pub(crate) fn load_dashboards() -> Vec<Dashboard> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir:?}: {e}"))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no dashboards in {dir:?}");
    files
        .iter()
        .map(|path| {
            let file = path
                .file_name()
                .expect("a file name")
                .to_string_lossy()
                .into_owned();
            let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
            let json: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"));
            let variables = json["templating"]["list"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|v| v["type"] == "query")
                .map(|v| Variable {
                    name: v["name"].as_str().expect("variable name").to_owned(),
                    definition: v["definition"]
                        .as_str()
                        .expect("variable definition")
                        .to_owned(),
                    all_value: (v["includeAll"] == true).then(|| {
                        v["allValue"]
                            .as_str()
                            .expect("an includeAll variable has an allValue")
                            .to_owned()
                    }),
                })
                .collect();
            let mut panels = Vec::new();
            for panel in json["panels"].as_array().expect("panels") {
                panels.push(panel);
                panels.extend(panel["panels"].as_array().into_iter().flatten());
            }
            let queries = panels
                .into_iter()
                .flat_map(|panel| {
                    let title = panel["title"].as_str().unwrap_or_default().to_owned();
                    let panel_id = panel["id"].as_u64().unwrap_or_default();
                    let file = file.clone();
                    panel["targets"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(move |t| PanelQuery {
                            dashboard: file.clone(),
                            panel_id,
                            panel: title.clone(),
                            ref_id: t["refId"].as_str().unwrap_or_default().to_owned(),
                            expr: t["expr"].as_str().unwrap_or_default().to_owned(),
                        })
                })
                .collect();
            Dashboard {
                file,
                variables,
                queries,
            }
        })
        .collect()
}

/// `expr` with Grafana's built-in and the dashboard's variables replaced.
pub(crate) fn substitute(expr: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = expr
        .replace("$__rate_interval", RATE_INTERVAL)
        .replace("${__rate_interval}", RATE_INTERVAL)
        .replace("$__range", RANGE)
        .replace("${__range}", RANGE);
    // Longest names first, so `$map` cannot eat the start of `$mapping`.
    let mut names: Vec<&String> = values.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    for name in names {
        out = out
            .replace(&format!("${{{name}}}"), &values[name])
            .replace(&format!("${name}"), &values[name]);
    }
    assert!(
        !out.contains('$'),
        "a variable the test does not know in {expr:?} (after substitution: {out:?})"
    );
    out
}

/// Every combination of variable values to try for `expr`: multi-value
/// variables are All; a single-value variable the expression uses takes
/// each of its values in turn.
pub(crate) fn combinations(
    expr: &str,
    variables: &[Variable],
    resolved: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<BTreeMap<String, String>> {
    let mut combos = vec![BTreeMap::new()];
    for variable in variables {
        let choices: Vec<String> = match &variable.all_value {
            Some(all) => vec![all.clone()],
            None if expr.contains(&format!("${}", variable.name))
                || expr.contains(&format!("${{{}}}", variable.name)) =>
            {
                resolved
                    .get(&variable.name)
                    .map(|v| v.iter().cloned().collect())
                    .unwrap_or_default()
            }
            // Not used by this expression: any value will do.
            None => vec![resolved
                .get(&variable.name)
                .and_then(|v| v.iter().next().cloned())
                .unwrap_or_default()],
        };
        combos = combos
            .into_iter()
            .flat_map(|combo| {
                choices.iter().map(move |choice| {
                    let mut combo = combo.clone();
                    combo.insert(variable.name.clone(), choice.clone());
                    combo
                })
            })
            .collect();
    }
    combos
}

/// Resolves a dashboard's variables in order, each chained on the previous
/// ones as Grafana does.
pub(crate) fn resolve_variables(
    client: &reqwest::blocking::Client,
    base: &str,
    dashboard: &Dashboard,
) -> Result<BTreeMap<String, BTreeSet<String>>, String> {
    let mut resolved = BTreeMap::new();
    let mut selected = BTreeMap::new();
    for variable in &dashboard.variables {
        let definition = substitute(&variable.definition, &selected);
        let values = label_values(client, base, &definition)?;
        if values.is_empty() {
            return Err(format!(
                "{}: variable {} ({definition}) has no values",
                dashboard.file, variable.name
            ));
        }
        let choice = variable
            .all_value
            .clone()
            .unwrap_or_else(|| values.iter().next().cloned().unwrap_or_default());
        selected.insert(variable.name.clone(), choice);
        resolved.insert(variable.name.clone(), values);
    }
    Ok(resolved)
}

/// What a dashboard's variables must offer with the demo behind them.
pub(crate) fn check_variables(resolved: &BTreeMap<String, BTreeSet<String>>) -> Result<(), String> {
    let get = |name: &str| resolved.get(name).cloned().unwrap_or_default();
    let mut problems = Vec::new();
    if get("namespace") != BTreeSet::from([NAMESPACE.to_owned()]) {
        problems.push(format!("namespace = {:?}", get("namespace")));
    }
    if get("pod") != BTreeSet::from([POD.to_owned()]) {
        problems.push(format!("pod = {:?}", get("pod")));
    }
    if !get("source").contains("go-checkout") {
        problems.push(format!("source = {:?} (no go-checkout)", get("source")));
    }
    let maps = get("map");
    let missing: Vec<&str> = DEMO_MAPS
        .iter()
        .copied()
        .filter(|m| !maps.contains(*m))
        .collect();
    if !missing.is_empty() {
        problems.push(format!("map = {maps:?} (missing {missing:?})"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Runs every panel query that has not returned data yet.
pub(crate) fn check_panels(
    client: &reqwest::blocking::Client,
    base: &str,
    dashboards: &[Dashboard],
    progress: &mut Progress,
    elapsed: Duration,
) {
    for dashboard in dashboards {
        let Some(resolved) = progress.variables.get(&dashboard.file).cloned() else {
            continue;
        };
        for panel in &dashboard.queries {
            let key = panel.describe();
            if progress.panels_ok.contains_key(&key) {
                continue;
            }
            let mut with_data = Vec::new();
            for combo in combinations(&panel.expr, &dashboard.variables, &resolved) {
                let expr = substitute(&panel.expr, &combo);
                match query(client, base, &expr) {
                    Ok(result) if !result.is_empty() => {
                        let single: Vec<String> = dashboard
                            .variables
                            .iter()
                            .filter(|v| v.all_value.is_none())
                            .filter(|v| panel.expr.contains(&format!("${}", v.name)))
                            .map(|v| format!("{}={}", v.name, combo[&v.name]))
                            .collect();
                        with_data.push(single.join(","));
                    }
                    Ok(_) => {}
                    Err(error) => {
                        progress.panel_errors.insert(key.clone(), error);
                    }
                }
            }
            if !with_data.is_empty() {
                progress.panel_errors.remove(&key);
                progress.panels_ok.insert(key, (elapsed, with_data));
            }
        }
    }
}
