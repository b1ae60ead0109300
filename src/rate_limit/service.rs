//! [`RateLimitService`] and its [`ResponseFuture`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response, header};
use pin_project_lite::pin_project;
use tower_service::Service;

use super::headers::{Fields, retry_after_secs};
use super::key::{KeyContext, RateKey};
use super::layer::{Compiled, Config, Stats};
use super::policy::TierChoice;
use super::store::{Decision, FailurePolicy, RateLimitStore};
use crate::body::ShieldBody;
use crate::client_ip::ClientIp;
use crate::error::StoreError;
use crate::refusal::{ProblemType, Refusal, number_value};

/// What the rate limiter decided for a request, in its extensions (for handlers and logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitStatus {
    /// The policy's name.
    pub policy: Arc<str>,
    /// The decision.
    pub decision: Decision,
}

/// The service of a [`RateLimitLayer`](super::RateLimitLayer).
pub struct RateLimitService<S, St: RateLimitStore> {
    inner: S,
    config: Arc<Config<St>>,
}

impl<S: Clone, St: RateLimitStore> Clone for RateLimitService<S, St> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            config: self.config.clone(),
        }
    }
}

impl<S: fmt::Debug, St: RateLimitStore> fmt::Debug for RateLimitService<S, St> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, St: RateLimitStore> RateLimitService<S, St> {
    pub(crate) fn new(inner: S, config: Arc<Config<St>>) -> Self {
        Self { inner, config }
    }

    crate::inner_service_accessors!();
}

/// What the future needs to finish a limited request.
struct Ctx<St: RateLimitStore> {
    config: Arc<Config<St>>,
    policy: usize,
    tier: TierChoice,
    key: RateKey,
    /// Count-only mode: the cost to charge when the response status is in the set.
    charge: u32,
    fields: Option<Fields>,
}

impl<St: RateLimitStore> Ctx<St> {
    fn limiter(&self) -> Option<&St::Limiter> {
        let policy = self.config.policies.get(self.policy)?;
        match policy.tier(self.tier) {
            Compiled::Limited { limiter, .. } => Some(limiter),
            Compiled::Unlimited => None,
        }
    }

    fn fields(&self, decision: &Decision) -> Option<Fields> {
        let policy = self.config.policies.get(self.policy)?;
        let field = match policy.tier(self.tier) {
            Compiled::Limited { policy_field, .. } => policy_field.as_ref(),
            Compiled::Unlimited => None,
        };
        Some(Fields::new(
            self.config.mode,
            &policy.policy.name,
            field,
            decision,
        ))
    }

    fn name(&self) -> Arc<str> {
        self.config
            .policies
            .get(self.policy)
            .map_or_else(|| Arc::from(""), |p| p.policy.name.clone())
    }
}

impl<S, St, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimitService<S, St>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    St: RateLimitStore,
{
    type Response = Response<ShieldBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody, ResBody, St>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let config = &self.config;
        // The client address, inserted into the extensions only when the request goes on
        // (a refused request is dropped: no allocation spent on it).
        let (client_ip, insert_ip) = match req.extensions().get::<ClientIp>() {
            Some(ip) => (Some(*ip), false),
            None => (
                crate::client_ip::peer_addr(req.extensions())
                    .map(|peer| config.resolver.resolve_from_peer(peer.ip(), req.headers())),
                true,
            ),
        };
        let (mut parts, body) = req.into_parts();
        let insert = |parts: &mut http::request::Parts| {
            if insert_ip && let Some(ip) = client_ip {
                parts.extensions.insert(ip);
            }
        };
        let Some(index) = config.select(&parts) else {
            insert(&mut parts);
            return ResponseFuture::call(self.inner.call(Request::from_parts(parts, body)));
        };
        let Some(compiled) = config.policies.get(index) else {
            insert(&mut parts);
            return ResponseFuture::call(self.inner.call(Request::from_parts(parts, body)));
        };
        let policy = &compiled.policy;
        if policy.skip_if.as_ref().is_some_and(|skip| skip(&parts)) {
            insert(&mut parts);
            return ResponseFuture::call(self.inner.call(Request::from_parts(parts, body)));
        }
        let cx = KeyContext {
            client_ip: client_ip.as_ref(),
        };
        let Some(key) = policy.key.extract(&parts, &cx) else {
            Stats::bump(&config.stats.missing_key);
            let problem = if client_ip.is_none() && policy.key.needs_ip() {
                crate::client_ip::warn_missing_peer();
                &ProblemType::FORBIDDEN
            } else {
                &ProblemType::BAD_REQUEST
            };
            return ResponseFuture::ready(
                Refusal::new(problem).build(&parts.headers, &parts.extensions),
            );
        };
        let tier = policy.select_tier(&parts);
        let Compiled::Limited { limiter, .. } = compiled.tier(tier) else {
            insert(&mut parts);
            return ResponseFuture::call(self.inner.call(Request::from_parts(parts, body)));
        };
        let cost = policy
            .cost_fn
            .as_ref()
            .map_or(policy.cost, |f| f(&parts))
            .max(1);
        let ctx = Ctx {
            config: config.clone(),
            policy: index,
            tier,
            key,
            charge: if policy.count_only.is_some() { cost } else { 0 },
            fields: None,
        };
        if let Some(penalties) = &compiled.penalties
            && penalties.locked_for(&ctx.key, config.now_nanos()).is_some()
        {
            // Retrying during a lock-out is one more strike: the lock-out doubles.
            let locked = penalties.strike(&ctx.key, config.now_nanos());
            let decision = Decision {
                allowed: false,
                limit: 0,
                remaining: 0,
                reset: locked,
                retry_after: locked,
            };
            if !config.shadow {
                Stats::bump(&config.stats.limited);
                let response = refuse_429(&ctx, &decision, &parts.headers, &parts.extensions);
                return ResponseFuture::ready(response);
            }
        }
        let cost = if ctx.charge > 0 { 0 } else { cost };
        // A store that answers synchronously (memory) is decided here: no inner-service clone,
        // no request parked in the future.
        let mut ctx = ctx;
        if let Some(result) = config.store.check_now(limiter, &ctx.key, cost) {
            let mut request = Request::from_parts(parts, body);
            if let Some(response) = on_decision(&mut ctx, result, &mut request) {
                return ResponseFuture::ready(response);
            }
            if insert_ip && let Some(ip) = client_ip {
                request.extensions_mut().insert(ip);
            }
            return ResponseFuture {
                state: State::Calling {
                    fut: self.inner.call(request),
                },
                ctx: Some(ctx),
            };
        }
        let check = config.store.check(limiter, &ctx.key, cost);
        insert(&mut parts);
        let clone = self.inner.clone();
        let service = std::mem::replace(&mut self.inner, clone);
        ResponseFuture {
            state: State::Checking {
                check,
                service: Some(service),
                request: Some(Request::from_parts(parts, body)),
            },
            ctx: Some(ctx),
        }
    }
}

/// Applies a store answer: `Some(response)` to refuse, `None` to call the inner service
/// (with the fields to add and the `RateLimitStatus` inserted).
fn on_decision<St: RateLimitStore, R, B>(
    ctx: &mut Ctx<St>,
    result: Result<Decision, StoreError>,
    request: &mut Request<R>,
) -> Option<Response<ShieldBody<B>>> {
    let config = &ctx.config;
    match result {
        Err(err) => {
            store_failed(ctx, &err);
            if config.failure == FailurePolicy::FailClosed && !config.shadow {
                Stats::bump(&config.stats.failed_closed);
                return Some(
                    Refusal::new(&ProblemType::UNAVAILABLE)
                        .with_header(header::RETRY_AFTER, number_value(1))
                        .for_request(request),
                );
            }
            Stats::bump(&config.stats.failed_open);
            ctx.charge = 0;
        }
        Ok(mut decision) => {
            let penalties = config
                .policies
                .get(ctx.policy)
                .and_then(|p| p.penalties.as_ref());
            if decision.allowed {
                Stats::bump(&config.stats.allowed);
                if let Some(penalties) = penalties {
                    penalties.forgive(&ctx.key);
                }
            } else {
                if let Some(penalties) = penalties {
                    let lockout = penalties.strike(&ctx.key, config.now_nanos());
                    decision.retry_after = decision.retry_after.max(lockout);
                }
                if !config.shadow {
                    Stats::bump(&config.stats.limited);
                    return Some(refuse_429(
                        ctx,
                        &decision,
                        request.headers(),
                        request.extensions(),
                    ));
                }
                Stats::bump(&config.stats.shadow_limited);
                tracing::info!(
                    target: "tower_shield::rate_limit",
                    policy = %ctx.name(),
                    key_id = %format_args!("{:016x}", ctx.key.log_id()),
                    "shadow mode: would rate limit"
                );
            }
            ctx.fields = ctx.fields(&decision);
            request.extensions_mut().insert(RateLimitStatus {
                policy: ctx.name(),
                decision,
            });
        }
    }
    None
}

fn refuse_429<St: RateLimitStore, B>(
    ctx: &Ctx<St>,
    decision: &Decision,
    headers: &http::HeaderMap,
    extensions: &http::Extensions,
) -> Response<ShieldBody<B>> {
    let secs = retry_after_secs(decision.retry_after);
    tracing::debug!(
        target: "tower_shield::rate_limit",
        policy = %ctx.name(),
        key_id = %format_args!("{:016x}", ctx.key.log_id()),
        retry_after = secs,
        "rate limited"
    );
    let mut response = Refusal::new(&ProblemType::RATE_LIMITED)
        .with_header(header::RETRY_AFTER, number_value(secs))
        .build(headers, extensions);
    if decision.limit > 0
        && let Some(fields) = ctx.fields(decision)
    {
        fields.apply(response.headers_mut());
    }
    response
}

fn store_failed<St: RateLimitStore>(ctx: &Ctx<St>, err: &StoreError) {
    let config = &ctx.config;
    Stats::bump(&config.stats.store_errors);
    if let Some(suppressed) = config.error_log.should_log(config.now_nanos()) {
        tracing::warn!(
            target: "tower_shield::rate_limit",
            policy = %ctx.name(),
            error = %err,
            suppressed,
            failure_policy = ?config.failure,
            "rate-limit store failed"
        );
    }
}

pin_project! {
    /// The response future of [`RateLimitService`].
    pub struct ResponseFuture<S, ReqBody, ResBody, St>
    where
        S: Service<Request<ReqBody>>,
        St: RateLimitStore,
    {
        #[pin]
        state: State<S, ReqBody, ResBody, St>,
        ctx: Option<Ctx<St>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, ReqBody, ResBody, St>
    where
        S: Service<Request<ReqBody>>,
        St: RateLimitStore,
    {
        Ready { response: Option<Response<ShieldBody<ResBody>>> },
        Checking { #[pin] check: St::Future, service: Option<S>, request: Option<Request<ReqBody>> },
        Calling { #[pin] fut: S::Future },
        Charging { #[pin] check: St::Future, response: Option<Response<ResBody>> },
    }
}

impl<S, ReqBody, ResBody, St> fmt::Debug for ResponseFuture<S, ReqBody, ResBody, St>
where
    S: Service<Request<ReqBody>>,
    St: RateLimitStore,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody, St> ResponseFuture<S, ReqBody, ResBody, St>
where
    S: Service<Request<ReqBody>>,
    St: RateLimitStore,
{
    fn call(fut: S::Future) -> Self {
        Self {
            state: State::Calling { fut },
            ctx: None,
        }
    }

    fn ready(response: Response<ShieldBody<ResBody>>) -> Self {
        Self {
            state: State::Ready {
                response: Some(response),
            },
            ctx: None,
        }
    }
}

impl<S, ReqBody, ResBody, St> Future for ResponseFuture<S, ReqBody, ResBody, St>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    St: RateLimitStore,
{
    type Output = Result<Response<ShieldBody<ResBody>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Ready { response } => {
                    return match response.take() {
                        Some(response) => Poll::Ready(Ok(response)),
                        None => Poll::Pending,
                    };
                }
                StateProj::Checking {
                    check,
                    service,
                    request,
                } => {
                    let result = ready!(check.poll(cx));
                    let (Some(mut service), Some(mut request), Some(ctx)) =
                        (service.take(), request.take(), this.ctx.as_mut())
                    else {
                        return Poll::Pending;
                    };
                    if let Some(response) = on_decision(ctx, result, &mut request) {
                        this.state.set(State::Ready {
                            response: Some(response),
                        });
                        continue;
                    }
                    let fut = service.call(request);
                    this.state.set(State::Calling { fut });
                }
                StateProj::Calling { fut } => {
                    let response = ready!(fut.poll(cx))?;
                    let Some(ctx) = this.ctx.as_mut() else {
                        return Poll::Ready(Ok(response.map(ShieldBody::inner)));
                    };
                    if ctx.charge > 0
                        && let Some(policy) = ctx.config.policies.get(ctx.policy)
                        && policy
                            .policy
                            .count_only
                            .as_ref()
                            .is_some_and(|set| set.contains(&response.status()))
                        && let Some(limiter) = ctx.limiter()
                    {
                        let check = ctx.config.store.check(limiter, &ctx.key, ctx.charge);
                        this.state.set(State::Charging {
                            check,
                            response: Some(response),
                        });
                        continue;
                    }
                    let mut response = response.map(ShieldBody::inner);
                    if let Some(fields) = ctx.fields.take() {
                        fields.apply(response.headers_mut());
                    }
                    return Poll::Ready(Ok(response));
                }
                StateProj::Charging { check, response } => {
                    let result = ready!(check.poll(cx));
                    let Some(response) = response.take() else {
                        return Poll::Pending;
                    };
                    let mut response = response.map(ShieldBody::inner);
                    if let Some(ctx) = this.ctx.as_mut() {
                        match result {
                            Ok(decision) => {
                                if !decision.allowed
                                    && let Some(penalties) = ctx
                                        .config
                                        .policies
                                        .get(ctx.policy)
                                        .and_then(|p| p.penalties.as_ref())
                                {
                                    penalties.strike(&ctx.key, ctx.config.now_nanos());
                                }
                                ctx.fields = ctx.fields(&decision);
                            }
                            Err(err) => store_failed(ctx, &err),
                        }
                        if let Some(fields) = ctx.fields.take() {
                            fields.apply(response.headers_mut());
                        }
                    }
                    return Poll::Ready(Ok(response));
                }
            }
        }
    }
}
