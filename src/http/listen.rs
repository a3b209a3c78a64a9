//! Bounded serving: every connection of a listener has a deadline for its
//! request headers and a place among a fixed number of connections.
//!
//! `axum::serve` can set neither, so both listeners of the binary (and
//! [`super::serve`]) run this accept loop over hyper's HTTP/1 connection
//! instead. Each bound is hyper's or tokio's own:
//!
//! - **Header timeout** (hyper `header_read_timeout`): hyper starts the clock
//!   when it begins to wait for a request head, that is when the connection
//!   opens *and* when a keep-alive connection goes idle after a response
//!   (hyper 1 `State::idle` sets `notify_read` for exactly this). So the one
//!   deadline bounds both the time to send headers and the keep-alive idle
//!   time; a slowloris client, which never finishes its headers, is closed
//!   at it whatever it trickles.
//! - **Header size** (hyper `max_buf_size` and `max_header_size`): a head
//!   that does not fit is answered 431 and the connection closed, so one
//!   connection's read buffer stays small while it waits.
//! - **Connections** (a tokio [`Semaphore`]): a connection past the limit is
//!   closed as soon as it is accepted, rather than left in the kernel's
//!   queue, so a flood costs a file descriptor for an instant, not memory,
//!   and a client sees the refusal at once.
//!
//! Bodies are bounded where they are read: the ingest handler reads the one
//! body anything here reads, under its own deadline and size limit
//! (`crate::ingest`). HTTP/1.1 only: Prometheus, the clients and kubelet
//! probes speak it, and one protocol means one set of bounds to get right.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The bounds of one listener. Each is a flag of the binary (the README's
/// configuration table); the defaults suit a sidecar on a pod network.
///
/// ```
/// let limits = mapscope::http::ListenLimits::default()
///     .header_timeout(std::time::Duration::from_secs(5))
///     .max_connections(64);
/// assert_eq!(limits.max_connections, 64);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListenLimits {
    /// Time to receive a request's headers, counted from the connection's
    /// opening or from the end of the previous response: this is also the
    /// keep-alive idle timeout. Default 20 s: twice the Go client's report
    /// interval and above Prometheus's usual 15 s scrape interval, so those
    /// keep their connection, while a slowloris connection holds its place
    /// for 20 s at most.
    pub header_timeout: Duration,
    /// Largest request head (request line and headers), in bytes; 431
    /// past it. Default 8 KiB, hyper's smallest read buffer, so a
    /// connection still sending its head never holds more: Prometheus, the
    /// clients and kubelet send a few hundred bytes, and Apache's limit on
    /// a single header line is the same 8 KiB.
    pub max_header_bytes: usize,
    /// Most open connections; more are closed as soon as they are
    /// accepted. Default 2,048 per listener: 2,000 slowloris connections
    /// on each port leave room for Prometheus, probes and clients, and
    /// both listeners full cost about 60 MiB (measured in
    /// docs/benchmarks.md).
    pub max_connections: usize,
}

impl Default for ListenLimits {
    fn default() -> Self {
        ListenLimits {
            header_timeout: Duration::from_secs(20),
            max_header_bytes: MIN_READ_BUFFER,
            max_connections: 2048,
        }
    }
}

/// hyper's smallest read buffer (`MINIMUM_MAX_BUFFER_SIZE`); its builder
/// panics below it.
const MIN_READ_BUFFER: usize = 8192;

impl ListenLimits {
    /// Sets [`ListenLimits::header_timeout`].
    #[must_use]
    pub fn header_timeout(mut self, timeout: Duration) -> Self {
        self.header_timeout = timeout;
        self
    }

    /// Sets [`ListenLimits::max_header_bytes`].
    #[must_use]
    pub fn max_header_bytes(mut self, bytes: usize) -> Self {
        self.max_header_bytes = bytes;
        self
    }

    /// Sets [`ListenLimits::max_connections`].
    #[must_use]
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections;
        self
    }

    fn http1(&self) -> hyper::server::conn::http1::Builder {
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_timeout)
            .max_header_size(self.max_header_bytes)
            // The read buffer holds a partial head while a client sends it;
            // past this hyper answers 431 instead of growing it.
            .max_buf_size(self.max_header_bytes.max(MIN_READ_BUFFER))
            .keep_alive(true);
        builder
    }
}

/// Serves `app` on `listener` within `limits` until `shutdown` completes,
/// then stops accepting and waits for the connections in flight (each is
/// bounded: an idle one closes at once, a request in progress finishes,
/// one still sending its headers closes at the header timeout).
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// use mapscope::http::{serve_bounded, ListenLimits};
///
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:9847").await?;
/// let app = mapscope::http::router(mapscope::Registry::global().clone());
/// let stop = async { let _ = tokio::signal::ctrl_c().await; };
/// serve_bounded(listener, app, &ListenLimits::default(), stop).await
/// # }
/// ```
pub async fn serve_bounded(
    mut listener: TcpListener,
    app: axum::Router,
    limits: &ListenLimits,
    shutdown: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let local = listener.local_addr()?;
    let http1 = limits.http1();
    // tokio panics above MAX_PERMITS (2^61), which no listener reaches.
    let places = Arc::new(Semaphore::new(
        limits.max_connections.min(Semaphore::MAX_PERMITS),
    ));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            // axum's accept retries on per-connection errors and backs off
            // on EMFILE, as hyper 0.14's server did.
            accepted = axum::serve::Listener::accept(&mut listener) => accepted,
            () = &mut shutdown => break,
        };
        let Ok(place) = places.clone().try_acquire_owned() else {
            tracing::debug!(%local, %peer, limit = limits.max_connections, "connection limit reached: closing a new connection");
            drop(stream);
            continue;
        };
        let service = TowerToHyperService::new(app.clone());
        let connection = graceful.watch(http1.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            // Errors here are a client's (a header timeout, a reset, a bad
            // request line): hyper has answered or closed; nothing to add.
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "connection ended");
            }
            drop(place);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}
