//! Waiting for a condition that has no event to wait on: check, pause, check again, up to a
//! bound. Pauses start short, so a condition that is almost there is seen at once, and grow
//! to a tenth of a second, so a slow one does not flood the server with checks.

use std::future::Future;
use std::time::{Duration, Instant};

/// The first pause between two checks.
const FIRST_PAUSE: Duration = Duration::from_millis(10);
/// The longest pause between two checks.
const LONGEST_PAUSE: Duration = Duration::from_millis(100);

/// Runs `check` until it returns `Ok` or `timeout` has passed, and returns its last answer:
/// `Ok` with what it found, or `Err` with what it saw instead (for the failure message).
/// `check` always runs at least once.
pub async fn eventually<T, E, F, Fut>(timeout: Duration, mut check: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut pauses = Pauses::until(Instant::now() + timeout);
    loop {
        let last = check().await;
        match pauses.next() {
            Some(pause) if last.is_err() => tokio::time::sleep(pause).await,
            _ => return last,
        }
    }
}

/// [`eventually`] for callers without a runtime: the same checks, pausing the thread.
pub fn eventually_blocking<T, E>(
    timeout: Duration,
    mut check: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let mut pauses = Pauses::until(Instant::now() + timeout);
    loop {
        let last = check();
        match pauses.next() {
            Some(pause) if last.is_err() => std::thread::sleep(pause),
            _ => return last,
        }
    }
}

/// The pauses between checks: doubling from [`FIRST_PAUSE`] to [`LONGEST_PAUSE`], the last
/// one cut short at the deadline, none after it.
struct Pauses {
    deadline: Instant,
    next: Duration,
}

impl Pauses {
    fn until(deadline: Instant) -> Self {
        Self {
            deadline,
            next: FIRST_PAUSE,
        }
    }
}

impl Iterator for Pauses {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let left = self.deadline.checked_duration_since(Instant::now())?;
        if left.is_zero() {
            return None;
        }
        let pause = self.next.min(left);
        self.next = (self.next * 2).min(LONGEST_PAUSE);
        Some(pause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_up_to_a_tenth_of_a_second_and_stop_at_the_deadline() {
        let mut pauses = Pauses::until(Instant::now() + Duration::from_secs(60));
        let first: Vec<u64> = pauses
            .by_ref()
            .take(6)
            .map(|p| p.as_millis() as u64)
            .collect();
        assert_eq!(first, [10, 20, 40, 80, 100, 100]);
        assert_eq!(Pauses::until(Instant::now()).next(), None);
    }

    #[test]
    fn the_last_failed_check_is_returned_after_the_timeout() {
        let mut checks = 0;
        let last = eventually_blocking(Duration::from_millis(50), || {
            checks += 1;
            Err::<(), _>(checks)
        });
        assert!(matches!(last, Err(n) if n == checks && n > 1), "{last:?}");
    }

    #[tokio::test]
    async fn a_check_that_holds_returns_at_once() {
        let started = Instant::now();
        let found = eventually(Duration::from_secs(10), || async { Ok::<_, ()>(7) }).await;
        assert_eq!(found, Ok(7));
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[test]
    fn a_zero_timeout_still_checks_once() {
        let mut checks = 0;
        let _ = eventually_blocking(Duration::ZERO, || {
            checks += 1;
            Err::<(), ()>(())
        });
        assert_eq!(checks, 1);
    }
}
