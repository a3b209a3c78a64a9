//! The Rust reporter: pushes a registry's maps and events to a `mapscope`
//! sidecar, for applications that run mapscope next to them rather than
//! serving `/metrics` themselves.
//!
//! Every `interval` it sends the registry's latest snapshot (counters are
//! cumulative, so only the latest matters) plus the events since the last
//! accepted report. On failure it retries with exponential backoff and
//! jitter, keeps a bounded event buffer, and counts what it drops.

use std::collections::VecDeque;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::ingest::protocol::{
    EventKind, Report, ReportedCounters, ReportedEvent, ReportedMap, ReportedStats, SourceInfo,
    Timestamp,
};
use crate::registry::{Event, MapSnapshot, Registry};
use crate::MisuseKind;

/// Why a reporter could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReporterError {
    /// Neither `.endpoint()` nor `MAPSCOPE_ENDPOINT` gave a URL.
    #[error("no sidecar endpoint: call .endpoint(\"http://127.0.0.1:9848/v1/report\") or set MAPSCOPE_ENDPOINT")]
    NoEndpoint,
    /// The endpoint is not an http:// URL.
    #[error("endpoint {0:?} is not an http:// URL of the sidecar's /v1/report")]
    InvalidEndpoint(String),
    /// The HTTP client or the thread could not be created.
    #[error("cannot start the reporter: {0}")]
    Start(String),
}

/// Configures a [`Reporter`].
///
/// ```no_run
/// let registry = mapscope::Registry::global();
/// let reporter = mapscope::Reporter::builder()
///     .endpoint("http://127.0.0.1:9848/v1/report")
///     .interval(std::time::Duration::from_secs(10))
///     .app("checkout")
///     .spawn(registry)?;
/// # drop(reporter);
/// # Ok::<(), mapscope::reporter::ReporterError>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct ReporterBuilder {
    endpoint: Option<String>,
    interval: Duration,
    app: Option<String>,
    instance: Option<String>,
    token: Option<String>,
    max_buffered_events: usize,
    max_backoff: Duration,
    timeout: Duration,
}

/// Counters of a running reporter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReporterStats {
    /// Reports the sidecar accepted.
    pub reports_sent: u64,
    /// Attempts that failed (network error or non-2xx answer).
    pub reports_failed: u64,
    /// Events dropped because the buffer was full or the registry's
    /// recent-events window moved past them.
    pub events_dropped: u64,
}

#[derive(Debug, Default)]
struct Counters {
    sent: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

/// A running reporter. Stops (after one last report) when dropped.
#[derive(Debug)]
pub struct Reporter {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
}

impl Reporter {
    /// A builder with the defaults: endpoint from `MAPSCOPE_ENDPOINT`, app
    /// from `MAPSCOPE_APP` (else the executable's name), instance from
    /// `MAPSCOPE_INSTANCE` (else `HOSTNAME` and the pid), token from
    /// `MAPSCOPE_INGEST_TOKEN`, a report every 10 s.
    pub fn builder() -> ReporterBuilder {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        ReporterBuilder {
            endpoint: env("MAPSCOPE_ENDPOINT"),
            interval: Duration::from_secs(10),
            app: env("MAPSCOPE_APP"),
            instance: env("MAPSCOPE_INSTANCE"),
            token: env("MAPSCOPE_INGEST_TOKEN"),
            max_buffered_events: 1000,
            max_backoff: Duration::from_secs(60),
            timeout: Duration::from_secs(5),
        }
    }

    /// What the reporter has done so far.
    pub fn stats(&self) -> ReporterStats {
        ReporterStats {
            reports_sent: self.counters.sent.load(Ordering::Relaxed),
            reports_failed: self.counters.failed.load(Ordering::Relaxed),
            events_dropped: self.counters.dropped.load(Ordering::Relaxed),
        }
    }

    /// Sends one last report and stops.
    pub fn shutdown(mut self) {
        self.stop_thread();
    }

    fn stop_thread(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        self.stop_thread();
    }
}

impl ReporterBuilder {
    /// The sidecar's report URL, e.g. `http://127.0.0.1:9848/v1/report`.
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// Time between reports. Default 10 s.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// The application name (the `source` label).
    pub fn app(mut self, app: impl Into<String>) -> Self {
        self.app = Some(app.into());
        self
    }

    /// This process's instance name.
    pub fn instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    /// The sidecar's bearer token.
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Most events kept while the sidecar is unreachable. Default 1000.
    pub fn max_buffered_events(mut self, max: usize) -> Self {
        self.max_buffered_events = max;
        self
    }

    /// Longest wait between retries. Default 60 s.
    pub fn max_backoff(mut self, max: Duration) -> Self {
        self.max_backoff = max;
        self
    }

    /// Starts reporting `registry` on a thread of its own.
    pub fn spawn(self, registry: &Registry) -> Result<Reporter, ReporterError> {
        let endpoint = self.endpoint.clone().ok_or(ReporterError::NoEndpoint)?;
        if !endpoint.starts_with("http://") {
            return Err(ReporterError::InvalidEndpoint(endpoint));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(Counters::default());
        let worker = Worker {
            registry: registry.clone(),
            config: self,
            endpoint,
            stop: stop.clone(),
            counters: counters.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("mapscope-reporter".into())
            .spawn(move || worker.run())
            .map_err(|e| ReporterError::Start(e.to_string()))?;
        Ok(Reporter {
            stop,
            thread: Some(thread),
            counters,
        })
    }
}

struct Worker {
    registry: Registry,
    config: ReporterBuilder,
    endpoint: String,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
}

fn reported_map(map: &MapSnapshot) -> ReportedMap {
    ReportedMap {
        name: map.id.name.to_string(),
        labels: map.id.labels.iter().cloned().collect(),
        stats: ReportedStats::from(&map.stats),
        counters: ReportedCounters {
            misuse: MisuseKind::CLIENT
                .into_iter()
                .filter(|k| map.misuse_count(*k) > 0)
                .map(|k| (k.into(), map.misuse_count(k)))
                .collect(),
            ..ReportedCounters::from(&map.stats)
        },
    }
}

fn reported_event(seq: u64, event: &Event) -> Option<ReportedEvent> {
    let map = event.map();
    if map.source.is_some() {
        // Another process's event, held by this registry: not ours to report.
        return None;
    }
    let base = |kind, at: SystemTime| ReportedEvent {
        seq,
        kind,
        map: map.name.to_string(),
        labels: map.labels.iter().cloned().collect(),
        at: at.into(),
        duration_seconds: None,
        growth_kind: None,
        misuse_kind: None,
        trace_id: None,
        span_id: None,
        attributes: Default::default(),
    };
    match event {
        Event::GrowthFinished(g) => Some(ReportedEvent {
            duration_seconds: Some(g.duration.as_secs_f64()),
            growth_kind: Some(g.kind.into()),
            ..base(EventKind::Growth, g.started_at + g.duration)
        }),
        Event::Misuse(m) => Some(ReportedEvent {
            misuse_kind: Some(m.kind.into()),
            attributes: [("details".to_owned(), m.details.clone())].into(),
            ..base(EventKind::Misuse, m.at)
        }),
        _ => None,
    }
}

impl Worker {
    fn run(self) {
        let client = match reqwest::blocking::Client::builder()
            .timeout(self.config.timeout)
            .build()
        {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(%error, "mapscope reporter: cannot build the HTTP client");
                return;
            }
        };
        let app = self.config.app.clone().unwrap_or_else(|| {
            std::env::current_exe()
                .ok()
                .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "app".into())
        });
        let instance = self.config.instance.clone().unwrap_or_else(|| {
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
            format!("{host}-{}", std::process::id())
        });
        let source = SourceInfo {
            app,
            instance,
            language: Some("rust".into()),
            sdk: Some(format!("mapscope/{}", env!("CARGO_PKG_VERSION"))),
            started_at: Some(Timestamp::now()),
        };
        let mut seq = 0u64;
        let mut event_seq = 0u64;
        let mut cursor = 0u64;
        let mut buffer: VecDeque<ReportedEvent> = VecDeque::new();
        let mut failures = 0u32;
        let mut next = Instant::now();
        loop {
            let stopping = self.stop.load(Ordering::Relaxed);
            let now = Instant::now();
            if now < next && !stopping {
                std::thread::park_timeout(next - now);
                continue;
            }
            let snapshot = self.registry.snapshot();
            let batch = self.registry.events_since(cursor);
            cursor = batch.next;
            self.counters
                .dropped
                .fetch_add(batch.missed, Ordering::Relaxed);
            for record in &batch.events {
                if let Some(event) = reported_event(event_seq + 1, &record.event) {
                    event_seq += 1;
                    buffer.push_back(event);
                }
            }
            while buffer.len() > self.config.max_buffered_events {
                buffer.pop_front();
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
            seq += 1;
            let sending = buffer.len().min(1000);
            let report = Report {
                source: source.clone(),
                seq,
                sent_at: Some(Timestamp::now()),
                interval_seconds: Some(self.config.interval.as_secs_f64()),
                // This process's own live maps: not the `_overflow` sum
                // (the sidecar folds by its own cap, and rejects the name),
                // nor rows this registry holds for other processes.
                maps: snapshot
                    .maps
                    .iter()
                    .filter(|m| !m.dropped && m.id.source.is_none())
                    .filter(|m| &*m.id.name != crate::registry::OVERFLOW_MAP)
                    .map(reported_map)
                    .collect(),
                events: buffer.iter().take(sending).cloned().collect(),
            };
            let mut request = client.post(&self.endpoint).json(&report);
            if let Some(token) = &self.config.token {
                request = request.bearer_auth(token);
            }
            match request.send() {
                Ok(response) if response.status().is_success() => {
                    self.counters.sent.fetch_add(1, Ordering::Relaxed);
                    buffer.drain(..sending);
                    failures = 0;
                    next = Instant::now() + self.config.interval;
                }
                outcome => {
                    self.counters.failed.fetch_add(1, Ordering::Relaxed);
                    match outcome {
                        Ok(response) => {
                            let status = response.status();
                            let body = response.text().unwrap_or_default();
                            tracing::warn!(%status, %body, "mapscope reporter: the sidecar rejected a report");
                        }
                        Err(error) => {
                            tracing::debug!(%error, "mapscope reporter: cannot reach the sidecar")
                        }
                    }
                    failures = failures.saturating_add(1);
                    next = Instant::now() + self.backoff(failures);
                }
            }
            if stopping {
                break;
            }
        }
    }

    /// Exponential backoff from the interval, capped, with up to 50% jitter
    /// so many reporters do not retry in step.
    fn backoff(&self, failures: u32) -> Duration {
        let base = self.config.interval.min(Duration::from_secs(1));
        let exponential = base
            .saturating_mul(1u32 << failures.min(16))
            .min(self.config.max_backoff);
        let random = RandomState::new().hash_one(Instant::now()) % 1000;
        exponential.mul_f64(0.5 + random as f64 / 2000.0)
    }
}
