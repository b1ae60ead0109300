//! `JwtAuthLayer`: its builder and validated configuration.

use std::fmt;
use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use http::{Extensions, HeaderMap, HeaderValue, header};
use tower_layer::Layer;

use super::cache::{CachedToken, TokenCache, TokenKey};
use super::claims::{Claims, Scopes, Verified};
use super::keys::{KeyRing, KeySetVersion, KeySource, install_crypto_provider};
use super::revocation::RevocationStore;
use super::service::JwtAuthService;
use super::validation::{self, Invalid, Policy, TokenType, check_times};
use crate::clock::{Clock, SystemClock};
use crate::error::ConfigError;
use crate::extensions::Principal;
use crate::refusal::ProblemType;
use crate::telemetry::{self, Counter};

/// Where the layer reads the token. Never a query parameter (URLs end up in logs).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenSource {
    /// `Authorization: Bearer <token>` (scheme case-insensitive, exactly one header).
    Bearer,
    /// The cookie of this name (exactly one).
    Cookie(String),
    /// The `Authorization` header when present, else the cookie of this name.
    BearerOrCookie(String),
}

/// Default cap on a token's length.
pub const DEFAULT_MAX_TOKEN_LEN: usize = 8 * 1024;
/// Default leeway for `exp`, `nbf` and `iat`.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(30);
/// Largest leeway `build()` accepts.
pub(crate) const MAX_LEEWAY: Duration = Duration::from_secs(300);
/// Longest `Cookie` header value scanned (total of all lines).
const MAX_COOKIE_HEADER: usize = 16 * 1024;

/// Builds a [`JwtAuthLayer`]; see [`JwtAuthLayer::builder`].
#[must_use]
pub struct JwtAuthLayerBuilder<C = Claims> {
    source: Arc<dyn KeySource>,
    require_keys: bool,
    issuers: Vec<String>,
    audiences: Vec<String>,
    leeway: Duration,
    max_token_len: usize,
    token_source: TokenSource,
    token_type: TokenType,
    rfc9068_claims: bool,
    failure_level: tracing::Level,
    optional: bool,
    accept_api_keys: bool,
    revocation: Option<Arc<dyn RevocationStore>>,
    cache: Option<usize>,
    clock: Arc<dyn Clock>,
    realm: String,
    _claims: PhantomData<fn() -> C>,
}

impl<C> fmt::Debug for JwtAuthLayerBuilder<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthLayerBuilder")
            .field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .field("leeway", &self.leeway)
            .field("max_token_len", &self.max_token_len)
            .field("token_source", &self.token_source)
            .field("token_type", &self.token_type)
            .field("optional", &self.optional)
            .field("revocation", &self.revocation.is_some())
            .field("cache", &self.cache)
            .field("realm", &self.realm)
            .finish_non_exhaustive()
    }
}

impl<C> JwtAuthLayerBuilder<C> {
    /// Verifies claims into another type `D` (default [`Claims`]).
    pub fn claims<D>(self) -> JwtAuthLayerBuilder<D> {
        JwtAuthLayerBuilder {
            source: self.source,
            require_keys: self.require_keys,
            issuers: self.issuers,
            audiences: self.audiences,
            leeway: self.leeway,
            max_token_len: self.max_token_len,
            token_source: self.token_source,
            token_type: self.token_type,
            rfc9068_claims: self.rfc9068_claims,
            failure_level: self.failure_level,
            optional: self.optional,
            accept_api_keys: self.accept_api_keys,
            revocation: self.revocation,
            cache: self.cache,
            clock: self.clock,
            realm: self.realm,
            _claims: PhantomData,
        }
    }

    /// Accepts tokens whose `iss` is this issuer (repeatable; when none is given `iss` is not
    /// checked).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuers.push(issuer.into());
        self
    }

    /// Accepts tokens whose `aud` (string or array) contains this audience (repeatable; when
    /// none is given `aud` is not checked).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Clock skew allowed on `exp`, `nbf` and `iat` (default 30 s, at most 5 min; whole
    /// seconds).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Longest token accepted, checked before any decoding (default 8 KiB; 256 B to 64 KiB).
    pub fn max_token_len(mut self, len: usize) -> Self {
        self.max_token_len = len;
        self
    }

    /// Where to read the token (default `Authorization: Bearer`).
    pub fn token_from(mut self, source: TokenSource) -> Self {
        self.token_source = source;
        self
    }

    /// Which kind of token is accepted (default [`TokenType::access`]: `typ` `at+jwt`).
    pub fn expect_type(mut self, token_type: TokenType) -> Self {
        self.token_type = token_type;
        self
    }

    /// The level of the `auth.failed` security event of a refused token (default `INFO`:
    /// refusals are routine on a public API; `WARN` where every one deserves a look). The
    /// event has the fields `event`, `reason`, `route`, `client_ip`, `request_id` and
    /// `suppressed`, never the token; see the crate README.
    pub fn failure_event_level(mut self, level: tracing::Level) -> Self {
        self.failure_level = level;
        self
    }

    /// Whether an RFC 9068 access token must carry every claim §2.2 requires: `iss`, `exp`,
    /// `aud`, `sub`, `iat` and `jti` (default `true`; only in effect when
    /// [`expect_type`](Self::expect_type) asks for `typ: at+jwt`, as by default). `exp`
    /// and `sub` are required either way. Turn it off only for an issuer that marks its
    /// tokens `at+jwt` without following the profile: a token without `jti` cannot be
    /// revoked by its id.
    pub fn require_access_token_claims(mut self, required: bool) -> Self {
        self.rfc9068_claims = required;
        self
    }

    /// Lets requests without a token through (without claims); an invalid token is still
    /// refused, and so is an `Authorization` header that is not a single `Bearer` token
    /// (another scheme: 401 without `error`).
    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }

    /// Passes a request an `ApiKeyLayer` in front already authenticated (it carries an
    /// `ApiKeyIdentity`, which only that layer inserts) without looking for a token: for
    /// routes that take a bearer token or an API key. Any other request is checked as usual.
    #[cfg(feature = "api-key")]
    #[cfg_attr(docsrs, doc(cfg(feature = "api-key")))]
    pub fn accept_api_keys(mut self) -> Self {
        self.accept_api_keys = true;
        self
    }

    /// Checks every request against this revocation store (a store error refuses with 503).
    /// A cached token the store found not revoked is not asked about again while the store's
    /// [generation](RevocationStore::generation) is unchanged (only a revocation changes it).
    pub fn revocation(mut self, store: impl RevocationStore) -> Self {
        self.revocation = Some(Arc::new(store));
        self
    }

    /// Caches up to `capacity` verified tokens. Each entry keeps its token (compared in
    /// constant time on a hit) and its claims: budget `capacity` × (token + claims) bytes of
    /// memory, at most `capacity` × [`max_token_len`](Self::max_token_len) for the tokens.
    pub fn cache(mut self, capacity: usize) -> Self {
        self.cache = Some(capacity);
        self
    }

    /// The clock for `exp`/`nbf`/`iat` and key retirement (default: the system clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The `realm` of the `WWW-Authenticate` challenge (default `api`).
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = realm.into();
        self
    }

    /// Validates the configuration.
    pub fn build(self) -> Result<JwtAuthLayer<C>, ConfigError> {
        if self.require_keys && self.source.snapshot().is_empty() {
            return Err(ConfigError::Missing { setting: "keys" });
        }
        if self.leeway > MAX_LEEWAY {
            return Err(ConfigError::dangerous(
                "leeway",
                "more than 5 minutes of leeway keeps expired tokens alive",
            ));
        }
        if !(256..=64 * 1024).contains(&self.max_token_len) {
            return Err(ConfigError::invalid(
                "max_token_len",
                "must be between 256 bytes and 64 KiB",
            ));
        }
        if self.issuers.iter().any(String::is_empty) {
            return Err(ConfigError::invalid("issuer", "empty issuer"));
        }
        if self.audiences.iter().any(String::is_empty) {
            return Err(ConfigError::invalid("audience", "empty audience"));
        }
        if self.cache == Some(0) {
            return Err(ConfigError::invalid("cache", "capacity must be at least 1"));
        }
        if self.token_type.is_empty_rule() {
            return Err(ConfigError::invalid("expect_type", "no accepted typ value"));
        }
        if let TokenSource::Cookie(name) | TokenSource::BearerOrCookie(name) = &self.token_source
            && (name.is_empty()
                || name.len() > 128
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
        {
            return Err(ConfigError::invalid(
                "token_from",
                "cookie name must be 1 to 128 of [A-Za-z0-9._-]",
            ));
        }
        let (missing, invalid) = challenges(&self.realm)?;
        install_crypto_provider();
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        Ok(JwtAuthLayer {
            shared: Arc::new(Shared {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                policy: Policy {
                    max_token_len: self.max_token_len,
                    leeway: self.leeway.as_secs(),
                    issuers: self.issuers,
                    audiences: self.audiences,
                    rfc9068_claims: self.rfc9068_claims && self.token_type.is_rfc9068(),
                    token_type: self.token_type,
                },
                source: self.source,
                token_source: self.token_source,
                optional: self.optional,
                #[cfg(feature = "api-key")]
                accept_api_keys: self.accept_api_keys,
                revocation: self.revocation,
                cache: self.cache.map(TokenCache::new),
                clock: self.clock,
                missing_challenge: missing,
                invalid_challenge: invalid,
                telemetry: Arc::new(JwtTelemetry::new(self.failure_level)),
            }),
        })
    }
}

/// Refuses a challenge `realm` that cannot be a quoted header value.
pub(crate) fn check_realm(realm: &str) -> Result<(), ConfigError> {
    if realm.is_empty()
        || realm.len() > 128
        || !realm
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        return Err(ConfigError::invalid(
            "realm",
            "1 to 128 printable ASCII characters without `\"` or `\\`",
        ));
    }
    Ok(())
}

/// The `WWW-Authenticate` values for a missing and an invalid token.
pub(crate) fn challenges(realm: &str) -> Result<(HeaderValue, HeaderValue), ConfigError> {
    check_realm(realm)?;
    let missing = HeaderValue::from_str(&format!("Bearer realm=\"{realm}\""))
        .map_err(|_| ConfigError::invalid("realm", "not a header value"))?;
    let invalid = HeaderValue::from_str(&format!(
        "Bearer realm=\"{realm}\", error=\"invalid_token\", error_description=\"The access token is invalid or has expired\""
    ))
    .map_err(|_| ConfigError::invalid("realm", "not a header value"))?;
    Ok((missing, invalid))
}

/// Tower layer that authenticates requests with a JWT bearer token.
///
/// Reads the token from `Authorization: Bearer` (or a cookie, see [`TokenSource`]), verifies
/// it (see [`validation`](super) for the order of checks), asks the revocation store, and
/// puts [`Verified<C>`], [`Principal`] and [`Scopes`] into the request extensions.
///
/// Refuses with 401 problem+json and `WWW-Authenticate: Bearer realm="…"` when no bearer
/// token is presented (`ProblemType::UNAUTHORIZED`: no `Authorization`, or one of another
/// scheme such as `Basic`; RFC 6750 §3.1 gives such a challenge no `error`), or with
/// `error="invalid_token"` when the token is not valid (`ProblemType::INVALID_TOKEN`); 503 (`ProblemType::UNAVAILABLE`) when the revocation
/// store cannot answer. gRPC calls get `UNAUTHENTICATED` / `UNAVAILABLE`.
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response, StatusCode, header};
/// use jsonwebtoken::{Algorithm, Header, encode};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
/// use tower_shield::jwt::{Claims, JwtAuthLayer, Key, KeySet, Verified};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let keys = KeySet::new().with(Key::generate(Algorithm::ES256)?)?;
/// let signing = keys.signing_key().unwrap();
/// let mut header = Header::new(signing.alg);
/// header.kid = Some(signing.kid.to_owned());
/// header.typ = Some("at+jwt".to_owned());
/// let now = jsonwebtoken::get_current_timestamp();
/// // The claims RFC 9068 asks of an access token: iss, aud, sub, iat, exp, jti.
/// let claims = serde_json::json!({
///     "iss": "https://issuer", "aud": "api", "sub": "user_1",
///     "iat": now, "exp": now + 60, "jti": "tok_1",
/// });
/// let token = encode(&header, &claims, signing.key)?;
///
/// let service = ServiceBuilder::new()
///     .layer(JwtAuthLayer::builder(keys).issuer("https://issuer").build()?)
///     .service(service_fn(|req: Request<String>| async move {
///         let who = req.extensions().get::<Verified<Claims>>().unwrap().sub.clone();
///         Ok::<_, Infallible>(Response::new(who))
///     }));
///
/// let request = Request::get("/").header(header::AUTHORIZATION, format!("Bearer {token}"));
/// let response = service.clone().oneshot(request.body(String::new())?).await?;
/// assert_eq!(response.status(), StatusCode::OK);
///
/// let response = service.oneshot(Request::new(String::new())).await?;
/// assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
/// assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer realm=\"api\"");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[must_use]
pub struct JwtAuthLayer<C = Claims> {
    pub(crate) shared: Arc<Shared<C>>,
}

impl<C> Clone for JwtAuthLayer<C> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl<C> fmt::Debug for JwtAuthLayer<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthLayer")
            .field("shared", &self.shared)
            .finish()
    }
}

impl JwtAuthLayer {
    /// A builder verifying with these keys (a [`KeySet`](super::KeySet) or a shared
    /// [`KeyRing`]), into [`Claims`] (use [`JwtAuthLayerBuilder::claims`] for another type).
    pub fn builder(keys: impl Into<KeyRing>) -> JwtAuthLayerBuilder<Claims> {
        let ring: KeyRing = keys.into();
        let mut builder = Self::builder_with_source(ring);
        builder.require_keys = true;
        builder
    }

    /// A builder verifying with keys from any [`KeySource`].
    pub fn builder_with_source(source: impl KeySource) -> JwtAuthLayerBuilder<Claims> {
        JwtAuthLayerBuilder {
            source: Arc::new(source),
            require_keys: false,
            issuers: Vec::new(),
            audiences: Vec::new(),
            leeway: DEFAULT_LEEWAY,
            max_token_len: DEFAULT_MAX_TOKEN_LEN,
            token_source: TokenSource::Bearer,
            token_type: TokenType::access(),
            rfc9068_claims: true,
            failure_level: tracing::Level::INFO,
            optional: false,
            accept_api_keys: false,
            revocation: None,
            cache: None,
            clock: Arc::new(SystemClock),
            realm: "api".to_owned(),
            _claims: PhantomData,
        }
    }
}

impl<C> JwtAuthLayer<C> {
    /// How many verified tokens the cache holds (0 without a cache).
    pub fn cached_tokens(&self) -> usize {
        self.shared.cache.as_ref().map_or(0, TokenCache::len)
    }
}

impl<C> JwtAuthLayer<C>
where
    C: serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Whether the token these request headers present was already verified and is still
    /// in the cache, within its validity: a map lookup and a comparison, no signature work.
    ///
    /// For an IP limit placed *before* this layer that should not count (or refuse) requests
    /// of signed-in users, e.g. with `Policy::skip_if`. A `true` does not replace the layer's
    /// own checks (revocation, key retirement): the request still goes through it. Always
    /// `false` without a [cache](JwtAuthLayerBuilder::cache). Prefer
    /// [`lookup_cached`](Self::lookup_cached) where the extensions can be written: the layer
    /// then does not look the token up a second time.
    pub fn is_cached(&self, headers: &HeaderMap) -> bool {
        self.shared.cached(headers).is_some()
    }

    /// [`is_cached`](Self::is_cached) that also leaves what it found in `extensions`, for
    /// this layer's service to use instead of looking the token up again.
    ///
    /// The service takes it out of the extensions and uses it only when it was left by this
    /// same layer (not another `JwtAuthLayer`, whatever its keys) and the token the service
    /// reads is byte for byte the one looked up here (a header changed in between is read
    /// and checked afresh). Time, key and revocation are checked by the service as on any
    /// cache hit. Nothing is left on `false`.
    ///
    /// ```
    /// # use tower_shield::jwt::{JwtAuthLayer, Key, KeySet};
    /// # use jsonwebtoken::Algorithm;
    /// let layer = JwtAuthLayer::builder(KeySet::new().with(Key::generate(Algorithm::EdDSA)?)?)
    ///     .cache(10_000)
    ///     .build()?;
    /// let (mut parts, _body) = http::Request::new(()).into_parts();
    /// // No token (or not a cached one): false, and the extensions are untouched.
    /// assert!(!layer.lookup_cached(&parts.headers, &mut parts.extensions));
    /// assert!(parts.extensions.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn lookup_cached(&self, headers: &HeaderMap, extensions: &mut Extensions) -> bool {
        let Some((found, value, token)) = self.shared.cached(headers) else {
            return false;
        };
        // The token's place inside its header value, to compare it with what the service
        // reads (an offset, not a copy: the clone of the value shares its bytes).
        let Some(start) = token
            .as_ptr()
            .addr()
            .checked_sub(value.as_bytes().as_ptr().addr())
        else {
            return false;
        };
        extensions.insert(CachedLookup {
            layer: self.shared.id,
            value: value.clone(),
            start,
            len: token.len(),
            found,
        });
        true
    }
}

/// What [`JwtAuthLayer::lookup_cached`] leaves in the request extensions: the cache entry
/// and its key, the layer that found it, and where the token sits in its header value.
pub(crate) struct CachedLookup<C> {
    layer: u64,
    value: HeaderValue,
    start: usize,
    len: usize,
    found: Found<C>,
}

impl<C> Clone for CachedLookup<C> {
    fn clone(&self) -> Self {
        Self {
            layer: self.layer,
            value: self.value.clone(),
            start: self.start,
            len: self.len,
            found: Found {
                entry: self.found.entry.clone(),
                key: self.found.key,
            },
        }
    }
}

impl<C> CachedLookup<C> {
    /// The entry, when this lookup was made by layer `layer` for exactly `token`.
    fn for_token(self, layer: u64, token: &[u8]) -> Option<Found<C>> {
        let looked_up = self
            .value
            .as_bytes()
            .get(self.start..self.start.checked_add(self.len)?)?;
        (self.layer == layer && looked_up == token).then_some(self.found)
    }
}

/// A cache entry and the key it is stored under.
pub(crate) struct Found<C> {
    entry: Arc<CachedToken<C>>,
    key: TokenKey,
}

impl<S, C> Layer<S> for JwtAuthLayer<C> {
    type Service = JwtAuthService<S, C>;

    fn layer(&self, inner: S) -> Self::Service {
        JwtAuthService::new(inner, self.shared.clone())
    }
}

pub(crate) struct Shared<C> {
    /// A process-unique id: [`CachedLookup`]s are used only by the layer that made them.
    pub(crate) id: u64,
    pub(crate) policy: Policy,
    pub(crate) source: Arc<dyn KeySource>,
    pub(crate) token_source: TokenSource,
    pub(crate) optional: bool,
    #[cfg(feature = "api-key")]
    pub(crate) accept_api_keys: bool,
    pub(crate) revocation: Option<Arc<dyn RevocationStore>>,
    pub(crate) cache: Option<TokenCache<C>>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) missing_challenge: HeaderValue,
    pub(crate) invalid_challenge: HeaderValue,
    pub(crate) telemetry: Arc<JwtTelemetry>,
}

/// What the layer records: `tower_shield_jwt_requests_total` and the `auth.failed` event.
#[derive(Debug)]
pub(crate) struct JwtTelemetry {
    verified: Counter,
    cache_hit: Counter,
    /// One per [`Invalid`] reason, by [`Invalid::index`].
    refused: Vec<Counter>,
    level: tracing::Level,
}

impl JwtTelemetry {
    fn new(level: tracing::Level) -> Self {
        let counter = |outcome, reason| {
            telemetry::counter(
                telemetry::names::JWT_REQUESTS,
                &[("outcome", outcome), ("reason", reason)],
            )
        };
        Self {
            verified: counter("verified", "none"),
            cache_hit: counter("cache_hit", "none"),
            refused: Invalid::ALL
                .iter()
                .map(|reason| counter("refused", reason.label()))
                .collect(),
            level,
        }
    }

    /// A request that goes on with its token.
    #[inline]
    pub(crate) fn accepted(&self, cached: bool) {
        if cached {
            self.cache_hit.increment(1);
        } else {
            self.verified.increment(1);
        }
    }

    /// A refused request: the counter of its reason and (except for a store that cannot
    /// answer, logged by the cache once per burst) the `auth.failed` event, bounded per
    /// client.
    #[cold]
    pub(crate) fn refused<R>(&self, reason: Invalid, request: &http::Request<R>) {
        if let Some(counter) = self.refused.get(reason.index()) {
            counter.increment(1);
        }
        if reason == Invalid::Unavailable {
            return;
        }
        static GATE: telemetry::EventGate = telemetry::EventGate::new();
        let extensions = request.extensions();
        let client = telemetry::client_of(extensions);
        let Some(suppressed) = GATE.admit(client) else {
            return;
        };
        let route = telemetry::loggable(request.uri().path());
        let client = client.map(|ip| ip.to_string()).unwrap_or_default();
        let request_id = telemetry::request_id_of(extensions);
        macro_rules! auth_failed {
            ($level:expr) => {
                tracing::event!(
                    target: "tower_shield::security",
                    $level,
                    event = "auth.failed",
                    reason = reason.label(),
                    route = %route,
                    client_ip = %client,
                    request_id = %request_id,
                    suppressed,
                    "bearer token refused"
                )
            };
        }
        match self.level {
            tracing::Level::ERROR => auth_failed!(tracing::Level::ERROR),
            tracing::Level::WARN => auth_failed!(tracing::Level::WARN),
            tracing::Level::INFO => auth_failed!(tracing::Level::INFO),
            tracing::Level::DEBUG => auth_failed!(tracing::Level::DEBUG),
            _ => auth_failed!(tracing::Level::TRACE),
        }
    }
}

impl<C> fmt::Debug for Shared<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuth")
            .field("keys", &self.source)
            .field("token_source", &self.token_source)
            .field("optional", &self.optional)
            .field("revocation", &self.revocation)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

/// What a cache hit's recheck found.
enum Recheck {
    /// Still valid: accept.
    Valid,
    /// The revocation store said "revoked" earlier: refuse, keep the entry (it stays cheap
    /// to refuse until it expires).
    Revoked,
    /// Refuse, and forget the entry.
    Invalid(Invalid),
    /// The `kid` is still trusted but names other key material than the token was verified
    /// with: forget the entry and verify the token again.
    KeyReplaced,
}

/// The synchronous part of authentication.
pub(crate) enum Outcome<C> {
    Anonymous,
    Refuse(&'static ProblemType, Invalid),
    /// The entry, and whether it came from the cache.
    Accept(Arc<CachedToken<C>>, bool),
}

enum Extracted<'a> {
    Absent,
    /// An `Authorization` header of another scheme (`Basic`, `Digest`, `Bearerabc`): no
    /// bearer token was presented, so the 401 names no `error` (RFC 6750 §3.1).
    OtherScheme,
    /// The token, and the header value it was read from.
    Token(&'a [u8], &'a HeaderValue),
    Malformed,
    /// Longer than the policy's `max_token_len` (nothing more is done with it).
    TooLong,
}

impl<C> Shared<C>
where
    C: serde::de::DeserializeOwned + Clone + Send + Sync + 'static,
{
    /// Authenticates the request with these headers; `looked_up` is what
    /// [`JwtAuthLayer::lookup_cached`] left in its extensions, if anything.
    pub(crate) fn authenticate(
        &self,
        headers: &HeaderMap,
        looked_up: Option<CachedLookup<C>>,
    ) -> Outcome<C> {
        let token = match self.extract(headers) {
            Extracted::Token(token, _) => token,
            Extracted::Absent if self.optional => return Outcome::Anonymous,
            Extracted::Absent | Extracted::OtherScheme => {
                return Outcome::Refuse(&ProblemType::UNAUTHORIZED, Invalid::Missing);
            }
            Extracted::Malformed => return self.invalid(Invalid::Malformed),
            Extracted::TooLong => return self.invalid(Invalid::TooLong),
        };
        let now = self.clock.unix_secs();
        // The key to store a verification under (with a cache).
        let mut key = None;
        if let Some(cache) = &self.cache {
            let found = match looked_up.and_then(|l| l.for_token(self.id, token)) {
                Some(found) => Ok(found),
                None => probe(cache, token),
            };
            key = Some(match found {
                Ok(Found { entry, key }) => match self.recheck(&entry, now) {
                    Recheck::Valid => return Outcome::Accept(entry, true),
                    Recheck::Revoked => return self.invalid(Invalid::Revoked),
                    Recheck::Invalid(reason) => {
                        cache.remove(&key, &entry);
                        return self.invalid(reason);
                    }
                    // The `kid` now names other key material (e.g. the same key loaded
                    // again from a JWKS): verify the token afresh, as on a miss.
                    Recheck::KeyReplaced => {
                        cache.remove(&key, &entry);
                        key
                    }
                },
                Err(key) => key,
            });
        }
        // A space inside the token (`Bearer a b`) is malformed. A cache hit cannot have one
        // (the cache holds tokens that verified, and a token with a space never verifies), so
        // only a miss pays for this scan.
        if token.contains(&b' ') {
            return self.invalid(Invalid::Malformed);
        }
        match validation::verify::<C>(token, &self.policy, self.source.as_ref(), now) {
            Ok(accepted) => {
                let subject = accepted.subject;
                let entry = Arc::new(CachedToken {
                    token: if key.is_some() {
                        token.into()
                    } else {
                        Box::default()
                    },
                    verified: Verified::new(
                        accepted.claims,
                        accepted.key,
                        accepted.jti,
                        accepted.session,
                        subject.clone(),
                        accepted.exp,
                        accepted.iat,
                    ),
                    principal: Principal::new(subject, accepted.role),
                    scopes: Scopes::new(accepted.scopes),
                    key_instance: accepted.key_instance,
                    confirmed_keys: AtomicU64::new(accepted.keys_version),
                    unrevoked_at: AtomicU64::new(0),
                    revoked: AtomicBool::new(false),
                    exp: accepted.exp,
                    nbf: accepted.nbf,
                    iat: accepted.iat,
                });
                if let (Some(cache), Some(key)) = (&self.cache, key) {
                    cache.insert(key, entry.clone(), now.saturating_sub(self.policy.leeway));
                }
                Outcome::Accept(entry, false)
            }
            Err(reason) => self.invalid(reason),
        }
    }

    /// The cache entry of the token `headers` present, when it is within its validity (no
    /// key or revocation check), with the header value it was read from and the token.
    fn cached<'h>(&self, headers: &'h HeaderMap) -> Option<(Found<C>, &'h HeaderValue, &'h [u8])> {
        let cache = self.cache.as_ref()?;
        let Extracted::Token(token, value) = self.extract(headers) else {
            return None;
        };
        let Found { entry, key } = probe(cache, token).ok()?;
        if entry.revoked.load(Ordering::Relaxed) {
            return None;
        }
        check_times(
            entry.exp,
            entry.nbf,
            entry.iat,
            self.policy.leeway,
            self.clock.unix_secs(),
        )
        .ok()?;
        Some((Found { entry, key }, value, token))
    }

    /// A cache hit: not marked revoked, time, and the key still trusted. When the key source
    /// still holds the key set in which the token's key was last found (present, not
    /// retired), neither a snapshot nor the `kid` lookup is needed.
    fn recheck(&self, entry: &CachedToken<C>, now: u64) -> Recheck {
        if entry.revoked.load(Ordering::Relaxed) {
            return Recheck::Revoked;
        }
        if let Err(reason) = check_times(entry.exp, entry.nbf, entry.iat, self.policy.leeway, now) {
            return Recheck::Invalid(reason);
        }
        // 0: the key was never confirmed (or was retired when it verified): look it up.
        let confirmed = match entry.confirmed_keys.load(Ordering::Relaxed) {
            0 => None,
            version => Some(KeySetVersion(version)),
        };
        if confirmed.is_some_and(|v| self.source.unchanged_since(v)) {
            return Recheck::Valid;
        }
        let keys = self.source.snapshot();
        let version = keys.version();
        if confirmed == Some(version) {
            return Recheck::Valid;
        }
        match keys.get(entry.verified.kid()) {
            Some(key) if !key.verifies_at(now) => Recheck::Invalid(Invalid::KeyRetired),
            Some(key) if key.instance_id() == entry.key_instance => {
                if key.retired_until().is_none() {
                    entry.confirmed_keys.store(version.0, Ordering::Relaxed);
                }
                Recheck::Valid
            }
            Some(_) => Recheck::KeyReplaced,
            None => Recheck::Invalid(Invalid::KeyRetired),
        }
    }

    fn invalid(&self, reason: Invalid) -> Outcome<C> {
        Outcome::Refuse(&ProblemType::INVALID_TOKEN, reason)
    }

    fn extract<'h>(&self, headers: &'h HeaderMap) -> Extracted<'h> {
        let extracted = match &self.token_source {
            TokenSource::Bearer => self.bearer(headers),
            TokenSource::Cookie(name) => self.cookie(headers, name),
            TokenSource::BearerOrCookie(name) => match self.bearer(headers) {
                Extracted::Absent => self.cookie(headers, name),
                Extracted::OtherScheme => match self.cookie(headers, name) {
                    Extracted::Absent => Extracted::OtherScheme,
                    other => other,
                },
                other => other,
            },
        };
        match extracted {
            Extracted::Token(token, _) if token.len() > self.policy.max_token_len => {
                Extracted::TooLong
            }
            other => other,
        }
    }

    fn bearer<'h>(&self, headers: &'h HeaderMap) -> Extracted<'h> {
        let mut values = headers.get_all(header::AUTHORIZATION).iter();
        let Some(value) = values.next() else {
            return Extracted::Absent;
        };
        if values.next().is_some() {
            return Extracted::Malformed;
        }
        let bytes = value.as_bytes();
        // The scheme is everything before the first space: another one presents no bearer
        // token at all.
        let scheme_len = scheme_len_of(bytes);
        if !bytes
            .get(..scheme_len)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case(b"bearer"))
        {
            return Extracted::OtherScheme;
        }
        // "Bearer" + at least one space + the token; anything longer is refused unread.
        if bytes.len() > self.policy.max_token_len + 16 {
            return Extracted::Malformed;
        }
        let rest = bytes.get(scheme_len..).unwrap_or_default();
        let token = trim_ascii_spaces(rest);
        if token.is_empty() {
            return Extracted::Malformed;
        }
        // An inner space is refused by `authenticate` (after the cache lookup).
        Extracted::Token(token, value)
    }

    fn cookie<'h>(&self, headers: &'h HeaderMap, name: &str) -> Extracted<'h> {
        let mut found = None;
        let mut total = 0usize;
        for value in headers.get_all(header::COOKIE) {
            total += value.len();
            if total > MAX_COOKIE_HEADER {
                return Extracted::Malformed;
            }
            for pair in value.as_bytes().split(|&b| b == b';') {
                let pair = trim_ascii_spaces(pair);
                let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                    continue;
                };
                let (n, v) = pair.split_at(eq);
                if n != name.as_bytes() {
                    continue;
                }
                if found.is_some() {
                    return Extracted::Malformed;
                }
                let v = v.get(1..).unwrap_or_default();
                let v = match v {
                    [b'"', inner @ .., b'"'] => inner,
                    _ => v,
                };
                found = Some((v, value));
            }
        }
        match found {
            Some(([], _)) => Extracted::Malformed,
            Some((token, value)) => Extracted::Token(token, value),
            None => Extracted::Absent,
        }
    }
}

/// The cache entry of `token`, or on a miss the key it would be stored under.
fn probe<C>(cache: &TokenCache<C>, token: &[u8]) -> Result<Found<C>, TokenKey> {
    let key = TokenKey::of(token);
    cache
        .get(&key, token)
        .map(|entry| Found { entry, key })
        .ok_or(key)
}

/// The index of the first space (the length of an `Authorization` scheme), or the length.
pub(crate) fn scheme_len_of(bytes: &[u8]) -> usize {
    bytes.iter().position(|&b| b == b' ').unwrap_or(bytes.len())
}

fn trim_ascii_spaces(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jwt::{Key, KeySet};
    use jsonwebtoken::{Algorithm, Header, encode};

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn another_scheme_presents_no_token() {
        let keys = KeySet::new()
            .with(Key::generate(Algorithm::ES256).unwrap())
            .unwrap();
        let layer = JwtAuthLayer::builder(keys.clone()).build().unwrap();
        let optional = JwtAuthLayer::builder(keys).optional().build().unwrap();
        let long_basic = format!("Basic {}", "QQ".repeat(20_000));
        for other in [
            "Basic dXNlcjpwYXNz",
            "Digest username=\"a\"",
            "Token abc",
            "Bearerabc",
            "Bearer\tabc",
            "ApiKey api_x",
            long_basic.as_str(),
        ] {
            for layer in [&layer, &optional] {
                assert!(
                    matches!(
                        layer.shared.authenticate(&headers(other), None),
                        Outcome::Refuse(p, _) if p == &ProblemType::UNAUTHORIZED
                    ),
                    "{other}"
                );
            }
        }
        // A bearer without a token, or two: still malformed bearer credentials.
        for bad in ["Bearer", "bearer  ", "BEARER a b"] {
            assert!(
                matches!(
                    layer.shared.authenticate(&headers(bad), None),
                    Outcome::Refuse(p, _) if p == &ProblemType::INVALID_TOKEN
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_space_inside_the_token_is_refused_with_and_without_the_cache() {
        let keys = KeySet::new()
            .with(Key::generate(Algorithm::ES256).unwrap())
            .unwrap();
        let signing = keys.signing_key().unwrap();
        let mut jose = Header::new(signing.alg);
        jose.kid = Some(signing.kid.to_owned());
        jose.typ = Some("at+jwt".to_owned());
        let now = jsonwebtoken::get_current_timestamp();
        let claims = serde_json::json!({
            "iss": "i", "aud": "a", "sub": "user_1", "iat": now, "exp": now + 60, "jti": "j",
        });
        let token = encode(&jose, &claims, signing.key).unwrap();
        let (head, rest) = token.split_at(10);
        for cache in [None, Some(16)] {
            let mut builder = JwtAuthLayer::builder(keys.clone());
            if let Some(capacity) = cache {
                builder = builder.cache(capacity);
            }
            let layer = builder.build().unwrap();
            let shared = &layer.shared;
            let good = headers(&format!("Bearer  {token} "));
            assert!(matches!(
                shared.authenticate(&good, None),
                Outcome::Accept(..)
            ));
            assert_eq!(layer.is_cached(&good), cache.is_some());
            for bad in [
                format!("Bearer {head} {rest}"),
                format!("Bearer {token} {token}"),
                format!("Bearer {token} x"),
            ] {
                assert!(
                    matches!(
                        shared.authenticate(&headers(&bad), None),
                        Outcome::Refuse(p, _) if p == &ProblemType::INVALID_TOKEN
                    ),
                    "{bad}"
                );
                assert!(!layer.is_cached(&headers(&bad)));
            }
        }
    }
}
