//! The one hook through which a map tells the outside world about itself.
//!
//! The engine knows nothing about registries or exporters. A registered map
//! holds an [`Observer`] and calls it at a few well-defined moments, never
//! on a lookup:
//! - every `publish_every` writes (a countdown, so the per-write cost is a
//!   decrement and a compare), and after bulk operations;
//! - when a growth starts and when it finishes;
//! - when the map is dropped.
//!
//! An unregistered map has no observer; its countdown still runs, so a
//! `build()` map executes exactly the same code as a registered one.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use super::stats::{GrowthKind, MapStats};

/// Default for how many writes pass between two publications of a
/// registered map's stats.
pub(crate) const DEFAULT_PUBLISH_EVERY: u32 = 64;

/// A growth that just finished.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FinishedGrowth {
    pub(crate) kind: GrowthKind,
    pub(crate) old_buckets: usize,
    pub(crate) new_buckets: usize,
    pub(crate) entries_at_start: usize,
    pub(crate) entries: usize,
    pub(crate) started: Instant,
    pub(crate) finished: Instant,
    pub(crate) helping_writes: u64,
    pub(crate) work: std::time::Duration,
    pub(crate) completed_explicitly: bool,
    pub(crate) evacuated_old_buckets: usize,
}

/// Receives a map's stats and growth events; implemented by the registry.
/// Implementations must not block: they run inside the map's writes.
pub(crate) trait Observer: Send + Sync + fmt::Debug {
    /// The map's current stats, at most every `publish_every` writes.
    fn publish(&self, stats: &MapStats);
    /// A growth started; `stats.growth` describes it.
    fn growth_started(&self, stats: &MapStats, started: Instant);
    /// A growth finished.
    fn growth_finished(&self, growth: &FinishedGrowth, stats: &MapStats);
    /// An insert took the map past its `max_entries` (once per crossing).
    /// Runs in the thread that inserted, so the current tracing span is
    /// the request that did it.
    fn limit_exceeded(&self, stats: &MapStats, max_entries: usize);
    /// The map is being dropped; these are its final stats.
    fn dropped(&self, stats: &MapStats);
}

/// The observer slot of a map, with its publication countdown.
#[derive(Debug)]
pub(crate) struct Observed {
    pub(crate) observer: Option<Arc<dyn Observer>>,
    pub(crate) publish_every: u32,
    pub(crate) until_publish: u32,
}

impl Observed {
    pub(crate) const fn none() -> Self {
        Observed {
            observer: None,
            publish_every: DEFAULT_PUBLISH_EVERY,
            until_publish: DEFAULT_PUBLISH_EVERY,
        }
    }

    /// Counts one write; true when it is time to publish.
    #[inline]
    pub(crate) fn tick(&mut self) -> bool {
        self.until_publish -= 1;
        if self.until_publish == 0 {
            self.until_publish = self.publish_every;
            true
        } else {
            false
        }
    }
}
