//! `GET /api/v1/maps`: the JSON snapshot.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::detect::MisuseKind;
use crate::map::{map_stats, Growth, GrowthKind, MapStats, PerKind};
use crate::registry::{CodeSite, Event, MapSnapshot, RegistrySnapshot};

/// The body of `GET /api/v1/maps`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiSnapshot {
    /// Every map.
    pub maps: Vec<ApiMap>,
    /// Events dropped because the queue was full.
    pub events_dropped: u64,
    /// Registrations folded into `_overflow`.
    pub overflow_folds: u64,
    /// The most recent events, oldest first.
    pub recent_events: Vec<ApiEvent>,
}

/// One map.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiMap {
    /// The `map` label.
    pub name: String,
    /// The map's own labels.
    pub labels: BTreeMap<String, String>,
    /// The reporting application, for maps clients report.
    pub source: Option<String>,
    /// The reporting process (the `source_instance` label), for maps
    /// clients report.
    #[serde(default)]
    pub source_instance: Option<String>,
    /// In its grace period after being dropped (or its source stale).
    pub dropped: bool,
    /// Known only from its misuse (a Go crash of a map no report
    /// describes): its stats are not known and read 0.
    #[serde(default)]
    pub misuse_only: bool,
    /// The map's stats, flattened into this object: `entries`,
    /// `buckets`, `growth` (the evacuation in progress, or null), `growths`
    /// and `growth_seconds` by kind, `inserts`, ... as [`MapStats`]
    /// declares them (`evacuated_buckets_total` is `evacuated_buckets`).
    /// Counters are JSON integers. A misuse-only map's read 0.
    #[serde(flatten)]
    pub stats: MapStats,
    /// Misuse and health events so far, by kind (non-zero only).
    pub misuse: BTreeMap<String, u64>,
    /// Active detector conditions.
    pub conditions: Vec<ApiCondition>,
}

/// An active condition.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiCondition {
    /// The detector.
    pub kind: String,
    /// Unix seconds when it fired.
    pub since: f64,
    /// The detector's number.
    pub value: f64,
    /// What was seen and what to do.
    pub details: String,
}

/// A recent event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApiEvent {
    /// Registry-wide sequence number.
    pub seq: u64,
    /// growth_started, growth_finished or misuse.
    pub event: String,
    /// The map.
    pub map: String,
    /// The source, for reported maps.
    pub source: Option<String>,
    /// The source's instance, for reported maps.
    #[serde(default)]
    pub source_instance: Option<String>,
    /// Growth kind or misuse kind.
    pub kind: String,
    /// Unix seconds.
    pub at: f64,
    /// Growth duration in seconds (finished growths).
    pub duration_seconds: Option<f64>,
    /// Details (misuse).
    pub details: Option<String>,
    /// Where in the program it happened (a Go crash, or a client event with
    /// `code.*` attributes).
    #[serde(default)]
    pub site: Option<ApiSite>,
    /// The process id of a crashed process (misuse read from a crash file).
    #[serde(default)]
    pub pid: Option<u32>,
}

/// A code site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiSite {
    /// The function (`main.(*cart).add`).
    pub function: String,
    /// The source file.
    pub file: String,
    /// The line in `file`.
    pub line: u32,
}

impl From<&CodeSite> for ApiSite {
    fn from(site: &CodeSite) -> Self {
        ApiSite {
            function: site.function.clone(),
            file: site.file.clone(),
            line: site.line,
        }
    }
}

fn unix(at: SystemTime) -> f64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl From<&MapSnapshot> for ApiMap {
    fn from(map: &MapSnapshot) -> Self {
        ApiMap {
            name: map.id.name.to_string(),
            labels: map.id.labels.iter().cloned().collect(),
            source: map.id.source.as_ref().map(|s| s.to_string()),
            source_instance: map.id.instance.as_ref().map(|s| s.to_string()),
            dropped: map.dropped,
            misuse_only: map.misuse_only,
            stats: map.stats,
            misuse: MisuseKind::ALL
                .into_iter()
                .filter(|k| map.misuse_count(*k) > 0)
                .map(|k| (k.as_str().to_owned(), map.misuse_count(k)))
                .collect(),
            conditions: map
                .conditions
                .iter()
                .map(|c| ApiCondition {
                    kind: c.kind.as_str().to_owned(),
                    since: unix(c.since),
                    value: c.value,
                    details: c.details.clone(),
                })
                .collect(),
        }
    }
}

impl ApiSnapshot {
    /// The JSON form of a registry snapshot.
    pub fn from_snapshot(snapshot: &RegistrySnapshot) -> Self {
        ApiSnapshot {
            maps: snapshot.maps.iter().map(ApiMap::from).collect(),
            events_dropped: snapshot.events_dropped,
            overflow_folds: snapshot.overflow_folds,
            recent_events: snapshot
                .recent_events
                .iter()
                .map(|record| {
                    let map = record.event.map();
                    let (mut site, mut pid) = (None, None);
                    let (event, kind, at, duration, details) = match &record.event {
                        Event::GrowthStarted(e) => {
                            ("growth_started", e.kind.as_str(), e.at, None, None)
                        }
                        Event::GrowthFinished(e) => (
                            "growth_finished",
                            e.kind.as_str(),
                            e.started_at + e.duration,
                            e.measured.then_some(e.duration.as_secs_f64()),
                            None,
                        ),
                        Event::Misuse(e) => {
                            site = e.site.as_ref().map(ApiSite::from);
                            pid = e.pid;
                            (
                                "misuse",
                                e.kind.as_str(),
                                e.at,
                                None,
                                Some(e.details.clone()),
                            )
                        }
                    };
                    ApiEvent {
                        seq: record.seq,
                        event: event.to_owned(),
                        map: map.name.to_string(),
                        source: map.source.as_ref().map(|s| s.to_string()),
                        source_instance: map.instance.as_ref().map(|s| s.to_string()),
                        kind: kind.to_owned(),
                        at: unix(at),
                        duration_seconds: duration,
                        details,
                        site,
                        pid,
                    }
                })
                .collect(),
        }
    }
}

/// The JSON of [`MapStats`] in `GET /api/v1/maps`, from the declaration
/// (`map_stats!`): every stat under its name (or its `json` key), each
/// with its own type, so counters stay integers.
macro_rules! api_json {
    (
        gauges { $( $(#[cfg($gcfg:meta)])? $(#[doc = $gdoc:literal])* $g:ident: $gty:ty, fold $gfold:ident
            $(, json $gjson:literal)? $(, wire $gwire:ident)? $(, metric $gmetric:literal $ghelp:literal)?; )* }
        derived { $( $(#[cfg($dcfg:meta)])? $(#[doc = $ddoc:literal])* $d:ident: $dty:ty = $dfn:path
            $(, json $djson:literal)? $(, metric $dmetric:literal $dhelp:literal)?; )* }
        counters { $( $(#[cfg($ccfg:meta)])? $(#[doc = $cdoc:literal])* $c:ident: $cty:ty
            $(, json $cjson:literal)? $(, wire $cwire:ident)? $(, metric $cmetric:literal $chelp:literal)?; )* }
    ) => {
        #[derive(Serialize)]
        struct StatsOut<'a> {
            $( $(#[cfg($gcfg)])? $(#[serde(rename = $gjson)])? $g: &'a $gty, )*
            $( $(#[cfg($dcfg)])? $(#[serde(rename = $djson)])? $d: &'a $dty, )*
            $( $(#[cfg($ccfg)])? $(#[serde(rename = $cjson)])? $c: &'a $cty, )*
        }

        /// A stat the JSON lacks reads as its default (0, none).
        #[derive(Default, Deserialize)]
        #[serde(default)]
        struct StatsIn {
            $( $(#[cfg($gcfg)])? $(#[serde(rename = $gjson)])? $g: $gty, )*
            $( $(#[cfg($dcfg)])? $(#[serde(rename = $djson)])? $d: $dty, )*
            $( $(#[cfg($ccfg)])? $(#[serde(rename = $cjson)])? $c: $cty, )*
        }

        /// The stats' JSON in [`ApiMap`].
        impl Serialize for MapStats {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                StatsOut {
                    $( $(#[cfg($gcfg)])? $g: &self.$g, )*
                    $( $(#[cfg($dcfg)])? $d: &self.$d, )*
                    $( $(#[cfg($ccfg)])? $c: &self.$c, )*
                }
                .serialize(serializer)
            }
        }

        /// The stats' JSON in [`ApiMap`].
        impl<'de> Deserialize<'de> for MapStats {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let stats = StatsIn::deserialize(deserializer)?;
                Ok(MapStats {
                    $( $(#[cfg($gcfg)])? $g: stats.$g, )*
                    $( $(#[cfg($dcfg)])? $d: stats.$d, )*
                    $( $(#[cfg($ccfg)])? $c: stats.$c, )*
                })
            }
        }
    };
}

map_stats!(api_json);

/// `{"double": .., "same_size": .., "shrink": ..}`.
impl<T: Serialize> Serialize for PerKind<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(GrowthKind::ALL.map(|kind| (kind.as_str(), &self[kind])))
    }
}

/// `{"double": .., "same_size": .., "shrink": ..}`; a missing kind reads
/// as the default, an unknown one is ignored.
impl<'de, T: Deserialize<'de> + Default> Deserialize<'de> for PerKind<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut by_name = BTreeMap::<String, T>::deserialize(deserializer)?;
        Ok(PerKind::from_fn(|kind| {
            by_name.remove(kind.as_str()).unwrap_or_default()
        }))
    }
}

/// A growth kind by its label value (`double`, `same_size`, `shrink`).
mod growth_kind_json {
    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::map::GrowthKind;

    pub(super) fn serialize<S: Serializer>(kind: &GrowthKind, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(kind.as_str())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<GrowthKind, D::Error> {
        let name = String::deserialize(d)?;
        GrowthKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .ok_or_else(|| D::Error::unknown_variant(&name, &["double", "same_size", "shrink"]))
    }
}

#[derive(Serialize, Deserialize)]
#[serde(remote = "Growth")]
struct GrowthJson {
    #[serde(with = "growth_kind_json")]
    kind: GrowthKind,
    old_buckets: usize,
    evacuated_old_buckets: usize,
    #[serde(default)]
    entries_at_start: usize,
    #[serde(default)]
    helping_writes: u64,
}

/// An evacuation in progress in [`ApiMap`]: `kind`, `old_buckets`,
/// `evacuated_old_buckets`, `entries_at_start`, `helping_writes`.
impl Serialize for Growth {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        GrowthJson::serialize(self, serializer)
    }
}

/// An evacuation in progress in [`ApiMap`].
impl<'de> Deserialize<'de> for Growth {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        GrowthJson::deserialize(deserializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counters are JSON integers: past 2^53 an `f64` would round them.
    #[test]
    fn counters_keep_every_digit() {
        let mut stats = MapStats {
            inserts: u64::MAX - 1,
            evacuated_buckets_total: (1 << 53) + 1,
            ..MapStats::default()
        };
        stats.growths[GrowthKind::SameSize] = u64::MAX;
        let json = serde_json::to_string(&stats).unwrap();
        assert!(json.contains("\"inserts\":18446744073709551614"), "{json}");
        assert!(
            json.contains("\"evacuated_buckets\":9007199254740993"),
            "{json}"
        );
        assert!(
            json.contains(
                "\"growths\":{\"double\":0,\"same_size\":18446744073709551615,\"shrink\":0}"
            ),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<MapStats>(&json).unwrap(), stats);
    }
}
