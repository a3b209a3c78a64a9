//! The registry: every instrumented map of a process, by name and labels,
//! and the single point exporters read from.
//!
//! Maps publish their stats into the registry without locks (see
//! `publish.rs`); [`Registry::snapshot`] reads them, runs the detectors,
//! and returns a [`RegistrySnapshot`]. Prometheus, OpenTelemetry, the
//! reporter and the JSON API all read snapshots and nothing else.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use crate::detect::{DetectorConfig, DetectorState, MisuseKind, Transition};
use crate::map::{MapStats, Observer};

mod builder;
mod entry;
mod error;
mod events;
mod publish;
mod snapshot;

pub use builder::MapBuilder;
pub use entry::TracingHooks;
pub use error::{
    validate, validate_label_name, RegisterError, MAX_LABELS, MAX_VALUE_BYTES, RESERVED_LABELS,
};
pub(crate) use events::EventRing;
pub use events::{
    CapturedContext, CodeSite, Event, EventBatch, EventRecord, GrowthDurations, GrowthFinished,
    GrowthStarted, MapId, MisuseEvent, GROWTH_DURATION_BUCKETS,
};
pub use snapshot::{IngestStats, MapSnapshot, RegistrySnapshot};

use entry::{EventSink, MapEntry};

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
}

impl Default for RegistryBuilder {
    fn default() -> Self {
        RegistryBuilder {
            grace_period: Duration::from_secs(30),
            max_maps: 10_000,
            event_queue: 4096,
            recent_events: 256,
            detectors: DetectorConfig::default(),
        }
    }
}

impl RegistryBuilder {
    /// How long a dropped map's final values stay visible. Default 30 s.
    pub fn grace_period(mut self, grace: Duration) -> Self {
        self.grace_period = grace;
        self
    }

    /// How many live maps get their own series; later ones fold into
    /// `map="_overflow"`. Default 10,000.
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

    /// How many recent events the registry keeps for its readers. Default 256.
    pub fn recent_events(mut self, count: usize) -> Self {
        self.recent_events = count.max(1);
        self
    }

    /// Detector thresholds for maps that do not set their own.
    pub fn detectors(mut self, config: DetectorConfig) -> Self {
        self.detectors = config;
        self
    }

    /// Builds the registry.
    pub fn build(self) -> Registry {
        let (tx, rx) = sync_channel(self.event_queue);
        let events = EventRing::new(self.recent_events);
        let sink = Arc::new(EventSink {
            tx,
            dropped: Default::default(),
            epoch: Instant::now(),
            hooks: OnceLock::new(),
            suppressed: Default::default(),
        });
        Registry {
            inner: Arc::new(Inner {
                sink,
                config: self,
                state: Mutex::new(State {
                    maps: BTreeMap::new(),
                    keys: HashMap::new(),
                    next_id: 0,
                    events_rx: rx,
                    events,
                    overflow_folds: 0,
                    registrations: 0,
                    retired: None,
                }),
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
    state: Mutex<State>,
}

/// A map's identity within a registry: name and sorted labels.
type MapKey = (Arc<str>, Arc<[(String, String)]>);

#[derive(Debug)]
struct State {
    maps: BTreeMap<u64, Registered>,
    keys: HashMap<MapKey, u64>,
    next_id: u64,
    events_rx: Receiver<Event>,
    events: EventRing,
    overflow_folds: u64,
    registrations: u64,
    /// Counters of folded maps whose grace period ended, kept so the
    /// `_overflow` series' counters never go down.
    retired: Option<MapSnapshot>,
}

#[derive(Debug)]
struct Registered {
    entry: Arc<MapEntry>,
    detectors: DetectorConfig,
    detector_state: DetectorState,
    folded: bool,
    last: MapStats,
    growth_started_ns: u64,
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

    /// Counts misuse events that the tracing rate limit kept from tracing.
    pub fn record_suppressed(&self, count: u64) {
        self.inner
            .sink
            .suppressed
            .fetch_add(count, Ordering::Relaxed);
    }

    /// The default detector thresholds of this registry.
    pub fn detector_config(&self) -> DetectorConfig {
        self.inner.config.detectors
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State half-updated in
        // a way that matters to readers: every update is a single insert or
        // remove. Keep serving.
        self.inner
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a map's observer. Called by `MapBuilder::register`.
    pub(crate) fn register_observer(
        &self,
        name: &str,
        labels: &[(String, String)],
        detectors: DetectorConfig,
    ) -> Result<Arc<dyn Observer>, RegisterError> {
        let labels = validate(name, labels)?;
        let key: MapKey = (name.into(), labels.into());
        let mut state = self.lock();
        if let Some(&existing) = state.keys.get(&key) {
            let dropped = state.maps[&existing]
                .entry
                .dropped_at_ns
                .load(Ordering::Acquire)
                != 0;
            if !dropped {
                return Err(RegisterError::Duplicate {
                    name: name.to_owned(),
                    labels: key.1.to_vec(),
                });
            }
            // The old map is in its grace period: the new one takes over.
            state.maps.remove(&existing);
        }
        let live = state
            .maps
            .values()
            .filter(|r| !r.folded && r.entry.dropped_at_ns.load(Ordering::Relaxed) == 0)
            .count();
        let folded = live >= self.inner.config.max_maps;
        if folded {
            state.overflow_folds += 1;
        }
        let id = state.next_id;
        state.next_id += 1;
        state.registrations += 1;
        let entry = Arc::new(MapEntry::new(
            MapId {
                name: key.0.clone(),
                labels: key.1.clone(),
                source: None,
            },
            self.inner.sink.clone(),
        ));
        state.keys.insert(key, id);
        state.maps.insert(
            id,
            Registered {
                entry: entry.clone(),
                detectors,
                detector_state: DetectorState::default(),
                folded,
                last: MapStats::default(),
                growth_started_ns: 0,
            },
        );
        Ok(entry)
    }

    /// Reads every map, runs the detectors, and returns the result. The
    /// only thing exporters read. Maps past their grace period are removed.
    pub fn snapshot(&self) -> RegistrySnapshot {
        let now = Instant::now();
        let sink = &self.inner.sink;
        let grace = self.inner.config.grace_period;
        let mut state = self.lock();
        state.drain_queue();
        let mut maps = Vec::with_capacity(state.maps.len());
        let mut overflow: Option<MapSnapshot> = None;
        let mut expired = Vec::new();
        let mut fired = Vec::new();
        for (&id, registered) in state.maps.iter_mut() {
            // The drop flag first: a map dropped after it was read publishes
            // its final stats before setting it, so the stats read next are
            // at least as new as the flag says.
            let dropped_ns = registered.entry.dropped_at_ns.load(Ordering::Acquire);
            if let Some((stats, growth_ns)) = registered.entry.shared.load() {
                registered.last = stats;
                registered.growth_started_ns = growth_ns;
            }
            let dropped = dropped_ns != 0;
            if dropped {
                let dropped_at = sink.epoch + Duration::from_nanos(dropped_ns - 1);
                if now.saturating_duration_since(dropped_at) > grace {
                    expired.push(id);
                    continue;
                }
            } else {
                let growth_started = (registered.growth_started_ns != 0)
                    .then(|| sink.epoch + Duration::from_nanos(registered.growth_started_ns - 1));
                let transitions = registered.detector_state.observe(
                    &registered.last,
                    &registered.detectors,
                    now,
                    growth_started,
                );
                for transition in transitions {
                    fired.push((registered.entry.id.clone(), transition));
                }
            }
            let snapshot = MapSnapshot {
                id: registered.entry.id.clone(),
                stats: registered.last,
                conditions: registered.detector_state.active().to_vec(),
                misuse: *registered.detector_state.firings(),
                dropped,
                misuse_only: false,
            };
            if registered.folded {
                fold_into(&mut overflow, snapshot);
            } else {
                maps.push(snapshot);
            }
        }
        for id in expired {
            if let Some(registered) = state.maps.remove(&id) {
                let id = &registered.entry.id;
                state.keys.remove(&(id.name.clone(), id.labels.clone()));
                if registered.folded {
                    let mut final_counters = MapSnapshot {
                        id: id.clone(),
                        stats: registered.last,
                        conditions: Vec::new(),
                        misuse: *registered.detector_state.firings(),
                        dropped: true,
                        misuse_only: false,
                    };
                    // Gauges leave with the map; counters stay in the sum.
                    let s = &mut final_counters.stats;
                    (s.entries, s.peak_entries, s.buckets, s.overflow_buckets) = (0, 0, 0, 0);
                    (s.memory_bytes, s.max_overflow_chain, s.growth) = (0, 0, None);
                    fold_into(&mut state.retired, final_counters);
                }
            }
        }
        if let Some(retired) = &state.retired {
            let mut retired = retired.clone();
            retired.conditions.clear();
            match &mut overflow {
                Some(_) => fold_into(&mut overflow, retired),
                None => {
                    retired.dropped = false;
                    overflow = Some(retired);
                }
            }
        }
        for (map, transition) in fired {
            state.record_transition(map, transition);
        }
        maps.sort_by(|a, b| (&a.id.name, &a.id.labels).cmp(&(&b.id.name, &b.id.labels)));
        maps.extend(overflow);
        RegistrySnapshot {
            maps,
            events_dropped: sink.dropped.load(Ordering::Relaxed),
            trace_events_suppressed: sink.suppressed.load(Ordering::Relaxed),
            overflow_folds: state.overflow_folds,
            registrations: state.registrations,
            recent_events: state.events.records(),
            maps_registered: state.maps.len(),
            growth_durations: state.events.durations,
            ingest: None,
        }
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
        let mut state = self.lock();
        state.drain_queue();
        state.events.since(cursor)
    }
}

impl State {
    fn drain_queue(&mut self) {
        while let Ok(event) = self.events_rx.try_recv() {
            self.events.push(event);
        }
    }

    fn record_transition(&mut self, map: MapId, transition: Transition) {
        if let Some(event) = transition_event(map, transition) {
            self.events.push(event);
        }
    }
}

/// Logs a detector transition; a firing becomes a misuse event.
pub(crate) fn transition_event(map: MapId, transition: Transition) -> Option<Event> {
    match transition {
        Transition::Fired(condition) => {
            tracing::warn!(
                map = %map.name,
                source = map.source.as_deref().unwrap_or(""),
                kind = %condition.kind,
                details = %condition.details,
                "mapscope condition fired"
            );
            Some(Event::Misuse(MisuseEvent {
                map,
                kind: condition.kind,
                details: condition.details,
                at: SystemTime::now(),
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
                source = map.source.as_deref().unwrap_or(""),
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
        id: MapId {
            name: OVERFLOW_MAP.into(),
            labels: Arc::new([]),
            source: None,
        },
        stats: MapStats::default(),
        conditions: Vec::new(),
        misuse: [0; MisuseKind::ALL.len()],
        dropped: false,
        misuse_only: false,
    });
    let (t, s) = (&mut total.stats, &map.stats);
    t.entries += s.entries;
    t.peak_entries += s.peak_entries;
    t.buckets += s.buckets;
    t.overflow_buckets += s.overflow_buckets;
    t.memory_bytes += s.memory_bytes;
    t.load_factor = if t.buckets == 0 {
        0.0
    } else {
        t.entries as f64 / t.buckets as f64
    };
    t.growths_double += s.growths_double;
    t.growths_same_size += s.growths_same_size;
    t.shrinks += s.shrinks;
    t.growth_seconds_double += s.growth_seconds_double;
    t.growth_seconds_same_size += s.growth_seconds_same_size;
    t.growth_seconds_shrink += s.growth_seconds_shrink;
    t.evacuated_buckets_total += s.evacuated_buckets_total;
    t.inserts += s.inserts;
    t.updates += s.updates;
    t.removes += s.removes;
    t.max_overflow_chain = t.max_overflow_chain.max(s.max_overflow_chain);
    for (sum, count) in total.misuse.iter_mut().zip(map.misuse) {
        *sum += count;
    }
    for condition in map.conditions {
        if !total.conditions.iter().any(|c| c.kind == condition.kind) {
            total.conditions.push(condition);
        }
    }
}
