//! `overflow_chain`: a weak hasher or a hash-flooding attempt.

use super::{Finding, Observation};
use crate::map::GrowthKind;

/// A chain longer than the threshold, or a same-size growth within
/// `event_hold`: Go starts one only when overflow buckets pile up, which a
/// good hash does not cause.
pub(super) fn overflow(o: &Observation<'_>) -> Option<Finding> {
    let chain = o.stats.max_overflow_chain;
    if chain > o.config.max_overflow_chain {
        return Some(Finding {
            value: chain as f64,
            details: format!(
                "an overflow chain of {chain} buckets (threshold {}): many keys share a \
                 bucket. A weak or unseeded hasher, or hash flooding by crafted keys.",
                o.config.max_overflow_chain
            ),
        });
    }
    let same_size_recent = o
        .state
        .last_same_size_at
        .is_some_and(|at| o.now.duration_since(at) <= o.config.event_hold);
    if same_size_recent {
        return Some(Finding {
            value: chain as f64,
            details: format!(
                "{} same-size growth(s): overflow buckets piled up as many as buckets. \
                 A weak hasher, hash flooding, or heavy insert/delete churn in few buckets.",
                o.stats.growths[GrowthKind::SameSize]
            ),
        });
    }
    None
}
