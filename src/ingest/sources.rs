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
use std::time::{Duration, Instant};

use axum::http::StatusCode;

use super::convert::convert;
use super::protocol::{Report, ReportAccepted, ReportStatus, Timestamp};
use super::validate::{Limits, Rejection};
use crate::registry::Registry;

/// What the sidecar remembers of one reporting process.
#[derive(Debug)]
struct Source {
    started_at: Option<Timestamp>,
    last_seq: u64,
    /// Reports applied from this incarnation.
    reports: u64,
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
    /// report takes effect or (too many sources) none of it.
    pub fn apply(&self, report: Report) -> Result<ReportAccepted, Rejection> {
        let now = self.registry.now();
        let mut table = self.lock();
        let key = (report.source.app.clone(), report.source.instance.clone());
        if !table.contains_key(&key) && table.len() >= self.limits.max_sources {
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
        let source = table.entry(key.clone()).or_insert_with(|| Source {
            started_at: report.source.started_at,
            last_seq: 0,
            reports: 0,
            last_event_seq: None,
            last_report: now,
            ttl,
            stale: false,
        });
        let answer = |status, events_accepted, restarted| ReportAccepted {
            status,
            source: report.source.app.clone(),
            maps: report.maps.len(),
            events_accepted,
            restarted,
        };
        // Which process sent this report, relative to the one we know?
        let (known, sent) = (source.started_at, report.source.started_at);
        let lower_seq = source.reports > 0 && report.seq < source.last_seq;
        let restarted = match (known, sent) {
            (Some(known), Some(sent)) if sent > known => true,
            // A late report from the process before the restart.
            (Some(known), Some(sent)) if sent < known => {
                return Ok(answer(ReportStatus::Stale, 0, false))
            }
            (Some(_), Some(_)) => false,
            // No start time to compare: a sequence going down is a restart.
            _ => lower_seq,
        };
        source.last_report = now;
        source.stale = false;
        source.ttl = ttl;
        if report.source.started_at.is_some() {
            source.started_at = report.source.started_at;
        }
        if restarted {
            // A new process: its counters start over, which Prometheus reads
            // as a counter reset; its seq and event seq start over too.
            source.last_event_seq = None;
            source.reports = 0;
        } else if source.reports > 0 && report.seq <= source.last_seq {
            // A retry of a report already applied: only a sign of life.
            self.registry.source_alive(&key.0, &key.1);
            return Ok(answer(ReportStatus::Duplicate, 0, false));
        }
        source.last_seq = report.seq;
        source.reports += 1;
        let converted = convert(&report, restarted, source.last_event_seq);
        if let Some(max) = report
            .events
            .iter()
            .map(|e| e.seq)
            .filter(|seq| source.last_event_seq.is_none_or(|last| *seq > last))
            .max()
        {
            source.last_event_seq = Some(max);
        }
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
