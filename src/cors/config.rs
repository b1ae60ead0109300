//! The CORS configuration: the builder, its validation, and the serde/env form.

use crate::telemetry::{self, Counter};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use serde::Deserialize;

use super::layer::CorsLayer;
use super::origin::{self, MAX_ORIGIN_LEN, RequestOrigin};
use crate::error::ConfigError;

/// The headers exposed to the page by default: the request id and the rate-limit fields.
pub const DEFAULT_EXPOSE_HEADERS: [&str; 4] = [
    "x-request-id",
    "ratelimit",
    "ratelimit-policy",
    "retry-after",
];

/// The methods allowed when none are configured: the CORS-safelisted ones.
pub const DEFAULT_METHODS: [&str; 3] = ["GET", "HEAD", "POST"];

/// The `Access-Control-Max-Age` sent when none is configured: 600 seconds.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(600);

/// The longest `Access-Control-Max-Age` accepted (one day; browsers cap lower anyway).
pub const MAX_MAX_AGE: Duration = Duration::from_secs(86_400);

/// The most request headers a preflight may ask for; a preflight asking for more is refused.
pub const MAX_REQUESTED_HEADERS: usize = 32;

/// The most bytes of `Access-Control-Request-Headers` looked at; a longer list is refused.
pub const MAX_REQUEST_HEADERS_LEN: usize = 2048;

/// A custom origin check (the escape hatch).
pub(crate) type OriginPredicate = Arc<dyn Fn(&RequestOrigin<'_>) -> bool + Send + Sync + 'static>;

/// The validated configuration shared by every clone of the layer and its services.
pub(crate) struct Validated {
    /// Normalised allowed origins, sorted by bytes, each already the `Access-Control-Allow-Origin`
    /// value to send back.
    pub(crate) origins: Box<[HeaderValue]>,
    pub(crate) any_origin: bool,
    pub(crate) localhost_any_port: bool,
    pub(crate) predicate: Option<OriginPredicate>,
    /// Allowed methods (exact, case-sensitive, as the Fetch standard compares them).
    pub(crate) methods: Box<[Method]>,
    /// Allowed request headers, lower-case.
    pub(crate) headers: Box<[HeaderName]>,
    pub(crate) allow_methods_value: HeaderValue,
    pub(crate) allow_headers_value: Option<HeaderValue>,
    pub(crate) expose_headers_value: Option<HeaderValue>,
    pub(crate) max_age_value: HeaderValue,
    pub(crate) credentials: bool,
    pub(crate) private_network: bool,
    pub(crate) strict: bool,
    /// `tower_shield_cors_rejections_total{kind="preflight"}`.
    pub(crate) rejected_preflights: Counter,
    /// `tower_shield_cors_rejections_total{kind="simple"}`.
    pub(crate) rejected_simple: Counter,
}

impl fmt::Debug for Validated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CorsConfig")
            .field("origins", &self.origins)
            .field("any_origin", &self.any_origin)
            .field("localhost_any_port", &self.localhost_any_port)
            .field("predicate", &self.predicate.as_ref().map(|_| "<fn>"))
            .field("methods", &self.methods)
            .field("headers", &self.headers)
            .field("expose_headers", &self.expose_headers_value)
            .field("max_age", &self.max_age_value)
            .field("credentials", &self.credentials)
            .field("private_network", &self.private_network)
            .field("strict", &self.strict)
            .finish()
    }
}

impl Validated {
    /// The `Access-Control-Allow-Origin` value for a request's `Origin`, or `None` when the
    /// origin is not allowed (or is not one well-formed header line).
    pub(crate) fn allow_origin(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        let bytes = origin.as_bytes();
        if bytes.len() > MAX_ORIGIN_LEN || bytes.is_empty() {
            return None;
        }
        if let Ok(index) = self.origins.binary_search_by(|v| v.as_bytes().cmp(bytes)) {
            return self.origins.get(index).cloned();
        }
        if self.any_origin {
            return Some(HeaderValue::from_static("*"));
        }
        if self.localhost_any_port && origin::is_localhost_any_port(bytes) {
            return Some(origin.clone());
        }
        if let Some(predicate) = &self.predicate
            && let Ok(text) = origin.to_str()
            && let Some(parsed) = RequestOrigin::parse(text)
            && predicate(&parsed)
        {
            return Some(origin.clone());
        }
        None
    }
}

/// Builds a [`CorsLayer`]; every setting is validated by [`build`](Self::build).
///
/// Nothing is allowed by default: at least one origin (or the localhost helper, a predicate,
/// or the explicitly dangerous any-origin mode) must be given. Defaults: methods `GET, HEAD,
/// POST`; no request headers; exposed headers `x-request-id, ratelimit, ratelimit-policy,
/// retry-after`; no credentials; `Access-Control-Max-Age: 600`; no Private Network Access;
/// not strict.
#[must_use]
#[derive(Default)]
pub struct CorsLayerBuilder {
    origins: Vec<String>,
    any_origin: bool,
    localhost_any_port: bool,
    predicate: Option<OriginPredicate>,
    methods: Option<Vec<String>>,
    headers: Vec<String>,
    expose: Option<Vec<String>>,
    credentials: bool,
    max_age: Option<Duration>,
    private_network: bool,
    strict: bool,
    /// The first error met before `build` (from the environment).
    deferred: Option<ConfigError>,
}

impl fmt::Debug for CorsLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CorsLayerBuilder")
            .field("origins", &self.origins)
            .field("any_origin", &self.any_origin)
            .field("localhost_any_port", &self.localhost_any_port)
            .field("predicate", &self.predicate.as_ref().map(|_| "<fn>"))
            .field("methods", &self.methods)
            .field("headers", &self.headers)
            .field("expose", &self.expose)
            .field("credentials", &self.credentials)
            .field("max_age", &self.max_age)
            .field("private_network", &self.private_network)
            .field("strict", &self.strict)
            .finish_non_exhaustive()
    }
}

fn list<I>(items: I) -> Vec<String>
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    items.into_iter().map(|s| s.as_ref().to_owned()).collect()
}

impl CorsLayerBuilder {
    /// A builder with nothing allowed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Allows one exact origin, `scheme://host[:port]` (repeatable).
    ///
    /// It is normalised as a browser serialises origins: scheme and host lower-cased, the
    /// default port dropped, one trailing slash tolerated. [`build`](Self::build) refuses a
    /// path, query, fragment or userinfo, `null`, `*`, a host ending with a dot (browsers
    /// send `https://example.com.` as an origin of its own), a non-ASCII host (write it in
    /// punycode) and anything unparsable.
    pub fn allow_origin(mut self, origin: impl AsRef<str>) -> Self {
        self.origins.push(origin.as_ref().to_owned());
        self
    }

    /// Allows each of these exact origins (see [`allow_origin`](Self::allow_origin)).
    pub fn allow_origins<I>(mut self, origins: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.origins.extend(list(origins));
        self
    }

    /// Allows the comma-separated origins of an environment variable (e.g.
    /// `CORS_ALLOWED_ORIGINS`). An unset or empty variable, an empty element, `*` or an
    /// invalid origin make [`build`](Self::build) fail with an error naming the variable.
    pub fn allow_origins_from_env(mut self, var: &str) -> Self {
        match std::env::var(var) {
            Ok(value) => match parse_origin_list(var, &value) {
                Ok(origins) => self.origins.extend(origins),
                Err(error) => self.defer(error),
            },
            Err(std::env::VarError::NotPresent) => self.defer(ConfigError::Env {
                var: var.to_owned(),
                reason: "is not set".into(),
            }),
            Err(std::env::VarError::NotUnicode(_)) => self.defer(ConfigError::Env {
                var: var.to_owned(),
                reason: "is not valid UTF-8".into(),
            }),
        }
        self
    }

    /// Allows any origin (`Access-Control-Allow-Origin: *`), for public, read-only APIs that
    /// use no cookies and no `Authorization` header.
    ///
    /// Refused by [`build`](Self::build) together with credentials: a browser would not send
    /// them with `*` anyway, and reflecting any origin with credentials hands every site on
    /// the web the user's session.
    pub fn dangerous_allow_any_origin(mut self) -> Self {
        self.any_origin = true;
        self
    }

    /// Development helper: also allows `http://localhost`, `http://127.0.0.1` and
    /// `http://[::1]` with any port. Nothing else (no other host, no `https`, no subdomain of
    /// `localhost`). Do not enable it in production.
    pub fn allow_localhost_any_port(mut self) -> Self {
        self.localhost_any_port = true;
        self
    }

    /// Escape hatch: also allows an origin when this function returns `true`.
    ///
    /// Consulted only when the origin is not in the exact list. It receives the request's
    /// origin already parsed and in the canonical form a browser sends (never `null`, never
    /// longer than 512 bytes, never non-UTF-8). Compare whole hosts, never substrings:
    /// `host.ends_with("example.com")` also matches `evilexample.com`; write
    /// `host == "example.com" || host.ends_with(".example.com")` and check the scheme.
    pub fn allow_origin_predicate<F>(mut self, predicate: F) -> Self
    where
        F: Fn(&RequestOrigin<'_>) -> bool + Send + Sync + 'static,
    {
        self.predicate = Some(Arc::new(predicate));
        self
    }

    /// The allowed methods (replacing the default `GET, HEAD, POST`). Methods are compared
    /// case-sensitively, as browsers do; `*` is refused.
    pub fn allow_methods<I>(mut self, methods: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.methods = Some(list(methods));
        self
    }

    /// The request headers a page may send (compared case-insensitively); `*` is refused.
    pub fn allow_headers<I>(mut self, headers: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.headers = list(headers);
        self
    }

    /// The response headers a page may read (replacing the default `x-request-id, ratelimit,
    /// ratelimit-policy, retry-after`; an empty list exposes none); `*` is refused.
    pub fn expose_headers<I>(mut self, headers: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        self.expose = Some(list(headers));
        self
    }

    /// Sends `Access-Control-Allow-Credentials: true`, letting pages send cookies and read
    /// the answers. Refused with [`dangerous_allow_any_origin`](Self::dangerous_allow_any_origin).
    pub fn allow_credentials(mut self, allow: bool) -> Self {
        self.credentials = allow;
        self
    }

    /// How long a browser may cache a preflight answer (`Access-Control-Max-Age`, whole
    /// seconds, at most one day; default 600 s).
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    /// Answers `Access-Control-Allow-Private-Network: true` to preflights that ask for it
    /// (`Access-Control-Request-Private-Network: true`), for servers on a private network.
    pub fn allow_private_network(mut self, allow: bool) -> Self {
        self.private_network = allow;
        self
    }

    /// Strict mode: a request (not only a preflight) whose `Origin` is present and not
    /// allowed is refused with 403 before the inner service runs, a server-side defence
    /// against cross-site form posts and other requests browsers send without a preflight.
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    fn defer(&mut self, error: ConfigError) {
        if self.deferred.is_none() {
            self.deferred = Some(error);
        }
    }

    /// Validates the configuration and builds the layer.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first setting at fault: an invalid origin, method or
    /// header name, `*` anywhere, any-origin with credentials, no origin at all, a
    /// max-age over one day.
    pub fn build(self) -> Result<CorsLayer, ConfigError> {
        self.validate()
            .map(|v| CorsLayer::from_validated(Arc::new(v)))
    }

    fn validate(self) -> Result<Validated, ConfigError> {
        if let Some(error) = self.deferred {
            return Err(error);
        }
        let mut origins = Vec::with_capacity(self.origins.len());
        for raw in &self.origins {
            let normalised = origin::normalize(raw).map_err(|e| {
                ConfigError::invalid("allow_origin", format!("`{}`: {e}", truncate(raw)))
            })?;
            let value = HeaderValue::from_str(&normalised)
                .map_err(|_| ConfigError::invalid("allow_origin", "not a header value"))?;
            origins.push(value);
        }
        origins.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        origins.dedup();
        if self.any_origin && self.credentials {
            return Err(ConfigError::dangerous(
                "dangerous_allow_any_origin",
                "any origin cannot be combined with credentials: list the exact origins",
            ));
        }
        if origins.is_empty()
            && !self.any_origin
            && !self.localhost_any_port
            && self.predicate.is_none()
        {
            return Err(ConfigError::Missing {
                setting: "allow_origin",
            });
        }

        let method_names = self
            .methods
            .unwrap_or_else(|| DEFAULT_METHODS.iter().map(|m| (*m).to_owned()).collect());
        let methods = methods(&method_names)?;
        let allow_methods_value = join(methods.iter().map(Method::as_str))
            .ok_or_else(|| ConfigError::invalid("allow_methods", "not a header value"))?;

        let headers = header_names("allow_headers", &self.headers)?;
        let allow_headers_value = if headers.is_empty() {
            None
        } else {
            join(headers.iter().map(HeaderName::as_str))
        };

        let expose_names = self.expose.unwrap_or_else(|| {
            DEFAULT_EXPOSE_HEADERS
                .iter()
                .map(|h| (*h).to_owned())
                .collect()
        });
        let expose = header_names("expose_headers", &expose_names)?;
        let expose_headers_value = if expose.is_empty() {
            None
        } else {
            join(expose.iter().map(HeaderName::as_str))
        };

        let max_age = self.max_age.unwrap_or(DEFAULT_MAX_AGE);
        if max_age > MAX_MAX_AGE {
            return Err(ConfigError::invalid(
                "max_age",
                "more than one day (86400 s); browsers cap it lower anyway",
            ));
        }
        Ok(Validated {
            origins: origins.into_boxed_slice(),
            any_origin: self.any_origin,
            localhost_any_port: self.localhost_any_port,
            predicate: self.predicate,
            methods: methods.into_boxed_slice(),
            headers: headers.into_boxed_slice(),
            allow_methods_value,
            allow_headers_value,
            expose_headers_value,
            max_age_value: HeaderValue::from(max_age.as_secs()),
            credentials: self.credentials,
            private_network: self.private_network,
            strict: self.strict,
            rejected_preflights: rejections("preflight"),
            rejected_simple: rejections("simple"),
        })
    }
}

fn rejections(kind: &str) -> Counter {
    telemetry::counter(telemetry::names::CORS_REJECTIONS, &[("kind", kind)])
}

/// At most 80 characters of a configured value, for error messages.
fn truncate(value: &str) -> String {
    value.chars().take(80).collect()
}

fn join<'a>(items: impl Iterator<Item = &'a str>) -> Option<HeaderValue> {
    let mut out = String::new();
    for item in items {
        if !out.is_empty() {
            out.push_str(", ");
        }
        out.push_str(item);
    }
    HeaderValue::from_str(&out).ok()
}

fn methods(names: &[String]) -> Result<Vec<Method>, ConfigError> {
    let mut methods: Vec<Method> = Vec::with_capacity(names.len());
    for name in names {
        let name = name.trim();
        if name == "*" {
            return Err(ConfigError::invalid(
                "allow_methods",
                "`*` is not accepted: list the methods",
            ));
        }
        let method = Method::from_bytes(name.as_bytes()).map_err(|_| {
            ConfigError::invalid(
                "allow_methods",
                format!("`{}` is not a method", truncate(name)),
            )
        })?;
        if !methods.contains(&method) {
            methods.push(method);
        }
    }
    if methods.is_empty() {
        return Err(ConfigError::invalid(
            "allow_methods",
            "at least one method is needed",
        ));
    }
    Ok(methods)
}

fn header_names(setting: &'static str, names: &[String]) -> Result<Vec<HeaderName>, ConfigError> {
    let mut out: Vec<HeaderName> = Vec::with_capacity(names.len());
    for name in names {
        let name = name.trim();
        if name == "*" {
            return Err(ConfigError::invalid(
                setting,
                "`*` is not accepted: list the header names",
            ));
        }
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            ConfigError::invalid(
                setting,
                format!("`{}` is not a header name", truncate(name)),
            )
        })?;
        if !out.contains(&header) {
            out.push(header);
        }
    }
    Ok(out)
}

/// Splits a comma-separated list from an environment variable; empty elements are errors.
fn split_env_list(var: &str, value: &str) -> Result<Vec<String>, ConfigError> {
    let mut out = Vec::new();
    for (index, element) in value.split(',').enumerate() {
        let element = element.trim();
        if element.is_empty() {
            return Err(ConfigError::Env {
                var: var.to_owned(),
                reason: format!("element {} of the comma-separated list is empty", index + 1)
                    .into(),
            });
        }
        out.push(element.to_owned());
    }
    Ok(out)
}

/// Parses and checks a comma-separated origin list read from `var`.
fn parse_origin_list(var: &str, value: &str) -> Result<Vec<String>, ConfigError> {
    if value.trim().is_empty() {
        return Err(ConfigError::Env {
            var: var.to_owned(),
            reason: "is empty: list the allowed origins, comma-separated".into(),
        });
    }
    let origins = split_env_list(var, value)?;
    for (index, raw) in origins.iter().enumerate() {
        if let Err(error) = origin::normalize(raw) {
            return Err(ConfigError::Env {
                var: var.to_owned(),
                reason: format!("element {} (`{}`): {error}", index + 1, truncate(raw)).into(),
            });
        }
    }
    Ok(origins)
}

/// The CORS settings as data, for configuration files (serde) and the environment.
///
/// Any-origin mode cannot be expressed here: `*` in `allowed_origins` is an error, so a
/// deployment's configuration can never open the API to every site by accident.
///
/// ```
/// use tower_shield::cors::CorsConfig;
///
/// let config: CorsConfig = serde_json::from_str(r#"{
///     "allowed_origins": ["https://app.example.com"],
///     "allowed_methods": ["GET", "POST"],
///     "allowed_headers": ["authorization", "content-type"],
///     "allow_credentials": true,
///     "max_age_secs": 600
/// }"#).unwrap();
/// let layer = config.build().unwrap();
/// # let _ = layer;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorsConfig {
    /// Exact origins, `scheme://host[:port]`.
    pub allowed_origins: Vec<String>,
    /// Allowed methods; `None` for the default `GET, HEAD, POST`.
    pub allowed_methods: Option<Vec<String>>,
    /// Allowed request headers.
    pub allowed_headers: Vec<String>,
    /// Exposed response headers; `None` for the default list.
    pub expose_headers: Option<Vec<String>>,
    /// Whether credentials (cookies, `Authorization`) are allowed.
    pub allow_credentials: bool,
    /// `Access-Control-Max-Age` in seconds; `None` for 600.
    pub max_age_secs: Option<u64>,
    /// Whether Private Network Access preflights are answered.
    pub allow_private_network: bool,
    /// The development helper for `http://localhost:ANY` and loopback addresses.
    pub allow_localhost_any_port: bool,
    /// Strict mode (see [`CorsLayerBuilder::strict`]).
    pub strict: bool,
}

/// The environment variables [`CorsConfig::from_env`] reads.
pub mod env_vars {
    /// Comma-separated exact origins (required).
    pub const ALLOWED_ORIGINS: &str = "CORS_ALLOWED_ORIGINS";
    /// Comma-separated methods.
    pub const ALLOWED_METHODS: &str = "CORS_ALLOWED_METHODS";
    /// Comma-separated request header names.
    pub const ALLOWED_HEADERS: &str = "CORS_ALLOWED_HEADERS";
    /// Comma-separated exposed header names (empty: none).
    pub const EXPOSE_HEADERS: &str = "CORS_EXPOSE_HEADERS";
    /// `true` / `false` (also `1` / `0`).
    pub const ALLOW_CREDENTIALS: &str = "CORS_ALLOW_CREDENTIALS";
    /// Whole seconds.
    pub const MAX_AGE_SECS: &str = "CORS_MAX_AGE_SECS";
    /// `true` / `false`.
    pub const ALLOW_PRIVATE_NETWORK: &str = "CORS_ALLOW_PRIVATE_NETWORK";
    /// `true` / `false`: the development localhost helper.
    pub const ALLOW_LOCALHOST_ANY_PORT: &str = "CORS_ALLOW_LOCALHOST_ANY_PORT";
    /// `true` / `false`: strict mode.
    pub const STRICT: &str = "CORS_STRICT";
}

fn parse_bool(var: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::Env {
            var: var.to_owned(),
            reason: "is not a boolean (`true` or `false`)".into(),
        }),
    }
}

impl CorsConfig {
    /// Reads the configuration from the process environment: `CORS_ALLOWED_ORIGINS`
    /// (required, comma-separated), `CORS_ALLOWED_METHODS`, `CORS_ALLOWED_HEADERS`,
    /// `CORS_EXPOSE_HEADERS`, `CORS_ALLOW_CREDENTIALS`, `CORS_MAX_AGE_SECS`,
    /// `CORS_ALLOW_PRIVATE_NETWORK`, `CORS_ALLOW_LOCALHOST_ANY_PORT` and `CORS_STRICT`
    /// (see [`env_vars`]).
    ///
    /// # Errors
    ///
    /// [`ConfigError::Env`] naming the variable: `CORS_ALLOWED_ORIGINS` unset or empty, an
    /// empty list element, `*`, an invalid origin, a malformed boolean or number.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env), reading variables through `lookup` (for tests and
    /// for configuration sources that look like an environment).
    ///
    /// # Errors
    ///
    /// As [`from_env`](Self::from_env).
    pub fn from_lookup<F>(lookup: F) -> Result<Self, ConfigError>
    where
        F: Fn(&str) -> Option<String>,
    {
        use env_vars::*;
        let origins = lookup(ALLOWED_ORIGINS).ok_or_else(|| ConfigError::Env {
            var: ALLOWED_ORIGINS.to_owned(),
            reason: "is not set: list the allowed origins, comma-separated".into(),
        })?;
        let mut config = Self {
            allowed_origins: parse_origin_list(ALLOWED_ORIGINS, &origins)?,
            ..Self::default()
        };
        if let Some(value) = lookup(ALLOWED_METHODS) {
            config.allowed_methods = Some(split_env_list(ALLOWED_METHODS, &value)?);
        }
        if let Some(value) = lookup(ALLOWED_HEADERS)
            && !value.trim().is_empty()
        {
            config.allowed_headers = split_env_list(ALLOWED_HEADERS, &value)?;
        }
        if let Some(value) = lookup(EXPOSE_HEADERS) {
            config.expose_headers = Some(if value.trim().is_empty() {
                Vec::new()
            } else {
                split_env_list(EXPOSE_HEADERS, &value)?
            });
        }
        if let Some(value) = lookup(ALLOW_CREDENTIALS) {
            config.allow_credentials = parse_bool(ALLOW_CREDENTIALS, &value)?;
        }
        if let Some(value) = lookup(MAX_AGE_SECS) {
            config.max_age_secs = Some(value.trim().parse().map_err(|_| ConfigError::Env {
                var: MAX_AGE_SECS.to_owned(),
                reason: "is not a whole number of seconds".into(),
            })?);
        }
        if let Some(value) = lookup(ALLOW_PRIVATE_NETWORK) {
            config.allow_private_network = parse_bool(ALLOW_PRIVATE_NETWORK, &value)?;
        }
        if let Some(value) = lookup(ALLOW_LOCALHOST_ANY_PORT) {
            config.allow_localhost_any_port = parse_bool(ALLOW_LOCALHOST_ANY_PORT, &value)?;
        }
        if let Some(value) = lookup(STRICT) {
            config.strict = parse_bool(STRICT, &value)?;
        }
        // Validate the rest now, so errors name the variable rather than a builder method.
        let check = |var: &'static str, result: Result<(), ConfigError>| {
            result.map_err(|error| ConfigError::Env {
                var: var.to_owned(),
                reason: error.to_string().into(),
            })
        };
        if let Some(methods) = &config.allowed_methods {
            check(ALLOWED_METHODS, self::methods(methods).map(drop))?;
        }
        check(
            ALLOWED_HEADERS,
            header_names("allow_headers", &config.allowed_headers).map(drop),
        )?;
        if let Some(expose) = &config.expose_headers {
            check(
                EXPOSE_HEADERS,
                header_names("expose_headers", expose).map(drop),
            )?;
        }
        if config
            .max_age_secs
            .is_some_and(|s| s > MAX_MAX_AGE.as_secs())
        {
            return Err(ConfigError::Env {
                var: MAX_AGE_SECS.to_owned(),
                reason: "is more than one day (86400)".into(),
            });
        }
        Ok(config)
    }

    /// The builder this configuration describes (to add a predicate, say).
    pub fn into_builder(self) -> CorsLayerBuilder {
        let mut builder = CorsLayerBuilder::new()
            .allow_origins(self.allowed_origins)
            .allow_headers(self.allowed_headers)
            .allow_credentials(self.allow_credentials)
            .allow_private_network(self.allow_private_network)
            .strict(self.strict);
        if let Some(methods) = self.allowed_methods {
            builder = builder.allow_methods(methods);
        }
        if let Some(expose) = self.expose_headers {
            builder = builder.expose_headers(expose);
        }
        if let Some(secs) = self.max_age_secs {
            builder = builder.max_age(Duration::from_secs(secs));
        }
        if self.allow_localhost_any_port {
            builder = builder.allow_localhost_any_port();
        }
        builder
    }

    /// Validates this configuration and builds the layer.
    ///
    /// # Errors
    ///
    /// As [`CorsLayerBuilder::build`].
    pub fn build(&self) -> Result<CorsLayer, ConfigError> {
        self.clone().into_layer()
    }

    /// Validates this configuration and builds the layer, consuming it.
    ///
    /// # Errors
    ///
    /// As [`CorsLayerBuilder::build`].
    pub fn into_layer(self) -> Result<CorsLayer, ConfigError> {
        self.into_builder().build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    fn env_error_var(result: Result<CorsConfig, ConfigError>) -> String {
        match result {
            Err(ConfigError::Env { var, .. }) => var,
            other => panic!("expected an Env error, got {other:?}"),
        }
    }

    #[test]
    fn from_env_reads_every_variable() {
        let config = CorsConfig::from_lookup(env(&[
            (
                "CORS_ALLOWED_ORIGINS",
                " https://app.example.com , http://localhost:5173/",
            ),
            ("CORS_ALLOWED_METHODS", "GET,POST, PUT"),
            ("CORS_ALLOWED_HEADERS", "authorization, content-type"),
            ("CORS_EXPOSE_HEADERS", ""),
            ("CORS_ALLOW_CREDENTIALS", "true"),
            ("CORS_MAX_AGE_SECS", "120"),
            ("CORS_ALLOW_PRIVATE_NETWORK", "1"),
            ("CORS_STRICT", "false"),
        ]))
        .unwrap();
        assert_eq!(
            config.allowed_origins,
            ["https://app.example.com", "http://localhost:5173/"]
        );
        assert_eq!(
            config.allowed_methods.as_deref(),
            Some(&["GET".to_owned(), "POST".to_owned(), "PUT".to_owned()][..])
        );
        assert_eq!(config.expose_headers, Some(Vec::new()));
        assert!(config.allow_credentials && config.allow_private_network && !config.strict);
        assert_eq!(config.max_age_secs, Some(120));
        let layer = config.build().unwrap();
        assert_eq!(
            *layer.config().origins,
            [
                HeaderValue::from_static("http://localhost:5173"),
                HeaderValue::from_static("https://app.example.com"),
            ][..]
        );
        assert!(layer.config().expose_headers_value.is_none());
    }

    #[test]
    fn from_env_errors_name_the_variable() {
        let origins = "CORS_ALLOWED_ORIGINS";
        for value in [
            "",
            "  ",
            "*",
            "https://a.example,*",
            "https://a.example,,https://b.example",
            "https://a.example,",
            "null",
            "https://a.example/path",
        ] {
            assert_eq!(
                env_error_var(CorsConfig::from_lookup(env(&[(origins, value)]))),
                origins,
                "{value:?}"
            );
        }
        assert_eq!(env_error_var(CorsConfig::from_lookup(env(&[]))), origins);
        for (var, value) in [
            ("CORS_ALLOWED_METHODS", "GET,*"),
            ("CORS_ALLOWED_METHODS", "GET,,POST"),
            ("CORS_ALLOWED_METHODS", "GE T"),
            ("CORS_ALLOWED_HEADERS", "x-a,bad header"),
            ("CORS_EXPOSE_HEADERS", "*"),
            ("CORS_ALLOW_CREDENTIALS", "maybe"),
            ("CORS_MAX_AGE_SECS", "-1"),
            ("CORS_MAX_AGE_SECS", "100000"),
            ("CORS_ALLOW_PRIVATE_NETWORK", "2"),
        ] {
            let result = CorsConfig::from_lookup(env(&[
                ("CORS_ALLOWED_ORIGINS", "https://a.example"),
                (var, value),
            ]));
            assert_eq!(env_error_var(result), var, "{var}={value:?}");
        }
    }

    #[test]
    fn serde_refuses_unknown_fields_and_wildcards() {
        assert!(serde_json::from_str::<CorsConfig>(r#"{"allowed_origin": []}"#).is_err());
        let config: CorsConfig =
            serde_json::from_str(r#"{"allowed_origins": ["*"], "allow_credentials": true}"#)
                .unwrap();
        assert!(matches!(
            config.build(),
            Err(ConfigError::Invalid {
                setting: "allow_origin",
                ..
            })
        ));
    }

    #[test]
    fn builder_refusals() {
        let cases: Vec<(CorsLayerBuilder, &str)> = vec![
            (CorsLayerBuilder::new(), "allow_origin"),
            (
                CorsLayerBuilder::new().allow_origin("https://a.example/x"),
                "allow_origin",
            ),
            (
                CorsLayerBuilder::new()
                    .dangerous_allow_any_origin()
                    .allow_credentials(true),
                "dangerous_allow_any_origin",
            ),
            (
                CorsLayerBuilder::new()
                    .allow_origin("https://a.example")
                    .allow_methods(["*"]),
                "allow_methods",
            ),
            (
                CorsLayerBuilder::new()
                    .allow_origin("https://a.example")
                    .allow_methods(Vec::<String>::new()),
                "allow_methods",
            ),
            (
                CorsLayerBuilder::new()
                    .allow_origin("https://a.example")
                    .allow_headers(["*"]),
                "allow_headers",
            ),
            (
                CorsLayerBuilder::new()
                    .allow_origin("https://a.example")
                    .expose_headers(["bad header"]),
                "expose_headers",
            ),
            (
                CorsLayerBuilder::new()
                    .allow_origin("https://a.example")
                    .max_age(Duration::from_secs(86_401)),
                "max_age",
            ),
        ];
        for (builder, expected) in cases {
            let setting = match builder.build() {
                Err(ConfigError::Invalid { setting, .. })
                | Err(ConfigError::Dangerous { setting, .. })
                | Err(ConfigError::Missing { setting }) => setting,
                other => panic!("expected an error for {expected}, got {other:?}"),
            };
            assert_eq!(setting, expected);
        }
    }

    #[test]
    fn origins_are_normalised_sorted_and_deduplicated() {
        let layer = CorsLayerBuilder::new()
            .allow_origin("https://B.example:443/")
            .allow_origin("https://b.example")
            .allow_origin("https://a.example")
            .build()
            .unwrap();
        assert_eq!(
            *layer.config().origins,
            [
                HeaderValue::from_static("https://a.example"),
                HeaderValue::from_static("https://b.example"),
            ][..]
        );
        assert_eq!(
            layer.config().allow_methods_value,
            HeaderValue::from_static("GET, HEAD, POST")
        );
        assert_eq!(
            layer.config().expose_headers_value,
            Some(HeaderValue::from_static(
                "x-request-id, ratelimit, ratelimit-policy, retry-after"
            ))
        );
    }
}
