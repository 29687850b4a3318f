//! Waiting for a condition that another thread, task or process makes true: poll it, with a growing pause,
//! until it holds or a deadline passes. Blocking forms for threads, `_async` forms for tokio tasks.
//!
//! [`poll`] returns the last error when time is up, for callers that want to word the failure themselves;
//! [`eventually`] panics naming what it waited for.

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

/// First pause between two attempts: short, so a condition that is nearly true costs little.
const FIRST_PAUSE: Duration = Duration::from_millis(10);
/// Longest pause: attempts that are themselves expensive (a CLI run, a gRPC call) stay a few per second.
const MAX_PAUSE: Duration = Duration::from_millis(200);

/// Calls `attempt` until it returns `Ok`, pausing between calls, and returns that value; after `timeout`,
/// returns the last error. `attempt` runs at least once, and once more at the deadline.
pub fn poll<T, E>(timeout: Duration, mut attempt: impl FnMut() -> Result<T, E>) -> Result<T, E> {
    let deadline = Instant::now() + timeout;
    let mut pauses = Pauses::default();
    loop {
        let error = match attempt() {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(error);
        }
        std::thread::sleep(pauses.next(left));
    }
}

/// Waits until `condition` holds; panics after `timeout` with "timed out after .. waiting for `what`".
pub fn eventually(timeout: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    if poll(timeout, || condition().then_some(()).ok_or(())).is_err() {
        timed_out(timeout, what, None::<&str>);
    }
}

/// [`poll`] for a tokio task: the pauses are `tokio::time::sleep`s, the deadline is on tokio's clock.
pub async fn poll_async<T, E, F, Fut>(timeout: Duration, mut attempt: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pauses = Pauses::default();
    loop {
        let error = match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) => error,
        };
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return Err(error);
        }
        tokio::time::sleep(pauses.next(left)).await;
    }
}

/// [`eventually`] for a tokio task, with an async condition (`|| async { .. }`; wrap a plain one in
/// `std::future::ready`).
pub async fn eventually_async<F, Fut>(timeout: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let polled = poll_async(timeout, || {
        let holds = condition();
        async move { holds.await.then_some(()).ok_or(()) }
    })
    .await;
    if polled.is_err() {
        timed_out(timeout, what, None::<&str>);
    }
}

/// Panics with the message every wait in the workspace's tests uses, quoting the last error if any.
pub fn timed_out(timeout: Duration, what: &str, last: Option<impl Display>) -> ! {
    match last {
        Some(last) => panic!("timed out after {timeout:?} waiting for {what}; last: {last}"),
        None => panic!("timed out after {timeout:?} waiting for {what}"),
    }
}

/// The pause before each next attempt: doubling from [`FIRST_PAUSE`] to [`MAX_PAUSE`], never past the
/// deadline.
#[derive(Debug)]
struct Pauses(Duration);

impl Default for Pauses {
    fn default() -> Self {
        Pauses(FIRST_PAUSE)
    }
}

impl Pauses {
    fn next(&mut self, left: Duration) -> Duration {
        let pause = self.0.min(left);
        self.0 = (self.0 * 2).min(MAX_PAUSE);
        pause
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn poll_returns_the_first_success() {
        let calls = Cell::new(0);
        let got = poll(Duration::from_secs(5), || {
            calls.set(calls.get() + 1);
            if calls.get() < 3 {
                Err(calls.get())
            } else {
                Ok("done")
            }
        });
        assert_eq!(got, Ok("done"));
        assert_eq!(calls.get(), 3);
    }

    #[test]
    fn poll_returns_the_last_error_at_the_deadline() {
        let started = Instant::now();
        let calls = Cell::new(0u32);
        let got: Result<(), u32> = poll(Duration::from_millis(100), || {
            calls.set(calls.get() + 1);
            Err(calls.get())
        });
        assert_eq!(got, Err(calls.get()));
        assert!(calls.get() >= 2, "tried again at the deadline");
        assert!(started.elapsed() >= Duration::from_millis(100));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn eventually_returns_once_the_condition_holds() {
        let started = Instant::now();
        eventually(Duration::from_secs(5), "50 ms to pass", || {
            started.elapsed() >= Duration::from_millis(50)
        });
    }

    #[test]
    #[should_panic(expected = "timed out after 50ms waiting for the impossible")]
    fn eventually_panics_naming_what_it_waited_for() {
        eventually(Duration::from_millis(50), "the impossible", || false);
    }

    #[test]
    fn pauses_grow_to_the_cap_and_stop_at_the_deadline() {
        let mut pauses = Pauses::default();
        let long = Duration::from_secs(60);
        let seen: Vec<_> = (0..7).map(|_| pauses.next(long).as_millis()).collect();
        assert_eq!(seen, [10, 20, 40, 80, 160, 200, 200]);
        assert_eq!(
            pauses.next(Duration::from_millis(3)),
            Duration::from_millis(3)
        );
    }

    #[tokio::test]
    async fn async_forms_poll_until_ok_or_deadline() {
        let calls = Cell::new(0);
        let got = poll_async(Duration::from_secs(5), || {
            calls.set(calls.get() + 1);
            std::future::ready(if calls.get() < 3 { Err(()) } else { Ok(7) })
        })
        .await;
        assert_eq!(got, Ok(7));
        let failed: Result<(), &str> =
            poll_async(Duration::from_millis(30), || std::future::ready(Err("no"))).await;
        assert_eq!(failed, Err("no"));
        let started = tokio::time::Instant::now();
        eventually_async(Duration::from_secs(5), "30 ms to pass", || async {
            started.elapsed() >= Duration::from_millis(30)
        })
        .await;
    }

    #[tokio::test]
    #[should_panic(expected = "timed out after 30ms waiting for never")]
    async fn eventually_async_panics_naming_what_it_waited_for() {
        eventually_async(Duration::from_millis(30), "never", || async { false }).await;
    }
}
