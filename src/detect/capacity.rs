//! `retained_capacity`: memory kept after deletes.

use super::{human_bytes, Finding, Observation};
use crate::map::MapStats;

/// Fewer entries than 1/8 of the slots (`8 * buckets`), after having been
/// higher: the fill at which Redis shrinks. Tiny maps are ignored.
pub(super) fn below_eighth(stats: &MapStats) -> bool {
    stats.buckets > 1 && stats.entries < stats.buckets && stats.peak_entries >= stats.buckets
}

/// Bytes a `shrink_to_fit()` would give back, estimated from the current
/// bytes per bucket and the smallest array that holds the entries.
pub(super) fn reclaimable_bytes(stats: &MapStats) -> usize {
    let held = stats.buckets + stats.overflow_buckets;
    if held == 0 {
        return 0;
    }
    let per_bucket = stats.memory_bytes / held;
    let mut target = 1usize;
    while stats.entries > 8 && (stats.entries as f64) > 6.5 * target as f64 {
        target *= 2;
    }
    held.saturating_sub(target) * per_bucket
}

pub(super) fn retained(o: &Observation<'_>) -> Option<Finding> {
    if o.config.retained_windows == 0
        || o.state.low_windows < o.config.retained_windows
        || !below_eighth(o.stats)
    {
        return None;
    }
    let reclaimable = reclaimable_bytes(o.stats);
    if reclaimable < o.config.retained_min_bytes {
        return None;
    }
    let fill = o.stats.entries as f64 / (8 * o.stats.buckets) as f64 * 100.0;
    Some(Finding {
        value: reclaimable as f64,
        details: format!(
            "{} entries fill {fill:.1}% of {} slots (peak {}); shrink_to_fit() would reclaim \
             about {}. Call it after bulk deletes, or enable auto-shrink.",
            o.stats.entries,
            8 * o.stats.buckets,
            o.stats.peak_entries,
            human_bytes(reclaimable as f64)
        ),
    })
}
