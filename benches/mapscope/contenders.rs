//! The maps under comparison behind one small interface, and the keys they
//! are fed.
//!
//! Every contender but `std_sip` hashes with `foldhash::fast::RandomState`
//! (mapscope's default and hashbrown's), so that the comparison is between
//! table layouts, not hash functions. `std_sip` is std's `HashMap` as most
//! code uses it, with SipHash-1-3.

use std::collections::hash_map::RandomState as SipState;
use std::hash::Hash;

use foldhash::fast::RandomState as FoldState;

/// mapscope's `InstrumentedMap` with foldhash.
pub(crate) type Mapscope<K> = mapscope::InstrumentedMap<K, u64, FoldState>;
/// hashbrown's `HashMap` with foldhash.
pub(crate) type Hashbrown<K> = hashbrown::HashMap<K, u64, FoldState>;
/// std's `HashMap` with foldhash.
pub(crate) type StdFold<K> = std::collections::HashMap<K, u64, FoldState>;
/// std's `HashMap` with its default SipHash-1-3.
pub(crate) type StdSip<K> = std::collections::HashMap<K, u64, SipState>;

/// A map under comparison, with `u64` values.
pub(crate) trait Contender<K>: Clone {
    /// The name used in benchmark ids and reports.
    const NAME: &'static str;
    /// An empty map that allocates nothing yet.
    fn empty() -> Self;
    /// An empty map presized for `n` entries.
    fn presized(n: usize) -> Self;
    /// Inserts (or overwrites) `key`.
    fn put(&mut self, key: K, value: u64);
    /// Looks `key` up.
    fn find(&self, key: &K) -> Option<&u64>;
    /// Removes `key`.
    fn take(&mut self, key: &K) -> Option<u64>;
    /// Iterates over every entry and sums the values.
    fn sum_values(&self) -> u64;
    /// Entries the map holds before its next growth.
    fn capacity(&self) -> usize;
    /// Finishes any incremental work in progress (mapscope's evacuation).
    fn settle(&mut self) {}
    /// Whether an incremental growth is in progress (only mapscope has them).
    fn growing(&self) -> bool {
        false
    }
    /// Heap bytes as the map itself reports them, if it can.
    fn reported_bytes(&self) -> Option<usize> {
        None
    }
}

/// Implements [`Contender`] for a std-shaped map type alias; the optional
/// block adds or overrides methods.
macro_rules! contender {
    ($alias:ident, $name:literal, $state:ty $(, { $($extra:tt)* })?) => {
        impl<K: Hash + Eq + Clone> Contender<K> for $alias<K> {
            const NAME: &'static str = $name;

            #[inline]
            fn empty() -> Self {
                Self::with_hasher(<$state>::default())
            }

            #[inline]
            fn presized(n: usize) -> Self {
                Self::with_capacity_and_hasher(n, <$state>::default())
            }

            #[inline]
            fn put(&mut self, key: K, value: u64) {
                self.insert(key, value);
            }

            #[inline]
            fn find(&self, key: &K) -> Option<&u64> {
                self.get(key)
            }

            #[inline]
            fn take(&mut self, key: &K) -> Option<u64> {
                self.remove(key)
            }

            #[inline]
            fn sum_values(&self) -> u64 {
                self.iter().map(|(_, v)| *v).sum()
            }

            #[inline]
            fn capacity(&self) -> usize {
                Self::capacity(self)
            }

            $($($extra)*)?
        }
    };
}

contender!(Mapscope, "mapscope", FoldState, {
    fn settle(&mut self) {
        self.complete_growth();
    }

    fn growing(&self) -> bool {
        self.stats().growth.is_some()
    }

    fn reported_bytes(&self) -> Option<usize> {
        Some(self.stats().memory_bytes)
    }
});

contender!(Hashbrown, "hashbrown", FoldState, {
    fn reported_bytes(&self) -> Option<usize> {
        Some(self.allocation_size())
    }
});

contender!(StdFold, "std_foldhash", FoldState);
contender!(StdSip, "std_sip", SipState);

/// A key type the benchmarks generate.
pub(crate) trait KeyKind: Hash + Eq + Clone {
    /// The key type's label in benchmark ids: `u64` or `string`.
    const LABEL: &'static str;
    /// The `i`-th key; distinct `i` give distinct keys.
    fn make(i: u64) -> Self;
}

impl KeyKind for u64 {
    const LABEL: &'static str = "u64";

    fn make(i: u64) -> Self {
        mix(i)
    }
}

impl KeyKind for String {
    const LABEL: &'static str = "string";

    fn make(i: u64) -> Self {
        format!("key-{i:016x}")
    }
}

/// SplitMix64's finaliser: a bijection on `u64`, so distinct inputs give
/// distinct, well-spread keys.
#[inline]
pub(crate) fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
