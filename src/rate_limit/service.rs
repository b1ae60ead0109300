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
use super::layer::{Compiled, CompiledPolicy, Config, PenaltyBox, Stats};
use super::policy::TierChoice;
use super::store::{Decision, FailurePolicy, RateLimitStore};
use crate::body::ShieldBody;
use crate::client_ip::ClientIp;
use crate::error::StoreError;
use crate::refusal::{ProblemType, Refusal, number_value, status_meant};
use crate::telemetry::EventGate;

/// What the rate limiter decided for a request, in its extensions (for handlers and logs).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
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

/// The request being decided: its policy, tier and key, borrowed.
struct Scope<'a, St: RateLimitStore> {
    config: &'a Config<St>,
    policy: usize,
    tier: TierChoice,
    key: &'a RateKey,
    /// For the security events (never for deciding: that is the key).
    client: Option<ClientIp>,
}

impl<St: RateLimitStore> Scope<'_, St> {
    fn compiled(&self) -> Option<&CompiledPolicy<St>> {
        self.config.policies.get(self.policy)
    }

    fn limiter(&self) -> Option<&St::Limiter> {
        match self.compiled()?.tier(self.tier) {
            Compiled::Limited { limiter, .. } => Some(limiter),
            Compiled::Unlimited => None,
        }
    }

    fn fields(&self, decision: &Decision) -> Option<Fields> {
        let compiled = self.compiled()?;
        let field = match compiled.tier(self.tier) {
            Compiled::Limited { policy_field, .. } => policy_field.as_ref(),
            Compiled::Unlimited => None,
        };
        Fields::new(self.config.mode, &compiled.status_prefix, field, decision)
    }

    fn name(&self) -> Arc<str> {
        self.compiled()
            .map_or_else(|| Arc::from(""), |p| p.policy.name.clone())
    }

    fn penalties(&self) -> Option<&PenaltyBox> {
        self.compiled()?.penalties.as_ref()
    }
}

/// What the future needs when the decision or a refund is still to come (a store that
/// answers asynchronously, or count-only mode).
struct Ctx<St: RateLimitStore> {
    config: Arc<Config<St>>,
    policy: usize,
    tier: TierChoice,
    key: RateKey,
    /// Count-only mode: the cost reserved before the handler, given back unless the answer
    /// means a status in the set (0: nothing reserved).
    reserved: u32,
    /// The decision that charged the reservation (which store, for a refund).
    charged: Option<Decision>,
    client: Option<ClientIp>,
}

impl<St: RateLimitStore> Ctx<St> {
    fn scope(&self) -> Scope<'_, St> {
        Scope {
            config: &self.config,
            policy: self.policy,
            tier: self.tier,
            key: &self.key,
            client: self.client,
        }
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
        let config = &*self.config;
        // The client address, inserted into the extensions only when the request goes on
        // (a refused request is dropped: no allocation spent on it).
        let (client_ip, insert_ip) = match req.extensions().get::<ClientIp>() {
            Some(ip) => (Some(*ip), false),
            None => (
                (config.resolver.trusted_proxies())
                    .peer(req.extensions())
                    .map(|peer| config.resolver.resolve_from_peer(peer.ip(), req.headers())),
                config.extensions,
            ),
        };
        let (mut parts, body) = req.into_parts();
        let insert = |extensions: &mut http::Extensions| {
            if insert_ip && let Some(ip) = client_ip {
                extensions.insert(ip);
            }
        };
        // A request this layer does not limit goes straight on.
        let inner = &mut self.inner;
        let mut pass_through = |mut parts: http::request::Parts, body: ReqBody| {
            insert(&mut parts.extensions);
            ResponseFuture::call(inner.call(Request::from_parts(parts, body)))
        };
        let Some((index, compiled)) = config
            .select(&parts)
            .and_then(|index| Some((index, config.policies.get(index)?)))
        else {
            return pass_through(parts, body);
        };
        let policy = &compiled.policy;
        if policy.skip_if.as_ref().is_some_and(|skip| skip(&mut parts)) {
            return pass_through(parts, body);
        }
        let cx = KeyContext {
            client_ip: client_ip.as_ref(),
        };
        let Some(key) = policy.key.extract(&parts, &cx) else {
            return ResponseFuture::ready(missing_key(
                config,
                policy.key.needs_ip() && client_ip.is_none(),
                &parts,
            ));
        };
        let tier = policy.select_tier(&parts);
        let Compiled::Limited { limiter, .. } = compiled.tier(tier) else {
            return pass_through(parts, body);
        };
        let cost = policy
            .cost_fn
            .as_ref()
            .map_or(policy.cost, |f| f(&parts))
            .max(1);
        let scope = Scope {
            config,
            policy: index,
            tier,
            key: &key,
            client: client_ip,
        };
        if let Some(penalties) = &compiled.penalties
            && let Some(response) = locked_out(&scope, penalties, &parts)
        {
            return ResponseFuture::ready(response);
        }
        // What the future keeps when the decision or a refund is still to come.
        let ctx = |key, reserved, charged| Ctx {
            config: self.config.clone(),
            policy: index,
            tier,
            key,
            reserved,
            charged,
            client: client_ip,
        };
        // Count-only mode reserves the cost now (so concurrent requests cannot all pass
        // before any is charged) and gives it back after an answer that does not count.
        let reserve = if policy.count_only.is_some() { cost } else { 0 };
        // A store that answers synchronously (memory) is decided here: no inner-service clone,
        // no request parked in the future, and (unless a refund may follow) no context kept.
        if let Some(result) = config.store.check_now(limiter, &key, cost) {
            let mut request = Request::from_parts(parts, body);
            let pass = match on_decision(&scope, result, &mut request) {
                Verdict::Pass(pass) => pass,
                Verdict::Refuse(response) => return ResponseFuture::ready(response),
            };
            insert(request.extensions_mut());
            let ctx = match pass.charged {
                Some(charged) if reserve > 0 => Some(Box::new(ctx(key, reserve, Some(charged)))),
                _ => None,
            };
            return ResponseFuture {
                state: State::Calling {
                    fut: self.inner.call(request),
                },
                fields: pass.fields,
                ctx,
            };
        }
        let check = config.store.check(limiter, &key, cost);
        insert(&mut parts.extensions);
        let ctx = ctx(key, reserve, None);
        self.wait_for_store(check, ctx, Request::from_parts(parts, body))
    }
}

impl<S, St: RateLimitStore> RateLimitService<S, St> {
    /// A store that answers asynchronously: the request waits in the future with a clone of
    /// the inner service (out of line: the memory store's path stays compact).
    #[inline(never)]
    fn wait_for_store<ReqBody, ResBody>(
        &mut self,
        check: St::Future,
        ctx: Ctx<St>,
        request: Request<ReqBody>,
    ) -> ResponseFuture<S, ReqBody, ResBody, St>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    {
        let clone = self.inner.clone();
        let service = std::mem::replace(&mut self.inner, clone);
        ResponseFuture {
            state: State::Checking {
                check,
                parked: Some(Box::new((service, request))),
            },
            fields: None,
            ctx: Some(Box::new(ctx)),
        }
    }
}

/// A request without a key: 403 when the client IP was needed and no peer address is known
/// (a server misconfiguration), else 400.
#[cold]
#[inline(never)]
fn missing_key<St: RateLimitStore, B>(
    config: &Config<St>,
    no_peer: bool,
    parts: &http::request::Parts,
) -> Response<ShieldBody<B>> {
    Stats::bump(&config.stats.missing_key);
    let problem = if no_peer {
        crate::client_ip::warn_missing_peer();
        &ProblemType::FORBIDDEN
    } else {
        &ProblemType::BAD_REQUEST
    };
    Refusal::new(problem).build(&parts.headers, &parts.extensions)
}

/// The 429 of a key still locked out (retrying during a lock-out is one more strike: the
/// lock-out doubles), or `None` when it is not locked out or in shadow mode.
#[inline(never)]
fn locked_out<St: RateLimitStore, B>(
    scope: &Scope<'_, St>,
    penalties: &PenaltyBox,
    parts: &http::request::Parts,
) -> Option<Response<ShieldBody<B>>> {
    let config = scope.config;
    penalties.locked_for(scope.key, config.now_nanos())?;
    let locked = penalties.strike(scope.key, config.now_nanos());
    let decision = Decision::new(false, 0, 0, locked, locked);
    if config.shadow {
        return None;
    }
    Stats::bump(&config.stats.limited);
    if let Some(compiled) = scope.compiled() {
        compiled.counters.limited.increment(1);
    }
    Some(refuse_429(
        scope,
        &decision,
        parts.uri.path(),
        &parts.headers,
        &parts.extensions,
    ))
}

/// A request the store let through (or that goes on despite a store failure or, in shadow
/// mode, a refusal).
struct Pass {
    /// The fields to add to the response.
    fields: Option<Fields>,
    /// The decision, when the store charged the request (not when it failed, nor for a
    /// refusal let through in shadow mode): only a charge can be given back.
    charged: Option<Decision>,
}

/// What a store answer means for the request.
enum Verdict<B> {
    /// Call the inner service (the `RateLimitStatus` is in the request), then this.
    Pass(Pass),
    /// Answer this instead.
    Refuse(Response<ShieldBody<B>>),
}

/// Applies a store answer to the request.
fn on_decision<St: RateLimitStore, R, B>(
    scope: &Scope<'_, St>,
    result: Result<Decision, StoreError>,
    request: &mut Request<R>,
) -> Verdict<B> {
    let config = scope.config;
    let mut decision = match result {
        Ok(decision) => decision,
        Err(err) => return on_store_error(scope, &err, request),
    };
    let charged = decision.allowed.then_some(decision);
    if decision.allowed {
        Stats::bump(&config.stats.allowed);
        if let Some(compiled) = scope.compiled() {
            compiled.counters.allowed.increment(1);
        }
        if let Some(penalties) = scope.penalties() {
            penalties.forgive(scope.key);
        }
    } else if let Some(response) = on_refused(scope, &mut decision, request) {
        return Verdict::Refuse(response);
    }
    let fields = scope.fields(&decision);
    if config.extensions {
        request.extensions_mut().insert(RateLimitStatus {
            policy: scope.name(),
            decision,
        });
    }
    Verdict::Pass(Pass { fields, charged })
}

/// A store failure: the layer's failure policy (out of line, as every path but the allowed
/// one).
#[cold]
#[inline(never)]
fn on_store_error<St: RateLimitStore, R, B>(
    scope: &Scope<'_, St>,
    err: &StoreError,
    request: &Request<R>,
) -> Verdict<B> {
    let config = scope.config;
    store_failed(scope, err);
    if config.failure == FailurePolicy::FailClosed && !config.shadow {
        Stats::bump(&config.stats.failed_closed);
        return Verdict::Refuse(
            Refusal::new(&ProblemType::UNAVAILABLE)
                .with_header(header::RETRY_AFTER, number_value(1))
                .for_request(request),
        );
    }
    Stats::bump(&config.stats.failed_open);
    Verdict::Pass(Pass {
        fields: None,
        charged: None,
    })
}

/// A store refusal: a strike when the policy has penalties (the decision's `retry_after`
/// grows to the lock-out), then the 429, or `None` in shadow mode (logged and counted).
#[inline(never)]
fn on_refused<St: RateLimitStore, R, B>(
    scope: &Scope<'_, St>,
    decision: &mut Decision,
    request: &Request<R>,
) -> Option<Response<ShieldBody<B>>> {
    let config = scope.config;
    if let Some(penalties) = scope.penalties() {
        let lockout = penalties.strike(scope.key, config.now_nanos());
        decision.retry_after = decision.retry_after.max(lockout);
    }
    if !config.shadow {
        Stats::bump(&config.stats.limited);
        if let Some(compiled) = scope.compiled() {
            compiled.counters.limited.increment(1);
        }
        return Some(refuse_429(
            scope,
            decision,
            request.uri().path(),
            request.headers(),
            request.extensions(),
        ));
    }
    Stats::bump(&config.stats.shadow_limited);
    if let Some(compiled) = scope.compiled() {
        compiled.counters.shadow_limited.increment(1);
    }
    tracing::info!(
        target: "tower_shield::rate_limit",
        policy = %scope.name(),
        key_id = %format_args!("{:016x}", scope.key.log_id()),
        "shadow mode: would rate limit"
    );
    None
}

fn refuse_429<St: RateLimitStore, B>(
    scope: &Scope<'_, St>,
    decision: &Decision,
    path: &str,
    headers: &http::HeaderMap,
    extensions: &http::Extensions,
) -> Response<ShieldBody<B>> {
    let secs = retry_after_secs(decision.retry_after);
    exceeded_event(scope, path, extensions, secs);
    // A store refusal carries the tier's fields; a lock-out (limit 0) only `Retry-After`.
    let mut response = Refusal::new(&ProblemType::RATE_LIMITED)
        .with_header(header::RETRY_AFTER, number_value(secs))
        .build(headers, extensions);
    if decision.limit > 0
        && let Some(fields) = scope.fields(decision)
    {
        fields.apply(response.headers_mut());
    }
    response
}

/// The `ratelimit.exceeded` security event (bounded per client; see `telemetry`).
#[cold]
fn exceeded_event<St: RateLimitStore>(
    scope: &Scope<'_, St>,
    path: &str,
    extensions: &http::Extensions,
    retry_after: u64,
) {
    static GATE: EventGate = EventGate::new();
    let client = scope.client.map(|c| c.ip());
    let Some(suppressed) = GATE.admit(client) else {
        return;
    };
    tracing::warn!(
        target: "tower_shield::security",
        event = "ratelimit.exceeded",
        policy = %scope.name(),
        route = %crate::telemetry::loggable(path),
        client_ip = %client.map(|ip| ip.to_string()).unwrap_or_default(),
        request_id = %crate::telemetry::request_id_of(extensions),
        key_id = %format_args!("{:016x}", scope.key.log_id()),
        retry_after,
        suppressed,
        "rate limit exceeded"
    );
}

fn store_failed<St: RateLimitStore>(scope: &Scope<'_, St>, err: &StoreError) {
    let config = scope.config;
    Stats::bump(&config.stats.store_errors);
    if let Some(compiled) = scope.compiled() {
        compiled.counters.store_error.increment(1);
    }
    if let Some(suppressed) = config.error_log.should_log(config.now_nanos()) {
        tracing::warn!(
            target: "tower_shield::security",
            event = "store.unavailable",
            store = "rate_limit",
            policy = %scope.name(),
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
        // The fields to add to the response, once decided.
        fields: Option<Fields>,
        // Only while a decision or a refund is still to come.
        ctx: Option<Box<Ctx<St>>>,
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
        // What waits for an asynchronous store is boxed (that path makes a network round
        // trip), so that the future a synchronous store's requests carry stays small.
        Checking { #[pin] check: St::Future, parked: Option<Box<(S, Request<ReqBody>)>> },
        Calling { #[pin] fut: S::Future },
        Refunding { #[pin] refund: St::Future, response: Option<Box<Response<ResBody>>> },
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
            fields: None,
            ctx: None,
        }
    }

    fn ready(response: Response<ShieldBody<ResBody>>) -> Self {
        Self {
            state: State::Ready {
                response: Some(response),
            },
            fields: None,
            ctx: None,
        }
    }
}

/// The response with the decided fields added.
#[inline]
fn finish<B>(response: Response<B>, fields: &mut Option<Fields>) -> Response<ShieldBody<B>> {
    let mut response = response.map(ShieldBody::inner);
    if let Some(fields) = fields.take() {
        fields.apply(response.headers_mut());
    }
    response
}

/// An asynchronous store's answer: the inner service's call, or the refusal to answer with
/// (out of line: the memory store's requests never come here).
#[inline(never)]
fn decided<S, ReqBody, ResBody, St>(
    ctx: &mut Ctx<St>,
    result: Result<Decision, StoreError>,
    (mut service, mut request): (S, Request<ReqBody>),
    fields: &mut Option<Fields>,
) -> State<S, ReqBody, ResBody, St>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    St: RateLimitStore,
{
    match on_decision(&ctx.scope(), result, &mut request) {
        Verdict::Pass(pass) => {
            *fields = pass.fields;
            ctx.charged = pass.charged;
            if ctx.charged.is_none() {
                ctx.reserved = 0;
            }
        }
        Verdict::Refuse(response) => {
            return State::Ready {
                response: Some(response),
            };
        }
    }
    State::Calling {
        fut: service.call(request),
    }
}

/// What `settle` passes when no decision was kept (never, while a reservation is held).
const NOTHING_CHARGED: Decision = Decision::new(
    false,
    0,
    0,
    std::time::Duration::ZERO,
    std::time::Duration::ZERO,
);

/// Count-only mode, after the response: the refund to wait for when the answer does not
/// mean a counted status (what it means, not how it is rendered: a gRPC refusal sent as
/// HTTP 200 counts as its 401), else the response back with the reservation kept.
#[inline(never)]
fn settle<S, ReqBody, ResBody, St>(
    ctx: &Ctx<St>,
    response: Response<ResBody>,
) -> Result<State<S, ReqBody, ResBody, St>, Response<ResBody>>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    St: RateLimitStore,
{
    let counted = ctx.config.policies.get(ctx.policy).is_some_and(|policy| {
        policy
            .policy
            .count_only
            .as_ref()
            .is_some_and(|set| set.contains(&status_meant(&response)))
    });
    match ctx.scope().limiter().filter(|_| !counted) {
        Some(limiter) => Ok(State::Refunding {
            refund: ctx.config.store.refund(
                limiter,
                &ctx.key,
                ctx.reserved,
                ctx.charged.as_ref().unwrap_or(&NOTHING_CHARGED),
            ),
            response: Some(Box::new(response)),
        }),
        None => Err(response),
    }
}

/// Count-only mode: the refund's answer (the fields of the key's state after it).
#[inline(never)]
fn refunded<St: RateLimitStore>(
    ctx: &Ctx<St>,
    result: Result<Decision, StoreError>,
    fields: &mut Option<Fields>,
) {
    let scope = ctx.scope();
    match result {
        Ok(decision) => *fields = scope.fields(&decision),
        Err(err) => store_failed(&scope, &err),
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
                StateProj::Checking { check, parked } => {
                    let result = ready!(check.poll(cx));
                    let (Some(parked), Some(ctx)) = (parked.take(), this.ctx.as_mut()) else {
                        return Poll::Pending;
                    };
                    let next = decided(ctx, result, *parked, this.fields);
                    this.state.set(next);
                }
                StateProj::Calling { fut } => {
                    let response = ready!(fut.poll(cx))?;
                    if let Some(ctx) = this.ctx.as_ref()
                        && ctx.reserved > 0
                    {
                        match settle(ctx, response) {
                            Ok(refunding) => {
                                this.state.set(refunding);
                                continue;
                            }
                            Err(response) => return Poll::Ready(Ok(finish(response, this.fields))),
                        }
                    }
                    return Poll::Ready(Ok(finish(response, this.fields)));
                }
                StateProj::Refunding { refund, response } => {
                    let result = ready!(refund.poll(cx));
                    let Some(response) = response.take() else {
                        return Poll::Pending;
                    };
                    if let Some(ctx) = this.ctx.as_ref() {
                        refunded(ctx, result, this.fields);
                    }
                    return Poll::Ready(Ok(finish(*response, this.fields)));
                }
            }
        }
    }
}
