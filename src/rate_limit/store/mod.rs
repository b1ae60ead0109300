//! Where limits keep their state: the [`RateLimitStore`] trait, its [`Decision`], and the
//! stores: [`MemoryStore`] (per process), `RedisStore` (shared, feature `redis`) and
//! [`FallbackStore`] (a primary store backed by another while the primary fails).
//!
//! The algorithm is the same everywhere (GCRA, see [`Quota`]); a store only keeps each key's
//! *theoretical arrival time* and applies the decision atomically. Both stores return the
//! same [`Decision`] for the same sequence of calls: `tests/it/rate_limit_conformance.rs` runs
//! one suite against both.

use std::future::Future;
use std::time::Duration;

use crate::error::StoreError;

use super::key::RateKey;
use super::quota::Quota;

mod fallback;
mod memory;
#[cfg(feature = "redis")]
mod redis;

pub use fallback::{FallbackStats, FallbackStore};
pub use memory::{
    DEFAULT_MAX_KEYS, MIN_MAX_KEYS, MemoryLimiter, MemoryStore, MemoryStoreBuilder,
    OVERFLOW_BUCKETS,
};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::{
    DEFAULT_DENY_CACHE, GCRA_SCRIPT, RedisCheck, RedisLimiter, RedisStore, RedisStoreBuilder,
};

/// One rate-limit decision. Stores make one with [`Decision::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decision {
    /// Whether the request may go on (and was charged).
    pub allowed: bool,
    /// The quota's limit (requests per period).
    pub limit: u32,
    /// How many more requests of cost 1 would be allowed right now.
    pub remaining: u32,
    /// How long until the key's budget is whole again.
    pub reset: Duration,
    /// When refused: how long until the same request would be allowed (zero when allowed).
    pub retry_after: Duration,
    /// Which store of a [`FallbackStore`] chain made the decision, one bit per level (0:
    /// the primary), so that a refund goes back to the store that charged.
    pub(crate) route: u8,
}

impl Decision {
    /// A decision, as a store answers it.
    pub const fn new(
        allowed: bool,
        limit: u32,
        remaining: u32,
        reset: Duration,
        retry_after: Duration,
    ) -> Self {
        Self {
            allowed,
            limit,
            remaining,
            reset,
            retry_after,
            route: 0,
        }
    }
}

/// A place that keeps rate-limit state.
///
/// A store hands out one [`Limiter`](Self::Limiter) per *scope* (a policy and tier) and
/// quota when a layer is built, then answers [`check`](Self::check) calls: one decision per
/// call, applied atomically. A `cost` of 0 asks without charging (a *peek*: would a request
/// of cost 1 be allowed?).
pub trait RateLimitStore: Clone + Send + Sync + 'static {
    /// The per-scope handle a layer keeps.
    type Limiter: Clone + Send + Sync + 'static;
    /// The future of one decision. The memory store answers with `std::future::Ready`.
    type Future: Future<Output = Result<Decision, StoreError>> + Send + 'static;

    /// The limiter for one scope (policy name and tier) and quota.
    fn limiter(&self, scope: &str, quota: &Quota) -> Self::Limiter;

    /// Decides on one request of `cost` units for `key` (0: peek without charging).
    fn check(&self, limiter: &Self::Limiter, key: &RateKey, cost: u32) -> Self::Future;

    /// Gives back `cost` units that an allowed [`check`](Self::check) charged to `key`,
    /// atomically: count-only policies reserve a request's cost before the handler runs and
    /// give it back when the answer is not a counted failure. `charged` is the decision of
    /// that check (a store made of others, like [`FallbackStore`], reads from it which one
    /// charged). The budget never grows past its burst (a refund of more than was used
    /// leaves the key whole). Answers the key's state after the refund, as an allowed
    /// [`Decision`].
    fn refund(
        &self,
        limiter: &Self::Limiter,
        key: &RateKey,
        cost: u32,
        charged: &Decision,
    ) -> Self::Future;

    /// The same decision, synchronously, for stores that never wait (the memory store):
    /// the layer then decides inside `call`, without parking the request in its future.
    /// `None` (the default) means "use [`check`](Self::check)".
    fn check_now(
        &self,
        limiter: &Self::Limiter,
        key: &RateKey,
        cost: u32,
    ) -> Option<Result<Decision, StoreError>> {
        let _ = (limiter, key, cost);
        None
    }
}

/// What a layer does when its store fails or times out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Let the request through without rate-limit headers (a warning is logged once per
    /// burst of failures).
    FailOpen,
    /// Refuse with 503 (`ProblemType::UNAVAILABLE`). The default: deny by default.
    #[default]
    FailClosed,
}

/// The GCRA parameters of a quota, in one time unit (nanoseconds in memory, microseconds in
/// Redis).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gcra {
    /// The emission interval.
    pub(crate) t: u64,
    /// The whole budget: `t * burst`.
    pub(crate) cap: u64,
    pub(crate) limit: u32,
}

/// The outcome of one GCRA step: the decision in the store's unit, and the new TAT to store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Step {
    pub(crate) allowed: bool,
    pub(crate) remaining: u32,
    pub(crate) reset: u64,
    pub(crate) retry_after: u64,
    pub(crate) new_tat: Option<u64>,
}

impl Gcra {
    pub(crate) fn nanos(quota: &Quota) -> Self {
        let t = quota.emission_nanos();
        Self {
            t,
            cap: t.saturating_mul(u64::from(quota.burst_size())),
            limit: quota.limit(),
        }
    }

    /// The same algorithm as `GCRA_SCRIPT`, step for step.
    #[inline]
    pub(crate) fn step(&self, stored_tat: Option<u64>, now: u64, cost: u32) -> Step {
        let t = self.t.max(1);
        let cap = self.cap;
        let tat = stored_tat.map_or(now, |tat| tat.max(now));
        let used = tat - now;
        let remaining = |used: u64| u32::try_from(cap.saturating_sub(used) / t).unwrap_or(u32::MAX);
        if cost == 0 {
            let allowed = used.saturating_add(t) <= cap;
            return Step {
                allowed,
                remaining: remaining(used),
                reset: used,
                retry_after: if allowed { 0 } else { used + t - cap },
                new_tat: None,
            };
        }
        let inc = t.saturating_mul(u64::from(cost));
        if inc > cap {
            return Step {
                allowed: false,
                remaining: remaining(used),
                reset: used,
                retry_after: cap,
                new_tat: None,
            };
        }
        let new_used = used.saturating_add(inc);
        if new_used <= cap {
            Step {
                allowed: true,
                remaining: remaining(new_used),
                reset: new_used,
                retry_after: 0,
                new_tat: Some(now + new_used),
            }
        } else {
            Step {
                allowed: false,
                remaining: remaining(used),
                reset: used,
                retry_after: new_used - cap,
                new_tat: None,
            }
        }
    }
}

impl Gcra {
    /// A refund of `cost` units: the key's use shrinks by `cost` emission intervals, never
    /// below zero (a whole budget). `new_tat` is `None` when nothing was stored (nothing to
    /// give back) and `Some(now)` when the key is whole again. The same as `GCRA_SCRIPT`
    /// with a negative cost.
    #[inline]
    pub(crate) fn refund(&self, stored_tat: Option<u64>, now: u64, cost: u32) -> Step {
        let t = self.t.max(1);
        let used = stored_tat.map_or(0, |tat| tat.saturating_sub(now));
        let new_used = used.saturating_sub(t.saturating_mul(u64::from(cost)));
        Step {
            allowed: true,
            remaining: u32::try_from(self.cap.saturating_sub(new_used) / t).unwrap_or(u32::MAX),
            reset: new_used,
            retry_after: 0,
            new_tat: stored_tat.map(|_| now + new_used),
        }
    }
}

impl Step {
    #[inline]
    pub(crate) fn decision(&self, limit: u32, unit: fn(u64) -> Duration) -> Decision {
        Decision::new(
            self.allowed,
            limit,
            self.remaining,
            unit(self.reset),
            // Zero whenever allowed: no conversion on the common path.
            if self.retry_after == 0 {
                Duration::ZERO
            } else {
                unit(self.retry_after)
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gcra_spends_the_burst_then_refills() {
        let g = Gcra::nanos(&Quota::per_second(2));
        assert_eq!(g.t, 500_000_000);
        let s1 = g.step(None, 0, 1);
        assert!(s1.allowed);
        assert_eq!(s1.remaining, 1);
        let s2 = g.step(s1.new_tat, 0, 1);
        assert!(s2.allowed);
        assert_eq!(s2.remaining, 0);
        assert_eq!(s2.reset, 1_000_000_000);
        let s3 = g.step(s2.new_tat, 100, 1);
        assert!(!s3.allowed);
        assert_eq!(s3.retry_after, 500_000_000 - 100);
        let peek = g.step(s2.new_tat, 500_000_000, 0);
        assert!(peek.allowed);
        assert_eq!(peek.new_tat, None);
        let heavy = g.step(None, 0, 3);
        assert!(!heavy.allowed);
        let two = g.step(None, 0, 2);
        assert!(two.allowed);
        assert_eq!(two.remaining, 0);
    }

    #[test]
    fn gcra_refunds_never_exceed_the_burst() {
        let g = Gcra::nanos(&Quota::per_second(2));
        let spent = g.step(g.step(None, 0, 1).new_tat, 0, 1);
        assert_eq!(spent.remaining, 0);
        let back = g.refund(spent.new_tat, 0, 1);
        assert!(back.allowed);
        assert_eq!((back.remaining, back.new_tat), (1, Some(500_000_000)));
        // More than was used: whole again, not more.
        let whole = g.refund(back.new_tat, 0, 5);
        assert_eq!(
            (whole.remaining, whole.reset, whole.new_tat),
            (2, 0, Some(0))
        );
        // Time has refilled part of it meanwhile.
        let later = g.refund(spent.new_tat, 400_000_000, 1);
        assert_eq!(later.new_tat, Some(500_000_000));
        // Nothing stored: nothing to give back.
        assert_eq!(g.refund(None, 7, 1).new_tat, None);
        assert_eq!(g.refund(None, 7, 1).remaining, 2);
    }
}
