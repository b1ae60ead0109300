//! The proxies whose forwarding headers are believed, and the TCP peer's address.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use http::Extensions;
use ipnet::IpNet;

use crate::error::ConfigError;

/// The networks whose forwarding headers (the [`ForwardedHeader`](super::ForwardedHeader) a
/// resolver is told to read, and `X-Forwarded-Proto`) are believed.
///
/// Empty by default: then the TCP peer is the client and forwarding headers change nothing.
/// A list that would trust every address (`0.0.0.0/0`, `::/0`) is refused when built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
}

impl TrustedProxies {
    /// No trusted proxy.
    pub fn none() -> Self {
        Self::default()
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
                Ok(net) => net.trunc(),
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
        Ok(Self { nets })
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

    /// Whether the TCP peer of a request (its [`peer_addr`], from these extensions) is a
    /// trusted proxy: `false` when none is trusted (without looking at the extensions) or
    /// the peer is unknown. What a layer asks before believing a header a proxy sets.
    pub fn trusts_peer(&self, extensions: &Extensions) -> bool {
        !self.is_empty() && peer_addr(extensions).is_some_and(|peer| self.contains(peer.ip()))
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

/// The TCP peer's address, from the request extensions: a `SocketAddr` (plain hyper), axum's
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
    fn trusting_everyone_is_refused() {
        assert!(matches!(
            TrustedProxies::new(["0.0.0.0/0"]),
            Err(ConfigError::Dangerous { .. })
        ));
        assert!(matches!(
            TrustedProxies::new(["::/0"]),
            Err(ConfigError::Dangerous { .. })
        ));
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
