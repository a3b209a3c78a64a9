//! Polling a condition until it holds, for a bounded time.

use std::thread;
use std::time::{Duration, Instant};

/// Polls `check` every 50 ms until it returns `Some`, for at most `limit`.
pub(crate) fn poll<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?}: {what}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}
