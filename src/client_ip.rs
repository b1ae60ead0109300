//! The client's address: the TCP peer, or what a trusted proxy says it is.
//!
//! [`ClientIp`] is the crate's answer to "who is this client?", shared by the rate limiter,
//! handlers and logs. [`ClientIpResolver`] finds it:
//!
//! 1. A `ClientIp` already in the request extensions is kept (a layer further out resolved it).
//! 2. Otherwise the TCP peer comes from [`peer_addr`]: a `SocketAddr` extension (plain hyper)
//!    or axum's `ConnectInfo<SocketAddr>` (feature `axum`). No peer → [`ClientIpError::MissingPeer`]:
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

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use http::Extensions;
use ipnet::IpNet;

use crate::error::ConfigError;

/// The networks whose forwarding headers (the [`ForwardedHeader`] a resolver is told to read,
/// and `X-Forwarded-Proto`) are believed.
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

/// The longest part of one forwarding header line that is read (the right-most bytes).
pub const MAX_FORWARDING_LINE_BYTES: usize = 1024;

/// The most forwarding entries examined, over all header lines.
pub const MAX_FORWARDING_HOPS: usize = 16;

/// The default prefix length IPv6 clients are grouped by for rate-limit keys.
pub const DEFAULT_IPV6_PREFIX: u8 = 56;

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
/// forwarding header they set (see the [module docs](self)).
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
        let peer = peer_addr(extensions).ok_or(ClientIpError::MissingPeer)?;
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

/// The address of a single-address header when it appears exactly once and parses, else the
/// peer.
fn single_ip(peer: IpAddr, lines: http::header::GetAll<'_, http::HeaderValue>) -> IpAddr {
    let mut lines = lines.iter();
    match (lines.next(), lines.next()) {
        (Some(line), None) => parse_node(line.as_bytes()).map_or(peer, canonical_ip),
        _ => peer,
    }
}

static X_FORWARDED_FOR: http::HeaderName = http::HeaderName::from_static("x-forwarded-for");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Syntax {
    XForwardedFor,
    Forwarded,
}

/// The comma-separated elements of one header line, yielded right to left. For `Forwarded`,
/// commas inside quoted strings do not split.
struct Elements<'a> {
    rest: &'a [u8],
    syntax: Syntax,
    /// For `Forwarded`: the element boundaries, found by a forward scan (bounded by the line cap).
    bounds: Vec<(usize, usize)>,
    done: bool,
}

impl<'a> Elements<'a> {
    fn new(line: &'a [u8], syntax: Syntax) -> Self {
        let mut bounds = Vec::new();
        if syntax == Syntax::Forwarded {
            let mut start = 0;
            let mut in_quotes = false;
            let mut escaped = false;
            for (i, &b) in line.iter().enumerate() {
                if in_quotes {
                    if escaped {
                        escaped = false;
                    } else if b == b'\\' {
                        escaped = true;
                    } else if b == b'"' {
                        in_quotes = false;
                    }
                } else if b == b'"' {
                    in_quotes = true;
                } else if b == b',' {
                    bounds.push((start, i));
                    start = i + 1;
                }
            }
            // An unterminated quote leaves a last element that will not parse.
            bounds.push((start, line.len()));
        }
        Self {
            rest: line,
            syntax,
            bounds,
            done: false,
        }
    }

    /// The next element from the right, and whether it is the left-most one of the line.
    fn next_back(&mut self) -> Option<(&'a [u8], bool)> {
        if self.done {
            return None;
        }
        match self.syntax {
            Syntax::XForwardedFor => match self.rest.iter().rposition(|&b| b == b',') {
                Some(i) => {
                    let element = self.rest.get(i + 1..).unwrap_or_default();
                    self.rest = self.rest.get(..i).unwrap_or_default();
                    Some((element, false))
                }
                None => {
                    self.done = true;
                    Some((self.rest, true))
                }
            },
            Syntax::Forwarded => {
                let (start, end) = self.bounds.pop()?;
                let is_first = self.bounds.is_empty();
                if is_first {
                    self.done = true;
                }
                Some((self.rest.get(start..end).unwrap_or_default(), is_first))
            }
        }
    }
}

/// The `for=` value of one `Forwarded` element (unquoted), if it has exactly one.
fn forwarded_for(element: &[u8]) -> Option<Vec<u8>> {
    let mut found = None;
    let mut i = 0;
    let len = element.len();
    while i < len {
        // name
        let name_start = i;
        while i < len && element.get(i).is_some_and(|&b| b != b'=' && b != b';') {
            i += 1;
        }
        let name = trim(element.get(name_start..i)?);
        if element.get(i) != Some(&b'=') {
            return None;
        }
        i += 1;
        // skip optional whitespace before the value
        while element.get(i).is_some_and(|b| *b == b' ' || *b == b'\t') {
            i += 1;
        }
        let mut value = Vec::new();
        if element.get(i) == Some(&b'"') {
            i += 1;
            let mut closed = false;
            while let Some(&b) = element.get(i) {
                i += 1;
                match b {
                    b'\\' => {
                        value.push(*element.get(i)?);
                        i += 1;
                    }
                    b'"' => {
                        closed = true;
                        break;
                    }
                    b => value.push(b),
                }
            }
            if !closed {
                return None;
            }
            while element.get(i).is_some_and(|b| *b == b' ' || *b == b'\t') {
                i += 1;
            }
        } else {
            while let Some(&b) = element.get(i) {
                if b == b';' {
                    break;
                }
                value.push(b);
                i += 1;
            }
            let trimmed = trim(&value).to_vec();
            value = trimmed;
        }
        match element.get(i) {
            None => {}
            Some(b';') => i += 1,
            Some(_) => return None,
        }
        if name.eq_ignore_ascii_case(b"for") {
            if found.is_some() {
                return None;
            }
            found = Some(value);
        }
    }
    found
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| *b != b' ' && *b != b'\t')
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| *b != b' ' && *b != b'\t')
        .map_or(start, |i| i + 1);
    bytes.get(start..end).unwrap_or_default()
}

fn parse_node_owned(node: Vec<u8>) -> Option<IpAddr> {
    parse_node(&node)
}

/// A node (`192.0.2.1`, `192.0.2.1:80`, `2001:db8::1`, `[2001:db8::1]:80`); `unknown`,
/// obfuscated identifiers and anything else give `None`.
fn parse_node(node: &[u8]) -> Option<IpAddr> {
    let node = std::str::from_utf8(trim(node)).ok()?;
    if node.is_empty() || node.len() > 64 {
        return None;
    }
    if let Some(rest) = node.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || valid_port(after.strip_prefix(':')?)) {
            return None;
        }
        return inside.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6);
    }
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    let (host, port) = node.split_once(':')?;
    if !valid_port(port) {
        return None;
    }
    host.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4)
}

fn valid_port(port: &str) -> bool {
    // A number, or an RFC 7239 obfuscated port (`_abc`): ignored either way.
    !port.is_empty()
        && port.len() <= 16
        && (port.bytes().all(|b| b.is_ascii_digit())
            || (port.starts_with('_')
                && port
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')))
}

/// A layer that resolves the [`ClientIp`] of every request and inserts it into the
/// extensions, for handlers and logs, when no rate limiter does it already.
///
/// A request without a peer address is refused with a 403 problem (deny by default; see
/// [`ClientIpError::MissingPeer`]).
///
/// ```
/// use std::net::SocketAddr;
/// use http::{Request, Response};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
/// use tower_shield::client_ip::{ClientIp, ClientIpLayer, ClientIpResolver, TrustedProxies};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let resolver = ClientIpResolver::new(TrustedProxies::new(["10.0.0.0/8"]).unwrap());
/// let svc = ServiceBuilder::new()
///     .layer(ClientIpLayer::new(resolver))
///     .service(service_fn(|req: Request<String>| async move {
///         let ip = req.extensions().get::<ClientIp>().unwrap().ip();
///         Ok::<_, std::convert::Infallible>(Response::new(ip.to_string()))
///     }));
/// let mut req = Request::builder()
///     .header("x-forwarded-for", "198.51.100.7")
///     .body(String::new())
///     .unwrap();
/// req.extensions_mut().insert("10.1.2.3:9000".parse::<SocketAddr>().unwrap());
/// let response = svc.oneshot(req).await.unwrap();
/// assert_eq!(response.status(), 200);
/// # }
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct ClientIpLayer {
    resolver: std::sync::Arc<ClientIpResolver>,
}

impl ClientIpLayer {
    /// A layer resolving with this resolver.
    pub fn new(resolver: ClientIpResolver) -> Self {
        Self {
            resolver: std::sync::Arc::new(resolver),
        }
    }
}

impl<S> tower_layer::Layer<S> for ClientIpLayer {
    type Service = ClientIpService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientIpService {
            inner,
            resolver: self.resolver.clone(),
        }
    }
}

/// The service of a [`ClientIpLayer`].
#[derive(Debug, Clone)]
pub struct ClientIpService<S> {
    inner: S,
    resolver: std::sync::Arc<ClientIpResolver>,
}

impl<S> ClientIpService<S> {
    crate::inner_service_accessors!();
}

impl<S, ReqBody, ResBody> tower_service::Service<http::Request<ReqBody>> for ClientIpService<S>
where
    S: tower_service::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
{
    type Response = http::Response<crate::body::ShieldBody<ResBody>>;
    type Error = S::Error;
    type Future = ClientIpFuture<S::Future, ResBody>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<ReqBody>) -> Self::Future {
        match self.resolver.resolve_and_insert(&mut req) {
            Ok(_) => ClientIpFuture {
                kind: ClientIpFutureKind::Inner {
                    fut: self.inner.call(req),
                },
            },
            Err(ClientIpError::MissingPeer) => {
                warn_missing_peer();
                ClientIpFuture {
                    kind: ClientIpFutureKind::Refused {
                        response: Some(
                            crate::refusal::Refusal::new(&crate::refusal::ProblemType::FORBIDDEN)
                                .for_request(&req),
                        ),
                    },
                }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`ClientIpService`].
    pub struct ClientIpFuture<F, B> {
        #[pin]
        kind: ClientIpFutureKind<F, B>,
    }
}

pin_project_lite::pin_project! {
    #[project = ClientIpFutureProj]
    enum ClientIpFutureKind<F, B> {
        Inner { #[pin] fut: F },
        Refused { response: Option<http::Response<crate::body::ShieldBody<B>>> },
    }
}

impl<F, B> std::fmt::Debug for ClientIpFuture<F, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientIpFuture")
    }
}

impl<F, B, E> std::future::Future for ClientIpFuture<F, B>
where
    F: std::future::Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<crate::body::ShieldBody<B>>, E>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match self.project().kind.project() {
            ClientIpFutureProj::Inner { fut } => {
                fut.poll(cx).map(|r| r.map(crate::body::ShieldBody::wrap))
            }
            ClientIpFutureProj::Refused { response } => match response.take() {
                Some(response) => std::task::Poll::Ready(Ok(response)),
                None => std::task::Poll::Pending,
            },
        }
    }
}

#[cfg(feature = "axum")]
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientIp {
    type Rejection = http::Response<axum::body::Body>;

    /// The `ClientIp` a layer inserted, else the TCP peer (forwarding headers are only read
    /// by a layer configured with trusted proxies). No peer: a 403 problem.
    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        if let Some(ip) = parts.extensions.get::<Self>() {
            return Ok(*ip);
        }
        match peer_addr(&parts.extensions) {
            Some(peer) => Ok(Self::from_peer(peer.ip(), DEFAULT_IPV6_PREFIX)),
            None => {
                warn_missing_peer();
                Err(
                    crate::refusal::Refusal::new(&crate::refusal::ProblemType::FORBIDDEN)
                        .build(&parts.headers, &parts.extensions),
                )
            }
        }
    }
}

/// Logs, once per process, that requests arrive without a peer address.
pub(crate) fn warn_missing_peer() {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!(
            target: "tower_shield::client_ip",
            "requests carry no peer address; they are refused (insert a SocketAddr extension, or serve axum with into_make_service_with_connect_info)"
        );
    }
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

    fn resolver() -> ClientIpResolver {
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

    #[tokio::test]
    async fn layer_inserts_or_refuses() {
        use tower::{Layer, ServiceExt};
        let svc = ClientIpLayer::new(resolver()).layer(tower::service_fn(
            |req: http::Request<()>| async move {
                let ip = req.extensions().get::<ClientIp>().copied();
                Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                    bytes::Bytes::from(format!("{ip:?}")),
                )))
            },
        ));
        let response = svc.clone().oneshot(http::Request::new(())).await.unwrap();
        assert_eq!(response.status(), http::StatusCode::FORBIDDEN);
        let mut req = http::Request::new(());
        req.extensions_mut()
            .insert("192.0.2.5:1".parse::<SocketAddr>().unwrap());
        let response = svc.oneshot(req).await.unwrap();
        assert_eq!(response.status(), http::StatusCode::OK);
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
