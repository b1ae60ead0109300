//! The service: decides per request, answers preflights, hands the rest to the inner service.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, HOST, ORIGIN, VARY,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use tower_service::Service;

use super::config::{MAX_REQUEST_HEADERS_LEN, MAX_REQUESTED_HEADERS, Validated};
use super::future::ResponseFuture;
use crate::body::ShieldBody;
use crate::refusal::{ProblemType, Refusal};
use crate::telemetry::{Counter, EventGate, client_of, loggable, request_id_of};

pub(crate) static TRUE: HeaderValue = HeaderValue::from_static("true");
static PREFLIGHT_VARY: HeaderValue = HeaderValue::from_static(
    "Origin, Access-Control-Request-Method, Access-Control-Request-Headers",
);
pub(crate) static VARY_ORIGIN: HeaderValue = HeaderValue::from_static("Origin");
static REQUEST_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-request-private-network");
static ALLOW_PRIVATE_NETWORK: HeaderName =
    HeaderName::from_static("access-control-allow-private-network");

/// The service made by [`CorsLayer`](super::CorsLayer).
#[derive(Clone, Debug)]
pub struct CorsService<S> {
    inner: S,
    config: Arc<Validated>,
}

impl<S> CorsService<S> {
    pub(crate) fn new(inner: S, config: Arc<Validated>) -> Self {
        Self { inner, config }
    }

    crate::inner_service_accessors!();
}

/// Why a preflight or a strict-mode request was refused (for the security event).
#[derive(Debug, Clone, Copy)]
enum Reason {
    Origin,
    Method,
    Headers,
}

fn refuse<B>(
    headers: &HeaderMap,
    extensions: &http::Extensions,
    vary: &HeaderValue,
    reason: Reason,
    counter: &Counter,
) -> Response<ShieldBody<B>> {
    counter.increment(1);
    rejected_event(headers, extensions, reason);
    Refusal::new(&ProblemType::CORS_REJECTED)
        .with_header(VARY, vary.clone())
        .build(headers, extensions)
}

/// Whether `Origin` names the host the request was sent to (`https://api.example` with
/// `Host: api.example`): the page's own request, not a cross-origin one.
#[cold]
fn same_origin(headers: &HeaderMap) -> bool {
    let (Some(origin), Some(host)) = (headers.get(ORIGIN), headers.get(HOST)) else {
        return false;
    };
    let origin = origin.as_bytes();
    origin
        .windows(3)
        .position(|w| w == b"://")
        .and_then(|at| origin.get(at + 3..))
        .is_some_and(|authority| authority.eq_ignore_ascii_case(host.as_bytes()))
}

/// The `cors.rejected` security event (bounded per client). The `Origin` is logged bounded
/// and printable only.
#[cold]
fn rejected_event(headers: &HeaderMap, extensions: &http::Extensions, reason: Reason) {
    static GATE: EventGate = EventGate::new();
    let client = client_of(extensions);
    let Some(suppressed) = GATE.admit(client) else {
        return;
    };
    let origin = headers
        .get(ORIGIN)
        .map(|v| loggable(&String::from_utf8_lossy(v.as_bytes())))
        .unwrap_or_default();
    tracing::warn!(
        target: "tower_shield::security",
        event = "cors.rejected",
        reason = reason.label(),
        origin = %origin,
        client_ip = %client.map(|ip| ip.to_string()).unwrap_or_default(),
        request_id = %request_id_of(extensions),
        suppressed,
        "cross-origin request refused"
    );
}

impl Reason {
    fn label(self) -> &'static str {
        match self {
            Self::Origin => "origin",
            Self::Method => "method",
            Self::Headers => "headers",
        }
    }
}

/// Whether every header a preflight asks for is allowed (case-insensitively), with the list
/// bounded in length and count.
fn requested_headers_allowed(config: &Validated, headers: &HeaderMap) -> bool {
    let mut total = 0usize;
    let mut count = 0usize;
    for value in headers.get_all(ACCESS_CONTROL_REQUEST_HEADERS) {
        let bytes = value.as_bytes();
        total += bytes.len();
        if total > MAX_REQUEST_HEADERS_LEN {
            return false;
        }
        for name in bytes.split(|b| *b == b',') {
            let name = name.trim_ascii();
            if name.is_empty() {
                continue;
            }
            count += 1;
            if count > MAX_REQUESTED_HEADERS {
                return false;
            }
            if !config
                .headers
                .iter()
                .any(|allowed| allowed.as_str().as_bytes().eq_ignore_ascii_case(name))
            {
                return false;
            }
        }
    }
    true
}

/// Answers a preflight: 204 with the allow headers, or a refusal.
fn preflight<B>(
    config: &Validated,
    allowed: Option<HeaderValue>,
    headers: &HeaderMap,
    extensions: &http::Extensions,
) -> Response<ShieldBody<B>> {
    let Some(allow_origin) = allowed else {
        return refuse(
            headers,
            extensions,
            &PREFLIGHT_VARY,
            Reason::Origin,
            &config.rejected_preflights,
        );
    };
    let mut methods = headers.get_all(ACCESS_CONTROL_REQUEST_METHOD).iter();
    let method_ok = match (methods.next(), methods.next()) {
        (Some(method), None) => config
            .methods
            .iter()
            .any(|allowed| allowed.as_str().as_bytes() == method.as_bytes()),
        _ => false,
    };
    if !method_ok {
        return refuse(
            headers,
            extensions,
            &PREFLIGHT_VARY,
            Reason::Method,
            &config.rejected_preflights,
        );
    }
    if !requested_headers_allowed(config, headers) {
        return refuse(
            headers,
            extensions,
            &PREFLIGHT_VARY,
            Reason::Headers,
            &config.rejected_preflights,
        );
    }
    let mut response = Response::new(ShieldBody::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let out = response.headers_mut();
    out.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allow_origin);
    if config.credentials {
        out.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE.clone());
    }
    out.insert(
        ACCESS_CONTROL_ALLOW_METHODS,
        config.allow_methods_value.clone(),
    );
    if let Some(value) = &config.allow_headers_value {
        out.insert(ACCESS_CONTROL_ALLOW_HEADERS, value.clone());
    }
    out.insert(ACCESS_CONTROL_MAX_AGE, config.max_age_value.clone());
    if config.private_network
        && headers
            .get(&REQUEST_PRIVATE_NETWORK)
            .is_some_and(|v| v.as_bytes() == b"true")
    {
        out.insert(ALLOW_PRIVATE_NETWORK.clone(), TRUE.clone());
    }
    out.insert(VARY, PREFLIGHT_VARY.clone());
    response
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CorsService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ShieldBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let config = &*self.config;
        let headers = request.headers();
        let mut origins = headers.get_all(ORIGIN).iter();
        let (origin_present, allowed) = match (origins.next(), origins.next()) {
            (None, _) => (false, None),
            (Some(origin), None) => (true, config.allow_origin(origin)),
            // Several `Origin` lines: never allowed.
            (Some(_), Some(_)) => (true, None),
        };
        if origin_present
            && request.method() == Method::OPTIONS
            && headers.contains_key(ACCESS_CONTROL_REQUEST_METHOD)
        {
            return ResponseFuture::ready(preflight(
                config,
                allowed,
                headers,
                request.extensions(),
            ));
        }
        if config.strict && origin_present && allowed.is_none() {
            return ResponseFuture::ready(refuse(
                headers,
                request.extensions(),
                &VARY_ORIGIN,
                Reason::Origin,
                &config.rejected_simple,
            ));
        }
        let refused = origin_present && allowed.is_none();
        // Browsers send `Origin` on a page's own POSTs too: served without CORS headers like
        // any other, but not counted or logged as a cross-origin attempt.
        if refused && !same_origin(headers) {
            config.rejected_simple.increment(1);
            rejected_event(headers, request.extensions(), Reason::Origin);
        }
        let allowed = allowed.map(|origin| (origin, Arc::clone(&self.config)));
        ResponseFuture::inner(self.inner.call(request), allowed, refused)
    }
}
