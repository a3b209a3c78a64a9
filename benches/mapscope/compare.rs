//! Throughput: mapscope against hashbrown and std, per operation, key type
//! and size.
//!
//! Benchmark ids are `{key}/{op}/{n}/{map}`: the criterion group is
//! `{key}/{op}/{n}` (`u64` or `string`; `insert`, `insert_presized`,
//! `lookup_hit`, `lookup_miss`, `remove`, `iterate`; 1000, 100000,
//! 1000000) and the function is the map (`mapscope`, `hashbrown`,
//! `std_foldhash`, `std_sip`), so `benches/report.py` can pair them. Every
//! group's throughput is `n` elements: criterion reports time per whole
//! operation over `n` keys and elements per second; divide by `n` for time
//! per element.
//!
//! Keys, maps and clones are built lazily inside the benchmark closures, so
//! a filtered run only pays for what it measures; setup (key vectors,
//! prebuilt maps, clones for `remove`) and dropping the resulting maps are
//! never timed.

use std::cell::OnceCell;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{BatchSize, Bencher, BenchmarkGroup, Criterion, SamplingMode, Throughput};

use crate::contenders::{Contender, Hashbrown, KeyKind, Mapscope, StdFold, StdSip};

/// Map sizes, in entries.
const SIZES: [usize; 3] = [1_000, 100_000, 1_000_000];

/// Runs every comparison group.
pub(crate) fn benches(c: &mut Criterion) {
    by_key::<u64>(c);
    by_key::<String>(c);
}

/// Every operation and size for one key type.
fn by_key<K: KeyKind>(c: &mut Criterion) {
    for n in SIZES {
        let keys = Keys::<K>::new(n);
        run_op::<K, Insert>(c, &keys);
        run_op::<K, InsertPresized>(c, &keys);
        run_op::<K, LookupHit>(c, &keys);
        run_op::<K, LookupMiss>(c, &keys);
        run_op::<K, Remove>(c, &keys);
        run_op::<K, Iterate>(c, &keys);
    }
}

/// The keys for one size, generated on first use and shared by every
/// operation and map of that size.
struct Keys<K> {
    n: usize,
    hits: OnceCell<Vec<K>>,
    misses: OnceCell<Vec<K>>,
}

impl<K: KeyKind> Keys<K> {
    fn new(n: usize) -> Self {
        Keys {
            n,
            hits: OnceCell::new(),
            misses: OnceCell::new(),
        }
    }

    /// The `n` keys every map is built from.
    fn hits(&self) -> &[K] {
        self.hits
            .get_or_init(|| (0..self.n as u64).map(K::make).collect())
    }

    /// `n` keys none of the maps hold.
    fn misses(&self) -> &[K] {
        let n = self.n as u64;
        self.misses
            .get_or_init(|| (n..2 * n).map(K::make).collect())
    }

    /// A map holding every hit key (value: the key's index), built by
    /// inserting from empty, with any incremental growth finished.
    fn build<M: Contender<K>>(&self) -> M {
        let mut map = M::empty();
        for (i, key) in self.hits().iter().enumerate() {
            map.put(key.clone(), i as u64);
        }
        map.settle();
        map
    }
}

/// One measured operation.
trait Op {
    /// The operation's part of the group name.
    const NAME: &'static str;

    /// Measures the operation on map type `M`. `built` caches a prebuilt
    /// map across the closure's calls, for operations that need one.
    fn run<K: KeyKind, M: Contender<K>>(b: &mut Bencher<'_>, keys: &Keys<K>, built: &mut Option<M>);
}

/// One criterion group: the operation on all four maps at one size.
fn run_op<K: KeyKind, O: Op>(c: &mut Criterion, keys: &Keys<K>) {
    let n = keys.n;
    let mut group = c.benchmark_group(format!("{}/{}/{n}", K::LABEL, O::NAME));
    group.throughput(Throughput::Elements(n as u64));
    configure(&mut group, n);
    run_map::<K, Mapscope<K>, O>(&mut group, keys);
    run_map::<K, Hashbrown<K>, O>(&mut group, keys);
    run_map::<K, StdFold<K>, O>(&mut group, keys);
    run_map::<K, StdSip<K>, O>(&mut group, keys);
    group.finish();
}

/// One benchmark; the prebuilt map, if any, is dropped when it ends.
fn run_map<K: KeyKind, M: Contender<K>, O: Op>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    keys: &Keys<K>,
) {
    let mut built: Option<M> = None;
    group.bench_function(M::NAME, |b| O::run(b, keys, &mut built));
}

/// Modest sample sizes and times: the suite has 144 benchmarks and runs on
/// small machines. Large sizes use flat sampling, so a sample can be a
/// single iteration of a ~100 ms operation.
fn configure(group: &mut BenchmarkGroup<'_, WallTime>, n: usize) {
    let (samples, warm_up_ms, measure_ms) = match n {
        0..=10_000 => (20, 500, 1_000),
        10_001..=200_000 => (15, 500, 1_500),
        _ => (10, 1_000, 2_500),
    };
    group.sample_size(samples);
    group.warm_up_time(Duration::from_millis(warm_up_ms));
    group.measurement_time(Duration::from_millis(measure_ms));
    if n > 200_000 {
        group.sampling_mode(SamplingMode::Flat);
    }
}

/// Batches for `iter_batched`: one input per timed iteration for large
/// maps (their inputs are big and the timer's cost is negligible), small
/// batches otherwise so inputs stay few.
fn batch(n: usize) -> BatchSize {
    if n >= 100_000 {
        BatchSize::PerIteration
    } else {
        BatchSize::LargeInput
    }
}

/// Prebuilds the map on the closure's first call.
fn prebuilt<'a, K: KeyKind, M: Contender<K>>(keys: &Keys<K>, built: &'a mut Option<M>) -> &'a M {
    built.get_or_insert_with(|| keys.build())
}

/// Inserting every key into a map created empty.
struct Insert;

impl Op for Insert {
    const NAME: &'static str = "insert";

    fn run<K: KeyKind, M: Contender<K>>(b: &mut Bencher<'_>, keys: &Keys<K>, _: &mut Option<M>) {
        let hits = keys.hits();
        b.iter_batched(
            || hits.to_vec(),
            |owned| {
                let mut map = M::empty();
                for (i, key) in owned.into_iter().enumerate() {
                    map.put(key, i as u64);
                }
                map
            },
            batch(keys.n),
        );
    }
}

/// Inserting every key into a map created with `with_capacity(n)`.
struct InsertPresized;

impl Op for InsertPresized {
    const NAME: &'static str = "insert_presized";

    fn run<K: KeyKind, M: Contender<K>>(b: &mut Bencher<'_>, keys: &Keys<K>, _: &mut Option<M>) {
        let hits = keys.hits();
        b.iter_batched(
            || hits.to_vec(),
            |owned| {
                let mut map = M::presized(owned.len());
                for (i, key) in owned.into_iter().enumerate() {
                    map.put(key, i as u64);
                }
                map
            },
            batch(keys.n),
        );
    }
}

/// Looking up every key of a prebuilt map.
struct LookupHit;

impl Op for LookupHit {
    const NAME: &'static str = "lookup_hit";

    fn run<K: KeyKind, M: Contender<K>>(
        b: &mut Bencher<'_>,
        keys: &Keys<K>,
        built: &mut Option<M>,
    ) {
        let hits = keys.hits();
        let map = prebuilt(keys, built);
        b.iter(|| {
            let mut sum = 0u64;
            for key in hits {
                sum = sum.wrapping_add(*map.find(key).expect("every hit key is present"));
            }
            sum
        });
    }
}

/// Looking up `n` keys a prebuilt map does not hold.
struct LookupMiss;

impl Op for LookupMiss {
    const NAME: &'static str = "lookup_miss";

    fn run<K: KeyKind, M: Contender<K>>(
        b: &mut Bencher<'_>,
        keys: &Keys<K>,
        built: &mut Option<M>,
    ) {
        let misses = keys.misses();
        let map = prebuilt(keys, built);
        b.iter(|| {
            let mut found = 0usize;
            for key in misses {
                found += usize::from(map.find(key).is_some());
            }
            found
        });
    }
}

/// Removing every key from a clone of a prebuilt map (the clone is setup).
struct Remove;

impl Op for Remove {
    const NAME: &'static str = "remove";

    fn run<K: KeyKind, M: Contender<K>>(
        b: &mut Bencher<'_>,
        keys: &Keys<K>,
        built: &mut Option<M>,
    ) {
        let hits = keys.hits();
        let map = prebuilt(keys, built);
        b.iter_batched(
            || map.clone(),
            |mut map| {
                let mut sum = 0u64;
                for key in hits {
                    sum = sum.wrapping_add(map.take(key).expect("every hit key is present"));
                }
                (map, sum)
            },
            batch(keys.n),
        );
    }
}

/// Iterating over a prebuilt map, summing the values.
struct Iterate;

impl Op for Iterate {
    const NAME: &'static str = "iterate";

    fn run<K: KeyKind, M: Contender<K>>(
        b: &mut Bencher<'_>,
        keys: &Keys<K>,
        built: &mut Option<M>,
    ) {
        let map = prebuilt(keys, built);
        b.iter(|| map.sum_values());
    }
}
