//! An in-process axum server on a loopback port, for tests that need a
//! real socket (timeouts, connection limits, a real client). Tests of
//! routes alone call the `Router` with `tower::ServiceExt::oneshot`.

use std::net::SocketAddr;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

/// An axum router served on `127.0.0.1:<ephemeral>` by a tokio runtime on
/// its own thread. Dropping it shuts the server down (gracefully, then by
/// force after a deadline).
#[derive(Debug)]
pub(crate) struct TestServer {
    /// The bound address.
    pub(crate) addr: SocketAddr,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    done: mpsc::Receiver<()>,
    thread: Option<thread::JoinHandle<()>>,
}

impl TestServer {
    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `base_url()` followed by `path` (which starts with `/`).
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        // The server thread forces its way out 2 s after the signal; wait a
        // little longer than that, then leave it detached rather than hang.
        if self.done.recv_timeout(Duration::from_secs(5)).is_ok() {
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        } else {
            eprintln!(
                "warning: test server on {} did not stop within 5 s",
                self.addr
            );
        }
    }
}

/// Serves `app` on a fresh loopback port.
pub(crate) fn serve_router(app: axum::Router) -> TestServer {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener
        .set_nonblocking(true)
        .expect("set the listener non-blocking");
    let addr = listener.local_addr().expect("local address");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (done_tx, done_rx) = mpsc::channel();
    let thread = thread::Builder::new()
        .name(format!("test-server-{}", addr.port()))
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("build the server runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                let mut graceful = stop_rx.clone();
                let server = axum::serve(listener, app).with_graceful_shutdown(async move {
                    let _ = graceful.wait_for(|stop| *stop).await;
                });
                let mut forced = stop_rx;
                let deadline = async move {
                    let _ = forced.wait_for(|stop| *stop).await;
                    tokio::time::sleep(Duration::from_secs(2)).await;
                };
                tokio::select! {
                    result = server => {
                        if let Err(error) = result {
                            eprintln!("test server on {addr}: {error}");
                        }
                    }
                    () = deadline => {}
                }
            });
            runtime.shutdown_timeout(Duration::from_secs(1));
            let _ = done_tx.send(());
        })
        .expect("spawn the server thread");
    TestServer {
        addr,
        stop: Some(stop_tx),
        done: done_rx,
        thread: Some(thread),
    }
}
