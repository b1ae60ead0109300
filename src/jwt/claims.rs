//! The claims handlers receive: the ready [`Claims`] type, [`Verified<C>`] and [`Scopes`].

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The `aud` claim: one audience or several.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum Audience {
    /// A single audience (`"aud": "api"`).
    One(String),
    /// Several audiences (`"aud": ["api", "admin"]`).
    Many(Vec<String>),
}

impl Audience {
    /// Whether `audience` is one of them.
    pub fn contains(&self, audience: &str) -> bool {
        match self {
            Self::One(a) => a == audience,
            Self::Many(list) => list.iter().any(|a| a == audience),
        }
    }
}

/// The registered claims of an access token (RFC 7519, RFC 9068) plus `role` and `scope`.
///
/// Use it as `C` in [`JwtAuthLayer<C>`](super::JwtAuthLayer) (the default), or define your own
/// claims type: anything `DeserializeOwned + Clone + Send + Sync + 'static`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Claims {
    /// The subject (e.g. `user_…`).
    pub sub: String,
    /// The caller's role, when the issuer sets one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Issued at (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Expires at (unix seconds).
    pub exp: u64,
    /// Not before (unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    /// The issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// The audience(s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    /// The token's unique id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Space-separated scopes (RFC 8693 / RFC 9068).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// The scopes a verified token grants (from its `scope` claim, space-separated, or an array),
/// put in the request extensions by `JwtAuthLayer` for `RequireScopeLayer`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scopes(Arc<[Box<str>]>);

impl Scopes {
    pub(crate) fn new(scopes: Vec<Box<str>>) -> Self {
        Self(scopes.into())
    }

    /// Whether `scope` is granted.
    pub fn contains(&self, scope: &str) -> bool {
        self.0.iter().any(|s| s.as_ref() == scope)
    }

    /// The scopes.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(AsRef::as_ref)
    }

    /// How many scopes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A verified token's claims, put in the request extensions by `JwtAuthLayer`.
///
/// Holds the deserialised claims `C`, the `kid` of the key that verified it, its `jti`,
/// subject and expiry; never the raw token. Cheap to clone (one `Arc`). Derefs to `C`.
/// Under the `axum` feature it is an extractor (`Verified<C>` and `Option<Verified<C>>`).
pub struct Verified<C = super::Claims> {
    inner: Arc<VerifiedInner<C>>,
}

struct VerifiedInner<C> {
    claims: C,
    kid: Arc<str>,
    jti: Option<Arc<str>>,
    session: Option<Arc<str>>,
    subject: Arc<str>,
    expires_at: u64,
    issued_at: Option<u64>,
}

impl<C> Clone for Verified<C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<C: fmt::Debug> fmt::Debug for Verified<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verified")
            .field("claims", &self.inner.claims)
            .field("kid", &self.inner.kid)
            .field("jti", &self.inner.jti)
            .field("expires_at", &self.inner.expires_at)
            .finish()
    }
}

impl<C> Deref for Verified<C> {
    type Target = C;

    fn deref(&self) -> &C {
        &self.inner.claims
    }
}

impl<C> Verified<C> {
    pub(crate) fn new(
        claims: C,
        kid: Arc<str>,
        jti: Option<Arc<str>>,
        session: Option<Arc<str>>,
        subject: Arc<str>,
        expires_at: u64,
        issued_at: Option<u64>,
    ) -> Self {
        Self {
            inner: Arc::new(VerifiedInner {
                claims,
                kid,
                jti,
                session,
                subject,
                expires_at,
                issued_at,
            }),
        }
    }

    /// The claims.
    pub fn claims(&self) -> &C {
        &self.inner.claims
    }

    /// The `kid` of the key that verified the token.
    pub fn kid(&self) -> &str {
        &self.inner.kid
    }

    /// The token's `jti`, when it has one (e.g. to deny it at logout).
    pub fn jti(&self) -> Option<&str> {
        self.inner.jti.as_deref()
    }

    /// The token's `sid` claim, when it has one: the session it was issued in (for tokens of
    /// `RefreshTokens` (feature `tokens`), the refresh-token family). Revoking the
    /// session ([`RevocationStore::revoke_session`](super::RevocationStore::revoke_session))
    /// refuses every access token of it.
    pub fn session(&self) -> Option<&str> {
        self.inner.session.as_deref()
    }

    /// The subject (`sub`).
    pub fn subject(&self) -> &str {
        &self.inner.subject
    }

    /// The token's `exp` (unix seconds).
    pub fn expires_at(&self) -> u64 {
        self.inner.expires_at
    }

    /// The token's `iat` (unix seconds), when present.
    pub fn issued_at(&self) -> Option<u64> {
        self.inner.issued_at
    }
}
