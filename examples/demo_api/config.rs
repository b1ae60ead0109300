//! The demo's configuration: every variable of the contract (`examples/demo_api/README.md`), read from the environment and
//! validated before the server listens. A bad value is a [`ConfigError::Env`] naming the
//! variable (never echoing a secret); `main` turns it into exit code 2.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tower_shield::ConfigError;
use tower_shield::client_ip::{ForwardedHeader, TrustedProxies};

/// Longest access-token lifetime accepted.
const MAX_ACCESS_TTL_SECS: u64 = 3600;
/// Longest refresh-token lifetime accepted: 90 days.
const MAX_REFRESH_TTL_SECS: u64 = 90 * 24 * 3600;
/// Longest refresh-reuse grace accepted.
const MAX_REUSE_GRACE_SECS: u64 = 60;

/// The signing algorithm of access tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JwtAlgorithm {
    Rs256,
    Es256,
    EdDsa,
}

/// The format of the log lines on stderr (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogFormat {
    /// tracing-subscriber's human-readable lines.
    Text,
    /// One JSON object per line, the event's fields at the top level.
    Json,
}

/// Where shared state lives.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum StoreUrl {
    /// Per-process memory.
    Memory,
    /// A Redis server (`redis://` or `rediss://`); the URL may hold a password.
    Redis(String),
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Memory => f.write_str("memory"),
            // The URL may carry credentials: show the scheme only.
            Self::Redis(url) => {
                let scheme = url.split("://").next().unwrap_or("redis");
                write!(f, "{scheme}://…")
            }
        }
    }
}

/// `DATABASE_URL`: a PostgreSQL server for accounts, items and API key records. The URL may
/// hold a password: `Debug` shows the scheme only.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct DatabaseUrl(pub(crate) String);

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.0.split("://").next().unwrap_or("postgres");
        write!(f, "{scheme}://…")
    }
}

/// The admin account seeded at start.
#[derive(Clone)]
pub(crate) struct AdminSeed {
    pub(crate) email: String,
    pub(crate) password: String,
}

impl fmt::Debug for AdminSeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdminSeed")
            .field("email", &self.email)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The whole configuration of the demo.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    /// `BIND_ADDR`.
    pub(crate) bind_addr: SocketAddr,
    /// `CORS_ALLOWED_ORIGINS`: non-empty, no wildcard.
    pub(crate) cors_allowed_origins: Vec<String>,
    /// `JWT_PRIVATE_KEY_FILE`; `None` → a fresh key at start.
    pub(crate) jwt_private_key_file: Option<PathBuf>,
    /// `JWT_ALGORITHM`.
    pub(crate) jwt_algorithm: JwtAlgorithm,
    /// `JWT_ISSUER`.
    pub(crate) jwt_issuer: String,
    /// `JWT_AUDIENCE`.
    pub(crate) jwt_audience: String,
    /// `ACCESS_TOKEN_TTL_SECS`: 1 s to 1 h.
    pub(crate) access_token_ttl: Duration,
    /// `REFRESH_TOKEN_TTL_SECS`: at least the access lifetime, at most 90 days.
    pub(crate) refresh_token_ttl: Duration,
    /// `REFRESH_REUSE_GRACE_SECS`: 0 to 60 s.
    pub(crate) refresh_reuse_grace: Duration,
    /// `STORE_URL`.
    pub(crate) store: StoreUrl,
    /// `STORE_PREFIX`.
    pub(crate) store_prefix: String,
    /// `DATABASE_URL`: accounts, items and API keys in PostgreSQL instead of `store`.
    pub(crate) database: Option<DatabaseUrl>,
    /// `TRUSTED_PROXIES`.
    pub(crate) trusted_proxies: TrustedProxies,
    /// `TRUSTED_PROXY_HEADER`: the one forwarding header those proxies set.
    pub(crate) trusted_proxy_header: ForwardedHeader,
    /// `DEMO_ADMIN_EMAIL` + `DEMO_ADMIN_PASSWORD`.
    pub(crate) admin: Option<AdminSeed>,
    /// `COOKIE_SECURE`.
    pub(crate) cookie_secure: bool,
    /// `DEMO_RATE_LIMIT_SCALE` (not in the contract; for `benches/load.sh` only): every
    /// quota is multiplied by it. 1 unless set.
    pub(crate) rate_limit_scale: u32,
    /// `DEMO_ACCESS_LOG` (not in the contract; for `benches/load.sh` only): `false` turns
    /// the per-request log line off. `true` unless set.
    pub(crate) access_log: bool,
    /// `METRICS_ADDR`: where `GET /metrics` (Prometheus text) is served, on a listener of
    /// its own; `None` (unset) → no recorder, no listener.
    pub(crate) metrics_addr: Option<SocketAddr>,
    /// `LOG_FORMAT`: `text` or `json`.
    pub(crate) log_format: LogFormat,
    /// Warnings to print at start (never secrets).
    pub(crate) warnings: Vec<String>,
}

fn env_error(var: &str, reason: impl Into<std::borrow::Cow<'static, str>>) -> ConfigError {
    ConfigError::Env {
        var: var.to_owned(),
        reason: reason.into(),
    }
}

impl Config {
    /// Reads the process environment.
    pub(crate) fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| match std::env::var(name) {
            Ok(value) => Ok(Some(value)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(env_error(name, "the value is not valid UTF-8"))
            }
        })
    }

    /// Reads variables through `lookup` (the environment, or a map in tests).
    pub(crate) fn from_lookup(
        lookup: impl Fn(&str) -> Result<Option<String>, ConfigError>,
    ) -> Result<Self, ConfigError> {
        let bind_addr = match lookup("BIND_ADDR")? {
            None => SocketAddr::from(([127, 0, 0, 1], 3000)),
            Some(value) => value.trim().parse().map_err(|_| {
                env_error(
                    "BIND_ADDR",
                    "not a socket address (expected e.g. 127.0.0.1:3000)",
                )
            })?,
        };

        let cors_allowed_origins = match lookup("CORS_ALLOWED_ORIGINS")? {
            None => vec!["http://localhost:5173".to_owned()],
            Some(list) => parse_origins(&list)?,
        };

        let jwt_private_key_file = match lookup("JWT_PRIVATE_KEY_FILE")? {
            None => None,
            Some(path) if path.trim().is_empty() => {
                return Err(env_error("JWT_PRIVATE_KEY_FILE", "the path is empty"));
            }
            Some(path) => Some(PathBuf::from(path)),
        };

        let jwt_algorithm = match lookup("JWT_ALGORITHM")?.as_deref().map(str::trim) {
            None | Some("RS256") => JwtAlgorithm::Rs256,
            Some("ES256") => JwtAlgorithm::Es256,
            Some("EdDSA") => JwtAlgorithm::EdDsa,
            Some(_) => {
                return Err(env_error("JWT_ALGORITHM", "expected RS256, ES256 or EdDSA"));
            }
        };

        let jwt_issuer = non_empty(&lookup, "JWT_ISSUER", "tower-shield-demo")?;
        let jwt_audience = non_empty(&lookup, "JWT_AUDIENCE", "tower-shield-demo-api")?;

        let access = seconds(&lookup, "ACCESS_TOKEN_TTL_SECS", 900)?;
        if !(1..=MAX_ACCESS_TTL_SECS).contains(&access) {
            return Err(env_error(
                "ACCESS_TOKEN_TTL_SECS",
                "must be between 1 and 3600",
            ));
        }
        let refresh = seconds(&lookup, "REFRESH_TOKEN_TTL_SECS", 604_800)?;
        if refresh < access || refresh > MAX_REFRESH_TTL_SECS {
            return Err(env_error(
                "REFRESH_TOKEN_TTL_SECS",
                "must be at least ACCESS_TOKEN_TTL_SECS and at most 7776000 (90 days)",
            ));
        }
        let grace = seconds(&lookup, "REFRESH_REUSE_GRACE_SECS", 2)?;
        if grace > MAX_REUSE_GRACE_SECS {
            return Err(env_error(
                "REFRESH_REUSE_GRACE_SECS",
                "must be between 0 and 60",
            ));
        }

        let store = match lookup("STORE_URL")? {
            None => StoreUrl::Memory,
            Some(url) if url.trim() == "memory" => StoreUrl::Memory,
            Some(url) if url.starts_with("redis://") || url.starts_with("rediss://") => {
                StoreUrl::Redis(url)
            }
            Some(_) => {
                return Err(env_error(
                    "STORE_URL",
                    "expected `memory` or a redis:// or rediss:// URL",
                ));
            }
        };
        let store_prefix = non_empty(&lookup, "STORE_PREFIX", "tower-shield-demo:")?;
        let database = match lookup("DATABASE_URL")? {
            None => None,
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Some(DatabaseUrl(url))
            }
            Some(_) => {
                return Err(env_error(
                    "DATABASE_URL",
                    "expected a postgres:// or postgresql:// URL",
                ));
            }
        };

        let trusted_proxies = match lookup("TRUSTED_PROXIES")? {
            None => TrustedProxies::none(),
            Some(list) => TrustedProxies::from_comma_separated(&list)
                .map_err(|error| env_error("TRUSTED_PROXIES", error.to_string()))?,
        };
        let trusted_proxy_header = match lookup("TRUSTED_PROXY_HEADER")? {
            None => ForwardedHeader::XForwardedFor,
            Some(name) => name.trim().parse().map_err(|_| {
                env_error(
                    "TRUSTED_PROXY_HEADER",
                    "expected `x-forwarded-for` or `forwarded`",
                )
            })?,
        };

        let admin = match (lookup("DEMO_ADMIN_EMAIL")?, lookup("DEMO_ADMIN_PASSWORD")?) {
            (None, None) => None,
            (Some(email), Some(password)) => {
                if email.trim().is_empty() {
                    return Err(env_error("DEMO_ADMIN_EMAIL", "the email is empty"));
                }
                if password.is_empty() {
                    return Err(env_error("DEMO_ADMIN_PASSWORD", "the password is empty"));
                }
                Some(AdminSeed {
                    email: email.trim().to_ascii_lowercase(),
                    password,
                })
            }
            (Some(_), None) => {
                return Err(env_error(
                    "DEMO_ADMIN_PASSWORD",
                    "required when DEMO_ADMIN_EMAIL is set",
                ));
            }
            (None, Some(_)) => {
                return Err(env_error(
                    "DEMO_ADMIN_EMAIL",
                    "required when DEMO_ADMIN_PASSWORD is set",
                ));
            }
        };

        let cookie_secure = match lookup("COOKIE_SECURE")?.as_deref().map(str::trim) {
            None | Some("true") => true,
            Some("false") => false,
            Some(_) => return Err(env_error("COOKIE_SECURE", "expected true or false")),
        };

        let rate_limit_scale = match lookup("DEMO_RATE_LIMIT_SCALE")? {
            None => 1,
            Some(value) => value
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=1_000_000).contains(n))
                .ok_or_else(|| {
                    env_error("DEMO_RATE_LIMIT_SCALE", "must be between 1 and 1000000")
                })?,
        };

        let access_log = match lookup("DEMO_ACCESS_LOG")?.as_deref().map(str::trim) {
            None | Some("true") => true,
            Some("false") => false,
            Some(_) => return Err(env_error("DEMO_ACCESS_LOG", "expected true or false")),
        };

        let metrics_addr = match lookup("METRICS_ADDR")? {
            None => None,
            Some(value) => {
                let addr: SocketAddr = value.trim().parse().map_err(|_| {
                    env_error(
                        "METRICS_ADDR",
                        "not a socket address (expected e.g. 127.0.0.1:9464)",
                    )
                })?;
                if same_port(addr, bind_addr) {
                    return Err(env_error(
                        "METRICS_ADDR",
                        "must not be BIND_ADDR: the metrics are served on a listener of their \
                         own, never on the public API port",
                    ));
                }
                Some(addr)
            }
        };

        let log_format = match lookup("LOG_FORMAT")?.as_deref().map(str::trim) {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(_) => return Err(env_error("LOG_FORMAT", "expected text or json")),
        };

        let mut warnings = Vec::new();
        if !access_log {
            warnings.push(
                "DEMO_ACCESS_LOG=false: requests are not logged (for load tests only)".to_owned(),
            );
        }
        if rate_limit_scale > 1 {
            warnings.push(format!(
                "DEMO_RATE_LIMIT_SCALE={rate_limit_scale}: every rate limit is multiplied by it \
                 (for load tests only)"
            ));
        }
        if !cookie_secure && !bind_addr.ip().is_loopback() {
            warnings.push(format!(
                "COOKIE_SECURE=false while listening on {bind_addr}, which is not a loopback \
                 address: refresh-token cookies will be sent over plain HTTP"
            ));
        }

        Ok(Self {
            bind_addr,
            cors_allowed_origins,
            jwt_private_key_file,
            jwt_algorithm,
            jwt_issuer,
            jwt_audience,
            access_token_ttl: Duration::from_secs(access),
            refresh_token_ttl: Duration::from_secs(refresh),
            refresh_reuse_grace: Duration::from_secs(grace),
            store,
            store_prefix,
            database,
            trusted_proxies,
            trusted_proxy_header,
            admin,
            cookie_secure,
            rate_limit_scale,
            access_log,
            metrics_addr,
            log_format,
            warnings,
        })
    }
}

/// Whether two listen addresses would take the same port: the same fixed port on the same
/// address, or on any address when either is unspecified (`0.0.0.0`, `::`). Port 0 (a free
/// port each) never collides.
fn same_port(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

fn non_empty(
    lookup: &impl Fn(&str) -> Result<Option<String>, ConfigError>,
    var: &'static str,
    default: &str,
) -> Result<String, ConfigError> {
    match lookup(var)? {
        None => Ok(default.to_owned()),
        Some(value) if value.trim().is_empty() => Err(env_error(var, "must not be empty")),
        Some(value) => Ok(value.trim().to_owned()),
    }
}

fn seconds(
    lookup: &impl Fn(&str) -> Result<Option<String>, ConfigError>,
    var: &'static str,
    default: u64,
) -> Result<u64, ConfigError> {
    match lookup(var)? {
        None => Ok(default),
        Some(value) => value
            .trim()
            .parse()
            .map_err(|_| env_error(var, "not a whole number of seconds")),
    }
}

/// A first check of the origin list (the CORS layer normalises and validates it fully).
fn parse_origins(list: &str) -> Result<Vec<String>, ConfigError> {
    const VAR: &str = "CORS_ALLOWED_ORIGINS";
    let mut origins = Vec::new();
    for element in list.split(',') {
        let origin = element.trim();
        if origin.is_empty() {
            return Err(env_error(VAR, "an element of the list is empty"));
        }
        if origin.contains('*') {
            return Err(env_error(VAR, "wildcard origins are not allowed"));
        }
        let rest = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"))
            .ok_or_else(|| env_error(VAR, "an origin must start with http:// or https://"))?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
            return Err(env_error(
                VAR,
                "an origin is a scheme, a host and an optional port, nothing else",
            ));
        }
        origins.push(origin.to_owned());
    }
    Ok(origins)
}
