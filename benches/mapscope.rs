//! mapscope's benchmark suite: one entry point, three parts.
//!
//! - `compare`: criterion throughput groups, mapscope against hashbrown and
//!   std (`benches/mapscope/compare.rs`);
//! - `latency`: the worst single insert while growing to 2^22 keys
//!   (`benches/mapscope/latency.rs`);
//! - `registered`: the same operations on a registered, observed map and
//!   on a `.build()` one (`benches/mapscope/registered.rs`);
//! - `scrape`: `MapscopeCollector::render()` over 1,000 and 10,000
//!   registered maps, and the memory of a registered map
//!   (`benches/mapscope/scrape.rs`);
//! - `memory`: bytes per entry at 1e6 entries, steady and at the peak of a
//!   growth, from a counting allocator (`benches/mapscope/memory.rs`).
//!
//! `cargo bench --bench mapscope` runs all three. Choose parts with
//! `MAPSCOPE_BENCH=compare,registered,scrape,latency,memory` (any subset), or pass a filter:
//! a criterion filter (`-- u64/lookup_hit/`) runs only the matching
//! criterion benchmarks, and the filters `latency` and `memory` run only
//! that part. `MAPSCOPE_LATENCY_KEYS`, `MAPSCOPE_LATENCY_RUNS` and
//! `MAPSCOPE_MEMORY_ENTRIES` shrink or grow the custom parts. Under
//! `cargo test --benches` (criterion's test mode) the custom parts run at a
//! tiny size and write no JSON. See `docs/benchmarks.md`.

use criterion::Criterion;

// The modules live in `benches/mapscope/`, a directory without `main.rs`,
// so cargo does not mistake them for bench targets of their own.
#[path = "mapscope/compare.rs"]
mod compare;
#[path = "mapscope/contenders.rs"]
mod contenders;
#[path = "mapscope/json.rs"]
mod json;
#[path = "mapscope/latency.rs"]
mod latency;
#[path = "mapscope/memory.rs"]
mod memory;
#[path = "mapscope/registered.rs"]
mod registered;
#[path = "mapscope/scrape.rs"]
mod scrape;

/// Which parts to run, and how large.
struct Plan {
    compare: bool,
    registered: bool,
    scrape: bool,
    latency: bool,
    memory: bool,
    /// Criterion's `--list`: name the custom parts instead of running them.
    list: bool,
    /// Criterion's test mode (`cargo test --benches`, `-- --test`).
    test: bool,
}

/// Criterion options that take a value, so their values are not mistaken
/// for the positional filter.
const VALUED: &[&str] = &[
    "-c",
    "--color",
    "--colour",
    "-s",
    "--save-baseline",
    "-b",
    "--baseline",
    "--baseline-lenient",
    "--format",
    "--profile-time",
    "--load-baseline",
    "--sample-size",
    "--warm-up-time",
    "--measurement-time",
    "--nresamples",
    "--noise-threshold",
    "--confidence-level",
    "--significance-level",
    "--plotting-backend",
    "--output-format",
];

impl Plan {
    fn from_env_and_args() -> Plan {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let has = |flag: &str| args.iter().any(|a| a == flag);
        let mut filter = None;
        let mut skip_value = false;
        for arg in &args {
            if skip_value {
                skip_value = false;
            } else if arg.starts_with('-') {
                skip_value = VALUED.contains(&arg.as_str());
            } else if filter.is_none() {
                filter = Some(arg.as_str());
            }
        }
        let mut plan = Plan {
            compare: true,
            registered: true,
            scrape: true,
            latency: true,
            memory: true,
            list: has("--list"),
            // As criterion decides: test mode unless run by `cargo bench`
            // (which passes `--bench`), or when asked with `--test`.
            test: !has("--bench") || has("--test"),
        };
        if let Ok(parts) = std::env::var("MAPSCOPE_BENCH") {
            plan.compare = false;
            plan.registered = false;
            plan.scrape = false;
            plan.latency = false;
            plan.memory = false;
            for part in parts.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                match part {
                    "compare" => plan.compare = true,
                    "registered" => plan.registered = true,
                    "scrape" => plan.scrape = true,
                    "latency" => plan.latency = true,
                    "memory" => plan.memory = true,
                    "all" => {
                        (
                            plan.compare,
                            plan.registered,
                            plan.scrape,
                            plan.latency,
                            plan.memory,
                        ) = (true, true, true, true, true)
                    }
                    other => {
                        eprintln!("MAPSCOPE_BENCH: unknown part {other:?} (expected compare, registered, scrape, latency, memory or all)");
                        std::process::exit(2);
                    }
                }
            }
        } else if let Some(filter) = filter {
            plan.latency = filter.contains("latency");
            plan.memory = filter.contains("memory");
            plan.compare = !(plan.latency || plan.memory);
            plan.registered = plan.compare;
            plan.scrape = plan.compare;
        }
        plan
    }
}

/// A positive count from the environment, or `default`.
fn env_count(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(value) => match value.trim().replace('_', "").parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                eprintln!("{name}: expected a positive integer, got {value:?}");
                std::process::exit(2);
            }
        },
        Err(_) => default,
    }
}

fn main() {
    let plan = Plan::from_env_and_args();
    if plan.compare || plan.registered || plan.scrape {
        let mut criterion = Criterion::default().configure_from_args();
        if plan.compare {
            compare::benches(&mut criterion);
        }
        if plan.registered {
            registered::benches(&mut criterion);
        }
        if plan.scrape {
            scrape::benches(&mut criterion, plan.test);
        }
        criterion.final_summary();
    }
    if plan.list {
        for (part, on) in [("latency", plan.latency), ("memory", plan.memory)] {
            if on {
                println!("{part}: bench");
            }
        }
        return;
    }
    if plan.latency {
        latency::run(&latency::Settings {
            keys: env_count(
                "MAPSCOPE_LATENCY_KEYS",
                if plan.test { 1 << 12 } else { 1 << 22 },
            ),
            runs: env_count("MAPSCOPE_LATENCY_RUNS", if plan.test { 1 } else { 3 }),
            write_json: !plan.test,
        });
    }
    if plan.memory {
        memory::run(&memory::Settings {
            entries: env_count(
                "MAPSCOPE_MEMORY_ENTRIES",
                if plan.test { 10_000 } else { 1_000_000 },
            ),
            write_json: !plan.test,
        });
    }
}
