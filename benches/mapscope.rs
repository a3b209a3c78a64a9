//! mapscope's throughput benchmarks, on criterion (its own CLI: filters,
//! `--list`, `--quick`, baselines):
//!
//! - `compare`: mapscope against hashbrown and std
//!   (`benches/mapscope/compare.rs`);
//! - `registered`: the same operations on a registered, observed map and
//!   on a `.build()` one (`benches/mapscope/registered.rs`);
//! - `scrape`: `MapscopeCollector::render()` over 1,000 and 10,000
//!   registered maps, and the memory of a registered map
//!   (`benches/mapscope/scrape.rs`).
//!
//! `cargo bench --bench mapscope` runs them all; `cargo bench --bench
//! mapscope -- 'u64/lookup_hit/'` runs the matching ones. The worst single
//! insert and bytes per entry are measurements criterion does not make:
//! they are the `latency` and `memory` bench targets. See
//! `docs/benchmarks.md`.

use criterion::{criterion_group, criterion_main, Criterion};

// The modules live in `benches/mapscope/`, a directory without `main.rs`,
// so cargo does not mistake them for bench targets of their own.
#[path = "mapscope/compare.rs"]
mod compare;
#[path = "mapscope/contenders.rs"]
#[allow(dead_code)] // the memory target uses what this one does not
mod contenders;
#[path = "mapscope/registered.rs"]
mod registered;
#[path = "mapscope/report.rs"]
#[allow(dead_code)] // only `measuring` here
mod report;
#[path = "mapscope/scrape.rs"]
mod scrape;

fn scrape(c: &mut Criterion) {
    scrape::benches(c, !report::measuring());
}

criterion_group!(benches, compare::benches, registered::benches, scrape);
criterion_main!(benches);
