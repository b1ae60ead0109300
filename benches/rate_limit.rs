//! Rate limiting: our layer on the memory store against a raw `governor` keyed check and
//! `tower_governor`'s layer (same quota), the refusal path, and the Redis store's decisions
//! per second (64 in flight) against a plain `EVALSHA` loop of the same script.
//!
//! `cargo bench --bench rate_limit -- --warm-up-time 1 --measurement-time 3`
//! (Redis at `REDIS_URL`, default `redis://127.0.0.1:6379/`; the Redis group is skipped when
//! it does not answer).
//!
//! Our layer writes the IETF `RateLimit-Policy` / `RateLimit` fields by default, so it is
//! compared with `tower_governor` both as it comes (`x-ratelimit-after` only on refusals) and
//! with its `use_headers()` (`x-ratelimit-limit` / `-remaining` on every answer); and with the
//! fields off against `tower_governor` without headers.
//!
//! With `TS_BENCH_RECORDER=1` a Prometheus recorder is installed first, so every figure
//! includes recording the layer's metrics (feature `metrics`).
//!
//! Instruction counts (independent of the machine's load): `TS_BENCH_ONLY=<variant>` runs
//! `TS_BENCH_N` (default 20,000) calls of one variant inside `drive` and exits; count them
//! with `valgrind --tool=callgrind --toggle-collect='*support::drive*' <bench binary> --bench` and
//! divide by N (the drive runs once more with one request before: divide by N + 1).
//! Variants: `bare` (the inner service alone), `ours`, `ours-no-fields`, `ours-lean` and
//! `ours-no-fields-lean` (`request_extensions(false)`), `tower-governor`,
//! `tower-governor-headers`, `ours-429`, `tower-governor-429`, `raw-governor`, `memory-store`;
//! and `redis` / `redis-plain` (N decisions, 64 in flight, in `drive_redis`: use
//! `--toggle-collect='*drive_redis*'`).
//!
//! Ratios on a busy machine: `TS_BENCH_PAIRED=1 <bench binary> --bench` times every
//! contender back to back in 31 rounds (11 for Redis) and prints the medians of the times and
//! of the per-round ratios, which is how the README states them.

use std::convert::Infallible;
use std::hint::black_box;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::time::Duration;

use axum::body::Body;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use http::{Request, Response};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_shield::rate_limit::{
    HeaderMode, MemoryStore, Policy, Quota, RateKey, RateLimitLayer, RateLimitStore, RedisStore,
    store::GCRA_SCRIPT,
};
use tower_shield::redis::RedisConnection;

mod support;
use support::{drive, drive_fn, median};

const PEER: &str = "192.0.2.1:4000";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn request() -> Request<Body> {
    let mut req = Request::get("/api/items").body(Body::empty()).unwrap();
    // The peer address as axum's `into_make_service_with_connect_info` gives it: the one
    // extension both layers read (ours also reads a bare `SocketAddr`, tower_governor's
    // `PeerIpKeyExtractor` only this). With a second extension already there, our two inserts
    // (`ClientIp`, `RateLimitStatus`) would also grow the extension map once.
    let addr = PEER.parse::<SocketAddr>().unwrap();
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

/// Our layer on a memory store with one policy of `quota`, writing `mode`'s fields and, with
/// `extensions`, leaving `ClientIp` and `RateLimitStatus` in the request (the default).
fn ours(
    quota: Quota,
    mode: HeaderMode,
    extensions: bool,
) -> impl Service<Request<Body>, Response = Response<impl Send>, Error = Infallible> + Clone {
    RateLimitLayer::builder(MemoryStore::new())
        .policy(Policy::named("api").quota(quota))
        .headers(mode)
        .request_extensions(extensions)
        .build()
        .unwrap()
        .layer(inner())
}

/// `tower_governor`'s configuration: `burst` requests per `per_nanos`, keyed by peer IP.
fn their_config(
    per_nanos: u64,
    burst: u32,
) -> tower_governor::governor::GovernorConfigBuilder<
    tower_governor::key_extractor::PeerIpKeyExtractor,
    governor::middleware::NoOpMiddleware<governor::clock::QuantaInstant>,
> {
    let mut builder = tower_governor::governor::GovernorConfigBuilder::default();
    builder.per_nanosecond(per_nanos).burst_size(burst);
    builder
}

/// `tower_governor`'s layer as it comes (`x-ratelimit-after` only on refusals).
fn theirs(
    per_nanos: u64,
    burst: u32,
) -> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone {
    let config = their_config(per_nanos, burst).finish().unwrap();
    tower_governor::GovernorLayer::new(config).layer(inner())
}

/// `tower_governor`'s layer with its `use_headers()`: `x-ratelimit-limit` / `-remaining` on
/// every answer.
fn theirs_with_headers(
    per_nanos: u64,
    burst: u32,
) -> impl Service<Request<Body>, Response = Response<Body>, Error = Infallible> + Clone {
    let config = their_config(per_nanos, burst)
        .use_headers()
        .finish()
        .unwrap();
    tower_governor::GovernorLayer::new(config).layer(inner())
}

/// Times `oneshot` on clones of `svc`, requests built and responses dropped untimed.
fn bench_layer<S, B>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    name: &str,
    svc: &S,
    status: u16,
) where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible> + Clone,
{
    group.bench_function(name, |b| {
        b.to_async(rt).iter_batched(
            request,
            |req| {
                let svc = svc.clone();
                async move {
                    let response = svc.oneshot(req).await.unwrap();
                    assert_eq!(response.status(), status);
                    black_box(response)
                }
            },
            BatchSize::NumIterations(32),
        );
    });
}

fn allowed(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("rate_limit/allowed");
    bench_layer(&mut group, &rt, "inner service alone", &inner(), 200);
    let fields = ours(big_quota(), HeaderMode::Ietf, true);
    bench_layer(&mut group, &rt, "tower_shield layer (memory)", &fields, 200);
    let quiet = ours(big_quota(), HeaderMode::None, true);
    bench_layer(
        &mut group,
        &rt,
        "tower_shield layer (memory, no fields)",
        &quiet,
        200,
    );
    // As tower_governor leaves them: nothing in the request extensions.
    let lean = ours(big_quota(), HeaderMode::Ietf, false);
    bench_layer(
        &mut group,
        &rt,
        "tower_shield layer (memory, no request extensions)",
        &lean,
        200,
    );
    let lean_quiet = ours(big_quota(), HeaderMode::None, false);
    bench_layer(
        &mut group,
        &rt,
        "tower_shield layer (memory, no fields, no request extensions)",
        &lean_quiet,
        200,
    );
    let plain = theirs(1_000, u32::MAX);
    bench_layer(&mut group, &rt, "tower_governor layer", &plain, 200);
    let with_headers = theirs_with_headers(1_000, u32::MAX);
    bench_layer(
        &mut group,
        &rt,
        "tower_governor layer (use_headers)",
        &with_headers,
        200,
    );

    let raw = raw_governor();
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

/// `governor`'s keyed limiter on the same quota as [`big_quota`].
fn raw_governor() -> governor::DefaultKeyedRateLimiter<IpAddr> {
    governor::RateLimiter::keyed(
        governor::Quota::with_period(Duration::from_micros(1))
            .unwrap()
            .allow_burst(NonZeroU32::MAX),
    )
}

/// The refusal quota: one request per hour, already spent by the time the bench runs.
fn one_per_hour() -> Quota {
    Quota::per_hour(1).burst(1)
}

fn refused(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("rate_limit/refused");
    let ours = ours(one_per_hour(), HeaderMode::Ietf, true);
    rt.block_on(ours.clone().oneshot(request())).unwrap();
    bench_layer(&mut group, &rt, "tower_shield 429", &ours, 429);
    let theirs = theirs(3_600_000_000_000, 1);
    rt.block_on(theirs.clone().oneshot(request())).unwrap();
    bench_layer(&mut group, &rt, "tower_governor 429", &theirs, 429);
    group.finish();
}

/// Drives `n` requests through `service` (after one untimed call, which spends a refusal
/// quota) and checks every status.
fn run_requests<S, B>(mut service: S, n: usize, status: u16)
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible>,
{
    drive(&mut service, vec![request()]);
    let responses = drive(&mut service, (0..n).map(|_| request()).collect());
    assert!(responses.iter().all(|r| r.status() == status));
}

/// `TS_BENCH_ONLY=<variant>`: one variant, `TS_BENCH_N` calls, for callgrind.
fn only(variant: &str) {
    let n: usize = std::env::var("TS_BENCH_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    match variant {
        "bare" => run_requests(inner(), n, 200),
        "ours" => run_requests(ours(big_quota(), HeaderMode::Ietf, true), n, 200),
        "ours-no-fields" => run_requests(ours(big_quota(), HeaderMode::None, true), n, 200),
        "ours-lean" => run_requests(ours(big_quota(), HeaderMode::Ietf, false), n, 200),
        "ours-no-fields-lean" => run_requests(ours(big_quota(), HeaderMode::None, false), n, 200),
        "tower-governor" => run_requests(theirs(1_000, u32::MAX), n, 200),
        "tower-governor-headers" => run_requests(theirs_with_headers(1_000, u32::MAX), n, 200),
        "ours-429" => run_requests(ours(one_per_hour(), HeaderMode::Ietf, true), n, 429),
        "tower-governor-429" => run_requests(theirs(3_600_000_000_000, 1), n, 429),
        "raw-governor" => {
            let raw = raw_governor();
            let ip: IpAddr = PEER.parse::<SocketAddr>().unwrap().ip();
            drive_fn(n, || raw.check_key(black_box(&ip)).is_ok());
        }
        "memory-store" => {
            let store = MemoryStore::new();
            let limiter = store.limiter("api", &big_quota());
            let key = RateKey::ip(PEER.parse::<SocketAddr>().unwrap().ip());
            drive_fn(n, || store.decide(&limiter, black_box(&key), 1).is_ok());
        }
        "redis" | "redis-plain" => {
            let rt = runtime();
            let setup = redis_setup(&rt).expect("Redis at REDIS_URL");
            // Warm up (script load, connection), then `n` decisions in all.
            drive_redis(&rt, &setup, variant == "redis", 1);
            drive_redis(&rt, &setup, variant == "redis", n.div_ceil(IN_FLIGHT));
        }
        other => panic!("unknown variant {other}"),
    }
}

const IN_FLIGHT: usize = 64;
const PER_TASK: usize = 100;

/// What both Redis contenders run against: the store (deny cache off, so every decision
/// goes to Redis), its limiter, the raw connection, and the key prefix.
struct RedisSetup {
    store: RedisStore,
    limiter: <RedisStore as RateLimitStore>::Limiter,
    manager: redis::aio::ConnectionManager,
    prefix: String,
}

fn redis_setup(rt: &tokio::runtime::Runtime) -> Option<RedisSetup> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".to_owned());
    let Ok(conn) = rt.block_on(RedisConnection::connect(&url)) else {
        eprintln!("Redis at {url} does not answer: skipping the Redis group");
        return None;
    };
    let conn = conn.with_call_timeout(Duration::from_secs(2));
    let prefix = format!("ts:bench:{}:", uuid::Uuid::new_v4().simple());
    let store = RedisStore::builder(conn.clone())
        .prefix(prefix.clone())
        .deny_cache(0)
        .build()
        .unwrap();
    let limiter = store.limiter("bench", &big_quota());
    Some(RedisSetup {
        store,
        limiter,
        manager: conn.manager(),
        prefix,
    })
}

/// `IN_FLIGHT` tasks making `per_task` decisions each through `RedisStore::check`.
async fn ours_redis_round(setup: &RedisSetup, per_task: usize) {
    let mut set = tokio::task::JoinSet::new();
    for t in 0..IN_FLIGHT {
        let store = setup.store.clone();
        let limiter = setup.limiter.clone();
        set.spawn(async move {
            let key = RateKey::ip(IpAddr::V4((t as u32).into()));
            for _ in 0..per_task {
                let d = store.check(&limiter, &key, 1).await.unwrap();
                assert!(d.allowed);
            }
        });
    }
    while set.join_next().await.is_some() {}
}

/// The same with a plain redis-rs `EVALSHA` loop of the same script and arguments.
async fn plain_redis_round(setup: &RedisSetup, per_task: usize) {
    let script = redis::Script::new(GCRA_SCRIPT);
    let t_micros = big_quota().emission_interval().as_micros() as u64;
    let mut set = tokio::task::JoinSet::new();
    for t in 0..IN_FLIGHT {
        let mut manager = setup.manager.clone();
        let script = script.clone();
        let key = format!("{}{{plain{t}}}", setup.prefix);
        set.spawn(async move {
            for _ in 0..per_task {
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

fn redis_decisions(c: &mut Criterion) {
    let rt = runtime();
    let Some(setup) = redis_setup(&rt) else {
        return;
    };
    let mut group = c.benchmark_group("rate_limit/redis_64_in_flight");
    group.throughput(Throughput::Elements((IN_FLIGHT * PER_TASK) as u64));
    group.sample_size(10);
    group.bench_function("tower_shield RedisStore", |b| {
        b.to_async(&rt).iter(|| ours_redis_round(&setup, PER_TASK));
    });
    group.bench_function("plain EVALSHA loop (redis-rs)", |b| {
        b.to_async(&rt).iter(|| plain_redis_round(&setup, PER_TASK));
    });
    group.finish();
}

/// `IN_FLIGHT × per_task` decisions of one Redis contender, never inlined (see [`drive`]).
#[inline(never)]
fn drive_redis(rt: &tokio::runtime::Runtime, setup: &RedisSetup, ours: bool, per_task: usize) {
    if ours {
        rt.block_on(ours_redis_round(setup, per_task));
    } else {
        rt.block_on(plain_redis_round(setup, per_task));
    }
}

/// Mean ns per call of `f` over `n` calls.
fn time_fn<T>(n: usize, mut f: impl FnMut() -> T) -> f64 {
    let start = std::time::Instant::now();
    for _ in 0..n {
        black_box(f());
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

/// Mean ns per call of `service` over `n` pre-built requests (responses dropped untimed).
fn time_service<S, B>(service: &mut S, n: usize) -> f64
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible>,
{
    let requests: Vec<_> = (0..n).map(|_| request()).collect();
    let start = std::time::Instant::now();
    let responses = drive(service, requests);
    let elapsed = start.elapsed().as_nanos() as f64 / n as f64;
    drop(responses);
    elapsed
}

/// One timing round of `n` calls through `service`, in ns per call, as a [`Contender`] runs.
fn timed<S, B>(mut service: S, n: usize) -> Box<dyn FnMut() -> f64>
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible> + 'static,
{
    Box::new(move || time_service(&mut service, n))
}

/// A named contender of [`paired`]: one timing round of it, in ns per call.
type Contender = (&'static str, Box<dyn FnMut() -> f64>);

/// `TS_BENCH_PAIRED=1`: the goal ratios measured so that a busy machine hurts both sides
/// alike: 31 rounds, each timing every contender back to back, and the medians of the
/// per-round times and ratios.
fn paired() {
    const ROUNDS: usize = 31;
    let (raw, store) = (raw_governor(), MemoryStore::new());
    let limiter = store.limiter("api", &big_quota());
    let ip: IpAddr = PEER.parse::<SocketAddr>().unwrap().ip();
    let key = RateKey::ip(ip);
    let (mut raw_ns, mut store_ns, mut ratio) = (vec![], vec![], vec![]);
    for _ in 0..ROUNDS {
        let r = time_fn(200_000, || raw.check_key(black_box(&ip)).is_ok());
        let s = time_fn(200_000, || {
            store.decide(&limiter, black_box(&key), 1).is_ok()
        });
        raw_ns.push(r);
        store_ns.push(s);
        ratio.push(s / r);
    }
    println!(
        "decision: raw governor check_key {:.1} ns, MemoryStore {:.1} ns, ratio {:.2}",
        median(&mut raw_ns),
        median(&mut store_ns),
        median(&mut ratio)
    );

    let n = 20_000;
    let mut refusing = ours(one_per_hour(), HeaderMode::Ietf, true);
    drive(&mut refusing, vec![request()]);
    let mut layers: Vec<Contender> = vec![
        ("inner service alone", timed(inner(), n)),
        (
            "ours (IETF fields)",
            timed(ours(big_quota(), HeaderMode::Ietf, true), n),
        ),
        (
            "ours (no fields)",
            timed(ours(big_quota(), HeaderMode::None, true), n),
        ),
        (
            "tower_governor (use_headers)",
            timed(theirs_with_headers(1_000, u32::MAX), n),
        ),
        ("tower_governor", timed(theirs(1_000, u32::MAX), n)),
        (
            "ours (IETF fields, no request extensions)",
            timed(ours(big_quota(), HeaderMode::Ietf, false), n),
        ),
        (
            "ours (no fields, no request extensions)",
            timed(ours(big_quota(), HeaderMode::None, false), n),
        ),
        ("ours 429", timed(refusing, n)),
    ];
    // The goal ratios: (ours, anchor) as indices into `layers`, and their label.
    let goals = [
        (1, 3, "ours (IETF fields) / tower_governor (use_headers)"),
        (2, 4, "ours (no fields) / tower_governor"),
        (
            5,
            3,
            "ours (IETF fields, no request extensions) / tower_governor (use_headers)",
        ),
        (
            6,
            4,
            "ours (no fields, no request extensions) / tower_governor",
        ),
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); layers.len()];
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); goals.len()];
    for _ in 0..ROUNDS {
        let round: Vec<f64> = layers.iter_mut().map(|(_, f)| f()).collect();
        for (r, (ours, anchor, _)) in ratios.iter_mut().zip(goals) {
            r.push(round[ours] / round[anchor]);
        }
        for (t, v) in times.iter_mut().zip(round) {
            t.push(v);
        }
    }
    for ((name, _), t) in layers.iter().zip(&mut times) {
        println!("{name}: {:.0} ns", median(t));
    }
    for ((_, _, label), r) in goals.iter().zip(&mut ratios) {
        println!("{label}: {:.2}", median(r));
    }

    let rt = runtime();
    let Some(setup) = redis_setup(&rt) else {
        return;
    };
    let (mut ours, mut plain, mut ratio) = (vec![], vec![], vec![]);
    let decisions = (IN_FLIGHT * PER_TASK) as f64;
    for _ in 0..11 {
        let start = std::time::Instant::now();
        rt.block_on(ours_redis_round(&setup, PER_TASK));
        let o = decisions / start.elapsed().as_secs_f64();
        let start = std::time::Instant::now();
        rt.block_on(plain_redis_round(&setup, PER_TASK));
        let p = decisions / start.elapsed().as_secs_f64();
        ours.push(o);
        plain.push(p);
        ratio.push(o / p);
    }
    println!(
        "Redis, {IN_FLIGHT} in flight: RedisStore {:.0} decisions/s, plain EVALSHA loop {:.0}/s, \
         ratio {:.2}",
        median(&mut ours),
        median(&mut plain),
        median(&mut ratio)
    );
}

fn all(c: &mut Criterion) {
    support::maybe_install_recorder();
    if let Ok(variant) = std::env::var("TS_BENCH_ONLY") {
        only(&variant);
        std::process::exit(0);
    }
    if std::env::var("TS_BENCH_PAIRED").is_ok() {
        paired();
        std::process::exit(0);
    }
    allowed(c);
    refused(c);
    redis_decisions(c);
}

criterion_group!(benches, all);
criterion_main!(benches);
