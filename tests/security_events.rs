//! The security events the layers emit (`tracing`, target `tower_shield::security`), read as
//! JSON lines: one per refusal or anomaly with its stable `event` field, bounded per client,
//! and never a token. In a test binary of its own: it installs a subscriber for the whole
//! process (tracing's callsite interest is process-wide; see `request_id_span.rs`).
#![cfg(all(
    feature = "jwt",
    feature = "tokens",
    feature = "rate-limit",
    feature = "cors"
))]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::Value;
use tower::{Layer, ServiceExt, service_fn};
use tower_shield::cors::CorsLayer;
use tower_shield::jwt::{JwtAuthLayer, Key, KeySet, MemoryRevocationStore};
use tower_shield::rate_limit::{MemoryStore, Policy, Quota, RateLimitLayer};
use tower_shield::tokens::store::MemoryRefreshStore;
use tower_shield::tokens::{RefreshError, RefreshTokens, TokenIssuer};

type Body = Full<Bytes>;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn from(peer: &str, mut req: Request<Body>) -> Request<Body> {
    req.extensions_mut()
        .insert(peer.parse::<SocketAddr>().unwrap());
    req
}

fn ok() -> impl tower::Service<
    Request<Body>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Body>, Infallible>>,
> + Clone {
    service_fn(|_: Request<Body>| async { Ok::<_, Infallible>(Response::new(Body::default())) })
}

#[tokio::test]
async fn every_refusal_is_one_bounded_event_without_secrets() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_writer(move || writer.clone())
        .with_max_level(tracing::Level::INFO)
        .init();

    let keys = KeySet::new()
        .with(Key::generate(jsonwebtoken::Algorithm::EdDSA).unwrap())
        .unwrap();
    let issuer = TokenIssuer::builder(keys.clone())
        .issuer("https://issuer")
        .audience("api")
        .build()
        .unwrap();
    let token = issuer.issue("user_7", "user", &()).unwrap();
    let mut secrets = vec![token.as_str().to_owned()];

    // 30 forged tokens from one client: 30 refusals, at most 10 events.
    let jwt = JwtAuthLayer::builder(keys.clone())
        .issuer("https://issuer")
        .audience("api")
        .build()
        .unwrap()
        .layer(ok());
    let forged = format!("{}x", token.as_str());
    secrets.push(forged.clone());
    for _ in 0..30 {
        let mut req = Request::get("/api/me").body(Body::default()).unwrap();
        req.headers_mut().insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {forged}")).unwrap(),
        );
        let status = jwt
            .clone()
            .oneshot(from("198.51.100.1:1", req))
            .await
            .unwrap()
            .status();
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // Another client still gets its event.
    let req = Request::get("/api/me").body(Body::default()).unwrap();
    jwt.clone()
        .oneshot(from("198.51.100.2:1", req))
        .await
        .unwrap();

    // A 429.
    let limited = RateLimitLayer::builder(MemoryStore::new())
        .policy(Policy::named("events").quota(Quota::per_minute(1)))
        .build()
        .unwrap()
        .layer(ok());
    for expected in [StatusCode::OK, StatusCode::TOO_MANY_REQUESTS] {
        let req = Request::get("/auth/login").body(Body::default()).unwrap();
        let status = limited
            .clone()
            .oneshot(from("198.51.100.3:1", req))
            .await
            .unwrap()
            .status();
        assert_eq!(status, expected);
    }

    // A foreign origin's preflight.
    let cors = CorsLayer::builder()
        .allow_origin("https://app.example")
        .build()
        .unwrap()
        .layer(ok());
    let req = Request::builder()
        .method(Method::OPTIONS)
        .uri("/api/items")
        .header(header::ORIGIN, "https://evil.example")
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .body(Body::default())
        .unwrap();
    let status = cors
        .oneshot(from("198.51.100.4:1", req))
        .await
        .unwrap()
        .status();
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A refresh-token reuse, then logout everywhere.
    let tokens = RefreshTokens::builder(issuer.clone(), MemoryRefreshStore::new())
        .revocation(MemoryRevocationStore::new())
        .reuse_grace(std::time::Duration::ZERO)
        .build()
        .unwrap();
    let pair = tokens.issue_pair("user_7", "user", &()).await.unwrap();
    let first = pair.refresh_token.as_str().to_owned();
    let second = tokens.rotate(&first).await.unwrap();
    secrets.push(first.clone());
    secrets.push(second.refresh_token.as_str().to_owned());
    secrets.push(pair.access_token.as_str().to_owned());
    assert!(matches!(
        tokens.rotate(&first).await,
        Err(RefreshError::Reused { .. })
    ));
    tokens.logout_everywhere("user_7").await.unwrap();

    let output = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let events: Vec<Value> = output
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|line| line["target"] == "tower_shield::security")
        .collect();
    let of = |kind: &str| -> Vec<&Value> { events.iter().filter(|e| e["event"] == kind).collect() };

    let auth = of("auth.failed");
    let first_client: Vec<_> = auth
        .iter()
        .filter(|e| e["client_ip"] == "198.51.100.1")
        .collect();
    // Ten per minute (twenty if the run straddles a minute).
    assert!(
        (10..=20).contains(&first_client.len()),
        "bounded per client: {output}"
    );
    assert!(
        first_client
            .iter()
            .all(|e| e["route"] == "/api/me" && e["level"] == "INFO")
    );
    assert!(
        first_client
            .iter()
            .all(|e| e["reason"].as_str().is_some_and(|r| !r.is_empty()))
    );
    assert_eq!(
        auth.iter()
            .filter(|e| e["client_ip"] == "198.51.100.2")
            .count(),
        1,
        "another client is not silenced"
    );
    assert_eq!(
        auth.iter()
            .find(|e| e["client_ip"] == "198.51.100.2")
            .unwrap()["reason"],
        "missing"
    );

    let limited = of("ratelimit.exceeded");
    assert_eq!(limited.len(), 1, "{output}");
    assert_eq!(limited[0]["policy"], "events");
    assert_eq!(limited[0]["client_ip"], "198.51.100.3");
    assert_eq!(limited[0]["route"], "/auth/login");
    assert_eq!(limited[0]["level"], "WARN");

    let cors = of("cors.rejected");
    assert_eq!(cors.len(), 1, "{output}");
    assert_eq!(cors[0]["origin"], "https://evil.example");
    assert_eq!(cors[0]["reason"], "origin");

    let reuse = of("refresh.reuse_detected");
    assert_eq!(reuse.len(), 1, "{output}");
    assert_eq!(reuse[0]["subject"], "user_7");
    assert!(
        of("session.revoked").len() >= 2,
        "the reused session and logout everywhere: {output}"
    );

    for secret in &secrets {
        assert!(
            !output.contains(secret.as_str()),
            "a secret reached the logs"
        );
        // Not even the signature part of a token.
        if let Some(signature) = secret.rsplit('.').next().filter(|s| s.len() > 16) {
            assert!(
                !output.contains(signature),
                "a token signature reached the logs"
            );
        }
    }
}
