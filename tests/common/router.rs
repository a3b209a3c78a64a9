//! An axum `Router` called in process, one request at a time, with
//! `tower::ServiceExt::oneshot`: for tests of routes, status codes, headers
//! and bodies, which need no socket. Tests of socket behaviour (timeouts,
//! connection limits, a real client) use [`super::server`] instead.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use tower::ServiceExt;

use super::exposition::{parse_exposition, Exposition};

/// The largest body a test reads back.
const MAX_BODY: usize = 64 << 20;

/// A router under test.
#[derive(Debug, Clone)]
pub(crate) struct Routes(Router);

/// One answer of the router.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The status code.
    pub(crate) status: StatusCode,
    /// The response headers.
    pub(crate) headers: HeaderMap,
    /// The whole body, as sent (not decompressed).
    pub(crate) body: Bytes,
}

impl Answer {
    /// The body as UTF-8 text; panics when it is not.
    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.body.to_vec())
            .unwrap_or_else(|e| panic!("a {} body that is not UTF-8: {e}", self.status))
    }

    /// The value of header `name` as text, if present.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("a text header"))
    }
}

impl Routes {
    /// Wraps `router`.
    pub(crate) fn new(router: Router) -> Routes {
        Routes(router)
    }

    /// Sends `request` and reads the whole answer.
    pub(crate) async fn send(&self, request: Request<Body>) -> Answer {
        let what = format!("{} {}", request.method(), request.uri());
        let response = self
            .0
            .clone()
            .oneshot(request)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, MAX_BODY)
            .await
            .unwrap_or_else(|e| panic!("{what}: reading the body: {e}"));
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    }

    /// `GET path` with the headers `headers`.
    pub(crate) async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        let request = headers
            .iter()
            .fold(Request::get(path), |r, (k, v)| r.header(*k, *v))
            .body(Body::empty())
            .expect("a valid request");
        self.send(request).await
    }

    /// `GET path`.
    pub(crate) async fn get(&self, path: &str) -> Answer {
        self.get_with(path, &[]).await
    }

    /// `GET /metrics`, which must answer 200, parsed strictly.
    pub(crate) async fn scrape(&self) -> Exposition {
        let answer = self.get("/metrics").await;
        assert_eq!(answer.status, StatusCode::OK, "GET /metrics");
        let text = answer.text();
        parse_exposition(&text).unwrap_or_else(|e| panic!("unparsable /metrics: {e}\n{text}"))
    }
}
