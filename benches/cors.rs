//! `CorsLayer` against tower-http's `CorsLayer`, configured the same way (the demo API's
//! settings), on a preflight and on a simple request from an allowed origin, over the same
//! inner service.
//!
//! Run: `cargo bench --bench cors` (the ratio is ours / tower-http's median, per case).
//! Requests are built outside the timed region; each call is `ready().await` + `call().await`
//! on one service (no clone per request), and responses are dropped outside it too.

mod support;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::header::{
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, AUTHORIZATION, CONTENT_TYPE,
    ORIGIN,
};
use http::{HeaderName, HeaderValue, Method, Request, Response};
use http_body_util::Full;
use tower::{Layer, Service, ServiceExt, service_fn};

use support::run_batched;

const ALLOWED: &str = "https://app.example.com";
const OTHER: &str = "http://localhost:5173";
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

fn ours() -> tower_shield::cors::CorsLayer {
    tower_shield::cors::CorsLayer::builder()
        .allow_origin(ALLOWED)
        .allow_origin(OTHER)
        .allow_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
        .allow_headers(["authorization", "content-type", "x-request-id"])
        .expose_headers([
            "x-request-id",
            "ratelimit",
            "ratelimit-policy",
            "retry-after",
        ])
        .allow_credentials(true)
        .max_age(Duration::from_secs(600))
        .build()
        .expect("valid configuration")
}

fn theirs() -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    CorsLayer::new()
        .allow_origin(AllowOrigin::list([
            HeaderValue::from_static(ALLOWED),
            HeaderValue::from_static(OTHER),
        ]))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            AUTHORIZATION,
            CONTENT_TYPE,
            HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("ratelimit"),
            HeaderName::from_static("ratelimit-policy"),
            HeaderName::from_static("retry-after"),
        ])
        .allow_credentials(true)
        .max_age(Duration::from_secs(600))
}

fn preflight() -> Request<Full<Bytes>> {
    Request::builder()
        .method(Method::OPTIONS)
        .uri("/v1/items")
        .header(ORIGIN, ALLOWED)
        .header(ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(ACCESS_CONTROL_REQUEST_HEADERS, "content-type,x-request-id")
        .body(Full::default())
        .expect("valid request")
}

fn simple() -> Request<Full<Bytes>> {
    Request::builder()
        .uri("/v1/items")
        .header(ORIGIN, ALLOWED)
        .body(Full::default())
        .expect("valid request")
}

/// Times `iters` calls of `service`, building requests and dropping responses untimed.
async fn run<S, B>(service: &mut S, make: fn() -> Request<Full<Bytes>>, iters: u64) -> Duration
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>, Error = Infallible>,
{
    run_batched(service, make, iters).await
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");

    // Sanity: both answer the preflight and decorate the simple request.
    runtime.block_on(async {
        let response = ours().layer(inner()).oneshot(preflight()).await.unwrap();
        assert_eq!(response.status(), 204);
        let response = theirs().layer(inner()).oneshot(preflight()).await.unwrap();
        assert!(response.status().is_success());
        let response = ours().layer(inner()).oneshot(simple()).await.unwrap();
        assert_eq!(response.headers()["access-control-allow-origin"], ALLOWED);
        let response = theirs().layer(inner()).oneshot(simple()).await.unwrap();
        assert_eq!(response.headers()["access-control-allow-origin"], ALLOWED);
    });

    let mut group = c.benchmark_group("cors");
    for (case, make) in [
        ("preflight", preflight as fn() -> Request<Full<Bytes>>),
        ("simple", simple),
    ] {
        group.bench_function(format!("{case}/tower-shield"), |b| {
            let service = ours().layer(inner());
            b.to_async(&runtime).iter_custom(|iters| {
                let mut service = service.clone();
                async move { run(&mut service, make, iters).await }
            });
        });
        group.bench_function(format!("{case}/tower-http"), |b| {
            let service = theirs().layer(inner());
            b.to_async(&runtime).iter_custom(|iters| {
                let mut service = service.clone();
                async move { run(&mut service, make, iters).await }
            });
        });
    }
    group.finish();

    // A paired measurement that survives a busy machine: alternate batches of ours and
    // theirs, and report the median of the per-round ratios.
    for (case, make) in [
        ("preflight", preflight as fn() -> Request<Full<Bytes>>),
        ("simple", simple),
    ] {
        let mut our_service = ours().layer(inner());
        let mut their_service = theirs().layer(inner());
        let mut ratios: Vec<f64> = runtime.block_on(async {
            let mut ratios = Vec::with_capacity(31);
            for round in 0..31 {
                let (a, b) = if round % 2 == 0 {
                    let a = run(&mut our_service, make, 20_000).await;
                    (a, run(&mut their_service, make, 20_000).await)
                } else {
                    let b = run(&mut their_service, make, 20_000).await;
                    (run(&mut our_service, make, 20_000).await, b)
                };
                ratios.push(a.as_secs_f64() / b.as_secs_f64());
            }
            ratios
        });
        ratios.sort_by(f64::total_cmp);
        println!(
            "cors/{case}: paired ratio tower-shield / tower-http, median of 31 rounds: {:.2} \
             (min {:.2}, max {:.2})",
            ratios[15], ratios[0], ratios[30]
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
