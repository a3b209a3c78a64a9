//! Load benchmark of the sidecar's ingest endpoint (`POST /v1/report`).
//!
//! Starts the real `mapscope` binary on loopback, then pushes protocol v1
//! reports from many concurrent sources, each with many maps, and prints a
//! table of what it measured:
//!
//! 1. **paced**: every source reports once a second (the real-world shape:
//!    100 sources × 100 maps = 10,000 maps at 10,000 map snapshots/s);
//! 2. **saturate**: every source reports again as soon as its previous
//!    report is answered, to find the throughput ceiling;
//! 3. **scrape**: one `GET /metrics` with every reported map in it.
//!
//! For each phase: requests, errors, request latency (p50, p99, max), map
//! snapshots per second achieved, the sidecar's CPU time (from
//! `/proc/PID/stat` utime + stime) and its memory (`VmRSS` and `VmHWM` from
//! `/proc/PID/status`). Targets: at least 20,000 map snapshots/s on 2
//! cores, and RSS at most 64 MiB with 10,000 maps.
//!
//! The load generator runs on the same machine and competes with the
//! sidecar for CPU, so the table also gives snapshots per sidecar
//! CPU-second; twice that is what 2 cores dedicated to the sidecar would
//! take.
//!
//! # Running
//!
//! ```sh
//! cargo build --release                       # the sidecar binary
//! cargo run --release --features sidecar --example ingest_load   # 20 s paced, 10 s saturated
//! cargo run --release --features sidecar --example ingest_load -- 60
//! ```
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `MAPSCOPE_BIN` | `target/release/mapscope` | the sidecar binary |
//! | `INGEST_LOAD_SECONDS` (or the first argument) | 20 | seconds of the paced phase (the saturated phase runs half as long, at least 5 s) |
//! | `INGEST_LOAD_SOURCES` | 100 | concurrent sources |
//! | `INGEST_LOAD_MAPS` | 100 | maps per source |
//! | `INGEST_LOAD_CLIENT_THREADS` | 2 | threads of the load generator |
//!
//! Linux only (it reads `/proc`). Every wait is bounded; the sidecar is
//! killed when the benchmark ends.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use mapscope::ingest::protocol::{
    KindCounts, KindSeconds, Report, ReportedCounters, ReportedMap, ReportedStats, SourceInfo,
};

/// The sidecar child process, killed on drop.
struct Sidecar {
    child: Child,
    http: String,
    ingest: String,
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

fn start_sidecar(bin: &str, sources: usize, maps: usize) -> Result<Sidecar, String> {
    let mut command = Command::new(bin);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("MAPSCOPE_") {
            command.env_remove(key);
        }
    }
    let mut child = command
        .args([
            "sidecar",
            "--listen",
            "127.0.0.1:0",
            "--ingest-listen",
            "127.0.0.1:0",
            "--max-sources",
            &sources.to_string(),
            "--max-maps-per-source",
            &maps.max(1000).to_string(),
        ])
        // Quiet: the synthetic maps are healthy, but a log line per map
        // would cost the sidecar more than the ingest itself.
        .env("MAPSCOPE_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {bin}: {e} (build it with `cargo build --release`, or set MAPSCOPE_BIN)"))?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(url) = line.strip_prefix("mapscope: http listening on ") {
                let _ = tx.send((true, url.trim().trim_end_matches('/').to_owned()));
            } else if let Some(url) = line.strip_prefix("mapscope: ingest listening on ") {
                let _ = tx.send((false, url.trim().to_owned()));
            }
        }
    });
    let mut sidecar = Sidecar {
        child,
        http: String::new(),
        ingest: String::new(),
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while sidecar.http.is_empty() || sidecar.ingest.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((true, url)) => sidecar.http = url,
            Ok((false, url)) => sidecar.ingest = url,
            Err(_) => return Err(format!("{bin} printed no listening lines within 15 s")),
        }
    }
    Ok(sidecar)
}

/// CPU seconds (user + system) the process has used.
fn cpu_seconds(pid: u32) -> f64 {
    let ticks = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(100.0);
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // Fields after the command name (which may contain spaces): state is
    // field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    match (field(11), field(12)) {
        (Some(utime), Some(stime)) => (utime + stime) / ticks,
        _ => f64::NAN,
    }
}

/// `VmRSS` and `VmHWM` in MiB, and the number of threads.
fn memory_mib(pid: u32) -> (f64, f64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(f64::NAN, |kib| kib / 1024.0)
    };
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    (kib("VmRSS:"), kib("VmHWM:"), threads)
}

/// One source's report, updated before every send.
fn initial_report(source: usize, maps: usize) -> Report {
    Report {
        source: SourceInfo {
            app: format!("app{source:03}"),
            instance: "pod-0".into(),
            language: Some("rust".into()),
            sdk: Some("ingest_load".into()),
            started_at: Some("2026-11-22T10:00:00Z".parse().expect("RFC 3339")),
        },
        seq: 0,
        sent_at: None,
        interval_seconds: Some(1.0),
        maps: (0..maps)
            .map(|m| ReportedMap {
                name: format!("map_{m:03}"),
                labels: [("shard".to_owned(), (m % 8).to_string())].into(),
                stats: ReportedStats {
                    entries: 1000 + m as u64,
                    peak_entries: 2000,
                    buckets: 256,
                    overflow_buckets: 3,
                    memory_bytes: 256 * 208,
                    max_overflow_chain: 1,
                    evacuation: None,
                },
                counters: ReportedCounters {
                    // Few doublings and a sane load factor: no detector fires.
                    growths: KindCounts {
                        double: 2,
                        same_size: 0,
                        shrink: 0,
                    },
                    growth_seconds: KindSeconds {
                        double: 0.002,
                        same_size: 0.0,
                        shrink: 0.0,
                    },
                    evacuated_buckets: 255,
                    inserts: 0,
                    updates: 0,
                    removes: 0,
                    misuse: BTreeMap::new(),
                },
            })
            .collect(),
        events: vec![],
    }
}

/// What one phase measured.
#[derive(Debug, Default)]
struct Phase {
    name: &'static str,
    wall: Duration,
    requests: u64,
    errors: u64,
    snapshots: u64,
    latencies: Vec<Duration>,
    cpu: f64,
    rss: f64,
    hwm: f64,
    threads: u64,
}

impl Phase {
    fn percentile(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() as f64 * q) as usize).min(self.latencies.len() - 1);
        self.latencies[i]
    }
}

/// Runs every source until `end` or `rounds` reports each: paced (one
/// report a second each) or saturated (back to back). Returns the sorted
/// latencies, requests, errors and map snapshots accepted.
async fn run_sources(
    client: &reqwest::Client,
    url: &str,
    reports: &mut [Report],
    end: Instant,
    paced: bool,
    rounds: Option<u64>,
) -> (Vec<Duration>, u64, u64, u64) {
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let count = reports.len();
    for (i, report) in reports.iter_mut().enumerate() {
        let mut report = std::mem::replace(report, initial_report(0, 0));
        let client = client.clone();
        let url = url.to_owned();
        let errors = errors.clone();
        // Real clients are not synchronised: spread the sources over the second.
        let stagger = Duration::from_millis((1000 * i / count.max(1)) as u64);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut snapshots = 0u64;
            let start = tokio::time::Instant::now() + if paced { stagger } else { Duration::ZERO };
            let mut tick = tokio::time::interval_at(start, Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut sent_reports = 0u64;
            while Instant::now() < end && rounds.is_none_or(|r| sent_reports < r) {
                sent_reports += 1;
                if paced {
                    tick.tick().await;
                    if Instant::now() >= end {
                        break;
                    }
                }
                report.seq += 1;
                for map in &mut report.maps {
                    map.counters.inserts += 100;
                    map.counters.updates += 50;
                    map.counters.removes += 99;
                    map.stats.entries = map.counters.inserts - map.counters.removes;
                }
                let body = serde_json::to_vec(&report).expect("a report serialises");
                let sent = Instant::now();
                let outcome = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                match outcome {
                    Ok(response) => {
                        let ok = response.status().is_success();
                        let _ = response.bytes().await;
                        latencies.push(sent.elapsed());
                        if ok {
                            snapshots += report.maps.len() as u64;
                        } else {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            (report, latencies, snapshots)
        }));
    }
    let mut all = Vec::new();
    let mut snapshots = 0;
    for (slot, task) in reports.iter_mut().zip(tasks) {
        let (report, latencies, n) = task.await.expect("a source task");
        *slot = report;
        all.extend(latencies);
        snapshots += n;
    }
    let requests = all.len() as u64;
    all.sort();
    (all, requests, errors.load(Ordering::Relaxed), snapshots)
}

fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| env_or("INGEST_LOAD_SECONDS", 20));
    let sources: usize = env_or("INGEST_LOAD_SOURCES", 100);
    let maps: usize = env_or("INGEST_LOAD_MAPS", 100);
    let threads: usize = env_or("INGEST_LOAD_CLIENT_THREADS", 2);
    let bin = std::env::var("MAPSCOPE_BIN").unwrap_or_else(|_| "target/release/mapscope".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    let sidecar = match start_sidecar(&bin, sources, maps) {
        Ok(sidecar) => sidecar,
        Err(error) => {
            eprintln!("ingest_load: {error}");
            std::process::exit(2);
        }
    };
    let pid = sidecar.child.id();
    println!("ingest_load: {bin} (pid {pid}) on {}", sidecar.ingest);
    println!(
        "ingest_load: {sources} sources x {maps} maps = {} maps; {seconds} s paced; {cores} cores; load average {}",
        sources * maps,
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    let (rss0, _, _) = memory_mib(pid);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(1))
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let client = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(sources * 2)
        .build()
        .expect("an HTTP client");
    let mut reports: Vec<Report> = (0..sources).map(|s| initial_report(s, maps)).collect();
    let mut phases = Vec::new();
    let saturate_seconds = (seconds / 2).max(5);
    for (name, paced, length) in [
        ("warm-up (1 round)", false, Duration::ZERO),
        (
            "paced: 1 report/s per source",
            true,
            Duration::from_secs(seconds),
        ),
        (
            "saturate: back to back",
            false,
            Duration::from_secs(saturate_seconds),
        ),
    ] {
        let cpu_before = cpu_seconds(pid);
        let started = Instant::now();
        let (latencies, requests, errors, snapshots) = if length.is_zero() {
            // One report from every source, to register them all.
            let end = Instant::now() + Duration::from_secs(30);
            let url = &sidecar.ingest;
            runtime.block_on(run_sources(&client, url, &mut reports, end, false, Some(1)))
        } else {
            let end = Instant::now() + length;
            let url = &sidecar.ingest;
            runtime.block_on(run_sources(&client, url, &mut reports, end, paced, None))
        };
        let wall = started.elapsed();
        let (rss, hwm, threads) = memory_mib(pid);
        phases.push(Phase {
            name,
            wall,
            requests,
            errors,
            snapshots,
            latencies,
            cpu: cpu_seconds(pid) - cpu_before,
            rss,
            hwm,
            threads,
        });
    }

    // One scrape with every map in it.
    let cpu_before = cpu_seconds(pid);
    let started = Instant::now();
    let scrape = runtime.block_on(async {
        client
            .get(format!("{}/metrics", sidecar.http))
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .ok()?
            .bytes()
            .await
            .ok()
    });
    let scrape_wall = started.elapsed();
    let scrape_bytes = scrape.as_ref().map_or(0, |b| b.len());
    let scrape_series = scrape.as_ref().map_or(0, |b| {
        b.split(|c| *c == b'\n')
            .filter(|l| !l.is_empty() && l[0] != b'#')
            .count()
    });
    let (rss, hwm, threads) = memory_mib(pid);
    phases.push(Phase {
        name: "scrape: GET /metrics once",
        wall: scrape_wall,
        requests: 1,
        errors: u64::from(scrape.is_none()),
        snapshots: 0,
        latencies: vec![scrape_wall],
        cpu: cpu_seconds(pid) - cpu_before,
        rss,
        hwm,
        threads,
    });

    println!();
    println!(
        "| phase | wall s | requests | errors | p50 ms | p99 ms | max ms | map snapshots/s | sidecar CPU s | CPU % of 1 core | snapshots per CPU-s | RSS MiB | HWM MiB | threads |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for p in &phases {
        let wall = p.wall.as_secs_f64();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "| {} | {:.1} | {} | {} | {:.2} | {:.2} | {:.2} | {:.0} | {:.2} | {:.0} | {:.0} | {:.1} | {:.1} | {} |",
            p.name,
            wall,
            p.requests,
            p.errors,
            ms(p.percentile(0.50)),
            ms(p.percentile(0.99)),
            ms(p.latencies.last().copied().unwrap_or_default()),
            p.snapshots as f64 / wall.max(1e-9),
            p.cpu,
            100.0 * p.cpu / wall.max(1e-9),
            if p.cpu > 0.0 { p.snapshots as f64 / p.cpu } else { 0.0 },
            p.rss,
            p.hwm,
            p.threads,
        );
    }
    println!();
    println!(
        "scrape: {scrape_bytes} bytes, {scrape_series} samples, {:.0} ms; sidecar RSS at start {rss0:.1} MiB",
        scrape_wall.as_secs_f64() * 1000.0
    );

    let saturated = &phases[2];
    let achieved = saturated.snapshots as f64 / saturated.wall.as_secs_f64().max(1e-9);
    let per_cpu = if saturated.cpu > 0.0 {
        saturated.snapshots as f64 / saturated.cpu
    } else {
        0.0
    };
    let paced = &phases[1];
    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
    println!();
    println!("| target | measured | |");
    println!("|---|---|---|");
    println!(
        "| >= 20,000 map snapshots/s on 2 cores | {achieved:.0}/s achieved here (load generator on the same cores); {:.0}/s projected for 2 dedicated cores | {} |",
        2.0 * per_cpu,
        verdict(achieved >= 20_000.0 || 2.0 * per_cpu >= 20_000.0)
    );
    let maps_total = sources * maps;
    for (what, mib) in [
        ("steady state, paced", paced.hwm),
        ("peak, saturated", saturated.hwm),
        ("peak, after one scrape", hwm),
    ] {
        println!(
            "| RSS <= 64 MiB with {maps_total} maps ({what}) | {mib:.1} MiB | {} |",
            verdict(mib <= 64.0)
        );
    }
    let failed: u64 = phases.iter().map(|p| p.errors).sum();
    if failed > 0 {
        println!("\n{failed} requests failed");
    }
}
