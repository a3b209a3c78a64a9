//! The key types the sequences run over (`u64` and `String`), built from
//! and mapped back to a numeric id.

use std::fmt::Debug;
use std::hash::Hash;

/// A key type the harness can build from, and map back to, a numeric id.
pub(crate) trait Key: Clone + Eq + Hash + Ord + Debug {
    fn from_id(id: u64) -> Self;
    fn id(&self) -> u64;
}

impl Key for u64 {
    fn from_id(id: u64) -> Self {
        id
    }
    fn id(&self) -> u64 {
        *self
    }
}

impl Key for String {
    fn from_id(id: u64) -> Self {
        format!("key-{id}")
    }
    fn id(&self) -> u64 {
        self["key-".len()..].parse().expect("a harness-made key")
    }
}

/// splitmix64's finaliser: a cheap, well-mixing bijection.
pub(crate) fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
