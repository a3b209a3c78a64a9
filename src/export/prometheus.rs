//! Prometheus exposition: a `prometheus` crate `Collector` that reads
//! snapshots at scrape time (nothing is pushed per map operation), and the
//! text rendering `/metrics` serves.

use std::collections::HashMap;
use std::fmt;

use prometheus::core::{Collector, Desc};
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType as ProtoType,
};

use super::catalog::{HistogramSample, MetricDef, MetricType, Read, Scope, CATALOG};
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
/// [`catalog::CATALOG`](CATALOG).
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

/// A sample's labels: a map's identity (for per-map metrics), then the
/// metric's own labels with the values its reader gave.
struct Labels<'a> {
    map: Option<&'a MapSnapshot>,
    names: &'static [&'static str],
    values: &'a [&'a str],
}

impl Labels<'_> {
    fn for_each(&self, mut f: impl FnMut(&str, &str)) {
        if let Some(map) = self.map {
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
        }
        debug_assert_eq!(
            self.names.len(),
            self.values.len(),
            "a reader's label values"
        );
        for (name, value) in self.names.iter().zip(self.values) {
            f(name, value);
        }
    }
}

/// One sample: a counter's or gauge's value, or a histogram's series.
enum Sample<'a> {
    Value(f64),
    Histogram(HistogramSample<'a>),
}

/// Every sample of one metric, in exposition order, from its catalog
/// reader: the collector and the text writer both walk it.
fn samples(
    def: &MetricDef,
    snapshot: &RegistrySnapshot,
    emit: &mut dyn FnMut(&Labels<'_>, Sample<'_>),
) {
    let names = def.labels;
    match def.read {
        Read::Stats(read) => {
            for map in snapshot.maps.iter().filter(|m| !m.misuse_only) {
                read(&map.stats, &mut |values, value| {
                    let labels = Labels {
                        map: Some(map),
                        names,
                        values,
                    };
                    emit(&labels, Sample::Value(value));
                });
            }
        }
        Read::Map(read) => {
            for map in &snapshot.maps {
                read(map, &mut |values, value| {
                    let labels = Labels {
                        map: Some(map),
                        names,
                        values,
                    };
                    emit(&labels, Sample::Value(value));
                });
            }
        }
        Read::Registry(read) => read(snapshot, &mut |values, value| {
            let labels = Labels {
                map: None,
                names,
                values,
            };
            emit(&labels, Sample::Value(value));
        }),
        Read::Histogram(read) => read(snapshot, &mut |values, histogram| {
            let labels = Labels {
                map: None,
                names,
                values,
            };
            emit(&labels, Sample::Histogram(histogram));
        }),
    }
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
    let mut out = String::with_capacity(4096 + snapshot.maps.len() * 3000);
    for def in CATALOG {
        let mut wrote_header = false;
        samples(def, snapshot, &mut |labels, sample| {
            // The text format cannot say "no samples": a family without
            // any (no reported source yet) is left out, header and all.
            if !wrote_header {
                out.push_str("# HELP ");
                out.push_str(def.name);
                out.push(' ');
                out.push_str(&def.help.replace('\\', "\\\\").replace('\n', "\\n"));
                out.push_str("\n# TYPE ");
                out.push_str(def.name);
                out.push(' ');
                out.push_str(def.kind.as_str());
                out.push('\n');
                wrote_header = true;
            }
            let line = |out: &mut String, suffix: &str, le: Option<f64>, value: f64| {
                write_series(out, def.name, suffix, labels, le);
                write_value(value, out);
                out.push('\n');
            };
            match sample {
                Sample::Value(value) => line(&mut out, "", None, value),
                Sample::Histogram(h) => {
                    for (bound, count) in h.bounds.iter().zip(h.cumulative_counts) {
                        line(&mut out, "_bucket", Some(*bound), *count as f64);
                    }
                    line(&mut out, "_bucket", Some(f64::INFINITY), h.count as f64);
                    line(&mut out, "_sum", None, h.sum);
                    line(&mut out, "_count", None, h.count as f64);
                }
            }
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

fn value_metric(def: &MetricDef, labels: Vec<LabelPair>, value: f64) -> Metric {
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

fn histogram_metric(labels: Vec<LabelPair>, sample: HistogramSample<'_>) -> Metric {
    let mut h = Histogram::default();
    h.set_sample_count(sample.count);
    h.set_sample_sum(sample.sum);
    h.set_bucket(
        sample
            .bounds
            .iter()
            .zip(sample.cumulative_counts)
            .map(|(bound, count)| {
                let mut b = Bucket::default();
                b.set_upper_bound(*bound);
                b.set_cumulative_count(*count);
                b
            })
            .collect(),
    );
    let mut metric = Metric::from_label(labels);
    metric.set_histogram(h);
    metric
}

impl Collector for MapscopeCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let snapshot = self.registry.snapshot();
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
                samples(def, &snapshot, &mut |labels, sample| {
                    metrics.push(match sample {
                        Sample::Value(value) => value_metric(def, proto_labels(labels), value),
                        Sample::Histogram(h) => histogram_metric(proto_labels(labels), h),
                    });
                });
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
