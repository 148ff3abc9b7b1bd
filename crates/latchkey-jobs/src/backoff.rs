//! Retry delays: exponential with jitter, or the remote system's own `Retry-After`.

use rand::Rng;
use std::time::Duration;

/// Delay before the next attempt after a transient error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The delay after the first failed attempt, before jitter.
    pub base: Duration,
    /// No computed delay exceeds this (a `Retry-After` hint may).
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(2),
            max: Duration::from_secs(600),
        }
    }
}

impl Backoff {
    /// The delay after failed attempt number `attempt` (1-based).
    ///
    /// Without a hint: "equal jitter", a uniform pick in `[d/2, d]` where
    /// `d = min(max, base * 2^(attempt-1))`, so retries of many jobs that failed together
    /// spread out instead of returning in a herd. With a hint: the hint plus up to 10%, never
    /// less than the remote system asked for.
    pub fn delay(&self, attempt: i32, retry_after: Option<Duration>) -> Duration {
        let mut rng = rand::rng();
        if let Some(hint) = retry_after {
            let extra = hint.mul_f64(rng.random_range(0.0..=0.1));
            return hint + extra;
        }
        let d = self.ceiling(attempt);
        d / 2 + d.mul_f64(rng.random_range(0.0..=0.5))
    }

    /// The upper bound of [`Backoff::delay`] without a hint.
    pub fn ceiling(&self, attempt: i32) -> Duration {
        let exp = attempt.saturating_sub(1).clamp(0, 30) as u32;
        self.base.saturating_mul(1u32 << exp).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_jitter_bounds_and_caps() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for attempt in 1..=8 {
            let ceiling =
                Duration::from_millis(100 * (1 << (attempt - 1))).min(Duration::from_secs(1));
            assert_eq!(b.ceiling(attempt), ceiling);
            for _ in 0..200 {
                let d = b.delay(attempt, None);
                assert!(
                    d >= ceiling / 2 && d <= ceiling,
                    "attempt {attempt}: {d:?} outside [{:?}, {ceiling:?}]",
                    ceiling / 2
                );
            }
        }
        // Jitter actually varies.
        let picks: std::collections::HashSet<_> = (0..50).map(|_| b.delay(3, None)).collect();
        assert!(picks.len() > 10);
    }

    #[test]
    fn honours_retry_after_and_never_shortens_it() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for _ in 0..200 {
            let d = b.delay(1, Some(Duration::from_secs(5)));
            assert!(
                d >= Duration::from_secs(5) && d <= Duration::from_millis(5500),
                "{d:?}"
            );
        }
    }
}
