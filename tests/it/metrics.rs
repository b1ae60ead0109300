//! What the layers record through the `metrics` facade (feature `metrics`): each counter of
//! the table in `tower_shield::metrics` moves exactly as the requests say, read from a
//! Prometheus recorder's rendering.

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tower::{Layer, ServiceExt, service_fn};
use tower_shield::cors::CorsLayer;
use tower_shield::jwt::{JwtAuthLayer, Key, KeySet};
use tower_shield::rate_limit::{MemoryStore, Policy, Quota, RateLimitLayer};
use tower_shield::request_id::RequestIdLayer;
use tower_shield::tokens::TokenIssuer;

use crate::rate_limit_support::request;

type Body = Full<Bytes>;

fn ok() -> impl tower::Service<
    Request<Body>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Body>, Infallible>>,
> + Clone {
    service_fn(|_: Request<Body>| async { Ok::<_, Infallible>(Response::new(Body::default())) })
}

/// The value of the sample `name{labels}` in a Prometheus text rendering (0 when absent).
fn sample(text: &str, name: &str, labels: &str) -> u64 {
    let prefix = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map_or(0, |value| value.trim().parse().unwrap())
}

fn recorder() -> (
    metrics_exporter_prometheus::PrometheusRecorder,
    PrometheusHandle,
) {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    (recorder, handle)
}

#[tokio::test]
async fn rate_limit_decisions_by_policy_and_outcome() {
    let (recorder, handle) = recorder();
    let layer = metrics::with_local_recorder(&recorder, || {
        RateLimitLayer::builder(MemoryStore::new())
            .policy(Policy::named("metered").quota(Quota::per_minute(2)))
            .build()
            .unwrap()
    });
    let svc = layer.layer(ok());
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(
            svc.clone()
                .oneshot(request("/", "192.0.2.200:1"))
                .await
                .unwrap()
                .status(),
        );
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
            .count(),
        3
    );
    let text = handle.render();
    let name = "tower_shield_ratelimit_decisions_total";
    assert_eq!(
        sample(&text, name, r#"policy="metered",outcome="allowed""#),
        2,
        "{text}"
    );
    assert_eq!(
        sample(&text, name, r#"policy="metered",outcome="limited""#),
        3,
        "{text}"
    );
    assert_eq!(
        sample(&text, name, r#"policy="metered",outcome="store_error""#),
        0
    );
}

#[tokio::test]
async fn jwt_requests_by_outcome_and_reason() {
    let (recorder, handle) = recorder();
    let keys = KeySet::new()
        .with(Key::generate(jsonwebtoken::Algorithm::EdDSA).unwrap())
        .unwrap();
    let (layer, issuer) = metrics::with_local_recorder(&recorder, || {
        (
            JwtAuthLayer::builder(keys.clone())
                .issuer("https://issuer")
                .audience("api")
                .cache(16)
                .build()
                .unwrap(),
            TokenIssuer::builder(keys.clone())
                .issuer("https://issuer")
                .audience("api")
                .build()
                .unwrap(),
        )
    });
    let svc = layer.layer(ok());
    let token = issuer.issue("user_1", "user", &()).unwrap();
    let call = |auth: Option<String>| {
        let mut req = Request::new(Body::default());
        if let Some(auth) = auth {
            req.headers_mut()
                .insert(header::AUTHORIZATION, HeaderValue::from_str(&auth).unwrap());
        }
        svc.clone().oneshot(req)
    };
    let bearer = format!("Bearer {}", token.as_str());
    assert_eq!(
        call(Some(bearer.clone())).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(call(Some(bearer)).await.unwrap().status(), StatusCode::OK);
    assert_eq!(call(None).await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let forged = format!("Bearer {}x", token.as_str());
    assert_eq!(
        call(Some(forged)).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let text = handle.render();
    let name = "tower_shield_jwt_requests_total";
    assert_eq!(
        sample(&text, name, r#"outcome="verified",reason="none""#),
        1,
        "{text}"
    );
    assert_eq!(
        sample(&text, name, r#"outcome="cache_hit",reason="none""#),
        1,
        "{text}"
    );
    assert_eq!(
        sample(&text, name, r#"outcome="refused",reason="missing""#),
        1,
        "{text}"
    );
    let refused_other: u64 = text
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{outcome=\"refused\"")))
        .filter(|l| !l.contains("reason=\"missing\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(
        refused_other, 1,
        "the forged token, under its reason: {text}"
    );
}

#[tokio::test]
async fn cors_rejections_and_request_ids() {
    let (recorder, handle) = recorder();
    let (cors, ids) = metrics::with_local_recorder(&recorder, || {
        (
            CorsLayer::builder()
                .allow_origin("https://app.example")
                .build()
                .unwrap(),
            RequestIdLayer::builder()
                .trust_incoming(true)
                .build()
                .unwrap(),
        )
    });
    let svc = ids.layer(cors.layer(ok()));
    let preflight = Request::builder()
        .method(Method::OPTIONS)
        .header(header::ORIGIN, "https://evil.example")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .body(Body::default())
        .unwrap();
    assert_eq!(
        svc.clone().oneshot(preflight).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let simple = Request::builder()
        .header(header::ORIGIN, "https://evil.example")
        .header("x-request-id", "lb-1")
        .body(Body::default())
        .unwrap();
    let response = svc.clone().oneshot(simple).await.unwrap();
    assert!(
        !response
            .headers()
            .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
    );
    // A page's own request carries its origin too: not a cross-origin attempt.
    let own = Request::builder()
        .method(Method::POST)
        .header(header::ORIGIN, "https://API.example")
        .header(header::HOST, "api.example")
        .body(Body::default())
        .unwrap();
    assert_eq!(
        svc.clone().oneshot(own).await.unwrap().status(),
        StatusCode::OK
    );
    let text = handle.render();
    let cors = "tower_shield_cors_rejections_total";
    assert_eq!(sample(&text, cors, r#"kind="preflight""#), 1, "{text}");
    assert_eq!(sample(&text, cors, r#"kind="simple""#), 1, "{text}");
    let ids = "tower_shield_request_ids_total";
    // The preflight and the page's own request came without one.
    assert_eq!(sample(&text, ids, r#"source="generated""#), 2, "{text}");
    assert_eq!(sample(&text, ids, r#"source="incoming""#), 1, "{text}");
}
