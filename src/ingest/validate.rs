//! Limits, and the checks every report passes before it changes anything.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;

use super::protocol::{ErrorBody, Report};
use crate::detect::MisuseKind;
use crate::registry::{validate, RegisterError, MAX_LABELS, MAX_VALUE_BYTES};

/// Limits of the ingest endpoint. Every one answers with a JSON error that
/// names the field and the limit.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest request body (413 past it). Default 1 MiB.
    pub max_body_bytes: usize,
    /// Most sources (app + instance) the sidecar tracks (429 past it). Default 100.
    pub max_sources: usize,
    /// Most maps in one report (400 past it). Default 1,000.
    pub max_maps_per_source: usize,
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
            max_maps_per_source: 1000,
            max_events_per_report: 1000,
            source_ttl: Duration::from_secs(30),
        }
    }
}

/// Longest `source.app` or `source.instance`, in bytes.
pub const MAX_SOURCE_BYTES: usize = 128;

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

fn check_text(field: String, value: &str, max: usize) -> Result<(), Rejection> {
    if value.is_empty() || value.len() > max || value.chars().any(char::is_control) {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "invalid_value",
            format!("{field} must be 1 to {max} bytes without control characters"),
            Some(field),
            Some(max as u64),
        ));
    }
    Ok(())
}

/// Largest number of seconds a report may carry (about 31 years): far above
/// any real duration, far below what a `Duration` overflows at.
pub const MAX_SECONDS: f64 = 1e9;

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
            Some(MAX_VALUE_BYTES as u64)
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

/// Parses an RFC 3339 timestamp (`2026-11-22T10:00:00Z`,
/// `2026-11-22T10:00:00.123+01:00`).
///
/// ```
/// use mapscope::ingest::parse_rfc3339;
/// let t = parse_rfc3339("1970-01-01T00:01:00Z").unwrap();
/// assert_eq!(t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(), 60);
/// assert!(parse_rfc3339("yesterday").is_none());
/// ```
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let b = text.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(range)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0u32;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let digits = text.get(start..i)?;
        if digits.is_empty() {
            return None;
        }
        let padded: String = digits
            .chars()
            .chain(std::iter::repeat('0'))
            .take(9)
            .collect();
        nanos = padded.parse().ok()?;
    }
    let offset_seconds = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let value = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
            if *sign == b'+' {
                value
            } else {
                -value
            }
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    let seconds = u64::try_from(seconds).ok()?;
    UNIX_EPOCH.checked_add(Duration::new(seconds, nanos))
}

/// Checks a parsed report against the limits. Nothing is changed by a
/// report that fails here.
pub fn check(report: &Report, limits: &Limits) -> Result<(), Rejection> {
    check_text("source.app".into(), &report.source.app, MAX_SOURCE_BYTES)?;
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
    check_text(
        "source.instance".into(),
        &report.source.instance,
        MAX_SOURCE_BYTES,
    )?;
    if let Some(started) = &report.source.started_at {
        if parse_rfc3339(started).is_none() {
            return Err(Rejection::bad(
                "invalid_timestamp",
                "source.started_at".into(),
                format!("source.started_at must be an RFC 3339 timestamp, got {started:?}"),
            ));
        }
    }
    if let Some(interval) = report.interval_seconds {
        check_seconds("interval_seconds".into(), interval)?;
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
        let labels: Vec<(String, String)> = map
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let field = if labels.len() > MAX_LABELS {
            format!("{at}.labels")
        } else {
            format!("{at}.name")
        };
        let sorted = validate(&map.name, &labels).map_err(|e| {
            let field = match &e {
                RegisterError::InvalidLabelName { name }
                | RegisterError::ReservedLabel { name }
                | RegisterError::InvalidLabelValue { name }
                | RegisterError::DuplicateLabel { name } => format!("{at}.labels.{name}"),
                _ => field.clone(),
            };
            label_error(field, e)
        })?;
        if !seen.insert((map.name.clone(), sorted)) {
            return Err(Rejection::bad(
                "duplicate_map",
                format!("{at}.name"),
                format!(
                    "{at}: map {:?} with these labels appears twice in one report; send each map once",
                    map.name
                ),
            ));
        }
        let s = &map.stats;
        if let Some(evacuation) = &s.evacuation {
            if crate::GrowthKind::ALL
                .iter()
                .all(|k| k.as_str() != evacuation.kind)
            {
                return Err(Rejection::bad(
                    "invalid_value",
                    format!("{at}.stats.evacuation.kind"),
                    format!(
                        "{at}.stats.evacuation.kind must be double, same_size or shrink, got {:?}",
                        evacuation.kind
                    ),
                ));
            }
            if evacuation.evacuated_old_buckets > evacuation.old_buckets {
                return Err(Rejection::bad(
                    "invalid_value",
                    format!("{at}.stats.evacuation.evacuated_old_buckets"),
                    format!("{at}.stats.evacuation.evacuated_old_buckets exceeds old_buckets"),
                ));
            }
        }
        let c = &map.counters;
        for (kind, value) in [
            ("double", c.growth_seconds.double),
            ("same_size", c.growth_seconds.same_size),
            ("shrink", c.growth_seconds.shrink),
        ] {
            check_seconds(format!("{at}.counters.growth_seconds.{kind}"), value)?;
        }
        for kind in c.misuse.keys() {
            if kind.parse::<MisuseKind>().is_err() {
                return Err(Rejection::bad(
                    "invalid_value",
                    format!("{at}.counters.misuse.{kind}"),
                    format!(
                        "unknown misuse kind {kind:?}; expected one of {}",
                        MisuseKind::ALL.map(MisuseKind::as_str).join(", ")
                    ),
                ));
            }
        }
    }
    for (i, event) in report.events.iter().enumerate() {
        let at = format!("events[{i}]");
        if parse_rfc3339(&event.at).is_none() {
            return Err(Rejection::bad(
                "invalid_timestamp",
                format!("{at}.at"),
                format!("{at}.at must be an RFC 3339 timestamp, got {:?}", event.at),
            ));
        }
        let labels: Vec<(String, String)> = event
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        validate(&event.map, &labels).map_err(|e| label_error(format!("{at}.map"), e))?;
        match event.kind.as_str() {
            "growth" => {
                let duration = event.duration_seconds.unwrap_or(0.0);
                check_seconds(format!("{at}.duration_seconds"), duration)?;
                match event.growth_kind.as_deref() {
                    None | Some("double" | "same_size" | "shrink") => {}
                    Some(other) => {
                        return Err(Rejection::bad(
                            "invalid_value",
                            format!("{at}.growth_kind"),
                            format!(
                            "{at}.growth_kind must be double, same_size or shrink, got {other:?}"
                        ),
                        ))
                    }
                }
            }
            "misuse" => {
                let kind = event.misuse_kind.as_deref().unwrap_or_default();
                if kind.parse::<MisuseKind>().is_err() {
                    return Err(Rejection::bad(
                        "invalid_value",
                        format!("{at}.misuse_kind"),
                        format!(
                            "{at}.misuse_kind {kind:?} is not a misuse kind; expected one of {}",
                            MisuseKind::ALL.map(MisuseKind::as_str).join(", ")
                        ),
                    ));
                }
            }
            other => {
                return Err(Rejection::bad(
                    "invalid_value",
                    format!("{at}.kind"),
                    format!("{at}.kind must be growth or misuse, got {other:?}"),
                ))
            }
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
        for (key, value) in &event.attributes {
            if key.len() > MAX_VALUE_BYTES || value.len() > 4 * MAX_VALUE_BYTES {
                return Err(Rejection::over(
                    "invalid_value",
                    &format!("{at}.attributes"),
                    4 * MAX_VALUE_BYTES,
                    format!("{at}.attributes: keys up to {MAX_VALUE_BYTES} bytes, values up to {} bytes", 4 * MAX_VALUE_BYTES),
                ));
            }
        }
        if event.attributes.len() > 32 {
            return Err(Rejection::over(
                "invalid_value",
                &format!("{at}.attributes"),
                32,
                format!(
                    "{at}.attributes has {} entries; the limit is 32",
                    event.attributes.len()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339() {
        let at = |s| parse_rfc3339(s).map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_secs_f64());
        assert_eq!(at("2026-11-22T00:00:00Z"), Some(1_795_305_600.0));
        assert_eq!(at("2026-11-22T01:00:00+01:00"), Some(1_795_305_600.0));
        assert_eq!(at("2026-11-22T00:00:00.5Z"), Some(1_795_305_600.5));
        for bad in [
            "",
            "2026-11-22",
            "2026-13-01T00:00:00Z",
            "2026-11-22T00:00:00",
            "x026-11-22T00:00:00Z",
            "2026-11-22T00:00:00.Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
