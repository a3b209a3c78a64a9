//! Degenerate hashers (constant, `% 4`, few distinct tophash bytes, top
//! byte only, blocks of consecutive keys) that force long overflow chains,
//! tophash collisions and same-size growth.

use std::fmt::Debug;
use std::hash::{BuildHasher, Hasher};

use crate::keys::mix;

/// How a [`Degenerate`] hasher throws entropy away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Entropy {
    /// Every key hashes to 0: one bucket, one tophash, the longest chains.
    /// (No same-size growth: one chain never has as many overflow buckets
    /// as a table sized for its entries has buckets.)
    Constant,
    /// `hash % 4`: four buckets at most, and every tophash is the same.
    Mod4,
    /// Well-spread low bits (buckets) but only three distinct top bytes,
    /// so most slots of a bucket share a tophash and key equality decides.
    FewTops,
    /// Only the top byte varies: every key in bucket 0, tophash filtering
    /// still works.
    TopOnly,
    /// `u64` keys hash as `key >> shift` (mixed), so each block of
    /// `2^shift` consecutive keys shares one bucket and one tophash. Churn
    /// that moves from block to block leaves overflow buckets behind in
    /// bucket after bucket: the way to same-size growth.
    Blocks(u8),
}

/// A `BuildHasher` that runs FNV-1a over the key's bytes, mixes, and then
/// degrades the result according to its [`Entropy`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Degenerate(pub(crate) Entropy);

impl BuildHasher for Degenerate {
    type Hasher = DegenerateHasher;
    fn build_hasher(&self) -> DegenerateHasher {
        DegenerateHasher {
            entropy: self.0,
            state: 0xcbf2_9ce4_8422_2325,
        }
    }
}

/// The hasher a [`Degenerate`] builds.
#[derive(Debug)]
pub(crate) struct DegenerateHasher {
    pub(crate) entropy: Entropy,
    pub(crate) state: u64,
}

impl Hasher for DegenerateHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.state ^= u64::from(b);
            self.state = self.state.wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        match self.entropy {
            Entropy::Blocks(shift) => self.write(&(n >> shift).to_le_bytes()),
            _ => self.write(&n.to_le_bytes()),
        }
    }

    fn finish(&self) -> u64 {
        let h = mix(self.state);
        match self.entropy {
            Entropy::Constant => 0,
            Entropy::Mod4 => h % 4,
            Entropy::FewTops => (h & 0x00ff_ffff_ffff_ffff) | (((h >> 56) % 3) << 56),
            Entropy::TopOnly => h & 0xff00_0000_0000_0000,
            Entropy::Blocks(_) => h,
        }
    }
}
