//! Role and scope guards: `RequireRoleLayer` and `RequireScopeLayer`.
//!
//! Put them after (inside) `JwtAuthLayer`, on a route or a router. They read the
//! [`Principal`] and [`Scopes`] the layer left in the extensions: none → 401 (the guard is
//! not behind an authenticating layer, or the route is optional); present but not enough →
//! 403 `insufficient_scope` (`ProblemType::INSUFFICIENT_SCOPE`), gRPC `PERMISSION_DENIED`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{HeaderValue, Request, Response, header};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use super::claims::Scopes;
use super::layer::challenges;
use crate::body::ShieldBody;
use crate::error::ConfigError;
use crate::extensions::Principal;
use crate::refusal::{ProblemType, Refusal};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Match {
    Any,
    All,
}

#[derive(Debug)]
enum Requirement {
    Roles(Vec<Box<str>>),
    Scopes(Match, Vec<Box<str>>),
}

struct GuardConfig {
    requirement: Requirement,
    missing: HeaderValue,
    forbidden: HeaderValue,
}

impl fmt::Debug for GuardConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.requirement, f)
    }
}

fn config(requirement: Requirement, realm: &str) -> Result<GuardConfig, ConfigError> {
    let (missing, _) = challenges(realm)?;
    let forbidden = HeaderValue::from_str(&format!(
        "Bearer realm=\"{realm}\", error=\"insufficient_scope\""
    ))
    .map_err(|_| ConfigError::invalid("realm", "not a header value"))?;
    Ok(GuardConfig {
        requirement,
        missing,
        forbidden,
    })
}

fn default_config(requirement: Requirement) -> Arc<GuardConfig> {
    Arc::new(GuardConfig {
        requirement,
        missing: HeaderValue::from_static("Bearer realm=\"api\""),
        forbidden: HeaderValue::from_static("Bearer realm=\"api\", error=\"insufficient_scope\""),
    })
}

fn names<I, T>(items: I) -> Vec<Box<str>>
where
    I: IntoIterator<Item = T>,
    T: AsRef<str>,
{
    items.into_iter().map(|s| Box::from(s.as_ref())).collect()
}

/// Lets a request through only when the caller's role (the `role` claim) is one of a list.
///
/// ```
/// use std::convert::Infallible;
/// use http::{Request, Response, StatusCode};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
/// use tower_shield::Principal;
/// use tower_shield::jwt::RequireRoleLayer;
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let service = ServiceBuilder::new()
///     .layer(RequireRoleLayer::any_of(["admin"]))
///     .service(service_fn(|_req: Request<()>| async { Ok::<_, Infallible>(Response::new(String::new())) }));
///
/// let mut request = Request::new(());
/// request.extensions_mut().insert(Principal::new("user_1", Some("user".into())));
/// let response = service.oneshot(request).await.unwrap();
/// assert_eq!(response.status(), StatusCode::FORBIDDEN);
/// # });
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct RequireRoleLayer {
    config: Arc<GuardConfig>,
}

impl RequireRoleLayer {
    /// Requires one of these roles.
    pub fn any_of<I, T>(roles: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        Self {
            config: default_config(Requirement::Roles(names(roles))),
        }
    }

    /// Uses this realm in the challenge (default `api`; use the `JwtAuthLayer`'s).
    pub fn with_realm(self, realm: &str) -> Result<Self, ConfigError> {
        let requirement = match &self.config.requirement {
            Requirement::Roles(r) => Requirement::Roles(r.clone()),
            Requirement::Scopes(m, s) => Requirement::Scopes(*m, s.clone()),
        };
        Ok(Self {
            config: Arc::new(config(requirement, realm)?),
        })
    }
}

/// Lets a request through only when the token grants all (or any) of a list of scopes.
#[derive(Debug, Clone)]
#[must_use]
pub struct RequireScopeLayer {
    config: Arc<GuardConfig>,
}

impl RequireScopeLayer {
    /// Requires every one of these scopes.
    pub fn all_of<I, T>(scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        Self {
            config: default_config(Requirement::Scopes(Match::All, names(scopes))),
        }
    }

    /// Requires at least one of these scopes.
    pub fn any_of<I, T>(scopes: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        Self {
            config: default_config(Requirement::Scopes(Match::Any, names(scopes))),
        }
    }

    /// Uses this realm in the challenge (default `api`; use the `JwtAuthLayer`'s).
    pub fn with_realm(self, realm: &str) -> Result<Self, ConfigError> {
        let requirement = match &self.config.requirement {
            Requirement::Roles(r) => Requirement::Roles(r.clone()),
            Requirement::Scopes(m, s) => Requirement::Scopes(*m, s.clone()),
        };
        Ok(Self {
            config: Arc::new(config(requirement, realm)?),
        })
    }
}

impl<S> Layer<S> for RequireRoleLayer {
    type Service = GuardService<S>;

    fn layer(&self, inner: S) -> GuardService<S> {
        GuardService {
            inner,
            config: self.config.clone(),
        }
    }
}

impl<S> Layer<S> for RequireScopeLayer {
    type Service = GuardService<S>;

    fn layer(&self, inner: S) -> GuardService<S> {
        GuardService {
            inner,
            config: self.config.clone(),
        }
    }
}

/// The service built by [`RequireRoleLayer`] and [`RequireScopeLayer`].
#[derive(Debug, Clone)]
pub struct GuardService<S> {
    inner: S,
    config: Arc<GuardConfig>,
}

impl<S> GuardService<S> {
    crate::inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for GuardService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ShieldBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let Some(principal) = req.extensions().get::<Principal>() else {
            let response = Refusal::new(&ProblemType::UNAUTHORIZED)
                .with_header(header::WWW_AUTHENTICATE, self.config.missing.clone())
                .for_request(&req);
            return ResponseFuture {
                kind: Kind::Refused {
                    response: Some(response),
                },
            };
        };
        let allowed = match &self.config.requirement {
            Requirement::Roles(roles) => principal
                .role
                .as_deref()
                .is_some_and(|role| roles.iter().any(|r| r.as_ref() == role)),
            Requirement::Scopes(mode, wanted) => {
                let granted = req.extensions().get::<Scopes>();
                let has = |s: &str| granted.is_some_and(|g| g.contains(s));
                match mode {
                    Match::All => wanted.iter().map(AsRef::as_ref).all(has),
                    Match::Any => wanted.iter().map(AsRef::as_ref).any(has),
                }
            }
        };
        if allowed {
            ResponseFuture {
                kind: Kind::Inner {
                    fut: self.inner.call(req),
                },
            }
        } else {
            let response = Refusal::new(&ProblemType::INSUFFICIENT_SCOPE)
                .with_header(header::WWW_AUTHENTICATE, self.config.forbidden.clone())
                .for_request(&req);
            ResponseFuture {
                kind: Kind::Refused {
                    response: Some(response),
                },
            }
        }
    }
}

pin_project! {
    /// The response future of [`GuardService`].
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Refused { response: Option<Response<ShieldBody<B>>> },
        Inner { #[pin] fut: F },
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("guard::ResponseFuture")
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ShieldBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Refused { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => Poll::Pending,
            },
            KindProj::Inner { fut } => Poll::Ready(Ok(ShieldBody::wrap(ready!(fut.poll(cx))?))),
        }
    }
}
