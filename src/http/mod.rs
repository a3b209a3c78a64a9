//! The HTTP endpoint: `/metrics`, `/`, `/healthz`, `/readyz` and
//! `/api/v1/maps`, as an axum [`Router`] an application merges into its
//! own, or served by [`serve`] and the `mapscope` binary.
//!
//! [`serve`] and the binary serve it with [`serve_bounded`]: a header
//! timeout (which is also the keep-alive idle timeout), a header size limit
//! and a connection limit, given by [`ListenLimits`]. Every answer carries
//! `X-Content-Type-Options: nosniff`; the HTML page also has a
//! `Content-Security-Policy` that allows nothing but its own inline style.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tower_http::compression::CompressionLayer;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::export::prometheus::{MapscopeCollector, RenderFailed, CONTENT_TYPE};
use crate::registry::Registry;
use encoding::{accepts_gzip, GzipCache};

mod api;
mod encoding;
mod landing;
mod listen;

pub use api::{ApiCondition, ApiEvent, ApiMap, ApiSite, ApiSnapshot};
pub use listen::{serve_bounded, ListenLimits};

/// What the routes read: the registry, its collector, and whether the
/// process is ready.
#[derive(Debug, Clone)]
pub struct HttpState {
    registry: Registry,
    collector: Arc<MapscopeCollector>,
    gzip: Arc<GzipCache>,
    ready: Arc<AtomicBool>,
}

impl HttpState {
    /// State over a registry (in the sidecar, its in-process maps and the
    /// maps clients report are rows of the same one). Ready from the start.
    pub fn new(registry: Registry) -> Self {
        HttpState {
            collector: Arc::new(MapscopeCollector::new(registry.clone())),
            gzip: Arc::default(),
            registry,
            ready: Arc::new(AtomicBool::new(true)),
        }
    }

    /// A handle that flips `/readyz` (the binary marks itself unready until
    /// every listener is bound, and again while shutting down).
    pub fn readiness(&self) -> Arc<AtomicBool> {
        self.ready.clone()
    }
}

/// The mapscope routes over one registry, to merge into an application's
/// router.
///
/// ```
/// use axum::{routing::get, Router};
///
/// let registry = mapscope::Registry::new();
/// let app: Router = Router::new()
///     .route("/hello", get(|| async { "hi" }))
///     .merge(mapscope::http::router(registry));
/// # drop(app);
/// ```
pub fn router(registry: Registry) -> Router {
    router_with(HttpState::new(registry))
}

/// The mapscope routes over explicit state.
pub fn router_with(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/", get(landing))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/maps", get(maps))
        .layer(CompressionLayer::new().gzip(true))
        .layer(nosniff())
        .with_state(state)
}

/// `X-Content-Type-Options: nosniff`: a browser takes each answer for the
/// type it declares (a JSON error or the exposition never runs as HTML).
pub(crate) fn nosniff() -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::overriding(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    )
}

/// Serves [`router`] on `addr` until the process is stopped, within the
/// default [`ListenLimits`] (use [`serve_bounded`] to choose them or to
/// stop gracefully).
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// let registry = mapscope::Registry::global().clone();
/// mapscope::serve("127.0.0.1:9847".parse().unwrap(), registry).await
/// # }
/// ```
pub async fn serve(addr: SocketAddr, registry: Registry) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    serve_bounded(
        listener,
        router(registry),
        &ListenLimits::default(),
        std::future::pending(),
    )
    .await
}

/// Rendering is synchronous and proportional to the number of maps: it
/// runs on a blocking thread so it never stalls the async workers
/// (metrics-rs saw 15 s stalls before moving rendering off them, PR #576).
/// Concurrent scrapes share one render ([`MapscopeCollector::render_shared`])
/// and, when they ask for gzip, its one encoding (`encoding.rs`): N of them
/// cost one observation, one rendering and one compression.
async fn metrics(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    let gzip = accepts_gzip(&headers).then(|| state.gzip.clone());
    let collector = state.collector.clone();
    let rendered = tokio::task::spawn_blocking(move || -> Result<_, RenderFailed> {
        let shared = collector.render_shared()?;
        Ok(match gzip {
            Some(cache) => (cache.encode(&shared), true),
            None => (shared.text, false),
        })
    })
    .await;
    match rendered {
        Ok(Ok((body, gzipped))) => {
            let mut response = ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response();
            let headers = response.headers_mut();
            headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
            if gzipped {
                headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            response
        }
        Ok(Err(error)) => {
            tracing::error!(%error, "rendering /metrics failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "rendering failed\n").into_response()
        }
        Err(error) => {
            tracing::error!(%error, "rendering /metrics failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "rendering failed\n").into_response()
        }
    }
}

async fn readyz(State(state): State<HttpState>) -> Response {
    if state.ready.load(Ordering::Relaxed) {
        "ready\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn landing(State(state): State<HttpState>) -> Response {
    match tokio::task::spawn_blocking(move || landing::page(&state.registry.snapshot())).await {
        Ok(page) => (
            [(
                header::CONTENT_SECURITY_POLICY,
                landing::CONTENT_SECURITY_POLICY,
            )],
            Html(page),
        )
            .into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "rendering failed\n").into_response(),
    }
}

async fn maps(State(state): State<HttpState>) -> Response {
    match tokio::task::spawn_blocking(move || {
        ApiSnapshot::from_snapshot(&state.registry.snapshot())
    })
    .await
    {
        Ok(snapshot) => axum::Json(snapshot).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "rendering failed\n").into_response(),
    }
}
