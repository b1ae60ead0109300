//! A dedicated redis-server, stopped and started again mid-run: each failure policy is
//! honoured, nothing panics, and the layer recovers by itself. Also: exactly one round trip
//! per decision, and `NOSCRIPT` recovery. Skipped without `REDIS_URL` (like every Redis test);
//! never touches the shared server.

use std::time::{Duration, Instant};

use http::StatusCode;
use tower::{Layer, ServiceExt};
use tower_shield::rate_limit::{
    FailurePolicy, FallbackStore, MemoryStore, Policy, Quota, RateKey, RateLimitLayer,
    RateLimitStore, RedisStore,
};
use tower_shield::redis::{RedisConnection, RedisOptions};

use crate::common::redis_server::OwnRedis;
use crate::rate_limit_support::{self, Echo, redis_url, request};

async fn connect(url: &str) -> RedisConnection {
    RedisConnection::connect_with(
        url,
        RedisOptions::builder()
            .call_timeout(Duration::from_millis(100))
            .reconnect_max_delay(Duration::from_millis(200))
            .build()
            .unwrap(),
    )
    .await
    .unwrap()
}

async fn commandstats(url: &str) -> (u64, u64) {
    let conn = connect(url).await;
    let info: String = conn
        .query(redis::cmd("INFO").arg("commandstats"))
        .await
        .unwrap();
    let calls = |name: &str| {
        info.lines()
            .find(|l| l.starts_with(&format!("cmdstat_{name}:")))
            .and_then(|l| l.split("calls=").nth(1))
            .and_then(|l| l.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0u64)
    };
    let total = info
        .lines()
        .filter(|l| l.starts_with("cmdstat_"))
        .filter(|l| !l.starts_with("cmdstat_info:"))
        .map(|l| {
            l.split("calls=")
                .nth(1)
                .and_then(|l| l.split(',').next())
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum();
    (calls("evalsha"), total)
}

#[tokio::test]
async fn one_round_trip_per_decision_and_noscript_reload() {
    if redis_url("one_round_trip_per_decision_and_noscript_reload").is_none() {
        return;
    }
    let redis = OwnRedis::start();
    let store = RedisStore::builder(connect(&redis.url()).await)
        .deny_cache(0)
        .build()
        .unwrap();
    let limiter = store.limiter("rt", &Quota::per_minute(1000));
    // Load the script once.
    let key = RateKey::ip("192.0.2.40".parse().unwrap());
    store.check(&limiter, &key, 1).await.unwrap();
    let (evalsha_before, total_before) = commandstats(&redis.url()).await;
    for i in 0..100u32 {
        let key = RateKey::ip(std::net::IpAddr::V4(i.into()));
        assert!(store.check(&limiter, &key, 1).await.unwrap().allowed);
    }
    let (evalsha_after, total_after) = commandstats(&redis.url()).await;
    assert_eq!(evalsha_after - evalsha_before, 100);
    // INFO itself is excluded; the only other commands are the ones the script ran inside
    // (TIME, GET, SET are counted by commandstats too: 3 per decision) and the client's
    // connection setup for the stats connection.
    let per_decision = (total_after - total_before) as f64 / 100.0;
    assert!(per_decision < 5.0, "{per_decision} commands per decision");

    // After SCRIPT FLUSH (as after a restart), EVALSHA gets NOSCRIPT and reloads.
    let _: () = store
        .connection()
        .query(redis::cmd("SCRIPT").arg("FLUSH"))
        .await
        .unwrap();
    assert!(store.check(&limiter, &key, 1).await.unwrap().allowed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_policies_and_recovery() {
    async fn get<St: RateLimitStore>(
        svc: &tower_shield::rate_limit::RateLimitService<Echo, St>,
    ) -> http::Response<tower_shield::ShieldBody<rate_limit_support::Body>> {
        svc.clone()
            .oneshot(request("/", "192.0.2.50:1"))
            .await
            .unwrap()
    }
    if redis_url("outage_policies_and_recovery").is_none() {
        return;
    }
    let mut redis = OwnRedis::start();
    let url = redis.url();
    let redis_store = RedisStore::builder(connect(&url).await)
        .deny_cache(0)
        .build()
        .unwrap();
    let fallback = FallbackStore::with_probe_interval(
        redis_store.clone(),
        MemoryStore::new(),
        Duration::from_millis(100),
    );
    let policy = || Policy::named("api").quota(Quota::per_minute(1000));
    let fallback_layer = RateLimitLayer::builder(fallback.clone())
        .policy(policy())
        .build()
        .unwrap();
    let open_layer = RateLimitLayer::builder(redis_store.clone())
        .policy(policy())
        .on_store_error(FailurePolicy::FailOpen)
        .build()
        .unwrap();
    let closed_layer = RateLimitLayer::builder(redis_store.clone())
        .policy(policy())
        .on_store_error(FailurePolicy::FailClosed)
        .build()
        .unwrap();
    let fallback_svc = fallback_layer.clone().layer(Echo::default());
    let open_svc = open_layer.clone().layer(Echo::default());
    let closed_svc = closed_layer.clone().layer(Echo::default());
    // Healthy.
    assert_eq!(get(&fallback_svc).await.status(), StatusCode::OK);
    assert_eq!(get(&closed_svc).await.status(), StatusCode::OK);
    assert!(!fallback.stats().degraded);

    // Redis goes away.
    redis.stop();
    let started = Instant::now();
    for _ in 0..20 {
        let r = get(&fallback_svc).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(
            r.headers().contains_key("ratelimit"),
            "fallback decides, with fields"
        );
        let r = get(&open_svc).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert!(!r.headers().contains_key("ratelimit"));
        let r = get(&closed_svc).await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    }
    // No request waited long on the dead server.
    assert!(
        started.elapsed() < Duration::from_secs(20 * 3 / 4 + 5),
        "{:?}",
        started.elapsed()
    );
    let stats = fallback.stats();
    assert!(stats.degraded);
    assert_eq!(stats.switches, 1);
    assert!(stats.fallback_decisions >= 20);
    assert!(open_layer.stats().failed_open >= 20);
    assert!(closed_layer.stats().failed_closed >= 20);

    // Redis comes back (same port): everything recovers by itself.
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let f = get(&fallback_svc).await.status();
        let c = get(&closed_svc).await.status();
        if !fallback.stats().degraded && c == StatusCode::OK {
            assert_eq!(f, StatusCode::OK);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no recovery: {:?}",
            fallback.stats()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(fallback.stats().recoveries, 1);
    let r = get(&open_svc).await;
    assert!(r.headers().contains_key("ratelimit"), "Redis decides again");
}
