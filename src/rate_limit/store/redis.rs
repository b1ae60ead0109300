//! [`RedisStore`]: state shared by every process through Redis (feature `redis`).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use super::{Decision, RateLimitStore};
use crate::error::{ConfigError, StoreError};
use crate::rate_limit::key::{RateKey, keyed_hash};
use crate::rate_limit::quota::Quota;
use crate::redis::{KeyPrefix, RedisConnection};

/// The GCRA script: the same algorithm as the memory store, in microseconds of the Redis
/// server's clock (`TIME`; allowed in scripts under effects replication, the default since
/// Redis 7).
///
/// `KEYS[1]` holds the key's theoretical arrival time; `ARGV` is the emission interval (µs),
/// the burst, and the cost (0: peek without charging; negative: a refund of that many
/// units, never past a whole budget). It answers `{allowed, remaining, reset_us,
/// retry_after_us}` and sets the key with a TTL equal to the time until its budget is whole
/// again, so idle keys vanish.
pub const GCRA_SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local T = tonumber(ARGV[1])
local cap = T * tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then tat = now end
local used = tat - now
local function remaining(u)
  local r = math.floor((cap - u) / T)
  if r < 0 then r = 0 end
  return r
end
if cost == 0 then
  if used + T <= cap then return {1, remaining(used), used, 0} end
  return {0, remaining(used), used, used + T - cap}
end
if cost < 0 then
  local left = used + T * cost
  if left <= 0 then
    if used > 0 then redis.call('DEL', KEYS[1]) end
    return {1, remaining(0), 0, 0}
  end
  redis.call('SET', KEYS[1], string.format('%.0f', now + left), 'PX', math.ceil(left / 1000) + 1)
  return {1, remaining(left), left, 0}
end
local inc = T * cost
if inc > cap then return {0, remaining(used), used, cap} end
local new_used = used + inc
if new_used <= cap then
  redis.call('SET', KEYS[1], string.format('%.0f', now + new_used), 'PX', math.ceil(new_used / 1000) + 1)
  return {1, remaining(new_used), new_used, 0}
end
return {0, remaining(used), used, new_used - cap}
";

/// The default bound on the local deny cache.
pub const DEFAULT_DENY_CACHE: usize = 65_536;

/// Rate-limit state in Redis, shared by every instance of a service.
///
/// - **One round trip per decision**: the GCRA step is one Lua script run by `EVALSHA`
///   (reloaded on `NOSCRIPT`, e.g. after a restart), on the shared
///   [`RedisConnection`] (self-reconnecting, multiplexed, per-call timeout).
/// - **The server's clock** (`TIME`), so instances with skewed clocks agree.
/// - **Keys** are `<prefix>{<sha1 of scope and key>}`: one key per decision, so Redis
///   Cluster routes each script to one slot; no raw key material (an API key) is stored in
///   Redis key names. Each key expires when its budget is whole again.
/// - **A local deny cache**: a key Redis refused is refused locally until its retry time,
///   so a flooding client stops costing a round trip per request. It is bounded
///   ([`DEFAULT_DENY_CACHE`] keys by default); when full, expired entries are dropped and
///   new ones skipped.
///
/// Failures and timeouts are [`StoreError`]s: pair it with a
/// [`FallbackStore`](super::FallbackStore) or choose a [`FailurePolicy`](super::FailurePolicy).
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: RedisConnection,
    prefix: KeyPrefix,
    script: redis::Script,
    deny: DashMap<u64, Instant>,
    deny_max: usize,
    hasher: std::hash::RandomState,
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("conn", &self.inner.conn)
            .field("prefix", &self.inner.prefix)
            .field("deny_cache", &self.inner.deny.len())
            .finish_non_exhaustive()
    }
}

/// Builds a [`RedisStore`].
#[derive(Debug)]
#[must_use]
pub struct RedisStoreBuilder {
    conn: RedisConnection,
    prefix: Result<KeyPrefix, ConfigError>,
    deny_max: usize,
}

impl RedisStoreBuilder {
    /// The key prefix (default `tower-shield:rl:`).
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = KeyPrefix::new(prefix);
        self
    }

    /// The most keys the local deny cache holds (0 disables it).
    pub fn deny_cache(mut self, max: usize) -> Self {
        self.deny_max = max;
        self
    }

    /// The store.
    pub fn build(self) -> Result<RedisStore, ConfigError> {
        Ok(RedisStore {
            inner: Arc::new(Inner {
                conn: self.conn,
                prefix: self.prefix?,
                script: redis::Script::new(GCRA_SCRIPT),
                deny: DashMap::new(),
                deny_max: self.deny_max,
                hasher: std::hash::RandomState::new(),
            }),
        })
    }
}

impl RedisStore {
    /// A builder on a shared connection.
    pub fn builder(conn: RedisConnection) -> RedisStoreBuilder {
        RedisStoreBuilder {
            conn,
            prefix: KeyPrefix::new("tower-shield:rl:"),
            deny_max: DEFAULT_DENY_CACHE,
        }
    }

    /// A store with the default prefix and deny cache.
    pub fn new(conn: RedisConnection) -> Self {
        Self {
            inner: Arc::new(Inner {
                conn,
                prefix: KeyPrefix::new("tower-shield:rl:").unwrap_or_default(),
                script: redis::Script::new(GCRA_SCRIPT),
                deny: DashMap::new(),
                deny_max: DEFAULT_DENY_CACHE,
                hasher: std::hash::RandomState::new(),
            }),
        }
    }

    /// The connection.
    pub fn connection(&self) -> &RedisConnection {
        &self.inner.conn
    }

    /// The script's SHA1 (what `EVALSHA` sends).
    pub fn script_hash(&self) -> &str {
        self.inner.script.get_hash()
    }

    /// The Redis key a scope and key are kept under.
    pub fn redis_key(&self, limiter: &RedisLimiter, key: &RateKey) -> String {
        String::from_utf8(self.key_name(limiter, key)).unwrap_or_default()
    }

    /// `<prefix>{<40 hex digits>}` (what [`KeyPrefix::tagged`] makes of the digest, which
    /// needs no escaping), in one exact allocation.
    fn key_name(&self, limiter: &RedisLimiter, key: &RateKey) -> Vec<u8> {
        let prefix = self.inner.prefix.as_str().as_bytes();
        let mut name = Vec::with_capacity(prefix.len() + 42);
        name.extend_from_slice(prefix);
        name.push(b'{');
        name.extend_from_slice(&key_digest(&limiter.scope, key));
        name.push(b'}');
        name
    }

    /// How many keys the local deny cache holds.
    pub fn deny_cache_len(&self) -> usize {
        self.inner.deny.len()
    }

    fn remember_denial(&self, id: u64, retry_after: Duration) {
        let max = self.inner.deny_max;
        if max == 0 || retry_after.is_zero() {
            return;
        }
        let now = Instant::now();
        if self.inner.deny.len() >= max {
            self.inner.deny.retain(|_, until| *until > now);
            if self.inner.deny.len() >= max {
                return;
            }
        }
        self.inner.deny.insert(id, now + retry_after);
    }
}

/// SHA1 (what redis-rs computes for scripts) of the scope, a NUL and the key material in
/// lower-case hex, as 40 hex digits: stable across processes, and no raw key material in
/// Redis. Hashed as a stream, without building the material or formatting the digest
/// (this runs per decision).
fn key_digest(scope: &str, key: &RateKey) -> [u8; 40] {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(scope.as_bytes());
    sha.update(b"\0");
    key.write_material(&mut |bytes| {
        for chunk in bytes.chunks(32) {
            let mut hex = [0u8; 64];
            let len = crate::hex::encode_into(chunk, &mut hex);
            sha.update(hex.get(..len).unwrap_or_default());
        }
    });
    let mut hex = [0u8; 40];
    crate::hex::encode_into(&sha.digest().bytes(), &mut hex);
    hex
}

/// One limiter of a [`RedisStore`].
#[derive(Debug, Clone)]
pub struct RedisLimiter {
    scope: Arc<str>,
    scope_id: u64,
    t_micros: u64,
    burst: u32,
    limit: u32,
}

pin_project_lite::pin_project! {
    /// The future of a [`RedisStore`] decision: ready at once on a deny-cache hit, else the
    /// boxed round trip.
    pub struct RedisCheck {
        #[pin]
        state: CheckState,
    }
}

pin_project_lite::pin_project! {
    #[project = CheckStateProj]
    enum CheckState {
        Ready { decision: Option<Result<Decision, StoreError>> },
        Remote { fut: Pin<Box<dyn Future<Output = Result<Decision, StoreError>> + Send>> },
    }
}

impl fmt::Debug for RedisCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RedisCheck")
    }
}

impl Future for RedisCheck {
    type Output = Result<Decision, StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            CheckStateProj::Ready { decision } => {
                Poll::Ready(decision.take().unwrap_or_else(|| {
                    Err(StoreError::Protocol("polled after completion".to_owned()))
                }))
            }
            CheckStateProj::Remote { fut } => fut.as_mut().poll(cx),
        }
    }
}

impl RateLimitStore for RedisStore {
    type Limiter = RedisLimiter;
    type Future = RedisCheck;

    fn limiter(&self, scope: &str, quota: &Quota) -> Self::Limiter {
        RedisLimiter {
            scope: Arc::from(scope),
            scope_id: std::hash::BuildHasher::hash_one(&self.inner.hasher, scope),
            t_micros: quota.emission_micros(),
            burst: quota.burst_size(),
            limit: quota.limit(),
        }
    }

    fn check(&self, limiter: &Self::Limiter, key: &RateKey, cost: u32) -> Self::Future {
        let id = keyed_hash(&self.inner.hasher, limiter.scope_id, key);
        if self.inner.deny_max > 0
            && let Some(until) = self.inner.deny.get(&id).map(|e| *e)
        {
            let now = Instant::now();
            if until > now {
                let retry_after = until - now;
                let reset = retry_after
                    + Duration::from_micros(
                        limiter
                            .t_micros
                            .saturating_mul(u64::from(limiter.burst.saturating_sub(1))),
                    );
                let decision = Decision::new(false, limiter.limit, 0, reset, retry_after);
                return RedisCheck {
                    state: CheckState::Ready {
                        decision: Some(Ok(decision)),
                    },
                };
            }
            self.inner.deny.remove_if(&id, |_, until| *until <= now);
        }
        self.run(limiter, key, id, i64::from(cost))
    }

    fn refund(
        &self,
        limiter: &Self::Limiter,
        key: &RateKey,
        cost: u32,
        _charged: &Decision,
    ) -> Self::Future {
        let id = keyed_hash(&self.inner.hasher, limiter.scope_id, key);
        self.run(limiter, key, id, -i64::from(cost))
    }
}

impl RedisStore {
    /// One script round trip: a decision (`cost` ≥ 0) or a refund (`cost` < 0).
    fn run(&self, limiter: &RedisLimiter, key: &RateKey, id: u64, cost: i64) -> RedisCheck {
        let name = self.key_name(limiter, key);
        let (limit, t_micros, burst) = (limiter.limit, limiter.t_micros, limiter.burst);
        let this = self.clone();
        let fut = async move {
            let mut invocation = this.inner.script.key(name);
            invocation.arg(t_micros).arg(burst).arg(cost);
            // One round trip (`NOSCRIPT` after a Redis restart: loaded and sent again).
            let reply: (i64, i64, i64, i64) = this.inner.conn.run_script(&invocation).await?;
            let (allowed, remaining, reset, retry) = reply;
            let micros = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
            let decision = Decision::new(
                allowed == 1,
                limit,
                u32::try_from(remaining).unwrap_or(0),
                micros(reset),
                micros(retry),
            );
            if cost < 0 {
                // Budget is back: no local refusal until Redis says otherwise (removed after
                // the refund, so a refusal that raced it cannot outlive it). With the cache
                // off there is nothing to remove, and no shard lock to take.
                if this.inner.deny_max > 0 {
                    this.inner.deny.remove(&id);
                }
            } else if !decision.allowed && decision.remaining == 0 {
                // Refused locally until a request of cost 1 would pass.
                // Saturating: a valid quota (a long period, a large burst) can exceed u64 µs.
                let cap = t_micros.saturating_mul(u64::from(burst));
                let until_one = u64::try_from(reset)
                    .unwrap_or(0)
                    .saturating_add(t_micros)
                    .saturating_sub(cap);
                this.remember_denial(id, Duration::from_micros(until_one));
            }
            Ok(decision)
        };
        RedisCheck {
            state: CheckState::Remote { fut: Box::pin(fut) },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::*;

    /// The key names of earlier versions: the material as a hex `String`, hashed by
    /// redis-rs's `Script`.
    fn key_digest_as_before(scope: &str, key: &RateKey) -> String {
        let mut material = String::from(scope);
        material.push('\0');
        key.write_material(&mut |bytes| {
            for b in bytes {
                write!(material, "{b:02x}").unwrap();
            }
        });
        redis::Script::new(&material).get_hash().to_owned()
    }

    #[test]
    fn key_names_are_unchanged() {
        let keys = [
            RateKey::ip("192.0.2.1".parse().unwrap()),
            RateKey::ip("2001:db8::1".parse().unwrap()),
            RateKey::subject("user_0123456789abcdef".into()).unwrap(),
            RateKey::subject("\u{e9}x".repeat(80).into()).unwrap(),
            RateKey::subject("".into()).unwrap(),
            RateKey::bytes(&[0u8, 0xff, b'{', b'}', b'%']).unwrap(),
            RateKey::bytes(&[0xab; 200]).unwrap(),
        ];
        for scope in ["api/", "login/~anonymous", ""] {
            for key in &keys {
                let hex = key_digest(scope, key);
                assert_eq!(
                    std::str::from_utf8(&hex).unwrap(),
                    key_digest_as_before(scope, key)
                );
            }
        }
    }
}
