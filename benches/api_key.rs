//! `ApiKeyLayer` on the memory store, beside a `JwtAuthLayer` cache hit (the other way a
//! request proves who it is) and a bare service, in one run:
//!
//! - `warm`: a valid key from an allowed address (the record looked up, the hash compared,
//!   the allowlist checked, the identity inserted);
//! - `unknown`: a well-formed key whose id no record has (one store lookup, then 401);
//! - `wrong-secret`: a known id with another secret (the same work as `unknown`, then 401);
//! - `malformed`: a value that cannot be a key (401 without asking the store);
//! - `jwt-cache-hit`: a cached bearer token (RS256, revocation store checked);
//! - `bare`: the inner service alone.
//!
//! `cargo bench --bench api_key` for criterion. Instruction counts: `TS_BENCH_ONLY=<variant>`
//! runs `TS_BENCH_N` (default 20,000) calls inside `drive` and exits; count them with
//! `valgrind --tool=callgrind --toggle-collect='*support::drive*' <bench binary> --bench`,
//! and subtract `bare`.

mod support;

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response, header};
use http_body_util::Full;
use support::drive;
use tower::{Layer, Service, service_fn};
use tower_shield::api_key::{ApiKeyLayer, ApiKeys, IpAllowlist, MemoryApiKeyStore, NewApiKey};
use tower_shield::jwt::{Algorithm, JwtAuthLayer, Key, KeySet, MemoryRevocationStore};
use tower_shield::tokens::TokenIssuer;

type Body = Full<Bytes>;

fn inner() -> impl Service<
    Request<Body>,
    Response = Response<Body>,
    Error = Infallible,
    Future = std::future::Ready<Result<Response<Body>, Infallible>>,
> + Clone {
    service_fn(|_: Request<Body>| {
        std::future::ready(Ok::<_, Infallible>(Response::new(Body::default())))
    })
}

/// Everything a variant needs: the layers and the header each request carries.
struct Fixture {
    keys: ApiKeyLayer,
    jwt: JwtAuthLayer,
    key: String,
    unknown: String,
    wrong_secret: String,
    bearer: String,
}

fn fixture() -> Fixture {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let keys = ApiKeys::new(MemoryApiKeyStore::new());
    let allowed = IpAllowlist::Networks(vec!["10.0.0.0/8".parse().expect("net")]);
    let (key, _) = runtime
        .block_on(keys.create(NewApiKey::new("svc_bench", "bench", allowed).role("service")))
        .expect("key");
    // The same shape, another id: unknown to the store.
    let (unknown, _) = runtime
        .block_on(
            ApiKeys::new(MemoryApiKeyStore::new()).create(NewApiKey::new(
                "x",
                "x",
                IpAllowlist::Any,
            )),
        )
        .expect("key");
    let signing = KeySet::new()
        .with(Key::generate(Algorithm::RS256).expect("rsa"))
        .expect("keys");
    let issuer = TokenIssuer::builder(signing.clone())
        .issuer("https://issuer")
        .audience("api")
        .build()
        .expect("issuer");
    let token = issuer.issue("user_1", "user", &()).expect("token");
    Fixture {
        keys: ApiKeyLayer::builder(keys.store().clone())
            .build()
            .expect("layer"),
        jwt: JwtAuthLayer::builder(signing)
            .issuer("https://issuer")
            .audience("api")
            .revocation(MemoryRevocationStore::new())
            .cache(1024)
            .build()
            .expect("jwt"),
        key: key.expose().to_owned(),
        // The record's id (`api_` and 22 characters, then `_`) with another secret.
        wrong_secret: format!("{}{}", &key.expose()[..27], &unknown.expose()[27..]),
        unknown: unknown.expose().to_owned(),
        bearer: format!("Bearer {}", token.as_str()),
    }
}

fn request(name: header::HeaderName, value: &str) -> Request<Body> {
    let mut req = Request::get("/api/service/ping")
        .header(name, value)
        .body(Body::default())
        .expect("request");
    req.extensions_mut()
        .insert(SocketAddr::from(([10, 1, 2, 3], 40000)));
    req
}

/// The requests of a variant, and a service to drive them through.
fn run_variant(f: &Fixture, variant: &str, n: usize) -> Duration {
    let x_api_key = header::HeaderName::from_static("x-api-key");
    let make = |value: &str, name: &header::HeaderName| -> Vec<Request<Body>> {
        (0..n).map(|_| request(name.clone(), value)).collect()
    };
    macro_rules! timed {
        ($service:expr, $requests:expr) => {{
            let mut service = $service;
            let requests = $requests;
            let start = Instant::now();
            let responses = drive(&mut service, requests);
            let elapsed = start.elapsed();
            drop(black_box(responses));
            elapsed
        }};
    }
    match variant {
        "warm" => timed!(f.keys.layer(inner()), make(&f.key, &x_api_key)),
        "unknown" => timed!(f.keys.layer(inner()), make(&f.unknown, &x_api_key)),
        "wrong-secret" => timed!(f.keys.layer(inner()), make(&f.wrong_secret, &x_api_key)),
        "malformed" => timed!(f.keys.layer(inner()), make("api_not-a-key", &x_api_key)),
        "jwt-cache-hit" => {
            // One verification first: every driven request is a cache hit.
            let mut service = f.jwt.layer(inner());
            drop(drive(&mut service, make(&f.bearer, &header::AUTHORIZATION)));
            timed!(service, make(&f.bearer, &header::AUTHORIZATION))
        }
        "bare" => timed!(inner(), make(&f.key, &x_api_key)),
        other => panic!("unknown variant {other}"),
    }
}

const VARIANTS: [&str; 6] = [
    "bare",
    "warm",
    "unknown",
    "wrong-secret",
    "malformed",
    "jwt-cache-hit",
];

fn bench(c: &mut Criterion) {
    support::maybe_install_recorder();
    let f = fixture();
    if let Ok(variant) = std::env::var("TS_BENCH_ONLY") {
        let n = std::env::var("TS_BENCH_N")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(20_000);
        run_variant(&f, &variant, n);
        std::process::exit(0);
    }
    let mut group = c.benchmark_group("api_key");
    for variant in VARIANTS {
        group.bench_function(variant, |b| {
            b.iter_custom(|iters| {
                let n = usize::try_from(iters).unwrap_or(usize::MAX);
                run_variant(&f, variant, n)
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
