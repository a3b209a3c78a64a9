//! The source lifecycle: which reporting processes the sidecar admits,
//! which process sent a report (the known one, a restarted one, a late one
//! from before a restart), which reports are retries, and when a source
//! has gone quiet (TTL).
//!
//! Sources are keyed by (app, instance). Their maps are rows of the
//! registry (`registry/reported.rs`): this module only decides, and the
//! registry applies, so a report is all or nothing and everything the
//! registry does (the cap, grace, detectors, the event ring) applies to
//! reported maps as to in-process ones.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use axum::http::StatusCode;

use super::convert::{check_counters, convert};
use super::protocol::{
    Report, ReportAccepted, ReportStatus, Timestamp, MAX_CLOCK_SKEW_SECONDS, MAX_SEQ_STEP,
};
use super::validate::{Limits, Rejection};
use crate::registry::Registry;

/// `source.started_at` may be at most [`MAX_CLOCK_SKEW_SECONDS`] ahead of
/// the sidecar's clock: a start time from the future would make every
/// real report of the process look like a late one (`stale`).
fn check_started_at(report: &Report, now: SystemTime) -> Result<(), Rejection> {
    let Some(started) = report.source.started_at else {
        return Ok(());
    };
    let skew = Duration::from_secs(MAX_CLOCK_SKEW_SECONDS);
    if started.system_time() > now + skew {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "started_at_in_future",
            format!(
                "source.started_at is {} but the sidecar's clock says {}: more than {MAX_CLOCK_SKEW_SECONDS} s in the future; send the process's real start time (and check the clocks)",
                crate::timestamp::format_rfc3339(started.system_time()),
                crate::timestamp::format_rfc3339(now),
            ),
            Some("source.started_at".into()),
            Some(MAX_CLOCK_SKEW_SECONDS),
        ));
    }
    Ok(())
}

/// A `seq` is at most [`MAX_SEQ_STEP`] away from the last one applied
/// from the same process. Forward, one report with a huge `seq` would
/// otherwise make every later one a `duplicate` (or drop every later
/// event) for the process's life. Backward, a `seq` that far below is no
/// retry: rejected rather than answered `duplicate`, it does not keep the
/// source alive, so a source a bad report left behind expires after
/// `--source-ttl` and the grace period, and starts over.
fn check_step(field: &str, seq: u64, last: u64) -> Result<(), Rejection> {
    if seq.abs_diff(last) > MAX_SEQ_STEP {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "seq_jump",
            format!(
                "{field} is {seq}, more than {MAX_SEQ_STEP} away from the last one applied from this process ({last}): add one per report or event (a restarted process sends a new source.started_at)"
            ),
            Some(field.to_owned()),
            Some(MAX_SEQ_STEP),
        ));
    }
    Ok(())
}

/// The fingerprint of a report with `seq` 1 and no `started_at`, the one
/// case where a retry and a restart carry the same `seq`: a retry resends
/// the same body, a restarted process sends other counts (and `sent_at`).
fn first_seq_fingerprint(report: &Report) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    if report.seq != 1 || report.source.started_at.is_some() {
        return None;
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    // UNWRAP: serialising a report (strings, numbers, maps) does not fail.
    serde_json::to_vec(report)
        .expect("a Report serialises")
        .hash(&mut hasher);
    Some(hasher.finish())
}

/// What the sidecar remembers of one reporting process.
#[derive(Debug, Clone, Copy)]
struct Source {
    started_at: Option<Timestamp>,
    last_seq: u64,
    /// Reports applied from this incarnation.
    reports: u64,
    /// The fingerprint of this incarnation's report with `seq` 1, sent
    /// without `started_at`: a `seq` 1 with another one is a restart, not
    /// a retry.
    first_seq: Option<u64>,
    last_event_seq: Option<u64>,
    /// When it last reported, on the registry's clock.
    last_report: Instant,
    /// Stale after this long without a report.
    ttl: Duration,
    stale: bool,
}

/// Every reporting source the sidecar tracks, writing into one registry.
///
/// ```
/// use mapscope::ingest::{Limits, Sources};
/// use mapscope::Registry;
///
/// let registry = Registry::new();
/// let sources = Sources::new(&registry, Limits::default());
/// let report = serde_json::from_str(r#"{"source": {"app": "checkout", "instance": "pod-1"},
///     "seq": 1, "maps": [{"name": "orders", "stats": {"entries": 3, "buckets": 1}}]}"#)?;
/// let accepted = sources.apply(report).expect("accepted");
/// assert_eq!(accepted.source, "checkout");
/// let snapshot = registry.snapshot();
/// let orders = snapshot.map("orders").expect("a row of the registry");
/// assert_eq!(orders.id.instance.as_deref(), Some("pod-1"));
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug)]
pub struct Sources {
    registry: Registry,
    limits: Limits,
    table: Mutex<BTreeMap<(String, String), Source>>,
}

impl Sources {
    /// Sources writing into `registry`, which exports the ingest metrics
    /// from now on.
    pub fn new(registry: &Registry, limits: Limits) -> Self {
        registry.enable_ingest();
        Sources {
            registry: registry.clone(),
            limits,
            table: Mutex::new(BTreeMap::new()),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The registry the sources write into.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<(String, String), Source>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a request by its answer (`mapscope_ingest_requests_total`,
    /// `mapscope_ingest_rejected_total`).
    pub fn count_request(&self, status: StatusCode, rejected: Option<&str>) {
        self.registry
            .count_ingest_request(status.as_u16(), rejected);
    }

    /// Applies a report that passed [`super::check`]. Either the whole
    /// report takes effect or none of it: every rule is checked before
    /// anything changes (see "Reports that cannot freeze a source" in
    /// docs/protocol.md).
    pub fn apply(&self, report: Report) -> Result<ReportAccepted, Rejection> {
        let now = self.registry.now();
        check_started_at(&report, self.registry.system_now())?;
        let mut table = self.lock();
        let key = (report.source.app.clone(), report.source.instance.clone());
        let known = table.get(&key).copied();
        if known.is_none() && table.len() >= self.limits.max_sources {
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
        let answer = |status, events_accepted, restarted| ReportAccepted {
            status,
            source: report.source.app.clone(),
            maps: report.maps.len(),
            events_accepted,
            restarted,
        };
        let first_seq = first_seq_fingerprint(&report);
        // Which process sent this report, relative to the one we know?
        let restarted = match known.filter(|s| s.reports > 0) {
            None => false,
            Some(source) => match (source.started_at, report.source.started_at) {
                (Some(known), Some(sent)) if sent > known => true,
                // A late report from the process before the restart.
                (Some(known), Some(sent)) if sent < known => {
                    return Ok(answer(ReportStatus::Stale, 0, false))
                }
                (Some(_), Some(_)) => false,
                // No start time to compare: `seq` 1 is a restart unless it
                // is this process's first report again (a retry); another
                // `seq` going down is a restart.
                _ => match first_seq {
                    Some(fingerprint) => source.first_seq != Some(fingerprint),
                    None => report.seq < source.last_seq,
                },
            },
        };
        let last_event_seq = known.filter(|_| !restarted).and_then(|s| s.last_event_seq);
        if let Some(source) = known.filter(|s| s.reports > 0 && !restarted) {
            check_step("seq", report.seq, source.last_seq)?;
            if report.seq <= source.last_seq {
                // A retry of a report already applied: only a sign of life.
                if let Some(source) = table.get_mut(&key) {
                    source.last_report = now;
                    source.stale = false;
                }
                self.registry.source_alive(&key.0, &key.1);
                return Ok(answer(ReportStatus::Duplicate, 0, false));
            }
        }
        if let Some(last) = last_event_seq {
            for (i, event) in report.events.iter().enumerate() {
                check_step(&format!("events[{i}].seq"), event.seq, last)?;
            }
        }
        let converted = convert(&report, restarted, last_event_seq);
        let held = self.registry.rows_held_besides(&converted);
        let max = self.limits.max_maps_per_source;
        if held + converted.maps.len() > max {
            return Err(Rejection::new(
                StatusCode::BAD_REQUEST,
                "too_many_maps",
                format!(
                    "{} maps in this report and {held} maps left out of earlier ones (kept for --grace-period) make {}; the limit is {max} per source (--max-maps-per-source): keep the set of maps stable",
                    converted.maps.len(),
                    held + converted.maps.len()
                ),
                Some("maps".into()),
                Some(max as u64),
            ));
        }
        if known.is_some_and(|s| s.reports > 0) && !restarted {
            let last = self.registry.last_reported(&converted);
            check_counters(&report, &converted, &last)?;
        }
        // Accepted: from here on, the report takes effect.
        let ttl = report
            .interval_seconds
            .and_then(|s| Duration::try_from_secs_f64(s * 3.0).ok())
            .unwrap_or_default()
            .max(self.limits.source_ttl);
        let source = table.entry(key).or_insert_with(|| Source {
            started_at: None,
            last_seq: 0,
            reports: 0,
            first_seq: None,
            last_event_seq: None,
            last_report: now,
            ttl,
            stale: false,
        });
        source.last_report = now;
        source.stale = false;
        source.ttl = ttl;
        if report.source.started_at.is_some() {
            source.started_at = report.source.started_at;
        }
        if restarted {
            // A new process: its counters start over, which Prometheus reads
            // as a counter reset; its seq and event seq start over too.
            source.reports = 0;
            source.first_seq = None;
        }
        source.last_seq = report.seq;
        source.reports += 1;
        if first_seq.is_some() {
            source.first_seq = first_seq;
        }
        source.last_event_seq = report
            .events
            .iter()
            .map(|e| e.seq)
            .chain(last_event_seq)
            .max();
        let events_accepted = converted.events.len();
        self.registry.apply_report(converted);
        Ok(answer(ReportStatus::Accepted, events_accepted, restarted))
    }

    /// Marks sources that missed their TTL stale, and has the registry
    /// remove sources stale for longer than its grace period. Run it on a
    /// timer (the sidecar does, once per second); scrapes never do.
    pub fn sweep(&self) {
        let now = self.registry.now();
        let mut table = self.lock();
        let mut newly_stale = Vec::new();
        for ((app, instance), source) in table.iter_mut() {
            if !source.stale && now.saturating_duration_since(source.last_report) > source.ttl {
                tracing::warn!(%app, %instance, "source stopped reporting; marked stale");
                source.stale = true;
                newly_stale.push((app.clone(), instance.clone()));
            }
        }
        for key in self.registry.sweep_sources(&newly_stale) {
            tracing::info!(app = %key.0, instance = %key.1, "stale source removed");
            table.remove(&key);
        }
    }
}
