//! A map's stats in protocol v1, both ways, generated from the declaration
//! (`map_stats!`): its gauges are `ReportedStats`, its counters
//! `ReportedCounters` (whose `misuse` counts are not stats: `row_of` and
//! the reporter convert them).

use crate::ingest::protocol::{
    KindCounts, KindSeconds, ReportedCounters, ReportedEvacuation, ReportedStats,
};
use crate::map::{map_stats, Growth, GrowthKind, MapStats, PerKind};

/// A stat's value as protocol v1 carries it.
trait Wire<W> {
    fn to_wire(&self) -> W;
    fn from_wire(wire: &W) -> Self;
}

impl Wire<u64> for u64 {
    fn to_wire(&self) -> u64 {
        *self
    }
    fn from_wire(wire: &u64) -> Self {
        *wire
    }
}

impl Wire<u64> for usize {
    fn to_wire(&self) -> u64 {
        *self as u64
    }
    fn from_wire(wire: &u64) -> Self {
        usize::try_from(*wire).unwrap_or(usize::MAX)
    }
}

impl Wire<KindCounts> for PerKind<u64> {
    fn to_wire(&self) -> KindCounts {
        KindCounts {
            double: self[GrowthKind::Double],
            same_size: self[GrowthKind::SameSize],
            shrink: self[GrowthKind::Shrink],
        }
    }
    fn from_wire(wire: &KindCounts) -> Self {
        PerKind::from_fn(|kind| match kind {
            GrowthKind::Double => wire.double,
            GrowthKind::SameSize => wire.same_size,
            GrowthKind::Shrink => wire.shrink,
        })
    }
}

impl Wire<KindSeconds> for PerKind<f64> {
    fn to_wire(&self) -> KindSeconds {
        KindSeconds {
            double: self[GrowthKind::Double],
            same_size: self[GrowthKind::SameSize],
            shrink: self[GrowthKind::Shrink],
        }
    }
    fn from_wire(wire: &KindSeconds) -> Self {
        PerKind::from_fn(|kind| match kind {
            GrowthKind::Double => wire.double,
            GrowthKind::SameSize => wire.same_size,
            GrowthKind::Shrink => wire.shrink,
        })
    }
}

/// A client knows the evacuation's progress, not how it started.
impl Wire<ReportedEvacuation> for Growth {
    fn to_wire(&self) -> ReportedEvacuation {
        ReportedEvacuation {
            kind: self.kind.into(),
            old_buckets: self.old_buckets.to_wire(),
            evacuated_old_buckets: self.evacuated_old_buckets.to_wire(),
        }
    }
    fn from_wire(wire: &ReportedEvacuation) -> Self {
        Growth {
            kind: wire.kind.into(),
            old_buckets: Wire::from_wire(&wire.old_buckets),
            evacuated_old_buckets: Wire::from_wire(&wire.evacuated_old_buckets),
            entries_at_start: 0,
            helping_writes: 0,
        }
    }
}

impl<W, T: Wire<W>> Wire<Option<W>> for Option<T> {
    fn to_wire(&self) -> Option<W> {
        self.as_ref().map(T::to_wire)
    }
    fn from_wire(wire: &Option<W>) -> Self {
        wire.as_ref().map(T::from_wire)
    }
}

/// A cumulative counter on the wire: which part of it is lower than
/// before (`""` for a plain count, the growth kind for counts and seconds
/// by kind).
trait Cumulative {
    fn went_back(&self, last: &Self) -> Option<&'static str>;
}

impl Cumulative for u64 {
    fn went_back(&self, last: &Self) -> Option<&'static str> {
        (self < last).then_some("")
    }
}

macro_rules! cumulative_by_kind {
    ($t:ty) => {
        impl Cumulative for $t {
            fn went_back(&self, last: &Self) -> Option<&'static str> {
                [
                    ("double", self.double < last.double),
                    ("same_size", self.same_size < last.same_size),
                    ("shrink", self.shrink < last.shrink),
                ]
                .into_iter()
                .find_map(|(kind, lower)| lower.then_some(kind))
            }
        }
    };
}

cumulative_by_kind!(KindCounts);
cumulative_by_kind!(KindSeconds);

/// The value of a stat protocol v1 does not carry.
macro_rules! or_default {
    () => {
        Default::default()
    };
    ($value:expr) => {
        $value
    };
}

/// Both directions, from the declaration. The struct literals and
/// patterns name every field of `ReportedStats` and `ReportedCounters`:
/// a protocol field the declaration does not name, or a `wire` the
/// protocol lacks, does not compile.
macro_rules! protocol_stats {
    (
        gauges { $( $(#[cfg($gcfg:meta)])? $(#[doc = $gdoc:literal])* $g:ident: $gty:ty, fold $gfold:ident
            $(, json $gjson:literal)? $(, wire $gwire:ident)? $(, metric $gmetric:literal $ghelp:literal)?; )* }
        derived { $( $(#[cfg($dcfg:meta)])? $(#[doc = $ddoc:literal])* $d:ident: $dty:ty = $dfn:path
            $(, json $djson:literal)? $(, metric $dmetric:literal $dhelp:literal)?; )* }
        counters { $( $(#[cfg($ccfg:meta)])? $(#[doc = $cdoc:literal])* $c:ident: $cty:ty
            $(, json $cjson:literal)? $(, wire $cwire:ident)? $(, metric $cmetric:literal $chelp:literal)?; )* }
    ) => {
        impl From<&MapStats> for ReportedStats {
            fn from(stats: &MapStats) -> Self {
                ReportedStats {
                    $( $( $gwire: stats.$g.to_wire(), )? )*
                }
            }
        }

        /// The counters, with no `misuse` counts: those are not stats.
        impl From<&MapStats> for ReportedCounters {
            fn from(stats: &MapStats) -> Self {
                ReportedCounters {
                    $( $( $cwire: stats.$c.to_wire(), )? )*
                    misuse: Default::default(),
                }
            }
        }

        /// The first counter of `stats` lower than in `last`, as its path
        /// under `counters` (`inserts`, `growths.double`).
        pub(super) fn counter_went_back(last: &MapStats, stats: &MapStats) -> Option<String> {
            let (last, now) = (ReportedCounters::from(last), ReportedCounters::from(stats));
            $( $(
                if let Some(part) = now.$cwire.went_back(&last.$cwire) {
                    let name = stringify!($cwire);
                    return Some(if part.is_empty() { name.to_owned() } else { format!("{name}.{part}") });
                }
            )? )*
            None
        }

        /// The stats a client reported; derived stats recomputed.
        pub(super) fn stats_of(reported: &ReportedStats, counters: &ReportedCounters) -> MapStats {
            let ReportedStats { $( $( $gwire, )? )* } = reported;
            let ReportedCounters { $( $( $cwire, )? )* misuse: _ } = counters;
            let mut stats = MapStats {
                $( $(#[cfg($gcfg)])? $g: or_default!($( Wire::from_wire($gwire) )?), )*
                $( $(#[cfg($dcfg)])? $d: Default::default(), )*
                $( $(#[cfg($ccfg)])? $c: or_default!($( Wire::from_wire($cwire) )?), )*
            };
            $( $(#[cfg($dcfg)])? { stats.$d = $dfn(&stats); } )*
            stats
        }
    };
}

map_stats!(protocol_stats);
