//! Protocol v1 to the registry's rows and events: the one conversion. A
//! new protocol field lands in `protocol.rs`, `validate.rs` and here.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;

use super::protocol::{EventKind, Report, ReportedEvent, ReportedMap};
use super::validate::Rejection;
use crate::detect::MisuseKind;
use crate::map::{GrowthKind, MapStats};
use crate::registry::{
    CodeSite, Event, GrowthFinished, MapId, MisuseEvent, ReportedRow, SourceReport,
};

mod wire;

/// Converts a report that passed [`super::check`]: every map to a row, and
/// the events newer than `last_event_seq` (the ones not seen from this
/// incarnation) to registry events.
pub(crate) fn convert(
    report: &Report,
    restarted: bool,
    last_event_seq: Option<u64>,
) -> SourceReport {
    let app: Arc<str> = report.source.app.as_str().into();
    let instance: Arc<str> = report.source.instance.as_str().into();
    let maps = report.maps.iter().map(row_of).collect();
    let events = report
        .events
        .iter()
        .filter(|e| last_event_seq.is_none_or(|last| e.seq > last))
        .filter_map(|e| event_of(e, &app, &instance))
        .collect();
    SourceReport {
        app,
        instance,
        restarted,
        maps,
        events,
    }
}

/// Counters are cumulative within one process: a count lower than the
/// last one applied (`last`, per map of `converted`, from
/// `Registry::last_reported`) would read as a reset in Prometheus. A 400
/// naming the map and the counter; the source keeps its series.
pub(crate) fn check_counters(
    report: &Report,
    converted: &SourceReport,
    last: &[Option<(MapStats, [u64; MisuseKind::ALL.len()])>],
) -> Result<(), Rejection> {
    for (i, (row, last)) in converted.maps.iter().zip(last).enumerate() {
        let Some((stats, misuse)) = last else {
            continue;
        };
        let went_back = wire::counter_went_back(stats, &row.stats).or_else(|| {
            MisuseKind::CLIENT
                .into_iter()
                .find(|kind| row.misuse[kind.index()] < misuse[kind.index()])
                .map(|kind| format!("misuse.{kind}"))
        });
        if let Some(counter) = went_back {
            let name = report.maps.get(i).map_or("", |m| m.name.as_str());
            return Err(Rejection::new(
                StatusCode::BAD_REQUEST,
                "counter_went_backwards",
                format!(
                    "maps[{i}] ({name:?}): counters.{counter} is lower than in the last report applied from this process; counters are cumulative since the process started (a restarted process sends a new source.started_at)"
                ),
                Some(format!("maps[{i}].counters.{counter}")),
                None,
            ));
        }
    }
    Ok(())
}

fn sorted(labels: &std::collections::BTreeMap<String, String>) -> Arc<[(String, String)]> {
    // A BTreeMap iterates in key order: the labels come out sorted.
    labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn row_of(map: &ReportedMap) -> ReportedRow {
    let mut stats = wire::stats_of(&map.stats, &map.counters);
    // A client may sample its peak before its entries; ours never lags.
    stats.peak_entries = stats.peak_entries.max(stats.entries);
    let c = &map.counters;
    // Detector kinds in `misuse` are accepted and ignored: the registry
    // computes them from the stats itself.
    let mut misuse = [0; MisuseKind::ALL.len()];
    for (&kind, &count) in &c.misuse {
        let kind = MisuseKind::from(kind);
        if kind.is_error() {
            misuse[kind.index()] = count;
        }
    }
    ReportedRow {
        name: map.name.as_str().into(),
        labels: sorted(&map.labels),
        stats,
        misuse,
    }
}

/// The structured code site of a client event: OpenTelemetry's
/// `code.function`, `code.filepath` and `code.lineno` attributes, all three
/// present and the line a number.
fn reported_site(event: &ReportedEvent) -> Option<CodeSite> {
    let get = |key: &str| event.attributes.get(key);
    let line = get("code.lineno")?.trim().parse().ok()?;
    Some(CodeSite::new(
        get("code.function")?.as_str(),
        get("code.filepath")?.as_str(),
        line,
    ))
}

/// The registry event of a client event; `None` only for a misuse event
/// without its kind, which `check` rejects.
fn event_of(event: &ReportedEvent, app: &Arc<str>, instance: &Arc<str>) -> Option<Event> {
    let map = MapId::reported(
        event.map.as_str().into(),
        sorted(&event.labels),
        app.clone(),
        instance.clone(),
    );
    let at = event.at.system_time();
    let trace = event.trace_id.clone().zip(event.span_id.clone());
    if event.kind == EventKind::Growth {
        // Without `duration_seconds` the growth is an event, not a 0 s
        // observation of the duration histogram.
        let measured = event.duration_seconds.is_some();
        let duration =
            Duration::try_from_secs_f64(event.duration_seconds.unwrap_or(0.0)).unwrap_or_default();
        return Some(Event::GrowthFinished(GrowthFinished {
            map,
            // Absent or null: `double`, as documented.
            kind: event
                .growth_kind
                .map_or(GrowthKind::Double, GrowthKind::from),
            old_buckets: 0,
            new_buckets: 0,
            entries_at_start: 0,
            entries: 0,
            started_at: at.checked_sub(duration).unwrap_or(at),
            duration,
            measured,
            helping_writes: 0,
            evacuation_work: Duration::ZERO,
            completed_explicitly: false,
            evacuated_old_buckets: 0,
            trace,
        }));
    }
    let kind = MisuseKind::from(event.misuse_kind?);
    let mut details: Vec<String> = event
        .attributes
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    details.insert(0, format!("{kind} reported by {app}/{instance}"));
    Some(Event::Misuse(MisuseEvent {
        map,
        kind,
        details: details.join("; "),
        at,
        value: 0.0,
        trace,
        context: None,
        traced: false,
        site: reported_site(event),
        pid: None,
    }))
}
