//! Helpers for tests that run real processes: whether a pid is alive, and waiting on a
//! watch channel for a state that satisfies a check.

use tokio::sync::watch;

/// Whether a process with this pid exists (signal 0 is accepted). A pid that does not
/// fit an `i32` panics: it cannot come from a process we started.
pub fn alive(pid: u32) -> bool {
    let pid = i32::try_from(pid).expect("pid fits an i32");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
}

/// Waits for the next value of `rx` (the current one included) that satisfies `check`
/// and returns a copy of it. Event-driven, with no timer of its own, so paused Tokio
/// time only moves for the timers of the code under test. Panics if the sender is
/// dropped first.
pub async fn until<T: Clone>(rx: &mut watch::Receiver<T>, check: impl Fn(&T) -> bool) -> T {
    loop {
        {
            let value = rx.borrow_and_update();
            if check(&value) {
                return value.clone();
            }
        }
        rx.changed().await.expect("the sender is alive");
    }
}
