//! `unbounded_growth` and `presize_miss`: maps that grow more than they should.

use super::{Finding, Observation};
use crate::map::GrowthKind;

/// Entries past `max_entries`, or growing window after window with no
/// removes at all: the cache keyed by unique ids that is never pruned.
pub(super) fn unbounded(o: &Observation<'_>) -> Option<Finding> {
    let entries = o.stats.entries;
    let rate = match (o.state.first_growing_at, o.state.last.at) {
        (Some((since, from)), Some(at)) if at > since => {
            (o.state.last.entries.saturating_sub(from)) as f64
                / at.duration_since(since).as_secs_f64()
        }
        _ => 0.0,
    };
    if let Some(max) = o.config.max_entries {
        if entries > max {
            return Some(Finding {
                value: rate,
                details: format!(
                    "{entries} entries exceed max_entries {max}; growing at {rate:.1} entries/s. \
                     Bound the map: evict, expire, or raise max_entries if this size is expected."
                ),
            });
        }
    }
    if o.config.growth_windows > 0 && o.state.growing_windows >= o.config.growth_windows {
        return Some(Finding {
            value: rate,
            details: format!(
                "entries grew in {} consecutive {:?} windows with no removes ({entries} now, \
                 {rate:.1} entries/s). A cache keyed by unique ids that is never pruned? \
                 Add eviction or a max_entries bound.",
                o.state.growing_windows, o.config.window
            ),
        });
    }
    None
}

/// Doubled `presize_doublings` times since creation, and recently: a
/// missing or too small capacity hint.
pub(super) fn presize_miss(o: &Observation<'_>) -> Option<Finding> {
    let doublings = o.stats.growths[GrowthKind::Double];
    let recent = o
        .state
        .last_double_at
        .is_some_and(|at| o.now.duration_since(at) <= o.config.event_hold);
    if doublings < o.config.presize_doublings || !recent {
        return None;
    }
    let suggested = o.stats.peak_entries.max(o.stats.entries);
    Some(Finding {
        value: suggested as f64,
        details: format!(
            "doubled {doublings} times since creation; with_capacity({suggested}) \
             would have avoided every doubling and its evacuation"
        ),
    })
}
