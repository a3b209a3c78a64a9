//! Embedded mode: an axum application with an instrumented map, serving
//! mapscope's routes (`/metrics`, `/`, `/api/v1/maps`, ...) on its own
//! router.
//!
//! ```sh
//! cargo run --example embedded   # `http`, a default feature
//! curl -s -XPOST localhost:3000/sessions/alice && curl -s localhost:3000/metrics | grep sessions
//! ```

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::routing::post;
use axum::Router;
use mapscope::{InstrumentedMap, Registry};

type Sessions = Arc<Mutex<InstrumentedMap<String, u64>>>;

async fn login(State(sessions): State<Sessions>, Path(user): Path<String>) -> String {
    // UNWRAP: the lock is only poisoned if a handler panicked while holding it.
    let mut sessions = sessions.lock().expect("sessions lock");
    let count = sessions.entry(user).or_insert(0);
    *count += 1;
    format!("logins: {count}\n")
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let registry = Registry::global().clone();
    let sessions: Sessions = Arc::new(Mutex::new(
        InstrumentedMap::builder("sessions")
            .label("service", "example")
            .max_entries(1_000_000)
            .register(&registry)
            .expect("a valid, unique map name"),
    ));
    let app = Router::new()
        .route("/sessions/{user}", post(login))
        .with_state(sessions)
        .merge(mapscope::http::router(registry));
    let addr = std::env::var("EXAMPLE_LISTEN").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "embedded example on http://{}/ (try /metrics)",
        listener.local_addr()?
    );
    axum::serve(listener, app).await
}
