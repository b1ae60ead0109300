//! RequestIdLayer against tower-http's `SetRequestIdLayer` + `PropagateRequestIdLayer` (UUID v4),
//! and a bare service, in one criterion group so the ratios come from one run.
//!
//! `cargo bench --bench request_id -- --warm-up-time 1 --measurement-time 3`

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{HeaderValue, Request, Response, header};
use http_body_util::Empty;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

use support::{paired, time_calls};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_shield::request_id::RequestIdLayer;

/// A handler answering like a real one: with a `content-type`.
async fn handler(_: Request<()>) -> Result<Response<Empty<Bytes>>, Infallible> {
    let mut response = Response::new(Empty::new());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// A request as a server hands it over: a few headers, and the peer address in the extensions.
fn request() -> Request<()> {
    let mut request = Request::builder()
        .uri("/items/42")
        .header("host", "api.example")
        .header("accept", "application/json")
        .body(())
        .unwrap();
    request
        .extensions_mut()
        .insert(SocketAddr::from(([192, 0, 2, 1], 40000)));
    request
}

fn trusted_request() -> Request<()> {
    let mut request = request();
    request.headers_mut().insert(
        "x-request-id",
        HeaderValue::from_static("0d4c1b2a-1111-4222-8333-444455556666"),
    );
    request
}

/// Times one call of a clone of `service` on a fresh request (both made outside the timing).
fn bench<S>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    runtime: &tokio::runtime::Runtime,
    name: &str,
    service: S,
    make_request: fn() -> Request<()>,
) where
    S: Service<Request<()>> + Clone,
    S::Error: std::fmt::Debug,
{
    group.bench_function(name, |b| {
        b.to_async(runtime).iter_batched(
            || (service.clone(), make_request()),
            |(service, request)| async move {
                std::hint::black_box(service.oneshot(request).await.unwrap());
            },
            BatchSize::SmallInput,
        )
    });
}

fn request_id(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // `TS_BENCH_ONLY=<variant>` runs 200,000 calls of one variant and exits, for
    // `perf stat -e instructions:u`, whose counts do not depend on the machine's load.
    if let Ok(variant) = std::env::var("TS_BENCH_ONLY") {
        match variant.as_str() {
            "bare" => count(&runtime, service_fn(handler), request),
            "ours" => count(
                &runtime,
                ServiceBuilder::new()
                    .layer(RequestIdLayer::new())
                    .service_fn(handler),
                request,
            ),
            "ours_trusted" => count(
                &runtime,
                ServiceBuilder::new()
                    .layer(RequestIdLayer::new().trust_incoming(true))
                    .service_fn(handler),
                trusted_request,
            ),
            "bare_trusted" => count(&runtime, service_fn(handler), trusted_request),
            "ours_v7" => count(
                &runtime,
                ServiceBuilder::new()
                    .layer(RequestIdLayer::new().uuid_v7())
                    .service_fn(handler),
                request,
            ),
            "theirs" => count(
                &runtime,
                ServiceBuilder::new()
                    .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                    .layer(PropagateRequestIdLayer::x_request_id())
                    .service_fn(handler),
                request,
            ),
            other => panic!("unknown variant {other}"),
        }
        std::process::exit(0);
    }
    let mut group = c.benchmark_group("request_id");

    bench(&mut group, &runtime, "bare", service_fn(handler), request);
    bench(
        &mut group,
        &runtime,
        "tower_shield_v4",
        ServiceBuilder::new()
            .layer(RequestIdLayer::new())
            .service_fn(handler),
        request,
    );
    bench(
        &mut group,
        &runtime,
        "tower_shield_v7",
        ServiceBuilder::new()
            .layer(RequestIdLayer::new().uuid_v7())
            .service_fn(handler),
        request,
    );
    bench(
        &mut group,
        &runtime,
        "tower_shield_trusted_incoming",
        ServiceBuilder::new()
            .layer(RequestIdLayer::new().trust_incoming(true))
            .service_fn(handler),
        trusted_request,
    );
    bench(
        &mut group,
        &runtime,
        "tower_http_set_and_propagate",
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(PropagateRequestIdLayer::x_request_id())
            .service_fn(handler),
        request,
    );
    group.finish();

    paired(
        &runtime,
        "request_id (uuid v4)",
        service_fn(handler),
        ServiceBuilder::new()
            .layer(RequestIdLayer::new())
            .service_fn(handler),
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
            .layer(PropagateRequestIdLayer::x_request_id())
            .service_fn(handler),
        request,
    );
}

/// Runs 200,000 calls (for instruction counting).
fn count<S>(runtime: &tokio::runtime::Runtime, service: S, make_request: fn() -> Request<()>)
where
    S: Service<Request<()>> + Clone,
    S::Error: std::fmt::Debug,
{
    runtime.block_on(async {
        for _ in 0..20 {
            time_calls(&service, 10_000, make_request).await;
        }
    });
}

criterion_group!(benches, request_id);
criterion_main!(benches);
