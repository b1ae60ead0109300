//! The Redis store behind the layer (needs `REDIS_URL`).

use std::time::{Duration, Instant};

use http::StatusCode;
use tower::{Layer, ServiceExt};
use tower_shield::rate_limit::{
    Policy, Quota, RateKey, RateLimitLayer, RateLimitStore, RedisStore,
};
use tower_shield::redis::RedisConnection;

use crate::rate_limit_support::{self, Echo, redis_url, request, unique_prefix};

async fn store(url: &str, prefix: &str) -> RedisStore {
    let conn = RedisConnection::connect(url)
        .await
        .expect("REDIS_URL is set but Redis is unreachable");
    RedisStore::builder(conn).prefix(prefix).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_only_reserves_before_the_inner_service() {
    let Some(url) = redis_url("count_only_reserves_before_the_inner_service") else {
        return;
    };
    rate_limit_support::count_only_is_exact_under_concurrency(store(&url, &unique_prefix()).await)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactness_across_two_instances() {
    let Some(url) = redis_url("exactness_across_two_instances") else {
        return;
    };
    let prefix = unique_prefix();
    // Two "processes": two connections, two layers, one Redis.
    let mut services = Vec::new();
    for _ in 0..2 {
        let layer = RateLimitLayer::builder(store(&url, &prefix).await)
            .policy(Policy::named("api").quota(Quota::per_minute(100)))
            .build()
            .unwrap();
        services.push(layer.layer(Echo::default()));
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..150 {
        let svc = services[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            svc.oneshot(request("/", "198.51.100.20:1")).await.unwrap()
        }));
    }
    let mut ok = 0u64;
    for task in tasks {
        let response = task.await.unwrap();
        match response.status() {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                let retry: u64 = response.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(retry >= 1);
            }
            other => panic!("unexpected {other}"),
        }
    }
    let refill = (started.elapsed().as_millis() / 600) as u64 + 1;
    assert!(
        ok >= 100 && ok <= 100 + refill,
        "{ok} allowed, refill {refill}"
    );
}

#[tokio::test]
async fn deny_cache_answers_locally_until_retry_time() {
    let Some(url) = redis_url("deny_cache_answers_locally_until_retry_time") else {
        return;
    };
    let store = store(&url, &unique_prefix()).await;
    let limiter = store.limiter("deny", &Quota::per_second(5).burst(1));
    let key = RateKey::ip("192.0.2.30".parse().unwrap());
    assert!(store.check(&limiter, &key, 1).await.unwrap().allowed);
    let refused = store.check(&limiter, &key, 1).await.unwrap();
    assert!(!refused.allowed);
    assert_eq!(store.deny_cache_len(), 1);
    // Delete the Redis state: a cached refusal is still a refusal (no round trip made).
    let redis_key = store.redis_key(&limiter, &key);
    let _: () = store
        .connection()
        .query(redis::cmd("DEL").arg(&redis_key))
        .await
        .unwrap();
    let cached = store.check(&limiter, &key, 1).await.unwrap();
    assert!(!cached.allowed);
    assert!(cached.retry_after <= Duration::from_millis(200));
    tokio::time::sleep(refused.retry_after + Duration::from_millis(20)).await;
    assert!(store.check(&limiter, &key, 1).await.unwrap().allowed);
}

#[tokio::test]
async fn keys_are_hash_tagged_hashed_and_expire() {
    let Some(url) = redis_url("keys_are_hash_tagged_hashed_and_expire") else {
        return;
    };
    let prefix = unique_prefix();
    let store = store(&url, &prefix).await;
    let limiter = store.limiter("api/", &Quota::per_minute(60));
    let key = RateKey::bytes(b"secret-api-key").unwrap();
    assert!(store.check(&limiter, &key, 1).await.unwrap().allowed);
    let redis_key = store.redis_key(&limiter, &key);
    assert!(redis_key.starts_with(&format!("{prefix}{{")));
    assert!(redis_key.ends_with('}'));
    assert!(!redis_key.contains("secret"));
    let ttl: i64 = store
        .connection()
        .query(redis::cmd("PTTL").arg(&redis_key))
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 1_001 + 1, "{ttl}");
}

#[tokio::test]
async fn fast_quota_refills_on_the_server_clock() {
    let Some(url) = redis_url("fast_quota_refills_on_the_server_clock") else {
        return;
    };
    let store = store(&url, &unique_prefix()).await;
    let limiter = store.limiter("fast", &Quota::per_second(10).burst(1));
    let key = RateKey::ip("192.0.2.31".parse().unwrap());
    assert!(store.check(&limiter, &key, 1).await.unwrap().allowed);
    let refused = store.check(&limiter, &key, 1).await.unwrap();
    assert!(!refused.allowed);
    assert!(refused.retry_after <= Duration::from_millis(100));
    assert!(refused.retry_after > Duration::ZERO);
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(store.check(&limiter, &key, 1).await.unwrap().allowed);
}
