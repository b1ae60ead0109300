//! [`RedisRevocationStore`]: revoked tokens, sessions and subjects in Redis (feature
//! `redis`).

use std::fmt;
use std::sync::Arc;

use ::redis::{Script, Value};

use super::{RevocationStore, StoreFuture, TokenRef, check_id};
use crate::error::StoreError;
use crate::redis::{KeyPrefix, RedisConnection};

const REVOKE_TOKEN: &str = r"
local t = redis.call('TIME')
if tonumber(ARGV[1]) <= tonumber(t[1]) then return 0 end
redis.call('SET', KEYS[1], '1', 'NX', 'EXAT', ARGV[1])
redis.call('EXPIREAT', KEYS[1], ARGV[1], 'GT')
return 1
";

const REVOKE_SUBJECT: &str = r"
local t = redis.call('TIME')
if tonumber(ARGV[2]) <= tonumber(t[1]) then return 0 end
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tonumber(ARGV[1]) > cur then redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL') end
if redis.call('EXPIREAT', KEYS[1], ARGV[2], 'GT') == 0 and redis.call('TTL', KEYS[1]) < 0 then
  redis.call('EXPIREAT', KEYS[1], ARGV[2])
end
return 1
";

fn protocol(what: &str) -> StoreError {
    StoreError::Protocol(format!("unexpected reply from the {what} script"))
}

/// A [`RevocationStore`] in Redis: revoked `jti`s and sessions expire with their tokens
/// (`EXAT`), and a subject's watermark only ever moves forward (a Lua script compares before
/// writing). A check is one round trip (a pipelined `GET`, and an `EXISTS` for the token's
/// `jti` and one for its `sid`).
///
/// It runs on a shared [`RedisConnection`] (self-reconnecting, per-call timeout; a timeout
/// or an unreachable server is a [`StoreError`], so callers fail closed). Every key carries a
/// [`KeyPrefix`] and a hash tag and expires when what it guards is dead anyway:
///
/// | key | type | what |
/// |---|---|---|
/// | `<prefix>{<jti>}:jti` | string | a revoked access token, until its `exp` |
/// | `<prefix>{<sid>}:sid` | string | a revoked session (every access token with this `sid`), until its last token's `exp` |
/// | `<prefix>{<subject>}:wm` | string | the subject's revoked-before watermark (unix s), never lowered |
#[derive(Clone)]
pub struct RedisRevocationStore {
    conn: RedisConnection,
    prefix: KeyPrefix,
    revoke_token: Arc<Script>,
    revoke_subject: Arc<Script>,
}

impl fmt::Debug for RedisRevocationStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRevocationStore")
            .field("conn", &self.conn)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl RedisRevocationStore {
    /// A store on `conn` with keys under `prefix`.
    pub fn new(conn: RedisConnection, prefix: KeyPrefix) -> Self {
        Self {
            conn,
            prefix,
            revoke_token: Arc::new(Script::new(REVOKE_TOKEN)),
            revoke_subject: Arc::new(Script::new(REVOKE_SUBJECT)),
        }
    }

    /// The connection.
    pub fn connection(&self) -> &RedisConnection {
        &self.conn
    }

    fn jti_key(&self, jti: &str) -> String {
        self.prefix.key(jti, "jti")
    }

    fn session_key(&self, session: &str) -> String {
        self.prefix.key(session, "sid")
    }

    /// Runs one of the revocation scripts on the key of `id` (named by `key`) with `args`,
    /// after checking the id: every write of this store.
    fn write<const N: usize>(
        &self,
        script: &Arc<Script>,
        id: &str,
        key: impl FnOnce(&Self, &str) -> String,
        args: [u64; N],
    ) -> StoreFuture<()> {
        if let Err(e) = check_id(id) {
            return StoreFuture::ready(Err(e));
        }
        let conn = self.conn.clone();
        let script = Arc::clone(script);
        let key = key(self, id);
        StoreFuture::boxed(async move {
            let mut invocation = script.prepare_invoke();
            invocation.key(key);
            for arg in args {
                invocation.arg(arg);
            }
            let _: i64 = conn.run_script(&invocation).await?;
            Ok(())
        })
    }

    fn watermark_key(&self, subject: &str) -> String {
        self.prefix.key(subject, "wm")
    }
}

fn as_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Int(n) => u64::try_from(*n).ok(),
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

impl RevocationStore for RedisRevocationStore {
    fn revoke_token(&self, jti: &str, expires_at: u64) -> StoreFuture<()> {
        self.write(&self.revoke_token, jti, Self::jti_key, [expires_at])
    }

    fn revoke_session(&self, session: &str, expires_at: u64) -> StoreFuture<()> {
        self.write(&self.revoke_token, session, Self::session_key, [expires_at])
    }

    fn revoke_subject(
        &self,
        subject: &str,
        issued_before: u64,
        expires_at: u64,
    ) -> StoreFuture<()> {
        self.write(
            &self.revoke_subject,
            subject,
            Self::watermark_key,
            [issued_before, expires_at],
        )
    }

    fn check(&self, token: TokenRef<'_>) -> StoreFuture<bool> {
        // An identifier this store refuses to revoke cannot be revoked: skip that lookup
        // rather than fail the request.
        let jti_key = token
            .jti
            .filter(|jti| check_id(jti).is_ok())
            .map(|jti| self.jti_key(jti));
        let session_key = token
            .session
            .filter(|sid| check_id(sid).is_ok())
            .map(|sid| self.session_key(sid));
        if check_id(token.subject).is_err() && jti_key.is_none() && session_key.is_none() {
            return StoreFuture::ready(Ok(false));
        }
        let watermark_key = self.watermark_key(token.subject);
        let issued_at = token.issued_at;
        let conn = self.conn.clone();
        StoreFuture::boxed(async move {
            let mut pipe = ::redis::pipe();
            pipe.cmd("GET").arg(&watermark_key);
            // One EXISTS per denial key (they may live in different cluster slots).
            for key in jti_key.iter().chain(&session_key) {
                pipe.cmd("EXISTS").arg(key);
            }
            let mut manager = conn.manager();
            let replies: Vec<Value> = conn.bounded(pipe.query_async(&mut manager)).await?;
            let mut replies = replies.iter();
            let watermark = match replies.next() {
                Some(Value::Nil) => None,
                Some(value) => Some(as_u64(value).ok_or_else(|| protocol("watermark"))?),
                None => return Err(protocol("watermark")),
            };
            for _ in jti_key.iter().chain(&session_key) {
                let exists = replies
                    .next()
                    .and_then(as_u64)
                    .ok_or_else(|| protocol("jti or sid"))?;
                if exists > 0 {
                    return Ok(true);
                }
            }
            Ok(watermark.is_some_and(|before| issued_at.is_none_or(|iat| iat < before)))
        })
    }
}
