//! The headless-Chromium CORS scenario, shared by `tests/it/cors_browser.rs` (an in-process
//! API behind `CorsLayer`) and `tests/demo/browser.rs` (the demo binary).
//!
//! Each page `fetch()`es the API with `credentials: 'include'` and a custom header (so the
//! browser sends a preflight first) and writes what it could read, or the name of the error,
//! into the DOM, which `chromium --headless --dump-dom` prints. The scenario only needs the
//! API's base URL and uses routes of the demo API contract (`GET /health`, `POST
//! /auth/login`).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

/// The page both page servers serve; `?api=` gives the API's base URL.
pub(crate) const PAGE: &str = r#"<!doctype html>
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

/// The Chromium binary, if there is one.
pub(crate) fn chromium() -> Option<PathBuf> {
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
pub(crate) async fn run_scenario(
    chromium: &PathBuf,
    page_origin: &str,
    api_base: &str,
) -> Vec<Value> {
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
pub(crate) fn assert_browser_outcome(allowed: &[Value], disallowed: &[Value]) {
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

/// The Chromium binary, or `None` after printing a skip line; panics when
/// `TOWER_SHIELD_REQUIRE_BROWSER` is set and there is none.
pub(crate) fn chromium_or_skip(test: &str) -> Option<PathBuf> {
    let found = chromium();
    if found.is_none() {
        if std::env::var_os("TOWER_SHIELD_REQUIRE_BROWSER").is_some() {
            panic!("TOWER_SHIELD_REQUIRE_BROWSER is set but no chromium was found on PATH");
        }
        println!("skipping {test}: chromium not found (apt-get install chromium)");
    }
    found
}
