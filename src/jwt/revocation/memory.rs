//! [`MemoryRevocationStore`]: revocations kept in this process.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use dashmap::DashMap;

use super::{RevocationStore, StoreFuture, TokenRef, check_id};
use crate::clock::{Clock, SystemClock};
use crate::error::{ConfigError, StoreError};

/// An in-memory [`RevocationStore`] for one process: concurrent maps, bounded.
///
/// Entries past their `expires_at` are treated as absent and swept: each write sweeps when
/// the store is full, and at most every 1024 writes otherwise. When it is still full after
/// a sweep, a new entry is refused with [`StoreError::Unavailable`] rather than dropping a
/// revocation silently.
///
/// ```
/// use tower_shield::jwt::{MemoryRevocationStore, RevocationStore};
/// use tower_shield::jwt::revocation::TokenRef;
///
/// # tokio_test_block_on(async {
/// let store = MemoryRevocationStore::new();
/// let token = TokenRef {
///     jti: Some("tok_1"),
///     session: None,
///     subject: "user_1",
///     issued_at: Some(100),
/// };
/// assert!(!store.check(token).await?);
/// store.revoke_token("tok_1", u64::MAX).await?;
/// assert!(store.check(token).await?);
/// # Ok::<(), tower_shield::StoreError>(())
/// # }).unwrap();
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Clone)]
pub struct MemoryRevocationStore {
    inner: Arc<MemoryInner>,
}

struct MemoryInner {
    /// jti → expires_at
    tokens: DashMap<Box<str>, u64>,
    /// sid → expires_at
    sessions: DashMap<Box<str>, u64>,
    /// subject → (issued_before, expires_at)
    subjects: DashMap<Box<str>, (u64, u64)>,
    /// Raised after every accepted write (see [`RevocationStore::generation`]).
    generation: AtomicU64,
    capacity: usize,
    writes: AtomicUsize,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for MemoryRevocationStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryRevocationStore")
            .field("tokens", &self.inner.tokens.len())
            .field("sessions", &self.inner.sessions.len())
            .field("subjects", &self.inner.subjects.len())
            .field("capacity", &self.inner.capacity)
            .finish()
    }
}

/// Builds a [`MemoryRevocationStore`].
#[must_use]
pub struct MemoryRevocationStoreBuilder {
    capacity: usize,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for MemoryRevocationStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryRevocationStoreBuilder")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl MemoryRevocationStoreBuilder {
    /// The most entries kept (tokens, sessions and subjects together; default 1,000,000).
    pub fn capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// The clock that decides which entries have expired (default: the system clock;
    /// share the layer's clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The store; a capacity of 0 is an error.
    pub fn build(self) -> Result<MemoryRevocationStore, ConfigError> {
        if self.capacity == 0 {
            return Err(ConfigError::invalid("capacity", "must be at least 1"));
        }
        Ok(MemoryRevocationStore::from_parts(self.capacity, self.clock))
    }
}

impl Default for MemoryRevocationStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryRevocationStore {
    /// A store of up to 1,000,000 entries on the system clock.
    pub fn new() -> Self {
        Self::with_capacity(1_000_000)
    }

    /// A store of up to `capacity` entries (tokens, sessions and subjects together; at least
    /// 1) on the system clock.
    pub fn with_capacity(capacity: usize) -> Self {
        Self::from_parts(capacity.max(1), Arc::new(SystemClock))
    }

    /// A builder, for another capacity or clock.
    ///
    /// The clock is chosen when the store is made, so every clone of a store shares one set
    /// of entries, whatever was configured: a clone handed to a layer sees every revocation.
    ///
    /// ```
    /// use tower_shield::clock::ManualClock;
    /// use tower_shield::jwt::MemoryRevocationStore;
    ///
    /// let clock = ManualClock::at(std::time::UNIX_EPOCH);
    /// let store = MemoryRevocationStore::builder()
    ///     .capacity(10_000)
    ///     .clock(clock.clone())
    ///     .build()?;
    /// # Ok::<(), tower_shield::ConfigError>(())
    /// ```
    pub fn builder() -> MemoryRevocationStoreBuilder {
        MemoryRevocationStoreBuilder {
            capacity: 1_000_000,
            clock: Arc::new(SystemClock),
        }
    }

    fn from_parts(capacity: usize, clock: Arc<dyn Clock>) -> Self {
        Self {
            inner: Arc::new(MemoryInner {
                tokens: DashMap::new(),
                sessions: DashMap::new(),
                subjects: DashMap::new(),
                generation: AtomicU64::new(0),
                capacity,
                writes: AtomicUsize::new(0),
                clock,
            }),
        }
    }

    /// How many entries (tokens, sessions and subjects) are kept, expired ones not yet
    /// swept included.
    pub fn len(&self) -> usize {
        self.inner.tokens.len() + self.inner.sessions.len() + self.inner.subjects.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops every entry past its `expires_at`.
    pub fn sweep(&self) {
        let now = self.inner.clock.unix_secs();
        self.inner.tokens.retain(|_, until| *until > now);
        self.inner.sessions.retain(|_, until| *until > now);
        self.inner.subjects.retain(|_, (_, until)| *until > now);
    }

    /// After a write is visible to `check`: a new generation.
    fn written(&self) {
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn make_room(&self) -> Result<(), StoreError> {
        let writes = self.inner.writes.fetch_add(1, Ordering::Relaxed);
        if writes % 1024 == 1023 || self.len() >= self.inner.capacity {
            self.sweep();
        }
        if self.len() >= self.inner.capacity {
            return Err(StoreError::Unavailable(
                "the in-memory revocation store is full".into(),
            ));
        }
        Ok(())
    }
}

impl MemoryRevocationStore {
    /// Every write: merges `value` into the entry of `id` in `map`, or inserts it when there
    /// is room (an update never needs room), then raises the generation.
    fn write<V>(
        &self,
        map: &DashMap<Box<str>, V>,
        id: &str,
        value: V,
        merge: impl Fn(&mut V, &V),
    ) -> StoreFuture<()> {
        let result = check_id(id).and_then(|()| {
            if let Some(mut entry) = map.get_mut(id) {
                merge(&mut entry, &value);
            } else {
                self.make_room()?;
                map.entry(id.into())
                    .and_modify(|entry| merge(entry, &value))
                    .or_insert(value);
            }
            self.written();
            Ok(())
        });
        StoreFuture::ready(result)
    }

    /// Denies `id` in `map` (jtis or sessions) until `expires_at`, never shortening an entry.
    fn deny(&self, map: &DashMap<Box<str>, u64>, id: &str, expires_at: u64) -> StoreFuture<()> {
        self.write(map, id, expires_at, |until, new| {
            *until = (*until).max(*new)
        })
    }
}

impl RevocationStore for MemoryRevocationStore {
    fn revoke_token(&self, jti: &str, expires_at: u64) -> StoreFuture<()> {
        self.deny(&self.inner.tokens, jti, expires_at)
    }

    fn revoke_session(&self, session: &str, expires_at: u64) -> StoreFuture<()> {
        self.deny(&self.inner.sessions, session, expires_at)
    }

    fn revoke_subject(
        &self,
        subject: &str,
        issued_before: u64,
        expires_at: u64,
    ) -> StoreFuture<()> {
        // The watermark and its expiry only ever move forward.
        self.write(
            &self.inner.subjects,
            subject,
            (issued_before, expires_at),
            |entry, new| {
                entry.0 = entry.0.max(new.0);
                entry.1 = entry.1.max(new.1);
            },
        )
    }

    fn check(&self, token: TokenRef<'_>) -> StoreFuture<bool> {
        let inner = &*self.inner;
        let now = inner.clock.unix_secs();
        let denied = |map: &DashMap<Box<str>, u64>, id: Option<&str>| {
            id.and_then(|id| map.get(id))
                .is_some_and(|until| *until > now)
        };
        if denied(&inner.tokens, token.jti) || denied(&inner.sessions, token.session) {
            return StoreFuture::ready(Ok(true));
        }
        if let Some(entry) = inner.subjects.get(token.subject) {
            let (issued_before, until) = *entry;
            if until > now && token.issued_at.is_none_or(|iat| iat < issued_before) {
                return StoreFuture::ready(Ok(true));
            }
        }
        StoreFuture::ready(Ok(false))
    }

    fn generation(&self) -> Option<u64> {
        Some(self.inner.generation.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::time::{Duration, UNIX_EPOCH};

    fn tok<'a>(jti: Option<&'a str>, sub: &'a str, iat: Option<u64>) -> TokenRef<'a> {
        TokenRef {
            jti,
            session: None,
            subject: sub,
            issued_at: iat,
        }
    }

    /// The clock is chosen at construction: every clone, made before or after, shares the
    /// entries and the generation (a clone handed to a layer never stops seeing revocations).
    #[tokio::test]
    async fn clones_share_revocations_whatever_the_clock() {
        let clock = ManualClock::at(UNIX_EPOCH + Duration::from_secs(1_000));
        let store = MemoryRevocationStore::builder()
            .capacity(100)
            .clock(clock.clone())
            .build()
            .unwrap();
        let handed_to_a_layer = store.clone();
        store.revoke_token("a", 1_010).await.unwrap();
        assert!(
            handed_to_a_layer
                .check(tok(Some("a"), "s", Some(1)))
                .await
                .unwrap()
        );
        assert_eq!(handed_to_a_layer.generation(), store.generation());
        handed_to_a_layer.revoke_session("f", 1_010).await.unwrap();
        let session = TokenRef {
            session: Some("f"),
            ..tok(Some("b"), "s", Some(1))
        };
        assert!(store.check(session).await.unwrap());
        // The clock is shared too.
        clock.advance(Duration::from_secs(10));
        assert!(
            !handed_to_a_layer
                .check(tok(Some("a"), "s", Some(1)))
                .await
                .unwrap()
        );
        assert!(
            MemoryRevocationStore::builder()
                .capacity(0)
                .build()
                .is_err()
        );
    }

    #[tokio::test]
    async fn jti_denied_until_it_expires() {
        let clock = ManualClock::at(UNIX_EPOCH + Duration::from_secs(1_000));
        let store = MemoryRevocationStore::builder()
            .clock(clock.clone())
            .build()
            .unwrap();
        store.revoke_token("a", 1_010).await.unwrap();
        store.revoke_token("a", 1_005).await.unwrap(); // never shortens
        assert!(store.check(tok(Some("a"), "s", Some(1))).await.unwrap());
        assert!(!store.check(tok(Some("b"), "s", Some(1))).await.unwrap());
        clock.advance(Duration::from_secs(10));
        assert!(!store.check(tok(Some("a"), "s", Some(1))).await.unwrap());
        store.sweep();
        assert!(store.is_empty());
    }

    #[tokio::test]
    async fn session_denied_until_it_expires_and_only_its_own_tokens() {
        let clock = ManualClock::at(UNIX_EPOCH + Duration::from_secs(1_000));
        let store = MemoryRevocationStore::builder()
            .clock(clock.clone())
            .build()
            .unwrap();
        let in_session = |jti, sid| TokenRef {
            session: sid,
            ..tok(Some(jti), "u", Some(990))
        };
        let before = store.generation();
        store.revoke_session("fam_a", 1_010).await.unwrap();
        assert_ne!(store.generation(), before);
        store.revoke_session("fam_a", 1_005).await.unwrap(); // never shortens
        assert!(store.check(in_session("t1", Some("fam_a"))).await.unwrap());
        assert!(store.check(in_session("t2", Some("fam_a"))).await.unwrap());
        assert!(!store.check(in_session("t1", Some("fam_b"))).await.unwrap());
        assert!(!store.check(in_session("t1", None)).await.unwrap());
        // A jti equal to a revoked session's id is not revoked by it, nor the reverse.
        assert!(!store.check(in_session("fam_a", None)).await.unwrap());
        store.revoke_token("t9", 1_010).await.unwrap();
        assert!(!store.check(in_session("t1", Some("t9"))).await.unwrap());
        clock.advance(Duration::from_secs(10));
        assert!(!store.check(in_session("t1", Some("fam_a"))).await.unwrap());
        store.sweep();
        assert!(store.is_empty());
        assert!(store.revoke_session("", 5_000).await.is_err());
    }

    #[tokio::test]
    async fn subject_watermark_is_strict_and_only_moves_forward() {
        let clock = ManualClock::at(UNIX_EPOCH + Duration::from_secs(1_000));
        let store = MemoryRevocationStore::builder()
            .clock(clock)
            .build()
            .unwrap();
        store.revoke_subject("u", 900, 2_000).await.unwrap();
        store.revoke_subject("u", 800, 2_000).await.unwrap();
        assert!(store.check(tok(None, "u", Some(899))).await.unwrap());
        assert!(!store.check(tok(None, "u", Some(900))).await.unwrap());
        assert!(
            store.check(tok(None, "u", None)).await.unwrap(),
            "no iat: revoked"
        );
        assert!(!store.check(tok(None, "v", Some(1))).await.unwrap());
    }

    #[tokio::test]
    async fn every_accepted_write_and_nothing_else_changes_the_generation() {
        let clock = ManualClock::at(UNIX_EPOCH + Duration::from_secs(1_000));
        let store = MemoryRevocationStore::builder()
            .capacity(2)
            .clock(clock.clone())
            .build()
            .unwrap();
        let mut last = store.generation().unwrap();
        let mut changed = |store: &MemoryRevocationStore| {
            let now = store.generation().unwrap();
            let changed = now != last;
            last = now;
            changed
        };
        store.revoke_token("a", 1_005).await.unwrap();
        assert!(changed(&store));
        store.revoke_token("a", 1_010).await.unwrap(); // extended: may revoke again later
        assert!(changed(&store));
        store.revoke_token("a", 1_001).await.unwrap(); // kept as it was, still a write
        assert!(changed(&store));
        store.revoke_subject("u", 900, 2_000).await.unwrap();
        assert!(changed(&store));
        store.revoke_subject("u", 950, 2_000).await.unwrap();
        assert!(changed(&store));
        assert!(store.check(tok(Some("a"), "u", Some(1))).await.unwrap());
        clock.advance(Duration::from_secs(20));
        store.sweep();
        assert!(
            !changed(&store),
            "checks, time and sweeps only ever un-revoke"
        );
        assert!(store.revoke_token("", 5_000).await.is_err());
        assert!(!changed(&store), "a refused write");
    }

    #[tokio::test]
    async fn full_store_refuses_instead_of_forgetting() {
        let clock = ManualClock::at(UNIX_EPOCH + Duration::from_secs(1_000));
        let store = MemoryRevocationStore::builder()
            .capacity(2)
            .clock(clock.clone())
            .build()
            .unwrap();
        store.revoke_token("a", 1_001).await.unwrap();
        store.revoke_token("b", 5_000).await.unwrap();
        assert!(store.revoke_token("c", 5_000).await.is_err());
        store.revoke_token("b", 6_000).await.unwrap(); // updating is always possible
        clock.advance(Duration::from_secs(2));
        store.revoke_token("c", 5_000).await.unwrap(); // "a" expired and was swept
        assert_eq!(store.len(), 2);
    }
}
