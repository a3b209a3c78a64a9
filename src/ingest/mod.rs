//! Sidecar ingest: `POST /v1/report`, protocol v1, for applications in any
//! language (Go first). Reports become rows of the one
//! [`Registry`](crate::Registry), so they get the same metrics, spans, alerts,
//! detectors, cardinality cap and grace period as in-process maps, with
//! `source` and `source_instance` labels.
//!
//! This module is the protocol and the source lifecycle, nothing more:
//! - [`protocol`]: the wire types, with kinds and statuses as enums and
//!   RFC 3339 timestamps parsed as the JSON is read;
//! - `validate.rs`: limits, and the checks types cannot express ([`check`]);
//! - `openapi.rs` (tests only): `docs/openapi.yaml`, generated from the
//!   wire types;
//! - `convert.rs`: protocol to rows and events, in one function;
//! - `sources.rs`: admission, restart, duplicate and stale classification,
//!   TTL ([`Sources`]);
//! - [`crash`] and `crash_dir.rs`: Go crash files ([`CrashDir`]): a process
//!   killed by a map misuse never reports again, so its crash output is the
//!   report.
//!
//! Guarantees: a rejected request changes nothing; one source's bad input
//! never touches another source's series; every limit answers with a JSON
//! error naming the field and the limit.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;

mod convert;
pub mod crash;
mod crash_dir;
#[cfg(test)]
mod openapi;
pub mod protocol;
mod sources;
mod validate;

pub use crash_dir::{CrashDir, CrashDirLimits, ScanSummary};
pub use protocol::{
    ErrorBody, Report, ReportAccepted, ReportStatus, MAX_SECONDS, MAX_SOURCE_CHARS,
    PROTOCOL_VERSION,
};
pub use sources::Sources;
pub use validate::{check, Limits, Rejection};

pub use crate::registry::IngestStats;

/// What the ingest routes need.
#[derive(Debug, Clone)]
pub struct IngestState {
    store: Arc<Sources>,
    token: Option<Arc<str>>,
}

impl IngestState {
    /// State over `sources`, requiring `Authorization: Bearer <token>` when
    /// a token is given (the binary reads it from `MAPSCOPE_INGEST_TOKEN`).
    pub fn new(sources: Arc<Sources>, token: Option<String>) -> Self {
        IngestState {
            store: sources,
            token: token.filter(|t| !t.is_empty()).map(Into::into),
        }
    }
}

/// The ingest router: `POST /v1/report`.
pub fn router(state: IngestState) -> Router {
    Router::new()
        .route("/v1/report", post(report))
        .with_state(state)
}

fn reject(rejection: Rejection) -> (StatusCode, String) {
    // UNWRAP: serialising a struct of strings and numbers does not fail.
    let body = serde_json::to_string(&rejection.body).expect("an ErrorBody serialises");
    (rejection.status, body)
}

/// Handles one report end to end, without HTTP: headers and body in,
/// status and JSON body out. Never panics, whatever the input (a property
/// test feeds it arbitrary JSON).
pub fn handle(
    store: &Sources,
    token: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> (StatusCode, String) {
    let result = handle_inner(store, token, headers, body);
    let (status, reason, body) = match result {
        Ok(accepted) => (
            StatusCode::OK,
            None,
            // UNWRAP: serialising a struct of strings and numbers does not fail.
            serde_json::to_string(&accepted).expect("a ReportAccepted serialises"),
        ),
        Err(rejection) => {
            let reason = rejection.reason;
            let (status, body) = reject(rejection);
            (status, Some(reason), body)
        }
    };
    store.count_request(status, reason);
    (status, body)
}

fn handle_inner(
    store: &Sources,
    token: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<ReportAccepted, Rejection> {
    if let Some(token) = token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token) {
            return Err(Rejection::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "missing or invalid bearer token: send Authorization: Bearer <MAPSCOPE_INGEST_TOKEN>",
                Some("Authorization".into()),
                None,
            ));
        }
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(Rejection::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content_type",
            format!("Content-Type must be application/json, got {content_type:?}"),
            Some("Content-Type".into()),
            None,
        ));
    }
    let limit = store.limits().max_body_bytes;
    if body.len() > limit {
        return Err(Rejection::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the body is {} bytes; the limit is {limit} (--max-body-bytes): send fewer maps or events per report", body.len()),
            None,
            Some(limit as u64),
        ));
    }
    if body.is_empty() {
        return Err(Rejection::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            "the body is empty: send a protocol v1 report (see docs/protocol.md)",
            None,
            None,
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let report: Report =
        serde_path_to_error::deserialize(&mut deserializer).map_err(parse_rejection)?;
    deserializer.end().map_err(|e| {
        Rejection::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("trailing data after the report: {e}"),
            None,
            None,
        )
    })?;
    check(&report, store.limits())?;
    store.apply(report)
}

/// The answer to a body that does not parse as a report. The reason is
/// `invalid_json` for bad JSON, `invalid_value` for an unknown enum value,
/// `invalid_timestamp` for a string that is not RFC 3339, and `schema` for
/// a wrong type, a missing field or an integer out of range.
fn parse_rejection(error: serde_path_to_error::Error<serde_json::Error>) -> Rejection {
    let path = error.path().to_string();
    let inner = error.into_inner();
    let (reason, message) = if inner.is_syntax() || inner.is_eof() {
        ("invalid_json", inner.to_string())
    } else {
        // The path names the field; the position adds nothing to it.
        let message = inner.to_string();
        let position = format!(" at line {} column {}", inner.line(), inner.column());
        let message = message
            .strip_suffix(&position)
            .map_or(message.clone(), str::to_owned);
        let reason = if message.starts_with(protocol::UNKNOWN_VALUE) {
            "invalid_value"
        } else if message.starts_with(protocol::DUPLICATE_LABEL) {
            "duplicate_label"
        } else if message.starts_with(crate::timestamp::INVALID_TIMESTAMP) {
            "invalid_timestamp"
        } else {
            "schema"
        };
        (reason, message)
    };
    Rejection::new(
        StatusCode::BAD_REQUEST,
        reason,
        format!("{path}: {message}"),
        (path != ".").then_some(path),
        None,
    )
}

async fn report(State(state): State<IngestState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let limit = state.store.limits().max_body_bytes;
    // Read one byte past the limit so an oversized body is told apart.
    let bytes = match axum::body::to_bytes(Body::new(body), limit + 1).await {
        Ok(bytes) => bytes,
        Err(_) => {
            let rejection = Rejection::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the body exceeds {limit} bytes (--max-body-bytes): send fewer maps or events per report"),
                None,
                Some(limit as u64),
            );
            state
                .store
                .count_request(rejection.status, Some(rejection.reason));
            let (status, body) = reject(rejection);
            return json(status, body);
        }
    };
    let store = state.store.clone();
    let token = state.token.clone();
    let result = tokio::task::spawn_blocking(move || {
        handle(&store, token.as_deref(), &parts.headers, &bytes)
    })
    .await;
    match result {
        Ok((status, body)) => json(status, body),
        Err(_) => json(
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"error":"internal error","field":null,"limit":null}"#.into(),
        ),
    }
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}
