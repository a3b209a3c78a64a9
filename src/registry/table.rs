//! The registry's one table: every tracked map, in-process or reported, as
//! one kind of [`Row`], and the one observation that turns the table into a
//! [`RegistrySnapshot`].
//!
//! Two writers fill it. In-process maps publish through their seqlock
//! (`publish.rs`); the table reads them at observation time. The sidecar's
//! ingest applies reports and crash files under the registry's lock
//! (`reported.rs`). Everything else is done here once, for both: the
//! cardinality cap and `_overflow` folding, the grace period, detector
//! runs and held client conditions, growth-start tracking, the event ring
//! and the misuse rate limit.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::detect::{Condition, DetectorConfig, DetectorState, MisuseKind, Transition};
use crate::map::{Growth, GrowthKind, MapStats};

use super::entry::{EventSink, MapEntry};
use super::events::{Event, EventRing, MapId, MisuseEvent};
use super::limit::MisuseLimiter;
use super::snapshot::{IngestStats, MapSnapshot, RegistrySnapshot, SourceStatus};
use super::OVERFLOW_MAP;

/// A reporting process: (app, instance).
pub(crate) type SourceKey = (Arc<str>, Arc<str>);

/// Who writes a row's stats.
#[derive(Debug)]
pub(crate) enum Writer {
    /// An in-process map, through its seqlock publication.
    Local(Arc<MapEntry>),
    /// A map a source reports; each report replaces its stats.
    #[cfg_attr(not(feature = "sidecar"), allow(dead_code))]
    // written by the sidecar's ingest only
    Reported,
    /// Nobody: a map only crash files speak of (its process crashed before
    /// reporting it, or its source is gone). It has no stats, runs no
    /// detectors, and is kept for the registry's life.
    CrashOnly,
}

/// Where a row is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    /// Written to, evaluated by the detectors.
    Live,
    /// Its map was dropped (in process) or left its source's reports, at
    /// this time: it keeps its final values for the grace period.
    Dropped(Instant),
    /// Its source stopped reporting (TTL), at this time: it keeps its last
    /// values until the ingest's sweep removes the source after the grace
    /// period, or the source reports again.
    #[cfg_attr(not(feature = "sidecar"), allow(dead_code))]
    // written by the sidecar's ingest only
    Stale(Instant),
}

impl Lifecycle {
    fn is_live(self) -> bool {
        self == Lifecycle::Live
    }
}

/// Whether something that ended at `since` is past the grace period: the
/// one rule for dropped maps and stale sources alike.
pub(crate) fn past_grace(since: Instant, now: Instant, grace: Duration) -> bool {
    now.saturating_duration_since(since) > grace
}

/// The growth in progress, and when the registry dates its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct GrowthSeen {
    kind: GrowthKind,
    old_buckets: usize,
    since: Instant,
}

/// Tracks when the growth in progress started: the writer's own start
/// time when it has one (an in-process map records it), else the first
/// observation that saw this growth (a reported map's evacuation).
fn track_growth(
    seen: Option<GrowthSeen>,
    growth: Option<Growth>,
    started: Option<Instant>,
    now: Instant,
) -> Option<GrowthSeen> {
    let growth = growth?;
    let same = |s: &GrowthSeen| s.kind == growth.kind && s.old_buckets == growth.old_buckets;
    let since = match (started, seen) {
        (Some(started), _) => started,
        (None, Some(seen)) if same(&seen) => seen.since,
        (None, _) => now,
    };
    Some(GrowthSeen {
        kind: growth.kind,
        old_buckets: growth.old_buckets,
        since,
    })
}

/// One client misuse kind of a reported map: what the client counts, what
/// crash files add, and the condition a rise holds for `event_hold`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ClientCount {
    /// The client's cumulative count (this incarnation).
    pub(crate) reported: u64,
    /// Crashes read from crash files, for the registry's life.
    pub(crate) crashes: u64,
    /// When either count last rose.
    rose_at: Option<Instant>,
    /// When the held condition fired: the rise that found it inactive.
    since: Option<SystemTime>,
}

impl ClientCount {
    fn held(&self, now: Instant, hold: Duration) -> bool {
        self.rose_at
            .is_some_and(|at| now.saturating_duration_since(at) <= hold)
    }

    /// A count rose at `now`; `at` is when it happened on the wall clock.
    /// The condition keeps its `since` while it is held.
    #[cfg_attr(not(feature = "sidecar"), allow(dead_code))] // written by the sidecar's ingest only
    pub(crate) fn rose(&mut self, now: Instant, at: SystemTime, hold: Duration) {
        if !self.held(now, hold) {
            self.since = Some(at);
        }
        self.rose_at = Some(now);
    }
}

/// One tracked map.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) id: MapId,
    pub(crate) writer: Writer,
    pub(crate) detectors: DetectorConfig,
    detector_state: DetectorState,
    pub(crate) folded: bool,
    pub(crate) stats: MapStats,
    growth: Option<GrowthSeen>,
    pub(crate) client: [ClientCount; MisuseKind::ALL.len()],
    pub(crate) lifecycle: Lifecycle,
}

impl Row {
    fn new(id: MapId, writer: Writer, detectors: DetectorConfig, folded: bool) -> Self {
        Row {
            id,
            writer,
            detectors,
            detector_state: DetectorState::default(),
            folded,
            stats: MapStats::default(),
            growth: None,
            client: [ClientCount::default(); MisuseKind::ALL.len()],
            lifecycle: Lifecycle::Live,
        }
    }

    /// Takes a report's stats (or a publication's, without a start time).
    pub(crate) fn set_stats(
        &mut self,
        stats: MapStats,
        growth_started: Option<Instant>,
        now: Instant,
    ) {
        self.stats = stats;
        self.growth = track_growth(self.growth, stats.growth, growth_started, now);
    }

    fn crashes(&self) -> u64 {
        self.client.iter().map(|c| c.crashes).sum()
    }

    fn source_key(&self) -> Option<SourceKey> {
        self.id.source.clone().zip(self.id.instance.clone())
    }

    /// The row as exporters see it at `now`.
    fn view(&self, now: Instant, with_crashes: bool) -> MapSnapshot {
        let mut misuse = *self.detector_state.firings();
        let mut conditions = self.detector_state.active().to_vec();
        for kind in MisuseKind::CLIENT {
            let count = &self.client[kind.index()];
            let crashes = if with_crashes { count.crashes } else { 0 };
            let total = count.reported + crashes;
            misuse[kind.index()] += total;
            if let (true, Some(since)) = (count.held(now, self.detectors.event_hold), count.since) {
                let mut details = Vec::new();
                let who = self.id.reporter().unwrap_or_default();
                if count.reported > 0 {
                    details.push(format!(
                        "{} {kind} events reported by {who}",
                        count.reported
                    ));
                }
                if crashes > 0 {
                    details.push(format!(
                        "{crashes} {kind} crashes of {who} read from crash files"
                    ));
                }
                conditions.push(Condition {
                    kind,
                    since,
                    value: total as f64,
                    details: details.join("; "),
                });
            }
        }
        MapSnapshot {
            id: self.id.clone(),
            stats: self.stats,
            conditions,
            misuse,
            dropped: !self.lifecycle.is_live(),
            misuse_only: matches!(self.writer, Writer::CrashOnly),
        }
    }

    /// What a folded row leaves in the `_overflow` sum when counters go
    /// (removal, a restarted client): counters only, gauges leave with it.
    fn final_counters(&self, now: Instant, going: Going) -> MapSnapshot {
        let mut last = self.view(now, going == Going::All);
        last.conditions.clear();
        clear_gauges(&mut last.stats);
        if going == Going::ClientCounters {
            // The row keeps counting its detector firings.
            for (total, firings) in last.misuse.iter_mut().zip(self.detector_state.firings()) {
                *total -= firings;
            }
        }
        last
    }
}

/// Which of a folded row's counters leave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Going {
    /// The row is removed.
    All,
    /// The row stays for its crash counts only.
    AllButCrashes,
    /// A restarted client's counters start again; the row's own (detector
    /// firings, crash counts) go on.
    ClientCounters,
}

/// A reporting source as the registry keeps it: its rows and its status.
#[derive(Debug)]
pub(crate) struct SourceRows {
    pub(crate) rows: BTreeSet<u64>,
    pub(crate) last_report: SystemTime,
    pub(crate) stale_since: Option<Instant>,
}

/// The ingest endpoint's counters, once one is attached.
#[derive(Debug, Default)]
pub(crate) struct IngestCounters {
    pub(crate) requests: BTreeMap<u16, u64>,
    pub(crate) rejected: BTreeMap<String, u64>,
    /// `None` while no crash directory is watched, so a sidecar without
    /// one exports no such series.
    pub(crate) crash_files: Option<BTreeMap<String, u64>>,
}

/// Everything behind the registry's lock.
#[derive(Debug)]
pub(crate) struct Table {
    rows: BTreeMap<u64, Row>,
    keys: HashMap<MapId, u64>,
    next_id: u64,
    max_maps: usize,
    /// Live rows with series of their own: what the cardinality cap counts.
    own_series: usize,
    /// Rows that only crash files speak of.
    pub(crate) crash_only: usize,
    events_rx: Receiver<Event>,
    events: EventRing,
    limiter: MisuseLimiter,
    overflow_folds: u64,
    registrations: u64,
    /// Counters of folded rows that left, kept so the `_overflow` series'
    /// counters never go down.
    retired: Option<MapSnapshot>,
    pub(crate) sources: BTreeMap<SourceKey, SourceRows>,
    pub(crate) ingest: Option<IngestCounters>,
}

/// Moves a row to another stage of its life, keeping the cap's count.
fn set_lifecycle(row: &mut Row, to: Lifecycle, own_series: &mut usize) {
    if !row.folded {
        match (row.lifecycle.is_live(), to.is_live()) {
            (true, false) => *own_series -= 1,
            (false, true) => *own_series += 1,
            _ => {}
        }
    }
    row.lifecycle = to;
}

impl Table {
    pub(crate) fn new(max_maps: usize, events_rx: Receiver<Event>, recent_events: usize) -> Self {
        Table {
            rows: BTreeMap::new(),
            keys: HashMap::new(),
            next_id: 0,
            max_maps,
            own_series: 0,
            crash_only: 0,
            events_rx,
            events: EventRing::new(recent_events),
            limiter: MisuseLimiter::default(),
            overflow_folds: 0,
            registrations: 0,
            retired: None,
            sources: BTreeMap::new(),
            ingest: None,
        }
    }

    /// The row of `id`, if tracked.
    pub(crate) fn find(&self, id: &MapId) -> Option<u64> {
        self.keys.get(id).copied()
    }

    #[cfg_attr(not(feature = "sidecar"), allow(dead_code))] // the sidecar's ingest only
    pub(crate) fn row(&self, row: u64) -> Option<&Row> {
        self.rows.get(&row)
    }

    pub(crate) fn row_mut(&mut self, row: u64) -> Option<&mut Row> {
        self.rows.get_mut(&row)
    }

    /// Adds a row, folded into `_overflow` when the cap of live rows with
    /// series of their own is reached. One rule for both writers.
    pub(crate) fn insert(&mut self, id: MapId, writer: Writer, detectors: DetectorConfig) -> u64 {
        let folded = self.own_series >= self.max_maps;
        if folded {
            self.overflow_folds += 1;
        } else {
            self.own_series += 1;
        }
        self.registrations += 1;
        if matches!(writer, Writer::CrashOnly) {
            self.crash_only += 1;
        }
        let row = self.next_id;
        self.next_id += 1;
        self.keys.insert(id.clone(), row);
        self.rows
            .insert(row, Row::new(id, writer, detectors, folded));
        row
    }

    #[cfg_attr(not(feature = "sidecar"), allow(dead_code))] // the sidecar's ingest only
    pub(crate) fn set_lifecycle(&mut self, row: u64, to: Lifecycle) {
        if let Some(r) = self.rows.get_mut(&row) {
            set_lifecycle(r, to, &mut self.own_series);
        }
    }

    /// A reported row's writer is back (a crash-only row a report now
    /// describes).
    #[cfg_attr(not(feature = "sidecar"), allow(dead_code))] // the sidecar's ingest only
    pub(crate) fn set_reported(&mut self, row: u64) {
        if let Some(r) = self.rows.get_mut(&row) {
            if matches!(r.writer, Writer::CrashOnly) {
                r.writer = Writer::Reported;
                self.crash_only -= 1;
            }
        }
    }

    /// Folds a folded row's counters into the retired sum before they are
    /// lost (a restarted client starts again from zero).
    #[cfg_attr(not(feature = "sidecar"), allow(dead_code))] // the sidecar's ingest only
    pub(crate) fn retire_counters(&mut self, row: u64, now: Instant) {
        if let Some(r) = self.rows.get(&row).filter(|r| r.folded) {
            let last = r.final_counters(now, Going::ClientCounters);
            fold_into(&mut self.retired, last);
        }
    }

    /// Notices in-process maps dropped since the last look, so the cap
    /// counts only live ones. O(rows); registration calls it.
    pub(crate) fn notice_drops(&mut self, sink: &EventSink) {
        for row in self.rows.values_mut() {
            if let Writer::Local(entry) = &row.writer {
                let dropped = entry.dropped_at_ns.load(Ordering::Acquire);
                if let (Some(at), true) = (sink.instant_of(dropped), row.lifecycle.is_live()) {
                    set_lifecycle(row, Lifecycle::Dropped(at), &mut self.own_series);
                }
            }
        }
    }

    /// Removes a row. Its crash counts outlive it: a row with crashes stays
    /// as a crash-only row. A folded row's counters stay in `_overflow`.
    pub(crate) fn remove(&mut self, row: u64, now: Instant) {
        let Some(mut r) = self.rows.remove(&row) else {
            return;
        };
        let keep = r.crashes() > 0 && !matches!(r.writer, Writer::CrashOnly);
        if r.folded {
            let going = if keep {
                Going::AllButCrashes
            } else {
                Going::All
            };
            fold_into(&mut self.retired, r.final_counters(now, going));
        }
        if keep {
            r.writer = Writer::CrashOnly;
            r.stats = MapStats::default();
            r.detector_state = DetectorState::default();
            r.growth = None;
            for count in &mut r.client {
                count.reported = 0;
            }
            set_lifecycle(&mut r, Lifecycle::Live, &mut self.own_series);
            self.crash_only += 1;
            if let Some(key) = r.source_key() {
                if let Some(source) = self.sources.get_mut(&key) {
                    source.rows.remove(&row);
                }
            }
            self.rows.insert(row, r);
            return;
        }
        set_lifecycle(&mut r, Lifecycle::Dropped(now), &mut self.own_series);
        if matches!(r.writer, Writer::CrashOnly) {
            self.crash_only -= 1;
        }
        if let Some(key) = r.source_key() {
            if let Some(source) = self.sources.get_mut(&key) {
                source.rows.remove(&row);
            }
        }
        self.keys.remove(&r.id);
    }

    /// Puts an event in the ring. A misuse the registry itself produced
    /// (a detector firing, a client report, a crash) passes the misuse
    /// rate limit here; one from a map's thread passed it there.
    pub(crate) fn push(&mut self, mut event: Event, sink: &EventSink, now: Instant) {
        if let Event::Misuse(misuse) = &mut event {
            if let (false, Some(hooks)) = (misuse.traced, sink.hooks.get()) {
                let second = sink.second(now);
                if !self
                    .limiter
                    .allow(&misuse.map, second, hooks.misuse_per_second)
                {
                    misuse.traced = true;
                    sink.suppressed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.events.push(event);
    }

    /// Moves queued in-process events into the ring.
    pub(crate) fn drain_queue(&mut self) {
        while let Ok(event) = self.events_rx.try_recv() {
            self.events.push(event);
        }
    }

    pub(crate) fn events_since(&mut self, cursor: u64) -> super::events::EventBatch {
        self.drain_queue();
        self.events.since(cursor)
    }

    /// The one observation: reads every in-process map's publication, runs
    /// the detectors over every live row, expires dropped rows past the
    /// grace period, folds rows past the cap into `_overflow`, and pushes
    /// the detectors' firings into the event ring.
    pub(crate) fn observe(
        &mut self,
        sink: &EventSink,
        grace: Duration,
        now: Instant,
        wall: SystemTime,
    ) -> RegistrySnapshot {
        self.drain_queue();
        let mut maps = Vec::with_capacity(self.rows.len());
        let mut overflow: Option<MapSnapshot> = None;
        let mut expired = Vec::new();
        let mut fired = Vec::new();
        let mut registered = 0;
        let own_series = &mut self.own_series;
        for (&id, row) in self.rows.iter_mut() {
            if let Writer::Local(entry) = &row.writer {
                // The drop flag first: a map dropped after it was read
                // publishes its final stats before setting it, so the stats
                // read next are at least as new as the flag says.
                let dropped = sink.instant_of(entry.dropped_at_ns.load(Ordering::Acquire));
                if let Some((stats, growth_ns)) = entry.shared.load() {
                    row.set_stats(stats, sink.instant_of(growth_ns), now);
                }
                if let (Some(at), true) = (dropped, row.lifecycle.is_live()) {
                    set_lifecycle(row, Lifecycle::Dropped(at), own_series);
                }
            }
            match row.lifecycle {
                Lifecycle::Dropped(at) if past_grace(at, now, grace) => {
                    expired.push(id);
                    continue;
                }
                Lifecycle::Live if !matches!(row.writer, Writer::CrashOnly) => {
                    let growth_started = row.growth.map(|g| g.since);
                    let transitions = row.detector_state.observe(
                        &row.stats,
                        &row.detectors,
                        now,
                        wall,
                        growth_started,
                    );
                    fired.extend(transitions.into_iter().map(|t| (row.id.clone(), t)));
                }
                _ => {}
            }
            if !matches!(row.writer, Writer::CrashOnly) {
                registered += 1;
            }
            let snapshot = row.view(now, true);
            if row.folded {
                fold_into(&mut overflow, snapshot);
            } else {
                maps.push(snapshot);
            }
        }
        for id in expired {
            self.remove(id, now);
            // A row kept for its crashes shows at once as a crash-only row.
            if let Some(row) = self.rows.get(&id) {
                let snapshot = row.view(now, true);
                if row.folded {
                    fold_into(&mut overflow, snapshot);
                } else {
                    maps.push(snapshot);
                }
            }
        }
        if let Some(retired) = &self.retired {
            let mut retired = retired.clone();
            retired.conditions.clear();
            retired.dropped = false;
            match &mut overflow {
                Some(_) => fold_into(&mut overflow, retired),
                None => overflow = Some(retired),
            }
        }
        for (map, transition) in fired {
            if let Some(event) = transition_event(map, transition, wall) {
                self.push(event, sink, now);
            }
        }
        // In-process maps (no source) first, then by source and instance.
        maps.sort_by(|a, b| {
            let (a, b) = (&a.id, &b.id);
            (&a.source, &a.instance, &a.name, &a.labels).cmp(&(
                &b.source,
                &b.instance,
                &b.name,
                &b.labels,
            ))
        });
        maps.extend(overflow);
        RegistrySnapshot {
            maps,
            events_dropped: sink.dropped.load(Ordering::Relaxed),
            trace_events_suppressed: sink.suppressed.load(Ordering::Relaxed),
            overflow_folds: self.overflow_folds,
            registrations: self.registrations,
            recent_events: self.events.records(),
            maps_registered: registered,
            growth_durations: self.events.durations,
            ingest: self.ingest_stats(),
        }
    }

    fn ingest_stats(&self) -> Option<IngestStats> {
        let ingest = self.ingest.as_ref()?;
        Some(IngestStats {
            sources: self
                .sources
                .iter()
                .filter(|(_, s)| s.stale_since.is_none())
                .map(|((app, instance), s)| SourceStatus {
                    app: app.to_string(),
                    instance: instance.to_string(),
                    last_report: s.last_report,
                })
                .collect(),
            requests: ingest.requests.clone(),
            rejected: ingest.rejected.clone(),
            crash_files: ingest.crash_files.clone().unwrap_or_default(),
        })
    }
}

/// Logs a detector transition; a firing becomes a misuse event.
fn transition_event(map: MapId, transition: Transition, wall: SystemTime) -> Option<Event> {
    let source = map.reporter().unwrap_or_default();
    match transition {
        Transition::Fired(condition) => {
            tracing::warn!(
                map = %map.name,
                %source,
                kind = %condition.kind,
                details = %condition.details,
                "mapscope condition fired"
            );
            Some(Event::Misuse(MisuseEvent {
                map,
                kind: condition.kind,
                details: condition.details,
                at: wall,
                value: condition.value,
                trace: None,
                context: None,
                traced: false,
                site: None,
                pid: None,
            }))
        }
        Transition::Cleared(kind) => {
            tracing::info!(
                map = %map.name,
                %source,
                kind = %kind,
                "mapscope condition cleared"
            );
            None
        }
    }
}

/// Adds one folded map into the `_overflow` series.
fn fold_into(overflow: &mut Option<MapSnapshot>, map: MapSnapshot) {
    let total = overflow.get_or_insert_with(|| MapSnapshot {
        id: MapId::local(OVERFLOW_MAP.into(), Arc::new([])),
        stats: MapStats::default(),
        conditions: Vec::new(),
        misuse: [0; MisuseKind::ALL.len()],
        dropped: false,
        misuse_only: false,
    });
    fold_stats(&mut total.stats, &map.stats);
    for (sum, count) in total.misuse.iter_mut().zip(map.misuse) {
        *sum += count;
    }
    for condition in map.conditions {
        if !total.conditions.iter().any(|c| c.kind == condition.kind) {
            total.conditions.push(condition);
        }
    }
}

/// How `_overflow` combines the stats of the rows folded into it, from the
/// declaration (`map_stats!`): each gauge by its `fold` rule, counters
/// summed, derived stats recomputed from the result.
macro_rules! overflow_fold {
    (
        gauges { $( $(#[cfg($gcfg:meta)])? $(#[doc = $gdoc:literal])* $g:ident: $gty:ty, fold $gfold:ident
            $(, json $gjson:literal)? $(, wire $gwire:ident)? $(, metric $gmetric:literal $ghelp:literal)?; )* }
        derived { $( $(#[cfg($dcfg:meta)])? $(#[doc = $ddoc:literal])* $d:ident: $dty:ty = $dfn:path
            $(, json $djson:literal)? $(, metric $dmetric:literal $dhelp:literal)?; )* }
        counters { $( $(#[cfg($ccfg:meta)])? $(#[doc = $cdoc:literal])* $c:ident: $cty:ty
            $(, json $cjson:literal)? $(, wire $cwire:ident)? $(, metric $cmetric:literal $chelp:literal)?; )* }
    ) => {
        /// Adds one map's stats into `total`.
        fn fold_stats(total: &mut MapStats, map: &MapStats) {
            $( $(#[cfg($gcfg)])? fold_rule!($gfold, total.$g, map.$g); )*
            $( $(#[cfg($ccfg)])? { total.$c += map.$c; } )*
            $( $(#[cfg($dcfg)])? { total.$d = $dfn(total); } )*
        }

        /// Zeroes the gauges (and what derives from them): a row that
        /// leaves `_overflow` takes its state with it and leaves its
        /// counters.
        fn clear_gauges(stats: &mut MapStats) {
            $( $(#[cfg($gcfg)])? { stats.$g = Default::default(); } )*
            $( $(#[cfg($dcfg)])? { stats.$d = Default::default(); } )*
        }
    };
}

/// One gauge's `fold` rule.
macro_rules! fold_rule {
    (sum, $total:expr, $map:expr) => {
        $total += $map
    };
    (max, $total:expr, $map:expr) => {
        $total = $total.max($map)
    };
    (none, $total:expr, $map:expr) => {};
}

crate::map::map_stats!(overflow_fold);

#[cfg(test)]
mod tests {
    use super::*;

    fn growth(kind: GrowthKind, old_buckets: usize) -> Option<Growth> {
        Some(Growth {
            kind,
            old_buckets,
            evacuated_old_buckets: 0,
            entries_at_start: 0,
            helping_writes: 0,
        })
    }

    #[test]
    fn growth_start_is_the_writers_or_the_first_sighting() {
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(5);
        let t2 = t0 + Duration::from_secs(9);
        // A reported growth is dated by its first sighting, kept while it
        // is the same growth, and restarted by another one.
        let seen = track_growth(None, growth(GrowthKind::Double, 8), None, t0);
        let same = track_growth(seen, growth(GrowthKind::Double, 8), None, t1);
        assert_eq!(same.map(|g| g.since), Some(t0));
        let next = track_growth(same, growth(GrowthKind::Double, 16), None, t2);
        assert_eq!(next.map(|g| g.since), Some(t2));
        assert_eq!(track_growth(next, None, None, t2), None);
        // An in-process map says when its growth started.
        let own = track_growth(seen, growth(GrowthKind::Double, 8), Some(t1), t2);
        assert_eq!(own.map(|g| g.since), Some(t1));
    }

    #[test]
    fn a_held_client_condition_keeps_the_time_it_fired() {
        let hold = Duration::from_secs(300);
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let mut count = ClientCount::default();
        count.rose(t0, wall, hold);
        count.rose(
            t0 + Duration::from_secs(60),
            wall + Duration::from_secs(60),
            hold,
        );
        assert_eq!(count.since, Some(wall));
        assert!(count.held(t0 + Duration::from_secs(360), hold));
        assert!(!count.held(t0 + Duration::from_secs(361), hold));
        // After the hold, a new rise fires anew.
        let later = t0 + Duration::from_secs(400);
        count.rose(later, wall + Duration::from_secs(400), hold);
        assert_eq!(count.since, Some(wall + Duration::from_secs(400)));
    }
}
