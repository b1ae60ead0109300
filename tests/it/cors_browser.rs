//! A real browser (Debian's headless Chromium) against `CorsLayer`.
//!
//! Three loopback servers: the API (port A) wrapped in `CorsLayer` configured as the demo API
//! is, allowing exactly the origin of page server B; page server B (the allowed origin) and
//! page server C (a disallowed origin). Each page `fetch()`es the API with
//! `credentials: 'include'` and a custom header (so the browser sends a preflight first) and
//! writes what it could read, or the name of the error, into the DOM, which
//! `chromium --headless --dump-dom` prints.
//!
//! The scenario (pages, fetches, expected browser outcome) only needs the API's base URL and
//! uses routes of the demo API contract (`GET /health`, `POST /auth/login`), so the same
//! [`run_scenario`] and [`assert_browser_outcome`] can be pointed at the demo binary started
//! with `CORS_ALLOWED_ORIGINS` set to the allowed page's origin.
//!
//! Without Chromium the test prints a skip line and passes, unless
//! `TOWER_SHIELD_REQUIRE_BROWSER` is set (as `.ci/run` does): then it fails. `CHROMIUM` may
//! name the binary.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tower_shield::cors::{CorsLayer, CorsLayerBuilder};

use crate::common::browser::{PAGE, assert_browser_outcome, chromium, run_scenario};

/// What a server saw: method, path and query, `Origin`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    method: String,
    uri: String,
    origin: Option<String>,
}

type Log = Arc<Mutex<Vec<Seen>>>;

fn seen(request: &Request<Body>) -> Seen {
    Seen {
        method: request.method().to_string(),
        uri: request
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        origin: request
            .headers()
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .map(str::to_owned),
    }
}

/// The demo API's CORS settings (DEMO_API.md), for one allowed origin.
fn demo_cors(allowed_origin: &str) -> CorsLayerBuilder {
    CorsLayer::builder()
        .allow_origin(allowed_origin)
        .allow_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
        .allow_headers(["authorization", "content-type", "x-request-id"])
        .allow_credentials(true)
        .max_age(Duration::from_secs(600))
        .expose_headers([
            "x-request-id",
            "ratelimit",
            "ratelimit-policy",
            "retry-after",
        ])
}

fn request_id(headers: &HeaderMap) -> HeaderValue {
    headers
        .get("x-request-id")
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("server-generated"))
}

async fn serve(router: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    format!("http://{address}")
}

/// An in-process stand-in for the demo API: `GET /health` and a `POST /auth/login` that
/// always answers 401, behind `cors`. Returns the base URL, what reached the edge (before
/// CORS) and what reached the handlers.
async fn start_api(cors: CorsLayer) -> (String, Log, Log) {
    let edge: Log = Arc::default();
    let handlers: Log = Arc::default();
    let health_log = Arc::clone(&handlers);
    let login_log = Arc::clone(&handlers);
    let edge_log = Arc::clone(&edge);
    let router = Router::new()
        .route(
            "/health",
            get(move |request: Request<Body>| {
                let log = Arc::clone(&health_log);
                async move {
                    log.lock().unwrap().push(seen(&request));
                    let mut response = axum::Json(serde_json::json!({ "status": "ok" })).into_response();
                    response
                        .headers_mut()
                        .insert("x-request-id", request_id(request.headers()));
                    response
                }
            }),
        )
        .route(
            "/auth/login",
            post(move |request: Request<Body>| {
                let log = Arc::clone(&login_log);
                async move {
                    log.lock().unwrap().push(seen(&request));
                    let body = r#"{"type":"https://docs.rs/tower-shield/latest/tower_shield/refusal/#unauthorized","title":"Unauthorized","status":401,"detail":"Authentication is required.","request_id":"server-generated"}"#;
                    let mut response: Response = (StatusCode::UNAUTHORIZED, body).into_response();
                    response.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/problem+json"),
                    );
                    response
                        .headers_mut()
                        .insert("x-request-id", request_id(request.headers()));
                    response
                }
            }),
        )
        .layer(cors)
        .layer(tower::util::MapRequestLayer::new(move |request: Request<Body>| {
            edge_log.lock().unwrap().push(seen(&request));
            request
        }));
    (serve(router).await, edge, handlers)
}

/// A page server: serves [`PAGE`] at `/`; returns its origin.
async fn start_page_server() -> String {
    serve(Router::new().route("/", get(|| async { Html(PAGE) }))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_chromium_obeys_the_allowlist() {
    let Some(chromium) = chromium() else {
        if std::env::var_os("TOWER_SHIELD_REQUIRE_BROWSER").is_some() {
            panic!("TOWER_SHIELD_REQUIRE_BROWSER is set but no chromium was found on PATH");
        }
        println!("skipping the browser CORS test: chromium not found (apt-get install chromium)");
        return;
    };

    let allowed_page = start_page_server().await;
    let disallowed_page = start_page_server().await;
    let (api, edge, handlers) = start_api(demo_cors(&allowed_page).build().unwrap()).await;

    let allowed = run_scenario(&chromium, &allowed_page, &api).await;
    let disallowed = run_scenario(&chromium, &disallowed_page, &api).await;
    println!("allowed page {allowed_page}: {allowed:?}");
    println!("disallowed page {disallowed_page}: {disallowed:?}");
    assert_browser_outcome(&allowed, &disallowed);

    let edge = edge.lock().unwrap().clone();
    let handlers = handlers.lock().unwrap().clone();
    let from = |log: &[Seen], origin: &str, method: &str, uri: &str| {
        log.iter()
            .filter(|s| s.origin.as_deref() == Some(origin) && s.method == method && s.uri == uri)
            .count()
    };

    // The browser sent preflights from both origins; none reached a handler.
    for origin in [&allowed_page, &disallowed_page] {
        assert!(from(&edge, origin, "OPTIONS", "/health") >= 1, "{edge:?}");
        assert!(
            from(&edge, origin, "OPTIONS", "/auth/login") >= 1,
            "{edge:?}"
        );
        assert!(
            from(&edge, origin, "OPTIONS", "/health?unlisted-header") >= 1,
            "{edge:?}"
        );
    }
    assert!(
        handlers.iter().all(|s| s.method != "OPTIONS"),
        "{handlers:?}"
    );

    // The allowed origin's actual requests reached the handlers; the refused one did not.
    assert_eq!(from(&handlers, &allowed_page, "GET", "/health"), 1);
    assert_eq!(from(&handlers, &allowed_page, "POST", "/auth/login"), 1);
    assert_eq!(
        from(&handlers, &allowed_page, "GET", "/health?unlisted-header"),
        0
    );

    // The disallowed origin's preflighted requests never reached a handler. Its simple GET
    // is sent by the browser without a preflight, so it does reach the handler; the browser
    // only hides the answer from the page (strict mode, below, stops it at the server).
    let from_disallowed: Vec<&Seen> = handlers
        .iter()
        .filter(|s| s.origin.as_deref() == Some(disallowed_page.as_str()))
        .collect();
    assert_eq!(
        from_disallowed,
        [&Seen {
            method: "GET".into(),
            uri: "/health?simple".into(),
            origin: Some(disallowed_page.clone()),
        }],
    );

    // Strict mode: the disallowed origin's simple request is refused before the handler too.
    let (strict_api, strict_edge, strict_handlers) =
        start_api(demo_cors(&allowed_page).strict(true).build().unwrap()).await;
    let disallowed = run_scenario(&chromium, &disallowed_page, &strict_api).await;
    assert!(
        disallowed.iter().all(|r| r["error"] == "TypeError"),
        "{disallowed:?}"
    );
    assert!(
        from(
            &strict_edge.lock().unwrap(),
            &disallowed_page,
            "GET",
            "/health?simple"
        ) == 1
    );
    assert!(strict_handlers.lock().unwrap().is_empty());
}
