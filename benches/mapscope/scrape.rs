//! Scrape cost: `MapscopeCollector::render()` over a registry of 1,000
//! and 10,000 registered maps, each with a few hundred entries and a label,
//! published. Groups `scrape/render/{1000,10000}`; targets are a p50 of at
//! most 10 ms for 1,000 maps and 100 ms for 10,000.
//!
//! Also prints what one registered map costs in memory, measured as the
//! growth of the process's resident set (Linux `/proc/self/status`
//! `VmRSS`) while maps are created: for empty maps registered versus built
//! unregistered (the registry's own share), and for the benchmark's maps
//! as a whole. RSS is page-grained and counts memory the allocator had
//! already freed and reuses as zero, so run this part alone
//! (`cargo bench --bench mapscope -- scrape/`) for the cleanest figures.
//!
//! Fixtures are built lazily, inside the benchmark closure, so a criterion
//! filter that excludes `scrape/` costs nothing here.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion};
use mapscope::export::prometheus::MapscopeCollector;
use mapscope::{InstrumentedMap, Registry};

use crate::contenders::mix;

type Map = InstrumentedMap<u64, u64>;

/// Entries per map: a few hundred when measuring, a handful in test mode.
fn entries_per_map(test: bool) -> u64 {
    if test {
        8
    } else {
        300
    }
}

/// `n` registered, published maps and a collector over their registry.
struct Fixture {
    collector: MapscopeCollector,
    _maps: Vec<Map>,
}

impl Fixture {
    fn new(n: usize, entries: u64) -> Fixture {
        let registry = Registry::builder().max_maps(n).build();
        let maps: Vec<Map> = (0..n)
            .map(|i| {
                // UNWRAP: distinct valid names and labels, under the cap.
                let mut map = Map::builder(format!("map_{i}"))
                    .label("tenant", format!("tenant_{}", i % 50))
                    .register(&registry)
                    .expect("valid, unique map");
                for k in 0..entries {
                    let key = mix(((i as u64) << 32) | k);
                    map.insert(key, key);
                }
                map.publish();
                map
            })
            .collect();
        Fixture {
            collector: MapscopeCollector::new(registry),
            _maps: maps,
        }
    }
}

/// The resident set size in bytes, where the OS reports it.
fn rss_bytes() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: usize = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// `n` items from `make`, and the RSS growth per item while they were
/// built (`None` where RSS is unavailable). The caller keeps the items
/// alive, so later measurements do not reuse their memory.
fn rss_per_item<T>(n: usize, make: impl Fn(usize) -> T) -> (Vec<T>, Option<f64>) {
    let before = rss_bytes();
    let items: Vec<T> = (0..n).map(make).collect();
    let after = rss_bytes();
    let per_item = before
        .zip(after)
        .map(|(b, a)| a.saturating_sub(b) as f64 / n as f64);
    (items, per_item)
}

/// Prints the memory one registered map costs.
fn report_memory(test: bool) {
    let n = if test { 1_000 } else { 10_000 };
    let (built_maps, built) = rss_per_item(n, |i| {
        Map::builder(format!("empty_{i}"))
            .label("tenant", "acme")
            .build()
    });
    let registry = Registry::builder().max_maps(n).build();
    let (registered_maps, registered) = rss_per_item(n, |i| {
        // UNWRAP: distinct valid names and labels, under the cap.
        Map::builder(format!("empty_{i}"))
            .label("tenant", "acme")
            .register(&registry)
            .expect("valid, unique map")
    });
    let entries = entries_per_map(test);
    let (fixtures, whole) = rss_per_item(1, |_| Fixture::new(n, entries));
    let bucket_bytes: usize = fixtures[0]
        ._maps
        .iter()
        .map(|m| m.stats().memory_bytes)
        .sum();
    match (registered, built, whole) {
        (Some(registered), Some(built), Some(whole)) => {
            println!(
                "scrape/memory: {n} maps: registered empty map {registered:.0} B RSS, built empty map {built:.0} B RSS \
                 -> registry share ~{:.0} B per registered map; a benchmark map ({entries} u64 entries, a label, published) \
                 {:.0} B RSS, of which {} B bucket arrays (stats().memory_bytes)",
                registered - built,
                whole / n as f64,
                bucket_bytes / n
            );
        }
        _ => println!("scrape/memory: /proc/self/status VmRSS is unavailable; not measured"),
    }
    drop(black_box((built_maps, registered_maps, fixtures)));
}

/// Runs the scrape groups and prints the memory report.
pub(crate) fn benches(c: &mut Criterion, test: bool) {
    let entries = entries_per_map(test);
    let mut reported = false;
    let mut group = c.benchmark_group("scrape/render");
    for n in [1_000usize, 10_000] {
        let mut fixture = None;
        group.sample_size(if n >= 10_000 { 10 } else { 30 });
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            if !reported {
                reported = true;
                report_memory(test);
            }
            let fixture = fixture.get_or_insert_with(|| {
                let fixture = Fixture::new(n, entries);
                // The first render drains the growth events into the
                // histogram; later ones render the steady state a periodic
                // scrape sees.
                let bytes = fixture.collector.render().len();
                println!(
                    "scrape/render/{n}: {bytes} bytes of exposition ({:.0} per map)",
                    bytes as f64 / n as f64
                );
                fixture
            });
            b.iter(|| black_box(fixture.collector.render()))
        });
    }
    group.finish();
}
