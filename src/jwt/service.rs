//! `JwtAuthService` and its response future.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};

use http::{HeaderValue, Request, Response, header};
use pin_project_lite::pin_project;
use serde::de::DeserializeOwned;
use tower_service::Service;

use super::cache::Settle;
use super::claims::Claims;
use super::layer::{CachedLookup, JwtTelemetry, Outcome, Shared};
use super::revocation::{StoreFuture, TokenRef};
use super::validation::Invalid;
use crate::body::ShieldBody;
use crate::refusal::{ProblemType, Refusal};

/// The service built by [`JwtAuthLayer`](super::JwtAuthLayer).
pub struct JwtAuthService<S, C = Claims> {
    inner: S,
    shared: Arc<Shared<C>>,
}

impl<S, C> JwtAuthService<S, C> {
    pub(crate) fn new(inner: S, shared: Arc<Shared<C>>) -> Self {
        Self { inner, shared }
    }

    crate::inner_service_accessors!();
}

impl<S: Clone, C> Clone for JwtAuthService<S, C> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<S: fmt::Debug, C> fmt::Debug for JwtAuthService<S, C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtAuthService")
            .field("inner", &self.inner)
            .field("config", &self.shared)
            .finish()
    }
}

fn refuse<B, R>(
    problem: &'static ProblemType,
    reason: Invalid,
    request: &Request<R>,
    missing: &HeaderValue,
    invalid: &HeaderValue,
    telemetry: &JwtTelemetry,
) -> Response<ShieldBody<B>> {
    telemetry.refused(reason, request);
    let mut refusal = Refusal::new(problem);
    if problem == &ProblemType::UNAUTHORIZED {
        refusal = refusal.with_header(header::WWW_AUTHENTICATE, missing.clone());
    } else if problem == &ProblemType::INVALID_TOKEN {
        refusal = refusal.with_header(header::WWW_AUTHENTICATE, invalid.clone());
    }
    refusal.for_request(request)
}

/// Why the revocation check refused: the store could not answer (503), or the token is
/// revoked.
fn revocation_reason(problem: &ProblemType) -> Invalid {
    if problem == &ProblemType::UNAVAILABLE {
        Invalid::Unavailable
    } else {
        Invalid::Revoked
    }
}

impl<S, C, ReqBody, ResBody> Service<Request<ReqBody>> for JwtAuthService<S, C>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    C: DeserializeOwned + Clone + Send + Sync + 'static,
{
    type Response = Response<ShieldBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let shared = &self.shared;
        #[cfg(feature = "api-key")]
        if shared.accept_api_keys
            && req
                .extensions()
                .get::<crate::api_key::ApiKeyIdentity>()
                .is_some()
        {
            return ResponseFuture::calling(self.inner.call(req));
        }
        // What `JwtAuthLayer::lookup_cached` left, if anything (used only when it matches).
        let looked_up = if shared.cache.is_some() {
            req.extensions_mut().remove::<CachedLookup<C>>()
        } else {
            None
        };
        let entry = match shared.authenticate(req.headers(), looked_up) {
            Outcome::Anonymous => return ResponseFuture::calling(self.inner.call(req)),
            Outcome::Refuse(problem, reason) => {
                return ResponseFuture::refused(refuse(
                    problem,
                    reason,
                    &req,
                    &shared.missing_challenge,
                    &shared.invalid_challenge,
                    &shared.telemetry,
                ));
            }
            Outcome::Accept(entry, cached) => (entry, cached),
        };
        let (entry, cached) = entry;
        // The revocation check, unless this (cached) token was found not revoked at the
        // store's current generation: nothing has been revoked since.
        let check = shared.revocation.as_ref().and_then(|store| {
            // 0 is "never found": a generation of u64::MAX is not remembered.
            let mark = store.generation().and_then(|g| g.checked_add(1));
            if mark.is_some_and(|mark| entry.unrevoked_at.load(Ordering::Relaxed) == mark) {
                return None;
            }
            let check = store.check(TokenRef {
                jti: entry.verified.jti(),
                session: entry.verified.session(),
                subject: entry.verified.subject(),
                issued_at: entry.iat,
            });
            Some((check, mark))
        });
        let extensions = req.extensions_mut();
        extensions.insert(entry.verified.clone());
        extensions.insert(entry.principal.clone());
        extensions.insert(entry.scopes.clone());
        let Some((mut check, mark)) = check else {
            shared.telemetry.accepted(cached);
            return ResponseFuture::calling(self.inner.call(req));
        };
        match check.take_ready() {
            Some(answer) => match entry.settle(answer, mark) {
                None => {
                    shared.telemetry.accepted(cached);
                    ResponseFuture::calling(self.inner.call(req))
                }
                Some(problem) => ResponseFuture::refused(refuse(
                    problem,
                    revocation_reason(problem),
                    &req,
                    &shared.missing_challenge,
                    &shared.invalid_challenge,
                    &shared.telemetry,
                )),
            },
            None => {
                // The store must be awaited: move the readied inner service into the future
                // and keep a fresh clone here (tower's rule for cloning inner services).
                let clone = self.inner.clone();
                let svc = std::mem::replace(&mut self.inner, clone);
                ResponseFuture {
                    state: State::Checking {
                        check,
                        mark,
                        entry,
                        svc: Some(svc),
                        req: Some(req),
                        challenges: [
                            shared.missing_challenge.clone(),
                            shared.invalid_challenge.clone(),
                        ],
                        telemetry: Arc::clone(&shared.telemetry),
                        cached,
                    },
                }
            }
        }
    }
}

pin_project! {
    /// Response future of [`JwtAuthService`].
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
        Checking {
            check: StoreFuture<bool>,
            // The store's generation + 1 when asked, to remember a "not revoked" answer at.
            mark: Option<u64>,
            // Where the answer is remembered.
            entry: Arc<dyn Settle>,
            svc: Option<S>,
            req: Option<Request<ReqBody>>,
            // `WWW-Authenticate` for a missing and for an invalid token.
            challenges: [HeaderValue; 2],
            telemetry: Arc<JwtTelemetry>,
            cached: bool,
        },
        Calling { #[pin] fut: S::Future },
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

impl<S, ReqBody, ResBody> fmt::Debug for ResponseFuture<S, ReqBody, ResBody>
where
    S: Service<Request<ReqBody>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Refused { .. } => "refused",
            State::Checking { .. } => "checking revocation",
            State::Calling { .. } => "calling",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
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
                StateProj::Checking {
                    check,
                    mark,
                    entry,
                    svc,
                    req,
                    challenges: [missing, invalid],
                    telemetry,
                    cached,
                } => {
                    let answer = ready!(Pin::new(check).poll(cx));
                    let (Some(mut svc), Some(req)) = (svc.take(), req.take()) else {
                        return Poll::Pending;
                    };
                    let next = match entry.settle(answer, *mark) {
                        None => {
                            telemetry.accepted(*cached);
                            State::Calling { fut: svc.call(req) }
                        }
                        Some(problem) => State::Refused {
                            response: Some(refuse(
                                problem,
                                revocation_reason(problem),
                                &req,
                                missing,
                                invalid,
                                telemetry,
                            )),
                        },
                    };
                    this.state.set(next);
                }
            }
        }
    }
}
