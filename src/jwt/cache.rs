//! The verified-token cache: token → what verification established.
//!
//! Entries are found by the token's length and last 16 bytes (the end of its signature:
//! unpredictable for any token that verified, so the few bytes spread the entries well), and
//! a hit needs the presented token to equal the cached one, compared in constant time: a
//! forged token never reaches another token's entry, and the comparison tells nothing of how
//! much of a cached token matched (the keys too are compared without an early exit). No hash
//! of the whole token is computed on a hit (a SHA-256 of a 700-byte RS256 token costs more
//! than the rest of the hit). The entry keeps the token's bytes (never printed by `Debug`):
//! the cache holds at most `capacity` tokens of at most the policy's `max_token_len` bytes
//! each, besides their claims.
//!
//! A hit skips base64, JSON and the signature; the layer still checks `exp`/`nbf` against
//! the current time, that the key is still present and not retired past its grace (without a
//! `kid` lookup while the key set is unchanged), and asks the revocation store (not again
//! while the store's generation says nothing was revoked since). Entries are dropped once
//! their token has expired, so none outlives `exp` in use; expired entries are swept every
//! 1024 inserts. The map is a sharded `DashMap` (no global lock); when full, expired entries
//! are swept and, if that is not enough, an arbitrary eighth of the entries is evicted.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;

use super::claims::{Scopes, Verified};
use crate::error::StoreError;
use crate::extensions::Principal;
use crate::log_gate::LogGate;
use crate::refusal::ProblemType;

/// Where an entry is stored: the token's length and its last 16 bytes (fewer for a shorter
/// token, zero-padded). Only tokens that verified are stored, and their last bytes are their
/// signature's, which nobody without the key can choose: the keys are spread evenly without
/// hashing the whole token. A key says nothing about equality: see [`TokenCache::get`].
#[derive(Clone, Copy, Eq)]
pub(crate) struct TokenKey {
    len: usize,
    tail: [u8; 16],
}

impl PartialEq for TokenKey {
    /// Without an early exit: the tail is a cached token's.
    fn eq(&self, other: &Self) -> bool {
        (self.len == other.len) & super::constant_time_eq(&self.tail, &other.tail)
    }
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The tail is part of a live token's signature: not printed.
        f.debug_struct("TokenKey")
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl TokenKey {
    pub(crate) fn of(token: &[u8]) -> Self {
        let mut tail = [0u8; 16];
        let from = token.len().saturating_sub(16);
        let last = token.get(from..).unwrap_or_default();
        if let Some(dst) = tail.get_mut(..last.len()) {
            dst.copy_from_slice(last);
        }
        Self {
            len: token.len(),
            tail,
        }
    }
}

impl std::hash::Hash for TokenKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Base64url text has 6 bits a byte: fold both halves and the length, then mix so
        // that the high bits (the map's shard and control byte) depend on every byte.
        let (a, b) = self.tail.split_at(8);
        let a = u64::from_le_bytes(a.try_into().unwrap_or_default());
        let b = u64::from_le_bytes(b.try_into().unwrap_or_default());
        let mut h = (a ^ (self.len as u64).rotate_left(40)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^= b.wrapping_mul(0xc2b2_ae3d_27d4_eb4f);
        state.write_u64(h ^ (h >> 31));
    }
}

/// How many inserts between two sweeps of expired entries.
const SWEEP_EVERY: usize = 1024;

/// What a cache hit restores.
pub(crate) struct CachedToken<C> {
    /// The token itself: a hit must present exactly these bytes.
    pub(crate) token: Box<[u8]>,
    pub(crate) verified: Verified<C>,
    pub(crate) principal: Principal,
    pub(crate) scopes: Scopes,
    pub(crate) key_instance: u64,
    /// A [`KeySet`](super::KeySet) version in which the token's key was present, the same
    /// instance and not retired (0: none known). A hit whose snapshot has this version needs
    /// no `kid` lookup; any other version (a rotation, a retirement) looks the key up again.
    pub(crate) confirmed_keys: AtomicU64,
    /// 1 + the revocation store's [generation](super::RevocationStore::generation) at which
    /// the token was last found not revoked (0: never). While the store's generation stays
    /// there, a hit needs no revocation check: only a write can revoke it.
    pub(crate) unrevoked_at: AtomicU64,
    /// Set once the revocation store answered "revoked" for this token. A revocation is not
    /// lifted while the token is valid, so the entry then only serves to refuse it cheaply:
    /// a hit refuses it without asking the store, and [`cached`] lookups made before the
    /// layer (`is_cached`, `lookup_cached`) no longer count it as a signed-in user's token.
    ///
    /// [`cached`]: super::layer::JwtAuthLayer::is_cached
    pub(crate) revoked: AtomicBool,
    pub(crate) exp: u64,
    pub(crate) nbf: Option<u64>,
    pub(crate) iat: Option<u64>,
}

impl<C: std::fmt::Debug> std::fmt::Debug for CachedToken<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("CachedToken")
            .field("verified", &self.verified)
            .field("principal", &self.principal)
            .field("exp", &self.exp)
            .finish_non_exhaustive()
    }
}

/// The revocation store's answer applied to a cache entry, whether it came at once or after
/// an await (a response future keeps the entry as `dyn Settle`, without the claims type).
pub(crate) trait Settle: Send + Sync {
    /// Remembers the answer: "not revoked" at `mark` (the store's generation + 1, when it has
    /// one), or "revoked". Returns the problem to refuse the request with, `None` to go on.
    fn settle(
        &self,
        answer: Result<bool, StoreError>,
        mark: Option<u64>,
    ) -> Option<&'static ProblemType>;
}

impl<C: Send + Sync> Settle for CachedToken<C> {
    fn settle(
        &self,
        answer: Result<bool, StoreError>,
        mark: Option<u64>,
    ) -> Option<&'static ProblemType> {
        match answer {
            Ok(false) => {
                if let Some(mark) = mark {
                    self.unrevoked_at.store(mark, Ordering::Relaxed);
                }
                None
            }
            Ok(true) => {
                self.revoked.store(true, Ordering::Relaxed);
                Some(&ProblemType::INVALID_TOKEN)
            }
            Err(error) => {
                // Down, the store fails every request: one line per burst, not one each.
                static FAILURES: LogGate = LogGate::new();
                if let Some(suppressed) = FAILURES.should_log_now() {
                    tracing::warn!(
                        target: "tower_shield::security",
                        event = "store.unavailable",
                        store = "revocation",
                        %error,
                        suppressed,
                        "revocation store failed; refusing"
                    );
                }
                Some(&ProblemType::UNAVAILABLE)
            }
        }
    }
}

/// The map's hasher: [`TokenKey`]'s `Hash` gives one mixed word, which this mixes once more
/// with a random per-cache seed (so even the holder of a signing key cannot aim many tokens
/// at one probe chain of another process's cache).
#[derive(Debug, Clone, Copy)]
pub(crate) struct KeyHasher {
    seed: u64,
    hash: u64,
}

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.hash
    }

    fn write_u64(&mut self, word: u64) {
        let h = (word ^ self.seed).wrapping_mul(0xff51_afd7_ed55_8ccd);
        self.hash = h ^ (h >> 32);
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `TokenKey`; anything else is folded in byte by byte.
        for &b in bytes {
            self.write_u64(self.hash.rotate_left(8) ^ u64::from(b));
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct BuildKeyHasher {
    seed: u64,
}

impl BuildHasher for BuildKeyHasher {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher {
            seed: self.seed,
            hash: 0,
        }
    }
}

pub(crate) struct TokenCache<C> {
    map: DashMap<TokenKey, Arc<CachedToken<C>>, BuildKeyHasher>,
    capacity: usize,
    inserts: AtomicUsize,
}

impl<C> std::fmt::Debug for TokenCache<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache")
            .field("len", &self.map.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl<C> TokenCache<C> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            map: DashMap::with_hasher(BuildKeyHasher {
                seed: std::hash::RandomState::new().hash_one(0x7e57_ca5e_u64),
            }),
            capacity: capacity.max(1),
            inserts: AtomicUsize::new(0),
        }
    }

    /// The entry of exactly `token` (compared in constant time with the cached token; a
    /// different token under the same key is a miss).
    pub(crate) fn get(&self, key: &TokenKey, token: &[u8]) -> Option<Arc<CachedToken<C>>> {
        let entry = self.map.get(key)?;
        let cached = entry.value();
        super::constant_time_eq(&cached.token, token).then(|| Arc::clone(cached))
    }

    /// Removes `entry`, if it is still the one stored under `key` (not one inserted since).
    pub(crate) fn remove(&self, key: &TokenKey, entry: &Arc<CachedToken<C>>) {
        self.map
            .remove_if(key, |_, stored| Arc::ptr_eq(stored, entry));
    }

    /// Inserts an entry; `expired_before` is the time before which an `exp` is dead (now
    /// minus leeway). Expired entries are swept every `SWEEP_EVERY` inserts and whenever the
    /// map is full, so memory is not held by tokens nobody presents any more.
    pub(crate) fn insert(&self, key: TokenKey, entry: Arc<CachedToken<C>>, expired_before: u64) {
        let inserts = self.inserts.fetch_add(1, Ordering::Relaxed);
        if inserts % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.map.retain(|_, e| e.exp > expired_before);
        }
        if self.map.len() >= self.capacity {
            self.map.retain(|_, e| e.exp > expired_before);
            if self.map.len() >= self.capacity {
                let excess = self.map.len() + 1 - self.capacity;
                let evict = excess.max(self.capacity / 8);
                let victims: Vec<TokenKey> =
                    self.map.iter().take(evict).map(|e| *e.key()).collect();
                for victim in victims {
                    self.map.remove(&victim);
                }
            }
        }
        self.map.insert(key, entry);
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}
