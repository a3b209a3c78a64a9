//! A registered map's side of the registry: where it publishes and sends events.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use crate::map::{FinishedGrowth, MapStats, Observer};

use super::clock::Clock;
use super::events::{CapturedContext, Event, GrowthFinished, GrowthStarted, MapId, MisuseEvent};
use super::limit::RateWindow;
use super::publish::SharedStats;
use crate::detect::MisuseKind;

/// How a tracing integration hooks into a registry's maps. Both functions
/// run in the thread of the map operation that triggered them, and only at
/// growth start and misuse, never per operation.
pub struct TracingHooks {
    /// Captures the tracing context current in the calling thread.
    pub capture: Box<dyn Fn() -> Option<CapturedContext> + Send + Sync>,
    /// Records a misuse on the span active in the calling thread; returns
    /// false when no span is active (the event is then exported later as a
    /// standalone span).
    pub record_misuse: Box<dyn Fn(&MisuseEvent) -> bool + Send + Sync>,
    /// At most this many misuse events per map per second reach tracing;
    /// the rest are counted as suppressed.
    pub misuse_per_second: u32,
}

impl std::fmt::Debug for TracingHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracingHooks")
            .field("misuse_per_second", &self.misuse_per_second)
            .finish_non_exhaustive()
    }
}

/// Shared by a registry and all its maps: the event queue's sending side,
/// and the registry's clock.
pub(crate) struct EventSink {
    pub(crate) tx: SyncSender<Event>,
    pub(crate) dropped: AtomicU64,
    pub(crate) clock: Arc<dyn Clock>,
    /// The clock's time when the registry was built: timestamps shared
    /// through atomics are nanoseconds since it.
    pub(crate) epoch: Instant,
    pub(crate) hooks: OnceLock<TracingHooks>,
    /// Misuse events kept from tracing by the rate limit.
    pub(crate) suppressed: AtomicU64,
}

impl std::fmt::Debug for EventSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSink")
            .field("dropped", &self.dropped)
            .finish_non_exhaustive()
    }
}

impl EventSink {
    /// Queues an event without blocking; counts it when the queue is full.
    pub(crate) fn send(&self, event: Event) {
        if self.tx.try_send(event).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The current tracing context, if a capture hook is installed. Runs
    /// only at growth start and misuse, never per operation.
    pub(crate) fn capture(&self) -> Option<CapturedContext> {
        self.hooks.get().and_then(|hooks| (hooks.capture)())
    }

    pub(crate) fn nanos_since_epoch(&self, at: Instant) -> u64 {
        // +1 keeps 0 free to mean "none".
        at.saturating_duration_since(self.epoch).as_nanos() as u64 + 1
    }

    /// The instant a [`EventSink::nanos_since_epoch`] value stands for.
    pub(crate) fn instant_of(&self, nanos: u64) -> Option<Instant> {
        (nanos != 0).then(|| self.epoch + Duration::from_nanos(nanos - 1))
    }

    /// The second of the registry's clock, for the misuse rate limit (from
    /// 1, so a fresh window never matches).
    pub(crate) fn second(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.epoch).as_secs() + 1
    }
}

/// One registered map, as the registry and the map's observer hook see it.
#[derive(Debug)]
pub(crate) struct MapEntry {
    pub(crate) id: MapId,
    pub(crate) shared: SharedStats,
    /// When the growth in progress started (see `EventSink::nanos_since_epoch`), 0 if none.
    growth_started_ns: AtomicU64,
    /// When the map was dropped, 0 while it lives.
    pub(crate) dropped_at_ns: AtomicU64,
    pub(crate) sink: Arc<EventSink>,
    /// The second (since the epoch) of the misuse rate limit's window, and
    /// the misuse events traced in it. Written by the owner only.
    misuse_window: AtomicU64,
    misuse_in_window: AtomicU64,
}

impl MapEntry {
    pub(crate) fn new(id: MapId, sink: Arc<EventSink>) -> Self {
        MapEntry {
            id,
            shared: SharedStats::default(),
            growth_started_ns: AtomicU64::new(0),
            dropped_at_ns: AtomicU64::new(0),
            sink,
            misuse_window: AtomicU64::new(0),
            misuse_in_window: AtomicU64::new(0),
        }
    }

    /// The misuse rate limit on the map's own thread: the window is loaded
    /// and stored with single-writer relaxed operations (no
    /// read-modify-write), since only the owner calls this.
    fn misuse_allowed(&self, per_second: u32) -> bool {
        let mut window = RateWindow {
            second: self.misuse_window.load(Ordering::Relaxed),
            used: self.misuse_in_window.load(Ordering::Relaxed),
        };
        let allowed = window.allow(self.sink.second(self.sink.clock.now()), per_second);
        self.misuse_window.store(window.second, Ordering::Relaxed);
        self.misuse_in_window.store(window.used, Ordering::Relaxed);
        allowed
    }
}

// Every method runs on the map owner's thread, inside a map operation:
// single-writer relaxed stores only, no locks.
impl Observer for MapEntry {
    fn publish(&self, stats: &MapStats) {
        let started = if stats.growth.is_some() {
            self.growth_started_ns.load(Ordering::Relaxed)
        } else {
            0
        };
        self.shared.store(stats, started);
    }

    fn growth_started(&self, stats: &MapStats, started: Instant) {
        // The real clock keeps `started` as is (no clock read); a manual
        // clock puts the start at its own now.
        let ns = self
            .sink
            .nanos_since_epoch(self.sink.clock.engine_instant(started));
        self.growth_started_ns.store(ns, Ordering::Relaxed);
        self.shared.store(stats, ns);
        let Some(growth) = stats.growth else { return };
        self.sink.send(Event::GrowthStarted(GrowthStarted {
            map: self.id.clone(),
            kind: growth.kind,
            old_buckets: growth.old_buckets,
            new_buckets: stats.buckets,
            entries: stats.entries,
            at: self.sink.clock.system_now(),
            context: self.sink.capture(),
        }));
    }

    fn growth_finished(&self, growth: &FinishedGrowth, stats: &MapStats) {
        self.growth_started_ns.store(0, Ordering::Relaxed);
        self.shared.store(stats, 0);
        let duration = growth.finished.duration_since(growth.started);
        self.sink.send(Event::GrowthFinished(GrowthFinished {
            map: self.id.clone(),
            kind: growth.kind,
            old_buckets: growth.old_buckets,
            new_buckets: growth.new_buckets,
            entries_at_start: growth.entries_at_start,
            entries: growth.entries,
            started_at: self
                .sink
                .clock
                .system_now()
                .checked_sub(growth.finished.elapsed() + duration)
                .unwrap_or(SystemTime::UNIX_EPOCH),
            duration,
            measured: true,
            helping_writes: growth.helping_writes,
            evacuation_work: growth.work,
            completed_explicitly: growth.completed_explicitly,
            evacuated_old_buckets: growth.evacuated_old_buckets,
            trace: None,
        }));
    }

    fn limit_exceeded(&self, stats: &MapStats, max_entries: usize) {
        let mut event = MisuseEvent {
            map: self.id.clone(),
            kind: MisuseKind::UnboundedGrowth,
            details: format!(
                "an insert took the map to {} entries, past max_entries {max_entries}",
                stats.entries
            ),
            at: self.sink.clock.system_now(),
            value: stats.entries as f64,
            trace: None,
            context: None,
            traced: false,
            site: None,
            pid: None,
        };
        // The crossing is a tracing signal: the detector counts the
        // condition and reports it on its own. Without tracing hooks there is
        // nothing to do; with them, it goes on the active span, or through
        // the queue to become a standalone span.
        let Some(hooks) = self.sink.hooks.get() else {
            return;
        };
        if !self.misuse_allowed(hooks.misuse_per_second) {
            self.sink.suppressed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        event.traced = (hooks.record_misuse)(&event);
        if !event.traced {
            self.sink.send(Event::Misuse(event));
        }
    }

    fn dropped(&self, stats: &MapStats) {
        self.shared.store(stats, 0);
        let now = self.sink.nanos_since_epoch(self.sink.clock.now());
        self.dropped_at_ns.store(now, Ordering::Release);
    }
}
