//! RequestIdLayer against tower-http's `SetRequestIdLayer` + `PropagateRequestIdLayer` (UUID v4),
//! a bare service, and the floor (the same writes hand-written with a pre-built id, no layer),
//! in one criterion group so the ratios come from one run; and the making of one id alone.
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

use support::{contender, paired, time_calls};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_shield::RequestId;
use tower_shield::request_id::{RequestIdLayer, X_REQUEST_ID};

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

/// The floor: the writes `RequestIdLayer` makes (the id into the request header, a
/// `RequestId` into the extensions, the id onto the response), hand-written in front of the
/// handler with one pre-built id that costs nothing to clone. Only the making of a new id
/// (timed alone as `uuid_v4_header_value`) is left out.
async fn floor(mut request: Request<()>) -> Result<Response<Empty<Bytes>>, Infallible> {
    const ID: HeaderValue = HeaderValue::from_static("0d4c1b2a-1111-4222-8333-444455556666");
    request.headers_mut().insert(X_REQUEST_ID.clone(), ID);
    request.extensions_mut().insert(RequestId::new(ID));
    let mut response = handler(request).await?;
    response.headers_mut().insert(X_REQUEST_ID.clone(), ID);
    Ok(response)
}

/// A new id as `RequestIdLayer` makes one: a UUID v4 from uuid's `fast-rng`, formatted on the
/// stack into one shared `Bytes`.
fn uuid_v4_header_value() -> HeaderValue {
    let mut buffer = [0u8; uuid::fmt::Hyphenated::LENGTH];
    uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buffer);
    HeaderValue::from_maybe_shared(Bytes::from_owner(buffer)).unwrap()
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
            "ours" => count(&runtime, ours(RequestIdLayer::new()), request),
            "ours_trusted" => count(
                &runtime,
                ours(
                    RequestIdLayer::builder()
                        .trust_incoming(true)
                        .build()
                        .unwrap(),
                ),
                trusted_request,
            ),
            "floor" => count(&runtime, service_fn(floor), request),
            "bare_trusted" => count(&runtime, service_fn(handler), trusted_request),
            "ours_v7" => count(
                &runtime,
                ours(RequestIdLayer::builder().uuid_v7().build().unwrap()),
                request,
            ),
            "theirs" => count(&runtime, theirs(), request),
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
        ours(RequestIdLayer::new()),
        request,
    );
    bench(
        &mut group,
        &runtime,
        "tower_shield_v7",
        ours(RequestIdLayer::builder().uuid_v7().build().unwrap()),
        request,
    );
    bench(
        &mut group,
        &runtime,
        "tower_shield_trusted_incoming",
        ours(
            RequestIdLayer::builder()
                .trust_incoming(true)
                .build()
                .unwrap(),
        ),
        trusted_request,
    );
    bench(
        &mut group,
        &runtime,
        "tower_http_set_and_propagate",
        theirs(),
        request,
    );
    bench(
        &mut group,
        &runtime,
        "floor_prebuilt_id",
        service_fn(floor),
        request,
    );
    group.bench_function("uuid_v4_header_value", |b| {
        b.iter(|| std::hint::black_box(uuid_v4_header_value()))
    });
    group.finish();

    paired(
        "request_id (uuid v4)",
        [
            contender(&runtime, service_fn(handler), request),
            contender(&runtime, ours(RequestIdLayer::new()), request),
            contender(&runtime, theirs(), request),
            contender(&runtime, service_fn(floor), request),
        ],
    );
}

/// `layer` in front of the handler.
fn ours(layer: RequestIdLayer) -> impl Service<Request<()>, Error = Infallible> + Clone {
    ServiceBuilder::new().layer(layer).service_fn(handler)
}

/// The anchor: tower-http's `SetRequestIdLayer` + `PropagateRequestIdLayer` with UUID v4.
fn theirs() -> impl Service<Request<()>, Error = Infallible> + Clone {
    ServiceBuilder::new()
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(PropagateRequestIdLayer::x_request_id())
        .service_fn(handler)
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
