//! The builder, its presets and the validated configuration that adds the headers.

use std::fmt;
use std::sync::Arc;

use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue};

use super::https::{Hsts, Transport, host_without_port};
use super::layer::SecurityHeadersLayer;
use crate::client_ip::TrustedProxies;
use crate::error::ConfigError;

/// Up to this many distinct names on a response, [`Config::apply`] finds which of its headers
/// are already there by comparing names, not by a hash lookup per header.
const SCAN_MAX_NAMES: usize = 16;

const PERMISSIONS_POLICY_VALUE: &str = "accelerometer=(), camera=(), geolocation=(), gyroscope=(), magnetometer=(), microphone=(), payment=(), usb=()";

static PERMISSIONS_POLICY: HeaderName = HeaderName::from_static("permissions-policy");
static COOP: HeaderName = HeaderName::from_static("cross-origin-opener-policy");
static CORP: HeaderName = HeaderName::from_static("cross-origin-resource-policy");
static X_PERMITTED_CDP: HeaderName = HeaderName::from_static("x-permitted-cross-domain-policies");
static X_POWERED_BY: HeaderName = HeaderName::from_static("x-powered-by");

/// The `X-Frame-Options` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
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
/// use tower_shield::security_headers::{FrameOptions, Hsts, SecurityHeadersLayerBuilder};
///
/// let layer = SecurityHeadersLayerBuilder::web()
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
pub struct SecurityHeadersLayerBuilder {
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

impl Default for SecurityHeadersLayerBuilder {
    fn default() -> Self {
        Self::api()
    }
}

impl SecurityHeadersLayerBuilder {
    /// The preset for JSON APIs (see the [module docs](super) for every header).
    pub fn api() -> Self {
        Self::common(
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
            Some(HeaderValue::from_static("no-store")),
        )
    }

    /// The preset for HTML applications (see the [module docs](super) for every header).
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

    pub(super) fn into_layer(self) -> SecurityHeadersLayer {
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

pub(super) struct Config {
    pub(super) hsts: Option<HeaderValue>,
    headers: Vec<(HeaderName, HeaderValue)>,
    strip: Vec<HeaderName>,
    override_existing: bool,
    pub(super) enforce_https: bool,
    pub(super) assume_https: bool,
    pub(super) https_host: Option<Box<str>>,
    pub(super) https_port: Option<u16>,
    pub(super) trusted_proxies: TrustedProxies,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecurityHeadersLayerBuilder")
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
    pub(super) fn apply(&self, headers: &mut HeaderMap, transport: Transport) {
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
            SecurityHeadersLayerBuilder::api(),
            SecurityHeadersLayerBuilder::web(),
            SecurityHeadersLayerBuilder::api().override_existing(true),
            SecurityHeadersLayerBuilder::api()
                .keep(header::SERVER)
                .override_existing(true),
            SecurityHeadersLayerBuilder::web()
                .set(custom.clone(), HeaderValue::from_static("ours"))
                .strip(header::CACHE_CONTROL),
            SecurityHeadersLayerBuilder::api()
                .no_hsts()
                .remove("x-frame-options"),
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
        let config = SecurityHeadersLayerBuilder::api().build().unwrap().config;
        config.apply(&mut response, Transport::Https);
        assert_eq!(response.len(), before);
        assert!(response.get(header::X_CONTENT_TYPE_OPTIONS).is_none());
    }
}
