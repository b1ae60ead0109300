//! Where refresh-token families live: the [`RefreshStore`] trait, [`MemoryRefreshStore`],
//! and `RedisRefreshStore` (feature `redis`).

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;

use crate::error::StoreError;
use crate::jwt::revocation::StoreFuture;

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use super::redis::RedisRefreshStore;

/// The id of a refresh-token family (128 random bits), shown as 32 lowercase hex digits.
///
/// Not a secret (it is inside every refresh token of the family and in logs when reuse is
/// detected), but it grants nothing without a token's 256-bit secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FamilyId([u8; 16]);

impl FamilyId {
    /// A family id from its 16 bytes.
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The 16 bytes.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Parses 32 lowercase hex digits.
    pub fn from_hex(hex: &str) -> Option<Self> {
        let mut out = [0u8; 16];
        crate::hex::decode_into(hex.as_bytes(), &mut out)?;
        Some(Self(out))
    }

    /// 32 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        crate::hex::encode(&self.0)
    }
}

impl fmt::Display for FamilyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for FamilyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FamilyId({self})")
    }
}

/// The SHA-256 hash of a refresh token: all a store ever keeps of it.
///
/// Compared in constant time. `Debug` does not print it.
#[derive(Clone, Copy, Eq)]
pub struct TokenHash([u8; 32]);

impl PartialEq for TokenHash {
    fn eq(&self, other: &Self) -> bool {
        crate::jwt::constant_time_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

impl TokenHash {
    /// A hash from its 32 bytes.
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes.
    pub const fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// 64 lowercase hex digits (how the Redis store keeps it).
    pub fn to_hex(&self) -> String {
        crate::hex::encode(&self.0)
    }
}

/// A new family: the first token of a sign-in.
#[derive(Debug, Clone)]
pub struct NewFamily {
    /// The family's id.
    pub family: FamilyId,
    /// The subject signed in.
    pub subject: String,
    /// The subject's role at sign-in.
    pub role: String,
    /// The hash of the first token.
    pub token: TokenHash,
    /// Now (unix ms).
    pub now_ms: u64,
    /// When the first token expires (unix ms).
    pub token_expires_ms: u64,
    /// When the family ends, whatever its rotations (unix ms, ≥ `token_expires_ms`).
    pub family_expires_ms: u64,
}

/// One use of a refresh token: consume `presented`, make `successor` valid.
#[derive(Debug, Clone)]
pub struct Rotation {
    /// The family named by the presented token.
    pub family: FamilyId,
    /// The hash of the presented token.
    pub presented: TokenHash,
    /// The hash of the token to issue in its place.
    pub successor: TokenHash,
    /// Now (unix ms).
    pub now_ms: u64,
    /// Lifetime of a token from its issue (ms); capped by the family's end.
    pub token_ttl_ms: u64,
    /// How long after a rotation the rotated token may be presented again (ms).
    pub grace_ms: u64,
    /// Most tokens one generation may hold (the rotated one plus siblings).
    pub max_siblings: u32,
}

/// What a rotation did. See [`RefreshStore`] for the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RotateOutcome {
    /// The presented token was current: it is spent and the successor is valid.
    Rotated {
        /// The family's subject.
        subject: String,
        /// The family's stored role.
        role: String,
        /// When the successor expires (unix ms).
        expires_ms: u64,
    },
    /// The presented token was rotated within the grace window: the successor was added as a
    /// sibling in the same family.
    Sibling {
        /// The family's subject.
        subject: String,
        /// The family's stored role.
        role: String,
        /// When the successor expires (unix ms).
        expires_ms: u64,
    },
    /// The presented token was already spent: the family is now revoked.
    Reused {
        /// The family's subject.
        subject: String,
    },
    /// The family was revoked (logout, reuse).
    Revoked,
    /// The presented token was current but has expired (or the family reached its cap).
    Expired,
    /// No such family, or the token is not one of it.
    Unknown,
    /// A grace-window repeat, but the generation already holds `max_siblings` tokens.
    Busy,
}

/// Where refresh-token families are kept.
///
/// A store keeps, per family (one sign-in): the subject and role, the absolute expiry of the
/// family, the SHA-256 hashes of the tokens of the current generation (one, plus siblings
/// minted in the grace window), the hash and time of the token rotated last, a bounded list of
/// spent hashes, and a revoked flag. It never sees a usable token: only hashes.
///
/// The decision of a rotation is made atomically inside the store (memory: under the
/// family's map-entry lock; Redis: in one Lua script), with the same rules in both:
///
/// 1. no such family, or the family is past its end → [`RotateOutcome::Unknown`], except a
///    token of the current generation past its end → [`RotateOutcome::Expired`];
/// 2. family revoked → [`RotateOutcome::Revoked`];
/// 3. presented hash in the current generation → the whole generation is spent, the
///    successor becomes the only valid token, [`RotateOutcome::Rotated`];
/// 4. presented hash is the one rotated last, at most `grace_ms` ago → the successor is added
///    to the current generation as a sibling ([`RotateOutcome::Sibling`]), unless the
///    generation already holds `max_siblings` tokens ([`RotateOutcome::Busy`]);
/// 5. presented hash among the spent ones → the family is revoked,
///    [`RotateOutcome::Reused`];
/// 6. anything else (a wrong secret for this family) → [`RotateOutcome::Unknown`]: guessing
///    does not let anyone revoke someone else's family.
///
/// All times are unix milliseconds from the caller's [`Clock`](crate::clock::Clock), so both
/// stores are deterministic under a `ManualClock`, and instances sharing Redis must keep
/// their clocks in sync (NTP) to well within the grace window.
///
/// Object-safe: use `Arc<dyn RefreshStore>` to choose the store at runtime.
pub trait RefreshStore: Send + Sync + fmt::Debug + 'static {
    /// Stores a new family with its first token. Fails (never overwrites) when the id exists.
    fn create(&self, family: &NewFamily) -> StoreFuture<()>;

    /// Consumes a token atomically, deciding by the rules above.
    fn rotate(&self, rotation: &Rotation) -> StoreFuture<RotateOutcome>;

    /// Changes the stored role of a live family (used at the next rotation).
    fn set_role(&self, family: FamilyId, role: &str) -> StoreFuture<()>;

    /// Revokes a family. With `proof`, only when it is the hash of one of the family's tokens
    /// (current or spent), so a family id alone cannot log anyone out. Returns whether a
    /// live family was revoked.
    fn revoke(&self, family: FamilyId, proof: Option<TokenHash>, now_ms: u64) -> StoreFuture<bool>;

    /// Revokes every family of `subject`; returns how many live families were revoked.
    fn revoke_subject(&self, subject: &str, now_ms: u64) -> StoreFuture<u64>;
}

impl<St: RefreshStore + ?Sized> RefreshStore for Arc<St> {
    fn create(&self, family: &NewFamily) -> StoreFuture<()> {
        (**self).create(family)
    }

    fn rotate(&self, rotation: &Rotation) -> StoreFuture<RotateOutcome> {
        (**self).rotate(rotation)
    }

    fn set_role(&self, family: FamilyId, role: &str) -> StoreFuture<()> {
        (**self).set_role(family, role)
    }

    fn revoke(&self, family: FamilyId, proof: Option<TokenHash>, now_ms: u64) -> StoreFuture<bool> {
        (**self).revoke(family, proof, now_ms)
    }

    fn revoke_subject(&self, subject: &str, now_ms: u64) -> StoreFuture<u64> {
        (**self).revoke_subject(subject, now_ms)
    }
}

/// Longest subject or role a store keeps (bytes).
pub(crate) const MAX_FIELD_LEN: usize = 512;

pub(crate) fn check_field(value: &str) -> Result<(), StoreError> {
    if value.is_empty() || value.len() > MAX_FIELD_LEN {
        return Err(StoreError::Protocol(
            "subject or role empty or too long".into(),
        ));
    }
    Ok(())
}

/// Default number of families a [`MemoryRefreshStore`] keeps.
pub const DEFAULT_MEMORY_CAPACITY: usize = 1_000_000;
/// Default number of spent token hashes kept per family for reuse detection.
pub const DEFAULT_MAX_SPENT: usize = 256;

struct Family {
    subject: Arc<str>,
    role: Arc<str>,
    family_expires_ms: u64,
    generation_expires_ms: u64,
    current: Vec<TokenHash>,
    previous: Option<(TokenHash, u64)>,
    spent: VecDeque<TokenHash>,
    revoked: bool,
}

impl Family {
    fn ends_ms(&self) -> u64 {
        self.family_expires_ms.min(self.generation_expires_ms)
    }

    fn knows(&self, hash: &TokenHash) -> bool {
        self.current.contains(hash) || self.spent.contains(hash)
    }

    fn revoke(&mut self) {
        self.revoked = true;
        self.current.clear();
        self.previous = None;
        self.spent = VecDeque::new();
    }
}

/// An in-memory [`RefreshStore`] for one process.
///
/// Concurrent map with one entry per family; a rotation holds that entry's lock, so two
/// concurrent uses of one token are decided one after the other. Bounded: at most
/// `capacity` families (default 1,000,000) and `max_spent` spent hashes per family
/// (default 256; an older spent token is then `Unknown` rather than `Reused`, still refused).
/// Families past their end are treated as absent and swept every 1024 writes and whenever
/// the store is full; when it is still full, a new sign-in fails with
/// [`StoreError::Unavailable`] (fail closed) instead of evicting a live session.
#[derive(Clone)]
pub struct MemoryRefreshStore {
    inner: Arc<MemoryInner>,
}

struct MemoryInner {
    families: DashMap<FamilyId, Family>,
    subjects: DashMap<Arc<str>, Vec<FamilyId>>,
    capacity: usize,
    max_spent: usize,
    writes: AtomicUsize,
    last_now_ms: AtomicU64,
}

impl fmt::Debug for MemoryRefreshStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryRefreshStore")
            .field("families", &self.inner.families.len())
            .field("capacity", &self.inner.capacity)
            .field("max_spent", &self.inner.max_spent)
            .finish()
    }
}

impl Default for MemoryRefreshStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryRefreshStore {
    /// A store of up to 1,000,000 families.
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_MEMORY_CAPACITY)
    }

    /// A store of up to `capacity` families (at least 1).
    pub fn with_capacity(capacity: usize) -> Self {
        Self::with_limits(capacity, DEFAULT_MAX_SPENT)
    }

    /// A store of up to `capacity` families (at least 1), keeping up to `max_spent` spent
    /// hashes per family for reuse detection (at least 1; default 256).
    pub fn with_limits(capacity: usize, max_spent: usize) -> Self {
        Self {
            inner: Arc::new(MemoryInner {
                families: DashMap::new(),
                subjects: DashMap::new(),
                capacity: capacity.max(1),
                max_spent: max_spent.max(1),
                writes: AtomicUsize::new(0),
                last_now_ms: AtomicU64::new(0),
            }),
        }
    }

    /// How many families are kept (ended ones not yet swept included).
    pub fn len(&self) -> usize {
        self.inner.families.len()
    }

    /// Whether no family is kept.
    pub fn is_empty(&self) -> bool {
        self.inner.families.is_empty()
    }

    /// How many subjects have at least one family kept.
    pub fn subjects(&self) -> usize {
        self.inner.subjects.len()
    }

    /// Drops every family that ended before `now_ms`.
    pub fn sweep(&self, now_ms: u64) {
        let mut removed: Vec<(Arc<str>, FamilyId)> = Vec::new();
        self.inner.families.retain(|id, family| {
            let keep = family.ends_ms() > now_ms;
            if !keep {
                removed.push((family.subject.clone(), *id));
            }
            keep
        });
        for (subject, id) in removed {
            self.unindex(&subject, id);
        }
    }

    fn unindex(&self, subject: &Arc<str>, id: FamilyId) {
        self.inner.subjects.remove_if_mut(subject, |_, ids| {
            ids.retain(|f| *f != id);
            ids.is_empty()
        });
    }

    fn observe(&self, now_ms: u64) {
        self.inner.last_now_ms.fetch_max(now_ms, Ordering::Relaxed);
    }

    fn make_room(&self, now_ms: u64) -> Result<(), StoreError> {
        let writes = self.inner.writes.fetch_add(1, Ordering::Relaxed);
        if writes % 1024 == 1023 || self.len() >= self.inner.capacity {
            self.sweep(now_ms);
        }
        if self.len() >= self.inner.capacity {
            return Err(StoreError::Unavailable(
                "the in-memory refresh store is full".into(),
            ));
        }
        Ok(())
    }

    fn create_now(&self, new: &NewFamily) -> Result<(), StoreError> {
        check_field(&new.subject)?;
        check_field(&new.role)?;
        self.observe(new.now_ms);
        self.make_room(new.now_ms)?;
        let subject: Arc<str> = Arc::from(new.subject.as_str());
        // Index first: a family never exists without its subject knowing it, so "log out
        // everywhere" cannot miss it.
        self.inner
            .subjects
            .entry(subject.clone())
            .or_default()
            .push(new.family);
        let family = Family {
            subject,
            role: Arc::from(new.role.as_str()),
            family_expires_ms: new.family_expires_ms,
            generation_expires_ms: new.token_expires_ms.min(new.family_expires_ms),
            current: vec![new.token],
            previous: None,
            spent: VecDeque::new(),
            revoked: false,
        };
        let mut inserted = false;
        self.inner.families.entry(new.family).or_insert_with(|| {
            inserted = true;
            family
        });
        if !inserted {
            return Err(StoreError::Protocol("family id already exists".into()));
        }
        Ok(())
    }

    fn rotate_now(&self, r: &Rotation) -> RotateOutcome {
        self.observe(r.now_ms);
        self.inner.writes.fetch_add(1, Ordering::Relaxed);
        let Some(mut family) = self.inner.families.get_mut(&r.family) else {
            return RotateOutcome::Unknown;
        };
        let in_current = family.current.contains(&r.presented);
        if r.now_ms >= family.ends_ms() {
            return if in_current && !family.revoked {
                RotateOutcome::Expired
            } else {
                RotateOutcome::Unknown
            };
        }
        if family.revoked {
            return RotateOutcome::Revoked;
        }
        if in_current {
            let expires_ms = r
                .now_ms
                .saturating_add(r.token_ttl_ms)
                .min(family.family_expires_ms);
            let generation = std::mem::replace(&mut family.current, vec![r.successor]);
            family.spent.extend(generation);
            while family.spent.len() > self.inner.max_spent {
                family.spent.pop_front();
            }
            family.previous = Some((r.presented, r.now_ms));
            family.generation_expires_ms = expires_ms;
            return RotateOutcome::Rotated {
                subject: family.subject.to_string(),
                role: family.role.to_string(),
                expires_ms,
            };
        }
        if let Some((previous, rotated_ms)) = family.previous
            && previous == r.presented
            && r.grace_ms > 0
            && r.now_ms.saturating_sub(rotated_ms) <= r.grace_ms
        {
            if family.current.len() >= r.max_siblings as usize {
                return RotateOutcome::Busy;
            }
            family.current.push(r.successor);
            return RotateOutcome::Sibling {
                subject: family.subject.to_string(),
                role: family.role.to_string(),
                expires_ms: family.generation_expires_ms,
            };
        }
        if family.spent.contains(&r.presented) {
            family.revoke();
            return RotateOutcome::Reused {
                subject: family.subject.to_string(),
            };
        }
        RotateOutcome::Unknown
    }

    fn revoke_now(&self, id: FamilyId, proof: Option<TokenHash>, now_ms: u64) -> bool {
        self.observe(now_ms);
        let Some(mut family) = self.inner.families.get_mut(&id) else {
            return false;
        };
        if family.revoked || now_ms >= family.ends_ms() {
            return false;
        }
        if let Some(proof) = proof
            && !family.knows(&proof)
        {
            return false;
        }
        family.revoke();
        true
    }

    fn revoke_subject_now(&self, subject: &str, now_ms: u64) -> u64 {
        self.observe(now_ms);
        let ids = self
            .inner
            .subjects
            .get(subject)
            .map(|ids| ids.clone())
            .unwrap_or_default();
        ids.into_iter()
            .filter(|id| self.revoke_now(*id, None, now_ms))
            .count() as u64
    }
}

impl RefreshStore for MemoryRefreshStore {
    fn create(&self, family: &NewFamily) -> StoreFuture<()> {
        StoreFuture::ready(self.create_now(family))
    }

    fn rotate(&self, rotation: &Rotation) -> StoreFuture<RotateOutcome> {
        StoreFuture::ready(Ok(self.rotate_now(rotation)))
    }

    fn set_role(&self, family: FamilyId, role: &str) -> StoreFuture<()> {
        let result = check_field(role).map(|()| {
            if let Some(mut family) = self.inner.families.get_mut(&family) {
                family.role = Arc::from(role);
            }
        });
        StoreFuture::ready(result)
    }

    fn revoke(&self, family: FamilyId, proof: Option<TokenHash>, now_ms: u64) -> StoreFuture<bool> {
        StoreFuture::ready(Ok(self.revoke_now(family, proof, now_ms)))
    }

    fn revoke_subject(&self, subject: &str, now_ms: u64) -> StoreFuture<u64> {
        StoreFuture::ready(check_field(subject).map(|()| self.revoke_subject_now(subject, now_ms)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let id = FamilyId::from_bytes([0xab; 16]);
        assert_eq!(id.to_hex(), "ab".repeat(16));
        assert_eq!(FamilyId::from_hex(&id.to_hex()), Some(id));
        assert_eq!(FamilyId::from_hex("AB"), None);
        assert_eq!(FamilyId::from_hex(&"AB".repeat(16)), None);
        assert_eq!(FamilyId::from_hex(&"zz".repeat(16)), None);
        assert!(!format!("{:?}", TokenHash::from_bytes([1; 32])).contains("01"));
    }
}
