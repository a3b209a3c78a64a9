//! `mapscope demo`: the sidecar plus an in-process workload that reproduces
//! every scenario in `docs/scenarios.md`, continuously and with bounded
//! memory (every map cycles or is capped), so it can run for days.
//!
//! | map | scenario | shows |
//! |---|---|---|
//! | `orders` | presized, steady churn | the healthy baseline |
//! | `sessions` | unique ids, never pruned | `unbounded_growth` |
//! | `user_cache` | filled, then 95% deleted | `retained_capacity`, then memory back after `shrink_to_fit()` |
//! | `routes` | colliding keys under a weak hasher | overflow chains, same-size growth, `overflow_chain` |
//! | `events` | no capacity hint | `presize_miss`, steady growth and evacuation |
//! | `snapshot` | writes stop halfway through a growth | `evacuation_stalled` |
//! | (Go client) | posts reports to the ingest API | `nil_map_write`, `concurrent_write`, `iterate_while_mutating` |
//!
//! Every duration is a number of ticks (`--tick`, default 100 ms), so tests
//! run the same story faster.

use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::cli::DemoArgs;
use crate::detect::DetectorConfig;
use crate::registry::Registry;
use crate::InstrumentedMap;

mod client;

/// The running workload.
#[derive(Debug)]
pub struct Workload {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Workload {
    /// Stops the workload and waits for it.
    pub async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                let _ = thread.join();
            }
        })
        .await;
    }
}

/// The detector thresholds the demo uses, scaled to its tick so a whole
/// story plays out in about a minute at the default tick.
pub fn detector_config(tick: Duration) -> DetectorConfig {
    DetectorConfig::default()
        .with_window(tick * 10)
        .with_growth_windows(4)
        .with_retained_windows(3)
        .with_retained_min_bytes(16 * 1024)
        .with_stall_after(tick * 30)
        .with_event_hold(tick * 600)
}

/// Starts the workload on threads of its own; it stops when `stop` turns
/// true or [`Workload::stop`] is called.
pub fn start(
    registry: &Registry,
    args: &DemoArgs,
    http: SocketAddr,
    ingest: SocketAddr,
    stop: watch::Receiver<bool>,
) -> Workload {
    let tick = Duration::from_millis(args.tick.max(1));
    let flag = Arc::new(AtomicBool::new(false));
    {
        let flag = flag.clone();
        let mut stop = stop;
        tokio::spawn(async move {
            let _ = stop.wait_for(|s| *s).await;
            flag.store(true, Ordering::Relaxed);
        });
    }
    println!("mapscope demo: open http://{http}/ (maps), http://{http}/metrics (Prometheus)");
    for (map, story) in [
        (
            "orders",
            "presized with capacity, steady churn: the healthy baseline",
        ),
        (
            "sessions",
            "unique ids, never pruned: unbounded_growth (restarts at 3x max_entries)",
        ),
        (
            "user_cache",
            "filled then 95% deleted: retained_capacity, then shrink_to_fit() gives memory back",
        ),
        (
            "routes",
            "colliding keys under a weak hasher: overflow chains, same-size growth, overflow_chain",
        ),
        (
            "events",
            "grows without a capacity hint: presize_miss, steady growth and evacuation",
        ),
        (
            "snapshot",
            "writes stop halfway through a growth: evacuation_stalled, then complete_growth()",
        ),
        (
            "(go client)",
            "posts to the ingest API: nil_map_write, concurrent_write, iterate_while_mutating",
        ),
    ] {
        println!("mapscope demo: scenario {map:<12} {story}");
    }
    let mut threads = Vec::new();
    let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new()
            .name(name.into())
            .spawn(f)
            // UNWRAP: failing to start a thread at startup is unrecoverable for the demo.
            .expect("the demo can start its threads")
    };
    {
        let (registry, flag) = (registry.clone(), flag.clone());
        threads.push(spawn(
            "mapscope-demo",
            Box::new(move || run(&registry, tick, &flag)),
        ));
    }
    {
        let flag = flag.clone();
        threads.push(spawn(
            "mapscope-demo-go",
            Box::new(move || client::run(ingest, tick, &flag)),
        ));
    }
    Workload {
        stop: flag,
        threads,
    }
}

/// A deliberately weak hasher: 16 distinct hashes with the same top byte,
/// so keys pile into 16 buckets' overflow chains (a stand-in for an
/// unseeded hash under a flooding attack).
#[derive(Debug, Clone, Copy, Default)]
pub struct WeakHasher(u64);

impl Hasher for WeakHasher {
    fn finish(&self) -> u64 {
        self.0 % 16
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.wrapping_add(u64::from(*b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = self.0.wrapping_add(n);
    }
}

/// Builds [`WeakHasher`]s.
#[derive(Debug, Clone, Copy, Default)]
pub struct WeakState;

impl BuildHasher for WeakState {
    type Hasher = WeakHasher;
    fn build_hasher(&self) -> WeakHasher {
        WeakHasher::default()
    }
}

struct Scenarios {
    orders: InstrumentedMap<u64, u64>,
    sessions: InstrumentedMap<u64, u64>,
    user_cache: InstrumentedMap<u64, Vec<u8>>,
    routes: InstrumentedMap<u64, u64, WeakState>,
    events: InstrumentedMap<u64, u64>,
    snapshot: InstrumentedMap<u64, u64>,
}

const SESSIONS_MAX: usize = 20_000;

fn scenarios(registry: &Registry, tick: Duration) -> Scenarios {
    let config = detector_config(tick);
    // UNWRAP: fixed, valid, distinct names registered once.
    let register = "demo map names are valid and unique";
    Scenarios {
        orders: InstrumentedMap::builder("orders")
            .label("scenario", "a")
            .capacity(10_000)
            .detectors(config)
            .register(registry)
            .expect(register),
        sessions: InstrumentedMap::builder("sessions")
            .label("scenario", "b")
            .max_entries(SESSIONS_MAX)
            .detectors(config)
            .register(registry)
            .expect(register),
        user_cache: InstrumentedMap::builder("user_cache")
            .label("scenario", "c")
            .detectors(config)
            .register(registry)
            .expect(register),
        routes: InstrumentedMap::builder("routes")
            .label("scenario", "d")
            .hasher(WeakState)
            .detectors(config)
            .register(registry)
            .expect(register),
        events: InstrumentedMap::builder("events")
            .label("scenario", "e")
            .detectors(config)
            .register(registry)
            .expect(register),
        snapshot: InstrumentedMap::builder("snapshot")
            .label("scenario", "f")
            .detectors(config)
            .register(registry)
            .expect(register),
    }
}

/// One step of every scenario. `step` counts ticks.
fn step(s: &mut Scenarios, step: u64) {
    // a) orders: presized, steady churn over 8,000 live orders.
    for i in 0..200 {
        let id = step * 200 + i;
        s.orders.insert(id % 8_000, id);
        if id.is_multiple_of(3) {
            s.orders.remove(&((id + 4_000) % 8_000));
        }
    }
    // b) sessions: unique ids, never pruned; the scenario restarts at 3x the
    //    limit so memory stays bounded.
    for i in 0..400 {
        s.sessions.insert(step * 400 + i, step);
    }
    if s.sessions.len() > 3 * SESSIONS_MAX {
        s.sessions.clear();
        s.sessions.shrink_to_fit();
    }
    // c) user_cache: a 200-tick cycle: fill 40,000 entries, delete 95%,
    //    hold (retained capacity), shrink every other cycle.
    let cycle = step % 200;
    let round = step / 200;
    if cycle < 30 {
        for i in 0..1_400 {
            s.user_cache.insert(cycle * 1_400 + i, vec![0; 16]);
        }
    } else if cycle == 30 {
        s.user_cache.retain(|k, _| k % 20 == 0);
    } else if cycle == 150 && round.is_multiple_of(2) {
        s.user_cache.shrink_to_fit();
        s.user_cache.complete_growth();
    } else if cycle == 199 {
        s.user_cache.clear();
    }
    // d) routes: churn over 2,000 live keys that share 16 hashes.
    for i in 0..50 {
        let key = (step * 50 + i) % 4_000;
        s.routes.insert(key, step);
        s.routes.remove(&((key + 2_000) % 4_000));
    }
    // e) events: grows from empty without a capacity hint (old events are
    //    trimmed a little, so it is not an unbounded map), then starts over.
    for i in 0..1_000 {
        s.events.insert(step * 1_000 + i, i);
    }
    for i in 0..10 {
        s.events.remove(&(step.saturating_sub(50) * 1_000 + i));
    }
    if s.events.len() >= 120_000 {
        s.events.clear();
        s.events.shrink_to_fit();
    }
    // f) snapshot: an 80-tick cycle: write until a growth starts, then stop
    //    writing (the growth stalls) until the cycle ends.
    let cycle = step % 80;
    if cycle == 0 {
        s.snapshot.complete_growth();
        s.snapshot.clear();
        s.snapshot.shrink_to_fit();
    }
    if s.snapshot.stats().growth.is_none() && cycle < 70 {
        let base = s.snapshot.len() as u64;
        for i in 0..500 {
            s.snapshot.insert(base + i, i);
            if s.snapshot.stats().growth.is_some() && base > 20_000 {
                break;
            }
        }
    }
}

fn run(registry: &Registry, tick: Duration, stop: &AtomicBool) {
    let mut maps = scenarios(registry, tick);
    let window = detector_config(tick).window;
    let mut last_observed = Instant::now();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        traced_step(&mut maps, n);
        maps.orders.publish();
        maps.sessions.publish();
        maps.user_cache.publish();
        maps.routes.publish();
        maps.events.publish();
        maps.snapshot.publish();
        // Observe at the detector window even when nobody scrapes, so
        // conditions fire (and are logged) on their own.
        if last_observed.elapsed() >= window {
            let _ = registry.snapshot();
            last_observed = Instant::now();
        }
        n += 1;
        std::thread::sleep(tick.saturating_sub(started.elapsed()));
    }
}

/// One step, inside a request-like span when OpenTelemetry is on, so grow
/// spans nest under it.
#[cfg(feature = "otel")]
fn traced_step(maps: &mut Scenarios, n: u64) {
    use opentelemetry::trace::{Tracer, TracerProvider};
    let tracer = opentelemetry::global::tracer_provider().tracer("mapscope-demo");
    tracer.in_span("demo.request", |_cx| step(maps, n));
}

#[cfg(not(feature = "otel"))]
fn traced_step(maps: &mut Scenarios, n: u64) {
    step(maps, n);
}
