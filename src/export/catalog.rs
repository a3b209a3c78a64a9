//! The single declaration of every metric mapscope exports, each with how
//! its samples are read from a snapshot.
//!
//! Names, types, help and labels are a contract shared by the collector,
//! `docs/metrics.md`, the Grafana dashboards, the alert rules and clients.
//! Everything else derives from or is tested against [`CATALOG`].
//!
//! The per-map metrics of the stats come first. They are declared with
//! their stat, in `map_stats!` (`src/map/stats.rs`), so a new stat is
//! exported without an entry here; everything else is declared below.
//! Every entry carries its reader ([`Read`]): a metric cannot be declared
//! and left unexported, it would not compile.

use std::fmt;
use std::time::UNIX_EPOCH;

use super::prometheus::{REVISION, VERSION};
use crate::detect::MisuseKind;
use crate::map::{map_stats, GrowthKind, MapStats, PerKind, LOAD_FACTOR_DEN, LOAD_FACTOR_NUM};
use crate::registry::{MapSnapshot, RegistrySnapshot, GROWTH_DURATION_BUCKETS};

/// A Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricType {
    /// A value that goes up and down.
    Gauge,
    /// A monotonically increasing total (`_total` or `_seconds_total`).
    Counter,
    /// A distribution in buckets.
    Histogram,
}

impl MetricType {
    /// The name used in `# TYPE` lines.
    pub const fn as_str(self) -> &'static str {
        match self {
            MetricType::Gauge => "gauge",
            MetricType::Counter => "counter",
            MetricType::Histogram => "histogram",
        }
    }
}

/// Which series a metric has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scope {
    /// One series per map (`map`, the map's labels, and `source` and
    /// `source_instance` for maps ingested by the sidecar), plus the extra
    /// labels.
    Map,
    /// Process-wide series with only the extra labels.
    Process,
    /// The sidecar's ingest series; absent where nothing is ingested.
    Ingest,
}

/// Receives a metric's samples: the values of the metric's own
/// [`labels`](MetricDef::labels), in order, and the sample's value. The
/// writer adds a per-map metric's map labels.
pub type Emit<'a> = dyn FnMut(&[&str], f64) + 'a;

/// Receives a histogram's series: the values of its own labels, and the
/// series.
pub type EmitHistogram<'a> = dyn FnMut(&[&str], HistogramSample<'_>) + 'a;

/// One histogram's buckets, sum and count.
#[derive(Debug, Clone, Copy)]
pub struct HistogramSample<'a> {
    /// Upper bounds of the buckets, without `+Inf`.
    pub bounds: &'a [f64],
    /// Observations at or below each bound.
    pub cumulative_counts: &'a [u64],
    /// Observations in all (the `+Inf` bucket).
    pub count: u64,
    /// Their sum.
    pub sum: f64,
}

/// Where a metric's samples come from.
#[derive(Clone, Copy)]
#[non_exhaustive]
pub enum Read {
    /// Each map's stats. Maps known only from their misuse have none and
    /// are skipped: zero-valued gauges would claim an empty map.
    Stats(fn(&MapStats, &mut Emit<'_>)),
    /// Each map's snapshot (misuse counts, conditions).
    Map(fn(&MapSnapshot, &mut Emit<'_>)),
    /// The registry snapshot, once: process-wide and ingest series.
    Registry(fn(&RegistrySnapshot, &mut Emit<'_>)),
    /// A histogram, from the registry snapshot, once.
    Histogram(fn(&RegistrySnapshot, &mut EmitHistogram<'_>)),
}

impl fmt::Debug for Read {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Read::Stats(_) => "Stats(..)",
            Read::Map(_) => "Map(..)",
            Read::Registry(_) => "Registry(..)",
            Read::Histogram(_) => "Histogram(..)",
        })
    }
}

/// One metric's declaration.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    /// The full name, unit suffix included.
    pub name: &'static str,
    /// Gauge, counter or histogram.
    pub kind: MetricType,
    /// Per map or process-wide.
    pub scope: Scope,
    /// Labels beyond the map's own (`kind`, `code`, ...).
    pub labels: &'static [&'static str],
    /// The `# HELP` text.
    pub help: &'static str,
    /// How its samples are read from a snapshot.
    pub read: Read,
}

/// Metrics are equal when their names are (a test keeps names unique).
impl PartialEq for MetricDef {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for MetricDef {}

impl MetricDef {
    /// Whether the reader gives what the scope and type promise: per-map
    /// series from a map, histogram series from a histogram.
    const fn reads_its_scope(&self) -> bool {
        match self.read {
            Read::Stats(_) | Read::Map(_) => {
                matches!(self.scope, Scope::Map) && !matches!(self.kind, MetricType::Histogram)
            }
            Read::Registry(_) => {
                !matches!(self.scope, Scope::Map) && !matches!(self.kind, MetricType::Histogram)
            }
            Read::Histogram(_) => {
                !matches!(self.scope, Scope::Map) && matches!(self.kind, MetricType::Histogram)
            }
        }
    }
}

/// How a stat's value becomes samples: the labels its type adds, and one
/// sample per label value.
trait Exposed {
    const LABELS: &'static [&'static str];
    fn expose(&self, emit: &mut Emit<'_>);
}

macro_rules! exposed_as_f64 {
    ($($ty:ty),*) => {$(
        impl Exposed for $ty {
            const LABELS: &'static [&'static str] = &[];
            fn expose(&self, emit: &mut Emit<'_>) {
                emit(&[], *self as f64);
            }
        }
    )*};
}

exposed_as_f64!(usize, u64, f64);

impl<T: Exposed + Copy> Exposed for PerKind<T> {
    const LABELS: &'static [&'static str] = &["kind"];
    fn expose(&self, emit: &mut Emit<'_>) {
        for (kind, value) in self.iter() {
            value.expose(&mut |_, sample| emit(&[kind.as_str()], sample));
        }
    }
}

/// The stats' metrics, from the declaration (`map_stats!`): per stat, its
/// metric, or none.
macro_rules! stat_metrics {
    (
        gauges { $( $(#[cfg($gcfg:meta)])? $(#[doc = $gdoc:literal])* $g:ident: $gty:ty, fold $gfold:ident
            $(, json $gjson:literal)? $(, wire $gwire:ident)? $(, metric $gmetric:literal $ghelp:literal)?; )* }
        derived { $( $(#[cfg($dcfg:meta)])? $(#[doc = $ddoc:literal])* $d:ident: $dty:ty = $dfn:path
            $(, json $djson:literal)? $(, metric $dmetric:literal $dhelp:literal)?; )* }
        counters { $( $(#[cfg($ccfg:meta)])? $(#[doc = $cdoc:literal])* $c:ident: $cty:ty
            $(, json $cjson:literal)? $(, wire $cwire:ident)? $(, metric $cmetric:literal $chelp:literal)?; )* }
    ) => {
        const STAT_METRICS: &[&[MetricDef]] = &[
            $( $(#[cfg($gcfg)])? &[$( MetricDef {
                name: $gmetric,
                kind: MetricType::Gauge,
                scope: Scope::Map,
                labels: <$gty as Exposed>::LABELS,
                help: $ghelp,
                read: Read::Stats(|stats, emit| stats.$g.expose(emit)),
            } )?], )*
            $( $(#[cfg($dcfg)])? &[$( MetricDef {
                name: $dmetric,
                kind: MetricType::Gauge,
                scope: Scope::Map,
                labels: <$dty as Exposed>::LABELS,
                help: $dhelp,
                read: Read::Stats(|stats, emit| stats.$d.expose(emit)),
            } )?], )*
            $( $(#[cfg($ccfg)])? &[$( MetricDef {
                name: $cmetric,
                kind: MetricType::Counter,
                scope: Scope::Map,
                labels: <$cty as Exposed>::LABELS,
                help: $chelp,
                read: Read::Stats(|stats, emit| stats.$c.expose(emit)),
            } )?], )*
        ];
    };
}

map_stats!(stat_metrics);

macro_rules! catalog {
    ($($id:ident = $name:literal, $kind:ident, $scope:ident, [$($label:literal),*], $help:literal,
        $read:ident($reader:expr);)*) => {
        $(
            #[doc = concat!("`", $name, "`: ", $help)]
            pub const $id: MetricDef = MetricDef {
                name: $name,
                kind: MetricType::$kind,
                scope: Scope::$scope,
                labels: &[$($label),*],
                help: $help,
                read: Read::$read($reader),
            };
            const _: () = assert!(
                $id.reads_its_scope(),
                concat!($name, ": its reader does not give what its scope and type promise"),
            );
        )*
        /// The metrics declared here, in exposition order.
        const DECLARED_HERE: &[MetricDef] = &[$($id),*];
    };
}

catalog! {
    MAP_EVACUATION_IN_PROGRESS = "mapscope_map_evacuation_in_progress", Gauge, Map, ["kind"], "1 while an evacuation of this kind runs, else 0.",
        Stats(|stats, emit| for kind in GrowthKind::ALL {
            emit(&[kind.as_str()], f64::from(u8::from(stats.growth.is_some_and(|g| g.kind == kind))));
        });
    MAP_EVACUATION_PROGRESS_RATIO = "mapscope_map_evacuation_progress_ratio", Gauge, Map, [], "Evacuated old buckets divided by old buckets; 0 when no evacuation runs.",
        Stats(|stats, emit| emit(&[], stats.growth.map_or(0.0, |g| {
            g.evacuated_old_buckets as f64 / g.old_buckets.max(1) as f64
        })));
    MAP_MISUSE_EVENTS_TOTAL = "mapscope_map_misuse_events_total", Counter, Map, ["kind"], "Misuse and health events, by kind.",
        Map(|map, emit| for kind in kinds_for(map) {
            emit(&[kind.as_str()], map.misuse_count(kind) as f64);
        });
    MAP_CONDITION_ACTIVE = "mapscope_map_condition_active", Gauge, Map, ["kind"], "1 while a detector's condition holds, else 0.",
        Map(|map, emit| for kind in kinds_for(map) {
            emit(&[kind.as_str()], f64::from(u8::from(map.is_active(kind))));
        });
    GROWTH_DURATION_SECONDS = "mapscope_growth_duration_seconds", Histogram, Process, ["kind"], "Durations of finished growths, process-wide.",
        Histogram(growth_durations);
    MAPS = "mapscope_maps", Gauge, Process, [], "Maps registered, including those in their grace period.",
        Registry(|s, emit| emit(&[], s.maps_registered as f64));
    MAP_OVERFLOW_FOLDS_TOTAL = "mapscope_map_overflow_folds_total", Counter, Process, [], "Registrations folded into map=\"_overflow\" by the cardinality cap.",
        Registry(|s, emit| emit(&[], s.overflow_folds as f64));
    EVENTS_DROPPED_TOTAL = "mapscope_events_dropped_total", Counter, Process, [], "Events dropped because the event queue was full.",
        Registry(|s, emit| emit(&[], s.events_dropped as f64));
    TRACE_EVENTS_SUPPRESSED_TOTAL = "mapscope_trace_events_suppressed_total", Counter, Process, [], "Misuse events kept from tracing by the per-map rate limit.",
        Registry(|s, emit| emit(&[], s.trace_events_suppressed as f64));
    BUILD_INFO = "mapscope_build_info", Gauge, Process, ["version", "revision"], "Always 1; labels carry the build.",
        Registry(|_, emit| emit(&[VERSION, REVISION], 1.0));
    SOURCES = "mapscope_sources", Gauge, Ingest, [], "Sources (app and instance) reporting to the sidecar, stale ones excluded.",
        Registry(|s, emit| if let Some(ingest) = &s.ingest {
            emit(&[], ingest.sources.len() as f64);
        });
    SOURCE_LAST_REPORT_TIMESTAMP_SECONDS = "mapscope_source_last_report_timestamp_seconds", Gauge, Ingest, ["source", "source_instance"], "Unix time of each live source's last report (retries included).",
        Registry(source_last_report);
    INGEST_REQUESTS_TOTAL = "mapscope_ingest_requests_total", Counter, Ingest, ["code"], "Ingest requests, by HTTP status code.",
        Registry(|s, emit| for (code, count) in s.ingest.iter().flat_map(|i| &i.requests) {
            emit(&[&code.to_string()], *count as f64);
        });
    INGEST_REJECTED_TOTAL = "mapscope_ingest_rejected_total", Counter, Ingest, ["reason"], "Rejected ingest requests, by reason.",
        Registry(|s, emit| for (reason, count) in s.ingest.iter().flat_map(|i| &i.rejected) {
            emit(&[reason], *count as f64);
        });
    CRASH_FILES_TOTAL = "mapscope_crash_files_total", Counter, Ingest, ["result"], "Go crash files read from --crash-dir, by result: map_crash (counted as misuse), other_crash, invalid.",
        Registry(|s, emit| for (result, count) in s.ingest.iter().flat_map(|i| &i.crash_files) {
            emit(&[result], *count as f64);
        });
}

/// Every metric, in exposition order: the stats' (in declaration order),
/// then those declared here.
pub const CATALOG: &[MetricDef] =
    &concat::<{ count(STAT_METRICS, DECLARED_HERE) }>(STAT_METRICS, DECLARED_HERE);

const fn count(stats: &[&[MetricDef]], here: &[MetricDef]) -> usize {
    let (mut n, mut i) = (here.len(), 0);
    while i < stats.len() {
        n += stats[i].len();
        i += 1;
    }
    n
}

const fn concat<const N: usize>(stats: &[&[MetricDef]], here: &[MetricDef]) -> [MetricDef; N] {
    // Only the array's initial value: every element is written below.
    let mut all = [here[0]; N];
    let (mut at, mut i) = (0, 0);
    while i < stats.len() {
        let mut j = 0;
        while j < stats[i].len() {
            all[at] = stats[i][j];
            (at, j) = (at + 1, j + 1);
        }
        i += 1;
    }
    i = 0;
    while i < here.len() {
        all[at] = here[i];
        (at, i) = (at + 1, i + 1);
    }
    all
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

fn growth_durations(snapshot: &RegistrySnapshot, emit: &mut EmitHistogram<'_>) {
    let durations = &snapshot.growth_durations;
    for kind in GrowthKind::ALL {
        let k = kind.index();
        emit(
            &[kind.as_str()],
            HistogramSample {
                bounds: &GROWTH_DURATION_BUCKETS,
                cumulative_counts: &durations.buckets[k],
                count: durations.count[k],
                sum: durations.sum[k],
            },
        );
    }
}

fn source_last_report(snapshot: &RegistrySnapshot, emit: &mut Emit<'_>) {
    for source in snapshot.ingest.iter().flat_map(|i| &i.sources) {
        let at = source
            .last_report
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        emit(&[&source.app, &source.instance], at);
    }
}

/// The engine's load factor: a doubling starts when the average bucket
/// would hold more than this many entries (Go's `loadFactorNum /
/// loadFactorDen`). `mapscope_map_load_factor` is read against it; the
/// dashboards draw it as a threshold.
///
/// ```
/// assert_eq!(mapscope::export::catalog::LOAD_FACTOR, 6.5);
/// ```
pub const LOAD_FACTOR: f64 = LOAD_FACTOR_NUM as f64 / LOAD_FACTOR_DEN as f64;

/// The declaration named `name`, if any.
pub fn find(name: &str) -> Option<&'static MetricDef> {
    CATALOG.iter().find(|m| m.name == name)
}

/// The metric a PromQL series name belongs to: the name itself, or a
/// histogram's `_bucket`, `_sum` or `_count` series.
///
/// ```
/// use mapscope::export::catalog;
/// assert!(catalog::owner("mapscope_growth_duration_seconds_bucket").is_some());
/// assert!(catalog::owner("mapscope_map_entries").is_some());
/// assert!(catalog::owner("mapscope_nope").is_none());
/// ```
pub fn owner(series: &str) -> Option<&'static MetricDef> {
    find(series).or_else(|| {
        ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
            series
                .strip_suffix(suffix)
                .and_then(find)
                .filter(|m| m.kind == MetricType::Histogram)
        })
    })
}

/// The metrics table of `docs/metrics.md`, generated from [`CATALOG`].
pub fn markdown_table() -> String {
    let mut out = String::from("| metric | type | labels | meaning |\n|---|---|---|---|\n");
    for m in CATALOG {
        let mut labels: Vec<&str> = match m.scope {
            Scope::Map => vec![
                "map",
                "(map labels)",
                "source, source_instance (reported maps)",
            ],
            Scope::Process | Scope::Ingest => vec![],
        };
        labels.extend(m.labels);
        let labels = if labels.is_empty() {
            "—".to_owned()
        } else {
            labels
                .iter()
                .map(|l| match *l {
                    "(map labels)" => "the map's labels".to_owned(),
                    "source, source_instance (reported maps)" => {
                        "`source`, `source_instance` (reported maps)".to_owned()
                    }
                    l => format!("`{l}`"),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            m.name,
            m.kind.as_str(),
            labels,
            m.help.replace('|', "\\|")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        for m in CATALOG {
            assert!(m.name.starts_with("mapscope_"), "{}", m.name);
            match m.kind {
                MetricType::Counter => assert!(m.name.ends_with("_total"), "{}", m.name),
                _ => assert!(!m.name.ends_with("_total"), "{}", m.name),
            }
            assert!(m.help.ends_with('.'), "{}", m.name);
        }
        let mut names: Vec<_> = CATALOG.iter().map(|m| m.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), CATALOG.len(), "a name is declared twice");
    }

    #[test]
    fn load_factor_help_states_the_engine_constant() {
        let help = find("mapscope_map_load_factor").expect("declared").help;
        assert!(
            help.contains(&format!("above {LOAD_FACTOR}.")),
            "the help of mapscope_map_load_factor must say {LOAD_FACTOR}: {help}"
        );
    }
}
