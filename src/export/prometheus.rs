//! Prometheus exposition: the text rendering `/metrics` serves (core,
//! mapscope's own writer), a `prometheus` crate `Collector` (feature
//! `prometheus`, `collector.rs`) and renders shared by concurrent scrapes
//! (feature `http`, `shared.rs`). All read snapshots at scrape time:
//! nothing is pushed per map operation.

use std::fmt;

use super::catalog::{HistogramSample, MetricDef, Read, CATALOG};
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
/// Render with [`MapscopeCollector::render`] (no dependency needed), or,
/// with the `prometheus` feature, register it in an application's own
/// `prometheus::Registry` (it implements `prometheus::core::Collector`):
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
/// # #[cfg(feature = "prometheus")]
/// # {
/// let prom = prometheus::Registry::new();
/// prom.register(Box::new(collector)).unwrap();
/// assert!(!prom.gather().is_empty());
/// # }
/// ```
pub struct MapscopeCollector {
    registry: Registry,
    #[cfg(feature = "prometheus")]
    descs: Vec<prometheus::core::Desc>,
    #[cfg(feature = "http")]
    flight: shared::Flight,
}

#[cfg(feature = "prometheus")]
mod collector;
#[cfg(feature = "http")]
mod shared;

#[cfg(feature = "http")]
pub use shared::{RenderFailed, SharedText};

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
        MapscopeCollector {
            #[cfg(feature = "prometheus")]
            descs: collector::descs(),
            registry,
            #[cfg(feature = "http")]
            flight: shared::Flight::default(),
        }
    }

    /// Renders the text exposition format straight from a snapshot: the
    /// same samples the `prometheus` feature's `Collector::collect` gives,
    /// without building protobuf structures. Blocking work: in async code
    /// run it on a blocking thread (the HTTP router does).
    pub fn render(&self) -> String {
        let mut out = String::new();
        write_text(&self.registry.snapshot(), &mut out);
        out
    }
}

/// A sample's labels: a map's identity (for per-map metrics), then the
/// metric's own labels with the values its reader gave.
struct Labels<'a> {
    /// The map and its index in the snapshot, for per-map metrics.
    map: Option<(usize, &'a MapSnapshot)>,
    names: &'static [&'static str],
    values: &'a [&'a str],
}

impl Labels<'_> {
    fn for_each(&self, mut f: impl FnMut(&str, &str)) {
        if let Some((_, map)) = self.map {
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
            for (index, map) in snapshot.maps.iter().enumerate() {
                if map.misuse_only {
                    continue;
                }
                read(&map.stats, &mut |values, value| {
                    let labels = Labels {
                        map: Some((index, map)),
                        names,
                        values,
                    };
                    emit(&labels, Sample::Value(value));
                });
            }
        }
        Read::Map(read) => {
            for (index, map) in snapshot.maps.iter().enumerate() {
                read(map, &mut |values, value| {
                    let labels = Labels {
                        map: Some((index, map)),
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

/// Appends `value` escaped for a label value: `\`, `"` and line feeds
/// are escaped, everything else is copied in runs (most values have
/// nothing to escape and are one `push_str`).
fn escape_label_value(value: &str, out: &mut String) {
    let mut rest = value;
    while let Some(at) = rest.find(['\\', '"', '\n']) {
        out.push_str(&rest[..at]);
        out.push_str(match rest.as_bytes()[at] {
            b'\\' => "\\\\",
            b'"' => "\\\"",
            _ => "\\n",
        });
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
}

/// Whole numbers below 2^53 in magnitude, written as integers: what `{}`
/// writes for such an `f64`, without the float formatter (most samples
/// are counts). `-0.0` takes the float path, which keeps its sign.
const EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;

fn write_value(value: f64, out: &mut String) {
    use std::fmt::Write as _;
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else if value.fract() == 0.0
        && value.abs() < EXACT_INTEGER
        && !(value == 0.0 && value.is_sign_negative())
    {
        // UNWRAP-free: writing to a String does not fail.
        let _ = write!(out, "{}", value as i64);
    } else {
        let _ = write!(out, "{value}");
    }
}

/// Every map's identity labels (`map`, `source`, `source_instance`, the
/// map's own), escaped once per render instead of once per sample: a map
/// has about 40 series, and escaping was most of a render's time.
struct MapLabels {
    text: String,
    ends: Vec<usize>,
}

impl MapLabels {
    fn new(maps: &[MapSnapshot]) -> Self {
        let mut labels = MapLabels {
            text: String::new(),
            ends: Vec::with_capacity(maps.len()),
        };
        for map in maps {
            let whole = Labels {
                map: Some((0, map)),
                names: &[],
                values: &[],
            };
            let mut first = true;
            whole.for_each(|name, value| {
                if !first {
                    labels.text.push(',');
                }
                first = false;
                labels.text.push_str(name);
                labels.text.push_str("=\"");
                escape_label_value(value, &mut labels.text);
                labels.text.push('"');
            });
            labels.ends.push(labels.text.len());
        }
        labels
    }

    /// The escaped labels of the map at `index` in the snapshot.
    fn of(&self, index: usize) -> &str {
        let start = index.checked_sub(1).map_or(0, |i| self.ends[i]);
        &self.text[start..self.ends[index]]
    }
}

fn write_series(
    out: &mut String,
    name: &str,
    suffix: &str,
    map_labels: &MapLabels,
    labels: &Labels<'_>,
    le: Option<f64>,
) {
    out.push_str(name);
    out.push_str(suffix);
    let mut first = true;
    let mut open = |out: &mut String| {
        out.push(if first { '{' } else { ',' });
        first = false;
    };
    if let Some((index, _)) = labels.map {
        open(out);
        out.push_str(map_labels.of(index));
    }
    for (name, value) in labels.names.iter().zip(labels.values) {
        open(out);
        out.push_str(name);
        out.push_str("=\"");
        escape_label_value(value, out);
        out.push('"');
    }
    if let Some(bound) = le {
        open(out);
        out.push_str("le=\"");
        write_value(bound, out);
        out.push('"');
    }
    if !first {
        out.push('}');
    }
    out.push(' ');
}

/// Writes the text exposition format straight from a snapshot into `out`
/// (cleared first): no intermediate protobuf structures, so rendering
/// 10,000 maps costs one pass, and a caller that keeps `out` reuses its
/// capacity.
fn write_text(snapshot: &RegistrySnapshot, out: &mut String) {
    out.clear();
    // About 3 KB per in-process map, 4 KB per reported one; a no-op when
    // a reused buffer is already large enough.
    out.reserve(4096 + snapshot.maps.len() * 3000);
    let map_labels = MapLabels::new(&snapshot.maps);
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
                write_series(out, def.name, suffix, &map_labels, labels, le);
                write_value(value, out);
                out.push('\n');
            };
            match sample {
                Sample::Value(value) => line(out, "", None, value),
                Sample::Histogram(h) => {
                    for (bound, count) in h.bounds.iter().zip(h.cumulative_counts) {
                        line(out, "_bucket", Some(*bound), *count as f64);
                    }
                    line(out, "_bucket", Some(f64::INFINITY), h.count as f64);
                    line(out, "_sum", None, h.sum);
                    line(out, "_count", None, h.count as f64);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::catalog::{MetricType, Scope};

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

    #[test]
    fn values_are_written_as_the_float_formatter_writes_them() {
        for value in [
            0.0,
            -0.0,
            1.0,
            -1.0,
            1037.0,
            0.5,
            1e-9,
            1e21,
            -3.25,
            EXACT_INTEGER - 1.0,
            EXACT_INTEGER,
            -EXACT_INTEGER + 1.0,
            f64::MAX,
            f64::MIN_POSITIVE,
        ] {
            let mut out = String::new();
            write_value(value, &mut out);
            assert_eq!(out, format!("{value}"), "{value:e}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let mut out = String::new();
        for value in ["", "plain", "a\\b\"c\nd", "\"\"", "\\", "é\n"] {
            out.clear();
            escape_label_value(value, &mut out);
            let expected = value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            assert_eq!(out, expected);
        }
    }
}
