//! The metrics the layers record (feature `metrics`), through the `metrics`
//! facade: install any recorder (`metrics-exporter-prometheus`, OpenTelemetry, StatsD…)
//! **before building the layers** (they register their handles when built), and call
//! [`describe`] once to give the recorder each metric's help text and unit.
//!
//! Labels are few and bounded: a policy name, an outcome, a reason, a kind. Never an
//! address, subject, key or token.
//!
//! | metric | type | labels | what |
//! |---|---|---|---|
//! | `tower_shield_ratelimit_decisions_total` | counter | `policy`, `outcome` = `allowed` / `limited` / `shadow_limited` / `store_error` | every decision of a `RateLimitLayer` policy |
//! | `tower_shield_ratelimit_fallback_decisions_total` | counter | | decisions a `FallbackStore` made with its fallback (the primary failing) |
//! | `tower_shield_jwt_requests_total` | counter | `outcome` = `verified` / `cache_hit` / `refused`, `reason` | every request through a `JwtAuthLayer`; `reason` names a refusal (`missing`, `malformed`, `expired`, `bad_signature`, `unknown_key`, `revoked`, `audience`, `issuer`, `unavailable`…) and is `none` otherwise |
//! | `tower_shield_refresh_total` | counter | `outcome` = `rotated` / `sibling` / `reused` / `revoked` / `expired` / `unknown` / `busy` | refresh-token presentations to `RefreshTokens` |
//! | `tower_shield_revocations_total` | counter | `kind` = `token` / `session` / `subject` | revocations written by `RefreshTokens` |
//! | `tower_shield_cors_rejections_total` | counter | `kind` = `preflight` / `simple` | requests a `CorsLayer` refused |
//! | `tower_shield_request_ids_total` | counter | `source` = `incoming` / `generated` | ids a `RequestIdLayer` kept or made |
//! | `tower_shield_apikey_requests_total` | counter | `outcome` = `accepted` / `refused` / `ip_denied` / `unavailable` | requests through an `ApiKeyLayer` (feature `api-key`) |
//! | `tower_shield_redis_call_duration_seconds` | histogram | `outcome` = `ok` / `error` / `timeout` | every call on a `RedisConnection` (all Redis stores) |
//!
//! The layers also emit one structured `tracing` event per security-relevant refusal or
//! anomaly, under the target `tower_shield::security` with a stable `event` field; see the
//! crate README.

pub use crate::telemetry::names::*;

/// Describes every metric (help text and unit) to the installed recorder. Call it once,
/// after installing the recorder; recording works without it.
pub fn describe() {
    use ::metrics::{Unit, describe_counter, describe_histogram};
    describe_counter!(
        RATELIMIT_DECISIONS,
        Unit::Count,
        "Rate-limit decisions, by policy and outcome."
    );
    describe_counter!(
        RATELIMIT_FALLBACK_DECISIONS,
        Unit::Count,
        "Rate-limit decisions made by the fallback store while the primary failed."
    );
    describe_counter!(
        JWT_REQUESTS,
        Unit::Count,
        "Requests through JwtAuthLayer, by outcome and refusal reason."
    );
    describe_counter!(
        REFRESH,
        Unit::Count,
        "Refresh-token presentations, by outcome."
    );
    describe_counter!(REVOCATIONS, Unit::Count, "Revocations written, by kind.");
    describe_counter!(
        CORS_REJECTIONS,
        Unit::Count,
        "Requests refused by CorsLayer, by kind."
    );
    describe_counter!(
        REQUEST_IDS,
        Unit::Count,
        "Request ids kept from the request or generated."
    );
    describe_counter!(
        APIKEY_REQUESTS,
        Unit::Count,
        "Requests through ApiKeyLayer, by outcome."
    );
    describe_histogram!(
        REDIS_CALL_DURATION,
        Unit::Seconds,
        "Redis call latency, by outcome."
    );
}
