//! The response future: the inner call or a ready redirect or refusal, whose response gets
//! the security headers.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Response, StatusCode};
use pin_project_lite::pin_project;

use super::config::Config;
use super::https::Transport;
use crate::body::ShieldBody;

pin_project! {
    /// Response future of [`SecurityHeadersService`](super::SecurityHeadersService).
    pub struct ResponseFuture<F> {
        #[pin]
        pub(super) kind: Kind<F>,
        pub(super) config: Arc<Config>,
        pub(super) transport: Transport,
    }
}

pin_project! {
    #[project = KindProj]
    pub(super) enum Kind<F> {
        Inner { #[pin] future: F },
        Refused { response: Option<Response<Bytes>> },
    }
}

impl<F> fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("transport", &self.transport)
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ShieldBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = match this.kind.project() {
            KindProj::Inner { future } => match future.poll(cx) {
                Poll::Ready(Ok(response)) => response.map(ShieldBody::inner),
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Pending => return Poll::Pending,
            },
            KindProj::Refused { response } => match response.take() {
                Some(response) => response.map(ShieldBody::full),
                // Polled after completion: answer an empty 500 rather than panic.
                None => {
                    let mut response = Response::new(ShieldBody::empty());
                    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                    response
                }
            },
        };
        this.config.apply(response.headers_mut(), *this.transport);
        Poll::Ready(Ok(response))
    }
}
