//! Exporters: everything here reads [`RegistrySnapshot`]s of the one
//! [`Registry`] and nothing else.
//!
//! - [`catalog`]: the one declaration of every metric;
//! - [`prometheus`]: a `prometheus::core::Collector` and a text renderer;
//! - `otel` (feature `otel`): growth spans and misuse events over OTLP.
//!
//! [`RegistrySnapshot`]: crate::RegistrySnapshot
//! [`Registry`]: crate::Registry

pub mod catalog;
#[cfg(feature = "otel")]
pub mod otel;
pub mod prometheus;
