//! `GET /api/v1/maps`: the JSON snapshot.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::detect::MisuseKind;
use crate::registry::{CodeSite, Event, MapSnapshot, RegistrySnapshot};

/// The body of `GET /api/v1/maps`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiSnapshot {
    /// Every map.
    pub maps: Vec<ApiMap>,
    /// Events dropped because the queue was full.
    pub events_dropped: u64,
    /// Registrations folded into `_overflow`.
    pub overflow_folds: u64,
    /// The most recent events, oldest first.
    pub recent_events: Vec<ApiEvent>,
}

/// One map.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiMap {
    /// The `map` label.
    pub name: String,
    /// The map's own labels.
    pub labels: BTreeMap<String, String>,
    /// The reporting application, for maps clients report.
    pub source: Option<String>,
    /// The reporting process (the `source_instance` label), for maps
    /// clients report.
    #[serde(default)]
    pub source_instance: Option<String>,
    /// In its grace period after being dropped (or its source stale).
    pub dropped: bool,
    /// Known only from its misuse (a Go crash of a map no report
    /// describes): its stats are not known and read 0.
    #[serde(default)]
    pub misuse_only: bool,
    /// Live entries.
    pub entries: usize,
    /// High-water mark of entries.
    pub peak_entries: usize,
    /// Buckets (2^B).
    pub buckets: usize,
    /// Overflow buckets.
    pub overflow_buckets: usize,
    /// Entries per bucket.
    pub load_factor: f64,
    /// Heap bytes held.
    pub memory_bytes: usize,
    /// The evacuation in progress.
    pub growth: Option<ApiGrowth>,
    /// Growths started, by kind.
    pub growths: BTreeMap<String, u64>,
    /// Seconds of finished growths, by kind.
    pub growth_seconds: BTreeMap<String, f64>,
    /// Old buckets evacuated.
    pub evacuated_buckets: u64,
    /// New keys.
    pub inserts: u64,
    /// Overwrites.
    pub updates: u64,
    /// Removals.
    pub removes: u64,
    /// Longest overflow chain.
    pub max_overflow_chain: usize,
    /// Misuse and health events so far, by kind (non-zero only).
    pub misuse: BTreeMap<String, u64>,
    /// Active detector conditions.
    pub conditions: Vec<ApiCondition>,
}

/// An evacuation in progress.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiGrowth {
    /// double, same_size or shrink.
    pub kind: String,
    /// Buckets of the old array.
    pub old_buckets: usize,
    /// Old buckets evacuated so far.
    pub evacuated_old_buckets: usize,
}

/// An active condition.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiCondition {
    /// The detector.
    pub kind: String,
    /// Unix seconds when it fired.
    pub since: f64,
    /// The detector's number.
    pub value: f64,
    /// What was seen and what to do.
    pub details: String,
}

/// A recent event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiEvent {
    /// Registry-wide sequence number.
    pub seq: u64,
    /// growth_started, growth_finished or misuse.
    pub event: String,
    /// The map.
    pub map: String,
    /// The source, for reported maps.
    pub source: Option<String>,
    /// The source's instance, for reported maps.
    #[serde(default)]
    pub source_instance: Option<String>,
    /// Growth kind or misuse kind.
    pub kind: String,
    /// Unix seconds.
    pub at: f64,
    /// Growth duration in seconds (finished growths).
    pub duration_seconds: Option<f64>,
    /// Details (misuse).
    pub details: Option<String>,
    /// Where in the program it happened (a Go crash, or a client event with
    /// `code.*` attributes).
    #[serde(default)]
    pub site: Option<ApiSite>,
    /// The process id of a crashed process (misuse read from a crash file).
    #[serde(default)]
    pub pid: Option<u32>,
}

/// A code site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiSite {
    /// The function (`main.(*cart).add`).
    pub function: String,
    /// The source file.
    pub file: String,
    /// The line in `file`.
    pub line: u32,
}

impl From<&CodeSite> for ApiSite {
    fn from(site: &CodeSite) -> Self {
        ApiSite {
            function: site.function.clone(),
            file: site.file.clone(),
            line: site.line,
        }
    }
}

fn unix(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl From<&MapSnapshot> for ApiMap {
    fn from(map: &MapSnapshot) -> Self {
        let s = &map.stats;
        let by_kind = |f: &dyn Fn(crate::GrowthKind) -> f64| {
            crate::GrowthKind::ALL
                .into_iter()
                .map(|k| (k.as_str().to_owned(), f(k)))
                .collect::<BTreeMap<_, _>>()
        };
        ApiMap {
            name: map.id.name.to_string(),
            labels: map.id.labels.iter().cloned().collect(),
            source: map.id.source.as_ref().map(|s| s.to_string()),
            source_instance: map.id.instance.as_ref().map(|s| s.to_string()),
            dropped: map.dropped,
            misuse_only: map.misuse_only,
            entries: s.entries,
            peak_entries: s.peak_entries,
            buckets: s.buckets,
            overflow_buckets: s.overflow_buckets,
            load_factor: s.load_factor,
            memory_bytes: s.memory_bytes,
            growth: s.growth.map(|g| ApiGrowth {
                kind: g.kind.as_str().to_owned(),
                old_buckets: g.old_buckets,
                evacuated_old_buckets: g.evacuated_old_buckets,
            }),
            growths: by_kind(&|k| s.growths(k) as f64)
                .into_iter()
                .map(|(k, v)| (k, v as u64))
                .collect(),
            growth_seconds: by_kind(&|k| s.growth_seconds(k)),
            evacuated_buckets: s.evacuated_buckets_total,
            inserts: s.inserts,
            updates: s.updates,
            removes: s.removes,
            max_overflow_chain: s.max_overflow_chain,
            misuse: MisuseKind::ALL
                .into_iter()
                .filter(|k| map.misuse_count(*k) > 0)
                .map(|k| (k.as_str().to_owned(), map.misuse_count(k)))
                .collect(),
            conditions: map
                .conditions
                .iter()
                .map(|c| ApiCondition {
                    kind: c.kind.as_str().to_owned(),
                    since: unix(c.since),
                    value: c.value,
                    details: c.details.clone(),
                })
                .collect(),
        }
    }
}

impl ApiSnapshot {
    /// The JSON form of a registry snapshot.
    pub fn from_snapshot(snapshot: &RegistrySnapshot) -> Self {
        ApiSnapshot {
            maps: snapshot.maps.iter().map(ApiMap::from).collect(),
            events_dropped: snapshot.events_dropped,
            overflow_folds: snapshot.overflow_folds,
            recent_events: snapshot
                .recent_events
                .iter()
                .map(|record| {
                    let map = record.event.map();
                    let (mut site, mut pid) = (None, None);
                    let (event, kind, at, duration, details) = match &record.event {
                        Event::GrowthStarted(e) => {
                            ("growth_started", e.kind.as_str(), e.at, None, None)
                        }
                        Event::GrowthFinished(e) => (
                            "growth_finished",
                            e.kind.as_str(),
                            e.started_at + e.duration,
                            e.measured.then_some(e.duration.as_secs_f64()),
                            None,
                        ),
                        Event::Misuse(e) => {
                            site = e.site.as_ref().map(ApiSite::from);
                            pid = e.pid;
                            (
                                "misuse",
                                e.kind.as_str(),
                                e.at,
                                None,
                                Some(e.details.clone()),
                            )
                        }
                    };
                    ApiEvent {
                        seq: record.seq,
                        event: event.to_owned(),
                        map: map.name.to_string(),
                        source: map.source.as_ref().map(|s| s.to_string()),
                        source_instance: map.instance.as_ref().map(|s| s.to_string()),
                        kind: kind.to_owned(),
                        at: unix(at),
                        duration_seconds: duration,
                        details,
                        site,
                        pid,
                    }
                })
                .collect(),
        }
    }
}
