//! Gives every request an id that is safe to log, and sends it back on every response.
//!
//! ```
//! use http::{Request, Response};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_shield::RequestId;
//! use tower_shield::request_id::RequestIdLayer;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let service = ServiceBuilder::new()
//!     .layer(RequestIdLayer::new())
//!     .service_fn(|request: Request<()>| async move {
//!         // The handler sees the id in the extensions (and in the request header).
//!         let id = request.extensions().get::<RequestId>().unwrap().clone();
//!         Ok::<_, std::convert::Infallible>(Response::new(id.to_string()))
//!     });
//!
//! // A client-chosen id is not trusted by default: it is replaced, never echoed.
//! let request = Request::builder()
//!     .header("x-request-id", "forged id\tINFO admin logged in")
//!     .body(())
//!     .unwrap();
//! let response = service.oneshot(request).await.unwrap();
//! let id = response.headers()["x-request-id"].to_str().unwrap();
//! assert_eq!(id.len(), 36); // a UUID v4
//! assert_eq!(response.body(), id);
//! # }
//! ```
//!
//! # What the layer does
//!
//! - Reads the request header (`x-request-id` by default) only when told to trust it
//!   ([`RequestIdLayerBuilder::trust_incoming`], or [`RequestIdLayerBuilder::trust_incoming_from`] for
//!   requests from listed proxies only); even then the value is kept only when it is a single
//!   header line of 1 to 128 bytes of `[A-Za-z0-9._:-]`. Anything else (several lines, newlines,
//!   control bytes, non-UTF-8, a 10 KB value) is replaced by a fresh id and never echoed, so a
//!   client cannot forge log lines.
//! - Generates a UUID v4 (or v7 with [`RequestIdLayerBuilder::uuid_v7`]) from a userspace CSPRNG
//!   (uuid's `fast-rng`), formatted on the stack, or takes ids from your own
//!   [`generator`](RequestIdLayerBuilder::generator), held to the same rule as incoming ids.
//! - Writes the final id into the request header (so inner services read the same value) and
//!   inserts a [`RequestId`] into the request extensions: refusals of the other tower-shield
//!   layers put it in their problem body.
//! - Runs the inner service inside a `tracing` span named `request` with a `request_id` field
//!   (made only when a `tracing` subscriber wants INFO spans; otherwise the call costs nothing).
//! - Sets the header on every response the inner stack produces, refusals and 5xx included,
//!   replacing any value the inner service set. An inner service that fails with `Err` has no
//!   response to carry a header; the server turns that error into its own answer.
//!
//! It never refuses a request, so its response keeps the inner body type.
//!
//! With the `axum` feature, [`RequestId`] is also an extractor (see its
//! `FromRequestParts` implementation below).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;
use tracing::instrument::Instrumented;
use tracing::{Instrument, Span};
use uuid::Uuid;

use crate::client_ip::TrustedProxies;
use crate::error::ConfigError;
use crate::extensions::{RequestId, is_id_byte};
use crate::telemetry::{self, Counter};

/// The default header: `x-request-id`.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest incoming id ever kept, in bytes.
pub const MAX_ID_LEN: usize = 128;

/// How new ids are made.
#[derive(Clone)]
enum Generator {
    V4,
    V7,
    /// The user's generator (checked like an incoming id).
    Custom(Arc<dyn Fn() -> HeaderValue + Send + Sync>),
}

impl fmt::Debug for Generator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V4 => "V4",
            Self::V7 => "V7",
            Self::Custom(_) => "Custom",
        })
    }
}

/// Whose incoming ids are kept (when valid).
#[derive(Debug, Clone)]
enum Trust {
    Nobody,
    Everyone,
    /// Only requests whose TCP peer is one of these proxies.
    Proxies(TrustedProxies),
}

impl Trust {
    /// Whether the incoming id of a request with these extensions may be kept.
    fn allows(&self, extensions: &http::Extensions) -> bool {
        match self {
            Self::Nobody => false,
            Self::Everyone => true,
            Self::Proxies(proxies) => proxies.trusts_peer(extensions),
        }
    }
}

#[derive(Debug, Clone)]
struct Config {
    header_name: HeaderName,
    generator: Generator,
    trust: Trust,
    max_len: usize,
    counters: Counters,
}

/// `tower_shield_request_ids_total`, by source.
#[derive(Debug, Clone)]
struct Counters {
    incoming: Counter,
    generated: Counter,
}

impl Counters {
    fn new() -> Self {
        let source =
            |source| telemetry::counter(telemetry::names::REQUEST_IDS, &[("source", source)]);
        Self {
            incoming: source("incoming"),
            generated: source("generated"),
        }
    }
}

/// Layer that gives every request a [`RequestId`]; see the [module docs](self).
///
/// Cloning is one reference-count increment.
#[derive(Debug, Clone)]
#[must_use]
pub struct RequestIdLayer {
    config: Arc<Config>,
}

impl Default for RequestIdLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl RequestIdLayer {
    /// UUID v4 ids in `x-request-id`; incoming ids are not trusted.
    pub fn new() -> Self {
        Self {
            config: Arc::new(Config::default()),
        }
    }

    /// A builder, for another header, id maker or trust rule.
    pub fn builder() -> RequestIdLayerBuilder {
        RequestIdLayerBuilder {
            config: Config::default(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            header_name: X_REQUEST_ID.clone(),
            generator: Generator::V4,
            trust: Trust::Nobody,
            max_len: MAX_ID_LEN,
            counters: Counters::new(),
        }
    }
}

/// Builds a [`RequestIdLayer`]; [`build`](Self::build) checks the settings.
#[derive(Debug, Clone)]
#[must_use]
pub struct RequestIdLayerBuilder {
    config: Config,
}

impl RequestIdLayerBuilder {
    /// Reads and writes this header instead of `x-request-id`.
    pub fn header_name(mut self, name: HeaderName) -> Self {
        self.config.header_name = name;
        self
    }

    /// Generates UUID v7 ids (time-ordered, so logs sort by id) instead of v4.
    ///
    /// This and [`generator`](Self::generator) choose how ids are made: the last call wins.
    pub fn uuid_v7(mut self) -> Self {
        self.config.generator = Generator::V7;
        self
    }

    /// Makes new ids with `make` instead of UUIDs: a ULID, a Snowflake id, an id that
    /// carries a trace decision.
    ///
    /// An id is held to the rule incoming ids are: 1 to [`max_len`](Self::max_len) bytes of
    /// `[A-Za-z0-9._:-]` (128 at most). A value `make` returns that breaks it is not used:
    /// the request gets a UUID v4 instead (36 bytes, whatever `max_len` says), so ids stay
    /// safe to log and to put in problem bodies whatever the generator does. This and
    /// [`uuid_v7`](Self::uuid_v7) choose how ids are made: the last call wins.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use http::{HeaderValue, Request, Response};
    /// use tower::{ServiceBuilder, ServiceExt};
    /// use tower_shield::request_id::RequestIdLayer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// static NEXT: AtomicU64 = AtomicU64::new(1);
    /// let layer = RequestIdLayer::builder()
    ///     .generator(|| HeaderValue::from(NEXT.fetch_add(1, Ordering::Relaxed)))
    ///     .build()
    ///     .unwrap();
    /// let service = ServiceBuilder::new()
    ///     .layer(layer)
    ///     .service_fn(|_: Request<()>| async { Ok::<_, std::convert::Infallible>(Response::new(())) });
    /// let response = service.oneshot(Request::new(())).await.unwrap();
    /// assert_eq!(response.headers()["x-request-id"], "1");
    /// # }
    /// ```
    pub fn generator(mut self, make: impl Fn() -> HeaderValue + Send + Sync + 'static) -> Self {
        self.config.generator = Generator::Custom(Arc::new(make));
        self
    }

    /// Whether an incoming id is kept (default `false`), whoever sent it.
    ///
    /// Turn it on only when every request comes through a proxy you control that sets the
    /// header; when clients can also reach the service directly, use
    /// [`trust_incoming_from`](Self::trust_incoming_from). Even when trusted, an id is kept
    /// only when it is one header line of at most [`max_len`](Self::max_len) bytes of
    /// `[A-Za-z0-9._:-]`. This and [`trust_incoming_from`](Self::trust_incoming_from) set the
    /// same rule: the last call wins.
    pub fn trust_incoming(mut self, trust: bool) -> Self {
        self.config.trust = if trust {
            Trust::Everyone
        } else {
            Trust::Nobody
        };
        self
    }

    /// Keeps an incoming id only on requests whose TCP peer is one of `proxies` (and only
    /// when it is valid, as with [`trust_incoming`](Self::trust_incoming)); every other
    /// request, and one whose peer address is unknown, gets a fresh id.
    ///
    /// The peer is read as the rate limiter reads it: a `SocketAddr` in the request
    /// extensions, axum's `ConnectInfo<SocketAddr>` (feature `axum`) or tonic's
    /// `TcpConnectInfo` (feature `tonic`); forwarding headers are not consulted. An empty list
    /// trusts nobody. The proxies must set or strip the header themselves: one that passes a
    /// client's `X-Request-ID` through lets that client choose its id (a valid one only).
    ///
    /// ```
    /// use std::net::SocketAddr;
    /// use http::{Request, Response};
    /// use tower::{ServiceBuilder, ServiceExt};
    /// use tower_shield::client_ip::TrustedProxies;
    /// use tower_shield::request_id::RequestIdLayer;
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let proxies = TrustedProxies::new(["10.0.0.0/8"]).unwrap();
    /// let service = ServiceBuilder::new()
    ///     .layer(RequestIdLayer::builder().trust_incoming_from(proxies).build().unwrap())
    ///     .service_fn(|_: Request<()>| async { Ok::<_, std::convert::Infallible>(Response::new(())) });
    /// let from = |peer: [u8; 4]| {
    ///     let mut request = Request::builder().header("x-request-id", "lb-7f3a").body(()).unwrap();
    ///     request.extensions_mut().insert(SocketAddr::from((peer, 40000)));
    ///     request
    /// };
    /// // The load balancer's id is kept; the same header straight from a client is not.
    /// let kept = service.clone().oneshot(from([10, 0, 0, 2])).await.unwrap();
    /// assert_eq!(kept.headers()["x-request-id"], "lb-7f3a");
    /// let replaced = service.oneshot(from([203, 0, 113, 9])).await.unwrap();
    /// assert_ne!(replaced.headers()["x-request-id"], "lb-7f3a");
    /// # }
    /// ```
    pub fn trust_incoming_from(mut self, proxies: TrustedProxies) -> Self {
        self.config.trust = Trust::Proxies(proxies);
        self
    }

    /// The longest incoming id kept, or [`generator`](Self::generator) id used, in bytes:
    /// 1 to 128 (the default; anything else is an error when built). The layer's own UUIDs
    /// are 36 bytes whatever it is.
    pub fn max_len(mut self, max_len: usize) -> Self {
        self.config.max_len = max_len;
        self
    }

    /// The layer, or the setting that is out of range.
    pub fn build(self) -> Result<RequestIdLayer, ConfigError> {
        if !(1..=MAX_ID_LEN).contains(&self.config.max_len) {
            return Err(ConfigError::invalid(
                "max_len",
                "must be between 1 and 128 bytes",
            ));
        }
        Ok(RequestIdLayer {
            config: Arc::new(self.config),
        })
    }
}

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestIdService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestIdService {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}

/// Service made by [`RequestIdLayer`].
#[derive(Debug, Clone)]
pub struct RequestIdService<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> RequestIdService<S> {
    crate::inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RequestIdService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let config = &*self.config;
        let trusted = if config.trust.allows(request.extensions()) {
            trusted_incoming(request.headers(), &config.header_name, config.max_len)
        } else {
            None
        };
        let id = match trusted {
            // Already the one and only line of the header: nothing to rewrite.
            Some(id) => {
                config.counters.incoming.increment(1);
                id
            }
            None => {
                config.counters.generated.increment(1);
                let id = new_id(&config.generator, config.max_len);
                // One header line with the final value, whatever the client sent.
                request
                    .headers_mut()
                    .insert(config.header_name.clone(), id.clone());
                id
            }
        };
        let request_id = RequestId::new(id.clone());
        let span = request_span(&request_id);
        request.extensions_mut().insert(request_id);

        let header = Some((config.header_name.clone(), id));
        // Without a span, the inner future is polled as it is: no `Instrumented` wrapper whose
        // every poll and drop enters and exits a disabled span. (Each arm builds the whole
        // future, so it is written in place rather than moved once more.)
        match span {
            None => ResponseFuture {
                inner: Inner::Plain {
                    future: self.inner.call(request),
                },
                header,
            },
            Some(span) => {
                let future = {
                    let _entered = span.enter();
                    self.inner.call(request)
                };
                ResponseFuture {
                    inner: Inner::Traced {
                        future: future.instrument(span),
                    },
                    header,
                }
            }
        }
    }
}

pin_project! {
    /// Response future of [`RequestIdService`]: the inner future (inside the request span when
    /// one is recorded), then the id header set on the response.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: Inner<F>,
        header: Option<(HeaderName, HeaderValue)>,
    }
}

pin_project! {
    #[project = InnerProj]
    enum Inner<F> {
        Plain { #[pin] future: F },
        Traced { #[pin] future: Instrumented<F> },
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let polled = match this.inner.project() {
            InnerProj::Plain { future } => future.poll(cx),
            InnerProj::Traced { future } => future.poll(cx),
        };
        let mut response = match polled {
            Poll::Ready(Ok(response)) => response,
            other => return other,
        };
        if let Some((name, value)) = this.header.take() {
            response.headers_mut().insert(name, value);
        }
        Poll::Ready(Ok(response))
    }
}

/// The `request` span around the inner call, or `None` when no subscriber wants it.
///
/// A disabled span from `info_span!` still carries its metadata, and with `tracing`'s `log`
/// feature (which many dependency trees turn on) every enter, exit and drop of it calls into
/// the `log` crate; without a span the inner future is not wrapped at all. The span is only
/// ever made for a `tracing` subscriber, not mirrored into `log` records.
fn request_span(request_id: &RequestId) -> Option<Span> {
    if !tracing::level_enabled!(tracing::Level::INFO) {
        return None;
    }
    let span = tracing::info_span!("request", request_id = %request_id);
    if span.is_disabled() { None } else { Some(span) }
}

/// Whether `value` is an id worth keeping: 1 to `max_len` bytes of `[A-Za-z0-9._:-]`.
pub fn is_valid_id(value: &[u8], max_len: usize) -> bool {
    !value.is_empty()
        && value.len() <= max_len.min(MAX_ID_LEN)
        && value.iter().all(|&b| is_id_byte(b))
}

/// The incoming id when it is exactly one valid header line.
fn trusted_incoming(headers: &HeaderMap, name: &HeaderName, max_len: usize) -> Option<HeaderValue> {
    let mut lines = headers.get_all(name).iter();
    let first = lines.next()?;
    if lines.next().is_some() || !is_valid_id(first.as_bytes(), max_len) {
        return None;
    }
    Some(first.clone())
}

/// A fresh id as a header value: a UUID formatted on the stack, or the generator's id when it
/// is a valid one of at most `max_len` bytes (else a UUID v4).
fn new_id(generator: &Generator, max_len: usize) -> HeaderValue {
    let uuid = match generator {
        Generator::V4 => Uuid::new_v4(),
        Generator::V7 => Uuid::now_v7(),
        Generator::Custom(make) => {
            let id = make();
            if is_valid_id(id.as_bytes(), max_len) {
                return id;
            }
            Uuid::new_v4()
        }
    };
    uuid_header_value(uuid)
}

fn uuid_header_value(uuid: Uuid) -> HeaderValue {
    let mut buffer = [0u8; uuid::fmt::Hyphenated::LENGTH];
    uuid.hyphenated().encode_lower(&mut buffer);
    // The value is cloned into the request header, the extension and the response header.
    // Owning the array in a reference-counted `Bytes` makes that one allocation; a copied
    // `Vec` would take a second one when its first clone promotes it to shared storage.
    // A hyphenated UUID is always a valid header value.
    HeaderValue::from_maybe_shared(Bytes::from_owner(buffer))
        .unwrap_or_else(|_| HeaderValue::from_static("00000000-0000-0000-0000-000000000000"))
}

/// A 500 for a route that asks for the request id without a [`RequestIdLayer`] in front of
/// it (a server misconfiguration; the body says no more than that).
#[cfg(feature = "axum")]
static REQUEST_ID_MISSING: crate::refusal::ProblemType = crate::refusal::ProblemType::new(
    http::StatusCode::INTERNAL_SERVER_ERROR,
    "server-misconfigured",
    "Internal Server Error",
    "The server is misconfigured.",
);

#[cfg(feature = "axum")]
crate::axum_rejection!(
    /// The rejection of the [`RequestId`] extractor when no [`RequestIdLayer`] ran: a 500
    /// problem+json (a misconfigured server, not the client's fault). Its `Display` says
    /// what is missing, for the logs.
    #[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
    MissingRequestId,
    "no request id: RequestIdLayer does not run in front of this route"
);

/// Axum extractor: the request's id, the one [`RequestIdLayer`] chose (and sent back in the
/// response header).
///
/// Without the layer it rejects with [`MissingRequestId`] (500) rather than invent an id
/// that no response or log line would carry; a warning is logged once. Use
/// `Option<RequestId>` where the layer is optional.
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RequestId {
    type Rejection = MissingRequestId;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        if let Some(id) = parts.extensions.get::<Self>() {
            return Ok(id.clone());
        }
        static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
        if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(
                target: "tower_shield::request_id",
                "a handler asks for the RequestId but no RequestIdLayer runs in front of it: answered 500"
            );
        }
        Err(MissingRequestId(
            crate::refusal::Refusal::new(&REQUEST_ID_MISSING)
                .build(&parts.headers, &parts.extensions),
        ))
    }
}

/// Axum extractor for `Option<RequestId>`: `None` when no [`RequestIdLayer`] ran.
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
impl<S: Send + Sync> axum::extract::OptionalFromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Self>().cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn charset_and_length() {
        assert!(is_valid_id(b"abc-DEF_0.9:x", 128));
        assert!(is_valid_id(&[b'a'; 128], 128));
        assert!(!is_valid_id(&[b'a'; 129], 128));
        assert!(!is_valid_id(&[b'a'; 129], 1000));
        assert!(!is_valid_id(b"abc", 2));
        assert!(!is_valid_id(b"", 128));
        for bad in [
            &b"a b"[..],
            b"a\nb",
            b"a\rb",
            b"a\tb",
            b"a\x00b",
            b"a\x7fb",
            b"\xff\xfe",
            b"a/b",
            b"a\"b",
            b"a%0ab",
        ] {
            assert!(!is_valid_id(bad, 128), "{bad:?}");
        }
    }

    #[test]
    fn generated_ids_are_uuids() {
        let v4 = new_id(&Generator::V4, MAX_ID_LEN);
        let parsed = Uuid::parse_str(v4.to_str().unwrap()).unwrap();
        assert_eq!(parsed.get_version_num(), 4);
        let v7 = new_id(&Generator::V7, MAX_ID_LEN);
        let parsed = Uuid::parse_str(v7.to_str().unwrap()).unwrap();
        assert_eq!(parsed.get_version_num(), 7);
        assert!(is_valid_id(v7.as_bytes(), MAX_ID_LEN));
        assert_ne!(
            new_id(&Generator::V4, MAX_ID_LEN),
            new_id(&Generator::V4, MAX_ID_LEN)
        );
    }

    #[test]
    fn several_lines_are_not_trusted() {
        let mut headers = HeaderMap::new();
        headers.append(&X_REQUEST_ID, HeaderValue::from_static("one"));
        assert_eq!(
            trusted_incoming(&headers, &X_REQUEST_ID, 128).unwrap(),
            "one"
        );
        headers.append(&X_REQUEST_ID, HeaderValue::from_static("two"));
        assert!(trusted_incoming(&headers, &X_REQUEST_ID, 128).is_none());
    }

    #[test]
    fn max_len_out_of_range_is_an_error() {
        for bad in [0, 129, 10_000] {
            assert!(
                RequestIdLayer::builder().max_len(bad).build().is_err(),
                "{bad}"
            );
        }
        for good in [1, 36, 128] {
            let layer = RequestIdLayer::builder().max_len(good).build().unwrap();
            assert_eq!(layer.config.max_len, good);
        }
    }

    proptest! {
        #[test]
        fn accepted_ids_are_safe(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if is_valid_id(&bytes, MAX_ID_LEN) {
                prop_assert!(bytes.len() <= MAX_ID_LEN);
                prop_assert!(bytes.iter().all(|b| b.is_ascii_graphic()));
                prop_assert!(HeaderValue::from_bytes(&bytes).is_ok());
            }
        }

        #[test]
        fn valid_charset_is_accepted(id in "[A-Za-z0-9._:-]{1,128}") {
            prop_assert!(is_valid_id(id.as_bytes(), MAX_ID_LEN));
        }
    }
}
