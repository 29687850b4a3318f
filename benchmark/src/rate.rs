//! A token bucket shared by all workers, like the `rate.NewLimiter(r, 1)` etcd's benchmark uses.
//!
//! Tokens refill at `rate` per second up to `burst`. It is kept as the generic cell rate
//! algorithm: one instant, the time at which the bucket would be full again, replaces the token
//! count, so the arithmetic stays exact. A caller that finds the bucket empty reserves the next
//! token and sleeps until it is due, which queues callers in arrival order.

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

pub struct TokenBucket {
    /// Time to refill one token.
    interval: Duration,
    /// `interval * burst`: how far ahead of now tokens may be handed out without waiting.
    burst_window: Duration,
    /// When the bucket is full again given every token handed out so far.
    full_at: Mutex<Instant>,
}

impl TokenBucket {
    /// `None` for `rate == 0`, which means unlimited.
    pub fn per_second(rate: u64, burst: u32) -> Option<TokenBucket> {
        if rate == 0 {
            return None;
        }
        let interval = Duration::from_nanos((1_000_000_000 / rate).max(1));
        Some(TokenBucket {
            interval,
            burst_window: interval * burst.max(1),
            full_at: Mutex::new(Instant::now()),
        })
    }

    /// Takes one token at `now` and returns when it may be used.
    fn reserve(&self, now: Instant) -> Instant {
        let mut full_at = self
            .full_at
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *full_at = (*full_at).max(now) + self.interval;
        full_at
            .checked_sub(self.burst_window)
            .map_or(now, |due| due.max(now))
    }

    /// Waits for one token.
    pub async fn acquire(&self) {
        let at = self.reserve(Instant::now());
        tokio::time::sleep_until(at).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn zero_rate_is_unlimited() {
        assert!(TokenBucket::per_second(0, 1).is_none());
    }

    #[test]
    fn callers_are_spaced_by_the_rate() {
        let bucket = TokenBucket::per_second(100, 1).unwrap();
        let t0 = Instant::now() + Duration::from_secs(1);
        // The first token is there; the next ones are due 10ms apart, in order of arrival.
        assert_eq!(bucket.reserve(t0), t0);
        assert_eq!(bucket.reserve(t0), t0 + 10 * MS);
        assert_eq!(bucket.reserve(t0), t0 + 20 * MS);
        // Arriving when its token is already due: no wait.
        assert_eq!(bucket.reserve(t0 + 30 * MS), t0 + 30 * MS);
    }

    #[test]
    fn idle_time_saves_at_most_burst_tokens() {
        let bucket = TokenBucket::per_second(100, 2).unwrap();
        let t0 = Instant::now() + Duration::from_secs(60);
        assert_eq!(bucket.reserve(t0), t0);
        assert_eq!(bucket.reserve(t0), t0);
        assert_eq!(bucket.reserve(t0), t0 + 10 * MS);
    }
}
