//! Revocation: deny one token (`jti`) until it expires, every token of a session (`sid`, for
//! logout and refresh-token reuse), or every token of a subject issued before a time (a
//! per-subject watermark, for "log out everywhere" and password changes).
//!
//! [`JwtAuthLayer`](super::JwtAuthLayer) asks the store on every request, cached
//! verifications included; a store error refuses the request with 503 (fail closed). A store
//! that reports a [generation](RevocationStore::generation) (the memory store does) is not
//! asked again about a cached token it already found not revoked, until a revocation changes
//! that number: the answer cannot have changed in between.
//!
//! The contract is documented on [`RevocationStore`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use dashmap::DashMap;

use crate::clock::{Clock, SystemClock};
use crate::error::{ConfigError, StoreError};

/// What a revocation check needs to know about a verified token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenRef<'a> {
    /// The `jti` claim, when the token has one (a token without `jti` cannot be revoked
    /// alone, only through its subject's watermark).
    pub jti: Option<&'a str>,
    /// The `sid` claim, when the token has one: the session it was issued in (see
    /// [`revoke_session`](RevocationStore::revoke_session)).
    pub session: Option<&'a str>,
    /// The `sub` claim.
    pub subject: &'a str,
    /// The `iat` claim, when present.
    pub issued_at: Option<u64>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'static>>;

/// The answer of a [`RevocationStore`]: ready at once (memory) or boxed (network).
///
/// The future owns what it needs (`'static`), so the layer can keep it across the await.
#[must_use = "futures do nothing unless polled"]
pub struct StoreFuture<T> {
    kind: StoreFutureKind<T>,
}

enum StoreFutureKind<T> {
    Ready(Option<Result<T, StoreError>>),
    Boxed(BoxFuture<T>),
}

impl<T> fmt::Debug for StoreFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            StoreFutureKind::Ready(_) => "ready",
            StoreFutureKind::Boxed(_) => "boxed",
        };
        f.debug_tuple("StoreFuture").field(&kind).finish()
    }
}

impl<T> StoreFuture<T> {
    /// An answer that is already known (no allocation).
    pub fn ready(result: Result<T, StoreError>) -> Self {
        Self {
            kind: StoreFutureKind::Ready(Some(result)),
        }
    }

    /// An answer that needs to wait (e.g. a Redis round trip).
    pub fn boxed(future: impl Future<Output = Result<T, StoreError>> + Send + 'static) -> Self {
        Self {
            kind: StoreFutureKind::Boxed(Box::pin(future)),
        }
    }

    /// Takes the answer when it is already known, leaving the future spent.
    pub(crate) fn take_ready(&mut self) -> Option<Result<T, StoreError>> {
        match &mut self.kind {
            StoreFutureKind::Ready(result) => result.take(),
            StoreFutureKind::Boxed(_) => None,
        }
    }
}

// Nothing in a `StoreFuture` is structurally pinned.
impl<T> Unpin for StoreFuture<T> {}

impl<T> Future for StoreFuture<T> {
    type Output = Result<T, StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // Both variants are Unpin (the boxed future is pinned on the heap).
        match &mut self.get_mut().kind {
            StoreFutureKind::Ready(result) => Poll::Ready(
                result
                    .take()
                    .unwrap_or_else(|| Err(StoreError::Protocol("polled after completion".into()))),
            ),
            StoreFutureKind::Boxed(future) => future.as_mut().poll(cx),
        }
    }
}

/// Where revoked tokens, revoked sessions and subject watermarks are kept.
///
/// # The contract every store keeps
///
/// - All times are unix seconds, taken from the caller's [`Clock`](crate::clock::Clock)
///   (the layer's clock; an issuer uses the same one). A Redis store may use the server's
///   clock for expiry; tokens are checked against the layer's clock anyway.
/// - [`revoke_token`](RevocationStore::revoke_token)`(jti, expires_at)`: the token with this
///   `jti` is revoked. Pass `expires_at` = the token's `exp` plus the verifying layer's
///   leeway (30 s by default): after that the layer refuses the token as expired anyway, so
///   the store may forget the entry then (Redis: `SET … EXAT expires_at`). Idempotent; revoking the same `jti`
///   again keeps the later of the two expiry times.
/// - [`revoke_subject`](RevocationStore::revoke_subject)`(subject, issued_before, expires_at)`:
///   every token of `subject` whose `iat` is *strictly less* than `issued_before` is revoked,
///   and so is every token of that subject without `iat`. A token issued in the same second
///   as `issued_before` or later stays valid, so a client may log in again at once. The
///   watermark only ever moves forward: a lower `issued_before` than the stored one is
///   ignored. It may be forgotten after `expires_at` (pass `issued_before` plus the longest
///   access-token lifetime plus leeway).
/// - [`revoke_session`](RevocationStore::revoke_session)`(sid, expires_at)`: every token
///   whose `sid` claim is `sid` is revoked until `expires_at`; like `revoke_token`, but a
///   namespace of its own (a `jti` equal to a revoked `sid` is not revoked by it).
/// - [`check`](RevocationStore::check) answers `Ok(true)` when the token is revoked by any of
///   these rules. It must not block the executor: memory stores answer with a ready future; network
///   stores box an async call and should apply their own timeout.
/// - Errors are [`StoreError`]s; they never carry token text.
///
/// Object-safe: the layer holds an `Arc<dyn RevocationStore>`.
pub trait RevocationStore: Send + Sync + fmt::Debug + 'static {
    /// Revokes the token with this `jti` until `expires_at` (unix seconds). Idempotent.
    ///
    /// Give the token's own `exp` (plus leeway) or later: a layer with a cache that saw the
    /// store refuse a token keeps refusing it from the cache until the token expires, even
    /// if the store forgets the entry sooner.
    fn revoke_token(&self, jti: &str, expires_at: u64) -> StoreFuture<()>;

    /// Revokes every token of `subject` issued before `issued_before` (unix seconds; tokens
    /// with `iat < issued_before` or without `iat`). The watermark never moves back and may
    /// be forgotten after `expires_at`.
    fn revoke_subject(&self, subject: &str, issued_before: u64, expires_at: u64)
    -> StoreFuture<()>;

    /// Revokes every token whose `sid` claim is `session` until `expires_at` (unix seconds,
    /// at least the `exp` of the session's last token plus leeway). Idempotent.
    /// [`RefreshTokens`](super::RefreshTokens) puts the refresh-token family in `sid` and
    /// calls this when the family ends (logout, reuse detected, account gone), so access
    /// tokens already out die with their session instead of living until `exp`.
    fn revoke_session(&self, session: &str, expires_at: u64) -> StoreFuture<()>;

    /// Whether this token is revoked.
    fn check(&self, token: TokenRef<'_>) -> StoreFuture<bool>;

    /// A number that lets the layer remember a "not revoked" answer: `Some(g)` promises that
    /// every revocation this store accepts (each successful `revoke_token`, `revoke_subject`
    /// and `revoke_session`, new or extending an entry) makes the number differ from `g` before
    /// it returns, and that nothing else can turn a `check` from `false` to `true` (entries
    /// only expire). A cached token found not revoked while the number was `g` is then not
    /// asked about again until it changes. `None` (the default) when the store cannot promise
    /// that, e.g. because other processes write to it: every request is checked.
    ///
    /// "Entries only expire" assumes the store's clock does not step back: an entry that
    /// expired and then, after a backwards clock step, would count again is not seen by a
    /// remembered answer (such a token is also past its own `exp` by then, since revocations
    /// are kept until the token expires).
    fn generation(&self) -> Option<u64> {
        None
    }
}

impl<St: RevocationStore + ?Sized> RevocationStore for Arc<St> {
    fn revoke_token(&self, jti: &str, expires_at: u64) -> StoreFuture<()> {
        (**self).revoke_token(jti, expires_at)
    }

    fn revoke_subject(
        &self,
        subject: &str,
        issued_before: u64,
        expires_at: u64,
    ) -> StoreFuture<()> {
        (**self).revoke_subject(subject, issued_before, expires_at)
    }

    fn revoke_session(&self, session: &str, expires_at: u64) -> StoreFuture<()> {
        (**self).revoke_session(session, expires_at)
    }

    fn check(&self, token: TokenRef<'_>) -> StoreFuture<bool> {
        (**self).check(token)
    }

    fn generation(&self) -> Option<u64> {
        (**self).generation()
    }
}

/// Longest `jti`, `sid` or subject a store keeps, in memory or in Redis (longer ones are
/// refused with an error).
const MAX_ID_LEN: usize = 512;

/// An in-memory [`RevocationStore`] for one process: concurrent maps, bounded.
///
/// Entries past their `expires_at` are treated as absent and swept: each write sweeps when
/// the store is full, and at most every 1024 writes otherwise. When it is still full after
/// a sweep, a new entry is refused with [`StoreError::Unavailable`] rather than dropping a
/// revocation silently.
///
/// ```
/// use tower_shield::jwt::{MemoryRevocationStore, RevocationStore, TokenRef};
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

/// Refuses an empty identifier or one over [`MAX_ID_LEN`] bytes (every store).
pub(crate) fn check_id(id: &str) -> Result<(), StoreError> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(StoreError::Protocol("identifier empty or too long".into()));
    }
    Ok(())
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
