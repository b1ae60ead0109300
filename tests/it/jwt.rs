//! `JwtAuthLayer` against every known JWT attack, one test each, each building its hostile
//! token itself; plus rotation, the cache, revocation, optional mode, guards, gRPC codes and
//! the axum extractors.

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_shield::clock::ManualClock;
use tower_shield::jwt::keys::{KeySetVersion, KeySource};
use tower_shield::jwt::revocation::{StoreFuture, TokenRef};
use tower_shield::jwt::{
    Claims, JwtAuthBuilder, JwtAuthLayer, Key, KeyRing, KeySet, MemoryRevocationStore,
    RequireRoleLayer, RequireScopeLayer, RevocationStore, Scopes, TokenSource, TokenType, Verified,
};
use tower_shield::{Principal, ShieldBody, StoreError};

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

fn builder() -> JwtAuthBuilder {
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

// ---------------------------------------------------------------- the happy paths

#[tokio::test]
async fn valid_tokens_of_every_algorithm_are_accepted() {
    let k = test_keys();
    for key in [&k.rs, &k.es, &k.ed, &k.hs, &k.ps] {
        assert_ok(&token(key)).await;
    }
}

#[tokio::test]
async fn claims_principal_and_scopes_reach_the_handler() {
    let layer = builder().build().unwrap();
    let service = ServiceBuilder::new().layer(layer).service(service_fn(
        |req: Request<Full<Bytes>>| async move {
            let v = req.extensions().get::<Verified<Claims>>().unwrap();
            assert_eq!(v.jti(), Some("tok_1"));
            assert_eq!(v.kid(), test_keys().es.kid());
            assert_eq!(v.expires_at(), NOW + 300);
            let p = req.extensions().get::<Principal>().unwrap();
            assert_eq!(p.role.as_deref(), Some("user"));
            let s = req.extensions().get::<Scopes>().unwrap();
            assert!(s.contains("items:write") && !s.contains("items"));
            Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
        },
    ));
    let response = service
        .oneshot(bearer(&token(&test_keys().es)))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

// ---------------------------------------------------------------- attacks

#[tokio::test]
async fn alg_none_in_any_casing_is_refused() {
    let payload = b64url(claims().to_string().as_bytes());
    for alg in ["none", "None", "NONE", "nOnE"] {
        for kid in [None, Some(test_keys().hs.kid())] {
            let mut header = json!({ "alg": alg, "typ": "at+jwt" });
            if let Some(kid) = kid {
                header["kid"] = json!(kid);
            }
            let unsigned = format!("{}.{payload}", b64url(header.to_string().as_bytes()));
            refused(&format!("{unsigned}.")).await;
            refused(&unsigned).await;
            refused(&format!("{unsigned}.c2lnbmF0dXJl")).await;
        }
    }
}

#[tokio::test]
async fn rsa_public_key_used_as_hmac_secret_is_refused() {
    // Algorithm confusion: the attacker signs HS256 with the RSA *public* key as the secret.
    let rs = &test_keys().rs;
    let jwk = rs.public_jwk().unwrap();
    let public_pem_like = serde_json::to_vec(jwk).unwrap();
    let der = rs.decoding_key().as_bytes_for_test();
    for secret in [der.clone(), public_pem_like] {
        let forged_key = Key::hmac(Algorithm::HS256, &secret).unwrap();
        for kid in [Some(rs.kid()), None] {
            let mut header = json!({ "alg": "HS256", "typ": "at+jwt" });
            if let Some(kid) = kid {
                header["kid"] = json!(kid);
            }
            refused(&sign_raw(&forged_key, &header, &claims())).await;
        }
    }
}

trait DerForTest {
    fn as_bytes_for_test(&self) -> Vec<u8>;
}

impl DerForTest for jsonwebtoken::DecodingKey {
    fn as_bytes_for_test(&self) -> Vec<u8> {
        self.try_get_as_bytes().unwrap().to_vec()
    }
}

#[tokio::test]
async fn unknown_and_path_traversal_kids_are_refused() {
    let es = &test_keys().es;
    for kid in [
        "unknown",
        "../../etc/passwd",
        "/dev/null",
        "' OR 1=1 --",
        "",
    ] {
        let header = json!({ "alg": "ES256", "kid": kid, "typ": "at+jwt" });
        refused(&sign_raw(es, &header, &claims())).await;
    }
}

#[tokio::test]
async fn kid_bound_to_another_algorithm_is_refused() {
    let k = test_keys();
    // ES256 key's kid with an RS256 signature by our own RSA key.
    let header = json!({ "alg": "RS256", "kid": k.es.kid(), "typ": "at+jwt" });
    refused(&sign_raw(&k.rs, &header, &claims())).await;
    // PS256 is not RS256 even with the same key family.
    let header = json!({ "alg": "PS256", "kid": k.rs.kid(), "typ": "at+jwt" });
    refused(&sign_raw(&k.ps, &header, &claims())).await;
}

#[tokio::test]
async fn token_without_kid_needs_exactly_one_key_of_its_algorithm() {
    let k = test_keys();
    let header = json!({ "alg": "ES256", "typ": "at+jwt" });
    assert_ok(&sign_raw(&k.es, &header, &claims())).await;
    let mut keys = keyset();
    keys.insert(Key::generate(Algorithm::ES256).unwrap())
        .unwrap();
    let layer = JwtAuthLayer::builder(keys).clock(clock()).build().unwrap();
    let token = sign_raw(&k.es, &header, &claims());
    assert_invalid(call_with(&layer, bearer(&token)).await, &token).await;
}

#[tokio::test]
async fn embedded_jwk_jku_x5u_x5c_are_never_used() {
    let attacker = Key::generate(Algorithm::ES256).unwrap();
    let jwk = serde_json::to_value(attacker.public_jwk().unwrap()).unwrap();
    let ours = test_keys().es.kid();
    for (member, value) in [
        ("jwk", jwk),
        ("jku", json!("https://attacker.example/jwks.json")),
        ("x5u", json!("https://attacker.example/cert.pem")),
        ("x5c", json!(["MIIB"])),
    ] {
        for kid in [attacker.kid(), ours] {
            let header = json!({ "alg": "ES256", "kid": kid, "typ": "at+jwt", member: value });
            refused(&sign_raw(&attacker, &header, &claims())).await;
        }
        // Even signed by our own key, a token asking us to fetch keys is refused.
        let header = json!({ "alg": "ES256", "kid": ours, "typ": "at+jwt", member: value });
        refused(&sign_raw(&test_keys().es, &header, &claims())).await;
    }
}

#[tokio::test]
async fn crit_header_is_refused() {
    let es = &test_keys().es;
    let header = json!({ "alg": "ES256", "kid": es.kid(), "typ": "at+jwt", "crit": ["exp"] });
    refused(&sign_raw(es, &header, &claims())).await;
    let header =
        json!({ "alg": "ES256", "kid": es.kid(), "typ": "at+jwt", "crit": ["b64"], "b64": false });
    refused(&sign_raw(es, &header, &claims())).await;
}

#[tokio::test]
async fn duplicate_header_member_is_refused() {
    let es = &test_keys().es;
    let header = format!(
        r#"{{"alg":"ES256","kid":"{}","typ":"at+jwt","alg":"none"}}"#,
        es.kid()
    );
    let message = format!(
        "{}.{}",
        b64url(header.as_bytes()),
        b64url(claims().to_string().as_bytes())
    );
    let sig = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        es.encoding_key().unwrap(),
        Algorithm::ES256,
    )
    .unwrap();
    refused(&format!("{message}.{sig}")).await;
}

/// `sid` (the session) from a signed token: a string once, or the token is refused; a
/// revoked session refuses every token naming it, and only those.
#[tokio::test]
async fn session_claim_is_checked_and_revocable() {
    let es = &test_keys().es;
    let with_sid = |sid: Value| {
        let mut c = claims();
        c["sid"] = sid;
        sign_raw(es, &header_for(es), &c)
    };
    for hostile in [json!(5), json!(null), json!(["a"]), json!({ "x": 1 })] {
        refused(&with_sid(hostile)).await;
    }
    // A duplicated member, both values strings.
    let payload = claims()
        .to_string()
        .replacen('{', r#"{"sid":"s_1","sid":"s_2","#, 1);
    let message = format!(
        "{}.{}",
        b64url(header_for(es).to_string().as_bytes()),
        b64url(payload.as_bytes())
    );
    let sig = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        es.encoding_key().unwrap(),
        es.algorithm(),
    )
    .unwrap();
    refused(&format!("{message}.{sig}")).await;

    let store = MemoryRevocationStore::builder()
        .clock(clock())
        .build()
        .unwrap();
    let layer = builder()
        .revocation(store.clone())
        .cache(16)
        .build()
        .unwrap();
    let session_a = with_sid(json!("fam_a"));
    let mut other = claims();
    other["sid"] = json!("fam_b");
    other["jti"] = json!("tok_2");
    let session_b = sign_raw(es, &header_for(es), &other);
    // Long but within the token limit: accepted, and simply never found revoked.
    let long = with_sid(json!("s".repeat(4000)));
    for t in [&session_a, &session_b, &long] {
        assert_eq!(call_with(&layer, bearer(t)).await.status(), StatusCode::OK);
    }
    store.revoke_session("fam_a", NOW + 600).await.unwrap();
    assert_invalid(call_with(&layer, bearer(&session_a)).await, &session_a).await;
    for t in [&session_b, &long] {
        assert_eq!(call_with(&layer, bearer(t)).await.status(), StatusCode::OK);
    }
    // The handler sees the session.
    let service = ServiceBuilder::new()
        .layer(builder().build().unwrap())
        .service(service_fn(|req: Request<Full<Bytes>>| async move {
            let v = req.extensions().get::<Verified<Claims>>().unwrap();
            assert_eq!(v.session(), Some("fam_b"));
            Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
        }));
    let response = service.oneshot(bearer(&session_b)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn expired_token_is_refused_after_leeway() {
    let es = &test_keys().es;
    let mut c = claims();
    c["exp"] = json!(NOW - 31);
    refused(&sign_raw(es, &header_for(es), &c)).await;
    c["exp"] = json!(NOW - 29); // inside the 30 s leeway
    assert_ok(&sign_raw(es, &header_for(es), &c)).await;
    let mut c = claims();
    c.as_object_mut().unwrap().remove("exp");
    refused(&sign_raw(es, &header_for(es), &c)).await;
}

#[tokio::test]
async fn nbf_and_iat_in_the_future_are_refused() {
    let es = &test_keys().es;
    for claim in ["nbf", "iat"] {
        let mut c = claims();
        c[claim] = json!(NOW + 60);
        refused(&sign_raw(es, &header_for(es), &c)).await;
        c[claim] = json!(NOW + 20);
        assert_ok(&sign_raw(es, &header_for(es), &c)).await;
    }
}

#[tokio::test]
async fn wrong_issuer_or_audience_is_refused() {
    let es = &test_keys().es;
    let mut c = claims();
    c["iss"] = json!("https://evil.example");
    refused(&sign_raw(es, &header_for(es), &c)).await;
    c.as_object_mut().unwrap().remove("iss");
    refused(&sign_raw(es, &header_for(es), &c)).await;
    let mut c = claims();
    c["aud"] = json!("other");
    refused(&sign_raw(es, &header_for(es), &c)).await;
    c["aud"] = json!(["other", "yet-another"]);
    refused(&sign_raw(es, &header_for(es), &c)).await;
    c["aud"] = json!(["other", "api"]);
    assert_ok(&sign_raw(es, &header_for(es), &c)).await;
}

#[tokio::test]
async fn tampered_payload_is_refused() {
    let k = test_keys();
    for key in [&k.rs, &k.es, &k.ed, &k.hs] {
        let good = token(key);
        let parts: Vec<&str> = good.split('.').collect();
        let mut c = claims();
        c["role"] = json!("admin");
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64url(c.to_string().as_bytes()),
            parts[2]
        );
        refused(&forged).await;
    }
}

/// For a good token of each test key (RS, ES, Ed, HS): its `header.payload` and its signature.
fn messages_and_signatures() -> Vec<(String, String)> {
    let k = test_keys();
    [&k.rs, &k.es, &k.ed, &k.hs]
        .into_iter()
        .map(|key| {
            let good = token(key);
            let (message, sig) = good.rsplit_once('.').unwrap();
            (message.to_owned(), sig.to_owned())
        })
        .collect()
}

#[tokio::test]
async fn truncated_or_stripped_signature_is_refused() {
    for (message, sig) in messages_and_signatures() {
        refused(&format!("{message}.")).await;
        refused(&message).await;
        refused(&format!("{message}.{}", &sig[..sig.len() - 4])).await;
        refused(&format!("{message}.{}", &sig[..sig.len() / 2])).await;
        refused(&format!("{message}.{sig}AAAA")).await;
    }
}

#[tokio::test]
async fn signature_with_non_zero_padding_bits_is_refused() {
    // The last base64url character of these signatures carries bits past the end of the
    // bytes; an encoding that sets them is another spelling of the same signature, refused.
    for (message, sig) in messages_and_signatures() {
        let last = sig.as_bytes()[sig.len() - 1];
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let value = ALPHABET.iter().position(|&c| c == last).unwrap();
        let spare = ALPHABET[value | 1] as char;
        assert_ne!(spare as u8, last, "the signature's padding bits are zero");
        refused(&format!("{message}.{}{spare}", &sig[..sig.len() - 1])).await;
    }
}

#[tokio::test]
async fn psychic_signature_r_s_zero_is_refused() {
    // CVE-2022-21449: an ECDSA signature with r = s = 0 "verifies" on broken implementations.
    let es = &test_keys().es;
    let message = format!(
        "{}.{}",
        b64url(header_for(es).to_string().as_bytes()),
        b64url(claims().to_string().as_bytes())
    );
    refused(&format!("{message}.{}", b64url(&[0u8; 64]))).await;
    // DER-encoded r = s = 0 too.
    refused(&format!(
        "{message}.{}",
        b64url(&[0x30, 6, 2, 1, 0, 2, 1, 0])
    ))
    .await;
}

#[tokio::test]
async fn invalid_base64_is_refused() {
    let good = token(&test_keys().es);
    let parts: Vec<&str> = good.split('.').collect();
    for bad in [
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}+.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}.{}/", parts[0], parts[1], parts[2]),
        format!("!!!.{}.{}", parts[1], parts[2]),
        format!("{}.{}.{}", &parts[0][1..], parts[1], parts[2]),
        "e30.e30.e30".to_owned(),
        "not-a-token".to_owned(),
        "a.b.c.d".to_owned(),
        "..".to_owned(),
    ] {
        refused(&bad).await;
    }
    // Header that is base64 but not JSON, and JSON that is not an object.
    let payload = b64url(claims().to_string().as_bytes());
    refused(&format!("{}.{payload}.AAAA", b64url(b"not json"))).await;
    refused(&format!("{}.{payload}.AAAA", b64url(b"[\"alg\"]"))).await;
}

#[tokio::test]
async fn oversized_tokens_and_headers_are_refused() {
    let good = token(&test_keys().es);
    let parts: Vec<&str> = good.split('.').collect();
    let padding = "A".repeat(100 * 1024);
    for big in [
        format!("{}.{}{padding}.{}", parts[0], parts[1], parts[2]),
        format!("{padding}.{}.{}", parts[1], parts[2]),
        padding.clone(),
    ] {
        refused(&big).await;
    }
    // A signed token just over the cap is refused unread.
    let mut c = claims();
    c["pad"] = json!("x".repeat(9000));
    refused(&sign_raw(&test_keys().es, &header_for(&test_keys().es), &c)).await;
}

#[tokio::test]
async fn deeply_nested_claims_neither_overflow_nor_pass_into_values() {
    let hs = &test_keys().hs;
    let mut c = claims();
    let nested: Value =
        serde_json::from_str(&format!("{}{}", "[".repeat(100), "]".repeat(100))).unwrap();
    c["x"] = nested;
    // Build a much deeper document by hand (serde_json refuses to build one over 128 deep).
    let text = c.to_string().replacen(
        &format!("{}{}", "[".repeat(100), "]".repeat(100)),
        &format!("{}{}", "[".repeat(2500), "]".repeat(2500)),
        1,
    );
    let message = format!(
        "{}.{}",
        b64url(header_for(hs).to_string().as_bytes()),
        b64url(text.as_bytes())
    );
    let sig = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        hs.encoding_key().unwrap(),
        Algorithm::HS256,
    )
    .unwrap();
    let token = format!("{message}.{sig}");
    assert!(token.len() < 8192);
    // Claims ignores `x` (skipped iteratively): accepted, no stack overflow.
    assert_ok(&token).await;
    // A claims type that keeps every member hits serde_json's recursion limit: refused.
    #[derive(Clone, serde::Deserialize)]
    #[allow(dead_code)]
    struct Everything {
        #[serde(flatten)]
        all: serde_json::Map<String, Value>,
    }
    let layer = JwtAuthLayer::builder(keyset())
        .claims::<Everything>()
        .clock(clock())
        .build()
        .unwrap();
    let response = ServiceBuilder::new()
        .layer(layer)
        .service(service_fn(echo))
        .oneshot(bearer(&token))
        .await
        .unwrap();
    assert_invalid(response, &token).await;
}

#[tokio::test]
async fn refresh_or_id_token_is_not_an_access_token() {
    let es = &test_keys().es;
    for typ in [
        Some("rt+jwt"),
        Some("JWT"),
        Some("refresh"),
        Some("at+jwt2"),
        None,
    ] {
        let mut header = json!({ "alg": "ES256", "kid": es.kid() });
        if let Some(typ) = typ {
            header["typ"] = json!(typ);
        }
        refused(&sign_raw(es, &header, &claims())).await;
    }
    let header = json!({ "alg": "ES256", "kid": es.kid(), "typ": "application/AT+JWT" });
    assert_ok(&sign_raw(es, &header, &claims())).await;
}

#[tokio::test]
async fn token_type_by_claim() {
    let es = &test_keys().es;
    let layer = builder()
        .expect_type(TokenType::claim("token_use", "access"))
        .build()
        .unwrap();
    let header = json!({ "alg": "ES256", "kid": es.kid(), "typ": "JWT" });
    let mut c = claims();
    c["token_use"] = json!("refresh");
    let t = sign_raw(es, &header, &c);
    assert_invalid(call_with(&layer, bearer(&t)).await, &t).await;
    c["token_use"] = json!("access");
    let t = sign_raw(es, &header, &c);
    assert_eq!(call_with(&layer, bearer(&t)).await.status(), StatusCode::OK);
}

// ---------------------------------------------------------------- the Authorization header

#[tokio::test]
async fn missing_token_gets_a_challenge_without_error_code() {
    let layer = builder().realm("tower-shield-demo").build().unwrap();
    let response = call_with(&layer, Request::new(Full::default())).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()[header::WWW_AUTHENTICATE],
        "Bearer realm=\"tower-shield-demo\""
    );
    assert_problem(response, "unauthorized", "").await;
}

#[tokio::test]
async fn duplicate_authorization_header_is_refused() {
    let t = token(&test_keys().es);
    let mut req = bearer(&t);
    req.headers_mut().append(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {t}")).unwrap(),
    );
    assert_invalid(call_with(&builder().build().unwrap(), req).await, &t).await;
    let mut req = bearer(&t);
    for _ in 0..100 {
        req.headers_mut()
            .append(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
    }
    assert_invalid(call_with(&builder().build().unwrap(), req).await, &t).await;
}

#[tokio::test]
async fn scheme_is_case_insensitive_and_must_be_bearer() {
    let t = token(&test_keys().es);
    let layer = builder().build().unwrap();
    for scheme in ["bearer", "BEARER", "Bearer", "bEaReR"] {
        let req = Request::get("/")
            .header(header::AUTHORIZATION, format!("{scheme} {t}"))
            .body(Full::default())
            .unwrap();
        assert_eq!(
            call_with(&layer, req).await.status(),
            StatusCode::OK,
            "{scheme}"
        );
    }
    // Malformed bearer credentials: 401 `invalid_token`.
    for value in [
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        format!("Bearer {t} extra"),
    ] {
        let req = Request::get("/")
            .header(header::AUTHORIZATION, value)
            .body(Full::default())
            .unwrap();
        assert_invalid(call_with(&layer, req).await, &t).await;
    }
    // Another scheme presents no bearer token: the challenge names no error (RFC 6750
    // §3.1), exactly as when the header is missing.
    for value in [
        format!("Basic {t}"),
        "Basic dXNlcjpwYXNzd29yZA==".to_owned(),
        "Digest username=\"a\", realm=\"api\"".to_owned(),
        format!("Token {t}"),
        format!("Bearer{t}"),
        format!("Bearer\t{t}"),
    ] {
        let req = Request::get("/")
            .header(header::AUTHORIZATION, &value)
            .body(Full::default())
            .unwrap();
        let response = call_with(&layer, req).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{value:.40}");
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"api\"",
            "{value:.40}"
        );
        assert_problem(response, "unauthorized", &t).await;
    }
}

/// RFC 9068 §2.2: an access token (`typ: at+jwt`) carries `iss`, `exp`, `aud`, `sub`, `iat`
/// and `jti`; one without any of them is refused (a token without `jti` could not be revoked
/// by its id), unless the check is turned off.
#[tokio::test]
async fn access_tokens_lacking_a_required_claim_are_refused() {
    let k = test_keys();
    // Without configured issuers or audiences, the claims must still be there.
    let open = JwtAuthLayer::builder(keyset())
        .clock(clock())
        .build()
        .unwrap();
    for claim in ["iss", "aud", "iat", "jti", "sub", "exp"] {
        let mut claims = claims();
        claims.as_object_mut().unwrap().remove(claim);
        let t = sign_raw(&k.es, &header_for(&k.es), &claims);
        assert_invalid(run(&t).await, &t).await;
        assert_invalid(call_with(&open, bearer(&t)).await, &t).await;
        // Empty strings and empty audience lists are missing too.
        if matches!(claim, "iss" | "jti" | "aud") {
            let mut claims = self::claims();
            claims[claim] = if claim == "aud" { json!([]) } else { json!("") };
            let t = sign_raw(&k.es, &header_for(&k.es), &claims);
            assert_invalid(call_with(&open, bearer(&t)).await, &t).await;
            if claim == "aud" {
                for empty in [json!(""), json!([""]), json!(["", ""])] {
                    claims[claim] = empty;
                    let t = sign_raw(&k.es, &header_for(&k.es), &claims);
                    assert_invalid(call_with(&open, bearer(&t)).await, &t).await;
                }
            }
        }
    }
    // Turned off: `exp` and `sub` are still required, the others not.
    let lax = JwtAuthLayer::builder(keyset())
        .clock(clock())
        .require_access_token_claims(false)
        .build()
        .unwrap();
    let minimal = json!({ "sub": "user_1", "exp": NOW + 300 });
    let t = sign_raw(&k.es, &header_for(&k.es), &minimal);
    assert_eq!(call_with(&lax, bearer(&t)).await.status(), StatusCode::OK);
    assert_invalid(call_with(&open, bearer(&t)).await, &t).await;
    // Another token type than at+jwt: the RFC 9068 profile does not apply.
    let id_tokens = JwtAuthLayer::builder(keyset())
        .clock(clock())
        .expect_type(TokenType::header_typ(["JWT"]))
        .build()
        .unwrap();
    let mut header = header_for(&k.es);
    header["typ"] = json!("JWT");
    let t = sign_raw(&k.es, &header, &minimal);
    assert_eq!(
        call_with(&id_tokens, bearer(&t)).await.status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn control_bytes_and_non_utf8_are_refused() {
    let layer = builder().build().unwrap();
    for raw in [
        &b"Bearer \xff\xfe.\xfa.\xfb"[..],
        b"Bearer a.b\t.c",
        b"Bearer a\x80b.c.d",
        b"Bearer \xc3\xa9.e30.e30",
    ] {
        let mut req = Request::new(Full::default());
        req.headers_mut()
            .insert(header::AUTHORIZATION, HeaderValue::from_bytes(raw).unwrap());
        assert_invalid(call_with(&layer, req).await, "").await;
    }
}

#[tokio::test]
async fn cookie_source() {
    let t = token(&test_keys().es);
    let layer = builder()
        .token_from(TokenSource::Cookie("access_token".into()))
        .build()
        .unwrap();
    let req = |cookie: &str| {
        Request::get("/")
            .header(header::COOKIE, cookie)
            .body(Full::default())
            .unwrap()
    };
    let ok = call_with(&layer, req(&format!("theme=dark; access_token={t}; x=1"))).await;
    assert_eq!(ok.status(), StatusCode::OK);
    let dup = call_with(&layer, req(&format!("access_token={t}; access_token={t}"))).await;
    assert_invalid(dup, &t).await;
    let missing = call_with(&layer, req("theme=dark")).await;
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert!(
        !missing.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains("error")
    );
    // The bearer header is not read in cookie mode.
    assert_eq!(
        call_with(&layer, bearer(&t)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // A query parameter never is.
    let q = Request::get(format!("/?access_token={t}"))
        .body(Full::default())
        .unwrap();
    assert_eq!(
        call_with(&layer, q).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

// ---------------------------------------------------------------- rotation, cache, revocation

/// A ring holding `key` alone, and a layer on it with a token cache of `capacity`.
fn cached_on_ring(clock: &ManualClock, key: &Key, capacity: usize) -> (KeyRing, JwtAuthLayer) {
    let ring = KeyRing::new(KeySet::new().with(key.clone()).unwrap());
    let layer = JwtAuthLayer::builder(ring.clone())
        .clock(clock.clone())
        .cache(capacity)
        .build()
        .unwrap();
    (ring, layer)
}

#[tokio::test]
async fn retired_key_verifies_within_grace_then_is_refused() {
    let clock = clock();
    let old = Key::generate(Algorithm::ES256).unwrap();
    let old_kid = old.kid().to_owned();
    let ring = KeyRing::new(KeySet::new().with(old.clone()).unwrap());
    for cache in [false, true] {
        let mut b = JwtAuthLayer::builder(ring.clone()).clock(clock.clone());
        if cache {
            b = b.cache(100);
        }
        let layer = b.build().unwrap();
        let mut c = claims();
        c["exp"] = json!(NOW + 100_000);
        let old_token = sign_raw(&old, &header_for(&old), &c);
        assert_eq!(
            call_with(&layer, bearer(&old_token)).await.status(),
            StatusCode::OK
        );

        if !cache {
            // Rotate while serving.
            let new = Key::generate(Algorithm::ES256).unwrap();
            ring.update(|keys| {
                let kid = keys.insert(new.clone())?;
                keys.set_active(&kid)?;
                keys.retire(&old_kid, UNIX_EPOCH + Duration::from_secs(NOW + 3600))
            })
            .unwrap();
            assert_ne!(ring.snapshot().signing_key().unwrap().kid, old_kid);
            let new_token = sign_raw(&new, &header_for(&new), &c);
            assert_eq!(
                call_with(&layer, bearer(&new_token)).await.status(),
                StatusCode::OK
            );
        }
        clock.set(UNIX_EPOCH + Duration::from_secs(NOW + 3600));
        assert_eq!(
            call_with(&layer, bearer(&old_token)).await.status(),
            StatusCode::OK
        );
        clock.set(UNIX_EPOCH + Duration::from_secs(NOW + 3601));
        assert_invalid(call_with(&layer, bearer(&old_token)).await, &old_token).await;
        clock.set(UNIX_EPOCH + Duration::from_secs(NOW));
        // The published JWKS still lists the retired key.
        assert_eq!(ring.snapshot().to_jwks().keys.len(), 2);
    }
}

/// A third-party key source that answers `unchanged_since` naively (equal versions, even 0).
#[derive(Debug)]
struct NaiveSource(KeyRing);

impl KeySource for NaiveSource {
    fn snapshot(&self) -> Arc<KeySet> {
        self.0.snapshot()
    }

    fn unchanged_since(&self, snapshot: KeySetVersion) -> bool {
        self.0.snapshot().version() == snapshot
    }
}

#[tokio::test]
async fn a_cached_token_never_confirmed_is_looked_up_again_whatever_the_source_says() {
    // A token verified with a key in its grace period is cached unconfirmed; a source whose
    // set is then empty (an unfetched remote set, say) has the same "no keys" version. The
    // hit must still look the key up, and refuse.
    let clock = clock();
    let key = Key::generate(Algorithm::ES256).unwrap();
    let ring = KeyRing::new(KeySet::new().with(key.clone()).unwrap());
    ring.update(|keys| keys.retire(key.kid(), UNIX_EPOCH + Duration::from_secs(NOW + 3600)))
        .unwrap();
    let layer = JwtAuthLayer::builder_with_source(NaiveSource(ring.clone()))
        .clock(clock.clone())
        .cache(10)
        .build()
        .unwrap();
    let t = token(&key);
    for _ in 0..2 {
        assert_eq!(call_with(&layer, bearer(&t)).await.status(), StatusCode::OK);
    }
    assert_eq!(layer.cached_tokens(), 1);
    ring.replace(KeySet::new());
    assert_invalid(call_with(&layer, bearer(&t)).await, &t).await;

    // A confirmed key takes the source's word: the hit needs no lookup while it is unchanged.
    let other = Key::generate(Algorithm::ES256).unwrap();
    ring.replace(KeySet::new().with(other.clone()).unwrap());
    let t = token(&other);
    for _ in 0..3 {
        assert_eq!(call_with(&layer, bearer(&t)).await.status(), StatusCode::OK);
    }
    ring.update(|keys| Ok(keys.remove(other.kid()))).unwrap();
    assert_invalid(call_with(&layer, bearer(&t)).await, &t).await;
}

#[tokio::test]
async fn removed_key_is_refused_even_from_the_cache() {
    let key = Key::generate(Algorithm::EdDSA).unwrap();
    let other = Key::generate(Algorithm::EdDSA).unwrap();
    let ring = KeyRing::new(
        KeySet::new()
            .with(key.clone())
            .unwrap()
            .with(other)
            .unwrap(),
    );
    let layer = JwtAuthLayer::builder(ring.clone())
        .clock(clock())
        .cache(10)
        .build()
        .unwrap();
    let t = token(&key);
    assert_eq!(call_with(&layer, bearer(&t)).await.status(), StatusCode::OK);
    assert_eq!(layer.cached_tokens(), 1);
    ring.update(|keys| Ok(keys.remove(key.kid()))).unwrap();
    assert_invalid(call_with(&layer, bearer(&t)).await, &t).await;
}

#[tokio::test]
async fn a_key_retired_or_rebound_after_caching_is_rechecked_on_hits() {
    // The cache remembers the key-set version a token's key was found in; any change of the
    // set (retire, remove, insert) must send the next hit back to the `kid` lookup.
    let clock = clock();
    let key = Key::generate(Algorithm::ES256).unwrap();
    let ring_with = |key: &Key| cached_on_ring(&clock, key, 10);
    let (ring, layer) = ring_with(&key);
    let t = token(&key);
    for _ in 0..3 {
        assert_eq!(call_with(&layer, bearer(&t)).await.status(), StatusCode::OK);
    }
    assert_eq!(layer.cached_tokens(), 1);
    ring.update(|keys| keys.retire(key.kid(), UNIX_EPOCH + Duration::from_secs(NOW + 5)))
        .unwrap();
    assert_eq!(call_with(&layer, bearer(&t)).await.status(), StatusCode::OK);
    clock.set(UNIX_EPOCH + Duration::from_secs(NOW + 6));
    assert_invalid(call_with(&layer, bearer(&t)).await, &t).await;

    // The same kid bound to other key material: the cached verification is not reused.
    clock.set(UNIX_EPOCH + Duration::from_secs(NOW));
    let (ring, layer) = ring_with(&key);
    assert_eq!(call_with(&layer, bearer(&t)).await.status(), StatusCode::OK);
    assert_eq!(call_with(&layer, bearer(&t)).await.status(), StatusCode::OK);
    let other = Key::from_jwk(&{
        let mut jwk = Key::generate(Algorithm::ES256)
            .unwrap()
            .public_jwk()
            .unwrap()
            .clone();
        jwk.common.key_id = Some(key.kid().to_owned());
        jwk
    })
    .unwrap();
    ring.replace(KeySet::new().with(other).unwrap());
    assert_invalid(call_with(&layer, bearer(&t)).await, &t).await;
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

#[tokio::test]
async fn lookup_cached_is_used_only_for_the_same_token_and_layer_and_still_rechecks() {
    let clock = clock();
    let (layer, store) = cached_with_store(&clock, 100);
    let es = &test_keys().es;
    let t = token(es);
    // Not cached yet: nothing left, and the request verifies as usual.
    let (found, request) = looked_up(&layer, bearer(&t));
    assert!(!found);
    assert_eq!(call_with(&layer, request).await.status(), StatusCode::OK);
    let (found, request) = looked_up(&layer, bearer(&t));
    assert!(found);
    let response = call_with(&layer, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(body_text(response).await, "user_1");

    // The header changes after the lookup: the service reads and checks the new token.
    let mut c = claims();
    c["sub"] = json!("user_2");
    c["jti"] = json!("tok_2");
    let other = sign_raw(es, &header_for(es), &c);
    for replacement in [other.clone(), format!("{t}x"), "a.b.c".to_owned()] {
        let (found, mut request) = looked_up(&layer, bearer(&t));
        assert!(found);
        request.headers_mut().insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {replacement}")).unwrap(),
        );
        let response = call_with(&layer, request).await;
        if replacement == other {
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(body_text(response).await, "user_2");
        } else {
            assert_invalid(response, &replacement).await;
        }
    }
    // The header removed after the lookup: a missing token.
    let (_, mut request) = looked_up(&layer, bearer(&t));
    request.headers_mut().remove(header::AUTHORIZATION);
    assert_eq!(
        call_with(&layer, request).await.status(),
        StatusCode::UNAUTHORIZED
    );

    // Another layer (same keys, another audience) never uses this layer's lookup.
    let strict = JwtAuthLayer::builder(keyset())
        .audience("admin-only")
        .clock(clock.clone())
        .cache(100)
        .build()
        .unwrap();
    let (found, request) = looked_up(&layer, bearer(&t));
    assert!(found);
    assert_invalid(call_with(&strict, request).await, &t).await;
    // (and the strict layer never caches that token, so its own lookup finds nothing)
    assert!(!looked_up(&strict, bearer(&t)).0);

    // Revocation and expiry are still checked on a looked-up hit.
    let (found, request) = looked_up(&layer, bearer(&t));
    assert!(found);
    store.revoke_token("tok_1", NOW + 400).await.unwrap();
    assert_invalid(call_with(&layer, request).await, &t).await;
    let (found, request) = looked_up(&layer, bearer(&other));
    assert!(found);
    clock.set(UNIX_EPOCH + Duration::from_secs(NOW + 300 + 30));
    assert_invalid(call_with(&layer, request).await, &other).await;
    assert!(!looked_up(&layer, bearer(&other)).0);
}

#[tokio::test]
async fn lookup_cached_reads_cookie_tokens_too() {
    let layer = builder()
        .token_from(TokenSource::Cookie("at".to_owned()))
        .cache(10)
        .build()
        .unwrap();
    let t = token(&test_keys().ed);
    let request = |value: &str| {
        Request::get("/")
            .header(header::COOKIE, format!("theme=dark; at={value}; lang=en"))
            .body(Full::default())
            .unwrap()
    };
    assert_eq!(
        call_with(&layer, request(&t)).await.status(),
        StatusCode::OK
    );
    let (mut found, mut looked) = looked_up(&layer, request(&t));
    assert!(found);
    assert_eq!(call_with(&layer, looked).await.status(), StatusCode::OK);
    // Same length, one byte changed in the cookie after the lookup: checked afresh.
    let mut forged = t.clone().into_bytes();
    let last = forged.len() - 2;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    (found, looked) = looked_up(&layer, request(&t));
    assert!(found);
    looked.headers_mut().insert(
        header::COOKIE,
        HeaderValue::from_str(&format!("theme=dark; at={forged}; lang=en")).unwrap(),
    );
    assert_invalid(call_with(&layer, looked).await, &forged).await;
}

#[tokio::test]
async fn cache_hit_still_honours_exp_and_revocation() {
    let clock = clock();
    let (layer, store) = cached_with_store(&clock, 1000);
    let es = &test_keys().es;
    let t = token(es);
    for _ in 0..3 {
        assert_eq!(call_with(&layer, bearer(&t)).await.status(), StatusCode::OK);
    }
    assert_eq!(layer.cached_tokens(), 1);
    // Revoking the jti refuses the cached token at once.
    store.revoke_token("tok_1", NOW + 300).await.unwrap();
    assert_invalid(call_with(&layer, bearer(&t)).await, &t).await;

    // Another token of the same subject, then a "log out everywhere" watermark.
    let mut c = claims();
    c["jti"] = json!("tok_2");
    let t2 = sign_raw(es, &header_for(es), &c);
    assert_eq!(
        call_with(&layer, bearer(&t2)).await.status(),
        StatusCode::OK
    );
    store
        .revoke_subject("user_1", NOW, NOW + 400)
        .await
        .unwrap();
    assert_invalid(call_with(&layer, bearer(&t2)).await, &t2).await;
    // A token issued at the watermark or later is fine.
    c["jti"] = json!("tok_3");
    c["iat"] = json!(NOW);
    let t3 = sign_raw(es, &header_for(es), &c);
    assert_eq!(
        call_with(&layer, bearer(&t3)).await.status(),
        StatusCode::OK
    );

    // Expiry is checked on hits: the cached t3 dies at exp + leeway.
    clock.set(UNIX_EPOCH + Duration::from_secs(NOW + 300 + 29));
    assert_eq!(
        call_with(&layer, bearer(&t3)).await.status(),
        StatusCode::OK
    );
    clock.set(UNIX_EPOCH + Duration::from_secs(NOW + 300 + 30));
    assert_invalid(call_with(&layer, bearer(&t3)).await, &t3).await;
}

/// The cache finds entries by the token's length and last bytes (its signature's end); a
/// hit needs the whole token to match. A token with a cached token's signature and length
/// but another payload (same length: `user_1` → `user_2`) must be verified, and refused.
#[tokio::test]
async fn same_signature_other_payload_is_not_a_cache_hit() {
    let layer = JwtAuthLayer::builder(keyset())
        .clock(clock())
        .cache(16)
        .build()
        .unwrap();
    for key in [&test_keys().es, &test_keys().rs] {
        let good = token(key);
        assert_eq!(
            call_with(&layer, bearer(&good)).await.status(),
            StatusCode::OK
        );
        let (head, rest) = good.split_once('.').unwrap();
        let (payload, signature) = rest.split_once('.').unwrap();
        let mut other = claims();
        other["sub"] = json!("user_2");
        let forged_payload = b64url(other.to_string().as_bytes());
        assert_eq!(forged_payload.len(), payload.len());
        let forged = format!("{head}.{forged_payload}.{signature}");
        assert_eq!(forged.len(), good.len());
        assert_invalid(call_with(&layer, bearer(&forged)).await, &forged).await;
        assert!(!layer.is_cached(bearer(&forged).headers()));
        // The genuine token is still a hit, for its own subject.
        assert!(layer.is_cached(bearer(&good).headers()));
        let response = call_with(&layer, bearer(&good)).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(layer.cached_tokens(), 2);
}

#[tokio::test]
async fn cache_is_bounded() {
    let layer = JwtAuthLayer::builder(keyset())
        .clock(clock())
        .cache(16)
        .build()
        .unwrap();
    let es = &test_keys().es;
    for i in 0..100 {
        let mut c = claims();
        c["jti"] = json!(format!("tok_{i}"));
        let t = sign_raw(es, &header_for(es), &c);
        assert_eq!(call_with(&layer, bearer(&t)).await.status(), StatusCode::OK);
        assert!(layer.cached_tokens() <= 16);
    }
}

/// A store that answers asynchronously (boxed), optionally failing; counts its checks.
#[derive(Debug, Clone, Default)]
struct SlowStore {
    fail: bool,
    revoked: bool,
    /// What `generation()` reports (the default: none).
    generation: Option<u64>,
    checks: Arc<std::sync::atomic::AtomicUsize>,
}

impl RevocationStore for SlowStore {
    fn revoke_token(&self, _: &str, _: u64) -> StoreFuture<()> {
        StoreFuture::ready(Ok(()))
    }
    fn revoke_subject(&self, _: &str, _: u64, _: u64) -> StoreFuture<()> {
        StoreFuture::ready(Ok(()))
    }
    fn revoke_session(&self, _: &str, _: u64) -> StoreFuture<()> {
        StoreFuture::ready(Ok(()))
    }
    fn generation(&self) -> Option<u64> {
        self.generation
    }
    fn check(&self, _: TokenRef<'_>) -> StoreFuture<bool> {
        self.checks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (fail, revoked) = (self.fail, self.revoked);
        StoreFuture::boxed(async move {
            tokio::task::yield_now().await;
            if fail {
                Err(StoreError::Timeout)
            } else {
                Ok(revoked)
            }
        })
    }
}

#[tokio::test]
async fn async_store_paths_call_refuse_or_fail_closed() {
    let t = token(&test_keys().es);
    let with = |fail, revoked| {
        builder()
            .revocation(SlowStore {
                fail,
                revoked,
                ..SlowStore::default()
            })
            .build()
            .unwrap()
    };
    assert_eq!(
        call_with(&with(false, false), bearer(&t)).await.status(),
        StatusCode::OK
    );
    assert_invalid(call_with(&with(false, true), bearer(&t)).await, &t).await;
    let response = call_with(&with(true, false), bearer(&t)).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().get(header::WWW_AUTHENTICATE).is_none());
    assert_problem(response, "unavailable", &t).await;
}

/// An asynchronous store that reports a generation: its awaited "not revoked" answer is
/// remembered like a ready one, so a cached token is not checked again until it changes.
#[tokio::test]
async fn an_awaited_answer_is_remembered_at_the_generation() {
    let t = token(&test_keys().es);
    let store = SlowStore {
        generation: Some(7),
        ..SlowStore::default()
    };
    let checks = store.checks.clone();
    let layer = builder().revocation(store).cache(16).build().unwrap();
    for _ in 0..3 {
        assert_eq!(call_with(&layer, bearer(&t)).await.status(), StatusCode::OK);
    }
    assert_eq!(checks.load(std::sync::atomic::Ordering::Relaxed), 1);
}

#[tokio::test]
async fn a_revoked_cached_token_is_refused_cheaply_and_no_longer_counts_as_cached() {
    // Synchronous store: the token is cached, then revoked.
    let clock = clock();
    let (layer, store) = cached_with_store(&clock, 100);
    let t = token(&test_keys().es);
    assert_eq!(call_with(&layer, bearer(&t)).await.status(), StatusCode::OK);
    assert!(looked_up(&layer, bearer(&t)).0);
    store.revoke_token("tok_1", NOW + 400).await.unwrap();
    assert_invalid(call_with(&layer, bearer(&t)).await, &t).await;
    for _ in 0..3 {
        // A limiter placed before the layer must not take it for a signed-in user's token
        // (so its 401s are counted), and the layer keeps refusing it.
        let (found, request) = looked_up(&layer, bearer(&t));
        assert!(!found, "a revoked token must not be reported cached");
        assert!(!layer.is_cached(request.headers()));
        assert_invalid(call_with(&layer, request).await, &t).await;
    }
    // Kept (refused from the cache, without signature work), not dropped and re-verified.
    assert_eq!(layer.cached_tokens(), 1);

    // Asynchronous store: the "revoked" answer marks the entry too, and the store is not
    // asked again for that token.
    let counting = SlowStore {
        revoked: true,
        ..SlowStore::default()
    };
    let layer = builder()
        .cache(100)
        .revocation(counting.clone())
        .build()
        .unwrap();
    for _ in 0..3 {
        assert_invalid(call_with(&layer, bearer(&t)).await, &t).await;
        assert!(!layer.is_cached(bearer(&t).headers()));
    }
    assert_eq!(
        counting.checks.load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn reloading_the_same_key_keeps_cached_tokens_valid() {
    let clock = clock();
    let key = Key::generate(Algorithm::ES256).unwrap();
    let (ring, layer) = cached_on_ring(&clock, &key, 64);
    let t = token(&key);
    assert_eq!(call_with(&layer, bearer(&t)).await.status(), StatusCode::OK);
    // The same public key loaded again (a JWKS refresh, a reload from disk): the kid now
    // names another `Key` instance with the same material.
    let reloaded = Key::from_jwk(key.public_jwk().unwrap()).unwrap();
    assert_eq!(reloaded.kid(), key.kid());
    ring.replace(KeySet::new().with(reloaded).unwrap());
    for _ in 0..3 {
        assert_eq!(call_with(&layer, bearer(&t)).await.status(), StatusCode::OK);
    }
    assert_eq!(layer.cached_tokens(), 1);
    // (Other material under the same kid is refused: see
    // a_key_retired_or_rebound_after_caching_is_rechecked_on_hits.)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotation_and_revocation_hold_under_parallel_requests() {
    let clock = clock();
    let old = Key::generate(Algorithm::ES256).unwrap();
    let ring = KeyRing::new(KeySet::new().with(old.clone()).unwrap());
    let store = MemoryRevocationStore::builder()
        .clock(clock.clone())
        .build()
        .unwrap();
    let layer = JwtAuthLayer::builder(ring.clone())
        .clock(clock.clone())
        .cache(64)
        .revocation(store.clone())
        .build()
        .unwrap();
    let tokens: Vec<String> = (0..16)
        .map(|i| {
            let mut c = claims();
            c["jti"] = json!(format!("tok_{i}"));
            sign_raw(&old, &header_for(&old), &c)
        })
        .collect();
    let tokens = Arc::new(tokens);

    // 8 tasks hammer the layer while the key is rotated (old one kept for an hour).
    let mut tasks = Vec::new();
    for t in 0..8 {
        let (layer, tokens) = (layer.clone(), tokens.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..200 {
                let token = &tokens[(t + i) % tokens.len()];
                assert_eq!(
                    call_with(&layer, bearer(token)).await.status(),
                    StatusCode::OK
                );
            }
        }));
    }
    for _ in 0..20 {
        let new = Key::generate(Algorithm::ES256).unwrap();
        ring.update(|keys| {
            keys.insert(new)?;
            Ok(())
        })
        .unwrap();
        tokio::task::yield_now().await;
    }
    ring.update(|keys| keys.retire(old.kid(), UNIX_EPOCH + Duration::from_secs(NOW + 3600)))
        .unwrap();
    for task in tasks {
        task.await.unwrap();
    }

    // Revoking under load: every later request with that jti is refused, hit or not.
    store.revoke_token("tok_3", NOW + 400).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (layer, tokens) = (layer.clone(), tokens.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..50 {
                let status = call_with(&layer, bearer(&tokens[3])).await.status();
                assert_eq!(status, StatusCode::UNAUTHORIZED);
                let status = call_with(&layer, bearer(&tokens[4])).await.status();
                assert_eq!(status, StatusCode::OK);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    // Past the grace time the old key's tokens die everywhere.
    clock.set(UNIX_EPOCH + Duration::from_secs(NOW + 3601));
    let mut c = claims();
    c["exp"] = json!(NOW + 10_000);
    let late = sign_raw(&old, &header_for(&old), &c);
    assert_eq!(
        call_with(&layer, bearer(&late)).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

// ---------------------------------------------------------------- optional, guards, gRPC

#[tokio::test]
async fn optional_mode_lets_anonymous_through_but_not_invalid_tokens() {
    let layer = builder().optional().build().unwrap();
    let anonymous = call_with(&layer, Request::new(Full::default())).await;
    assert_eq!(anonymous.status(), StatusCode::OK);
    assert_eq!(body_text(anonymous).await, "anonymous");
    let t = token(&test_keys().es);
    assert_eq!(
        body_text(call_with(&layer, bearer(&t)).await).await,
        "user_1"
    );
    let forged = format!("{}x", &t[..t.len() - 1]);
    assert_invalid(call_with(&layer, bearer(&forged)).await, &forged).await;
}

async fn guarded(
    guard: impl tower::Layer<
        tower::util::ServiceFn<
            fn(
                Request<Full<Bytes>>,
            ) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>>,
        >,
        Service = tower_shield::jwt::GuardService<
            tower::util::ServiceFn<
                fn(
                    Request<Full<Bytes>>,
                )
                    -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>>,
            >,
        >,
    >,
    req: Request<Full<Bytes>>,
) -> Response<ShieldBody<ShieldBody<Full<Bytes>>>> {
    fn ok(
        _: Request<Full<Bytes>>,
    ) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>> {
        std::future::ready(Ok(Response::new(Full::default())))
    }
    let handler: fn(Request<Full<Bytes>>) -> _ = ok;
    ServiceBuilder::new()
        .layer(builder().build().unwrap())
        .layer(guard)
        .service(service_fn(handler))
        .oneshot(req)
        .await
        .unwrap()
}

#[tokio::test]
async fn role_and_scope_guards() {
    let es = &test_keys().es;
    let user = token(es);
    let mut c = claims();
    c["role"] = json!("admin");
    let admin = sign_raw(es, &header_for(es), &c);

    let r = guarded(
        RequireRoleLayer::any_of(["admin", "premium"]),
        bearer(&user),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        r.headers()[header::WWW_AUTHENTICATE],
        "Bearer realm=\"api\", error=\"insufficient_scope\""
    );
    let r = guarded(
        RequireRoleLayer::any_of(["admin", "premium"]),
        bearer(&admin),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);

    let r = guarded(
        RequireScopeLayer::all_of(["items:read", "items:write"]),
        bearer(&user),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = guarded(
        RequireScopeLayer::all_of(["items:read", "admin"]),
        bearer(&user),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = guarded(
        RequireScopeLayer::any_of(["admin", "items:read"]),
        bearer(&user),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);

    // A guard without an authenticating layer in front: 401, not 403.
    let service = ServiceBuilder::new()
        .layer(RequireRoleLayer::any_of(["admin"]))
        .service(service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
        }));
    let r = service.oneshot(Request::new(())).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        RequireRoleLayer::any_of(["a"])
            .with_realm("bad\"realm")
            .is_err()
    );
}

#[tokio::test]
async fn grpc_calls_get_status_codes() {
    let grpc = |token: Option<&str>| {
        let mut b = Request::post("/svc/Method").header(header::CONTENT_TYPE, "application/grpc");
        if let Some(t) = token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        b.body(Full::default()).unwrap()
    };
    let layer = builder().build().unwrap();
    let r = call_with(&layer, grpc(None)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["grpc-status"], "16");
    let r = call_with(&layer, grpc(Some("a.b.c"))).await;
    assert_eq!(r.headers()["grpc-status"], "16");
    let r = guarded(
        RequireRoleLayer::any_of(["admin"]),
        grpc(Some(&token(&test_keys().es))),
    )
    .await;
    assert_eq!(r.headers()["grpc-status"], "7");
}

#[test]
fn builder_refuses_dangerous_configuration() {
    assert!(
        JwtAuthLayer::builder(KeySet::new()).build().is_err(),
        "no keys"
    );
    assert!(builder().leeway(Duration::from_secs(3600)).build().is_err());
    assert!(builder().max_token_len(10).build().is_err());
    assert!(builder().realm("a\"b").build().is_err());
    assert!(builder().realm("").build().is_err());
    assert!(builder().cache(0).build().is_err());
    assert!(
        builder()
            .token_from(TokenSource::Cookie("a b".into()))
            .build()
            .is_err()
    );
    assert!(
        builder()
            .expect_type(TokenType::header_typ(Vec::<String>::new()))
            .build()
            .is_err()
    );
    assert!(format!("{:?}", builder().build().unwrap()).len() < 2000);
    // Debug never prints key material.
    let debug = format!("{:?}", keyset());
    assert!(!debug.contains("0123456789abcdef"));
}

#[test]
fn hmac_and_rsa_key_sizes_are_enforced() {
    assert!(Key::hmac(Algorithm::HS256, &[1; 31]).is_err());
    let small = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    drop(small); // 2048 is the floor aws-lc-rs can generate; smaller keys come from JWKs:
    let jwk = json!({"kty":"RSA","alg":"RS256","n": b64url(&[0xc5; 128]),"e":"AQAB"});
    let jwks = json!({ "keys": [jwk] }).to_string();
    assert!(KeySet::from_jwks(&jwks).is_err(), "1024-bit RSA refused");
    let no_alg =
        json!({ "keys": [{"kty":"OKP","crv":"Ed25519","x": b64url(&[9; 32])}] }).to_string();
    assert!(KeySet::from_jwks(&no_alg).is_err(), "alg required");
}

#[test]
fn jwks_publishes_public_parts_only() {
    let jwks = serde_json::to_value(keyset().to_jwks()).unwrap();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 4, "HMAC key not published");
    for key in keys {
        assert_eq!(key["use"], "sig");
        assert!(key["kid"].is_string() && key["alg"].is_string());
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(key.get(private).is_none());
        }
    }
    // Round trip: the published set verifies tokens signed by the private keys.
    let public = KeySet::from_jwks(&jwks.to_string()).unwrap();
    assert!(public.signing_key().is_none());
    assert_eq!(public.len(), 4);
}

#[tokio::test]
async fn public_keys_from_jwks_verify_tokens() {
    let jwks = serde_json::to_string(&keyset().to_jwks()).unwrap();
    let layer = JwtAuthLayer::builder(KeySet::from_jwks(&jwks).unwrap())
        .clock(clock())
        .build()
        .unwrap();
    let k = test_keys();
    for key in [&k.rs, &k.es, &k.ed, &k.ps] {
        let t = token(key);
        assert_eq!(call_with(&layer, bearer(&t)).await.status(), StatusCode::OK);
    }
}

// ---------------------------------------------------------------- axum extractors

#[cfg(feature = "axum")]
mod axum_extractors {
    use super::*;
    use axum::Router;
    use axum::routing::get;

    async fn me(claims: Verified<Claims>) -> String {
        claims.sub.clone()
    }

    async fn maybe(claims: Option<Verified<Claims>>) -> String {
        claims.map_or_else(|| "anonymous".to_owned(), |c| c.sub.clone())
    }

    #[tokio::test]
    async fn required_and_optional_extractors() {
        let app = Router::new()
            .route("/me", get(me))
            .route("/maybe", get(maybe))
            .layer(builder().optional().build().unwrap());
        let t = token(&test_keys().es);
        let req = |path: &str, token: Option<&str>| {
            let mut b = Request::get(path);
            if let Some(t) = token {
                b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
            }
            b.body(axum::body::Body::empty()).unwrap()
        };
        let text = |r: axum::response::Response| async move {
            String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
        };
        let r = app.clone().oneshot(req("/me", Some(&t))).await.unwrap();
        assert_eq!(text(r).await, "user_1");
        let r = app.clone().oneshot(req("/maybe", None)).await.unwrap();
        assert_eq!(text(r).await, "anonymous");
        let r = app.clone().oneshot(req("/me", None)).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
    }
}

// ---------------------------------------------------------------- hostile input, generated

mod hostile {
    use super::*;
    use proptest::prelude::*;

    fn token_like() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..2048),
            "[A-Za-z0-9_.=+/-]{0,600}".prop_map(String::into_bytes),
            (
                "[A-Za-z0-9_-]{0,200}",
                "[A-Za-z0-9_-]{0,400}",
                "[A-Za-z0-9_-]{0,400}"
            )
                .prop_map(|(a, b, c)| format!("{a}.{b}.{c}").into_bytes()),
            // Real header, random payload and signature.
            ("[A-Za-z0-9_-]{0,400}", "[A-Za-z0-9_-]{0,400}").prop_map(|(b, c)| {
                let h = b64url(header_for(&test_keys().es).to_string().as_bytes());
                format!("{h}.{b}.{c}").into_bytes()
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn random_tokens_are_refused_with_401_never_a_panic(raw in token_like(), scheme in "(?i:bearer) {1,2}") {
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let mut value = scheme.into_bytes();
            value.extend_from_slice(&raw);
            let Ok(value) = HeaderValue::from_bytes(&value) else { return Ok(()) };
            let mut req = Request::new(Full::default());
            req.headers_mut().insert(header::AUTHORIZATION, value);
            let layer = builder().build().unwrap();
            let response = runtime.block_on(call_with(&layer, req));
            prop_assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
            prop_assert_eq!(&response.headers()[header::CONTENT_TYPE], "application/problem+json");
        }
    }
}
