//! SecurityHeadersLayer against a stack of five tower-http `SetResponseHeaderLayer::overriding`
//! setting the same five headers, and a bare service, in one criterion group.
//!
//! `cargo bench --bench security_headers -- --warm-up-time 1 --measurement-time 3`

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{HeaderValue, Request, Response, header};
use http_body_util::Empty;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

use support::{paired, time_calls};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_shield::security_headers::{SecurityHeaders, SecurityHeadersLayer};

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
            "ours" => count(
                &runtime,
                ServiceBuilder::new().layer(five()).service_fn(handler),
            ),
            "ours_api" => count(
                &runtime,
                ServiceBuilder::new()
                    .layer(SecurityHeadersLayer::api())
                    .service_fn(handler),
            ),
            "theirs" => count(&runtime, tower_http_five()),
            other => panic!("unknown variant {other}"),
        }
        std::process::exit(0);
    }
    let mut group = c.benchmark_group("security_headers");

    bench(&mut group, &runtime, "bare", service_fn(handler));

    bench(
        &mut group,
        &runtime,
        "tower_shield_five",
        ServiceBuilder::new().layer(five()).service_fn(handler),
    );
    bench(
        &mut group,
        &runtime,
        "tower_shield_api_preset",
        ServiceBuilder::new()
            .layer(SecurityHeadersLayer::api())
            .service_fn(handler),
    );
    bench(
        &mut group,
        &runtime,
        "tower_http_five_set_response_header",
        tower_http_five(),
    );
    group.finish();

    paired(
        &runtime,
        "security_headers (same five headers)",
        service_fn(handler),
        ServiceBuilder::new().layer(five()).service_fn(handler),
        tower_http_five(),
        request,
    );
    paired(
        &runtime,
        "security_headers (api preset: 10 headers + 2 removed, vs tower-http five)",
        service_fn(handler),
        ServiceBuilder::new()
            .layer(SecurityHeadersLayer::api())
            .service_fn(handler),
        tower_http_five(),
        request,
    );
}

/// Our layer configured with the same five headers as the tower-http stack, nothing stripped.
fn five() -> SecurityHeadersLayer {
    SecurityHeaders::api()
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
