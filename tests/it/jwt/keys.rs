//! Keys: rotation with a grace period for the retired key, removal and rebinding of a `kid`
//! (also under cached tokens), reloading the same key, third-party key sources, key sizes,
//! the published JWKS, and the builder's refusal of unsafe configuration.

use std::sync::Arc;

use tower_shield::jwt::keys::{KeySetVersion, KeySource};
use tower_shield::jwt::{KeyRing, TokenSource, TokenType};

use super::*;

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
