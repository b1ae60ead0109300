//! [`FallbackStore`]: a primary store (Redis) answered for by another (memory) while it fails.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{Decision, RateLimitStore};
use crate::error::StoreError;
use crate::rate_limit::key::RateKey;
use crate::rate_limit::quota::Quota;
use crate::telemetry::{self, Counter};

/// A primary store backed by a fallback while the primary fails: the demo's "fall back to
/// per-process memory counters until Redis answers again".
///
/// - While healthy, every decision comes from the primary.
/// - The first failure or timeout switches to *degraded*: that request and the following
///   ones are decided by the fallback. A `tower_shield::rate_limit` warning is logged once
///   per switch and [`FallbackStats::switches`] counts them.
/// - While degraded, at most one request per probe interval (default 1 s) tries the primary
///   again; when it answers, the store switches back (an info event) by itself.
///
/// Limits kept by the fallback are per process, so during an outage N instances allow up to
/// N times the limit. Errors of the fallback itself reach the layer's
/// [`FailurePolicy`](super::FailurePolicy).
pub struct FallbackStore<P, F> {
    primary: P,
    fallback: F,
    state: Arc<State>,
}

struct State {
    degraded: AtomicBool,
    switches: AtomicU64,
    recoveries: AtomicU64,
    fallback_decisions: AtomicU64,
    last_probe: AtomicU64,
    probe_interval: Duration,
    epoch: Instant,
    fallback_counter: Counter,
}

/// What a [`FallbackStore`] has done, for metrics and health checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FallbackStats {
    /// Whether decisions currently come from the fallback.
    pub degraded: bool,
    /// How many times the store switched to the fallback.
    pub switches: u64,
    /// How many times it switched back to the primary.
    pub recoveries: u64,
    /// How many decisions the fallback made.
    pub fallback_decisions: u64,
}

impl<P: Clone, F: Clone> Clone for FallbackStore<P, F> {
    fn clone(&self) -> Self {
        Self {
            primary: self.primary.clone(),
            fallback: self.fallback.clone(),
            state: self.state.clone(),
        }
    }
}

impl<P: fmt::Debug, F: fmt::Debug> fmt::Debug for FallbackStore<P, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FallbackStore")
            .field("primary", &self.primary)
            .field("fallback", &self.fallback)
            .field("stats", &self.stats())
            .finish()
    }
}

impl<P, F> FallbackStore<P, F> {
    /// `primary`, answered for by `fallback` while it fails; probes the primary once a second.
    pub fn new(primary: P, fallback: F) -> Self {
        Self::with_probe_interval(primary, fallback, Duration::from_secs(1))
    }

    /// Same, probing the primary at most once per `probe_interval` while degraded.
    pub fn with_probe_interval(primary: P, fallback: F, probe_interval: Duration) -> Self {
        Self {
            primary,
            fallback,
            state: Arc::new(State {
                degraded: AtomicBool::new(false),
                switches: AtomicU64::new(0),
                recoveries: AtomicU64::new(0),
                fallback_decisions: AtomicU64::new(0),
                last_probe: AtomicU64::new(0),
                probe_interval,
                epoch: Instant::now(),
                fallback_counter: telemetry::counter(
                    telemetry::names::RATELIMIT_FALLBACK_DECISIONS,
                    &[],
                ),
            }),
        }
    }

    /// The counters (shared by every clone).
    pub fn stats(&self) -> FallbackStats {
        FallbackStats {
            degraded: self.state.degraded.load(Ordering::Relaxed),
            switches: self.state.switches.load(Ordering::Relaxed),
            recoveries: self.state.recoveries.load(Ordering::Relaxed),
            fallback_decisions: self.state.fallback_decisions.load(Ordering::Relaxed),
        }
    }

    /// The primary store.
    pub fn primary(&self) -> &P {
        &self.primary
    }

    /// The fallback store.
    pub fn fallback(&self) -> &F {
        &self.fallback
    }
}

impl State {
    fn probe_due(&self) -> bool {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = self.last_probe.load(Ordering::Relaxed);
        let interval = u64::try_from(self.probe_interval.as_millis()).unwrap_or(u64::MAX);
        now.saturating_sub(last) >= interval
            && self
                .last_probe
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }

    fn degrade(&self, err: &StoreError) {
        if !self.degraded.swap(true, Ordering::AcqRel) {
            self.switches.fetch_add(1, Ordering::Relaxed);
            let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
            self.last_probe.store(now, Ordering::Relaxed);
            tracing::warn!(
                target: "tower_shield::security",
                event = "store.unavailable",
                store = "rate_limit",
                error = %err,
                "rate-limit store failed; decisions fall back to the local store"
            );
        }
    }

    fn recover(&self) {
        if self.degraded.swap(false, Ordering::AcqRel) {
            self.recoveries.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                target: "tower_shield::rate_limit",
                "rate-limit store answers again; fallback ended"
            );
        }
    }
}

/// A decision with this level's choice in the lowest bit of its route (the levels inside
/// shifted up).
fn routed(decision: Decision, by_fallback: bool) -> Decision {
    Decision {
        route: (decision.route << 1) | u8::from(by_fallback),
        ..decision
    }
}

impl<P, F> RateLimitStore for FallbackStore<P, F>
where
    P: RateLimitStore,
    F: RateLimitStore,
{
    type Limiter = (P::Limiter, F::Limiter);
    type Future = Pin<Box<dyn Future<Output = Result<Decision, StoreError>> + Send>>;

    fn limiter(&self, scope: &str, quota: &Quota) -> Self::Limiter {
        (
            self.primary.limiter(scope, quota),
            self.fallback.limiter(scope, quota),
        )
    }

    fn check(&self, limiter: &Self::Limiter, key: &RateKey, cost: u32) -> Self::Future {
        let state = self.state.clone();
        let try_primary = !state.degraded.load(Ordering::Acquire) || state.probe_due();
        let primary = try_primary.then(|| self.primary.check(&limiter.0, key, cost));
        let fallback = self.fallback.clone();
        let fallback_limiter = limiter.1.clone();
        let key = key.clone();
        Box::pin(async move {
            if let Some(primary) = primary {
                match primary.await {
                    Ok(decision) => {
                        state.recover();
                        return Ok(routed(decision, false));
                    }
                    Err(err) => state.degrade(&err),
                }
            }
            state.fallback_decisions.fetch_add(1, Ordering::Relaxed);
            state.fallback_counter.increment(1);
            let decision = fallback.check(&fallback_limiter, &key, cost).await?;
            Ok(routed(decision, true))
        })
    }

    /// Given back to the store that charged (the decision says which), whichever decides
    /// now: a refund never lifts a budget the other store kept.
    fn refund(
        &self,
        limiter: &Self::Limiter,
        key: &RateKey,
        cost: u32,
        charged: &Decision,
    ) -> Self::Future {
        let inner = Decision {
            route: charged.route >> 1,
            ..*charged
        };
        if charged.route & 1 == 1 {
            Box::pin(self.fallback.refund(&limiter.1, key, cost, &inner))
        } else {
            Box::pin(self.primary.refund(&limiter.0, key, cost, &inner))
        }
    }
}
