//! Matching a bucket's eight tophash bytes at once.
//!
//! The eight bytes fit in one `u64`, so "which slots may hold this key",
//! "which are free" and "which hold entries" are answered without a loop
//! over bytes: with one SSE2 comparison on `x86_64` (`pmovmskb` packs the
//! result into one bit per slot, so finding a slot is a `tzcnt`, as in
//! hashbrown's 16-byte groups), and with a few integer operations (SWAR:
//! SIMD within a register) elsewhere. Either way the answer is a
//! [`SlotMask`] with one bit per slot, and it is exact: the storage layer's
//! `unsafe` code reads a slot only where these say its byte is full
//! (invariant 3 of the parent module), so a false positive would be a read
//! of uninitialised memory. The tests check both implementations against a
//! byte-by-byte reference.

use super::super::tophash::BUCKET_SLOTS;
#[cfg(any(test, not(target_arch = "x86_64")))]
use super::super::tophash::MIN_TOPHASH;

/// A set of slot indexes: bit `i` stands for slot `i`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlotMask(u32);

impl SlotMask {
    /// No slot.
    pub(crate) const EMPTY: SlotMask = SlotMask(0);

    /// The highest slot in the set.
    #[inline]
    pub(crate) fn highest(self) -> Option<usize> {
        if self.0 == 0 {
            None
        } else {
            // Masked to the bucket's slots so that indexing a bucket with
            // it needs no bounds check (the set never holds a higher bit).
            Some((31 - self.0.leading_zeros() as usize) & (BUCKET_SLOTS - 1))
        }
    }

    /// The lowest slot in the set.
    #[inline]
    pub(crate) fn lowest(self) -> Option<usize> {
        if self.0 == 0 {
            None
        } else {
            // As in `highest`.
            Some(self.0.trailing_zeros() as usize & (BUCKET_SLOTS - 1))
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

/// SSE2, which every `x86_64` processor has (it is part of the target's
/// baseline, so these never run where it is missing).
#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_cvtsi64_si128, _mm_max_epu8, _mm_min_epu8, _mm_movemask_epi8,
        _mm_set1_epi8,
    };

    use super::super::super::tophash::{EMPTY_ONE, MIN_TOPHASH};
    use super::{SlotMask, BUCKET_SLOTS};

    /// The bytes in the low half of a vector (the high half is zero).
    #[inline]
    #[target_feature(enable = "sse2")]
    fn load(tophash: &[u8; BUCKET_SLOTS]) -> __m128i {
        _mm_cvtsi64_si128(i64::from_le_bytes(*tophash))
    }

    /// One bit per slot from a comparison's lanes; the eight high lanes
    /// compared the zero half and are dropped.
    #[inline]
    #[target_feature(enable = "sse2")]
    fn bits(lanes: __m128i) -> SlotMask {
        SlotMask(_mm_movemask_epi8(lanes) as u32 & 0xff)
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    pub(super) fn match_byte(tophash: &[u8; BUCKET_SLOTS], byte: u8) -> SlotMask {
        // The byte in each of the low eight lanes (a multiply and a move,
        // cheaper than a full-width broadcast); the high lanes are zero on
        // both sides and dropped by `bits`.
        let splat = _mm_cvtsi64_si128((0x0101_0101_0101_0101u64 * u64::from(byte)) as i64);
        bits(_mm_cmpeq_epi8(load(tophash), splat))
    }

    /// `min(b, 1) == b` exactly when `b <= 1`.
    #[inline]
    #[target_feature(enable = "sse2")]
    pub(super) fn match_free(tophash: &[u8; BUCKET_SLOTS]) -> SlotMask {
        let bytes = load(tophash);
        let low = _mm_min_epu8(bytes, _mm_set1_epi8(EMPTY_ONE as i8));
        bits(_mm_cmpeq_epi8(low, bytes))
    }

    /// `max(b, 5) == b` exactly when `b >= 5` (unsigned bytes).
    #[inline]
    #[target_feature(enable = "sse2")]
    pub(super) fn match_full(tophash: &[u8; BUCKET_SLOTS]) -> SlotMask {
        let bytes = load(tophash);
        let high = _mm_max_epu8(bytes, _mm_set1_epi8(MIN_TOPHASH as i8));
        bits(_mm_cmpeq_epi8(high, bytes))
    }
}

/// SWAR, for targets without SSE2; on `x86_64` only the tests build it, to
/// check that the two agree.
#[cfg(any(test, not(target_arch = "x86_64")))]
mod swar {
    use super::{SlotMask, BUCKET_SLOTS, MIN_TOPHASH};

    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

    /// One bit per slot from the high bit of each byte: byte `i` of
    /// `high >> 7` is 0 or 1, and the product adds it into bit `56 + i`
    /// with no two terms meeting.
    #[inline]
    fn pack(high: u64) -> SlotMask {
        SlotMask(((high >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u32)
    }

    /// The bytes of `word` that are exactly zero. Unlike the classic
    /// `(x - 0x01..) & !x & 0x80..` trick this has no false positives:
    /// adding 0x7f to the low seven bits of a byte cannot carry into the
    /// next byte.
    #[inline]
    fn zero_bytes(word: u64) -> SlotMask {
        let nonzero = ((word & LOW7).wrapping_add(LOW7)) | word;
        pack(!nonzero & HI)
    }

    #[inline]
    pub(super) fn match_byte(tophash: &[u8; BUCKET_SLOTS], byte: u8) -> SlotMask {
        zero_bytes(u64::from_le_bytes(*tophash) ^ (LO * u64::from(byte)))
    }

    /// A byte is 0 or 1 exactly when it is zero after clearing its lowest bit.
    #[inline]
    pub(super) fn match_free(tophash: &[u8; BUCKET_SLOTS]) -> SlotMask {
        zero_bytes(u64::from_le_bytes(*tophash) & !LO)
    }

    /// A byte below 0x80 is at least 5 exactly when adding 0x7b to it sets
    /// its high bit, and the sum stays below 0x100, so no carry crosses
    /// into the next byte; bytes at or above 0x80 qualify through their own
    /// high bit.
    #[inline]
    pub(super) fn match_full(tophash: &[u8; BUCKET_SLOTS]) -> SlotMask {
        const ADD: u64 = LO * (0x80 - MIN_TOPHASH as u64);
        let word = u64::from_le_bytes(*tophash);
        pack((((word & LOW7).wrapping_add(ADD)) | word) & HI)
    }
}

/// Calls the SSE2 version of a matcher.
#[cfg(target_arch = "x86_64")]
macro_rules! dispatch {
    ($name:ident($($arg:expr),*)) => {
        // SAFETY: the function's only requirement is SSE2, which every
        // `x86_64` target enables (it is part of the architecture's
        // baseline), so the processor running this code has it.
        unsafe { sse2::$name($($arg),*) }
    };
}

/// Calls the SWAR version of a matcher.
#[cfg(not(target_arch = "x86_64"))]
macro_rules! dispatch {
    ($name:ident($($arg:expr),*)) => {
        swar::$name($($arg),*)
    };
}

/// The slots whose tophash equals `top`.
#[inline]
pub(crate) fn match_tophash(tophash: &[u8; BUCKET_SLOTS], top: u8) -> SlotMask {
    dispatch!(match_byte(tophash, top))
}

/// The slots that are free to take an entry: `EMPTY_REST` or `EMPTY_ONE`.
#[inline]
pub(crate) fn match_free(tophash: &[u8; BUCKET_SLOTS]) -> SlotMask {
    dispatch!(match_free(tophash))
}

/// The slots that hold an entry: tophash `>= MIN_TOPHASH`.
#[inline]
pub(crate) fn match_full(tophash: &[u8; BUCKET_SLOTS]) -> SlotMask {
    dispatch!(match_full(tophash))
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
        assert_eq!(swar::match_byte(word, top).collect::<Vec<_>>(), expect);
        let free = slots(word, |b| b <= EMPTY_ONE);
        assert_eq!(match_free(word).collect::<Vec<_>>(), free);
        assert_eq!(swar::match_free(word).collect::<Vec<_>>(), free);
        let full = slots(word, |b| b >= MIN_TOPHASH);
        assert_eq!(match_full(word).collect::<Vec<_>>(), full);
        assert_eq!(swar::match_full(word).collect::<Vec<_>>(), full);
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
        // Random words, with tophashes drawn from a few values so that
        // matches are common.
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
