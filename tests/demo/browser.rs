//! End-to-end: a real browser (headless Chromium) against the demo binary, started with
//! `CORS_ALLOWED_ORIGINS` set to one page server's origin: the scenario of
//! `tests/common/browser.rs` (shared with `tests/it/cors_browser.rs`). The allowed page reads
//! the JSON, the exposed `X-Request-ID` and the demo's 401 problem from `/auth/login`; the
//! other page gets a `TypeError` for everything; a header the demo does not allow is refused.
//!
//! Without Chromium this prints a skip line, unless `TOWER_SHIELD_REQUIRE_BROWSER` is set
//! (as CI does): then it fails.

use axum::Router;
use axum::response::Html;
use axum::routing::get;

use crate::common::Demo;
use crate::common::browser::{PAGE, assert_browser_outcome, chromium_or_skip, run_scenario};

/// A page server on a free loopback port; returns its origin.
async fn page_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = Router::new().route("/", get(|| async { Html(PAGE) }));
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_chromium_against_the_demo() {
    let Some(chromium) = chromium_or_skip("the demo's browser CORS test") else {
        return;
    };
    let allowed_page = page_server().await;
    let disallowed_page = page_server().await;
    // The browser connects from 127.0.0.1: no trusted proxy, so its address is its own.
    let demo = Demo::start(&[
        ("CORS_ALLOWED_ORIGINS", allowed_page.as_str()),
        ("TRUSTED_PROXIES", ""),
    ])
    .await;
    let allowed = run_scenario(&chromium, &allowed_page, &demo.base()).await;
    let disallowed = run_scenario(&chromium, &disallowed_page, &demo.base()).await;
    println!("allowed page {allowed_page}: {allowed:?}");
    println!("disallowed page {disallowed_page}: {disallowed:?}");
    assert_browser_outcome(&allowed, &disallowed);
    // The 401 the page read is the demo's own problem, with its request id.
    assert_eq!(
        allowed[1]["json"]["type"]
            .as_str()
            .map(|t| t.ends_with("invalid-credentials")),
        Some(true),
        "{allowed:?}"
    );
    assert_eq!(allowed[1]["json"]["request_id"], allowed[1]["request_id"]);
}
