//! Origins: parsing and normalising the configured allowlist, and matching a request's `Origin`.
//!
//! A configured origin is parsed into `(scheme, host, port)` and serialised back the way a
//! browser serialises an origin (the [WHATWG URL] "ASCII serialization of an origin"):
//! lower-case scheme and host, no default port, no trailing slash, IPv6 literals compressed.
//! A request's `Origin` header is then compared byte for byte with that normalised set: no
//! substring, suffix, case folding or regular expression is ever involved, so
//! `https://example.com.evil.net` and `https://evilexample.com` can never match
//! `https://example.com`.
//!
//! [WHATWG URL]: https://url.spec.whatwg.org/#origin

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// The longest `Origin` header value looked at; longer ones are never allowed.
///
/// A DNS name is at most 253 bytes; with a scheme and a port an origin stays well below this.
pub const MAX_ORIGIN_LEN: usize = 512;

/// Why a configured origin was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OriginError {
    Empty,
    TooLong,
    Null,
    Wildcard,
    NoScheme,
    BadScheme,
    Userinfo,
    Path,
    Query,
    Fragment,
    EmptyHost,
    BadHost,
    NonAsciiHost,
    TrailingDot,
    BadIpv4,
    BadIpv6,
    BadPort,
    Whitespace,
}

impl fmt::Display for OriginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Empty => "an origin is empty",
            Self::TooLong => "an origin is longer than 512 bytes",
            Self::Null => "`null` is not an origin that can be allowed (sandboxed documents and file: URLs all send it)",
            Self::Wildcard => "`*` is not an origin; use `dangerous_allow_any_origin()` for public read-only APIs",
            Self::NoScheme => "an origin must be `scheme://host[:port]`",
            Self::BadScheme => "the scheme is not valid",
            Self::Userinfo => "an origin cannot contain userinfo (`user@`)",
            Self::Path => "an origin cannot contain a path",
            Self::Query => "an origin cannot contain a query",
            Self::Fragment => "an origin cannot contain a fragment",
            Self::EmptyHost => "the host is empty",
            Self::BadHost => "the host contains characters a browser never sends",
            Self::NonAsciiHost => "the host is not ASCII; write internationalised names in punycode (`xn--`)",
            Self::TrailingDot => "the host ends with a dot; browsers send `example.com.` as a different origin from `example.com`, list it without the dot",
            Self::BadIpv4 => "the host looks like an IPv4 address but is not one in dotted-decimal form",
            Self::BadIpv6 => "the IPv6 address in brackets is not valid",
            Self::BadPort => "the port is not a number between 1 and 65535",
            Self::Whitespace => "an origin cannot contain whitespace or control characters",
        })
    }
}

/// The default port of a scheme, dropped by normalisation.
fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        "ftp" => Some(21),
        _ => None,
    }
}

/// A host, as written in an origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Host<'a> {
    /// A DNS name or an IPv4 address, as written (not yet lower-cased).
    Name(&'a str),
    /// An IPv6 address (written in brackets).
    Ipv6(Ipv6Addr, &'a str),
}

/// The pieces of an origin as written.
#[derive(Debug, Clone, Copy)]
struct Pieces<'a> {
    scheme: &'a str,
    host: Host<'a>,
    /// The port as written, if any.
    port_text: Option<&'a str>,
    port: Option<u16>,
    trailing_slash: bool,
}

/// Splits `scheme://host[:port][/]`, refusing anything else.
fn split(input: &str) -> Result<Pieces<'_>, OriginError> {
    if input.is_empty() {
        return Err(OriginError::Empty);
    }
    if input.len() > MAX_ORIGIN_LEN {
        return Err(OriginError::TooLong);
    }
    if input == "*" {
        return Err(OriginError::Wildcard);
    }
    if input.eq_ignore_ascii_case("null") {
        return Err(OriginError::Null);
    }
    if input
        .bytes()
        .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(OriginError::Whitespace);
    }
    let Some((scheme, rest)) = input.split_once("://") else {
        return Err(OriginError::NoScheme);
    };
    let mut scheme_bytes = scheme.bytes();
    let scheme_ok = scheme_bytes.next().is_some_and(|b| b.is_ascii_alphabetic())
        && scheme_bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return Err(OriginError::BadScheme);
    }
    if rest.contains('#') {
        return Err(OriginError::Fragment);
    }
    if rest.contains('?') {
        return Err(OriginError::Query);
    }
    let (authority, trailing_slash) = match rest.find('/') {
        None => (rest, false),
        Some(at) if at + 1 == rest.len() => (rest.get(..at).unwrap_or_default(), true),
        Some(_) => return Err(OriginError::Path),
    };
    if authority.contains('@') {
        return Err(OriginError::Userinfo);
    }
    let (host, port_text) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((address, after)) = bracketed.split_once(']') else {
            return Err(OriginError::BadIpv6);
        };
        let port_text = match after {
            "" => None,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(port),
                None => return Err(OriginError::BadIpv6),
            },
        };
        let parsed: Ipv6Addr = address.parse().map_err(|_| OriginError::BadIpv6)?;
        (Host::Ipv6(parsed, address), port_text)
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (Host::Name(host), Some(port)),
            None => (Host::Name(authority), None),
        }
    };
    let port = match port_text {
        None => None,
        Some(text) => Some(parse_port(text).ok_or(OriginError::BadPort)?),
    };
    if let Host::Name(name) = host {
        check_name(name)?;
    }
    Ok(Pieces {
        scheme,
        host,
        port_text,
        port,
        trailing_slash,
    })
}

/// A port: 1 to 5 ASCII digits, 1..=65535.
fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match text.parse::<u16>() {
        Ok(0) | Err(_) => None,
        Ok(port) => Some(port),
    }
}

/// A DNS name or an IPv4 address in an origin.
fn check_name(name: &str) -> Result<(), OriginError> {
    if name.is_empty() {
        return Err(OriginError::EmptyHost);
    }
    if !name.is_ascii() {
        return Err(OriginError::NonAsciiHost);
    }
    if name.ends_with('.') {
        return Err(OriginError::TrailingDot);
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        return Err(OriginError::BadHost);
    }
    if name.split('.').any(str::is_empty) {
        return Err(OriginError::BadHost);
    }
    // Browsers read a host whose last label is numeric as an IPv4 address (also in octal or
    // hexadecimal forms) and send it in dotted-decimal; only that form can match.
    let last = name.rsplit('.').next().unwrap_or_default();
    let numeric_last = !last.is_empty()
        && (last.bytes().all(|b| b.is_ascii_digit())
            || ((last.starts_with("0x") || last.starts_with("0X"))
                && last.bytes().skip(2).all(|b| b.is_ascii_hexdigit())));
    if numeric_last && name.parse::<Ipv4Addr>().is_err() {
        return Err(OriginError::BadIpv4);
    }
    Ok(())
}

/// Serialises an IPv6 address as the WHATWG URL standard does (lower-case hex, the first
/// longest run of two or more zero pieces compressed, no embedded IPv4 form).
pub(crate) fn serialize_ipv6(address: Ipv6Addr, out: &mut String) {
    use fmt::Write;
    let pieces = address.segments();
    let (mut best_start, mut best_len) = (usize::MAX, 1usize);
    let mut index = 0;
    while index < pieces.len() {
        if pieces.get(index) == Some(&0) {
            let start = index;
            while pieces.get(index) == Some(&0) {
                index += 1;
            }
            if index - start > best_len {
                best_start = start;
                best_len = index - start;
            }
        } else {
            index += 1;
        }
    }
    let mut ignore_zero = false;
    for (i, piece) in pieces.iter().enumerate() {
        if ignore_zero && *piece == 0 {
            continue;
        }
        ignore_zero = false;
        if i == best_start {
            out.push_str(if i == 0 { "::" } else { ":" });
            ignore_zero = true;
            continue;
        }
        let _ = write!(out, "{piece:x}");
        if i != pieces.len() - 1 {
            out.push(':');
        }
    }
}

/// Parses a configured origin and returns its normalised (browser) serialisation.
pub(crate) fn normalize(input: &str) -> Result<String, OriginError> {
    let pieces = split(input)?;
    let scheme = pieces.scheme.to_ascii_lowercase();
    let mut out = String::with_capacity(input.len());
    out.push_str(&scheme);
    out.push_str("://");
    match pieces.host {
        Host::Name(name) => out.push_str(&name.to_ascii_lowercase()),
        Host::Ipv6(address, _) => {
            out.push('[');
            serialize_ipv6(address, &mut out);
            out.push(']');
        }
    }
    if let Some(port) = pieces.port
        && default_port(&scheme) != Some(port)
    {
        out.push(':');
        out.push_str(&port.to_string());
    }
    Ok(out)
}

/// A request's `Origin`, parsed: what a custom origin predicate is given.
///
/// Only an origin already in the form a browser sends reaches a predicate: lower-case scheme
/// and host, no default or zero-padded port, no trailing slash, no path, no userinfo, no
/// trailing dot, at most [`MAX_ORIGIN_LEN`] bytes. `null`, non-UTF-8 values and anything
/// else never do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestOrigin<'a> {
    origin: &'a str,
    scheme: &'a str,
    host: &'a str,
    port: Option<u16>,
}

impl<'a> RequestOrigin<'a> {
    /// Parses a request's origin, accepting only the canonical form a browser sends.
    pub fn parse(origin: &'a str) -> Option<Self> {
        let pieces = split(origin).ok()?;
        if pieces.trailing_slash {
            return None;
        }
        let scheme = pieces.scheme;
        if scheme.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        let host = match pieces.host {
            Host::Name(name) => {
                if name.bytes().any(|b| b.is_ascii_uppercase()) {
                    return None;
                }
                name
            }
            Host::Ipv6(address, text) => {
                let mut canonical = String::with_capacity(text.len());
                serialize_ipv6(address, &mut canonical);
                if canonical != text {
                    return None;
                }
                text
            }
        };
        if let (Some(port), Some(text)) = (pieces.port, pieces.port_text)
            && (text.starts_with('0') || default_port(scheme) == Some(port))
        {
            return None;
        }
        Some(Self {
            origin,
            scheme,
            host,
            port: pieces.port,
        })
    }

    /// The whole origin, as sent.
    pub fn as_str(&self) -> &'a str {
        self.origin
    }

    /// The scheme, e.g. `https`.
    pub fn scheme(&self) -> &'a str {
        self.scheme
    }

    /// The host: a DNS name, a dotted-decimal IPv4 address, or an IPv6 address without its
    /// brackets.
    pub fn host(&self) -> &'a str {
        self.host
    }

    /// The port, when it is not the scheme's default.
    pub fn port(&self) -> Option<u16> {
        self.port
    }
}

/// Whether a request origin is `http://localhost`, `http://127.0.0.1` or `http://[::1]`, with
/// any port or none, in the exact form a browser sends.
pub(crate) fn is_localhost_any_port(origin: &[u8]) -> bool {
    let rest = if let Some(rest) = origin.strip_prefix(b"http://localhost") {
        rest
    } else if let Some(rest) = origin.strip_prefix(b"http://127.0.0.1") {
        rest
    } else if let Some(rest) = origin.strip_prefix(b"http://[::1]") {
        rest
    } else {
        return false;
    };
    match rest.split_first() {
        None => true,
        Some((b':', port)) => {
            !port.starts_with(b"0")
                && std::str::from_utf8(port)
                    .ok()
                    .and_then(parse_port)
                    .is_some_and(|p| p != 80)
        }
        Some(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_case_default_port_and_trailing_slash() {
        for (input, expected) in [
            ("https://example.com", "https://example.com"),
            ("HTTPS://Example.COM", "https://example.com"),
            ("https://example.com:443", "https://example.com"),
            ("http://example.com:80/", "http://example.com"),
            ("https://example.com/", "https://example.com"),
            ("https://example.com:8443", "https://example.com:8443"),
            ("http://localhost:05173", "http://localhost:5173"),
            ("http://127.0.0.1:3000", "http://127.0.0.1:3000"),
            ("http://[::1]:8080", "http://[::1]:8080"),
            ("http://[0:0:0:0:0:0:0:1]", "http://[::1]"),
            ("http://[2001:DB8::0:1]", "http://[2001:db8::1]"),
            (
                "http://[2001:db8:0:0:1:0:0:1]",
                "http://[2001:db8::1:0:0:1]",
            ),
            ("http://[::ffff:1.2.3.4]", "http://[::ffff:102:304]"),
            ("http://[1:2:3:4:5:6:7:8]", "http://[1:2:3:4:5:6:7:8]"),
            ("http://[1:0:3:4:5:6:7:8]", "http://[1:0:3:4:5:6:7:8]"),
            ("http://[::]", "http://[::]"),
            ("chrome-extension://abcdef", "chrome-extension://abcdef"),
            ("wss://a.example:443", "wss://a.example"),
        ] {
            assert_eq!(normalize(input).as_deref(), Ok(expected), "{input}");
        }
    }

    #[test]
    fn refuses_what_is_not_an_origin() {
        for (input, error) in [
            ("", OriginError::Empty),
            ("*", OriginError::Wildcard),
            ("null", OriginError::Null),
            ("NULL", OriginError::Null),
            ("example.com", OriginError::NoScheme),
            ("//example.com", OriginError::NoScheme),
            ("1http://example.com", OriginError::BadScheme),
            ("https://user@example.com", OriginError::Userinfo),
            ("https://user:pw@example.com", OriginError::Userinfo),
            ("https://example.com/path", OriginError::Path),
            ("https://example.com//", OriginError::Path),
            ("https://example.com?q=1", OriginError::Query),
            ("https://example.com/#x", OriginError::Fragment),
            ("https://", OriginError::EmptyHost),
            ("https://:443", OriginError::EmptyHost),
            ("https://exa mple.com", OriginError::Whitespace),
            (" https://example.com", OriginError::Whitespace),
            ("https://example.com\r\n", OriginError::Whitespace),
            ("https://exämple.com", OriginError::NonAsciiHost),
            ("https://example.com.", OriginError::TrailingDot),
            ("https://a..example", OriginError::BadHost),
            ("https://exa*mple.com", OriginError::BadHost),
            ("https://*.example.com", OriginError::BadHost),
            ("https://example.com:", OriginError::BadPort),
            ("https://example.com:0", OriginError::BadPort),
            ("https://example.com:65536", OriginError::BadPort),
            ("https://example.com:+80", OriginError::BadPort),
            ("https://example.com:123456", OriginError::BadPort),
            ("https://[::1", OriginError::BadIpv6),
            ("https://[zz::1]", OriginError::BadIpv6),
            ("https://[::1]x", OriginError::BadIpv6),
            ("http://127.0.0.01", OriginError::BadIpv4),
            ("http://0x7f.1", OriginError::BadIpv4),
            ("http://1.2.3", OriginError::BadIpv4),
        ] {
            assert_eq!(normalize(input), Err(error), "{input}");
        }
        let long = format!("https://{}.com", "a".repeat(600));
        assert_eq!(normalize(&long), Err(OriginError::TooLong));
    }

    #[test]
    fn request_origin_accepts_only_the_browser_form() {
        let parsed = RequestOrigin::parse("https://api.example.com:8443").unwrap();
        assert_eq!(parsed.scheme(), "https");
        assert_eq!(parsed.host(), "api.example.com");
        assert_eq!(parsed.port(), Some(8443));
        assert_eq!(
            RequestOrigin::parse("http://[::1]:3000").unwrap().host(),
            "::1"
        );
        for bad in [
            "null",
            "HTTPS://example.com",
            "https://Example.com",
            "https://example.com/",
            "https://example.com:443",
            "https://example.com:0443",
            "https://example.com.",
            "http://[0::1]",
            "https://example.com/x",
        ] {
            assert!(RequestOrigin::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn localhost_helper_matches_loopback_http_only() {
        for good in [
            "http://localhost",
            "http://localhost:5173",
            "http://127.0.0.1:1",
            "http://127.0.0.1:65535",
            "http://[::1]:8080",
            "http://[::1]",
        ] {
            assert!(is_localhost_any_port(good.as_bytes()), "{good}");
        }
        for bad in [
            "https://localhost:5173",
            "http://localhost.evil.net",
            "http://localhost:5173.evil.net",
            "http://localhost:",
            "http://localhost:0",
            "http://localhost:080",
            "http://localhost:80",
            "http://localhost:65536",
            "http://127.0.0.10",
            "http://127.0.0.1.nip.io",
            "http://[::1]x",
            "http://LOCALHOST",
            "http://localhost/",
        ] {
            assert!(!is_localhost_any_port(bad.as_bytes()), "{bad}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        #[test]
        fn normalising_never_panics_and_is_idempotent(input in "\\PC{0,80}|[a-zA-Z]{1,8}://[a-zA-Z0-9.:\\[\\]_@/?#-]{0,40}") {
            if let Ok(normalised) = normalize(&input) {
                let again = normalize(&normalised);
                proptest::prop_assert_eq!(again.as_deref(), Ok(normalised.as_str()));
                let parsed = RequestOrigin::parse(&normalised);
                proptest::prop_assert!(parsed.is_some(), "{normalised}");
                proptest::prop_assert_eq!(parsed.map(|p| p.as_str()), Some(normalised.as_str()));
            }
        }

        #[test]
        fn request_parsing_and_localhost_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let _ = is_localhost_any_port(&bytes);
            if let Ok(text) = std::str::from_utf8(&bytes)
                && let Some(parsed) = RequestOrigin::parse(text)
            {
                // Only canonical origins parse: normalising them changes nothing.
                let normalised = normalize(text);
                proptest::prop_assert_eq!(normalised.as_deref(), Ok(parsed.as_str()));
            }
        }
    }
}
