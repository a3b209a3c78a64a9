//! Prometheus exposition: a `prometheus` crate `Collector` that reads
//! snapshots at scrape time (nothing is pushed per map operation), and the
//! text rendering `/metrics` serves.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType as ProtoType,
};
use prometheus::{Encoder, TextEncoder};

use super::catalog::{self, MetricDef, MetricType, Scope, CATALOG};
use super::SnapshotSource;
use crate::detect::MisuseKind;
use crate::map::GrowthKind;
use crate::registry::{Event, IngestStats, MapSnapshot, Registry};

/// The `Content-Type` of the text exposition format. Prometheus 3 fails a
/// scrape without an explicit version.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds of `mapscope_growth_duration_seconds`: from a small map's
/// growth that busy writes finish in microseconds to a stalled one.
pub const GROWTH_DURATION_BUCKETS: [f64; 14] = [
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// The crate version, for `mapscope_build_info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The source revision, for `mapscope_build_info`: `MAPSCOPE_REVISION` at
/// build time, or `unknown`.
pub const REVISION: &str = match option_env!("MAPSCOPE_REVISION") {
    Some(revision) => revision,
    None => "unknown",
};

#[derive(Debug, Default)]
struct GrowthHistogram {
    cursors: Vec<u64>,
    buckets: [[u64; GROWTH_DURATION_BUCKETS.len()]; 3],
    sum: [f64; 3],
    count: [u64; 3],
}

/// Reads every map of its sources at scrape time and turns them into the
/// metric families of [`catalog::CATALOG`].
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
    sources: Vec<Arc<dyn SnapshotSource>>,
    descs: Vec<Desc>,
    histogram: Mutex<GrowthHistogram>,
}

impl fmt::Debug for MapscopeCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MapscopeCollector")
            .field("sources", &self.sources)
            .finish_non_exhaustive()
    }
}

impl MapscopeCollector {
    /// A collector over one registry.
    pub fn new(registry: Registry) -> Self {
        Self::with_sources(vec![Arc::new(registry)])
    }

    /// A collector over several sources (the sidecar: its own registry and
    /// the maps clients report).
    pub fn with_sources(sources: Vec<Arc<dyn SnapshotSource>>) -> Self {
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
        MapscopeCollector {
            histogram: Mutex::new(GrowthHistogram {
                cursors: vec![0; sources.len()],
                ..Default::default()
            }),
            sources,
            descs,
        }
    }

    /// Renders the text exposition format. Blocking work: in async code run
    /// it on a blocking thread (the HTTP router does).
    pub fn render(&self) -> String {
        let families = self.collect();
        let mut out = Vec::with_capacity(4096);
        // UNWRAP: writing to a Vec<u8> does not fail, and every family has a name and type.
        TextEncoder::new()
            .encode(&families, &mut out)
            .expect("text encoding into memory does not fail");
        // UNWRAP: the text encoder writes UTF-8.
        String::from_utf8(out).expect("the text encoder writes UTF-8")
    }

    fn update_histogram(&self) -> GrowthHistogram {
        let mut h = self
            .histogram
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (source, cursor) in self.sources.iter().zip(0..) {
            let batch = source.events_since(h.cursors[cursor]);
            h.cursors[cursor] = batch.next;
            for record in batch.events {
                if let Event::GrowthFinished(g) = record.event {
                    let k = g.kind.index();
                    let seconds = g.duration.as_secs_f64();
                    for (i, bound) in GROWTH_DURATION_BUCKETS.iter().enumerate() {
                        if seconds <= *bound {
                            h.buckets[k][i] += 1;
                        }
                    }
                    h.sum[k] += seconds;
                    h.count[k] += 1;
                }
            }
        }
        GrowthHistogram {
            cursors: Vec::new(),
            buckets: h.buckets,
            sum: h.sum,
            count: h.count,
        }
    }
}

fn label(name: &str, value: &str) -> LabelPair {
    let mut pair = LabelPair::default();
    pair.set_name(name.to_owned());
    pair.set_value(value.to_owned());
    pair
}

fn map_labels(map: &MapSnapshot) -> Vec<LabelPair> {
    let mut labels = Vec::with_capacity(map.id.labels.len() + 2);
    labels.push(label("map", &map.id.name));
    if let Some(source) = &map.id.source {
        labels.push(label("source", source));
    }
    for (name, value) in map.id.labels.iter() {
        labels.push(label(name, value));
    }
    labels
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

fn with(mut labels: Vec<LabelPair>, name: &str, value: &str) -> Vec<LabelPair> {
    labels.push(label(name, value));
    labels
}

/// The misuse kinds a map gets series for: detector kinds always, client
/// kinds for maps reported by clients or once they have a count.
fn kinds_for(map: &MapSnapshot) -> impl Iterator<Item = MisuseKind> + '_ {
    MisuseKind::ALL.into_iter().filter(move |kind| {
        !kind.is_error() || map.id.source.is_some() || map.misuse_count(*kind) > 0
    })
}

/// Every per-map sample of one metric.
fn map_samples(def: &MetricDef, map: &MapSnapshot, out: &mut Vec<Metric>) {
    let s = &map.stats;
    let base = map_labels(map);
    let one = |value: f64| sample(def, base.clone(), value);
    let growth_kinds = |out: &mut Vec<Metric>, value: &dyn Fn(GrowthKind) -> f64| {
        for kind in GrowthKind::ALL {
            out.push(sample(
                def,
                with(base.clone(), "kind", kind.as_str()),
                value(kind),
            ));
        }
    };
    match def.name {
        "mapscope_map_entries" => out.push(one(s.entries as f64)),
        "mapscope_map_peak_entries" => out.push(one(s.peak_entries as f64)),
        "mapscope_map_buckets" => out.push(one(s.buckets as f64)),
        "mapscope_map_overflow_buckets" => out.push(one(s.overflow_buckets as f64)),
        "mapscope_map_load_factor" => out.push(one(s.load_factor)),
        "mapscope_map_memory_bytes" => out.push(one(s.memory_bytes as f64)),
        "mapscope_map_evacuation_in_progress" => growth_kinds(out, &|kind| {
            f64::from(u8::from(s.growth.is_some_and(|g| g.kind == kind)))
        }),
        "mapscope_map_evacuation_progress_ratio" => out.push(one(s.growth.map_or(0.0, |g| {
            g.evacuated_old_buckets as f64 / g.old_buckets.max(1) as f64
        }))),
        "mapscope_map_growths_total" => growth_kinds(out, &|kind| s.growths(kind) as f64),
        "mapscope_map_growth_seconds_total" => growth_kinds(out, &|kind| s.growth_seconds(kind)),
        "mapscope_map_evacuated_buckets_total" => out.push(one(s.evacuated_buckets_total as f64)),
        "mapscope_map_inserts_total" => out.push(one(s.inserts as f64)),
        "mapscope_map_updates_total" => out.push(one(s.updates as f64)),
        "mapscope_map_removes_total" => out.push(one(s.removes as f64)),
        "mapscope_map_misuse_events_total" => {
            for kind in kinds_for(map) {
                let labels = with(base.clone(), "kind", kind.as_str());
                out.push(sample(def, labels, map.misuse_count(kind) as f64));
            }
        }
        "mapscope_map_condition_active" => {
            for kind in kinds_for(map) {
                let labels = with(base.clone(), "kind", kind.as_str());
                out.push(sample(
                    def,
                    labels,
                    f64::from(u8::from(map.is_active(kind))),
                ));
            }
        }
        other => unreachable!("per-map metric {other} is declared in the catalog but not exported"),
    }
}

/// The sidecar's own series.
fn ingest_samples(def: &MetricDef, ingest: &[&IngestStats], out: &mut Vec<Metric>) {
    match *def {
        catalog::SOURCES => {
            let count: usize = ingest.iter().map(|i| i.sources.len()).sum();
            out.push(sample(def, vec![], count as f64));
        }
        catalog::SOURCE_LAST_REPORT_TIMESTAMP_SECONDS => {
            for (source, at) in ingest.iter().flat_map(|i| &i.sources) {
                out.push(sample(def, vec![label("source", source)], *at));
            }
        }
        catalog::INGEST_REQUESTS_TOTAL => {
            for (code, count) in ingest.iter().flat_map(|i| &i.requests) {
                out.push(sample(
                    def,
                    vec![label("code", &code.to_string())],
                    *count as f64,
                ));
            }
        }
        catalog::INGEST_REJECTED_TOTAL => {
            for (reason, count) in ingest.iter().flat_map(|i| &i.rejected) {
                out.push(sample(def, vec![label("reason", reason)], *count as f64));
            }
        }
        other => unreachable!("ingest metric {} is declared but not exported", other.name),
    }
}

impl Collector for MapscopeCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let snapshots: Vec<_> = self.sources.iter().map(|s| s.snapshot()).collect();
        let histogram = self.update_histogram();
        let maps = || snapshots.iter().flat_map(|s| s.maps.iter());
        let ingest: Vec<_> = snapshots.iter().filter_map(|s| s.ingest.as_ref()).collect();
        CATALOG
            .iter()
            .filter(|def| def.scope != Scope::Ingest || !ingest.is_empty())
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
                match def.scope {
                    Scope::Map => maps().for_each(|map| map_samples(def, map, &mut metrics)),
                    Scope::Ingest => ingest_samples(def, &ingest, &mut metrics),
                    Scope::Process => match *def {
                        catalog::GROWTH_DURATION_SECONDS => {
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
                                let mut metric =
                                    Metric::from_label(vec![label("kind", kind.as_str())]);
                                metric.set_histogram(h);
                                metrics.push(metric);
                            }
                        }
                        catalog::MAPS => metrics.push(sample(def, vec![], maps().count() as f64)),
                        catalog::MAP_OVERFLOW_FOLDS_TOTAL => metrics.push(sample(
                            def,
                            vec![],
                            snapshots.iter().map(|s| s.overflow_folds).sum::<u64>() as f64,
                        )),
                        catalog::EVENTS_DROPPED_TOTAL => metrics.push(sample(
                            def,
                            vec![],
                            snapshots.iter().map(|s| s.events_dropped).sum::<u64>() as f64,
                        )),
                        catalog::TRACE_EVENTS_SUPPRESSED_TOTAL => metrics.push(sample(
                            def,
                            vec![],
                            snapshots
                                .iter()
                                .map(|s| s.trace_events_suppressed)
                                .sum::<u64>() as f64,
                        )),
                        catalog::BUILD_INFO => metrics.push(sample(
                            def,
                            vec![label("version", VERSION), label("revision", REVISION)],
                            1.0,
                        )),
                        other => unreachable!(
                            "process metric {} is declared in the catalog but not exported",
                            other.name
                        ),
                    },
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
}
