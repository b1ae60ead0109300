//! The verified-token cache: SHA-256 of the whole token → what verification established.
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

use aws_lc_rs::digest;
use dashmap::DashMap;

use super::claims::{Scopes, Verified};
use crate::extensions::Principal;

/// The cache key: SHA-256 of the token bytes (collision resistant, so a forged token can
/// never hit another token's entry).
pub(crate) type TokenHash = [u8; 32];

pub(crate) fn hash_token(token: &[u8]) -> TokenHash {
    let d = digest::digest(&digest::SHA256, token);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref().get(..32).unwrap_or(&[0u8; 32]));
    out
}

/// How many inserts between two sweeps of expired entries.
const SWEEP_EVERY: usize = 1024;

/// What a cache hit restores.
#[derive(Debug)]
pub(crate) struct CachedToken<C> {
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

/// What a response future waiting on the revocation store keeps of the cache entry: a way to
/// mark it revoked, without the claims type in the future's type.
pub(crate) trait MarkRevoked: Send + Sync {
    /// Remembers that the store answered "revoked" for this token.
    fn mark_revoked(&self);
}

impl<C: Send + Sync> MarkRevoked for CachedToken<C> {
    fn mark_revoked(&self) {
        self.revoked.store(true, Ordering::Relaxed);
    }
}

/// The keys are already uniform (SHA-256), so the map hashes them by their first 8 bytes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        if let Some(first) = bytes.first_chunk::<8>() {
            self.0 = u64::from_le_bytes(*first);
        } else {
            for &b in bytes {
                self.0 = self.0.rotate_left(8) ^ u64::from(b);
            }
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct BuildDigestHasher;

impl BuildHasher for BuildDigestHasher {
    type Hasher = DigestHasher;

    fn build_hasher(&self) -> DigestHasher {
        DigestHasher(0)
    }
}

pub(crate) struct TokenCache<C> {
    map: DashMap<TokenHash, Arc<CachedToken<C>>, BuildDigestHasher>,
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
            map: DashMap::with_hasher(BuildDigestHasher),
            capacity: capacity.max(1),
            inserts: AtomicUsize::new(0),
        }
    }

    pub(crate) fn get(&self, key: &TokenHash) -> Option<Arc<CachedToken<C>>> {
        self.map.get(key).map(|e| Arc::clone(e.value()))
    }

    pub(crate) fn remove(&self, key: &TokenHash) {
        self.map.remove(key);
    }

    /// Inserts an entry; `expired_before` is the time before which an `exp` is dead (now
    /// minus leeway). Expired entries are swept every `SWEEP_EVERY` inserts and whenever the
    /// map is full, so memory is not held by tokens nobody presents any more.
    pub(crate) fn insert(&self, key: TokenHash, entry: Arc<CachedToken<C>>, expired_before: u64) {
        let inserts = self.inserts.fetch_add(1, Ordering::Relaxed);
        if inserts % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.map.retain(|_, e| e.exp > expired_before);
        }
        if self.map.len() >= self.capacity {
            self.map.retain(|_, e| e.exp > expired_before);
            if self.map.len() >= self.capacity {
                let excess = self.map.len() + 1 - self.capacity;
                let evict = excess.max(self.capacity / 8);
                let victims: Vec<TokenHash> =
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
