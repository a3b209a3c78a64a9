//! A driver for instruction-level profiles of the engine against hashbrown:
//! one operation on one map per process, so `valgrind --tool=callgrind`
//! (or `perf stat`) counts exactly that operation.
//!
//! ```sh
//! cargo bench --bench profile --no-run          # prints the binary's path
//! valgrind --tool=callgrind --cache-sim=yes \
//!     --toggle-collect='profile::measure*' \
//!     target/release/deps/profile-HASH mapscope lookup_hit 1000000
//! ```
//!
//! Maps: `mapscope`, `hashbrown` (both with foldhash). Operations:
//! `insert`, `insert_presized`, `lookup_hit`, `lookup_miss`, `remove`,
//! `iterate`. Keys are `u64` (SplitMix64 of `0..n`, as in `benches/`), or
//! `String` with a fourth argument `string`. Only the `measure_*`
//! function is meant to be counted; building the keys and the prebuilt map
//! happens outside it. Under `cargo test --benches` (no arguments) it runs
//! every operation once at a small size.

use std::hint::black_box;

// The maps, their operations and the keys of the throughput benchmarks,
// so a profile runs exactly what `benches/mapscope.rs` times.
#[path = "mapscope/contenders.rs"]
#[allow(dead_code)] // shared by the bench targets; each uses a part
mod contenders;

use contenders::{Contender, Hashbrown, KeyKind, Mapscope};

#[inline(never)]
fn measure_insert<K, M: Contender<K>>(keys: Vec<K>) -> M {
    let mut map = M::empty();
    for (i, key) in keys.into_iter().enumerate() {
        map.put(key, i as u64);
    }
    map
}

#[inline(never)]
fn measure_insert_presized<K, M: Contender<K>>(keys: Vec<K>) -> M {
    let mut map = M::presized(keys.len());
    for (i, key) in keys.into_iter().enumerate() {
        map.put(key, i as u64);
    }
    map
}

#[inline(never)]
fn measure_lookup<K, M: Contender<K>>(map: &M, keys: &[K]) -> u64 {
    let mut sum = 0u64;
    for key in keys {
        sum = sum.wrapping_add(map.find(key).copied().unwrap_or(1));
    }
    sum
}

#[inline(never)]
fn measure_remove<K, M: Contender<K>>(map: &mut M, keys: &[K]) -> u64 {
    let mut sum = 0u64;
    for key in keys {
        sum = sum.wrapping_add(map.take(key).unwrap_or(1));
    }
    sum
}

#[inline(never)]
fn measure_iterate<K, M: Contender<K>>(map: &M) -> u64 {
    map.sum_values()
}

fn run<K: KeyKind, M: Contender<K>>(op: &str, n: usize) {
    let hits: Vec<K> = (0..n as u64).map(K::make).collect();
    let build = || {
        let mut map = M::empty();
        for (i, key) in hits.iter().enumerate() {
            map.put(key.clone(), i as u64);
        }
        map.settle();
        map
    };
    match op {
        "insert" => drop(black_box(measure_insert::<K, M>(hits.clone()))),
        "insert_presized" => drop(black_box(measure_insert_presized::<K, M>(hits.clone()))),
        "lookup_hit" => {
            let map = build();
            black_box(measure_lookup(&map, &hits));
        }
        "lookup_miss" => {
            let misses: Vec<K> = (n as u64..2 * n as u64).map(K::make).collect();
            let map = build();
            black_box(measure_lookup(&map, &misses));
        }
        "remove" => {
            let mut map = build();
            black_box(measure_remove(&mut map, &hits));
        }
        "iterate" => {
            let map = build();
            black_box(measure_iterate(&map));
        }
        other => {
            eprintln!("unknown operation {other:?}");
            std::process::exit(2);
        }
    }
}

const OPS: [&str; 6] = [
    "insert",
    "insert_presized",
    "lookup_hit",
    "lookup_miss",
    "remove",
    "iterate",
];

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if args.is_empty() {
        // `cargo test --benches` / `cargo bench` without arguments.
        for op in OPS {
            run::<u64, Mapscope<u64>>(op, 1000);
            run::<u64, Hashbrown<u64>>(op, 1000);
            run::<String, Mapscope<String>>(op, 1000);
        }
        return;
    }
    let map = args[0].as_str();
    let op = args.get(1).map_or("lookup_hit", String::as_str);
    let n: usize = args
        .get(2)
        .map_or(1_000_000, |s| s.parse().expect("a count"));
    let string = args.get(3).is_some_and(|s| s == "string");
    match (map, string) {
        ("mapscope", false) => run::<u64, Mapscope<u64>>(op, n),
        ("hashbrown", false) => run::<u64, Hashbrown<u64>>(op, n),
        ("mapscope", true) => run::<String, Mapscope<String>>(op, n),
        ("hashbrown", true) => run::<String, Hashbrown<String>>(op, n),
        (other, _) => {
            eprintln!("unknown map {other:?} (mapscope or hashbrown)");
            std::process::exit(2);
        }
    }
}
