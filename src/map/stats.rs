//! The plain stats struct a map fills on demand.

/// What kind of growth an evacuation performs.
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

/// A point-in-time view of one map's internals and lifetime counters.
///
/// Filled by [`InstrumentedMap::stats`](crate::InstrumentedMap::stats) in
/// O(1): the counters are plain fields the map bumps as it works, and
/// nothing here walks the buckets.
///
/// ```
/// let mut map = mapscope::InstrumentedMap::new();
/// for i in 0..100_000u64 {
///     map.insert(i, i);
/// }
/// let stats = map.stats();
/// assert_eq!(stats.entries, 100_000);
/// assert_eq!(stats.buckets, 16_384); // smallest 2^B with 100_000 <= 6.5 * 2^B
/// assert_eq!(stats.growths_double, 14);
/// assert!(stats.load_factor <= 6.5);
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MapStats {
    /// Live entries.
    pub entries: usize,
    /// The most entries the map has held at once.
    pub peak_entries: usize,
    /// Buckets in the current array, `2^B` (during a growth, the new array).
    /// 0 before the first insert.
    pub buckets: usize,
    /// Overflow buckets chained to the current and old arrays.
    pub overflow_buckets: usize,
    /// Entries per bucket, Go's definition: a doubling starts above 6.5.
    pub load_factor: f64,
    /// Heap bytes held by the bucket arrays (old array included during a
    /// growth), overflow buckets and bookkeeping. Heap memory owned by the
    /// keys and values themselves (a `String`'s bytes) is not counted.
    pub memory_bytes: usize,
    /// The evacuation in progress, if any.
    pub growth: Option<Growth>,
    /// Doublings started.
    pub growths_double: u64,
    /// Same-size growths started.
    pub growths_same_size: u64,
    /// Halvings started.
    pub shrinks: u64,
    /// Wall seconds spent in finished doublings, from start to last evacuated bucket.
    pub growth_seconds_double: f64,
    /// Wall seconds spent in finished same-size growths.
    pub growth_seconds_same_size: f64,
    /// Wall seconds spent in finished halvings.
    pub growth_seconds_shrink: f64,
    /// Old buckets evacuated, over the map's lifetime.
    pub evacuated_buckets_total: u64,
    /// Inserts of new keys.
    pub inserts: u64,
    /// Inserts that overwrote the value of an existing key.
    pub updates: u64,
    /// Entries removed, by `remove`, `retain`, `drain` and `clear`.
    pub removes: u64,
    /// Overflow buckets in the longest chain (0 when no bucket overflows).
    pub max_overflow_chain: usize,
}

impl MapStats {
    /// Growths started of one kind.
    ///
    /// ```
    /// let stats = mapscope::MapStats::default();
    /// assert_eq!(stats.growths(mapscope::GrowthKind::Shrink), 0);
    /// ```
    pub fn growths(&self, kind: GrowthKind) -> u64 {
        match kind {
            GrowthKind::Double => self.growths_double,
            GrowthKind::SameSize => self.growths_same_size,
            GrowthKind::Shrink => self.shrinks,
        }
    }

    /// Wall seconds spent in finished growths of one kind.
    pub fn growth_seconds(&self, kind: GrowthKind) -> f64 {
        match kind {
            GrowthKind::Double => self.growth_seconds_double,
            GrowthKind::SameSize => self.growth_seconds_same_size,
            GrowthKind::Shrink => self.growth_seconds_shrink,
        }
    }
}
