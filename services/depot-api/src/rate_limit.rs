//! Per-token rate limits on the commands that append events: publish, yank/unyank and owner
//! changes. A token bucket (GCRA) per token id; a caller over its budget gets 429 with
//! `Retry-After`.
//!
//! Keys are ids of tokens that authenticated, so the key set is bounded by the tokens issued;
//! on top of that, once it holds more than [`MAX_TRACKED_TOKENS`] keys, the buckets that are
//! full again (indistinguishable from a fresh one) are dropped.

use std::fmt;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use uuid::Uuid;

use crate::ApiError;

/// Above this many tracked tokens, full buckets are forgotten.
const MAX_TRACKED_TOKENS: usize = 10_000;

/// A sustained rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSpec {
    /// Requests per minute, sustained.
    pub per_minute: NonZeroU32,
    /// Requests allowed at once on a full bucket.
    pub burst: NonZeroU32,
}

impl Default for RateSpec {
    /// 12,000 a minute (200 a second) with a burst of 5,000: far above what one team's CI
    /// does, while it still stops a runaway loop.
    fn default() -> RateSpec {
        RateSpec {
            per_minute: NonZeroU32::new(12_000).expect("non-zero"),
            burst: NonZeroU32::new(5_000).expect("non-zero"),
        }
    }
}

impl RateSpec {
    fn quota(self) -> Quota {
        let period = Duration::from_secs(60) / self.per_minute.get();
        Quota::with_period(period.max(Duration::from_nanos(1)))
            .expect("a non-zero period")
            .allow_burst(self.burst)
    }
}

/// One keyed limiter.
struct Limiter {
    what: &'static str,
    limiter: DefaultKeyedRateLimiter<Uuid>,
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("what", &self.what)
            .field("tracked", &self.limiter.len())
            .finish()
    }
}

impl Limiter {
    fn new(what: &'static str, spec: RateSpec) -> Limiter {
        Limiter {
            what,
            limiter: DefaultKeyedRateLimiter::keyed(spec.quota()),
        }
    }

    fn check(&self, token: Uuid) -> Result<(), ApiError> {
        if let Err(not_until) = self.limiter.check_key(&token) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            return Err(ApiError::too_many_requests(
                format!(
                    "too many {} with this token; try again in {} s",
                    self.what,
                    wait.as_secs() + 1
                ),
                wait,
            ));
        }
        if self.limiter.len() > MAX_TRACKED_TOKENS {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        Ok(())
    }
}

/// The rate limiters of the api.
#[derive(Debug)]
pub(crate) struct RateLimits {
    publish: Limiter,
    command: Limiter,
}

impl RateLimits {
    pub(crate) fn new(publish: RateSpec, command: RateSpec) -> RateLimits {
        RateLimits {
            publish: Limiter::new("publishes", publish),
            command: Limiter::new("yanks and owner changes", command),
        }
    }

    /// Counts a publish by `token`; 429 when over budget.
    pub(crate) fn publish(&self, token: Uuid) -> Result<(), ApiError> {
        self.publish.check(token)
    }

    /// Counts a yank, unyank or owner change by `token`; 429 when over budget.
    pub(crate) fn command(&self, token: Uuid) -> Result<(), ApiError> {
        self.command.check(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;
    use axum::response::IntoResponse as _;

    fn spec(per_minute: u32, burst: u32) -> RateSpec {
        RateSpec {
            per_minute: NonZeroU32::new(per_minute).unwrap(),
            burst: NonZeroU32::new(burst).unwrap(),
        }
    }

    #[test]
    fn a_burst_beyond_the_limit_gets_429_with_retry_after() {
        let limits = RateLimits::new(spec(1, 3), spec(1, 1));
        let token = Uuid::now_v7();
        for _ in 0..3 {
            limits.publish(token).unwrap();
        }
        let refused = limits.publish(token).unwrap_err();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        let response = refused.into_response();
        let retry: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        // Other tokens and the other limiter are unaffected.
        limits.publish(Uuid::now_v7()).unwrap();
        limits.command(token).unwrap();
        assert!(limits.command(token).is_err());
    }

    #[test]
    fn the_key_set_stays_bounded() {
        let limits = RateLimits::new(spec(60_000, 10), spec(1, 1));
        for _ in 0..(MAX_TRACKED_TOKENS + 500) {
            limits.publish(Uuid::now_v7()).unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
        limits.publish(Uuid::now_v7()).unwrap();
        assert!(
            limits.publish.limiter.len() <= MAX_TRACKED_TOKENS,
            "{}",
            limits.publish.limiter.len()
        );
    }
}
