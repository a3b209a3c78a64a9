//! The single declaration of every metric mapscope exports.
//!
//! Names, types, help and labels are a contract shared by the collector,
//! `docs/metrics.md`, the Grafana dashboards, the alert rules and clients.
//! Everything else derives from or is tested against [`CATALOG`].

/// A Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// One metric's declaration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
}

macro_rules! catalog {
    ($($id:ident = $name:literal, $kind:ident, $scope:ident, [$($label:literal),*], $help:literal;)*) => {
        $(
            #[doc = concat!("`", $name, "`: ", $help)]
            pub const $id: MetricDef = MetricDef {
                name: $name,
                kind: MetricType::$kind,
                scope: Scope::$scope,
                labels: &[$($label),*],
                help: $help,
            };
        )*
        /// Every metric, in exposition order.
        pub const CATALOG: &[MetricDef] = &[$($id),*];
    };
}

catalog! {
    MAP_ENTRIES = "mapscope_map_entries", Gauge, Map, [], "Live entries in the map.";
    MAP_PEAK_ENTRIES = "mapscope_map_peak_entries", Gauge, Map, [], "High-water mark of entries.";
    MAP_BUCKETS = "mapscope_map_buckets", Gauge, Map, [], "Buckets in the bucket array (2^B); during a growth, the new array.";
    MAP_OVERFLOW_BUCKETS = "mapscope_map_overflow_buckets", Gauge, Map, [], "Overflow buckets in use.";
    MAP_LOAD_FACTOR = "mapscope_map_load_factor", Gauge, Map, [], "Entries per bucket; a doubling starts above 6.5.";
    MAP_MEMORY_BYTES = "mapscope_map_memory_bytes", Gauge, Map, [], "Heap bytes held by the bucket arrays, old array included during a growth.";
    MAP_EVACUATION_IN_PROGRESS = "mapscope_map_evacuation_in_progress", Gauge, Map, ["kind"], "1 while an evacuation of this kind runs, else 0.";
    MAP_EVACUATION_PROGRESS_RATIO = "mapscope_map_evacuation_progress_ratio", Gauge, Map, [], "Evacuated old buckets divided by old buckets; 0 when no evacuation runs.";
    MAP_GROWTHS_TOTAL = "mapscope_map_growths_total", Counter, Map, ["kind"], "Growths started, by kind (double, same_size, shrink).";
    MAP_GROWTH_SECONDS_TOTAL = "mapscope_map_growth_seconds_total", Counter, Map, ["kind"], "Wall seconds from growth start to its last evacuated bucket, summed over finished growths.";
    MAP_EVACUATED_BUCKETS_TOTAL = "mapscope_map_evacuated_buckets_total", Counter, Map, [], "Old buckets evacuated.";
    MAP_INSERTS_TOTAL = "mapscope_map_inserts_total", Counter, Map, [], "Inserts of new keys.";
    MAP_UPDATES_TOTAL = "mapscope_map_updates_total", Counter, Map, [], "Overwrites of existing keys.";
    MAP_REMOVES_TOTAL = "mapscope_map_removes_total", Counter, Map, [], "Entries removed.";
    MAP_MISUSE_EVENTS_TOTAL = "mapscope_map_misuse_events_total", Counter, Map, ["kind"], "Misuse and health events, by kind.";
    MAP_CONDITION_ACTIVE = "mapscope_map_condition_active", Gauge, Map, ["kind"], "1 while a detector's condition holds, else 0.";
    GROWTH_DURATION_SECONDS = "mapscope_growth_duration_seconds", Histogram, Process, ["kind"], "Durations of finished growths, process-wide.";
    MAPS = "mapscope_maps", Gauge, Process, [], "Maps registered, including those in their grace period.";
    MAP_OVERFLOW_FOLDS_TOTAL = "mapscope_map_overflow_folds_total", Counter, Process, [], "Registrations folded into map=\"_overflow\" by the cardinality cap.";
    EVENTS_DROPPED_TOTAL = "mapscope_events_dropped_total", Counter, Process, [], "Events dropped because the event queue was full.";
    TRACE_EVENTS_SUPPRESSED_TOTAL = "mapscope_trace_events_suppressed_total", Counter, Process, [], "Misuse events kept from tracing by the per-map rate limit.";
    BUILD_INFO = "mapscope_build_info", Gauge, Process, ["version", "revision"], "Always 1; labels carry the build.";
    SOURCES = "mapscope_sources", Gauge, Ingest, [], "Sources (app and instance) reporting to the sidecar, stale ones excluded.";
    SOURCE_LAST_REPORT_TIMESTAMP_SECONDS = "mapscope_source_last_report_timestamp_seconds", Gauge, Ingest, ["source", "source_instance"], "Unix time of each live source's last report (retries included).";
    INGEST_REQUESTS_TOTAL = "mapscope_ingest_requests_total", Counter, Ingest, ["code"], "Ingest requests, by HTTP status code.";
    INGEST_REJECTED_TOTAL = "mapscope_ingest_rejected_total", Counter, Ingest, ["reason"], "Rejected ingest requests, by reason.";
    CRASH_FILES_TOTAL = "mapscope_crash_files_total", Counter, Ingest, ["result"], "Go crash files read from --crash-dir, by result: map_crash (counted as misuse), other_crash, invalid.";
}

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
}
