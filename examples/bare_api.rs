//! The demo's `/health` and `/api/me` with no tower-shield layer at all: the baseline of
//! `benches/load.sh`. Not a service to copy: it has no security whatsoever (`/api/me` answers
//! a fixed body without any authentication).
//!
//! ```text
//! BIND_ADDR=127.0.0.1:0 cargo run --release --example bare_api
//! ```
//!
//! `LAYERS` puts one edge stack in front of the same routes, so the load script can measure
//! what the issue's `/health` goal names, and the anchor crate beside it, in one run:
//! - `none` (default): nothing.
//! - `shield`: tower-shield's `RequestIdLayer`, `SecurityHeaders::api()` and `CorsLayer`,
//!   configured as the demo configures them.
//! - `shield-five`: the same with only the five headers tower-http's stack below sets
//!   (`SecurityHeaders::api()` minus the other six; HSTS only over HTTPS, so four here).
//! - `tower-http`: tower-http's `SetRequestIdLayer` + `PropagateRequestIdLayer` (UUID v4), its
//!   `CorsLayer` with the same allowlist, and five `SetResponseHeaderLayer`s (nosniff,
//!   frame-options, CSP, referrer policy, HSTS).
//! - `same-bytes`: no layer logic at all, the response gets the same header lines the
//!   `shield` stack writes (a fixed request id), from pre-built values, and on `/api/me` also
//!   the demo's two `RateLimit` fields: the floor that the extra response bytes alone set.

use std::io::Write;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::routing::get;
use serde_json::json;
use tower::ServiceBuilder;
use tower::util::MapResponseLayer;
use tower_shield::cors::CorsLayer;
use tower_shield::request_id::RequestIdLayer;
use tower_shield::security_headers::SecurityHeaders;

/// The origin both CORS layers allow (requests without `Origin` are what the load test sends).
const ORIGIN: &str = "https://app.example";

#[tokio::main]
async fn main() {
    let bind = std::env::var("BIND_ADDR").unwrap_or_else(|_| "127.0.0.1:3001".to_owned());
    let layers = std::env::var("LAYERS").unwrap_or_else(|_| "none".to_owned());
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .expect("BIND_ADDR is a free socket address");
    let health = get(|| async { Json(json!({ "status": "ok" })) });
    let me = get(|| async {
        Json(json!({
            "sub": "user_00000000000000000000000000000000",
            "role": "user",
            "email": "load@example.com",
        }))
    });
    let (health, me) = if layers == "same-bytes" {
        (health.layer(same_bytes(false)), me.layer(same_bytes(true)))
    } else {
        (health, me)
    };
    let router = Router::new().route("/health", health).route("/api/me", me);
    let router = match layers.as_str() {
        "none" => router,
        "shield" => shield(router, SecurityHeaders::api()),
        "shield-five" => shield(
            router,
            SecurityHeaders::api()
                .remove("cross-origin-opener-policy")
                .remove("cross-origin-resource-policy")
                .remove("permissions-policy")
                .remove("cache-control")
                .remove("x-xss-protection")
                .remove("x-permitted-cross-domain-policies"),
        ),
        "tower-http" => tower_http(router),
        "same-bytes" => router,
        other => {
            panic!("LAYERS={other}: expected none, shield, shield-five, tower-http or same-bytes")
        }
    };
    println!(
        "listening on http://{}",
        listener.local_addr().expect("bound")
    );
    let _ = std::io::stdout().flush();
    axum::serve(listener, router).await.expect("serve");
}

/// tower-shield's edge layers, as the demo configures them, with these security headers.
fn shield(router: Router, headers: SecurityHeaders) -> Router {
    let cors = CorsLayer::builder()
        .allow_origins([ORIGIN])
        .allow_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
        .allow_headers(["authorization", "content-type", "x-request-id"])
        .expose_headers(["x-request-id"])
        .allow_credentials(true)
        .max_age(Duration::from_secs(600))
        .build()
        .expect("valid CORS configuration");
    router.layer(
        ServiceBuilder::new()
            .layer(RequestIdLayer::new())
            .layer(headers.build().expect("valid security headers"))
            .layer(cors),
    )
}

/// The same job done with tower-http's layers.
fn tower_http(router: Router) -> Router {
    use tower_http::cors::{AllowOrigin, CorsLayer as TowerHttpCors};
    use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
    use tower_http::set_header::SetResponseHeaderLayer;

    let request_id = HeaderName::from_static("x-request-id");
    let set = |name: HeaderName, value: &'static str| {
        SetResponseHeaderLayer::overriding(name, HeaderValue::from_static(value))
    };
    let cors = TowerHttpCors::new()
        .allow_origin(AllowOrigin::list([HeaderValue::from_static(ORIGIN)]))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            request_id.clone(),
        ])
        .expose_headers([request_id.clone()])
        .allow_credentials(true)
        .max_age(Duration::from_secs(600));
    router.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
            .layer(PropagateRequestIdLayer::new(request_id))
            .layer(set(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .layer(set(header::X_FRAME_OPTIONS, "DENY"))
            .layer(set(
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; frame-ancestors 'none'",
            ))
            .layer(set(header::REFERRER_POLICY, "no-referrer"))
            .layer(set(
                header::STRICT_TRANSPORT_SECURITY,
                "max-age=31536000; includeSubDomains",
            ))
            .layer(cors),
    )
}

/// The header lines the `shield` stack adds to `/health`, set from static values; on `/api/me`
/// also the two rate-limit fields the demo sends there (its two policies, `api` and
/// `anonymous`, at the load script's quotas).
fn same_bytes(
    me: bool,
) -> MapResponseLayer<impl Fn(axum::response::Response) -> axum::response::Response + Clone> {
    const LINES: [(&str, &str); 12] = [
        ("vary", "Origin"),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        (
            "content-security-policy",
            "default-src 'none'; frame-ancestors 'none'",
        ),
        ("referrer-policy", "no-referrer"),
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
        ("x-request-id", "3e8c4d88-11b3-4155-af06-b770668b9b0e"),
    ];
    const RATE_LIMIT_LINES: [(&str, &str); 2] = [
        (
            "ratelimit-policy",
            "\"api\";q=60000000;w=60, \"anonymous\";q=10000000;w=60",
        ),
        (
            "ratelimit",
            "\"api\";r=59999999;t=1, \"anonymous\";r=10000000;t=0",
        ),
    ];
    MapResponseLayer::new(move |mut response: axum::response::Response| {
        let extra: &[(&str, &str)] = if me { &RATE_LIMIT_LINES } else { &[] };
        let headers = response.headers_mut();
        headers.reserve(LINES.len() + extra.len());
        for &(name, value) in LINES.iter().chain(extra) {
            headers.insert(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        response
    })
}
