//! The service: decides how the request arrived and answers plain HTTP itself when HTTPS is
//! enforced.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::config::Config;
use super::future::{Kind, ResponseFuture};
use super::https::Transport;
use crate::body::ShieldBody;

/// Service made by [`SecurityHeadersLayer`](super::SecurityHeadersLayer).
#[derive(Debug, Clone)]
pub struct SecurityHeadersService<S> {
    pub(super) inner: S,
    pub(super) config: Arc<Config>,
}

impl<S> SecurityHeadersService<S> {
    crate::inner_service_accessors!();
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SecurityHeadersService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ShieldBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let transport = self.config.transport(&request);
        let config = Arc::clone(&self.config);
        // Each arm builds the whole future, so it is written in place rather than moved again.
        if self.config.enforce_https && transport != Transport::Https {
            ResponseFuture {
                kind: Kind::Refused {
                    response: Some(self.config.redirect_or_refuse(&request)),
                },
                config,
                transport,
            }
        } else {
            ResponseFuture {
                kind: Kind::Inner {
                    future: self.inner.call(request),
                },
                config,
                transport,
            }
        }
    }
}
