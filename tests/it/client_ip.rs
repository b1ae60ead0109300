//! ClientIp through the rate limiter: spoofing, trusted chains, IPv6 rotation, mapped
//! addresses.

use http::{HeaderValue, StatusCode};
use tower::{Layer, ServiceExt};
use tower_shield::client_ip::{ClientIp, ClientIpResolver, TrustedProxies};
use tower_shield::rate_limit::{MemoryStore, Policy, Quota, RateLimitLayer};

use crate::rate_limit_support::{self, Echo, request};

fn svc(
    proxies: &[&str],
) -> impl tower::Service<
    http::Request<rate_limit_support::Body>,
    Response = http::Response<impl http_body::Body>,
    Error = std::convert::Infallible,
> + Clone {
    RateLimitLayer::builder(MemoryStore::new())
        .policy(Policy::named("ip").quota(Quota::per_minute(2)))
        .trusted_proxies(TrustedProxies::new(proxies).unwrap())
        .build()
        .unwrap()
        .layer(Echo::default())
}

fn with_xff(peer: &str, xff: &str) -> http::Request<rate_limit_support::Body> {
    let mut req = request("/", peer);
    req.headers_mut()
        .append("x-forwarded-for", HeaderValue::from_str(xff).unwrap());
    req
}

#[tokio::test]
async fn spoofed_xff_from_an_untrusted_peer_changes_nothing() {
    let svc = svc(&["10.0.0.0/8"]);
    // Each request claims a different client; all come from one untrusted peer.
    let mut statuses = Vec::new();
    for i in 0..3 {
        let r = svc
            .clone()
            .oneshot(with_xff("203.0.113.50:1", &format!("198.51.100.{i}")))
            .await
            .unwrap();
        statuses.push(r.status());
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
}

#[tokio::test]
async fn trusted_proxy_chain_yields_the_client() {
    let svc = svc(&["10.0.0.0/8"]);
    // Two clients behind the same two proxies are limited apart.
    for client in ["198.51.100.1", "198.51.100.2"] {
        for _ in 0..2 {
            let r = svc
                .clone()
                .oneshot(with_xff(
                    "10.0.0.1:1",
                    &format!("6.6.6.6, {client}, 10.0.0.2"),
                ))
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK);
        }
    }
    // The left-most (client-written) entry does not matter.
    let r = svc
        .clone()
        .oneshot(with_xff("10.0.0.1:1", "7.7.7.7, 198.51.100.1, 10.0.0.2"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn ipv6_rotation_inside_a_56_shares_one_budget() {
    let svc = svc(&[]);
    let peers = [
        "[2001:db8:aa:bb01::1]:1",
        "[2001:db8:aa:bbff:1234::9]:1",
        "[2001:db8:aa:bb42::77]:1",
    ];
    let mut statuses = Vec::new();
    for peer in peers {
        statuses.push(
            svc.clone()
                .oneshot(request("/", peer))
                .await
                .unwrap()
                .status(),
        );
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    // The next /56 is another client.
    let r = svc
        .clone()
        .oneshot(request("/", "[2001:db8:aa:bc00::1]:1"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn ipv4_mapped_addresses_count_as_ipv4() {
    let svc = svc(&[]);
    let a = svc
        .clone()
        .oneshot(request("/", "192.0.2.77:1"))
        .await
        .unwrap();
    let b = svc
        .clone()
        .oneshot(request("/", "[::ffff:192.0.2.77]:1"))
        .await
        .unwrap();
    let c = svc
        .clone()
        .oneshot(request("/", "[::ffff:192.0.2.77]:2"))
        .await
        .unwrap();
    assert_eq!(
        [a.status(), b.status(), c.status()],
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    // And mapped IPv4 clients are not lumped together (the express-rate-limit bug).
    let d = svc
        .clone()
        .oneshot(request("/", "[::ffff:192.0.2.78]:1"))
        .await
        .unwrap();
    assert_eq!(d.status(), StatusCode::OK);
}

#[test]
fn resolver_keeps_the_real_address_and_the_group() {
    let resolver = ClientIpResolver::new(TrustedProxies::none());
    let ip: ClientIp = resolver.resolve_from_peer(
        "2001:db8:aa:bb01::1".parse().unwrap(),
        &http::HeaderMap::new(),
    );
    assert_eq!(ip.ip().to_string(), "2001:db8:aa:bb01::1");
    assert_eq!(ip.group().to_string(), "2001:db8:aa:bb00::");
    let per48 = ClientIpResolver::new(TrustedProxies::none())
        .ipv6_prefix(48)
        .unwrap();
    let ip = per48.resolve_from_peer(
        "2001:db8:aa:bb01::1".parse().unwrap(),
        &http::HeaderMap::new(),
    );
    assert_eq!(ip.group().to_string(), "2001:db8:aa::");
}

/// Under tonic's own server the peer arrives as `TcpConnectInfo` (feature `tonic`): the
/// limiter keys by it, and without any peer information the request is refused, not guessed.
#[cfg(feature = "tonic")]
#[tokio::test]
async fn tonic_tcp_connect_info_is_the_peer() {
    use tonic::transport::server::TcpConnectInfo;
    let from_tonic = |peer: Option<&str>| {
        let mut req = http::Request::get("/grpc.health.v1.Health/Check")
            .body(rate_limit_support::Body::default())
            .unwrap();
        req.extensions_mut().insert(TcpConnectInfo {
            local_addr: Some("127.0.0.1:50051".parse().unwrap()),
            remote_addr: peer.map(|p| p.parse().unwrap()),
        });
        req
    };
    let svc = svc(&[]);
    for _ in 0..2 {
        let response = svc
            .clone()
            .oneshot(from_tonic(Some("198.51.100.9:4000")))
            .await;
        assert_eq!(response.unwrap().status(), StatusCode::OK);
    }
    let limited = svc
        .clone()
        .oneshot(from_tonic(Some("198.51.100.9:4001")))
        .await;
    assert_eq!(limited.unwrap().status(), StatusCode::TOO_MANY_REQUESTS);
    let other = svc
        .clone()
        .oneshot(from_tonic(Some("198.51.100.10:4000")))
        .await;
    assert_eq!(other.unwrap().status(), StatusCode::OK);
    let unknown = svc.oneshot(from_tonic(None)).await;
    assert_eq!(unknown.unwrap().status(), StatusCode::FORBIDDEN);
    let peer = tower_shield::client_ip::peer_addr(from_tonic(Some("[2001:db8::1]:9")).extensions());
    assert_eq!(peer, Some("[2001:db8::1]:9".parse().unwrap()));
}
