//! Protocol v1: the JSON body of `POST /v1/report`. See `docs/protocol.md`;
//! `docs/openapi.yaml` is generated from these types (`openapi.rs`).
//!
//! The types say what serde can enforce: kinds and statuses are enums, so
//! an unknown value is an error naming its field and the values allowed
//! (never a silent default); timestamps are parsed RFC 3339 while the JSON
//! is read; integers are `u64`. `super::check` adds what types cannot say:
//! lengths, label names, limits, and rules across fields. Unknown fields
//! are ignored, at every level, so newer clients can talk to older
//! sidecars.
//!
//! Counters are cumulative since the reporting process started, so a lost
//! request or a sidecar restart loses nothing: the next report carries the
//! totals.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};

use crate::detect::MisuseKind;
use crate::map::GrowthKind;
pub use crate::timestamp::Timestamp;

// The OpenAPI document is generated, in the sidecar's tests, from these types.
#[cfg(all(test, feature = "sidecar"))]
use super::openapi;

/// The protocol version this module implements.
pub const PROTOCOL_VERSION: u32 = 1;

/// Longest `source.app` or `source.instance`, in characters.
pub const MAX_SOURCE_CHARS: usize = 128;

/// Largest number of seconds a report may carry (about 31 years): far above
/// any real duration, far below what a `Duration` overflows at.
pub const MAX_SECONDS: f64 = 1e9;

/// Largest `interval_seconds`: a source that says it reports less often
/// than every 5 minutes would hold its slot (3 intervals, see
/// `--source-ttl`) for a quarter of an hour after it died. A client that
/// sends milliseconds (`10000`) is told to send seconds instead of getting
/// an 8-hour TTL.
pub const MAX_INTERVAL_SECONDS: f64 = 300.0;

/// Largest `seq` (a report's or an event's): 2^53 − 1, the largest integer
/// every JSON parser reads exactly. Far above any real count (a report a
/// millisecond for 285,000 years), and far enough below `u64::MAX` that no
/// report can leave its source without a next `seq`.
pub const MAX_SEQ: u64 = (1 << 53) - 1;

/// Most a `seq` (a report's or an event's) may move past the last one
/// applied from the same process: a bigger jump is a 400 `seq_jump`, so
/// one bad report cannot make every later one a `duplicate`. A million
/// reports is 11 days at one a second: more than a source stays known
/// without reporting (`--source-ttl` plus the grace period).
pub const MAX_SEQ_STEP: u64 = 1_000_000;

/// How far in the future `source.started_at` may be, in seconds, on the
/// sidecar's clock: clocks of two machines differ by that much at most
/// under NTP. Further is a 400: a start time from the future would make
/// the process's real reports look like late ones (`stale`).
pub const MAX_CLOCK_SKEW_SECONDS: u64 = 300;

/// Most attributes on one event.
pub const MAX_ATTRIBUTES: usize = 32;

/// Longest attribute key, in characters.
pub const MAX_ATTRIBUTE_KEY_CHARS: usize = 256;

/// Longest attribute value, in characters.
pub const MAX_ATTRIBUTE_VALUE_CHARS: usize = 1024;

/// The start of the message of every unknown enum value: the ingest
/// endpoint tells it (`invalid_value`) from a wrong JSON type (`schema`).
pub(crate) const UNKNOWN_VALUE: &str = "unknown value ";

/// The start of the message of a label given twice in one object: the
/// ingest endpoint answers it `duplicate_label`.
pub(crate) const DUPLICATE_LABEL: &str = "label given twice: ";

/// A map's labels, read so that a key given twice is an error naming it
/// (serde's maps keep the last value silently). The error is raised while
/// the second value is read, so its path ends with the key
/// (`maps[0].labels.tenant`).
mod labels {
    use std::collections::BTreeMap;
    use std::fmt;

    use serde::de::{DeserializeSeed, Error, MapAccess, Visitor};
    use serde::Deserializer;

    use super::DUPLICATE_LABEL;

    struct Value<'a> {
        key: &'a str,
        duplicate: bool,
    }

    impl<'de> DeserializeSeed<'de> for Value<'_> {
        type Value = String;

        fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
            let value = <String as serde::Deserialize>::deserialize(deserializer)?;
            if self.duplicate {
                return Err(D::Error::custom(format_args!(
                    "{DUPLICATE_LABEL}{:?} appears more than once: give each label once",
                    self.key
                )));
            }
            Ok(value)
        }
    }

    struct LabelsVisitor;

    impl<'de> Visitor<'de> for LabelsVisitor {
        type Value = BTreeMap<String, String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an object of label names to string values")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
            let mut labels = BTreeMap::new();
            while let Some(key) = access.next_key::<String>()? {
                let duplicate = labels.contains_key(&key);
                let value = access.next_value_seed(Value {
                    key: &key,
                    duplicate,
                })?;
                labels.insert(key, value);
            }
            Ok(labels)
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<BTreeMap<String, String>, D::Error> {
        deserializer.deserialize_map(LabelsVisitor)
    }
}

/// JSON integers as JSON Schema reads them: `1037`, and also `1037.0` and
/// `1.037e3`, the same number written otherwise (serde's `u64` takes only
/// the first). A fraction, a sign or more than `u64::MAX` is an error.
mod integer {
    use std::collections::BTreeMap;
    use std::fmt;

    use serde::de::{Error, Unexpected, Visitor};
    use serde::{Deserialize, Deserializer};

    /// 2^64, the first float past `u64::MAX` (which a float cannot hold).
    const PAST_U64: f64 = 18_446_744_073_709_551_616.0;

    struct Integer(u64);

    impl<'de> Deserialize<'de> for Integer {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_any(IntegerVisitor)
        }
    }

    struct IntegerVisitor;

    impl Visitor<'_> for IntegerVisitor {
        type Value = Integer;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an integer from 0 to 18446744073709551615")
        }

        fn visit_u64<E: Error>(self, value: u64) -> Result<Integer, E> {
            Ok(Integer(value))
        }

        fn visit_i64<E: Error>(self, value: i64) -> Result<Integer, E> {
            u64::try_from(value)
                .map(Integer)
                .map_err(|_| E::invalid_value(Unexpected::Signed(value), &self))
        }

        fn visit_f64<E: Error>(self, value: f64) -> Result<Integer, E> {
            if value.fract() == 0.0 && (0.0..PAST_U64).contains(&value) {
                // Exact: a whole float below 2^64 converts without rounding.
                Ok(Integer(value as u64))
            } else {
                Err(E::invalid_value(Unexpected::Float(value), &self))
            }
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
        Integer::deserialize(deserializer).map(|integer| integer.0)
    }

    pub(super) fn counts<'de, D, K>(deserializer: D) -> Result<BTreeMap<K, u64>, D::Error>
    where
        D: Deserializer<'de>,
        K: Deserialize<'de> + Ord,
    {
        let counts = BTreeMap::<K, Integer>::deserialize(deserializer)?;
        Ok(counts.into_iter().map(|(k, v)| (k, v.0)).collect())
    }
}

/// Implements `Deserialize` (an unknown value is an error that lists the
/// allowed ones, in the words of the protocol docs) and `Display` for an
/// enum with `ALL` and `as_str`. `Serialize` and the OpenAPI schema come
/// from the derives and `rename_all`; a test checks that `as_str` agrees.
macro_rules! wire_enum {
    ($name:ident) => {
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                $name::ALL
                    .into_iter()
                    .find(|value| value.as_str() == text)
                    .ok_or_else(|| {
                        let allowed: Vec<&str> = $name::ALL.map($name::as_str).into();
                        D::Error::custom(format_args!(
                            "{UNKNOWN_VALUE}{text:?}: expected one of {}",
                            allowed.join(", ")
                        ))
                    })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// A growth kind: `double`, `same_size` or `shrink`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[cfg_attr(all(test, feature = "sidecar"), derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReportedGrowthKind {
    /// The bucket array doubled (Go's `overLoadFactor`).
    Double,
    /// The bucket array was rebuilt at the same size (Go's
    /// `tooManyOverflowBuckets`).
    SameSize,
    /// The bucket array halved.
    Shrink,
}

impl ReportedGrowthKind {
    /// Every kind, in the protocol's order.
    pub const ALL: [Self; 3] = [Self::Double, Self::SameSize, Self::Shrink];

    /// The name on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Double => "double",
            Self::SameSize => "same_size",
            Self::Shrink => "shrink",
        }
    }
}

wire_enum!(ReportedGrowthKind);

impl From<ReportedGrowthKind> for GrowthKind {
    fn from(kind: ReportedGrowthKind) -> Self {
        match kind {
            ReportedGrowthKind::Double => GrowthKind::Double,
            ReportedGrowthKind::SameSize => GrowthKind::SameSize,
            ReportedGrowthKind::Shrink => GrowthKind::Shrink,
        }
    }
}

impl From<GrowthKind> for ReportedGrowthKind {
    fn from(kind: GrowthKind) -> Self {
        match kind {
            GrowthKind::Double => ReportedGrowthKind::Double,
            GrowthKind::SameSize => ReportedGrowthKind::SameSize,
            GrowthKind::Shrink => ReportedGrowthKind::Shrink,
        }
    }
}

/// A misuse kind. Clients report `nil_map_write`, `concurrent_write` and
/// `iterate_while_mutating`; the detector kinds are accepted and ignored,
/// since the sidecar computes them from the stats itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[cfg_attr(all(test, feature = "sidecar"), derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReportedMisuseKind {
    /// Past `max_entries`, or growing window after window with no removes.
    UnboundedGrowth,
    /// Below 1/8 of slot capacity after having been higher.
    RetainedCapacity,
    /// A long overflow chain, or a same-size growth.
    OverflowChain,
    /// Doubled 4 or more times since creation.
    PresizeMiss,
    /// A growth stuck because writes stopped.
    EvacuationStalled,
    /// A write to a nil map (Go: `assignment to entry in nil map`).
    NilMapWrite,
    /// Writes from two goroutines at once (Go: `concurrent map writes`).
    ConcurrentWrite,
    /// A mutation while iterating the map.
    IterateWhileMutating,
}

impl ReportedMisuseKind {
    /// Every kind, in the protocol's (and [`MisuseKind::ALL`]'s) order.
    pub const ALL: [Self; 8] = [
        Self::UnboundedGrowth,
        Self::RetainedCapacity,
        Self::OverflowChain,
        Self::PresizeMiss,
        Self::EvacuationStalled,
        Self::NilMapWrite,
        Self::ConcurrentWrite,
        Self::IterateWhileMutating,
    ];

    /// The name on the wire: the `kind` label of the misuse metrics.
    pub const fn as_str(self) -> &'static str {
        misuse_kind(self).as_str()
    }
}

wire_enum!(ReportedMisuseKind);

const fn misuse_kind(kind: ReportedMisuseKind) -> MisuseKind {
    match kind {
        ReportedMisuseKind::UnboundedGrowth => MisuseKind::UnboundedGrowth,
        ReportedMisuseKind::RetainedCapacity => MisuseKind::RetainedCapacity,
        ReportedMisuseKind::OverflowChain => MisuseKind::OverflowChain,
        ReportedMisuseKind::PresizeMiss => MisuseKind::PresizeMiss,
        ReportedMisuseKind::EvacuationStalled => MisuseKind::EvacuationStalled,
        ReportedMisuseKind::NilMapWrite => MisuseKind::NilMapWrite,
        ReportedMisuseKind::ConcurrentWrite => MisuseKind::ConcurrentWrite,
        ReportedMisuseKind::IterateWhileMutating => MisuseKind::IterateWhileMutating,
    }
}

impl From<ReportedMisuseKind> for MisuseKind {
    fn from(kind: ReportedMisuseKind) -> Self {
        misuse_kind(kind)
    }
}

impl From<MisuseKind> for ReportedMisuseKind {
    fn from(kind: MisuseKind) -> Self {
        match kind {
            MisuseKind::UnboundedGrowth => ReportedMisuseKind::UnboundedGrowth,
            MisuseKind::RetainedCapacity => ReportedMisuseKind::RetainedCapacity,
            MisuseKind::OverflowChain => ReportedMisuseKind::OverflowChain,
            MisuseKind::PresizeMiss => ReportedMisuseKind::PresizeMiss,
            MisuseKind::EvacuationStalled => ReportedMisuseKind::EvacuationStalled,
            MisuseKind::NilMapWrite => ReportedMisuseKind::NilMapWrite,
            MisuseKind::ConcurrentWrite => ReportedMisuseKind::ConcurrentWrite,
            MisuseKind::IterateWhileMutating => ReportedMisuseKind::IterateWhileMutating,
        }
    }
}

/// What an event is: a finished growth or a misuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[cfg_attr(all(test, feature = "sidecar"), derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// A finished growth.
    Growth,
    /// A misuse; the event's `misuse_kind` says which.
    Misuse,
}

impl EventKind {
    /// Every kind, in the protocol's order.
    pub const ALL: [Self; 2] = [Self::Growth, Self::Misuse];

    /// The name on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Growth => "growth",
            Self::Misuse => "misuse",
        }
    }
}

wire_enum!(EventKind);

/// What the sidecar did with a report it answered 200.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[cfg_attr(all(test, feature = "sidecar"), derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ReportStatus {
    /// Applied.
    Accepted,
    /// A retry of a report already applied: nothing changed.
    Duplicate,
    /// A late report from a process that has since restarted (an earlier
    /// `started_at`): nothing changed.
    Stale,
}

impl ReportStatus {
    /// Every status, in the protocol's order.
    pub const ALL: [Self; 3] = [Self::Accepted, Self::Duplicate, Self::Stale];

    /// The name on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Duplicate => "duplicate",
            Self::Stale => "stale",
        }
    }
}

wire_enum!(ReportStatus);

/// One report: a source's maps and the events since its last report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(all(test, feature = "sidecar"), derive(schemars::JsonSchema))]
pub struct Report {
    /// Who is reporting.
    pub source: SourceInfo,
    /// Increases by one per report from one process, at most
    /// [`MAX_SEQ`]. A report whose `seq` is not above the last applied one
    /// (same process) is a `duplicate`; one more than [`MAX_SEQ_STEP`]
    /// above it is a 400 `seq_jump`. Without `started_at`, a lower `seq`,
    /// or a `seq` of 1 again with other content, means the process
    /// restarted.
    #[serde(deserialize_with = "integer::deserialize")]
    #[cfg_attr(all(test, feature = "sidecar"), schemars(with = "openapi::Seq"))]
    pub seq: u64,
    /// When the client sent the report (RFC 3339); informational.
    #[serde(default)]
    pub sent_at: Option<Timestamp>,
    /// How often the client reports, in seconds, at most
    /// [`MAX_INTERVAL_SECONDS`]. The source goes stale after the larger of
    /// `--source-ttl` and 3 intervals without a report.
    #[serde(default)]
    #[cfg_attr(
        all(test, feature = "sidecar"),
        schemars(with = "Option<openapi::IntervalSeconds>")
    )]
    pub interval_seconds: Option<f64>,
    /// Every map's current stats and cumulative counters. Replaces the
    /// source's previous set of maps: a map left out is dropped (its last
    /// values stay for the grace period). At most `--max-maps-per-source`
    /// (default 1000).
    #[serde(default)]
    #[cfg_attr(all(test, feature = "sidecar"), schemars(length(max = openapi::DEFAULT_MAX_MAPS_PER_SOURCE), extend("x-mapscope-rule" = openapi::UNIQUE_MAPS)))]
    pub maps: Vec<ReportedMap>,
    /// Events since the last acknowledged report. At most
    /// `--max-events-per-report` (default 1000).
    #[serde(default)]
    #[cfg_attr(all(test, feature = "sidecar"), schemars(length(max = openapi::DEFAULT_MAX_EVENTS_PER_REPORT)))]
    pub events: Vec<ReportedEvent>,
}

/// The reporting process. A source is the pair (`app`, `instance`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(all(test, feature = "sidecar"), derive(schemars::JsonSchema))]
pub struct SourceInfo {
    /// The application's name: the `source` label.
    #[cfg_attr(all(test, feature = "sidecar"), schemars(with = "openapi::App"))]
    pub app: String,
    /// This process (pod name, `host:pid`): the `source_instance` label.
    #[cfg_attr(all(test, feature = "sidecar"), schemars(with = "openapi::Instance"))]
    pub instance: String,
    /// The client's language, for people.
    #[serde(default)]
    pub language: Option<String>,
    /// The client SDK and its version, for people.
    #[serde(default)]
    pub sdk: Option<String>,
    /// When the process started (RFC 3339). A later value than the last
    /// report's means a restart: counters and event `seq` start over. An
    /// earlier one is a late report from the previous process (`stale`).
    #[serde(default)]
    pub started_at: Option<Timestamp>,
}

/// One map in a report, identified by its `name` and `labels`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(all(test, feature = "sidecar"), derive(schemars::JsonSchema))]
pub struct ReportedMap {
    /// The `map` label.
    #[cfg_attr(all(test, feature = "sidecar"), schemars(with = "openapi::MapName"))]
    pub name: String,
    /// The map's own labels; a key given twice is a 400 `duplicate_label`.
    #[serde(default, deserialize_with = "labels::deserialize")]
    #[cfg_attr(all(test, feature = "sidecar"), schemars(with = "openapi::Labels"))]
    pub labels: BTreeMap<String, String>,
    /// Current state.
    pub stats: ReportedStats,
    /// Cumulative counters since the process started (default all zero).
    #[serde(default)]
    pub counters: ReportedCounters,
}

/// A map's current state.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(all(test, feature = "sidecar"), derive(schemars::JsonSchema))]
pub struct ReportedStats {
    /// Live entries.
    #[serde(deserialize_with = "integer::deserialize")]
    pub entries: u64,
    /// High-water mark of entries (raised to `entries` if lower).
    #[serde(default, deserialize_with = "integer::deserialize")]
    pub peak_entries: u64,
    /// Buckets (2^B); during a growth, the new array.
    #[serde(deserialize_with = "integer::deserialize")]
    pub buckets: u64,
    /// Overflow buckets.
    #[serde(default, deserialize_with = "integer::deserialize")]
    pub overflow_buckets: u64,
    /// Heap bytes held.
    #[serde(default, deserialize_with = "integer::deserialize")]
    pub memory_bytes: u64,
    /// Longest overflow chain, if the client knows it.
    #[serde(default, deserialize_with = "integer::deserialize")]
    pub max_overflow_chain: u64,
    /// The evacuation in progress, or null.
    #[serde(default)]
    pub evacuation: Option<ReportedEvacuation>,
}

/// An evacuation (incremental growth) in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(all(test, feature = "sidecar"), derive(schemars::JsonSchema))]
#[cfg_attr(all(test, feature = "sidecar"), schemars(extend("x-mapscope-rule" = openapi::EVACUATED_AT_MOST_OLD)))]
pub struct ReportedEvacuation {
    /// The growth kind.
    pub kind: ReportedGrowthKind,
    /// Buckets of the old array.
    #[serde(deserialize_with = "integer::deserialize")]
    pub old_buckets: u64,
    /// Old buckets evacuated so far, at most `old_buckets`.
    #[serde(deserialize_with = "integer::deserialize")]
    pub evacuated_old_buckets: u64,
}

/// Counts by growth kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(all(test, feature = "sidecar"), derive(schemars::JsonSchema))]
pub struct KindCounts {
    /// Doublings.
    #[serde(default, deserialize_with = "integer::deserialize")]
    pub double: u64,
    /// Same-size growths.
    #[serde(default, deserialize_with = "integer::deserialize")]
    pub same_size: u64,
    /// Halvings.
    #[serde(default, deserialize_with = "integer::deserialize")]
    pub shrink: u64,
}

/// Wall seconds by growth kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(all(test, feature = "sidecar"), derive(schemars::JsonSchema))]
pub struct KindSeconds {
    /// Doublings.
    #[serde(default)]
    #[cfg_attr(all(test, feature = "sidecar"), schemars(with = "openapi::Seconds"))]
    pub double: f64,
    /// Same-size growths.
    #[serde(default)]
    #[cfg_attr(all(test, feature = "sidecar"), schemars(with = "openapi::Seconds"))]
    pub same_size: f64,
    /// Halvings.
    #[serde(default)]
    #[cfg_attr(all(test, feature = "sidecar"), schemars(with = "openapi::Seconds"))]
    pub shrink: f64,
}

/// Cumulative counters since the process started, all default 0.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(all(test, feature = "sidecar"), derive(schemars::JsonSchema))]
pub struct ReportedCounters {
    /// Growths started, by kind.
    #[serde(default)]
    pub growths: KindCounts,
    /// Wall seconds of finished growths, by kind.
    #[serde(default)]
    pub growth_seconds: KindSeconds,
    /// Old buckets evacuated.
    #[serde(default, deserialize_with = "integer::deserialize")]
    pub evacuated_buckets: u64,
    /// New keys.
    #[serde(default, deserialize_with = "integer::deserialize")]
    pub inserts: u64,
    /// Overwrites.
    #[serde(default, deserialize_with = "integer::deserialize")]
    pub updates: u64,
    /// Removals.
    #[serde(default, deserialize_with = "integer::deserialize")]
    pub removes: u64,
    /// Misuse events by kind. Only the client kinds are exported; the
    /// detector kinds are accepted and ignored.
    #[serde(default, deserialize_with = "integer::counts")]
    #[cfg_attr(
        all(test, feature = "sidecar"),
        schemars(with = "openapi::MisuseCounts")
    )]
    pub misuse: BTreeMap<ReportedMisuseKind, u64>,
}

/// An event: a finished growth or a misuse.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(all(test, feature = "sidecar"), derive(schemars::JsonSchema))]
#[cfg_attr(all(test, feature = "sidecar"), schemars(transform = openapi::misuse_needs_its_kind))]
pub struct ReportedEvent {
    /// Increases by one per event from one process, at most [`MAX_SEQ`];
    /// retries carry the same number, and events whose `seq` the sidecar
    /// has seen from this process are dropped. One more than
    /// [`MAX_SEQ_STEP`] above the last seen is a 400 `seq_jump`.
    #[serde(deserialize_with = "integer::deserialize")]
    #[cfg_attr(all(test, feature = "sidecar"), schemars(with = "openapi::Seq"))]
    pub seq: u64,
    /// What happened.
    pub kind: EventKind,
    /// The map's name (same rules as a reported map's `name`).
    #[cfg_attr(all(test, feature = "sidecar"), schemars(with = "openapi::MapName"))]
    pub map: String,
    /// The map's labels (same rules as a reported map's `labels`).
    #[serde(default, deserialize_with = "labels::deserialize")]
    #[cfg_attr(all(test, feature = "sidecar"), schemars(with = "openapi::Labels"))]
    pub labels: BTreeMap<String, String>,
    /// When it happened (RFC 3339); for a growth, when it finished.
    pub at: Timestamp,
    /// For a growth: wall seconds from start to finish.
    #[serde(default)]
    #[cfg_attr(
        all(test, feature = "sidecar"),
        schemars(with = "Option<openapi::Seconds>")
    )]
    pub duration_seconds: Option<f64>,
    /// For a growth: its kind (`double` when absent or null).
    #[serde(default)]
    pub growth_kind: Option<ReportedGrowthKind>,
    /// For a misuse: its kind (required then).
    #[serde(default)]
    pub misuse_kind: Option<ReportedMisuseKind>,
    /// The trace the event belongs to (32 hex digits).
    #[serde(default)]
    #[cfg_attr(
        all(test, feature = "sidecar"),
        schemars(with = "Option<openapi::TraceId>")
    )]
    pub trace_id: Option<String>,
    /// The span the event belongs to (16 hex digits).
    #[serde(default)]
    #[cfg_attr(
        all(test, feature = "sidecar"),
        schemars(with = "Option<openapi::SpanId>")
    )]
    pub span_id: Option<String>,
    /// Free-form details (stack, goroutine, code site). `code.function`,
    /// `code.filepath` and `code.lineno` (a decimal line number), all
    /// three present, become the event's structured code site.
    #[serde(default)]
    #[cfg_attr(all(test, feature = "sidecar"), schemars(with = "openapi::Attributes"))]
    pub attributes: BTreeMap<String, String>,
}

/// The body of a 200 answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(all(test, feature = "sidecar"), derive(schemars::JsonSchema))]
pub struct ReportAccepted {
    /// What the sidecar did with the report.
    pub status: ReportStatus,
    /// The `source` label the maps got (the app).
    pub source: String,
    /// Maps in the report.
    pub maps: usize,
    /// Events accepted (events already seen are not counted).
    pub events_accepted: usize,
    /// Whether the report was treated as a restart of the source.
    pub restarted: bool,
}

/// The body of every rejected request; `field` and `limit` are always
/// present, null when they do not apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(all(test, feature = "sidecar"), derive(schemars::JsonSchema))]
#[cfg_attr(all(test, feature = "sidecar"), schemars(transform = openapi::every_field_required))]
pub struct ErrorBody {
    /// What is wrong and what to do.
    pub error: String,
    /// The JSON path of the offending field (`maps[3].labels.tenant`), or
    /// the header (`Authorization`, `Content-Type`), when one is to blame.
    pub field: Option<String>,
    /// The limit that was exceeded, when one was.
    pub limit: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire<T: Serialize>(value: T) -> String {
        serde_json::to_value(value)
            .expect("serialise")
            .as_str()
            .expect("a string")
            .to_owned()
    }

    #[test]
    fn enum_names_are_the_serde_names_and_round_trip() {
        for kind in ReportedGrowthKind::ALL {
            assert_eq!(wire(kind), kind.as_str());
            assert_eq!(GrowthKind::from(kind).as_str(), kind.as_str());
            assert_eq!(ReportedGrowthKind::from(GrowthKind::from(kind)), kind);
        }
        assert_eq!(ReportedGrowthKind::ALL.len(), GrowthKind::ALL.len());
        for kind in ReportedMisuseKind::ALL {
            assert_eq!(wire(kind), kind.as_str());
            assert_eq!(ReportedMisuseKind::from(MisuseKind::from(kind)), kind);
        }
        assert_eq!(
            ReportedMisuseKind::ALL.map(MisuseKind::from),
            MisuseKind::ALL
        );
        for kind in EventKind::ALL {
            assert_eq!(wire(kind), kind.as_str());
        }
        for status in ReportStatus::ALL {
            assert_eq!(wire(status), status.as_str());
            let back: ReportStatus = serde_json::from_value(wire(status).into()).unwrap();
            assert_eq!(back, status);
        }
    }

    #[test]
    fn an_unknown_value_names_the_allowed_ones() {
        let error = serde_json::from_str::<ReportedGrowthKind>("\"triple\"").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("unknown value \"triple\": expected one of double, same_size, shrink"),
            "{error}"
        );
        // A wrong type is not an unknown value.
        let error = serde_json::from_str::<EventKind>("5").unwrap_err();
        assert!(!error.to_string().starts_with(UNKNOWN_VALUE), "{error}");
    }
}
