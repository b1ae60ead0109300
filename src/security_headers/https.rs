//! HSTS and HTTPS: the `Strict-Transport-Security` policy, how a request arrived (its URI
//! scheme, a trusted proxy's `X-Forwarded-Proto`) and the redirect to HTTPS.

use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::uri::Scheme;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};

use super::config::Config;
use crate::error::ConfigError;
use crate::refusal::{ProblemType, Refusal};

/// One year, in seconds: the `max-age` the HSTS preload list requires.
pub const ONE_YEAR_SECS: u64 = 31_536_000;

/// Two years, in seconds: the `max-age` hstspreload.org recommends.
const TWO_YEARS_SECS: u64 = 63_072_000;

static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// The `Strict-Transport-Security` policy.
///
/// ```
/// use std::time::Duration;
/// use tower_shield::security_headers::Hsts;
///
/// let hsts = Hsts::default(); // max-age=31536000; includeSubDomains
/// let preloadable = Hsts::max_age(Duration::from_secs(63_072_000)).include_subdomains().preload();
/// # let _ = (hsts, preloadable);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Hsts {
    max_age: u64,
    include_subdomains: bool,
    preload: bool,
}

impl Default for Hsts {
    /// `max-age=31536000; includeSubDomains`.
    fn default() -> Self {
        Self {
            max_age: ONE_YEAR_SECS,
            include_subdomains: true,
            preload: false,
        }
    }
}

impl Hsts {
    /// A policy with this `max-age` (whole seconds), without `includeSubDomains`.
    ///
    /// `Duration::ZERO` tells browsers to forget the policy.
    pub fn max_age(max_age: Duration) -> Self {
        Self {
            max_age: max_age.as_secs(),
            include_subdomains: false,
            preload: false,
        }
    }

    /// Adds `includeSubDomains`.
    pub fn include_subdomains(mut self) -> Self {
        self.include_subdomains = true;
        self
    }

    /// Adds `preload`. [`SecurityHeadersLayerBuilder::build`](super::SecurityHeadersLayerBuilder::build) refuses it
    /// unless `max-age` is at least one year and `includeSubDomains` is set (the preload list's
    /// requirements): submitting a domain to the list is hard to undo.
    pub fn preload(mut self) -> Self {
        self.preload = true;
        self
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if self.preload && (self.max_age < ONE_YEAR_SECS || !self.include_subdomains) {
            return Err(ConfigError::dangerous(
                "hsts",
                "`preload` requires a max-age of at least one year (31536000 s) and includeSubDomains",
            ));
        }
        Ok(())
    }

    pub(super) fn header_value(&self) -> HeaderValue {
        // The usual policies are static values: cloning one per response is a plain copy,
        // where a value built at run time is shared storage with an atomic count.
        match (self.max_age, self.include_subdomains, self.preload) {
            (ONE_YEAR_SECS, true, false) => {
                return HeaderValue::from_static("max-age=31536000; includeSubDomains");
            }
            (ONE_YEAR_SECS, true, true) => {
                return HeaderValue::from_static("max-age=31536000; includeSubDomains; preload");
            }
            (TWO_YEARS_SECS, true, true) => {
                return HeaderValue::from_static("max-age=63072000; includeSubDomains; preload");
            }
            _ => {}
        }
        // Digits, letters, `=`, `;` and spaces are always a valid header value.
        HeaderValue::from_str(&self.formatted())
            .unwrap_or_else(|_| HeaderValue::from_static("max-age=0"))
    }

    fn formatted(&self) -> String {
        let mut value = format!("max-age={}", self.max_age);
        if self.include_subdomains {
            value.push_str("; includeSubDomains");
        }
        if self.preload {
            value.push_str("; preload");
        }
        value
    }
}

/// How a request arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Transport {
    /// HTTPS: an `https` URI scheme, or `X-Forwarded-Proto: https` from a trusted proxy.
    Https,
    /// Known plain HTTP: an `http` URI scheme, or a trusted proxy's `X-Forwarded-Proto` that
    /// is not `https`.
    Plain,
    /// Nothing says (an HTTP/1.1 origin-form request, TLS possibly terminated in-process):
    /// HSTS is not added, and a handler's own is left alone.
    Unknown,
}

impl Config {
    /// Our HSTS value for a response to a request that came this way: only over HTTPS.
    pub(super) fn hsts_for(&self, transport: Transport) -> Option<&HeaderValue> {
        self.hsts.as_ref().filter(|_| transport == Transport::Https)
    }

    /// How the request arrived, as far as the layer can tell (see the module docs).
    pub(super) fn transport<B>(&self, request: &Request<B>) -> Transport {
        if self.assume_https {
            return Transport::Https;
        }
        match request.uri().scheme() {
            Some(scheme) if *scheme == Scheme::HTTPS => return Transport::Https,
            Some(scheme) if *scheme == Scheme::HTTP => return Transport::Plain,
            _ => {}
        }
        if !self.trusted_proxies.trusts_peer(request.extensions())
            || !request.headers().contains_key(&X_FORWARDED_PROTO)
        {
            return Transport::Unknown;
        }
        if forwarded_proto_is_https(request.headers()) {
            Transport::Https
        } else {
            Transport::Plain
        }
    }

    pub(super) fn redirect_or_refuse<B>(&self, request: &Request<B>) -> Response<Bytes> {
        let method = request.method();
        if method != Method::GET && method != Method::HEAD {
            return Refusal::new(&ProblemType::HTTPS_REQUIRED).for_request(request);
        }
        let host = match &self.https_host {
            Some(host) => host,
            None => match request_host(request).and_then(host_without_port) {
                Some(host) => host,
                None => return Refusal::new(&ProblemType::BAD_REQUEST).for_request(request),
            },
        };
        let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
        let mut location = String::with_capacity(8 + host.len() + 6 + path.len());
        location.push_str("https://");
        location.push_str(host);
        if let Some(port) = self.https_port {
            location.push(':');
            location.push_str(&port.to_string());
        }
        if !path.starts_with('/') {
            location.push('/');
        }
        location.push_str(path);
        let Ok(location) = HeaderValue::from_str(&location) else {
            return Refusal::new(&ProblemType::BAD_REQUEST).for_request(request);
        };
        let mut response = Response::new(Bytes::new());
        *response.status_mut() = StatusCode::MOVED_PERMANENTLY;
        response.headers_mut().insert(header::LOCATION, location);
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        response
    }
}

/// Whether every `X-Forwarded-Proto` line and element says `https`.
fn forwarded_proto_is_https(headers: &HeaderMap) -> bool {
    let mut seen = false;
    for line in headers.get_all(&X_FORWARDED_PROTO) {
        let bytes = line.as_bytes();
        if bytes.len() > 64 {
            return false;
        }
        for element in bytes.split(|&b| b == b',') {
            if !element.trim_ascii().eq_ignore_ascii_case(b"https") {
                return false;
            }
            seen = true;
        }
    }
    seen
}

/// The `Host` header, or the URI authority (HTTP/2) when there is none; at most one line.
fn request_host<B>(request: &Request<B>) -> Option<&str> {
    let mut lines = request.headers().get_all(header::HOST).iter();
    match (lines.next(), lines.next()) {
        (Some(host), None) => host.to_str().ok(),
        (None, None) => request.uri().authority().map(|a| a.as_str()),
        _ => None,
    }
}

/// The host of a `Host` value without its port, when it is a valid DNS name, IPv4 address or
/// bracketed IPv6 address; `None` for anything else (user info, paths, control bytes...).
pub(super) fn host_without_port(host: &str) -> Option<&str> {
    if host.is_empty() || host.len() > 255 {
        return None;
    }
    let (name, port) = if let Some(rest) = host.strip_prefix('[') {
        let end = rest.find(']')?;
        let (inside, after) = rest.split_at(end);
        if inside.is_empty()
            || !inside
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return None;
        }
        let after = after.strip_prefix(']')?;
        (host.get(..end + 2)?, after)
    } else {
        match host.find(':') {
            Some(colon) => (host.get(..colon)?, host.get(colon..)?),
            None => (host, ""),
        }
    };
    if !port.is_empty() {
        let digits = port.strip_prefix(':')?;
        if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
    }
    if !name.starts_with('[') {
        let valid_label = |label: &str| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        let trimmed = name.strip_suffix('.').unwrap_or(name);
        if trimmed.is_empty() || !trimmed.split('.').all(valid_label) {
            return None;
        }
    }
    Some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_validated() {
        assert_eq!(host_without_port("api.example"), Some("api.example"));
        assert_eq!(host_without_port("api.example:8080"), Some("api.example"));
        assert_eq!(host_without_port("API.Example."), Some("API.Example."));
        assert_eq!(host_without_port("127.0.0.1:80"), Some("127.0.0.1"));
        assert_eq!(host_without_port("[::1]:8080"), Some("[::1]"));
        assert_eq!(host_without_port("[2001:db8::1]"), Some("[2001:db8::1]"));
        for bad in [
            "",
            ":80",
            "evil.example/path",
            "user@evil.example",
            "a..b",
            "-a.example",
            "a.example:",
            "a.example:123456",
            "a.example:80:80",
            "a b",
            "a\r\nb",
            "[::1",
            "[zz::1]",
            "[]",
            "[::1]x",
            "évil.example",
            "a.example#frag",
            "a.example?x",
        ] {
            assert_eq!(host_without_port(bad), None, "{bad:?}");
        }
        assert_eq!(host_without_port(&"a".repeat(300)), None);
        assert_eq!(
            host_without_port(&format!("{}.example", "a".repeat(64))),
            None
        );
    }

    #[test]
    fn forwarded_proto_needs_every_element_https() {
        let mut headers = HeaderMap::new();
        assert!(!forwarded_proto_is_https(&headers));
        headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("HTTPS"));
        assert!(forwarded_proto_is_https(&headers));
        headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("https, http"));
        assert!(!forwarded_proto_is_https(&headers));
        headers.insert(&X_FORWARDED_PROTO, HeaderValue::from_static("https"));
        headers.append(&X_FORWARDED_PROTO, HeaderValue::from_static("http"));
        assert!(!forwarded_proto_is_https(&headers));
    }

    #[test]
    fn hsts_values() {
        assert_eq!(
            Hsts::default().header_value(),
            "max-age=31536000; includeSubDomains"
        );
        assert_eq!(
            Hsts::max_age(Duration::from_secs(60)).header_value(),
            "max-age=60"
        );
        assert_eq!(
            Hsts::default().preload().header_value(),
            "max-age=31536000; includeSubDomains; preload"
        );
        // The static values of the usual policies say what formatting them would.
        for hsts in [
            Hsts::default(),
            Hsts::default().preload(),
            Hsts::max_age(Duration::from_secs(TWO_YEARS_SECS))
                .include_subdomains()
                .preload(),
            Hsts::max_age(Duration::from_secs(TWO_YEARS_SECS)).include_subdomains(),
            Hsts::max_age(Duration::from_secs(ONE_YEAR_SECS)),
        ] {
            assert_eq!(hsts.header_value(), hsts.formatted().as_str(), "{hsts:?}");
        }
    }
}
