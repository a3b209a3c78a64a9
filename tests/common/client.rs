//! An async HTTP client for loopback tests (bounded timeouts, no proxy).

use std::time::Duration;

use super::wait::WAIT;

/// A reqwest client for loopback tests: no proxy, bounded timeouts, and
/// (with the `gzip` feature) transparent gzip decoding.
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .timeout(WAIT)
        .build()
        .expect("build the HTTP client")
}

/// GETs `url` and returns the body, panicking on a non-200 answer.
pub(crate) async fn get_text(url: &str) -> String {
    let response = client()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(response.status(), 200, "GET {url}");
    response
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: reading the body: {e}"))
}
