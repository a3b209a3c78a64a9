//! Reporter mode: an application that pushes its maps to a `mapscope`
//! sidecar instead of serving `/metrics` itself.
//!
//! ```sh
//! cargo run --features sidecar -- sidecar &      # the sidecar, ingest on 127.0.0.1:9848
//! MAPSCOPE_ENDPOINT=http://127.0.0.1:9848/v1/report cargo run --features reporter --example reporter
//! curl -s localhost:9847/metrics | grep 'source="reporter-example"'
//! ```

use std::time::Duration;

use mapscope::{InstrumentedMap, Registry, Reporter};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let registry = Registry::global();
    // The one line that differs from embedded mode.
    let reporter = Reporter::builder()
        .app("reporter-example")
        .interval(Duration::from_secs(1))
        .spawn(registry)?;

    let mut cache = InstrumentedMap::<u64, String>::builder("cache").register(registry)?;
    let rounds: u64 = std::env::var("EXAMPLE_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(30);
    for round in 0..rounds {
        for i in 0..10_000 {
            cache.insert(round * 10_000 + i, format!("value {i}"));
        }
        cache.publish();
        println!(
            "round {round}: {} entries, {:?}",
            cache.len(),
            reporter.stats()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    reporter.shutdown();
    Ok(())
}
