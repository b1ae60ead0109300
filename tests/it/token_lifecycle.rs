//! Issuing: tokens from `TokenIssuer` verify with `JwtAuthLayer` (RS256, ES256, EdDSA, and
//! HS256 only when allowed), carry the RFC 9068 header and claims, survive a key rotation
//! for exactly the grace period; `TokenPair`, the refresh cookie and the refusal mapping.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_shield::StoreError;
use tower_shield::clock::{Clock, ManualClock};
use tower_shield::jwt::{
    Claims, JwtAuthLayer, Key, KeyRing, KeySet, MemoryRevocationStore, Verified,
};
use tower_shield::refusal::ProblemType;
use tower_shield::tokens::store::MemoryRefreshStore;
use tower_shield::tokens::{IssueError, RefreshCookie, RefreshError, RefreshTokens, TokenIssuer};

fn decode_part(part: &str) -> Value {
    let mut bytes = Vec::new();
    let (mut acc, mut n) = (0u32, 0);
    for c in part.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            _ => 63,
        };
        acc = (acc << 6) | u32::from(v);
        n += 6;
        if n >= 8 {
            n -= 8;
            bytes.push((acc >> n) as u8);
            acc &= (1 << n) - 1;
        }
    }
    serde_json::from_slice(&bytes).unwrap()
}

fn header_and_claims(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    (
        decode_part(parts.next().unwrap()),
        decode_part(parts.next().unwrap()),
    )
}

async fn call(layer: &JwtAuthLayer, token: &str) -> (StatusCode, Option<Verified<Claims>>) {
    let service = ServiceBuilder::new()
        .layer(layer.clone())
        .service(service_fn(|req: Request<String>| async move {
            let verified = req.extensions().get::<Verified<Claims>>().cloned();
            let mut response = Response::new(String::new());
            response.extensions_mut().insert(verified);
            Ok::<_, Infallible>(response)
        }));
    let request = Request::get("/")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(String::new())
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    let verified = response
        .extensions()
        .get::<Option<Verified<Claims>>>()
        .cloned()
        .flatten();
    (response.status(), verified)
}

fn issuer_for(ring: &KeyRing, clock: &ManualClock) -> TokenIssuer {
    TokenIssuer::builder(ring.clone())
        .issuer("https://auth.test")
        .audience("api")
        .clock(clock.clone())
        .build()
        .unwrap()
}

fn layer_for(ring: &KeyRing, clock: &ManualClock) -> JwtAuthLayer {
    JwtAuthLayer::builder(ring.clone())
        .issuer("https://auth.test")
        .audience("api")
        .clock(clock.clone())
        .build()
        .unwrap()
}

#[tokio::test]
async fn issued_tokens_verify_with_the_layer_for_each_algorithm() {
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
        let clock = ManualClock::now();
        let ring = KeyRing::new(KeySet::new().with(Key::generate(alg).unwrap()).unwrap());
        let issuer = issuer_for(&ring, &clock);
        let token = issuer
            .issue(
                "user_1",
                "admin",
                &json!({ "tenant": "t1", "scope": "items:read" }),
            )
            .unwrap();
        let (head, claims) = header_and_claims(token.as_str());
        assert_eq!(head["typ"], "at+jwt");
        assert_eq!(head["kid"], ring.snapshot().signing_key().unwrap().kid);
        assert_eq!(head["alg"], tower_shield::jwt::keys::algorithm_name(alg));
        assert_eq!(claims["sub"], "user_1");
        assert_eq!(claims["role"], "admin");
        assert_eq!(claims["iss"], "https://auth.test");
        assert_eq!(claims["aud"], "api");
        assert_eq!(claims["tenant"], "t1");
        let iat = claims["iat"].as_u64().unwrap();
        assert_eq!(claims["nbf"].as_u64().unwrap(), iat);
        assert_eq!(claims["exp"].as_u64().unwrap(), iat + 900);
        let jti = claims["jti"].as_str().unwrap();
        assert_eq!(uuid::Uuid::parse_str(jti).unwrap().get_version_num(), 4);
        assert_eq!(jti, token.jti());

        let layer = layer_for(&ring, &clock);
        let (status, verified) = call(&layer, token.as_str()).await;
        assert_eq!(status, StatusCode::OK, "{alg:?}");
        let verified = verified.unwrap();
        assert_eq!(verified.sub, "user_1");
        assert_eq!(verified.role.as_deref(), Some("admin"));
        assert_eq!(verified.jti(), Some(jti));

        // Expired after 15 minutes plus the layer's 30 s leeway.
        clock.advance(Duration::from_secs(900 + 29));
        assert_eq!(call(&layer, token.as_str()).await.0, StatusCode::OK);
        clock.advance(Duration::from_secs(1));
        assert_eq!(
            call(&layer, token.as_str()).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
}

#[tokio::test]
async fn hs256_only_when_allowed_and_uuid_v7() {
    let clock = ManualClock::now();
    let ring = KeyRing::new(
        KeySet::new()
            .with(Key::generate(Algorithm::HS256).unwrap())
            .unwrap(),
    );
    assert!(
        TokenIssuer::builder(ring.clone())
            .issuer("https://auth.test")
            .audience("api")
            .build()
            .is_err()
    );
    let issuer = TokenIssuer::builder(ring.clone())
        .issuer("https://auth.test")
        .audience("api")
        .allow_hmac()
        .uuid_v7()
        .clock(clock.clone())
        .build()
        .unwrap();
    let token = issuer.issue("user_1", "user", &()).unwrap();
    assert_eq!(
        uuid::Uuid::parse_str(token.jti())
            .unwrap()
            .get_version_num(),
        7
    );
    assert_eq!(
        call(&layer_for(&ring, &clock), token.as_str()).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn rotation_keeps_the_retired_key_for_its_grace_only() {
    let clock = ManualClock::now();
    let old = Key::generate(Algorithm::ES256).unwrap();
    let old_kid = old.kid().to_owned();
    let ring = KeyRing::new(KeySet::new().with(old).unwrap());
    let issuer = issuer_for(&ring, &clock);
    let layer = layer_for(&ring, &clock);
    let before = issuer.issue("user_1", "user", &()).unwrap();
    assert_eq!(before.kid(), old_kid);

    // Rotate: a new key signs from now on; the old one verifies for 10 more minutes.
    let grace_until = Clock::now(&clock) + Duration::from_secs(600);
    let new_kid = ring
        .update(|keys| {
            let kid = keys.insert(Key::generate(Algorithm::ES256)?)?;
            keys.set_active(&kid)?;
            keys.retire(&old_kid, grace_until)?;
            Ok(kid)
        })
        .unwrap();
    let after = issuer.issue("user_1", "user", &()).unwrap();
    assert_eq!(after.kid(), new_kid.as_ref());
    let (head, _) = header_and_claims(after.as_str());
    assert_eq!(head["kid"], new_kid.as_ref());

    // The JWKS lists both during the grace period.
    let jwks = serde_json::to_value(ring.snapshot().to_jwks()).unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(kids.contains(&old_kid.as_str()) && kids.contains(&new_kid.as_ref()));

    assert_eq!(call(&layer, before.as_str()).await.0, StatusCode::OK);
    assert_eq!(call(&layer, after.as_str()).await.0, StatusCode::OK);
    clock.advance(Duration::from_secs(600));
    assert_eq!(
        call(&layer, before.as_str()).await.0,
        StatusCode::OK,
        "still within grace"
    );
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        call(&layer, before.as_str()).await.0,
        StatusCode::UNAUTHORIZED,
        "retired key past its grace"
    );
    assert_eq!(call(&layer, after.as_str()).await.0, StatusCode::OK);
    // Once removed, the JWKS lists only the new key.
    ring.update(|keys| {
        keys.remove(&old_kid);
        Ok(())
    })
    .unwrap();
    assert_eq!(ring.snapshot().to_jwks().keys.len(), 1);
}

#[tokio::test]
async fn issuing_fails_without_an_active_key() {
    let clock = ManualClock::now();
    let key = Key::generate(Algorithm::EdDSA).unwrap();
    let kid = key.kid().to_owned();
    let ring = KeyRing::new(KeySet::new().with(key).unwrap());
    let issuer = issuer_for(&ring, &clock);
    ring.update(|keys| keys.retire(&kid, Clock::now(&clock)))
        .unwrap();
    assert_eq!(
        issuer.issue("user_1", "user", &()).unwrap_err(),
        IssueError::NoSigningKey
    );
    let tokens = RefreshTokens::builder(issuer, MemoryRefreshStore::new())
        .revocation(MemoryRevocationStore::new())
        .build()
        .unwrap();
    let err = tokens.issue_pair("user_1", "user", &()).await.unwrap_err();
    assert!(matches!(err, RefreshError::Issue(IssueError::NoSigningKey)));
    assert_eq!(
        err.refusal().problem().status,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[test]
fn lifecycle_builder_validates() {
    let ring = KeyRing::new(
        KeySet::new()
            .with(Key::generate(Algorithm::EdDSA).unwrap())
            .unwrap(),
    );
    let issuer = issuer_for(&ring, &ManualClock::now());
    let base = || RefreshTokens::builder(issuer.clone(), MemoryRefreshStore::new());
    assert!(base().build().is_err(), "revocation store required");
    let with_rev = || base().revocation(MemoryRevocationStore::new());
    assert!(with_rev().build().is_ok());
    assert!(
        with_rev()
            .reuse_grace(Duration::from_secs(61))
            .build()
            .is_err()
    );
    assert!(
        with_rev()
            .reuse_grace(Duration::from_secs(60))
            .build()
            .is_ok()
    );
    assert!(
        with_rev()
            .refresh_ttl(Duration::from_secs(60))
            .build()
            .is_err(),
        "shorter than the access token"
    );
    assert!(
        with_rev()
            .refresh_ttl(Duration::from_secs(91 * 24 * 3600))
            .build()
            .is_err()
    );
    assert!(
        with_rev()
            .family_lifetime(Duration::from_secs(24 * 3600))
            .build()
            .is_err(),
        "family shorter than a token"
    );
}

#[tokio::test]
async fn store_chosen_at_runtime() {
    let clock = ManualClock::now();
    let ring = KeyRing::new(
        KeySet::new()
            .with(Key::generate(Algorithm::EdDSA).unwrap())
            .unwrap(),
    );
    let store: std::sync::Arc<dyn tower_shield::tokens::store::RefreshStore> =
        std::sync::Arc::new(MemoryRefreshStore::new());
    let tokens = RefreshTokens::builder(issuer_for(&ring, &clock), store)
        .revocation(MemoryRevocationStore::new())
        .build()
        .unwrap();
    let pair = tokens.issue_pair("user_1", "user", &()).await.unwrap();
    tokens.rotate(pair.refresh_token.as_str()).await.unwrap();
}

#[tokio::test]
async fn token_pair_serialises_without_the_refresh_token_and_debug_hides_tokens() {
    let clock = ManualClock::now();
    let ring = KeyRing::new(
        KeySet::new()
            .with(Key::generate(Algorithm::EdDSA).unwrap())
            .unwrap(),
    );
    let tokens = RefreshTokens::builder(issuer_for(&ring, &clock), MemoryRefreshStore::new())
        .revocation(MemoryRevocationStore::new())
        .build()
        .unwrap();
    let pair = tokens.issue_pair("user_1", "user", &()).await.unwrap();
    let json = serde_json::to_value(&pair).unwrap();
    let mut keys: Vec<&String> = json.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(keys, ["access_token", "expires_in", "token_type"]);
    assert_eq!(json["token_type"], "Bearer");
    assert_eq!(json["expires_in"], 900);
    let debug = format!("{pair:?} {:?}", pair.refresh_token);
    assert!(!debug.contains(&pair.access_token));
    assert!(!debug.contains(pair.refresh_token.as_str()));
    assert!(!debug.contains(&pair.refresh_token.as_str()[3..20]));
    let tokens_debug = format!("{tokens:?}");
    assert!(!tokens_debug.contains(pair.refresh_token.as_str()));
}

#[tokio::test]
async fn refresh_through_the_cookie() {
    let clock = ManualClock::now();
    let ring = KeyRing::new(
        KeySet::new()
            .with(Key::generate(Algorithm::EdDSA).unwrap())
            .unwrap(),
    );
    let tokens = RefreshTokens::builder(issuer_for(&ring, &clock), MemoryRefreshStore::new())
        .revocation(MemoryRevocationStore::new())
        .build()
        .unwrap();
    let cookie = RefreshCookie::new();
    let login = tokens.issue_pair("user_1", "user", &()).await.unwrap();
    let set = cookie.set_for(&login);
    let set = set.to_str().unwrap();
    assert!(set.contains("HttpOnly"));
    assert!(set.contains("Secure"));
    assert!(set.contains("SameSite=Strict"));
    assert!(set.contains("Path=/auth"));
    assert!(set.contains("Max-Age=604800"));

    // What the browser sends back: the pair before the first `;`.
    let pair = set.split(';').next().unwrap();
    let mut headers = HeaderMap::new();
    headers.append(header::COOKIE, HeaderValue::from_static("theme=dark"));
    headers.append(header::COOKIE, HeaderValue::from_str(pair).unwrap());
    let presented = cookie.read(&headers).unwrap();
    let next = tokens.rotate(presented.as_str()).await.unwrap();
    assert_eq!(next.family, login.family);

    // Missing cookie: nothing to present.
    assert!(cookie.read(&HeaderMap::new()).is_none());
    // Logout clears it.
    let clear = cookie.clear_cookie();
    assert!(clear.to_str().unwrap().contains("Max-Age=0"));
}

#[test]
fn refusals_map_lifecycle_errors() {
    let request = Request::new(());
    for (err, status, slug) in [
        (RefreshError::Unknown, 401, "invalid-token"),
        (RefreshError::Expired, 401, "invalid-token"),
        (RefreshError::Revoked, 401, "invalid-token"),
        (RefreshError::Busy, 401, "invalid-token"),
        (
            RefreshError::Reused {
                subject: "user_1".into(),
                family: tower_shield::tokens::store::FamilyId::from_bytes([1; 16]),
            },
            401,
            "refresh_token_reused",
        ),
        (RefreshError::Store(StoreError::Timeout), 503, "unavailable"),
        (
            RefreshError::Store(StoreError::Unavailable("down".into())),
            503,
            "unavailable",
        ),
    ] {
        let response: Response<Bytes> = err.refusal().for_request(&request);
        assert_eq!(response.status().as_u16(), status, "{err:?}");
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let body: Value = serde_json::from_slice(response.body()).unwrap();
        assert!(
            body["type"].as_str().unwrap().ends_with(slug),
            "{err:?}: {body}"
        );
        assert!(!body.to_string().contains("down"), "no store detail leaks");
        if status == 503 {
            assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        }
    }
    assert_eq!(
        RefreshError::Store(StoreError::Timeout).problem(),
        &ProblemType::UNAVAILABLE
    );
}

mod hostile {
    use super::*;
    use proptest::prelude::*;
    use tower_shield::tokens::RefreshToken;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn refresh_token_parse_never_panics(input in ".{0,200}") {
            let parsed = RefreshToken::parse(&input);
            if parsed.is_some() {
                prop_assert!(input.starts_with("rt_") && input.len() == 67);
            }
        }

        #[test]
        fn cookie_read_never_panics(
            lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..40)
        ) {
            let mut headers = HeaderMap::new();
            for line in lines {
                if let Ok(value) = HeaderValue::from_bytes(&line) {
                    headers.append(header::COOKIE, value);
                }
            }
            if let Some(token) = RefreshCookie::new().read(&headers) {
                prop_assert!(RefreshToken::parse(token.as_str()).is_some());
            }
        }
    }
}
