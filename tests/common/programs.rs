//! External programs (promtool, prometheus, go, ...): finding them on
//! `PATH`, with a loud skip unless `MAPSCOPE_REQUIRE_E2E=1`.

use std::path::PathBuf;

use super::e2e::e2e_required;

/// The path of `name` on `PATH`. When it is missing, prints a loud
/// `SKIPPED` line naming `install_hint` and returns `None`, or panics if
/// `MAPSCOPE_REQUIRE_E2E=1`.
pub(crate) fn require_program(name: &str, install_hint: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| is_executable(candidate))
    });
    match found {
        Some(path) => Some(path),
        None if e2e_required() => {
            panic!("{name} not found on PATH and MAPSCOPE_REQUIRE_E2E=1: {install_hint}")
        }
        None => {
            eprintln!();
            eprintln!("================================================================");
            eprintln!("SKIPPED: {name} not found on PATH; {install_hint}");
            eprintln!("(set MAPSCOPE_REQUIRE_E2E=1 to make this a failure)");
            eprintln!("================================================================");
            eprintln!();
            None
        }
    }
}

fn is_executable(path: &std::path::Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        path.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}
