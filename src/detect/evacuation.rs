//! `evacuation_stalled`: a growth that writes stopped driving.

use super::{Finding, Observation};

pub(super) fn stalled(o: &Observation<'_>) -> Option<Finding> {
    let growth = o.stats.growth?;
    let started = o.growth_started?;
    let elapsed = o.now.saturating_duration_since(started);
    if elapsed < o.config.stall_after {
        return None;
    }
    Some(Finding {
        value: elapsed.as_secs_f64(),
        details: format!(
            "a {} growth has run for {:.0} s with {}/{} old buckets evacuated; both bucket \
             arrays are held until writes finish it. Call complete_growth().",
            growth.kind,
            elapsed.as_secs_f64(),
            growth.evacuated_old_buckets,
            growth.old_buckets
        ),
    })
}
