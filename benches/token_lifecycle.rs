//! The token lifecycle: issuing, and refresh rotations in memory and in Redis.
//!
//! - `issue/<alg>/jsonwebtoken-encode` (the anchor: the bare primitive every Rust issuer
//!   wraps, same header and claims), `issue/<alg>/access-token` (`TokenIssuer::issue`: UUID
//!   `jti`, claims map, `kid`/`typ` header, signature) and `issue/<alg>/token-pair-memory`
//!   (`RefreshTokens::issue_pair`: the access token plus 256 random bits, SHA-256 and a family
//!   in `MemoryRefreshStore`).
//! - `rotate/memory` and `rotate/redis`: one refresh rotation (parse, hash, atomic consume,
//!   new refresh token, an EdDSA access token), one chain, median latency.
//! - `rotate-32-concurrent/{memory,redis}`: 32 tasks each rotating its own family at once;
//!   throughput in rotations per second (criterion's `elem/s`).
//!
//! No anchor crate implements refresh rotation (ANCHORS.md), so the rotation groups have no
//! comparison column. Redis groups need `REDIS_URL` (skipped with a line otherwise); keys go
//! under a unique prefix, expire within the hour and are deleted at the end.
//!
//! Run: `REDIS_URL=redis://127.0.0.1:6379/ cargo bench --bench token_lifecycle -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jsonwebtoken::{Algorithm, Header, encode};
use tokio::runtime::Runtime;
use tower_shield::clock::ManualClock;
use tower_shield::jwt::revocation::RedisRevocationStore;
use tower_shield::jwt::{Key, KeyRing, KeySet, MemoryRevocationStore};
use tower_shield::redis::{KeyPrefix, RedisConnection};
use tower_shield::tokens::store::{MemoryRefreshStore, RedisRefreshStore, RefreshStore};
use tower_shield::tokens::{RefreshTokens, TokenIssuer};

const CONCURRENCY: usize = 32;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn issuer(key: &Key, clock: &ManualClock, ttl: Duration) -> TokenIssuer {
    TokenIssuer::builder(KeyRing::new(
        KeySet::new().with(key.clone()).expect("key set"),
    ))
    .issuer("https://auth.example")
    .audience("api")
    .access_ttl(ttl)
    .leeway(Duration::ZERO)
    .clock(clock.clone())
    .build()
    .expect("issuer")
}

fn lifecycle<St: RefreshStore>(issuer: TokenIssuer, store: St, ttl: Duration) -> RefreshTokens<St> {
    RefreshTokens::builder(issuer, store)
        .revocation(MemoryRevocationStore::new())
        .refresh_ttl(ttl)
        .family_lifetime(ttl.max(Duration::from_secs(3600)))
        .build()
        .expect("lifecycle")
}

fn issue(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("issue");
    for (name, alg) in [
        ("RS256", Algorithm::RS256),
        ("ES256", Algorithm::ES256),
        ("EdDSA", Algorithm::EdDSA),
    ] {
        let key = Key::generate(alg).expect("key");
        let kid = key.kid().to_owned();

        group.bench_function(format!("{name}/jsonwebtoken-encode"), |b| {
            let encoding = key.encoding_key().expect("signing key");
            b.iter(|| {
                let mut header = Header::new(alg);
                header.kid = Some(kid.clone());
                header.typ = Some("at+jwt".to_owned());
                let now = jsonwebtoken::get_current_timestamp();
                let claims = serde_json::json!({
                    "iss": "https://auth.example", "aud": "api", "sub": "user_1",
                    "role": "user", "iat": now, "nbf": now, "exp": now + 900,
                    "jti": uuid::Uuid::new_v4().to_string(),
                });
                black_box(encode(&header, &claims, encoding).expect("signs"))
            });
        });

        let clock = ManualClock::now();
        let access = issuer(&key, &clock, Duration::from_secs(900));
        group.bench_function(format!("{name}/access-token"), |b| {
            b.iter(|| black_box(access.issue("user_1", "user", &()).expect("issues")));
        });

        // Families live 60 s and the clock moves 1 s per sign-in, so the store stays small
        // (ended families are swept as they would be in a long-running service).
        let clock = ManualClock::now();
        let tokens = RefreshTokens::builder(
            issuer(&key, &clock, Duration::from_secs(60)),
            MemoryRefreshStore::new(),
        )
        .revocation(MemoryRevocationStore::new())
        .refresh_ttl(Duration::from_secs(60))
        .family_lifetime(Duration::from_secs(60))
        .build()
        .expect("lifecycle");
        group.bench_function(format!("{name}/token-pair-memory"), |b| {
            b.to_async(&rt).iter(|| {
                clock.advance(Duration::from_secs(1));
                let tokens = tokens.clone();
                async move {
                    black_box(
                        tokens
                            .issue_pair("user_1", "user", &())
                            .await
                            .expect("pair"),
                    )
                }
            });
        });
    }
    group.finish();
}

/// One chain per slot: each rotation replaces the slot's token with its successor.
async fn chains<St: RefreshStore>(tokens: &RefreshTokens<St>, n: usize) -> Vec<Arc<Mutex<String>>> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let pair = tokens
            .issue_pair(&format!("user_{i}"), "user", &())
            .await
            .expect("sign-in");
        out.push(Arc::new(Mutex::new(pair.refresh_token.as_str().to_owned())));
    }
    out
}

async fn rotate_slot<St: RefreshStore>(tokens: &RefreshTokens<St>, slot: &Mutex<String>) {
    let current = slot.lock().expect("slot").clone();
    let pair = tokens.rotate(&current).await.expect("rotation");
    *slot.lock().expect("slot") = pair.refresh_token.as_str().to_owned();
}

fn bench_store<St: RefreshStore>(
    c: &mut Criterion,
    rt: &Runtime,
    name: &str,
    tokens: &RefreshTokens<St>,
) {
    let one = rt.block_on(chains(tokens, 1));
    let mut group = c.benchmark_group("rotate");
    group.bench_function(name, |b| {
        b.to_async(rt).iter(|| {
            let tokens = tokens.clone();
            let slot = one[0].clone();
            async move { rotate_slot(&tokens, &slot).await }
        });
    });
    group.finish();

    let many = rt.block_on(chains(tokens, CONCURRENCY));
    let mut group = c.benchmark_group("rotate-32-concurrent");
    group.throughput(Throughput::Elements(CONCURRENCY as u64));
    group.bench_function(name, |b| {
        b.to_async(rt).iter_custom(|iters| {
            let tokens = tokens.clone();
            let many = many.clone();
            async move {
                let start = Instant::now();
                for _ in 0..iters {
                    let mut tasks = Vec::with_capacity(CONCURRENCY);
                    for slot in &many {
                        let tokens = tokens.clone();
                        let slot = slot.clone();
                        tasks.push(tokio::spawn(
                            async move { rotate_slot(&tokens, &slot).await },
                        ));
                    }
                    for task in tasks {
                        task.await.expect("task");
                    }
                }
                start.elapsed()
            }
        });
    });
    group.finish();
}

fn rotate(c: &mut Criterion) {
    let rt = runtime();
    let key = Key::generate(Algorithm::EdDSA).expect("key");
    let ttl = Duration::from_secs(900);
    let clock = ManualClock::now();

    let memory = lifecycle(issuer(&key, &clock, ttl), MemoryRefreshStore::new(), ttl);
    bench_store(c, &rt, "memory", &memory);

    let Ok(url) = std::env::var("REDIS_URL") else {
        eprintln!("REDIS_URL is not set: skipping the Redis rotation benchmarks");
        return;
    };
    let conn = rt
        .block_on(RedisConnection::connect(&url))
        .expect("REDIS_URL is set but Redis is unreachable");
    let prefix = format!("ts:bench:{}:", uuid::Uuid::new_v4());
    let key_prefix = KeyPrefix::new(prefix.clone()).expect("prefix");
    let redis = RefreshTokens::builder(
        issuer(&key, &clock, ttl),
        RedisRefreshStore::new(conn.clone(), key_prefix.clone()),
    )
    .revocation(RedisRevocationStore::new(conn.clone(), key_prefix))
    .refresh_ttl(ttl)
    .family_lifetime(Duration::from_secs(3600))
    .build()
    .expect("lifecycle");
    bench_store(c, &rt, "redis", &redis);

    // Clean up this run's keys.
    rt.block_on(async {
        let keys: Vec<String> = conn
            .query(redis::cmd("KEYS").arg(format!("{prefix}*")))
            .await
            .unwrap_or_default();
        if !keys.is_empty() {
            let _: Result<i64, _> = conn.query(redis::cmd("DEL").arg(keys)).await;
        }
    });
}

criterion_group!(benches, issue, rotate);
criterion_main!(benches);
