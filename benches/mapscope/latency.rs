//! Write latency as a caller feels it: the worst single insert.
//!
//! Inserts `2^22` `u64` keys from empty into mapscope, hashbrown and std
//! (all with foldhash), timing every insert with `Instant`, and reports the
//! max, p99.99, p99.9, p99 and p50 per run, like griddle's `benches/vroom.rs`.
//! A doubling table pays for its whole resize inside one insert; mapscope
//! spreads it over later writes. Runs are interleaved across the maps and
//! repeated; the summary takes the median over runs, because on a shared
//! machine one run can catch a single OS hiccup.
//!
//! Each timing is the gap between consecutive `Instant::now()` calls around
//! one insert, so it includes the clock read and the loop; the timer floor
//! (the gap with no insert in between) is reported for reference.

use std::hint::black_box;
use std::time::Instant;

use crate::contenders::{mix, Contender, Hashbrown, Mapscope, StdFold};
use serde_json::{json, Value};

/// How large the latency run is.
pub(crate) struct Settings {
    /// Keys inserted per run.
    pub(crate) keys: usize,
    /// Runs per map.
    pub(crate) runs: usize,
    /// Whether to write `latency.json`.
    pub(crate) write_json: bool,
}

/// One run's figures, in nanoseconds.
#[derive(Clone, Copy)]
struct Run {
    max: u64,
    /// Entries in the map after the slowest insert.
    max_at: usize,
    p9999: u64,
    p999: u64,
    p99: u64,
    p50: u64,
    total: u64,
}

impl Run {
    fn json(&self) -> Value {
        json!({
            "max_ns": self.max,
            "max_at_entries": self.max_at,
            "p99_99_ns": self.p9999,
            "p99_9_ns": self.p999,
            "p99_ns": self.p99,
            "p50_ns": self.p50,
            "total_ns": self.total,
        })
    }
}

/// One map's runs.
struct Report {
    name: &'static str,
    runs: Vec<Run>,
}

impl Report {
    /// The median over runs of one figure.
    fn median(&self, figure: impl Fn(&Run) -> u64) -> u64 {
        let mut values: Vec<u64> = self.runs.iter().map(figure).collect();
        values.sort_unstable();
        values[values.len() / 2]
    }
}

/// Runs the latency measurement, prints its table, and writes
/// `latency.json` when asked.
pub(crate) fn run(settings: &Settings) {
    let n = settings.keys;
    let runs = settings.runs.max(1);
    println!();
    println!("== latency: {n} u64 inserts from empty, foldhash, {runs} run(s) per map ==");
    let mut buf = Vec::with_capacity(n);
    let floor = timer_floor(&mut buf, n.min(1 << 20));
    println!(
        "timer floor (gap between two Instant::now() calls): p50 {} ns, p99.99 {} ns, max {} ns",
        floor.p50, floor.p9999, floor.max
    );

    let mut reports = [
        Report {
            name: <Mapscope<u64> as Contender<u64>>::NAME,
            runs: Vec::new(),
        },
        Report {
            name: <Hashbrown<u64> as Contender<u64>>::NAME,
            runs: Vec::new(),
        },
        Report {
            name: <StdFold<u64> as Contender<u64>>::NAME,
            runs: Vec::new(),
        },
    ];
    // Interleaved, so that a noisy stretch of time hits one run of each map
    // rather than every run of one map.
    for _ in 0..runs {
        reports[0]
            .runs
            .push(time_inserts::<Mapscope<u64>>(n, &mut buf));
        reports[1]
            .runs
            .push(time_inserts::<Hashbrown<u64>>(n, &mut buf));
        reports[2]
            .runs
            .push(time_inserts::<StdFold<u64>>(n, &mut buf));
    }

    println!();
    println!(
        "{:<13} {:>3} {:>12} {:>12} {:>11} {:>10} {:>9} {:>8} {:>9} {:>10}",
        "map",
        "run",
        "max (us)",
        "at entry",
        "p99.99 (ns)",
        "p99.9 (ns)",
        "p99 (ns)",
        "p50 (ns)",
        "mean (ns)",
        "total (ms)"
    );
    for report in &reports {
        for (i, run) in report.runs.iter().enumerate() {
            println!(
                "{:<13} {:>3} {:>12.1} {:>12} {:>11} {:>10} {:>9} {:>8} {:>9.1} {:>10.1}",
                report.name,
                i + 1,
                run.max as f64 / 1e3,
                run.max_at,
                run.p9999,
                run.p999,
                run.p99,
                run.p50,
                run.total as f64 / n as f64,
                run.total as f64 / 1e6,
            );
        }
    }
    println!();
    println!("median over runs:");
    println!(
        "{:<13} {:>12} {:>11} {:>10} {:>9} {:>8} {:>10}",
        "map", "max (us)", "p99.99 (ns)", "p99.9 (ns)", "p99 (ns)", "p50 (ns)", "total (ms)"
    );
    for report in &reports {
        println!(
            "{:<13} {:>12.1} {:>11} {:>10} {:>9} {:>8} {:>10.1}",
            report.name,
            report.median(|r| r.max) as f64 / 1e3,
            report.median(|r| r.p9999),
            report.median(|r| r.p999),
            report.median(|r| r.p99),
            report.median(|r| r.p50),
            report.median(|r| r.total) as f64 / 1e6,
        );
    }

    if settings.write_json {
        let maps: Vec<Value> = reports
            .iter()
            .map(|r| {
                json!({
                    "name": r.name,
                    "median_max_ns": r.median(|r| r.max),
                    "median_p99_99_ns": r.median(|r| r.p9999),
                    "median_p99_9_ns": r.median(|r| r.p999),
                    "median_p99_ns": r.median(|r| r.p99),
                    "median_p50_ns": r.median(|r| r.p50),
                    "median_total_ns": r.median(|r| r.total),
                    "runs": r.runs.iter().map(Run::json).collect::<Vec<_>>(),
                })
            })
            .collect();
        let json = json!({
            "keys": n,
            "runs_per_map": runs,
            "key_type": "u64",
            "hasher": "foldhash::fast::RandomState",
            "timer_floor_ns": {"p50": floor.p50, "p99_99": floor.p9999, "max": floor.max},
            "maps": maps,
        });
        crate::report::write("latency.json", &json);
    }
}

/// Times each of `n` inserts of distinct keys into a fresh map.
fn time_inserts<M: Contender<u64>>(n: usize, buf: &mut Vec<u64>) -> Run {
    buf.clear();
    buf.reserve(n);
    let mut map = M::empty();
    let start = Instant::now();
    let mut prev = start;
    for i in 0..n as u64 {
        map.put(mix(i), i);
        let now = Instant::now();
        buf.push((now - prev).as_nanos() as u64);
        prev = now;
    }
    let total = (prev - start).as_nanos() as u64;
    black_box(&map);
    drop(map);
    summarize(buf, total)
}

/// The clock's own cost: gaps between back-to-back `Instant::now()` calls.
fn timer_floor(buf: &mut Vec<u64>, samples: usize) -> Run {
    buf.clear();
    let start = Instant::now();
    let mut prev = start;
    for _ in 0..samples {
        let now = Instant::now();
        buf.push((now - prev).as_nanos() as u64);
        prev = now;
    }
    let total = (prev - start).as_nanos() as u64;
    summarize(buf, total)
}

/// Max (and where), percentiles and total of per-insert timings; sorts `buf`.
fn summarize(buf: &mut [u64], total: u64) -> Run {
    let (max_index, max) = buf
        .iter()
        .copied()
        .enumerate()
        .max_by_key(|&(_, t)| t)
        .unwrap_or((0, 0));
    buf.sort_unstable();
    let quantile = |q: f64| -> u64 {
        if buf.is_empty() {
            return 0;
        }
        let rank = (q * buf.len() as f64).ceil() as usize;
        buf[rank.clamp(1, buf.len()) - 1]
    };
    Run {
        max,
        max_at: max_index + 1,
        p9999: quantile(0.9999),
        p999: quantile(0.999),
        p99: quantile(0.99),
        p50: quantile(0.5),
        total,
    }
}
