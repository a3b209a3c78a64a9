//! `/metrics` compressed once per render: concurrent scrapes share one
//! render (`MapscopeCollector::render_shared`), and with this they share
//! its gzip encoding too, made on the blocking thread that asked first
//! instead of once per response on the async workers.
//!
//! A response that carries `Content-Encoding` passes through tower-http's
//! `CompressionLayer` untouched, so the layer still compresses every other
//! route, and `/metrics` for clients this module does not serve gzip.

use std::io::Write as _;
use std::sync::{Mutex, PoisonError};

use axum::http::{header, HeaderMap};
use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;

use crate::export::prometheus::SharedText;

/// The gzip encoding of the latest render asked for.
#[derive(Default)]
pub(super) struct GzipCache {
    /// The render number and its encoding. The lock is held while
    /// encoding, so scrapes of one render encode it once.
    last: Mutex<Option<(u64, Bytes)>>,
}

/// The render number and size, not megabytes of bytes.
impl std::fmt::Debug for GzipCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // try_lock: printing must not wait for an encoding in progress.
        let Ok(last) = self.last.try_lock() else {
            return f.write_str("GzipCache { encoding }");
        };
        let (render, bytes) = last.as_ref().map_or((0, 0), |(r, b)| (*r, b.len()));
        f.debug_struct("GzipCache")
            .field("render", &render)
            .field("bytes", &bytes)
            .finish()
    }
}

impl GzipCache {
    /// `shared`'s text, gzip-encoded once per render. Blocking work.
    pub(super) fn encode(&self, shared: &SharedText) -> Bytes {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((render, gzip)) = &*last {
            if *render == shared.render {
                return gzip.clone();
            }
        }
        // The fastest level: at the default one, compressing 40 MB of
        // exposition took most of a scrape (docs/benchmarks.md, "Scrape");
        // the text is repetitive and still compresses about tenfold.
        let mut encoder = GzEncoder::new(
            Vec::with_capacity(shared.text.len() / 8),
            Compression::fast(),
        );
        // UNWRAP: writing to a Vec<u8> does not fail.
        encoder.write_all(&shared.text).expect("gzip into a Vec");
        let gzip = Bytes::from(encoder.finish().expect("gzip into a Vec"));
        // A render older than the cached one is encoded for its caller only.
        if last
            .as_ref()
            .is_none_or(|(render, _)| *render < shared.render)
        {
            *last = Some((shared.render, gzip.clone()));
        }
        gzip
    }
}

/// Whether the request's `Accept-Encoding` accepts gzip (RFC 9110 §12.5.3):
/// `gzip` (or `x-gzip`) with a non-zero weight, or else `*` with one.
pub(super) fn accepts_gzip(headers: &HeaderMap) -> bool {
    let (mut gzip, mut any) = (None, None);
    let codings = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','));
    for coding in codings {
        let mut parts = coding.split(';');
        let name = parts.next().unwrap_or_default().trim();
        let weight = parts
            .filter_map(|p| p.trim().split_once('='))
            .find(|(key, _)| key.trim().eq_ignore_ascii_case("q"))
            .map_or(Some(1.0), |(_, q)| q.trim().parse::<f32>().ok());
        let accepted = weight.is_some_and(|q| q > 0.0);
        if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(accepted);
        } else if name == "*" {
            any = Some(accepted);
        }
    }
    gzip.or(any).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn accepts(values: &[&str]) -> bool {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(
                header::ACCEPT_ENCODING,
                HeaderValue::from_str(value).unwrap(),
            );
        }
        accepts_gzip(&headers)
    }

    #[test]
    fn gzip_is_accepted_as_rfc_9110_says() {
        assert!(accepts(&["gzip"]));
        assert!(accepts(&["GZIP"]));
        assert!(accepts(&["x-gzip"]));
        assert!(accepts(&["deflate, gzip;q=0.5"]));
        assert!(accepts(&["br", "gzip"]));
        assert!(accepts(&["*"]));
        assert!(accepts(&["gzip ; q=1.0, identity;q=0.1"]));
        assert!(!accepts(&[]));
        assert!(!accepts(&["identity"]));
        assert!(!accepts(&["br, deflate"]));
        assert!(!accepts(&["gzip;q=0"]));
        assert!(!accepts(&["gzip;q=0.000"]));
        assert!(
            !accepts(&["*, gzip;q=0"]),
            "an explicit refusal wins over *"
        );
        assert!(!accepts(&["*;q=0"]));
        assert!(
            !accepts(&["gzip;q=nope"]),
            "an unreadable weight is no acceptance"
        );
    }

    #[test]
    fn one_render_is_encoded_once() {
        use std::io::Read as _;
        let registry = crate::Registry::new();
        let collector = crate::export::prometheus::MapscopeCollector::new(registry);
        let cache = GzipCache::default();
        let shared = collector.render_shared().unwrap();
        let first = cache.encode(&shared);
        let again = cache.encode(&shared);
        assert_eq!(first.as_ptr(), again.as_ptr(), "encoded once");
        let mut text = Vec::new();
        flate2::read::GzDecoder::new(&first[..])
            .read_to_end(&mut text)
            .unwrap();
        assert_eq!(text, shared.text);
        let next = collector.render_shared().unwrap();
        assert_ne!(cache.encode(&next).as_ptr(), first.as_ptr(), "a new render");
    }
}
