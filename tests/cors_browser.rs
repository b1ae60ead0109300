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
#![cfg(feature = "cors")]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::net::TcpListener;
use tower_shield::cors::{CorsLayer, CorsLayerBuilder};

/// The page both page servers serve; `?api=` gives the API's base URL.
const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>cors browser test</title></head>
<body><pre id="results">pending</pre>
<script>
const api = new URLSearchParams(location.search).get('api');
const fetches = [
  // 0: GET with a custom header: preflighted.
  { method: 'GET', path: '/health', headers: { 'x-request-id': 'browser-get-1' } },
  // 1: POST with a JSON body: preflighted (content-type is not a safelisted value). The API
  //    answers 401: an inner refusal the page must be able to read.
  { method: 'POST', path: '/auth/login', headers: { 'content-type': 'application/json' },
    body: '{"email":"nobody@example.com","password":"not-the-password"}' },
  // 2: a header the API does not allow: the preflight is refused, even for the allowed origin.
  { method: 'GET', path: '/health?unlisted-header', headers: { 'x-api-key': 'k' } },
  // 3: a simple GET (no custom header): sent without a preflight.
  { method: 'GET', path: '/health?simple', headers: {} },
];
(async () => {
  const out = [];
  for (const f of fetches) {
    try {
      const r = await fetch(api + f.path, {
        method: f.method, headers: f.headers, body: f.body, credentials: 'include', mode: 'cors',
      });
      const json = await r.json();
      out.push({ ok: true, status: r.status, json, request_id: r.headers.get('x-request-id') });
    } catch (e) {
      out.push({ ok: false, error: e.name });
    }
  }
  document.getElementById('results').textContent = JSON.stringify(out);
})();
</script></body></html>
"#;

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

/// The Chromium binary, if there is one.
fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser", "google-chrome"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// Loads `page_origin/?api=api_base` in headless Chromium and returns what the page wrote:
/// one JSON object per fetch, `{"ok":true,"status","json","request_id"}` or
/// `{"ok":false,"error"}`.
async fn run_scenario(chromium: &PathBuf, page_origin: &str, api_base: &str) -> Vec<Value> {
    let profile = std::env::temp_dir().join(format!("ts-cors-chromium-{}", uuid::Uuid::new_v4()));
    let url = format!("{page_origin}/?api={api_base}");
    let child = tokio::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(["--virtual-time-budget=5000", "--dump-dom"])
        .arg(&url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("chromium starts");
    let output = tokio::time::timeout(Duration::from_secs(90), child.wait_with_output())
        .await
        .expect("chromium finished within 90 s")
        .expect("chromium ran");
    let _ = std::fs::remove_dir_all(&profile);
    let dom = String::from_utf8_lossy(&output.stdout);
    let results = dom
        .split_once(r#"<pre id="results">"#)
        .and_then(|(_, rest)| rest.split_once("</pre>"))
        .map(|(text, _)| {
            text.replace("&quot;", "\"")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&")
        })
        .unwrap_or_default();
    match serde_json::from_str::<Vec<Value>>(&results) {
        Ok(results) if results.len() == 4 => results,
        _ => panic!(
            "the page at {url} did not report its results.\nstatus: {:?}\nDOM:\n{dom}\nstderr (tail):\n{}",
            output.status,
            tail(&String::from_utf8_lossy(&output.stderr), 40)
        ),
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// What the browser must report: the allowed page reads the JSON (and the exposed
/// `x-request-id`, and the 401 refusal's body), the disallowed page gets a `TypeError`, and
/// a header the API does not allow is refused to both.
fn assert_browser_outcome(allowed: &[Value], disallowed: &[Value]) {
    // Allowed origin, preflighted GET: JSON read, exposed header readable.
    assert_eq!(allowed[0]["ok"], true, "{allowed:?}");
    assert_eq!(allowed[0]["status"], 200);
    assert_eq!(allowed[0]["json"]["status"], "ok");
    assert!(
        allowed[0]["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "x-request-id is exposed: {allowed:?}"
    );
    // Allowed origin, preflighted POST answered 401: the page can read the refusal.
    assert_eq!(allowed[1]["ok"], true, "{allowed:?}");
    assert_eq!(allowed[1]["status"], 401);
    assert_eq!(allowed[1]["json"]["status"], 401);
    // Allowed origin, unlisted request header: the preflight is refused.
    assert_eq!(allowed[2]["ok"], false, "{allowed:?}");
    assert_eq!(allowed[2]["error"], "TypeError");
    // Allowed origin, simple GET.
    assert_eq!(allowed[3]["ok"], true, "{allowed:?}");
    assert_eq!(allowed[3]["json"]["status"], "ok");

    // Disallowed origin: nothing is readable.
    for (index, result) in disallowed.iter().enumerate() {
        assert_eq!(result["ok"], false, "fetch {index}: {disallowed:?}");
        assert_eq!(result["error"], "TypeError", "fetch {index}");
    }
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
