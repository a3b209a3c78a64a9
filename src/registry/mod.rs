//! The registry: every tracked map, in-process or reported, as one table,
//! and the single point exporters read from.
//!
//! Two writers fill the table (`table.rs`): in-process maps publish their
//! stats without locks (`publish.rs`, `entry.rs`), and the sidecar's ingest
//! applies client reports and crash files (`reported.rs`). One observation,
//! [`Registry::snapshot`], reads the table at the registry clock's now
//! (`clock.rs`), runs the detectors, and returns a [`RegistrySnapshot`].
//! Prometheus, OpenTelemetry, the reporter, the JSON API and the landing
//! page all read that and nothing else.

use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crate::detect::DetectorConfig;
use crate::map::Observer;

mod builder;
mod clock;
mod entry;
mod error;
mod events;
mod limit;
mod publish;
// Writer 2, reported and crash rows: driven by the sidecar's ingest only.
#[cfg_attr(not(feature = "sidecar"), allow(dead_code))]
mod reported;
mod snapshot;
mod table;

pub use builder::MapBuilder;
pub use clock::{Clock, ManualClock, SystemClock};
pub use entry::TracingHooks;
pub use error::{
    validate, validate_label_name, RegisterError, MAX_LABELS, MAX_VALUE_CHARS, RESERVED_LABELS,
};
pub use events::{
    CapturedContext, CodeSite, Event, EventBatch, EventRecord, GrowthDurations, GrowthFinished,
    GrowthStarted, MapId, MisuseEvent, GROWTH_DURATION_BUCKETS,
};
#[cfg(feature = "sidecar")]
pub(crate) use reported::{CrashRecord, ReportedRow, SourceReport};
pub use snapshot::{IngestStats, MapSnapshot, RegistrySnapshot, SourceStatus};

use entry::{EventSink, MapEntry};
use table::{Lifecycle, Table, Writer};

/// The name of the series that maps past the cardinality cap fold into.
pub const OVERFLOW_MAP: &str = "_overflow";

/// The map name of a misuse whose map could not be named: a Go crash whose
/// runtime frames show no map address the crash file's metadata lists (a
/// map the program never observed, or an argument the traceback could not
/// recover), or a nil-map write the Go client's HTTP middleware caught
/// without knowing the map. The Go client uses the same name.
pub const UNKNOWN_MAP: &str = "_unknown";

/// Builds a [`Registry`] with non-default settings.
///
/// ```
/// use std::time::Duration;
/// let registry = mapscope::Registry::builder()
///     .grace_period(Duration::from_secs(5))
///     .max_maps(100)
///     .build();
/// assert!(registry.snapshot().maps.is_empty());
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct RegistryBuilder {
    grace_period: Duration,
    max_maps: usize,
    event_queue: usize,
    recent_events: usize,
    detectors: DetectorConfig,
    clock: Arc<dyn Clock>,
}

impl Default for RegistryBuilder {
    fn default() -> Self {
        RegistryBuilder {
            grace_period: Duration::from_secs(30),
            max_maps: 10_000,
            event_queue: 4096,
            recent_events: 256,
            detectors: DetectorConfig::default(),
            clock: Arc::new(SystemClock),
        }
    }
}

impl RegistryBuilder {
    /// How long a dropped map's final values, and a stale source's last
    /// ones, stay visible. Default 30 s.
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace_period = grace;
        self
    }

    /// How many live maps get their own series, in-process and reported
    /// maps together; later ones fold into `map="_overflow"`. Default 10,000.
    pub fn max_maps(mut self, max: usize) -> Self {
        self.max_maps = max;
        self
    }

    /// Capacity of the event queue between maps and the registry. Events
    /// past it are dropped and counted. Default 4096, at least 1.
    pub fn event_queue(mut self, capacity: usize) -> Self {
        self.event_queue = capacity.max(1);
        self
    }

    /// How many recent events the registry keeps for its readers (the
    /// event ring, shared by in-process maps, client reports and crash
    /// files). Default 256, at least 1.
    pub fn recent_events(mut self, count: usize) -> Self {
        self.recent_events = count.max(1);
        self
    }

    /// Detector thresholds for maps that do not set their own.
    pub fn detectors(mut self, config: DetectorConfig) -> Self {
        self.detectors = config;
        self
    }

    /// The clock every time-based decision reads (detector windows and
    /// holds, grace periods, source TTLs, rate limits). Default: the real
    /// one, [`SystemClock`]; tests pass a [`ManualClock`] and advance it.
    pub fn clock(mut self, clock: impl Clock + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Builds the registry.
    pub fn build(self) -> Registry {
        let (tx, rx) = sync_channel(self.event_queue);
        let sink = Arc::new(EventSink {
            tx,
            dropped: Default::default(),
            epoch: self.clock.now(),
            clock: self.clock.clone(),
            hooks: OnceLock::new(),
            suppressed: Default::default(),
        });
        let table = Table::new(self.max_maps, rx, self.recent_events);
        Registry {
            inner: Arc::new(Inner {
                sink,
                config: self,
                state: Mutex::new(table),
            }),
        }
    }
}

/// Every instrumented map of a process (or of a test), by name and labels.
///
/// Cheap to clone: clones share one registry.
///
/// ```
/// use mapscope::{InstrumentedMap, Registry};
///
/// let registry = Registry::new();
/// let mut sessions = InstrumentedMap::<u64, u64>::builder("sessions")
///     .label("tenant", "acme")
///     .register(&registry)
///     .expect("valid name and labels");
/// sessions.insert(1, 1);
/// sessions.publish();
/// let snapshot = registry.snapshot();
/// assert_eq!(snapshot.map("sessions").unwrap().stats.entries, 1);
/// ```
#[derive(Debug, Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    sink: Arc<EventSink>,
    config: RegistryBuilder,
    state: Mutex<Table>,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    /// A registry with the default settings.
    pub fn new() -> Self {
        RegistryBuilder::default().build()
    }

    /// A builder for non-default settings.
    pub fn builder() -> RegistryBuilder {
        RegistryBuilder::default()
    }

    /// The process-wide registry that `register_global()` uses.
    pub fn global() -> &'static Registry {
        static GLOBAL: OnceLock<Registry> = OnceLock::new();
        GLOBAL.get_or_init(Registry::new)
    }

    /// Installs the tracing hooks (context capture at growth start, misuse
    /// on the current span). Only the first call takes effect; returns
    /// whether this one did. `mapscope::otel::init` installs them.
    pub fn set_tracing_hooks(&self, hooks: TracingHooks) -> bool {
        self.inner.sink.hooks.set(hooks).is_ok()
    }

    /// The default detector thresholds of this registry.
    pub fn detector_config(&self) -> DetectorConfig {
        self.inner.config.detectors
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        // A panic while holding the lock cannot leave the table half-updated
        // in a way that matters to readers: every change is a few inserts or
        // removes of whole rows. Keep serving.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The registry clock's monotonic now.
    pub(crate) fn now(&self) -> Instant {
        self.inner.sink.clock.now()
    }

    /// The registry clock's wall-clock now.
    pub(crate) fn system_now(&self) -> SystemTime {
        self.inner.sink.clock.system_now()
    }

    /// Registers a map's observer. Called by `MapBuilder::register`.
    pub(crate) fn register_observer(
        &self,
        name: &str,
        labels: &[(String, String)],
        detectors: DetectorConfig,
    ) -> Result<Arc<dyn Observer>, RegisterError> {
        let labels = validate(name, labels)?;
        let id = MapId::local(name.into(), labels.into());
        let now = self.now();
        let mut table = self.lock();
        // Maps dropped since the last look no longer count against the cap.
        table.notice_drops(&self.inner.sink);
        if let Some(existing) = table.find(&id) {
            let live = table
                .row_mut(existing)
                .is_some_and(|row| row.lifecycle == Lifecycle::Live);
            if live {
                return Err(RegisterError::Duplicate {
                    name: name.to_owned(),
                    labels: id.labels.to_vec(),
                });
            }
            // The old map is in its grace period: the new one takes over.
            table.remove(existing, now);
        }
        let entry = Arc::new(MapEntry::new(id.clone(), self.inner.sink.clone()));
        table.insert(id, Writer::Local(entry.clone()), detectors);
        Ok(entry)
    }

    /// Reads every map, runs the detectors, and returns the result: the one
    /// observation, at the registry clock's now, and the only thing
    /// exporters read. Dropped maps past their grace period (in-process
    /// maps, and reported maps their source's reports left out) are
    /// removed; stale sources are removed by the ingest's timer, never here.
    pub fn snapshot(&self) -> RegistrySnapshot {
        let (now, wall) = (self.now(), self.system_now());
        let grace = self.inner.config.grace_period;
        self.lock().observe(&self.inner.sink, grace, now, wall)
    }

    /// Events with a sequence number at or after `cursor`, for a reader
    /// that keeps its own cursor (start at 0). Drains the queue first.
    ///
    /// ```
    /// let registry = mapscope::Registry::new();
    /// let batch = registry.events_since(0);
    /// assert!(batch.events.is_empty());
    /// assert_eq!(batch.next, 0);
    /// ```
    pub fn events_since(&self, cursor: u64) -> EventBatch {
        self.lock().events_since(cursor)
    }
}
