//! Time as the registry sees it.
//!
//! Everything that decides with time (detector windows and holds, grace
//! periods, source TTLs, crash-condition holds, the misuse rate limit)
//! reads one [`Clock`], given to [`Registry::builder`](crate::Registry::builder).
//! Production uses [`SystemClock`]; tests use a [`ManualClock`] and advance
//! it, so they never sleep and never depend on the machine's speed.
//!
//! The engine (`src/map`) is not on this clock: it measures real growth
//! durations with `Instant::now()` and never reads a clock on a lookup or a
//! plain write. Where an engine timestamp meets the registry's time (when a
//! growth started), [`Clock::engine_instant`] translates it.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// A source of the current time: monotonic for decisions, wall-clock for
/// timestamps people and exporters read.
///
/// ```
/// use mapscope::registry::{Clock, SystemClock};
/// let clock = SystemClock;
/// assert!(clock.now() <= std::time::Instant::now());
/// ```
pub trait Clock: Send + Sync + fmt::Debug {
    /// The monotonic now: windows, holds, grace periods, TTLs, rate limits.
    fn now(&self) -> Instant;

    /// The wall-clock now: `Condition::since`, event timestamps.
    fn system_now(&self) -> SystemTime;

    /// A moment the engine measured on the real monotonic clock (when a
    /// growth started), on this clock. The real clock keeps it; a clock
    /// whose time only moves when told to (a [`ManualClock`]) answers its
    /// own now, so the moment happens at the test's current time.
    fn engine_instant(&self, measured: Instant) -> Instant {
        measured
    }
}

/// The real clock: `Instant::now()` and `SystemTime::now()`. The default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn system_now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// A clock for tests: it stands still until [`ManualClock::advance`] moves
/// it, and then its monotonic and wall-clock times move together. Clones
/// share one time, so a test keeps a clone and gives the other to the
/// registry.
///
/// ```
/// use std::time::Duration;
/// use mapscope::registry::{Clock, ManualClock};
/// use mapscope::Registry;
///
/// let clock = ManualClock::new();
/// let registry = Registry::builder().clock(clock.clone()).build();
/// let before = clock.now();
/// clock.advance(Duration::from_secs(30));
/// assert_eq!(clock.now() - before, Duration::from_secs(30));
/// # drop(registry);
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    inner: Arc<ManualTime>,
}

#[derive(Debug)]
struct ManualTime {
    instant: Instant,
    system: SystemTime,
    /// Nanoseconds advanced since creation. An atomic load, not a lock:
    /// the clock is read inside map operations (growth start, drop).
    advanced: AtomicU64,
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::new()
    }
}

impl ManualClock {
    /// A clock standing at the real current time.
    pub fn new() -> Self {
        Self::starting_at(SystemTime::now())
    }

    /// A clock whose wall-clock time starts at `system` (its monotonic
    /// time starts at the real `Instant::now()`).
    pub fn starting_at(system: SystemTime) -> Self {
        ManualClock {
            inner: Arc::new(ManualTime {
                instant: Instant::now(),
                system,
                advanced: AtomicU64::new(0),
            }),
        }
    }

    /// Moves the clock forward by `by` (both of its times).
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.inner.advanced.fetch_add(nanos, Ordering::Relaxed);
    }

    /// How far the clock has been advanced since it was created.
    pub fn advanced(&self) -> Duration {
        Duration::from_nanos(self.inner.advanced.load(Ordering::Relaxed))
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.inner.instant + self.advanced()
    }

    fn system_now(&self) -> SystemTime {
        self.inner.system + self.advanced()
    }

    fn engine_instant(&self, _measured: Instant) -> Instant {
        self.now()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced_and_clones_share_it() {
        let clock = ManualClock::starting_at(SystemTime::UNIX_EPOCH);
        let other = clock.clone();
        let (at, wall) = (clock.now(), clock.system_now());
        assert_eq!(clock.now(), at);
        other.advance(Duration::from_millis(1500));
        assert_eq!(clock.now() - at, Duration::from_millis(1500));
        assert_eq!(
            clock.system_now().duration_since(wall).unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(clock.engine_instant(Instant::now()), clock.now());
    }
}
