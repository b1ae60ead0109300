//! Rate limiting: per IP, per user, per API key or per anything, with tiers by role,
//! per-route rules, weighted costs, count-only-failures, escalating penalties and shadow
//! mode, on an in-memory or a Redis store that make the same decisions.
//!
//! ```
//! use std::net::SocketAddr;
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_shield::rate_limit::{KeyBy, MemoryStore, Policy, Quota, RateLimitLayer, Route};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let limits = RateLimitLayer::builder(MemoryStore::new())
//!     .rule(Route::prefix("/auth/"), Policy::named("auth").quota(Quota::per_minute(10)))
//!     .policy(
//!         Policy::named("api")
//!             .quota(Quota::per_minute(100))
//!             .tier("premium", Quota::per_minute(1_000))
//!             .unlimited_tier("admin")
//!             .key(KeyBy::subject()),
//!     )
//!     .build()?;
//! let svc = ServiceBuilder::new().layer(limits).service(service_fn(|_req: Request<Full<Bytes>>| async {
//!     Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from("ok"))))
//! }));
//!
//! let mut request = Request::get("/auth/login").body(Full::default())?;
//! request.extensions_mut().insert("192.0.2.1:5000".parse::<SocketAddr>()?);
//! let response = svc.clone().oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::OK);
//! assert_eq!(response.headers()["ratelimit-policy"], "\"auth\";q=10;w=60");
//! assert_eq!(response.headers()["ratelimit"], "\"auth\";r=9;t=6");
//! # Ok(())
//! # }
//! ```
//!
//! # What the layer reads, writes and refuses
//!
//! - Reads the client address ([`ClientIp`](crate::client_ip::ClientIp): the TCP peer, or
//!   behind [trusted proxies](RateLimitLayerBuilder::trusted_proxies) the forwarded client;
//!   inserted into the extensions when absent) and the [`Principal`](crate::Principal)
//!   `JwtAuthLayer` leaves (subject keys, tiers by role).
//! - Picks the first [`Route`] rule that matches, else the default policy; requests matching
//!   neither pass untouched. One policy applies per layer; stack layers (an IP limit before
//!   `JwtAuthLayer`, a user limit after) and their fields are listed together.
//! - Every response under a policy carries `RateLimit-Policy` and `RateLimit` (see
//!   [`headers`]), optionally the legacy `X-RateLimit-*`; the request carries a
//!   [`RateLimitStatus`] for handlers.
//! - Refuses with **429** and `Retry-After` (whole seconds until a request would be allowed,
//!   rounded up, at least 1) and a problem body (`ProblemType::RATE_LIMITED`); a gRPC call
//!   gets `RESOURCE_EXHAUSTED`. No key (no peer address: **403**; e.g. a missing API-key
//!   header: **400**) is a refusal too, never a pass and never a 500.
//! - When the store fails: [`FailurePolicy::FailClosed`] (503, the default) or
//!   [`FailurePolicy::FailOpen`]; or wrap the store in a [`FallbackStore`] to decide from
//!   memory until it answers again. Failures are logged at most once per 10 s and counted in
//!   [`RateLimitLayer::stats`].
//!
//! # A whole API's limits
//!
//! An IP layer before `JwtAuthLayer` (per-route rules, one of them count-only-failures) and
//! a per-user layer after it (tiers by role), sharing Redis with a memory fallback:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use http::StatusCode;
//! use tower_shield::client_ip::TrustedProxies;
//! use tower_shield::rate_limit::{
//!     FallbackStore, KeyBy, MemoryStore, Policy, Quota, RateLimitLayer, RedisStore, Route,
//! };
//! use tower_shield::redis::RedisConnection;
//!
//! let conn = RedisConnection::connect("redis://127.0.0.1:6379/").await?;
//! let store = FallbackStore::new(
//!     RedisStore::builder(conn).prefix("demo:rl:").build()?,
//!     MemoryStore::new(),
//! );
//! let by_ip = RateLimitLayer::builder(store.clone())
//!     .trusted_proxies(TrustedProxies::from_comma_separated("10.0.0.0/8")?)
//!     .rule(Route::prefix("/auth/"), Policy::named("auth").quota(Quota::per_minute(10)))
//!     .rule(
//!         Route::prefix("/api/"),
//!         Policy::named("anonymous")
//!             .quota(Quota::per_minute(10))
//!             .count_only([StatusCode::UNAUTHORIZED]),
//!     )
//!     .policy(Policy::named("default").quota(Quota::per_minute(60)))
//!     .build()?;
//! let by_user = RateLimitLayer::builder(store.clone())
//!     .rule(
//!         Route::prefix("/api/"),
//!         Policy::named("api")
//!             .quota(Quota::per_minute(100))
//!             .tier("guest", Quota::per_minute(10))
//!             .tier("premium", Quota::per_minute(1_000))
//!             .tier("admin", Quota::per_minute(10_000))
//!             .key(KeyBy::subject()),
//!     )
//!     .build()?;
//! // ServiceBuilder::new().layer(by_ip).layer(jwt_auth).layer(by_user).service(app)
//! # let _ = (by_ip, by_user);
//! # Ok(())
//! # }
//! ```
//!
//! # The algorithm and the stores
//!
//! GCRA, as `governor` implements it: a [`Quota`] of `limit` per `period` spaces requests by
//! `period / limit` and allows a burst (default: the whole limit). [`MemoryStore`] keeps the
//! state on `governor`'s keyed state store (its GCRA step is ours, so that it can peek for
//! count-only mode and report the exact reset, and is the same step as the Lua script);
//! `RedisStore` runs the same step in one Lua script on the Redis server's clock.

pub mod headers;
mod key;
mod layer;
mod policy;
mod quota;
mod service;
pub mod store;

/// The `governor` crate the memory store keeps its state in, re-exported for its clocks
/// ([`MemoryStore::with_clock`] takes a `governor::clock::Clock`, e.g. `FakeRelativeClock` in
/// tests).
pub use governor;
pub use headers::HeaderMode;
pub use key::{KeyBy, MAX_KEY_LEN, RateKey};
pub use layer::{RateLimitLayer, RateLimitLayerBuilder, RateLimitStats};
pub use policy::{MAX_POLICY_NAME_LEN, Penalty, Policy, Route, TierQuota};
pub use quota::{MAX_PERIOD, Quota};
pub use service::{RateLimitService, RateLimitStatus, ResponseFuture};
#[cfg(feature = "redis")]
pub use store::RedisStore;
pub use store::{
    Decision, FailurePolicy, FallbackStats, FallbackStore, MemoryStore, MemoryStoreBuilder,
    RateLimitStore,
};
