//! A strict CORS allowlist that a real browser obeys.
//!
//! [`CorsLayer`] answers preflights itself and adds the CORS response headers to everything
//! else, with the safe configuration as the easy one:
//!
//! - **Exact origins only.** Each configured origin is parsed into scheme, host and port and
//!   normalised as browsers serialise origins (lower-case, default port dropped, one trailing
//!   slash tolerated). A path, query, fragment, userinfo, `null`, `*`, a trailing-dot host or
//!   anything unparsable is a [`ConfigError`](crate::ConfigError) from `build()`, never a
//!   panic. A request's `Origin` is compared byte for byte with that set: no substring,
//!   suffix or regex matching, so `https://example.com.evil.net` never passes for
//!   `https://example.com`. A mixed-case or trailing-dot `Origin` (which browsers never
//!   send for a listed origin) simply does not match.
//! - **Dangerous modes are named.** [`CorsLayerBuilder::dangerous_allow_any_origin`] (public,
//!   read-only APIs) is refused with credentials; [`CorsLayerBuilder::allow_localhost_any_port`]
//!   is a development helper for `http://localhost`, `http://127.0.0.1` and `http://[::1]`;
//!   [`CorsLayerBuilder::allow_origin_predicate`] is the documented escape hatch.
//! - **Preflights** (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) never reach
//!   the inner service. Allowed: `204` with the exact origin, methods, headers, credentials,
//!   max-age and `Vary: Origin, Access-Control-Request-Method, Access-Control-Request-Headers`.
//!   Refused (origin, method, or any requested header not allowed; requested headers are
//!   compared case-insensitively, at most 32 of them in at most 2 KiB): a `403`
//!   [`cors-rejected`](crate::refusal#cors-rejected) refusal with no `Access-Control-Allow-*`
//!   header at all, so the API's surface is not advertised to other sites.
//! - **Other requests** (including `OPTIONS` without `Access-Control-Request-Method`) reach
//!   the inner service; when the origin is allowed the response gets
//!   `Access-Control-Allow-Origin`, `Access-Control-Allow-Credentials` and
//!   `Access-Control-Expose-Headers` (by default `x-request-id, ratelimit, ratelimit-policy,
//!   retry-after`), added when the inner future completes, so 401, 403 and 429 refusals from
//!   inner layers are readable by the page. When the origin is refused, any
//!   `Access-Control-Allow-Origin`, `-Allow-Credentials` or `-Expose-Headers` the inner
//!   service set is removed: the allowlist alone decides, whatever a handler reflects.
//!   `Vary: Origin` is appended to every response, next to any `Vary` already there.
//! - **Strict mode** ([`CorsLayerBuilder::strict`]) refuses a request whose `Origin` is present
//!   and not allowed before the handler runs (a defence against cross-site form posts).
//!   Browsers send `Origin` on same-origin `POST`s too: list the API's own origin when pages
//!   are served from it.
//! - **Private Network Access**: `Access-Control-Allow-Private-Network: true` only when enabled
//!   and the preflight asks for it; otherwise it is left out and the browser blocks.
//! - **Hostile input** (several `Origin` lines, a 10 KB origin, non-UTF-8 bytes,
//!   `Origin: null`): no CORS headers, or a refusal for preflights and in strict mode; never a
//!   panic.
//!
//! Origins belong in each deployment's environment, not in code: [`CorsConfig::from_env`]
//! reads `CORS_ALLOWED_ORIGINS` (comma-separated) and its siblings, and [`CorsConfig`] is
//! serde-deserialisable for configuration files.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//!
//! use bytes::Bytes;
//! use http::{Request, Response, header};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_shield::cors::CorsLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cors = CorsLayer::builder()
//!     .allow_origin("https://app.example.com")
//!     .allow_credentials(true)
//!     .build()?;
//! let service = ServiceBuilder::new().layer(cors).service(service_fn(|_req: Request<Full<Bytes>>| async {
//!     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"{}"))))
//! }));
//!
//! let request = Request::builder()
//!     .uri("/items")
//!     .header(header::ORIGIN, "https://app.example.com")
//!     .body(Full::default())?;
//! let response = service.oneshot(request).await?;
//! assert_eq!(response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example.com");
//! assert_eq!(response.headers()[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
//! assert_eq!(response.headers()[header::VARY], "Origin");
//! # Ok(())
//! # }
//! ```
//!
//! # Performance
//!
//! Every header value is built once, in `build()`. Matching an origin is a binary search
//! over byte strings; an allowed request costs the header insertions and one reference-count
//! increment, and no allocation beyond what the response's header map needs.

mod config;
mod future;
mod layer;
mod origin;
mod service;

pub use config::{
    CorsConfig, CorsLayerBuilder, DEFAULT_EXPOSE_HEADERS, DEFAULT_MAX_AGE, DEFAULT_METHODS,
    MAX_MAX_AGE, MAX_REQUEST_HEADERS_LEN, MAX_REQUESTED_HEADERS, env_vars,
};
pub use future::ResponseFuture;
pub use layer::CorsLayer;
pub use origin::{MAX_ORIGIN_LEN, RequestOrigin};
pub use service::CorsService;
