//! Helpers shared by the rate-limit test modules.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};

pub(crate) type Body = Full<Bytes>;

/// An inner service answering 200, or the status given in `x-status`; counts its calls.
#[derive(Clone, Default)]
pub(crate) struct Echo {
    pub(crate) calls: Arc<AtomicUsize>,
}

impl Echo {
    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

impl tower::Service<Request<Body>> for Echo {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Response<Body>, Infallible>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let status = req
            .headers()
            .get("x-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u16>().ok())
            .and_then(|v| StatusCode::from_u16(v).ok())
            .unwrap_or(StatusCode::OK);
        let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
        *response.status_mut() = status;
        std::future::ready(Ok(response))
    }
}

/// A GET request from a peer.
pub(crate) fn request(path: &str, peer: &str) -> Request<Body> {
    let mut req = Request::get(path).body(Full::default()).unwrap();
    let addr: SocketAddr = peer.parse().unwrap();
    req.extensions_mut().insert(addr);
    req
}

pub(crate) async fn body_json<B>(response: Response<B>) -> serde_json::Value
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

/// `REDIS_URL`, or `None` (and a line saying the test is skipped) when unset.
#[cfg(feature = "redis")]
pub(crate) fn redis_url(test: &str) -> Option<String> {
    match std::env::var("REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("REDIS_URL is not set: skipping {test}");
            None
        }
    }
}

/// A key prefix no other test uses.
#[cfg(feature = "redis")]
pub(crate) fn unique_prefix() -> String {
    format!("ts:test:{}:", uuid::Uuid::new_v4().simple())
}

/// A count-only policy (5 failures per minute) on `store`: 30 simultaneous failing requests
/// from one client reach the inner service 5 times, the rest are 429; afterwards successes
/// are not charged and a refund never lifts the budget past its burst.
pub(crate) async fn count_only_is_exact_under_concurrency<St>(store: St)
where
    St: tower_shield::rate_limit::RateLimitStore,
{
    use tower::{Layer, ServiceExt};
    use tower_shield::rate_limit::{Policy, Quota, RateLimitLayer};

    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let inner = tower::service_fn(move |req: Request<Body>| {
        counted.fetch_add(1, Ordering::SeqCst);
        async move {
            // Held long enough that every request has been decided before any answers.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let status = req
                .headers()
                .get("x-status")
                .and_then(|v| v.to_str().ok()?.parse::<u16>().ok())
                .and_then(|v| StatusCode::from_u16(v).ok())
                .unwrap_or(StatusCode::OK);
            let mut response = Response::new(Full::new(Bytes::from_static(b"ok")));
            *response.status_mut() = status;
            Ok::<_, Infallible>(response)
        }
    });
    let svc = RateLimitLayer::builder(store)
        .policy(
            Policy::named("login_failures")
                .quota(Quota::per_minute(5))
                .count_only([StatusCode::UNAUTHORIZED]),
        )
        .build()
        .unwrap()
        .layer(inner);
    let with_status = |peer: &str, status: &str| {
        let mut req = request("/auth/login", peer);
        req.headers_mut()
            .insert("x-status", http::HeaderValue::from_str(status).unwrap());
        req
    };

    let tasks: Vec<_> = (0..30)
        .map(|_| {
            let svc = svc.clone();
            let req = with_status("192.0.2.80:1", "401");
            tokio::spawn(async move { svc.oneshot(req).await.unwrap().status() })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    let unauthorized = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(calls.load(Ordering::SeqCst), 5, "{statuses:?}");
    assert_eq!((unauthorized, limited), (5, 25), "{statuses:?}");

    // Another client: successes cost nothing and never lift the budget past 5.
    let remaining = |r: &Response<_>| {
        r.headers()["ratelimit"]
            .to_str()
            .unwrap()
            .split(";r=")
            .nth(1)
            .and_then(|rest| rest.split(';').next())
            .and_then(|r| r.parse::<u32>().ok())
            .unwrap()
    };
    for _ in 0..8 {
        let r = svc
            .clone()
            .oneshot(with_status("192.0.2.81:1", "200"))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(remaining(&r), 5, "{:?}", r.headers());
    }
    for left in [4, 3, 2, 1, 0] {
        let r = svc
            .clone()
            .oneshot(with_status("192.0.2.81:1", "401"))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(remaining(&r), left);
    }
    let r = svc
        .clone()
        .oneshot(with_status("192.0.2.81:1", "200"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
}
