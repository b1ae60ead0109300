//! The resolver: the TCP peer, and behind trusted proxies the one forwarding header they set.

use std::net::IpAddr;
use std::str::FromStr;

use http::Extensions;

use super::parse::{Elements, Syntax, forwarded_for, parse_node, parse_node_owned, single_ip};
use super::{ClientIp, ClientIpError, TrustedProxies, canonical_ip};
use crate::error::ConfigError;

/// The longest part of one forwarding header line that is read (the right-most bytes).
pub const MAX_FORWARDING_LINE_BYTES: usize = 1024;

/// The most forwarding entries examined, over all header lines.
pub const MAX_FORWARDING_HOPS: usize = 16;

/// The default prefix length IPv6 clients are grouped by for rate-limit keys.
pub const DEFAULT_IPV6_PREFIX: u8 = 56;

/// The one forwarding header a [`ClientIpResolver`] reads behind trusted proxies: the one
/// those proxies set. It is the operator's choice, never inferred from the request.
///
/// Which proxies set which (by default; check yours):
///
/// - **`X-Forwarded-For`** (the default): nginx (`proxy_add_x_forwarded_for`), HAProxy
///   (`option forwardfor`), AWS ALB, Google Cloud load balancers, Traefik, Caddy, Envoy
///   (`use_remote_address`), Kubernetes ingress-nginx. They append the address they saw
///   and pass a client's `Forwarded` header through untouched.
/// - **`Forwarded`** (RFC 7239): proxies configured for it, e.g. nginx with
///   `proxy_set_header Forwarded …`, HAProxy `option forwarded`, Envoy or Apache with the
///   RFC 7239 option. Such a proxy must append to (or replace) the client's `Forwarded`.
/// - **A single-address header** ([`ForwardedHeader::SingleIp`]): a header the proxy
///   *overwrites* with the one address it saw, such as `X-Real-IP` (nginx `proxy_set_header
///   X-Real-IP $remote_addr`), `CF-Connecting-IP` (Cloudflare), `True-Client-IP` or
///   `Fly-Client-IP`. Only safe when the proxy always sets it: a proxy that passes the
///   client's copy through lets the client choose its address.
///
/// ```
/// use std::net::IpAddr;
/// use tower_shield::client_ip::{ClientIpResolver, ForwardedHeader, TrustedProxies};
///
/// let proxies = TrustedProxies::new(["10.0.0.0/8"]).unwrap();
/// let resolver = ClientIpResolver::new(proxies).header(ForwardedHeader::Forwarded);
/// let mut headers = http::HeaderMap::new();
/// headers.insert("x-forwarded-for", "198.51.100.7".parse().unwrap());
/// headers.insert("forwarded", "for=203.0.113.9".parse().unwrap());
/// let peer: IpAddr = "10.0.0.2".parse().unwrap();
/// // Only `Forwarded` is read: `X-Forwarded-For` changes nothing.
/// assert_eq!(resolver.resolve_from_peer(peer, &headers).ip().to_string(), "203.0.113.9");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ForwardedHeader {
    /// `X-Forwarded-For`: comma-separated addresses, appended to by each proxy.
    #[default]
    XForwardedFor,
    /// `Forwarded` (RFC 7239): the `for=` parameter of each element.
    Forwarded,
    /// A header holding one address (an optional port is ignored), which the trusted proxy
    /// overwrites: `X-Real-IP`, `CF-Connecting-IP`, ... Absent, repeated or unparsable:
    /// the peer (the proxy) is the client.
    SingleIp(http::HeaderName),
}

impl ForwardedHeader {
    /// The header's name.
    pub fn name(&self) -> &http::HeaderName {
        match self {
            Self::XForwardedFor => &X_FORWARDED_FOR,
            Self::Forwarded => &http::header::FORWARDED,
            Self::SingleIp(name) => name,
        }
    }
}

impl FromStr for ForwardedHeader {
    type Err = ConfigError;

    /// `x-forwarded-for` or `forwarded` (any case); a single-address header is named with
    /// [`ForwardedHeader::SingleIp`].
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        if name.eq_ignore_ascii_case("x-forwarded-for") {
            Ok(Self::XForwardedFor)
        } else if name.eq_ignore_ascii_case("forwarded") {
            Ok(Self::Forwarded)
        } else {
            Err(ConfigError::invalid(
                "forwarded_header",
                "must be `x-forwarded-for` or `forwarded`",
            ))
        }
    }
}

/// Resolves a request's [`ClientIp`] from its peer and, behind trusted proxies, the one
/// forwarding header they set (see the [module docs](super)).
#[derive(Debug, Clone)]
pub struct ClientIpResolver {
    proxies: TrustedProxies,
    header: ForwardedHeader,
    ipv6_prefix: u8,
}

impl Default for ClientIpResolver {
    fn default() -> Self {
        Self::new(TrustedProxies::none())
    }
}

impl ClientIpResolver {
    /// A resolver that believes `X-Forwarded-For` only from these proxies, grouping IPv6 by
    /// /56.
    pub fn new(proxies: TrustedProxies) -> Self {
        Self {
            proxies,
            header: ForwardedHeader::default(),
            ipv6_prefix: DEFAULT_IPV6_PREFIX,
        }
    }

    /// Reads this forwarding header behind trusted proxies (default
    /// [`ForwardedHeader::XForwardedFor`]); no other forwarding header is ever read.
    pub fn header(mut self, header: ForwardedHeader) -> Self {
        self.header = header;
        self
    }

    /// The same resolver with other trusted proxies (header and IPv6 grouping kept).
    pub fn with_trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.proxies = proxies;
        self
    }

    /// The forwarding header read behind trusted proxies.
    pub fn forwarded_header(&self) -> &ForwardedHeader {
        &self.header
    }

    /// Groups IPv6 clients by this prefix length for rate-limit keys (1 to 128; 128 keeps
    /// every address apart, 64 is one subnet, 56 the usual home allocation, 48 a site).
    pub fn ipv6_prefix(mut self, len: u8) -> Result<Self, ConfigError> {
        if !(1..=128).contains(&len) {
            return Err(ConfigError::invalid(
                "ipv6_prefix",
                "must be between 1 and 128",
            ));
        }
        self.ipv6_prefix = len;
        Ok(self)
    }

    /// The trusted proxies.
    pub fn trusted_proxies(&self) -> &TrustedProxies {
        &self.proxies
    }

    /// The IPv6 grouping prefix length.
    pub fn ipv6_prefix_len(&self) -> u8 {
        self.ipv6_prefix
    }

    /// The client of a request: a [`ClientIp`] already in the extensions, else resolved from
    /// the peer address and (behind trusted proxies) the forwarding headers.
    pub fn resolve(
        &self,
        headers: &http::HeaderMap,
        extensions: &Extensions,
    ) -> Result<ClientIp, ClientIpError> {
        if let Some(ip) = extensions.get::<ClientIp>() {
            return Ok(*ip);
        }
        let peer = self
            .proxies
            .peer(extensions)
            .ok_or(ClientIpError::MissingPeer)?;
        Ok(self.resolve_from_peer(peer.ip(), headers))
    }

    /// Like [`resolve`](Self::resolve), and inserts the result into the extensions when it
    /// was not there.
    pub fn resolve_and_insert<B>(
        &self,
        request: &mut http::Request<B>,
    ) -> Result<ClientIp, ClientIpError> {
        if let Some(ip) = request.extensions().get::<ClientIp>() {
            return Ok(*ip);
        }
        let ip = self.resolve(request.headers(), request.extensions())?;
        request.extensions_mut().insert(ip);
        Ok(ip)
    }

    /// The client behind this peer, given the request's headers.
    #[inline]
    pub fn resolve_from_peer(&self, peer: IpAddr, headers: &http::HeaderMap) -> ClientIp {
        let peer = canonical_ip(peer);
        if self.proxies.is_empty() || !self.proxies.contains(peer) {
            return ClientIp::with_peer(peer, peer, self.ipv6_prefix);
        }
        let lines = headers.get_all(self.header.name());
        if lines.iter().next().is_none() {
            self.warn_other_header(headers);
        }
        let client = match self.header {
            ForwardedHeader::XForwardedFor => {
                self.walk(peer, lines.iter().rev(), Syntax::XForwardedFor)
            }
            ForwardedHeader::Forwarded => self.walk(peer, lines.iter().rev(), Syntax::Forwarded),
            ForwardedHeader::SingleIp(_) => single_ip(peer, lines),
        };
        ClientIp::with_peer(client, peer, self.ipv6_prefix)
    }

    /// A trusted proxy sent no configured header but another forwarding header: the
    /// configuration likely names the wrong one (every client would then share the proxy's
    /// address). Logged once per process.
    #[cold]
    fn warn_other_header(&self, headers: &http::HeaderMap) {
        static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        let other = [&X_FORWARDED_FOR, &http::header::FORWARDED]
            .into_iter()
            .find(|name| *name != self.header.name() && headers.contains_key(*name));
        if let Some(other) = other
            && !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(
                target: "tower_shield::client_ip",
                configured = %self.header.name(),
                received = %other,
                "a trusted proxy sends another forwarding header than the one configured, which is ignored: the client address is the proxy's (see ClientIpResolver::header)"
            );
        }
    }

    /// Walks header lines (given right-most first), returning the first untrusted address,
    /// or the last trusted one parsed when the walk ends early.
    fn walk<'a>(
        &self,
        peer: IpAddr,
        lines: impl Iterator<Item = &'a http::HeaderValue>,
        syntax: Syntax,
    ) -> IpAddr {
        let mut candidate = peer;
        let mut hops = 0usize;
        for line in lines {
            let bytes = line.as_bytes();
            let (tail, cut) = match bytes.len().checked_sub(MAX_FORWARDING_LINE_BYTES) {
                Some(start) if start > 0 => (bytes.get(start..).unwrap_or_default(), true),
                _ => (bytes, false),
            };
            let mut elements = Elements::new(tail, syntax);
            while let Some((element, is_first)) = elements.next_back() {
                hops += 1;
                if hops > MAX_FORWARDING_HOPS || (cut && is_first) {
                    return candidate;
                }
                let parsed = match syntax {
                    Syntax::XForwardedFor => parse_node(element),
                    Syntax::Forwarded => forwarded_for(element).and_then(parse_node_owned),
                };
                let Some(ip) = parsed else {
                    return candidate;
                };
                let ip = canonical_ip(ip);
                candidate = ip;
                if !self.proxies.contains(ip) {
                    return candidate;
                }
            }
        }
        candidate
    }
}

static X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");

#[cfg(test)]
pub(super) mod tests {
    use std::net::SocketAddr;

    use super::*;

    pub(crate) fn resolver() -> ClientIpResolver {
        ClientIpResolver::new(TrustedProxies::new(["10.0.0.0/8", "2001:db8:ffff::/48"]).unwrap())
    }

    fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, http::HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn resolve(peer: &str, pairs: &[(&'static str, &str)]) -> String {
        resolve_with(ForwardedHeader::XForwardedFor, peer, pairs)
    }

    fn resolve_with(header: ForwardedHeader, peer: &str, pairs: &[(&'static str, &str)]) -> String {
        resolver()
            .header(header)
            .resolve_from_peer(peer.parse().unwrap(), &headers(pairs))
            .ip()
            .to_string()
    }

    fn resolve_forwarded(peer: &str, pairs: &[(&'static str, &str)]) -> String {
        resolve_with(ForwardedHeader::Forwarded, peer, pairs)
    }

    #[test]
    fn untrusted_peer_ignores_headers() {
        assert_eq!(
            resolve("203.0.113.5", &[("x-forwarded-for", "1.2.3.4")]),
            "203.0.113.5"
        );
        assert_eq!(
            resolve("203.0.113.5", &[("forwarded", "for=1.2.3.4")]),
            "203.0.113.5"
        );
    }

    #[test]
    fn xff_walks_from_the_right_skipping_trusted_hops() {
        let pairs = [("x-forwarded-for", "6.6.6.6, 198.51.100.1, 10.1.1.1")];
        assert_eq!(resolve("10.0.0.1", &pairs), "198.51.100.1");
        // Several lines are joined in order.
        let pairs = [
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "198.51.100.2:4431"),
            ("x-forwarded-for", "10.2.2.2, 10.3.3.3"),
        ];
        assert_eq!(resolve("10.0.0.1", &pairs), "198.51.100.2");
        // All hops trusted: the left-most one parsed.
        assert_eq!(
            resolve("10.0.0.1", &[("x-forwarded-for", "10.9.9.9, 10.8.8.8")]),
            "10.9.9.9"
        );
        // No header: the peer.
        assert_eq!(resolve("10.0.0.1", &[]), "10.0.0.1");
    }

    #[test]
    fn unparsable_entry_ends_the_walk() {
        let pairs = [("x-forwarded-for", "1.2.3.4, garbage, 10.1.1.1")];
        assert_eq!(resolve("10.0.0.1", &pairs), "10.1.1.1");
        let pairs = [("x-forwarded-for", "1.2.3.4,,")];
        assert_eq!(resolve("10.0.0.1", &pairs), "10.0.0.1");
        let pairs = [("forwarded", "for=1.2.3.4, for=unknown, for=10.7.7.7")];
        assert_eq!(resolve_forwarded("10.0.0.1", &pairs), "10.7.7.7");
        let pairs = [("forwarded", "for=_hidden")];
        assert_eq!(resolve_forwarded("10.0.0.1", &pairs), "10.0.0.1");
    }

    #[test]
    fn forwarded_mode_parses_rfc7239() {
        let pairs = [
            ("x-forwarded-for", "9.9.9.9"),
            (
                "forwarded",
                r#"for=192.0.2.60;proto=http;by=203.0.113.43, For="[2001:db8:cafe::17]:4711""#,
            ),
        ];
        assert_eq!(resolve_forwarded("10.0.0.1", &pairs), "2001:db8:cafe::17");
        let pairs = [(
            "forwarded",
            r#"for="192.0.2.61:8080";proto=https, for=10.0.0.9"#,
        )];
        assert_eq!(resolve_forwarded("10.0.0.1", &pairs), "192.0.2.61");
        // A comma inside a quoted string does not split elements.
        let pairs = [("forwarded", r#"for="1.1.1.1, for=2.2.2.2", for=10.0.0.9"#)];
        assert_eq!(resolve_forwarded("10.0.0.1", &pairs), "10.0.0.9");
        // Two `for` in one element: unparsable.
        let pairs = [("forwarded", "for=1.1.1.1;for=2.2.2.2")];
        assert_eq!(resolve_forwarded("10.0.0.1", &pairs), "10.0.0.1");
    }

    #[test]
    fn only_the_configured_header_is_read() {
        // The proxy appends the real client to X-Forwarded-For and passes the client's own
        // `Forwarded` through: whatever that says, the client is the XFF address.
        for spoofed in ["for=1.1.1.1", "for=2.2.2.2", "for=\"[2001:db8::9]\""] {
            let pairs = [("forwarded", spoofed), ("x-forwarded-for", "198.51.100.20")];
            assert_eq!(resolve("10.0.0.1", &pairs), "198.51.100.20");
        }
        // A `Forwarded` alone changes nothing in X-Forwarded-For mode.
        assert_eq!(
            resolve("10.0.0.1", &[("forwarded", "for=1.1.1.1")]),
            "10.0.0.1"
        );
        // The mirror case: in `Forwarded` mode, a client's X-Forwarded-For is never read.
        for spoofed in ["1.1.1.1", "2.2.2.2, 3.3.3.3"] {
            let pairs = [
                ("x-forwarded-for", spoofed),
                ("forwarded", "for=198.51.100.21"),
            ];
            assert_eq!(resolve_forwarded("10.0.0.1", &pairs), "198.51.100.21");
        }
        assert_eq!(
            resolve_forwarded("10.0.0.1", &[("x-forwarded-for", "1.1.1.1")]),
            "10.0.0.1"
        );
    }

    #[test]
    fn single_ip_header() {
        let real_ip = || ForwardedHeader::SingleIp(http::HeaderName::from_static("x-real-ip"));
        let resolve_real =
            |pairs: &[(&'static str, &str)]| resolve_with(real_ip(), "10.0.0.1", pairs);
        assert_eq!(
            resolve_real(&[("x-real-ip", "198.51.100.30")]),
            "198.51.100.30"
        );
        assert_eq!(
            resolve_real(&[("x-real-ip", "[2001:db8::30]:443")]),
            "2001:db8::30"
        );
        assert_eq!(
            resolve_real(&[("x-real-ip", "198.51.100.31:8080")]),
            "198.51.100.31"
        );
        assert_eq!(
            resolve_real(&[("x-real-ip", "::ffff:198.51.100.32")]),
            "198.51.100.32"
        );
        // Absent, repeated, a list, garbage, oversized: the peer.
        for pairs in [
            &[][..],
            &[("x-real-ip", "1.1.1.1"), ("x-real-ip", "2.2.2.2")][..],
            &[("x-real-ip", "1.1.1.1, 2.2.2.2")][..],
            &[("x-real-ip", "unknown")][..],
            &[("x-forwarded-for", "1.1.1.1"), ("forwarded", "for=2.2.2.2")][..],
        ] {
            assert_eq!(resolve_real(pairs), "10.0.0.1", "{pairs:?}");
        }
        let long = "1".repeat(10_000);
        assert_eq!(resolve_real(&[("x-real-ip", &long)]), "10.0.0.1");
        // Behind an untrusted peer: ignored.
        assert_eq!(
            resolve_with(real_ip(), "203.0.113.5", &[("x-real-ip", "1.1.1.1")]),
            "203.0.113.5"
        );
    }

    #[test]
    fn header_names_parse_strictly() {
        assert_eq!(
            "X-Forwarded-For".parse::<ForwardedHeader>().unwrap(),
            ForwardedHeader::XForwardedFor
        );
        assert_eq!(
            "forwarded".parse::<ForwardedHeader>().unwrap(),
            ForwardedHeader::Forwarded
        );
        for bad in [
            "",
            "x-real-ip",
            "x-forwarded-for ",
            "forwarded,x-forwarded-for",
        ] {
            assert!(bad.parse::<ForwardedHeader>().is_err(), "{bad:?}");
        }
        let r = resolver()
            .header(ForwardedHeader::Forwarded)
            .ipv6_prefix(64)
            .unwrap();
        let r = r.with_trusted_proxies(TrustedProxies::none());
        assert_eq!(r.forwarded_header(), &ForwardedHeader::Forwarded);
        assert_eq!(r.ipv6_prefix_len(), 64);
    }

    #[test]
    fn ipv4_mapped_and_ipv6_grouping() {
        let ip =
            resolver().resolve_from_peer("::ffff:198.51.100.9".parse().unwrap(), &headers(&[]));
        assert_eq!(ip.ip().to_string(), "198.51.100.9");
        assert_eq!(ip.group().to_string(), "198.51.100.9");
        // Mapped trusted proxy.
        assert_eq!(
            resolve(
                "::ffff:10.0.0.1",
                &[("x-forwarded-for", "::ffff:198.51.100.3")]
            ),
            "198.51.100.3"
        );
        let a = resolver().resolve_from_peer("2001:db8:1:ab01::1".parse().unwrap(), &headers(&[]));
        let b =
            resolver().resolve_from_peer("2001:db8:1:abff:ffff::9".parse().unwrap(), &headers(&[]));
        let c = resolver().resolve_from_peer("2001:db8:1:ac00::1".parse().unwrap(), &headers(&[]));
        assert_eq!(a.group(), b.group());
        assert_ne!(a.group(), c.group());
        assert_eq!(a.group().to_string(), "2001:db8:1:ab00::");
        assert_eq!(a.group_net().to_string(), "2001:db8:1:ab00::/56");
        assert_ne!(a.ip(), b.ip());
        let per64 = resolver().ipv6_prefix(64).unwrap();
        let a = per64.resolve_from_peer("2001:db8:1:ab01::1".parse().unwrap(), &headers(&[]));
        let b = per64.resolve_from_peer("2001:db8:1:ab02::1".parse().unwrap(), &headers(&[]));
        assert_ne!(a.group(), b.group());
        assert!(resolver().ipv6_prefix(0).is_err());
        assert!(resolver().ipv6_prefix(129).is_err());
    }

    #[test]
    fn oversized_lines_and_many_hops_are_bounded() {
        // A huge client-sent prefix is cut; the proxy-appended tail still resolves.
        let value = format!("{}1.2.3.4, 198.51.100.4", "9.9.9.9, ".repeat(10_000));
        assert_eq!(
            resolve("10.0.0.1", &[("x-forwarded-for", &value)]),
            "198.51.100.4"
        );
        // A line whose tail is all trusted hops: the cut entry ends the walk.
        let value = format!("{}10.0.0.5", "10.0.0.7,".repeat(500));
        let got = resolve("10.0.0.1", &[("x-forwarded-for", &value)]);
        assert!(got.starts_with("10.0.0."), "{got}");
        // Many header lines: at most MAX_FORWARDING_HOPS examined.
        let lines: Vec<(&'static str, &str)> =
            (0..1000).map(|_| ("x-forwarded-for", "10.1.1.1")).collect();
        assert_eq!(resolve("10.0.0.1", &lines), "10.1.1.1");
    }

    #[test]
    fn resolve_reads_extensions_and_refuses_missing_peer() {
        let r = resolver();
        let mut request = http::Request::new(());
        assert_eq!(
            r.resolve_and_insert(&mut request),
            Err(ClientIpError::MissingPeer)
        );
        request
            .extensions_mut()
            .insert("192.0.2.1:1234".parse::<SocketAddr>().unwrap());
        let ip = r.resolve_and_insert(&mut request).unwrap();
        assert_eq!(request.extensions().get::<ClientIp>(), Some(&ip));
        assert!(!ip.is_forwarded());
    }

    mod hostile {
        use super::*;
        use proptest::prelude::*;

        fn hostile_value() -> impl Strategy<Value = Vec<u8>> {
            prop_oneof![
                proptest::collection::vec(any::<u8>(), 0..200),
                "[0-9a-f:.\\[\\]\", ;=_]{0,300}".prop_map(String::into_bytes),
                (0usize..20_000).prop_map(|n| "1.2.3.4,".repeat(n / 8).into_bytes()),
                (0usize..3_000).prop_map(|n| "\"".repeat(n).into_bytes()),
            ]
        }

        proptest! {
            #[test]
            fn never_panics_and_untrusted_peer_wins(
                values in proptest::collection::vec(hostile_value(), 0..8),
                forwarded in any::<bool>(),
            ) {
                let mut map = http::HeaderMap::new();
                let name = if forwarded { "forwarded" } else { "x-forwarded-for" };
                for value in &values {
                    if let Ok(v) = http::HeaderValue::from_bytes(value) {
                        map.append(name, v);
                    }
                }
                let r = resolver().header(if forwarded {
                    ForwardedHeader::Forwarded
                } else {
                    ForwardedHeader::XForwardedFor
                });
                let untrusted: IpAddr = "203.0.113.77".parse().unwrap();
                prop_assert_eq!(r.resolve_from_peer(untrusted, &map).ip(), untrusted);
                let trusted: IpAddr = "10.0.0.1".parse().unwrap();
                let got = r.resolve_from_peer(trusted, &map);
                prop_assert_eq!(got.peer(), trusted);
            }
        }
    }
}
