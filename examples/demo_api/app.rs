//! The router and the layer stack of the demo, in the order of DESIGN.md:
//!
//! ```text
//! request ─▶ RequestId ─▶ SecurityHeadersLayerBuilder ─▶ Cors ─▶ RateLimit(ip) ─▶ [ApiKey] ─▶ JwtAuth ─▶ RateLimit(user) ─▶ handler
//! ```
//!
//! [`build`] makes the backends `STORE_URL` asks for (memory, or Redis for accounts, items,
//! API key records, rate limits, refresh families and revocations), moves accounts, items and
//! API key records to PostgreSQL with `DATABASE_URL`, then [`app`] wires routes and layers in
//! one place.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde_json::json;
use tower::ServiceBuilder;
use tower_shield::ConfigError;
use tower_shield::RequestId;
use tower_shield::api_key::{
    ApiKeyLayer, ApiKeyStore, ApiKeys, MemoryApiKeyStore, RedisApiKeyStore,
};
use tower_shield::client_ip::{ClientIpLayer, ClientIpResolver};
use tower_shield::cors::CorsLayer;
use tower_shield::jwt::revocation::RedisRevocationStore;
use tower_shield::jwt::{
    JwtAuthLayer, KeyRing, MemoryRevocationStore, RequireRoleLayer, RevocationStore,
};
use tower_shield::rate_limit::{
    FallbackStore, KeyBy, MemoryStore, Policy, Quota, RateLimitLayer, RateLimitStore, RedisStore,
    Route,
};
use tower_shield::redis::{KeyPrefix, RedisConnection, RedisOptions};
use tower_shield::refusal::{ProblemType, Refusal};
use tower_shield::request_id::RequestIdLayer;
use tower_shield::security_headers::SecurityHeadersLayerBuilder;
use tower_shield::tokens::store::{MemoryRefreshStore, RedisRefreshStore, RefreshStore};
use tower_shield::tokens::{RefreshCookie, RefreshTokens, TokenIssuer};

use crate::auth::{self, FailureCounter, REALM, StoreCounter};
use crate::config::{Config, StoreUrl};
use crate::header_limit::HeaderLimitLayer;
use crate::store::Store;
use crate::{api, api_keys, keys, pg};

/// How long one Redis call for accounts, items, refresh families or revocations may take
/// before the request gives up on it (503).
const REDIS_CALL_TIMEOUT: Duration = Duration::from_millis(125);

/// The same for a rate-limit decision, which then falls back to memory. A request can meet at
/// most one of each before it fails or the limiter is in fallback, so no request waits on
/// Redis more than 250 ms.
const REDIS_LIMIT_TIMEOUT: Duration = Duration::from_millis(125);

/// How many verified tokens the JWT layer remembers.
const TOKEN_CACHE: usize = 100_000;

/// 405 with an `about:blank` problem type (a bare status, RFC 9457 §4.2.1).
static METHOD_NOT_ALLOWED: ProblemType = ProblemType {
    status: StatusCode::METHOD_NOT_ALLOWED,
    slug: None,
    title: "Method Not Allowed",
    detail: "The method is not allowed for this resource.",
};

/// What the handlers share: one `Arc`, so axum's per-request state clone is one increment.
pub(crate) type AppState = Arc<Shared>;

/// The handlers' shared state.
pub(crate) struct Shared {
    /// Accounts and items.
    pub(crate) store: Store,
    /// API keys: made, rotated and revoked by the `/api/keys*` handlers, checked by the
    /// `ApiKeyLayer`s on the same store.
    pub(crate) api_keys: api_keys::Keys,
    /// Issuing, rotating and revoking tokens.
    pub(crate) tokens: RefreshTokens<Arc<dyn RefreshStore>>,
    /// The signing and verification keys (for the JWKS).
    pub(crate) keys: KeyRing,
    /// The refresh-token cookie.
    pub(crate) cookie: RefreshCookie,
    /// The bearer verifier of `/api/*` (logout uses it to find the `jti` to deny).
    pub(crate) jwt: JwtAuthLayer,
    /// The `login_failures` counter.
    pub(crate) login_failures: Arc<dyn FailureCounter>,
    /// An Argon2id hash of a random password, verified when the email is unknown.
    pub(crate) dummy_hash: Arc<str>,
}

/// Everything `STORE_URL` decides.
struct Backends {
    store: Store,
    api_keys: Arc<dyn ApiKeyStore>,
    refresh: Arc<dyn RefreshStore>,
    revocation: Arc<dyn RevocationStore>,
}

fn env_error(var: &str, reason: impl Into<std::borrow::Cow<'static, str>>) -> ConfigError {
    ConfigError::Env {
        var: var.to_owned(),
        reason: reason.into(),
    }
}

/// Connects the stores, seeds the admin, and builds the application; also returns the
/// warnings to print once it is sure to start (so a bad configuration prints one line only).
pub(crate) async fn build(config: &Config) -> Result<(Router, Vec<String>), ConfigError> {
    let (keys, key_warning) = keys::load(config)?;
    let mut warnings = config.warnings.clone();
    warnings.extend(key_warning);
    let scale = config.rate_limit_scale;
    match &config.store {
        StoreUrl::Memory => {
            let backends = Backends {
                store: Store::memory(),
                api_keys: Arc::new(MemoryApiKeyStore::new()),
                refresh: Arc::new(MemoryRefreshStore::new()),
                revocation: Arc::new(MemoryRevocationStore::new()),
            };
            let backends = with_database(config, backends).await?;
            let app = finish(config, keys, backends, MemoryStore::new(), scale).await?;
            Ok((app, warnings))
        }
        StoreUrl::Redis(url) => {
            let options = RedisOptions::builder()
                .connect_timeout(Duration::from_secs(2))
                .call_timeout(REDIS_CALL_TIMEOUT)
                .build()?;
            let conn = RedisConnection::connect_with(url, options)
                .await
                .map_err(|_| env_error("STORE_URL", "cannot connect to Redis"))?;
            conn.ping()
                .await
                .map_err(|_| env_error("STORE_URL", "Redis does not answer PING"))?;
            let prefix = |rest: &str| {
                KeyPrefix::new(format!("{}{rest}", config.store_prefix)).map_err(|_| {
                    env_error(
                        "STORE_PREFIX",
                        "only printable ASCII without spaces, `{` or `}`, at most 120 bytes",
                    )
                })
            };
            let backends = Backends {
                store: Store::redis(conn.clone(), prefix("data:")?),
                api_keys: Arc::new(RedisApiKeyStore::new(conn.clone(), prefix("keys:")?)),
                refresh: Arc::new(RedisRefreshStore::new(conn.clone(), prefix("rt:")?)),
                revocation: Arc::new(RedisRevocationStore::new(conn.clone(), prefix("rv:")?)),
            };
            let limits = RedisStore::builder(conn.with_call_timeout(REDIS_LIMIT_TIMEOUT))
                .prefix(format!("{}rl:", config.store_prefix))
                .build()
                .map_err(|error| env_error("STORE_PREFIX", error.to_string()))?;
            // Rate limits keep working on per-process counters while Redis is away.
            let limits = FallbackStore::new(limits, MemoryStore::new());
            let backends = with_database(config, backends).await?;
            let app = finish(config, keys, backends, limits, scale).await?;
            Ok((app, warnings))
        }
    }
}

/// With `DATABASE_URL`: accounts, items and API key records in PostgreSQL instead (the
/// schema applied first); rate limits, refresh families and revocations stay where
/// `STORE_URL` put them.
async fn with_database(config: &Config, backends: Backends) -> Result<Backends, ConfigError> {
    let Some(url) = &config.database else {
        return Ok(backends);
    };
    let pool = pg::connect(&url.0)
        .await
        .map_err(|reason| env_error("DATABASE_URL", reason))?;
    Ok(Backends {
        store: Store::Postgres(pool.clone()),
        api_keys: Arc::new(pg::PgApiKeyStore::new(pool)),
        ..backends
    })
}

async fn finish<St: RateLimitStore>(
    config: &Config,
    keys: KeyRing,
    backends: Backends,
    limits: St,
    scale: u32,
) -> Result<Router, ConfigError> {
    let issuer = TokenIssuer::builder(keys.clone())
        .issuer(&config.jwt_issuer)
        .audience(&config.jwt_audience)
        .access_ttl(config.access_token_ttl)
        // The issuer wants its leeway under the access lifetime; with very short lifetimes
        // (tests) logout keeps denied `jti`s for the verifier's full 30 s anyway.
        .leeway(
            tower_shield::jwt::DEFAULT_LEEWAY.min(
                config
                    .access_token_ttl
                    .saturating_sub(Duration::from_secs(1)),
            ),
        )
        .build()
        .map_err(|error| env_error("ACCESS_TOKEN_TTL_SECS", error.to_string()))?;
    let tokens = RefreshTokens::builder(issuer, backends.refresh)
        .shared_revocation(backends.revocation.clone())
        .refresh_ttl(config.refresh_token_ttl)
        .family_lifetime(
            config
                .refresh_token_ttl
                .max(Duration::from_secs(30 * 24 * 3600)),
        )
        .reuse_grace(config.refresh_reuse_grace)
        .build()
        .map_err(|error| env_error("REFRESH_TOKEN_TTL_SECS", error.to_string()))?;
    let jwt = JwtAuthLayer::builder(keys.clone())
        .issuer(&config.jwt_issuer)
        .audience(&config.jwt_audience)
        .revocation(backends.revocation)
        .cache(TOKEN_CACHE)
        .realm(REALM)
        // A request an `ApiKeyLayer` in front already authenticated (`/api/me`,
        // `/api/items*`) passes without a token. Only routes with a key layer in front can
        // carry a `Principal` here: the others stay bearer only.
        .accept_api_keys()
        .build()?;
    let mut cookie = RefreshCookie::new();
    if !config.cookie_secure {
        cookie = cookie.dangerous_insecure_http();
    }

    let dummy_hash = auth::hash_password(uuid::Uuid::new_v4().to_string())
        .await
        .ok_or_else(|| ConfigError::invalid("argon2", "cannot hash"))?;
    if let Some(admin) = &config.admin {
        auth::seed_admin(
            &backends.store,
            &tokens,
            backends.api_keys.as_ref(),
            &admin.email,
            &admin.password,
        )
        .await
        .map_err(|reason| env_error("DEMO_ADMIN_EMAIL", reason))?;
    }

    let state = Arc::new(Shared {
        store: backends.store,
        api_keys: ApiKeys::new(backends.api_keys),
        tokens,
        keys,
        cookie,
        jwt,
        login_failures: Arc::new(StoreCounter::new(limits.clone())),
        dummy_hash: Arc::from(dummy_hash),
    });
    app(config, state, limits, scale)
}

/// A quota of `n` per minute (times the load-test scale, 1 unless `DEMO_RATE_LIMIT_SCALE`,
/// capped at one per microsecond).
fn per_minute(n: u32, scale: u32) -> Quota {
    // At most one request per microsecond: the finest rate a quota can enforce.
    Quota::per_minute(n.saturating_mul(scale).min(60_000_000))
}

/// The routes and the whole layer stack, outermost first.
pub(crate) fn app<St: RateLimitStore>(
    config: &Config,
    state: AppState,
    limits: St,
    scale: u32,
) -> Result<Router, ConfigError> {
    // Who the client is (examples/demo_api/README.md, "Who the client is"): resolved once,
    // before CORS, so CORS's refusal events name the client behind a trusted proxy rather
    // than the proxy; the IP limit below keys on the same `ClientIp`.
    let resolver = ClientIpResolver::new(config.trusted_proxies.clone())
        .header(config.trusted_proxy_header.clone());
    // 4. RateLimit by client IP, before any signature check (examples/demo_api/README.md, "Limits").
    let jwt_for_skip = state.jwt.clone();
    let ip_limit = RateLimitLayer::builder(limits.clone())
        .client_ip(resolver.clone())
        .rule(
            Route::prefix("/auth/"),
            Policy::named("auth").quota(per_minute(10, scale)),
        )
        .rule(
            Route::prefix("/api/"),
            // Only 401s count; once spent, refused before JwtAuth runs, except requests
            // whose token is already verified (in the JWT cache): a signed-in user behind
            // the same address as an attacker keeps working.
            Policy::named("anonymous")
                .quota(per_minute(10, scale))
                .count_only([StatusCode::UNAUTHORIZED])
                // The lookup leaves the cache entry it found for JwtAuth, so the token is
                // looked up once per request, not once here and once there.
                .skip_if_mut(move |parts| {
                    jwt_for_skip.lookup_cached(&parts.headers, &mut parts.extensions)
                }),
        )
        .policy(Policy::named("default").quota(per_minute(60, scale)))
        .build()?;

    // 5. JwtAuth (bearer tokens) and 6. RateLimit by user, on /api/* only.
    let user_limit = RateLimitLayer::builder(limits)
        .policy(
            Policy::named("api")
                .quota(per_minute(100, scale))
                .tier("guest", per_minute(10, scale))
                .tier("user", per_minute(100, scale))
                .tier("premium", per_minute(1_000, scale))
                .tier("admin", per_minute(10_000, scale))
                .key(KeyBy::subject_only()),
        )
        // No handler reads its `RateLimitStatus`, and the IP limit above already left the
        // `ClientIp`: nothing to insert.
        .request_extensions(false)
        .build()?;
    let admin_only = RequireRoleLayer::any_of(["admin"]).with_realm(REALM)?;

    // API keys (examples/demo_api/README.md, "API keys"): checked against the client's own
    // address (the same resolver as the IP limit). Optional in front of the JWT layer where a
    // key or a bearer token will do; required where only a key will.
    let key_store: Arc<dyn ApiKeyStore> = state.api_keys.store().clone();
    let key_or_bearer = ApiKeyLayer::builder(key_store.clone())
        .optional()
        .client_ip(resolver.clone())
        .realm(REALM)
        .build()?;
    let key_only = ApiKeyLayer::builder(key_store)
        .client_ip(resolver.clone())
        .realm(REALM)
        .build()?;

    let admin = Router::new()
        .route("/api/admin/stats", get(api::stats))
        .route("/api/admin/users/{id}/role", put(api::set_role))
        .route_layer(admin_only);
    // Bearer only: key management and the admin routes. No key layer in front, so the JWT
    // layer finds no `Principal` to accept and wants a token.
    let bearer_only = Router::new()
        .route("/api/keys", post(api_keys::create).get(api_keys::list))
        .route("/api/keys/{id}/rotate", post(api_keys::rotate))
        .route("/api/keys/{id}", delete(api_keys::revoke))
        .merge(admin)
        .route_layer(
            ServiceBuilder::new()
                .layer(state.jwt.clone())
                .layer(user_limit.clone()),
        );
    // A key or a bearer token, acting as the same account.
    let key_or_token = Router::new()
        .route("/api/me", get(api::me))
        .route("/api/items", post(api::create_item).get(api::list_items))
        .route("/api/items/{id}", get(api::get_item))
        .route_layer(
            ServiceBuilder::new()
                .layer(key_or_bearer)
                .layer(state.jwt.clone())
                .layer(user_limit.clone()),
        );
    // A key only: a bearer token is a missing key (401, `ApiKey` challenge).
    let service = Router::new()
        .route("/api/service/ping", get(api_keys::ping))
        .route_layer(ServiceBuilder::new().layer(key_only).layer(user_limit));
    let api = bearer_only.merge(key_or_token).merge(service);
    let routes = Router::new()
        .route("/health", get(health))
        .route("/.well-known/jwks.json", get(auth::jwks))
        .route("/auth/register", post(auth::register))
        .route("/auth/login", post(auth::login))
        .route("/auth/refresh", post(auth::refresh))
        .route("/auth/logout", post(auth::logout))
        .merge(api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state);

    // Outermost first. Each layer sees what the ones above it did: the id is in every log
    // line and refusal; security and CORS headers are on every answer, refusals included,
    // so a browser can read why it was refused.
    let layers = ServiceBuilder::new()
        // 1. Request id: first, so every log line and every refusal carries it.
        .layer(RequestIdLayer::new())
        // One log line per request, with the final status of everything below; not in the
        // stack at all when DEMO_ACCESS_LOG=false.
        .option_layer(config.access_log.then(|| middleware::from_fn(access_log)))
        // axum's response type below, so both arms of the option above answer the same type
        // (the router would convert each route's answer anyway).
        .map_response(IntoResponse::into_response)
        // 2. Security headers (HSTS only over HTTPS, as told by TRUSTED_PROXIES).
        .layer(
            SecurityHeadersLayerBuilder::api()
                .trusted_proxies(config.trusted_proxies.clone())
                .build()?,
        )
        // Request headers over 16 KiB: 431, before any layer parses a header a client
        // controls at length (the client-address layer reads the forwarding header, CORS
        // Origin and Access-Control-Request-Headers, JwtAuth the token). The two layers above
        // read no such header (the request id is made here, X-Forwarded-Proto only counts from
        // a trusted proxy), so the 431 still carries the request id and security headers.
        .layer(HeaderLimitLayer)
        // The client address (TRUSTED_PROXIES, TRUSTED_PROXY_HEADER) into the extensions,
        // for CORS's events and the IP limit.
        .layer(ClientIpLayer::new(resolver))
        // 3. CORS (CORS_ALLOWED_ORIGINS), outside the refusing layers below.
        .layer(cors(config)?)
        // 4. RateLimit by client IP (policies `auth`, `anonymous`, `default`).
        .layer(ip_limit);
    // 5. JwtAuth and 6. RateLimit by user (`api`) wrap the /api routes above.

    Ok(routes.layer(layers))
}

/// The CORS layer of the contract (examples/demo_api/README.md, "CORS").
fn cors(config: &Config) -> Result<CorsLayer, ConfigError> {
    CorsLayer::builder()
        .allow_origins(&config.cors_allowed_origins)
        .allow_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
        .allow_headers(["authorization", "content-type", "x-request-id"])
        .expose_headers([
            "x-request-id",
            "ratelimit",
            "ratelimit-policy",
            "retry-after",
        ])
        .allow_credentials(true)
        .max_age(Duration::from_secs(600))
        .build()
        .map_err(|error| env_error("CORS_ALLOWED_ORIGINS", error.to_string()))
}

/// `GET /health`.
async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Any unknown route: 404 problem.
async fn not_found(request: Request) -> Response {
    Refusal::new(&ProblemType::NOT_FOUND).for_request(&request)
}

/// A known route with another method: 405 problem.
async fn method_not_allowed(request: Request) -> Response {
    Refusal::new(&METHOD_NOT_ALLOWED).for_request(&request)
}

/// Logs one line per request on stderr: method, path (without the query, which may hold
/// secrets), status, latency and request id. Never a header, token or cookie.
async fn access_log(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let mut path = request.uri().path().to_owned();
    if path.len() > 256 {
        let mut end = 256;
        while !path.is_char_boundary(end) {
            end -= 1;
        }
        path.truncate(end);
        path.push('…');
    }
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .cloned()
        .map(|id| id.to_string())
        .unwrap_or_default();
    let response = next.run(request).await.into_response();
    tracing::info!(
        target: "demo_api::access",
        %method,
        path = %path,
        status = response.status().as_u16(),
        latency_ms = %format_args!("{:.3}", started.elapsed().as_secs_f64() * 1000.0),
        request_id = %request_id,
        "request"
    );
    response
}
