//! Matching a bucket's eight tophash bytes at once.
//!
//! The eight bytes fit in one `u64`, so "which slots may hold this key",
//! "which are free" and "which hold entries" are answered with a few
//! integer operations (SWAR: SIMD within a register) instead of a loop over
//! bytes. The answer is a [`SlotMask`], and it is exact: the storage
//! layer's `unsafe` code reads a slot only where these say its byte is full
//! (invariant 3 of the parent module), so a false positive would be a read
//! of uninitialised memory. That is why matching lives in the storage
//! module; the tests check it against a byte-by-byte reference.
//!
//! An SSE2 version (`pcmpeqb` and `pmovmskb`, as hashbrown matches its
//! 16-byte groups) was measured against this one: it needs an `unsafe`
//! call per matcher, and saved about 1.5% of the instructions of a lookup,
//! far below the 20% the project asks of `unsafe` code, so it is not used
//! (see `docs/engine.md`).

use super::super::tophash::{BUCKET_SLOTS, MIN_TOPHASH};

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// A set of slot indexes: the high bit of byte `i` stands for slot `i`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlotMask(u64);

impl SlotMask {
    /// No slot.
    pub(crate) const EMPTY: SlotMask = SlotMask(0);

    /// The highest slot in the set.
    #[inline]
    pub(crate) fn highest(self) -> Option<usize> {
        if self.0 == 0 {
            None
        } else {
            // Masked to the bucket's slots, so that indexing a bucket with
            // the result needs no bounds check (it never changes the value).
            Some((7 - self.0.leading_zeros() as usize / 8) & (BUCKET_SLOTS - 1))
        }
    }

    /// The lowest slot in the set.
    #[inline]
    pub(crate) fn lowest(self) -> Option<usize> {
        if self.0 == 0 {
            None
        } else {
            // As in `highest`.
            Some((self.0.trailing_zeros() as usize / 8) & (BUCKET_SLOTS - 1))
        }
    }
}

impl Iterator for SlotMask {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        let slot = self.lowest()?;
        self.0 &= self.0 - 1;
        Some(slot)
    }
}

/// The bytes of `word` that are exactly zero. Unlike the classic
/// `(x - 0x01..) & !x & 0x80..` trick this has no false positives: adding
/// 0x7f to the low seven bits of a byte cannot carry into the next byte.
#[inline]
fn zero_bytes(word: u64) -> SlotMask {
    let nonzero = ((word & LOW7).wrapping_add(LOW7)) | word;
    SlotMask(!nonzero & HI)
}

/// The slots whose tophash equals `top`.
#[inline]
pub(crate) fn match_tophash(tophash: &[u8; BUCKET_SLOTS], top: u8) -> SlotMask {
    zero_bytes(u64::from_le_bytes(*tophash) ^ (LO * u64::from(top)))
}

/// The slots that are free to take an entry: `EMPTY_REST` or `EMPTY_ONE`.
#[inline]
pub(crate) fn match_free(tophash: &[u8; BUCKET_SLOTS]) -> SlotMask {
    // A byte is 0 or 1 exactly when it is zero after clearing its lowest bit.
    zero_bytes(u64::from_le_bytes(*tophash) & !LO)
}

/// The slots that hold an entry: tophash `>= MIN_TOPHASH`. A byte below
/// 0x80 is at least 5 exactly when adding 0x7b to it sets its high bit,
/// and the sum stays below 0x100, so no carry crosses into the next byte;
/// bytes at or above 0x80 qualify through their own high bit.
#[inline]
pub(crate) fn match_full(tophash: &[u8; BUCKET_SLOTS]) -> SlotMask {
    const ADD: u64 = LO * (0x80 - MIN_TOPHASH as u64);
    let word = u64::from_le_bytes(*tophash);
    SlotMask((((word & LOW7).wrapping_add(ADD)) | word) & HI)
}

#[cfg(test)]
mod tests {
    use super::super::super::tophash::EMPTY_ONE;
    use super::*;

    /// The reference: one byte at a time.
    fn slots(word: &[u8; 8], keep: impl Fn(u8) -> bool) -> Vec<usize> {
        (0..8).filter(|&i| keep(word[i])).collect()
    }

    fn check(word: &[u8; 8], top: u8) {
        let expect = slots(word, |b| b == top);
        assert_eq!(match_tophash(word, top).collect::<Vec<_>>(), expect);
        let free = slots(word, |b| b <= EMPTY_ONE);
        assert_eq!(match_free(word).collect::<Vec<_>>(), free);
        let full = slots(word, |b| b >= MIN_TOPHASH);
        assert_eq!(match_full(word).collect::<Vec<_>>(), full);
        assert_eq!(match_full(word).highest(), full.last().copied());
        assert_eq!(match_full(word).lowest(), full.first().copied());
    }

    #[test]
    fn matching_is_exact() {
        let bytes = [5u8, 6, 5, 0, 1, 255, 4, 6];
        assert_eq!(match_tophash(&bytes, 5).collect::<Vec<_>>(), vec![0, 2]);
        assert_eq!(match_tophash(&bytes, 6).collect::<Vec<_>>(), vec![1, 7]);
        assert_eq!(match_tophash(&bytes, 255).collect::<Vec<_>>(), vec![5]);
        assert_eq!(match_tophash(&bytes, 7).lowest(), None);
        assert_eq!(match_free(&bytes).collect::<Vec<_>>(), vec![3, 4]);
        // Every byte value at one position among every background value.
        for a in 0u8..=255 {
            for b in 0u8..=255 {
                let mut word = [b; 8];
                word[3] = a;
                check(&word, a);
                check(&word, b);
            }
        }
        // Random words, with bytes drawn from a few values so that matches
        // are common.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            let word = state
                .to_le_bytes()
                .map(|b| [0, 1, 2, 4, 5, 6, 0x7f, 0x80, 0xff][b as usize % 9]);
            for top in [0, 1, 5, 6, 0x7f, 0x80, 0xff] {
                check(&word, top);
            }
        }
    }
}
