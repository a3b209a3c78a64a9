//! The kinds of misuse and health events mapscope reports.

use std::fmt;
use std::str::FromStr;

/// A misuse or health event kind. The same enum covers the detectors that
/// run over Rust maps and the kinds that other-language clients report
/// through the sidecar, so dashboards and alerts treat every kind alike.
///
/// ```
/// use mapscope::MisuseKind;
/// assert_eq!(MisuseKind::UnboundedGrowth.as_str(), "unbounded_growth");
/// assert_eq!("nil_map_write".parse::<MisuseKind>(), Ok(MisuseKind::NilMapWrite));
/// assert!(MisuseKind::ConcurrentWrite.is_error());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum MisuseKind {
    /// Entries exceed `max_entries`, or grew window after window with no
    /// removes: a cache keyed by unique ids that is never pruned.
    UnboundedGrowth,
    /// Entries stayed below 1/8 of slot capacity after having been higher:
    /// memory kept after deletes.
    RetainedCapacity,
    /// An overflow chain passed its threshold, or a same-size growth ran: a
    /// weak hasher or a hash-flooding attempt.
    OverflowChain,
    /// The map doubled at least 4 times since creation: a missing capacity hint.
    PresizeMiss,
    /// A growth has been in progress too long because writes stopped: both
    /// bucket arrays are held.
    EvacuationStalled,
    /// A client wrote to a nil map (Go: `assignment to entry in nil map`).
    NilMapWrite,
    /// A client wrote to a map from two goroutines at once (Go:
    /// `concurrent map writes`).
    ConcurrentWrite,
    /// A client mutated a map while iterating it.
    IterateWhileMutating,
}

impl MisuseKind {
    /// Every kind, in label order.
    pub const ALL: [MisuseKind; 8] = [
        MisuseKind::UnboundedGrowth,
        MisuseKind::RetainedCapacity,
        MisuseKind::OverflowChain,
        MisuseKind::PresizeMiss,
        MisuseKind::EvacuationStalled,
        MisuseKind::NilMapWrite,
        MisuseKind::ConcurrentWrite,
        MisuseKind::IterateWhileMutating,
    ];

    /// The kinds the detectors evaluate over map stats.
    pub const DETECTED: [MisuseKind; 5] = [
        MisuseKind::UnboundedGrowth,
        MisuseKind::RetainedCapacity,
        MisuseKind::OverflowChain,
        MisuseKind::PresizeMiss,
        MisuseKind::EvacuationStalled,
    ];

    /// The kinds only clients in other languages report.
    pub const CLIENT: [MisuseKind; 3] = [
        MisuseKind::NilMapWrite,
        MisuseKind::ConcurrentWrite,
        MisuseKind::IterateWhileMutating,
    ];

    /// The label value used in metrics, spans and the protocol.
    pub const fn as_str(self) -> &'static str {
        match self {
            MisuseKind::UnboundedGrowth => "unbounded_growth",
            MisuseKind::RetainedCapacity => "retained_capacity",
            MisuseKind::OverflowChain => "overflow_chain",
            MisuseKind::PresizeMiss => "presize_miss",
            MisuseKind::EvacuationStalled => "evacuation_stalled",
            MisuseKind::NilMapWrite => "nil_map_write",
            MisuseKind::ConcurrentWrite => "concurrent_write",
            MisuseKind::IterateWhileMutating => "iterate_while_mutating",
        }
    }

    /// Whether the kind is a program error (OpenTelemetry's `error.type`
    /// is set for these), rather than a health condition.
    pub const fn is_error(self) -> bool {
        matches!(
            self,
            MisuseKind::NilMapWrite
                | MisuseKind::ConcurrentWrite
                | MisuseKind::IterateWhileMutating
        )
    }

    /// Position in [`MisuseKind::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for MisuseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of parsing an unknown kind name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown misuse kind {0:?}: expected one of unbounded_growth, retained_capacity, overflow_chain, presize_miss, evacuation_stalled, nil_map_write, concurrent_write, iterate_while_mutating")]
pub struct UnknownMisuseKind(pub String);

impl FromStr for MisuseKind {
    type Err = UnknownMisuseKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MisuseKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| UnknownMisuseKind(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_matches_position_and_names_round_trip() {
        for (i, kind) in MisuseKind::ALL.into_iter().enumerate() {
            assert_eq!(kind.index(), i);
            assert_eq!(kind.as_str().parse::<MisuseKind>(), Ok(kind));
        }
        assert!("bogus".parse::<MisuseKind>().is_err());
    }
}
