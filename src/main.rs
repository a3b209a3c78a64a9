//! The `mapscope` binary: sidecar, demo, version and healthcheck. All the
//! work is library code in `mapscope::cli`, which tests drive too.

fn main() -> std::process::ExitCode {
    mapscope::cli::main()
}
