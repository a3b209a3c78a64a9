//! Bounded waiting: every wait in these helpers has a deadline, so a broken
//! build fails a test instead of hanging it.

use std::process::{Child, ExitStatus};
use std::thread;
use std::time::{Duration, Instant};

/// How long any single wait in these helpers may take.
#[allow(
    dead_code,
    reason = "tests/deploy gives its external checks a longer deadline of its own"
)]
pub(crate) const WAIT: Duration = Duration::from_secs(15);

/// Polls `child` until it exits or `timeout` passes; on timeout it is
/// killed and reaped, and `None` is returned.
pub(crate) fn wait_bounded(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                // After SIGKILL the exit is immediate; still bound the reap.
                let reap_deadline = Instant::now() + Duration::from_secs(5);
                while Instant::now() < reap_deadline {
                    if let Ok(Some(_)) = child.try_wait() {
                        break;
                    }
                    thread::sleep(Duration::from_millis(20));
                }
                return None;
            }
        }
    }
}
