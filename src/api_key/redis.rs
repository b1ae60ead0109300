//! [`RedisApiKeyStore`]: key records shared by every process through Redis.

use std::fmt;
use std::sync::Arc;

use ::redis::Script;

use super::key::KeyId;
use super::store::{ApiKeyRecord, ApiKeyStore};
use crate::error::StoreError;
use crate::jwt::revocation::StoreFuture;
use crate::redis::{KeyPrefix, RedisConnection};

/// Writes a record, keeping a revocation already stored (final), never moving the last use
/// back.
const PUT: &str = r"
local revoked = ARGV[2]
if redis.call('HGET', KEYS[1], 'revoked') == '1' then revoked = '1' end
local seen = tonumber(redis.call('HGET', KEYS[1], 'last_used') or '0') or 0
local used = math.max(seen, tonumber(ARGV[3]))
redis.call('HSET', KEYS[1], 'record', ARGV[1], 'revoked', revoked,
  'last_used', string.format('%.0f', used))
return 1
";

/// Marks a record revoked (only one that exists).
const REVOKE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'revoked', '1')
return 1
";

/// Moves `last_used` forward, never back (only for a record that exists).
const TOUCH: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local seen = tonumber(redis.call('HGET', KEYS[1], 'last_used') or '0') or 0
if tonumber(ARGV[1]) > seen then redis.call('HSET', KEYS[1], 'last_used', ARGV[1]) end
return 1
";

/// Key records in Redis: every process given the same Redis and prefix sees a revocation on
/// its next request. One `GET` per request (the layer caches nothing).
///
/// | key | type | what |
/// |---|---|---|
/// | `<prefix>{<key id>}:key` | hash | `record`: the record as JSON (the secret's hash, never the secret); `revoked`; `last_used` |
/// | `<prefix>{<owner>}:keys` | set | the owner's key ids, for listing |
#[derive(Clone)]
pub struct RedisApiKeyStore {
    conn: RedisConnection,
    prefix: KeyPrefix,
    put: Arc<Script>,
    revoke: Arc<Script>,
    touch: Arc<Script>,
}

impl fmt::Debug for RedisApiKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisApiKeyStore")
            .field("conn", &self.conn)
            .field("prefix", &self.prefix)
            .finish()
    }
}

impl RedisApiKeyStore {
    /// A store on `conn` with keys under `prefix`.
    pub fn new(conn: RedisConnection, prefix: KeyPrefix) -> Self {
        Self {
            conn,
            prefix,
            put: Arc::new(Script::new(PUT)),
            revoke: Arc::new(Script::new(REVOKE)),
            touch: Arc::new(Script::new(TOUCH)),
        }
    }

    fn record_key(&self, id: &KeyId) -> String {
        self.prefix.key(&id.to_string(), "key")
    }

    fn owner_key(&self, owner: &str) -> String {
        self.prefix.key(owner, "keys")
    }
}

/// A record from its hash fields (`record`, `revoked`, `last_used`).
fn decode(
    (json, revoked, last_used): (Option<String>, Option<String>, Option<u64>),
) -> Result<Option<Arc<ApiKeyRecord>>, StoreError> {
    let Some(json) = json else {
        return Ok(None);
    };
    let mut record = serde_json::from_str::<ApiKeyRecord>(&json)
        .map_err(|_| StoreError::Protocol("an API key record that does not parse".into()))?;
    record.revoked |= revoked.as_deref() == Some("1");
    record.last_used_at = record.last_used_at.max(last_used);
    Ok(Some(Arc::new(record)))
}

impl ApiKeyStore for RedisApiKeyStore {
    fn get(&self, id: &KeyId) -> StoreFuture<Option<Arc<ApiKeyRecord>>> {
        let (conn, key) = (self.conn.clone(), self.record_key(id));
        StoreFuture::boxed(async move {
            let fields = conn
                .query(
                    ::redis::cmd("HMGET")
                        .arg(&key)
                        .arg("record")
                        .arg("revoked")
                        .arg("last_used"),
                )
                .await?;
            decode(fields)
        })
    }

    fn put(&self, record: &ApiKeyRecord) -> StoreFuture<()> {
        let Ok(json) = serde_json::to_string(record) else {
            return StoreFuture::ready(Err(StoreError::Protocol(
                "an API key record that does not serialise".into(),
            )));
        };
        let (conn, script) = (self.conn.clone(), self.put.clone());
        let (key, index, id) = (
            self.record_key(&record.id),
            self.owner_key(&record.owner),
            record.id.to_string(),
        );
        let revoked = if record.revoked { "1" } else { "0" };
        let last_used = record.last_used_at.unwrap_or(0);
        StoreFuture::boxed(async move {
            let mut invocation = script.key(&key);
            invocation.arg(json).arg(revoked).arg(last_used);
            let _: i64 = conn.run_script(&invocation).await?;
            // Another slot: a command of its own (the index is only for listing).
            let _: i64 = conn.query(::redis::cmd("SADD").arg(&index).arg(id)).await?;
            Ok(())
        })
    }

    fn revoke(&self, id: &KeyId) -> StoreFuture<bool> {
        let (conn, script, key) = (self.conn.clone(), self.revoke.clone(), self.record_key(id));
        StoreFuture::boxed(async move {
            let invocation = script.key(&key);
            let done: i64 = conn.run_script(&invocation).await?;
            Ok(done == 1)
        })
    }

    fn touch(&self, id: &KeyId, at: u64) -> StoreFuture<()> {
        let (conn, script, key) = (self.conn.clone(), self.touch.clone(), self.record_key(id));
        StoreFuture::boxed(async move {
            let mut invocation = script.key(&key);
            invocation.arg(at);
            let _: i64 = conn.run_script(&invocation).await?;
            Ok(())
        })
    }

    fn list(&self, owner: &str) -> StoreFuture<Vec<Arc<ApiKeyRecord>>> {
        let this = self.clone();
        let index = self.owner_key(owner);
        StoreFuture::boxed(async move {
            let ids: Vec<String> = this
                .conn
                .query(::redis::cmd("SMEMBERS").arg(&index))
                .await?;
            let mut records = Vec::new();
            for id in ids {
                let Ok(id) = id.parse::<KeyId>() else {
                    continue;
                };
                if let Some(record) = this.get(&id).await? {
                    records.push(record);
                }
            }
            records.sort_by_key(|record| record.created_at);
            Ok(records)
        })
    }
}
