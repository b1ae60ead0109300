//! RequestIdLayer against tower-http's `SetRequestIdLayer` + `PropagateRequestIdLayer` (UUID v4),
//! and a bare service, in one criterion group so the ratios come from one run.
//!
//! `cargo bench --bench request_id -- --warm-up-time 1 --measurement-time 3`

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Instant;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{HeaderValue, Request, Response, header};
use http_body_util::Empty;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
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
            "bare" => count(&runtime, service_fn(handler)),
            "ours" => count(
                &runtime,
                ServiceBuilder::new()
                    .layer(RequestIdLayer::new())
                    .service_fn(handler),
            ),
            "ours_v7" => count(
                &runtime,
                ServiceBuilder::new()
                    .layer(RequestIdLayer::new().uuid_v7())
                    .service_fn(handler),
            ),
            "theirs" => count(
                &runtime,
                ServiceBuilder::new()
                    .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                    .layer(PropagateRequestIdLayer::x_request_id())
                    .service_fn(handler),
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

/// Mean time of one call, in ns, over `n` calls on clones of `service`; the requests are built
/// before the clock starts.
async fn time_calls<S>(service: &S, n: usize, make_request: fn() -> Request<()>) -> f64
where
    S: Service<Request<()>> + Clone,
    S::Error: std::fmt::Debug,
{
    let requests: Vec<_> = (0..n).map(|_| make_request()).collect();
    let start = Instant::now();
    for request in requests {
        std::hint::black_box(service.clone().oneshot(request).await.unwrap());
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

/// Runs 200,000 calls (for instruction counting).
fn count<S>(runtime: &tokio::runtime::Runtime, service: S)
where
    S: Service<Request<()>> + Clone,
    S::Error: std::fmt::Debug,
{
    runtime.block_on(async {
        for _ in 0..20 {
            time_calls(&service, 10_000, request).await;
        }
    });
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// A paired measurement that survives a busy machine: 31 rounds, each timing the bare
/// service, ours and theirs back to back (in rotating order), and the medians of the
/// per-round overheads over bare.
fn paired<A, B, C>(
    runtime: &tokio::runtime::Runtime,
    label: &str,
    bare: A,
    ours: B,
    theirs: C,
    make_request: fn() -> Request<()>,
) where
    A: Service<Request<()>> + Clone,
    A::Error: std::fmt::Debug,
    B: Service<Request<()>> + Clone,
    B::Error: std::fmt::Debug,
    C: Service<Request<()>> + Clone,
    C::Error: std::fmt::Debug,
{
    const N: usize = 20_000;
    let (mut ours_over, mut theirs_over) = (Vec::new(), Vec::new());
    for round in 0..31 {
        let (b, o, t) = runtime.block_on(async {
            match round % 3 {
                0 => {
                    let b = time_calls(&bare, N, make_request).await;
                    let o = time_calls(&ours, N, make_request).await;
                    (b, o, time_calls(&theirs, N, make_request).await)
                }
                1 => {
                    let o = time_calls(&ours, N, make_request).await;
                    let t = time_calls(&theirs, N, make_request).await;
                    (time_calls(&bare, N, make_request).await, o, t)
                }
                _ => {
                    let t = time_calls(&theirs, N, make_request).await;
                    let b = time_calls(&bare, N, make_request).await;
                    (b, time_calls(&ours, N, make_request).await, t)
                }
            }
        });
        ours_over.push(o - b);
        theirs_over.push(t - b);
    }
    let (ours_over, theirs_over) = (median(&mut ours_over), median(&mut theirs_over));
    println!(
        "{label}: paired medians of 31 rounds: tower-shield +{ours_over:.0} ns over bare, \
         tower-http +{theirs_over:.0} ns over bare; overhead ratio {:.2}",
        ours_over / theirs_over
    );
}

criterion_group!(benches, request_id);
criterion_main!(benches);
