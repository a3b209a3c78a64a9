//! A stat declared once shows up everywhere stats go.
//!
//! `test_writes` exists only in this crate's unit tests: one line in the
//! declaration (`map_stats!`) and one in the engine (`RawMap::stats`),
//! nothing else. This test finds it in every place a stat reaches: the
//! seqlock publication, the `_overflow` fold (and what stays there when a
//! folded map leaves), the JSON of `GET /api/v1/maps`, the Prometheus
//! exposition, and protocol v1, which it does not reach because it is not
//! declared `wire` (protocol v1 has no such field). Had any of those been
//! written field by field, the stat would be missing there and this test
//! would fail, like tokio-metrics' `test_no_fields_missing`.

use std::time::Duration;

use serde_json::{json, Value};

use crate::export::prometheus::MapscopeCollector;
use crate::http::ApiSnapshot;
use crate::ingest::protocol::{Report, ReportedCounters, ReportedStats};
use crate::ingest::{Limits, Sources};
use crate::map::{Growth, InstrumentedMap, MapStats};
use crate::registry::{ManualClock, Registry, OVERFLOW_MAP};

fn writes(map: &mut InstrumentedMap<u64, u64>, inserts: u64, updates: u64, removes: u64) {
    for key in 0..inserts {
        map.insert(key, key);
    }
    for key in 0..updates {
        map.insert(key, 0);
    }
    for key in 0..removes {
        map.remove(&key);
    }
    map.publish();
}

fn api_map<'a>(json: &'a Value, name: &str) -> &'a Value {
    json["maps"]
        .as_array()
        .and_then(|maps| maps.iter().find(|m| m["name"] == name))
        .unwrap_or_else(|| panic!("no map {name} in {json:#}"))
}

#[test]
fn a_stat_in_the_declaration_reaches_every_consumer() {
    let clock = ManualClock::new();
    let registry = Registry::builder()
        .max_maps(1)
        .grace_period(Duration::from_secs(1))
        .clock(clock.clone())
        .build();
    let mut own = InstrumentedMap::builder("own").register(&registry).unwrap();
    let mut folded = InstrumentedMap::builder("folded")
        .register(&registry)
        .unwrap();
    writes(&mut own, 1000, 10, 5);
    writes(&mut folded, 7, 0, 0);

    // The engine counts it.
    assert_eq!(own.stats().test_writes, 1015);

    // The seqlock publication carries it (and every other stat).
    let snapshot = registry.snapshot();
    let published = snapshot.map("own").unwrap().stats;
    assert_eq!(published, own.stats());
    assert_eq!(published.test_writes, 1015);

    // `_overflow` sums it like the counter it is declared as.
    let overflow = snapshot.map(OVERFLOW_MAP).unwrap().stats;
    assert_eq!(overflow.test_writes, 7);
    assert_eq!(overflow.entries, 7);

    // The JSON API has it, as an integer, and reads it back.
    let api = ApiSnapshot::from_snapshot(&snapshot);
    let json = serde_json::to_value(&api).unwrap();
    assert_eq!(api_map(&json, "own")["test_writes"], json!(1015u64));
    assert_eq!(
        api_map(&json, "own")["evacuated_buckets"],
        json!(published.evacuated_buckets_total)
    );
    let read: ApiSnapshot = serde_json::from_value(json).unwrap();
    assert_eq!(read.maps[0].stats, published);

    // The exposition has its metric, typed as declared.
    let text = MapscopeCollector::new(registry.clone()).render();
    assert!(
        text.contains("# TYPE mapscope_map_test_writes_total counter\n"),
        "{text}"
    );
    assert!(
        text.contains("mapscope_map_test_writes_total{map=\"own\"} 1015\n"),
        "{text}"
    );
    assert!(
        text.contains("mapscope_map_test_writes_total{map=\"_overflow\"} 7\n"),
        "{text}"
    );

    // When the folded map goes, `_overflow` keeps its counters (this one
    // included) and drops its gauges.
    drop(folded);
    clock.advance(Duration::from_secs(2));
    registry.snapshot();
    let overflow = registry.snapshot().map(OVERFLOW_MAP).unwrap().stats;
    assert_eq!((overflow.test_writes, overflow.inserts), (7, 7));
    assert_eq!((overflow.entries, overflow.buckets), (0, 0));

    // Protocol v1 carries every stat declared `wire`, and not this one.
    let stats = serde_json::to_value(ReportedStats::from(&published)).unwrap();
    let counters = serde_json::to_value(ReportedCounters::from(&published)).unwrap();
    assert!(counters.get("test_writes").is_none(), "{counters}");
    let report: Report = serde_json::from_value(json!({
        "source": {"app": "app", "instance": "pod"},
        "seq": 1,
        "maps": [{"name": "own", "stats": stats, "counters": counters}],
    }))
    .unwrap();
    let sidecar = Registry::new();
    Sources::new(&sidecar, Limits::default())
        .apply(report)
        .unwrap();
    let received = sidecar.snapshot().map("own").unwrap().stats;
    assert_eq!(
        received,
        MapStats {
            test_writes: 0,
            growth: published.growth.map(|g| Growth {
                entries_at_start: 0,
                helping_writes: 0,
                ..g
            }),
            ..published
        }
    );
}
