//! [`Policy`]: a named limit, its quota per tier, its key, and how requests are charged;
//! [`Route`]: which requests a per-route rule applies to; [`Penalty`].

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use http::request::Parts;

use super::key::KeyBy;
use super::quota::Quota;
use crate::error::ConfigError;
use crate::extensions::Principal;

/// The longest policy name (it appears in response headers).
pub const MAX_POLICY_NAME_LEN: usize = 64;

/// The quota of one tier: a limit, or none at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TierQuota {
    /// Limited by this quota.
    Limited(Quota),
    /// Not limited (no store call, no rate-limit fields).
    Unlimited,
}

type TierFn = dyn Fn(&Parts) -> Option<Arc<str>> + Send + Sync;
type CostFn = dyn Fn(&Parts) -> u32 + Send + Sync;
type SkipFn = dyn Fn(&mut Parts) -> bool + Send + Sync;

/// A named rate limit.
///
/// The name appears in the `RateLimit-Policy` / `RateLimit` fields (printable ASCII without
/// `"` or `\`, at most [`MAX_POLICY_NAME_LEN`] bytes). The quota is chosen per request:
///
/// - a request with a [`Principal`] (set by `JwtAuthLayer`) whose role has a
///   [`tier`](Self::tier) gets that tier's quota (or none, for an
///   [`unlimited_tier`](Self::unlimited_tier));
/// - a request without a `Principal` gets the [`anonymous`](Self::anonymous) quota when set;
/// - everything else gets the default [`quota`](Self::quota).
///
/// [`tier_by`](Self::tier_by) replaces the role lookup with a closure.
///
/// ```
/// use tower_shield::rate_limit::{KeyBy, Policy, Quota};
///
/// let api = Policy::named("api")
///     .quota(Quota::per_minute(100))
///     .tier("premium", Quota::per_minute(1_000))
///     .unlimited_tier("admin")
///     .anonymous(Quota::per_minute(10))
///     .key(KeyBy::subject());
/// # let _ = api;
/// ```
#[derive(Clone)]
#[must_use]
pub struct Policy {
    pub(crate) name: Arc<str>,
    pub(crate) default: Option<TierQuota>,
    pub(crate) anonymous: Option<TierQuota>,
    pub(crate) tiers: Vec<(Arc<str>, TierQuota)>,
    pub(crate) tier_by: Option<Arc<TierFn>>,
    pub(crate) key: KeyBy,
    pub(crate) cost: u32,
    pub(crate) cost_fn: Option<Arc<CostFn>>,
    pub(crate) count_only: Option<Vec<StatusCode>>,
    pub(crate) penalty: Option<Penalty>,
    pub(crate) skip_if: Option<Arc<SkipFn>>,
}

impl fmt::Debug for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("name", &self.name)
            .field("default", &self.default)
            .field("anonymous", &self.anonymous)
            .field("tiers", &self.tiers)
            .field("key", &self.key)
            .field("cost", &self.cost)
            .field("count_only", &self.count_only)
            .field("penalty", &self.penalty)
            .finish_non_exhaustive()
    }
}

impl Policy {
    /// A policy with this name, keyed by client IP, each request costing 1. Give it a
    /// [`quota`](Self::quota).
    pub fn named(name: impl Into<Arc<str>>) -> Self {
        Self {
            name: name.into(),
            default: None,
            anonymous: None,
            tiers: Vec::new(),
            tier_by: None,
            key: KeyBy::client_ip(),
            cost: 1,
            cost_fn: None,
            count_only: None,
            penalty: None,
            skip_if: None,
        }
    }

    /// The default quota.
    pub fn quota(mut self, quota: Quota) -> Self {
        self.default = Some(TierQuota::Limited(quota));
        self
    }

    /// The quota for requests whose tier (by default the `Principal`'s role) is `tier`.
    pub fn tier(mut self, tier: impl Into<Arc<str>>, quota: Quota) -> Self {
        self.tiers.push((tier.into(), TierQuota::Limited(quota)));
        self
    }

    /// Requests of this tier are not limited.
    pub fn unlimited_tier(mut self, tier: impl Into<Arc<str>>) -> Self {
        self.tiers.push((tier.into(), TierQuota::Unlimited));
        self
    }

    /// The quota for requests without a `Principal`.
    pub fn anonymous(mut self, quota: Quota) -> Self {
        self.anonymous = Some(TierQuota::Limited(quota));
        self
    }

    /// Chooses the tier with a closure instead of the `Principal`'s role (`None`: the
    /// default quota, or the anonymous one when no `Principal` is present).
    pub fn tier_by<F>(mut self, f: F) -> Self
    where
        F: Fn(&Parts) -> Option<Arc<str>> + Send + Sync + 'static,
    {
        self.tier_by = Some(Arc::new(f));
        self
    }

    /// What the limit counts by (default: the client IP).
    pub fn key(mut self, key: KeyBy) -> Self {
        self.key = key;
        self
    }

    /// Each request costs `units` (default 1).
    pub fn cost(mut self, units: u32) -> Self {
        self.cost = units;
        self
    }

    /// Each request costs what the closure says (0 is counted as 1).
    pub fn cost_fn<F>(mut self, f: F) -> Self
    where
        F: Fn(&Parts) -> u32 + Send + Sync + 'static,
    {
        self.cost_fn = Some(Arc::new(f));
        self
    }

    /// Count-only-failures mode: only answers meaning one of these statuses are charged
    /// (e.g. `[401]` for failed logins).
    ///
    /// Exact under concurrency: each request *reserves* its cost before the inner service
    /// runs (refused with 429 when the budget cannot cover it) and the reservation is given
    /// back atomically when the answer is not counted, so N simultaneous failures against a
    /// budget of 5 reach the inner service at most 5 times. A counted answer costs one store
    /// call (the reservation), an uncounted one two. What counts is what the answer means
    /// ([`status_meant`](crate::refusal::status_meant)), not its form: a refusal rendered
    /// for a gRPC client (HTTP 200, `grpc-status: 16`) counts as a 401.
    pub fn count_only(mut self, statuses: impl IntoIterator<Item = StatusCode>) -> Self {
        self.count_only = Some(statuses.into_iter().collect());
        self
    }

    /// An escalating lock-out for keys that keep hitting the limit.
    pub fn penalty(mut self, penalty: Penalty) -> Self {
        self.penalty = Some(penalty);
        self
    }

    /// Requests for which the closure returns `true` are not limited by this policy.
    pub fn skip_if<F>(mut self, f: F) -> Self
    where
        F: Fn(&Parts) -> bool + Send + Sync + 'static,
    {
        self.skip_if = Some(Arc::new(move |parts: &mut Parts| f(parts)));
        self
    }

    /// Like [`skip_if`](Self::skip_if), with the request parts mutable: the closure may
    /// leave something in the extensions for the layers and handler after it (e.g. what it
    /// computed to decide, so that a later layer does not compute it again). It runs once
    /// per request this policy applies to, after the route is matched and before the key is
    /// read; whatever it changes in the method, URI or headers is what the key, the tier and
    /// the inner service see.
    pub fn skip_if_mut<F>(mut self, f: F) -> Self
    where
        F: Fn(&mut Parts) -> bool + Send + Sync + 'static,
    {
        self.skip_if = Some(Arc::new(f));
        self
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.name.is_empty()
            || self.name.len() > MAX_POLICY_NAME_LEN
            || self
                .name
                .bytes()
                .any(|b| !(0x20..0x7f).contains(&b) || b == b'"' || b == b'\\')
        {
            return Err(ConfigError::invalid(
                "policy name",
                "1 to 64 printable ASCII characters without `\"` or `\\`",
            ));
        }
        if self.default.is_none() {
            return Err(ConfigError::Missing {
                setting: "policy quota",
            });
        }
        for quota in self
            .default
            .iter()
            .chain(self.anonymous.iter())
            .chain(self.tiers.iter().map(|(_, q)| q))
        {
            if let TierQuota::Limited(q) = quota {
                q.validate()?;
            }
        }
        if self.cost == 0 {
            return Err(ConfigError::invalid("cost", "a request costs at least 1"));
        }
        if let Some(statuses) = &self.count_only
            && statuses.is_empty()
        {
            return Err(ConfigError::invalid(
                "count_only",
                "at least one status must be charged",
            ));
        }
        if let Some(p) = &self.penalty {
            p.validate()?;
        }
        Ok(())
    }

    /// The tier index for a request: `Some(i)` for `tiers[i]`, `None` for default/anonymous.
    #[inline]
    pub(crate) fn select_tier(&self, parts: &Parts) -> TierChoice {
        // One quota for everyone: no closure to run, no `Principal` to look up.
        if self.tiers.is_empty() && self.anonymous.is_none() && self.tier_by.is_none() {
            return TierChoice::Default;
        }
        let principal = parts.extensions.get::<Principal>();
        let tier = match &self.tier_by {
            Some(f) => f(parts),
            None => principal.and_then(|p| p.role.clone()),
        };
        if let Some(tier) = tier
            && let Some(i) = self.tiers.iter().position(|(name, _)| **name == *tier)
        {
            return TierChoice::Tier(i);
        }
        if principal.is_none() && self.anonymous.is_some() {
            return TierChoice::Anonymous;
        }
        TierChoice::Default
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TierChoice {
    Default,
    Anonymous,
    Tier(usize),
}

/// An escalating lock-out for keys that keep hitting their limit: a refusal locks the key
/// out for `base`; each request made during a lock-out (an instant retry) is refused and
/// doubles it, up to `max`. A client that waits for `Retry-After` and is then allowed by the
/// store is forgiven (the next lock-out starts at `base` again).
///
/// Lock-outs are kept per process (by the layer), even with a shared store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Penalty {
    pub(crate) base: Duration,
    pub(crate) max: Duration,
}

impl Penalty {
    /// Lock-outs of `base`, `2 × base`, `4 × base`… up to `max`.
    pub const fn doubling(base: Duration, max: Duration) -> Self {
        Self { base, max }
    }

    /// The lock-out after `strikes` refusals (1 = first).
    pub fn lockout(&self, strikes: u32) -> Duration {
        let factor = 1u32
            .checked_shl(strikes.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.base.is_zero() || self.max < self.base {
            return Err(ConfigError::invalid(
                "penalty",
                "the base must be positive and not above the maximum",
            ));
        }
        Ok(())
    }
}

type RouteFn = dyn Fn(&Parts) -> bool + Send + Sync;

/// Which requests a per-route rule applies to.
#[derive(Clone)]
pub struct Route {
    kind: RouteKind,
}

#[derive(Clone)]
enum RouteKind {
    Prefix(Arc<str>),
    Exact(Arc<str>),
    Func(Arc<RouteFn>),
}

impl fmt::Debug for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            RouteKind::Prefix(p) => write!(f, "Route::prefix({p:?})"),
            RouteKind::Exact(p) => write!(f, "Route::exact({p:?})"),
            RouteKind::Func(_) => f.write_str("Route::from_fn(..)"),
        }
    }
}

impl Route {
    /// Paths starting with `prefix` (e.g. `/auth/`).
    pub fn prefix(prefix: impl Into<Arc<str>>) -> Self {
        Self {
            kind: RouteKind::Prefix(prefix.into()),
        }
    }

    /// Exactly this path.
    pub fn exact(path: impl Into<Arc<str>>) -> Self {
        Self {
            kind: RouteKind::Exact(path.into()),
        }
    }

    /// Requests for which the closure returns `true` (it sees method, path, headers and
    /// extensions).
    pub fn from_fn<F>(f: F) -> Self
    where
        F: Fn(&Parts) -> bool + Send + Sync + 'static,
    {
        Self {
            kind: RouteKind::Func(Arc::new(f)),
        }
    }

    pub(crate) fn matches(&self, parts: &Parts) -> bool {
        match &self.kind {
            RouteKind::Prefix(p) => parts.uri.path().starts_with(&**p),
            RouteKind::Exact(p) => parts.uri.path() == &**p,
            RouteKind::Func(f) => f(parts),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn penalty_doubles_up_to_max() {
        let p = Penalty::doubling(Duration::from_secs(1), Duration::from_secs(10));
        assert_eq!(p.lockout(1), Duration::from_secs(1));
        assert_eq!(p.lockout(3), Duration::from_secs(4));
        assert_eq!(p.lockout(5), Duration::from_secs(10));
        assert_eq!(p.lockout(100), Duration::from_secs(10));
    }

    #[test]
    fn policies_are_validated() {
        assert!(Policy::named("api").validate().is_err());
        assert!(
            Policy::named("a\"b")
                .quota(Quota::per_second(1))
                .validate()
                .is_err()
        );
        assert!(
            Policy::named("api")
                .quota(Quota::per_second(0))
                .validate()
                .is_err()
        );
        assert!(
            Policy::named("api")
                .quota(Quota::per_second(1))
                .cost(0)
                .validate()
                .is_err()
        );
        assert!(
            Policy::named("api")
                .quota(Quota::per_second(1))
                .validate()
                .is_ok()
        );
    }
}
