//! Memory: bytes per entry for `u64 -> u64` maps, at steady state and at
//! the peak of a growth, measured by a counting global allocator.
//!
//! For each map, from empty:
//! 1. insert `n` keys (default 1e6), recording the allocator's peak: the
//!    high-water mark a process needs to *reach* `n` entries (for a
//!    doubling table, both arrays during the last resize);
//! 2. at `n` entries (any incremental growth finished), the live bytes:
//!    the steady state;
//! 3. keep inserting until the next growth has started and finished,
//!    recording the peak again and how many entries the map held when it
//!    was hit.
//!
//! The allocator counts the sizes the maps request (not malloc's rounding
//! or headers), and only while a measurement is on; it is the global
//! allocator of the `memory` bench binary alone. Next to it, the
//! maps' own figures cross-check it: mapscope's `stats().memory_bytes`
//! (its peak is the max observed after each insert while a growth is in
//! progress) and hashbrown's `allocation_size()`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering::Relaxed};

use crate::contenders::{mix, Contender, Hashbrown, Mapscope, StdFold};
use serde_json::{json, Value};

/// `System`, counting live and peak bytes while [`ENABLED`] is set.
struct Counting;

/// Whether allocations are being counted.
static ENABLED: AtomicBool = AtomicBool::new(false);
/// Bytes allocated minus bytes freed while counting.
static CURRENT: AtomicIsize = AtomicIsize::new(0);
/// The highest [`CURRENT`] since the last [`reset_peak`].
static PEAK: AtomicIsize = AtomicIsize::new(0);

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Records `delta` bytes allocated (or, negative, freed).
#[inline]
fn count(delta: isize) {
    if ENABLED.load(Relaxed) {
        let now = CURRENT.fetch_add(delta, Relaxed) + delta;
        if delta > 0 {
            PEAK.fetch_max(now, Relaxed);
        }
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged and returns its result unchanged, so `System`'s guarantees are
// ours; the bookkeeping only touches atomics, never the memory, and does
// not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract
        // (non-zero size), which is also `System.alloc`'s.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            count(layout.size() as isize);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`; same contract.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            count(layout.size() as isize);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        // SAFETY: the caller guarantees `ptr` was allocated by this
        // allocator, i.e. by `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `ptr` came from this allocator
        // (`System`) with `layout`, and that `new_size` is valid for it.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        new
    }
}

/// Counts allocations from construction to drop, relative to the live
/// bytes when it started.
struct Meter {
    base: isize,
}

impl Meter {
    fn start() -> Self {
        ENABLED.store(true, Relaxed);
        let base = CURRENT.load(Relaxed);
        PEAK.store(base, Relaxed);
        Meter { base }
    }

    /// Live bytes allocated since the start.
    fn current(&self) -> usize {
        (CURRENT.load(Relaxed) - self.base).max(0) as usize
    }

    /// The most live bytes since the start or the last reset.
    fn peak(&self) -> usize {
        (PEAK.load(Relaxed) - self.base).max(0) as usize
    }

    /// Restarts peak tracking from the current live bytes.
    fn reset_peak(&self) {
        PEAK.store(CURRENT.load(Relaxed), Relaxed);
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        ENABLED.store(false, Relaxed);
    }
}

/// How large the memory run is.
pub(crate) struct Settings {
    /// Entries at steady state.
    pub(crate) entries: usize,
    /// Whether to write `memory.json`.
    pub(crate) write_json: bool,
}

/// A peak, and the entries the map held when it was reached.
#[derive(Clone, Copy, Default)]
struct Peak {
    bytes: usize,
    entries: usize,
}

impl Peak {
    /// Keeps the larger peak.
    fn observe(&mut self, bytes: usize, entries: usize) {
        if bytes > self.bytes {
            *self = Peak { bytes, entries };
        }
    }

    fn per_entry(&self) -> f64 {
        self.bytes as f64 / self.entries.max(1) as f64
    }

    fn json(&self) -> Value {
        json!({
            "bytes": self.bytes,
            "entries": self.entries,
            "bytes_per_entry": self.per_entry(),
        })
    }
}

/// One map's measurements.
struct Report {
    name: &'static str,
    /// Allocator: live bytes at `n` entries.
    steady: usize,
    /// Allocator: peak while inserting the first `n` entries.
    build_peak: Peak,
    /// Allocator: peak during the next growth after `n`.
    next_peak: Peak,
    /// Entries when the next growth started and when it finished.
    next_started_at: usize,
    next_finished_at: usize,
    /// The map's own figure at `n` entries.
    reported_steady: Option<usize>,
    /// The map's own figure: max observed while an incremental growth was
    /// in progress, building up to `n` and in the next growth (mapscope only).
    reported_build_peak: Option<Peak>,
    reported_next_peak: Option<Peak>,
    /// Live bytes left after dropping the map (should be 0).
    leaked: usize,
}

/// Measures one map type.
fn measure<M: Contender<u64>>(n: usize) -> Report {
    let meter = Meter::start();
    let mut map = M::empty();
    let mut build_peak = Peak::default();
    let mut reported_build_peak = Peak::default();
    let mut saw_growth = false;
    for i in 0..n as u64 {
        map.put(mix(i), i);
        let entries = i as usize + 1;
        build_peak.observe(meter.peak(), entries);
        if map.growing() {
            saw_growth = true;
            if let Some(bytes) = map.reported_bytes() {
                reported_build_peak.observe(bytes, entries);
            }
        }
    }
    map.settle();
    let steady = meter.current();
    let reported_steady = map.reported_bytes();

    meter.reset_peak();
    let mut next_peak = Peak::default();
    let mut reported_next_peak = Peak::default();
    let capacity = map.capacity();
    let mut next_started_at = 0;
    let mut next_finished_at = 0;
    let mut i = n as u64;
    // A bound in case a map never grows again (it would be a bug).
    while i < 8 * n as u64 + 1_000 {
        map.put(mix(i), i);
        i += 1;
        let entries = i as usize;
        next_peak.observe(meter.peak(), entries);
        let growing = map.growing();
        if growing {
            saw_growth = true;
            if let Some(bytes) = map.reported_bytes() {
                reported_next_peak.observe(bytes, entries);
            }
        }
        if map.capacity() != capacity {
            if next_started_at == 0 {
                next_started_at = entries;
            }
            if !growing {
                next_finished_at = entries;
                break;
            }
        }
    }
    drop(map);
    let leaked = meter.current();
    drop(meter);
    Report {
        name: M::NAME,
        steady,
        build_peak,
        next_peak,
        next_started_at,
        next_finished_at,
        reported_steady,
        reported_build_peak: saw_growth.then_some(reported_build_peak),
        reported_next_peak: saw_growth.then_some(reported_next_peak),
        leaked,
    }
}

/// Runs the memory measurement, prints its tables, and writes
/// `memory.json` when asked.
pub(crate) fn run(settings: &Settings) {
    let n = settings.entries;
    println!();
    println!(
        "== memory: u64 -> u64, {n} entries (16 B of payload per entry), counting allocator =="
    );
    let reports = [
        measure::<Mapscope<u64>>(n),
        measure::<Hashbrown<u64>>(n),
        measure::<StdFold<u64>>(n),
    ];

    println!();
    println!(
        "allocator-measured (B/entry; a peak is divided by the entries held when it was hit):"
    );
    println!(
        "{:<13} {:>10} {:>13} {:>13} {:>17} {:>13} {:>14}",
        "map", "steady", "steady (MB)", "build peak", "build peak at", "next growth", "next peak"
    );
    println!(
        "{:<13} {:>10} {:>13} {:>13} {:>17} {:>13} {:>14}",
        "", "at n", "", "/ n", "(MB, entries)", "starts at", "(B/entry)"
    );
    for r in &reports {
        println!(
            "{:<13} {:>10.2} {:>13.2} {:>13.2} {:>17} {:>13} {:>14.2}",
            r.name,
            r.steady as f64 / n as f64,
            r.steady as f64 / 1e6,
            r.build_peak.bytes as f64 / n as f64,
            format!(
                "{:.1}, {}",
                r.build_peak.bytes as f64 / 1e6,
                r.build_peak.entries
            ),
            r.next_started_at,
            r.next_peak.per_entry(),
        );
    }
    println!();
    println!("next growth, allocator peak: (MB at entries) and growth span:");
    for r in &reports {
        println!(
            "  {:<13} {:.1} MB at {} entries; growth from {} to {} entries",
            r.name,
            r.next_peak.bytes as f64 / 1e6,
            r.next_peak.entries,
            r.next_started_at,
            r.next_finished_at
        );
    }
    println!();
    println!("cross-check, the map's own figure (mapscope: stats().memory_bytes; hashbrown: allocation_size()):");
    for r in &reports {
        let Some(reported) = r.reported_steady else {
            println!("  {:<13} (no self-reported figure)", r.name);
            continue;
        };
        print!(
            "  {:<13} steady {:.2} B/entry (allocator {:.2})",
            r.name,
            reported as f64 / n as f64,
            r.steady as f64 / n as f64
        );
        if let (Some(build), Some(next)) = (r.reported_build_peak, r.reported_next_peak) {
            print!(
                "; peak while growing: build {:.1} MB at {} (allocator {:.1} MB at {}), next {:.1} MB at {} (allocator {:.1} MB at {})",
                build.bytes as f64 / 1e6,
                build.entries,
                r.build_peak.bytes as f64 / 1e6,
                r.build_peak.entries,
                next.bytes as f64 / 1e6,
                next.entries,
                r.next_peak.bytes as f64 / 1e6,
                r.next_peak.entries,
            );
        }
        println!();
    }
    for r in reports.iter().filter(|r| r.leaked != 0) {
        println!(
            "  note: {} left {} bytes allocated after drop",
            r.name, r.leaked
        );
    }

    if settings.write_json {
        let maps: Vec<Value> = reports
            .iter()
            .map(|r| {
                json!({
                    "name": r.name,
                    "steady_bytes": r.steady,
                    "steady_bytes_per_entry": r.steady as f64 / n as f64,
                    "build_peak": r.build_peak.json(),
                    "build_peak_bytes_per_final_entry": r.build_peak.bytes as f64 / n as f64,
                    "next_growth_started_at": r.next_started_at,
                    "next_growth_finished_at": r.next_finished_at,
                    "next_growth_peak": r.next_peak.json(),
                    "reported_steady_bytes": r.reported_steady,
                    "reported_build_peak": r.reported_build_peak.as_ref().map(Peak::json),
                    "reported_next_growth_peak": r.reported_next_peak.as_ref().map(Peak::json),
                    "bytes_left_after_drop": r.leaked,
                })
            })
            .collect();
        let json = json!({
            "entries": n,
            "key_type": "u64",
            "value_type": "u64",
            "hasher": "foldhash::fast::RandomState",
            "maps": maps,
        });
        crate::report::write("memory.json", &json);
    }
}
