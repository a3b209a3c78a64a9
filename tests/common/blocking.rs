//! A blocking HTTP client for loopback tests (bounded timeouts, no proxy)
//! and a strict scrape of `/metrics` with it.

use std::time::Duration;

use super::exposition::{parse_exposition, Exposition};
use super::wait::WAIT;

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
#[allow(
    dead_code,
    reason = "tests/ingest scrapes a sidecar that may be down, with its own `try_scrape`"
)]
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
