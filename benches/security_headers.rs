//! SecurityHeadersLayer against a stack of five tower-http `SetResponseHeaderLayer::overriding`
//! setting the same five headers, a bare service, and the floors (the same headers set by hand
//! from pre-built values, no layer), in one criterion group.
//!
//! `cargo bench --bench security_headers -- --warm-up-time 1 --measurement-time 3`

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{HeaderName, HeaderValue, Request, Response, header};
use http_body_util::Empty;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

use support::{contender, paired, time_calls};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_shield::security_headers::{SecurityHeadersLayer, SecurityHeadersLayerBuilder};

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
        .uri("https://api.example/items/42")
        .header("host", "api.example")
        .header("accept", "application/json")
        .body(())
        .unwrap();
    request
        .extensions_mut()
        .insert(SocketAddr::from(([192, 0, 2, 1], 40000)));
    request
}

const HSTS: &str = "max-age=31536000; includeSubDomains";
const CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// The five headers of [`five`] and [`tower_http_five`].
const FIVE: [(HeaderName, &str); 5] = [
    (header::STRICT_TRANSPORT_SECURITY, HSTS),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::CONTENT_SECURITY_POLICY, CSP),
    (header::REFERRER_POLICY, "no-referrer"),
];

/// The other headers `SecurityHeadersLayerBuilder::api()` sets (it also removes `Server` and
/// `X-Powered-By`).
const API_MORE: [(&str, &str); 6] = [
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    (
        "permissions-policy",
        "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), \
         microphone=(), payment=(), usb=()",
    ),
    ("x-xss-protection", "0"),
    ("x-permitted-cross-domain-policies", "none"),
    ("cache-control", "no-store"),
];

/// The floor for the five headers: the handler's response gets them from pre-built values,
/// by hand, with no layer (room reserved first, as a careful handler would).
async fn floor_five(request: Request<()>) -> Result<Response<Empty<Bytes>>, Infallible> {
    let mut response = handler(request).await?;
    let headers = response.headers_mut();
    headers.reserve(FIVE.len());
    for (name, value) in FIVE {
        headers.insert(name, HeaderValue::from_static(value));
    }
    Ok(response)
}

/// The floor for `api()`: its eleven headers set and its two removals made by hand.
async fn floor_api(request: Request<()>) -> Result<Response<Empty<Bytes>>, Infallible> {
    let mut response = floor_five(request).await?;
    let headers = response.headers_mut();
    headers.reserve(API_MORE.len());
    for (name, value) in API_MORE {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    headers.remove(header::SERVER);
    headers.remove("x-powered-by");
    Ok(response)
}

fn bench<S>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    runtime: &tokio::runtime::Runtime,
    name: &str,
    service: S,
) where
    S: Service<Request<()>> + Clone,
    S::Error: std::fmt::Debug,
{
    group.bench_function(name, |b| {
        b.to_async(runtime).iter_batched(
            || (service.clone(), request()),
            |(service, request)| async move {
                std::hint::black_box(service.oneshot(request).await.unwrap());
            },
            BatchSize::SmallInput,
        )
    });
}

fn security_headers(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // `TS_BENCH_ONLY=<variant>` runs 200,000 calls of one variant and exits, for
    // `perf stat -e instructions:u`, whose counts do not depend on the machine's load.
    if let Ok(variant) = std::env::var("TS_BENCH_ONLY") {
        match variant.as_str() {
            "bare" => count(&runtime, service_fn(handler)),
            "ours" => count(&runtime, ours(five())),
            "ours_api" => count(&runtime, ours(SecurityHeadersLayer::api())),
            "theirs" => count(&runtime, tower_http_five()),
            "floor" => count(&runtime, service_fn(floor_five)),
            "floor_api" => count(&runtime, service_fn(floor_api)),
            other => panic!("unknown variant {other}"),
        }
        std::process::exit(0);
    }
    let mut group = c.benchmark_group("security_headers");

    bench(&mut group, &runtime, "bare", service_fn(handler));

    bench(&mut group, &runtime, "tower_shield_five", ours(five()));
    bench(
        &mut group,
        &runtime,
        "tower_shield_api_preset",
        ours(SecurityHeadersLayer::api()),
    );
    bench(
        &mut group,
        &runtime,
        "tower_http_five_set_response_header",
        tower_http_five(),
    );

    bench(&mut group, &runtime, "floor_five", service_fn(floor_five));
    bench(
        &mut group,
        &runtime,
        "floor_api_preset",
        service_fn(floor_api),
    );
    group.finish();

    paired(
        "security_headers (same five headers)",
        [
            contender(&runtime, service_fn(handler), request),
            contender(&runtime, ours(five()), request),
            contender(&runtime, tower_http_five(), request),
            contender(&runtime, service_fn(floor_five), request),
        ],
    );
    paired(
        "security_headers (api preset: 11 headers + 2 removed, vs tower-http five)",
        [
            contender(&runtime, service_fn(handler), request),
            contender(&runtime, ours(SecurityHeadersLayer::api()), request),
            contender(&runtime, tower_http_five(), request),
            contender(&runtime, service_fn(floor_api), request),
        ],
    );
}

/// `layer` in front of the handler.
fn ours(layer: SecurityHeadersLayer) -> impl Service<Request<()>, Error = Infallible> + Clone {
    ServiceBuilder::new().layer(layer).service_fn(handler)
}

/// Our layer configured with the same five headers as the tower-http stack, nothing stripped.
fn five() -> SecurityHeadersLayer {
    SecurityHeadersLayerBuilder::api()
        .remove("cross-origin-opener-policy")
        .remove("cross-origin-resource-policy")
        .remove("permissions-policy")
        .remove("cache-control")
        .remove("x-xss-protection")
        .remove("x-permitted-cross-domain-policies")
        .keep(header::SERVER)
        .keep(http::HeaderName::from_static("x-powered-by"))
        .override_existing(true)
        .build()
        .unwrap()
}

/// The anchor: five tower-http `SetResponseHeaderLayer::overriding`.
fn tower_http_five() -> impl Service<Request<()>, Error = Infallible> + Clone {
    ServiceBuilder::new()
        .layer(SetResponseHeaderLayer::overriding(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .service_fn(handler)
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

criterion_group!(benches, security_headers);
criterion_main!(benches);
