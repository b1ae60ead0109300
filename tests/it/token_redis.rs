//! The token lifecycle across processes and through a Redis outage (needs `REDIS_URL`;
//! skipped with a line when unset, a failure when set and unreachable).
//!
//! - Two `RefreshTokens` instances (two "services", each with its own connection and its own
//!   verifying layer) sharing one Redis: a logout, a "log out everywhere" or a detected reuse
//!   on one is refused on the other at once.
//! - Redis down: a dedicated `redis-server` this test starts on a free port (never 6379) is
//!   killed, then stopped with SIGSTOP (slower than the per-call timeout): sign-in, refresh,
//!   logout and bearer checks fail closed with 503; after a restart everything recovers.

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use jsonwebtoken::Algorithm;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_shield::clock::ManualClock;
use tower_shield::jwt::revocation::RedisRevocationStore;
use tower_shield::jwt::{JwtAuthLayer, Key, KeyRing, KeySet, RevocationStore};
use tower_shield::redis::{KeyPrefix, RedisConnection, RedisOptions};
use tower_shield::tokens::store::RedisRefreshStore;
use tower_shield::tokens::{RefreshError, RefreshTokens, TokenIssuer};

use crate::common::redis_server::OwnRedis;

fn ring() -> KeyRing {
    static KEY: OnceLock<Key> = OnceLock::new();
    let key = KEY
        .get_or_init(|| Key::generate(Algorithm::ES256).unwrap())
        .clone();
    KeyRing::new(KeySet::new().with(key).unwrap())
}

struct Service {
    tokens: RefreshTokens<RedisRefreshStore>,
    layer: JwtAuthLayer,
}

/// One service instance: its own connection, stores, issuer and verifying layer, on the
/// shared keys, clock and prefix.
async fn service(url: &str, prefix: &KeyPrefix, clock: &ManualClock) -> Service {
    let conn = RedisConnection::connect(url)
        .await
        .expect("Redis is unreachable");
    service_on(conn, prefix, clock)
}

fn service_on(conn: RedisConnection, prefix: &KeyPrefix, clock: &ManualClock) -> Service {
    let keys = ring();
    let revocation: Arc<dyn RevocationStore> =
        Arc::new(RedisRevocationStore::new(conn.clone(), prefix.clone()));
    let issuer = TokenIssuer::builder(keys.clone())
        .issuer("https://auth.test")
        .audience("api")
        .clock(clock.clone())
        .build()
        .unwrap();
    let tokens = RefreshTokens::builder(issuer, RedisRefreshStore::new(conn, prefix.clone()))
        .shared_revocation(revocation.clone())
        .build()
        .unwrap();
    let layer = JwtAuthLayer::builder(keys)
        .issuer("https://auth.test")
        .audience("api")
        .clock(clock.clone())
        .revocation(revocation)
        .build()
        .unwrap();
    Service { tokens, layer }
}

async fn bearer(layer: &JwtAuthLayer, token: &str) -> StatusCode {
    let service = ServiceBuilder::new()
        .layer(layer.clone())
        .service(service_fn(|_req: Request<String>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
    let request = Request::get("/api/me")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(String::new())
        .unwrap();
    service.oneshot(request).await.unwrap().status()
}

fn redis_url(test: &str) -> Option<String> {
    match std::env::var("REDIS_URL") {
        Ok(url) => Some(url),
        Err(_) => {
            eprintln!("REDIS_URL is not set: skipping {test}");
            None
        }
    }
}

fn unique_prefix() -> KeyPrefix {
    KeyPrefix::new(format!("ts:test:{}:", uuid::Uuid::new_v4())).unwrap()
}

#[tokio::test]
async fn two_instances_share_logout_and_reuse_detection() {
    let Some(url) = redis_url("two_instances_share_logout_and_reuse_detection") else {
        return;
    };
    let prefix = unique_prefix();
    let clock = ManualClock::now();
    let a = service(&url, &prefix, &clock).await;
    let b = service(&url, &prefix, &clock).await;

    // Sign in on A, refresh on B: one service.
    let login = a.tokens.issue_pair("user_1", "user", &()).await.unwrap();
    let on_b = b.tokens.rotate(login.refresh_token.as_str()).await.unwrap();
    assert_eq!(on_b.family, login.family);
    assert_eq!(bearer(&b.layer, &login.access_token).await, StatusCode::OK);

    // Logout on A is refused on B at once.
    assert!(a.tokens.logout(on_b.refresh_token.as_str()).await.unwrap());
    assert!(matches!(
        b.tokens.rotate(on_b.refresh_token.as_str()).await,
        Err(RefreshError::Revoked)
    ));

    // Reuse detected on B revokes the family for A.
    let login = a.tokens.issue_pair("user_1", "user", &()).await.unwrap();
    let next = a.tokens.rotate(login.refresh_token.as_str()).await.unwrap();
    clock.advance(Duration::from_secs(3));
    let err = b
        .tokens
        .rotate(login.refresh_token.as_str())
        .await
        .unwrap_err();
    assert!(err.is_reuse(), "{err:?}");
    assert!(matches!(
        a.tokens.rotate(next.refresh_token.as_str()).await,
        Err(RefreshError::Revoked)
    ));

    // A concurrent refresh on both instances within the grace window: both succeed.
    let login = a.tokens.issue_pair("user_1", "user", &()).await.unwrap();
    let (x, y) = tokio::join!(
        a.tokens.rotate(login.refresh_token.as_str()),
        b.tokens.rotate(login.refresh_token.as_str())
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.family, y.family);

    // Access tokens: a jti denied on A is refused by B's layer; "log out everywhere" on B
    // kills A's outstanding access tokens.
    assert_eq!(bearer(&b.layer, &x.access_token).await, StatusCode::OK);
    a.tokens
        .revoke_access_token(&x.jti, x.access_expires_at)
        .await
        .unwrap();
    assert_eq!(
        bearer(&b.layer, &x.access_token).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(bearer(&a.layer, &y.access_token).await, StatusCode::OK);
    assert!(b.tokens.logout_everywhere("user_1").await.unwrap() >= 1);
    assert_eq!(
        bearer(&a.layer, &y.access_token).await,
        StatusCode::UNAUTHORIZED
    );
    assert!(matches!(
        a.tokens.rotate(y.refresh_token.as_str()).await,
        Err(RefreshError::Revoked)
    ));
}

fn status_of(err: &RefreshError) -> StatusCode {
    let response: Response<Bytes> = err.refusal().for_request(&Request::new(()));
    response.status()
}

/// Retries `attempt` until it succeeds (the connection reconnects in the background).
async fn eventually<T, F, Fut>(mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, RefreshError>>,
{
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match attempt().await {
            Ok(value) => return value,
            Err(err) => {
                assert!(err.is_store_error(), "{err:?}");
                assert!(Instant::now() < deadline, "no recovery: {err:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

#[tokio::test]
async fn redis_down_fails_closed_with_503_and_recovers() {
    if redis_url("redis_down_fails_closed_with_503_and_recovers").is_none() {
        return;
    }
    let mut server = OwnRedis::start();
    let conn = RedisConnection::connect_with(
        &server.url(),
        RedisOptions::builder()
            .call_timeout(Duration::from_millis(100))
            .reconnect_max_delay(Duration::from_millis(200))
            .build()
            .unwrap(),
    )
    .await
    .unwrap();
    let clock = ManualClock::now();
    let svc = service_on(conn, &unique_prefix(), &clock);
    let login = svc.tokens.issue_pair("user_1", "user", &()).await.unwrap();
    assert_eq!(
        bearer(&svc.layer, &login.access_token).await,
        StatusCode::OK
    );

    // Slower than the per-call timeout: the server is frozen.
    server.signal("-STOP");
    let started = Instant::now();
    let err = svc
        .tokens
        .rotate(login.refresh_token.as_str())
        .await
        .unwrap_err();
    assert!(
        matches!(err, RefreshError::Store(tower_shield::StoreError::Timeout)),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(1_000));
    assert_eq!(status_of(&err), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        bearer(&svc.layer, &login.access_token).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "bearer checks fail closed"
    );
    server.signal("-CONT");
    // The frozen calls were abandoned, not lost: the family still works (the rotation
    // that timed out may or may not have happened; its repeat is within the grace window).
    let next = eventually(|| svc.tokens.rotate(login.refresh_token.as_str())).await;
    assert_eq!(next.family, login.family);

    // Down: every operation that needs the stores answers 503.
    server.stop();
    let err = svc
        .tokens
        .issue_pair("user_1", "user", &())
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), StatusCode::SERVICE_UNAVAILABLE, "{err:?}");
    let err = svc
        .tokens
        .rotate(next.refresh_token.as_str())
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), StatusCode::SERVICE_UNAVAILABLE, "{err:?}");
    let err = svc
        .tokens
        .logout(next.refresh_token.as_str())
        .await
        .unwrap_err();
    assert_eq!(status_of(&err), StatusCode::SERVICE_UNAVAILABLE, "{err:?}");
    let err = svc.tokens.logout_everywhere("user_1").await.unwrap_err();
    assert_eq!(status_of(&err), StatusCode::SERVICE_UNAVAILABLE, "{err:?}");
    assert_eq!(
        bearer(&svc.layer, &next.access_token).await,
        StatusCode::SERVICE_UNAVAILABLE
    );

    // Back (empty: no persistence): sign-in and refresh work again on the same connection.
    let server = OwnRedis::start_on(server.port);
    let again = eventually(|| svc.tokens.issue_pair("user_1", "user", &())).await;
    let rotated = svc
        .tokens
        .rotate(again.refresh_token.as_str())
        .await
        .unwrap();
    assert_eq!(rotated.family, again.family);
    assert_eq!(
        bearer(&svc.layer, &rotated.access_token).await,
        StatusCode::OK
    );
    // The old family was in the lost data: refused, never waved through.
    assert!(matches!(
        svc.tokens.rotate(next.refresh_token.as_str()).await,
        Err(RefreshError::Unknown)
    ));
    drop(server);
}
