//! The library's integration tests, one module per topic, in one test binary: linked once
//! instead of once per file, with the shared helpers compiled once.
//!
//! Run one topic with `cargo test --test it <module>::`. Two tests live in binaries of their
//! own, because they need the process to themselves: `tests/request_id_span.rs` (tracing's
//! process-wide callsite cache) and `tests/rate_limit_memory.rs` (the process's resident
//! memory). The demo's end-to-end tests are `tests/demo`.

#[cfg(all(feature = "api-key", feature = "redis", feature = "rate-limit"))]
mod api_key;
#[path = "../common/mod.rs"]
mod common;
#[cfg(feature = "rate-limit")]
mod rate_limit_support;

#[cfg(feature = "rate-limit")]
mod client_ip;
#[cfg(feature = "cors")]
mod cors;
#[cfg(feature = "cors")]
mod cors_browser;
#[cfg(all(feature = "request-id", feature = "security-headers"))]
mod examples;
#[cfg(feature = "id")]
mod id;
#[cfg(feature = "jwt")]
mod jwt;
#[cfg(feature = "jwt")]
mod jwt_interop;
#[cfg(all(
    feature = "metrics",
    feature = "rate-limit",
    feature = "tokens",
    feature = "cors",
    feature = "request-id"
))]
mod metrics;
#[cfg(feature = "rate-limit")]
mod rate_limit;
#[cfg(all(feature = "rate-limit", feature = "redis"))]
mod rate_limit_conformance;
#[cfg(all(feature = "rate-limit", feature = "redis"))]
mod rate_limit_redis;
#[cfg(all(feature = "rate-limit", feature = "redis"))]
mod rate_limit_redis_outage;
#[cfg(feature = "request-id")]
mod request_id;
#[cfg(feature = "security-headers")]
mod security_headers;
#[cfg(feature = "jwt")]
mod token_lifecycle;
#[cfg(all(feature = "jwt", feature = "redis"))]
mod token_redis;
#[cfg(all(feature = "jwt", feature = "redis"))]
mod token_stores;
