//! What the ingest tests share: an in-process sidecar on a manual clock,
//! a blocking client, report builders, and the `mapscope sidecar` binary.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap, HeaderValue};
use mapscope::http::{router_with, HttpState};
use mapscope::ingest::protocol::{
    EventKind, KindCounts, KindSeconds, ReportedCounters, ReportedEvent, ReportedGrowthKind,
    ReportedMap, ReportedStats, SourceInfo, Timestamp,
};
use mapscope::ingest::{IngestState, Limits, Report, ReportAccepted, Sources};
use mapscope::registry::{ManualClock, RegistryBuilder};
use mapscope::Registry;
use serde_json::Value;

use crate::common::blocking::blocking_client as client;
use crate::common::exposition::{parse_exposition, Exposition, Sample};
use crate::common::process::{try_start_mapscope, MapscopeProcess};
use crate::common::router::Routes;
use crate::common::server::{serve_router, TestServer};

pub(crate) const TOKEN: &str = "s3cret-token";

/// The ingest router and the HTTP router over one registry, as the binary
/// wires them, called in process (`tower::ServiceExt::oneshot`); the
/// registry's clock is a manual one the test advances.
pub(crate) struct Sidecar {
    pub(crate) sources: Arc<Sources>,
    pub(crate) registry: Registry,
    pub(crate) clock: ManualClock,
    ingest_router: axum::Router,
    ingest: Routes,
    http: Routes,
    runtime: tokio::runtime::Runtime,
}

impl Sidecar {
    pub(crate) fn start(limits: Limits, token: Option<&str>) -> Sidecar {
        Sidecar::start_with(Registry::builder(), limits, token)
    }

    /// Like [`Sidecar::start`], over a registry built from `builder`.
    pub(crate) fn start_with(
        builder: RegistryBuilder,
        limits: Limits,
        token: Option<&str>,
    ) -> Sidecar {
        let clock = ManualClock::new();
        let registry = builder.clock(clock.clone()).build();
        let sources = Arc::new(Sources::new(&registry, limits));
        let ingest_router =
            mapscope::ingest::router(IngestState::new(sources.clone(), token.map(str::to_owned)));
        let http = Routes::new(router_with(HttpState::new(registry.clone())));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("build the test runtime");
        Sidecar {
            sources,
            registry,
            clock,
            ingest: Routes::new(ingest_router.clone()),
            ingest_router,
            http,
            runtime,
        }
    }

    /// Serves the ingest router on a loopback port, for a client that needs
    /// a socket (the `Reporter`).
    pub(crate) fn serve_ingest(&self) -> TestServer {
        serve_router(self.ingest_router.clone())
    }

    /// `POST /v1/report` with `body` as it is.
    pub(crate) fn post_raw(
        &self,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Answer {
        let mut request =
            axum::http::Request::post("/v1/report").header(header::CONTENT_LENGTH, body.len());
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(axum::body::Body::from(body))
            .expect("a valid request");
        let answer = self.runtime.block_on(self.ingest.send(request));
        Answer {
            status: answer.status.as_u16(),
            content_type: answer.header("content-type").unwrap_or_default().to_owned(),
            text: answer.text(),
        }
    }

    /// `POST /v1/report` with `body` as JSON.
    pub(crate) fn post(&self, token: Option<&str>, body: &impl serde::Serialize) -> Answer {
        let bytes = serde_json::to_vec(body).expect("serialise the report");
        self.post_raw(token, Some("application/json"), bytes)
    }

    /// The text of `GET /metrics`, which must answer 200.
    pub(crate) fn metrics_text(&self) -> String {
        let answer = self.runtime.block_on(self.http.get("/metrics"));
        assert_eq!(answer.status, 200, "GET /metrics");
        answer.text()
    }

    /// `GET /metrics`, parsed strictly.
    pub(crate) fn metrics(&self) -> Exposition {
        self.runtime.block_on(self.http.scrape())
    }
}

/// Like [`scrape`], but `None` when the server does not answer.
pub(crate) fn try_scrape(base: &str) -> Option<Exposition> {
    let url = format!("{}/metrics", base.trim_end_matches('/'));
    let response = client().get(&url).send().ok()?;
    if response.status() != 200 {
        return None;
    }
    parse_exposition(&response.text().ok()?).ok()
}

/// One answer of the ingest endpoint.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) content_type: String,
    pub(crate) text: String,
}

impl Answer {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("answer {} is not JSON ({e}): {:?}", self.status, self.text))
    }

    pub(crate) fn accepted(&self) -> ReportAccepted {
        assert_eq!(self.status, 200, "expected 200: {}", self.text);
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not a ReportAccepted ({e}): {}", self.text))
    }
}

/// `POST url` with `body` as JSON, over a socket (to the binary).
pub(crate) fn post(url: &str, token: Option<&str>, body: &impl serde::Serialize) -> Answer {
    let mut request = client()
        .post(url)
        .header(header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(body).expect("serialise the report"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let text = response.text().expect("read the answer");
    Answer {
        status,
        content_type,
        text,
    }
}

/// A report of `maps` (and no events) from `app`/`instance`.
/// An RFC 3339 timestamp written in a test.
pub(crate) fn at(text: &str) -> Timestamp {
    text.parse().expect("an RFC 3339 timestamp")
}

pub(crate) fn report(app: &str, instance: &str, seq: u64, maps: Vec<ReportedMap>) -> Report {
    Report {
        source: SourceInfo {
            app: app.into(),
            instance: instance.into(),
            language: Some("test".into()),
            sdk: None,
            started_at: Some(at("2026-11-22T10:00:00Z")),
        },
        seq,
        sent_at: None,
        interval_seconds: None,
        maps,
        events: vec![],
    }
}

/// A map with `entries` entries, `inserts` inserts and some other numbers
/// derived from them, so every series has a distinct expected value.
pub(crate) fn map(name: &str, labels: &[(&str, &str)], entries: u64, inserts: u64) -> ReportedMap {
    ReportedMap {
        name: name.into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        stats: ReportedStats {
            entries,
            peak_entries: entries + 1,
            buckets: 8,
            overflow_buckets: 1,
            memory_bytes: 4096,
            max_overflow_chain: 1,
            evacuation: None,
        },
        counters: ReportedCounters {
            growths: KindCounts {
                double: 3,
                same_size: 1,
                shrink: 0,
            },
            growth_seconds: KindSeconds {
                double: 0.25,
                same_size: 0.5,
                shrink: 0.0,
            },
            evacuated_buckets: 12,
            inserts,
            updates: inserts / 2,
            removes: inserts - entries,
            misuse: BTreeMap::new(),
        },
    }
}

pub(crate) fn growth_event(seq: u64, map: &str, seconds: f64) -> ReportedEvent {
    ReportedEvent {
        seq,
        kind: EventKind::Growth,
        map: map.into(),
        labels: BTreeMap::new(),
        at: at("2026-11-22T10:00:01Z"),
        duration_seconds: Some(seconds),
        growth_kind: Some(ReportedGrowthKind::Double),
        misuse_kind: None,
        trace_id: None,
        span_id: None,
        attributes: BTreeMap::new(),
    }
}

/// The one sample of `name` with exactly these labels, if any.
pub(crate) fn find(exposition: &Exposition, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    exposition
        .series(name)
        .find(|s| {
            s.labels.len() == labels.len() && labels.iter().all(|(k, v)| s.label(k) == Some(*v))
        })
        .map(|s| s.value)
}

pub(crate) fn has_source(exposition: &Exposition, source: &str) -> bool {
    exposition
        .samples
        .iter()
        .any(|s| s.label("source") == Some(source))
}

/// Every sample of the given sources, keyed for comparison.
pub(crate) fn series_of(exposition: &Exposition, sources: &[&str]) -> BTreeMap<String, f64> {
    exposition
        .samples
        .iter()
        .filter(|s| s.label("source").is_some_and(|src| sources.contains(&src)))
        .map(|s: &Sample| (format!("{}{:?}", s.name, s.labels), s.value))
        .collect()
}

/// The per-map samples (`mapscope_map_*`) of the given sources.
pub(crate) fn map_series_of(exposition: &Exposition, sources: &[&str]) -> BTreeMap<String, f64> {
    series_of(exposition, sources)
        .into_iter()
        .filter(|(key, _)| key.starts_with("mapscope_map_"))
        .collect()
}
/// Starts `mapscope sidecar` on fixed loopback ports, retrying for a while
/// in case a port is still held (a restart on the same ports).
pub(crate) fn sidecar_on(
    http: u16,
    ingest: u16,
    extra: &[&str],
) -> Result<MapscopeProcess, String> {
    let (http, ingest) = (format!("127.0.0.1:{http}"), format!("127.0.0.1:{ingest}"));
    let mut args = vec!["sidecar", "--listen", &http, "--ingest-listen", &ingest];
    args.extend_from_slice(extra);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match try_start_mapscope(&args) {
            Ok(process) => return Ok(process),
            Err(error) if Instant::now() > deadline => return Err(error),
            Err(_) => thread::sleep(Duration::from_millis(200)),
        }
    }
}

pub(crate) fn json_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers
}
