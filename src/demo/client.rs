//! Scenario g: a simulated Go client that reports to the sidecar's ingest
//! API with protocol v1, including the misuse Go programs hit: writes to a
//! nil map, concurrent map writes, and mutation during iteration.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::ingest::protocol::{
    EventKind, KindCounts, Report, ReportedCounters, ReportedEvent, ReportedMap,
    ReportedMisuseKind, ReportedStats, SourceInfo, Timestamp,
};

/// Posts a report every 10 ticks until `stop`.
pub(super) fn run(ingest: SocketAddr, tick: Duration, stop: &AtomicBool) {
    let Ok(client) = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
    else {
        tracing::error!("demo go client: cannot build an HTTP client");
        return;
    };
    let host = if ingest.ip().is_unspecified() {
        "127.0.0.1".to_owned()
    } else {
        ingest.ip().to_string()
    };
    let url = format!("http://{host}:{}/v1/report", ingest.port());
    let started_at = Timestamp::now();
    let mut seq = 0u64;
    let mut event_seq = 0u64;
    let mut misuse = [0u64; 3];
    let kinds = [
        ReportedMisuseKind::NilMapWrite,
        ReportedMisuseKind::ConcurrentWrite,
        ReportedMisuseKind::IterateWhileMutating,
    ];
    let mut step = 0u64;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(tick * 10);
        step += 1;
        seq += 1;
        let mut events = Vec::new();
        // A low, steady rate: each kind every few reports.
        for (i, kind) in kinds.iter().enumerate() {
            if (step + i as u64).is_multiple_of(3) {
                misuse[i] += 1;
                event_seq += 1;
                events.push(ReportedEvent {
                    seq: event_seq,
                    kind: EventKind::Misuse,
                    map: "carts".into(),
                    labels: BTreeMap::from([("scenario".into(), "g".into())]),
                    at: Timestamp::now(),
                    duration_seconds: None,
                    growth_kind: None,
                    misuse_kind: Some(*kind),
                    trace_id: None,
                    span_id: None,
                    attributes: BTreeMap::from([
                        ("code.function".into(), "main.(*Cart).Add".into()),
                        ("goroutine".into(), (step % 7).to_string()),
                    ]),
                });
            }
        }
        let entries = 1_000 + (step * 37) % 5_000;
        let report = Report {
            source: SourceInfo {
                app: "go-checkout".into(),
                instance: "demo-1".into(),
                language: Some("go".into()),
                sdk: Some("mapscope-go/0.1 (simulated)".into()),
                started_at: Some(started_at),
            },
            seq,
            sent_at: Some(Timestamp::now()),
            interval_seconds: Some((tick * 10).as_secs_f64()),
            maps: vec![ReportedMap {
                name: "carts".into(),
                labels: BTreeMap::from([("scenario".into(), "g".into())]),
                stats: ReportedStats {
                    entries,
                    peak_entries: 6_000,
                    buckets: 1_024,
                    overflow_buckets: 12,
                    memory_bytes: 1_024 * 272,
                    max_overflow_chain: 1,
                    evacuation: None,
                },
                counters: ReportedCounters {
                    growths: KindCounts {
                        double: 10,
                        ..Default::default()
                    },
                    inserts: (step * 500).max(entries),
                    removes: (step * 500).saturating_sub(entries),
                    misuse: kinds.iter().zip(misuse).map(|(k, n)| (*k, n)).collect(),
                    ..Default::default()
                },
            }],
            events,
        };
        if let Err(error) = client.post(&url).json(&report).send() {
            tracing::debug!(%error, "demo go client: report failed");
        }
    }
}
