//! Exporters: everything here reads [`RegistrySnapshot`]s and nothing else.
//!
//! - [`catalog`]: the one declaration of every metric;
//! - [`prometheus`]: a `prometheus::core::Collector` and a text renderer;
//! - `otel` (feature `otel`): growth spans and misuse events over OTLP.

use crate::registry::{EventBatch, Registry, RegistrySnapshot};

pub mod catalog;
#[cfg(feature = "otel")]
pub mod otel;
pub mod prometheus;

/// Something exporters can read maps from: the in-process [`Registry`], or
/// the sidecar's store of maps reported by other processes.
pub trait SnapshotSource: Send + Sync + std::fmt::Debug {
    /// Every map now, with detector conditions.
    fn snapshot(&self) -> RegistrySnapshot;
    /// Events from `cursor` on (see [`Registry::events_since`]).
    fn events_since(&self, cursor: u64) -> EventBatch;
}

impl SnapshotSource for Registry {
    fn snapshot(&self) -> RegistrySnapshot {
        Registry::snapshot(self)
    }

    fn events_since(&self, cursor: u64) -> EventBatch {
        Registry::events_since(self, cursor)
    }
}
