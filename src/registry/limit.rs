//! The misuse rate limit: at most `misuse_per_second` misuse events of one
//! map reach tracing per second of the registry's clock; the rest are
//! counted in `mapscope_trace_events_suppressed_total`.
//!
//! One algorithm ([`RateWindow::allow`]), kept in two places because a
//! misuse enters the registry by two roads that must not share a lock:
//! a map's own thread, inside the insert that crosses `max_entries` (the
//! window lives in the map's entry and is written by that thread only),
//! and the registry itself, under its lock, for detector firings, client
//! reports and crashes ([`MisuseLimiter`]).

use std::collections::HashMap;

use super::events::MapId;

/// Events counted in one second of the registry's clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RateWindow {
    pub(crate) second: u64,
    pub(crate) used: u64,
}

impl RateWindow {
    /// Whether one more event in `second` stays within `per_second`; counts
    /// it if so.
    pub(crate) fn allow(&mut self, second: u64, per_second: u32) -> bool {
        if self.second != second {
            *self = RateWindow { second, used: 0 };
        }
        if self.used >= u64::from(per_second) {
            return false;
        }
        self.used += 1;
        true
    }
}

/// The registry's windows, one per map that had a misuse this second.
/// Windows of past seconds are dropped as soon as the second changes, so
/// the table holds at most the maps of one second.
#[derive(Debug, Default)]
pub(crate) struct MisuseLimiter {
    second: u64,
    windows: HashMap<MapId, RateWindow>,
}

impl MisuseLimiter {
    /// Whether a misuse of `map` in `second` may be traced.
    pub(crate) fn allow(&mut self, map: &MapId, second: u64, per_second: u32) -> bool {
        if second != self.second {
            self.windows.clear();
            self.second = second;
        }
        self.windows
            .entry(map.clone())
            .or_default()
            .allow(second, per_second)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_lets_per_second_through_then_resets_with_the_second() {
        let mut window = RateWindow::default();
        assert!(window.allow(1, 2));
        assert!(window.allow(1, 2));
        assert!(!window.allow(1, 2));
        assert!(window.allow(2, 2));
        assert!(!RateWindow::default().allow(1, 0));
    }
}
