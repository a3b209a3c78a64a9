//! The `mapscope` command line: `sidecar` (the default), `demo`,
//! `version` and `healthcheck`. Every flag also reads a `MAPSCOPE_*`
//! environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use mapscope::http::{router_with, serve_bounded, HttpState, ListenLimits};
use mapscope::ingest::{BodyLimits, CrashDir, IngestState, Limits, Sources};
use mapscope::registry::Registry;

/// The default scrape listener: all interfaces, port 9847 (clear of
/// Prometheus 9090, node_exporter 9100, OTLP 4317/4318 and 9464).
pub(crate) const DEFAULT_LISTEN: &str = "0.0.0.0:9847";

/// The default ingest listener: loopback only, since the containers of a
/// pod share its network namespace.
pub(crate) const DEFAULT_INGEST_LISTEN: &str = "127.0.0.1:9848";

/// See what hash maps do to a service's latency and memory.
#[derive(Debug, Parser)]
#[command(
    name = "mapscope",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    sidecar: ServerArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve /metrics and the JSON API for this process's maps and the maps
    /// clients report (the default).
    Sidecar(ServerArgs),
    /// The sidecar plus an in-process workload that reproduces every
    /// scenario mapscope detects.
    Demo(DemoArgs),
    /// Print the version.
    Version,
    /// Exit 0 when a mapscope endpoint answers (for Docker's HEALTHCHECK).
    Healthcheck(HealthcheckArgs),
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    /// One JSON object per line.
    Json,
    /// Human-readable lines.
    Pretty,
}

/// Flags shared by `sidecar` and `demo`.
#[derive(Debug, Clone, Args)]
pub(crate) struct ServerArgs {
    /// Address of the HTTP listener: /metrics, /, /healthz, /readyz, /api/v1/maps.
    #[arg(long, env = "MAPSCOPE_LISTEN", default_value = DEFAULT_LISTEN)]
    pub(crate) listen: SocketAddr,
    /// Address of the ingest listener (POST /v1/report).
    #[arg(long, env = "MAPSCOPE_INGEST_LISTEN", default_value = DEFAULT_INGEST_LISTEN)]
    pub(crate) ingest_listen: SocketAddr,
    /// Log format.
    #[arg(long, env = "MAPSCOPE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty)]
    pub(crate) log_format: LogFormat,
    /// Async worker threads; unset, one per CPU the process may use
    /// (tokio's default, which honours the container's CPU quota).
    #[arg(long, env = "MAPSCOPE_WORKER_THREADS", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) worker_threads: Option<u16>,
    /// Seconds a dropped map's final values, and a stale source's last
    /// ones, stay visible.
    #[arg(long, env = "MAPSCOPE_GRACE_PERIOD", default_value_t = 30)]
    pub(crate) grace_period: u64,
    /// Live maps with their own series, in-process and reported together;
    /// more fold into map="_overflow".
    #[arg(long, env = "MAPSCOPE_MAX_MAPS", default_value_t = 10_000)]
    pub(crate) max_maps: usize,
    /// Largest ingest request body, in bytes (413 past it).
    #[arg(long, env = "MAPSCOPE_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub(crate) max_body_bytes: usize,
    /// Most reporting sources (app + instance) tracked (429 past it).
    #[arg(long, env = "MAPSCOPE_MAX_SOURCES", default_value_t = 100)]
    pub(crate) max_sources: usize,
    /// Most maps in one report, so of one source: its series budget (36
    /// series per map). 100 × the default --max-sources is the default
    /// --max-maps.
    #[arg(long, env = "MAPSCOPE_MAX_MAPS_PER_SOURCE", default_value_t = 100)]
    pub(crate) max_maps_per_source: usize,
    /// Most label bytes in one report, so of one source: map names, label
    /// names and values, and app and instance once per map.
    #[arg(long, env = "MAPSCOPE_MAX_LABEL_BYTES_PER_SOURCE", default_value_t = 8 * 1024)]
    pub(crate) max_label_bytes_per_source: usize,
    /// Most events in one report.
    #[arg(long, env = "MAPSCOPE_MAX_EVENTS_PER_REPORT", default_value_t = 1000)]
    pub(crate) max_events_per_report: usize,
    /// Seconds without a report before a source is stale (at least 3 of
    /// its declared report intervals).
    #[arg(long, env = "MAPSCOPE_SOURCE_TTL", default_value_t = 30)]
    pub(crate) source_ttl: u64,
    /// Bearer token clients must send to the ingest listener.
    #[arg(long, env = "MAPSCOPE_INGEST_TOKEN", hide_env_values = true)]
    pub(crate) ingest_token: Option<String>,
    /// Directory the Go client's CaptureCrashes writes crash files to (a
    /// volume shared with the application): map crashes become metrics,
    /// events and spans. Unset: off.
    #[arg(long, env = "MAPSCOPE_CRASH_DIR", value_parser = any_path)]
    pub(crate) crash_dir: Option<PathBuf>,
    /// Timeouts and limits of both listeners.
    #[command(flatten)]
    pub(crate) listeners: ListenerArgs,
}

/// Bounds of both listeners (each listener has its own connections).
#[derive(Debug, Clone, Args)]
pub(crate) struct ListenerArgs {
    /// Seconds a connection may take to send a request's headers, from its
    /// opening or from the end of the previous response (so also the
    /// keep-alive idle timeout); closed past it.
    #[arg(long, env = "MAPSCOPE_HEADER_TIMEOUT", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) header_timeout: u64,
    /// Largest request line and headers, in bytes (431 past it).
    #[arg(long, env = "MAPSCOPE_MAX_HEADER_BYTES", default_value_t = 8 * 1024, value_parser = clap::value_parser!(u64).range(1024..))]
    pub(crate) max_header_bytes: u64,
    /// Most open connections on each listener; more are closed at once.
    #[arg(long, env = "MAPSCOPE_MAX_CONNECTIONS", default_value_t = 2048, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) max_connections: u64,
    /// Seconds an ingest request may take to send its whole body after its
    /// headers (408 and closed past it).
    #[arg(long, env = "MAPSCOPE_BODY_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) body_timeout: u64,
    /// After answering an ingest request without reading its body (401,
    /// 413, 415, 404, 405), bytes of it read and discarded before closing,
    /// so a client still sending it reads the answer.
    #[arg(long, env = "MAPSCOPE_DRAIN_MAX_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub(crate) drain_max_bytes: u64,
    /// Seconds spent at most discarding such a body.
    #[arg(long, env = "MAPSCOPE_DRAIN_TIMEOUT", default_value_t = 10)]
    pub(crate) drain_timeout: u64,
}

impl ListenerArgs {
    fn listen_limits(&self) -> ListenLimits {
        ListenLimits::default()
            .header_timeout(Duration::from_secs(self.header_timeout))
            .max_header_bytes(usize::try_from(self.max_header_bytes).unwrap_or(usize::MAX))
            .max_connections(usize::try_from(self.max_connections).unwrap_or(usize::MAX))
    }

    fn body_limits(&self) -> BodyLimits {
        BodyLimits::default()
            .read_timeout(Duration::from_secs(self.body_timeout))
            .drain_max_bytes(self.drain_max_bytes)
            .drain_timeout(Duration::from_secs(self.drain_timeout))
    }
}

/// Raises the soft limit on open files to the hard one, as Go's runtime
/// does since 1.19: every connection is a descriptor, and container
/// runtimes often start processes with a soft limit of 1,024, below what
/// two listeners of `--max-connections` need (`needed`). Past the soft
/// limit, accepting fails and every new connection, probes included,
/// waits.
#[cfg(unix)]
fn raise_open_files_limit(needed: u64) {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let raised = match (limit.current, limit.maximum) {
        (Some(current), maximum) if maximum.is_none_or(|max| max > current) => {
            let wanted = Rlimit {
                current: maximum,
                maximum,
            };
            match setrlimit(Resource::Nofile, wanted) {
                Ok(()) => maximum,
                Err(_) => Some(current),
            }
        }
        (current, _) => current,
    };
    if let Some(open_files) = raised.filter(|&n| n < needed) {
        tracing::warn!(
            open_files,
            needed,
            "the open-files limit is below what two listeners of --max-connections need: raise the limit (ulimit -n) or lower --max-connections (MAPSCOPE_MAX_CONNECTIONS)"
        );
    }
}

#[cfg(not(unix))]
fn raise_open_files_limit(_needed: u64) {}

/// Refuses an empty token: it would read as "no token" and leave ingest
/// open while the operator believes it closed.
fn check_token(token: Option<&str>, ingest_listen: SocketAddr) -> std::io::Result<()> {
    match token {
        Some("") => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "--ingest-token (MAPSCOPE_INGEST_TOKEN) is empty: set a non-empty token, or unset both to run without one",
        )),
        None if !ingest_listen.ip().is_loopback() => {
            tracing::warn!(
                %ingest_listen,
                "ingest listens on a non-loopback address without a token: anyone who can reach it can report; set --ingest-token (MAPSCOPE_INGEST_TOKEN)"
            );
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A path, the empty one included (clap's own path parser rejects it): an
/// empty `MAPSCOPE_CRASH_DIR` means off, as an empty token means none.
fn any_path(value: &str) -> Result<PathBuf, std::convert::Infallible> {
    Ok(PathBuf::from(value))
}

/// Flags of `demo`.
#[derive(Debug, Clone, Args)]
pub(crate) struct DemoArgs {
    #[command(flatten)]
    server: ServerArgs,
    /// Milliseconds between workload steps (smaller is faster).
    #[arg(long, env = "MAPSCOPE_DEMO_TICK_MS", default_value_t = 100)]
    pub(crate) tick: u64,
}

/// Flags of `healthcheck`.
#[derive(Debug, Clone, Args)]
pub(crate) struct HealthcheckArgs {
    /// The URL to GET.
    #[arg(
        long,
        env = "MAPSCOPE_HEALTHCHECK_URL",
        default_value = "http://127.0.0.1:9847/healthz"
    )]
    pub(crate) url: String,
    /// Seconds to wait for an answer.
    #[arg(long, env = "MAPSCOPE_HEALTHCHECK_TIMEOUT", default_value_t = 3)]
    pub(crate) timeout: u64,
}

/// Runs the command line; the binary's `main`.
pub(crate) fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => run_server(cli.sidecar, None),
        Some(Command::Sidecar(args)) => run_server(args, None),
        Some(Command::Demo(args)) => run_server(args.server.clone(), Some(args)),
        Some(Command::Version) => {
            println!(
                "mapscope {} (revision {})",
                mapscope::export::prometheus::VERSION,
                mapscope::export::prometheus::REVISION
            );
            ExitCode::SUCCESS
        }
        Some(Command::Healthcheck(args)) => {
            match healthcheck(&args.url, Duration::from_secs(args.timeout)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("mapscope healthcheck: {error}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("MAPSCOPE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
}

fn run_server(args: ServerArgs, demo: Option<DemoArgs>) -> ExitCode {
    init_logging(args.log_format);
    // Rendering and ingest run on blocking threads; a small pool bounds
    // memory under saturated ingest (each thread has its own stack and
    // allocator arena). The async workers only move bytes and follow the
    // machine unless told otherwise.
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.worker_threads {
        builder.worker_threads(usize::from(threads));
    }
    let runtime = match builder.max_blocking_threads(8).enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("mapscope: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args, demo)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("mapscope: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServerArgs, demo: Option<DemoArgs>) -> std::io::Result<()> {
    check_token(args.ingest_token.as_deref(), args.ingest_listen)?;
    raise_open_files_limit(2 * args.listeners.max_connections + 64);
    let registry = Registry::builder()
        .grace_period(Duration::from_secs(args.grace_period))
        .max_maps(args.max_maps)
        .recent_events(4096)
        .build();
    let mut limits = Limits::default();
    limits.max_body_bytes = args.max_body_bytes;
    limits.max_sources = args.max_sources;
    limits.max_maps_per_source = args.max_maps_per_source;
    limits.max_label_bytes_per_source = args.max_label_bytes_per_source;
    limits.max_events_per_report = args.max_events_per_report;
    limits.source_ttl = Duration::from_secs(args.source_ttl);
    // One registry: this process's maps and the maps clients report are
    // rows of the same table, read by every exporter.
    let sources = Arc::new(Sources::new(&registry, limits));
    // An empty MAPSCOPE_CRASH_DIR means unset, like the other variables.
    let crash_dir = match args.crash_dir.filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) if dir.is_dir() => Some(CrashDir::new(dir, &registry)),
        Some(dir) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "--crash-dir {}: not a directory: mount the volume the application writes its crash files to there, or unset MAPSCOPE_CRASH_DIR",
                    dir.display()
                ),
            ))
        }
        None => None,
    };
    #[cfg(feature = "otel")]
    let otel = {
        let config = mapscope::otel::OtelConfig::from_env().map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("OpenTelemetry: {e}"),
            )
        })?;
        mapscope::otel::init_with(&registry, config).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("OpenTelemetry: {e}"),
            )
        })?
    };
    let state = HttpState::new(registry.clone());
    let ready = state.readiness();
    ready.store(false, Ordering::Relaxed);

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot listen on {} (--listen): {e}", args.listen),
            )
        })?;
    let local = listener.local_addr()?;
    let ingest_listener = tokio::net::TcpListener::bind(args.ingest_listen)
        .await
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "cannot listen on {} (--ingest-listen): {e}",
                    args.ingest_listen
                ),
            )
        })?;
    let ingest_local = ingest_listener.local_addr()?;
    // Lines tests and people can rely on.
    println!("mapscope: http listening on http://{local}/");
    println!("mapscope: ingest listening on http://{ingest_local}/v1/report");
    tracing::info!(%local, %ingest_local, "listening");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let workload =
        demo.map(|demo| crate::demo::start(&registry, &demo, local, ingest_local, stop_rx.clone()));
    let listen_limits = args.listeners.listen_limits();
    let ingest_app = mapscope::ingest::router(
        IngestState::new(sources.clone(), args.ingest_token)
            .body_limits(args.listeners.body_limits()),
    );
    let mut ingest_stop = stop_rx.clone();
    let ingest = {
        let limits = listen_limits.clone();
        tokio::spawn(async move {
            let stop = async move {
                let _ = ingest_stop.wait_for(|stop| *stop).await;
            };
            serve_bounded(ingest_listener, ingest_app, &limits, stop).await
        })
    };
    // The source lifecycle (TTL, stale, removal after the grace period) and
    // the crash files run on a timer, never during a scrape.
    if let Some(dir) = &crash_dir {
        tracing::info!(dir = %dir.dir().display(), "reading Go crash files");
    }
    let mut sweep_stop = stop_rx.clone();
    let sweeper = {
        let sources = sources.clone();
        let mut crash_dir = crash_dir;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let sources = sources.clone();
                        let mut scanner = crash_dir.take();
                        let swept = tokio::task::spawn_blocking(move || {
                            sources.sweep();
                            if let Some(scanner) = &mut scanner {
                                scanner.scan();
                            }
                            scanner
                        })
                        .await;
                        match swept {
                            Ok(scanner) => crash_dir = scanner,
                            Err(error) => tracing::error!(%error, "the sweeper failed; crash files are no longer read"),
                        }
                    }
                    changed = sweep_stop.changed() => {
                        if changed.is_err() || *sweep_stop.borrow() {
                            break;
                        }
                    }
                }
            }
        })
    };

    ready.store(true, Ordering::Relaxed);
    let app = router_with(state);
    let shutdown = {
        let ready = ready.clone();
        async move {
            shutdown_signal().await;
            ready.store(false, Ordering::Relaxed);
            tracing::info!("shutting down: finishing in-flight requests");
            let _ = stop_tx.send(true);
        }
    };
    serve_bounded(listener, app, &listen_limits, shutdown).await?;
    let _ = ingest.await;
    let _ = sweeper.await;
    if let Some(workload) = workload {
        workload.stop().await;
    }
    #[cfg(feature = "otel")]
    tokio::task::spawn_blocking(move || otel.shutdown())
        .await
        .ok();
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// GETs `url` (`http://host:port/path`) and succeeds on a 2xx answer,
/// within `timeout` for the whole exchange. Redirects are not followed and
/// proxies from the environment are not used: the probe is about this
/// address.
pub(crate) fn healthcheck(url: &str, timeout: Duration) -> Result<(), String> {
    if !url.starts_with("http://") {
        return Err(format!("--url {url:?}: only http:// URLs are supported"));
    }
    let client = reqwest::blocking::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent("mapscope-healthcheck")
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let response = client.get(url).send().map_err(|e| {
        let what = if e.is_timeout() {
            "no answer in time"
        } else if e.is_connect() {
            "cannot connect"
        } else if e.is_builder() {
            "invalid URL"
        } else {
            "request failed"
        };
        format!("{url}: {what}: {e}")
    })?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("{url} answered {status}"))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn healthcheck_refuses_what_is_not_plain_http() {
        let error = super::healthcheck("https://example.com/", Duration::from_secs(1));
        assert!(error.unwrap_err().contains("http://"));
    }
}
