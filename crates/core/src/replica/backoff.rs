//! Backoff of failed passes: a medium that refuses writes, is down or rate-limits us gets
//! exponentially fewer attempts (with jitter), never a busy loop.

use std::time::Duration;

use tokio::time::Instant;

use super::status::FailureInfo;
use crate::Error;
use crate::transport::TransportError;

/// First delay after a failure.
const FIRST: Duration = Duration::from_secs(1);
/// Longest delay between two attempts.
const LONGEST: Duration = Duration::from_secs(300);

/// The delay before attempt `attempts + 1`, after `attempts` failures in a row: 1 s, 2 s,
/// 4 s, … up to 5 min, each shortened by up to a quarter at random so that devices that
/// failed together do not retry together; never shorter than a provider's `retry_after`.
pub(super) fn delay(attempts: u32, retry_after: Option<Duration>) -> Duration {
    let exp = FIRST.saturating_mul(1u32 << attempts.saturating_sub(1).min(16)).min(LONGEST);
    let jitter = (uuid::Uuid::new_v4().as_u128() as u64 % 1000) as f64 / 4000.0;
    let d = exp.mul_f64(1.0 - jitter);
    retry_after.map_or(d, |r| d.max(r))
}

/// The `retry_after` a failure carries, if a provider said.
pub(super) fn retry_after(e: &Error) -> Option<Duration> {
    match e {
        Error::Transport(TransportError::RateLimited { retry_after }) => *retry_after,
        _ => None,
    }
}

/// Consecutive failures of one kind of pass.
#[derive(Clone, Debug)]
pub(super) struct Failure {
    pub(super) attempts: u32,
    pub(super) message: String,
    pub(super) since_ms: i64,
    pub(super) retry_at: Instant,
}

impl Failure {
    /// Records one more failure after `previous` (if any) and schedules the next attempt.
    pub(super) fn next(previous: Option<&Failure>, e: &Error, now_ms: i64) -> Failure {
        let attempts = previous.map_or(0, |f| f.attempts) + 1;
        Failure {
            attempts,
            message: e.to_string(),
            since_ms: previous.map_or(now_ms, |f| f.since_ms),
            retry_at: Instant::now() + delay(attempts, retry_after(e)),
        }
    }

    /// What `status` shows.
    pub(super) fn info(&self) -> FailureInfo {
        FailureInfo {
            attempts: self.attempts,
            message: self.message.clone(),
            since_ms: self.since_ms,
            retry_in_ms: self.retry_at.saturating_duration_since(Instant::now()).as_millis() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_cap_and_honour_retry_after() {
        for attempts in 1..40 {
            let d = delay(attempts, None);
            let exp = FIRST.saturating_mul(1 << (attempts - 1).min(16)).min(LONGEST);
            assert!(d <= exp && d >= exp.mul_f64(0.75), "attempt {attempts}: {d:?}");
        }
        assert!(delay(1, Some(Duration::from_secs(90))) >= Duration::from_secs(90));
        assert!(delay(30, Some(Duration::from_secs(1))) >= Duration::from_secs(225));
    }
}
