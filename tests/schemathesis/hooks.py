"""Schemathesis hooks for the ingest endpoint (tests/protocol.rs runs them).

docs/openapi.yaml states every rule of a report that JSON Schema can say.
Two it cannot, and marks with `x-mapscope-rule`: each map (name and labels)
appears at most once per report, and an evacuation's evacuated_old_buckets
is at most its old_buckets. A client must follow them; so does this
generator, by mending a generated body the way a client would. Negative
cases are left alone: they must keep the violation they were made for.

The rules across reports of one process (docs/protocol.md, "Reports that
cannot freeze a source": seq steps, counters that never go down, a start
time not in the future) are no property of one body. A client follows them
by being one process; this generator, by sending each body from a process
of its own (an `instance` derived from the rest of the body, so a case
sent twice is a retry) that started now at the latest.
"""

import datetime
import hashlib
import json

import schemathesis


def _mend_source(body):
    source = body.get("source")
    if not isinstance(source, dict):
        return
    started = source.get("started_at")
    if isinstance(started, str):
        try:
            at = datetime.datetime.fromisoformat(started.upper().replace("Z", "+00:00"))
            future = at.tzinfo is None or at > datetime.datetime.now(datetime.timezone.utc)
        except ValueError:
            # A date-time Python cannot read (a leap second): any is fine.
            future = True
        if future:
            source["started_at"] = "2020-01-01T00:00:00Z"
    if isinstance(source.get("instance"), str):
        source["instance"] = "case"
        text = json.dumps(body, sort_keys=True, default=str)
        source["instance"] = hashlib.sha256(text.encode()).hexdigest()[:32]


def _identity(report_map):
    """A map's identity (name and labels), or None when its types are wrong."""
    if not isinstance(report_map, dict):
        return None
    name, labels = report_map.get("name"), report_map.get("labels", {})
    if not isinstance(name, str) or not isinstance(labels, dict):
        return None
    if not all(isinstance(v, str) for v in labels.values()):
        return None
    return name, tuple(sorted(labels.items()))


def _number(value):
    """A JSON number (integers may come as 1037.0): not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _mend_evacuation(report_map):
    stats = report_map.get("stats") if isinstance(report_map, dict) else None
    evacuation = stats.get("evacuation") if isinstance(stats, dict) else None
    if not isinstance(evacuation, dict):
        return
    old, done = evacuation.get("old_buckets"), evacuation.get("evacuated_old_buckets")
    if _number(old) and _number(done) and done > old:
        evacuation["evacuated_old_buckets"] = old


@schemathesis.hook
def map_case(context, case):
    """Every phase's cases (the coverage phase applies no body hooks)."""
    meta = getattr(case, "meta", None)
    if meta is not None and meta.generation.mode.is_negative:
        return case
    body = getattr(case, "body", None)
    maps = body.get("maps") if isinstance(body, dict) else None
    if not isinstance(maps, list):
        return case
    seen, kept = set(), []
    for report_map in maps:
        identity = _identity(report_map)
        if identity is not None and identity in seen:
            continue
        if identity is not None:
            seen.add(identity)
        _mend_evacuation(report_map)
        kept.append(report_map)
    body["maps"] = kept
    return case


@schemathesis.hook
def before_call(context, case, kwargs):
    """The source, mended as the request goes out: schemathesis derives
    cases from one another after the generation hooks ran (the coverage
    phase moves one field to its bounds), so only the final body tells
    which process sent it."""
    meta = getattr(case, "meta", None)
    if meta is not None and meta.generation.mode.is_negative:
        return
    body = getattr(case, "body", None)
    if isinstance(body, dict):
        _mend_source(body)
