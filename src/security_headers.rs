//! Security response headers, tuned for JSON APIs ([`SecurityHeaders::api`], the default) or
//! HTML applications ([`SecurityHeaders::web`]), following the
//! [OWASP Secure Headers Project](https://owasp.org/www-project-secure-headers/).
//!
//! ```
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_shield::security_headers::SecurityHeadersLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let service = ServiceBuilder::new()
//!     .layer(SecurityHeadersLayer::api())
//!     .service_fn(|_: Request<()>| async {
//!         let mut response = Response::new(String::from("{}"));
//!         response.headers_mut().insert("server", "leaky/1.0".parse().unwrap());
//!         Ok::<_, std::convert::Infallible>(response)
//!     });
//!
//! let request = Request::builder().uri("https://api.example/items").body(()).unwrap();
//! let response = service.oneshot(request).await.unwrap();
//! let headers = response.headers();
//! assert_eq!(headers["x-content-type-options"], "nosniff");
//! assert_eq!(headers["cache-control"], "no-store");
//! assert_eq!(headers["strict-transport-security"], "max-age=31536000; includeSubDomains");
//! assert!(!headers.contains_key("server"));
//! # }
//! ```
//!
//! # The presets, header by header
//!
//! | Header | `api()` | `web()` | Why |
//! |---|---|---|---|
//! | `Strict-Transport-Security` | `max-age=31536000; includeSubDomains` | same | Browsers use HTTPS only for a year, subdomains included. Sent only on responses to requests that came over HTTPS (RFC 6797 §7.2); one the inner service set is removed from responses to requests known to be plain HTTP, for the same reason. |
//! | `X-Content-Type-Options` | `nosniff` | same | No MIME sniffing: a JSON answer is never run as a script or rendered as HTML. |
//! | `X-Frame-Options` | `DENY` | same | No framing (clickjacking), for browsers that predate CSP `frame-ancestors`. |
//! | `Content-Security-Policy` | `default-src 'none'; frame-ancestors 'none'` | `default-src 'self'; base-uri 'self'; form-action 'self'; object-src 'none'; frame-ancestors 'none'` | An API answer loads nothing and is framed by nobody; an HTML app loads only from its own origin. `upgrade-insecure-requests` is left out so plain-HTTP development keeps working (HSTS covers HTTPS). |
//! | `Referrer-Policy` | `no-referrer` | same | URLs (which may hold ids or tokens in queries) never leak to other sites. |
//! | `Cross-Origin-Opener-Policy` | `same-origin` | same | A cross-origin window cannot keep a handle on ours (XS-Leaks, Spectre). |
//! | `Cross-Origin-Resource-Policy` | `same-origin` | same | Other origins cannot embed our responses with `no-cors` requests; CORS requests are unaffected. |
//! | `Permissions-Policy` | camera, microphone, geolocation, payment, USB and the motion sensors off | same | Nothing served here needs powerful browser features. |
//! | `Cache-Control` | `no-store` | not set | API answers (tokens, personal data) are kept by no cache; an HTML app decides its own caching. |
//! | `X-XSS-Protection` | `0` | same | The legacy XSS auditor is itself exploitable; OWASP recommends turning it off. |
//! | `X-Permitted-Cross-Domain-Policies` | `none` | same | No Flash/PDF cross-domain policy files. |
//! | `Server`, `X-Powered-By` | removed | removed | Do not advertise the software stack. |
//!
//! Each header can be changed ([`set`](SecurityHeaders::set) and the named methods) or dropped
//! ([`remove`](SecurityHeaders::remove)). A header the inner service already set is kept
//! unless [`override_existing(true)`](SecurityHeaders::override_existing), except
//! `Strict-Transport-Security` on a response to a request known to be plain HTTP (below),
//! which is always removed.
//!
//! # HTTPS detection
//!
//! A request came over HTTPS when its URI scheme is `https` (HTTP/2 `:scheme`, or absolute
//! URIs), or when `X-Forwarded-Proto` says `https` **and** the TCP peer
//! ([`peer_addr`](crate::client_ip::peer_addr)) is one of the configured
//! [`trusted_proxies`](SecurityHeaders::trusted_proxies). From any other peer that header is
//! ignored. Every line and every comma-separated element of `X-Forwarded-Proto` must be
//! `https` (each hop saw HTTPS); a value over 64 bytes counts as plain HTTP.
//!
//! A request is known to be plain HTTP when its URI scheme is `http`, or when a trusted
//! proxy's `X-Forwarded-Proto` is present and not all `https`. Anything else (an HTTP/1.1
//! request line without a scheme and no trusted proxy saying) is unknown: the layer adds no
//! HSTS, and leaves a handler's own HSTS alone. A server that terminates TLS itself and
//! listens on nothing else says so with
//! [`assume_https(true)`](SecurityHeaders::assume_https): every request then counts as HTTPS.
//!
//! The URI scheme is what the client itself sent (HTTP/2 `:scheme`, or an absolute-form
//! request line). A client on plain HTTP can claim `https` that way, but it only fools itself:
//! browsers ignore HSTS received over plain HTTP, and the redirect exists to move honest
//! clients to HTTPS.
//!
//! # HTTPS enforcement
//!
//! Off by default. With [`enforce_https(true)`](SecurityHeaders::enforce_https), a request that
//! arrived over plain HTTP gets `301 Moved Permanently` to the `https://` URL built from its
//! validated `Host` (without its port, or with [`https_port`](SecurityHeaders::https_port)) and
//! path for `GET`/`HEAD`, and a 403 problem ([`ProblemType::HTTPS_REQUIRED`]) for any other
//! method. A missing or malformed `Host` gets a 400 problem, never a redirect elsewhere. The
//! `Host` is the client's to choose: with [`https_host`](SecurityHeaders::https_host) the
//! redirect always goes to the configured host instead, so a forged `Host` cannot put another
//! site in a `Location` that a shared cache might keep.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderName};
use http::uri::Scheme;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::body::ShieldBody;
use crate::client_ip::TrustedProxies;
use crate::error::ConfigError;
use crate::refusal::{ProblemType, Refusal};

/// One year, in seconds: the `max-age` the HSTS preload list requires.
pub const ONE_YEAR_SECS: u64 = 31_536_000;

/// Up to this many distinct names on a response, [`Config::apply`] finds which of its headers
/// are already there by comparing names, not by a hash lookup per header.
const SCAN_MAX_NAMES: usize = 16;

/// Two years, in seconds: the `max-age` hstspreload.org recommends.
const TWO_YEARS_SECS: u64 = 63_072_000;

const PERMISSIONS_POLICY_VALUE: &str = "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), payment=(), usb=()";

static PERMISSIONS_POLICY: HeaderName = HeaderName::from_static("permissions-policy");
static COOP: HeaderName = HeaderName::from_static("cross-origin-opener-policy");
static CORP: HeaderName = HeaderName::from_static("cross-origin-resource-policy");
static X_PERMITTED_CDP: HeaderName = HeaderName::from_static("x-permitted-cross-domain-policies");
static X_POWERED_BY: HeaderName = HeaderName::from_static("x-powered-by");
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

    /// Adds `preload`. [`SecurityHeaders::build`] refuses it unless `max-age` is at least one
    /// year and `includeSubDomains` is set (the preload list's requirements): submitting a
    /// domain to the list is hard to undo.
    pub fn preload(mut self) -> Self {
        self.preload = true;
        self
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.preload && (self.max_age < ONE_YEAR_SECS || !self.include_subdomains) {
            return Err(ConfigError::dangerous(
                "hsts",
                "`preload` requires a max-age of at least one year (31536000 s) and includeSubDomains",
            ));
        }
        Ok(())
    }

    fn header_value(&self) -> HeaderValue {
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

/// The `X-Frame-Options` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameOptions {
    /// `DENY`: never framed.
    Deny,
    /// `SAMEORIGIN`: framed only by pages of the same origin.
    SameOrigin,
}

/// Builder of a [`SecurityHeadersLayer`]: start from [`api`](Self::api) or
/// [`web`](Self::web), change what you need, then [`build`](Self::build).
///
/// ```
/// use http::HeaderValue;
/// use tower_shield::security_headers::{FrameOptions, Hsts, SecurityHeaders};
///
/// let layer = SecurityHeaders::web()
///     .hsts(Hsts::default().preload())
///     .frame_options(FrameOptions::SameOrigin)
///     .content_security_policy("default-src 'self'; img-src 'self' https://cdn.example")
///     .remove("x-xss-protection")
///     .build()
///     .unwrap();
/// # let _ = layer;
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct SecurityHeaders {
    hsts: Option<Hsts>,
    headers: Vec<(HeaderName, HeaderValue)>,
    strip: Vec<HeaderName>,
    override_existing: bool,
    enforce_https: bool,
    assume_https: bool,
    https_host: Option<Box<str>>,
    https_port: Option<u16>,
    trusted_proxies: TrustedProxies,
    /// The first invalid setting given: (setting, reason).
    error: Option<(&'static str, &'static str)>,
}

impl Default for SecurityHeaders {
    fn default() -> Self {
        Self::api()
    }
}

impl SecurityHeaders {
    /// The preset for JSON APIs (see the [module docs](self) for every header).
    pub fn api() -> Self {
        Self::common(
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
            Some(HeaderValue::from_static("no-store")),
        )
    }

    /// The preset for HTML applications (see the [module docs](self) for every header).
    pub fn web() -> Self {
        Self::common(
            HeaderValue::from_static(
                "default-src 'self'; base-uri 'self'; form-action 'self'; object-src 'none'; frame-ancestors 'none'",
            ),
            None,
        )
    }

    fn common(csp: HeaderValue, cache_control: Option<HeaderValue>) -> Self {
        let mut headers = vec![
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (header::CONTENT_SECURITY_POLICY, csp),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (COOP.clone(), HeaderValue::from_static("same-origin")),
            (CORP.clone(), HeaderValue::from_static("same-origin")),
            (
                PERMISSIONS_POLICY.clone(),
                HeaderValue::from_static(PERMISSIONS_POLICY_VALUE),
            ),
            (header::X_XSS_PROTECTION, HeaderValue::from_static("0")),
            (X_PERMITTED_CDP.clone(), HeaderValue::from_static("none")),
        ];
        if let Some(value) = cache_control {
            headers.push((header::CACHE_CONTROL, value));
        }
        Self {
            hsts: Some(Hsts::default()),
            headers,
            strip: vec![header::SERVER, X_POWERED_BY.clone()],
            override_existing: false,
            enforce_https: false,
            assume_https: false,
            https_host: None,
            https_port: None,
            trusted_proxies: TrustedProxies::none(),
            error: None,
        }
    }

    /// Sets the HSTS policy (sent only over HTTPS).
    pub fn hsts(mut self, hsts: Hsts) -> Self {
        self.hsts = Some(hsts);
        self
    }

    /// Sends no `Strict-Transport-Security` header.
    pub fn no_hsts(mut self) -> Self {
        self.hsts = None;
        self
    }

    /// Sets `Content-Security-Policy`.
    pub fn content_security_policy(self, policy: &str) -> Self {
        self.set_str(
            header::CONTENT_SECURITY_POLICY,
            "content_security_policy",
            policy,
        )
    }

    /// Sets `X-Frame-Options`.
    pub fn frame_options(self, options: FrameOptions) -> Self {
        let value = match options {
            FrameOptions::Deny => "DENY",
            FrameOptions::SameOrigin => "SAMEORIGIN",
        };
        self.set(header::X_FRAME_OPTIONS, HeaderValue::from_static(value))
    }

    /// Sets `Referrer-Policy`.
    pub fn referrer_policy(self, policy: &str) -> Self {
        self.set_str(header::REFERRER_POLICY, "referrer_policy", policy)
    }

    /// Sets `Permissions-Policy`.
    pub fn permissions_policy(self, policy: &str) -> Self {
        self.set_str(PERMISSIONS_POLICY.clone(), "permissions_policy", policy)
    }

    /// Sets `Cross-Origin-Opener-Policy`.
    pub fn cross_origin_opener_policy(self, policy: &str) -> Self {
        self.set_str(COOP.clone(), "cross_origin_opener_policy", policy)
    }

    /// Sets `Cross-Origin-Resource-Policy`.
    pub fn cross_origin_resource_policy(self, policy: &str) -> Self {
        self.set_str(CORP.clone(), "cross_origin_resource_policy", policy)
    }

    /// Sets `Cache-Control`.
    pub fn cache_control(self, value: &str) -> Self {
        self.set_str(header::CACHE_CONTROL, "cache_control", value)
    }

    /// Sets any header to a fixed value (replacing the preset's value for that name).
    ///
    /// Use [`hsts`](Self::hsts) for `Strict-Transport-Security`, which depends on the request.
    pub fn set(mut self, name: HeaderName, value: HeaderValue) -> Self {
        if name == header::STRICT_TRANSPORT_SECURITY {
            self.error.get_or_insert((
                "set",
                "use `hsts()` for Strict-Transport-Security: it must be sent over HTTPS only",
            ));
            return self;
        }
        self.strip.retain(|stripped| *stripped != name);
        match self.headers.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = value,
            None => self.headers.push((name, value)),
        }
        self
    }

    /// Stops sending a header of the preset (by name, case-insensitive); `Strict-Transport-
    /// Security` is the same as [`no_hsts`](Self::no_hsts). A name that is not a valid header
    /// name makes [`build`](Self::build) fail.
    pub fn remove(mut self, name: &str) -> Self {
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            self.error
                .get_or_insert(("remove", "not a valid header name"));
            return self;
        };
        if name == header::STRICT_TRANSPORT_SECURITY {
            self.hsts = None;
        }
        self.headers.retain(|(n, _)| *n != name);
        self
    }

    /// Removes this header from every response (by default `Server` and `X-Powered-By` are).
    pub fn strip(mut self, name: HeaderName) -> Self {
        self.headers.retain(|(n, _)| *n != name);
        if !self.strip.contains(&name) {
            self.strip.push(name);
        }
        self
    }

    /// Keeps this header on responses instead of stripping it (e.g. `Server`).
    pub fn keep(mut self, name: HeaderName) -> Self {
        self.strip.retain(|stripped| *stripped != name);
        self
    }

    /// Whether a header the inner service already set is replaced (default `false`: the
    /// handler's value is kept, so a route can loosen its own CSP or caching).
    pub fn override_existing(mut self, override_existing: bool) -> Self {
        self.override_existing = override_existing;
        self
    }

    /// Whether requests that came over plain HTTP are answered with a redirect (`GET`,
    /// `HEAD`) or a 403 problem (other methods) instead of reaching the inner service.
    pub fn enforce_https(mut self, enforce: bool) -> Self {
        self.enforce_https = enforce;
        self
    }

    /// Every request reaching this service came over TLS (default: no). For a server that
    /// terminates TLS itself and is reachable over nothing else: its HTTP/1.1 requests carry
    /// no scheme, so without this they count as "unknown" and get no HSTS. Never set it on a
    /// service that also listens on plain HTTP.
    pub fn assume_https(mut self, assume: bool) -> Self {
        self.assume_https = assume;
        self
    }

    /// The host HTTPS redirects go to (default: the request's own validated `Host`). A
    /// hostname or IP literal without a port (use [`https_port`](Self::https_port)); anything
    /// else fails [`build`](Self::build).
    pub fn https_host(mut self, host: &str) -> Self {
        match host_without_port(host) {
            Some(name) if name.len() == host.len() => self.https_host = Some(host.into()),
            _ => {
                self.error
                    .get_or_insert(("https_host", "not a hostname or IP literal without a port"));
            }
        }
        self
    }

    /// The port of HTTPS redirects (default: none, i.e. 443).
    pub fn https_port(mut self, port: u16) -> Self {
        self.https_port = if port == 443 { None } else { Some(port) };
        self
    }

    /// The proxies whose `X-Forwarded-Proto` is believed (default: none).
    pub fn trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.trusted_proxies = proxies;
        self
    }

    fn set_str(mut self, name: HeaderName, setting: &'static str, value: &str) -> Self {
        match HeaderValue::from_str(value) {
            Ok(value) => self.set(name, value),
            Err(_) => {
                self.error
                    .get_or_insert((setting, "not a valid header value (visible ASCII only)"));
                self
            }
        }
    }

    /// Validates the configuration and builds the layer.
    ///
    /// Fails on an HSTS `preload` without one year and `includeSubDomains`, and on any value
    /// given to a builder method that is not a valid header value.
    pub fn build(self) -> Result<SecurityHeadersLayer, ConfigError> {
        if let Some((setting, reason)) = self.error {
            return Err(ConfigError::invalid(setting, reason));
        }
        if let Some(hsts) = &self.hsts {
            hsts.validate()?;
        }
        Ok(self.into_layer())
    }

    fn into_layer(self) -> SecurityHeadersLayer {
        SecurityHeadersLayer {
            config: Arc::new(Config {
                hsts: self.hsts.map(|h| h.header_value()),
                headers: self.headers,
                strip: self.strip,
                override_existing: self.override_existing,
                enforce_https: self.enforce_https,
                assume_https: self.assume_https,
                https_host: self.https_host,
                https_port: self.https_port,
                trusted_proxies: self.trusted_proxies,
            }),
        }
    }
}

struct Config {
    hsts: Option<HeaderValue>,
    headers: Vec<(HeaderName, HeaderValue)>,
    strip: Vec<HeaderName>,
    override_existing: bool,
    enforce_https: bool,
    assume_https: bool,
    https_host: Option<Box<str>>,
    https_port: Option<u16>,
    trusted_proxies: TrustedProxies,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecurityHeaders")
            .field("hsts", &self.hsts)
            .field(
                "headers",
                &self.headers.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("strip", &self.strip)
            .field("override_existing", &self.override_existing)
            .field("enforce_https", &self.enforce_https)
            .field("assume_https", &self.assume_https)
            .field("https_host", &self.https_host)
            .field("trusted_proxies", &self.trusted_proxies)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Our HSTS value for a response to a request that came this way: only over HTTPS.
    fn hsts_for(&self, transport: Transport) -> Option<&HeaderValue> {
        self.hsts.as_ref().filter(|_| transport == Transport::Https)
    }

    fn apply(&self, headers: &mut HeaderMap, transport: Transport) {
        // A response carries few headers: one pass over its names, comparing each with ours,
        // tells which of ours it already has and whether anything is to be stripped, for less
        // than one hash lookup per configured header (`entry`, `remove`) would cost.
        if headers.keys_len() > SCAN_MAX_NAMES || self.headers.len() >= 64 {
            return self.apply_by_lookup(headers, transport);
        }
        let plain = transport == Transport::Plain;
        let hsts = self.hsts_for(transport);
        let mut present = 0u64;
        let mut hsts_present = false;
        let mut strip = false;
        let scan = !self.override_existing || !self.strip.is_empty() || plain;
        for name in headers.keys().filter(|_| scan) {
            if self.strip.contains(name) {
                strip = true;
            } else if name == header::STRICT_TRANSPORT_SECURITY {
                hsts_present = true;
            } else if !self.override_existing
                && let Some(i) = self.headers.iter().position(|(n, _)| n == name)
            {
                present |= 1 << i;
            }
        }
        if strip {
            for name in &self.strip {
                headers.remove(name);
            }
        }
        // RFC 6797 §7.2: never over plain HTTP, not even the handler's own.
        if hsts_present && plain {
            headers.remove(header::STRICT_TRANSPORT_SECURITY);
        }
        let hsts = hsts.filter(|_| self.override_existing || !hsts_present);
        let adding =
            self.headers.len() - present.count_ones() as usize + usize::from(hsts.is_some());
        // One growth of the map at most, instead of one per threshold crossed.
        headers.reserve(adding);
        for (i, (name, value)) in self.headers.iter().enumerate() {
            if present & (1 << i) == 0 {
                headers.insert(name, value.clone());
            }
        }
        if let Some(value) = hsts {
            headers.insert(header::STRICT_TRANSPORT_SECURITY, value.clone());
        }
    }

    /// [`apply`](Self::apply) for a response with many header names: one lookup per header.
    fn apply_by_lookup(&self, headers: &mut HeaderMap, transport: Transport) {
        let hsts = self.hsts_for(transport);
        for name in &self.strip {
            headers.remove(name);
        }
        if transport == Transport::Plain {
            headers.remove(header::STRICT_TRANSPORT_SECURITY);
        }
        // A map at http's size limit (tens of thousands of names, e.g. a handler echoing a
        // hostile request's headers) is left as it is rather than panicking.
        if headers.try_reserve(self.headers.len() + 1).is_err() {
            tracing::warn!(
                target: "tower_shield::security_headers",
                "response header map is full; security headers not added"
            );
            return;
        }
        let all = self
            .headers
            .iter()
            .map(|(n, v)| (n, v))
            .chain(hsts.map(|v| (&header::STRICT_TRANSPORT_SECURITY, v)));
        for (name, value) in all {
            let added = if self.override_existing {
                headers.try_insert(name, value.clone()).is_ok()
            } else {
                match headers.try_entry(name) {
                    Ok(header::Entry::Vacant(entry)) => entry.try_insert(value.clone()).is_ok(),
                    Ok(header::Entry::Occupied(_)) => true,
                    Err(_) => false,
                }
            };
            if !added {
                return;
            }
        }
    }

    /// How the request arrived, as far as the layer can tell (see the module docs).
    fn transport<B>(&self, request: &Request<B>) -> Transport {
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

    fn redirect_or_refuse<B>(&self, request: &Request<B>) -> Response<Bytes> {
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
fn host_without_port(host: &str) -> Option<&str> {
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

/// Layer that adds security headers to every response; see the [module docs](self).
///
/// Reads the URI scheme and, from trusted proxies only, `X-Forwarded-Proto`; writes the
/// configured headers; puts nothing into the extensions; refuses only with HTTPS enforcement
/// on. Cloning is one reference-count increment.
#[derive(Debug, Clone)]
#[must_use]
pub struct SecurityHeadersLayer {
    config: Arc<Config>,
}

impl Default for SecurityHeadersLayer {
    fn default() -> Self {
        Self::api()
    }
}

impl SecurityHeadersLayer {
    /// The [`SecurityHeaders::api`] preset, as is.
    pub fn api() -> Self {
        SecurityHeaders::api().into_layer()
    }

    /// The [`SecurityHeaders::web`] preset, as is.
    pub fn web() -> Self {
        SecurityHeaders::web().into_layer()
    }

    /// A builder starting from the `api()` preset.
    pub fn builder() -> SecurityHeaders {
        SecurityHeaders::api()
    }
}

impl<S> Layer<S> for SecurityHeadersLayer {
    type Service = SecurityHeadersService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SecurityHeadersService {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}

/// Service made by [`SecurityHeadersLayer`].
#[derive(Debug, Clone)]
pub struct SecurityHeadersService<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> SecurityHeadersService<S> {
    crate::inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SecurityHeadersService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ShieldBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let transport = self.config.transport(&request);
        let config = Arc::clone(&self.config);
        // Each arm builds the whole future, so it is written in place rather than moved again.
        if self.config.enforce_https && transport != Transport::Https {
            ResponseFuture {
                kind: Kind::Refused {
                    response: Some(self.config.redirect_or_refuse(&request)),
                },
                config,
                transport,
            }
        } else {
            ResponseFuture {
                kind: Kind::Inner {
                    future: self.inner.call(request),
                },
                config,
                transport,
            }
        }
    }
}

pin_project! {
    /// Response future of [`SecurityHeadersService`].
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
        config: Arc<Config>,
        transport: Transport,
    }
}

/// How a request arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    /// HTTPS: an `https` URI scheme, or `X-Forwarded-Proto: https` from a trusted proxy.
    Https,
    /// Known plain HTTP: an `http` URI scheme, or a trusted proxy's `X-Forwarded-Proto` that
    /// is not `https`.
    Plain,
    /// Nothing says (an HTTP/1.1 origin-form request, TLS possibly terminated in-process):
    /// HSTS is not added, and a handler's own is left alone.
    Unknown,
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] future: F },
        Refused { response: Option<Response<Bytes>> },
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ShieldBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = match this.kind.project() {
            KindProj::Inner { future } => match future.poll(cx) {
                Poll::Ready(Ok(response)) => response.map(ShieldBody::inner),
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            },
            KindProj::Refused { response } => match response.take() {
                Some(response) => response.map(ShieldBody::full),
                // Polled after completion: answer an empty 500 rather than panic.
                None => {
                    let mut response = Response::new(ShieldBody::empty());
                    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                    response
                }
            },
        };
        this.config.apply(response.headers_mut(), *this.transport);
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-pass `apply` gives exactly what one lookup per header gives, for every subset
    /// of a set of names already on the response (ours, stripped ones and others), over HTTP
    /// and HTTPS, keeping or overriding, and past the scan limit.
    #[test]
    fn apply_scan_matches_lookup() {
        let custom = HeaderName::from_static("x-custom");
        let configs = [
            SecurityHeaders::api(),
            SecurityHeaders::web(),
            SecurityHeaders::api().override_existing(true),
            SecurityHeaders::api()
                .keep(header::SERVER)
                .override_existing(true),
            SecurityHeaders::web()
                .set(custom.clone(), HeaderValue::from_static("ours"))
                .strip(header::CACHE_CONTROL),
            SecurityHeaders::api().no_hsts().remove("x-frame-options"),
        ];
        let existing = [
            (header::SERVER, "leaky/1.0"),
            (X_POWERED_BY.clone(), "php"),
            (header::CONTENT_SECURITY_POLICY, "default-src 'self'"),
            (header::CACHE_CONTROL, "max-age=60"),
            (header::STRICT_TRANSPORT_SECURITY, "max-age=1"),
            (header::CONTENT_TYPE, "application/json"),
            (COOP.clone(), "unsafe-none"),
            (custom, "theirs"),
        ];
        let filler: Vec<HeaderName> = (0..SCAN_MAX_NAMES)
            .map(|i| HeaderName::from_bytes(format!("x-filler-{i}").as_bytes()).unwrap())
            .collect();
        for builder in configs {
            let config = builder.build().unwrap().config;
            for subset in 0u32..(1 << existing.len()) {
                for (transport, many) in [
                    (Transport::Plain, false),
                    (Transport::Plain, true),
                    (Transport::Unknown, false),
                    (Transport::Unknown, true),
                    (Transport::Https, false),
                    (Transport::Https, true),
                ] {
                    let mut response = HeaderMap::new();
                    for (bit, (name, value)) in existing.iter().enumerate() {
                        if subset & (1 << bit) != 0 {
                            response.append(name, HeaderValue::from_static(value));
                        }
                    }
                    if subset & 1 != 0 {
                        response.append(header::SERVER, HeaderValue::from_static("second"));
                    }
                    if many {
                        for name in &filler {
                            response.insert(name, HeaderValue::from_static("1"));
                        }
                    }
                    let mut scanned = response.clone();
                    config.apply(&mut scanned, transport);
                    let mut looked_up = response;
                    config.apply_by_lookup(&mut looked_up, transport);
                    assert_eq!(
                        scanned, looked_up,
                        "{config:?} subset {subset:b} {transport:?}"
                    );
                    // Never HSTS over known plain HTTP, not even the handler's; ours only
                    // over HTTPS; the handler's kept when nothing says how the request came.
                    let handlers = subset & (1 << 4) != 0;
                    assert_eq!(
                        scanned.contains_key(header::STRICT_TRANSPORT_SECURITY),
                        match transport {
                            Transport::Https => config.hsts.is_some() || handlers,
                            Transport::Plain => false,
                            Transport::Unknown => handlers,
                        },
                        "{config:?} subset {subset:b} {transport:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_full_header_map_is_left_alone_not_a_panic() {
        // http's HeaderMap holds at most 32,768 entries; a handler echoing a hostile
        // request's headers could hand back a map at that limit.
        let mut response = HeaderMap::new();
        for i in 0.. {
            let name = HeaderName::from_bytes(format!("x-echo-{i}").as_bytes()).unwrap();
            if response
                .try_insert(name, HeaderValue::from_static("1"))
                .is_err()
            {
                break;
            }
        }
        let before = response.len();
        let config = SecurityHeaders::api().build().unwrap().config;
        config.apply(&mut response, Transport::Https);
        assert_eq!(response.len(), before);
        assert!(response.get(header::X_CONTENT_TYPE_OPTIONS).is_none());
    }

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
