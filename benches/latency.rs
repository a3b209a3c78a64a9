//! The worst single insert while growing to 2^22 keys, mapscope against
//! hashbrown and std (`benches/mapscope/latency.rs`): a measurement of
//! every insert, which criterion's sampling does not make.
//!
//! `cargo bench --bench latency` measures and writes
//! `target/mapscope-bench/latency.json`; `MAPSCOPE_LATENCY_KEYS` and
//! `MAPSCOPE_LATENCY_RUNS` size it. Under `cargo test --benches` it runs at
//! a tiny size and writes nothing.

#[path = "mapscope/contenders.rs"]
#[allow(dead_code)] // shared by the bench targets; each uses a part
mod contenders;
#[path = "mapscope/latency.rs"]
mod latency;
#[path = "mapscope/report.rs"]
mod report;

fn main() {
    let measuring = report::measuring();
    latency::run(&latency::Settings {
        keys: report::env_count(
            "MAPSCOPE_LATENCY_KEYS",
            if measuring { 1 << 22 } else { 1 << 12 },
        ),
        runs: report::env_count("MAPSCOPE_LATENCY_RUNS", if measuring { 3 } else { 1 }),
        write_json: measuring,
    });
}
