//! What exporters read: a registry's maps at one moment.

use std::collections::BTreeMap;
use std::time::SystemTime;

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
    /// The maps, live and in their grace period: in-process maps first, by
    /// name and labels, then reported maps by source, instance, name and
    /// labels. Maps past the cardinality cap (of either kind) appear folded
    /// into one `_overflow` map, last.
    pub maps: Vec<MapSnapshot>,
    /// Events dropped because the queue was full.
    pub events_dropped: u64,
    /// Misuse events the tracing rate limit kept from tracing.
    pub trace_events_suppressed: u64,
    /// Registrations folded into the `_overflow` map: in-process maps
    /// registered, and reported or crashed maps first seen, past the cap.
    pub overflow_folds: u64,
    /// Registrations accepted over the registry's life: in-process maps
    /// registered, and reported or crashed maps first seen.
    pub registrations: u64,
    /// Maps registered now, in process or reported, including those in
    /// their grace period and those folded into `_overflow` (not rows that
    /// only crash files speak of).
    pub maps_registered: usize,
    /// Durations of every finished growth the registry has seen.
    pub growth_durations: GrowthDurations,
    /// The most recent events, oldest first.
    pub recent_events: Vec<EventRecord>,
    /// The ingest endpoint's statistics; `None` unless an ingest endpoint
    /// writes into this registry (the sidecar).
    pub ingest: Option<IngestStats>,
}

impl RegistrySnapshot {
    /// The first map with this name.
    pub fn map(&self, name: &str) -> Option<&MapSnapshot> {
        self.maps.iter().find(|m| &*m.id.name == name)
    }
}

/// The ingest endpoint's statistics, for the `mapscope_sources`,
/// `mapscope_source_last_report_timestamp_seconds`,
/// `mapscope_ingest_requests_total`, `mapscope_ingest_rejected_total` and
/// `mapscope_crash_files_total` metrics: registry state like any other,
/// present once an ingest endpoint (`mapscope::ingest::Sources`) writes
/// into the registry.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct IngestStats {
    /// The live (not stale) reporting sources.
    pub sources: Vec<SourceStatus>,
    /// Requests by HTTP status code.
    pub requests: BTreeMap<u16, u64>,
    /// Rejected requests by reason.
    pub rejected: BTreeMap<String, u64>,
    /// Crash files processed by result (`map_crash`, `other_crash`,
    /// `invalid`); empty when the sidecar watches no crash directory.
    pub crash_files: BTreeMap<String, u64>,
}

/// A reporting process the registry hears from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SourceStatus {
    /// The application: the `source` label.
    pub app: String,
    /// The process: the `source_instance` label.
    pub instance: String,
    /// When its last report (or retry) arrived.
    pub last_report: SystemTime,
}
