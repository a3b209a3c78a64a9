//! Protocol v1: the JSON body of `POST /v1/report`. See `docs/protocol.md`
//! and `docs/openapi.yaml`.
//!
//! Unknown fields are ignored, so newer clients can talk to older sidecars.
//! Counters are cumulative since the reporting process started, so a lost
//! request or a sidecar restart loses nothing: the next report carries the
//! totals.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The protocol version this module implements.
pub const PROTOCOL_VERSION: u32 = 1;

/// One report: a source's maps and the events since its last report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Who is reporting.
    pub source: SourceInfo,
    /// Increases by one per report from one process; a lower value with a
    /// different `source.started_at` means the process restarted.
    pub seq: u64,
    /// When the client sent the report (RFC 3339).
    #[serde(default)]
    pub sent_at: Option<String>,
    /// How often the client reports, in seconds; the sidecar's stale
    /// timeout is 3 intervals (at least its own `--source-ttl`).
    #[serde(default)]
    pub interval_seconds: Option<f64>,
    /// Every map's current stats and cumulative counters.
    #[serde(default)]
    pub maps: Vec<ReportedMap>,
    /// Events since the last acknowledged report.
    #[serde(default)]
    pub events: Vec<ReportedEvent>,
}

/// The reporting process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceInfo {
    /// The application's name; becomes the `source` label.
    pub app: String,
    /// This process (pod name, host:pid); distinguishes instances of an app.
    pub instance: String,
    /// The client's language, for people.
    #[serde(default)]
    pub language: Option<String>,
    /// The client SDK and its version, for people.
    #[serde(default)]
    pub sdk: Option<String>,
    /// When the process started (RFC 3339). A change means a restart, and
    /// the process's counters start again from zero.
    #[serde(default)]
    pub started_at: Option<String>,
}

/// One map in a report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportedMap {
    /// The `map` label.
    pub name: String,
    /// The map's own labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Current state.
    pub stats: ReportedStats,
    /// Cumulative counters.
    #[serde(default)]
    pub counters: ReportedCounters,
}

/// A map's current state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportedStats {
    /// Live entries.
    pub entries: u64,
    /// High-water mark of entries.
    #[serde(default)]
    pub peak_entries: u64,
    /// Buckets (2^B).
    pub buckets: u64,
    /// Overflow buckets.
    #[serde(default)]
    pub overflow_buckets: u64,
    /// Heap bytes held.
    #[serde(default)]
    pub memory_bytes: u64,
    /// Longest overflow chain, if the client knows it.
    #[serde(default)]
    pub max_overflow_chain: u64,
    /// The evacuation in progress, or null.
    #[serde(default)]
    pub evacuation: Option<ReportedEvacuation>,
}

/// An evacuation in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportedEvacuation {
    /// `double`, `same_size` or `shrink`.
    pub kind: String,
    /// Buckets of the old array.
    pub old_buckets: u64,
    /// Old buckets evacuated so far.
    pub evacuated_old_buckets: u64,
}

/// Counts by growth kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KindCounts {
    /// Doublings.
    #[serde(default)]
    pub double: u64,
    /// Same-size growths.
    #[serde(default)]
    pub same_size: u64,
    /// Halvings.
    #[serde(default)]
    pub shrink: u64,
}

/// Seconds by growth kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct KindSeconds {
    /// Doublings.
    #[serde(default)]
    pub double: f64,
    /// Same-size growths.
    #[serde(default)]
    pub same_size: f64,
    /// Halvings.
    #[serde(default)]
    pub shrink: f64,
}

/// Cumulative counters since the process started.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportedCounters {
    /// Growths started, by kind.
    #[serde(default)]
    pub growths: KindCounts,
    /// Wall seconds of finished growths, by kind.
    #[serde(default)]
    pub growth_seconds: KindSeconds,
    /// Old buckets evacuated.
    #[serde(default)]
    pub evacuated_buckets: u64,
    /// New keys.
    #[serde(default)]
    pub inserts: u64,
    /// Overwrites.
    #[serde(default)]
    pub updates: u64,
    /// Removals.
    #[serde(default)]
    pub removes: u64,
    /// Misuse events by kind (`nil_map_write`, `concurrent_write`,
    /// `iterate_while_mutating`, or any other `MisuseKind`).
    #[serde(default)]
    pub misuse: BTreeMap<String, u64>,
}

/// An event: a finished growth or a misuse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportedEvent {
    /// Increases by one per event from one process; retries carry the same
    /// number and are deduplicated.
    pub seq: u64,
    /// `growth` or `misuse`.
    pub kind: String,
    /// The map's name.
    pub map: String,
    /// The map's labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// When it happened (RFC 3339); for a growth, when it finished.
    pub at: String,
    /// For a growth: wall seconds from start to finish.
    #[serde(default)]
    pub duration_seconds: Option<f64>,
    /// For a growth: `double`, `same_size` or `shrink`.
    #[serde(default)]
    pub growth_kind: Option<String>,
    /// For a misuse: the `MisuseKind`.
    #[serde(default)]
    pub misuse_kind: Option<String>,
    /// The trace the event belongs to (32 hex digits).
    #[serde(default)]
    pub trace_id: Option<String>,
    /// The span the event belongs to (16 hex digits).
    #[serde(default)]
    pub span_id: Option<String>,
    /// Free-form details (stack, goroutine, code site).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// The body of a successful `POST /v1/report`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportAccepted {
    /// `accepted`, or `duplicate` for a retry of a report already applied.
    pub status: String,
    /// The `source` label the maps got.
    pub source: String,
    /// Maps in the report.
    pub maps: usize,
    /// Events accepted (retried events already seen are not counted).
    pub events_accepted: usize,
    /// Whether the report was treated as a restart of the source.
    pub restarted: bool,
}

/// The body of every rejected request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What is wrong and what to do.
    pub error: String,
    /// The JSON path of the offending field, when one is to blame.
    pub field: Option<String>,
    /// The limit that was exceeded, when one was.
    pub limit: Option<u64>,
}
