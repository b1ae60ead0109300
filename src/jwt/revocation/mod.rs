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
use std::task::{Context, Poll};

use crate::error::StoreError;

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
    /// `RefreshTokens` (feature `tokens`) puts the refresh-token family in `sid` and
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

/// Refuses an empty identifier or one over [`MAX_ID_LEN`] bytes (every store).
pub(crate) fn check_id(id: &str) -> Result<(), StoreError> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(StoreError::Protocol("identifier empty or too long".into()));
    }
    Ok(())
}

mod memory;
#[cfg(feature = "redis")]
mod redis;

pub use memory::{MemoryRevocationStore, MemoryRevocationStoreBuilder};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::RedisRevocationStore;
