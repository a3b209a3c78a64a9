//! Prometheus exposition: a `prometheus` crate `Collector` that reads
//! snapshots at scrape time (nothing is pushed per map operation), and the
//! text rendering `/metrics` serves.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;

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
    flight: Flight,
}

/// The single flight of [`MapscopeCollector::render_shared`]: whether a
/// render runs, how many have finished, and the last one's result (kept so
/// the next render can reuse its buffer).
#[derive(Default)]
struct Flight {
    state: Mutex<FlightState>,
    finished: Condvar,
}

#[derive(Default)]
struct FlightState {
    rendering: bool,
    /// Renders finished (or abandoned by a panic), to tell a waiter that
    /// the render it joined is over.
    generation: u64,
    /// The last render's text; `None` before the first, or if it panicked.
    last: Option<Bytes>,
    /// How long the last render was: the next buffer's starting capacity
    /// when the last one is still being sent and cannot be reused.
    last_len: usize,
    /// Callers waiting for a render in progress (for tests).
    waiting: usize,
}

/// The render a [`MapscopeCollector::render_shared`] call waited for
/// panicked (the panic is reported by the call that ran it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("rendering /metrics failed in a concurrent scrape; scrape again")]
pub struct RenderFailed;

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
        MapscopeCollector {
            registry,
            descs,
            flight: Flight::default(),
        }
    }

    /// Renders the text exposition format straight from a snapshot (the
    /// same samples [`Collector::collect`] gives, without building protobuf
    /// structures). Blocking work: in async code run it on a blocking
    /// thread (the HTTP router does).
    pub fn render(&self) -> String {
        let mut out = String::new();
        write_text(&self.registry.snapshot(), &mut out);
        out
    }

    /// [`render`](Self::render), shared by concurrent callers (single
    /// flight): a call that arrives while another renders waits for that
    /// render and returns the same bytes, so N concurrent scrapes cost one
    /// registry observation and one rendering, and hold one copy of the
    /// text. A call that arrives when none runs starts a new one: the text
    /// a call returns was observed no earlier than the previous render
    /// finished.
    ///
    /// The render writes into the previous render's buffer when every
    /// response that held it is gone, instead of allocating tens of MB per
    /// scrape.
    ///
    /// Sharing does not change what detectors see or which events fire: an
    /// observation fires each transition once, whoever asked for it, and
    /// joined callers simply make no observation of their own (as if they
    /// had scraped a moment earlier). Blocking work, like `render`.
    ///
    /// ```
    /// use mapscope::export::prometheus::MapscopeCollector;
    /// let collector = MapscopeCollector::new(mapscope::Registry::new());
    /// let shared = collector.render_shared().unwrap();
    /// assert!(shared.text.starts_with(b"# HELP "));
    /// ```
    pub fn render_shared(&self) -> Result<SharedText, RenderFailed> {
        self.render_shared_with(|| self.registry.snapshot())
    }

    fn render_shared_with(
        &self,
        observe: impl FnOnce() -> RegistrySnapshot,
    ) -> Result<SharedText, RenderFailed> {
        let flight = &self.flight;
        let mut state = lock(&flight.state);
        if state.rendering {
            let joined = state.generation;
            state.waiting += 1;
            while state.generation == joined {
                state = flight
                    .finished
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            state.waiting -= 1;
            let render = state.generation;
            return state
                .last
                .clone()
                .map(|text| SharedText { text, render })
                .ok_or(RenderFailed);
        }
        state.rendering = true;
        let mut out = reclaim(state.last.take(), state.last_len);
        drop(state);
        // Ends the flight if rendering panics, so waiters never hang.
        struct Abandon<'a>(Option<&'a Flight>);
        impl Drop for Abandon<'_> {
            fn drop(&mut self) {
                if let Some(flight) = self.0 {
                    flight.land(None);
                }
            }
        }
        let mut abandon = Abandon(Some(flight));
        write_text(&observe(), &mut out);
        abandon.0 = None;
        let text = Bytes::from(out.into_bytes());
        let render = flight.land(Some(text.clone()));
        Ok(SharedText { text, render })
    }
}

impl Flight {
    /// Ends the render in progress with its text (`None`: it panicked),
    /// wakes its waiters, and returns its number.
    fn land(&self, text: Option<Bytes>) -> u64 {
        let mut state = lock(&self.state);
        state.rendering = false;
        state.generation += 1;
        state.last_len = text.as_ref().map_or(state.last_len, Bytes::len);
        state.last = text;
        self.finished.notify_all();
        state.generation
    }
}

/// The text of a [`MapscopeCollector::render_shared`] call.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SharedText {
    /// The exposition.
    pub text: Bytes,
    /// Which render made it (renders are numbered from 1): callers that
    /// shared a render get the same number, so a transport can encode the
    /// text once per render (the HTTP router's gzip does).
    pub render: u64,
}

fn lock(state: &Mutex<FlightState>) -> MutexGuard<'_, FlightState> {
    // The state is a few plain fields, each written whole: a panic while
    // holding the lock leaves nothing half-updated.
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An empty buffer for the next render: the last render's own allocation
/// when no response holds it any more, else a new one sized like it.
fn reclaim(last: Option<Bytes>, last_len: usize) -> String {
    let reused = last
        .and_then(|text| text.try_into_mut().ok())
        .map(|mut text| {
            text.clear();
            Vec::from(text)
        });
    match reused {
        // An empty Vec is valid UTF-8: this never copies nor fails.
        Some(buffer) => String::from_utf8(buffer).unwrap_or_default(),
        None => String::with_capacity(last_len + last_len / 8),
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

    /// Runs `callers` concurrent `render_shared_with` calls whose render
    /// (the first caller's) waits until every other caller has joined it:
    /// the overlap is certain, not hoped for. Returns each call's outcome
    /// (`Err` where the call panicked) and how many observations were made.
    fn overlapping_renders(
        collector: &MapscopeCollector,
        callers: usize,
        observe: impl Fn() -> RegistrySnapshot + Sync,
    ) -> (
        Vec<std::thread::Result<Result<SharedText, RenderFailed>>>,
        usize,
    ) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::time::{Duration, Instant};
        let observations = AtomicUsize::new(0);
        let render = || {
            observations.fetch_add(1, Ordering::SeqCst);
            let deadline = Instant::now() + Duration::from_secs(30);
            while lock(&collector.flight.state).waiting < callers - 1 {
                assert!(Instant::now() < deadline, "callers did not join the render");
                std::thread::yield_now();
            }
            observe()
        };
        let results = std::thread::scope(|s| {
            let calls: Vec<_> = (0..callers)
                .map(|_| s.spawn(|| collector.render_shared_with(render)))
                .collect();
            calls.into_iter().map(|call| call.join()).collect()
        });
        (results, observations.into_inner())
    }

    fn one_map_registry() -> (Registry, crate::InstrumentedMap<u32, u32>) {
        let registry = Registry::new();
        let mut map = crate::InstrumentedMap::builder("m")
            .register(&registry)
            .unwrap();
        map.insert(1, 1);
        map.publish();
        (registry, map)
    }

    #[test]
    fn concurrent_renders_share_one_observation_and_one_buffer() {
        let (registry, _map) = one_map_registry();
        let collector = MapscopeCollector::new(registry.clone());
        let (results, observations) = overlapping_renders(&collector, 4, || registry.snapshot());
        assert_eq!(observations, 1, "four overlapping scrapes, one observation");
        let shared: Vec<SharedText> = results
            .into_iter()
            .map(|r| r.expect("no panic").expect("rendered"))
            .collect();
        for one in &shared {
            assert_eq!(
                one.text.as_ptr(),
                shared[0].text.as_ptr(),
                "one copy of the text"
            );
            assert_eq!(one.render, 1, "the first render, shared");
        }
        assert_eq!(&shared[0].text[..], collector.render().as_bytes());
    }

    #[test]
    fn a_render_reuses_the_last_buffer_once_nobody_holds_it() {
        let (registry, _map) = one_map_registry();
        let collector = MapscopeCollector::new(registry);
        let first = collector.render_shared().unwrap().text;
        // Still held (a response being sent): the next render cannot take it.
        let second = collector.render_shared().unwrap().text;
        assert_ne!(second.as_ptr(), first.as_ptr());
        assert_eq!(first, second);
        let last = second.as_ptr();
        drop((first, second));
        // Nobody holds the last one any more: the next render writes into it.
        let third = collector.render_shared().unwrap();
        assert_eq!(third.render, 3);
        let third = third.text;
        assert_eq!(third.as_ptr(), last, "the last buffer was reused");
        assert_eq!(&third[..], collector.render().as_bytes());
    }

    #[test]
    fn a_panicking_render_fails_its_waiters_and_the_next_render_works() {
        let (registry, _map) = one_map_registry();
        let collector = MapscopeCollector::new(registry);
        let (results, _) = overlapping_renders(&collector, 3, || panic!("injected render panic"));
        let panicked = results.iter().filter(|r| r.is_err()).count();
        let failed = results
            .iter()
            .filter(|r| matches!(r, Ok(Err(RenderFailed))))
            .count();
        assert_eq!(
            (panicked, failed),
            (1, 2),
            "the renderer panics, its waiters fail"
        );
        assert!(collector.render_shared().is_ok(), "the flight ended");
    }

    /// Sharing a render shares its observation: a detector transition
    /// fires one event, which every sharer's text counts once, and later
    /// renders neither repeat nor lose it.
    #[test]
    fn shared_renders_fire_each_transition_once() {
        use crate::detect::{DetectorConfig, MisuseKind};
        use crate::registry::{Event, ManualClock};
        use std::time::Duration;
        let kind = MisuseKind::UnboundedGrowth;
        let registry = Registry::builder()
            .clock(ManualClock::new())
            .detectors(
                DetectorConfig::default()
                    .with_window(Duration::ZERO)
                    .with_growth_windows(0),
            )
            .build();
        let mut map = crate::InstrumentedMap::builder("sessions")
            .max_entries(100)
            .register(&registry)
            .unwrap();
        for i in 0..101u32 {
            map.insert(i, i);
        }
        map.publish();
        let collector = MapscopeCollector::new(registry.clone());
        let counted = format!(
            "mapscope_map_misuse_events_total{{map=\"sessions\",kind=\"{}\"}} 1\n",
            kind.as_str()
        );
        let (results, observations) = overlapping_renders(&collector, 4, || registry.snapshot());
        assert_eq!(observations, 1);
        for result in results {
            let text = result.expect("no panic").expect("rendered").text;
            let text = std::str::from_utf8(&text).unwrap();
            assert!(text.contains(&counted), "{counted:?} missing");
        }
        let again = collector.render_shared().unwrap().text;
        assert!(std::str::from_utf8(&again).unwrap().contains(&counted));
        let fired = registry
            .events_since(0)
            .events
            .iter()
            .filter(|r| matches!(&r.event, Event::Misuse(e) if e.kind == kind))
            .count();
        assert_eq!(fired, 1, "one transition, one event");
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
