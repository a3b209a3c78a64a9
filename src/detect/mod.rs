//! Detectors: turn a map's stats into the conditions people get paged for.
//!
//! Detectors run at observation time (a scrape, a report tick, a call to
//! `Registry::snapshot`), over the stats a map last published or a client
//! last reported. They are pure functions of an observation: the stats,
//! the thresholds, the window state and the registry clock's `now`. A map's
//! operations pay nothing for them. Windowed checks advance at most once per
//! [`DetectorConfig::window`], however often observations happen, so two
//! scrapers do not make a condition fire twice as fast.
//!
//! Every condition clears when its cause ends; each firing is counted.

use std::time::{Duration, Instant, SystemTime};

use crate::map::{GrowthKind, MapStats};

mod capacity;
mod chains;
mod evacuation;
mod growth;
mod kind;

pub use kind::{MisuseKind, UnknownMisuseKind};

/// Thresholds for the detectors. The defaults suit a service scraped every
/// 15–60 s; each can be set per registry and per map.
///
/// ```
/// use std::time::Duration;
/// let config = mapscope::DetectorConfig::default()
///     .with_max_entries(Some(100_000))
///     .with_stall_after(Duration::from_secs(10));
/// assert_eq!(config.max_entries, Some(100_000));
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DetectorConfig {
    /// `unbounded_growth` fires while entries exceed this. Default: none.
    pub max_entries: Option<usize>,
    /// Length of one observation window. Default 10 s.
    pub window: Duration,
    /// `unbounded_growth` also fires when entries grew in this many
    /// consecutive windows with no removes at all. Default 6 (a minute).
    pub growth_windows: u32,
    /// `retained_capacity` fires after entries stayed below 1/8 of the slots
    /// for this many consecutive windows. Default 3.
    pub retained_windows: u32,
    /// ...and only when a shrink would reclaim at least this many bytes.
    /// Default 64 KiB.
    pub retained_min_bytes: usize,
    /// `overflow_chain` fires while the longest overflow chain exceeds this
    /// many overflow buckets. Default 4: at 6.5 entries per bucket on
    /// average, a chain of 5 needs 40+ keys in one bucket.
    pub max_overflow_chain: usize,
    /// `presize_miss` fires once a map has doubled this many times. Default 4.
    pub presize_doublings: u64,
    /// How long `presize_miss` and the same-size-growth trigger of
    /// `overflow_chain` stay active after the growth that caused them.
    /// Default 5 min.
    pub event_hold: Duration,
    /// `evacuation_stalled` fires when a growth has been in progress this
    /// long. Default 30 s.
    pub stall_after: Duration,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig {
            max_entries: None,
            window: Duration::from_secs(10),
            growth_windows: 6,
            retained_windows: 3,
            retained_min_bytes: 64 * 1024,
            max_overflow_chain: 4,
            presize_doublings: 4,
            event_hold: Duration::from_secs(300),
            stall_after: Duration::from_secs(30),
        }
    }
}

macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident: $field:ident: $ty:ty;)*) => {
        impl DetectorConfig {
            $(
                $(#[$doc])*
                #[must_use]
                pub fn $name(mut self, value: $ty) -> Self {
                    self.$field = value;
                    self
                }
            )*
        }
    };
}

setters! {
    /// Sets [`DetectorConfig::max_entries`].
    with_max_entries: max_entries: Option<usize>;
    /// Sets [`DetectorConfig::window`].
    with_window: window: Duration;
    /// Sets [`DetectorConfig::growth_windows`].
    with_growth_windows: growth_windows: u32;
    /// Sets [`DetectorConfig::retained_windows`].
    with_retained_windows: retained_windows: u32;
    /// Sets [`DetectorConfig::retained_min_bytes`].
    with_retained_min_bytes: retained_min_bytes: usize;
    /// Sets [`DetectorConfig::max_overflow_chain`].
    with_max_overflow_chain: max_overflow_chain: usize;
    /// Sets [`DetectorConfig::presize_doublings`].
    with_presize_doublings: presize_doublings: u64;
    /// Sets [`DetectorConfig::event_hold`].
    with_event_hold: event_hold: Duration;
    /// Sets [`DetectorConfig::stall_after`].
    with_stall_after: stall_after: Duration;
}

/// An active detector condition on one map.
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// Which detector.
    pub kind: MisuseKind,
    /// When it fired.
    pub since: SystemTime,
    /// The number the detector carries: growth rate (entries/s) for
    /// `unbounded_growth`, reclaimable bytes for `retained_capacity`, the
    /// longest chain for `overflow_chain`, the suggested `with_capacity` for
    /// `presize_miss`, seconds in progress for `evacuation_stalled`.
    pub value: f64,
    /// A sentence for a human: what was seen and what to do.
    pub details: String,
}

/// A condition that started or ended at an observation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Transition {
    Fired(Condition),
    Cleared(MisuseKind),
}

/// What a detector concluded at one observation.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Finding {
    pub(crate) value: f64,
    pub(crate) details: String,
}

/// The stats a window remembers.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Sample {
    at: Option<Instant>,
    entries: usize,
    removes: u64,
    growths_double: u64,
    growths_same_size: u64,
}

/// Per-map detector memory, touched only at observation time.
#[derive(Debug, Default)]
pub(crate) struct DetectorState {
    last: Sample,
    growing_windows: u32,
    first_growing_at: Option<(Instant, usize)>,
    low_windows: u32,
    last_double_at: Option<Instant>,
    last_same_size_at: Option<Instant>,
    active: Vec<Condition>,
    firings: [u64; MisuseKind::ALL.len()],
}

/// Everything a detector may look at.
pub(crate) struct Observation<'a> {
    pub(crate) stats: &'a MapStats,
    pub(crate) config: &'a DetectorConfig,
    pub(crate) state: &'a DetectorState,
    pub(crate) now: Instant,
    /// When the growth in progress started, if the map said.
    pub(crate) growth_started: Option<Instant>,
}

impl DetectorState {
    /// Advances the windows, evaluates every detector and returns what
    /// changed. O(1) per map. `now` decides; `wall` (the same moment on the
    /// wall clock) stamps a condition that fires.
    pub(crate) fn observe(
        &mut self,
        stats: &MapStats,
        config: &DetectorConfig,
        now: Instant,
        wall: SystemTime,
        growth_started: Option<Instant>,
    ) -> Vec<Transition> {
        self.advance_window(stats, config, now);
        let observation = Observation {
            stats,
            config,
            state: self,
            now,
            growth_started,
        };
        let findings: Vec<(MisuseKind, Option<Finding>)> = vec![
            (MisuseKind::UnboundedGrowth, growth::unbounded(&observation)),
            (
                MisuseKind::RetainedCapacity,
                capacity::retained(&observation),
            ),
            (MisuseKind::OverflowChain, chains::overflow(&observation)),
            (MisuseKind::PresizeMiss, growth::presize_miss(&observation)),
            (
                MisuseKind::EvacuationStalled,
                evacuation::stalled(&observation),
            ),
        ];
        let mut transitions = Vec::new();
        for (kind, finding) in findings {
            let position = self.active.iter().position(|c| c.kind == kind);
            match (finding, position) {
                (Some(finding), Some(i)) => {
                    self.active[i].value = finding.value;
                    self.active[i].details = finding.details;
                }
                (Some(finding), None) => {
                    let condition = Condition {
                        kind,
                        since: wall,
                        value: finding.value,
                        details: finding.details,
                    };
                    self.firings[kind.index()] += 1;
                    self.active.push(condition.clone());
                    transitions.push(Transition::Fired(condition));
                }
                (None, Some(i)) => {
                    self.active.remove(i);
                    transitions.push(Transition::Cleared(kind));
                }
                (None, None) => {}
            }
        }
        transitions
    }

    fn advance_window(&mut self, stats: &MapStats, config: &DetectorConfig, now: Instant) {
        let Some(last_at) = self.last.at else {
            // First observation: whatever growth happened before counts as recent.
            if stats.growths[GrowthKind::Double] > 0 {
                self.last_double_at = Some(now);
            }
            if stats.growths[GrowthKind::SameSize] > 0 {
                self.last_same_size_at = Some(now);
            }
            self.last = Sample::of(stats, now);
            return;
        };
        if now.duration_since(last_at) < config.window {
            return;
        }
        let last = self.last;
        if stats.entries > last.entries && stats.removes == last.removes {
            if self.growing_windows == 0 {
                self.first_growing_at = Some((last_at, last.entries));
            }
            self.growing_windows += 1;
        } else {
            self.growing_windows = 0;
            self.first_growing_at = None;
        }
        if capacity::below_eighth(stats) {
            self.low_windows += 1;
        } else {
            self.low_windows = 0;
        }
        if stats.growths[GrowthKind::Double] > last.growths_double {
            self.last_double_at = Some(now);
        }
        if stats.growths[GrowthKind::SameSize] > last.growths_same_size {
            self.last_same_size_at = Some(now);
        }
        self.last = Sample::of(stats, now);
    }

    /// The conditions active now.
    pub(crate) fn active(&self) -> &[Condition] {
        &self.active
    }

    /// Firings so far, by `MisuseKind::index`.
    pub(crate) fn firings(&self) -> &[u64; MisuseKind::ALL.len()] {
        &self.firings
    }
}

impl Sample {
    fn of(stats: &MapStats, at: Instant) -> Self {
        Sample {
            at: Some(at),
            entries: stats.entries,
            removes: stats.removes,
            growths_double: stats.growths[GrowthKind::Double],
            growths_same_size: stats.growths[GrowthKind::SameSize],
        }
    }
}

/// `x` bytes, in the unit a human reads best.
pub(crate) fn human_bytes(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}
