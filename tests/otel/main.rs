//! OpenTelemetry export end to end: `mapscope::otel::init_with` exports
//! over real OTLP/HTTP (protobuf) to an in-test receiver ([`receiver`]),
//! which decodes every request with the OTLP protobuf definitions and keeps
//! the spans.
//!
//! One test binary, a module per concern: [`growth`] (grow spans and their
//! parents), [`misuse`] (misuse events and spans, client-reported errors
//! and crash sites), [`rate_limit`] (the per-map misuse rate limit, on the
//! registry's manual clock) and [`config`] (switches, unsupported values,
//! endpoints from the environment).
//!
//! Every test uses its own `Registry`, receiver and tracer provider, with
//! `set_global(false)` (except the one test about the global provider), so
//! the tests are independent of each other and of the process-wide
//! provider. Every wait is bounded.

#![cfg(feature = "otel")]

mod config;
mod growth;
mod misuse;
mod rate_limit;
mod receiver;

use std::collections::BTreeMap;
use std::time::Duration;

use mapscope::otel::{OtelConfig, OtelGuard};
use mapscope::{otel, GrowthKind, InstrumentedMap, Registry};

use crate::receiver::Receiver;

type Map = InstrumentedMap<u64, u64>;

/// The longest any wait in these tests may take.
const WAIT: Duration = Duration::from_secs(10);
/// How often the event pump turns registry events into spans here.
const POLL: Duration = Duration::from_millis(20);

/// 6.5 entries per bucket at 512 buckets: the next new key doubles the map.
const FULL_512: u64 = 13 * 512 / 2;

/// A configuration exporting to `receiver`, polling fast, not global.
fn config_for(receiver: &Receiver) -> OtelConfig {
    OtelConfig::from_lookup(|_| None)
        .expect("an empty environment is valid")
        .with_endpoint(receiver.url())
        .with_poll_interval(POLL)
        .with_set_global(false)
}

/// Starts exporting `registry` to `receiver`, checking that export is on.
fn start(registry: &Registry, receiver: &Receiver) -> OtelGuard {
    let guard = otel::init_with(registry, config_for(receiver)).expect("init_with");
    assert!(guard.is_enabled());
    assert_eq!(guard.disabled_reason(), None);
    guard
}

/// A lookup over fixed variables.
fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: BTreeMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |name| vars.get(name).cloned()
}

/// A registered map presized to 512 buckets and filled to the brim: the
/// next new key starts a doubling with 512 old buckets to evacuate.
fn full_map(registry: &Registry, name: &str) -> Map {
    let mut map = Map::builder(name)
        .label("tenant", "acme")
        .capacity(FULL_512 as usize)
        .register(registry)
        .expect("register");
    for key in 0..FULL_512 {
        map.insert(key, key);
    }
    let stats = map.stats();
    assert_eq!(stats.buckets, 512);
    assert_eq!(stats.growth, None);
    assert_eq!(
        stats.growths[GrowthKind::Double],
        0,
        "presized: no growth while filling"
    );
    map
}

/// Inserts new keys from `next` until the growth in progress finishes.
/// Returns the number of writes and the next unused key.
fn write_until_grown(map: &mut Map, mut next: u64) -> (u64, u64) {
    let mut writes = 0;
    while map.stats().growth.is_some() {
        map.insert(next, next);
        next += 1;
        writes += 1;
        assert!(writes <= 10_000, "the growth never finished");
    }
    (writes, next)
}
