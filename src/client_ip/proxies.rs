//! The proxies whose forwarding headers are believed, and the TCP peer's address.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use http::Extensions;
use ipnet::{IpNet, Ipv4Net};

use crate::error::ConfigError;

/// The networks whose forwarding headers (the [`ForwardedHeader`](super::ForwardedHeader) a
/// resolver is told to read, and `X-Forwarded-Proto`) are believed.
///
/// Empty by default: then the TCP peer is the client and forwarding headers change nothing.
/// A list that would trust every address (`0.0.0.0/0`, `::/0`) is refused when built.
///
/// It also says how a request's TCP peer is found: [`peer_addr`] by default, or your own
/// [`PeerLookup`] ([`peer_lookup`](Self::peer_lookup)). Every layer that reads the peer
/// through the same list agrees on it.
#[derive(Debug, Clone)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
    peer: PeerLookup,
}

/// How the TCP peer of a request is read from its extensions (see
/// [`TrustedProxies::peer_lookup`]).
pub type PeerLookup = fn(&Extensions) -> Option<SocketAddr>;

impl Default for TrustedProxies {
    fn default() -> Self {
        Self {
            nets: Vec::new(),
            peer: peer_addr,
        }
    }
}

impl PartialEq for TrustedProxies {
    fn eq(&self, other: &Self) -> bool {
        self.nets == other.nets && std::ptr::fn_addr_eq(self.peer, other.peer)
    }
}

impl Eq for TrustedProxies {}

impl TrustedProxies {
    /// No trusted proxy.
    pub fn none() -> Self {
        Self::default()
    }

    /// Reads the TCP peer with `lookup` instead of [`peer_addr`]: for a server that records
    /// its peer as a type `peer_addr` does not know, such as axum's `ConnectInfo` of another
    /// axum version than the one this crate was built with (a type of another version is
    /// another type, and would silently give "no peer": every request refused with 403).
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use tower_shield::client_ip::TrustedProxies;
    ///
    /// #[derive(Clone)]
    /// struct MyConnInfo(SocketAddr);
    ///
    /// let proxies = TrustedProxies::none()
    ///     .peer_lookup(|extensions| extensions.get::<MyConnInfo>().map(|info| info.0));
    /// let mut extensions = http::Extensions::new();
    /// extensions.insert(MyConnInfo("192.0.2.9:4000".parse().unwrap()));
    /// assert_eq!(proxies.peer(&extensions), Some("192.0.2.9:4000".parse().unwrap()));
    /// ```
    pub fn peer_lookup(mut self, lookup: PeerLookup) -> Self {
        self.peer = lookup;
        self
    }

    /// The TCP peer of a request, read by this list's [`PeerLookup`].
    #[inline]
    pub fn peer(&self, extensions: &Extensions) -> Option<SocketAddr> {
        (self.peer)(extensions)
    }

    /// Builds the list from CIDRs (`10.0.0.0/8`) or single addresses (`192.0.2.1`).
    pub fn new<I, S>(entries: I) -> Result<Self, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut nets = Vec::new();
        for entry in entries {
            let entry = entry.as_ref().trim();
            if entry.is_empty() {
                return Err(ConfigError::invalid("trusted_proxies", "an entry is empty"));
            }
            let net = match IpNet::from_str(entry) {
                Ok(net) => canonical_net(net.trunc()),
                Err(_) => match IpAddr::from_str(entry) {
                    Ok(ip) => IpNet::from(canonical_ip(ip)),
                    Err(_) => {
                        return Err(ConfigError::invalid(
                            "trusted_proxies",
                            format!("`{entry}` is neither an IP address nor a CIDR"),
                        ));
                    }
                },
            };
            if net.prefix_len() == 0 {
                return Err(ConfigError::dangerous(
                    "trusted_proxies",
                    format!("`{entry}` would trust every address on the Internet"),
                ));
            }
            nets.push(net);
        }
        if covers_everything(&nets) {
            return Err(ConfigError::dangerous(
                "trusted_proxies",
                "the entries together would trust every address on the Internet",
            ));
        }
        Ok(Self {
            nets,
            peer: peer_addr,
        })
    }

    /// Parses a comma-separated list, as found in an environment variable.
    pub fn from_comma_separated(list: &str) -> Result<Self, ConfigError> {
        if list.trim().is_empty() {
            return Ok(Self::none());
        }
        Self::new(list.split(','))
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// Whether the address belongs to a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// Whether the TCP peer of a request (its [`peer`](Self::peer), from these extensions) is
    /// a trusted proxy: `false` when none is trusted (without looking at the extensions) or
    /// the peer is unknown. What a layer asks before believing a header a proxy sets.
    pub fn trusts_peer(&self, extensions: &Extensions) -> bool {
        !self.is_empty()
            && self
                .peer(extensions)
                .is_some_and(|peer| self.contains(peer.ip()))
    }

    /// The trusted networks.
    pub fn networks(&self) -> &[IpNet] {
        &self.nets
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`) turned back into IPv4; others unchanged.
#[inline]
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`) turned back into IPv4 (`10.0.0.0/8`),
/// so it matches the addresses [`canonical_ip`] yields; others unchanged. A shorter prefix
/// than `/96` reaches beyond the mapped range and stays IPv6.
pub fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => v6
            .addr()
            .to_ipv4_mapped()
            .and_then(|v4| Ipv4Net::new(v4, v6.prefix_len() - 96).ok())
            .map_or(net, |v4| IpNet::V4(v4.trunc())),
        other => other,
    }
}

/// Whether `nets` together hold every address of a family (`0.0.0.0/1` and `128.0.0.0/1`
/// are as wide as `0.0.0.0/0`).
pub(crate) fn covers_everything(nets: &[IpNet]) -> bool {
    IpNet::aggregate(&nets.to_vec())
        .iter()
        .any(|net| net.prefix_len() == 0)
}

/// The TCP peer's address, from the request extensions (the default [`PeerLookup`]): a
/// `SocketAddr` (plain hyper), axum's
/// `ConnectInfo<SocketAddr>` with the `axum` feature, or tonic's `TcpConnectInfo` with the
/// `tonic` feature (what tonic's own server inserts; a tonic server that terminates TLS
/// itself inserts `TlsConnectInfo` instead, which is not read: put a `SocketAddr` in the
/// extensions there, or terminate TLS in a trusted proxy).
#[inline]
pub fn peer_addr(extensions: &Extensions) -> Option<SocketAddr> {
    if let Some(addr) = extensions.get::<SocketAddr>() {
        return Some(*addr);
    }
    #[cfg(feature = "axum")]
    if let Some(info) = extensions.get::<axum::extract::ConnectInfo<SocketAddr>>() {
        return Some(info.0);
    }
    #[cfg(feature = "tonic")]
    if let Some(addr) = extensions
        .get::<tonic::transport::server::TcpConnectInfo>()
        .and_then(tonic::transport::server::TcpConnectInfo::remote_addr)
    {
        return Some(addr);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection-info type `peer_addr` does not know (as another axum version's would be).
    #[derive(Clone)]
    struct OtherConnInfo(SocketAddr);

    #[test]
    fn a_peer_lookup_serves_every_layer_that_reads_the_list() {
        let mut extensions = Extensions::new();
        extensions.insert(OtherConnInfo("10.1.2.3:4000".parse().unwrap()));
        let default = TrustedProxies::new(["10.0.0.0/8"]).unwrap();
        assert_eq!(default.peer(&extensions), None, "unknown to peer_addr");
        assert!(!default.trusts_peer(&extensions));
        let custom = default
            .clone()
            .peer_lookup(|ext| ext.get::<OtherConnInfo>().map(|info| info.0));
        assert_eq!(
            custom.peer(&extensions),
            Some("10.1.2.3:4000".parse().unwrap())
        );
        assert!(custom.trusts_peer(&extensions));
        assert_ne!(custom, default, "the lookup is part of the configuration");
        let resolver = super::super::ClientIpResolver::new(custom);
        let ip = resolver
            .resolve(&http::HeaderMap::new(), &extensions)
            .unwrap();
        assert_eq!(ip.ip().to_string(), "10.1.2.3");
    }

    #[test]
    fn trusted_proxies_parse_cidrs_and_addresses() {
        let proxies = TrustedProxies::new(["10.0.0.0/8", "192.0.2.7", " ::1 "]).unwrap();
        assert!(proxies.contains("10.1.2.3".parse().unwrap()));
        assert!(proxies.contains("192.0.2.7".parse().unwrap()));
        assert!(!proxies.contains("192.0.2.8".parse().unwrap()));
        assert!(proxies.contains("::1".parse().unwrap()));
        assert!(proxies.contains("::ffff:10.9.9.9".parse().unwrap()));
    }

    #[test]
    fn ipv4_mapped_networks_match_ipv4_clients() {
        let proxies = TrustedProxies::new(["::ffff:10.0.0.0/104", "::ffff:192.0.2.7"]).unwrap();
        assert_eq!(proxies.networks()[0].to_string(), "10.0.0.0/8");
        assert!(proxies.contains("10.1.2.3".parse().unwrap()));
        assert!(proxies.contains("::ffff:10.1.2.3".parse().unwrap()));
        assert!(proxies.contains("192.0.2.7".parse().unwrap()));
        assert!(!proxies.contains("11.0.0.1".parse().unwrap()));
        // Shorter than /96 reaches past the mapped range: left as IPv6.
        for other in ["::fffe:0:0/95", "2001:db8::/32", "::ffff:0:0/96"] {
            let net: IpNet = other.parse().unwrap();
            let expected = if other == "::ffff:0:0/96" {
                "0.0.0.0/0"
            } else {
                other
            };
            assert_eq!(canonical_net(net).to_string(), expected);
        }
    }

    #[test]
    fn trusting_everyone_is_refused() {
        assert!(matches!(
            TrustedProxies::new(["0.0.0.0/0"]),
            Err(ConfigError::Dangerous { .. })
        ));
        assert!(matches!(
            TrustedProxies::new(["::/0"]),
            Err(ConfigError::Dangerous { .. })
        ));
        // The same, spelled so that no single entry is /0.
        for wide in [
            &["0.0.0.0/1", "128.0.0.0/1"][..],
            &["::/1", "8000::/1"],
            &["::ffff:0.0.0.0/96"],
            &["::ffff:0.0.0.0/97", "128.0.0.0/1"],
        ] {
            assert!(
                matches!(
                    TrustedProxies::new(wide.iter().copied()),
                    Err(ConfigError::Dangerous { .. })
                ),
                "{wide:?}"
            );
        }
        assert!(TrustedProxies::new(["0.0.0.0/1"]).is_ok());
        assert!(TrustedProxies::new(["nope"]).is_err());
        assert!(TrustedProxies::from_comma_separated("10.0.0.0/8,").is_err());
        assert!(TrustedProxies::from_comma_separated("").unwrap().is_empty());
    }

    #[test]
    fn peer_addr_reads_socket_addr() {
        let mut extensions = Extensions::new();
        assert_eq!(peer_addr(&extensions), None);
        let addr: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        extensions.insert(addr);
        assert_eq!(peer_addr(&extensions), Some(addr));
    }

    #[test]
    fn trusts_peer_only_for_a_known_listed_peer() {
        let proxies = TrustedProxies::new(["10.0.0.0/8"]).unwrap();
        let with_peer = |peer: &str| {
            let mut extensions = Extensions::new();
            extensions.insert(SocketAddr::new(peer.parse().unwrap(), 4000));
            extensions
        };
        assert!(proxies.trusts_peer(&with_peer("10.1.2.3")));
        assert!(proxies.trusts_peer(&with_peer("::ffff:10.1.2.3")));
        assert!(!proxies.trusts_peer(&with_peer("192.0.2.1")));
        assert!(!proxies.trusts_peer(&Extensions::new()), "unknown peer");
        assert!(!TrustedProxies::none().trusts_peer(&with_peer("10.1.2.3")));
    }
}
