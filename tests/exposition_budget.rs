//! The sidecar's memory under the worst case its default limits allow
//! (issue 13, "a bounded exposition"): every source slot taken
//! (`--max-sources`, 100), each source sending the largest report the
//! sidecar accepts (the body limit, the maps-per-report limit, the
//! per-source label budget, 16 labels per map with the longest names and
//! values), then 4 concurrent scrapes of `/metrics`. The real `mapscope
//! sidecar` binary on loopback; its peak resident set (`VmHWM` from
//! `/proc/PID/status`) must stay within 128 MiB, and every scrape must be
//! answered in full.
//!
//! Runs only with `MAPSCOPE_REQUIRE_E2E=1` (it sends ~100 MiB of reports
//! and takes tens of seconds); otherwise it prints a loud SKIPPED line.
//! Linux only (it reads `/proc`). A watchdog kills the sidecar if its RSS
//! passes 1 GiB, so a regression fails the test instead of the machine.
//!
//! The measured figures are printed (`--nocapture`) and recorded in
//! `docs/benchmarks.md` ("Scrape").

// Drives the sidecar (its binary or its ingest endpoint): `--features sidecar`.
#![cfg(feature = "sidecar")]

mod common {
    pub(crate) mod e2e;
    pub(crate) mod process;
    pub(crate) mod wait;
}

use std::collections::BTreeMap;
use std::io::Read as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::e2e::e2e_required;
use common::process::{start_mapscope, MapscopeProcess};
use mapscope::ingest::protocol::{
    KindCounts, KindSeconds, Report, ReportedCounters, ReportedMap, ReportedMisuseKind,
    ReportedStats, SourceInfo,
};
use mapscope::ingest::{check, Limits};
use mapscope::registry::{MAX_LABELS, MAX_VALUE_CHARS};

/// The budget the issue sets for the sidecar's resident set.
const RSS_BUDGET: u64 = 128 * 1024 * 1024;

/// Past this the watchdog kills the sidecar: the test has failed, and the
/// machine is spared the rest.
const RSS_KILL: u64 = 1024 * 1024 * 1024;

/// Concurrent scrapes.
const SCRAPES: usize = 4;

/// A `/proc/PID/status` field in bytes (`VmRSS`, `VmHWM`).
fn status_bytes(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line[field.len()..]
        .trim_start_matches(':')
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// Polls the sidecar's RSS until stopped; kills it past [`RSS_KILL`].
struct Watchdog {
    stop: Arc<AtomicBool>,
    killed: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Watchdog {
    fn start(pid: u32) -> Watchdog {
        let stop = Arc::new(AtomicBool::new(false));
        let killed = Arc::new(AtomicBool::new(false));
        let thread = {
            let (stop, killed) = (stop.clone(), killed.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Some(rss) = status_bytes(pid, "VmRSS") else {
                        return;
                    };
                    if rss > RSS_KILL {
                        killed.store(true, Ordering::Relaxed);
                        let _ = std::process::Command::new("kill")
                            .args(["-KILL", &pid.to_string()])
                            .status();
                        return;
                    }
                    thread::sleep(Duration::from_millis(10));
                }
            })
        };
        Watchdog {
            stop,
            killed,
            thread: Some(thread),
        }
    }

    fn check(&self) {
        assert!(
            !self.killed.load(Ordering::Relaxed),
            "the sidecar's RSS passed {} MiB: killed",
            RSS_KILL >> 20
        );
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A string of exactly `chars` characters, unique by `tag`, made of
/// characters the text format writes as is.
fn padded(tag: &str, chars: usize) -> String {
    let mut s = String::with_capacity(chars);
    s.push_str(tag);
    while s.len() < chars {
        s.push('x');
    }
    s.truncate(chars);
    s
}

/// The shape of a worst-case report: how many maps, and how many
/// characters of label values each map carries (spread over up to
/// [`MAX_LABELS`] labels of up to [`MAX_VALUE_CHARS`]).
#[derive(Debug, Clone, Copy)]
struct Shape {
    maps: usize,
    label_chars: usize,
}

/// One map of the worst case: `label_chars` characters of label values,
/// the client misuse kinds counted. (A reported map has every per-map
/// series whatever it counts.)
fn worst_map(source: usize, index: usize, label_chars: usize) -> ReportedMap {
    let labels: BTreeMap<String, String> = (0..MAX_LABELS)
        .map(|l| {
            label_chars
                .saturating_sub(l * MAX_VALUE_CHARS)
                .min(MAX_VALUE_CHARS)
        })
        .take_while(|chars| *chars > 0)
        .enumerate()
        .map(|(l, chars)| {
            (
                format!("l{l:02}"),
                padded(&format!("{source}-{index}-{l}-"), chars),
            )
        })
        .collect();
    ReportedMap {
        name: format!("m{index:03}"),
        labels,
        stats: ReportedStats {
            entries: 123_456,
            peak_entries: 234_567,
            buckets: 32_768,
            overflow_buckets: 17,
            memory_bytes: 7_340_032,
            max_overflow_chain: 2,
            evacuation: None,
        },
        counters: ReportedCounters {
            growths: KindCounts {
                double: 12,
                same_size: 1,
                shrink: 0,
            },
            growth_seconds: KindSeconds {
                double: 0.123_456_789,
                same_size: 0.000_321,
                shrink: 0.0,
            },
            evacuated_buckets: 32_767,
            inserts: 9_876_543,
            updates: 1_234_567,
            removes: 9_753_087,
            misuse: [
                ReportedMisuseKind::NilMapWrite,
                ReportedMisuseKind::ConcurrentWrite,
                ReportedMisuseKind::IterateWhileMutating,
            ]
            .into_iter()
            .map(|kind| (kind, 1))
            .collect(),
        },
    }
}

fn report(source: usize, seq: u64, shape: Shape) -> Report {
    Report {
        source: SourceInfo {
            app: format!("app{source:03}"),
            instance: format!("pod-{source:03}"),
            language: Some("test".into()),
            sdk: None,
            started_at: None,
        },
        seq,
        sent_at: None,
        interval_seconds: None,
        maps: (0..shape.maps)
            .map(|i| worst_map(source, i, shape.label_chars))
            .collect(),
        events: Vec::new(),
    }
}

fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(300))
        .build()
        .expect("build the HTTP client")
}

/// Posts a report; the status and the answer's body.
fn post(client: &reqwest::blocking::Client, url: &str, report: &Report) -> (u16, String) {
    let body = serde_json::to_vec(report).expect("a report serialises");
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = response.status().as_u16();
    (status, response.text().unwrap_or_default())
}

/// The largest `x` in `1..=max` for which `accepted(x)` (at least 1).
fn largest(max: usize, mut accepted: impl FnMut(usize) -> bool) -> usize {
    let (mut ok, mut too_many) = (0, max + 1);
    while too_many - ok > 1 {
        let mid = (ok + too_many) / 2;
        if accepted(mid) {
            ok = mid;
        } else {
            too_many = mid;
        }
    }
    ok
}

/// The largest report a source may send, found by bisection against the
/// ingest's own validation (`ingest::check` with the default limits, and
/// the body limit), so the test follows whatever the defaults are: first
/// the most maps (the fixed series of a map are the bulk of the
/// exposition), then the most label text on each of them (every series of
/// a map repeats it). (Probing the sidecar itself would leave each probe's
/// maps behind for the grace period, and count them.)
fn largest_accepted() -> Shape {
    let limits = Limits::default();
    let accepted = |shape: Shape| {
        let report = report(999, 1, shape);
        check(&report, &limits).is_ok()
            && serde_json::to_vec(&report)
                .expect("a report serialises")
                .len()
                <= limits.max_body_bytes
    };
    let maps = largest(limits.max_maps_per_source, |maps| {
        accepted(Shape {
            maps,
            label_chars: 0,
        })
    });
    let label_chars = largest(MAX_LABELS * MAX_VALUE_CHARS, |label_chars| {
        accepted(Shape { maps, label_chars })
    });
    let shape = Shape { maps, label_chars };
    assert!(
        accepted(shape),
        "no report is accepted: {:?}",
        check(&report(999, 1, shape), &limits)
    );
    shape
}

/// One scrape as Prometheus makes it (gzip): the decompressed size, and
/// whether the text ended with every source counted; or what failed.
fn scrape(url: &str) -> Result<(usize, bool), String> {
    let client = reqwest::blocking::Client::builder()
        .no_proxy()
        .gzip(true)
        .timeout(Duration::from_secs(300))
        .build()
        .expect("build the HTTP client");
    let mut response = client.get(url).send().map_err(|e| format!("GET: {e}"))?;
    if response.status() != 200 {
        return Err(format!("GET: status {}", response.status()));
    }
    // Streamed: the test keeps only the tail, not four copies of the text.
    let (mut size, mut tail, mut chunk) = (0, Vec::new(), vec![0; 1 << 16]);
    loop {
        let n = response
            .read(&mut chunk)
            .map_err(|e| format!("reading the body after {size} B: {e}"))?;
        if n == 0 {
            break;
        }
        size += n;
        tail.extend_from_slice(&chunk[..n]);
        if tail.len() > 1 << 20 {
            tail.drain(..tail.len() - (1 << 19));
        }
    }
    let tail = String::from_utf8_lossy(&tail);
    Ok((size, tail.contains("\nmapscope_sources 100\n")))
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[test]
fn worst_case_reports_and_concurrent_scrapes_stay_within_the_memory_budget() {
    if !e2e_required() {
        eprintln!(
            "SKIPPED worst_case_reports_and_concurrent_scrapes_stay_within_the_memory_budget: \
             set MAPSCOPE_REQUIRE_E2E=1 to run it (a real sidecar, ~100 MiB of reports)"
        );
        return;
    }
    assert!(
        std::path::Path::new("/proc/self/status").exists(),
        "MAPSCOPE_REQUIRE_E2E=1 needs Linux /proc to read the sidecar's RSS"
    );
    let sidecar: MapscopeProcess = start_mapscope(&[
        "sidecar",
        "--listen",
        "127.0.0.1:0",
        "--ingest-listen",
        "127.0.0.1:0",
    ]);
    let pid = sidecar.pid();
    let watchdog = Watchdog::start(pid);
    let ingest = sidecar.ingest_url();
    let client = client();
    let sources = Limits::default().max_sources;

    let shape = largest_accepted();
    let body_bytes = serde_json::to_vec(&report(0, 1, shape)).unwrap().len();
    for source in 0..sources {
        watchdog.check();
        let (status, body) = post(&client, &ingest, &report(source, 1, shape));
        assert_eq!(status, 200, "source {source}: {body}");
    }
    watchdog.check();
    let after_ingest = status_bytes(pid, "VmRSS").expect("the sidecar's VmRSS");
    let peak_ingest = status_bytes(pid, "VmHWM").expect("the sidecar's VmHWM");
    eprintln!(
        "exposition_budget: {sources} sources x {} maps with {} characters of label values \
         ({body_bytes} B per report, {} reported maps): RSS after ingest {:.1} MiB (peak {:.1})",
        shape.maps,
        shape.label_chars,
        sources * shape.maps,
        mib(after_ingest),
        mib(peak_ingest),
    );

    let metrics = sidecar.url("metrics");
    let scrapes: Vec<Result<(usize, bool), String>> = thread::scope(|s| {
        let handles: Vec<_> = (0..SCRAPES).map(|_| s.spawn(|| scrape(&metrics))).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a scrape thread panicked"))
            .collect()
    });
    watchdog.check();
    let peak = status_bytes(pid, "VmHWM").expect("the sidecar's VmHWM");
    let after = status_bytes(pid, "VmRSS").expect("the sidecar's VmRSS");
    let scrapes: Vec<(usize, bool)> = scrapes
        .into_iter()
        .enumerate()
        .map(|(i, scrape)| scrape.unwrap_or_else(|e| panic!("scrape {i}: {e}")))
        .collect();
    eprintln!(
        "exposition_budget: {SCRAPES} concurrent scrapes of {} B of exposition: \
         peak RSS (VmHWM) {:.1} MiB, RSS after {:.1} MiB",
        scrapes[0].0,
        mib(peak),
        mib(after),
    );
    for (i, (size, complete)) in scrapes.iter().enumerate() {
        assert!(
            *complete,
            "scrape {i} ({size} B) does not end with all {sources} sources"
        );
        assert_eq!(*size, scrapes[0].0, "scrape {i} differs in size");
    }
    assert!(
        peak <= RSS_BUDGET,
        "the sidecar peaked at {:.1} MiB (VmHWM), over the {} MiB budget",
        mib(peak),
        RSS_BUDGET >> 20
    );
}
