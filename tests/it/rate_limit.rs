//! RateLimitLayer behaviour on the memory store.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use governor::clock::FakeRelativeClock;
use http::{HeaderName, HeaderValue, StatusCode};
use tower::{Layer, ServiceExt};
use tower_shield::clock::ManualClock;
use tower_shield::rate_limit::{
    Decision, FailurePolicy, FallbackStore, HeaderMode, KeyBy, MemoryStore, Penalty, Policy, Quota,
    RateKey, RateLimitLayer, RateLimitStatus, RateLimitStore, Route,
};
use tower_shield::{Principal, StoreError};

use crate::rate_limit_support::{self, Echo, body_json, request};

fn layer(policy: Policy) -> RateLimitLayer<MemoryStore> {
    RateLimitLayer::builder(MemoryStore::new())
        .policy(policy)
        .build()
        .unwrap()
}

#[tokio::test]
async fn fields_and_refusal_follow_the_draft() {
    let svc = layer(Policy::named("api").quota(Quota::per_minute(3))).layer(Echo::default());
    let mut last = None;
    for remaining in [2, 1, 0] {
        let response = svc
            .clone()
            .oneshot(request("/x", "192.0.2.1:1"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["ratelimit-policy"], "\"api\";q=3;w=60");
        let field = response.headers()["ratelimit"].to_str().unwrap().to_owned();
        assert!(
            field.starts_with(&format!("\"api\";r={remaining};t=")),
            "{field}"
        );
        last = Some(field);
    }
    // 3 used: whole again after 60 s.
    assert_eq!(last.unwrap(), "\"api\";r=0;t=60");
    let refused = svc
        .clone()
        .oneshot(request("/x", "192.0.2.1:1"))
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((19..=20).contains(&retry), "{retry}");
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    assert!(
        refused.headers()["ratelimit"]
            .to_str()
            .unwrap()
            .contains("r=0")
    );
    let json = body_json(refused).await;
    assert_eq!(json["status"], 429);
    assert!(json["type"].as_str().unwrap().ends_with("#rate-limited"));
    // Another client is not affected.
    let other = svc
        .clone()
        .oneshot(request("/x", "192.0.2.2:1"))
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::OK);
}

#[tokio::test]
async fn retry_after_is_never_zero() {
    let svc =
        layer(Policy::named("fast").quota(Quota::per_second(1000).burst(1))).layer(Echo::default());
    let mut refused = 0;
    for _ in 0..50 {
        let response = svc
            .clone()
            .oneshot(request("/", "192.0.2.3:1"))
            .await
            .unwrap();
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            refused += 1;
            assert_eq!(response.headers()["retry-after"], "1");
        }
    }
    assert!(refused > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exactness_under_concurrency() {
    let svc = layer(Policy::named("api").quota(Quota::per_minute(100))).layer(Echo::default());
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..150 {
        let svc = svc.clone();
        tasks.push(tokio::spawn(async move {
            svc.oneshot(request("/", "198.51.100.1:1"))
                .await
                .unwrap()
                .status()
        }));
    }
    let mut ok = 0u64;
    for task in tasks {
        if task.await.unwrap() == StatusCode::OK {
            ok += 1;
        }
    }
    let refill = (started.elapsed().as_millis() / 600) as u64 + 1;
    assert!(
        ok >= 100 && ok <= 100 + refill,
        "{ok} allowed, refill {refill}"
    );
}

#[tokio::test]
async fn tiers_follow_the_role() {
    let svc = layer(
        Policy::named("api")
            .quota(Quota::per_minute(100))
            .tier("premium", Quota::per_minute(1000))
            .unlimited_tier("admin")
            .anonymous(Quota::per_minute(10))
            .key(KeyBy::subject()),
    )
    .layer(Echo::default());
    let with_role = |role: Option<&str>| {
        let mut req = request("/api/me", "192.0.2.9:1");
        req.extensions_mut().insert(Principal::new(
            format!("user_{}", role.unwrap_or("none")),
            role.map(Arc::from),
        ));
        req
    };
    let r = svc
        .clone()
        .oneshot(with_role(Some("premium")))
        .await
        .unwrap();
    assert_eq!(r.headers()["ratelimit-policy"], "\"api\";q=1000;w=60");
    let r = svc.clone().oneshot(with_role(Some("user"))).await.unwrap();
    assert_eq!(r.headers()["ratelimit-policy"], "\"api\";q=100;w=60");
    let r = svc.clone().oneshot(with_role(None)).await.unwrap();
    assert_eq!(r.headers()["ratelimit-policy"], "\"api\";q=100;w=60");
    let r = svc.clone().oneshot(with_role(Some("admin"))).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(!r.headers().contains_key("ratelimit"));
    let r = svc
        .clone()
        .oneshot(request("/api/me", "192.0.2.9:1"))
        .await
        .unwrap();
    assert_eq!(r.headers()["ratelimit-policy"], "\"api\";q=10;w=60");
}

#[tokio::test]
async fn per_route_rules_in_one_layer() {
    let svc = RateLimitLayer::builder(MemoryStore::new())
        .rule(
            Route::prefix("/auth/"),
            Policy::named("auth").quota(Quota::per_minute(2)),
        )
        .policy(Policy::named("default").quota(Quota::per_minute(60)))
        .build()
        .unwrap()
        .layer(Echo::default());
    for _ in 0..2 {
        let r = svc
            .clone()
            .oneshot(request("/auth/login", "192.0.2.4:1"))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = svc
        .clone()
        .oneshot(request("/auth/login", "192.0.2.4:1"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let r = svc
        .clone()
        .oneshot(request("/health", "192.0.2.4:1"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["ratelimit-policy"], "\"default\";q=60;w=60");
}

#[tokio::test]
async fn weighted_cost() {
    let svc = layer(
        Policy::named("bulk")
            .quota(Quota::per_minute(100))
            .cost_fn(|parts| if parts.uri.path() == "/bulk" { 30 } else { 1 }),
    )
    .layer(Echo::default());
    for _ in 0..3 {
        let r = svc
            .clone()
            .oneshot(request("/bulk", "192.0.2.5:1"))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
    }
    let r = svc
        .clone()
        .oneshot(request("/bulk", "192.0.2.5:1"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    // Ten units are left for cheap requests.
    let r = svc
        .clone()
        .oneshot(request("/one", "192.0.2.5:1"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["ratelimit"].to_str().unwrap().contains("r=9;"));
}

#[tokio::test]
async fn count_only_failures_refuses_before_the_inner_service() {
    let echo = Echo::default();
    let svc = layer(
        Policy::named("login_failures")
            .quota(Quota::per_minute(3))
            .count_only([StatusCode::UNAUTHORIZED]),
    )
    .layer(echo.clone());
    let with_status = |status: &str| {
        let mut req = request("/auth/login", "192.0.2.6:1");
        req.headers_mut()
            .insert("x-status", HeaderValue::from_str(status).unwrap());
        req
    };
    // Successes are not charged.
    for _ in 0..10 {
        let r = svc.clone().oneshot(with_status("200")).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers()["ratelimit"].to_str().unwrap().contains("r=3;"));
    }
    for left in [2, 1, 0] {
        let r = svc.clone().oneshot(with_status("401")).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(
            r.headers()["ratelimit"]
                .to_str()
                .unwrap()
                .contains(&format!("r={left};"))
        );
    }
    let calls = echo.calls();
    let r = svc.clone().oneshot(with_status("200")).await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(echo.calls(), calls, "refused before the inner service ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_only_reserves_before_the_inner_service() {
    rate_limit_support::count_only_is_exact_under_concurrency(MemoryStore::new()).await;
}

/// Forged tokens in a gRPC request get a gRPC refusal (HTTP 200, `grpc-status: 16`): a
/// count-only policy on 401 counts it all the same, so one address cannot buy unlimited
/// signature checks by asking for the gRPC form.
#[cfg(feature = "jwt")]
#[tokio::test]
async fn count_only_counts_grpc_refusals_by_their_meaning() {
    use tower_shield::jwt::{JwtAuthLayer, Key as JwtKey, KeySet};
    let keys = KeySet::new()
        .with(JwtKey::generate(jsonwebtoken::Algorithm::EdDSA).unwrap())
        .unwrap();
    let echo = Echo::default();
    let svc = tower::ServiceBuilder::new()
        .layer(layer(
            Policy::named("anonymous")
                .quota(Quota::per_minute(3))
                .count_only([StatusCode::UNAUTHORIZED]),
        ))
        .layer(JwtAuthLayer::builder(keys).build().unwrap())
        .service(echo.clone());
    let forged = "eyJhbGciOiJFZERTQSIsInR5cCI6ImF0K2p3dCJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
    for (n, content_type) in [
        "application/grpc",
        "application/grpc+proto",
        "application/grpc-web+proto",
        "application/json",
    ]
    .into_iter()
    .enumerate()
    {
        let peer = format!("192.0.2.{}:1", 90 + n);
        let call = || {
            let mut req = request("/svc.Login/Check", &peer);
            req.headers_mut()
                .insert("content-type", HeaderValue::from_static(content_type));
            req.headers_mut().insert(
                "authorization",
                HeaderValue::from_str(&format!("Bearer {forged}")).unwrap(),
            );
            svc.clone().oneshot(req)
        };
        let grpc = content_type.starts_with("application/grpc");
        for _ in 0..3 {
            let r = call().await.unwrap();
            if grpc {
                assert_eq!(r.status(), StatusCode::OK);
                assert_eq!(r.headers()["grpc-status"], "16", "{content_type}");
            } else {
                assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
            }
        }
        let r = call().await.unwrap();
        if grpc {
            assert_eq!(r.headers()["grpc-status"], "8", "{content_type}: limited");
        } else {
            assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        }
    }
    assert_eq!(echo.calls(), 0);
}

#[tokio::test]
async fn penalty_doubles_the_lockout() {
    let clock = FakeRelativeClock::default();
    let manual = ManualClock::at(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000));
    let svc = RateLimitLayer::builder(MemoryStore::with_clock(clock.clone()))
        .policy(
            Policy::named("p")
                .quota(Quota::per_second(1).burst(1))
                .penalty(Penalty::doubling(
                    Duration::from_secs(10),
                    Duration::from_secs(30),
                )),
        )
        .clock(manual.clone())
        .build()
        .unwrap()
        .layer(Echo::default());
    let advance = |d: Duration| {
        clock.advance(d);
        manual.advance(d);
    };
    let status = |r: &http::Response<_>| {
        (
            r.status(),
            r.headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned()),
        )
    };
    let go = || svc.clone().oneshot(request("/", "192.0.2.7:1"));
    let refused = |secs: &str| (StatusCode::TOO_MANY_REQUESTS, Some(secs.to_owned()));
    assert_eq!(status(&go().await.unwrap()).0, StatusCode::OK);
    // The store refuses: a 10 s lock-out (longer than the 1 s refill).
    assert_eq!(status(&go().await.unwrap()), refused("10"));
    // Instant retries double it, up to the maximum.
    assert_eq!(status(&go().await.unwrap()), refused("20"));
    assert_eq!(status(&go().await.unwrap()), refused("30"));
    assert_eq!(status(&go().await.unwrap()), refused("30"));
    // Waiting it out: allowed and forgiven.
    advance(Duration::from_secs(30));
    assert_eq!(status(&go().await.unwrap()).0, StatusCode::OK);
    assert_eq!(status(&go().await.unwrap()), refused("10"));
    advance(Duration::from_secs(5));
    assert_eq!(status(&go().await.unwrap()), refused("20"));
}

#[tokio::test]
async fn shadow_mode_refuses_nothing() {
    let layer = RateLimitLayer::builder(MemoryStore::new())
        .policy(Policy::named("s").quota(Quota::per_minute(1)))
        .shadow(true)
        .build()
        .unwrap();
    let svc = layer.clone().layer(Echo::default());
    for _ in 0..5 {
        let r = svc
            .clone()
            .oneshot(request("/", "192.0.2.8:1"))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(r.headers().contains_key("ratelimit"));
    }
    assert_eq!(layer.stats().shadow_limited, 4);
    assert_eq!(layer.stats().limited, 0);
}

#[tokio::test]
async fn legacy_fields_on_demand() {
    let svc = RateLimitLayer::builder(MemoryStore::new())
        .policy(Policy::named("l").quota(Quota::per_minute(10)))
        .headers(HeaderMode::IetfAndLegacy)
        .build()
        .unwrap()
        .layer(Echo::default());
    let r = svc.oneshot(request("/", "192.0.2.10:1")).await.unwrap();
    assert_eq!(r.headers()["x-ratelimit-limit"], "10");
    assert_eq!(r.headers()["x-ratelimit-remaining"], "9");
    assert_eq!(r.headers()["x-ratelimit-reset"], "6");
}

#[tokio::test]
async fn missing_keys_are_refused_never_500() {
    let svc = layer(Policy::named("ip").quota(Quota::per_minute(10))).layer(Echo::default());
    let no_peer = http::Request::get("/").body(Default::default()).unwrap();
    let r = svc.clone().oneshot(no_peer).await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(body_json(r).await["status"], 403);

    let svc = layer(
        Policy::named("key")
            .quota(Quota::per_minute(10))
            .key(KeyBy::header(HeaderName::from_static("x-api-key"))),
    )
    .layer(Echo::default());
    let r = svc
        .clone()
        .oneshot(request("/", "192.0.2.11:1"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let mut huge = request("/", "192.0.2.11:1");
    huge.headers_mut().insert(
        "x-api-key",
        HeaderValue::from_str(&"k".repeat(100_000)).unwrap(),
    );
    let r = svc.clone().oneshot(huge).await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let mut ok = request("/", "192.0.2.11:1");
    ok.headers_mut()
        .insert("x-api-key", HeaderValue::from_static("abc"));
    assert_eq!(
        svc.clone().oneshot(ok).await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn grpc_gets_resource_exhausted() {
    let svc = layer(Policy::named("g").quota(Quota::per_minute(1))).layer(Echo::default());
    let grpc = || {
        let mut req = request("/svc/Method", "192.0.2.12:1");
        req.headers_mut()
            .insert("content-type", HeaderValue::from_static("application/grpc"));
        req
    };
    assert_eq!(
        svc.clone().oneshot(grpc()).await.unwrap().status(),
        StatusCode::OK
    );
    let r = svc.clone().oneshot(grpc()).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["grpc-status"], "8");
}

#[tokio::test]
async fn skip_if_mut_may_leave_extensions_for_later_layers() {
    /// What the closure computed, for the handler.
    #[derive(Clone, Debug, PartialEq)]
    struct Seen(&'static str);
    let policy = Policy::named("s")
        .quota(Quota::per_minute(1))
        .skip_if_mut(|parts| {
            let skip = parts.headers.contains_key("x-skip");
            parts
                .extensions
                .insert(Seen(if skip { "skipped" } else { "limited" }));
            skip
        });
    let svc = layer(policy).layer(tower::service_fn(
        |req: http::Request<rate_limit_support::Body>| async move {
            let seen = req.extensions().get::<Seen>().cloned().unwrap();
            let limited = req.extensions().get::<RateLimitStatus>().is_some();
            assert_eq!(limited, seen == Seen("limited"));
            Ok::<_, Infallible>(http::Response::new(rate_limit_support::Body::default()))
        },
    ));
    let skipped = || {
        let mut req = request("/", "192.0.2.14:1");
        req.headers_mut()
            .insert("x-skip", HeaderValue::from_static("1"));
        req
    };
    for _ in 0..3 {
        let response = svc.clone().oneshot(skipped()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(!response.headers().contains_key("ratelimit"));
    }
    let first = svc.clone().oneshot(request("/", "192.0.2.14:1")).await;
    assert_eq!(first.unwrap().status(), StatusCode::OK);
    let second = svc.clone().oneshot(request("/", "192.0.2.14:1")).await;
    assert_eq!(second.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
    // `skip_if` with a plain `&Parts` closure still compiles and skips.
    let plain = layer(
        Policy::named("p")
            .quota(Quota::per_minute(1))
            .skip_if(|parts: &http::request::Parts| parts.headers.contains_key("x-skip")),
    )
    .layer(Echo::default());
    for _ in 0..3 {
        let response = plain.clone().oneshot(skipped()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn status_and_client_ip_reach_the_handler() {
    let svc = layer(Policy::named("h").quota(Quota::per_minute(10))).layer(tower::service_fn(
        |req: http::Request<rate_limit_support::Body>| async move {
            let status = req.extensions().get::<RateLimitStatus>().unwrap();
            assert_eq!(&*status.policy, "h");
            assert_eq!(status.decision.remaining, 9);
            let ip = req
                .extensions()
                .get::<tower_shield::client_ip::ClientIp>()
                .unwrap();
            assert_eq!(ip.ip().to_string(), "192.0.2.13");
            Ok::<_, Infallible>(http::Response::new(rate_limit_support::Body::default()))
        },
    ));
    assert_eq!(
        svc.oneshot(request("/", "192.0.2.13:1"))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

/// A store that fails while `down` is set, else delegates to memory.
#[derive(Clone)]
struct Flaky {
    down: Arc<AtomicBool>,
    memory: MemoryStore,
}

impl RateLimitStore for Flaky {
    type Limiter = <MemoryStore as RateLimitStore>::Limiter;
    type Future = std::future::Ready<Result<Decision, StoreError>>;

    fn limiter(&self, scope: &str, quota: &Quota) -> Self::Limiter {
        self.memory.limiter(scope, quota)
    }

    fn check(&self, limiter: &Self::Limiter, key: &RateKey, cost: u32) -> Self::Future {
        if self.down.load(Ordering::SeqCst) {
            std::future::ready(Err(StoreError::Timeout))
        } else {
            self.memory.check(limiter, key, cost)
        }
    }

    fn refund(
        &self,
        limiter: &Self::Limiter,
        key: &RateKey,
        cost: u32,
        charged: &Decision,
    ) -> Self::Future {
        if self.down.load(Ordering::SeqCst) {
            std::future::ready(Err(StoreError::Timeout))
        } else {
            self.memory.refund(limiter, key, cost, charged)
        }
    }
}

#[tokio::test]
async fn failure_policies() {
    let down = Arc::new(AtomicBool::new(true));
    let flaky = Flaky {
        down: down.clone(),
        memory: MemoryStore::new(),
    };
    let closed = RateLimitLayer::builder(flaky.clone())
        .policy(Policy::named("c").quota(Quota::per_minute(10)))
        .build()
        .unwrap();
    let r = closed
        .clone()
        .layer(Echo::default())
        .oneshot(request("/", "192.0.2.14:1"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body_json(r).await["status"], 503);
    assert_eq!(closed.stats().failed_closed, 1);

    let open = RateLimitLayer::builder(flaky.clone())
        .policy(Policy::named("o").quota(Quota::per_minute(10)))
        .on_store_error(FailurePolicy::FailOpen)
        .build()
        .unwrap();
    let r = open
        .clone()
        .layer(Echo::default())
        .oneshot(request("/", "192.0.2.14:1"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(!r.headers().contains_key("ratelimit"));
    assert_eq!(open.stats().failed_open, 1);

    let fallback = FallbackStore::with_probe_interval(
        flaky.clone(),
        MemoryStore::new(),
        Duration::from_millis(10),
    );
    let layer = RateLimitLayer::builder(fallback.clone())
        .policy(Policy::named("f").quota(Quota::per_minute(2)))
        .build()
        .unwrap();
    let svc = layer.layer(Echo::default());
    let statuses = |n| {
        let svc = svc.clone();
        async move {
            let mut out = Vec::new();
            for _ in 0..n {
                out.push(
                    svc.clone()
                        .oneshot(request("/", "192.0.2.15:1"))
                        .await
                        .unwrap()
                        .status(),
                );
            }
            out
        }
    };
    // Down: the fallback limits by itself.
    assert_eq!(
        statuses(3).await,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    assert!(fallback.stats().degraded);
    assert_eq!(fallback.stats().switches, 1);
    // Up again: recovers by itself on a probe; the primary (fresh) decides again.
    down.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(statuses(1).await, [StatusCode::OK]);
    assert!(!fallback.stats().degraded);
    assert_eq!(fallback.stats().recoveries, 1);
}

/// A refund goes back to the store that charged, whichever decides when it is made: a
/// reservation the fallback took during an outage is not given back by the primary after it
/// recovers (that would erase a failure counted there), nor the other way round.
#[tokio::test]
async fn fallback_refunds_go_to_the_store_that_charged() {
    let down = Arc::new(AtomicBool::new(true));
    let primary = MemoryStore::new();
    let fallback = FallbackStore::with_probe_interval(
        Flaky {
            down: down.clone(),
            memory: primary,
        },
        MemoryStore::new(),
        Duration::from_millis(10),
    );
    let quota = Quota::per_minute(5);
    let limiter = fallback.limiter("f", &quota);
    let key = RateKey::ip("192.0.2.60".parse().unwrap());
    // Down: the fallback charges.
    let during = fallback.check(&limiter, &key, 1).await.unwrap();
    assert!(during.allowed);
    assert_eq!(during.remaining, 4);
    // Up: the primary charges one of its own.
    down.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let after = fallback.check(&limiter, &key, 1).await.unwrap();
    assert_eq!(after.remaining, 4, "the primary's own budget");
    assert!(!fallback.stats().degraded);
    // The outage's reservation goes back to the fallback, not the primary.
    let back = fallback.refund(&limiter, &key, 1, &during).await.unwrap();
    assert_eq!(back.remaining, 5, "the fallback is whole again");
    let primary_now = fallback.check(&limiter, &key, 0).await.unwrap();
    assert_eq!(primary_now.remaining, 4, "the primary keeps its charge");
    // And the primary's own reservation goes back to the primary.
    let back = fallback.refund(&limiter, &key, 1, &after).await.unwrap();
    assert_eq!(back.remaining, 5);
    // Nested: a fallback of fallbacks routes each level by its own bit.
    let nested = FallbackStore::new(fallback.clone(), MemoryStore::new());
    let limiter = nested.limiter("n", &quota);
    down.store(true, Ordering::SeqCst);
    let d = nested.check(&limiter, &key, 1).await.unwrap();
    assert_eq!(d.remaining, 4, "inner fallback charged");
    down.store(false, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(nested.check(&limiter, &key, 1).await.unwrap().remaining, 4);
    assert_eq!(
        nested
            .refund(&limiter, &key, 1, &d)
            .await
            .unwrap()
            .remaining,
        5
    );
    assert_eq!(
        nested.check(&limiter, &key, 0).await.unwrap().remaining,
        4,
        "the recovered primary keeps its charge"
    );
}

#[tokio::test]
async fn hostile_forwarding_headers_never_break_the_layer() {
    let svc = RateLimitLayer::builder(MemoryStore::new())
        .policy(Policy::named("h").quota(Quota::per_minute(1000)))
        .trusted_proxies(tower_shield::client_ip::TrustedProxies::new(["10.0.0.0/8"]).unwrap())
        .build()
        .unwrap()
        .layer(Echo::default());
    let values: Vec<Vec<u8>> = vec![
        vec![0xff, 0xfe, b',', 0x80],
        b"\"\"\"\"\"\"".to_vec(),
        "1.2.3.4,".repeat(12_000).into_bytes(),
        b"[::1".to_vec(),
        b"for=\"[::1]:\\\"".to_vec(),
        b"\t ,\t ,".to_vec(),
    ];
    for name in ["x-forwarded-for", "forwarded"] {
        for value in &values {
            let mut req = request("/", "10.0.0.1:1");
            for _ in 0..100 {
                if let Ok(v) = HeaderValue::from_bytes(value) {
                    req.headers_mut().append(name, v);
                }
            }
            let r = svc.clone().oneshot(req).await.unwrap();
            assert_eq!(r.status(), StatusCode::OK);
        }
    }
}

#[test]
fn invalid_configuration_is_an_error() {
    assert!(RateLimitLayer::builder(MemoryStore::new()).build().is_err());
    assert!(
        RateLimitLayer::builder(MemoryStore::new())
            .policy(Policy::named("x").quota(Quota::per_minute(0)))
            .build()
            .is_err()
    );
    assert!(
        RateLimitLayer::builder(MemoryStore::new())
            .rule(
                Route::exact("/a"),
                Policy::named("x").quota(Quota::per_minute(1))
            )
            .policy(Policy::named("x").quota(Quota::per_minute(1)))
            .build()
            .is_err()
    );
}

#[tokio::test]
async fn a_million_keys_stay_bounded() {
    let store = MemoryStore::builder().max_keys(100_000).build().unwrap();
    let limiter = store.limiter("m", &Quota::per_minute(10));
    let started = Instant::now();
    let mut refused = 0u32;
    for i in 0..1_000_000u32 {
        let key = RateKey::ip(std::net::IpAddr::V4(i.into()));
        let decision = store
            .decide(&limiter, &key, 1)
            .expect("a full store still decides");
        if !decision.allowed {
            refused += 1;
        }
    }
    let elapsed = started.elapsed();
    assert!(limiter.len() <= 100_000 + 1024, "{} keys", limiter.len());
    assert!(
        refused >= 800_000,
        "new keys over the bound share one budget of 10: {refused} refused"
    );
    eprintln!("1M keys in {elapsed:?}, {} kept", limiter.len());
    assert!(elapsed < Duration::from_secs(30), "{elapsed:?}");
    // Known keys keep their own budgets while full.
    let known = RateKey::ip(std::net::IpAddr::V4(0u32.into()));
    assert!(store.decide(&limiter, &known, 1).unwrap().allowed);
}

/// At `max_keys`, new clients neither get 503 (which a fail-closed layer would make of a
/// store error: one client minting keys would lock every new client out) nor go unlimited:
/// they share `OVERFLOW_BUCKETS` budgets of the policy's quota, and known clients keep theirs.
#[tokio::test]
async fn a_full_store_shares_overflow_budgets() {
    use tower_shield::rate_limit::store::OVERFLOW_BUCKETS;
    let svc = RateLimitLayer::builder(MemoryStore::builder().max_keys(1024).build().unwrap())
        .policy(Policy::named("p").quota(Quota::per_minute(5)))
        .build()
        .unwrap()
        .layer(Echo::default());
    let peer = |i: u32| format!("{}:1", std::net::Ipv4Addr::from(0x0a00_0000 + i));
    let count = |range: std::ops::Range<u32>| {
        let svc = svc.clone();
        async move {
            let (mut ok, mut limited) = (0, 0);
            for i in range {
                match svc
                    .clone()
                    .oneshot(request("/", &peer(i)))
                    .await
                    .unwrap()
                    .status()
                {
                    StatusCode::OK => ok += 1,
                    StatusCode::TOO_MANY_REQUESTS => limited += 1,
                    other => panic!("client {i}: {other}"),
                }
            }
            (ok, limited)
        }
    };
    // The map is found full within two housekeeping periods (1024 new keys each).
    let (ok, limited) = count(0..2048).await;
    assert!(ok >= 1024, "{ok} allowed, {limited} limited");
    // From then on, every new client draws on the shared budgets: at most 5 each.
    let (ok, limited) = count(10_000..14_000).await;
    assert!(ok <= OVERFLOW_BUCKETS * 5, "{ok} allowed");
    assert!(limited >= 4_000 - OVERFLOW_BUCKETS * 5, "{limited} limited");
    let r = svc.clone().oneshot(request("/", &peer(0))).await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "a known client keeps its own budget"
    );
}

#[tokio::test]
async fn client_ip_is_inserted_on_every_path_that_goes_on() {
    let handler = tower::service_fn(|req: http::Request<rate_limit_support::Body>| async move {
        let ip = req
            .extensions()
            .get::<tower_shield::client_ip::ClientIp>()
            .map(|ip| ip.ip().to_string())
            .unwrap_or_default();
        Ok::<_, Infallible>(http::Response::new(rate_limit_support::Body::new(
            bytes::Bytes::from(ip),
        )))
    });
    let flaky = Flaky {
        down: Arc::new(AtomicBool::new(false)),
        memory: MemoryStore::new(),
    };
    // No rule matches (pass-through), and the asynchronous store path.
    let passthrough = RateLimitLayer::builder(MemoryStore::new())
        .rule(
            Route::prefix("/auth/"),
            Policy::named("a").quota(Quota::per_minute(1)),
        )
        .build()
        .unwrap()
        .layer(handler);
    let asynchronous = RateLimitLayer::builder(flaky)
        .policy(Policy::named("b").quota(Quota::per_minute(10)))
        .build()
        .unwrap()
        .layer(handler);
    let r = passthrough
        .oneshot(request("/other", "192.0.2.60:1"))
        .await
        .unwrap();
    assert_eq!(body_text(r).await, "192.0.2.60");
    let r = asynchronous
        .oneshot(request("/", "192.0.2.61:1"))
        .await
        .unwrap();
    assert_eq!(body_text(r).await, "192.0.2.61");
}

async fn body_text<B: http_body::Body>(response: http::Response<B>) -> String
where
    B::Error: std::fmt::Debug,
{
    use http_body_util::BodyExt;
    String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

#[tokio::test]
async fn without_request_extensions_nothing_is_inserted_and_nothing_else_changes() {
    let svc = RateLimitLayer::builder(MemoryStore::new())
        .policy(Policy::named("h").quota(Quota::per_minute(2)))
        .request_extensions(false)
        .build()
        .unwrap()
        .layer(tower::service_fn(
            |req: http::Request<rate_limit_support::Body>| async move {
                assert!(req.extensions().get::<RateLimitStatus>().is_none());
                assert!(
                    req.extensions()
                        .get::<tower_shield::client_ip::ClientIp>()
                        .is_none()
                );
                Ok::<_, Infallible>(http::Response::new(rate_limit_support::Body::default()))
            },
        ));
    // Two per minute: each spent request is 30 s until the quota is whole again.
    for (remaining, reset) in [(1, 30), (0, 60)] {
        let response = svc
            .clone()
            .oneshot(request("/", "192.0.2.15:1"))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["ratelimit"],
            format!("\"h\";r={remaining};t={reset}").as_str()
        );
    }
    let refused = svc.oneshot(request("/", "192.0.2.15:1")).await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["retry-after"], "30");
}
