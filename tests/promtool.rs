//! `promtool check metrics` over what mapscope serves: the exposition of a
//! running `mapscope demo`, of a sidecar with a map reported over the
//! ingest API (`source` label, ingest metrics), and the render of an
//! in-process registry that exercises labels, escaping, a growth in
//! progress, a dropped map and the `_overflow` cap.
//!
//! Needs `promtool` (Debian package `prometheus`). Without it the tests
//! print a loud SKIPPED line and pass, unless `MAPSCOPE_REQUIRE_E2E=1`.

// Drives the sidecar (its binary or its ingest endpoint): `--features sidecar`.
#![cfg(feature = "sidecar")]

mod common {
    pub(crate) mod client;
    pub(crate) mod e2e;
    pub(crate) mod exposition;
    pub(crate) mod process;
    pub(crate) mod programs;
    pub(crate) mod run;
    pub(crate) mod wait;
}

use std::process::Command;
use std::time::{Duration, Instant};

use common::client::get_text;
use common::exposition::parse_exposition;
use common::process::start_mapscope;
use common::programs::require_program;
use common::run::run_with_input;
use common::wait::WAIT;
use mapscope::export::prometheus::MapscopeCollector;
use mapscope::{InstrumentedMap, Registry};

const INSTALL_HINT: &str =
    "install Debian package prometheus (apt-get install prometheus) or a Prometheus release";

/// Runs `promtool check metrics` on `text` and fails on any finding.
fn assert_promtool_clean(promtool: &std::path::Path, text: &str) {
    let mut command = Command::new(promtool);
    command.args(["check", "metrics"]);
    let out = run_with_input(command, text.as_bytes(), Duration::from_secs(30));
    let findings: Vec<&str> = out
        .stdout
        .lines()
        .chain(out.stderr.lines())
        .filter(|line| !line.trim().is_empty())
        .collect();
    assert!(
        out.status.success() && findings.is_empty(),
        "promtool check metrics: {}\n--- findings\n{}\n--- exposition\n{text}",
        out.status,
        findings.join("\n")
    );
}

#[test]
fn demo_exposition_passes_promtool() {
    let Some(promtool) = require_program("promtool", INSTALL_HINT) else {
        return;
    };
    let demo = start_mapscope(&[
        "demo",
        "--listen",
        "127.0.0.1:0",
        "--ingest-listen",
        "127.0.0.1:0",
        "--tick",
        "5",
    ]);
    // Let the workload grow and evacuate: poll until a growth finished, for
    // at most WAIT.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the client");
    let deadline = Instant::now() + WAIT;
    let (text, parsed) = loop {
        let text = runtime.block_on(get_text(&demo.url("metrics")));
        let parsed = parse_exposition(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let grown = parsed
            .series("mapscope_growth_duration_seconds_count")
            .any(|s| s.value > 0.0);
        if grown || Instant::now() > deadline {
            break (text, parsed);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        parsed.series("mapscope_map_entries").count() >= 2,
        "the demo exports its maps: {text}"
    );
    assert!(
        parsed
            .series("mapscope_growth_duration_seconds_count")
            .any(|s| s.value > 0.0),
        "the demo's maps grew: {text}"
    );
    assert_promtool_clean(&promtool, &text);
}

#[test]
fn sidecar_exposition_with_reported_maps_passes_promtool() {
    let Some(promtool) = require_program("promtool", INSTALL_HINT) else {
        return;
    };
    let sidecar = start_mapscope(&[
        "sidecar",
        "--listen",
        "127.0.0.1:0",
        "--ingest-listen",
        "127.0.0.1:0",
    ]);
    let ingest = sidecar.ingest_url();
    let report = serde_json::json!({
        "source": {"app": "go-checkout", "instance": "pod-1", "language": "go"},
        "seq": 1,
        "maps": [{
            "name": "carts \"eu\"",
            "labels": {"tenant": "acme"},
            "stats": {
                "entries": 3072, "buckets": 512,
                "evacuation": {"kind": "double", "old_buckets": 256, "evacuated_old_buckets": 100}
            },
            "counters": {"growths": {"double": 9}, "inserts": 4000, "misuse": {"nil_map_write": 1}}
        }],
        "events": []
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the client");
    let text = runtime.block_on(async {
        let response = common::client::client()
            .post(&ingest)
            .json(&report)
            .send()
            .await
            .expect("POST /v1/report");
        assert_eq!(response.status(), 200, "{:?}", response.text().await);
        let response = common::client::client()
            .post(&ingest)
            .header("content-type", "application/json")
            .body("{")
            .send()
            .await
            .expect("POST /v1/report");
        assert_eq!(response.status(), 400);
        get_text(&sidecar.url("metrics")).await
    });
    assert!(text.contains("source=\"go-checkout\""), "{text}");
    assert!(text.contains("mapscope_ingest_rejected_total{"), "{text}");
    assert_promtool_clean(&promtool, &text);
}

#[test]
fn rich_registry_exposition_passes_promtool() {
    let Some(promtool) = require_program("promtool", INSTALL_HINT) else {
        return;
    };
    let registry = Registry::builder()
        .max_maps(3)
        .grace_period(Duration::from_secs(60))
        .build();
    let register = |name: &str, labels: &[(&str, &str)]| {
        labels
            .iter()
            .fold(InstrumentedMap::<u64, u64>::builder(name), |b, (k, v)| {
                b.label(*k, *v)
            })
            .register(&registry)
            .expect("valid, unique map")
    };
    let mut growing = register("growing", &[("tenant", "acme"), ("shard", "1")]);
    let mut next = 0u64;
    while growing.stats().growth.is_none_or(|g| g.old_buckets < 256) {
        growing.insert(next, next);
        next += 1;
    }
    growing.publish();
    let mut odd = register(r#"odd "name" \ here"#, &[("path", r"C:\tmp")]);
    for i in 0..100 {
        odd.insert(i, i);
    }
    odd.remove(&1);
    odd.insert(2, 3);
    odd.publish();
    let dropped = register("dropped", &[]);
    drop(dropped);
    let folded: Vec<_> = (0..3)
        .map(|i| {
            let mut map = register(&format!("folded_{i}"), &[("tenant", "x")]);
            map.insert(i, i);
            map.publish();
            map
        })
        .collect();
    let text = MapscopeCollector::new(registry).render();
    assert!(text.contains("map=\"_overflow\""), "{text}");
    assert!(text.contains("map=\"dropped\""), "{text}");
    assert_promtool_clean(&promtool, &text);
    drop(folded);
}

/// The widest label set the rules allow, on an in-process map and on a
/// reported one: the most labels, names that look reserved but are not
/// (`instance`, `job`, `quantile_x`, `le_`, `_`), 256-character values of
/// 4-byte characters with quotes and backslashes, and a 256-character map
/// name. promtool accepts it: no label the rules let through breaks the
/// text format for any metric type.
#[test]
fn the_widest_label_set_the_rules_allow_passes_promtool() {
    use mapscope::ingest::{Limits, Sources};
    use mapscope::registry::{MAX_LABELS, MAX_VALUE_CHARS};

    let Some(promtool) = require_program("promtool", INSTALL_HINT) else {
        return;
    };
    let names = [
        "instance",
        "job",
        "quantile_x",
        "le_",
        "_",
        "kind_",
        "source_x",
        "map_",
        "exported_instance",
        "code",
        "reason",
        "result",
        "name",
        "Le",
        "QUANTILE",
    ];
    let mut labels: Vec<(String, String)> = names
        .iter()
        .map(|n| {
            (
                n.to_string(),
                format!("\"\\{}", "🛒".repeat(MAX_VALUE_CHARS - 2)),
            )
        })
        .collect();
    labels.push(("x".repeat(200), "é".repeat(MAX_VALUE_CHARS)));
    assert_eq!(labels.len(), MAX_LABELS);
    let map_name = format!(
        "{}\"\\",
        "заказ"
            .repeat(50)
            .chars()
            .take(MAX_VALUE_CHARS - 2)
            .collect::<String>()
    );
    let registry = Registry::new();
    let mut local = labels
        .iter()
        .fold(
            InstrumentedMap::<u64, u64>::builder(map_name.as_str()),
            |b, (k, v)| b.label(k.as_str(), v.as_str()),
        )
        .register(&registry)
        .expect("the widest labels are valid");
    local.insert(1, 1);
    local.publish();
    let mut limits = Limits::default();
    limits.max_label_bytes_per_source = 1 << 20;
    let sources = Sources::new(&registry, limits);
    let label_object: serde_json::Map<String, serde_json::Value> = labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone().into()))
        .collect();
    let report = serde_json::json!({
        "source": {"app": "a".repeat(128), "instance": "ü".repeat(128)},
        "seq": 1,
        "maps": [{"name": map_name, "labels": label_object,
                  "stats": {"entries": 3, "buckets": 1,
                            "evacuation": {"kind": "double", "old_buckets": 1, "evacuated_old_buckets": 0}},
                  "counters": {"inserts": 3, "growths": {"double": 1},
                               "misuse": {"nil_map_write": 1, "concurrent_write": 1}}}],
    });
    sources
        .apply(serde_json::from_value(report).expect("a report"))
        .expect("the widest report is accepted");
    let text = MapscopeCollector::new(registry).render();
    assert!(
        text.contains("source_instance=\"üüü"),
        "the reported map is exposed"
    );
    assert_promtool_clean(&promtool, &text);
    drop(local);
}
