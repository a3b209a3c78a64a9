//! Model-based property tests: random sequences of operations are applied
//! both to an [`InstrumentedMap`] and to a `std::collections::HashMap` (the
//! model). After every operation the return values and the stats
//! invariants are checked; periodically (after every operation while the
//! map is small) and at the end the whole contents are compared: `len`,
//! iteration, `get` of every model key, and absent keys.
//!
//! The operations cover the whole std-shaped API (insert, update, get,
//! get_mut, remove, remove_entry, every entry method, retain, iter,
//! iter_mut, keys, values, values_mut, full and abandoned drains, clear,
//! shrink_to_fit, shrink_to, complete_growth, set_auto_shrink, clone,
//! into_iter, into_keys, into_values), plus runs of inserts, removes,
//! random churn and sliding windows.
//!
//! The sequences run over small and large `u64` key spaces and over `String`
//! keys, with the default hasher and with degenerate hashers built here
//! (constant, `% 4`, few distinct tophash bytes, top byte only, blocks of
//! consecutive keys) that force long overflow chains, tophash collisions
//! and same-size growth. Runs of thousands of operations push the
//! large-space maps through many doublings, multi-chunk bucket arrays and
//! shrink halvings.
//!
//! Every shrunk failure found here is kept as a named test in
//! `tests/regressions.rs`.
//!
//! `MODEL_CASES_SCALE=10 cargo test --release --test model` runs ten times
//! as many cases, for a longer hunt; `MODEL_TRACE=1` (with `--nocapture`)
//! prints what each case went through (peak size, growths of each kind).
//!
//! One test binary, a module per concern: [`keys`] and [`hashers`] (the
//! key types and the degenerate hashers), [`ops`] (the operations and their
//! strategies), [`checks`] (stats and contents checks) and [`harness`]
//! (the map and the model, side by side); the properties are here.

mod checks;
mod harness;
mod hashers;
mod keys;
mod ops;

use mapscope::{DefaultHashBuilder, InstrumentedMap};
use proptest::prelude::*;
use proptest::test_runner::{FileFailurePersistence, RngAlgorithm};

use crate::harness::run;
use crate::hashers::{Degenerate, Entropy};
use crate::ops::{ops, Profile};

/// `cases` cases, with failures persisted to `proptest-regressions/model.txt`
/// (the default location needs a `lib.rs` next to the test file).
/// `MODEL_CASES_SCALE=n` in the environment runs `n` times as many cases,
/// for a longer hunt than the default, CI-sized one; `PROPTEST_CASES=n`
/// runs `n` cases per property instead (the sanitizer and memcheck jobs of
/// `.ci/run` run few).
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(cases);
    let scale = std::env::var("MODEL_CASES_SCALE")
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(1);
    ProptestConfig {
        cases: cases * scale,
        // ChaCha costs a quarter of the run time in debug builds.
        rng_algorithm: RngAlgorithm::XorShift,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/model.txt",
        ))),
        ..ProptestConfig::default()
    }
}

/// Keys `0..64`: most operations hit, maps of at most 64 entries.
const SMALL: u64 = 64;
/// Keys `0..100_000`: inserts are mostly of new keys.
const LARGE: u64 = 100_000;
/// `String` keys `"key-0"..`.
const STRINGS: u64 = 3_000;

type U64Map<S = DefaultHashBuilder> = InstrumentedMap<u64, u64, S>;
type StringMap<S = DefaultHashBuilder> = InstrumentedMap<String, u64, S>;

fn degenerate<K>(entropy: Entropy) -> InstrumentedMap<K, u64, Degenerate> {
    InstrumentedMap::with_hasher(Degenerate(entropy))
}

// Small key space, every kind of hasher: a full comparison after nearly
// every operation.
proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn small_keys_default_hasher(ops in ops(SMALL, Profile::Mixed, 64, 1..400)) {
        run(U64Map::new(), SMALL, &ops);
    }

    #[test]
    fn small_keys_constant_hasher(ops in ops(SMALL, Profile::Mixed, 64, 1..400)) {
        run(degenerate::<u64>(Entropy::Constant), SMALL, &ops);
    }

    #[test]
    fn small_keys_mod4_hasher(ops in ops(SMALL, Profile::Mixed, 64, 1..400)) {
        run(degenerate::<u64>(Entropy::Mod4), SMALL, &ops);
    }

    #[test]
    fn small_keys_few_tophash_hasher(ops in ops(SMALL, Profile::Mixed, 64, 1..400)) {
        run(degenerate::<u64>(Entropy::FewTops), SMALL, &ops);
    }

    #[test]
    fn small_keys_top_only_hasher(ops in ops(SMALL, Profile::Mixed, 64, 1..400)) {
        run(degenerate::<u64>(Entropy::TopOnly), SMALL, &ops);
    }

    #[test]
    fn small_keys_block_hasher(ops in ops(SMALL, Profile::Mixed, 64, 1..400)) {
        run(degenerate::<u64>(Entropy::Blocks(4)), SMALL, &ops);
    }

    #[test]
    fn small_string_keys_mod4_hasher(ops in ops(SMALL, Profile::Mixed, 64, 1..400)) {
        run(degenerate::<String>(Entropy::Mod4), SMALL, &ops);
    }
}

// Large key spaces and String keys, mixed operations with runs of a few
// hundred; chains of hundreds of entries; churn at a steady size.
proptest! {
    #![proptest_config(config(16))]

    #[test]
    fn large_keys_default_hasher(ops in ops(LARGE, Profile::Mixed, 400, 1..600)) {
        run(U64Map::new(), LARGE, &ops);
    }

    #[test]
    fn string_keys_default_hasher(ops in ops(STRINGS, Profile::Mixed, 200, 1..500)) {
        run(StringMap::new(), STRINGS, &ops);
    }

    #[test]
    fn large_keys_few_tophash_hasher(ops in ops(LARGE, Profile::Mixed, 400, 1..600)) {
        run(degenerate::<u64>(Entropy::FewTops), LARGE, &ops);
    }

    #[test]
    fn large_keys_presized(
        capacity in 0..5_000usize,
        ops in ops(LARGE, Profile::Mixed, 400, 1..400),
    ) {
        run(U64Map::with_capacity(capacity), LARGE, &ops);
    }

    /// Chains of hundreds of entries: every lookup scans one long chain.
    #[test]
    fn large_keys_constant_hasher(ops in ops(LARGE, Profile::Mixed, 100, 1..400)) {
        run(degenerate::<u64>(Entropy::Constant), LARGE, &ops);
    }

    #[test]
    fn string_keys_constant_hasher(ops in ops(STRINGS, Profile::Mixed, 60, 1..400)) {
        run(degenerate::<String>(Entropy::Constant), STRINGS, &ops);
    }

    /// Sliding windows and churn at a steady size: with the block hasher
    /// most cases go through same-size growths.
    #[test]
    fn churn_block_hasher(ops in ops(LARGE, Profile::Churn, 64, 1..100)) {
        run(degenerate::<u64>(Entropy::Blocks(4)), LARGE, &ops);
    }

    #[test]
    fn churn_default_hasher(ops in ops(LARGE, Profile::Churn, 64, 1..100)) {
        run(U64Map::new(), LARGE, &ops);
    }
}

// Long runs: hundreds of thousands of single-key operations in all, through
// many doublings, multi-chunk arrays (more than 256 buckets of u64 pairs),
// evacuation marks that skip up to 1024 buckets, same-size growths and
// halvings.
proptest! {
    #![proptest_config(config(8))]

    #[test]
    fn large_keys_growth_default_hasher(ops in ops(LARGE, Profile::Growth, 4_000, 20..150)) {
        run(U64Map::new(), LARGE, &ops);
    }

    #[test]
    fn large_keys_growth_few_tophash_hasher(ops in ops(LARGE, Profile::Growth, 4_000, 20..150)) {
        run(degenerate::<u64>(Entropy::FewTops), LARGE, &ops);
    }

    #[test]
    fn large_keys_growth_block_hasher(ops in ops(LARGE, Profile::Growth, 1_000, 20..150)) {
        run(degenerate::<u64>(Entropy::Blocks(6)), LARGE, &ops);
    }

    #[test]
    fn large_keys_growth_mod4_hasher(ops in ops(LARGE, Profile::Growth, 300, 20..100)) {
        run(degenerate::<u64>(Entropy::Mod4), LARGE, &ops);
    }

    #[test]
    fn string_keys_growth_default_hasher(ops in ops(STRINGS, Profile::Growth, 2_000, 20..100)) {
        run(StringMap::new(), STRINGS, &ops);
    }
}
