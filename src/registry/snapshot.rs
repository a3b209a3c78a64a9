//! What exporters read: a registry's maps at one moment.

use std::collections::BTreeMap;

use crate::detect::{Condition, MisuseKind};
use crate::map::MapStats;

use super::events::{EventRecord, GrowthDurations, MapId};

/// One map's stats, counters and conditions.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MapSnapshot {
    /// Name, labels and source.
    pub id: MapId,
    /// The stats the map last published.
    pub stats: MapStats,
    /// Detector conditions active now.
    pub conditions: Vec<Condition>,
    /// Misuse and health events so far, by [`MisuseKind::index`]: detector
    /// firings, plus the cumulative counts clients report.
    pub misuse: [u64; MisuseKind::ALL.len()],
    /// Whether the map was dropped and is in its grace period.
    pub dropped: bool,
    /// Whether the map is known only from its misuse: a Go crash file named
    /// a map that no report describes (or no longer does). It has no stats,
    /// so exporters give it only its misuse and condition series, not
    /// zero-valued gauges.
    pub misuse_only: bool,
}

impl MapSnapshot {
    /// Events of one misuse kind so far.
    pub fn misuse_count(&self, kind: MisuseKind) -> u64 {
        self.misuse[kind.index()]
    }

    /// Whether a condition of this kind is active.
    pub fn is_active(&self, kind: MisuseKind) -> bool {
        self.conditions.iter().any(|c| c.kind == kind)
    }
}

/// Every map of a registry, plus the registry's own counters. The only
/// thing exporters read.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RegistrySnapshot {
    /// The maps, live and in their grace period, sorted by name and labels.
    /// Maps past the cardinality cap appear folded into one `_overflow` map.
    pub maps: Vec<MapSnapshot>,
    /// Events dropped because the queue was full.
    pub events_dropped: u64,
    /// Misuse events the tracing rate limit kept from tracing.
    pub trace_events_suppressed: u64,
    /// Registrations folded into the `_overflow` map.
    pub overflow_folds: u64,
    /// Registrations accepted over the registry's life.
    pub registrations: u64,
    /// Maps registered now, including those in their grace period and
    /// those folded into `_overflow`.
    pub maps_registered: usize,
    /// Durations of every finished growth the registry has seen.
    pub growth_durations: GrowthDurations,
    /// The most recent events, oldest first.
    pub recent_events: Vec<EventRecord>,
    /// The sidecar's ingest statistics (only from its store of reported maps).
    pub ingest: Option<IngestStats>,
}

impl RegistrySnapshot {
    /// The first map with this name.
    pub fn map(&self, name: &str) -> Option<&MapSnapshot> {
        self.maps.iter().find(|m| &*m.id.name == name)
    }
}

/// The sidecar's ingest statistics, for the `mapscope_sources`, `..._last_report_...`,
/// `mapscope_ingest_requests_total` and `mapscope_ingest_rejected_total` metrics.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct IngestStats {
    /// Each source label and the Unix time of its last report.
    pub sources: Vec<(String, f64)>,
    /// Requests by HTTP status code.
    pub requests: BTreeMap<u16, u64>,
    /// Rejected requests by reason.
    pub rejected: BTreeMap<String, u64>,
    /// Crash files processed by result (`map_crash`, `other_crash`,
    /// `invalid`); empty when the sidecar watches no crash directory.
    pub crash_files: BTreeMap<String, u64>,
}
