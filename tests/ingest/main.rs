//! Sidecar ingest: protocol v1 (`POST /v1/report`, see
//! `docs/protocol.md`) in, `/metrics` out. The ingest and HTTP routers are
//! called in process (`tower::ServiceExt::oneshot`); the `Reporter` and the
//! real `mapscope sidecar` binary talk over loopback sockets.
//!
//! - the Rust [`mapscope::Reporter`] → sidecar → `/metrics` round trip;
//! - a sidecar restart (the real binary, killed and started again on the
//!   same ports) in the middle of a stream: counters stay continuous;
//! - a source restart (new `started_at`, seq back to 1) is a counter reset,
//!   retries are duplicates, events are deduplicated by seq;
//! - stable source labels: `source` is the app and `source_instance` the
//!   process, from the first report, however many instances report;
//! - reported maps are rows of the one registry: the `--max-maps` cap and
//!   `_overflow` folding, the grace period of a map left out of a report,
//!   and client conditions that keep the time they fired;
//! - TTL, stale and grace: in process on the registry's manual clock, and
//!   in the binary with `--source-ttl 1 --grace-period 1`;
//! - every limit, table-driven: status, JSON error body naming field and
//!   limit, other sources' series untouched, and the ingest counters;
//! - property tests: `mapscope::ingest::handle` never panics and always
//!   answers 200 or 4xx with a JSON body, for arbitrary JSON;
//! - `docs/openapi.yaml` and `docs/protocol.md` cannot drift from the Rust
//!   protocol structs and the command line.
//!
//! One test binary, a module per concern: [`round_trip`], [`lifecycle`],
//! [`limits`] (with its table in [`limit_cases`]), [`properties`] and
//! [`docs`]; [`support`] holds what they share.

// Drives the sidecar (its binary or its ingest endpoint): `--features sidecar`.
#![cfg(feature = "sidecar")]

#[path = "../common"]
mod common {
    pub(crate) mod blocking;
    pub(crate) mod exposition;
    pub(crate) mod poll;
    pub(crate) mod ports;
    pub(crate) mod process;
    pub(crate) mod router;
    pub(crate) mod run;
    pub(crate) mod server;
    pub(crate) mod wait;
}
mod docs;
mod lifecycle;
mod limit_cases;
mod limits;
mod properties;
mod round_trip;
mod support;
