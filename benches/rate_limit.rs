//! Rate limiting: our layer on the memory store against a raw `governor` keyed check and
//! `tower_governor`'s layer (same quota), the refusal path, and the Redis store's decisions
//! per second (64 in flight) against a plain `EVALSHA` loop of the same script.
//!
//! `cargo bench --bench rate_limit -- --warm-up-time 1 --measurement-time 3`
//! (Redis at `REDIS_URL`, default `redis://127.0.0.1:6379/`; the Redis group is skipped when
//! it does not answer).

use std::convert::Infallible;
use std::hint::black_box;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::time::Duration;

use axum::body::Body;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use http::{Request, Response};
use tower::{Layer, ServiceExt, service_fn};
use tower_shield::rate_limit::{
    HeaderMode, MemoryStore, Policy, Quota, RateKey, RateLimitLayer, RateLimitStore, RedisStore,
    store::GCRA_SCRIPT,
};
use tower_shield::redis::RedisConnection;

const PEER: &str = "192.0.2.1:4000";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn request() -> Request<Body> {
    let mut req = Request::get("/api/items").body(Body::empty()).unwrap();
    let addr = PEER.parse::<SocketAddr>().unwrap();
    // Ours reads either; tower_governor's PeerIpKeyExtractor reads only ConnectInfo.
    req.extensions_mut().insert(addr);
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(addr));
    req
}

fn inner()
-> impl tower::Service<Request<Body>, Response = Response<Body>, Error = Infallible, Future = impl Send>
+ Clone {
    service_fn(|_req: Request<Body>| async { Ok::<_, Infallible>(Response::new(Body::empty())) })
}

/// A quota that never refuses during the bench: one million per second, a burst of
/// `u32::MAX` (the same for all three contenders).
fn big_quota() -> Quota {
    Quota::per_second(1_000_000).burst(u32::MAX)
}

fn allowed(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("rate_limit/allowed");

    let ours = RateLimitLayer::builder(MemoryStore::new())
        .policy(Policy::named("api").quota(big_quota()))
        .build()
        .unwrap()
        .layer(inner());
    group.bench_function("tower_shield layer (memory)", |b| {
        b.to_async(&rt).iter_batched(
            request,
            |req| {
                let svc = ours.clone();
                async move {
                    let response = svc.oneshot(req).await.unwrap();
                    assert_eq!(response.status(), 200);
                    black_box(response)
                }
            },
            BatchSize::NumIterations(32),
        );
    });

    let quiet = RateLimitLayer::builder(MemoryStore::new())
        .policy(Policy::named("api").quota(big_quota()))
        .headers(HeaderMode::None)
        .build()
        .unwrap()
        .layer(inner());
    group.bench_function("tower_shield layer (memory, no fields)", |b| {
        b.to_async(&rt).iter_batched(
            request,
            |req| {
                let svc = quiet.clone();
                async move {
                    let response = svc.oneshot(req).await.unwrap();
                    assert_eq!(response.status(), 200);
                    black_box(response)
                }
            },
            BatchSize::NumIterations(32),
        );
    });

    let config = tower_governor::governor::GovernorConfigBuilder::default()
        .per_nanosecond(1_000)
        .burst_size(u32::MAX)
        .finish()
        .unwrap();
    let theirs = tower_governor::GovernorLayer::new(config).layer(inner());
    group.bench_function("tower_governor layer", |b| {
        b.to_async(&rt).iter_batched(
            request,
            |req| {
                let svc = theirs.clone();
                async move {
                    let response = svc.oneshot(req).await.unwrap();
                    assert_eq!(response.status(), 200);
                    black_box(response)
                }
            },
            BatchSize::NumIterations(32),
        );
    });

    let raw = governor::RateLimiter::keyed(
        governor::Quota::with_period(Duration::from_micros(1))
            .unwrap()
            .allow_burst(NonZeroU32::MAX),
    );
    let ip: IpAddr = PEER.parse::<SocketAddr>().unwrap().ip();
    group.bench_function("raw governor check_key", |b| {
        b.iter(|| black_box(raw.check_key(black_box(&ip)).is_ok()));
    });

    let store = MemoryStore::new();
    let limiter = store.limiter("api", &big_quota());
    let key = RateKey::ip(ip);
    group.bench_function("tower_shield MemoryStore check (no layer)", |b| {
        b.iter(|| black_box(store.decide(&limiter, black_box(&key), 1).unwrap()));
    });
    group.finish();
}

fn refused(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("rate_limit/refused");
    let quota = Quota::per_hour(1).burst(1);

    let ours = RateLimitLayer::builder(MemoryStore::new())
        .policy(Policy::named("api").quota(quota))
        .build()
        .unwrap()
        .layer(inner());
    rt.block_on(ours.clone().oneshot(request())).unwrap();
    group.bench_function("tower_shield 429", |b| {
        b.to_async(&rt).iter_batched(
            request,
            |req| {
                let svc = ours.clone();
                async move {
                    let response = svc.oneshot(req).await.unwrap();
                    assert_eq!(response.status(), 429);
                    black_box(response)
                }
            },
            BatchSize::NumIterations(32),
        );
    });

    let config = tower_governor::governor::GovernorConfigBuilder::default()
        .per_second(3600)
        .burst_size(1)
        .finish()
        .unwrap();
    let theirs = tower_governor::GovernorLayer::new(config).layer(inner());
    rt.block_on(theirs.clone().oneshot(request())).unwrap();
    group.bench_function("tower_governor 429", |b| {
        b.to_async(&rt).iter_batched(
            request,
            |req| {
                let svc = theirs.clone();
                async move {
                    let response = svc.oneshot(req).await.unwrap();
                    assert_eq!(response.status(), 429);
                    black_box(response)
                }
            },
            BatchSize::NumIterations(32),
        );
    });
    group.finish();
}

const IN_FLIGHT: usize = 64;
const PER_TASK: usize = 100;

fn redis_decisions(c: &mut Criterion) {
    let rt = runtime();
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned());
    let Ok(conn) = rt.block_on(RedisConnection::connect(&url)) else {
        eprintln!("Redis at {url} does not answer: skipping the Redis group");
        return;
    };
    let conn = conn.with_call_timeout(Duration::from_secs(2));
    let prefix = format!("ts:bench:{}:", uuid::Uuid::new_v4().simple());
    let store = RedisStore::builder(conn.clone())
        .prefix(prefix.clone())
        .deny_cache(0)
        .build()
        .unwrap();
    let limiter = store.limiter("bench", &big_quota());

    let mut group = c.benchmark_group("rate_limit/redis_64_in_flight");
    group.throughput(Throughput::Elements((IN_FLIGHT * PER_TASK) as u64));
    group.sample_size(10);
    group.bench_function("tower_shield RedisStore", |b| {
        b.to_async(&rt).iter(|| {
            let store = store.clone();
            let limiter = limiter.clone();
            async move {
                let mut set = tokio::task::JoinSet::new();
                for t in 0..IN_FLIGHT {
                    let store = store.clone();
                    let limiter = limiter.clone();
                    set.spawn(async move {
                        let key = RateKey::ip(IpAddr::V4((t as u32).into()));
                        for _ in 0..PER_TASK {
                            let d = store.check(&limiter, &key, 1).await.unwrap();
                            assert!(d.allowed);
                        }
                    });
                }
                while set.join_next().await.is_some() {}
            }
        });
    });

    let script = redis::Script::new(GCRA_SCRIPT);
    let manager = conn.manager();
    let t_micros = big_quota().emission_interval().as_micros() as u64;
    group.bench_function("plain EVALSHA loop (redis-rs)", |b| {
        b.to_async(&rt).iter(|| {
            let manager = manager.clone();
            let script = script.clone();
            let prefix = prefix.clone();
            async move {
                let mut set = tokio::task::JoinSet::new();
                for t in 0..IN_FLIGHT {
                    let mut manager = manager.clone();
                    let script = script.clone();
                    let key = format!("{prefix}{{plain{t}}}");
                    set.spawn(async move {
                        for _ in 0..PER_TASK {
                            let reply: Vec<i64> = script
                                .key(&key)
                                .arg(t_micros)
                                .arg(u32::MAX)
                                .arg(1u32)
                                .invoke_async(&mut manager)
                                .await
                                .unwrap();
                            assert_eq!(reply.first(), Some(&1));
                        }
                    });
                }
                while set.join_next().await.is_some() {}
            }
        });
    });
    group.finish();
}

criterion_group!(benches, allowed, refused, redis_decisions);
criterion_main!(benches);
