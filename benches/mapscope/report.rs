//! Where the latency and memory parts write their JSON reports, which
//! `benches/report.py` turns into tables.

use std::path::PathBuf;

use serde_json::Value;

/// `target/mapscope-bench/` (under `CARGO_TARGET_DIR` when set).
pub(crate) fn out_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("mapscope-bench")
}

/// Writes `value` to `out_dir()/name` and says where; a failure to write is
/// reported, not fatal (the table is already printed).
pub(crate) fn write(name: &str, value: &Value) {
    let dir = out_dir();
    let path = dir.join(name);
    // UNWRAP: a `Value` always serialises.
    let text = serde_json::to_string_pretty(value).expect("a JSON value serialises");
    let result = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, text + "\n"));
    match result {
        Ok(()) => println!("\nwrote {}", path.display()),
        Err(err) => eprintln!("\ncould not write {}: {err}", path.display()),
    }
}

/// Whether cargo runs this binary as a benchmark (`cargo bench` passes
/// `--bench`) rather than as a smoke test (`cargo test --benches`), where
/// the custom parts run at a tiny size and write nothing.
pub(crate) fn measuring() -> bool {
    std::env::args().any(|arg| arg == "--bench")
}

/// A positive count from the environment, or `default`.
pub(crate) fn env_count(name: &str, default: usize) -> usize {
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
