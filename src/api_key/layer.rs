//! [`ApiKeyLayer`], its builder, service and response future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use dashmap::DashMap;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, header};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::key::{KeyHash, KeyId, Presented};
use super::store::{ApiKeyRecord, ApiKeyStore};
use crate::body::ShieldBody;
use crate::client_ip::{ClientIp, ClientIpResolver};
use crate::clock::{Clock, SystemClock};
use crate::error::{ConfigError, StoreError};
use crate::jwt::revocation::StoreFuture;
use crate::refusal::{ProblemType, Refusal};
use crate::telemetry::{self, Counter, EventGate};

/// The default header a key may come in (besides `Authorization: ApiKey …`).
pub static DEFAULT_API_KEY_HEADER: HeaderName = HeaderName::from_static("x-api-key");

/// The longest header value read for a key; anything longer is refused unread.
const MAX_KEY_HEADER: usize = 256;

/// How often one process records a key's use in the store.
const TOUCH_EVERY_SECS: u64 = 60;

/// The most keys whose last touch one process remembers.
const MAX_TOUCHED: usize = 100_000;

/// Which key authenticated a request, in its extensions (beside the
/// [`Principal`](crate::Principal) and [`Scopes`](crate::jwt::Scopes) the key grants).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApiKeyIdentity {
    /// The key record's id.
    pub key_id: KeyId,
    /// The key's name.
    pub name: Arc<str>,
}

/// Server-to-server authentication with API keys: reads the key from
/// `Authorization: ApiKey <key>` or `X-API-Key` (never from the URL), checks its hash, state,
/// expiry and that the client's address is in the key's allowlist, and puts the same
/// [`Principal`](crate::Principal) (the key's owner and role) and
/// [`Scopes`](crate::jwt::Scopes) a `JwtAuthLayer` would, plus an
/// [`ApiKeyIdentity`], into the request extensions.
///
/// Refusals are problem+json: 401 with `WWW-Authenticate: ApiKey realm="…"` for a missing,
/// malformed, unknown, wrong, revoked or expired key (all alike); 403 `forbidden` for a valid
/// key used from an address outside its allowlist (no hint of the list); 503 when the store
/// cannot answer. A key that cannot be well formed costs no store round trip.
///
/// ```
/// use std::net::SocketAddr;
/// use http::{Request, Response, StatusCode};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
/// use tower_shield::Principal;
/// use tower_shield::api_key::{ApiKeyLayer, ApiKeys, IpAllowlist, MemoryApiKeyStore, NewApiKey};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let keys = ApiKeys::new(MemoryApiKeyStore::new());
/// let allowed = IpAllowlist::Networks(vec!["10.0.0.0/8".parse()?]);
/// let (key, _record) = keys.create(NewApiKey::new("svc_billing", "nightly export", allowed)).await?;
/// let service = ServiceBuilder::new()
///     .layer(ApiKeyLayer::builder(keys.store().clone()).build()?)
///     .service(service_fn(|req: Request<String>| async move {
///         let who = req.extensions().get::<Principal>().unwrap().subject.to_string();
///         Ok::<_, std::convert::Infallible>(Response::new(who))
///     }));
/// let call = |from: &str| {
///     let mut req = Request::get("/").header("x-api-key", key.expose()).body(String::new()).unwrap();
///     req.extensions_mut().insert(from.parse::<SocketAddr>().unwrap());
///     service.clone().oneshot(req)
/// };
/// assert_eq!(call("10.1.2.3:4000").await?.status(), StatusCode::OK);
/// assert_eq!(call("203.0.113.9:4000").await?.status(), StatusCode::FORBIDDEN);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
#[must_use]
pub struct ApiKeyLayer {
    shared: Arc<Shared>,
}

impl fmt::Debug for ApiKeyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyLayer")
            .field("store", &self.shared.store)
            .field("header", &self.shared.header)
            .field("optional", &self.shared.optional)
            .finish_non_exhaustive()
    }
}

struct Shared {
    store: Arc<dyn ApiKeyStore>,
    header: HeaderName,
    resolver: ClientIpResolver,
    optional: bool,
    clock: Arc<dyn Clock>,
    challenge: HeaderValue,
    /// Per key: the last second this process recorded its use.
    touched: DashMap<KeyId, u64>,
    counters: Counters,
}

/// `tower_shield_apikey_requests_total`, by outcome.
struct Counters {
    accepted: Counter,
    refused: Counter,
    ip_denied: Counter,
    unavailable: Counter,
}

impl ApiKeyLayer {
    /// A builder on a key store.
    pub fn builder(store: impl ApiKeyStore) -> ApiKeyLayerBuilder {
        ApiKeyLayerBuilder {
            store: Arc::new(store),
            header: DEFAULT_API_KEY_HEADER.clone(),
            resolver: ClientIpResolver::default(),
            optional: false,
            clock: Arc::new(SystemClock),
            realm: "api".to_owned(),
        }
    }
}

/// Builds an [`ApiKeyLayer`].
#[must_use]
pub struct ApiKeyLayerBuilder {
    store: Arc<dyn ApiKeyStore>,
    header: HeaderName,
    resolver: ClientIpResolver,
    optional: bool,
    clock: Arc<dyn Clock>,
    realm: String,
}

impl fmt::Debug for ApiKeyLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyLayerBuilder")
            .field("header", &self.header)
            .field("optional", &self.optional)
            .field("realm", &self.realm)
            .finish_non_exhaustive()
    }
}

impl ApiKeyLayerBuilder {
    /// The header a key may come in besides `Authorization: ApiKey` (default `x-api-key`).
    pub fn header(mut self, name: HeaderName) -> Self {
        self.header = name;
        self
    }

    /// How the client's address is found for the allowlists (trusted proxies and the header
    /// they set; default: the TCP peer). A `ClientIp` already in the request is used as is.
    pub fn client_ip(mut self, resolver: ClientIpResolver) -> Self {
        self.resolver = resolver;
        self
    }

    /// Lets requests without any key through untouched (for routes that accept another
    /// credential too). A key that is present is still checked and refused when invalid.
    pub fn optional(mut self) -> Self {
        self.optional = true;
        self
    }

    /// The clock for expiry and rotation windows (default: the system clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The `realm` of the `WWW-Authenticate: ApiKey` challenge (default `api`).
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = realm.into();
        self
    }

    /// The layer; a realm that cannot be a quoted header value is an error.
    pub fn build(self) -> Result<ApiKeyLayer, ConfigError> {
        crate::jwt::check_realm(&self.realm)?;
        if self.header == header::AUTHORIZATION || self.header == header::COOKIE {
            return Err(ConfigError::invalid(
                "header",
                "a dedicated header such as x-api-key (Authorization: ApiKey is always read)",
            ));
        }
        let challenge = HeaderValue::from_str(&format!("ApiKey realm=\"{}\"", self.realm))
            .map_err(|_| ConfigError::invalid("realm", "not a header value"))?;
        let outcome = |outcome| {
            telemetry::counter(telemetry::names::APIKEY_REQUESTS, &[("outcome", outcome)])
        };
        Ok(ApiKeyLayer {
            shared: Arc::new(Shared {
                store: self.store,
                header: self.header,
                resolver: self.resolver,
                optional: self.optional,
                clock: self.clock,
                challenge,
                touched: DashMap::new(),
                counters: Counters {
                    accepted: outcome("accepted"),
                    refused: outcome("refused"),
                    ip_denied: outcome("ip_denied"),
                    unavailable: outcome("unavailable"),
                },
            }),
        })
    }
}

impl<S> Layer<S> for ApiKeyLayer {
    type Service = ApiKeyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ApiKeyService {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service of an [`ApiKeyLayer`].
#[derive(Clone)]
pub struct ApiKeyService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: fmt::Debug> fmt::Debug for ApiKeyService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S> ApiKeyService<S> {
    crate::inner_service_accessors!();
}

/// What a request presents.
enum Extracted {
    Absent,
    Key(Presented),
    /// Present but cannot be a key (or ambiguous): refused without a store round trip.
    Invalid,
}

fn extract(headers: &HeaderMap, name: &HeaderName) -> Extracted {
    let mut found: Option<&[u8]> = None;
    let mut lines = 0;
    let mut other_scheme = false;
    for value in headers.get_all(header::AUTHORIZATION) {
        lines += 1;
        let bytes = value.as_bytes();
        let scheme_end = crate::jwt::scheme_len_of(bytes);
        if bytes
            .get(..scheme_end)
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case(b"apikey"))
        {
            found = Some(bytes.get(scheme_end..).unwrap_or_default().trim_ascii());
        } else {
            other_scheme = true;
        }
    }
    for value in headers.get_all(name) {
        if found.is_some() || other_scheme {
            // Two keys (two lines, or both places), or a key beside another credential (a
            // bearer token of someone else): which identity is meant is unknown.
            return Extracted::Invalid;
        }
        found = Some(value.as_bytes().trim_ascii());
    }
    let Some(text) = found else {
        return Extracted::Absent;
    };
    if lines > 1 || text.len() > MAX_KEY_HEADER {
        return Extracted::Invalid;
    }
    Presented::parse(text).map_or(Extracted::Invalid, Extracted::Key)
}

/// A hash no key has, compared against when a record is missing, so an unknown id and a
/// wrong secret cost the same work.
const NO_KEY: KeyHash = KeyHash([0; 32]);

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ApiKeyService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
{
    type Response = Response<ShieldBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let shared = &self.shared;
        let presented = match extract(request.headers(), &shared.header) {
            Extracted::Absent if shared.optional => {
                return ResponseFuture::calling(self.inner.call(request));
            }
            Extracted::Absent => return ResponseFuture::refused(shared.unauthorized(&request)),
            Extracted::Invalid => return ResponseFuture::refused(shared.unauthorized(&request)),
            Extracted::Key(presented) => presented,
        };
        let mut lookup = shared.store.get(&presented.id);
        if let Some(answer) = lookup.take_ready() {
            let mut request = request;
            return match shared.decide(answer, &presented.hash, &mut request) {
                Ok(()) => ResponseFuture::calling(self.inner.call(request)),
                Err(response) => ResponseFuture::refused(*response),
            };
        }
        let clone = self.inner.clone();
        let svc = std::mem::replace(&mut self.inner, clone);
        ResponseFuture {
            state: State::Looking {
                lookup,
                hash: presented.hash,
                shared: Arc::clone(shared),
                svc: Some(svc),
                req: Some(request),
            },
        }
    }
}

impl Shared {
    fn unauthorized<B, R>(&self, request: &Request<R>) -> Response<ShieldBody<B>> {
        self.counters.refused.increment(1);
        Refusal::new(&ProblemType::UNAUTHORIZED)
            .with_header(header::WWW_AUTHENTICATE, self.challenge.clone())
            .for_request(request)
    }

    /// Applies the store's answer: `Ok` with the identity in the extensions, or the refusal.
    fn decide<B, R>(
        &self,
        answer: Result<Option<Arc<ApiKeyRecord>>, StoreError>,
        hash: &KeyHash,
        request: &mut Request<R>,
    ) -> Result<(), Box<Response<ShieldBody<B>>>> {
        let record = match answer {
            Ok(record) => record,
            Err(error) => {
                self.counters.unavailable.increment(1);
                static FAILURES: crate::log_gate::LogGate = crate::log_gate::LogGate::new();
                if let Some(suppressed) = FAILURES.should_log_now() {
                    tracing::warn!(
                        target: "tower_shield::security",
                        event = "store.unavailable",
                        store = "api_key",
                        %error,
                        suppressed,
                        "API key store failed; refusing"
                    );
                }
                return Err(Box::new(
                    Refusal::new(&ProblemType::UNAVAILABLE)
                        .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
                        .for_request(request),
                ));
            }
        };
        let now = self.clock.unix_secs();
        // The same comparison whether the record exists or not.
        let matches = match &record {
            Some(record) => record.secret_matches(hash, now),
            None => {
                std::hint::black_box(NO_KEY.matches(hash));
                false
            }
        };
        let Some(record) = record.filter(|record| {
            matches && !record.revoked && record.expires_at.is_none_or(|at| now < at)
        }) else {
            return Err(Box::new(self.unauthorized(request)));
        };
        let Ok(client) = self
            .resolver
            .resolve(request.headers(), request.extensions())
        else {
            crate::client_ip::warn_missing_peer();
            return Err(Box::new(
                Refusal::new(&ProblemType::FORBIDDEN).for_request(request),
            ));
        };
        if !record.allowed.allows(client.ip()) {
            self.counters.ip_denied.increment(1);
            ip_denied_event(&record, &client, request);
            return Err(Box::new(
                Refusal::new(&ProblemType::FORBIDDEN).for_request(request),
            ));
        }
        self.counters.accepted.increment(1);
        self.touch(&record.id, now);
        let extensions = request.extensions_mut();
        if extensions.get::<ClientIp>().is_none() {
            extensions.insert(client);
        }
        let granted = record.granted();
        extensions.insert(granted.principal.clone());
        extensions.insert(granted.scopes.clone());
        extensions.insert(granted.identity.clone());
        Ok(())
    }

    /// Records the key's use, at most once a minute per key in this process. A store that
    /// answers later is driven on the Tokio runtime when there is one (feature `redis`).
    fn touch(&self, id: &KeyId, now: u64) {
        let due = self
            .touched
            .get(id)
            .is_none_or(|last| now.saturating_sub(*last) >= TOUCH_EVERY_SECS);
        if !due {
            return;
        }
        if self.touched.len() >= MAX_TOUCHED {
            self.touched.clear();
        }
        self.touched.insert(*id, now);
        let mut touch = self.store.touch(id, now);
        if touch.take_ready().is_none() {
            #[cfg(feature = "redis")]
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(touch);
            }
        }
    }
}

/// The `apikey.ip_denied` security event: a valid key from an address outside its list (a
/// leaked key, or a misconfigured client), bounded per client.
#[cold]
fn ip_denied_event<R>(record: &ApiKeyRecord, client: &ClientIp, request: &Request<R>) {
    static GATE: EventGate = EventGate::new();
    let Some(suppressed) = GATE.admit(Some(client.ip())) else {
        return;
    };
    tracing::warn!(
        target: "tower_shield::security",
        event = "apikey.ip_denied",
        key_id = %record.id,
        owner = %telemetry::loggable(&record.owner),
        client_ip = %client.ip(),
        route = %telemetry::loggable(request.uri().path()),
        request_id = %telemetry::request_id_of(request.extensions()),
        suppressed,
        "API key used from an address outside its allowlist"
    );
}

pin_project! {
    /// The response future of [`ApiKeyService`].
    pub struct ResponseFuture<S, ReqBody, ResBody>
    where
        S: Service<Request<ReqBody>>,
    {
        #[pin]
        state: State<S, ReqBody, ResBody>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody, ResBody>
    where
        S: Service<Request<ReqBody>>,
    {
        Refused { response: Option<Response<ShieldBody<ResBody>>> },
        Looking {
            lookup: StoreFuture<Option<Arc<ApiKeyRecord>>>,
            hash: KeyHash,
            shared: Arc<Shared>,
            svc: Option<S>,
            req: Option<Request<ReqBody>>,
        },
        Calling { #[pin] fut: S::Future },
    }
}

impl<S, ReqBody, ResBody> fmt::Debug for ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("api_key::ResponseFuture")
    }
}

impl<S, ReqBody, ResBody> ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>>,
{
    fn calling(fut: S::Future) -> Self {
        Self {
            state: State::Calling { fut },
        }
    }

    fn refused(response: Response<ShieldBody<ResBody>>) -> Self {
        Self {
            state: State::Refused {
                response: Some(response),
            },
        }
    }
}

impl<S, ReqBody, ResBody> Future for ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Output = Result<Response<ShieldBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Refused { response } => {
                    return match response.take() {
                        Some(response) => Poll::Ready(Ok(response)),
                        None => Poll::Pending,
                    };
                }
                StateProj::Calling { fut } => {
                    let response = ready!(fut.poll(cx))?;
                    return Poll::Ready(Ok(ShieldBody::wrap(response)));
                }
                StateProj::Looking {
                    lookup,
                    hash,
                    shared,
                    svc,
                    req,
                } => {
                    let answer = ready!(Pin::new(lookup).poll(cx));
                    let (Some(mut svc), Some(mut req)) = (svc.take(), req.take()) else {
                        return Poll::Pending;
                    };
                    let next = match shared.decide(answer, hash, &mut req) {
                        Ok(()) => State::Calling { fut: svc.call(req) },
                        Err(response) => State::Refused {
                            response: Some(*response),
                        },
                    };
                    this.state.set(next);
                }
            }
        }
    }
}
