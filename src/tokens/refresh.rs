//! Refresh tokens: opaque, rotated on every use, with reuse detection, a grace window for
//! concurrent refreshes, logout and "log out everywhere" (see [`RefreshTokens`]).

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::digest;
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

use super::issuer::{AccessToken, IssueError, TokenIssuer};
use super::store::{FamilyId, NewFamily, RefreshStore, RotateOutcome, Rotation, TokenHash};
use crate::error::{ConfigError, StoreError};
use crate::jwt::revocation::{RevocationStore, TokenRef};
use crate::refusal::{ProblemType, Refusal};
use crate::telemetry::{self, Counter};

/// Default refresh-token lifetime: 7 days.
pub const DEFAULT_REFRESH_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default absolute lifetime of a family (one sign-in): 30 days.
pub const DEFAULT_FAMILY_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);
/// Default grace window for a repeat of the token just rotated: 2 s.
pub const DEFAULT_REUSE_GRACE: Duration = Duration::from_secs(2);
/// Longest accepted grace window: 60 s.
pub const MAX_REUSE_GRACE: Duration = Duration::from_secs(60);
/// Longest accepted refresh-token lifetime: 90 days.
pub const MAX_REFRESH_TTL: Duration = Duration::from_secs(90 * 24 * 3600);
/// Longest accepted family lifetime: 365 days.
pub const MAX_FAMILY_LIFETIME: Duration = Duration::from_secs(365 * 24 * 3600);
/// Most tokens (the rotated one and its siblings) one generation may hold.
pub const MAX_SIBLINGS: u32 = 64;

/// The prefix of every refresh token.
pub const REFRESH_TOKEN_PREFIX: &str = "rt_";
/// The length of a refresh token: `rt_` and 64 base64url characters.
pub const REFRESH_TOKEN_LEN: usize = 3 + 64;

/// 401: the refresh token was already used; its family is revoked.
pub const REFRESH_TOKEN_REUSED: ProblemType = ProblemType::new(
    StatusCode::UNAUTHORIZED,
    "refresh_token_reused",
    "Unauthorized",
    "The refresh token was already used; the session has been revoked.",
);

/// 401: the refresh token is missing, unknown, expired or revoked.
pub const INVALID_REFRESH_TOKEN: ProblemType = ProblemType::new(
    StatusCode::UNAUTHORIZED,
    "invalid-token",
    "Unauthorized",
    "The refresh token is invalid, expired or revoked.",
);

static REFUSAL_RETRY_AFTER: HeaderValue = HeaderValue::from_static("1");

/// A refresh token: `rt_` + 64 base64url characters. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken(String);

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshToken(<redacted>)")
    }
}

impl RefreshToken {
    /// A fresh token of `family`: 256 bits from the OS random source.
    fn generate(family: FamilyId) -> Result<(Self, TokenHash), StoreError> {
        let mut raw = [0u8; 48];
        let (id, secret) = raw.split_at_mut(16);
        id.copy_from_slice(family.as_bytes());
        aws_lc_rs::rand::fill(secret)
            .map_err(|_| StoreError::Unavailable("the OS random source failed".into()))?;
        let hash = hash_raw(&raw);
        let token = format!("{REFRESH_TOKEN_PREFIX}{}", crate::jwt::b64_encode_url(&raw));
        Ok((Self(token), hash))
    }

    /// Parses a presented token: its family and hash. `None` unless it is exactly `rt_` and
    /// 64 base64url characters.
    pub fn parse(token: &str) -> Option<(FamilyId, TokenHash)> {
        if token.len() != REFRESH_TOKEN_LEN {
            return None;
        }
        let body = token.strip_prefix(REFRESH_TOKEN_PREFIX)?;
        let raw: [u8; 48] = crate::jwt::b64_decode_url(body.as_bytes())?
            .try_into()
            .ok()?;
        let mut id = [0u8; 16];
        id.copy_from_slice(raw.get(..16)?);
        Some((FamilyId::from_bytes(id), hash_raw(&raw)))
    }

    /// Wraps a presented token (from a cookie or a body) when it is well formed.
    pub fn from_presented(token: &str) -> Option<Self> {
        Self::parse(token).map(|_| Self(token.to_owned()))
    }

    /// The token text (send it to the client in the refresh cookie; never log it).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The family this token belongs to.
    pub fn family(&self) -> Option<FamilyId> {
        Self::parse(&self.0).map(|(family, _)| family)
    }
}

fn hash_raw(raw: &[u8; 48]) -> TokenHash {
    let digest = digest::digest(&digest::SHA256, raw);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    TokenHash::from_bytes(out)
}

fn random_family() -> Result<FamilyId, StoreError> {
    let mut id = [0u8; 16];
    aws_lc_rs::rand::fill(&mut id)
        .map_err(|_| StoreError::Unavailable("the OS random source failed".into()))?;
    Ok(FamilyId::from_bytes(id))
}

/// An access token and a refresh token, as a sign-in or a refresh returns them.
///
/// Serialises as the OAuth token response without the refresh token
/// (`{"access_token","token_type":"Bearer","expires_in"}`): the refresh token belongs in the
/// `HttpOnly` cookie ([`RefreshCookie`](super::RefreshCookie)). `Debug` prints no token.
#[derive(Clone, Serialize)]
#[non_exhaustive]
pub struct TokenPair {
    /// The signed access token.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// The refresh token (not serialised).
    #[serde(skip)]
    pub refresh_token: RefreshToken,
    /// Seconds until the refresh token expires (the cookie's `Max-Age`; not serialised).
    #[serde(skip)]
    pub refresh_expires_in: u64,
    /// The subject (not serialised).
    #[serde(skip)]
    pub subject: String,
    /// The role in the access token (not serialised).
    #[serde(skip)]
    pub role: String,
    /// The family of the refresh token (not serialised).
    #[serde(skip)]
    pub family: FamilyId,
    /// The access token's `jti` (not serialised).
    #[serde(skip)]
    pub jti: String,
    /// The access token's `exp`, unix seconds (not serialised).
    #[serde(skip)]
    pub access_expires_at: u64,
}

impl fmt::Debug for TokenPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenPair")
            .field("access_token", &"<redacted>")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &self.refresh_token)
            .field("refresh_expires_in", &self.refresh_expires_in)
            .field("subject", &self.subject)
            .field("role", &self.role)
            .field("family", &self.family)
            .field("jti", &self.jti)
            .finish()
    }
}

/// Why a sign-in, refresh or logout failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RefreshError {
    /// The token is malformed, or no family knows it.
    #[error("unknown refresh token")]
    Unknown,
    /// The token (or its family) has expired.
    #[error("expired refresh token")]
    Expired,
    /// The family was revoked (logout, reuse, account gone).
    #[error("revoked refresh token")]
    Revoked,
    /// A spent token was presented again: the family is now revoked. Alert on this.
    #[error("refresh token reuse detected; family {family} revoked")]
    Reused {
        /// The family's subject.
        subject: String,
        /// The family, now revoked.
        family: FamilyId,
    },
    /// Too many concurrent repeats of one token within the grace window.
    #[error("too many concurrent refreshes of one token")]
    Busy,
    /// A store could not answer: refuse with 503 (fail closed).
    #[error("store error: {0}")]
    Store(#[from] StoreError),
    /// The access token could not be issued.
    #[error("issue error: {0}")]
    Issue(#[from] IssueError),
}

impl RefreshError {
    /// Whether this is a detected reuse (alert-worthy).
    pub fn is_reuse(&self) -> bool {
        matches!(self, Self::Reused { .. })
    }

    /// Whether a store failed (the answer is 503, not 401).
    pub fn is_store_error(&self) -> bool {
        matches!(self, Self::Store(_))
    }

    /// The problem type a service answers with: [`REFRESH_TOKEN_REUSED`] (401) for reuse,
    /// [`INVALID_REFRESH_TOKEN`] (401) for unknown, expired, revoked or busy tokens,
    /// [`ProblemType::UNAVAILABLE`] (503) when a store or the signer failed.
    pub fn problem(&self) -> &'static ProblemType {
        match self {
            Self::Reused { .. } => &REFRESH_TOKEN_REUSED,
            Self::Unknown | Self::Expired | Self::Revoked | Self::Busy => &INVALID_REFRESH_TOKEN,
            Self::Store(_) | Self::Issue(_) => &ProblemType::UNAVAILABLE,
        }
    }

    /// The refusal to answer with (see [`problem`](Self::problem)); 503s carry
    /// `Retry-After: 1`. Add your `WWW-Authenticate` challenge to 401s if your API sends one.
    ///
    /// ```
    /// use http::StatusCode;
    /// use tower_shield::StoreError;
    /// use tower_shield::tokens::RefreshError;
    ///
    /// let refusal = RefreshError::Store(StoreError::Timeout).refusal();
    /// assert_eq!(refusal.problem().status, StatusCode::SERVICE_UNAVAILABLE);
    /// assert_eq!(RefreshError::Expired.refusal().problem().status, StatusCode::UNAUTHORIZED);
    /// ```
    pub fn refusal(&self) -> Refusal {
        let problem = self.problem();
        let refusal = Refusal::new(problem);
        if problem.status == StatusCode::SERVICE_UNAVAILABLE {
            refusal.with_header(header::RETRY_AFTER, REFUSAL_RETRY_AFTER.clone())
        } else {
            refusal
        }
    }
}

/// Builds [`RefreshTokens`]; see [`RefreshTokens::builder`].
#[must_use]
pub struct RefreshTokensBuilder<St> {
    issuer: TokenIssuer,
    store: St,
    revocation: Option<Arc<dyn RevocationStore>>,
    refresh_ttl: Duration,
    family_lifetime: Duration,
    reuse_grace: Duration,
}

impl<St: fmt::Debug> fmt::Debug for RefreshTokensBuilder<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshTokensBuilder")
            .field("store", &self.store)
            .field("refresh_ttl", &self.refresh_ttl)
            .field("family_lifetime", &self.family_lifetime)
            .field("reuse_grace", &self.reuse_grace)
            .finish_non_exhaustive()
    }
}

impl<St: RefreshStore> RefreshTokensBuilder<St> {
    /// The revocation store the verifying layer checks (required): logout of an access
    /// token and the "log out everywhere" watermark go there.
    pub fn revocation(mut self, store: impl RevocationStore) -> Self {
        self.revocation = Some(Arc::new(store));
        self
    }

    /// The revocation store, shared.
    pub fn shared_revocation(mut self, store: Arc<dyn RevocationStore>) -> Self {
        self.revocation = Some(store);
        self
    }

    /// How long a refresh token lives (default 7 days; at least the access-token lifetime,
    /// at most 90 days).
    pub fn refresh_ttl(mut self, ttl: Duration) -> Self {
        self.refresh_ttl = ttl;
        self
    }

    /// How long a family (one sign-in) lives at most, however often it is refreshed
    /// (default 30 days; at least the refresh-token lifetime, at most 365 days).
    pub fn family_lifetime(mut self, lifetime: Duration) -> Self {
        self.family_lifetime = lifetime;
        self
    }

    /// How long after a rotation the rotated token may be presented again and get a sibling
    /// (default 2 s, 0 to 60 s; 0 turns the window off).
    pub fn reuse_grace(mut self, grace: Duration) -> Self {
        self.reuse_grace = grace;
        self
    }

    /// Validates the configuration.
    pub fn build(self) -> Result<RefreshTokens<St>, ConfigError> {
        let revocation = self.revocation.ok_or(ConfigError::Missing {
            setting: "revocation",
        })?;
        if self.refresh_ttl < self.issuer.access_ttl() || self.refresh_ttl > MAX_REFRESH_TTL {
            return Err(ConfigError::invalid(
                "refresh_ttl",
                "must be at least the access-token lifetime and at most 90 days",
            ));
        }
        if self.family_lifetime < self.refresh_ttl || self.family_lifetime > MAX_FAMILY_LIFETIME {
            return Err(ConfigError::invalid(
                "family_lifetime",
                "must be at least the refresh-token lifetime and at most 365 days",
            ));
        }
        if self.reuse_grace > MAX_REUSE_GRACE {
            return Err(ConfigError::dangerous(
                "reuse_grace",
                "more than 60 seconds lets a stolen token be replayed for too long",
            ));
        }
        Ok(RefreshTokens {
            inner: Arc::new(Inner {
                issuer: self.issuer,
                store: self.store,
                revocation,
                refresh_ttl: self.refresh_ttl,
                family_lifetime: self.family_lifetime,
                reuse_grace: self.reuse_grace,
                counters: Counters::new(),
            }),
        })
    }
}

/// `tower_shield_refresh_total` and `tower_shield_revocations_total`.
struct Counters {
    rotated: Counter,
    sibling: Counter,
    reused: Counter,
    revoked: Counter,
    expired: Counter,
    unknown: Counter,
    busy: Counter,
    revoked_token: Counter,
    revoked_session: Counter,
    revoked_subject: Counter,
}

impl Counters {
    fn new() -> Self {
        let outcome =
            |outcome| telemetry::counter(telemetry::names::REFRESH, &[("outcome", outcome)]);
        let kind = |kind| telemetry::counter(telemetry::names::REVOCATIONS, &[("kind", kind)]);
        Self {
            rotated: outcome("rotated"),
            sibling: outcome("sibling"),
            reused: outcome("reused"),
            revoked: outcome("revoked"),
            expired: outcome("expired"),
            unknown: outcome("unknown"),
            busy: outcome("busy"),
            revoked_token: kind("token"),
            revoked_session: kind("session"),
            revoked_subject: kind("subject"),
        }
    }
}

/// The whole access/refresh scheme: sign-in, rotation with reuse detection, logout.
///
/// `RefreshTokens` ties a [`TokenIssuer`] (access tokens), a [`RefreshStore`] (families of
/// refresh tokens) and a [`RevocationStore`] (access-token denylist and subject watermarks)
/// together:
///
/// - **Sign-in** ([`issue_pair`](RefreshTokens::issue_pair)): a new *family* and its first
///   refresh token, plus an access token.
/// - **Refresh** ([`rotate`](RefreshTokens::rotate)): the presented refresh token is spent and
///   a successor issued in the same family, with a fresh access token carrying the family's
///   role (or the current one, [`rotate_with`](RefreshTokens::rotate_with)).
/// - **Reuse**: presenting a spent token revokes the whole family and fails with
///   [`RefreshError::Reused`], so the service can alert: either the legitimate client or a
///   thief holds a copy, and neither can go on.
/// - **Sessions**: every access token issued with a family carries its id as `sid`; when the
///   family ends (reuse, logout, [`revoke_family`](RefreshTokens::revoke_family), an account
///   that is gone at refresh) the session is revoked in the revocation store too
///   ([`RevocationStore::revoke_session`]), so its access tokens already out are refused at
///   once instead of living until their `exp`.
/// - **Logout** ([`logout`](RefreshTokens::logout)) revokes the family;
///   [`logout_everywhere`](RefreshTokens::logout_everywhere) revokes every family of the
///   subject *and* sets its revoked-before watermark, so access tokens already out die too.
///
/// # The tokens
///
/// `rt_` followed by 64 base64url characters (no padding): 16 bytes of family id and 32 bytes
/// (256 bits) from the operating system's random source (aws-lc-rs). Stores keep only the
/// SHA-256 of those 48 bytes. The family id lets every store keep a family's state under one
/// key (one Redis Cluster slot) so a rotation is one atomic script.
///
/// # The grace window: siblings, not the same successor
///
/// Two requests carrying the same refresh token at once (two tabs, a retry after a lost
/// response) are the race every hand-rolled rotation hits: the second one finds the token
/// spent and logs the user out. Within [`reuse_grace`](RefreshTokensBuilder::reuse_grace)
/// (default 2 s) of a rotation, presenting the token just rotated again succeeds: it gets a
/// **sibling**, a fresh token that is also valid in the same family, and an access token.
///
/// Returning *the same successor* would need the successor to be kept in a form that can be
/// turned back into a usable token (clear text, or encrypted with a key the server holds):
/// whoever reads the store (a Redis dump, a replica, a backup) could then refresh anyone's
/// session. A sibling is minted fresh and, like every token, stored only as a hash. Using any
/// token of a generation spends the whole generation, so siblings do not outlive the next
/// rotation, and a generation holds at most 64 tokens. After the window, presenting the
/// rotated token is reuse.
///
/// # Failing closed
///
/// When a store cannot answer (Redis down or slower than its per-call timeout), every
/// operation returns [`RefreshError::Store`]; [`RefreshError::refusal`] turns it into a 503
/// problem, and every other failure into a 401.
///
/// Generic over the [`RefreshStore`] (`MemoryRefreshStore`, `RedisRefreshStore`, or
/// `Arc<dyn RefreshStore>`); cheap to clone (one `Arc`).
///
/// # Example
///
/// ```
/// use jsonwebtoken::Algorithm;
/// use tower_shield::jwt::{Key, KeySet, MemoryRevocationStore};
/// use tower_shield::tokens::{RefreshError, RefreshTokens, TokenIssuer};
/// use tower_shield::tokens::store::MemoryRefreshStore;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let issuer = TokenIssuer::builder(KeySet::new().with(Key::generate(Algorithm::EdDSA)?)?)
///     .issuer("https://auth.example")
///     .audience("api")
///     .build()?;
/// let tokens = RefreshTokens::builder(issuer, MemoryRefreshStore::new())
///     .revocation(MemoryRevocationStore::new())
///     .reuse_grace(std::time::Duration::ZERO)
///     .build()?;
///
/// let login = tokens.issue_pair("user_1", "user", &()).await?;
/// let refreshed = tokens.rotate(login.refresh_token.as_str()).await?;
/// assert_eq!(refreshed.family, login.family);
/// // The first refresh token is spent: presenting it again is reuse.
/// let err = tokens.rotate(login.refresh_token.as_str()).await.unwrap_err();
/// assert!(matches!(err, RefreshError::Reused { .. }));
/// // ...and the whole family is gone.
/// assert!(tokens.rotate(refreshed.refresh_token.as_str()).await.is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
pub struct RefreshTokens<St> {
    inner: Arc<Inner<St>>,
}

struct Inner<St> {
    issuer: TokenIssuer,
    store: St,
    revocation: Arc<dyn RevocationStore>,
    refresh_ttl: Duration,
    family_lifetime: Duration,
    reuse_grace: Duration,
    counters: Counters,
}

impl<St> Clone for RefreshTokens<St> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<St: fmt::Debug> fmt::Debug for RefreshTokens<St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshTokens")
            .field("issuer", &self.inner.issuer)
            .field("store", &self.inner.store)
            .field("revocation", &self.inner.revocation)
            .field("refresh_ttl", &self.inner.refresh_ttl)
            .field("family_lifetime", &self.inner.family_lifetime)
            .field("reuse_grace", &self.inner.reuse_grace)
            .finish()
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl<St: RefreshStore> RefreshTokens<St> {
    /// A builder: access tokens from `issuer` (and its clock), families in `store`.
    pub fn builder(issuer: TokenIssuer, store: St) -> RefreshTokensBuilder<St> {
        RefreshTokensBuilder {
            issuer,
            store,
            revocation: None,
            refresh_ttl: DEFAULT_REFRESH_TTL,
            family_lifetime: DEFAULT_FAMILY_LIFETIME,
            reuse_grace: DEFAULT_REUSE_GRACE,
        }
    }

    fn now_ms(&self) -> u64 {
        let now = self.inner.issuer.clock().now();
        now.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    fn pair(
        &self,
        access: AccessToken,
        refresh_token: RefreshToken,
        refresh_expires_in: u64,
        subject: String,
        role: String,
        family: FamilyId,
    ) -> TokenPair {
        TokenPair {
            expires_in: access.expires_in(),
            jti: access.jti().to_owned(),
            access_expires_at: access.expires_at(),
            access_token: access.into_string(),
            token_type: "Bearer",
            refresh_token,
            refresh_expires_in,
            subject,
            role,
            family,
        }
    }

    /// Signs in `subject` with `role`: a new family, its first refresh token and an access
    /// token with `extra` claims (`&()` for none).
    pub async fn issue_pair<E: Serialize + ?Sized>(
        &self,
        subject: &str,
        role: &str,
        extra: &E,
    ) -> Result<TokenPair, RefreshError> {
        // Sign first: a bad subject, role or extra claim fails before anything is stored.
        let family = random_family()?;
        let access =
            self.inner
                .issuer
                .issue_in_session(subject, role, extra, Some(&family.to_string()))?;
        let (refresh_token, hash) = RefreshToken::generate(family)?;
        let now_ms = self.now_ms();
        let family_expires_ms = now_ms.saturating_add(millis(self.inner.family_lifetime));
        let token_expires_ms = now_ms.saturating_add(millis(self.inner.refresh_ttl));
        self.inner
            .store
            .create(&NewFamily {
                family,
                subject: subject.to_owned(),
                role: role.to_owned(),
                token: hash,
                now_ms,
                token_expires_ms,
                family_expires_ms,
            })
            .await?;
        Ok(self.pair(
            access,
            refresh_token,
            token_expires_ms.saturating_sub(now_ms) / 1000,
            subject.to_owned(),
            role.to_owned(),
            family,
        ))
    }

    /// Uses a refresh token: it is spent, a successor is issued in the same family with an
    /// access token carrying the family's stored role. A repeat of the token just rotated,
    /// within the grace window, gets a sibling (see the type docs).
    pub async fn rotate(&self, refresh_token: &str) -> Result<TokenPair, RefreshError> {
        self.rotate_inner(refresh_token, None::<fn(String) -> std::future::Ready<_>>)
            .await
    }

    /// Like [`rotate`](Self::rotate), but asks `current_role(subject)` for the subject's role
    /// now (e.g. from the user database), so a role change takes effect at the next refresh.
    /// `Ok(None)` means the account is gone: the family is revoked and the refresh refused.
    /// An error refuses the refresh with 503 (the token is then already rotated; the client
    /// may retry it within the grace window).
    pub async fn rotate_with<F, Fut>(
        &self,
        refresh_token: &str,
        current_role: F,
    ) -> Result<TokenPair, RefreshError>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<Option<String>, StoreError>>,
    {
        self.rotate_inner(refresh_token, Some(current_role)).await
    }

    async fn rotate_inner<F, Fut>(
        &self,
        refresh_token: &str,
        current_role: Option<F>,
    ) -> Result<TokenPair, RefreshError>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<Option<String>, StoreError>>,
    {
        let counters = &self.inner.counters;
        let Some((family, presented)) = RefreshToken::parse(refresh_token) else {
            counters.unknown.increment(1);
            return Err(RefreshError::Unknown);
        };
        let (successor, successor_hash) = RefreshToken::generate(family)?;
        let now_ms = self.now_ms();
        let outcome = self
            .inner
            .store
            .rotate(&Rotation {
                family,
                presented,
                successor: successor_hash,
                now_ms,
                token_ttl_ms: millis(self.inner.refresh_ttl),
                grace_ms: millis(self.inner.reuse_grace),
                max_siblings: MAX_SIBLINGS,
            })
            .await?;
        let (subject, mut role, expires_ms) = match outcome {
            RotateOutcome::Rotated {
                subject,
                role,
                expires_ms,
            } => {
                counters.rotated.increment(1);
                (subject, role, expires_ms)
            }
            RotateOutcome::Sibling {
                subject,
                role,
                expires_ms,
            } => {
                counters.sibling.increment(1);
                (subject, role, expires_ms)
            }
            RotateOutcome::Reused { subject } => {
                counters.reused.increment(1);
                tracing::warn!(
                    target: "tower_shield::security",
                    event = "refresh.reuse_detected",
                    subject = %telemetry::loggable(&subject),
                    session = %family,
                    "refresh token reuse detected; the session is revoked"
                );
                // The refresh is refused whatever happens here: a store failure is logged
                // (the family itself is already revoked).
                if let Err(error) = self.end_session(family).await {
                    tracing::warn!(
                        target: "tower_shield::jwt::refresh",
                        %family,
                        %error,
                        "could not revoke the reused family's access tokens"
                    );
                }
                return Err(RefreshError::Reused { subject, family });
            }
            RotateOutcome::Revoked => {
                counters.revoked.increment(1);
                return Err(RefreshError::Revoked);
            }
            RotateOutcome::Expired => {
                counters.expired.increment(1);
                return Err(RefreshError::Expired);
            }
            RotateOutcome::Busy => {
                counters.busy.increment(1);
                return Err(RefreshError::Busy);
            }
            _ => {
                counters.unknown.increment(1);
                return Err(RefreshError::Unknown);
            }
        };
        let asked_role = current_role.is_some();
        if let Some(current_role) = current_role {
            match current_role(subject.clone()).await? {
                None => {
                    self.inner.store.revoke(family, None, now_ms).await?;
                    self.end_session(family).await?;
                    return Err(RefreshError::Revoked);
                }
                Some(current) if current != role => {
                    self.inner.store.set_role(family, &current).await?;
                    role = current;
                }
                Some(_) => {}
            }
        }
        let session = family.to_string();
        let access = self
            .inner
            .issuer
            .issue_in_session(&subject, &role, &(), Some(&session))?;
        // The role lookup may have taken long enough for the family to end meanwhile (reuse
        // elsewhere, logout), with a session revocation that expires before this token: ask
        // once more, now that the token exists (a revocation from now on outlives it).
        if asked_role
            && self
                .inner
                .revocation
                .check(TokenRef {
                    jti: Some(access.jti()),
                    session: Some(&session),
                    subject: &subject,
                    issued_at: Some(access.issued_at()),
                })
                .await?
        {
            return Err(RefreshError::Revoked);
        }
        Ok(self.pair(
            access,
            successor,
            expires_ms.saturating_sub(now_ms) / 1000,
            subject,
            role,
            family,
        ))
    }

    /// Logs out the session of this refresh token: revokes its family and the access tokens
    /// issued with it (their `sid`). A malformed or unknown token is `Ok(false)` (logout
    /// always "succeeds" for the client).
    pub async fn logout(&self, refresh_token: &str) -> Result<bool, RefreshError> {
        let Some((family, hash)) = RefreshToken::parse(refresh_token) else {
            return Ok(false);
        };
        let revoked = self
            .inner
            .store
            .revoke(family, Some(hash), self.now_ms())
            .await?;
        // Only for a token of the family: an id alone does not end anyone's session.
        if revoked {
            self.end_session(family).await?;
        }
        Ok(revoked)
    }

    /// Revokes a family by id and the access tokens issued with it (e.g. from an admin tool
    /// or after a reuse alert).
    pub async fn revoke_family(&self, family: FamilyId) -> Result<bool, RefreshError> {
        let revoked = self.inner.store.revoke(family, None, self.now_ms()).await?;
        self.end_session(family).await?;
        Ok(revoked)
    }

    /// Revokes the session `family` in the revocation store until every access token it can
    /// have issued has expired. Tried three times: once the family is revoked, nothing
    /// presented later proves it again, so a failure here cannot be repaired by the client
    /// retrying (only by [`revoke_family`](Self::revoke_family)).
    async fn end_session(&self, family: FamilyId) -> Result<(), StoreError> {
        let session = family.to_string();
        let mut attempt = 0;
        loop {
            let result = self
                .inner
                .revocation
                .revoke_session(&session, self.inner.issuer.access_horizon())
                .await;
            attempt += 1;
            match result {
                Err(error) if attempt < 3 => {
                    tracing::debug!(
                        target: "tower_shield::jwt::refresh",
                        %family,
                        %error,
                        "revoking the session failed; retrying"
                    );
                    yield_once().await;
                }
                Ok(()) => {
                    self.inner.counters.revoked_session.increment(1);
                    tracing::info!(
                        target: "tower_shield::security",
                        event = "session.revoked",
                        session = %family,
                        "session revoked"
                    );
                    return Ok(());
                }
                result => return result,
            }
        }
    }

    /// Denies one access token (by its `jti`) until it expires (`exp` plus the largest leeway
    /// a verifying layer accepts, whatever this issuer's): for logout with a bearer token.
    pub async fn revoke_access_token(
        &self,
        jti: &str,
        expires_at: u64,
    ) -> Result<(), RefreshError> {
        let until = TokenIssuer::dead_after(expires_at);
        self.inner.revocation.revoke_token(jti, until).await?;
        self.inner.counters.revoked_token.increment(1);
        Ok(())
    }

    /// "Log out everywhere": sets the subject's revoked-before watermark (every access token
    /// issued up to this second is refused by the verifying layer) and revokes every family
    /// of the subject. Returns how many live families were revoked.
    pub async fn logout_everywhere(&self, subject: &str) -> Result<u64, RefreshError> {
        let now_secs = self.inner.issuer.clock().unix_secs();
        // The watermark first: even if revoking the families fails midway, no access token
        // of the subject outlives this call.
        self.inner
            .revocation
            .revoke_subject(
                subject,
                now_secs.saturating_add(1),
                self.inner.issuer.access_horizon(),
            )
            .await?;
        self.inner.counters.revoked_subject.increment(1);
        tracing::info!(
            target: "tower_shield::security",
            event = "session.revoked",
            subject = %telemetry::loggable(subject),
            scope = "everywhere",
            "every session of the subject revoked"
        );
        Ok(self
            .inner
            .store
            .revoke_subject(subject, self.now_ms())
            .await?)
    }

    /// The access-token issuer.
    pub fn issuer(&self) -> &TokenIssuer {
        &self.inner.issuer
    }

    /// The refresh store.
    pub fn store(&self) -> &St {
        &self.inner.store
    }

    /// The revocation store.
    pub fn revocation(&self) -> &Arc<dyn RevocationStore> {
        &self.inner.revocation
    }

    /// The refresh-token lifetime.
    pub fn refresh_ttl(&self) -> Duration {
        self.inner.refresh_ttl
    }

    /// The family lifetime cap.
    pub fn family_lifetime(&self) -> Duration {
        self.inner.family_lifetime
    }

    /// The grace window.
    pub fn reuse_grace(&self) -> Duration {
        self.inner.reuse_grace
    }
}

/// Lets other tasks run once before a retry (`yield_now` without depending on a runtime).
async fn yield_once() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_and_parse_back() {
        let family = random_family().unwrap();
        let (token, hash) = RefreshToken::generate(family).unwrap();
        assert_eq!(token.as_str().len(), REFRESH_TOKEN_LEN);
        assert!(token.as_str().starts_with("rt_"));
        assert_eq!(RefreshToken::parse(token.as_str()), Some((family, hash)));
        assert_eq!(format!("{token:?}"), "RefreshToken(<redacted>)");
        let (other, other_hash) = RefreshToken::generate(family).unwrap();
        assert_ne!(token, other);
        assert_ne!(hash, other_hash);
        // Malformed: wrong prefix, length, alphabet.
        let body = &token.as_str()[3..];
        assert!(RefreshToken::parse(&format!("xx_{body}")).is_none());
        assert!(RefreshToken::parse(&token.as_str()[..66]).is_none());
        assert!(RefreshToken::parse(&format!("rt_{}", "+".repeat(64))).is_none());
        assert!(RefreshToken::parse(&format!("rt_{}", "é".repeat(32))).is_none());
    }
}
