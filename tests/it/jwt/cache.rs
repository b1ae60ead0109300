//! The verified-token cache: `lookup_cached` only for the same token and layer, hits that
//! still check expiry and revocation, no hit for another payload with the same signature,
//! and a bounded size.

use http::HeaderValue;
use tower_shield::jwt::{RevocationStore, TokenSource};

use super::*;

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
