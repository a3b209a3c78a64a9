//! HTTP clients for loopback tests (bounded timeouts, no proxy) and the
//! scrape helpers built on them.

use super::exposition::{parse_exposition, Exposition};
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

/// A client that neither asks for nor decodes compression, so headers and
/// bytes are seen as the server sent them.
pub(crate) fn raw_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .no_gzip()
        .connect_timeout(Duration::from_secs(5))
        .timeout(WAIT)
        .build()
        .expect("build the HTTP client")
}

/// A blocking reqwest client for loopback tests: no proxy, bounded
/// timeouts.
pub(crate) fn blocking_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .timeout(WAIT)
        .build()
        .expect("build the blocking HTTP client")
}

/// GETs `{base}/metrics` with a blocking client and parses it strictly.
pub(crate) fn scrape_blocking(base: &str) -> Exposition {
    let url = format!("{}/metrics", base.trim_end_matches('/'));
    let response = blocking_client()
        .get(&url)
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_eq!(response.status(), 200, "GET {url}");
    let text = response.text().expect("read /metrics");
    parse_exposition(&text).unwrap_or_else(|e| panic!("unparsable /metrics: {e}\n{text}"))
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
