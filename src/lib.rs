//! # mapscope
//!
//! See, in production, what hash maps do to a service's latency and memory.
//!
//! [`InstrumentedMap`] is a hash map laid out like the Go runtime's classic
//! map (`runtime/map.go` before Go 1.24): 8-slot buckets with a tophash byte
//! per slot, overflow chains, doubling above an average load of 6.5,
//! same-size growth when overflow buckets pile up, and incremental
//! evacuation of at most two old buckets per write. Its growth and
//! evacuation are therefore real internals, exposed exactly through
//! [`InstrumentedMap::stats`].
//!
//! Where Rust lets it do better than Go, it does:
//! - it shrinks ([`InstrumentedMap::shrink_to_fit`], opt-in auto-shrink);
//! - no single write pays for a whole resize, including allocating the new
//!   array, which is materialised in chunks as it is evacuated into;
//! - [`InstrumentedMap::complete_growth`] finishes an evacuation that writes
//!   stopped driving.
//!
//! ## When not to use it
//! If you never look at the stats, `hashbrown` or `std::collections::HashMap`
//! are faster and smaller: SIMD group probing at 7/8 load beats 8-slot
//! buckets at 6.5/8. mapscope trades some of that for bounded write latency
//! and for internals that match what Go engineers know from their incidents.
//! See `docs/benchmarks.md` for the measured price.
//!
//! ```
//! use mapscope::InstrumentedMap;
//!
//! let mut map = InstrumentedMap::new();
//! for i in 0..1_000u32 {
//!     map.insert(i, i * 2);
//! }
//! let stats = map.stats();
//! assert_eq!(stats.entries, 1_000);
//! assert_eq!(stats.buckets, 256); // 1_000 <= 6.5 * 256
//! assert!(stats.load_factor <= 6.5);
//! ```

// The only `unsafe` code is the engine's storage layer, `map::table`, which
// allows it for itself; see its safety invariants.
#![deny(unsafe_code)]
#![deny(unsafe_op_in_unsafe_fn)]

pub mod cli;
pub mod demo;
pub mod detect;
pub mod export;
pub mod http;
pub mod ingest;
pub mod map;
pub mod registry;
pub mod reporter;
pub mod timestamp;

pub use detect::{Condition, DetectorConfig, MisuseKind};
#[cfg(feature = "otel")]
pub use export::otel;
pub use http::serve;
pub use map::{DefaultHashBuilder, Entry, Growth, GrowthKind, InstrumentedMap, MapStats, PerKind};
pub use registry::{
    Event, MapBuilder, MapSnapshot, RegisterError, Registry, RegistryBuilder, RegistrySnapshot,
};
pub use reporter::Reporter;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
