//! End-to-end: what the demo tells its operators. A scripted attack through the public port
//! (wrong passwords, an `/auth/*` flood, a refresh-token reuse, a foreign-origin preflight, a
//! forged bearer token), then the `METRICS_ADDR` listener's `/metrics`, parsed by
//! Prometheus's own Python parser, must count exactly what happened, and the JSON log lines
//! (`LOG_FORMAT=json`) must hold one security event per refusal and none of the secrets used.
//!
//! Needs `python3` with `prometheus_client` (`python3 -m pip install prometheus_client`).
//! Without it the scrape test prints a skip line, unless `TOWER_SHIELD_REQUIRE_PROMETHEUS`
//! is set: then it fails.

use std::cell::Cell;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use crate::common::{Call, Demo, Resp, b64url_encode, jwt_segment, start_failure};

/// Prints every sample of the exposition text on stdin as one JSON array.
const PARSE_WITH_PROMETHEUS: &str = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
samples = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for sample in family.samples:
        samples.append({
            "family": family.name,
            "type": family.type,
            "help": family.documentation,
            "name": sample.name,
            "labels": sample.labels,
            "value": sample.value,
        })
print(json.dumps(samples))
"#;

fn prometheus_client_available() -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import prometheus_client"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var_os("TOWER_SHIELD_REQUIRE_PROMETHEUS").is_some() {
            panic!(
                "TOWER_SHIELD_REQUIRE_PROMETHEUS is set but `python3 -c 'import prometheus_client'` \
                 fails; install it with: python3 -m pip install prometheus_client"
            );
        }
        println!(
            "skipped: prometheus_client not installed (python3 -m pip install prometheus_client)"
        );
    }
    ok
}

/// A free port on 127.0.0.1 (bound, then released for the demo to take).
fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// One plain request outside the demo's public port (the metrics listener).
async fn fetch(method: Method, url: &str) -> (StatusCode, HeaderMap, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), client.request(request))
        .await
        .expect("answer within 10 s")
        .expect("request");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

/// The samples of `text` as Prometheus's parser reads them.
async fn parse_exposition(text: &str) -> Vec<Value> {
    let mut child = tokio::process::Command::new("python3")
        .args(["-c", PARSE_WITH_PROMETHEUS])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("run python3");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).await.unwrap();
    drop(stdin);
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the parser ends within 30 s")
        .unwrap();
    assert!(
        output.status.success(),
        "prometheus_client could not parse the scrape: {}\n{text}",
        String::from_utf8_lossy(&output.stderr)
    );
    let samples: Value = serde_json::from_slice(&output.stdout).expect("the parser's JSON");
    samples.as_array().expect("an array of samples").clone()
}

/// The value of the sample `name` with exactly these labels.
fn sample(samples: &[Value], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let want: serde_json::Map<String, Value> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
        .collect();
    samples
        .iter()
        .find(|s| s["name"] == name && s["labels"].as_object() == Some(&want))
        .map(|s| s["value"].as_f64().expect("a number"))
}

/// Like [`sample`], 0 when absent (a counter never incremented may not be rendered).
fn count(samples: &[Value], name: &str, labels: &[(&str, &str)]) -> u64 {
    let value = sample(samples, name, labels).unwrap_or(0.0);
    assert!(
        value >= 0.0 && value.fract() == 0.0,
        "{name}{labels:?} = {value}"
    );
    value as u64
}

/// Every stderr line as JSON (each must be one object), once `done` holds for them.
async fn json_lines(demo: &Demo, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    for _ in 0..100 {
        let lines: Vec<Value> = demo
            .stderr()
            .iter()
            .map(|line| {
                let value: Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("LOG_FORMAT=json, yet not JSON ({e}): {line}"));
                assert!(value.is_object(), "{line}");
                value
            })
            .collect();
        if done(&lines) {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the expected log lines never came: {:#?}", demo.stderr());
}

/// The security events (target `tower_shield::security`) named `event`.
fn events<'a>(lines: &'a [Value], event: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|l| l["target"] == "tower_shield::security" && l["event"] == event)
        .collect()
}

/// Asserts that no stderr line holds any of `secrets`.
fn assert_no_secret(demo: &Demo, secrets: &[&str]) {
    for line in demo.stderr() {
        for secret in secrets {
            assert!(!secret.is_empty());
            assert!(
                !line.contains(secret),
                "a log line holds a secret ({secret:?}): {line}"
            );
        }
    }
}

/// Counts the requests sent to the public port.
struct Sent(Cell<u64>);

impl Sent {
    async fn send(&self, call: Call<'_>) -> Resp {
        self.0.set(self.0.get() + 1);
        call.send().await
    }

    fn add(&self, n: u64) {
        self.0.set(self.0.get() + n);
    }
}

const VICTIM: &str = "victim@example.com";
const VICTIM_PASSWORD: &str = "victim password 1234";
const WRONG_PASSWORDS: [&str; 3] = [
    "guess number one!",
    "guess number two!",
    "guess number three!",
];
const SESSION_USER: &str = "session@example.com";
const SESSION_PASSWORD: &str = "session password 5678";
/// The `auth` policy: 10 per minute per IP.
const AUTH_QUOTA: u64 = 10;
/// The library logs at most this many events of one kind per client per minute.
const LIBRARY_EVENTS_PER_CLIENT: u64 = 10;

#[tokio::test]
async fn metrics_and_security_events_tell_what_happened() {
    if !prometheus_client_available() {
        return;
    }
    let metrics_addr = free_addr();
    let demo = Demo::start(&[
        ("METRICS_ADDR", &metrics_addr.to_string()),
        ("LOG_FORMAT", "json"),
        ("REFRESH_REUSE_GRACE_SECS", "0"),
    ])
    .await;
    let sent = Sent(Cell::new(0));
    let mut auth_calls = 0u64;

    // 1. Three wrong passwords for one account, from one address: three 401s.
    demo.register("10.9.0.1", VICTIM, VICTIM_PASSWORD).await;
    sent.add(1);
    auth_calls += 1;
    let guesser = "10.9.0.2";
    for wrong in WRONG_PASSWORDS {
        let r = sent
            .send(
                demo.post("/auth/login")
                    .client(guesser)
                    .json(&json!({ "email": VICTIM, "password": wrong })),
            )
            .await;
        auth_calls += 1;
        r.assert_problem(StatusCode::UNAUTHORIZED);
    }

    // 2. An `/auth/*` flood from one address: the `auth` policy answers 429 past its quota.
    let flooder = "10.9.0.3";
    let mut limited = 0u64;
    for _ in 0..AUTH_QUOTA + 5 {
        let r = sent.send(demo.post("/auth/refresh").client(flooder)).await;
        auth_calls += 1;
        match r.status {
            StatusCode::TOO_MANY_REQUESTS => limited += 1,
            StatusCode::UNAUTHORIZED => {}
            other => panic!("{other}: {r:?}"),
        }
    }
    assert!(limited >= 3, "several 429s: {limited}");

    // 3. A refresh-token reuse: sign in, refresh once, present the first token again.
    demo.register("10.9.1.1", SESSION_USER, SESSION_PASSWORD)
        .await;
    let (access1, rt1) = demo.login("10.9.1.2", SESSION_USER, SESSION_PASSWORD).await;
    sent.add(2);
    auth_calls += 2;
    let r = sent
        .send(demo.post("/auth/refresh").client("10.9.1.3").cookie(&rt1))
        .await;
    auth_calls += 1;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let access2 = r.json()["access_token"].as_str().unwrap().to_owned();
    let rt2 = r.refresh_cookie().unwrap();
    let r = sent
        .send(demo.post("/auth/refresh").client("10.9.1.4").cookie(&rt1))
        .await;
    auth_calls += 1;
    let problem = r.assert_problem(StatusCode::UNAUTHORIZED);
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("refresh_token_reused"),
        "{problem}"
    );

    // 4. A preflight from a foreign origin: 403.
    let r = sent
        .send(
            demo.call(Method::OPTIONS, "/api/me")
                .client("10.9.2.1")
                .header("origin", "https://evil.example")
                .header("access-control-request-method", "GET"),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");

    // 5. A forged bearer token: a real one with its claims rewritten (role admin), the
    //    signature kept.
    let mut claims = jwt_segment(&access1, 1);
    claims["role"] = json!("admin");
    let parts: Vec<&str> = access1.split('.').collect();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        b64url_encode(&serde_json::to_vec(&claims).unwrap()),
        parts[2]
    );
    let r = sent
        .send(demo.get("/api/me").client("10.9.3.1").bearer(&forged))
        .await;
    r.assert_problem(StatusCode::UNAUTHORIZED);

    // The public port does not serve the metrics.
    let r = sent.send(demo.get("/metrics").client("10.9.4.1")).await;
    r.assert_problem(StatusCode::NOT_FOUND);

    // The metrics listener: GET /metrics in the text format, and nothing else.
    let base = format!("http://{metrics_addr}");
    let (status, headers, text) = fetch(Method::GET, &format!("{base}/metrics")).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(
        headers.get("content-type").unwrap(),
        "text/plain; version=0.0.4"
    );
    for (method, path) in [
        (Method::GET, "/"),
        (Method::GET, "/health"),
        (Method::GET, "/metrics/"),
        (Method::GET, "/api/me"),
        (Method::POST, "/metrics"),
        (Method::DELETE, "/metrics"),
    ] {
        let (status, _, _) = fetch(method.clone(), &format!("{base}{path}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
    }

    let samples = parse_exposition(&text).await;
    let dump = || serde_json::to_string_pretty(&samples).unwrap();
    const RL: &str = "tower_shield_ratelimit_decisions_total";
    assert_eq!(
        count(&samples, RL, &[("policy", "auth"), ("outcome", "limited")]),
        limited,
        "{}",
        dump()
    );
    assert_eq!(
        count(&samples, RL, &[("policy", "auth"), ("outcome", "allowed")]),
        auth_calls - limited,
        "{}",
        dump()
    );
    for outcome in ["shadow_limited", "store_error"] {
        assert_eq!(
            count(&samples, RL, &[("policy", "auth"), ("outcome", outcome)]),
            0
        );
    }
    const REFRESH: &str = "tower_shield_refresh_total";
    assert_eq!(count(&samples, REFRESH, &[("outcome", "rotated")]), 1);
    assert_eq!(count(&samples, REFRESH, &[("outcome", "reused")]), 1);
    for outcome in ["sibling", "revoked", "expired", "unknown", "busy"] {
        assert_eq!(
            count(&samples, REFRESH, &[("outcome", outcome)]),
            0,
            "{outcome}: {}",
            dump()
        );
    }
    // Reuse detection ended the session.
    assert_eq!(
        count(
            &samples,
            "tower_shield_revocations_total",
            &[("kind", "session")]
        ),
        1
    );
    const CORS: &str = "tower_shield_cors_rejections_total";
    assert_eq!(count(&samples, CORS, &[("kind", "preflight")]), 1);
    assert_eq!(count(&samples, CORS, &[("kind", "simple")]), 0);
    // The forged token, and nothing else, went through JwtAuth: refused for its signature.
    const JWT: &str = "tower_shield_jwt_requests_total";
    assert_eq!(
        count(
            &samples,
            JWT,
            &[("outcome", "refused"), ("reason", "bad_signature")]
        ),
        1,
        "{}",
        dump()
    );
    let jwt_total: f64 = samples
        .iter()
        .filter(|s| s["name"] == JWT)
        .map(|s| s["value"].as_f64().unwrap())
        .sum();
    assert_eq!(jwt_total, 1.0, "{}", dump());
    // Every request to the public port got an id made here (none was sent one).
    const IDS: &str = "tower_shield_request_ids_total";
    assert_eq!(
        count(&samples, IDS, &[("source", "generated")]),
        sent.0.get()
    );
    assert_eq!(count(&samples, IDS, &[("source", "incoming")]), 0);
    // Every family is a described counter (`describe()` ran) and no label value is an
    // address, an email or a token.
    for s in &samples {
        let name = s["name"].as_str().unwrap();
        if !name.starts_with("tower_shield_") {
            continue;
        }
        if name != "tower_shield_redis_call_duration_seconds" {
            assert_eq!(s["type"], "counter", "{s}");
        }
        assert!(!s["help"].as_str().unwrap_or_default().is_empty(), "{s}");
        for value in s["labels"].as_object().unwrap().values() {
            let value = value.as_str().unwrap();
            assert!(
                value.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "a bounded label value: {s}"
            );
        }
    }

    // The log lines: all JSON, up to the access line of the last request.
    let lines = json_lines(&demo, |lines| {
        lines
            .iter()
            .any(|l| l["target"] == "demo_api::access" && l["path"] == "/metrics")
    })
    .await;

    let failed: Vec<&Value> = events(&lines, "auth.failed")
        .into_iter()
        .filter(|e| e["reason"] == "bad_credentials")
        .collect();
    assert_eq!(failed.len(), WRONG_PASSWORDS.len(), "{failed:#?}");
    for event in &failed {
        assert_eq!(event["level"], "INFO", "{event}");
        assert_eq!(event["route"], "/auth/login", "{event}");
        assert_eq!(event["client_ip"], guesser, "{event}");
        assert!(!event["request_id"].as_str().unwrap().is_empty(), "{event}");
        assert!(event.get("email").is_none(), "{event}");
    }
    // The forged token's refusal, from the JWT layer.
    let refused = events(&lines, "auth.failed");
    assert!(
        refused
            .iter()
            .any(|e| e["reason"] == "bad_signature" && e["route"] == "/api/me"),
        "{refused:#?}"
    );

    let exceeded: Vec<&Value> = events(&lines, "ratelimit.exceeded")
        .into_iter()
        .filter(|e| e["policy"] == "auth")
        .collect();
    assert_eq!(
        exceeded.len() as u64,
        limited.min(LIBRARY_EVENTS_PER_CLIENT),
        "{exceeded:#?}"
    );
    for event in &exceeded {
        assert_eq!(event["level"], "WARN", "{event}");
        assert_eq!(event["client_ip"], flooder, "{event}");
        assert_eq!(event["route"], "/auth/refresh", "{event}");
    }

    let reuse = events(&lines, "refresh.reuse_detected");
    assert_eq!(reuse.len(), 1, "{reuse:#?}");
    assert_eq!(reuse[0]["level"], "WARN");
    assert!(!events(&lines, "session.revoked").is_empty());

    let cors = events(&lines, "cors.rejected");
    assert_eq!(cors.len(), 1, "{cors:#?}");
    assert_eq!(cors[0]["origin"], "https://evil.example");
    // The client behind the trusted proxy, not the proxy.
    assert_eq!(cors[0]["client_ip"], "10.9.2.1");

    // No secret of this test in any line: passwords, access and refresh tokens (also their
    // signatures alone), and the accounts' emails.
    let mut secrets = vec![
        VICTIM_PASSWORD,
        SESSION_PASSWORD,
        VICTIM,
        SESSION_USER,
        &access1,
        &access2,
        &forged,
        &rt1,
        &rt2,
    ];
    secrets.extend(WRONG_PASSWORDS);
    let signatures: Vec<&str> = [&access1, &access2]
        .iter()
        .map(|t| t.rsplit('.').next().unwrap())
        .collect();
    secrets.extend(signatures);
    assert_no_secret(&demo, &secrets);
}

#[tokio::test]
async fn a_spent_login_failures_budget_is_a_warn_event() {
    let demo = Demo::start(&[("LOG_FORMAT", "json")]).await;
    let email = "budget@example.com";
    let password = "budget password 1234";
    let wrong = "not the password!";
    demo.register("10.8.0.1", email, password).await;
    let attacker = "10.8.0.2";
    let login = || {
        demo.post("/auth/login")
            .client(attacker)
            .json(&json!({ "email": email, "password": wrong }))
            .send()
    };
    for _ in 0..5 {
        login().await.assert_problem(StatusCode::UNAUTHORIZED);
    }
    let r = login().await;
    r.assert_problem(StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = r.header("retry-after").unwrap().parse().unwrap();

    let lines = json_lines(&demo, |lines| {
        lines
            .iter()
            .filter(|l| l["target"] == "demo_api::access" && l["path"] == "/auth/login")
            .count()
            == 6
    })
    .await;
    let failed = events(&lines, "auth.failed");
    assert_eq!(failed.len(), 5, "{failed:#?}");
    let limited = events(&lines, "ratelimit.exceeded");
    assert_eq!(limited.len(), 1, "{limited:#?}");
    let event = limited[0];
    assert_eq!(event["level"], "WARN", "{event}");
    assert_eq!(event["policy"], "login_failures", "{event}");
    assert_eq!(event["route"], "/auth/login", "{event}");
    assert_eq!(event["client_ip"], attacker, "{event}");
    assert_eq!(event["retry_after"], retry_after, "{event}");
    assert_eq!(
        event["request_id"].as_str(),
        r.header("x-request-id"),
        "{event}"
    );
    // One account, one address: one key, the same in every event, and not the email.
    let key_id = event["key_id"].as_str().unwrap();
    assert_eq!(key_id.len(), 16, "{event}");
    assert!(failed.iter().all(|e| e["key_id"] == key_id), "{failed:#?}");
    assert_no_secret(&demo, &[email, password, wrong]);
}

#[tokio::test]
async fn bad_metrics_addr_or_log_format_exits_2_naming_the_variable() {
    let port = free_addr().port();
    let bind = format!("127.0.0.1:{port}");
    let any = format!("0.0.0.0:{port}");
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("METRICS_ADDR", "nowhere")], "METRICS_ADDR"),
        (vec![("METRICS_ADDR", "")], "METRICS_ADDR"),
        (vec![("METRICS_ADDR", "127.0.0.1")], "METRICS_ADDR"),
        (
            vec![("BIND_ADDR", &bind), ("METRICS_ADDR", &bind)],
            "METRICS_ADDR",
        ),
        (
            vec![("BIND_ADDR", &bind), ("METRICS_ADDR", &any)],
            "METRICS_ADDR",
        ),
        (vec![("LOG_FORMAT", "xml")], "LOG_FORMAT"),
        (vec![("LOG_FORMAT", "JSON")], "LOG_FORMAT"),
    ];
    for (env, var) in &cases {
        let (code, stderr) = start_failure(env).await;
        assert_eq!(code, Some(2), "{env:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line for {env:?}: {stderr}");
        assert!(lines[0].contains(var), "{env:?} names {var}: {stderr}");
    }

    // A metrics address already taken: the same, once the app is built (and before the
    // start-up warnings, so still one line).
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let (code, stderr) = start_failure(&[("METRICS_ADDR", &taken_addr)]).await;
    assert_eq!(code, Some(2), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("METRICS_ADDR"), "{stderr}");
    drop(taken);
}
