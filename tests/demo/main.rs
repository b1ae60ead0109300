//! The demo's end-to-end tests, in one test binary: each test starts the real `demo_api`
//! example binary (built by `cargo test`) on 127.0.0.1:0 and talks to it over HTTP, so the
//! tests share no state but the Redis at `REDIS_URL` (each under a prefix of its own).
//!
//! Run one part with `cargo test --test demo <module>::`. The library's integration tests are
//! `tests/it`.

#[path = "../common/mod.rs"]
mod common;

#[cfg(all(
    feature = "request-id",
    feature = "security-headers",
    feature = "cors",
    feature = "jwt",
    feature = "rate-limit"
))]
mod api;
#[cfg(all(
    feature = "jwt",
    feature = "rate-limit",
    feature = "cors",
    feature = "api-key"
))]
mod api_keys;
#[cfg(all(feature = "cors", feature = "jwt", feature = "rate-limit"))]
mod browser;
#[cfg(all(feature = "jwt", feature = "rate-limit", feature = "cors"))]
mod limits;
#[cfg(all(
    feature = "jwt",
    feature = "rate-limit",
    feature = "cors",
    feature = "metrics"
))]
mod metrics;
#[cfg(all(
    feature = "jwt",
    feature = "rate-limit",
    feature = "cors",
    feature = "api-key"
))]
mod postgres;
#[cfg(all(
    feature = "jwt",
    feature = "rate-limit",
    feature = "cors",
    feature = "redis"
))]
mod redis;
#[cfg(all(feature = "jwt", feature = "rate-limit", feature = "cors"))]
mod refresh;
