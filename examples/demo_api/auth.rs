//! `/auth/*`: register, log in, refresh, log out; and the JWKS.
//!
//! Passwords are hashed with Argon2id (the `argon2` crate, its default parameters) on the
//! blocking pool. A failed sign-in is one fixed 401 whether the email is unknown or the
//! password wrong, and the unknown-email path verifies against a dummy hash so both take the
//! same time. Failed sign-ins are limited per client IP + email (policy `login_failures`,
//! 5 per 900 s): the email is in the body, so the handler asks the rate-limit store itself.
//! Each attempt reserves one failure *before* verifying (429 once the budget is spent, so
//! simultaneous guesses cannot all pass a check before any is charged) and gives it back
//! unless the answer is the 401 of a failed sign-in.
//!
//! A failed sign-in and a `login_failures` 429 are security events like the library's
//! (target `tower_shield::security`, a stable `event` field): `auth.failed` with reason
//! `bad_credentials` at info, `ratelimit.exceeded` with policy `login_failures` at warn. They
//! carry the route, client address, request id and a per-process `key_id` of the
//! `login_failures` key; never the email, the password or a token.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tower::{Layer, ServiceExt, service_fn};
use tower_shield::StoreError;
use tower_shield::client_ip::ClientIp;
use tower_shield::jwt::{Claims, Verified};
use tower_shield::rate_limit::headers::retry_after_secs;
use tower_shield::rate_limit::{Decision, Quota, RateKey, RateLimitStore};
use tower_shield::refusal::{ProblemType, Refusal};
use tower_shield::tokens::store::RefreshStore;
use tower_shield::tokens::{RefreshError, RefreshTokens, TokenPair};

use crate::app::AppState;
use crate::observability::EventBudget;
use crate::problem::{EMAIL_TAKEN, INVALID_CREDENTIALS, JsonBody, field, invalid};

/// `login_failures`: 5 failed sign-ins per 900 s per client IP + email.
pub(crate) const LOGIN_FAILURES: Quota = Quota::new(5, Duration::from_secs(900));
/// The policy's name in the response fields.
pub(crate) const LOGIN_FAILURES_NAME: &str = "login_failures";

/// The realm of every `WWW-Authenticate` challenge.
pub(crate) const REALM: &str = "tower-shield-demo";
static CHALLENGE: HeaderValue = HeaderValue::from_static("Bearer realm=\"tower-shield-demo\"");
static CHALLENGE_INVALID: HeaderValue =
    HeaderValue::from_static("Bearer realm=\"tower-shield-demo\", error=\"invalid_token\"");
static NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");

/// The failed-sign-in counter: a rate-limit store and the limiter of `login_failures`,
/// behind a trait object so the handlers do not depend on which store runs.
pub(crate) trait FailureCounter: Send + Sync + 'static {
    /// Reserves one failure for the key.
    fn reserve(&self, key: &RateKey) -> Pin<Box<dyn Future<Output = StoreResult> + Send>>;

    /// Gives a reserved failure back (the attempt did not fail); `charged` is what
    /// [`reserve`](Self::reserve) answered.
    fn refund(
        &self,
        key: &RateKey,
        charged: &Decision,
    ) -> Pin<Box<dyn Future<Output = StoreResult> + Send>>;
}

type StoreResult = Result<Decision, StoreError>;

/// [`FailureCounter`] on any rate-limit store.
pub(crate) struct StoreCounter<St: RateLimitStore> {
    store: St,
    limiter: St::Limiter,
}

impl<St: RateLimitStore> StoreCounter<St> {
    pub(crate) fn new(store: St) -> Self {
        let limiter = store.limiter(LOGIN_FAILURES_NAME, &LOGIN_FAILURES);
        Self { store, limiter }
    }
}

impl<St: RateLimitStore> FailureCounter for StoreCounter<St> {
    fn reserve(&self, key: &RateKey) -> Pin<Box<dyn Future<Output = StoreResult> + Send>> {
        Box::pin(self.store.check(&self.limiter, key, 1))
    }

    fn refund(
        &self,
        key: &RateKey,
        charged: &Decision,
    ) -> Pin<Box<dyn Future<Output = StoreResult> + Send>> {
        Box::pin(self.store.refund(&self.limiter, key, 1, charged))
    }
}

/// The Argon2id hasher (default parameters: 19 MiB, 2 passes, 1 lane).
fn argon2() -> Argon2<'static> {
    Argon2::default()
}

/// Hashes a password on the blocking pool.
pub(crate) async fn hash_password(password: String) -> Option<String> {
    tokio::task::spawn_blocking(move || {
        argon2()
            .hash_password(password.as_bytes())
            .ok()
            .map(|hash| hash.to_string())
    })
    .await
    .ok()
    .flatten()
}

/// Seeds the admin account of `DEMO_ADMIN_EMAIL` / `DEMO_ADMIN_PASSWORD`.
///
/// A new account is created as admin. An existing one that is not yet admin, or whose
/// password is not the seeded one, first loses every session (its refresh families revoked,
/// its access tokens refused from this second): someone who registered the address before it
/// was made the admin's, or who holds a session from before the password was changed, must
/// not keep (or refresh into) admin rights. An admin account with the seeded password is left
/// as it is, so restarting (or starting a second process) logs nobody out. Ending the
/// sessions also revokes the account's API keys.
pub(crate) async fn seed_admin(
    store: &crate::store::Store,
    tokens: &RefreshTokens<Arc<dyn RefreshStore>>,
    keys: &dyn tower_shield::api_key::ApiKeyStore,
    email: &str,
    password: &str,
) -> Result<(), &'static str> {
    const ADMIN: &str = "admin";
    let hash = || async {
        hash_password(password.to_owned())
            .await
            .ok_or("cannot hash the admin password")
    };
    let existing = match store.user_by_email(email).await {
        Ok(Some(user)) => user,
        Ok(None) => {
            let created = store
                .create_user(email, &hash().await?, ADMIN)
                .await
                .map_err(|_| "cannot create the admin account")?;
            match created {
                Some(_) => return Ok(()),
                // Another process created the account meanwhile: check it as existing.
                None => store
                    .user_by_email(email)
                    .await
                    .ok()
                    .flatten()
                    .ok_or("the admin account vanished")?,
            }
        }
        Err(_) => return Err("cannot read the admin account"),
    };
    let same_password = verify_password(
        password.to_owned(),
        Arc::from(existing.password_hash.as_str()),
    )
    .await;
    if existing.role == ADMIN && same_password {
        return Ok(());
    }
    // The new credentials first, then the sessions: a sign-in that checked the old password
    // before the save and issues its tokens after the revocation finds the account changed
    // and revokes what it issued (see `sign_in`).
    let mut user = existing;
    if !same_password {
        user.password_hash = hash().await?;
    }
    user.role = ADMIN.to_owned();
    store
        .save_user(&user)
        .await
        .map_err(|_| "cannot seed the admin account")?;
    tokens
        .logout_everywhere(&user.id.to_string())
        .await
        .map_err(|_| "cannot revoke the sessions of the account to seed")?;
    // Its API keys end with its sessions.
    crate::api_keys::revoke_all(keys, &user.id.to_string())
        .await
        .map_err(|_| "cannot revoke the API keys of the account to seed")?;
    Ok(())
}

/// Verifies a password against a PHC string on the blocking pool.
async fn verify_password(password: String, phc: Arc<str>) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&phc)
            .is_ok_and(|hash| argon2().verify_password(password.as_bytes(), &hash).is_ok())
    })
    .await
    .unwrap_or(false)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Credentials {
    email: String,
    password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").finish_non_exhaustive()
    }
}

/// Trimmed and lower-cased.
fn normalise_email(email: &str) -> String {
    email.trim().to_ascii_lowercase()
}

/// ASCII `local@domain.tld`, at most 254 characters.
pub(crate) fn valid_email(email: &str) -> bool {
    if email.is_empty() || email.len() > 254 || !email.is_ascii() {
        return false;
    }
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~.-".contains(&b));
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.len() >= 2 && tld.bytes().all(|b| b.is_ascii_alphabetic()));
    local_ok && domain_ok
}

/// 12 to 128 characters.
pub(crate) fn valid_password(password: &str) -> bool {
    (12..=128).contains(&password.chars().count())
}

fn unavailable(headers: &HeaderMap, extensions: &http::Extensions) -> Response {
    Refusal::new(&ProblemType::UNAVAILABLE)
        .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
        .build(headers, extensions)
}

/// `POST /auth/register`.
pub(crate) async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: http::Extensions,
    JsonBody(body): JsonBody<Credentials>,
) -> Response {
    let email = normalise_email(&body.email);
    let mut errors = Vec::new();
    if !valid_email(&email) {
        errors.push(field(
            "email",
            "must be an ASCII address local@domain.tld of at most 254 characters",
        ));
    }
    if !valid_password(&body.password) {
        errors.push(field("password", "must be 12 to 128 characters long"));
    }
    if !errors.is_empty() {
        return invalid(errors, &headers, &extensions);
    }
    let Some(hash) = hash_password(body.password).await else {
        return unavailable(&headers, &extensions);
    };
    match state.store.create_user(&email, &hash, "user").await {
        Ok(Some(user)) => (
            StatusCode::CREATED,
            Json(json!({ "id": user.id, "email": user.email })),
        )
            .into_response(),
        Ok(None) => Refusal::new(&EMAIL_TAKEN).build(&headers, &extensions),
        Err(_) => unavailable(&headers, &extensions),
    }
}

/// The `login_failures` key: the client's address group and a digest of the email (so the
/// key is bounded and no address is stored in clear).
fn failure_key(ip: &ClientIp, email: &str) -> Option<RateKey> {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, email.as_bytes());
    let mut material = ip.group().to_string().into_bytes();
    material.push(0);
    material.extend_from_slice(digest.as_ref());
    RateKey::bytes(&material)
}

/// Adds the `login_failures` fields to a response.
fn with_failure_fields(mut response: Response, decision: &Decision) -> Response {
    let window = LOGIN_FAILURES.window_secs();
    let reset = tower_shield::rate_limit::headers::ceil_secs(decision.reset);
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&format!(
        "\"{LOGIN_FAILURES_NAME}\";q={};w={window}",
        LOGIN_FAILURES.limit()
    )) {
        headers.append(RATELIMIT_POLICY.clone(), value);
    }
    if let Ok(value) = HeaderValue::from_str(&format!(
        "\"{LOGIN_FAILURES_NAME}\";r={};t={reset}",
        decision.remaining
    )) {
        headers.append(RATELIMIT.clone(), value);
    }
    response
}

fn token_response(state: &AppState, pair: &TokenPair) -> Response {
    let mut response = Json(pair).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, NO_STORE.clone());
    headers.append(
        header::SET_COOKIE,
        state
            .cookie
            .set_cookie(pair.refresh_token.as_str(), pair.refresh_expires_in),
    );
    response
}

/// `POST /auth/login`.
pub(crate) async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: http::Extensions,
    JsonBody(body): JsonBody<Credentials>,
) -> Response {
    let Some(ip) = extensions.get::<ClientIp>().copied() else {
        return Refusal::new(&ProblemType::FORBIDDEN).build(&headers, &extensions);
    };
    let email = normalise_email(&body.email);
    let Some(key) = failure_key(&ip, &email) else {
        return Refusal::new(&ProblemType::BAD_REQUEST).build(&headers, &extensions);
    };
    // One failure reserved before any hash work; a spent budget is refused here.
    let reserved = match state.login_failures.reserve(&key).await {
        Ok(decision) if !decision.allowed => {
            login_limited_event(&ip, &key, &extensions, &decision);
            let refusal = Refusal::new(&ProblemType::RATE_LIMITED).with_header(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_secs(decision.retry_after)),
            );
            return with_failure_fields(refusal.build(&headers, &extensions), &decision);
        }
        Ok(decision) => decision,
        Err(_) => return unavailable(&headers, &extensions),
    };
    let response = match sign_in(&state, &email, body.password).await {
        SignIn::Failed => {
            auth_failed_event(&ip, &key, &extensions);
            // The reservation is the charge.
            let refusal = Refusal::new(&INVALID_CREDENTIALS)
                .with_header(header::WWW_AUTHENTICATE, CHALLENGE.clone());
            return with_failure_fields(refusal.build(&headers, &extensions), &reserved);
        }
        SignIn::Ok(pair) => token_response(&state, &pair),
        SignIn::Unavailable => unavailable(&headers, &extensions),
    };
    // Not a failed sign-in: the reservation is given back, and the answer reports the
    // budget left after it.
    let left = state
        .login_failures
        .refund(&key, &reserved)
        .await
        .unwrap_or(reserved);
    with_failure_fields(response, &left)
}

/// The route of both sign-in events.
const LOGIN_ROUTE: &str = "/auth/login";

fn request_id(extensions: &http::Extensions) -> &str {
    extensions
        .get::<tower_shield::RequestId>()
        .map(tower_shield::RequestId::as_str)
        .unwrap_or_default()
}

/// The `auth.failed` event of a failed sign-in (bounded: see [`EventBudget`]).
#[cold]
fn auth_failed_event(ip: &ClientIp, key: &RateKey, extensions: &http::Extensions) {
    static BUDGET: EventBudget = EventBudget::new();
    let Some(suppressed) = BUDGET.admit() else {
        return;
    };
    tracing::info!(
        target: "tower_shield::security",
        event = "auth.failed",
        reason = "bad_credentials",
        route = LOGIN_ROUTE,
        client_ip = %ip.ip(),
        request_id = %request_id(extensions),
        key_id = %format_args!("{:016x}", key.log_id()),
        suppressed,
        "sign-in refused"
    );
}

/// The `ratelimit.exceeded` event of a `login_failures` 429 (bounded: see [`EventBudget`]).
#[cold]
fn login_limited_event(
    ip: &ClientIp,
    key: &RateKey,
    extensions: &http::Extensions,
    decision: &Decision,
) {
    static BUDGET: EventBudget = EventBudget::new();
    let Some(suppressed) = BUDGET.admit() else {
        return;
    };
    tracing::warn!(
        target: "tower_shield::security",
        event = "ratelimit.exceeded",
        policy = LOGIN_FAILURES_NAME,
        route = LOGIN_ROUTE,
        client_ip = %ip.ip(),
        request_id = %request_id(extensions),
        key_id = %format_args!("{:016x}", key.log_id()),
        retry_after = retry_after_secs(decision.retry_after),
        suppressed,
        "rate limit exceeded"
    );
}

enum SignIn {
    Ok(TokenPair),
    Failed,
    Unavailable,
}

/// Checks the password (against the dummy hash for an unknown email, so the answer takes as
/// long) and issues the tokens.
async fn sign_in(state: &AppState, email: &str, password: String) -> SignIn {
    let Ok(user) = state.store.user_by_email(email).await else {
        return SignIn::Unavailable;
    };
    let (phc, user) = match user {
        Some(user) => (Arc::<str>::from(user.password_hash.as_str()), Some(user)),
        None => (state.dummy_hash.clone(), None),
    };
    let password_ok = verify_password(password, phc).await;
    let Some(user) = user.filter(|_| password_ok) else {
        return SignIn::Failed;
    };
    let Ok(pair) = state
        .tokens
        .issue_pair(&user.id.to_string(), &user.role, &())
        .await
    else {
        return SignIn::Unavailable;
    };
    // The account as it is now: its password or role changed while this sign-in ran (the
    // admin seeding of another process), so the session just issued may predate a "log out
    // everywhere" it should have been part of. It is revoked, and the sign-in fails.
    match state.store.user(user.id).await {
        Ok(Some(now)) if now.password_hash == user.password_hash && now.role == user.role => {
            SignIn::Ok(pair)
        }
        Ok(_) => match state.tokens.logout(pair.refresh_token.as_str()).await {
            Ok(_) => SignIn::Failed,
            Err(_) => SignIn::Unavailable,
        },
        Err(_) => {
            let _ = state.tokens.logout(pair.refresh_token.as_str()).await;
            SignIn::Unavailable
        }
    }
}

fn refresh_refusal(error: &RefreshError, request: &Request) -> Response {
    let refusal = error.refusal();
    let refusal = if refusal.problem().status == StatusCode::UNAUTHORIZED {
        refusal.with_header(header::WWW_AUTHENTICATE, CHALLENGE_INVALID.clone())
    } else {
        refusal
    };
    refusal.for_request(request)
}

/// `POST /auth/refresh`: rotates the refresh cookie; the access token carries the user's
/// role *now*, so a role change takes effect here.
pub(crate) async fn refresh(State(state): State<AppState>, request: Request) -> Response {
    let Some(token) = state.cookie.read(request.headers()) else {
        return Refusal::new(&tower_shield::tokens::refresh::INVALID_REFRESH_TOKEN)
            .with_header(header::WWW_AUTHENTICATE, CHALLENGE.clone())
            .for_request(&request);
    };
    let store = state.store.clone();
    let rotated = state
        .tokens
        .rotate_with(token.as_str(), |subject| async move {
            let Ok(id) = subject.parse() else {
                return Ok(None);
            };
            Ok(store.user(id).await?.map(|user| user.role))
        })
        .await;
    match rotated {
        Ok(pair) => token_response(&state, &pair),
        Err(error) => refresh_refusal(&error, &request),
    }
}

/// `POST /auth/logout`: 204 always (503 only when the revocation state cannot be written):
/// the cookie is cleared, its family revoked, and a valid bearer token's `jti` denied until
/// it expires.
pub(crate) async fn logout(State(state): State<AppState>, request: Request) -> Response {
    if let Some(token) = state.cookie.read(request.headers())
        && let Err(error) = state.tokens.logout(token.as_str()).await
        && error.is_store_error()
    {
        return refresh_refusal(&error, &request);
    }
    if request.headers().contains_key(header::AUTHORIZATION) {
        match verified_bearer(&state, request.headers()).await {
            Bearer::Valid(verified) => {
                // Denied until the token is dead for every verifier: `exp` + the 30 s
                // leeway the layer allows.
                let until = verified
                    .expires_at()
                    .saturating_add(tower_shield::jwt::DEFAULT_LEEWAY.as_secs())
                    .saturating_add(1);
                if let Some(jti) = verified.jti()
                    && let Err(error) = state.tokens.revocation().revoke_token(jti, until).await
                {
                    return refresh_refusal(&RefreshError::Store(error), &request);
                }
            }
            Bearer::Unavailable => {
                return Refusal::new(&ProblemType::UNAVAILABLE)
                    .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
                    .for_request(&request);
            }
            Bearer::Invalid => {}
        }
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, state.cookie.clear_cookie());
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, NO_STORE.clone());
    response
}

enum Bearer {
    Valid(Verified<Claims>),
    Invalid,
    Unavailable,
}

/// Verifies the request's bearer token with the same `JwtAuthLayer` as `/api/*` (keys,
/// issuer, audience, cache, revocation), around a service that hands back what it verified.
async fn verified_bearer(state: &AppState, headers: &HeaderMap) -> Bearer {
    let mut probe = Request::new(Body::empty());
    for value in headers.get_all(header::AUTHORIZATION) {
        probe
            .headers_mut()
            .append(header::AUTHORIZATION, value.clone());
    }
    let inner = service_fn(|request: Request| async move {
        let mut response = Response::new(Body::empty());
        if let Some(verified) = request.extensions().get::<Verified<Claims>>() {
            response.extensions_mut().insert(verified.clone());
        }
        Ok::<_, std::convert::Infallible>(response)
    });
    let Ok(response) = state.jwt.layer(inner).oneshot(probe).await;
    if response.status() == StatusCode::SERVICE_UNAVAILABLE {
        return Bearer::Unavailable;
    }
    match response.extensions().get::<Verified<Claims>>() {
        Some(verified) => Bearer::Valid(verified.clone()),
        None => Bearer::Invalid,
    }
}

/// `GET /.well-known/jwks.json`: the public keys, each with `kid`, `alg` and `use: sig`.
pub(crate) async fn jwks(State(state): State<AppState>) -> Response {
    let mut response = Json(state.keys.snapshot().to_jwks()).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}
