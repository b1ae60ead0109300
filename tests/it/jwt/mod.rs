//! `JwtAuthLayer` against every known JWT attack, one test each, each building its hostile
//! token itself (`sign_raw` signs any header and claims JSON); plus rotation, the cache,
//! revocation, optional mode, guards, gRPC codes and the axum extractors.
//!
//! The shared keys, claims and service under test are here; the tests are grouped by what
//! they check:
//! - `acceptance`: valid tokens of every algorithm, what reaches the handler, and where the
//!   token is read from (the `Bearer` scheme, a cookie);
//! - `refusals`: the attacks, malformed tokens and `Authorization` headers, and generated
//!   hostile input;
//! - `keys`: key rotation, retirement, removal and reloading (also under cached tokens), key
//!   sizes, the published JWKS, and the builder's refusal of unsafe configuration;
//! - `cache`: the verified-token cache and `lookup_cached`;
//! - `revocation`: sessions, tokens and subjects revoked, asynchronous and failing stores;
//! - `guards`: optional mode, role and scope guards, gRPC status codes, the axum extractors.

mod acceptance;
mod cache;
mod guards;
mod keys;
mod refusals;
mod revocation;

use std::convert::Infallible;
use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_shield::clock::ManualClock;
use tower_shield::jwt::{
    Claims, JwtAuthLayer, JwtAuthLayerBuilder, Key, KeySet, MemoryRevocationStore, Verified,
};
use tower_shield::{Principal, ShieldBody};

const NOW: u64 = 1_800_000_000;

fn clock() -> ManualClock {
    ManualClock::at(UNIX_EPOCH + Duration::from_secs(NOW))
}

fn b64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// Shared keys (RSA generation is slow): RS256, ES256, EdDSA, HS256, PS256.
struct TestKeys {
    rs: Key,
    es: Key,
    ed: Key,
    hs: Key,
    ps: Key,
}

fn test_keys() -> &'static TestKeys {
    static KEYS: OnceLock<TestKeys> = OnceLock::new();
    KEYS.get_or_init(|| TestKeys {
        rs: Key::generate(Algorithm::RS256).unwrap(),
        es: Key::generate(Algorithm::ES256).unwrap(),
        ed: Key::generate(Algorithm::EdDSA).unwrap(),
        hs: Key::hmac(Algorithm::HS256, b"0123456789abcdef0123456789abcdef").unwrap(),
        ps: Key::generate(Algorithm::PS256).unwrap(),
    })
}

fn keyset() -> KeySet {
    let k = test_keys();
    let mut set = KeySet::new();
    for key in [&k.rs, &k.es, &k.ed, &k.hs, &k.ps] {
        set.insert(key.clone()).unwrap();
    }
    set
}

fn claims() -> Value {
    json!({
        "sub": "user_1",
        "role": "user",
        "iss": "https://issuer.example",
        "aud": "api",
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "exp": NOW + 300,
        "jti": "tok_1",
        "scope": "items:read items:write",
    })
}

fn header_for(key: &Key) -> Value {
    json!({ "alg": tower_shield::jwt::keys::algorithm_name(key.algorithm()), "kid": key.kid(), "typ": "at+jwt" })
}

/// Signs arbitrary header and claims JSON with `key` (jsonwebtoken's signer).
fn sign_raw(key: &Key, header: &Value, claims: &Value) -> String {
    let message = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        key.encoding_key().unwrap(),
        key.algorithm(),
    )
    .unwrap();
    format!("{message}.{signature}")
}

fn token(key: &Key) -> String {
    sign_raw(key, &header_for(key), &claims())
}

fn builder() -> JwtAuthLayerBuilder {
    JwtAuthLayer::builder(keyset())
        .issuer("https://issuer.example")
        .audience("api")
        .clock(clock())
}

type Body = ShieldBody<Full<Bytes>>;

async fn echo(req: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    let who = req
        .extensions()
        .get::<Verified<Claims>>()
        .map_or_else(|| "anonymous".to_owned(), |v| v.sub.clone());
    let principal = req.extensions().get::<Principal>().cloned();
    if let Some(p) = principal {
        assert_eq!(&*p.subject, who.as_str());
    }
    Ok(Response::new(Full::new(Bytes::from(who))))
}

async fn call_with(layer: &JwtAuthLayer, req: Request<Full<Bytes>>) -> Response<Body> {
    ServiceBuilder::new()
        .layer(layer.clone())
        .service(service_fn(echo))
        .oneshot(req)
        .await
        .unwrap()
}

fn bearer(token: &str) -> Request<Full<Bytes>> {
    Request::get("/api/me")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::default())
        .unwrap()
}

async fn body_text(response: Response<Body>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

async fn run(token: &str) -> Response<Body> {
    call_with(&builder().build().unwrap(), bearer(token)).await
}

async fn assert_ok(token: &str) {
    let response = run(token).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_text(response).await, "user_1");
}

/// A refusal: 401 problem+json with the invalid_token challenge, echoing nothing of the token.
async fn assert_invalid(response: Response<Body>, token: &str) {
    assert_eq!(
        response.status(),
        StatusCode::UNAUTHORIZED,
        "token {token:.60}"
    );
    assert_eq!(
        response.headers()[header::WWW_AUTHENTICATE],
        "Bearer realm=\"api\", error=\"invalid_token\", error_description=\"The access token is invalid or has expired\""
    );
    assert_problem(response, "invalid-token", token).await;
}

async fn assert_problem(response: Response<Body>, slug: &str, token: &str) {
    assert_eq!(
        response.headers()[header::CONTENT_TYPE],
        "application/problem+json"
    );
    let text = body_text(response).await;
    let body: Value = serde_json::from_str(&text).unwrap();
    assert!(body["type"].as_str().unwrap().ends_with(slug), "{text}");
    for part in token.split('.').filter(|p| p.len() >= 8) {
        assert!(!text.contains(part), "refusal echoes the token");
    }
}

async fn refused(token: &str) {
    assert_invalid(run(token).await, token).await;
}

/// A layer on `clock` with a cache of `capacity` and a memory revocation store.
fn cached_with_store(
    clock: &ManualClock,
    capacity: usize,
) -> (JwtAuthLayer, MemoryRevocationStore) {
    let store = MemoryRevocationStore::builder()
        .clock(clock.clone())
        .build()
        .unwrap();
    let layer = JwtAuthLayer::builder(keyset())
        .clock(clock.clone())
        .cache(capacity)
        .revocation(store.clone())
        .build()
        .unwrap();
    (layer, store)
}

/// `request` after `layer.lookup_cached` on it (true when it found the token cached).
fn looked_up(layer: &JwtAuthLayer, request: Request<Full<Bytes>>) -> (bool, Request<Full<Bytes>>) {
    let (mut parts, body) = request.into_parts();
    let found = layer.lookup_cached(&parts.headers, &mut parts.extensions);
    assert_eq!(found, !parts.extensions.is_empty());
    (found, Request::from_parts(parts, body))
}
