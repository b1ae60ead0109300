//! RequestIdLayer driven with `oneshot`: generation, trust rules, hostile ids, propagation to
//! refusals and errors and the axum extractor (the tracing span is tested in
//! `tests/request_id_span.rs`, a process of its own).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_shield::RequestId;
use tower_shield::client_ip::TrustedProxies;
use tower_shield::request_id::RequestIdLayer;

/// An inner service that answers with what it saw: the extension and the request header.
async fn echo(request: Request<()>) -> Result<Response<Full<Bytes>>, Infallible> {
    let extension = request
        .extensions()
        .get::<RequestId>()
        .map(|id| id.as_str().to_owned())
        .unwrap_or_default();
    let lines: Vec<_> = request
        .headers()
        .get_all("x-request-id")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    assert_eq!(lines.len(), 1, "the inner service sees exactly one id line");
    assert_eq!(lines[0], extension, "header and extension agree");
    Ok(Response::new(Full::new(Bytes::from(extension))))
}

async fn call(layer: RequestIdLayer, request: Request<()>) -> (String, String) {
    let service = ServiceBuilder::new().layer(layer).service_fn(echo);
    let response = service.oneshot(request).await.unwrap();
    let mut lines = response.headers().get_all("x-request-id").iter();
    let header = lines.next().unwrap().to_str().unwrap().to_owned();
    assert!(lines.next().is_none(), "one id line on the response");
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (header, String::from_utf8(body.to_vec()).unwrap())
}

fn with_id(value: HeaderValue) -> Request<()> {
    let mut request = Request::new(());
    request.headers_mut().insert("x-request-id", value);
    request
}

fn assert_uuid(id: &str, version: usize) {
    let uuid = uuid::Uuid::parse_str(id).unwrap();
    assert_eq!(uuid.get_version_num(), version);
    assert_eq!(id, id.to_ascii_lowercase());
    assert_eq!(id.len(), 36);
}

#[tokio::test]
async fn generates_a_uuid_v4_by_default() {
    let (header, seen) = call(RequestIdLayer::new(), Request::new(())).await;
    assert_uuid(&header, 4);
    assert_eq!(header, seen);
    let (other, _) = call(RequestIdLayer::new(), Request::new(())).await;
    assert_ne!(header, other);
}

#[tokio::test]
async fn uuid_v7_when_asked() {
    let (header, seen) = call(
        RequestIdLayer::builder().uuid_v7().build().unwrap(),
        Request::new(()),
    )
    .await;
    assert_uuid(&header, 7);
    assert_eq!(header, seen);
}

#[tokio::test]
async fn incoming_id_is_replaced_when_not_trusted() {
    let (header, seen) = call(
        RequestIdLayer::new(),
        with_id(HeaderValue::from_static("client-chosen-123")),
    )
    .await;
    assert_ne!(header, "client-chosen-123");
    assert_uuid(&header, 4);
    assert_eq!(header, seen);

    let (header, _) = call(
        RequestIdLayer::builder()
            .trust_incoming(false)
            .build()
            .unwrap(),
        with_id(HeaderValue::from_static("client-chosen-123")),
    )
    .await;
    assert_ne!(header, "client-chosen-123");
}

#[tokio::test]
async fn valid_incoming_id_is_kept_when_trusted() {
    for id in ["abc", "A.b_c:d-e", "0d4c1b2a-1111-4222-8333-444455556666"] {
        let (header, seen) = call(
            RequestIdLayer::builder()
                .trust_incoming(true)
                .build()
                .unwrap(),
            with_id(HeaderValue::from_static(id)),
        )
        .await;
        assert_eq!(header, id);
        assert_eq!(seen, id);
    }
    let long = "a".repeat(128);
    let (header, _) = call(
        RequestIdLayer::builder()
            .trust_incoming(true)
            .build()
            .unwrap(),
        with_id(HeaderValue::from_str(&long).unwrap()),
    )
    .await;
    assert_eq!(header, long);
}

#[tokio::test]
async fn hostile_incoming_ids_are_replaced_even_when_trusted() {
    for bytes in hostile_ids() {
        let (header, seen) = call(
            RequestIdLayer::builder()
                .trust_incoming(true)
                .build()
                .unwrap(),
            with_id(HeaderValue::from_bytes(&bytes).unwrap()),
        )
        .await;
        assert_uuid(&header, 4);
        assert_eq!(header, seen);
        assert_ne!(header.as_bytes(), &bytes[..]);
    }
    // Newlines and DEL cannot even be carried by a header value: the parser refuses them.
    assert!(HeaderValue::from_bytes(b"a\nb").is_err());
    assert!(HeaderValue::from_bytes(b"a\r\nb").is_err());
    assert!(HeaderValue::from_bytes(b"a\x7fb").is_err());
}

/// Ids a client may send that must never be kept: each a valid header value.
fn hostile_ids() -> Vec<Vec<u8>> {
    let mut hostile: Vec<Vec<u8>> = vec![
        b"a\tb".to_vec(),                // control byte (tab is allowed in header values)
        b"\xff\xfe\x80bad".to_vec(),     // not UTF-8
        "caf\u{e9}".as_bytes().to_vec(), // UTF-8, not ASCII
        b"x\" injected=\"1".to_vec(),    // quotes
        b"a b".to_vec(),                 // space
        b"%0d%0aSet-Cookie:x".to_vec(),  // encoded CRLF
        b"../../etc/passwd".to_vec(),    // slashes
        b"".to_vec(),                    // empty
        vec![b'a'; 129],                 // one byte too long
        vec![b'a'; 10 * 1024],           // 10 KB
        b"{\"json\":1}".to_vec(),        // braces
        b"\x1b[31mred".to_vec(),         // ANSI escape is rejected by HeaderValue itself
    ];
    hostile.retain(|bytes| HeaderValue::from_bytes(bytes).is_ok());
    assert!(hostile.len() >= 10);
    hostile
}

#[tokio::test]
async fn incoming_id_is_kept_only_from_trusted_proxies() {
    let layer = || {
        RequestIdLayer::builder()
            .trust_incoming_from(TrustedProxies::new(["10.0.0.0/8", "2001:db8::/32"]).unwrap())
            .build()
            .unwrap()
    };
    let from = |peer: Option<&str>, value: HeaderValue| {
        let mut request = with_id(value);
        if let Some(peer) = peer {
            request
                .extensions_mut()
                .insert(SocketAddr::new(peer.parse().unwrap(), 40000));
        }
        request
    };
    let id = HeaderValue::from_static("lb-7f3a.9");
    // From a listed proxy (IPv4, IPv6, and IPv4 written as IPv4-mapped IPv6): kept.
    for peer in ["10.0.0.2", "2001:db8::7", "::ffff:10.1.2.3"] {
        let (header, seen) = call(layer(), from(Some(peer), id.clone())).await;
        assert_eq!(
            (header.as_str(), seen.as_str()),
            ("lb-7f3a.9", "lb-7f3a.9"),
            "{peer}"
        );
    }
    // From anyone else, or from an unknown peer: replaced, never echoed.
    for peer in [
        Some("203.0.113.9"),
        Some("11.0.0.1"),
        Some("2001:db9::1"),
        None,
    ] {
        let (header, seen) = call(layer(), from(peer, id.clone())).await;
        assert_uuid(&header, 4);
        assert_eq!(header, seen, "{peer:?}");
    }
    // A listed proxy's hostile or doubled ids are replaced as well.
    for bytes in hostile_ids() {
        let value = HeaderValue::from_bytes(&bytes).unwrap();
        let (header, _) = call(layer(), from(Some("10.0.0.2"), value)).await;
        assert_uuid(&header, 4);
    }
    let mut doubled = from(Some("10.0.0.2"), id.clone());
    doubled.headers_mut().append("x-request-id", id.clone());
    assert_uuid(&call(layer(), doubled).await.0, 4);
    // Forwarding headers naming a listed proxy change nothing: only the TCP peer counts.
    let mut spoofed = from(Some("203.0.113.9"), id.clone());
    spoofed
        .headers_mut()
        .insert("x-forwarded-for", HeaderValue::from_static("10.0.0.2"));
    spoofed
        .headers_mut()
        .insert("forwarded", HeaderValue::from_static("for=10.0.0.2"));
    assert_uuid(&call(layer(), spoofed).await.0, 4);
    // No proxies listed: nobody is trusted.
    let nobody = RequestIdLayer::builder()
        .trust_incoming_from(TrustedProxies::none())
        .build()
        .unwrap();
    assert_uuid(&call(nobody, from(Some("10.0.0.2"), id)).await.0, 4);
}

#[tokio::test]
async fn a_generator_makes_the_ids_and_is_held_to_the_id_rule() {
    let next = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&next);
    let builder = RequestIdLayer::builder().generator(move || {
        HeaderValue::from_str(&format!("req-{}", counter.fetch_add(1, Ordering::Relaxed))).unwrap()
    });
    let (layer, trusted) = (
        builder.clone().build().unwrap(),
        builder.trust_incoming(true).build().unwrap(),
    );
    for expected in ["req-0", "req-1"] {
        let (header, seen) = call(layer.clone(), Request::new(())).await;
        assert_eq!((header.as_str(), seen.as_str()), (expected, expected));
    }
    // A client's id still does not replace it; a trusted valid one does.
    let (header, _) = call(layer.clone(), with_id(HeaderValue::from_static("mine"))).await;
    assert_eq!(header, "req-2");
    let (header, _) = call(trusted, with_id(HeaderValue::from_static("mine"))).await;
    assert_eq!(header, "mine");
    assert_eq!(next.load(Ordering::Relaxed), 3, "not called for a kept id");

    // Whatever it returns that breaks the rule (or is longer than `max_len`) is replaced.
    for bytes in hostile_ids() {
        let layer = RequestIdLayer::builder()
            .generator(move || HeaderValue::from_bytes(&bytes).unwrap())
            .build()
            .unwrap();
        let (header, seen) = call(layer, Request::new(())).await;
        assert_uuid(&header, 4);
        assert_eq!(header, seen);
    }
    let long = RequestIdLayer::builder()
        .max_len(8)
        .generator(|| HeaderValue::from_static("nine-char"))
        .build()
        .unwrap();
    assert_uuid(&call(long, Request::new(())).await.0, 4);
    let at_the_bound = RequestIdLayer::builder()
        .max_len(8)
        .generator(|| HeaderValue::from_static("8-chars!"))
        .build()
        .unwrap();
    assert_uuid(&call(at_the_bound, Request::new(())).await.0, 4); // `!` is not allowed
    let at_the_bound = RequestIdLayer::builder()
        .max_len(8)
        .generator(|| HeaderValue::from_static("8-chars."))
        .build()
        .unwrap();
    assert_eq!(call(at_the_bound, Request::new(())).await.0, "8-chars.");
}

#[tokio::test]
async fn several_incoming_lines_are_replaced_by_one() {
    let mut request = Request::new(());
    request
        .headers_mut()
        .append("x-request-id", HeaderValue::from_static("first"));
    request
        .headers_mut()
        .append("x-request-id", HeaderValue::from_static("second"));
    let (header, seen) = call(
        RequestIdLayer::builder()
            .trust_incoming(true)
            .build()
            .unwrap(),
        request,
    )
    .await;
    assert_uuid(&header, 4);
    assert_eq!(header, seen);
}

#[tokio::test]
async fn max_len_is_respected() {
    let layer = RequestIdLayer::builder()
        .trust_incoming(true)
        .max_len(8)
        .build()
        .unwrap();
    let (header, _) = call(layer.clone(), with_id(HeaderValue::from_static("12345678"))).await;
    assert_eq!(header, "12345678");
    let (header, _) = call(layer, with_id(HeaderValue::from_static("123456789"))).await;
    assert_uuid(&header, 4);
}

#[tokio::test]
async fn custom_header_name() {
    let name = HeaderName::from_static("x-correlation-id");
    let service = ServiceBuilder::new()
        .layer(
            RequestIdLayer::builder()
                .header_name(name.clone())
                .trust_incoming(true)
                .build()
                .unwrap(),
        )
        .service_fn(|request: Request<()>| async move {
            let id = request.extensions().get::<RequestId>().unwrap().clone();
            assert_eq!(request.headers()["x-correlation-id"], *id.header_value());
            Ok::<_, Infallible>(Response::new(()))
        });
    let mut request = Request::new(());
    request
        .headers_mut()
        .insert(name.clone(), HeaderValue::from_static("corr-1"));
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.headers()[&name], "corr-1");
    assert!(!response.headers().contains_key("x-request-id"));
}

#[tokio::test]
async fn header_is_set_on_inner_errors_and_overwrites_the_inner_value() {
    let service = ServiceBuilder::new()
        .layer(RequestIdLayer::new())
        .service_fn(|_: Request<()>| async {
            let mut response = Response::new(());
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            response
                .headers_mut()
                .insert("x-request-id", HeaderValue::from_static("inner-made"));
            response
                .headers_mut()
                .append("x-request-id", HeaderValue::from_static("inner-made-2"));
            Ok::<_, Infallible>(response)
        });
    let response = service.oneshot(Request::new(())).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let lines: Vec<_> = response.headers().get_all("x-request-id").iter().collect();
    assert_eq!(lines.len(), 1);
    assert_uuid(lines[0].to_str().unwrap(), 4);
}

#[tokio::test]
async fn service_errors_pass_through() {
    let service = ServiceBuilder::new()
        .layer(RequestIdLayer::new())
        .service_fn(|_: Request<()>| async { Err::<Response<()>, _>("boom") });
    assert_eq!(service.oneshot(Request::new(())).await.unwrap_err(), "boom");
}

#[cfg(feature = "security-headers")]
#[tokio::test]
async fn header_and_problem_body_carry_the_id_on_inner_refusals() {
    use tower_shield::security_headers::SecurityHeadersLayerBuilder;

    let service = ServiceBuilder::new()
        .layer(RequestIdLayer::new())
        .layer(
            SecurityHeadersLayerBuilder::api()
                .enforce_https(true)
                .build()
                .unwrap(),
        )
        .service_fn(|_: Request<()>| async {
            panic!("the refused request must not reach the handler");
            #[allow(unreachable_code)]
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        });
    let request = Request::builder()
        .method("POST")
        .uri("http://api.example/items")
        .header("host", "api.example")
        .body(())
        .unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    assert_uuid(&id, 4);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(json["request_id"], id);
}

#[tokio::test]
async fn axum_extractor() {
    use axum::Router;
    use axum::routing::get;

    async fn handler(maybe: Option<RequestId>, id: RequestId) -> String {
        format!(
            "{}|{}",
            id,
            maybe.map(|m| m.to_string()).unwrap_or_default()
        )
    }

    let app = Router::new()
        .route("/", get(handler))
        .layer(RequestIdLayer::new());
    let response = app
        .oneshot(
            Request::builder()
                .uri("/")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let id = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        String::from_utf8(body.to_vec()).unwrap(),
        format!("{id}|{id}")
    );

    // Without the layer: `RequestId` rejects with a 500 problem (a misconfigured server; no id
    // is invented that no response or log line would carry), `Option<RequestId>` says None.
    let app = Router::new().route("/", get(handler));
    let response = app
        .oneshot(
            Request::builder()
                .uri("/")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert!(!response.headers().contains_key("x-request-id"));
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["status"], 500);
    assert_eq!(problem["detail"], "The server is misconfigured.");
    async fn optional_only(maybe: Option<RequestId>) -> String {
        format!("{}", maybe.is_some())
    }
    let app = Router::new().route("/", get(optional_only));
    let response = app
        .oneshot(
            Request::builder()
                .uri("/")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"false");
}

#[tokio::test]
async fn layer_is_cheap_to_clone_and_works_as_plain_service() {
    let layer = RequestIdLayer::default();
    let service = ServiceBuilder::new()
        .layer(layer.clone())
        .service(service_fn(echo));
    let mut service2 = service.clone();
    let _ = service2.get_mut();
    let response = service.oneshot(Request::new(())).await.unwrap();
    assert!(response.headers().contains_key("x-request-id"));
}
