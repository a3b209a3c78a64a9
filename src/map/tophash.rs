//! Tophash bytes, and matching all eight of a bucket's tophash bytes at once.
//!
//! A bucket's eight tophash bytes fit in one `u64`, so "which slots may hold
//! this key" and "which slots are free" are answered with a few integer
//! operations (SWAR: SIMD within a register) instead of a loop over bytes.

/// Slots per bucket, as in Go's `bucketCnt`.
pub(crate) const BUCKET_SLOTS: usize = 8;

/// This slot and every later slot of the bucket and its overflow chain are
/// empty (Go's `emptyRest`). Lookups stop here.
pub(crate) const EMPTY_REST: u8 = 0;
/// This slot is empty, but a later one may not be (Go's `emptyOne`).
pub(crate) const EMPTY_ONE: u8 = 1;
/// The slot's entry was evacuated to the first half of the new array (Go's `evacuatedX`).
pub(crate) const EVACUATED_X: u8 = 2;
/// The slot's entry was evacuated to the second half of the new array (Go's `evacuatedY`).
pub(crate) const EVACUATED_Y: u8 = 3;
/// The slot was empty when its bucket was evacuated (Go's `evacuatedEmpty`).
pub(crate) const EVACUATED_EMPTY: u8 = 4;
/// The smallest tophash of a live entry; smaller values are the markers above.
pub(crate) const MIN_TOPHASH: u8 = 5;

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;
const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;

/// The tophash of a hash: its top byte, shifted above the reserved markers
/// exactly as Go's `tophash()` does.
#[inline]
pub(crate) fn tophash(hash: u64) -> u8 {
    let top = (hash >> 56) as u8;
    if top < MIN_TOPHASH {
        top + MIN_TOPHASH
    } else {
        top
    }
}

/// Whether a bucket whose first tophash is `first` has been evacuated
/// (Go's `evacuated()`).
#[inline]
pub(crate) fn is_evacuated(first: u8) -> bool {
    first > EMPTY_ONE && first < MIN_TOPHASH
}

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
            Some(7 - self.0.leading_zeros() as usize / 8)
        }
    }

    /// The lowest slot in the set.
    #[inline]
    pub(crate) fn lowest(self) -> Option<usize> {
        if self.0 == 0 {
            None
        } else {
            Some(self.0.trailing_zeros() as usize / 8)
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
    use super::*;

    #[test]
    fn tophash_skips_reserved_values() {
        for top in 0u8..=255 {
            let t = tophash(u64::from(top) << 56);
            assert!(t >= MIN_TOPHASH);
            if top >= MIN_TOPHASH {
                assert_eq!(t, top);
            }
        }
    }

    #[test]
    fn matching_has_no_false_positives() {
        let bytes = [5u8, 6, 5, 0, 1, 255, 4, 6];
        assert_eq!(match_tophash(&bytes, 5).collect::<Vec<_>>(), vec![0, 2]);
        assert_eq!(match_tophash(&bytes, 6).collect::<Vec<_>>(), vec![1, 7]);
        assert_eq!(match_tophash(&bytes, 255).collect::<Vec<_>>(), vec![5]);
        assert_eq!(match_tophash(&bytes, 7).lowest(), None);
        assert_eq!(match_free(&bytes).collect::<Vec<_>>(), vec![3, 4]);
        // Every pair of byte values, at every position.
        for a in 0u8..=255 {
            for b in [0u8, 1, 5, 127, 128, 255] {
                let mut word = [b; 8];
                word[3] = a;
                let expect: Vec<usize> = (0..8).filter(|&i| word[i] == a).collect();
                assert_eq!(match_tophash(&word, a).collect::<Vec<_>>(), expect);
                let free: Vec<usize> = (0..8).filter(|&i| word[i] <= EMPTY_ONE).collect();
                assert_eq!(match_free(&word).collect::<Vec<_>>(), free);
                let full: Vec<usize> = (0..8).filter(|&i| word[i] >= MIN_TOPHASH).collect();
                assert_eq!(match_full(&word).collect::<Vec<_>>(), full);
                assert_eq!(match_full(&word).highest(), full.last().copied());
            }
        }
    }

    #[test]
    fn evacuated_markers() {
        assert!(!is_evacuated(EMPTY_REST));
        assert!(!is_evacuated(EMPTY_ONE));
        assert!(is_evacuated(EVACUATED_X));
        assert!(is_evacuated(EVACUATED_Y));
        assert!(is_evacuated(EVACUATED_EMPTY));
        assert!(!is_evacuated(MIN_TOPHASH));
    }
}
