//! The shared Redis plumbing (feature `redis`): one self-reconnecting connection, a per-call
//! timeout, Lua scripts run by `EVALSHA`, and key naming that stays inside one Cluster slot.
//!
//! Every Redis-backed store in the crate (the rate limiter's `RedisStore`, the refresh-token
//! and revocation stores) is built on a [`RedisConnection`]:
//!
//! - it wraps redis-rs's [`ConnectionManager`]: one multiplexed connection, cheap to clone,
//!   that pipelines concurrent commands and reconnects in the background when the socket
//!   drops (a command in flight on the dropped socket fails; later commands wait for the new
//!   socket);
//! - every call is bounded by a **per-call timeout** (default [`DEFAULT_CALL_TIMEOUT`],
//!   100 ms) so no request ever waits on Redis longer than that; a timeout is
//!   [`StoreError::Timeout`], any other failure [`StoreError::Unavailable`] (or
//!   [`StoreError::Protocol`] when Redis answered something unusable). Callers turn those into
//!   their failure policy; the text never reaches a client;
//! - [`RedisConnection::run_script`] sends `EVALSHA` and, when the server answers `NOSCRIPT`
//!   (after a restart or a failover), loads the script and retries once;
//! - [`KeyPrefix`] names keys `<prefix>{<hash tag>}:<rest>`, so all keys a script touches for
//!   one subject share a hash tag and therefore a Redis Cluster slot.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use tower_shield::redis::{KeyPrefix, RedisConnection, RedisOptions};
//!
//! let options = RedisOptions::builder()
//!     .call_timeout(Duration::from_millis(100))
//!     .build()?;
//! let conn = RedisConnection::connect_with("redis://127.0.0.1:6379/", options).await?;
//! let prefix = KeyPrefix::new("myapp:rl:")?;
//! let key = prefix.key("user_42", "api");
//! assert_eq!(key, "myapp:rl:{user_42}:api");
//!
//! let script = tower_shield::redis::redis::Script::new("return redis.call('INCR', KEYS[1])");
//! let mut invocation = script.key(&key);
//! let n: i64 = conn.run_script(&invocation).await?;
//! # let _ = (n, &mut invocation);
//! # Ok(())
//! # }
//! ```
//!
//! [`ConnectionManager`]: ::redis::aio::ConnectionManager

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Cmd, FromRedisValue, RedisError, ScriptInvocation};

use crate::error::{ConfigError, StoreError};
#[cfg(feature = "metrics")]
use crate::telemetry::{self, Histogram};

/// The `redis` crate this module builds on, re-exported so that the types
/// [`RedisConnection::from_manager`], [`RedisConnection::manager`] and
/// [`RedisConnection::query`] take and give are the very ones your code names, whatever
/// `redis` version it depends on itself.
pub use ::redis;

/// The default bound on one Redis call (100 ms).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_millis(100);

/// The default bound on establishing the first connection (2 s).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest prefix [`KeyPrefix`] accepts, in bytes.
pub const MAX_PREFIX_LEN: usize = 128;

/// How a [`RedisConnection`] connects and how long it waits: the defaults, or
/// [`RedisOptions::builder`] (checked when built).
#[derive(Debug, Clone)]
#[must_use]
pub struct RedisOptions {
    connect_timeout: Duration,
    call_timeout: Duration,
    reconnect_max_delay: Duration,
}

impl Default for RedisOptions {
    fn default() -> Self {
        Self {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            reconnect_max_delay: Duration::from_secs(2),
        }
    }
}

impl RedisOptions {
    /// A builder starting from the defaults.
    pub fn builder() -> RedisOptionsBuilder {
        RedisOptionsBuilder {
            options: Self::default(),
        }
    }
}

/// Builds [`RedisOptions`]; [`build`](Self::build) refuses a zero timeout (every call would
/// fail at once, and the service would run without its shared state).
#[derive(Debug, Clone)]
#[must_use]
pub struct RedisOptionsBuilder {
    options: RedisOptions,
}

impl RedisOptionsBuilder {
    /// The bound on establishing a connection (the first one, and each reconnect attempt).
    /// Default 2 s.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.options.connect_timeout = timeout;
        self
    }

    /// The bound on each call (command or script), including waiting for a reconnect.
    /// Default 100 ms.
    pub fn call_timeout(mut self, timeout: Duration) -> Self {
        self.options.call_timeout = timeout;
        self
    }

    /// The longest pause between two reconnect attempts (attempts back off exponentially
    /// with jitter from 50 ms). Default 2 s.
    pub fn reconnect_max_delay(mut self, delay: Duration) -> Self {
        self.options.reconnect_max_delay = delay;
        self
    }

    /// The options, or the setting that cannot work.
    pub fn build(self) -> Result<RedisOptions, ConfigError> {
        let options = self.options;
        if options.connect_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "connect_timeout",
                "must be greater than zero",
            ));
        }
        if options.call_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "call_timeout",
                "must be greater than zero",
            ));
        }
        if options.reconnect_max_delay.is_zero() {
            return Err(ConfigError::invalid(
                "reconnect_max_delay",
                "must be greater than zero",
            ));
        }
        Ok(options)
    }
}

/// A shared, self-reconnecting Redis connection with a per-call timeout.
///
/// Cloning is cheap (reference counts); every clone uses the same multiplexed socket, so
/// concurrent calls are pipelined. See the [module docs](self).
#[derive(Clone)]
pub struct RedisConnection {
    manager: ConnectionManager,
    call_timeout: Duration,
    server: Arc<str>,
    #[cfg(feature = "metrics")]
    durations: Arc<CallDurations>,
}

/// `tower_shield_redis_call_duration_seconds`, by outcome.
#[cfg(feature = "metrics")]
struct CallDurations {
    ok: Histogram,
    error: Histogram,
    timeout: Histogram,
}

#[cfg(feature = "metrics")]
impl CallDurations {
    fn new() -> Arc<Self> {
        let outcome = |outcome| {
            telemetry::histogram(
                telemetry::names::REDIS_CALL_DURATION,
                &[("outcome", outcome)],
            )
        };
        Arc::new(Self {
            ok: outcome("ok"),
            error: outcome("error"),
            timeout: outcome("timeout"),
        })
    }
}

impl fmt::Debug for RedisConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConnection")
            .field("server", &self.server)
            .field("call_timeout", &self.call_timeout)
            .finish_non_exhaustive()
    }
}

impl RedisConnection {
    /// Connects with the default options (2 s to connect, 100 ms per call).
    ///
    /// Fails when the URL is malformed or the server does not answer in time: a service
    /// should refuse to start rather than run without its shared state.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, RedisOptions::default()).await
    }

    /// Connects with the given options.
    pub async fn connect_with(url: &str, options: RedisOptions) -> Result<Self, StoreError> {
        let client = ::redis::Client::open(url).map_err(|_| {
            // The URL may hold a password: never echo it.
            StoreError::Unavailable("the Redis URL is malformed".to_owned())
        })?;
        let server = Arc::<str>::from(server_label(client.get_connection_info()));
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.connect_timeout))
            // The per-call timeout is ours; the client's own bound only frees a stuck socket.
            .set_response_timeout(Some(options.connect_timeout))
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(options.reconnect_max_delay)
            .set_number_of_retries(4);
        let manager = tokio::time::timeout(
            options.connect_timeout,
            ConnectionManager::new_with_config(client, config),
        )
        .await
        .map_err(|_| StoreError::Timeout)?
        .map_err(|e| map_error(&e))?;
        Ok(Self {
            manager,
            call_timeout: options.call_timeout,
            server,
            #[cfg(feature = "metrics")]
            durations: CallDurations::new(),
        })
    }

    /// Wraps a connection manager built elsewhere.
    pub fn from_manager(manager: ConnectionManager, call_timeout: Duration) -> Self {
        Self {
            manager,
            call_timeout,
            server: Arc::from("redis"),
            #[cfg(feature = "metrics")]
            durations: CallDurations::new(),
        }
    }

    /// The same connection with another per-call timeout.
    #[must_use]
    pub fn with_call_timeout(mut self, timeout: Duration) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// The per-call timeout.
    pub fn call_timeout(&self) -> Duration {
        self.call_timeout
    }

    /// The underlying connection manager (a clone), for commands this type does not wrap.
    /// Calls made through it are not bounded by the per-call timeout.
    pub fn manager(&self) -> ConnectionManager {
        self.manager.clone()
    }

    /// Runs a script: `EVALSHA`, and on `NOSCRIPT` `SCRIPT LOAD` then `EVALSHA` again, all
    /// within one per-call timeout.
    pub async fn run_script<T>(&self, invocation: &ScriptInvocation<'_>) -> Result<T, StoreError>
    where
        T: FromRedisValue,
    {
        let mut conn = self.manager.clone();
        self.bounded(async move { invocation.invoke_async(&mut conn).await })
            .await
    }

    /// Runs a command within the per-call timeout.
    pub async fn query<T>(&self, cmd: &Cmd) -> Result<T, StoreError>
    where
        T: FromRedisValue,
    {
        let mut conn = self.manager.clone();
        self.bounded(async move { cmd.query_async(&mut conn).await })
            .await
    }

    /// `PING`: whether Redis answers within the per-call timeout.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let reply: String = self.query(&::redis::cmd("PING")).await?;
        if reply == "PONG" {
            Ok(())
        } else {
            Err(StoreError::Protocol("unexpected PING reply".to_owned()))
        }
    }

    /// Runs any Redis future within the per-call timeout, mapping its error.
    pub async fn bounded<T, F>(&self, fut: F) -> Result<T, StoreError>
    where
        F: Future<Output = Result<T, RedisError>>,
    {
        #[cfg(feature = "metrics")]
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(self.call_timeout, fut).await;
        #[cfg(feature = "metrics")]
        {
            let seconds = started.elapsed().as_secs_f64();
            let durations = &self.durations;
            match &result {
                Ok(Ok(_)) => durations.ok.record(seconds),
                Ok(Err(_)) => durations.error.record(seconds),
                Err(_) => durations.timeout.record(seconds),
            }
        }
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(map_error(&err)),
            Err(_) => Err(StoreError::Timeout),
        }
    }
}

/// Turns a redis-rs error into a [`StoreError`]: timeouts into `Timeout`, replies that cannot
/// be used into `Protocol`, everything else (refused, dropped, I/O, server errors) into
/// `Unavailable`. The text is for logs only and never contains credentials.
pub fn map_error(err: &RedisError) -> StoreError {
    if err.is_timeout() {
        return StoreError::Timeout;
    }
    let text = truncate(&err.to_string(), 200);
    match err.kind() {
        ::redis::ErrorKind::Parse | ::redis::ErrorKind::UnexpectedReturnType => {
            StoreError::Protocol(text)
        }
        _ => StoreError::Unavailable(text),
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut out = text.get(..end).unwrap_or_default().to_owned();
    out.push('…');
    out
}

fn server_label(info: &::redis::ConnectionInfo) -> String {
    // Host and port only: never the username or password.
    format!("{}", info.addr())
}

/// A key namespace: keys are `<prefix>{<hash tag>}:<rest>`.
///
/// The hash tag decides the Redis Cluster slot, so every key built with the same tag lands
/// on the same node and one script may touch them all. The prefix may not contain `{` or
/// `}` (that would move the hash tag into the prefix); braces and `%` inside a tag are
/// percent-escaped so a client-chosen value cannot change the slot rule.
///
/// The default is the empty prefix.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyPrefix(Arc<str>);

impl Default for KeyPrefix {
    fn default() -> Self {
        Self(Arc::from(""))
    }
}

impl fmt::Debug for KeyPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("KeyPrefix").field(&&*self.0).finish()
    }
}

impl KeyPrefix {
    /// A prefix such as `myapp:rl:`: printable ASCII without spaces or braces, at most
    /// [`MAX_PREFIX_LEN`] bytes (may be empty).
    pub fn new(prefix: impl Into<String>) -> Result<Self, ConfigError> {
        let prefix = prefix.into();
        if prefix.len() > MAX_PREFIX_LEN {
            return Err(ConfigError::invalid(
                "key_prefix",
                format!("longer than {MAX_PREFIX_LEN} bytes"),
            ));
        }
        if prefix
            .bytes()
            .any(|b| !b.is_ascii_graphic() || b == b'{' || b == b'}')
        {
            return Err(ConfigError::invalid(
                "key_prefix",
                "only printable ASCII without spaces, `{` or `}` is allowed",
            ));
        }
        Ok(Self(Arc::from(prefix)))
    }

    /// The prefix itself.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `<prefix>{<tag>}:<rest>`.
    pub fn key(&self, tag: &str, rest: &str) -> String {
        let mut key = String::with_capacity(self.0.len() + tag.len() + rest.len() + 3);
        key.push_str(&self.0);
        key.push('{');
        push_escaped_tag(&mut key, tag);
        key.push('}');
        if !rest.is_empty() {
            key.push(':');
            key.push_str(rest);
        }
        key
    }

    /// `<prefix>{<tag>}`: the key when one per tag is enough.
    pub fn tagged(&self, tag: &str) -> String {
        self.key(tag, "")
    }
}

fn push_escaped_tag(out: &mut String, tag: &str) {
    for c in tag.chars() {
        match c {
            '{' => out.push_str("%7B"),
            '}' => out.push_str("%7D"),
            '%' => out.push_str("%25"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_refuse_zero_timeouts() {
        let zero = Duration::ZERO;
        assert!(RedisOptions::builder().call_timeout(zero).build().is_err());
        assert!(
            RedisOptions::builder()
                .connect_timeout(zero)
                .build()
                .is_err()
        );
        assert!(
            RedisOptions::builder()
                .reconnect_max_delay(zero)
                .build()
                .is_err()
        );
        let options = RedisOptions::builder()
            .call_timeout(Duration::from_millis(250))
            .build()
            .unwrap();
        assert_eq!(options.call_timeout, Duration::from_millis(250));
    }

    #[test]
    fn keys_carry_one_hash_tag() {
        let prefix = KeyPrefix::new("ts:rl:").unwrap();
        assert_eq!(prefix.key("user_1", "api"), "ts:rl:{user_1}:api");
        assert_eq!(prefix.tagged("abc"), "ts:rl:{abc}");
        assert_eq!(prefix.key("a}b{c%", "x"), "ts:rl:{a%7Db%7Bc%25}:x");
    }

    #[test]
    fn bad_prefixes_are_refused() {
        assert!(KeyPrefix::new("a{b}:").is_err());
        assert!(KeyPrefix::new("with space").is_err());
        assert!(KeyPrefix::new("x".repeat(MAX_PREFIX_LEN + 1)).is_err());
        assert!(KeyPrefix::new("").is_ok());
    }

    #[test]
    fn long_errors_are_truncated_on_char_boundaries() {
        let text = "é".repeat(300);
        let cut = truncate(&text, 201);
        assert!(cut.len() <= 201 + '…'.len_utf8());
    }

    #[tokio::test]
    async fn malformed_url_does_not_echo_it() {
        let err = RedisConnection::connect("redis://user:s3cret@[bad")
            .await
            .unwrap_err();
        assert!(!err.to_string().contains("s3cret"));
    }
}
