//! Security response headers, tuned for JSON APIs ([`SecurityHeadersLayerBuilder::api`], the default) or
//! HTML applications ([`SecurityHeadersLayerBuilder::web`]), following the
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
//! Each header can be changed ([`set`](SecurityHeadersLayerBuilder::set) and the named methods) or dropped
//! ([`remove`](SecurityHeadersLayerBuilder::remove)). A header the inner service already set is kept
//! unless [`override_existing(true)`](SecurityHeadersLayerBuilder::override_existing), except
//! `Strict-Transport-Security` on a response to a request known to be plain HTTP (below),
//! which is always removed.
//!
//! # HTTPS detection
//!
//! A request came over HTTPS when its URI scheme is `https` (HTTP/2 `:scheme`, or absolute
//! URIs), or when `X-Forwarded-Proto` says `https` **and** the TCP peer
//! ([`peer_addr`](crate::client_ip::peer_addr)) is one of the configured
//! [`trusted_proxies`](SecurityHeadersLayerBuilder::trusted_proxies). From any other peer that header is
//! ignored. Every line and every comma-separated element of `X-Forwarded-Proto` must be
//! `https` (each hop saw HTTPS); a value over 64 bytes counts as plain HTTP.
//!
//! A request is known to be plain HTTP when its URI scheme is `http`, or when a trusted
//! proxy's `X-Forwarded-Proto` is present and not all `https`. Anything else (an HTTP/1.1
//! request line without a scheme and no trusted proxy saying) is unknown: the layer adds no
//! HSTS, and leaves a handler's own HSTS alone. A server that terminates TLS itself and
//! listens on nothing else says so with
//! [`assume_https(true)`](SecurityHeadersLayerBuilder::assume_https): every request then counts as HTTPS.
//!
//! The URI scheme is what the client itself sent (HTTP/2 `:scheme`, or an absolute-form
//! request line). A client on plain HTTP can claim `https` that way, but it only fools itself:
//! browsers ignore HSTS received over plain HTTP, and the redirect exists to move honest
//! clients to HTTPS.
//!
//! # HTTPS enforcement
//!
//! Off by default. With [`enforce_https(true)`](SecurityHeadersLayerBuilder::enforce_https), a request that
//! arrived over plain HTTP gets `301 Moved Permanently` to the `https://` URL built from its
//! validated `Host` (without its port, or with [`https_port`](SecurityHeadersLayerBuilder::https_port)) and
//! path for `GET`/`HEAD`, and a 403 problem ([`ProblemType::HTTPS_REQUIRED`]) for any other
//! method. A missing or malformed `Host` gets a 400 problem, never a redirect elsewhere. The
//! `Host` is the client's to choose: with [`https_host`](SecurityHeadersLayerBuilder::https_host) the
//! redirect always goes to the configured host instead, so a forged `Host` cannot put another
//! site in a `Location` that a shared cache might keep.
//!
//! [`ProblemType::HTTPS_REQUIRED`]: crate::refusal::ProblemType::HTTPS_REQUIRED

mod config;
mod future;
mod https;
mod layer;
mod service;

pub use config::{FrameOptions, SecurityHeadersLayerBuilder};
pub use future::ResponseFuture;
pub use https::{Hsts, ONE_YEAR_SECS};
pub use layer::SecurityHeadersLayer;
pub use service::SecurityHeadersService;
