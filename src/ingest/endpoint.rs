//! The ingest listener's routes: headers checked before the body, the
//! body read within its limits, and the HTTP-free [`handle`].

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use subtle::ConstantTimeEq;

use super::body::{self, BodyLimits};
use super::protocol::{self, Report, ReportAccepted};
use super::sources::Sources;
use super::validate::{check, Rejection};

/// What the ingest routes need.
#[derive(Debug, Clone)]
pub struct IngestState {
    store: Arc<Sources>,
    token: Option<Arc<str>>,
    body: BodyLimits,
}

impl IngestState {
    /// State over `sources`, requiring `Authorization: Bearer <token>` when
    /// a token is given (the binary reads it from `MAPSCOPE_INGEST_TOKEN`),
    /// with the default [`BodyLimits`].
    ///
    /// An empty token is a token nothing matches: every request is then
    /// refused (401), never let through. The binary refuses to start with
    /// one.
    pub fn new(sources: Arc<Sources>, token: Option<String>) -> Self {
        IngestState {
            store: sources,
            token: token.map(Into::into),
            body: BodyLimits::default(),
        }
    }

    /// Sets how request bodies are read and discarded.
    #[must_use]
    pub fn body_limits(mut self, limits: BodyLimits) -> Self {
        self.body = limits;
        self
    }
}

/// The ingest router: `POST /v1/report`. Every answer is JSON, an
/// [`ErrorBody`](super::protocol::ErrorBody) when it is an error (404 and
/// 405 included), and is counted in `mapscope_ingest_requests_total`.
/// Headers are checked before the body is read: a request without the
/// token, with another content type, or announcing a body over the limit
/// is answered without buffering it.
pub fn router(state: IngestState) -> Router {
    Router::new()
        .route("/v1/report", post(report))
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(crate::http::nosniff())
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
    let result = check_headers(store, token, headers).and_then(|()| handle_body(store, body));
    answer(store, result)
}

/// Counts the answer and renders it.
fn answer(store: &Sources, result: Result<ReportAccepted, Rejection>) -> (StatusCode, String) {
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

/// The checks a request's headers allow, in order: the token (401), the
/// content type (415), and the announced `Content-Length` (413). They run
/// before any of the body is read.
fn check_headers(
    store: &Sources,
    token: Option<&str>,
    headers: &HeaderMap,
) -> Result<(), Rejection> {
    authorize(token, headers)?;
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
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match announced {
        Some(length) if length > limit as u64 => Err(too_large(
            format!("the body is {length} bytes (Content-Length)"),
            limit,
        )),
        _ => Ok(()),
    }
}

fn too_large(what: String, limit: usize) -> Rejection {
    Rejection::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!(
            "{what}; the limit is {limit} (--max-body-bytes): send fewer maps or events per report"
        ),
        None,
        Some(limit as u64),
    )
}

/// Checks `Authorization: Bearer <token>`. The credentials are compared in
/// constant time, so how long a wrong guess takes tells nothing of the
/// token (`subtle` returns early on a length mismatch only, and the length
/// is no secret worth the name).
fn authorize(token: Option<&str>, headers: &HeaderMap) -> Result<(), Rejection> {
    let Some(token) = token else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| bearer_credentials(v.as_bytes()));
    if given.is_some_and(|given| bool::from(given.ct_eq(token.as_bytes()))) {
        return Ok(());
    }
    Err(Rejection::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "missing or invalid bearer token: send Authorization: Bearer <MAPSCOPE_INGEST_TOKEN>",
        Some("Authorization".into()),
        None,
    ))
}

/// The credentials of an `Authorization: Bearer <credentials>` value, if
/// it is one. The scheme is case-insensitive (RFC 9110 section 11.1:
/// `bearer` and `BEARER` are `Bearer`), one or more spaces follow it, and
/// empty credentials are none.
fn bearer_credentials(value: &[u8]) -> Option<&[u8]> {
    let space = value.iter().position(|&b| b == b' ')?;
    let (scheme, rest) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let credentials = rest.trim_ascii();
    (!credentials.is_empty()).then_some(credentials)
}

fn handle_body(store: &Sources, body: &[u8]) -> Result<ReportAccepted, Rejection> {
    let limit = store.limits().max_body_bytes;
    if body.len() > limit {
        return Err(too_large(
            format!("the body is {} bytes", body.len()),
            limit,
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
    let (parts, mut body) = request.into_parts();
    let store = &state.store;
    if let Err(rejection) = check_headers(store, state.token.as_deref(), &parts.headers) {
        body::linger(&parts.headers, body, &state.body);
        return json(answer(store, Err(rejection)));
    }
    let limit = store.limits().max_body_bytes;
    let bytes = match body::read(&mut body, limit, state.body.read_timeout).await {
        Ok(bytes) => bytes,
        Err(body::ReadError::TooLarge) => {
            body::linger(&parts.headers, body, &state.body);
            let rejection = too_large(format!("the body exceeds {limit} bytes"), limit);
            return json(answer(store, Err(rejection)));
        }
        Err(body::ReadError::Malformed(error)) => {
            let rejection = Rejection::new(
                StatusCode::BAD_REQUEST,
                "malformed_body",
                format!("the body's framing is invalid ({error}): send a Content-Length and that many bytes, or valid chunked encoding"),
                None,
                None,
            );
            return closing(json(answer(store, Err(rejection))));
        }
        Err(body::ReadError::TimedOut) => {
            let timeout = state.body.read_timeout;
            let rejection = Rejection::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!("the body did not arrive within {} s (--body-timeout): send it at once after the headers", timeout.as_secs_f64()),
                None,
                Some(timeout.as_secs()),
            );
            return closing(json(answer(store, Err(rejection))));
        }
    };
    let store = state.store.clone();
    let result = tokio::task::spawn_blocking(move || {
        let result = handle_body(&store, &bytes);
        answer(&store, result)
    })
    .await;
    match result {
        Ok(answer) => json(answer),
        Err(_) => json((
            StatusCode::INTERNAL_SERVER_ERROR,
            r#"{"error":"internal error","field":null,"limit":null}"#.into(),
        )),
    }
}

/// 404 for any path but `/v1/report`, as JSON and counted like every
/// other answer of the ingest listener.
async fn not_found(State(state): State<IngestState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    body::linger(&parts.headers, body, &state.body);
    let rejection = Rejection::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no such endpoint: {} {}: reports go to POST /v1/report",
            parts.method,
            parts.uri.path()
        ),
        None,
        None,
    );
    json(answer(&state.store, Err(rejection)))
}

/// 405 for `/v1/report` with another method than POST.
async fn method_not_allowed(State(state): State<IngestState>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    body::linger(&parts.headers, body, &state.body);
    let rejection = Rejection::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} {}: reports are sent with POST",
            parts.method,
            parts.uri.path()
        ),
        None,
        None,
    );
    let mut response = json(answer(&state.store, Err(rejection)));
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    response
}

fn json((status, body): (StatusCode, String)) -> Response {
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    if status == StatusCode::UNAUTHORIZED {
        // RFC 6750 section 3: a 401 names the scheme it wants.
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    response
}

/// Asks hyper to close the connection after this answer: what is left of
/// the request cannot be read (broken framing, a client too slow).
fn closing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_authorization(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(value).expect("a header value"),
        );
        headers
    }

    #[test]
    fn bearer_credentials_follow_rfc_9110() {
        for (value, expected) in [
            ("Bearer abc", Some(&b"abc"[..])),
            ("bearer abc", Some(b"abc")),
            ("BEARER abc", Some(b"abc")),
            ("Bearer   abc", Some(b"abc")),
            ("Bearer", None),
            ("Bearer ", None),
            ("Bearerabc", None),
            ("Basic abc", None),
            ("", None),
        ] {
            assert_eq!(bearer_credentials(value.as_bytes()), expected, "{value:?}");
        }
    }

    #[test]
    fn an_empty_token_fails_closed() {
        for value in ["Bearer ", "Bearer", "bearer x"] {
            let headers = with_authorization(value);
            assert!(authorize(Some(""), &headers).is_err(), "{value:?}");
        }
        assert!(authorize(Some(""), &HeaderMap::new()).is_err());
    }

    #[test]
    fn the_token_must_match_whole() {
        for value in ["Bearer s3cret", "bearer s3cret"] {
            assert!(authorize(Some("s3cret"), &with_authorization(value)).is_ok());
        }
        for value in ["Bearer s3cre", "Bearer s3cretX", "Bearer S3CRET"] {
            let rejection =
                authorize(Some("s3cret"), &with_authorization(value)).expect_err("a wrong token");
            assert_eq!(rejection.status, StatusCode::UNAUTHORIZED);
            assert_eq!(rejection.body.field.as_deref(), Some("Authorization"));
        }
        assert!(authorize(None, &HeaderMap::new()).is_ok());
    }
}
