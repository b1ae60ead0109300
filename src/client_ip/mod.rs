//! The client's address: the TCP peer, or what a trusted proxy says it is.
//!
//! [`ClientIp`] is the crate's answer to "who is this client?", shared by the rate limiter,
//! handlers and logs. [`ClientIpResolver`] finds it:
//!
//! 1. A `ClientIp` already in the request extensions is kept (a layer further out resolved it).
//! 2. Otherwise the TCP peer comes from [`peer_addr`]: a `SocketAddr` extension (plain hyper),
//!    axum's `ConnectInfo<SocketAddr>` (feature `axum`) or tonic's `TcpConnectInfo` (feature
//!    `tonic`); or from your own [`PeerLookup`] ([`TrustedProxies::peer_lookup`]). No peer → [`ClientIpError::MissingPeer`]:
//!    the layers refuse such requests (403 problem) rather than guess. It means the server
//!    does not record peers (in axum, serve with `into_make_service_with_connect_info`).
//! 3. Only when the peer is inside [`TrustedProxies`] is a forwarding header read, and only
//!    the one the operator names with [`ClientIpResolver::header`] ([`ForwardedHeader`]):
//!    `X-Forwarded-For` by default, or `Forwarded` (RFC 7239 `for=`), or a single-address
//!    header such as `X-Real-IP`. The other headers are never read, whatever they say: a
//!    proxy that appends to one of them passes the client's own copy of the others through
//!    unchanged, so reading whichever is present would let the client choose its address.
//!    The list is walked **from the right** (every header line, joined in order), skipping
//!    trusted hops; the first address that is not a trusted proxy is the client. An entry
//!    that cannot be parsed (garbage, `unknown`, an obfuscated `_id`) ends the walk and the
//!    last address parsed (a trusted proxy) is used. Ports are ignored. A client behind an
//!    untrusted peer cannot change anything by sending these headers.
//! 4. IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`) become IPv4. For rate-limit keys, IPv6
//!    addresses are grouped by prefix ([`ClientIp::group`], /56 by default), so rotating
//!    addresses inside one allocation does not escape a limit; [`ClientIp::ip`] keeps the
//!    real address.
//!
//! Client input is bounded before it is parsed: each header line is read on its last
//! [`MAX_FORWARDING_LINE_BYTES`] bytes only (the entries nearest to us; the cut entry counts as
//! unparsable) and at most [`MAX_FORWARDING_HOPS`] entries are examined.
//!
//! ```
//! use std::net::SocketAddr;
//! use http::Request;
//! use tower_shield::client_ip::{ClientIpResolver, TrustedProxies};
//!
//! let resolver = ClientIpResolver::new(TrustedProxies::new(["10.0.0.0/8"]).unwrap());
//! let mut request = Request::builder()
//!     .header("x-forwarded-for", "198.51.100.7, 203.0.113.9, 10.0.0.3")
//!     .body(())
//!     .unwrap();
//! request.extensions_mut().insert("10.0.0.2:51000".parse::<SocketAddr>().unwrap());
//! let ip = resolver.resolve(request.headers(), request.extensions()).unwrap();
//! // 10.0.0.3 is a trusted hop; 203.0.113.9 is the first address that is not.
//! assert_eq!(ip.ip().to_string(), "203.0.113.9");
//! ```

use std::net::IpAddr;

use ipnet::IpNet;

#[cfg(feature = "axum")]
mod extract;
mod layer;
mod parse;
mod proxies;
mod resolver;

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use extract::ClientIpRejection;
#[cfg(any(feature = "rate-limit", feature = "api-key"))]
pub(crate) use layer::warn_missing_peer;
pub use layer::{ClientIpLayer, ClientIpService, ResponseFuture};
#[cfg(feature = "api-key")]
pub(crate) use proxies::covers_everything;
pub use proxies::{PeerLookup, TrustedProxies, canonical_ip, canonical_net, peer_addr};
pub use resolver::{
    ClientIpResolver, DEFAULT_IPV6_PREFIX, ForwardedHeader, MAX_FORWARDING_HOPS,
    MAX_FORWARDING_LINE_BYTES,
};

/// The client's address, as resolved by [`ClientIpResolver`] (see the [module docs](self)).
///
/// Layers that resolve it insert it into the request extensions when absent, so handlers and
/// logs can read it (with the `axum` feature it is also an extractor).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientIp {
    ip: IpAddr,
    group: IpAddr,
    group_len: u8,
    peer: IpAddr,
}

impl ClientIp {
    /// The client's address (IPv4-mapped addresses already turned into IPv4).
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// The address rate limits key on: IPv4 as it is; IPv6 with every bit past the group
    /// prefix cleared (`2001:db8:aa:bb00::` for any address in `2001:db8:aa:bb00::/56`).
    #[inline]
    pub fn group(&self) -> IpAddr {
        self.group
    }

    /// The group as a network (`/32` for IPv4, the configured prefix for IPv6).
    pub fn group_net(&self) -> IpNet {
        match self.group {
            IpAddr::V4(v4) => IpNet::from(IpAddr::V4(v4)),
            IpAddr::V6(v6) => ipnet::Ipv6Net::new(v6, self.group_len)
                .map_or(IpNet::from(IpAddr::V6(v6)), IpNet::V6),
        }
    }

    /// The TCP peer the request came from (a trusted proxy when forwarding headers were used).
    pub fn peer(&self) -> IpAddr {
        self.peer
    }

    /// Whether the address came from a trusted proxy's forwarding header.
    pub fn is_forwarded(&self) -> bool {
        self.ip != self.peer
    }

    /// A client address read from no header: the peer itself, grouped with the given IPv6
    /// prefix length (clamped to 1..=128).
    pub fn from_peer(peer: IpAddr, ipv6_prefix: u8) -> Self {
        let peer = canonical_ip(peer);
        Self::with_peer(peer, peer, ipv6_prefix)
    }

    #[inline]
    fn with_peer(ip: IpAddr, peer: IpAddr, ipv6_prefix: u8) -> Self {
        let group_len = ipv6_prefix.clamp(1, 128);
        let group = match ip {
            IpAddr::V4(v4) => IpAddr::V4(v4),
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                let mask = u128::MAX << (128 - u32::from(group_len));
                IpAddr::V6(std::net::Ipv6Addr::from(bits & mask))
            }
        };
        Self {
            ip,
            group,
            group_len,
            peer,
        }
    }
}

impl std::fmt::Display for ClientIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.ip.fmt(f)
    }
}

/// Why no client address could be resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientIpError {
    /// The request carries no peer address: the server does not record it (plain hyper:
    /// insert the `SocketAddr`; axum: `into_make_service_with_connect_info::<SocketAddr>()`).
    #[error("the request carries no peer address")]
    MissingPeer,
}
