//! [`Quota`]: how many requests per period, with an optional burst.

use std::time::Duration;

use crate::error::ConfigError;

/// The longest period a quota may have (one year).
pub const MAX_PERIOD: Duration = Duration::from_secs(366 * 24 * 3600);

/// A limit per period with an optional burst, enforced with GCRA (the algorithm `governor`
/// implements): requests are spread at one per *emission interval* (`period / limit`) and up
/// to `burst` may arrive at once. The burst defaults to the limit, so a fresh key may spend
/// its whole quota at once and then gets one request back every emission interval.
///
/// Constructors read as they are spoken: `Quota::per_second(10)` is **ten requests per
/// second** (tower_governor's `per_second(n)` means one request every `n` seconds, a
/// frequent misconfiguration). Zero limits, zero periods and zero bursts are refused when the
/// layer is built. The emission interval is kept to whole microseconds (the Redis store's
/// resolution), so both stores make the same decisions.
///
/// ```
/// use std::time::Duration;
/// use tower_shield::rate_limit::Quota;
///
/// let q = Quota::per_minute(100);
/// assert_eq!(q.emission_interval(), Duration::from_millis(600));
/// assert_eq!(q.burst_size(), 100);
/// assert_eq!(Quota::per_second(10).emission_interval(), Duration::from_millis(100));
/// assert!(Quota::per_minute(0).validate().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Quota {
    limit: u32,
    period: Duration,
    burst: Option<u32>,
}

impl Quota {
    /// `limit` requests per `period`.
    pub const fn new(limit: u32, period: Duration) -> Self {
        Self {
            limit,
            period,
            burst: None,
        }
    }

    /// `n` requests per second.
    pub const fn per_second(n: u32) -> Self {
        Self::new(n, Duration::from_secs(1))
    }

    /// `n` requests per minute.
    pub const fn per_minute(n: u32) -> Self {
        Self::new(n, Duration::from_secs(60))
    }

    /// `n` requests per hour.
    pub const fn per_hour(n: u32) -> Self {
        Self::new(n, Duration::from_secs(3600))
    }

    /// `n` requests per day.
    pub const fn per_day(n: u32) -> Self {
        Self::new(n, Duration::from_secs(86_400))
    }

    /// At most `burst` requests at once (default: the limit).
    #[must_use]
    pub const fn burst(mut self, burst: u32) -> Self {
        self.burst = Some(burst);
        self
    }

    /// The number of requests per period.
    pub const fn limit(&self) -> u32 {
        self.limit
    }

    /// The period.
    pub const fn period(&self) -> Duration {
        self.period
    }

    /// The burst: how many requests a fresh key may make at once.
    pub const fn burst_size(&self) -> u32 {
        match self.burst {
            Some(b) => b,
            None => self.limit,
        }
    }

    /// The time one request "costs": `period / limit`, rounded to whole microseconds (at
    /// least one).
    pub fn emission_interval(&self) -> Duration {
        Duration::from_micros(self.emission_micros())
    }

    pub(crate) fn emission_micros(&self) -> u64 {
        let period = u64::try_from(self.period.as_micros()).unwrap_or(u64::MAX);
        let limit = u64::from(self.limit.max(1));
        // Round to nearest, at least 1 µs.
        ((period + limit / 2) / limit).max(1)
    }

    pub(crate) fn emission_nanos(&self) -> u64 {
        self.emission_micros().saturating_mul(1_000)
    }

    /// The period in whole seconds, rounded up (the `w` of `RateLimit-Policy`).
    pub fn window_secs(&self) -> u64 {
        let secs = self.period.as_secs();
        if self.period.subsec_nanos() > 0 {
            secs + 1
        } else {
            secs.max(1)
        }
    }

    /// Checks the quota can be enforced: non-zero limit, burst and period, a period of at
    /// most [`MAX_PERIOD`], and an emission interval of at least one microsecond.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.limit == 0 {
            return Err(ConfigError::invalid(
                "quota",
                "the limit must be at least 1",
            ));
        }
        if self.burst == Some(0) {
            return Err(ConfigError::invalid(
                "quota",
                "the burst must be at least 1",
            ));
        }
        if self.period.is_zero() {
            return Err(ConfigError::invalid("quota", "the period must not be zero"));
        }
        if self.period > MAX_PERIOD {
            return Err(ConfigError::invalid(
                "quota",
                "the period is longer than a year",
            ));
        }
        if self.period.as_micros() < u128::from(self.limit) {
            return Err(ConfigError::invalid(
                "quota",
                "more than one request per microsecond cannot be enforced",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_second_means_n_per_second() {
        let q = Quota::per_second(4000);
        assert_eq!(q.emission_interval(), Duration::from_micros(250));
        assert_eq!(q.window_secs(), 1);
        assert_eq!(
            Quota::per_hour(1).emission_interval(),
            Duration::from_secs(3600)
        );
    }

    #[test]
    fn invalid_quotas_are_refused() {
        assert!(Quota::per_second(0).validate().is_err());
        assert!(Quota::new(1, Duration::ZERO).validate().is_err());
        assert!(Quota::per_second(10).burst(0).validate().is_err());
        assert!(Quota::new(10, Duration::from_nanos(5)).validate().is_err());
        assert!(Quota::new(1, MAX_PERIOD * 2).validate().is_err());
        assert!(Quota::per_minute(100).burst(20).validate().is_ok());
        assert_eq!(Quota::new(3, Duration::from_millis(1500)).window_secs(), 2);
    }
}
