//! # tower-shield
//!
//! Tower middleware that gives any HTTP API (hyper, axum, tonic) production-grade security in a
//! few lines of `tower::ServiceBuilder`: request ids, security headers, a strict CORS allowlist,
//! rate limiting with in-memory and Redis stores, and JWT authentication with the whole token
//! lifecycle.
//!
//! ## The order of the layers
//!
//! ```text
//! request ─▶ RequestId ─▶ SecurityHeaders ─▶ Cors ─▶ RateLimit(ip) ─▶ JwtAuth ─▶ RateLimit(user) ─▶ handler
//! ```
//!
//! Outermost first: `RequestId` first so every log line and every refusal carries the id;
//! `SecurityHeaders` and `Cors` outside the refusing layers so a 401 or 429 still carries
//! security and CORS headers; an IP limit before `JwtAuth` so nobody makes the server burn
//! signature checks for free; the per-user limit after `JwtAuth`, since it needs the verified
//! identity.
//!
//! Layers never know each other; they talk through request extensions ([`RequestId`],
//! [`ClientIp`](client_ip::ClientIp), [`Principal`], the verified claims). Every refusal is
//! built by [`refusal`] (problem+json for HTTP, `grpc-status` for gRPC) and every layer's body
//! is a [`ShieldBody`], so each layer stays generic over request and response bodies.
//!
//! ## The whole stack
//!
//! ```
//! use std::{convert::Infallible, net::SocketAddr};
//!
//! use http::{Request, Response, StatusCode, header};
//! use jsonwebtoken::Algorithm;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_shield::{
//!     cors::CorsLayer,
//!     jwt::{JwtAuthLayer, Key, KeyRing, KeySet, MemoryRevocationStore},
//!     rate_limit::{KeyBy, MemoryStore, Policy, Quota, RateLimitLayer},
//!     request_id::RequestIdLayer,
//!     security_headers::SecurityHeadersLayer,
//!     tokens::TokenIssuer,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let keys = KeyRing::new(KeySet::new().with(Key::generate(Algorithm::EdDSA)?)?);
//! let store = MemoryStore::new();
//! let app = ServiceBuilder::new()
//!     .layer(RequestIdLayer::new())
//!     .layer(SecurityHeadersLayer::api())
//!     .layer(CorsLayer::builder().allow_origin("https://app.example.com").build()?)
//!     .layer(RateLimitLayer::builder(store.clone())
//!         .policy(Policy::named("ip").quota(Quota::per_minute(60))).build()?)
//!     .layer(JwtAuthLayer::builder(keys.clone()).issuer("https://auth.example.com")
//!         .audience("api").revocation(MemoryRevocationStore::new()).cache(10_000).build()?)
//!     .layer(RateLimitLayer::builder(store)
//!         .policy(Policy::named("api").quota(Quota::per_minute(100)).key(KeyBy::subject()))
//!         .build()?)
//!     .service(service_fn(|_: Request<String>| async {
//!         Ok::<_, Infallible>(Response::new(String::from("{\"hello\":\"world\"}")))
//!     }));
//!
//! let issuer = TokenIssuer::builder(keys).issuer("https://auth.example.com").audience("api").build()?;
//! let token = issuer.issue("user_1", "user", &())?;
//! let mut request = Request::get("/api/me")
//!     .header(header::AUTHORIZATION, format!("Bearer {}", token.as_str()))
//!     .body(String::new())?;
//! request.extensions_mut().insert("192.0.2.7:50000".parse::<SocketAddr>()?);
//! let response = app.oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! assert!(response.headers().contains_key("x-request-id"));
//! assert_eq!(response.headers()["x-content-type-options"], "nosniff");
//! // The inner (per-user) layer adds its field first, the outer (per-IP) one after it.
//! assert_eq!(response.headers()["ratelimit-policy"], "\"api\";q=100;w=60, \"ip\";q=60;w=60");
//! # Ok(())
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

/// Implements `get_ref`, `get_mut` and `into_inner` for a service with an `inner` field.
#[allow(unused_macros)]
macro_rules! inner_service_accessors {
    () => {
        /// The inner service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The inner service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// Consumes this service, returning the inner one.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}
#[allow(unused_imports)]
pub(crate) use inner_service_accessors;

/// Defines an axum rejection: a named type holding the refusal to send, with `Display` and
/// `Error` (what went wrong, for logs) and `IntoResponse` (the refusal itself).
#[cfg(feature = "axum")]
macro_rules! axum_rejection {
    ($(#[$meta:meta])* $name:ident, $message:literal) => {
        $(#[$meta])*
        #[derive(Debug)]
        pub struct $name(axum::response::Response);

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str($message)
            }
        }

        impl std::error::Error for $name {}

        impl axum::response::IntoResponse for $name {
            fn into_response(self) -> axum::response::Response {
                self.0
            }
        }
    };
}
#[cfg(feature = "axum")]
pub(crate) use axum_rejection;

#[cfg(feature = "api-key")]
#[cfg_attr(docsrs, doc(cfg(feature = "api-key")))]
pub mod api_key;
pub mod body;
pub mod client_ip;
pub mod clock;
pub mod error;
pub mod extensions;
#[cfg(any(
    feature = "tokens",
    feature = "id",
    feature = "api-key",
    all(feature = "redis", feature = "rate-limit")
))]
mod hex;
#[cfg(feature = "id")]
#[cfg_attr(docsrs, doc(cfg(feature = "id")))]
pub mod id;
#[cfg(any(feature = "jwt", feature = "rate-limit"))]
mod log_gate;
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;
pub mod refusal;
mod telemetry;

#[cfg(feature = "cors")]
#[cfg_attr(docsrs, doc(cfg(feature = "cors")))]
pub mod cors;
#[cfg(feature = "jwt")]
#[cfg_attr(docsrs, doc(cfg(feature = "jwt")))]
pub mod jwt;
#[cfg(feature = "rate-limit")]
#[cfg_attr(docsrs, doc(cfg(feature = "rate-limit")))]
pub mod rate_limit;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod redis;
#[cfg(feature = "request-id")]
#[cfg_attr(docsrs, doc(cfg(feature = "request-id")))]
pub mod request_id;
#[cfg(feature = "security-headers")]
#[cfg_attr(docsrs, doc(cfg(feature = "security-headers")))]
pub mod security_headers;
#[cfg(feature = "tokens")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokens")))]
pub mod tokens;

pub use body::ShieldBody;
pub use error::{ConfigError, StoreError};
pub use extensions::{Principal, RequestId};

/// The README's code, compiled as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
