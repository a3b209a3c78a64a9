//! `mapscope demo`: an in-process workload over live maps, so the endpoint
//! shows real growth, evacuation and detector conditions.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cli::DemoArgs;
use crate::registry::Registry;
use crate::InstrumentedMap;

/// The running workload.
#[derive(Debug)]
pub struct Workload {
    task: JoinHandle<()>,
}

impl Workload {
    /// Waits for the workload to notice the stop signal and finish.
    pub async fn stop(self) {
        let _ = self.task.await;
    }
}

/// Starts the workload on a blocking thread; it stops when `stop` turns true.
pub fn start(
    registry: &Registry,
    args: &DemoArgs,
    http: SocketAddr,
    _ingest: SocketAddr,
    stop: watch::Receiver<bool>,
) -> Workload {
    let registry = registry.clone();
    let tick = Duration::from_millis(args.tick.max(1));
    println!("mapscope demo: open http://{http}/ and http://{http}/metrics");
    let task = tokio::task::spawn_blocking(move || run(&registry, tick, &stop));
    Workload { task }
}

fn run(registry: &Registry, tick: Duration, stop: &watch::Receiver<bool>) {
    // UNWRAP: fixed, valid, distinct names.
    let mut orders = InstrumentedMap::<u64, u64>::builder("orders")
        .capacity(10_000)
        .register(registry)
        .expect("valid demo map");
    let mut events = InstrumentedMap::<u64, u64>::builder("events")
        .register(registry)
        .expect("valid demo map");
    let mut step = 0u64;
    while !*stop.borrow() {
        for i in 0..100 {
            let key = step * 100 + i;
            orders.insert(key % 10_000, key);
            events.insert(key, key);
        }
        if events.len() > 200_000 {
            events.clear();
            events.shrink_to_fit();
        }
        orders.publish();
        events.publish();
        step += 1;
        std::thread::sleep(tick);
    }
}
