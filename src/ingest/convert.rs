//! Protocol v1 to the registry's rows and events: the one conversion. A
//! new protocol field lands in `protocol.rs`, `validate.rs` and here.

use std::sync::Arc;
use std::time::Duration;

use super::protocol::{EventKind, Report, ReportedEvent, ReportedMap};
use crate::detect::MisuseKind;
use crate::map::GrowthKind;
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
