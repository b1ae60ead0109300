//! The router and the layer stack of the demo, in the order of DESIGN.md:
//!
//! ```text
//! request ─▶ RequestId ─▶ SecurityHeaders ─▶ Cors ─▶ RateLimit(ip) ─▶ JwtAuth ─▶ RateLimit(user) ─▶ handler
//! ```

use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tower::ServiceBuilder;
use tower_shield::ConfigError;
use tower_shield::RequestId;
use tower_shield::refusal::{ProblemType, Refusal};
use tower_shield::request_id::RequestIdLayer;
use tower_shield::security_headers::SecurityHeaders;

use crate::config::Config;

/// Request headers larger than this in total (names, values and the 4 bytes of `: ` and CRLF
/// per line) are refused with 431.
pub(crate) const MAX_REQUEST_HEADER_BYTES: usize = 16 * 1024;

/// 405 with an `about:blank` problem type (a bare status, RFC 9457 §4.2.1).
static METHOD_NOT_ALLOWED: ProblemType = ProblemType {
    status: StatusCode::METHOD_NOT_ALLOWED,
    slug: None,
    title: "Method Not Allowed",
    detail: "The method is not allowed for this resource.",
};

/// Builds the whole application: routes, fallbacks and the layer stack.
pub(crate) fn app(config: &Config) -> Result<Router, ConfigError> {
    let routes = Router::new()
        .route("/health", get(health))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);

    // Outermost first. Each layer sees what the ones above it did: the id is in every log
    // line and refusal; security headers are on every answer, refusals included.
    let layers = ServiceBuilder::new()
        // 1. Request id: first, so every log line and every refusal carries it.
        .layer(RequestIdLayer::new())
        // One log line per request, with the final status of everything below.
        .layer(middleware::from_fn(access_log))
        // 2. Security headers (HSTS only over HTTPS, as told by TRUSTED_PROXIES).
        .layer(
            SecurityHeaders::api()
                .trusted_proxies(config.trusted_proxies.clone())
                .build()?,
        )
        // Request headers over 16 KiB: 431, before any other work.
        .layer(middleware::from_fn(limit_header_size));
    // 3. Cors goes here (CORS_ALLOWED_ORIGINS), outside the refusing layers below.
    // 4. RateLimit by client IP goes here (policies `auth`, `anonymous`, `default`).
    // 5. JwtAuth goes here (bearer tokens; `/api/*` requires one).
    // 6. RateLimit by user goes here (policy `api`, tiered by role).

    Ok(routes.layer(layers))
}

/// `GET /health`.
async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Any unknown route: 404 problem.
async fn not_found(request: Request) -> Response {
    Refusal::new(&ProblemType::NOT_FOUND).for_request(&request)
}

/// A known route with another method: 405 problem.
async fn method_not_allowed(request: Request) -> Response {
    Refusal::new(&METHOD_NOT_ALLOWED).for_request(&request)
}

/// The size of the request headers as sent on the wire (HTTP/1.1 framing).
fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum()
}

async fn limit_header_size(request: Request, next: Next) -> Response {
    if header_bytes(request.headers()) > MAX_REQUEST_HEADER_BYTES {
        return Refusal::new(&ProblemType::HEADERS_TOO_LARGE).for_request(&request);
    }
    next.run(request).await
}

/// Logs one line per request on stderr: method, path (without the query, which may hold
/// secrets), status, latency and request id. Never a header, token or cookie.
async fn access_log(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let mut path = request.uri().path().to_owned();
    if path.len() > 256 {
        let mut end = 256;
        while !path.is_char_boundary(end) {
            end -= 1;
        }
        path.truncate(end);
        path.push('…');
    }
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .cloned()
        .map(|id| id.to_string())
        .unwrap_or_default();
    let response = next.run(request).await.into_response();
    tracing::info!(
        target: "demo_api::access",
        %method,
        path = %path,
        status = response.status().as_u16(),
        latency_ms = %format_args!("{:.3}", started.elapsed().as_secs_f64() * 1000.0),
        request_id = %request_id,
        "request"
    );
    response
}
