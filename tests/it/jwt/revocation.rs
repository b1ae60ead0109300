//! Revocation: sessions (`sid`), tokens (`jti`) and subjects, with synchronous and
//! asynchronous stores, failing closed when the store fails, also under parallel requests
//! and a key rotation.

use std::sync::Arc;

use tower_shield::StoreError;
use tower_shield::jwt::revocation::{StoreFuture, TokenRef};
use tower_shield::jwt::{KeyRing, RevocationStore};

use super::*;

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
