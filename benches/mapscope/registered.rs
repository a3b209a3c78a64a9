//! Registration overhead: the same operations on a map registered in a
//! registry that a background thread snapshots every 10 ms (as a scraper
//! would, only far more often), and on the same map from `.build()`.
//!
//! Groups are `overhead/{op}/100000`, functions `build` and `registered`;
//! the target is at most 5% between them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput};
use mapscope::{InstrumentedMap, Registry};

use crate::contenders::mix;

const N: usize = 100_000;

type Map = InstrumentedMap<u64, u64>;

/// Snapshots `registry` every 10 ms until dropped.
struct Observer {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Observer {
    fn start(registry: &Registry) -> Observer {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (stop, registry) = (stop.clone(), registry.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::hint::black_box(registry.snapshot());
                    thread::sleep(Duration::from_millis(10));
                }
            })
        };
        Observer {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn make(registry: Option<&Registry>, name: &str) -> Map {
    let builder = InstrumentedMap::builder(name);
    match registry {
        // UNWRAP: every name used here is valid and registered once at a time.
        Some(registry) => builder.register(registry).expect("valid, unique name"),
        None => builder.build(),
    }
}

/// Runs the overhead groups.
pub(crate) fn benches(c: &mut Criterion) {
    let keys: Vec<u64> = (0..N as u64).map(mix).collect();
    let registry = Registry::new();
    let _observer = Observer::start(&registry);
    let mut counter = 0u64;
    let mut fresh = |registered: bool| {
        counter += 1;
        make(registered.then_some(&registry), &format!("bench_{counter}"))
    };

    let mut group = c.benchmark_group(format!("overhead/insert/{N}"));
    group.throughput(Throughput::Elements(N as u64));
    group.sample_size(20);
    for (name, registered) in [("build", false), ("registered", true)] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || fresh(registered),
                |mut map| {
                    for &k in &keys {
                        map.insert(k, k);
                    }
                    map
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();

    let mut group = c.benchmark_group(format!("overhead/lookup_hit/{N}"));
    group.throughput(Throughput::Elements(N as u64));
    group.sample_size(20);
    for (name, registered) in [("build", false), ("registered", true)] {
        let mut map = fresh(registered);
        for &k in &keys {
            map.insert(k, k);
        }
        map.complete_growth();
        group.bench_function(name, |b| {
            b.iter(|| keys.iter().map(|k| map[k]).fold(0u64, u64::wrapping_add))
        });
    }
    group.finish();

    let mut group = c.benchmark_group(format!("overhead/remove/{N}"));
    group.throughput(Throughput::Elements(N as u64));
    group.sample_size(20);
    for (name, registered) in [("build", false), ("registered", true)] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let mut map = fresh(registered);
                    for &k in &keys {
                        map.insert(k, k);
                    }
                    map.complete_growth();
                    map
                },
                |mut map| {
                    for k in &keys {
                        map.remove(k);
                    }
                    map
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}
