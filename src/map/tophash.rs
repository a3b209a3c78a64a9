//! Tophash bytes: the values a slot's byte takes, and the tophash of a hash.
//! Matching a bucket's eight bytes at once is the storage layer's
//! (`table::matching`), because its `unsafe` code relies on the answers.

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
    fn evacuated_markers() {
        assert!(!is_evacuated(EMPTY_REST));
        assert!(!is_evacuated(EMPTY_ONE));
        assert!(is_evacuated(EVACUATED_X));
        assert!(is_evacuated(EVACUATED_Y));
        assert!(is_evacuated(EVACUATED_EMPTY));
        assert!(!is_evacuated(MIN_TOPHASH));
    }
}
