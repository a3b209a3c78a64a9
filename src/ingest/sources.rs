//! The sidecar's store of reporting sources and their maps.
//!
//! Sources are keyed by (app, instance). A report replaces its source's
//! maps; counters are the client's cumulative totals, passed through, so a
//! restarted client shows up as a counter reset and a restarted sidecar
//! continues from the next report's totals. Stale sources are swept by a
//! timer ([`IngestStore::sweep`]), never during a scrape.
//!
//! Map crashes read from Go crash files (see `crash_dir.rs`) are counted
//! here too, in rows of their own that outlive sources: a crashed process
//! never reports again.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;

use super::crash::CrashFileResult;
use super::crash_counts::{CrashCounts, CrashKey};
use super::protocol::{Report, ReportAccepted, ReportedEvent, ReportedMap};
use super::validate::{parse_rfc3339, Limits, Rejection};
use crate::detect::{Condition, DetectorConfig, DetectorState, MisuseKind};
use crate::export::SnapshotSource;
use crate::map::{Growth, GrowthKind, MapStats};
use crate::registry::{
    transition_event, CodeSite, Event, EventBatch, EventRing, GrowthFinished, IngestStats, MapId,
    MapSnapshot, MisuseEvent, RegistrySnapshot,
};

struct RemoteMap {
    name: Arc<str>,
    labels: Arc<[(String, String)]>,
    stats: MapStats,
    client_misuse: [u64; MisuseKind::ALL.len()],
    client_misuse_increased: [Option<Instant>; MisuseKind::ALL.len()],
    growth_seen: Option<(Growth, Instant)>,
    detectors: DetectorState,
}

struct Source {
    app: String,
    instance: String,
    started_at: Option<String>,
    last_seq: u64,
    /// Reports applied from this incarnation.
    reports: u64,
    last_event_seq: Option<u64>,
    last_report: Instant,
    last_report_unix: f64,
    ttl: Duration,
    stale_since: Option<Instant>,
    maps: BTreeMap<(String, Vec<(String, String)>), RemoteMap>,
}

struct State {
    sources: BTreeMap<(String, String), Source>,
    requests: BTreeMap<u16, u64>,
    rejected: BTreeMap<String, u64>,
    events: EventRing,
    crashes: CrashCounts,
    /// Crash files by result; `None` while no crash directory is watched,
    /// so a sidecar without one exports no such series.
    crash_files: Option<BTreeMap<String, u64>>,
}

/// A map crash read from a crash file, for [`IngestStore::record_crash`].
#[derive(Debug, Clone)]
pub(crate) struct CrashEvent {
    /// The crashed process's app: the `source` label of the count.
    pub(crate) app: String,
    /// Its instance.
    pub(crate) instance: String,
    /// Its process id.
    pub(crate) pid: u32,
    /// What killed it.
    pub(crate) kind: MisuseKind,
    /// The map, or `_unknown`.
    pub(crate) map: String,
    /// The map's labels, sorted.
    pub(crate) labels: Vec<(String, String)>,
    /// The application frame that did it.
    pub(crate) site: Option<CodeSite>,
    /// When it crashed (the crash log's modification time).
    pub(crate) at: SystemTime,
}

/// Whether a count that rose at `increased` still holds its condition:
/// client-reported kinds and crashes stay active for the detectors'
/// `event_hold` after their last rise.
fn held(increased: Option<Instant>, now: Instant, hold: Duration) -> bool {
    increased.is_some_and(|at| now.saturating_duration_since(at) <= hold)
}

/// The structured code site of a client event: OpenTelemetry's
/// `code.function`, `code.filepath` and `code.lineno` attributes, all three
/// present and the line a number.
fn reported_site(event: &ReportedEvent) -> Option<CodeSite> {
    let get = |key: &str| event.attributes.get(key);
    let line = get("code.lineno")?.trim().parse().ok()?;
    Some(CodeSite::new(
        get("code.function")?.as_str(),
        get("code.filepath")?.as_str(),
        line,
    ))
}

/// Every source's maps, as the sidecar last heard them.
pub struct IngestStore {
    limits: Limits,
    detectors: DetectorConfig,
    state: Mutex<State>,
}

impl std::fmt::Debug for IngestStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IngestStore")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn growth_kind(name: &str) -> GrowthKind {
    match name {
        "same_size" => GrowthKind::SameSize,
        "shrink" => GrowthKind::Shrink,
        _ => GrowthKind::Double,
    }
}

fn stats_of(map: &ReportedMap) -> MapStats {
    let (s, c) = (&map.stats, &map.counters);
    let entries = s.entries as usize;
    let buckets = s.buckets as usize;
    MapStats {
        entries,
        peak_entries: (s.peak_entries as usize).max(entries),
        buckets,
        overflow_buckets: s.overflow_buckets as usize,
        load_factor: if buckets == 0 {
            0.0
        } else {
            entries as f64 / buckets as f64
        },
        memory_bytes: s.memory_bytes as usize,
        growth: s.evacuation.as_ref().map(|e| Growth {
            kind: growth_kind(&e.kind),
            old_buckets: e.old_buckets as usize,
            evacuated_old_buckets: e.evacuated_old_buckets as usize,
            entries_at_start: 0,
            helping_writes: 0,
        }),
        growths_double: c.growths.double,
        growths_same_size: c.growths.same_size,
        shrinks: c.growths.shrink,
        growth_seconds_double: c.growth_seconds.double,
        growth_seconds_same_size: c.growth_seconds.same_size,
        growth_seconds_shrink: c.growth_seconds.shrink,
        evacuated_buckets_total: c.evacuated_buckets,
        inserts: c.inserts,
        updates: c.updates,
        removes: c.removes,
        max_overflow_chain: s.max_overflow_chain as usize,
    }
}

impl State {
    /// The `source` label: the app, or app/instance while several
    /// instances of the app report.
    fn label(&self, app: &str, instance: &str) -> String {
        let instances = self.sources.keys().filter(|(a, _)| a == app).count();
        if instances > 1 {
            format!("{app}/{instance}")
        } else {
            app.to_owned()
        }
    }
}

impl IngestStore {
    /// An empty store.
    pub fn new(limits: Limits, detectors: DetectorConfig) -> Self {
        IngestStore {
            limits,
            detectors,
            state: Mutex::new(State {
                sources: BTreeMap::new(),
                requests: BTreeMap::new(),
                rejected: BTreeMap::new(),
                events: EventRing::new(4096),
                crashes: CrashCounts::default(),
                crash_files: None,
            }),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a request by its answer.
    pub fn count_request(&self, status: StatusCode, rejected: Option<&str>) {
        let mut state = self.lock();
        *state.requests.entry(status.as_u16()).or_default() += 1;
        if let Some(reason) = rejected {
            *state.rejected.entry(reason.to_owned()).or_default() += 1;
        }
    }

    /// Starts exporting `mapscope_crash_files_total`, every result at 0
    /// (the sidecar calls it when it watches a crash directory).
    pub fn enable_crash_files(&self) {
        let mut state = self.lock();
        let counts = state.crash_files.get_or_insert_with(BTreeMap::new);
        for result in CrashFileResult::ALL {
            counts.entry(result.as_str().to_owned()).or_insert(0);
        }
    }

    /// Counts one processed crash file pair.
    pub fn count_crash_file(&self, result: CrashFileResult) {
        let mut state = self.lock();
        *state
            .crash_files
            .get_or_insert_with(BTreeMap::new)
            .entry(result.as_str().to_owned())
            .or_default() += 1;
    }

    /// Records a map crash: its count (for the sidecar's life) and a misuse
    /// event. Returns the map it was counted under (its own, or `_unknown`
    /// past the row cap), or `None` when the cap left no row for it.
    pub(crate) fn record_crash(&self, crash: CrashEvent, now: Instant) -> Option<String> {
        let mut state = self.lock();
        let key: CrashKey = (crash.app.clone(), crash.map, crash.labels);
        let (app, map, labels) = state.crashes.record(key, crash.kind, crash.at, now)?;
        let site = crash
            .site
            .as_ref()
            .map_or_else(|| "an unknown site".to_owned(), ToString::to_string);
        let details = format!(
            "{} crashed {app} (instance {}, pid {}) at {site}",
            crash.kind, crash.instance, crash.pid
        );
        state.events.push(Event::Misuse(MisuseEvent {
            map: MapId {
                name: map.as_str().into(),
                labels: labels.into(),
                source: Some(app.into()),
            },
            kind: crash.kind,
            details,
            at: crash.at,
            value: 0.0,
            trace: None,
            context: None,
            traced: false,
            site: crash.site,
            pid: Some(crash.pid),
        }));
        Some(map)
    }

    /// Applies a report that passed [`super::validate::check`]. Either the
    /// whole report takes effect or (too many sources) none of it.
    pub fn apply(&self, report: Report) -> Result<ReportAccepted, Rejection> {
        let now = Instant::now();
        let mut state = self.lock();
        let key = (report.source.app.clone(), report.source.instance.clone());
        if !state.sources.contains_key(&key) && state.sources.len() >= self.limits.max_sources {
            return Err(Rejection::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_sources",
                format!(
                    "the sidecar already tracks {} sources (--max-sources); a new source is accepted once a stale one expires",
                    self.limits.max_sources
                ),
                Some("source".into()),
                Some(self.limits.max_sources as u64),
            ));
        }
        let ttl = report
            .interval_seconds
            .and_then(|s| Duration::try_from_secs_f64(s * 3.0).ok())
            .unwrap_or_default()
            .max(self.limits.source_ttl);
        let source = state.sources.entry(key.clone()).or_insert_with(|| Source {
            app: key.0.clone(),
            instance: key.1.clone(),
            started_at: report.source.started_at.clone(),
            last_seq: 0,
            reports: 0,
            last_event_seq: None,
            last_report: now,
            last_report_unix: unix_now(),
            ttl,
            stale_since: None,
            maps: BTreeMap::new(),
        });
        // Which process sent this report, relative to the one we know?
        let parse = |t: &Option<String>| t.as_deref().and_then(parse_rfc3339);
        let (known, sent) = (parse(&source.started_at), parse(&report.source.started_at));
        let lower_seq = source.reports > 0 && report.seq < source.last_seq;
        let restarted = match (known, sent) {
            (Some(known), Some(sent)) if sent > known => true,
            (Some(known), Some(sent)) if sent < known => {
                // A late report from the process before the restart.
                let label = state.label(&key.0, &key.1);
                return Ok(ReportAccepted {
                    status: "stale".into(),
                    source: label,
                    maps: report.maps.len(),
                    events_accepted: 0,
                    restarted: false,
                });
            }
            (Some(_), Some(_)) => false,
            // No start time to compare: a sequence going down is a restart.
            _ => lower_seq,
        };
        source.last_report = now;
        source.last_report_unix = unix_now();
        source.stale_since = None;
        source.ttl = ttl;
        if report.source.started_at.is_some() {
            source.started_at = report.source.started_at.clone();
        }
        if restarted {
            // A new process: its counters start over, which Prometheus reads
            // as a counter reset; its seq and event seq start over too.
            source.last_event_seq = None;
            source.reports = 0;
        } else if source.reports > 0 && report.seq <= source.last_seq {
            // A retry of a report already applied.
            let label = state.label(&key.0, &key.1);
            return Ok(ReportAccepted {
                status: "duplicate".into(),
                source: label,
                maps: report.maps.len(),
                events_accepted: 0,
                restarted: false,
            });
        }
        source.last_seq = report.seq;
        source.reports += 1;
        let maps_count = report.maps.len();
        let mut maps = BTreeMap::new();
        for reported in &report.maps {
            let labels: Vec<(String, String)> = reported
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let map_key = (reported.name.clone(), labels.clone());
            let mut remote = source.maps.remove(&map_key).unwrap_or_else(|| RemoteMap {
                name: reported.name.as_str().into(),
                labels: labels.into(),
                stats: MapStats::default(),
                client_misuse: [0; MisuseKind::ALL.len()],
                client_misuse_increased: [None; MisuseKind::ALL.len()],
                growth_seen: None,
                detectors: DetectorState::default(),
            });
            if restarted {
                remote.client_misuse = [0; MisuseKind::ALL.len()];
            }
            remote.stats = stats_of(reported);
            for (name, count) in &reported.counters.misuse {
                if let Ok(kind) = name.parse::<MisuseKind>() {
                    let i = kind.index();
                    if *count > remote.client_misuse[i] {
                        remote.client_misuse_increased[i] = Some(now);
                    }
                    remote.client_misuse[i] = *count;
                }
            }
            remote.growth_seen = match (remote.stats.growth, remote.growth_seen) {
                (Some(g), Some((seen, at)))
                    if seen.kind == g.kind && seen.old_buckets == g.old_buckets =>
                {
                    Some((g, at))
                }
                (Some(g), _) => Some((g, now)),
                (None, _) => None,
            };
            maps.insert(map_key, remote);
        }
        source.maps = maps;
        let last_event_seq = source.last_event_seq;
        let fresh: Vec<_> = report
            .events
            .iter()
            .filter(|e| last_event_seq.is_none_or(|last| e.seq > last))
            .collect();
        if let Some(max) = fresh.iter().map(|e| e.seq).max() {
            source.last_event_seq = Some(last_event_seq.map_or(max, |last| last.max(max)));
        }
        let label: Arc<str> = state.label(&key.0, &key.1).into();
        let events_accepted = fresh.len();
        for event in fresh {
            let mut labels: Vec<(String, String)> = event
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            labels.sort();
            let map = MapId {
                name: event.map.as_str().into(),
                labels: labels.into(),
                source: Some(label.clone()),
            };
            // UNWRAP-free: `check` accepted every timestamp.
            let at = parse_rfc3339(&event.at).unwrap_or_else(SystemTime::now);
            let trace = event.trace_id.clone().zip(event.span_id.clone());
            let converted = if event.kind == "growth" {
                // Without `duration_seconds` the growth is an event, not a
                // 0 s observation of the duration histogram.
                let measured = event.duration_seconds.is_some();
                let duration = Duration::try_from_secs_f64(event.duration_seconds.unwrap_or(0.0))
                    .unwrap_or_default();
                Event::GrowthFinished(GrowthFinished {
                    map,
                    kind: growth_kind(event.growth_kind.as_deref().unwrap_or("double")),
                    old_buckets: 0,
                    new_buckets: 0,
                    entries_at_start: 0,
                    entries: 0,
                    started_at: at.checked_sub(duration).unwrap_or(at),
                    duration,
                    measured,
                    helping_writes: 0,
                    evacuation_work: Duration::ZERO,
                    completed_explicitly: false,
                    evacuated_old_buckets: 0,
                    trace,
                })
            } else {
                let kind = event
                    .misuse_kind
                    .as_deref()
                    .and_then(|k| k.parse().ok())
                    .unwrap_or(MisuseKind::NilMapWrite);
                let mut details: Vec<String> = event
                    .attributes
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                details.insert(0, format!("{kind} reported by {label}"));
                Event::Misuse(MisuseEvent {
                    map,
                    kind,
                    details: details.join("; "),
                    at,
                    value: 0.0,
                    trace,
                    context: None,
                    traced: false,
                    site: reported_site(event),
                    pid: None,
                })
            };
            state.events.push(converted);
        }
        Ok(ReportAccepted {
            status: "accepted".into(),
            source: label.to_string(),
            maps: maps_count,
            events_accepted,
            restarted,
        })
    }

    /// Marks sources that missed their TTL stale, and removes sources stale
    /// for longer than the grace period. Run it on a timer.
    pub fn sweep(&self) {
        self.sweep_at(Instant::now());
    }

    /// [`IngestStore::sweep`] at a given time.
    pub fn sweep_at(&self, now: Instant) {
        let grace = self.limits.grace_period;
        let mut state = self.lock();
        state.sources.retain(|_, source| {
            if source.stale_since.is_none()
                && now.saturating_duration_since(source.last_report) > source.ttl
            {
                tracing::warn!(app = %source.app, instance = %source.instance, "source stopped reporting; marked stale");
                source.stale_since = Some(now);
            }
            match source.stale_since {
                Some(since) if now.saturating_duration_since(since) > grace => {
                    tracing::info!(app = %source.app, instance = %source.instance, "stale source removed");
                    false
                }
                _ => true,
            }
        });
    }

    /// Ingest statistics.
    pub fn stats(&self) -> IngestStats {
        let state = self.lock();
        IngestStats {
            sources: state
                .sources
                .values()
                .filter(|s| s.stale_since.is_none())
                .map(|s| (state.label(&s.app, &s.instance), s.last_report_unix))
                .collect(),
            requests: state.requests.clone(),
            rejected: state.rejected.clone(),
            crash_files: state.crash_files.clone().unwrap_or_default(),
        }
    }
}

/// Adds the crash counts to the reported map of the same identity (map,
/// labels, `source` = the app), so a map never has two series; a crash of a
/// map no report describes becomes a misuse-only row. A rising count holds
/// `condition_active` like a client-reported kind.
fn merge_crashes(maps: &mut Vec<MapSnapshot>, crashes: &CrashCounts, now: Instant, hold: Duration) {
    let mut rows = crashes.rows().peekable();
    if rows.peek().is_none() {
        return;
    }
    let mut index: HashMap<MapId, usize> = maps
        .iter()
        .enumerate()
        .map(|(i, m)| (m.id.clone(), i))
        .collect();
    for ((app, name, labels), row) in rows {
        let id = MapId {
            name: name.as_str().into(),
            labels: labels.clone().into(),
            source: Some(app.as_str().into()),
        };
        let i = *index.entry(id.clone()).or_insert_with(|| {
            maps.push(MapSnapshot {
                id,
                stats: MapStats::default(),
                conditions: Vec::new(),
                misuse: [0; MisuseKind::ALL.len()],
                dropped: false,
                misuse_only: true,
            });
            maps.len() - 1
        });
        let map = &mut maps[i];
        for kind in MisuseKind::CLIENT {
            let k = kind.index();
            map.misuse[k] += row.counts[k];
            if held(row.increased[k], now, hold) && !map.is_active(kind) {
                map.conditions.push(Condition {
                    kind,
                    since: row.last_at[k].unwrap_or_else(SystemTime::now),
                    value: row.counts[k] as f64,
                    details: format!(
                        "{} {kind} crashes of {app} read from crash files",
                        row.counts[k]
                    ),
                });
            }
        }
    }
}

impl SnapshotSource for IngestStore {
    fn snapshot(&self) -> RegistrySnapshot {
        let now = Instant::now();
        let mut state = self.lock();
        let labels: BTreeMap<(String, String), Arc<str>> = state
            .sources
            .keys()
            .map(|(app, instance)| {
                (
                    (app.clone(), instance.clone()),
                    state.label(app, instance).into(),
                )
            })
            .collect();
        let mut maps = Vec::new();
        let mut fired = Vec::new();
        for (key, source) in state.sources.iter_mut() {
            let label = labels[key].clone();
            let stale = source.stale_since.is_some();
            for remote in source.maps.values_mut() {
                let id = MapId {
                    name: remote.name.clone(),
                    labels: remote.labels.clone(),
                    source: Some(label.clone()),
                };
                if !stale {
                    let growth_started = remote.growth_seen.map(|(_, at)| at);
                    for transition in remote.detectors.observe(
                        &remote.stats,
                        &self.detectors,
                        now,
                        growth_started,
                    ) {
                        fired.push((id.clone(), transition));
                    }
                }
                let mut misuse = *remote.detectors.firings();
                let mut conditions: Vec<Condition> = remote.detectors.active().to_vec();
                for kind in MisuseKind::CLIENT {
                    let i = kind.index();
                    misuse[i] += remote.client_misuse[i];
                    if held(
                        remote.client_misuse_increased[i],
                        now,
                        self.detectors.event_hold,
                    ) {
                        conditions.push(Condition {
                            kind,
                            since: SystemTime::now(),
                            value: remote.client_misuse[i] as f64,
                            details: format!(
                                "{} {kind} events reported by {label}",
                                remote.client_misuse[i]
                            ),
                        });
                    }
                }
                maps.push(MapSnapshot {
                    id,
                    stats: remote.stats,
                    conditions,
                    misuse,
                    dropped: stale,
                    misuse_only: false,
                });
            }
        }
        let maps_registered = maps.len();
        merge_crashes(&mut maps, &state.crashes, now, self.detectors.event_hold);
        for (map, transition) in fired {
            if let Some(event) = transition_event(map, transition) {
                state.events.push(event);
            }
        }
        maps.sort_by(|a, b| {
            (&a.id.source, &a.id.name, &a.id.labels).cmp(&(&b.id.source, &b.id.name, &b.id.labels))
        });
        let mut snapshot = RegistrySnapshot {
            maps_registered,
            growth_durations: state.events.durations,
            recent_events: state.events.records(),
            maps,
            ..Default::default()
        };
        drop(state);
        snapshot.ingest = Some(self.stats());
        snapshot
    }

    fn events_since(&self, cursor: u64) -> EventBatch {
        self.lock().events.since(cursor)
    }
}
