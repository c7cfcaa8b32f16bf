//! Backoff for answers that mean "refused, nothing done, retry later".

use std::time::Duration;

/// How a client retries refused requests.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0 = never retry).
    pub max_retries: u32,
    /// First backoff when the server gives no `Retry-After`; doubles per attempt.
    pub initial_backoff: Duration,
    /// Upper bound of any wait, including a server's `Retry-After`.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// No retries.
    pub fn none() -> RetryPolicy {
        RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        }
    }

    /// The wait before retry number `attempt` (1-based): the server's `Retry-After` if it gave
    /// one, else exponential backoff with ±25 % jitter; never above `max_backoff`.
    pub fn wait(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let base = retry_after.unwrap_or_else(|| {
            let exp = self
                .initial_backoff
                .saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
            // Cheap jitter without a RNG dependency: the clock's nanoseconds.
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let jitter = 0.75 + (nanos % 1000) as f64 / 2000.0;
            exp.mul_f64(jitter)
        });
        base.min(self.max_backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_honour_retry_after_and_are_capped() {
        let p = RetryPolicy::default();
        assert!(p.wait(1, None) <= Duration::from_millis(63));
        assert!(p.wait(3, None) >= Duration::from_millis(150));
        assert_eq!(
            p.wait(1, Some(Duration::from_secs(2))),
            Duration::from_secs(2)
        );
        assert_eq!(p.wait(1, Some(Duration::from_secs(60))), p.max_backoff);
        assert_eq!(p.wait(40, None), p.max_backoff);
    }
}
