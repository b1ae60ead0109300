//! [`RateLimitLayer`] and its builder.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use dashmap::DashMap;
use http::HeaderValue;
use http::request::Parts;
use tower_layer::Layer;

use super::headers::{HeaderMode, policy_member, status_prefix};
use super::key::RateKey;
use super::policy::{Penalty, Policy, Route, TierChoice, TierQuota};
use super::service::RateLimitService;
use super::store::{FailurePolicy, RateLimitStore};
use crate::client_ip::{ClientIpResolver, TrustedProxies};
use crate::clock::{Clock, SystemClock};
use crate::error::ConfigError;
use crate::log_gate::LogGate;
use crate::telemetry::{self, Counter};

/// The most keys a policy's lock-out table holds.
const MAX_PENALTY_KEYS: usize = 100_000;

/// Rate limiting by IP, user, API key or anything else, with tiers, per-route rules,
/// count-only-failures, penalties and shadow mode, on a memory or Redis store.
///
/// See the [module docs](super) for an example and what the layer reads, writes and refuses.
#[must_use]
pub struct RateLimitLayer<St: RateLimitStore> {
    config: Arc<Config<St>>,
}

impl<St: RateLimitStore> Clone for RateLimitLayer<St> {
    fn clone(&self) -> Self {
        Self {
            config: self.config.clone(),
        }
    }
}

impl<St: RateLimitStore + fmt::Debug> fmt::Debug for RateLimitLayer<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("store", &self.config.store)
            .field("rules", &self.config.policies.len())
            .field("shadow", &self.config.shadow)
            .field("failure", &self.config.failure)
            .field("headers", &self.config.mode)
            .finish_non_exhaustive()
    }
}

impl<St: RateLimitStore> RateLimitLayer<St> {
    /// A builder on this store.
    pub fn builder(store: St) -> RateLimitLayerBuilder<St> {
        RateLimitLayerBuilder {
            store,
            rules: Vec::new(),
            default: None,
            resolver: ClientIpResolver::default(),
            mode: HeaderMode::default(),
            shadow: false,
            failure: FailurePolicy::default(),
            clock: Arc::new(SystemClock),
            extensions: true,
        }
    }

    /// The layer's counters (shared by every clone and service).
    pub fn stats(&self) -> RateLimitStats {
        self.config.stats.snapshot()
    }

    /// The store.
    pub fn store(&self) -> &St {
        &self.config.store
    }
}

impl<S, St: RateLimitStore> Layer<S> for RateLimitLayer<St> {
    type Service = RateLimitService<S, St>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService::new(inner, self.config.clone())
    }
}

/// Builds a [`RateLimitLayer`].
#[must_use]
pub struct RateLimitLayerBuilder<St: RateLimitStore> {
    store: St,
    rules: Vec<(Route, Policy)>,
    default: Option<Policy>,
    resolver: ClientIpResolver,
    mode: HeaderMode,
    shadow: bool,
    failure: FailurePolicy,
    clock: Arc<dyn Clock>,
    extensions: bool,
}

impl<St: RateLimitStore + fmt::Debug> fmt::Debug for RateLimitLayerBuilder<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayerBuilder")
            .field("store", &self.store)
            .field("rules", &self.rules)
            .field("default", &self.default)
            .finish_non_exhaustive()
    }
}

impl<St: RateLimitStore> RateLimitLayerBuilder<St> {
    /// The policy for requests no [`rule`](Self::rule) matches. Without one, such requests
    /// pass unlimited.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.default = Some(policy);
        self
    }

    /// A per-route policy; rules are tried in order, the first match applies.
    pub fn rule(mut self, route: Route, policy: Policy) -> Self {
        self.rules.push((route, policy));
        self
    }

    /// Trusts forwarding headers from these proxies when finding the client IP.
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.resolver = self.resolver.with_trusted_proxies(proxies);
        self
    }

    /// How the client IP is found (trusted proxies, the forwarding header they set, IPv6
    /// grouping).
    pub fn client_ip(mut self, resolver: ClientIpResolver) -> Self {
        self.resolver = resolver;
        self
    }

    /// Which rate-limit fields responses carry (default: the IETF ones).
    pub fn headers(mut self, mode: HeaderMode) -> Self {
        self.mode = mode;
        self
    }

    /// Shadow mode: count, log and send the fields, but refuse nothing.
    pub fn shadow(mut self, shadow: bool) -> Self {
        self.shadow = shadow;
        self
    }

    /// What to do when the store fails (default: fail closed with 503).
    pub fn on_store_error(mut self, policy: FailurePolicy) -> Self {
        self.failure = policy;
        self
    }

    /// Whether a request that goes on carries what this layer found in its extensions
    /// (default: yes): the [`ClientIp`](crate::client_ip::ClientIp) it resolved (when no
    /// layer further out did) and the [`RateLimitStatus`](super::RateLimitStatus) of the
    /// decision. `false` inserts nothing, like tower_governor, and saves two small
    /// allocations per request, for services where no handler, log or inner layer reads them
    /// (an inner layer that needs the client IP then resolves it again). Nothing else
    /// changes: keys, decisions, fields and refusals are the same.
    pub fn request_extensions(mut self, insert: bool) -> Self {
        self.extensions = insert;
        self
    }

    /// The clock for lock-outs (default: the system clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Validates every policy and asks the store for one limiter per policy tier.
    pub fn build(self) -> Result<RateLimitLayer<St>, ConfigError> {
        let mut policies = Vec::with_capacity(self.rules.len() + 1);
        let mut routes = Vec::with_capacity(self.rules.len());
        let mut names = Vec::new();
        for (route, policy) in self.rules {
            routes.push(route);
            policies.push(compile(&self.store, policy, &mut names)?);
        }
        let has_default = self.default.is_some();
        if let Some(policy) = self.default {
            policies.push(compile(&self.store, policy, &mut names)?);
        }
        if policies.is_empty() {
            return Err(ConfigError::Missing { setting: "policy" });
        }
        Ok(RateLimitLayer {
            config: Arc::new(Config {
                store: self.store,
                routes,
                policies,
                has_default,
                resolver: self.resolver,
                mode: self.mode,
                shadow: self.shadow,
                failure: self.failure,
                clock: self.clock,
                extensions: self.extensions,
                stats: Stats::default(),
                error_log: LogGate::new(),
            }),
        })
    }
}

fn compile<St: RateLimitStore>(
    store: &St,
    policy: Policy,
    names: &mut Vec<Arc<str>>,
) -> Result<CompiledPolicy<St>, ConfigError> {
    policy.validate()?;
    if names.contains(&policy.name) {
        return Err(ConfigError::invalid(
            "policy name",
            format!("`{}` is used twice in one layer", policy.name),
        ));
    }
    names.push(policy.name.clone());
    let tier = |label: &str, quota: &TierQuota| match quota {
        TierQuota::Unlimited => Compiled::Unlimited,
        TierQuota::Limited(q) => Compiled::Limited {
            limiter: store.limiter(&format!("{}/{label}", policy.name), q),
            policy_field: policy_member(&policy.name, q.limit(), q.window_secs()),
        },
    };
    let default = policy
        .default
        .as_ref()
        .map_or(Compiled::Unlimited, |q| tier("", q));
    let anonymous = policy.anonymous.as_ref().map(|q| tier("~anonymous", q));
    let tiers = policy.tiers.iter().map(|(name, q)| tier(name, q)).collect();
    let penalties = policy.penalty.map(|p| PenaltyBox {
        penalty: p,
        keys: DashMap::new(),
    });
    Ok(CompiledPolicy {
        status_prefix: status_prefix(&policy.name),
        counters: PolicyCounters::new(&policy.name),
        policy,
        default,
        anonymous,
        tiers,
        penalties,
    })
}

pub(crate) struct Config<St: RateLimitStore> {
    pub(crate) store: St,
    pub(crate) routes: Vec<Route>,
    /// One per route, then the default one when `has_default`.
    pub(crate) policies: Vec<CompiledPolicy<St>>,
    pub(crate) has_default: bool,
    pub(crate) resolver: ClientIpResolver,
    pub(crate) mode: HeaderMode,
    pub(crate) shadow: bool,
    pub(crate) failure: FailurePolicy,
    pub(crate) clock: Arc<dyn Clock>,
    /// Whether `ClientIp` and `RateLimitStatus` are inserted into requests that go on.
    pub(crate) extensions: bool,
    pub(crate) stats: Stats,
    pub(crate) error_log: LogGate,
}

impl<St: RateLimitStore> Config<St> {
    pub(crate) fn select(&self, parts: &Parts) -> Option<usize> {
        if let Some(i) = self.routes.iter().position(|r| r.matches(parts)) {
            return Some(i);
        }
        self.has_default.then_some(self.routes.len())
    }

    pub(crate) fn now_nanos(&self) -> u64 {
        self.clock
            .now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
}

pub(crate) struct CompiledPolicy<St: RateLimitStore> {
    pub(crate) policy: Policy,
    /// `"name";r=`, the start of every `RateLimit` member of this policy.
    pub(crate) status_prefix: Box<[u8]>,
    pub(crate) default: Compiled<St>,
    pub(crate) anonymous: Option<Compiled<St>>,
    pub(crate) tiers: Vec<Compiled<St>>,
    pub(crate) penalties: Option<PenaltyBox>,
    pub(crate) counters: PolicyCounters,
}

/// The decision counters of one policy (`tower_shield_ratelimit_decisions_total`).
pub(crate) struct PolicyCounters {
    pub(crate) allowed: Counter,
    pub(crate) limited: Counter,
    pub(crate) shadow_limited: Counter,
    pub(crate) store_error: Counter,
}

impl PolicyCounters {
    fn new(policy: &str) -> Self {
        let outcome = |outcome| {
            telemetry::counter(
                telemetry::names::RATELIMIT_DECISIONS,
                &[("policy", policy), ("outcome", outcome)],
            )
        };
        Self {
            allowed: outcome("allowed"),
            limited: outcome("limited"),
            shadow_limited: outcome("shadow_limited"),
            store_error: outcome("store_error"),
        }
    }
}

impl<St: RateLimitStore> CompiledPolicy<St> {
    pub(crate) fn tier(&self, choice: TierChoice) -> &Compiled<St> {
        match choice {
            TierChoice::Default => &self.default,
            TierChoice::Anonymous => self.anonymous.as_ref().unwrap_or(&self.default),
            TierChoice::Tier(i) => self.tiers.get(i).unwrap_or(&self.default),
        }
    }
}

pub(crate) enum Compiled<St: RateLimitStore> {
    Limited {
        limiter: St::Limiter,
        policy_field: Option<HeaderValue>,
    },
    Unlimited,
}

/// Lock-outs of one policy: key id → (strikes, locked until, unix nanos).
pub(crate) struct PenaltyBox {
    pub(crate) penalty: Penalty,
    pub(crate) keys: DashMap<u64, (u32, u64)>,
}

impl PenaltyBox {
    /// How long the key is still locked out.
    pub(crate) fn locked_for(&self, key: &RateKey, now: u64) -> Option<Duration> {
        let entry = self.keys.get(&key.log_id())?;
        let (_, until) = *entry;
        (until > now).then(|| Duration::from_nanos(until - now))
    }

    /// A refusal: one more strike, and the lock-out it earns.
    pub(crate) fn strike(&self, key: &RateKey, now: u64) -> Duration {
        let id = key.log_id();
        if self.keys.len() >= MAX_PENALTY_KEYS && !self.keys.contains_key(&id) {
            self.keys.retain(|_, (_, until)| *until > now);
            if self.keys.len() >= MAX_PENALTY_KEYS {
                return Duration::ZERO;
            }
        }
        let mut entry = self.keys.entry(id).or_insert((0, 0));
        entry.0 = entry.0.saturating_add(1);
        let lockout = self.penalty.lockout(entry.0);
        entry.1 = now.saturating_add(u64::try_from(lockout.as_nanos()).unwrap_or(u64::MAX));
        lockout
    }

    /// An allowed request forgives the key.
    pub(crate) fn forgive(&self, key: &RateKey) {
        if !self.keys.is_empty() {
            self.keys.remove(&key.log_id());
        }
    }
}

/// What a [`RateLimitLayer`] has done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RateLimitStats {
    /// Requests allowed by a policy.
    pub allowed: u64,
    /// Requests refused with 429 (including lock-outs).
    pub limited: u64,
    /// Requests that would have been refused, let through by shadow mode.
    pub shadow_limited: u64,
    /// Store failures and timeouts.
    pub store_errors: u64,
    /// Requests let through because the store failed (fail open).
    pub failed_open: u64,
    /// Requests refused with 503 because the store failed (fail closed).
    pub failed_closed: u64,
    /// Requests refused because no key could be found (no peer address, no header…).
    pub missing_key: u64,
}

#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) allowed: AtomicU64,
    pub(crate) limited: AtomicU64,
    pub(crate) shadow_limited: AtomicU64,
    pub(crate) store_errors: AtomicU64,
    pub(crate) failed_open: AtomicU64,
    pub(crate) failed_closed: AtomicU64,
    pub(crate) missing_key: AtomicU64,
}

impl Stats {
    #[inline]
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> RateLimitStats {
        RateLimitStats {
            allowed: self.allowed.load(Ordering::Relaxed),
            limited: self.limited.load(Ordering::Relaxed),
            shadow_limited: self.shadow_limited.load(Ordering::Relaxed),
            store_errors: self.store_errors.load(Ordering::Relaxed),
            failed_open: self.failed_open.load(Ordering::Relaxed),
            failed_closed: self.failed_closed.load(Ordering::Relaxed),
            missing_key: self.missing_key.load(Ordering::Relaxed),
        }
    }
}
