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

pub mod body;
pub mod client_ip;
pub mod clock;
pub mod error;
pub mod extensions;
pub mod id;
pub mod refusal;

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

pub use body::ShieldBody;
pub use error::{ConfigError, StoreError};
pub use extensions::{Principal, RequestId};
