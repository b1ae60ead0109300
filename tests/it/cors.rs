//! Behaviour of `CorsLayer`, driven through `tower::ServiceExt::oneshot`.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, CONTENT_TYPE, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use proptest::prelude::*;
use tower::{Service, ServiceExt, service_fn};
use tower_shield::cors::{CorsLayer, CorsLayerBuilder};
use tower_shield::{RequestId, ShieldBody};

const APP: &str = "https://app.example.com";

/// The demo API's configuration.
fn demo_builder() -> CorsLayerBuilder {
    CorsLayer::builder()
        .allow_origin(APP)
        .allow_origin("http://localhost:5173")
        .allow_methods(["GET", "POST", "PUT", "PATCH", "DELETE"])
        .allow_headers(["authorization", "content-type", "x-request-id"])
        .allow_credentials(true)
        .max_age(Duration::from_secs(600))
}

type TestService = tower::util::BoxCloneService<
    Request<Full<Bytes>>,
    Response<ShieldBody<Full<Bytes>>>,
    Infallible,
>;

/// The layer over an inner service that counts its calls and answers `status` with the given
/// extra headers.
fn service_with(
    builder: CorsLayerBuilder,
    status: StatusCode,
    extra: &[(&'static str, &'static str)],
) -> (TestService, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    let extra: Vec<(&'static str, &'static str)> = extra.to_vec();
    let inner = service_fn(move |_req: Request<Full<Bytes>>| {
        counter.fetch_add(1, Ordering::SeqCst);
        let mut response = Response::new(Full::new(Bytes::from_static(b"{\"ok\":true}")));
        *response.status_mut() = status;
        for (name, value) in &extra {
            response
                .headers_mut()
                .append(*name, HeaderValue::from_static(value));
        }
        async move { Ok::<_, Infallible>(response) }
    });
    let layer = builder.build().unwrap();
    (
        tower::util::BoxCloneService::new(tower::Layer::layer(&layer, inner)),
        calls,
    )
}

fn service(builder: CorsLayerBuilder) -> (TestService, Arc<AtomicUsize>) {
    service_with(builder, StatusCode::OK, &[])
}

fn preflight(origin: &str, method: &str, headers: Option<&str>) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .method(Method::OPTIONS)
        .uri("/v1/items")
        .header(ORIGIN, origin)
        .header(ACCESS_CONTROL_REQUEST_METHOD, method);
    if let Some(headers) = headers {
        builder = builder.header(ACCESS_CONTROL_REQUEST_HEADERS, headers);
    }
    builder.body(Full::default()).unwrap()
}

fn get(origin: Option<&str>) -> Request<Full<Bytes>> {
    let mut builder = Request::builder().uri("/v1/items");
    if let Some(origin) = origin {
        builder = builder.header(ORIGIN, origin);
    }
    builder.body(Full::default()).unwrap()
}

async fn call(service: &TestService, request: Request<Full<Bytes>>) -> Response<Bytes> {
    let response = service.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Response::from_parts(parts, body)
}

fn has_no_allow_headers(headers: &HeaderMap) -> bool {
    !headers
        .keys()
        .any(|name| name.as_str().starts_with("access-control-allow-"))
        && !headers.contains_key(ACCESS_CONTROL_EXPOSE_HEADERS)
        && !headers.contains_key(ACCESS_CONTROL_MAX_AGE)
}

fn assert_cors_refusal(response: &Response<Bytes>) {
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
    assert!(
        has_no_allow_headers(response.headers()),
        "{:?}",
        response.headers()
    );
    let json: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(
        json["type"],
        "https://docs.rs/tower-shield/latest/tower_shield/refusal/#cors-rejected"
    );
    assert_eq!(json["status"], 403);
}

fn vary_values(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(VARY)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn allowed_preflight_is_answered_without_the_inner_service() {
    let (service, calls) = service(demo_builder());
    let response = call(
        &service,
        preflight(APP, "POST", Some("content-type,x-request-id")),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let headers = response.headers();
    assert_eq!(headers[ACCESS_CONTROL_ALLOW_ORIGIN], APP);
    assert_eq!(headers[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    assert_eq!(
        headers[ACCESS_CONTROL_ALLOW_METHODS],
        "GET, POST, PUT, PATCH, DELETE"
    );
    assert_eq!(
        headers[ACCESS_CONTROL_ALLOW_HEADERS],
        "authorization, content-type, x-request-id"
    );
    assert_eq!(headers[ACCESS_CONTROL_MAX_AGE], "600");
    assert_eq!(
        vary_values(headers),
        ["Origin, Access-Control-Request-Method, Access-Control-Request-Headers"]
    );
    assert!(!headers.contains_key("access-control-allow-private-network"));
    assert!(response.body().is_empty());
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn preflight_without_credentials_or_headers_omits_them() {
    let (service, _) = service(CorsLayer::builder().allow_origin(APP));
    let response = call(&service, preflight(APP, "GET", None)).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(
        !response
            .headers()
            .contains_key(ACCESS_CONTROL_ALLOW_CREDENTIALS)
    );
    assert!(
        !response
            .headers()
            .contains_key(ACCESS_CONTROL_ALLOW_HEADERS)
    );
    assert_eq!(
        response.headers()[ACCESS_CONTROL_ALLOW_METHODS],
        "GET, HEAD, POST"
    );
}

#[tokio::test]
async fn preflight_from_lookalike_origins_is_refused() {
    let (service, calls) = service(demo_builder());
    for origin in [
        "https://app.example.com.evil.net",
        "https://evilapp.example.com",
        "https://evil-app.example.com",
        "https://example.com",
        "http://app.example.com",
        "https://app.example.com:8443",
        "https://app.example.com:443",
        "https://APP.example.com",
        "HTTPS://app.example.com",
        "https://app.example.com.",
        "https://app.example.com/",
        "https://app.example.com/path",
        "https://user@app.example.com",
        "null",
        "*",
        "",
        "app.example.com",
        "http://localhost:5174",
        "http://127.0.0.1:5173",
    ] {
        let response = call(&service, preflight(origin, "GET", None)).await;
        assert_cors_refusal(&response);
        assert_eq!(
            vary_values(response.headers()),
            ["Origin, Access-Control-Request-Method, Access-Control-Request-Headers"]
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn preflight_methods_are_compared_exactly() {
    let (service, calls) = service(demo_builder());
    for method in ["DELETE", "PATCH", "GET"] {
        let response = call(&service, preflight(APP, method, None)).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "{method}");
    }
    for method in [
        "delete",
        "patch",
        "HEAD",
        "OPTIONS",
        "TRACE",
        "CONNECT",
        "",
        "GET, POST",
    ] {
        let response = call(&service, preflight(APP, method, None)).await;
        assert_cors_refusal(&response);
    }
    // Two Access-Control-Request-Method lines.
    let mut request = preflight(APP, "GET", None);
    request.headers_mut().append(
        ACCESS_CONTROL_REQUEST_METHOD,
        HeaderValue::from_static("GET"),
    );
    assert_cors_refusal(&call(&service, request).await);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn preflight_headers_are_compared_case_insensitively_and_all_checked() {
    let (service, _) = service(demo_builder());
    for headers in [
        "Authorization",
        "authorization, CONTENT-TYPE , X-Request-Id",
        " content-type ,, ",
        "",
    ] {
        let response = call(&service, preflight(APP, "POST", Some(headers))).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "{headers:?}");
    }
    for headers in [
        "x-api-key",
        "authorization, x-api-key",
        "content-type;",
        "authorizationx",
        "authoriz",
        "cookie",
    ] {
        let response = call(&service, preflight(APP, "POST", Some(headers))).await;
        assert_cors_refusal(&response);
    }
    // Every line is checked.
    let mut request = preflight(APP, "POST", Some("authorization"));
    request.headers_mut().append(
        ACCESS_CONTROL_REQUEST_HEADERS,
        HeaderValue::from_static("x-secret"),
    );
    assert_cors_refusal(&call(&service, request).await);
}

#[tokio::test]
async fn preflight_header_lists_are_bounded() {
    let (service, _) = service(demo_builder());
    let ok = vec!["content-type"; 32].join(",");
    let response = call(&service, preflight(APP, "POST", Some(&ok))).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let too_many = vec!["content-type"; 33].join(",");
    assert_cors_refusal(&call(&service, preflight(APP, "POST", Some(&too_many))).await);
    let too_long = format!("content-type{}", " ".repeat(3000));
    assert_cors_refusal(&call(&service, preflight(APP, "POST", Some(&too_long))).await);
    let mut request = preflight(APP, "POST", None);
    for _ in 0..200 {
        request.headers_mut().append(
            ACCESS_CONTROL_REQUEST_HEADERS,
            HeaderValue::from_static("content-type"),
        );
    }
    assert_cors_refusal(&call(&service, request).await);
}

#[tokio::test]
async fn options_without_request_method_reaches_the_service() {
    let (service, calls) = service(demo_builder());
    let request = Request::builder()
        .method(Method::OPTIONS)
        .uri("/v1/items")
        .header(ORIGIN, APP)
        .body(Full::default())
        .unwrap();
    let response = call(&service, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(response.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], APP);
    assert!(
        !response
            .headers()
            .contains_key(ACCESS_CONTROL_ALLOW_METHODS)
    );

    // Without Origin, an OPTIONS with the request-method header is not a preflight either.
    let request = Request::builder()
        .method(Method::OPTIONS)
        .uri("/v1/items")
        .header(ACCESS_CONTROL_REQUEST_METHOD, "GET")
        .body(Full::default())
        .unwrap();
    let response = call(&service, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(has_no_allow_headers(response.headers()));
}

#[tokio::test]
async fn allowed_actual_request_gets_origin_credentials_and_expose_headers() {
    let (service, calls) = service(demo_builder());
    let response = call(&service, get(Some(APP))).await;
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let headers = response.headers();
    assert_eq!(headers[ACCESS_CONTROL_ALLOW_ORIGIN], APP);
    assert_eq!(headers[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    assert_eq!(
        headers[ACCESS_CONTROL_EXPOSE_HEADERS],
        "x-request-id, ratelimit, ratelimit-policy, retry-after"
    );
    assert!(!headers.contains_key(ACCESS_CONTROL_ALLOW_METHODS));
    assert!(!headers.contains_key(ACCESS_CONTROL_MAX_AGE));
    assert_eq!(vary_values(headers), ["Origin"]);
    assert_eq!(&response.body()[..], b"{\"ok\":true}");
}

#[tokio::test]
async fn second_listed_origin_matches_too() {
    let (service, _) = service(demo_builder());
    let response = call(&service, get(Some("http://localhost:5173"))).await;
    assert_eq!(
        response.headers()[ACCESS_CONTROL_ALLOW_ORIGIN],
        "http://localhost:5173"
    );
}

#[tokio::test]
async fn disallowed_or_absent_origin_gets_no_cors_headers_but_vary() {
    let (service, calls) = service(demo_builder());
    for origin in [
        Some("https://evil.example"),
        Some("https://app.example.com.evil.net"),
        Some("null"),
        None,
    ] {
        let response = call(&service, get(origin)).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(has_no_allow_headers(response.headers()), "{origin:?}");
        assert_eq!(vary_values(response.headers()), ["Origin"]);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 4);
}

#[tokio::test]
async fn vary_is_appended_never_clobbered_nor_duplicated() {
    let (service, _) = service_with(
        demo_builder(),
        StatusCode::OK,
        &[("vary", "Accept-Encoding")],
    );
    let response = call(&service, get(Some(APP))).await;
    assert_eq!(
        vary_values(response.headers()),
        ["Accept-Encoding", "Origin"]
    );

    for existing in ["origin", "Accept, Origin", "*"] {
        let (service, _) = service_with(demo_builder(), StatusCode::OK, &[("vary", existing)]);
        let response = call(&service, get(None)).await;
        assert_eq!(vary_values(response.headers()), [existing]);
    }
}

#[tokio::test]
async fn inner_refusals_carry_the_cors_headers() {
    for status in [
        StatusCode::UNAUTHORIZED,
        StatusCode::FORBIDDEN,
        StatusCode::TOO_MANY_REQUESTS,
        StatusCode::SERVICE_UNAVAILABLE,
    ] {
        let (service, _) = service_with(
            demo_builder(),
            status,
            &[("retry-after", "3"), ("vary", "Authorization")],
        );
        let response = call(&service, get(Some(APP))).await;
        assert_eq!(response.status(), status);
        assert_eq!(response.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], APP);
        assert_eq!(response.headers()[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        assert!(
            response
                .headers()
                .contains_key(ACCESS_CONTROL_EXPOSE_HEADERS)
        );
        assert_eq!(response.headers()["retry-after"], "3");
        assert_eq!(vary_values(response.headers()), ["Authorization", "Origin"]);
    }
}

#[tokio::test]
async fn inner_allow_headers_never_open_the_response_to_a_refused_origin() {
    // A handler (or an inner layer) that reflects the origin or answers `*`: the allowlist
    // alone decides what the browser is told.
    let (service, _) = service_with(
        demo_builder(),
        StatusCode::OK,
        &[
            ("access-control-allow-origin", "*"),
            ("access-control-allow-origin", "https://evil.example"),
            ("access-control-allow-credentials", "true"),
            ("access-control-expose-headers", "x-secret"),
        ],
    );
    for origin in [
        "https://evil.example",
        "null",
        "https://app.example.com.evil.example",
    ] {
        let response = call(&service, get(Some(origin))).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            has_no_allow_headers(response.headers()),
            "{origin}: {:?}",
            response.headers()
        );
        assert_eq!(vary_values(response.headers()), ["Origin"]);
    }
    // An allowed origin gets the layer's own answer, not the inner one.
    let response = call(&service, get(Some(APP))).await;
    let origins: Vec<_> = response
        .headers()
        .get_all(ACCESS_CONTROL_ALLOW_ORIGIN)
        .iter()
        .collect();
    assert_eq!(origins, [APP]);
    assert_eq!(response.headers()[ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
    // Without `Origin` this is no CORS request: the inner headers are the handler's business.
    let response = call(&service, get(None)).await;
    assert_eq!(
        response
            .headers()
            .get_all(ACCESS_CONTROL_ALLOW_ORIGIN)
            .iter()
            .count(),
        2
    );
}

#[tokio::test]
async fn strict_mode_refuses_other_origins_before_the_handler() {
    let (service, calls) = service(demo_builder().strict(true));
    for origin in ["https://evil.example", "null", "https://APP.example.com"] {
        let request = Request::builder()
            .method(Method::POST)
            .uri("/v1/items")
            .header(ORIGIN, origin)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from_static(b"a=1")))
            .unwrap();
        let response = call(&service, request).await;
        assert_cors_refusal(&response);
        assert_eq!(vary_values(response.headers()), ["Origin"]);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let response = call(&service, get(Some(APP))).await;
    assert_eq!(response.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], APP);
    let response = call(&service, get(None)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn strict_refusal_is_a_grpc_status_for_grpc_calls() {
    let (service, calls) = service(demo_builder().strict(true));
    let request = Request::builder()
        .method(Method::POST)
        .uri("/pkg.Service/Method")
        .header(ORIGIN, "https://evil.example")
        .header(CONTENT_TYPE, "application/grpc")
        .body(Full::default())
        .unwrap();
    let response = call(&service, request).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["grpc-status"], "7");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn refusal_carries_the_request_id() {
    let (service, _) = service(demo_builder());
    let mut request = preflight("https://evil.example", "GET", None);
    request
        .extensions_mut()
        .insert(RequestId::new(HeaderValue::from_static("req-42")));
    let response = call(&service, request).await;
    let json: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
    assert_eq!(json["request_id"], "req-42");
}

#[tokio::test]
async fn hostile_origins_never_get_cors_headers() {
    let (service, calls) = service(demo_builder());
    let huge = format!("https://{}.example.com", "a".repeat(10 * 1024));
    let mut hostile: Vec<HeaderValue> = vec![
        HeaderValue::from_str(&huge).unwrap(),
        HeaderValue::from_bytes(b"https://app.example.com\xff").unwrap(),
        HeaderValue::from_bytes(b"\xff\xfe\xfd").unwrap(),
        HeaderValue::from_bytes(b"https://app.example.com\t").unwrap(),
        HeaderValue::from_static("null"),
        HeaderValue::from_static("https://APP.EXAMPLE.COM"),
        HeaderValue::from_static("https://app.example.com."),
        HeaderValue::from_static("https://app.example.com:443"),
    ];
    hostile.push(HeaderValue::from_str(&format!("{APP}{}", "/".repeat(20_000))).unwrap());
    for value in hostile {
        let mut request = get(None);
        request.headers_mut().insert(ORIGIN, value.clone());
        let response = call(&service, request).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(has_no_allow_headers(response.headers()));

        let mut request = preflight(APP, "GET", None);
        request.headers_mut().insert(ORIGIN, value);
        assert_cors_refusal(&call(&service, request).await);
    }
    assert!(calls.load(Ordering::SeqCst) > 0);
}

#[tokio::test]
async fn several_origin_lines_are_never_allowed() {
    let (service, calls) = service(demo_builder());
    let mut request = get(Some(APP));
    request
        .headers_mut()
        .append(ORIGIN, HeaderValue::from_static(APP));
    let response = call(&service, request).await;
    assert!(has_no_allow_headers(response.headers()));

    let mut request = preflight(APP, "GET", None);
    request
        .headers_mut()
        .append(ORIGIN, HeaderValue::from_static("https://evil.example"));
    assert_cors_refusal(&call(&service, request).await);

    let (strict, _) = self::service(demo_builder().strict(true));
    let mut request = get(Some(APP));
    for _ in 0..100 {
        request
            .headers_mut()
            .append(ORIGIN, HeaderValue::from_static(APP));
    }
    assert_cors_refusal(&call(&strict, request).await);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn private_network_access_only_when_enabled_and_asked() {
    const ASK: &str = "access-control-request-private-network";
    const ALLOW: &str = "access-control-allow-private-network";
    for (enabled, asked, expected) in [
        (true, Some("true"), true),
        (true, None, false),
        (true, Some("false"), false),
        (false, Some("true"), false),
    ] {
        let (service, _) = service(demo_builder().allow_private_network(enabled));
        let mut request = preflight(APP, "GET", None);
        if let Some(asked) = asked {
            request
                .headers_mut()
                .insert(ASK, HeaderValue::from_static(asked));
        }
        let response = call(&service, request).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        assert_eq!(response.headers().contains_key(ALLOW), expected);
        if expected {
            assert_eq!(response.headers()[ALLOW], "true");
        }
    }
    // Never on a refused preflight.
    let (service, _) = service(demo_builder().allow_private_network(true));
    let mut request = preflight("https://evil.example", "GET", None);
    request
        .headers_mut()
        .insert(ASK, HeaderValue::from_static("true"));
    assert_cors_refusal(&call(&service, request).await);
}

#[tokio::test]
async fn any_origin_mode_answers_a_wildcard_without_credentials() {
    let (service, _) = service(
        CorsLayer::builder()
            .dangerous_allow_any_origin()
            .allow_methods(["GET"]),
    );
    let response = call(&service, get(Some("https://anyone.example"))).await;
    assert_eq!(response.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    assert!(
        !response
            .headers()
            .contains_key(ACCESS_CONTROL_ALLOW_CREDENTIALS)
    );
    let response = call(&service, preflight("https://anyone.example", "GET", None)).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(response.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], "*");
    let response = call(&service, preflight("https://anyone.example", "POST", None)).await;
    assert_cors_refusal(&response);
    let response = call(&service, get(None)).await;
    assert!(has_no_allow_headers(response.headers()));
}

#[tokio::test]
async fn localhost_helper_allows_loopback_http_with_any_port_only() {
    let (service, _) = service(
        CorsLayer::builder()
            .allow_origin(APP)
            .allow_localhost_any_port(),
    );
    for origin in [
        "http://localhost:5173",
        "http://localhost:3000",
        "http://127.0.0.1:8080",
        "http://[::1]:4200",
        "http://localhost",
    ] {
        let response = call(&service, get(Some(origin))).await;
        assert_eq!(
            response.headers()[ACCESS_CONTROL_ALLOW_ORIGIN],
            origin,
            "{origin}"
        );
    }
    for origin in [
        "https://localhost:5173",
        "http://localhost.evil.net",
        "http://localhost:5173.evil.net",
        "http://127.0.0.2:80",
        "http://192.168.1.10:3000",
    ] {
        let response = call(&service, get(Some(origin))).await;
        assert!(has_no_allow_headers(response.headers()), "{origin}");
    }
}

#[tokio::test]
async fn predicate_is_an_escape_hatch_on_parsed_origins() {
    let (service, _) = service(CorsLayer::builder().allow_origin_predicate(|origin| {
        origin.scheme() == "https"
            && (origin.host() == "example.com" || origin.host().ends_with(".example.com"))
            && origin.port().is_none()
    }));
    for origin in ["https://example.com", "https://a.b.example.com"] {
        let response = call(&service, get(Some(origin))).await;
        assert_eq!(response.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], origin);
    }
    for origin in [
        "https://evilexample.com",
        "https://example.com.evil.net",
        "http://a.example.com",
        "https://a.example.com:8443",
        "https://A.example.com",
        "https://a.example.com.",
        "null",
    ] {
        let response = call(&service, get(Some(origin))).await;
        assert!(has_no_allow_headers(response.headers()), "{origin}");
    }
}

#[tokio::test]
async fn expose_headers_can_be_replaced_or_emptied() {
    let (service, _) = service(
        CorsLayer::builder()
            .allow_origin(APP)
            .expose_headers(["X-Total-Count"]),
    );
    let response = call(&service, get(Some(APP))).await;
    assert_eq!(
        response.headers()[ACCESS_CONTROL_EXPOSE_HEADERS],
        "x-total-count"
    );
    let (service, _) = self::service(
        CorsLayer::builder()
            .allow_origin(APP)
            .expose_headers(Vec::<String>::new()),
    );
    let response = call(&service, get(Some(APP))).await;
    assert!(
        !response
            .headers()
            .contains_key(ACCESS_CONTROL_EXPOSE_HEADERS)
    );
}

#[tokio::test]
async fn poll_ready_is_delegated_and_layer_clones_share_config() {
    let layer = demo_builder().build().unwrap();
    let cloned = layer.clone();
    let inner = service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
    });
    let mut service = tower::Layer::layer(&cloned, inner);
    let response = service
        .ready()
        .await
        .unwrap()
        .call(get(Some(APP)))
        .await
        .unwrap();
    assert_eq!(response.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], APP);
    assert!(format!("{layer:?}").contains("app.example.com"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_origins_are_allowed_only_when_listed(
        origin in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            "https?://[a-zA-Z0-9.:\\[\\]-]{0,40}".prop_map(String::into_bytes),
            Just(APP.as_bytes().to_vec()),
        ],
        headers in proptest::collection::vec(any::<u8>(), 0..200),
        method in proptest::collection::vec(any::<u8>(), 0..20),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let (service, _) = service(demo_builder());
        runtime.block_on(async {
            let Ok(origin) = HeaderValue::from_bytes(&origin) else { return };
            let listed = origin == APP || origin == "http://localhost:5173";
            let mut request = get(None);
            request.headers_mut().insert(ORIGIN, origin.clone());
            let response = call(&service, request).await;
            assert_eq!(response.headers().contains_key(ACCESS_CONTROL_ALLOW_ORIGIN), listed);

            let mut request = preflight(APP, "GET", None);
            request.headers_mut().insert(ORIGIN, origin);
            if let Ok(headers) = HeaderValue::from_bytes(&headers) {
                request.headers_mut().insert(ACCESS_CONTROL_REQUEST_HEADERS, headers);
            }
            if let Ok(method) = HeaderValue::from_bytes(&method) {
                request.headers_mut().insert(ACCESS_CONTROL_REQUEST_METHOD, method);
            }
            let response = call(&service, request).await;
            assert!(
                response.status() == StatusCode::NO_CONTENT
                    || response.status() == StatusCode::FORBIDDEN
            );
            if response.status() == StatusCode::FORBIDDEN {
                assert!(has_no_allow_headers(response.headers()));
            } else {
                assert!(listed);
            }
        });
    }
}

#[test]
fn origins_from_an_unset_variable_are_an_error_naming_it() {
    let error = CorsLayer::builder()
        .allow_origins_from_env("TOWER_SHIELD_TEST_SURELY_UNSET_ORIGINS")
        .build()
        .unwrap_err();
    match &error {
        tower_shield::ConfigError::Env { var, .. } => {
            assert_eq!(var, "TOWER_SHIELD_TEST_SURELY_UNSET_ORIGINS");
        }
        other => panic!("expected an Env error, got {other:?}"),
    }
    assert!(
        error
            .to_string()
            .contains("TOWER_SHIELD_TEST_SURELY_UNSET_ORIGINS")
    );
}

#[test]
fn config_errors_say_what_is_wrong() {
    let error = CorsLayer::builder()
        .allow_origin("https://app.example.com/api")
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("allow_origin") && error.contains("path"),
        "{error}"
    );
    let error = CorsLayer::builder()
        .dangerous_allow_any_origin()
        .allow_credentials(true)
        .build()
        .unwrap_err()
        .to_string();
    assert!(error.contains("credentials"), "{error}");
    let error = tower_shield::cors::CorsConfig::from_lookup(|name| {
        (name == "CORS_ALLOWED_ORIGINS").then(|| "https://a.example, *".to_owned())
    })
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("CORS_ALLOWED_ORIGINS") && error.contains("element 2"),
        "{error}"
    );
}

#[tokio::test]
async fn config_from_the_environment_builds_a_working_layer() {
    let config = tower_shield::cors::CorsConfig::from_lookup(|name| {
        match name {
            "CORS_ALLOWED_ORIGINS" => Some("HTTPS://App.Example.com:443/"),
            "CORS_ALLOWED_METHODS" => Some("GET, POST"),
            "CORS_ALLOWED_HEADERS" => Some("Content-Type"),
            "CORS_ALLOW_CREDENTIALS" => Some("true"),
            "CORS_MAX_AGE_SECS" => Some("60"),
            _ => None,
        }
        .map(str::to_owned)
    })
    .unwrap();
    let layer = config.into_layer().unwrap();
    let inner = service_fn(|_req: Request<Full<Bytes>>| async {
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
    });
    let service = tower::Layer::layer(&layer, inner);
    let response = service
        .clone()
        .oneshot(preflight(APP, "POST", Some("content-type")))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(response.headers()[ACCESS_CONTROL_ALLOW_ORIGIN], APP);
    assert_eq!(response.headers()[ACCESS_CONTROL_MAX_AGE], "60");
    assert_eq!(
        response.headers()[ACCESS_CONTROL_ALLOW_METHODS],
        "GET, POST"
    );
    let response = service
        .oneshot(preflight(APP, "DELETE", None))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}
