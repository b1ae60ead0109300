//! One conformance suite, run against the memory store and (with `REDIS_URL`) the Redis
//! store: the same calls give the same decisions.
//!
//! The memory store runs on a fake clock that never moves; the Redis store uses the server's
//! clock, so the suite uses a slow quota (5 per hour: one unit every 720 s), where the few
//! milliseconds the test takes change no decision, and compares durations with a tolerance.

use std::time::Duration;

use governor::clock::FakeRelativeClock;
use tower_shield::rate_limit::{Decision, MemoryStore, Quota, RateKey, RateLimitStore, RedisStore};
use tower_shield::redis::RedisConnection;

use crate::rate_limit_support;

/// The sequence every store must answer identically.
async fn run_suite<St: RateLimitStore>(store: &St) -> Vec<Decision> {
    let quota = Quota::per_hour(5);
    let limiter = store.limiter("conformance", &quota);
    let other = store.limiter("conformance-weighted", &Quota::per_hour(10).burst(4));
    let a = RateKey::ip("192.0.2.1".parse().unwrap());
    let b = RateKey::bytes(b"api-key-b").unwrap();
    let mut out = Vec::new();
    // Peek on a fresh key charges nothing.
    out.push(store.check(&limiter, &a, 0).await.unwrap());
    for _ in 0..6 {
        out.push(store.check(&limiter, &a, 1).await.unwrap());
    }
    // Peek on an exhausted key.
    out.push(store.check(&limiter, &a, 0).await.unwrap());
    // Another key is independent.
    out.push(store.check(&limiter, &b, 1).await.unwrap());
    // Weighted: 3 of 4, then 2 is too many, then 1 fits.
    out.push(store.check(&other, &a, 3).await.unwrap());
    out.push(store.check(&other, &a, 2).await.unwrap());
    out.push(store.check(&other, &a, 1).await.unwrap());
    // More than the burst is never allowed.
    out.push(store.check(&other, &b, 5).await.unwrap());
    // Refunds: 2 units back of the 4 used, then more than is used: whole, never more; a
    // refund on a key never charged gives nothing; a refunded key is charged as usual.
    let charged = out[out.len() - 2];
    out.push(store.refund(&other, &a, 2, &charged).await.unwrap());
    out.push(store.refund(&other, &a, 9, &charged).await.unwrap());
    let never = RateKey::bytes(b"never").unwrap();
    out.push(store.refund(&limiter, &never, 1, &charged).await.unwrap());
    out.push(store.check(&other, &a, 4).await.unwrap());
    out
}

fn expected() -> Vec<(bool, u32)> {
    vec![
        (true, 5),
        (true, 4),
        (true, 3),
        (true, 2),
        (true, 1),
        (true, 0),
        (false, 0),
        (false, 0),
        (true, 4),
        (true, 1),
        (false, 1),
        (true, 0),
        (false, 4),
        (true, 2),
        (true, 4),
        (true, 5),
        (true, 0),
    ]
}

fn assert_close(a: Duration, b: Duration, what: &str) {
    let diff = a.abs_diff(b);
    assert!(diff <= Duration::from_secs(2), "{what}: {a:?} vs {b:?}");
}

/// A Redis decision and a memory one agree: the same verdict and counts, times within 2 s.
fn assert_agree(r: &Decision, m: &Decision, call: &str) {
    assert_eq!(
        (r.allowed, r.remaining, r.limit),
        (m.allowed, m.remaining, m.limit),
        "{call}"
    );
    assert_close(r.reset, m.reset, "reset");
    assert_close(r.retry_after, m.retry_after, "retry_after");
}

fn check_against_expected(decisions: &[Decision]) {
    let got: Vec<(bool, u32)> = decisions.iter().map(|d| (d.allowed, d.remaining)).collect();
    assert_eq!(got, expected());
    // Times: 5 used of 5 → whole again in 3600 s; the 6th waits one interval (720 s).
    assert_close(decisions[5].reset, Duration::from_secs(3600), "reset");
    assert_close(decisions[6].retry_after, Duration::from_secs(720), "retry");
    assert!(
        decisions
            .iter()
            .filter(|d| d.allowed)
            .all(|d| d.retry_after.is_zero())
    );
    assert_eq!(decisions[0].limit, 5);
}

#[tokio::test]
async fn memory_store_conforms() {
    let store = MemoryStore::with_clock(FakeRelativeClock::default());
    check_against_expected(&run_suite(&store).await);
}

#[tokio::test]
async fn redis_store_conforms_and_agrees_with_memory() {
    let Some(url) = rate_limit_support::redis_url("redis_store_conforms_and_agrees_with_memory")
    else {
        return;
    };
    let conn = RedisConnection::connect(&url)
        .await
        .expect("REDIS_URL is set but Redis is unreachable");
    let store = RedisStore::builder(conn)
        .prefix(rate_limit_support::unique_prefix())
        // The deny cache answers locally; the suite asks Redis every time.
        .deny_cache(0)
        .build()
        .unwrap();
    let redis = run_suite(&store).await;
    check_against_expected(&redis);
    let memory = run_suite(&MemoryStore::with_clock(FakeRelativeClock::default())).await;
    for (i, (r, m)) in redis.iter().zip(&memory).enumerate() {
        assert_agree(r, m, &format!("call {i}"));
    }
}

/// Pseudo-random sequences (weighted costs, peeks, several keys and quotas): Redis and
/// memory agree call by call.
#[tokio::test]
async fn random_sequences_agree() {
    let Some(url) = rate_limit_support::redis_url("random_sequences_agree") else {
        return;
    };
    let conn = RedisConnection::connect(&url)
        .await
        .expect("REDIS_URL is set but Redis is unreachable");
    let mut seed: u64 = 0x5eed_1234_abcd_ef01;
    let mut next = move |n: u64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % n
    };
    for round in 0..8 {
        let redis = RedisStore::builder(conn.clone())
            .prefix(rate_limit_support::unique_prefix())
            .deny_cache(0)
            .build()
            .unwrap();
        let memory = MemoryStore::with_clock(FakeRelativeClock::default());
        let quotas = [
            Quota::per_hour(10).burst(7),
            Quota::per_day(3),
            Quota::new(50, Duration::from_secs(7200)).burst(12),
        ];
        let quota = quotas[round % quotas.len()];
        let (rl, ml) = (
            redis.limiter("rand", &quota),
            memory.limiter("rand", &quota),
        );
        let keys = [
            RateKey::ip("192.0.2.7".parse().unwrap()),
            RateKey::ip("2001:db8::".parse().unwrap()),
            RateKey::bytes(b"k").unwrap(),
        ];
        for call in 0..40 {
            let key = &keys[next(keys.len() as u64) as usize];
            let cost = next(7) as u32;
            let r = redis.check(&rl, key, cost).await.unwrap();
            let m = memory.check(&ml, key, cost).await.unwrap();
            assert_agree(&r, &m, &format!("round {round} call {call} cost {cost}"));
        }
    }
}
