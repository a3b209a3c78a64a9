//! The `mapscope` binary: sidecar, demo, version and healthcheck, built
//! with the `sidecar` feature. The command line and the demo live here,
//! not in the library's API; the sidecar's parts (ingest, HTTP, export)
//! are library code.

mod cli;
mod demo;

fn main() -> std::process::ExitCode {
    cli::main()
}
