//! Retry policy: exponential backoff with jitter, bounded by attempts, record age and, for a
//! batch run under [`DEADLINE`] (a Lambda invocation), the time left to answer.

use std::time::{Duration, Instant, SystemTime};

use rand::Rng;
use serde::Deserialize;

/// What happens to a record whose retries are exhausted.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnExhausted {
    /// Write it to the dead-letter destination and move on (a worker's default).
    #[default]
    DeadLetter,
    /// Report it as failed and never commit past it (the Lambda adapter's choice, so that the
    /// event source mapping retries it).
    Fail,
}

tokio::task_local! {
    /// When set (with `DEADLINE.scope(instant, batch)`), the time by which the batch must be
    /// answered, as the Lambda function's invocation deadline: a retry whose backoff would end
    /// after it is not made, and its records are given up as when their attempts run out.
    pub static DEADLINE: Instant;
}

/// Whether a pause of `pause` still ends before the batch's [`DEADLINE`] (true without one).
pub fn before_deadline(pause: Duration) -> bool {
    DEADLINE.try_with(|deadline| Instant::now() + pause < *deadline).unwrap_or(true)
}

/// The `[retry]` table.
#[derive(Clone, Debug, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts per record, the first included. `1` disables retries.
    pub max_attempts: u32,
    /// Backoff before the second attempt, in milliseconds; doubles each attempt.
    pub initial_backoff_ms: u64,
    /// Upper bound of a single backoff, in milliseconds.
    pub max_backoff_ms: u64,
    /// Stop retrying a record older than this many seconds (since its arrival in the source).
    /// Unset: no age limit.
    pub max_record_age_s: Option<u64>,
    /// What to do once retries are exhausted.
    pub on_exhausted: OnExhausted,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_backoff_ms: 100,
            max_backoff_ms: 10_000,
            max_record_age_s: None,
            on_exhausted: OnExhausted::DeadLetter,
        }
    }
}

impl RetryPolicy {
    /// The pauses between retries of a failed source read: from 200 ms up to 30 s.
    pub(crate) fn source_reads() -> Self {
        RetryPolicy { initial_backoff_ms: 200, max_backoff_ms: 30_000, ..RetryPolicy::default() }
    }

    /// Whether a record that has had `attempts` attempts and arrived at `arrival` may be tried again.
    pub fn may_retry(&self, attempts: u32, arrival: SystemTime) -> bool {
        if attempts >= self.max_attempts {
            return false;
        }
        match self.max_record_age_s {
            Some(limit) => arrival.elapsed().map_or(true, |age| age < Duration::from_secs(limit)),
            None => true,
        }
    }

    /// The pause after attempt number `attempts` (1-based): exponential, capped, with "equal
    /// jitter" (half fixed, half random) so that retries of many workers spread out.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let exp = attempts.saturating_sub(1).min(30);
        let full = self.initial_backoff_ms.saturating_mul(1u64 << exp).min(self.max_backoff_ms);
        let half = full / 2;
        let jitter = if half > 0 { rand::rng().random_range(0..=half) } else { 0 };
        Duration::from_millis(half + jitter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy { initial_backoff_ms: 100, max_backoff_ms: 1_000, ..RetryPolicy::default() };
        for _ in 0..50 {
            let first = p.backoff(1);
            assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
            let tenth = p.backoff(10);
            assert!(tenth >= Duration::from_millis(500) && tenth <= Duration::from_millis(1_000));
        }
    }

    #[test]
    fn attempts_and_age_bound_retries() {
        let p = RetryPolicy { max_attempts: 3, max_record_age_s: Some(60), ..RetryPolicy::default() };
        let now = SystemTime::now();
        assert!(p.may_retry(2, now));
        assert!(!p.may_retry(3, now));
        let old = now - Duration::from_secs(120);
        assert!(!p.may_retry(1, old));
    }
}
