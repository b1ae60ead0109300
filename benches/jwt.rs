//! `JwtAuthLayer` against a bare `jsonwebtoken::decode` (the anchor: the primitive every Rust
//! JWT middleware wraps), in one criterion group so the ratios come from one run.
//!
//! - `cold/<alg>/jsonwebtoken-decode`: `decode::<Claims>` with a `Validation` for that one
//!   algorithm, issuer and audience (exp checked against the system clock), nothing else.
//! - `cold/<alg>/jsonwebtoken-decode-service`: the same `decode` inside a minimal
//!   `service_fn` (read `Authorization`, decode, answer) driven by the same harness as ours.
//! - `parts/<alg>/jsonwebtoken-crypto-verify`: the signature check alone.
//! - `cold/<alg>/tower-shield`: the whole layer with the cache off: header and claims checks,
//!   signature, claims type, extensions (`Verified`, `Principal`, `Scopes`), inner service.
//! - `cache-hit/tower-shield`: the same RS256 token again with `.cache(..)` and a
//!   `MemoryRevocationStore` (hash, lookup, time/key recheck, revocation check, extensions).
//! - `forged-bad-kid/tower-shield`: an RS256 token naming an unknown `kid`, refused with a
//!   401 problem+json before any signature work.
//!
//! - `refusal/missing-token/tower-shield`: no token at all (the cost of building a 401).
//! - `baseline/inner-service-only`: the same loop without any layer (harness cost).
//!
//! Run: `cargo bench --bench jwt -- --warm-up-time 1 --measurement-time 3`. Requests are built
//! outside the timed region; each call is `ready().await` + `call().await` on one service.

mod support;

use std::convert::Infallible;
use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response, header};
use http_body_util::Full;
use jsonwebtoken::{Algorithm, Header, Validation, decode, encode};
use tower::{Layer, Service, ServiceExt, service_fn};

use support::run_batched;
use tower_shield::jwt::{Claims, JwtAuthLayer, Key, KeySet, MemoryRevocationStore};

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

/// Like [`run`], without an `Authorization` header (the 401 refusal alone).
async fn run_without_token<S, B>(service: &mut S, iters: u64) -> Duration
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible>,
{
    run_batched(service, || Request::new(Full::default()), iters).await
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("jwt");

    let mut rs_key = None;
    for alg in [
        Algorithm::HS256,
        Algorithm::RS256,
        Algorithm::ES256,
        Algorithm::EdDSA,
    ] {
        let key = Key::generate(alg).expect("key");
        let kid = key.kid().to_owned();
        let token = sign(&key, &kid);
        let name = tower_shield::jwt::algorithm_name(alg);

        let decoding = key.decoding_key().clone();
        let mut validation = Validation::new(alg);
        validation.set_issuer(&["https://issuer.example"]);
        validation.set_audience(&["api"]);
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

        // The anchor in the same harness: a minimal service that reads the bearer token,
        // calls `decode` and answers (what a hand-rolled middleware does).
        let anchor = {
            let decoding = decoding.clone();
            let validation = validation.clone();
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
        };
        group.bench_function(format!("cold/{name}/jsonwebtoken-decode-service"), |b| {
            b.to_async(&runtime).iter_custom(|iters| {
                let mut service = anchor.clone();
                let token = token.clone();
                async move { run(&mut service, &token, iters).await }
            });
        });

        let keys = KeySet::new().with(key.clone()).expect("keys");
        let layer = JwtAuthLayer::builder(keys)
            .issuer("https://issuer.example")
            .audience("api")
            .build()
            .expect("layer");
        let service = layer.layer(inner());
        runtime.block_on(async {
            let response = service.clone().oneshot(request(&token)).await.unwrap();
            assert_eq!(response.status(), 200);
        });
        group.bench_function(format!("cold/{name}/tower-shield"), |b| {
            b.to_async(&runtime).iter_custom(|iters| {
                let mut service = service.clone();
                let token = token.clone();
                async move { run(&mut service, &token, iters).await }
            });
        });
        if alg == Algorithm::RS256 {
            rs_key = Some(key);
        }
    }

    let key = rs_key.expect("RS256 key");
    let keys = KeySet::new().with(key.clone()).expect("keys");
    let token = sign(&key, key.kid());
    let cached = JwtAuthLayer::builder(keys.clone())
        .issuer("https://issuer.example")
        .audience("api")
        .cache(10_000)
        .revocation(MemoryRevocationStore::new())
        .build()
        .expect("layer")
        .layer(inner());
    runtime.block_on(async {
        let response = cached.clone().oneshot(request(&token)).await.unwrap();
        assert_eq!(response.status(), 200);
    });
    group.bench_function("cache-hit/RS256/tower-shield", |b| {
        b.to_async(&runtime).iter_custom(|iters| {
            let mut service = cached.clone();
            let token = token.clone();
            async move { run(&mut service, &token, iters).await }
        });
    });

    // The harness alone (request through the bare inner service), to read the layer's own
    // cost as the difference.
    group.bench_function("baseline/inner-service-only", |b| {
        b.to_async(&runtime).iter_custom(|iters| {
            let mut service = inner();
            let token = token.clone();
            async move { run(&mut service, &token, iters).await }
        });
    });
    let digest_input = token.clone();
    group.bench_function("parts/sha256-of-token", |b| {
        b.iter(|| {
            aws_lc_rs::digest::digest(
                &aws_lc_rs::digest::SHA256,
                black_box(digest_input.as_bytes()),
            )
        });
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
    group.bench_function("forged-bad-kid/RS256/tower-shield", |b| {
        b.to_async(&runtime).iter_custom(|iters| {
            let mut service = plain.clone();
            let token = forged.clone();
            async move { run(&mut service, &token, iters).await }
        });
    });
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
