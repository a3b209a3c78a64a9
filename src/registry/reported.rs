//! The table's second writer: what the sidecar's ingest puts in. Reports
//! become rows (one per app, instance, map and labels), the source
//! lifecycle (TTL, stale, removal) moves them through their life, crash
//! files count into them, and the ingest endpoint's own counters live here
//! as ordinary registry state.
//!
//! The ingest module decides (admission, restart and duplicate
//! classification, TTL); this module applies its decisions to the table,
//! under the registry's lock, so a report is all or nothing.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::SystemTime;

use crate::detect::MisuseKind;
use crate::map::MapStats;

use super::events::{CodeSite, Event, MapId, MisuseEvent};
use super::table::{past_grace, IngestCounters, Lifecycle, SourceKey, SourceRows, Writer};
use super::{Registry, UNKNOWN_MAP};

/// Most rows that only crash files speak of. A crash of another map past
/// it counts under its process's `_unknown` row instead.
pub(crate) const MAX_CRASH_ROWS: usize = 1000;

/// Most `_unknown` rows created past [`MAX_CRASH_ROWS`], one per app and
/// instance. Past both, a crash is counted only in
/// `mapscope_crash_files_total` (and logged): memory stays bounded whatever
/// the files say.
pub(crate) const MAX_FOLD_ROWS: usize = 64;

/// One map of a report, converted from the protocol (`ingest/convert.rs`).
#[derive(Debug, Clone)]
pub(crate) struct ReportedRow {
    pub(crate) name: Arc<str>,
    /// Sorted by name.
    pub(crate) labels: Arc<[(String, String)]>,
    pub(crate) stats: MapStats,
    /// The client's cumulative counts of the client misuse kinds, by
    /// [`MisuseKind::index`].
    pub(crate) misuse: [u64; MisuseKind::ALL.len()],
}

/// A report the ingest accepted and classified.
#[derive(Debug, Clone)]
pub(crate) struct SourceReport {
    pub(crate) app: Arc<str>,
    pub(crate) instance: Arc<str>,
    /// A new process of the source: its counters start again from zero.
    pub(crate) restarted: bool,
    /// Every map the source has now; the others leave.
    pub(crate) maps: Vec<ReportedRow>,
    /// Its new events, already deduplicated.
    pub(crate) events: Vec<Event>,
}

/// A map crash read from a crash file.
#[derive(Debug, Clone)]
pub(crate) struct CrashRecord {
    /// The crashed process's app (`source`) and instance (`source_instance`).
    pub(crate) app: String,
    pub(crate) instance: String,
    pub(crate) pid: u32,
    /// What killed it.
    pub(crate) kind: MisuseKind,
    /// The map, or `_unknown`, with its sorted labels.
    pub(crate) map: String,
    pub(crate) labels: Vec<(String, String)>,
    /// The application frame that did it.
    pub(crate) site: Option<CodeSite>,
    /// When it crashed (the crash log's modification time).
    pub(crate) at: SystemTime,
}

impl Registry {
    /// An ingest endpoint writes into this registry from now on: its
    /// metrics (`mapscope_sources`, `mapscope_ingest_*`) are exported.
    pub(crate) fn enable_ingest(&self) {
        self.lock()
            .ingest
            .get_or_insert_with(IngestCounters::default);
    }

    /// Starts exporting `mapscope_crash_files_total`, every result at 0.
    pub(crate) fn enable_crash_files(&self, results: &[&str]) {
        let mut table = self.lock();
        let ingest = table.ingest.get_or_insert_with(IngestCounters::default);
        let counts = ingest.crash_files.get_or_insert_with(Default::default);
        for result in results {
            counts.entry((*result).to_owned()).or_insert(0);
        }
    }

    /// Counts an ingest request by its answer, and a rejection by reason.
    pub(crate) fn count_ingest_request(&self, status: u16, rejected: Option<&str>) {
        let mut table = self.lock();
        let ingest = table.ingest.get_or_insert_with(IngestCounters::default);
        *ingest.requests.entry(status).or_default() += 1;
        if let Some(reason) = rejected {
            *ingest.rejected.entry(reason.to_owned()).or_default() += 1;
        }
    }

    /// Counts one processed crash file pair by result.
    pub(crate) fn count_crash_file(&self, result: &str) {
        let mut table = self.lock();
        let ingest = table.ingest.get_or_insert_with(IngestCounters::default);
        *ingest
            .crash_files
            .get_or_insert_with(Default::default)
            .entry(result.to_owned())
            .or_default() += 1;
    }

    /// Applies an accepted report: the source's rows take the report's
    /// stats and counts (rows are created, folded past the cap, on first
    /// sight), rows the report no longer lists are dropped (kept for the
    /// grace period, like a dropped in-process map), a stale source is live
    /// again, and the events enter the ring.
    pub(crate) fn apply_report(&self, report: SourceReport) {
        let (now, wall) = (self.now(), self.system_now());
        let detectors = self.inner.config.detectors;
        let sink = &self.inner.sink;
        let mut table = self.lock();
        let key: SourceKey = (report.app.clone(), report.instance.clone());
        let previous = table
            .sources
            .remove(&key)
            .map(|s| s.rows)
            .unwrap_or_default();
        let mut current = BTreeSet::new();
        for map in report.maps {
            let id = MapId::reported(map.name, map.labels, key.0.clone(), key.1.clone());
            let row = match table.find(&id) {
                Some(row) => row,
                None => table.insert(id, Writer::Reported, detectors),
            };
            table.set_reported(row);
            if report.restarted {
                table.retire_counters(row, now);
            }
            table.set_lifecycle(row, Lifecycle::Live);
            let Some(r) = table.row_mut(row) else {
                continue;
            };
            r.set_stats(map.stats, None, now);
            let hold = r.detectors.event_hold;
            for kind in MisuseKind::CLIENT {
                let count = &mut r.client[kind.index()];
                if report.restarted {
                    count.reported = 0;
                }
                let reported = map.misuse[kind.index()];
                if reported > count.reported {
                    count.rose(now, wall, hold);
                }
                count.reported = reported;
            }
            current.insert(row);
        }
        for row in previous.difference(&current).copied().collect::<Vec<_>>() {
            let Some(r) = table.row_mut(row) else {
                continue;
            };
            if !matches!(r.writer, Writer::Reported) {
                continue;
            }
            if !matches!(r.lifecycle, Lifecycle::Dropped(_)) {
                table.set_lifecycle(row, Lifecycle::Dropped(now));
            }
            current.insert(row);
        }
        table.sources.insert(
            key,
            SourceRows {
                rows: current,
                last_report: wall,
                stale_since: None,
            },
        );
        for event in report.events {
            table.push(event, sink, now);
        }
    }

    /// The stats and client misuse counts last applied for each map of
    /// `report` (`None` for a map the table does not hold as a reported
    /// row): what the ingest compares a report's counters with.
    pub(crate) fn last_reported(
        &self,
        report: &SourceReport,
    ) -> Vec<Option<(MapStats, [u64; MisuseKind::ALL.len()])>> {
        let table = self.lock();
        report
            .maps
            .iter()
            .map(|map| {
                let id = MapId::reported(
                    map.name.clone(),
                    map.labels.clone(),
                    report.app.clone(),
                    report.instance.clone(),
                );
                let r = table.row(table.find(&id)?)?;
                if !matches!(r.writer, Writer::Reported) {
                    return None;
                }
                Some((r.stats, r.client.map(|c| c.reported)))
            })
            .collect()
    }

    /// How many rows `report`'s source holds besides the maps of the
    /// report: the maps it left out of an earlier report, kept for the
    /// grace period. They count against the source's series budget, so a
    /// source cannot grow its series by sending new maps in every report.
    pub(crate) fn rows_held_besides(&self, report: &SourceReport) -> usize {
        let (now, grace) = (self.now(), self.inner.config.grace_period);
        let table = self.lock();
        let key: SourceKey = (report.app.clone(), report.instance.clone());
        let Some(source) = table.sources.get(&key) else {
            return 0;
        };
        let listed: BTreeSet<u64> = report
            .maps
            .iter()
            .filter_map(|map| {
                table.find(&MapId::reported(
                    map.name.clone(),
                    map.labels.clone(),
                    key.0.clone(),
                    key.1.clone(),
                ))
            })
            .collect();
        source
            .rows
            .iter()
            .filter(|row| !listed.contains(row))
            .filter(|&&row| {
                // A row past its grace goes at the next observation.
                table.row(row).is_some_and(|r| {
                    matches!(r.writer, Writer::Reported)
                        && !matches!(r.lifecycle, Lifecycle::Dropped(at) if past_grace(at, now, grace))
                })
            })
            .count()
    }

    /// A source's report that changes nothing (a retry already applied) is
    /// still a sign of life: its last-report time moves, and a stale source
    /// is live again.
    pub(crate) fn source_alive(&self, app: &str, instance: &str) {
        let wall = self.system_now();
        let mut table = self.lock();
        let key: SourceKey = (app.into(), instance.into());
        let Some(source) = table.sources.get_mut(&key) else {
            return;
        };
        source.last_report = wall;
        source.stale_since = None;
        let rows: Vec<u64> = source.rows.iter().copied().collect();
        for row in rows {
            if table
                .row_mut(row)
                .is_some_and(|r| matches!(r.lifecycle, Lifecycle::Stale(_)))
            {
                table.set_lifecycle(row, Lifecycle::Live);
            }
        }
    }

    /// The source lifecycle's timer step: marks `newly_stale` sources stale
    /// now (their rows keep their last values, and the detectors stop
    /// evaluating them), and removes the sources stale for longer than the
    /// grace period, with their rows. Returns the sources removed.
    pub(crate) fn sweep_sources(&self, newly_stale: &[(String, String)]) -> Vec<(String, String)> {
        let now = self.now();
        let grace = self.inner.config.grace_period;
        let mut table = self.lock();
        for (app, instance) in newly_stale {
            let key: SourceKey = (app.as_str().into(), instance.as_str().into());
            let Some(source) = table.sources.get_mut(&key) else {
                continue;
            };
            source.stale_since = Some(now);
            let rows: Vec<u64> = source.rows.iter().copied().collect();
            for row in rows {
                if table
                    .row_mut(row)
                    .is_some_and(|r| r.lifecycle == Lifecycle::Live)
                {
                    table.set_lifecycle(row, Lifecycle::Stale(now));
                }
            }
        }
        let expired: Vec<SourceKey> = table
            .sources
            .iter()
            .filter(|(_, s)| s.stale_since.is_some_and(|at| past_grace(at, now, grace)))
            .map(|(key, _)| key.clone())
            .collect();
        for key in &expired {
            if let Some(source) = table.sources.remove(key) {
                for row in source.rows {
                    table.remove(row, now);
                }
            }
        }
        expired
            .into_iter()
            .map(|(app, instance)| (app.to_string(), instance.to_string()))
            .collect()
    }

    /// Counts a map crash into its row (the reported map of the same app,
    /// instance, map and labels, or a crash-only row) and puts a misuse
    /// event in the ring. Returns the map it was counted under (its own, or
    /// `_unknown` past the row cap), or `None` when the cap left no row.
    pub(crate) fn record_crash(&self, crash: CrashRecord) -> Option<Arc<str>> {
        let now = self.now();
        let detectors = self.inner.config.detectors;
        let sink = &self.inner.sink;
        let mut table = self.lock();
        let (app, instance): (Arc<str>, Arc<str>) =
            (crash.app.as_str().into(), crash.instance.as_str().into());
        let id = MapId::reported(
            crash.map.as_str().into(),
            crash.labels.into(),
            app.clone(),
            instance.clone(),
        );
        let row = match table.find(&id) {
            Some(row) => row,
            None if table.crash_only < MAX_CRASH_ROWS => {
                table.insert(id, Writer::CrashOnly, detectors)
            }
            None => {
                let fold = MapId::reported(UNKNOWN_MAP.into(), Arc::new([]), app, instance);
                match table.find(&fold) {
                    Some(row) => row,
                    None if table.crash_only < MAX_CRASH_ROWS + MAX_FOLD_ROWS => {
                        table.insert(fold, Writer::CrashOnly, detectors)
                    }
                    None => return None,
                }
            }
        };
        let r = table.row_mut(row)?;
        let hold = r.detectors.event_hold;
        let count = &mut r.client[crash.kind.index()];
        count.crashes += 1;
        count.rose(now, crash.at, hold);
        let map = r.id.clone();
        let site = crash
            .site
            .as_ref()
            .map_or_else(|| "an unknown site".to_owned(), ToString::to_string);
        let details = format!(
            "{} crashed {} (instance {}, pid {}) at {site}",
            crash.kind, crash.app, crash.instance, crash.pid
        );
        let name = map.name.clone();
        table.push(
            Event::Misuse(MisuseEvent {
                map,
                kind: crash.kind,
                details,
                at: crash.at,
                value: 0.0,
                trace: None,
                context: None,
                traced: false,
                site: crash.site,
                pid: Some(crash.pid),
            }),
            sink,
            now,
        );
        Some(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::ManualClock;

    fn crash(app: &str, instance: &str, map: &str) -> CrashRecord {
        CrashRecord {
            app: app.into(),
            instance: instance.into(),
            pid: 7,
            kind: MisuseKind::ConcurrentWrite,
            map: map.into(),
            labels: vec![("tenant".into(), "acme".into())],
            site: None,
            at: SystemTime::UNIX_EPOCH,
        }
    }

    fn report(restarted: bool, entries: usize, inserts: u64, nil_writes: u64) -> SourceReport {
        let mut misuse = [0; MisuseKind::ALL.len()];
        misuse[MisuseKind::NilMapWrite.index()] = nil_writes;
        SourceReport {
            app: "app".into(),
            instance: "pod".into(),
            restarted,
            maps: vec![ReportedRow {
                name: "m".into(),
                labels: Arc::new([]),
                stats: MapStats {
                    entries,
                    inserts,
                    ..MapStats::default()
                },
                misuse,
            }],
            events: Vec::new(),
        }
    }

    /// A folded reported map whose client restarts: the `_overflow`
    /// counters keep the old totals and add the new ones, and the row's own
    /// detector firings are not counted twice.
    #[test]
    fn a_restart_never_takes_overflow_counters_down_nor_counts_firings_twice() {
        let registry = Registry::builder()
            .clock(ManualClock::new())
            .max_maps(0)
            .detectors(
                crate::DetectorConfig::default()
                    .with_max_entries(Some(1))
                    .with_growth_windows(0),
            )
            .build();
        registry.apply_report(report(false, 5, 100, 2));
        let overflow = |registry: &Registry| {
            let snapshot = registry.snapshot();
            assert_eq!(snapshot.maps.len(), 1, "{:?}", snapshot.maps);
            snapshot.maps[0].clone()
        };
        let before = overflow(&registry);
        assert_eq!(&*before.id.name, crate::registry::OVERFLOW_MAP);
        assert_eq!(before.stats.inserts, 100);
        assert_eq!(before.misuse_count(MisuseKind::UnboundedGrowth), 1);
        assert_eq!(before.misuse_count(MisuseKind::NilMapWrite), 2);
        registry.apply_report(report(true, 5, 10, 1));
        let after = overflow(&registry);
        assert_eq!(after.stats.inserts, 110);
        assert_eq!(after.stats.entries, 5, "gauges follow the live map");
        assert_eq!(after.misuse_count(MisuseKind::UnboundedGrowth), 1);
        assert_eq!(after.misuse_count(MisuseKind::NilMapWrite), 3);
    }

    #[test]
    fn crash_rows_are_bounded_and_extras_fold_into_unknown() {
        let registry = Registry::builder()
            .clock(ManualClock::new())
            .max_maps(usize::MAX)
            .build();
        for i in 0..MAX_CRASH_ROWS {
            let name = format!("m{i}");
            assert_eq!(
                registry.record_crash(crash("a", "p", &name)).as_deref(),
                Some(name.as_str())
            );
        }
        // An existing row still counts under its own name.
        assert_eq!(
            registry.record_crash(crash("a", "p", "m0")).as_deref(),
            Some("m0")
        );
        // A new one folds into its process's _unknown.
        for name in ["new", "newer"] {
            assert_eq!(
                registry.record_crash(crash("a", "p", name)).as_deref(),
                Some(UNKNOWN_MAP)
            );
        }
        // One _unknown row per app and instance, up to MAX_FOLD_ROWS.
        for i in 1..MAX_FOLD_ROWS {
            let app = format!("app{i}");
            assert!(registry.record_crash(crash(&app, "p", "x")).is_some());
        }
        assert!(registry
            .record_crash(crash("one-too-many", "p", "x"))
            .is_none());
        let snapshot = registry.snapshot();
        assert_eq!(snapshot.maps.len(), MAX_CRASH_ROWS + MAX_FOLD_ROWS);
        assert_eq!(
            snapshot.maps_registered, 0,
            "crash rows are no registered maps"
        );
        let m0 = snapshot.maps.iter().find(|m| &*m.id.name == "m0").unwrap();
        assert_eq!(m0.misuse_count(MisuseKind::ConcurrentWrite), 2);
        assert!(m0.misuse_only);
        assert_eq!(m0.id.instance.as_deref(), Some("p"));
    }
}
