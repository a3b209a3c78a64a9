//! Bytes per entry at 1e6 `u64 -> u64` entries, steady and at the peak of
//! a growth, mapscope against hashbrown and std, from a counting global
//! allocator (`benches/mapscope/memory.rs`), which is why this is a bench
//! target of its own.
//!
//! `cargo bench --bench memory` measures and writes
//! `target/mapscope-bench/memory.json`; `MAPSCOPE_MEMORY_ENTRIES` sizes
//! it. Under `cargo test --benches` it runs at a tiny size and writes
//! nothing.

#[path = "mapscope/contenders.rs"]
#[allow(dead_code)] // shared by the bench targets; each uses a part
mod contenders;
#[path = "mapscope/memory.rs"]
mod memory;
#[path = "mapscope/report.rs"]
mod report;

fn main() {
    let measuring = report::measuring();
    memory::run(&memory::Settings {
        entries: report::env_count(
            "MAPSCOPE_MEMORY_ENTRIES",
            if measuring { 1_000_000 } else { 10_000 },
        ),
        write_json: measuring,
    });
}
