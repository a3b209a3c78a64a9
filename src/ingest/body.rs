//! The request body of the ingest listener: read within a size limit and a
//! deadline, and, after an answer given without reading it, discarded
//! within bounds so the client can read that answer.
//!
//! Why discard: a client that sends its whole body without waiting for
//! `Expect: 100-continue` (Python's urllib, most scripts) is still writing
//! when the sidecar answers 401 or 413. If the sidecar closes at once, the
//! kernel resets the connection over the unread bytes and the client gets a
//! broken pipe instead of the answer. nginx's "lingering close" reads and
//! drops the rest for a while first; so does this, up to
//! [`BodyLimits::drain_max_bytes`] or [`BodyLimits::drain_timeout`],
//! whichever comes first, on a task of its own while hyper writes the
//! answer. A client that asked for `100-continue` never sends the body
//! after an error, so its body is not waited for.

use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap};
use http_body_util::{BodyExt, LengthLimitError, Limited};

/// How the ingest listener reads request bodies. Each is a flag of the
/// binary; the size limit itself is [`super::Limits::max_body_bytes`].
///
/// ```
/// use std::time::Duration;
///
/// let limits = mapscope::ingest::BodyLimits::default()
///     .read_timeout(Duration::from_secs(5))
///     .drain_max_bytes(1 << 20);
/// assert_eq!(limits.drain_timeout, Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BodyLimits {
    /// Time to receive a whole body once its headers are in; 408 and the
    /// connection closed past it. Default 30 s: a 1 MiB report takes
    /// milliseconds on a pod network, and a body that trickles holds its
    /// connection no longer than this.
    pub read_timeout: Duration,
    /// Most bytes of an unread body discarded after an early answer before
    /// the connection is closed. Default 16 MiB, 16 times the default
    /// body limit: a client that writes a much larger body gets a reset.
    pub drain_max_bytes: u64,
    /// Longest time spent discarding an unread body. Default 10 s.
    pub drain_timeout: Duration,
}

impl Default for BodyLimits {
    fn default() -> Self {
        BodyLimits {
            read_timeout: Duration::from_secs(30),
            drain_max_bytes: 16 * 1024 * 1024,
            drain_timeout: Duration::from_secs(10),
        }
    }
}

impl BodyLimits {
    /// Sets [`BodyLimits::read_timeout`].
    #[must_use]
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = timeout;
        self
    }

    /// Sets [`BodyLimits::drain_max_bytes`].
    #[must_use]
    pub fn drain_max_bytes(mut self, bytes: u64) -> Self {
        self.drain_max_bytes = bytes;
        self
    }

    /// Sets [`BodyLimits::drain_timeout`].
    #[must_use]
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }
}

/// Why a body could not be read.
#[derive(Debug)]
pub(super) enum ReadError {
    /// More than the limit arrived (a chunked body, or one whose
    /// `Content-Length` lied low: hyper stops at the announced length).
    TooLarge,
    /// The framing is broken (bad chunked encoding, a connection closed
    /// before `Content-Length` bytes).
    Malformed(String),
    /// The body did not arrive within [`BodyLimits::read_timeout`].
    TimedOut,
}

/// Reads `body` whole, at most `max_bytes` of it, within `timeout`.
pub(super) async fn read(
    body: &mut Body,
    max_bytes: usize,
    timeout: Duration,
) -> Result<Bytes, ReadError> {
    match tokio::time::timeout(timeout, Limited::new(&mut *body, max_bytes).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(error)) if error.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ReadError::TooLarge)
        }
        Ok(Err(error)) => Err(ReadError::Malformed(error.to_string())),
        Err(_elapsed) => Err(ReadError::TimedOut),
    }
}

/// Discards what is left of `body` on a task of its own, within `limits`,
/// so the answer to a request whose body was not read reaches a client
/// still sending it (see the module documentation).
pub(super) fn linger(headers: &HeaderMap, body: Body, limits: &BodyLimits) {
    use axum::body::HttpBody as _;
    let expects_continue = headers
        .get(header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    // Polling the body of a client waiting for 100-continue would send it
    // "100 Continue" after the error; dropping the body tells hyper to
    // close instead, which such a client expects.
    if expects_continue || body.is_end_stream() {
        return;
    }
    let (max_bytes, timeout) = (limits.drain_max_bytes, limits.drain_timeout);
    tokio::spawn(async move {
        let mut body = body;
        let discard = async {
            let mut seen = 0u64;
            while let Some(Ok(frame)) = body.frame().await {
                if let Some(data) = frame.data_ref() {
                    seen += data.len() as u64;
                    if seen >= max_bytes {
                        break;
                    }
                }
            }
        };
        // Past either bound the body is dropped and hyper closes the
        // connection.
        let _ = tokio::time::timeout(timeout, discard).await;
    });
}
