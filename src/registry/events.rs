//! Events maps emit, and the bounded queue that carries them.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::detect::MisuseKind;
use crate::map::GrowthKind;

/// Which map an event or series is about: one row of the registry.
///
/// An in-process map is its name and labels. A map a client reports to the
/// sidecar also carries the reporting process: `source` (the app) and
/// `instance`, exported as the `source` and `source_instance` labels. Both
/// are fixed by the first report, so a map's series keep their identity
/// however many instances of the app report.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct MapId {
    /// The map's name (the `map` label).
    pub name: Arc<str>,
    /// The map's own labels, sorted by name.
    pub labels: Arc<[(String, String)]>,
    /// The reporting application (`source` label), for maps ingested by the sidecar.
    pub source: Option<Arc<str>>,
    /// The reporting process (`source_instance` label: pod name,
    /// `host:pid`), for maps ingested by the sidecar.
    pub instance: Option<Arc<str>>,
}

impl MapId {
    /// An in-process map's identity.
    pub(crate) fn local(name: Arc<str>, labels: Arc<[(String, String)]>) -> Self {
        MapId {
            name,
            labels,
            source: None,
            instance: None,
        }
    }

    /// A reported map's identity.
    #[cfg_attr(not(feature = "sidecar"), allow(dead_code))] // written by the sidecar's ingest only
    pub(crate) fn reported(
        name: Arc<str>,
        labels: Arc<[(String, String)]>,
        app: Arc<str>,
        instance: Arc<str>,
    ) -> Self {
        MapId {
            name,
            labels,
            source: Some(app),
            instance: Some(instance),
        }
    }

    /// `app/instance` for a reported map, for logs and event details.
    pub(crate) fn reporter(&self) -> Option<String> {
        let app = self.source.as_deref()?;
        Some(match self.instance.as_deref() {
            Some(instance) => format!("{app}/{instance}"),
            None => app.to_owned(),
        })
    }
}

/// A place in a program's source: where a misuse happened.
///
/// ```
/// use mapscope::registry::CodeSite;
/// let site = CodeSite::new("main.(*cart).add", "/src/shop/cart.go", 42);
/// assert_eq!(site.to_string(), "main.(*cart).add (/src/shop/cart.go:42)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct CodeSite {
    /// The function, as the program's runtime names it
    /// (`main.(*cart).add`, `github.com/acme/shop.handler`).
    pub function: String,
    /// The source file, as the program was built (`/src/shop/cart.go`).
    pub file: String,
    /// The line in `file` (1-based).
    pub line: u32,
}

impl CodeSite {
    /// A site from its parts.
    pub fn new(function: impl Into<String>, file: impl Into<String>, line: u32) -> Self {
        CodeSite {
            function: function.into(),
            file: file.into(),
            line,
        }
    }
}

impl std::fmt::Display for CodeSite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}:{})", self.function, self.file, self.line)
    }
}

/// Something a captured tracing context can be stored as. The OpenTelemetry
/// integration stores its `Context` here; the registry only carries it.
pub type CapturedContext = Arc<dyn std::any::Any + Send + Sync>;

/// A map started growing.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GrowthStarted {
    /// The map.
    pub map: MapId,
    /// Double, same-size or shrink.
    pub kind: GrowthKind,
    /// Buckets before.
    pub old_buckets: usize,
    /// Buckets after.
    pub new_buckets: usize,
    /// Entries when it started.
    pub entries: usize,
    /// When it started.
    pub at: SystemTime,
    /// The tracing context current in the thread that started it, if a
    /// context capture hook is installed (see `mapscope::otel`).
    pub context: Option<CapturedContext>,
}

/// A map finished a growth: its last old bucket was evacuated.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct GrowthFinished {
    /// The map.
    pub map: MapId,
    /// Double, same-size or shrink.
    pub kind: GrowthKind,
    /// Buckets before.
    pub old_buckets: usize,
    /// Buckets after.
    pub new_buckets: usize,
    /// Entries when it started.
    pub entries_at_start: usize,
    /// Entries when it finished.
    pub entries: usize,
    /// When it started.
    pub started_at: SystemTime,
    /// Wall time from start to the last evacuated bucket (zero when not
    /// [`measured`](GrowthFinished::measured)).
    pub duration: Duration,
    /// Whether `duration` was measured. False for a growth a client
    /// reported without `duration_seconds`: it is still an event (and a
    /// span), but not an observation of `mapscope_growth_duration_seconds`.
    pub measured: bool,
    /// Writes that helped evacuate.
    pub helping_writes: u64,
    /// Time spent evacuating, as opposed to wall time: the sum of the
    /// helping writes' evacuation work.
    pub evacuation_work: Duration,
    /// Whether `complete_growth()` finished it (rather than writes).
    pub completed_explicitly: bool,
    /// Old buckets evacuated: all of them, unless `clear`, `drain` or
    /// `into_iter` abandoned the growth.
    pub evacuated_old_buckets: usize,
    /// The trace and span the growth belongs to (32 and 16 hex digits),
    /// when a client reported them.
    pub trace: Option<(String, String)>,
}

/// A detector fired, or a client reported misuse.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MisuseEvent {
    /// The map.
    pub map: MapId,
    /// What happened.
    pub kind: MisuseKind,
    /// A sentence for a human.
    pub details: String,
    /// When.
    pub at: SystemTime,
    /// The detector's number (see `Condition::value`); 0 for client reports.
    pub value: f64,
    /// The trace and span the misuse belongs to, as 32 and 16 hex digits,
    /// when a client reported them.
    pub trace: Option<(String, String)>,
    /// The tracing context current when the misuse happened, if captured.
    pub context: Option<CapturedContext>,
    /// Already recorded on the span active when it happened (or suppressed
    /// by the rate limit), so exporters must not trace it again.
    pub traced: bool,
    /// Where in the program it happened, when known: from a Go crash file,
    /// or from a client event's `code.function`, `code.filepath` and
    /// `code.lineno` attributes.
    pub site: Option<CodeSite>,
    /// The id of the process it happened in, for a crash read from a crash
    /// file (the process is gone by then).
    pub pid: Option<u32>,
}

/// An event from a map.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A growth started.
    GrowthStarted(GrowthStarted),
    /// A growth finished.
    GrowthFinished(GrowthFinished),
    /// Misuse or a health condition.
    Misuse(MisuseEvent),
}

impl Event {
    /// The map the event is about.
    pub fn map(&self) -> &MapId {
        match self {
            Event::GrowthStarted(e) => &e.map,
            Event::GrowthFinished(e) => &e.map,
            Event::Misuse(e) => &e.map,
        }
    }
}

/// An event with its registry-wide sequence number.
#[derive(Debug, Clone)]
pub struct EventRecord {
    /// Increases by one per event the registry accepted.
    pub seq: u64,
    /// The event.
    pub event: Event,
}

/// New events since a reader's cursor. See [`Registry::events_since`](crate::Registry::events_since).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct EventBatch {
    /// The events, oldest first.
    pub events: Vec<EventRecord>,
    /// The cursor to pass next time.
    pub next: u64,
    /// Events the reader missed because they left the recent-events window.
    pub missed: u64,
}

/// Upper bounds of `mapscope_growth_duration_seconds`: from a small map's
/// growth that busy writes finish in microseconds to a stalled one.
pub const GROWTH_DURATION_BUCKETS: [f64; 14] = [
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0,
];

/// Durations of every finished growth seen, by kind: the data of the
/// `mapscope_growth_duration_seconds` histogram. Counted as events arrive,
/// so no reader's pace can lose any.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct GrowthDurations {
    /// Cumulative counts per bucket of [`GROWTH_DURATION_BUCKETS`], by
    /// `GrowthKind::index`.
    pub buckets: [[u64; GROWTH_DURATION_BUCKETS.len()]; 3],
    /// Sum of durations in seconds, by kind.
    pub sum: [f64; 3],
    /// Number of growths, by kind.
    pub count: [u64; 3],
}

impl GrowthDurations {
    fn record(&mut self, kind: crate::GrowthKind, seconds: f64) {
        let k = kind.index();
        for (bucket, bound) in self.buckets[k].iter_mut().zip(GROWTH_DURATION_BUCKETS) {
            if seconds <= bound {
                *bucket += 1;
            }
        }
        self.sum[k] += seconds;
        self.count[k] += 1;
    }

    /// Adds another source's durations.
    pub fn merge(&mut self, other: &GrowthDurations) {
        for k in 0..3 {
            for (a, b) in self.buckets[k].iter_mut().zip(other.buckets[k]) {
                *a += b;
            }
            self.sum[k] += other.sum[k];
            self.count[k] += other.count[k];
        }
    }
}

/// The most recent events, numbered, for readers with their own cursors.
#[derive(Debug)]
pub(crate) struct EventRing {
    recent: VecDeque<EventRecord>,
    next_seq: u64,
    keep: usize,
    pub(crate) durations: GrowthDurations,
}

impl EventRing {
    pub(crate) fn new(keep: usize) -> Self {
        EventRing {
            recent: VecDeque::new(),
            next_seq: 0,
            keep: keep.max(1),
            durations: GrowthDurations::default(),
        }
    }

    pub(crate) fn push(&mut self, event: Event) {
        if let Event::GrowthFinished(growth) = &event {
            // A growth without a measured duration is an event, not an
            // observation: a 0 s sample would drag the histogram down.
            if growth.measured {
                self.durations
                    .record(growth.kind, growth.duration.as_secs_f64());
            }
        }
        self.recent.push_back(EventRecord {
            seq: self.next_seq,
            event,
        });
        self.next_seq += 1;
        while self.recent.len() > self.keep {
            self.recent.pop_front();
        }
    }

    pub(crate) fn since(&self, cursor: u64) -> EventBatch {
        let oldest = self.recent.front().map_or(self.next_seq, |r| r.seq);
        EventBatch {
            events: self
                .recent
                .iter()
                .filter(|r| r.seq >= cursor)
                .cloned()
                .collect(),
            next: self.next_seq,
            missed: oldest.saturating_sub(cursor),
        }
    }

    pub(crate) fn records(&self) -> Vec<EventRecord> {
        self.recent.iter().cloned().collect()
    }
}
