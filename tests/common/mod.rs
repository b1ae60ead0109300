//! Shared helpers of the demo's end-to-end tests: start the real `demo_api` binary on
//! `127.0.0.1:0`, talk to it with hyper-util's client, and stop it (also on panic: the child
//! is killed when [`Demo`] drops).
//!
//! The demo is started with `TRUSTED_PROXIES=127.0.0.1/32`, so a test can play several
//! clients by sending `X-Forwarded-For` (see [`Call::client`]); without it every call comes
//! from 127.0.0.1 and shares that address's limits.
//!
//! Declared once by each test binary: `tests/demo` (the demo's end-to-end tests) and
//! `tests/it` (whose `examples`, `cors_browser`, `token_redis` and rate-limit outage tests use
//! the process, browser and Redis-server helpers).
// Each binary uses a different part of it.
#![allow(dead_code)]

pub(crate) mod browser;
pub(crate) mod redis_server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub(crate) const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// An example binary next to this test binary (`target/<profile>/examples/<name>`).
pub(crate) fn example_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("test binary directory").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "example binary {} not found: run `cargo build --examples` (plain `cargo test` builds it)",
        path.display()
    );
    path
}

/// The demo binary next to this test binary (`target/<profile>/examples/demo_api`).
pub(crate) fn demo_path() -> PathBuf {
    example_path("demo_api")
}

/// A spawned server that printed `listening on http://ADDR` as its first stdout line.
pub(crate) struct Listening {
    pub(crate) child: Child,
    pub(crate) addr: SocketAddr,
    /// Every stderr line so far (collected by a background task).
    pub(crate) stderr: Arc<Mutex<Vec<String>>>,
}

/// Spawns `command` (stdout and stderr piped), waits up to `timeout` for its first stdout line
/// `listening on http://ADDR`, then keeps collecting stderr and draining stdout so the child
/// never blocks on a full pipe. `name` is for panic messages.
pub(crate) async fn spawn_listening(
    command: &mut Command,
    name: &str,
    timeout: Duration,
) -> Listening {
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {name}: {e}"));

    let stderr = Arc::new(Mutex::new(Vec::new()));
    let mut err_lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let sink = Arc::clone(&stderr);
    tokio::spawn(async move {
        while let Ok(Some(line)) = err_lines.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    let mut out_lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(timeout, out_lines.next_line())
        .await
        .unwrap_or_else(|_| panic!("{name} printed nothing within {timeout:?}"))
        .expect("read stdout");
    let Some(line) = line else {
        // Give the stderr task a moment to collect the reason.
        tokio::time::sleep(Duration::from_millis(200)).await;
        panic!("{name} exited early: {:?}", stderr.lock().unwrap());
    };
    let addr = line
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line from {name}: {line:?}"))
        .parse()
        .expect("socket address");
    tokio::spawn(async move { while let Ok(Some(_)) = out_lines.next_line().await {} });
    Listening {
        child,
        addr,
        stderr,
    }
}

/// Every variable the demo reads: removed from a test's demo environment first, so a
/// developer's shell (or CI's `DATABASE_URL`) cannot leak into a test.
pub(crate) const DEMO_VARIABLES: &[&str] = &[
    "CORS_ALLOWED_ORIGINS",
    "JWT_PRIVATE_KEY_FILE",
    "JWT_ALGORITHM",
    "JWT_ISSUER",
    "JWT_AUDIENCE",
    "ACCESS_TOKEN_TTL_SECS",
    "REFRESH_TOKEN_TTL_SECS",
    "REFRESH_REUSE_GRACE_SECS",
    "STORE_URL",
    "DATABASE_URL",
    "STORE_PREFIX",
    "DEMO_ADMIN_EMAIL",
    "DEMO_ADMIN_PASSWORD",
    "COOKIE_SECURE",
    "DEMO_RATE_LIMIT_SCALE",
    "TRUSTED_PROXY_HEADER",
    "DEMO_ACCESS_LOG",
    "METRICS_ADDR",
    "LOG_FORMAT",
];

/// The environment every test demo starts with (before the test's own variables).
fn base_command() -> Command {
    let mut command = Command::new(demo_path());
    for var in DEMO_VARIABLES {
        command.env_remove(var);
    }
    command
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("TRUSTED_PROXIES", "127.0.0.1/32")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// A running demo; killed when dropped.
pub(crate) struct Demo {
    child: Child,
    pub(crate) addr: SocketAddr,
    stderr: Arc<Mutex<Vec<String>>>,
    client: Client<HttpConnector, Full<Bytes>>,
}

pub(crate) const ADMIN_EMAIL: &str = "admin@example.com";
pub(crate) const ADMIN_PASSWORD: &str = "admin password 1234";

impl Demo {
    /// Starts the demo with an admin account and these extra variables.
    pub(crate) async fn start(env: &[(&str, &str)]) -> Self {
        let mut command = base_command();
        command
            .env("DEMO_ADMIN_EMAIL", ADMIN_EMAIL)
            .env("DEMO_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .envs(env.iter().copied());
        let Listening {
            child,
            addr,
            stderr,
        } = spawn_listening(&mut command, "demo_api", STARTUP_TIMEOUT).await;
        let client = Client::builder(TokioExecutor::new()).build_http();
        Self {
            child,
            addr,
            stderr,
            client,
        }
    }

    pub(crate) fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }

    pub(crate) fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A call to `path`.
    pub(crate) fn call(&self, method: Method, path: &str) -> Call<'_> {
        Call {
            demo: self,
            request: Request::builder()
                .method(method)
                .uri(format!("http://{}{path}", self.addr)),
            body: Bytes::new(),
        }
    }

    pub(crate) fn get(&self, path: &str) -> Call<'_> {
        self.call(Method::GET, path)
    }

    pub(crate) fn post(&self, path: &str) -> Call<'_> {
        self.call(Method::POST, path)
    }

    pub(crate) fn put(&self, path: &str) -> Call<'_> {
        self.call(Method::PUT, path)
    }

    pub(crate) fn delete(&self, path: &str) -> Call<'_> {
        self.call(Method::DELETE, path)
    }

    /// Registers and returns the user id.
    pub(crate) async fn register(&self, ip: &str, email: &str, password: &str) -> String {
        let r = self
            .post("/auth/register")
            .client(ip)
            .json(&serde_json::json!({ "email": email, "password": password }))
            .send()
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
        r.json()["id"].as_str().unwrap().to_owned()
    }

    /// Logs in: (access token, refresh token).
    pub(crate) async fn login(&self, ip: &str, email: &str, password: &str) -> (String, String) {
        let r = self
            .post("/auth/login")
            .client(ip)
            .json(&serde_json::json!({ "email": email, "password": password }))
            .send()
            .await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        let refresh = r.refresh_cookie().expect("refresh cookie");
        (
            r.json()["access_token"].as_str().unwrap().to_owned(),
            refresh,
        )
    }
}

/// A request being built.
pub(crate) struct Call<'a> {
    demo: &'a Demo,
    request: http::request::Builder,
    body: Bytes,
}

impl Call<'_> {
    pub(crate) fn header(mut self, name: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        self.request = self.request.header(
            HeaderName::from_bytes(name.as_ref().as_bytes()).unwrap(),
            HeaderValue::from_str(value.as_ref()).unwrap(),
        );
        self
    }

    /// As if the demo's trusted proxy (127.0.0.1) forwarded a request from `ip`.
    pub(crate) fn client(self, ip: &str) -> Self {
        self.header("x-forwarded-for", ip)
    }

    pub(crate) fn bearer(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }

    pub(crate) fn cookie(self, refresh_token: &str) -> Self {
        self.header("cookie", format!("refresh_token={refresh_token}"))
    }

    pub(crate) fn json(self, value: &Value) -> Self {
        self.header("content-type", "application/json")
            .body(serde_json::to_vec(value).unwrap())
    }

    pub(crate) fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }

    pub(crate) async fn send(self) -> Resp {
        let request = self.request.body(Full::new(self.body)).unwrap();
        let response =
            tokio::time::timeout(Duration::from_secs(30), self.demo.client.request(request))
                .await
                .expect("answer within 30 s")
                .expect("request");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Resp {
            status,
            headers,
            body,
        }
    }
}

/// A response, read whole.
pub(crate) struct Resp {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl std::fmt::Debug for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:?} {}",
            self.status,
            self.headers,
            String::from_utf8_lossy(&self.body)
        )
    }
}

impl Resp {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| panic!("not JSON: {self:?}"))
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// The `refresh_token` value a `Set-Cookie` sets (`None` when absent or cleared).
    pub(crate) fn refresh_cookie(&self) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix("refresh_token="))
            .map(|rest| rest.split(';').next().unwrap_or_default().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// Asserts a problem+json body with exactly the contract's members, and returns it.
    pub(crate) fn assert_problem(&self, status: StatusCode) -> Value {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{self:?}"
        );
        let body = self.json();
        let object = body.as_object().expect("problem object");
        let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut expected = vec!["detail", "request_id", "status", "title", "type"];
        if status == StatusCode::UNPROCESSABLE_ENTITY {
            expected.push("errors");
            expected.sort_unstable();
        }
        assert_eq!(keys, expected, "{self:?}");
        assert_eq!(body["status"], status.as_u16());
        assert_eq!(
            body["request_id"].as_str(),
            self.header("x-request-id"),
            "the problem's request_id is the response's X-Request-ID"
        );
        body
    }

    /// The body with `request_id` removed (to compare two refusals byte for byte).
    pub(crate) fn body_without_request_id(&self) -> String {
        let text = String::from_utf8(self.body.to_vec()).unwrap();
        let id = self.header("x-request-id").unwrap_or_default();
        text.replace(id, "")
    }
}

/// `REDIS_URL`, or `None` after printing a skip line; panics when set but unreachable.
#[cfg(feature = "redis")]
pub(crate) async fn redis_url(test: &str) -> Option<String> {
    let Ok(url) = std::env::var("REDIS_URL") else {
        println!("skipping {test}: REDIS_URL is not set");
        return None;
    };
    let client = redis::Client::open(url.as_str()).expect("REDIS_URL is a valid URL");
    let mut conn = tokio::time::timeout(
        Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    )
    .await
    .expect("REDIS_URL is set but Redis did not answer within 5 s")
    .expect("REDIS_URL is set but Redis is unreachable");
    let pong: String = redis::cmd("PING").query_async(&mut conn).await.unwrap();
    assert_eq!(pong, "PONG");
    Some(url)
}

/// Runs the demo with `env` and returns its exit code and stderr (for configuration errors).
pub(crate) async fn start_failure(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = base_command();
    command.envs(env.iter().copied());
    let output = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .expect("the demo exits within 30 s")
        .expect("run demo_api");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64url without padding.
pub(crate) fn b64url_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(B64URL[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// Decodes base64url without padding.
pub(crate) fn b64url_decode(text: &str) -> Vec<u8> {
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.bytes() {
        let v = B64URL.iter().position(|&b| b == c).expect("base64url") as u32;
        bits = (bits << 6) | v;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    out
}

/// The JSON of a JWT's segment (0: header, 1: claims).
pub(crate) fn jwt_segment(token: &str, index: usize) -> Value {
    serde_json::from_slice(&b64url_decode(token.split('.').nth(index).unwrap())).unwrap()
}

/// Writes a fresh Ed25519 private key (PKCS#8 PEM) into a new temporary file, for demos that
/// must sign with one shared key (`JWT_ALGORITHM=EdDSA`).
#[cfg(feature = "jwt")]
pub(crate) fn ed25519_key_file() -> PathBuf {
    const STD: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let der = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8v1(
        &aws_lc_rs::rand::SystemRandom::new(),
    )
    .unwrap();
    let mut b64 = String::new();
    for chunk in der.as_ref().chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(STD[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap());
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    let path = std::env::temp_dir().join(format!("ts-demo-{}.pem", uuid::Uuid::new_v4()));
    std::fs::write(&path, pem).unwrap();
    path
}

/// A unique `STORE_PREFIX` for one test.
pub(crate) fn unique_prefix() -> String {
    format!("ts-test-{}:", uuid::Uuid::new_v4().simple())
}
