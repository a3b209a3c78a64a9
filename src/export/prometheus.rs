//! Prometheus exposition: a `prometheus` crate `Collector` that reads
//! snapshots at scrape time (nothing is pushed per map operation), and the
//! text rendering `/metrics` serves.

use std::collections::HashMap;
use std::fmt;
use std::time::UNIX_EPOCH;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType as ProtoType,
};

use super::catalog::{self, MetricDef, MetricType, Scope, CATALOG};
use crate::detect::MisuseKind;
use crate::map::GrowthKind;
use crate::registry::{MapSnapshot, Registry, RegistrySnapshot};

/// The label of a reported map's process (the `instance` of protocol v1's
/// `source`). Not `instance`: Prometheus sets that label on every series of
/// the scrape target (the sidecar), and a series label of that name would be
/// renamed `exported_instance` or overwrite it, depending on
/// `honor_labels`.
pub const SOURCE_INSTANCE: &str = "source_instance";

/// The `Content-Type` of the text exposition format. Prometheus 3 fails a
/// scrape without an explicit version.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub use crate::registry::GROWTH_DURATION_BUCKETS;

/// The crate version, for `mapscope_build_info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The source revision, for `mapscope_build_info`: `MAPSCOPE_REVISION` at
/// build time, or `unknown`.
pub const REVISION: &str = match option_env!("MAPSCOPE_REVISION") {
    Some(revision) => revision,
    None => "unknown",
};

/// Reads every map of its registry at scrape time (one
/// [`Registry::snapshot`]) and turns them into the metric families of
/// [`catalog::CATALOG`].
///
/// Register it in your own `prometheus::Registry`, or render with
/// [`MapscopeCollector::render`]:
///
/// ```
/// use mapscope::export::prometheus::MapscopeCollector;
///
/// let registry = mapscope::Registry::new();
/// let mut map = mapscope::InstrumentedMap::builder("orders").register(&registry).unwrap();
/// map.insert(1u32, 2u32);
/// map.publish();
///
/// let collector = MapscopeCollector::new(registry);
/// let text = collector.render();
/// assert!(text.contains("mapscope_map_entries{map=\"orders\"} 1"));
///
/// // Or inside an application's own prometheus registry:
/// let prom = prometheus::Registry::new();
/// prom.register(Box::new(collector)).unwrap();
/// assert!(!prom.gather().is_empty());
/// ```
pub struct MapscopeCollector {
    registry: Registry,
    descs: Vec<Desc>,
}

impl fmt::Debug for MapscopeCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapscopeCollector")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

impl MapscopeCollector {
    /// A collector over a registry (in the sidecar, its in-process maps
    /// and the maps clients report are rows of the same registry).
    pub fn new(registry: Registry) -> Self {
        let descs = CATALOG
            .iter()
            .map(|m| {
                let mut labels: Vec<String> = match m.scope {
                    Scope::Map => vec!["map".into()],
                    Scope::Process | Scope::Ingest => vec![],
                };
                labels.extend(m.labels.iter().map(|l| l.to_string()));
                // UNWRAP: catalog names, help and labels are valid; a unit test renders them all.
                Desc::new(m.name.into(), m.help.into(), labels, HashMap::new())
                    .expect("catalog metric declarations are valid")
            })
            .collect();
        MapscopeCollector { registry, descs }
    }

    /// Renders the text exposition format straight from a snapshot (the
    /// same samples [`Collector::collect`] gives, without building protobuf
    /// structures). Blocking work: in async code run it on a blocking
    /// thread (the HTTP router does).
    pub fn render(&self) -> String {
        write_text(&self.registry.snapshot())
    }
}

/// A sample's labels: a map's identity plus at most one extra label, or a
/// process-wide series' own labels.
enum Labels<'a> {
    Map(&'a MapSnapshot, Option<(&'static str, &'static str)>),
    Plain(Vec<(&'static str, String)>),
}

impl Labels<'_> {
    fn for_each(&self, mut f: impl FnMut(&str, &str)) {
        match self {
            Labels::Map(map, extra) => {
                f("map", &map.id.name);
                if let Some(source) = &map.id.source {
                    f("source", source);
                }
                if let Some(instance) = &map.id.instance {
                    f(SOURCE_INSTANCE, instance);
                }
                for (name, value) in map.id.labels.iter() {
                    f(name, value);
                }
                if let Some((name, value)) = extra {
                    f(name, value);
                }
            }
            Labels::Plain(labels) => labels.iter().for_each(|(n, v)| f(n, v)),
        }
    }
}

/// The misuse kinds a map gets series for: detector kinds always, client
/// kinds for maps reported by clients or once they have a count. A
/// misuse-only row (a crash of a map no report describes) runs no
/// detectors: it gets the client kinds only.
fn kinds_for(map: &MapSnapshot) -> impl Iterator<Item = MisuseKind> + '_ {
    MisuseKind::ALL.into_iter().filter(move |kind| {
        if map.misuse_only {
            return kind.is_error();
        }
        !kind.is_error() || map.id.source.is_some() || map.misuse_count(*kind) > 0
    })
}

/// Every sample of one non-histogram metric, in exposition order. The one
/// place values are read from snapshots: the collector and the text writer
/// both walk it.
fn samples<'a>(
    def: &MetricDef,
    snapshot: &'a RegistrySnapshot,
    emit: &mut dyn FnMut(Labels<'a>, f64),
) {
    let ingest = snapshot.ingest.as_ref();
    let total = |f: fn(&RegistrySnapshot) -> u64| f(snapshot) as f64;
    match def.scope {
        Scope::Map => {
            for map in &snapshot.maps {
                map_samples(def, map, &mut |extra, value| {
                    emit(Labels::Map(map, extra), value)
                });
            }
        }
        Scope::Process | Scope::Ingest => match *def {
            catalog::MAPS => emit(Labels::Plain(vec![]), snapshot.maps_registered as f64),
            catalog::MAP_OVERFLOW_FOLDS_TOTAL => {
                emit(Labels::Plain(vec![]), total(|s| s.overflow_folds))
            }
            catalog::EVENTS_DROPPED_TOTAL => {
                emit(Labels::Plain(vec![]), total(|s| s.events_dropped))
            }
            catalog::TRACE_EVENTS_SUPPRESSED_TOTAL => {
                emit(Labels::Plain(vec![]), total(|s| s.trace_events_suppressed))
            }
            catalog::BUILD_INFO => emit(
                Labels::Plain(vec![
                    ("version", VERSION.into()),
                    ("revision", REVISION.into()),
                ]),
                1.0,
            ),
            catalog::SOURCES => {
                if let Some(ingest) = ingest {
                    emit(Labels::Plain(vec![]), ingest.sources.len() as f64);
                }
            }
            catalog::SOURCE_LAST_REPORT_TIMESTAMP_SECONDS => {
                for source in ingest.iter().flat_map(|i| &i.sources) {
                    let at = source
                        .last_report
                        .duration_since(UNIX_EPOCH)
                        .map_or(0.0, |d| d.as_secs_f64());
                    emit(
                        Labels::Plain(vec![
                            ("source", source.app.clone()),
                            (SOURCE_INSTANCE, source.instance.clone()),
                        ]),
                        at,
                    );
                }
            }
            catalog::INGEST_REQUESTS_TOTAL => {
                for (code, count) in ingest.iter().flat_map(|i| &i.requests) {
                    emit(
                        Labels::Plain(vec![("code", code.to_string())]),
                        *count as f64,
                    );
                }
            }
            catalog::INGEST_REJECTED_TOTAL => {
                for (reason, count) in ingest.iter().flat_map(|i| &i.rejected) {
                    emit(
                        Labels::Plain(vec![("reason", reason.clone())]),
                        *count as f64,
                    );
                }
            }
            catalog::CRASH_FILES_TOTAL => {
                for (result, count) in ingest.iter().flat_map(|i| &i.crash_files) {
                    emit(
                        Labels::Plain(vec![("result", result.clone())]),
                        *count as f64,
                    );
                }
            }
            other => unreachable!(
                "metric {} is declared in the catalog but not exported",
                other.name
            ),
        },
    }
}

/// Every sample of one per-map metric: `emit(extra label, value)`.
fn map_samples(
    def: &MetricDef,
    map: &MapSnapshot,
    emit: &mut dyn FnMut(Option<(&'static str, &'static str)>, f64),
) {
    // A misuse-only row has no stats: zero-valued gauges would claim an
    // empty map.
    if map.misuse_only
        && !matches!(
            *def,
            catalog::MAP_MISUSE_EVENTS_TOTAL | catalog::MAP_CONDITION_ACTIVE
        )
    {
        return;
    }
    let s = &map.stats;
    let mut growth_kinds = |value: &dyn Fn(GrowthKind) -> f64| {
        for kind in GrowthKind::ALL {
            emit(Some(("kind", kind.as_str())), value(kind));
        }
    };
    match def.name {
        "mapscope_map_evacuation_in_progress" => {
            return growth_kinds(&|kind| {
                f64::from(u8::from(s.growth.is_some_and(|g| g.kind == kind)))
            })
        }
        "mapscope_map_growths_total" => return growth_kinds(&|kind| s.growths(kind) as f64),
        "mapscope_map_growth_seconds_total" => return growth_kinds(&|kind| s.growth_seconds(kind)),
        "mapscope_map_misuse_events_total" => {
            for kind in kinds_for(map) {
                emit(Some(("kind", kind.as_str())), map.misuse_count(kind) as f64);
            }
            return;
        }
        "mapscope_map_condition_active" => {
            for kind in kinds_for(map) {
                emit(
                    Some(("kind", kind.as_str())),
                    f64::from(u8::from(map.is_active(kind))),
                );
            }
            return;
        }
        _ => {}
    }
    let value = match def.name {
        "mapscope_map_entries" => s.entries as f64,
        "mapscope_map_peak_entries" => s.peak_entries as f64,
        "mapscope_map_buckets" => s.buckets as f64,
        "mapscope_map_overflow_buckets" => s.overflow_buckets as f64,
        "mapscope_map_load_factor" => s.load_factor,
        "mapscope_map_memory_bytes" => s.memory_bytes as f64,
        "mapscope_map_evacuation_progress_ratio" => s.growth.map_or(0.0, |g| {
            g.evacuated_old_buckets as f64 / g.old_buckets.max(1) as f64
        }),
        "mapscope_map_evacuated_buckets_total" => s.evacuated_buckets_total as f64,
        "mapscope_map_inserts_total" => s.inserts as f64,
        "mapscope_map_updates_total" => s.updates as f64,
        "mapscope_map_removes_total" => s.removes as f64,
        other => unreachable!("per-map metric {other} is declared in the catalog but not exported"),
    };
    emit(None, value);
}

fn escape_label_value(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn write_value(value: f64, out: &mut String) {
    use std::fmt::Write as _;
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        // UNWRAP-free: writing to a String does not fail.
        let _ = write!(out, "{value}");
    }
}

fn write_series(out: &mut String, name: &str, suffix: &str, labels: &Labels<'_>, le: Option<f64>) {
    out.push_str(name);
    out.push_str(suffix);
    let mut first = true;
    let mut put = |out: &mut String, n: &str, v: &dyn Fn(&mut String)| {
        out.push(if first { '{' } else { ',' });
        first = false;
        out.push_str(n);
        out.push_str("=\"");
        v(out);
        out.push('"');
    };
    labels.for_each(|n, v| put(out, n, &|out| escape_label_value(v, out)));
    if let Some(bound) = le {
        put(out, "le", &|out| write_value(bound, out));
    }
    if !first {
        out.push('}');
    }
    out.push(' ');
}

/// Writes the text exposition format straight from a snapshot: no
/// intermediate protobuf structures, so rendering 10,000 maps costs one
/// pass and one string.
fn write_text(snapshot: &RegistrySnapshot) -> String {
    let histogram = &snapshot.growth_durations;
    let mut out = String::with_capacity(4096 + snapshot.maps.len() * 3000);
    for def in CATALOG {
        let header = |out: &mut String| {
            out.push_str("# HELP ");
            out.push_str(def.name);
            out.push(' ');
            out.push_str(&def.help.replace('\\', "\\\\").replace('\n', "\\n"));
            out.push_str("\n# TYPE ");
            out.push_str(def.name);
            out.push(' ');
            out.push_str(def.kind.as_str());
            out.push('\n');
        };
        if *def == catalog::GROWTH_DURATION_SECONDS {
            header(&mut out);
            for kind in GrowthKind::ALL {
                let k = kind.index();
                let labels = Labels::Plain(vec![("kind", kind.as_str().into())]);
                for (bound, count) in GROWTH_DURATION_BUCKETS.iter().zip(histogram.buckets[k]) {
                    write_series(&mut out, def.name, "_bucket", &labels, Some(*bound));
                    write_value(count as f64, &mut out);
                    out.push('\n');
                }
                write_series(&mut out, def.name, "_bucket", &labels, Some(f64::INFINITY));
                write_value(histogram.count[k] as f64, &mut out);
                out.push('\n');
                write_series(&mut out, def.name, "_sum", &labels, None);
                write_value(histogram.sum[k], &mut out);
                out.push('\n');
                write_series(&mut out, def.name, "_count", &labels, None);
                write_value(histogram.count[k] as f64, &mut out);
                out.push('\n');
            }
            continue;
        }
        let mut wrote_header = false;
        samples(def, snapshot, &mut |labels, value| {
            // The text format cannot say "no samples": a family without
            // any (no reported source yet) is left out, header and all.
            if !wrote_header {
                header(&mut out);
                wrote_header = true;
            }
            write_series(&mut out, def.name, "", &labels, None);
            write_value(value, &mut out);
            out.push('\n');
        });
    }
    out
}

fn label(name: &str, value: &str) -> LabelPair {
    let mut pair = LabelPair::default();
    pair.set_name(name.to_owned());
    pair.set_value(value.to_owned());
    pair
}

fn proto_labels(labels: &Labels<'_>) -> Vec<LabelPair> {
    let mut pairs = Vec::new();
    labels.for_each(|n, v| pairs.push(label(n, v)));
    pairs
}

fn sample(def: &MetricDef, labels: Vec<LabelPair>, value: f64) -> Metric {
    let mut metric = Metric::from_label(labels);
    match def.kind {
        MetricType::Counter => {
            let mut counter = Counter::default();
            counter.set_value(value);
            metric.set_counter(counter);
        }
        _ => {
            let mut gauge = Gauge::default();
            gauge.set_value(value);
            metric.set_gauge(gauge);
        }
    }
    metric
}

impl Collector for MapscopeCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let snapshot = self.registry.snapshot();
        let histogram = &snapshot.growth_durations;
        CATALOG
            .iter()
            .map(|def| {
                let mut family = MetricFamily::default();
                family.set_name(def.name.to_owned());
                family.set_help(def.help.to_owned());
                family.set_field_type(match def.kind {
                    MetricType::Gauge => ProtoType::GAUGE,
                    MetricType::Counter => ProtoType::COUNTER,
                    MetricType::Histogram => ProtoType::HISTOGRAM,
                });
                let mut metrics = Vec::new();
                if *def == catalog::GROWTH_DURATION_SECONDS {
                    for kind in GrowthKind::ALL {
                        let k = kind.index();
                        let mut h = Histogram::default();
                        h.set_sample_count(histogram.count[k]);
                        h.set_sample_sum(histogram.sum[k]);
                        h.set_bucket(
                            GROWTH_DURATION_BUCKETS
                                .iter()
                                .zip(histogram.buckets[k])
                                .map(|(bound, count)| {
                                    let mut b = Bucket::default();
                                    b.set_upper_bound(*bound);
                                    b.set_cumulative_count(count);
                                    b
                                })
                                .collect(),
                        );
                        let mut metric = Metric::from_label(vec![label("kind", kind.as_str())]);
                        metric.set_histogram(h);
                        metrics.push(metric);
                    }
                } else {
                    samples(def, &snapshot, &mut |labels, value| {
                        metrics.push(sample(def, proto_labels(&labels), value));
                    });
                }
                family.set_metric(metrics);
                family
            })
            // The text format has no way to say "no samples"; a family
            // without any (no reported source yet) is left out.
            .filter(|family| !family.get_metric().is_empty())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// tokio-metrics' `test_no_fields_missing`, for the catalog: every
    /// declared metric appears in a render, with HELP and TYPE.
    #[test]
    fn every_declared_metric_is_exported() {
        let registry = Registry::new();
        let mut map = crate::InstrumentedMap::builder("m")
            .label("tenant", "acme")
            .register(&registry)
            .unwrap();
        for i in 0..100u32 {
            map.insert(i, i);
        }
        map.publish();
        let text = MapscopeCollector::new(registry).render();
        // Ingest metrics only exist where something is ingested (the sidecar).
        for def in CATALOG.iter().filter(|d| d.scope != Scope::Ingest) {
            assert!(
                text.contains(&format!("# HELP {} ", def.name)),
                "{}",
                def.name
            );
            assert!(
                text.contains(&format!("# TYPE {} {}", def.name, def.kind.as_str())),
                "{}",
                def.name
            );
            let series = if def.kind == MetricType::Histogram {
                format!("{}_bucket{{", def.name)
            } else {
                format!("{}{{", def.name)
            };
            let bare = format!("{} ", def.name);
            assert!(
                text.contains(&series) || text.contains(&bare),
                "{} has no sample",
                def.name
            );
        }
        assert!(text.contains("mapscope_map_entries{map=\"m\",tenant=\"acme\"} 100"));
    }

    /// The direct text writer and the prometheus crate's encoder of the
    /// collector's families give the same samples.
    #[test]
    fn render_agrees_with_the_collector() {
        use prometheus::Encoder;
        let registry = Registry::new();
        let mut map = crate::InstrumentedMap::builder("m\"quoted\\")
            .label("tenant", "a\\b\"c")
            .register(&registry)
            .unwrap();
        for i in 0..10_000u32 {
            map.insert(i, i);
        }
        map.publish();
        let samples = |text: &str| {
            let mut lines: Vec<String> = text
                .lines()
                .filter(|l| !l.starts_with('#'))
                .map(|l| {
                    let (series, value) = l.rsplit_once(' ').unwrap();
                    format!("{series} {}", value.parse::<f64>().unwrap())
                })
                .collect();
            lines.sort();
            lines
        };
        let collector = MapscopeCollector::new(registry);
        let mut encoded = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&collector.collect(), &mut encoded)
            .unwrap();
        let rendered = collector.render();
        assert_eq!(
            samples(&rendered),
            samples(&String::from_utf8(encoded).unwrap())
        );
    }
}
