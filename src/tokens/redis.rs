//! [`RedisRefreshStore`]: refresh-token families in Redis (feature `redis`).

use std::fmt;
use std::sync::Arc;

use ::redis::Script;

use super::store::{
    DEFAULT_MAX_SPENT, FamilyId, NewFamily, RefreshStore, RotateOutcome, Rotation, TokenHash,
    check_field,
};
use crate::error::StoreError;
use crate::jwt::revocation::StoreFuture;
use crate::redis::{KeyPrefix, RedisConnection};

const CREATE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'sub', ARGV[1], 'role', ARGV[2], 'cur', ARGV[3],
  'cap', ARGV[4], 'gexp', ARGV[5], 'gen', '0')
redis.call('PEXPIREAT', KEYS[1], ARGV[5])
return 1
";

const INDEX: &str = r"
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('PEXPIRETIME', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('PEXPIREAT', KEYS[1], ARGV[2])
end
return 1
";

const ROTATE: &str = r"
local f, s = KEYS[1], KEYS[2]
local h, n = ARGV[1], ARGV[2]
local now, ttl, grace = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local maxsib, maxspent = tonumber(ARGV[6]), tonumber(ARGV[7])
local d = redis.call('HMGET', f, 'sub', 'role', 'cap', 'gexp', 'cur', 'prev', 'prevat', 'rev', 'gen')
local sub = d[1]
if not sub then return {'unknown'} end
local role, cap, gexp = d[2], tonumber(d[3]), tonumber(d[4])
local cur, prev = d[5] or '', d[6] or ''
local prevat, rev, gen = tonumber(d[7] or '0'), d[8], tonumber(d[9] or '0')
local incur = false
for i = 1, #cur, 64 do
  if string.sub(cur, i, i + 63) == h then incur = true end
end
if now >= math.min(cap, gexp) then
  if incur and rev ~= '1' then return {'expired'} end
  return {'unknown'}
end
if rev == '1' then return {'revoked'} end
if incur then
  local e = string.format('%.0f', math.min(now + ttl, cap))
  for i = 1, #cur, 64 do
    redis.call('ZADD', s, gen, string.sub(cur, i, i + 63))
  end
  local extra = redis.call('ZCARD', s) - maxspent
  if extra > 0 then redis.call('ZREMRANGEBYRANK', s, 0, extra - 1) end
  redis.call('HSET', f, 'gen', string.format('%.0f', gen + 1), 'gexp', e, 'cur', n,
    'prev', h, 'prevat', ARGV[3])
  redis.call('PEXPIREAT', f, e)
  redis.call('PEXPIREAT', s, e)
  return {'rotated', sub, role, e}
end
if grace > 0 and prev == h and now - prevat <= grace then
  if #cur / 64 >= maxsib then return {'busy'} end
  redis.call('HSET', f, 'cur', cur .. n)
  return {'sibling', sub, role, string.format('%.0f', gexp)}
end
if redis.call('ZSCORE', s, h) then
  redis.call('HSET', f, 'rev', '1', 'cur', '', 'prev', '')
  redis.call('DEL', s)
  return {'reused', sub}
end
return {'unknown'}
";

const REVOKE: &str = r"
local d = redis.call('HMGET', KEYS[1], 'sub', 'cap', 'gexp', 'rev', 'cur')
if not d[1] or d[4] == '1' then return 0 end
if tonumber(ARGV[2]) >= math.min(tonumber(d[2]), tonumber(d[3])) then return 0 end
if ARGV[1] ~= '' then
  local known = false
  local cur = d[5] or ''
  for i = 1, #cur, 64 do
    if string.sub(cur, i, i + 63) == ARGV[1] then known = true end
  end
  if not known and not redis.call('ZSCORE', KEYS[2], ARGV[1]) then return 0 end
end
redis.call('HSET', KEYS[1], 'rev', '1', 'cur', '', 'prev', '')
redis.call('DEL', KEYS[2])
return 1
";

const SET_ROLE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'role', ARGV[1]) end
return 1
";

struct Scripts {
    create: Script,
    index: Script,
    rotate: Script,
    revoke: Script,
    set_role: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            create: Script::new(CREATE),
            index: Script::new(INDEX),
            rotate: Script::new(ROTATE),
            revoke: Script::new(REVOKE),
            set_role: Script::new(SET_ROLE),
        }
    }
}

/// A [`RefreshStore`] in Redis: one Lua script per rotation (atomic), keys per family under
/// one hash tag, TTLs so nothing outlives its tokens.
///
/// Several service instances given the same Redis and prefix are one store: a logout or a
/// detected reuse on one is refused on every other at once. The rules of a rotation are
/// those of [`RefreshStore`]; times are the caller's (see there).
///
/// It runs on a shared [`RedisConnection`] (self-reconnecting, per-call timeout; a timeout or
/// an unreachable server is a [`StoreError`], so callers fail closed) and name their keys
/// with a [`KeyPrefix`] and a hash tag, so every key one script touches lives in one Redis
/// Cluster slot. Every key expires (`PEXPIREAT`/`EXAT`) when what it guards is dead anyway.
/// Requires Redis 7.0 or later (`PEXPIRETIME`, `EXPIREAT … GT`).
///
/// # Keys
///
/// | key | type | what |
/// |---|---|---|
/// | `<prefix>{<family hex>}:rf` | hash | subject, role, family end, generation end, current token hashes, last rotated hash and time, revoked flag |
/// | `<prefix>{<family hex>}:rs` | sorted set | spent token hashes (bounded, oldest dropped) |
/// | `<prefix>{<subject>}:rfams` | set | the subject's family ids, for "log out everywhere" |
///
/// The revocation state the family's end writes is kept by a
/// [`RedisRevocationStore`](crate::jwt::revocation::RedisRevocationStore), under its own keys.
#[derive(Clone)]
pub struct RedisRefreshStore {
    conn: RedisConnection,
    prefix: KeyPrefix,
    max_spent: usize,
    scripts: Arc<Scripts>,
}

impl fmt::Debug for RedisRefreshStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisRefreshStore")
            .field("conn", &self.conn)
            .field("prefix", &self.prefix)
            .field("max_spent", &self.max_spent)
            .finish()
    }
}

fn protocol(what: &str) -> StoreError {
    StoreError::Protocol(format!("unexpected reply from the {what} script"))
}

impl RedisRefreshStore {
    /// A store on `conn` with keys under `prefix`.
    pub fn new(conn: RedisConnection, prefix: KeyPrefix) -> Self {
        Self {
            conn,
            prefix,
            max_spent: DEFAULT_MAX_SPENT,
            scripts: Arc::new(Scripts::new()),
        }
    }

    /// Keeps up to `max_spent` spent hashes per family (at least 1; default 256).
    #[must_use]
    pub fn max_spent(mut self, max_spent: usize) -> Self {
        self.max_spent = max_spent.max(1);
        self
    }

    /// The connection.
    pub fn connection(&self) -> &RedisConnection {
        &self.conn
    }

    fn family_key(&self, family: FamilyId) -> String {
        self.prefix.key(&family.to_hex(), "rf")
    }

    fn spent_key(&self, family: FamilyId) -> String {
        self.prefix.key(&family.to_hex(), "rs")
    }

    fn index_key(&self, subject: &str) -> String {
        self.prefix.key(subject, "rfams")
    }
}

fn parse_outcome(reply: Vec<String>) -> Result<RotateOutcome, StoreError> {
    let mut it = reply.into_iter();
    let kind = it.next().ok_or_else(|| protocol("rotate"))?;
    let mut next = || it.next().ok_or_else(|| protocol("rotate"));
    Ok(match kind.as_str() {
        "rotated" | "sibling" => {
            let subject = next()?;
            let role = next()?;
            let expires_ms = next()?.parse().map_err(|_| protocol("rotate"))?;
            if kind == "rotated" {
                RotateOutcome::Rotated {
                    subject,
                    role,
                    expires_ms,
                }
            } else {
                RotateOutcome::Sibling {
                    subject,
                    role,
                    expires_ms,
                }
            }
        }
        "reused" => RotateOutcome::Reused { subject: next()? },
        "revoked" => RotateOutcome::Revoked,
        "expired" => RotateOutcome::Expired,
        "busy" => RotateOutcome::Busy,
        "unknown" => RotateOutcome::Unknown,
        _ => return Err(protocol("rotate")),
    })
}

impl RefreshStore for RedisRefreshStore {
    fn create(&self, family: &NewFamily) -> StoreFuture<()> {
        if let Err(e) = check_field(&family.subject).and_then(|()| check_field(&family.role)) {
            return StoreFuture::ready(Err(e));
        }
        let this = self.clone();
        let family = family.clone();
        StoreFuture::boxed(async move {
            let index_key = this.index_key(&family.subject);
            let family_key = this.family_key(family.family);
            let generation_expires = family.token_expires_ms.min(family.family_expires_ms);
            // Index first, so "log out everywhere" never misses a family.
            let mut index = this.scripts.index.prepare_invoke();
            index
                .key(&index_key)
                .arg(family.family.to_hex())
                .arg(family.family_expires_ms);
            let _: i64 = this.conn.run_script(&index).await?;
            let mut create = this.scripts.create.prepare_invoke();
            create
                .key(&family_key)
                .arg(&family.subject)
                .arg(&family.role)
                .arg(family.token.to_hex())
                .arg(family.family_expires_ms)
                .arg(generation_expires);
            let created: i64 = this.conn.run_script(&create).await?;
            if created == 1 {
                Ok(())
            } else {
                Err(StoreError::Protocol("family id already exists".into()))
            }
        })
    }

    fn rotate(&self, rotation: &Rotation) -> StoreFuture<RotateOutcome> {
        let this = self.clone();
        let r = rotation.clone();
        StoreFuture::boxed(async move {
            let mut invocation = this.scripts.rotate.prepare_invoke();
            invocation
                .key(this.family_key(r.family))
                .key(this.spent_key(r.family))
                .arg(r.presented.to_hex())
                .arg(r.successor.to_hex())
                .arg(r.now_ms)
                .arg(r.token_ttl_ms)
                .arg(r.grace_ms)
                .arg(r.max_siblings)
                .arg(this.max_spent);
            let reply: Vec<String> = this.conn.run_script(&invocation).await?;
            parse_outcome(reply)
        })
    }

    fn set_role(&self, family: FamilyId, role: &str) -> StoreFuture<()> {
        if let Err(e) = check_field(role) {
            return StoreFuture::ready(Err(e));
        }
        let this = self.clone();
        let role = role.to_owned();
        StoreFuture::boxed(async move {
            let mut invocation = this.scripts.set_role.prepare_invoke();
            invocation.key(this.family_key(family)).arg(role);
            let _: i64 = this.conn.run_script(&invocation).await?;
            Ok(())
        })
    }

    fn revoke(&self, family: FamilyId, proof: Option<TokenHash>, now_ms: u64) -> StoreFuture<bool> {
        let this = self.clone();
        StoreFuture::boxed(async move {
            let mut invocation = this.scripts.revoke.prepare_invoke();
            invocation
                .key(this.family_key(family))
                .key(this.spent_key(family))
                .arg(proof.map(|p| p.to_hex()).unwrap_or_default())
                .arg(now_ms);
            let revoked: i64 = this.conn.run_script(&invocation).await?;
            Ok(revoked == 1)
        })
    }

    fn revoke_subject(&self, subject: &str, now_ms: u64) -> StoreFuture<u64> {
        if let Err(e) = check_field(subject) {
            return StoreFuture::ready(Err(e));
        }
        let this = self.clone();
        let index_key = self.index_key(subject);
        StoreFuture::boxed(async move {
            let families: Vec<String> = this
                .conn
                .query(::redis::cmd("SMEMBERS").arg(&index_key))
                .await?;
            let mut revoked = 0;
            for hex in &families {
                let Some(family) = FamilyId::from_hex(hex) else {
                    continue;
                };
                let mut invocation = this.scripts.revoke.prepare_invoke();
                invocation
                    .key(this.family_key(family))
                    .key(this.spent_key(family))
                    .arg("")
                    .arg(now_ms);
                let done: i64 = this.conn.run_script(&invocation).await?;
                revoked += u64::from(done == 1);
            }
            if !families.is_empty() {
                // Only the members read: a family indexed meanwhile (a new sign-in) stays.
                let _: i64 = this
                    .conn
                    .query(::redis::cmd("SREM").arg(&index_key).arg(&families))
                    .await?;
            }
            Ok(revoked)
        })
    }
}
