//! Starts each example binary (`hyper_server`, `tonic_grpc`, `demo_api`) on a free port, makes a
//! real request with a hyper or tonic client, checks the headers, then stops it with SIGTERM.
//!
//! `cargo test` builds the examples before it runs the tests; they are looked up next to this
//! test binary (`target/<profile>/examples/`). When running only this test target, build them
//! first with `cargo build --examples`.

use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::process::{Child, Command};

use crate::common::{Listening, example_path, spawn_listening};

const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A running example: killed when dropped.
struct Running {
    child: Child,
    addr: SocketAddr,
    stderr: Arc<Mutex<Vec<String>>>,
}

async fn start(name: &str, env: &[(&str, &str)]) -> Running {
    let mut command = Command::new(example_path(name));
    for var in crate::common::DEMO_VARIABLES {
        command.env_remove(var);
    }
    command
        .env("BIND_ADDR", "127.0.0.1:0")
        .env_remove("TRUSTED_PROXIES")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let Listening {
        child,
        addr,
        stderr,
    } = spawn_listening(&mut command, name, STARTUP_TIMEOUT).await;
    Running {
        child,
        addr,
        stderr,
    }
}

impl Running {
    /// Sends SIGTERM and waits for the exit.
    async fn terminate(mut self) -> ExitStatus {
        let pid = self.child.id().expect("pid");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        tokio::time::timeout(Duration::from_secs(15), self.child.wait())
            .await
            .expect("exit after SIGTERM")
            .expect("wait")
    }

    fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap().clone()
    }
}

fn assert_uuid(value: &http::HeaderValue) -> String {
    let text = value.to_str().unwrap().to_owned();
    let uuid = uuid::Uuid::parse_str(&text).expect("x-request-id is a UUID");
    assert_eq!(uuid.get_version_num(), 4);
    text
}

async fn get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, String)],
) -> (StatusCode, http::HeaderMap, Bytes) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut request = Request::builder().uri(format!("http://{addr}{path}"));
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = client
        .request(request.body(Empty::new()).unwrap())
        .await
        .expect("request");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body)
}

#[tokio::test]
async fn hyper_server_example() {
    let running = start("hyper_server", &[]).await;
    let (status, headers, body) = get(
        running.addr,
        "/anything",
        &[("x-request-id", "client-chosen".to_owned())],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let id = assert_uuid(&headers["x-request-id"]);
    assert_ne!(id, "client-chosen");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(!headers.contains_key("strict-transport-security"));
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["request_id"], id);
    assert!(
        running.stderr().iter().all(|line| !line.contains("error")),
        "{:?}",
        running.stderr()
    );
    assert!(running.terminate().await.success());
}

#[tokio::test]
async fn tonic_grpc_example() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;

    let running = start("tonic_grpc", &[("RATE_LIMIT_PER_MINUTE", "2")]).await;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", running.addr))
        .unwrap()
        .connect()
        .await
        .expect("connect");
    let mut client = HealthClient::new(channel);
    let check = || HealthCheckRequest {
        service: String::new(),
    };
    for remaining in [1, 0] {
        let response = client.check(check()).await.expect("health check");
        let metadata = response.metadata().clone().into_headers();
        assert_eq!(response.into_inner().status(), ServingStatus::Serving);
        assert_uuid(&metadata["x-request-id"]);
        assert_eq!(metadata["x-content-type-options"], "nosniff");
        // Keyed by the TCP peer tonic recorded (no peer would be PERMISSION_DENIED).
        let ratelimit = metadata["ratelimit"].to_str().unwrap();
        assert!(
            ratelimit.starts_with(&format!("\"grpc\";r={remaining};")),
            "{ratelimit}"
        );
    }
    let refused = client
        .check(check())
        .await
        .expect_err("third check in a minute");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert!(running.terminate().await.success());
}

#[cfg(all(feature = "cors", feature = "jwt", feature = "rate-limit"))]
mod demo_api {
    use super::*;

    #[tokio::test]
    async fn health_headers_404_431_and_log() {
        let running = start("demo_api", &[]).await;
        let secret = "Bearer eyJhbGciOiJub25lIn0.c2VjcmV0LXRva2Vu.";
        let (status, headers, body) = get(
            running.addr,
            "/health?token=hidden",
            &[("authorization", secret.to_owned())],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json, serde_json::json!({ "status": "ok" }));
        let health_id = assert_uuid(&headers["x-request-id"]);
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["cache-control"], "no-store");
        assert!(!headers.contains_key("strict-transport-security"));

        // Unknown route: 404 problem with the request id.
        let (status, headers, body) = get(running.addr, "/nope", &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(headers["content-type"], "application/problem+json");
        let id = assert_uuid(&headers["x-request-id"]);
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["status"], 404);
        assert_eq!(json["request_id"], id);
        assert_eq!(headers["x-content-type-options"], "nosniff");

        // Request headers over 16 KiB in total: 431 problem.
        let big = "a".repeat(9 * 1024);
        let (status, headers, body) = get(
            running.addr,
            "/health",
            &[("x-big-1", big.clone()), ("x-big-2", big)],
        )
        .await;
        assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert_eq!(headers["content-type"], "application/problem+json");
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["status"], 431);
        assert_uuid(&headers["x-request-id"]);
        // Just under the limit passes.
        let (status, _, _) =
            get(running.addr, "/health", &[("x-big", "a".repeat(15 * 1024))]).await;
        assert_eq!(status, StatusCode::OK);

        // HSTS when a trusted proxy says HTTPS is covered by tests/it/security_headers.rs; here
        // an untrusted client's X-Forwarded-Proto changes nothing.
        let (_, headers, _) = get(
            running.addr,
            "/health",
            &[("x-forwarded-proto", "https".to_owned())],
        )
        .await;
        assert!(!headers.contains_key("strict-transport-security"));

        let status = running.terminate_checked(&health_id, secret).await;
        assert!(status.success(), "graceful exit: {status:?}");
    }

    impl Running {
        /// Checks the access log (one line per request, no secrets), then terminates.
        async fn terminate_checked(self, request_id: &str, secret: &str) -> ExitStatus {
            // Give the log reader a moment to catch up with the last lines.
            let mut lines = Vec::new();
            for _ in 0..50 {
                lines = self.stderr();
                if lines
                    .iter()
                    .filter(|l| l.contains("demo_api::access"))
                    .count()
                    >= 5
                {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let access: Vec<_> = lines
                .iter()
                .filter(|l| l.contains("demo_api::access"))
                .collect();
            assert_eq!(access.len(), 5, "{lines:#?}");
            let health = access
                .iter()
                .find(|l| l.contains(request_id))
                .expect("a log line with the request id");
            assert!(health.contains("GET"), "{health}");
            assert!(health.contains("/health"), "{health}");
            assert!(health.contains("200"), "{health}");
            assert!(health.contains("latency_ms"), "{health}");
            for line in &lines {
                assert!(!line.contains("c2VjcmV0"), "token leaked: {line}");
                assert!(!line.contains(secret), "token leaked: {line}");
                assert!(!line.contains("hidden"), "query leaked: {line}");
            }
            self.terminate().await
        }
    }

    #[tokio::test]
    async fn bad_bind_addr_exits_with_2() {
        let output = Command::new(example_path("demo_api"))
            .env("BIND_ADDR", "not-an-address")
            .stdin(Stdio::null())
            .output()
            .await
            .expect("run demo_api");
        assert_eq!(output.status.code(), Some(2));
        assert!(output.stdout.is_empty());
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("BIND_ADDR"), "{stderr}");
    }

    #[tokio::test]
    async fn bad_configuration_names_the_variable() {
        for (var, value) in [
            ("TRUSTED_PROXIES", "0.0.0.0/0"),
            ("ACCESS_TOKEN_TTL_SECS", "0"),
            (
                "CORS_ALLOWED_ORIGINS",
                "https://a.example,,https://b.example",
            ),
            ("CORS_ALLOWED_ORIGINS", "*"),
            ("JWT_ISSUER", ""),
            ("JWT_ALGORITHM", "none"),
        ] {
            let output = Command::new(example_path("demo_api"))
                .env("BIND_ADDR", "127.0.0.1:0")
                .env(var, value)
                .stdin(Stdio::null())
                .output()
                .await
                .expect("run demo_api");
            assert_eq!(output.status.code(), Some(2), "{var}={value}");
            let stderr = String::from_utf8(output.stderr).unwrap();
            assert_eq!(stderr.lines().count(), 1, "{stderr}");
            assert!(stderr.contains(var), "{stderr}");
        }
    }
}
