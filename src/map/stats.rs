//! The plain stats struct a map fills on demand, and the one declaration
//! of its fields ([`map_stats!`]) everything that carries stats is
//! generated from.

use std::fmt;
use std::ops::{AddAssign, Index, IndexMut};

/// What kind of growth an evacuation performs.
///
/// Exhaustive on purpose: a table can only grow, keep its size or shrink,
/// so code may match every kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GrowthKind {
    /// The bucket array doubles because the average load would pass 6.5
    /// entries per bucket (Go's `overLoadFactor`).
    Double,
    /// The bucket array keeps its size and is rebuilt to drop overflow
    /// buckets that deletes left behind (Go's `tooManyOverflowBuckets`).
    SameSize,
    /// The bucket array halves: `shrink_to_fit`, `shrink_to` or auto-shrink.
    /// Go maps never do this.
    Shrink,
}

impl GrowthKind {
    /// Every kind, in label order.
    pub const ALL: [GrowthKind; 3] = [GrowthKind::Double, GrowthKind::SameSize, GrowthKind::Shrink];

    /// The label value used in metrics and spans: `double`, `same_size` or `shrink`.
    ///
    /// ```
    /// assert_eq!(mapscope::GrowthKind::SameSize.as_str(), "same_size");
    /// ```
    pub const fn as_str(self) -> &'static str {
        match self {
            GrowthKind::Double => "double",
            GrowthKind::SameSize => "same_size",
            GrowthKind::Shrink => "shrink",
        }
    }

    pub(crate) const fn index(self) -> usize {
        match self {
            GrowthKind::Double => 0,
            GrowthKind::SameSize => 1,
            GrowthKind::Shrink => 2,
        }
    }
}

impl std::fmt::Display for GrowthKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an in-progress evacuation stands.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Growth {
    /// What the evacuation does.
    pub kind: GrowthKind,
    /// Buckets in the old array (`2^B` before the growth started).
    pub old_buckets: usize,
    /// Old buckets already evacuated; the growth ends when this reaches
    /// `old_buckets`.
    pub evacuated_old_buckets: usize,
    /// Entries in the map when the growth started.
    pub entries_at_start: usize,
    /// Writes (inserts and removes) that have helped evacuate so far.
    pub helping_writes: u64,
}

/// One value per [`GrowthKind`], indexed by the kind: growths started,
/// seconds spent growing.
///
/// ```
/// use mapscope::{GrowthKind, PerKind};
///
/// let mut growths = PerKind::<u64>::default();
/// growths[GrowthKind::Double] += 2;
/// growths[GrowthKind::Shrink] += 1;
/// assert_eq!(growths[GrowthKind::Double], 2);
/// assert_eq!(growths.iter().map(|(_, n)| n).sum::<u64>(), 3);
/// assert_eq!(format!("{growths:?}"), "{double: 2, same_size: 0, shrink: 1}");
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct PerKind<T>([T; GrowthKind::ALL.len()]);

impl<T> PerKind<T> {
    /// The value of every kind, from `value(kind)`.
    pub fn from_fn(value: impl FnMut(GrowthKind) -> T) -> Self {
        PerKind(GrowthKind::ALL.map(value))
    }

    /// Every kind with its value, in [`GrowthKind::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (GrowthKind, T)> + '_
    where
        T: Copy,
    {
        GrowthKind::ALL.into_iter().zip(self.0.iter().copied())
    }
}

impl<T> Index<GrowthKind> for PerKind<T> {
    type Output = T;

    fn index(&self, kind: GrowthKind) -> &T {
        &self.0[kind.index()]
    }
}

impl<T> IndexMut<GrowthKind> for PerKind<T> {
    fn index_mut(&mut self, kind: GrowthKind) -> &mut T {
        &mut self.0[kind.index()]
    }
}

impl<T: AddAssign> AddAssign for PerKind<T> {
    fn add_assign(&mut self, other: Self) {
        for (sum, value) in self.0.iter_mut().zip(other.0) {
            *sum += value;
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for PerKind<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (kind, value) in GrowthKind::ALL.iter().zip(&self.0) {
            map.key(&format_args!("{kind}")).value(value);
        }
        map.finish()
    }
}

/// The one declaration of a map's stats. Everything that carries them is
/// generated from it: [`MapStats`] below, the seqlock slots a registered
/// map publishes through (`registry/publish.rs`), the `_overflow` fold and
/// what a departing row leaves in it (`registry/table.rs`), the JSON of
/// `GET /api/v1/maps` (`http/api.rs`), protocol v1's `ReportedStats` and
/// `ReportedCounters` both ways (`ingest/convert/wire.rs`), and the
/// per-map metrics of the catalog (`export/catalog.rs`). Each of those
/// invokes `map_stats!(its_generator)` and gets the list below; each
/// generator matches the whole grammar, so a stat it cannot handle does
/// not compile.
///
/// A new stat touches two places: its line here, and the engine site that
/// counts it (`src/map/raw.rs`: a counter of `Counters`, bumped where it
/// happens and read out in `RawMap::stats`, or a gauge computed there).
/// `tests.rs` proves it with a test-only stat declared below. One more
/// place only if the stat is to travel in protocol v1 (`wire`): its field
/// in `ingest/protocol.rs`, a protocol change. The conversion does not
/// compile until the field is there, nor while the protocol has a stat
/// field this list does not name.
///
/// The sections say what a stat is:
/// - `gauges`: the map's state now. Protocol v1's `stats`, Prometheus
///   gauges; a row that leaves `_overflow` takes them with it. `fold` says
///   how `_overflow` combines them: `sum`, `max`, or `none` (an evacuation
///   in progress does not add up).
/// - `derived`: recomputed from the other stats by the named function
///   wherever stats are put together (publication, fold, ingest); never
///   published or sent.
/// - `counters`: cumulative since the map was created. Protocol v1's
///   `counters`, Prometheus counters; summed into `_overflow`, where they
///   stay after the row goes so that its series never go down.
///
/// And per stat, optionally: `json "key"`, its key in `GET /api/v1/maps`
/// when that is not the field's name; `wire name`, its field in protocol
/// v1 (not sent without it); `metric "name" "help"`, its per-map metric,
/// whose labels follow the type (a [`PerKind`] adds `kind`).
macro_rules! map_stats {
    ($generate:ident) => {
        $generate! {
            gauges {
                /// Live entries.
                entries: usize, fold sum, wire entries,
                    metric "mapscope_map_entries" "Live entries in the map.";
                /// The most entries the map has held at once.
                peak_entries: usize, fold sum, wire peak_entries,
                    metric "mapscope_map_peak_entries" "High-water mark of entries.";
                /// Buckets in the current array, `2^B` (during a growth, the new array).
                /// 0 before the first insert.
                buckets: usize, fold sum, wire buckets,
                    metric "mapscope_map_buckets"
                    "Buckets in the bucket array (2^B); during a growth, the new array.";
                /// Overflow buckets chained to the current and old arrays.
                overflow_buckets: usize, fold sum, wire overflow_buckets,
                    metric "mapscope_map_overflow_buckets" "Overflow buckets in use.";
                /// Heap bytes held by the bucket arrays (old array included during a
                /// growth), overflow buckets and bookkeeping. Heap memory owned by the
                /// keys and values themselves (a `String`'s bytes) is not counted.
                memory_bytes: usize, fold sum, wire memory_bytes,
                    metric "mapscope_map_memory_bytes"
                    "Heap bytes held by the bucket arrays, old array included during a growth.";
                /// The evacuation in progress, if any. Its metrics,
                /// `mapscope_map_evacuation_in_progress` and
                /// `mapscope_map_evacuation_progress_ratio`, are catalog entries.
                growth: Option<$crate::map::Growth>, fold none, wire evacuation;
                /// Overflow buckets in the longest chain (0 when no bucket overflows).
                max_overflow_chain: usize, fold max, wire max_overflow_chain;
            }
            derived {
                /// Entries per bucket, Go's definition: a doubling starts above 6.5.
                load_factor: f64 = $crate::map::MapStats::computed_load_factor,
                    metric "mapscope_map_load_factor"
                    "Entries per bucket; a doubling starts above 6.5.";
            }
            counters {
                /// Growths started, by kind.
                growths: $crate::map::PerKind<u64>, wire growths,
                    metric "mapscope_map_growths_total"
                    "Growths started, by kind (double, same_size, shrink).";
                /// Wall seconds spent in finished growths, by kind, from start to
                /// last evacuated bucket.
                growth_seconds: $crate::map::PerKind<f64>, wire growth_seconds,
                    metric "mapscope_map_growth_seconds_total"
                    "Wall seconds from growth start to its last evacuated bucket, summed over finished growths.";
                /// Old buckets evacuated, over the map's lifetime.
                evacuated_buckets_total: u64, json "evacuated_buckets", wire evacuated_buckets,
                    metric "mapscope_map_evacuated_buckets_total" "Old buckets evacuated.";
                /// Inserts of new keys.
                inserts: u64, wire inserts,
                    metric "mapscope_map_inserts_total" "Inserts of new keys.";
                /// Inserts that overwrote the value of an existing key.
                updates: u64, wire updates,
                    metric "mapscope_map_updates_total" "Overwrites of existing keys.";
                /// Entries removed, by `remove`, `retain`, `drain` and `clear`.
                removes: u64, wire removes,
                    metric "mapscope_map_removes_total" "Entries removed.";
                #[cfg(test)]
                /// Test only: inserts, updates and removes together. Declared
                /// here and counted in `RawMap::stats`, nowhere else, so that
                /// `tests.rs` can show where a new stat shows up by itself.
                test_writes: u64,
                    metric "mapscope_map_test_writes_total" "Test only: inserts, updates and removes.";
            }
        }
    };
}
pub(crate) use map_stats;

/// Defines [`MapStats`] from the declaration.
macro_rules! define_map_stats {
    (
        gauges { $( $(#[cfg($gcfg:meta)])? $(#[doc = $gdoc:literal])* $g:ident: $gty:ty, fold $gfold:ident
            $(, json $gjson:literal)? $(, wire $gwire:ident)? $(, metric $gmetric:literal $ghelp:literal)?; )* }
        derived { $( $(#[cfg($dcfg:meta)])? $(#[doc = $ddoc:literal])* $d:ident: $dty:ty = $dfn:path
            $(, json $djson:literal)? $(, metric $dmetric:literal $dhelp:literal)?; )* }
        counters { $( $(#[cfg($ccfg:meta)])? $(#[doc = $cdoc:literal])* $c:ident: $cty:ty
            $(, json $cjson:literal)? $(, wire $cwire:ident)? $(, metric $cmetric:literal $chelp:literal)?; )* }
    ) => {
        /// A point-in-time view of one map's internals and lifetime counters.
        ///
        /// Filled by [`InstrumentedMap::stats`](crate::InstrumentedMap::stats) in
        /// O(1): the counters are plain fields the map bumps as it works, and
        /// nothing here walks the buckets. Its fields are declared once, in
        /// `map_stats!` (`src/map/stats.rs`).
        ///
        /// ```
        /// use mapscope::GrowthKind;
        ///
        /// let mut map = mapscope::InstrumentedMap::new();
        /// for i in 0..100_000u64 {
        ///     map.insert(i, i);
        /// }
        /// let stats = map.stats();
        /// assert_eq!(stats.entries, 100_000);
        /// assert_eq!(stats.buckets, 16_384); // smallest 2^B with 100_000 <= 6.5 * 2^B
        /// assert_eq!(stats.growths[GrowthKind::Double], 14);
        /// assert!(stats.load_factor <= 6.5);
        /// ```
        #[non_exhaustive]
        #[derive(Debug, Clone, Copy, Default, PartialEq)]
        pub struct MapStats {
            $( $(#[cfg($gcfg)])? $(#[doc = $gdoc])* pub $g: $gty, )*
            $( $(#[cfg($dcfg)])? $(#[doc = $ddoc])* pub $d: $dty, )*
            $( $(#[cfg($ccfg)])? $(#[doc = $cdoc])* pub $c: $cty, )*
        }
    };
}

map_stats!(define_map_stats);

impl MapStats {
    /// Growths started of one kind: `self.growths[kind]`.
    ///
    /// ```
    /// let stats = mapscope::MapStats::default();
    /// assert_eq!(stats.growths(mapscope::GrowthKind::Shrink), 0);
    /// ```
    pub fn growths(&self, kind: GrowthKind) -> u64 {
        self.growths[kind]
    }

    /// Wall seconds spent in finished growths of one kind:
    /// `self.growth_seconds[kind]`.
    pub fn growth_seconds(&self, kind: GrowthKind) -> f64 {
        self.growth_seconds[kind]
    }

    /// `load_factor` from `entries` and `buckets` (0 without buckets).
    pub(crate) fn computed_load_factor(&self) -> f64 {
        if self.buckets == 0 {
            0.0
        } else {
            self.entries as f64 / self.buckets as f64
        }
    }
}

// Follows a stat to every consumer, so it needs them all.
#[cfg(all(test, feature = "sidecar", feature = "prometheus"))]
mod tests;
