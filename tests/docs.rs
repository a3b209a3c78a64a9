//! `docs/metrics.md` cannot drift from the catalog: between its markers it
//! holds exactly `mapscope::export::catalog::markdown_table()`, and its
//! prose names every growth kind, misuse kind, process-wide and ingest
//! metric, and the histogram buckets.
//!
//! `docs/catalog.json` is the catalog in a form other tools read: every
//! metric's name, type, scope, labels and help, the labels of per-map
//! series, and the engine constants the deploy kit draws (the load factor).
//! `deploy/generate.py` builds every dashboard and alert query from it.
//!
//! After changing the catalog, regenerate both with
//! `MAPSCOPE_BLESS_DOCS=1 cargo test --test docs`.

use std::path::PathBuf;

use mapscope::export::catalog::{markdown_table, Scope, CATALOG, LOAD_FACTOR};
use mapscope::export::prometheus::{GROWTH_DURATION_BUCKETS, SOURCE_INSTANCE};
use mapscope::{GrowthKind, MisuseKind};
use serde_json::json;

const BEGIN: &str = "<!-- BEGIN GENERATED METRICS TABLE -->\n";
const END: &str = "<!-- END GENERATED METRICS TABLE -->";
const REGENERATE: &str = "regenerate it with `MAPSCOPE_BLESS_DOCS=1 cargo test --test docs`";

fn metrics_md() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/metrics.md")
}

fn blessing() -> bool {
    std::env::var("MAPSCOPE_BLESS_DOCS").is_ok_and(|v| v.trim() == "1")
}

/// The text of `docs/metrics.md`, and the byte range between the markers.
fn read() -> (String, std::ops::Range<usize>) {
    let path = metrics_md();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let start = text
        .find(BEGIN)
        .unwrap_or_else(|| panic!("{} has no line {BEGIN:?}", path.display()))
        + BEGIN.len();
    let end = start
        + text[start..]
            .find(END)
            .unwrap_or_else(|| panic!("{} has no {END:?} after the BEGIN marker", path.display()));
    (text, start..end)
}

#[test]
fn metrics_table_matches_the_catalog() {
    let (text, range) = read();
    let generated = markdown_table();
    if text[range.clone()] == generated {
        return;
    }
    if blessing() {
        let mut blessed = text.clone();
        blessed.replace_range(range, &generated);
        std::fs::write(metrics_md(), blessed).expect("write docs/metrics.md");
        eprintln!("docs/metrics.md: metrics table regenerated from the catalog");
        return;
    }
    panic!(
        "docs/metrics.md: the metrics table between the markers is not the one \
         src/export/catalog.rs generates; {REGENERATE}\n--- in docs/metrics.md\n{}\n--- generated\n{generated}",
        &text[range]
    );
}

#[test]
fn metrics_prose_names_every_kind_and_bucket() {
    let (text, range) = read();
    let prose = format!("{}{}", &text[..range.start], &text[range.end..]);
    for kind in GrowthKind::ALL {
        assert!(
            prose.contains(&format!("`{}`", kind.as_str())),
            "docs/metrics.md does not explain growth kind {kind}"
        );
    }
    for kind in MisuseKind::ALL {
        assert!(
            prose.contains(&format!("`{}`", kind.as_str())),
            "docs/metrics.md does not list misuse kind {kind}"
        );
    }
    let buckets: Vec<String> = GROWTH_DURATION_BUCKETS
        .iter()
        .map(|b| b.to_string())
        .collect();
    assert!(
        prose.contains(&format!("{} +Inf", buckets.join(" "))),
        "docs/metrics.md does not list GROWTH_DURATION_BUCKETS: {}",
        buckets.join(" ")
    );
    for def in CATALOG.iter().filter(|d| d.scope != Scope::Map) {
        assert!(
            prose.contains(&format!("`{}", def.name)),
            "docs/metrics.md does not explain {:?} metric {}",
            def.scope,
            def.name
        );
    }
}

/// `docs/catalog.json`: what `deploy/generate.py` may query.
fn catalog_json() -> String {
    let metrics: Vec<_> = CATALOG
        .iter()
        .map(|m| {
            json!({
                "name": m.name,
                "type": m.kind.as_str(),
                "scope": format!("{:?}", m.scope).to_lowercase(),
                "labels": m.labels,
                "help": m.help,
            })
        })
        .collect();
    let catalog = json!({
        "comment": "GENERATED from src/export/catalog.rs by tests/docs.rs; \
            regenerate with `MAPSCOPE_BLESS_DOCS=1 cargo test --test docs`.",
        "map_labels": ["map", "source", SOURCE_INSTANCE],
        "engine": { "load_factor": LOAD_FACTOR },
        "metrics": metrics,
    });
    // UNWRAP: a serde_json::Value always serialises.
    serde_json::to_string_pretty(&catalog).unwrap() + "\n"
}

#[test]
fn catalog_json_matches_the_catalog() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/catalog.json");
    let generated = catalog_json();
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    if current == generated {
        return;
    }
    if blessing() {
        std::fs::write(&path, &generated).expect("write docs/catalog.json");
        eprintln!("docs/catalog.json: regenerated from the catalog");
        return;
    }
    panic!(
        "docs/catalog.json is not what src/export/catalog.rs generates; {REGENERATE}\n\
         --- generated\n{generated}"
    );
}
