//! Sidecar ingest: `POST /v1/report`, protocol v1, for applications in any
//! language (Go first). Reports become rows of the one
//! [`Registry`](crate::Registry), so they get the same metrics, spans, alerts,
//! detectors, cardinality cap and grace period as in-process maps, with
//! `source` and `source_instance` labels.
//!
//! This module is the protocol and the source lifecycle, nothing more:
//! - [`protocol`]: the wire types, with kinds and statuses as enums and
//!   RFC 3339 timestamps parsed as the JSON is read;
//! - `validate.rs`: limits, and the checks types cannot express ([`check`]);
//! - `openapi.rs` (tests only): `docs/openapi.yaml`, generated from the
//!   wire types;
//! - `convert.rs`: protocol to rows and events, in one function;
//! - `sources.rs`: admission, restart, duplicate and stale classification,
//!   TTL ([`Sources`]);
//! - [`crash`] and `crash_dir.rs`: Go crash files ([`CrashDir`]): a process
//!   killed by a map misuse never reports again, so its crash output is the
//!   report.
//!
//! Guarantees: a rejected request changes nothing; one source's bad input
//! never touches another source's series; every limit answers with a JSON
//! error naming the field and the limit.

#[cfg(feature = "sidecar")]
mod body;
#[cfg(feature = "sidecar")]
mod convert;
#[cfg(feature = "sidecar")]
pub mod crash;
#[cfg(feature = "sidecar")]
mod crash_dir;
#[cfg(feature = "sidecar")]
mod endpoint;
#[cfg(all(test, feature = "sidecar"))]
mod openapi;
pub mod protocol;
#[cfg(feature = "sidecar")]
mod sources;
#[cfg(feature = "sidecar")]
mod validate;
// The reporter writes stats to the wire; only the sidecar reads them back.
#[cfg_attr(not(feature = "sidecar"), allow(dead_code))]
mod wire;

#[cfg(feature = "sidecar")]
pub use body::BodyLimits;
#[cfg(feature = "sidecar")]
pub use crash_dir::{CrashDir, CrashDirLimits, ScanSummary};
#[cfg(feature = "sidecar")]
pub use endpoint::{handle, router, IngestState};
pub use protocol::{
    ErrorBody, Report, ReportAccepted, ReportStatus, MAX_SECONDS, MAX_SOURCE_CHARS,
    PROTOCOL_VERSION,
};
#[cfg(feature = "sidecar")]
pub use sources::Sources;
#[cfg(feature = "sidecar")]
pub use validate::{check, Limits, Rejection};

#[cfg(feature = "sidecar")]
pub use crate::registry::IngestStats;
