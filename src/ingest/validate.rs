//! Limits, and the checks of a parsed report that its types cannot
//! express: lengths, label names, limits, and rules across fields. Kinds,
//! timestamps and integer ranges were enforced while the JSON was read
//! (`protocol.rs`).

use std::collections::HashSet;
use std::time::Duration;

use axum::http::StatusCode;

use super::protocol::{
    ErrorBody, EventKind, Report, MAX_ATTRIBUTES, MAX_ATTRIBUTE_KEY_CHARS,
    MAX_ATTRIBUTE_VALUE_CHARS, MAX_INTERVAL_SECONDS, MAX_SECONDS, MAX_SEQ, MAX_SOURCE_CHARS,
};
use crate::registry::{validate, RegisterError, MAX_LABELS, MAX_VALUE_CHARS};

/// Limits of the ingest endpoint. Every one answers with a JSON error that
/// names the field and the limit.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest request body (413 past it). Default 1 MiB.
    pub max_body_bytes: usize,
    /// Most sources (app + instance) the sidecar tracks (429 past it). Default 100.
    pub max_sources: usize,
    /// Most maps in one report (400 past it), so most maps of one source:
    /// its series budget (each reported map is 36 series). Default 100:
    /// `--max-sources` × 100 is `--max-maps`' default 10,000, so the
    /// default worst case folds nothing and stays in the measured budget
    /// (docs/benchmarks.md).
    pub max_maps_per_source: usize,
    /// Most label bytes in one report, so of one source: the map names,
    /// each label as written (`,name="value"`), and the app and instance
    /// once per map (what every series of a map repeats). 400 past it.
    /// Default 8 KiB: 100 maps of 80 bytes each, 36 × 8 KiB ≈ 290 KiB of
    /// exposition per source on top of the 345 KB its 100 maps cost
    /// anyway (docs/benchmarks.md).
    pub max_label_bytes_per_source: usize,
    /// Most events in one report (400 past it). Default 1,000.
    pub max_events_per_report: usize,
    /// A source that has not reported for this long (or 3 of its declared
    /// intervals, if longer) is stale. Default 30 s. How long a stale
    /// source's series then stay is the registry's grace period
    /// (`RegistryBuilder::grace_period`), as for a dropped map.
    pub source_ttl: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1024 * 1024,
            max_sources: 100,
            max_maps_per_source: 100,
            max_label_bytes_per_source: 8 * 1024,
            max_events_per_report: 1000,
            source_ttl: Duration::from_secs(30),
        }
    }
}

/// A rejected request: status, reason (the `reason` label of
/// `mapscope_ingest_rejected_total`) and body.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// HTTP status.
    pub status: StatusCode,
    /// Short machine-readable reason.
    pub reason: &'static str,
    /// The JSON body.
    pub body: ErrorBody,
}

impl Rejection {
    pub(crate) fn new(
        status: StatusCode,
        reason: &'static str,
        error: impl Into<String>,
        field: Option<String>,
        limit: Option<u64>,
    ) -> Self {
        Rejection {
            status,
            reason,
            body: ErrorBody {
                error: error.into(),
                field,
                limit,
            },
        }
    }

    fn bad(reason: &'static str, field: String, error: String) -> Self {
        Rejection::new(StatusCode::BAD_REQUEST, reason, error, Some(field), None)
    }

    fn over(reason: &'static str, field: &str, limit: usize, error: String) -> Self {
        Rejection::new(
            StatusCode::BAD_REQUEST,
            reason,
            error,
            Some(field.to_owned()),
            Some(limit as u64),
        )
    }
}

fn check_text(field: &str, value: &str, max: usize) -> Result<(), Rejection> {
    if value.is_empty() || value.chars().nth(max).is_some() || value.chars().any(char::is_control) {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "invalid_value",
            format!("{field} must be 1 to {max} characters without control characters"),
            Some(field.to_owned()),
            Some(max as u64),
        ));
    }
    Ok(())
}

fn check_seconds(field: String, value: f64) -> Result<(), Rejection> {
    if !value.is_finite() || !(0.0..=MAX_SECONDS).contains(&value) {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "invalid_number",
            format!(
                "{field} must be a finite number of seconds from 0 to {MAX_SECONDS}, got {value}"
            ),
            Some(field),
            (value > MAX_SECONDS).then_some(MAX_SECONDS as u64),
        ));
    }
    Ok(())
}

fn label_error(field: String, error: RegisterError) -> Rejection {
    let limit = match error {
        RegisterError::TooManyLabels { .. } => Some(MAX_LABELS as u64),
        RegisterError::InvalidLabelValue { .. } | RegisterError::InvalidMapName { .. } => {
            Some(MAX_VALUE_CHARS as u64)
        }
        _ => None,
    };
    let reason = match error {
        RegisterError::TooManyLabels { .. } => "too_many_labels",
        RegisterError::ReservedLabel { .. } => "reserved_label",
        RegisterError::InvalidMapName { .. } => "invalid_map_name",
        _ => "invalid_label",
    };
    Rejection::new(
        StatusCode::BAD_REQUEST,
        reason,
        format!("{field}: {error}"),
        Some(field),
        limit,
    )
}

/// What one label adds to a series besides its name and value: `,`, `=`
/// and the two quotes of `,name="value"`.
const LABEL_SYNTAX_BYTES: usize = 4;

/// The label bytes a report costs: per map, its name, each label as the
/// text format writes it (`,name="value"`), and the source's app and
/// instance (the `source` and `source_instance` labels). Every series of
/// the map repeats them, so the exposition grows by about 36 times this.
pub(crate) fn label_bytes(report: &Report) -> usize {
    let source = report.source.app.len() + report.source.instance.len();
    report
        .maps
        .iter()
        .map(|map| {
            let labels: usize = map
                .labels
                .iter()
                .map(|(k, v)| k.len() + v.len() + LABEL_SYNTAX_BYTES)
                .sum();
            source + map.name.len() + labels
        })
        .sum()
}

fn check_seq(field: String, seq: u64) -> Result<(), Rejection> {
    if seq > MAX_SEQ {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "invalid_value",
            format!("{field} is {seq}; the largest is {MAX_SEQ} (2^53 - 1): start at 1 and add one per report or event"),
            Some(field),
            Some(MAX_SEQ),
        ));
    }
    Ok(())
}

/// Validates a map's name and labels (the registry's one validation, as
/// for `register`); returns the labels sorted. `at` is the JSON path of the
/// object, `name_field` the key of its name in it.
fn check_map_id(
    at: &str,
    name_field: &str,
    name: &str,
    labels: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<(String, String)>, Rejection> {
    let pairs: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    validate(name, &pairs).map_err(|e| {
        let field = match &e {
            RegisterError::InvalidLabelName { name }
            | RegisterError::ReservedLabel { name }
            | RegisterError::InvalidLabelValue { name }
            | RegisterError::DuplicateLabel { name } => format!("{at}.labels.{name}"),
            RegisterError::TooManyLabels { .. } => format!("{at}.labels"),
            _ => format!("{at}.{name_field}"),
        };
        label_error(field, e)
    })
}

/// Checks a parsed report against the limits and the rules its types
/// cannot express. Nothing is changed by a report that fails here.
pub fn check(report: &Report, limits: &Limits) -> Result<(), Rejection> {
    check_text("source.app", &report.source.app, MAX_SOURCE_CHARS)?;
    if report.source.app.contains('/') {
        // Logs, event details and the landing page name a source
        // `app/instance`; a `/` in the app would make that ambiguous. (The
        // labels are separate, `source` and `source_instance`, and cannot
        // collide.)
        return Err(Rejection::bad(
            "invalid_value",
            "source.app".into(),
            "source.app must not contain '/' (mapscope names a source app/instance in logs and events)"
                .into(),
        ));
    }
    check_text("source.instance", &report.source.instance, MAX_SOURCE_CHARS)?;
    check_seq("seq".into(), report.seq)?;
    if let Some(interval) = report.interval_seconds {
        check_seconds("interval_seconds".into(), interval)?;
        if interval > MAX_INTERVAL_SECONDS {
            return Err(Rejection::new(
                StatusCode::BAD_REQUEST,
                "invalid_number",
                format!(
                    "interval_seconds is {interval}; the largest is {MAX_INTERVAL_SECONDS}: send it in seconds, not milliseconds"
                ),
                Some("interval_seconds".into()),
                Some(MAX_INTERVAL_SECONDS as u64),
            ));
        }
    }
    if report.maps.len() > limits.max_maps_per_source {
        return Err(Rejection::over(
            "too_many_maps",
            "maps",
            limits.max_maps_per_source,
            format!(
                "{} maps in one report; the limit is {} per source (--max-maps-per-source)",
                report.maps.len(),
                limits.max_maps_per_source
            ),
        ));
    }
    if report.events.len() > limits.max_events_per_report {
        return Err(Rejection::over(
            "too_many_events",
            "events",
            limits.max_events_per_report,
            format!(
                "{} events in one report; the limit is {} (--max-events-per-report): send the rest next time",
                report.events.len(),
                limits.max_events_per_report
            ),
        ));
    }
    let mut seen = HashSet::new();
    for (i, map) in report.maps.iter().enumerate() {
        let at = format!("maps[{i}]");
        let sorted = check_map_id(&at, "name", &map.name, &map.labels)?;
        if !seen.insert((map.name.as_str(), sorted)) {
            return Err(Rejection::bad(
                "duplicate_map",
                format!("{at}.name"),
                format!(
                    "{at}: map {:?} with these labels appears twice in one report; send each map once",
                    map.name
                ),
            ));
        }
        if let Some(evacuation) = &map.stats.evacuation {
            if evacuation.evacuated_old_buckets > evacuation.old_buckets {
                return Err(Rejection::bad(
                    "invalid_value",
                    format!("{at}.stats.evacuation.evacuated_old_buckets"),
                    format!("{at}.stats.evacuation.evacuated_old_buckets exceeds old_buckets"),
                ));
            }
        }
        let seconds = &map.counters.growth_seconds;
        for (kind, value) in [
            ("double", seconds.double),
            ("same_size", seconds.same_size),
            ("shrink", seconds.shrink),
        ] {
            check_seconds(format!("{at}.counters.growth_seconds.{kind}"), value)?;
        }
    }
    // After each map's own checks: a label too long is named as such.
    let bytes = label_bytes(report);
    if bytes > limits.max_label_bytes_per_source {
        return Err(Rejection::over(
            "too_many_label_bytes",
            "maps",
            limits.max_label_bytes_per_source,
            format!(
                "the maps of this report carry {bytes} label bytes (names, labels, app and instance, which every series of a map repeats); the limit is {} per source (--max-label-bytes-per-source): use fewer maps or shorter labels",
                limits.max_label_bytes_per_source
            ),
        ));
    }
    for (i, event) in report.events.iter().enumerate() {
        let at = format!("events[{i}]");
        check_seq(format!("{at}.seq"), event.seq)?;
        check_map_id(&at, "map", &event.map, &event.labels)?;
        if let Some(duration) = event.duration_seconds {
            check_seconds(format!("{at}.duration_seconds"), duration)?;
        }
        if event.kind == EventKind::Misuse && event.misuse_kind.is_none() {
            return Err(Rejection::bad(
                "invalid_value",
                format!("{at}.misuse_kind"),
                format!(
                    "{at}.misuse_kind is required for a misuse event: one of {}",
                    super::protocol::ReportedMisuseKind::ALL
                        .map(|k| k.as_str())
                        .join(", ")
                ),
            ));
        }
        let hex = |value: &Option<String>, len: usize, name: &str| -> Result<(), Rejection> {
            match value {
                Some(v) if v.len() != len || !v.bytes().all(|c| c.is_ascii_hexdigit()) => {
                    Err(Rejection::bad(
                        "invalid_value",
                        format!("{at}.{name}"),
                        format!("{at}.{name} must be {len} hex digits"),
                    ))
                }
                _ => Ok(()),
            }
        };
        hex(&event.trace_id, 32, "trace_id")?;
        hex(&event.span_id, 16, "span_id")?;
        if event.attributes.len() > MAX_ATTRIBUTES {
            return Err(Rejection::over(
                "invalid_value",
                &format!("{at}.attributes"),
                MAX_ATTRIBUTES,
                format!(
                    "{at}.attributes has {} entries; the limit is {MAX_ATTRIBUTES}",
                    event.attributes.len()
                ),
            ));
        }
        for (key, value) in &event.attributes {
            if key.chars().nth(MAX_ATTRIBUTE_KEY_CHARS).is_some()
                || value.chars().nth(MAX_ATTRIBUTE_VALUE_CHARS).is_some()
            {
                return Err(Rejection::over(
                    "invalid_value",
                    &format!("{at}.attributes"),
                    MAX_ATTRIBUTE_VALUE_CHARS,
                    format!("{at}.attributes: keys up to {MAX_ATTRIBUTE_KEY_CHARS} characters, values up to {MAX_ATTRIBUTE_VALUE_CHARS}"),
                ));
            }
        }
    }
    Ok(())
}
