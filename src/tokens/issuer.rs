//! Issuing access tokens: [`TokenIssuer`] signs RFC 9068 access tokens with the active key of
//! a [`KeyRing`].
//!
//! Each token has the header `typ: at+jwt`, `kid` (the key's id, by default its RFC 7638
//! thumbprint) and `alg` (the key's one algorithm), and the claims `iss`, `aud`, `sub`,
//! `role`, `iat`, `nbf`, `exp` and a UUID `jti` (and `sid`, the session, when issued in one:
//! see [`TokenIssuer::issue_in_session`]), plus any claims of the caller's own (which may not
//! replace the registered ones). Time comes from the injected
//! [`Clock`], so the verifying [`JwtAuthLayer`](crate::jwt::JwtAuthLayer) and
//! the issuer agree in tests.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Algorithm, AlgorithmFamily, Header};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::clock::{Clock, SystemClock};
use crate::error::ConfigError;
use crate::jwt::keys::{KeyRing, KeySet};

/// Default access-token lifetime: 15 minutes.
pub const DEFAULT_ACCESS_TTL: Duration = Duration::from_secs(15 * 60);
/// Shortest access-token lifetime the builder accepts: 1 second.
pub const MIN_ACCESS_TTL: Duration = Duration::from_secs(1);
/// Longest access-token lifetime the builder accepts: 1 hour.
pub const MAX_ACCESS_TTL: Duration = Duration::from_secs(60 * 60);
/// Default leeway assumed for verifiers (30 s, like [`DEFAULT_LEEWAY`](crate::jwt::DEFAULT_LEEWAY)).
pub const DEFAULT_ISSUER_LEEWAY: Duration = Duration::from_secs(30);

/// The claims the issuer sets itself; extra claims may not use these names.
pub const REGISTERED_CLAIMS: [&str; 9] = [
    "iss", "aud", "sub", "role", "iat", "nbf", "exp", "jti", "sid",
];

/// Longest `sub` or `role` the issuer signs (bytes).
const MAX_CLAIM_VALUE: usize = 512;

/// Why an access token could not be issued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// The key ring has no active signing key (all retired or public keys only).
    #[error("no active signing key")]
    NoSigningKey,
    /// The active key is an HMAC key and the issuer was not built with
    /// [`TokenIssuerBuilder::allow_hmac`].
    #[error("the active key is an HMAC key, which this issuer may not use")]
    HmacNotAllowed,
    /// An extra claim tried to set one of the [`REGISTERED_CLAIMS`].
    #[error("extra claim `{0}` would replace a registered claim")]
    ReservedClaim(&'static str),
    /// The extra claims are not a JSON object (or could not be serialised).
    #[error("extra claims must serialise to a JSON object")]
    ExtraClaims,
    /// The subject, role or session is empty, too long (512 bytes) or contains control
    /// characters.
    #[error("subject, role or session is empty, too long or contains control characters")]
    InvalidIdentity,
    /// The signed token would be longer than verifiers accept by default
    /// ([`DEFAULT_MAX_TOKEN_LEN`](crate::jwt::DEFAULT_MAX_TOKEN_LEN), 8 KiB): too many extra claims.
    #[error("the token would exceed 8 KiB")]
    TooLarge,
    /// Signing failed.
    #[error("signing the token failed")]
    Signing,
}

/// A signed access token and what the service may need to know about it.
///
/// `Debug` never prints the token.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken {
    token: String,
    jti: String,
    issued_at: u64,
    expires_at: u64,
    kid: Arc<str>,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &"<redacted>")
            .field("jti", &self.jti)
            .field("issued_at", &self.issued_at)
            .field("expires_at", &self.expires_at)
            .field("kid", &self.kid)
            .finish()
    }
}

impl AccessToken {
    /// The compact JWS (send it to the client; never log it).
    pub fn as_str(&self) -> &str {
        &self.token
    }

    /// Consumes this value, returning the compact JWS.
    pub fn into_string(self) -> String {
        self.token
    }

    /// The `jti` claim (a UUID).
    pub fn jti(&self) -> &str {
        &self.jti
    }

    /// The `iat` claim (unix seconds).
    pub fn issued_at(&self) -> u64 {
        self.issued_at
    }

    /// The `exp` claim (unix seconds).
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }

    /// The `kid` of the key that signed it.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Seconds from `iat` to `exp` (the OAuth `expires_in`).
    pub fn expires_in(&self) -> u64 {
        self.expires_at.saturating_sub(self.issued_at)
    }
}

/// Which UUID version the `jti` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum JtiVersion {
    #[default]
    V4,
    V7,
}

/// Builds a [`TokenIssuer`]; see [`TokenIssuer::builder`].
#[must_use]
pub struct TokenIssuerBuilder {
    keys: KeyRing,
    issuer: Option<String>,
    audience: Option<String>,
    access_ttl: Duration,
    leeway: Duration,
    allow_hmac: bool,
    jti: JtiVersion,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for TokenIssuerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenIssuerBuilder")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("access_ttl", &self.access_ttl)
            .finish_non_exhaustive()
    }
}

impl TokenIssuerBuilder {
    /// The `iss` claim (required, non-empty).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// The `aud` claim (required, non-empty).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// The access-token lifetime, 1 s to 1 h (default 15 min).
    pub fn access_ttl(mut self, ttl: Duration) -> Self {
        self.access_ttl = ttl;
        self
    }

    /// The leeway verifiers allow (default 30 s, at most 5 min and less than the access
    /// lifetime). The issuer uses it to keep revocations until a token is surely dead.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Allows signing with HMAC (`HS256`/`HS384`/`HS512`) keys. Off by default: an HMAC key
    /// signs and verifies alike, so every verifier could also mint tokens.
    pub fn allow_hmac(mut self) -> Self {
        self.allow_hmac = true;
        self
    }

    /// Uses UUIDv7 (time-ordered) `jti`s instead of UUIDv4.
    pub fn uuid_v7(mut self) -> Self {
        self.jti = JtiVersion::V7;
        self
    }

    /// The clock for `iat`, `nbf` and `exp` (default: the system clock). Share it with the
    /// verifying layer.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The clock, shared.
    pub fn shared_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Validates the configuration.
    pub fn build(self) -> Result<TokenIssuer, ConfigError> {
        let issuer = self
            .issuer
            .ok_or(ConfigError::Missing { setting: "issuer" })?;
        let audience = self.audience.ok_or(ConfigError::Missing {
            setting: "audience",
        })?;
        if issuer.trim().is_empty() || issuer.len() > MAX_CLAIM_VALUE {
            return Err(ConfigError::invalid(
                "issuer",
                "empty or longer than 512 bytes",
            ));
        }
        if audience.trim().is_empty() || audience.len() > MAX_CLAIM_VALUE {
            return Err(ConfigError::invalid(
                "audience",
                "empty or longer than 512 bytes",
            ));
        }
        if !(MIN_ACCESS_TTL..=MAX_ACCESS_TTL).contains(&self.access_ttl) {
            return Err(ConfigError::invalid(
                "access_ttl",
                "must be between 1 second and 1 hour",
            ));
        }
        if self.access_ttl.subsec_nanos() != 0 {
            return Err(ConfigError::invalid(
                "access_ttl",
                "must be whole seconds (JWT times are seconds)",
            ));
        }
        if self.leeway > Duration::from_secs(300) {
            return Err(ConfigError::dangerous(
                "leeway",
                "more than 5 minutes of leeway keeps expired tokens alive",
            ));
        }
        if self.leeway >= self.access_ttl && !self.leeway.is_zero() {
            return Err(ConfigError::invalid(
                "leeway",
                "must be shorter than the access-token lifetime",
            ));
        }
        let snapshot = self.keys.snapshot();
        check_signing(&snapshot, self.allow_hmac).map_err(|e| match e {
            IssueError::HmacNotAllowed => ConfigError::dangerous(
                "keys",
                "the active key is an HMAC key; call allow_hmac() to sign with it",
            ),
            _ => ConfigError::Missing {
                setting: "keys (an active signing key)",
            },
        })?;
        Ok(TokenIssuer {
            inner: Arc::new(Inner {
                keys: self.keys,
                issuer,
                audience,
                access_ttl: self.access_ttl,
                leeway: self.leeway,
                allow_hmac: self.allow_hmac,
                jti: self.jti,
                clock: self.clock,
            }),
        })
    }
}

fn check_signing(keys: &KeySet, allow_hmac: bool) -> Result<Algorithm, IssueError> {
    let signing = keys.signing_key().ok_or(IssueError::NoSigningKey)?;
    if signing.alg.family() == AlgorithmFamily::Hmac && !allow_hmac {
        return Err(IssueError::HmacNotAllowed);
    }
    Ok(signing.alg)
}

/// Signs access tokens with the active key of a [`KeyRing`].
///
/// Cheap to clone (one `Arc`). Share the ring with [`JwtAuthLayer`](crate::jwt::JwtAuthLayer) so a
/// rotation (new key active, old key retired with a grace time) reaches both at once.
///
/// ```
/// use jsonwebtoken::Algorithm;
/// use tower_shield::jwt::{Key, KeyRing, KeySet};
/// use tower_shield::tokens::TokenIssuer;
///
/// let ring = KeyRing::new(KeySet::new().with(Key::generate(Algorithm::EdDSA)?)?);
/// let issuer = TokenIssuer::builder(ring.clone())
///     .issuer("https://auth.example")
///     .audience("api")
///     .build()?;
/// let token = issuer.issue("user_1", "user", &())?;
/// assert_eq!(token.expires_in(), 900);
/// assert_eq!(token.as_str().split('.').count(), 3);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct TokenIssuer {
    inner: Arc<Inner>,
}

struct Inner {
    keys: KeyRing,
    issuer: String,
    audience: String,
    access_ttl: Duration,
    leeway: Duration,
    allow_hmac: bool,
    jti: JtiVersion,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("issuer", &self.inner.issuer)
            .field("audience", &self.inner.audience)
            .field("access_ttl", &self.inner.access_ttl)
            .field("leeway", &self.inner.leeway)
            .field("allow_hmac", &self.inner.allow_hmac)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Registered<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    role: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    jti: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<&'a str>,
}

fn valid_identity(value: &str) -> bool {
    !value.is_empty() && value.len() <= MAX_CLAIM_VALUE && !value.chars().any(char::is_control)
}

impl TokenIssuer {
    /// A builder signing with these keys (a [`KeySet`] or a shared [`KeyRing`]).
    pub fn builder(keys: impl Into<KeyRing>) -> TokenIssuerBuilder {
        TokenIssuerBuilder {
            keys: keys.into(),
            issuer: None,
            audience: None,
            access_ttl: DEFAULT_ACCESS_TTL,
            leeway: DEFAULT_ISSUER_LEEWAY,
            allow_hmac: false,
            jti: JtiVersion::default(),
            clock: Arc::new(SystemClock),
        }
    }

    /// Signs an access token for `subject` with `role`, adding `extra` claims (any
    /// serialisable map or struct; `&()` or `&None::<()>` for none). Extra claims named like a
    /// registered claim are refused with [`IssueError::ReservedClaim`].
    pub fn issue<E: Serialize + ?Sized>(
        &self,
        subject: &str,
        role: &str,
        extra: &E,
    ) -> Result<AccessToken, IssueError> {
        self.issue_in_session(subject, role, extra, None)
    }

    /// [`issue`](Self::issue) with a `sid` claim naming the session the token belongs to,
    /// so that [`RevocationStore::revoke_session`](crate::jwt::RevocationStore::revoke_session)
    /// can refuse every access token of that session at once.
    /// [`RefreshTokens`](super::RefreshTokens) uses the refresh-token family as the session.
    pub fn issue_in_session<E: Serialize + ?Sized>(
        &self,
        subject: &str,
        role: &str,
        extra: &E,
        session: Option<&str>,
    ) -> Result<AccessToken, IssueError> {
        if !valid_identity(subject)
            || !valid_identity(role)
            || session.is_some_and(|sid| !valid_identity(sid))
        {
            return Err(IssueError::InvalidIdentity);
        }
        let extra = match serde_json::to_value(extra).map_err(|_| IssueError::ExtraClaims)? {
            Value::Null => Map::new(),
            Value::Object(map) => map,
            _ => return Err(IssueError::ExtraClaims),
        };
        if let Some(name) = REGISTERED_CLAIMS
            .iter()
            .find(|name| extra.contains_key(**name))
        {
            return Err(IssueError::ReservedClaim(name));
        }
        let keys = self.inner.keys.snapshot();
        check_signing(&keys, self.inner.allow_hmac)?;
        let signing = keys.signing_key().ok_or(IssueError::NoSigningKey)?;

        let now = self.inner.clock.unix_secs();
        let exp = now.saturating_add(self.inner.access_ttl.as_secs());
        let jti = match self.inner.jti {
            JtiVersion::V4 => uuid::Uuid::new_v4(),
            JtiVersion::V7 => uuid::Uuid::now_v7(),
        }
        .to_string();
        let registered = Registered {
            iss: &self.inner.issuer,
            aud: &self.inner.audience,
            sub: subject,
            role,
            iat: now,
            nbf: now,
            exp,
            jti: &jti,
            sid: session,
        };
        let Ok(Value::Object(mut claims)) = serde_json::to_value(&registered) else {
            return Err(IssueError::Signing);
        };
        claims.extend(extra);

        let mut header = Header::new(signing.alg);
        header.typ = Some("at+jwt".to_owned());
        header.kid = Some(signing.kid.to_owned());
        let token =
            jsonwebtoken::encode(&header, &claims, signing.key).map_err(|_| IssueError::Signing)?;
        if token.len() > crate::jwt::DEFAULT_MAX_TOKEN_LEN {
            return Err(IssueError::TooLarge);
        }
        Ok(AccessToken {
            token,
            jti,
            issued_at: now,
            expires_at: exp,
            kid: Arc::from(signing.kid),
        })
    }

    /// The keys it signs with.
    pub fn keys(&self) -> &KeyRing {
        &self.inner.keys
    }

    /// The `iss` claim.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The `aud` claim.
    pub fn audience(&self) -> &str {
        &self.inner.audience
    }

    /// The access-token lifetime.
    pub fn access_ttl(&self) -> Duration {
        self.inner.access_ttl
    }

    /// The leeway verifiers allow.
    pub fn leeway(&self) -> Duration {
        self.inner.leeway
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// Unix seconds after which every access token issued up to now is dead: see
    /// [`dead_after`](Self::dead_after).
    pub(crate) fn access_horizon(&self) -> u64 {
        let newest_exp = self
            .inner
            .clock
            .unix_secs()
            .saturating_add(self.inner.access_ttl.as_secs());
        Self::dead_after(newest_exp)
    }

    /// Unix seconds after which a token with this `exp` is refused by any verifying layer,
    /// even one configured with the largest leeway a layer accepts (5 min; at least this
    /// issuer's own leeway): how long a revocation of it must be kept.
    pub(crate) fn dead_after(exp: u64) -> u64 {
        exp.saturating_add(crate::jwt::MAX_LEEWAY.as_secs())
            .saturating_add(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::Key;
    use crate::jwt::MAX_LEEWAY;

    #[test]
    fn revocations_outlive_every_layer_leeway() {
        // A layer may accept a token up to `exp + MAX_LEEWAY`: its revocation must outlast
        // that second, even when the issuer itself assumes a smaller leeway.
        let exp = 1_000_000;
        assert!(TokenIssuer::dead_after(exp) > exp + MAX_LEEWAY.as_secs());
        assert_eq!(TokenIssuer::dead_after(u64::MAX), u64::MAX);
    }

    fn ring(alg: Algorithm) -> KeyRing {
        KeyRing::new(KeySet::new().with(Key::generate(alg).unwrap()).unwrap())
    }

    #[test]
    fn builder_refuses_bad_settings() {
        let ok = || {
            TokenIssuer::builder(ring(Algorithm::EdDSA))
                .issuer("i")
                .audience("a")
        };
        assert!(ok().build().is_ok());
        assert!(
            TokenIssuer::builder(ring(Algorithm::EdDSA))
                .audience("a")
                .build()
                .is_err()
        );
        assert!(ok().issuer(" ").build().is_err());
        assert!(ok().audience("").build().is_err());
        assert!(ok().access_ttl(Duration::ZERO).build().is_err());
        assert!(ok().access_ttl(Duration::from_secs(3601)).build().is_err());
        assert!(
            ok().access_ttl(Duration::from_millis(1500))
                .build()
                .is_err()
        );
        assert!(ok().access_ttl(Duration::from_secs(3600)).build().is_ok());
        assert!(ok().leeway(Duration::from_secs(301)).build().is_err());
        assert!(
            ok().access_ttl(Duration::from_secs(20))
                .leeway(Duration::from_secs(30))
                .build()
                .is_err()
        );
        assert!(
            TokenIssuer::builder(KeySet::new())
                .issuer("i")
                .audience("a")
                .build()
                .is_err(),
            "no signing key"
        );
    }

    #[test]
    fn hmac_only_when_allowed() {
        let hs = ring(Algorithm::HS256);
        let base = || TokenIssuer::builder(hs.clone()).issuer("i").audience("a");
        assert!(matches!(base().build(), Err(ConfigError::Dangerous { .. })));
        let issuer = base().allow_hmac().build().unwrap();
        assert!(issuer.issue("s", "r", &()).is_ok());
    }

    #[test]
    fn extra_claims_cannot_replace_registered_ones() {
        let issuer = TokenIssuer::builder(ring(Algorithm::ES256))
            .issuer("i")
            .audience("a")
            .build()
            .unwrap();
        for name in REGISTERED_CLAIMS {
            let extra = serde_json::json!({ name: "x" });
            assert_eq!(
                issuer.issue("s", "r", &extra),
                Err(IssueError::ReservedClaim(name))
            );
        }
        assert_eq!(
            issuer.issue("s", "r", &[1, 2]),
            Err(IssueError::ExtraClaims)
        );
        assert_eq!(issuer.issue("", "r", &()), Err(IssueError::InvalidIdentity));
        assert_eq!(
            issuer.issue("a\nb", "r", &()),
            Err(IssueError::InvalidIdentity)
        );
        let big = serde_json::json!({ "blob": "x".repeat(9 * 1024) });
        assert_eq!(issuer.issue("s", "r", &big), Err(IssueError::TooLarge));
        let token = issuer
            .issue("s", "r", &serde_json::json!({ "tenant": "t1" }))
            .unwrap();
        assert!(!format!("{token:?}").contains(token.as_str()));
    }
}
