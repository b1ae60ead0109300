//! The known JWT attacks (`alg: none`, algorithm confusion, hostile `kid`s and key URLs,
//! `crit`, duplicate members, forged, truncated or psychic signatures), claims out of their
//! window or for another issuer, audience or token type, malformed tokens and `Authorization`
//! headers: each refused with a 401 that echoes nothing of the token. And generated hostile
//! input.

use http::HeaderValue;
use tower_shield::jwt::TokenType;

use super::*;

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
