//! SecurityHeadersLayer driven with `oneshot`: presets, HSTS over HTTPS only, trusted proxies,
//! preload validation, keep vs override, stripping, HTTPS enforcement and hostile `Host`s.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use tower::{ServiceBuilder, ServiceExt};
use tower_shield::ConfigError;
use tower_shield::client_ip::TrustedProxies;
use tower_shield::security_headers::{
    FrameOptions, Hsts, SecurityHeadersLayer, SecurityHeadersLayerBuilder,
};

const HSTS: &str = "strict-transport-security";

/// Runs one request through the layer over a handler that sets `handler_headers`.
async fn run(
    layer: SecurityHeadersLayer,
    request: Request<()>,
    handler_headers: HeaderMap,
) -> (StatusCode, HeaderMap, Bytes) {
    let service = ServiceBuilder::new()
        .layer(layer)
        .service_fn(move |_: Request<()>| {
            let headers = handler_headers.clone();
            async move {
                let mut response = Response::new(Full::new(Bytes::from_static(b"{}")));
                *response.headers_mut() = headers;
                Ok::<_, Infallible>(response)
            }
        });
    let response = service.oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, body)
}

fn get(uri: &str) -> Request<()> {
    Request::builder().uri(uri).body(()).unwrap()
}

fn from_peer(mut request: Request<()>, peer: &str) -> Request<()> {
    let addr: SocketAddr = peer.parse().unwrap();
    request.extensions_mut().insert(addr);
    request
}

fn with_header(mut request: Request<()>, name: &'static str, value: &str) -> Request<()> {
    request
        .headers_mut()
        .append(name, HeaderValue::from_str(value).unwrap());
    request
}

#[tokio::test]
async fn api_preset_sets_every_header() {
    let (status, headers, _) = run(
        SecurityHeadersLayer::api(),
        get("https://api.example/"),
        HeaderMap::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let expected = [
        (HSTS, "max-age=31536000; includeSubDomains"),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        (
            "content-security-policy",
            "default-src 'none'; frame-ancestors 'none'",
        ),
        ("referrer-policy", "no-referrer"),
        ("cross-origin-opener-policy", "same-origin"),
        ("cross-origin-resource-policy", "same-origin"),
        ("cache-control", "no-store"),
        ("x-xss-protection", "0"),
        ("x-permitted-cross-domain-policies", "none"),
    ];
    for (name, value) in expected {
        assert_eq!(headers[name], value, "{name}");
        assert_eq!(headers.get_all(name).iter().count(), 1, "{name}");
    }
    assert!(
        headers["permissions-policy"]
            .to_str()
            .unwrap()
            .contains("camera=()")
    );
}

#[tokio::test]
async fn web_preset_differs_where_documented() {
    let (_, headers, _) = run(
        SecurityHeadersLayer::web(),
        get("https://app.example/"),
        HeaderMap::new(),
    )
    .await;
    assert!(!headers.contains_key("cache-control"));
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'self'"));
    assert!(csp.contains("frame-ancestors 'none'"));
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers[HSTS], "max-age=31536000; includeSubDomains");
    // The default is the api preset.
    let (_, headers, _) = run(
        SecurityHeadersLayer::default(),
        get("https://a.example/"),
        HeaderMap::new(),
    )
    .await;
    assert_eq!(headers["cache-control"], "no-store");
}

#[tokio::test]
async fn hsts_only_over_https() {
    // Plain HTTP: no HSTS, the other headers still.
    let (_, headers, _) = run(
        SecurityHeadersLayer::api(),
        get("http://api.example/"),
        HeaderMap::new(),
    )
    .await;
    assert!(!headers.contains_key(HSTS));
    assert_eq!(headers["x-content-type-options"], "nosniff");
    // Origin-form URI (what HTTP/1.1 servers see): not HTTPS.
    let (_, headers, _) = run(SecurityHeadersLayer::api(), get("/"), HeaderMap::new()).await;
    assert!(!headers.contains_key(HSTS));
    // The handler's own HSTS is removed over known plain HTTP too (RFC 6797 §7.2), with or
    // without HSTS configured; kept over HTTPS, and when nothing says (origin-form request
    // line, no trusted proxy: TLS may be terminated in this process).
    let mut handler = HeaderMap::new();
    handler.insert(HSTS, HeaderValue::from_static("max-age=60"));
    for layer in [
        SecurityHeadersLayer::api(),
        SecurityHeadersLayerBuilder::api()
            .no_hsts()
            .build()
            .unwrap(),
    ] {
        let (_, headers, _) = run(layer.clone(), get("http://api.example/"), handler.clone()).await;
        assert!(!headers.contains_key(HSTS));
        let (_, headers, _) = run(layer.clone(), get("/"), handler.clone()).await;
        assert_eq!(headers[HSTS], "max-age=60");
        let (_, headers, _) = run(layer, get("https://api.example/"), handler.clone()).await;
        assert_eq!(headers[HSTS], "max-age=60");
    }
    // A trusted proxy saying `http` makes it known plain HTTP.
    let request = from_peer(
        with_header(get("/"), "x-forwarded-proto", "http"),
        "10.1.2.3:5000",
    );
    let (_, headers, _) = run(behind_proxy(), request, handler.clone()).await;
    assert!(!headers.contains_key(HSTS));
}

#[tokio::test]
async fn assume_https_sends_hsts_on_origin_form_requests() {
    // A server terminating TLS itself sees HTTP/1.1 requests without a scheme.
    let layer = SecurityHeadersLayerBuilder::api()
        .assume_https(true)
        .build()
        .unwrap();
    let (_, headers, _) = run(layer.clone(), get("/"), HeaderMap::new()).await;
    assert_eq!(headers[HSTS], "max-age=31536000; includeSubDomains");
    // And HTTPS enforcement never redirects it.
    let enforcing = SecurityHeadersLayerBuilder::api()
        .assume_https(true)
        .enforce_https(true)
        .build()
        .unwrap();
    let (status, _, _) = run(enforcing, get("/"), HeaderMap::new()).await;
    assert_eq!(status, StatusCode::OK);
    // Without it: no HSTS of ours.
    let (_, headers, _) = run(SecurityHeadersLayer::api(), get("/"), HeaderMap::new()).await;
    assert!(!headers.contains_key(HSTS));
}

fn behind_proxy() -> SecurityHeadersLayer {
    SecurityHeadersLayerBuilder::api()
        .trusted_proxies(TrustedProxies::new(["10.0.0.0/8"]).unwrap())
        .build()
        .unwrap()
}

#[tokio::test]
async fn forwarded_proto_from_a_trusted_proxy_counts() {
    let request = from_peer(
        with_header(get("/"), "x-forwarded-proto", "https"),
        "10.1.2.3:5000",
    );
    let (_, headers, _) = run(behind_proxy(), request, HeaderMap::new()).await;
    assert_eq!(headers[HSTS], "max-age=31536000; includeSubDomains");

    // IPv4-mapped IPv6 peer of the same proxy.
    let request = from_peer(
        with_header(get("/"), "x-forwarded-proto", "HTTPS"),
        "[::ffff:10.1.2.3]:5000",
    );
    let (_, headers, _) = run(behind_proxy(), request, HeaderMap::new()).await;
    assert!(headers.contains_key(HSTS));
}

#[tokio::test]
async fn forwarded_proto_is_ignored_from_untrusted_peers() {
    // Untrusted peer.
    let request = from_peer(
        with_header(get("/"), "x-forwarded-proto", "https"),
        "203.0.113.9:5000",
    );
    let (_, headers, _) = run(behind_proxy(), request, HeaderMap::new()).await;
    assert!(!headers.contains_key(HSTS));

    // No peer address known.
    let request = with_header(get("/"), "x-forwarded-proto", "https");
    let (_, headers, _) = run(behind_proxy(), request, HeaderMap::new()).await;
    assert!(!headers.contains_key(HSTS));

    // No proxies configured at all, even from a private address.
    let request = from_peer(
        with_header(get("/"), "x-forwarded-proto", "https"),
        "10.1.2.3:5000",
    );
    let (_, headers, _) = run(SecurityHeadersLayer::api(), request, HeaderMap::new()).await;
    assert!(!headers.contains_key(HSTS));
}

#[tokio::test]
async fn mixed_or_hostile_forwarded_proto_is_not_https() {
    for lines in [
        vec!["http"],
        vec!["https, http"],
        vec!["https", "http"],
        vec!["httpsx"],
        vec![""],
        vec!["\u{1}https"],
    ] {
        let mut request = from_peer(get("/"), "10.1.2.3:5000");
        for line in &lines {
            if let Ok(value) = HeaderValue::from_str(line) {
                request.headers_mut().append("x-forwarded-proto", value);
            }
        }
        let (_, headers, _) = run(behind_proxy(), request, HeaderMap::new()).await;
        assert!(!headers.contains_key(HSTS), "{lines:?}");
    }
    let long = format!("https{}", ", https".repeat(20));
    let request = from_peer(
        with_header(get("/"), "x-forwarded-proto", &long),
        "10.1.2.3:5000",
    );
    let (_, headers, _) = run(behind_proxy(), request, HeaderMap::new()).await;
    assert!(!headers.contains_key(HSTS), "over 64 bytes");
}

#[tokio::test]
async fn hsts_can_be_changed_or_dropped() {
    let layer = SecurityHeadersLayerBuilder::api()
        .hsts(Hsts::max_age(Duration::from_secs(600)))
        .build()
        .unwrap();
    let (_, headers, _) = run(layer, get("https://a.example/"), HeaderMap::new()).await;
    assert_eq!(headers[HSTS], "max-age=600");

    let layer = SecurityHeadersLayerBuilder::api()
        .no_hsts()
        .build()
        .unwrap();
    let (_, headers, _) = run(layer, get("https://a.example/"), HeaderMap::new()).await;
    assert!(!headers.contains_key(HSTS));

    let layer = SecurityHeadersLayerBuilder::api()
        .remove("Strict-Transport-Security")
        .build()
        .unwrap();
    let (_, headers, _) = run(layer, get("https://a.example/"), HeaderMap::new()).await;
    assert!(!headers.contains_key(HSTS));
}

#[test]
fn preload_requires_a_year_and_subdomains() {
    let ok = SecurityHeadersLayerBuilder::api()
        .hsts(Hsts::default().preload())
        .build();
    assert!(ok.is_ok());
    let ok = SecurityHeadersLayerBuilder::api()
        .hsts(
            Hsts::max_age(Duration::from_secs(2 * 31_536_000))
                .include_subdomains()
                .preload(),
        )
        .build();
    assert!(ok.is_ok());

    let short = SecurityHeadersLayerBuilder::api()
        .hsts(
            Hsts::max_age(Duration::from_secs(31_535_999))
                .include_subdomains()
                .preload(),
        )
        .build();
    assert!(matches!(
        short,
        Err(ConfigError::Dangerous {
            setting: "hsts",
            ..
        })
    ));
    let no_subdomains = SecurityHeadersLayerBuilder::api()
        .hsts(Hsts::max_age(Duration::from_secs(31_536_000)).preload())
        .build();
    assert!(matches!(no_subdomains, Err(ConfigError::Dangerous { .. })));
}

#[tokio::test]
async fn preloaded_hsts_value() {
    let layer = SecurityHeadersLayerBuilder::api()
        .hsts(Hsts::default().preload())
        .build()
        .unwrap();
    let (_, headers, _) = run(layer, get("https://a.example/"), HeaderMap::new()).await;
    assert_eq!(
        headers[HSTS],
        "max-age=31536000; includeSubDomains; preload"
    );
}

#[test]
fn invalid_values_are_refused_at_build() {
    let error = SecurityHeadersLayerBuilder::api()
        .content_security_policy("default-src 'none'\n")
        .build()
        .unwrap_err();
    assert!(matches!(
        error,
        ConfigError::Invalid {
            setting: "content_security_policy",
            ..
        }
    ));
    assert!(
        SecurityHeadersLayerBuilder::api()
            .referrer_policy("bad\u{0}")
            .build()
            .is_err()
    );
    assert!(
        SecurityHeadersLayerBuilder::api()
            .remove("bad name")
            .build()
            .is_err()
    );
    assert!(
        SecurityHeadersLayerBuilder::api()
            .set(
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static("max-age=1")
            )
            .build()
            .is_err()
    );
}

#[tokio::test]
async fn handler_headers_are_kept_unless_override() {
    let mut handler = HeaderMap::new();
    handler.insert("cache-control", HeaderValue::from_static("max-age=60"));
    handler.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'self'"),
    );
    handler.insert(HSTS, HeaderValue::from_static("max-age=5"));

    let (_, headers, _) = run(
        SecurityHeadersLayer::api(),
        get("https://a.example/"),
        handler.clone(),
    )
    .await;
    assert_eq!(headers["cache-control"], "max-age=60");
    assert_eq!(headers["content-security-policy"], "default-src 'self'");
    assert_eq!(headers[HSTS], "max-age=5");
    assert_eq!(headers["x-frame-options"], "DENY");

    let layer = SecurityHeadersLayerBuilder::api()
        .override_existing(true)
        .build()
        .unwrap();
    let (_, headers, _) = run(layer, get("https://a.example/"), handler).await;
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers.get_all("cache-control").iter().count(), 1);
    assert_eq!(
        headers["content-security-policy"],
        "default-src 'none'; frame-ancestors 'none'"
    );
    assert_eq!(headers[HSTS], "max-age=31536000; includeSubDomains");
}

#[tokio::test]
async fn server_and_powered_by_are_removed() {
    let mut handler = HeaderMap::new();
    handler.insert("server", HeaderValue::from_static("hyper/1"));
    handler.insert("x-powered-by", HeaderValue::from_static("PHP/5"));
    handler.append("x-powered-by", HeaderValue::from_static("again"));
    let (_, headers, _) = run(SecurityHeadersLayer::api(), get("/"), handler.clone()).await;
    assert!(!headers.contains_key("server"));
    assert!(!headers.contains_key("x-powered-by"));

    // `keep` lets one through; `strip` adds others.
    let layer = SecurityHeadersLayerBuilder::api()
        .keep(header::SERVER)
        .strip(HeaderName::from_static("x-aspnet-version"))
        .build()
        .unwrap();
    handler.insert("x-aspnet-version", HeaderValue::from_static("4"));
    let (_, headers, _) = run(layer, get("/"), handler).await;
    assert_eq!(headers["server"], "hyper/1");
    assert!(!headers.contains_key("x-powered-by"));
    assert!(!headers.contains_key("x-aspnet-version"));
}

#[tokio::test]
async fn each_header_can_be_changed_or_dropped() {
    let layer = SecurityHeadersLayerBuilder::api()
        .frame_options(FrameOptions::SameOrigin)
        .referrer_policy("strict-origin-when-cross-origin")
        .permissions_policy("camera=()")
        .cross_origin_opener_policy("same-origin-allow-popups")
        .cross_origin_resource_policy("cross-origin")
        .cache_control("private, no-cache")
        .content_security_policy("default-src 'self'")
        .set(
            HeaderName::from_static("x-custom"),
            HeaderValue::from_static("1"),
        )
        .remove("x-xss-protection")
        .remove("X-Permitted-Cross-Domain-Policies")
        .build()
        .unwrap();
    let (_, headers, _) = run(layer, get("https://a.example/"), HeaderMap::new()).await;
    assert_eq!(headers["x-frame-options"], "SAMEORIGIN");
    assert_eq!(
        headers["referrer-policy"],
        "strict-origin-when-cross-origin"
    );
    assert_eq!(headers["permissions-policy"], "camera=()");
    assert_eq!(
        headers["cross-origin-opener-policy"],
        "same-origin-allow-popups"
    );
    assert_eq!(headers["cross-origin-resource-policy"], "cross-origin");
    assert_eq!(headers["cache-control"], "private, no-cache");
    assert_eq!(headers["content-security-policy"], "default-src 'self'");
    assert_eq!(headers["x-custom"], "1");
    assert!(!headers.contains_key("x-xss-protection"));
    assert!(!headers.contains_key("x-permitted-cross-domain-policies"));
    assert_eq!(headers["x-content-type-options"], "nosniff");
}

fn enforcing() -> SecurityHeadersLayer {
    SecurityHeadersLayerBuilder::api()
        .enforce_https(true)
        .trusted_proxies(TrustedProxies::new(["10.0.0.0/8"]).unwrap())
        .build()
        .unwrap()
}

fn plain(method: Method, host: Option<&str>, path: &str) -> Request<()> {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .body(())
        .unwrap();
    if let Some(host) = host {
        request
            .headers_mut()
            .insert(header::HOST, HeaderValue::from_str(host).unwrap());
    }
    request
}

#[tokio::test]
async fn plain_get_and_head_are_redirected() {
    for method in [Method::GET, Method::HEAD] {
        let request = plain(method, Some("api.example:8080"), "/items?page=2");
        let (status, headers, body) = run(enforcing(), request, HeaderMap::new()).await;
        assert_eq!(status, StatusCode::MOVED_PERMANENTLY);
        assert_eq!(headers["location"], "https://api.example/items?page=2");
        assert!(body.is_empty());
        // Security headers are on the redirect too, HSTS not (it came over HTTP).
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert!(!headers.contains_key(HSTS));
    }
    let layer = SecurityHeadersLayerBuilder::api()
        .enforce_https(true)
        .https_port(8443)
        .build()
        .unwrap();
    let (status, headers, _) = run(
        layer,
        plain(Method::GET, Some("[::1]:80"), "/"),
        HeaderMap::new(),
    )
    .await;
    assert_eq!(status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(headers["location"], "https://[::1]:8443/");
}

#[tokio::test]
async fn a_configured_https_host_replaces_the_clients_host() {
    let layer = SecurityHeadersLayerBuilder::api()
        .enforce_https(true)
        .https_host("api.example")
        .build()
        .unwrap();
    // A forged Host, and none at all: the redirect goes to the configured host either way.
    for host in [Some("evil.example"), None] {
        let (status, headers, _) = run(
            layer.clone(),
            plain(Method::GET, host, "/items?page=2"),
            HeaderMap::new(),
        )
        .await;
        assert_eq!(status, StatusCode::MOVED_PERMANENTLY);
        assert_eq!(headers["location"], "https://api.example/items?page=2");
    }
    for bad in [
        "api.example:443",
        "",
        "api.example/x",
        "a b",
        "https://api.example",
    ] {
        assert!(
            SecurityHeadersLayerBuilder::api()
                .https_host(bad)
                .build()
                .is_err(),
            "{bad:?}"
        );
    }
    assert!(
        SecurityHeadersLayerBuilder::api()
            .https_host("[2001:db8::1]")
            .build()
            .is_ok()
    );
}

#[tokio::test]
async fn plain_post_is_refused_with_a_problem() {
    for method in [Method::POST, Method::PUT, Method::DELETE, Method::OPTIONS] {
        let request = plain(method, Some("api.example"), "/items");
        let (status, headers, body) = run(enforcing(), request, HeaderMap::new()).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(headers["content-type"], "application/problem+json");
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(json["type"].as_str().unwrap().ends_with("#https-required"));
        assert_eq!(json["status"], 403);
        assert_eq!(headers["x-frame-options"], "DENY");
    }
}

#[tokio::test]
async fn https_requests_pass_enforcement() {
    let (status, headers, body) = run(
        enforcing(),
        plain(
            Method::POST,
            Some("api.example"),
            "https://api.example/items",
        ),
        HeaderMap::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"{}");
    assert!(headers.contains_key(HSTS));

    let request = from_peer(
        with_header(
            plain(Method::POST, Some("api.example"), "/items"),
            "x-forwarded-proto",
            "https",
        ),
        "10.0.0.1:1234",
    );
    let (status, _, _) = run(enforcing(), request, HeaderMap::new()).await;
    assert_eq!(status, StatusCode::OK);

    // The same header from an untrusted peer is refused.
    let request = from_peer(
        with_header(
            plain(Method::POST, Some("api.example"), "/items"),
            "x-forwarded-proto",
            "https",
        ),
        "198.51.100.1:1234",
    );
    let (status, _, _) = run(enforcing(), request, HeaderMap::new()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn hostile_hosts_never_redirect_elsewhere() {
    let hostile: Vec<Vec<u8>> = vec![
        b"evil.example/path".to_vec(),
        b"user:pass@evil.example".to_vec(),
        b"evil.example\tx".to_vec(),
        b"evil.example:80:80".to_vec(),
        b"evil.example:99999999".to_vec(),
        b"\xff\xfe".to_vec(),
        b"".to_vec(),
        b"[::1".to_vec(),
        b"a\"b".to_vec(),
        b"a..example".to_vec(),
        "x".repeat(10 * 1024).into_bytes(),
        b"evil.example%0d%0aSet-Cookie: x=1".to_vec(),
        b"evil.example#@good.example".to_vec(),
    ];
    for host in hostile {
        let mut request = plain(Method::GET, None, "/");
        request
            .headers_mut()
            .insert(header::HOST, HeaderValue::from_bytes(&host).unwrap());
        let (status, headers, body) = run(enforcing(), request, HeaderMap::new()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{host:?}");
        assert!(!headers.contains_key("location"));
        assert_eq!(headers["content-type"], "application/problem+json");
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["status"], 400);
    }
    // Missing Host, and two Host lines.
    let (status, _, _) = run(enforcing(), plain(Method::GET, None, "/"), HeaderMap::new()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let mut request = plain(Method::GET, Some("a.example"), "/");
    request
        .headers_mut()
        .append(header::HOST, HeaderValue::from_static("b.example"));
    let (status, _, _) = run(enforcing(), request, HeaderMap::new()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn grpc_requests_get_a_grpc_refusal() {
    let request = with_header(
        plain(Method::POST, Some("api.example"), "/pkg.Svc/Call"),
        "content-type",
        "application/grpc",
    );
    let (status, headers, _) = run(enforcing(), request, HeaderMap::new()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["grpc-status"], "7");
}

#[tokio::test]
async fn inner_errors_pass_through() {
    let service = ServiceBuilder::new()
        .layer(SecurityHeadersLayer::api())
        .service_fn(|_: Request<()>| async { Err::<Response<Full<Bytes>>, _>("boom") });
    assert_eq!(service.oneshot(get("/")).await.unwrap_err(), "boom");
}

#[test]
fn debug_lists_names_not_values() {
    let text = format!("{:?}", SecurityHeadersLayer::api());
    assert!(text.contains("x-frame-options"));
}

/// A real tonic client over HTTP/2 against the layers in a hyper server: a refusal reaches
/// tonic as a trailers-only gRPC status (HTTP 200, `grpc-status` in the headers frame that
/// ends the stream), with the request id and security headers as metadata; a call that is
/// not refused still works.
#[cfg(feature = "request-id")]
#[tokio::test]
async fn grpc_refusal_reaches_a_tonic_client_as_a_status() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::service::TowerToHyperService;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::health_client::HealthClient;
    use tower_shield::request_id::RequestIdLayer;

    async fn serve(enforce_https: bool) -> SocketAddr {
        let (_reporter, health) = tonic_health::server::health_reporter();
        let service = ServiceBuilder::new()
            .layer(RequestIdLayer::new())
            .layer(
                SecurityHeadersLayerBuilder::api()
                    .enforce_https(enforce_https)
                    .build()
                    .unwrap(),
            )
            .service(health);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                .await;
        });
        addr
    }

    async fn check(addr: SocketAddr) -> Result<tonic::Response<ServingStatus>, tonic::Status> {
        let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map(|response| response.map(|r| r.status()))
    }

    let served = check(serve(false).await).await.expect("not refused");
    assert_eq!(served.get_ref(), &ServingStatus::Serving);

    // h2c is plain HTTP: with HTTPS enforced, the call is refused before the service runs.
    let status = check(serve(true).await).await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status:?}");
    assert_eq!(
        status.message(),
        "This resource must be requested over HTTPS."
    );
    let metadata = status.metadata().clone().into_headers();
    let id = metadata["x-request-id"].to_str().unwrap();
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 4);
    assert_eq!(metadata["x-content-type-options"], "nosniff");
    assert!(!metadata.contains_key(HSTS), "no HSTS over plain HTTP");
}
