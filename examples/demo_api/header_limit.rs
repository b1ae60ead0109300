//! 431 for requests whose headers are larger than [`MAX_REQUEST_HEADER_BYTES`] in total, before
//! any other work.
//!
//! A plain Tower layer rather than `axum::middleware::from_fn`: that helper boxes the rest of
//! the stack and the future on every request, which the load test shows; this one adds one
//! branch and a sum over the header lines.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::{HeaderMap, Response};
use bytes::Bytes;
use pin_project_lite::pin_project;
use tower::{Layer, Service};
use tower_shield::refusal::{ProblemType, Refusal};

/// Request headers larger than this in total (names, values and the 4 bytes of `: ` and CRLF
/// per line) are refused with 431.
pub(crate) const MAX_REQUEST_HEADER_BYTES: usize = 16 * 1024;

/// The size of the request headers as sent on the wire (HTTP/1.1 framing).
fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum()
}

/// Wraps a service with the 431 check.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct HeaderLimitLayer;

impl<S> Layer<S> for HeaderLimitLayer {
    type Service = HeaderLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HeaderLimit { inner }
    }
}

/// The service of [`HeaderLimitLayer`].
#[derive(Clone, Debug)]
pub(crate) struct HeaderLimit<S> {
    inner: S,
}

impl<S, B> Service<Request> for HeaderLimit<S>
where
    S: Service<Request, Response = Response<B>>,
    B: From<Bytes>,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = HeaderLimitFuture<S::Future, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        if header_bytes(request.headers()) > MAX_REQUEST_HEADER_BYTES {
            let refusal = Refusal::new(&ProblemType::HEADERS_TOO_LARGE).for_request(&request);
            return HeaderLimitFuture::Refused {
                response: Some(refusal),
            };
        }
        HeaderLimitFuture::Inner {
            future: self.inner.call(request),
        }
    }
}

pin_project! {
    /// The future of [`HeaderLimit`]: the 431, or the inner service's answer.
    #[project = HeaderLimitProj]
    pub(crate) enum HeaderLimitFuture<F, B> {
        Refused { response: Option<Response<B>> },
        Inner { #[pin] future: F },
    }
}

impl<F, B, E> Future for HeaderLimitFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            HeaderLimitProj::Inner { future } => future.poll(cx),
            HeaderLimitProj::Refused { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                // Polled again after completion: a contract violation by the caller.
                None => Poll::Pending,
            },
        }
    }
}
