//! Whether end-to-end prerequisites are mandatory.

/// Whether end-to-end prerequisites are mandatory (CI sets
/// `MAPSCOPE_REQUIRE_E2E=1` so a missing tool fails instead of skipping).
pub(crate) fn e2e_required() -> bool {
    std::env::var("MAPSCOPE_REQUIRE_E2E").is_ok_and(|v| v.trim() == "1")
}
