//! [`MemoryStore`]: per-process state on `governor`'s keyed state store.

use std::fmt;
use std::future::{Ready, ready};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock as GovClock, DefaultClock, Reference};
use governor::nanos::Nanos;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::{InMemoryState, NotKeyed, StateStore};

use super::{Decision, Gcra, RateLimitStore};
use crate::error::{ConfigError, StoreError};
use crate::log_gate::LogGate;
use crate::rate_limit::key::{PrehashedKey, RateKey, hash_material};
use crate::rate_limit::quota::Quota;

/// The default maximum number of keys one limiter keeps (one million).
pub const DEFAULT_MAX_KEYS: usize = 1_000_000;

/// The smallest `max_keys` a [`MemoryStoreBuilder`] accepts.
pub const MIN_MAX_KEYS: usize = 1024;

/// How many shared budgets the keys a full limiter cannot hold are spread over (by hash).
pub const OVERFLOW_BUCKETS: usize = 64;

/// How often (in calls with a key a limiter does not hold) its key count is looked at.
const HOUSEKEEPING_EVERY: u64 = 1024;

/// Rate-limit state kept in this process, on `governor`'s keyed state store (a `DashMap` of
/// atomic GCRA states, updated with compare-and-swap).
///
/// # Memory
///
/// Each limiter (one per policy, tier and quota) keeps one entry per key it has seen: the key
/// is a 64-bit SipHash of the key material under the limiter's own random key (so clients
/// cannot aim at each other's entries; two keys share a budget only on a 64-bit collision,
/// about one chance in 30 million with a million keys), the value governor's 8-byte atomic
/// state. Measured by `tests/rate_limit_memory.rs` from the process's resident memory:
/// **about 36 bytes per key** at one million keys (a 16-byte entry plus `DashMap`'s control
/// bytes and spare capacity: 1.8 M slots for 1 M keys), so the default bound of
/// [`DEFAULT_MAX_KEYS`] keys costs about 36 MB per limiter at worst.
///
/// # Bounds and sweeping
///
/// A limiter drops the keys whose budget is whole again (governor's `retain_recent`: such a
/// key behaves exactly as an unknown one, so nothing is forgotten that matters):
///
/// - every `sweep_interval` (default 60 s): every call compares its clock reading with the
///   last sweep (one plain load), and the first call past the interval sweeps;
/// - whenever it holds `max_keys` keys: every 1024 calls with a key it does not hold (the
///   only calls that add keys) it looks at its size. If it still holds `max_keys` keys after
///   a sweep (every key is active), **new** keys are spread by their hash over
///   [`OVERFLOW_BUCKETS`] shared *overflow budgets* of the limiter's quota until a sweep
///   frees room. Coarser limiting, still limiting: a flood of fresh keys (spoofed
///   addresses, made-up API keys) cannot make new clients unlimited, and it does not turn
///   into a 503 for every new client (as a store error would, under a fail-closed policy).
///   With a small quota (a few failures per quarter hour) a determined flood can still keep
///   all the shared budgets spent, so new clients get 429 until idle keys expire; known keys
///   always keep their own budgets. A warning is logged once per burst. The map may overshoot `max_keys` by at most one housekeeping
///   period (1024 new keys) before this takes effect.
///
/// A call with a key the limiter holds does no other bookkeeping: no shared counter is
/// written (only the key's own state).
///
/// Sweeps run inline, on the request that notices they are due (O(keys)).
///
/// # Time
///
/// Time comes from a `governor` clock: the default monotonic one, or
/// `governor::clock::FakeRelativeClock` in tests ([`MemoryStore::with_clock`]).
pub struct MemoryStore<C: GovClock = DefaultClock> {
    inner: Arc<Shared<C>>,
}

struct Shared<C: GovClock> {
    clock: C,
    start: C::Instant,
    max_keys: usize,
    /// How often idle keys are swept, in nanoseconds (saturated).
    sweep_nanos: u64,
}

impl<C: GovClock> Clone for MemoryStore<C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<C: GovClock> fmt::Debug for MemoryStore<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("max_keys", &self.inner.max_keys)
            .field(
                "sweep_interval",
                &Duration::from_nanos(self.inner.sweep_nanos),
            )
            .finish_non_exhaustive()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// A store with the default bounds ([`DEFAULT_MAX_KEYS`] keys per limiter, a sweep every
    /// 60 s) and the default monotonic clock.
    pub fn new() -> Self {
        Self::builder().assemble(DefaultClock::default())
    }

    /// A builder to change the bounds.
    pub fn builder() -> MemoryStoreBuilder {
        MemoryStoreBuilder {
            max_keys: DEFAULT_MAX_KEYS,
            sweep_interval: Duration::from_secs(60),
        }
    }
}

impl<C: GovClock + Send + Sync + 'static> MemoryStore<C> {
    /// A store with the default bounds and the given clock (e.g.
    /// `governor::clock::FakeRelativeClock` in tests).
    pub fn with_clock(clock: C) -> Self {
        MemoryStore::builder().assemble(clock)
    }
}

/// Builds a [`MemoryStore`].
#[derive(Debug, Clone)]
#[must_use]
pub struct MemoryStoreBuilder {
    max_keys: usize,
    sweep_interval: Duration,
}

impl MemoryStoreBuilder {
    /// The most keys one limiter keeps (default one million; at least 1024, a smaller value
    /// is an error when the store is built).
    pub fn max_keys(mut self, max: usize) -> Self {
        self.max_keys = max;
        self
    }

    /// How often idle keys are swept (default 60 s; zero is an error when built).
    pub fn sweep_interval(mut self, every: Duration) -> Self {
        self.sweep_interval = every;
        self
    }

    /// The store, on the default monotonic clock.
    pub fn build(self) -> Result<MemoryStore, ConfigError> {
        self.build_with_clock(DefaultClock::default())
    }

    /// The store, on the given clock.
    pub fn build_with_clock<C: GovClock>(self, clock: C) -> Result<MemoryStore<C>, ConfigError> {
        if self.max_keys < MIN_MAX_KEYS {
            return Err(ConfigError::invalid(
                "max_keys",
                "must be at least 1024 (a smaller map would keep refilling its overflow budgets)",
            ));
        }
        if self.sweep_interval.is_zero() {
            return Err(ConfigError::invalid(
                "sweep_interval",
                "must be greater than zero",
            ));
        }
        Ok(self.assemble(clock))
    }

    /// The store, with settings already known to be valid.
    fn assemble<C: GovClock>(self, clock: C) -> MemoryStore<C> {
        let start = clock.now();
        MemoryStore {
            inner: Arc::new(Shared {
                clock,
                start,
                max_keys: self.max_keys,
                sweep_nanos: u64::try_from(self.sweep_interval.as_nanos()).unwrap_or(u64::MAX),
            }),
        }
    }
}

/// One limiter of a [`MemoryStore`]: the keyed state of one scope and quota.
pub struct MemoryLimiter {
    state: DashMapStateStore<u64, PrehashedKey>,
    gcra: Gcra,
    /// This limiter's own SipHash key: its map holds only its own keys, so a key's hash needs
    /// no scope (one `write` per decision).
    hasher: std::hash::RandomState,
    /// Calls with a key the map did not hold (the housekeeping period).
    new_key_calls: AtomicU64,
    last_sweep: AtomicU64,
    full: AtomicBool,
    /// The budgets new keys share (by hash) while the map is full.
    overflow: [InMemoryState; OVERFLOW_BUCKETS],
    /// One warning per burst of overflow decisions.
    overflow_log: LogGate,
}

impl fmt::Debug for MemoryLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryLimiter")
            .field("keys", &self.state.len())
            .field("gcra", &self.gcra)
            .finish_non_exhaustive()
    }
}

impl MemoryLimiter {
    /// The shared budget of a key the full map cannot hold.
    fn overflow(&self, hashed: u64) -> &InMemoryState {
        // The low bits of a SipHash pick one; bucket 0 is `first` (the array is never empty).
        let [first, rest @ ..] = &self.overflow;
        let index = usize::try_from(hashed % OVERFLOW_BUCKETS as u64).unwrap_or(0);
        index
            .checked_sub(1)
            .and_then(|i| rest.get(i))
            .unwrap_or(first)
    }

    /// The number of keys held.
    pub fn len(&self) -> usize {
        ShrinkableKeyedStateStore::len(&self.state)
    }

    /// How many keys the map can hold before it grows.
    pub fn capacity(&self) -> usize {
        self.state.capacity()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<C> MemoryStore<C>
where
    C: GovClock + Send + Sync + 'static,
{
    fn now(&self) -> u64 {
        self.inner
            .clock
            .now()
            .duration_since(self.inner.start)
            .as_u64()
    }

    /// Drops every key of this limiter whose budget is whole again.
    pub fn sweep(&self, limiter: &MemoryLimiter) {
        let now = self.now();
        limiter.state.retain_recent(Nanos::new(now));
        limiter.last_sweep.store(now, Ordering::Relaxed);
        limiter
            .full
            .store(limiter.len() >= self.inner.max_keys, Ordering::Relaxed);
    }

    /// Every [`HOUSEKEEPING_EVERY`] calls with a new key: whether the map is full, and if so
    /// a sweep (at most every 100 ms while full).
    fn housekeeping(&self, limiter: &MemoryLimiter, now: u64) {
        if limiter.len() < self.inner.max_keys {
            limiter.full.store(false, Ordering::Relaxed);
            return;
        }
        let since = now.saturating_sub(limiter.last_sweep.load(Ordering::Relaxed));
        if since >= 100_000_000 || !limiter.full.load(Ordering::Relaxed) {
            self.sweep(limiter);
        }
    }

    /// The decision, synchronously.
    pub fn decide(
        &self,
        limiter: &MemoryLimiter,
        key: &RateKey,
        cost: u32,
    ) -> Result<Decision, StoreError> {
        let now = self.now();
        // The sweep timer: one plain load per call; the call that claims the due sweep runs it.
        let last = limiter.last_sweep.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= self.inner.sweep_nanos
            && limiter
                .last_sweep
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.sweep(limiter);
        }
        let hashed = hash_material(limiter.hasher.build_hasher(), key);
        let gcra = limiter.gcra;
        let step = |stored: Option<Nanos>| {
            let step = gcra.step(stored.map(Nanos::as_u64), now, cost);
            match step.new_tat {
                Some(tat) => Ok((step, Nanos::new(tat))),
                None => Err(step),
            }
        };
        let result = match limiter.state.get(&hashed) {
            // A key the map holds: only its own state is touched (known keys always work,
            // and they do not grow the map).
            Some(state) => StateStore::measure_and_replace(&*state, &NotKeyed::NonKey, step),
            None => {
                self.new_key(limiter, now);
                if limiter.full.load(Ordering::Relaxed) && !limiter.state.contains_key(&hashed) {
                    overflowed(limiter, now);
                    StateStore::measure_and_replace(
                        limiter.overflow(hashed),
                        &NotKeyed::NonKey,
                        step,
                    )
                } else {
                    limiter.state.measure_and_replace(&hashed, step)
                }
            }
        };
        let step = match result {
            Ok(step) | Err(step) => step,
        };
        Ok(step.decision(gcra.limit, Duration::from_nanos))
    }

    /// Gives back `cost` units charged to `key` (see [`RateLimitStore::refund`]); a key the
    /// map does not hold has nothing to give back, unless the map is full (its charge went to
    /// the overflow bucket).
    pub fn give_back(&self, limiter: &MemoryLimiter, key: &RateKey, cost: u32) -> Decision {
        let now = self.now();
        let hashed = hash_material(limiter.hasher.build_hasher(), key);
        let gcra = limiter.gcra;
        let step = |stored: Option<Nanos>| {
            let step = gcra.refund(stored.map(Nanos::as_u64), now, cost);
            match step.new_tat {
                Some(tat) => Ok((step, Nanos::new(tat))),
                None => Err(step),
            }
        };
        let result = match limiter.state.get(&hashed) {
            Some(state) => StateStore::measure_and_replace(&*state, &NotKeyed::NonKey, step),
            None if limiter.full.load(Ordering::Relaxed) => {
                StateStore::measure_and_replace(limiter.overflow(hashed), &NotKeyed::NonKey, step)
            }
            None => Err(gcra.refund(None, now, cost)),
        };
        let step = match result {
            Ok(step) | Err(step) => step,
        };
        step.decision(gcra.limit, Duration::from_nanos)
    }

    /// A call with a key the map did not hold (the only calls that grow it): the map's size
    /// is looked at every [`HOUSEKEEPING_EVERY`] of them.
    fn new_key(&self, limiter: &MemoryLimiter, now: u64) {
        let calls = limiter.new_key_calls.fetch_add(1, Ordering::Relaxed);
        if calls.is_multiple_of(HOUSEKEEPING_EVERY) {
            self.housekeeping(limiter, now);
        }
    }
}

/// A decision made on the overflow bucket: a warning, once per burst.
#[cold]
fn overflowed(limiter: &MemoryLimiter, now: u64) {
    if let Some(suppressed) = limiter.overflow_log.should_log(now) {
        tracing::warn!(
            target: "tower_shield::rate_limit",
            keys = limiter.len(),
            suppressed,
            "memory rate-limit store full: new keys share one overflow budget until idle keys expire"
        );
    }
}

impl<C> RateLimitStore for MemoryStore<C>
where
    C: GovClock + Send + Sync + 'static,
    C::Instant: Send + Sync,
{
    type Limiter = Arc<MemoryLimiter>;
    type Future = Ready<Result<Decision, StoreError>>;

    fn limiter(&self, _scope: &str, quota: &Quota) -> Self::Limiter {
        Arc::new(MemoryLimiter {
            state: DashMapStateStore::with_hasher(PrehashedKey),
            gcra: Gcra::nanos(quota),
            hasher: std::hash::RandomState::new(),
            new_key_calls: AtomicU64::new(1),
            last_sweep: AtomicU64::new(self.now()),
            full: AtomicBool::new(false),
            overflow: std::array::from_fn(|_| InMemoryState::default()),
            overflow_log: LogGate::new(),
        })
    }

    fn check(&self, limiter: &Self::Limiter, key: &RateKey, cost: u32) -> Self::Future {
        ready(self.decide(limiter, key, cost))
    }

    fn refund(
        &self,
        limiter: &Self::Limiter,
        key: &RateKey,
        cost: u32,
        _charged: &Decision,
    ) -> Self::Future {
        ready(Ok(self.give_back(limiter, key, cost)))
    }

    fn check_now(
        &self,
        limiter: &Self::Limiter,
        key: &RateKey,
        cost: u32,
    ) -> Option<Result<Decision, StoreError>> {
        Some(self.decide(limiter, key, cost))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    #[test]
    fn the_builder_refuses_settings_it_would_have_to_change() {
        assert!(MemoryStore::builder().max_keys(1023).build().is_err());
        assert!(MemoryStore::builder().max_keys(0).build().is_err());
        assert!(
            MemoryStore::builder()
                .sweep_interval(Duration::ZERO)
                .build()
                .is_err()
        );
        assert!(MemoryStore::builder().max_keys(1024).build().is_ok());
    }

    #[test]
    fn decides_with_a_fake_clock() {
        let clock = FakeRelativeClock::default();
        let store = MemoryStore::with_clock(clock.clone());
        let limiter = store.limiter("api", &Quota::per_second(2));
        let key = RateKey::ip("192.0.2.1".parse().unwrap());
        assert!(store.decide(&limiter, &key, 1).unwrap().allowed);
        assert!(store.decide(&limiter, &key, 1).unwrap().allowed);
        let refused = store.decide(&limiter, &key, 1).unwrap();
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, Duration::from_millis(500));
        clock.advance(Duration::from_millis(500));
        assert!(store.decide(&limiter, &key, 1).unwrap().allowed);
        clock.advance(Duration::from_secs(5));
        store.sweep(&limiter);
        assert!(limiter.is_empty());
    }

    #[test]
    fn the_first_call_past_the_sweep_interval_sweeps() {
        let clock = FakeRelativeClock::default();
        let store = MemoryStore::builder()
            .sweep_interval(Duration::from_secs(10))
            .build_with_clock(clock.clone())
            .unwrap();
        let limiter = store.limiter("api", &Quota::per_second(2));
        let (a, b) = (
            RateKey::ip("192.0.2.1".parse().unwrap()),
            RateKey::ip("192.0.2.2".parse().unwrap()),
        );
        assert!(store.decide(&limiter, &a, 1).unwrap().allowed);
        assert!(store.decide(&limiter, &b, 1).unwrap().allowed);
        clock.advance(Duration::from_secs(5));
        assert!(store.decide(&limiter, &b, 1).unwrap().allowed);
        assert_eq!(limiter.len(), 2, "not due yet");
        // Both budgets are whole again; a call with a known key sweeps them.
        clock.advance(Duration::from_secs(6));
        assert!(store.decide(&limiter, &b, 1).unwrap().allowed);
        assert_eq!(limiter.len(), 1, "`a` swept, `b` charged again");
        assert_eq!(store.decide(&limiter, &b, 1).unwrap().remaining, 0);
    }
}
