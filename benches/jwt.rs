//! `JwtAuthLayer` against a bare `jsonwebtoken::decode` (the anchor: the primitive every Rust
//! JWT middleware wraps), in one criterion group so the ratios come from one run.
//!
//! - `cold/<alg>/jsonwebtoken-decode`: `decode::<Claims>` with a `Validation` for that one
//!   algorithm, issuer and audience, `exp` and `sub` required, `exp` and `nbf` checked against
//!   the system clock (the layer's settings, as far as `Validation` has them).
//! - `cold/<alg>/jsonwebtoken-decode-service`: the same `decode` inside a minimal
//!   `service_fn` (read `Authorization`, decode, answer) driven by the same harness as ours.
//! - `parts/<alg>/jsonwebtoken-crypto-verify`: the signature check alone.
//! - `cold/<alg>/tower-shield`: the whole layer with the cache off: header and claims checks,
//!   signature, claims type, extensions (`Verified`, `Principal`, `Scopes`), inner service.
//! - `cache-hit/tower-shield`: the same RS256 token again with `.cache(..)` and a
//!   `MemoryRevocationStore` (hash, lookup, time/key recheck, revocation check, extensions);
//!   `…-store-holding-others`: the same with a store that holds revocations of other tokens
//!   and subjects (both of its maps in use).
//! - `cache-hit/RS256/{is-cached,lookup-cached}-then-layer`: the cache hit behind a step that
//!   asks the layer first, as the demo's IP limit does (`skip_if`): `is_cached` (the token is
//!   hashed twice) against `lookup_cached` (hashed once, the entry handed to the layer).
//! - `forged-bad-kid/tower-shield`: an RS256 token naming an unknown `kid`, refused with a
//!   401 problem+json before any signature work.
//!
//! - `refusal/missing-token/tower-shield`: no token at all (the cost of building a 401).
//! - `baseline/inner-service-only`: the same loop without any layer (harness cost).
//!
//! Run: `cargo bench --bench jwt -- --warm-up-time 1 --measurement-time 3`. Requests are built
//! outside the timed region; each call is `ready().await` + `call().await` on one service.
//!
//! With `TS_BENCH_RECORDER=1` a Prometheus recorder is installed first, so every figure
//! includes recording the layer's metrics (feature `metrics`).
//!
//! Instruction counts (independent of the machine's load): `TS_BENCH_ONLY=<variant>` runs
//! `TS_BENCH_N` (default 2000) calls of one variant in `drive` and exits; count them with
//! `valgrind --tool=callgrind --toggle-collect='*support::drive*' <bench binary> --bench` and divide by
//! N. Variants: `cold-<alg>`, `decode-<alg>` (bare `decode`), `decode-service-<alg>`,
//! `cache-hit`, `cache-hit-revoked-others` (the store holds other revocations),
//! `cache-hit-is-cached-first`, `cache-hit-lookup-first`, `forged`,
//! `missing`, `baseline`.
//!
//! `TS_BENCH_RATIO=1 <bench binary> --bench`: the ratios to the anchor in 31 paired rounds
//! each, steadier than two criterion medians on a busy machine: the cold layer against the
//! `decode` service for every algorithm ("≤ 5% over the raw decode"), and cold RS256 against
//! the cache hit ("≥ 35× cheaper"); each prints the medians and the median per-round ratio.

mod support;

use std::convert::Infallible;
use std::hint::black_box;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use http::{Request, Response, header};
use http_body_util::Full;
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation, decode, encode};
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

use support::{drive, drive_fn, medians, run_batched};
use tower_shield::ShieldBody;
use tower_shield::jwt::keys::algorithm_name;
use tower_shield::jwt::{
    Claims, JwtAuthLayer, Key, KeySet, MemoryRevocationStore, RevocationStore,
};

fn inner() -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>>,
> + Clone {
    service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"{}"))))
    })
}

fn sign(key: &Key, kid: &str) -> String {
    let mut header = Header::new(key.algorithm());
    header.kid = Some(kid.to_owned());
    header.typ = Some("at+jwt".to_owned());
    let now = jsonwebtoken::get_current_timestamp();
    let claims = serde_json::json!({
        "sub": "user_0123456789abcdef0123456789abcdef",
        "role": "user",
        "iss": "https://issuer.example",
        "aud": "api",
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
        "jti": "tok_0123456789abcdef0123456789abcdef",
    });
    encode(&header, &claims, key.encoding_key().expect("signing key")).expect("signs")
}

/// Times `iters` calls, building requests and dropping responses untimed.
async fn run<S, B>(service: &mut S, token: &str, iters: u64) -> Duration
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible>,
{
    let value = format!("Bearer {token}");
    run_batched(
        service,
        || {
            Request::get("/api/me")
                .header(header::AUTHORIZATION, value.as_str())
                .body(Full::default())
                .expect("request")
        },
        iters,
    )
    .await
}

/// Benches `service` answering requests that carry `token` (a clone of it per sample).
fn bench_service<S, B>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    runtime: &tokio::runtime::Runtime,
    name: impl Into<String>,
    service: &S,
    token: &str,
) where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible> + Clone,
{
    group.bench_function(name, |b| {
        b.to_async(runtime).iter_custom(|iters| {
            let mut service = service.clone();
            let token = token.to_owned();
            async move { run(&mut service, &token, iters).await }
        });
    });
}

/// Like [`run`], without an `Authorization` header (the 401 refusal alone).
async fn run_without_token<S, B>(service: &mut S, iters: u64) -> Duration
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible>,
{
    run_batched(service, || Request::new(Full::default()), iters).await
}

/// The anchor service's answer.
type Answer = std::future::Ready<Result<Response<Full<Bytes>>, Infallible>>;

/// The anchor in the same harness: a minimal service that reads the bearer token, calls
/// `decode` and answers (what a hand-rolled middleware does).
fn anchor_service(
    decoding: DecodingKey,
    validation: Validation,
) -> impl Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = Answer,
> + Clone {
    service_fn(move |req: Request<Full<Bytes>>| {
        let decoded = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| decode::<Claims>(t, &decoding, &validation));
        let status = if matches!(decoded, Some(Ok(_))) {
            200
        } else {
            401
        };
        let mut response = Response::new(Full::new(Bytes::from_static(b"{}")));
        *response.status_mut() = http::StatusCode::from_u16(status).expect("status");
        std::future::ready(Ok::<_, Infallible>(response))
    })
}

/// `decode`'s settings, as close to the layer's as `Validation` goes: one algorithm, issuer
/// and audience, `exp` and `sub` required, `exp` and `nbf` checked (the layer also checks
/// `iat`, the `typ` header and duplicate members, which `decode` cannot).
fn validation(alg: Algorithm) -> Validation {
    let mut validation = Validation::new(alg);
    validation.set_issuer(&["https://issuer.example"]);
    validation.set_audience(&["api"]);
    validation.set_required_spec_claims(&["exp", "sub"]);
    validation.validate_nbf = true;
    validation
}

/// The layer, cache off, with the same issuer and audience as [`validation`].
fn cold_layer(keys: KeySet) -> JwtAuthLayer {
    JwtAuthLayer::builder(keys)
        .issuer("https://issuer.example")
        .audience("api")
        .build()
        .expect("layer")
}

/// The layer with a cache and a memory revocation store.
fn cached_layer(keys: KeySet, store: MemoryRevocationStore) -> JwtAuthLayer {
    JwtAuthLayer::builder(keys)
        .issuer("https://issuer.example")
        .audience("api")
        .cache(10_000)
        .revocation(store)
        .build()
        .expect("layer")
}

/// A store holding revocations of other tokens and subjects (both maps non-empty).
fn store_with_others() -> MemoryRevocationStore {
    let store = MemoryRevocationStore::new();
    let far = jsonwebtoken::get_current_timestamp() + 3600;
    futures_ready(store.revoke_token("tok_someone_else", far)).expect("revoked");
    futures_ready(store.revoke_subject("user_someone_else", far - 3600, far)).expect("revoked");
    store
}

/// The cached layer behind a step that asks it first, as an IP limit's `skip_if` does:
/// `is_cached` (the token is hashed twice) or `lookup_cached` (once).
fn asked_first(
    layer: JwtAuthLayer,
    lookup: bool,
) -> impl Service<Request<Full<Bytes>>, Response = Response<ShieldBody<Full<Bytes>>>, Error = Infallible>
+ Clone {
    let asked = layer.clone();
    ServiceBuilder::new()
        .map_request(move |request: Request<Full<Bytes>>| {
            if lookup {
                let (mut parts, body) = request.into_parts();
                assert!(asked.lookup_cached(&parts.headers, &mut parts.extensions));
                Request::from_parts(parts, body)
            } else {
                assert!(asked.is_cached(request.headers()));
                request
            }
        })
        .layer(layer)
        .service(inner())
}

fn futures_ready<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("a memory store answers at once"),
    }
}

fn drive_requests<S, B>(mut service: S, token: Option<&str>, n: usize)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible>,
{
    let requests = (0..n)
        .map(|_| match token {
            Some(token) => request(token),
            None => Request::new(Full::default()),
        })
        .collect();
    let responses = drive(&mut service, requests);
    assert_eq!(responses.len(), n);
}

fn algorithm_named(name: &str) -> Algorithm {
    match name {
        "HS256" => Algorithm::HS256,
        "RS256" => Algorithm::RS256,
        "ES256" => Algorithm::ES256,
        "EdDSA" => Algorithm::EdDSA,
        other => panic!("unknown algorithm {other}"),
    }
}

/// `TS_BENCH_ONLY=<variant>`: one variant, `TS_BENCH_N` calls, for callgrind.
fn only(variant: &str) {
    let n: usize = std::env::var("TS_BENCH_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    let (kind, alg) = match variant.rsplit_once('-') {
        Some((kind, alg)) if matches!(alg, "HS256" | "RS256" | "ES256" | "EdDSA") => {
            (kind, algorithm_named(alg))
        }
        _ => (variant, Algorithm::RS256),
    };
    let key = Key::generate(alg).expect("key");
    let keys = KeySet::new().with(key.clone()).expect("keys");
    let token = sign(&key, key.kid());
    match kind {
        "cold" => drive_requests(cold_layer(keys).layer(inner()), Some(&token), n),
        "decode" => {
            let (decoding, validation) = (key.decoding_key().clone(), validation(alg));
            drive_fn(n, || decode::<Claims>(&token, &decoding, &validation));
        }
        "decode-service" => drive_requests(
            anchor_service(key.decoding_key().clone(), validation(alg)),
            Some(&token),
            n,
        ),
        "cache-hit-is-cached-first" | "cache-hit-lookup-first" => {
            let layer = cached_layer(keys, MemoryRevocationStore::new());
            let service = asked_first(layer.clone(), kind == "cache-hit-lookup-first");
            let warm = futures_ready(layer.layer(inner()).call(request(&token))).expect("response");
            assert_eq!(warm.status(), 200);
            drive_requests(service, Some(&token), n);
        }
        "cache-hit" | "cache-hit-revoked-others" => {
            let store = if kind == "cache-hit" {
                MemoryRevocationStore::new()
            } else {
                store_with_others()
            };
            let mut service = cached_layer(keys, store).layer(inner());
            let warm = futures_ready(service.call(request(&token))).expect("response");
            assert_eq!(warm.status(), 200);
            drive_requests(service, Some(&token), n);
        }
        "forged" => drive_requests(
            JwtAuthLayer::builder(keys)
                .build()
                .expect("layer")
                .layer(inner()),
            Some(&sign(&key, "../../etc/passwd")),
            n,
        ),
        "missing" => drive_requests(
            JwtAuthLayer::builder(keys)
                .build()
                .expect("layer")
                .layer(inner()),
            None,
            n,
        ),
        "baseline" => drive_requests(inner(), Some(&token), n),
        other => panic!("unknown variant {other}"),
    }
}

/// Mean ns per call of `n` calls through `service` (requests built before the clock starts).
fn mean_ns<S, B>(service: &mut S, token: &str, n: usize) -> f64
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible>,
{
    let requests = (0..n).map(|_| request(token)).collect();
    let start = Instant::now();
    let responses = drive(service, requests);
    let elapsed = start.elapsed();
    drop(responses);
    elapsed.as_nanos() as f64 / n as f64
}

/// The algorithms measured cold, each with a key of its own.
const ALGORITHMS: [Algorithm; 4] = [
    Algorithm::HS256,
    Algorithm::RS256,
    Algorithm::ES256,
    Algorithm::EdDSA,
];

/// `TS_BENCH_RATIO=1`: the ratios to the anchor, each as the median of 31 paired rounds (the
/// two sides timed back to back, in alternating order), which survives a busy machine.
fn ratio() {
    for alg in ALGORITHMS {
        let key = Key::generate(alg).expect("key");
        let token = sign(&key, key.kid());
        let keys = KeySet::new().with(key.clone()).expect("keys");
        let mut ours = cold_layer(keys).layer(inner());
        let mut anchor = anchor_service(key.decoding_key().clone(), validation(alg));
        let n = if alg == Algorithm::HS256 { 2000 } else { 200 };
        let (mut layer_ns, mut decode_ns, mut ratios) = (vec![], vec![], vec![]);
        for round in 0..31 {
            let (l, d) = if round % 2 == 0 {
                let l = mean_ns(&mut ours, &token, n);
                (l, mean_ns(&mut anchor, &token, n))
            } else {
                let d = mean_ns(&mut anchor, &token, n);
                (mean_ns(&mut ours, &token, n), d)
            };
            ratios.push(l / d);
            layer_ns.push(l);
            decode_ns.push(d);
        }
        let [l, d, r] = medians([layer_ns, decode_ns, ratios]);
        println!(
            "{} cold: layer {l:.0} ns, decode service {d:.0} ns: ratio {r:.3} (median of 31 \
             paired rounds)",
            algorithm_name(alg)
        );
    }
    let key = Key::generate(Algorithm::RS256).expect("key");
    let keys = KeySet::new().with(key.clone()).expect("keys");
    let token = sign(&key, key.kid());
    let mut cold = cold_layer(keys.clone()).layer(inner());
    let mut hit = cached_layer(keys, MemoryRevocationStore::new()).layer(inner());
    let mut bare = inner();
    let (mut colds, mut hits, mut bares, mut ratios) = (vec![], vec![], vec![], vec![]);
    for round in 0..31 {
        let (c, h, b) = if round % 2 == 0 {
            let c = mean_ns(&mut cold, &token, 200);
            (
                c,
                mean_ns(&mut hit, &token, 5000),
                mean_ns(&mut bare, &token, 5000),
            )
        } else {
            let b = mean_ns(&mut bare, &token, 5000);
            let h = mean_ns(&mut hit, &token, 5000);
            (mean_ns(&mut cold, &token, 200), h, b)
        };
        ratios.push(c / h);
        colds.push(c);
        hits.push(h);
        bares.push(b);
    }
    let [cold, hit, bare, ratio] = medians([colds, hits, bares, ratios]);
    println!(
        "RS256 cold {cold:.0} ns, cache hit {hit:.0} ns (harness alone {bare:.0} ns): \
         the hit is {ratio:.1}x cheaper (median of 31 paired rounds; token {} bytes)",
        token.len()
    );
}

fn bench(c: &mut Criterion) {
    support::maybe_install_recorder();
    if let Ok(variant) = std::env::var("TS_BENCH_ONLY") {
        only(&variant);
        std::process::exit(0);
    }
    if std::env::var_os("TS_BENCH_RATIO").is_some() {
        ratio();
        std::process::exit(0);
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("jwt");

    let mut rs_key = None;
    for alg in ALGORITHMS {
        let key = Key::generate(alg).expect("key");
        let kid = key.kid().to_owned();
        let token = sign(&key, &kid);
        let name = tower_shield::jwt::keys::algorithm_name(alg);

        let decoding = key.decoding_key().clone();
        let validation = validation(alg);
        assert!(decode::<Claims>(&token, &decoding, &validation).is_ok());
        let (message, signature) = token.rsplit_once('.').expect("three segments");
        let (message, signature) = (message.to_owned(), signature.to_owned());
        group.bench_function(format!("parts/{name}/jsonwebtoken-crypto-verify"), |b| {
            b.iter(|| {
                jsonwebtoken::crypto::verify(
                    black_box(&signature),
                    message.as_bytes(),
                    &decoding,
                    alg,
                )
            });
        });
        group.bench_function(format!("cold/{name}/jsonwebtoken-decode"), |b| {
            b.iter(|| decode::<Claims>(black_box(&token), &decoding, &validation));
        });

        let anchor = anchor_service(decoding.clone(), validation.clone());
        bench_service(
            &mut group,
            &runtime,
            format!("cold/{name}/jsonwebtoken-decode-service"),
            &anchor,
            &token,
        );

        let keys = KeySet::new().with(key.clone()).expect("keys");
        let service = cold_layer(keys).layer(inner());
        runtime.block_on(async {
            let response = service.clone().oneshot(request(&token)).await.unwrap();
            assert_eq!(response.status(), 200);
        });
        bench_service(
            &mut group,
            &runtime,
            format!("cold/{name}/tower-shield"),
            &service,
            &token,
        );
        if alg == Algorithm::RS256 {
            rs_key = Some(key);
        }
    }

    let key = rs_key.expect("RS256 key");
    let keys = KeySet::new().with(key.clone()).expect("keys");
    let token = sign(&key, key.kid());
    for (name, store) in [
        ("cache-hit/RS256/tower-shield", MemoryRevocationStore::new()),
        (
            "cache-hit/RS256/tower-shield-store-holding-others",
            store_with_others(),
        ),
    ] {
        let cached = cached_layer(keys.clone(), store).layer(inner());
        runtime.block_on(async {
            let response = cached.clone().oneshot(request(&token)).await.unwrap();
            assert_eq!(response.status(), 200);
        });
        bench_service(&mut group, &runtime, name, &cached, &token);
    }
    for (name, lookup) in [
        ("cache-hit/RS256/is-cached-then-layer", false),
        ("cache-hit/RS256/lookup-cached-then-layer", true),
    ] {
        let layer = cached_layer(keys.clone(), MemoryRevocationStore::new());
        let service = asked_first(layer.clone(), lookup);
        runtime.block_on(async {
            let response = layer.layer(inner()).oneshot(request(&token)).await.unwrap();
            assert_eq!(response.status(), 200);
        });
        bench_service(&mut group, &runtime, name, &service, &token);
    }

    // The harness alone (request through the bare inner service), to read the layer's own
    // cost as the difference.
    bench_service(
        &mut group,
        &runtime,
        "baseline/inner-service-only",
        &inner(),
        &token,
    );
    // What a hit does instead of hashing the token: compare it with the cached copy in
    // constant time (aws-lc's CRYPTO_memcmp), and, for scale, the SHA-256 it replaced.
    let (left, right) = (token.clone().into_bytes(), token.clone().into_bytes());
    group.bench_function("parts/constant-time-compare-of-token", |b| {
        b.iter(|| {
            aws_lc_rs::constant_time::verify_slices_are_equal(black_box(&left), black_box(&right))
        });
    });
    group.bench_function("parts/sha256-of-token", |b| {
        b.iter(|| aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, black_box(&left)));
    });

    let forged = sign(&key, "../../etc/passwd");
    let plain = JwtAuthLayer::builder(keys)
        .build()
        .expect("layer")
        .layer(inner());
    runtime.block_on(async {
        let response = plain.clone().oneshot(request(&forged)).await.unwrap();
        assert_eq!(response.status(), 401);
    });
    group.bench_function("refusal/missing-token/tower-shield", |b| {
        b.to_async(&runtime).iter_custom(|iters| {
            let mut service = plain.clone();
            async move { run_without_token(&mut service, iters).await }
        });
    });
    bench_service(
        &mut group,
        &runtime,
        "forged-bad-kid/RS256/tower-shield",
        &plain,
        &forged,
    );
    group.finish();
}

fn request(token: &str) -> Request<Full<Bytes>> {
    Request::get("/api/me")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::default())
        .expect("request")
}

criterion_group!(benches, bench);
criterion_main!(benches);
