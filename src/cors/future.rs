//! The response future: a preflight answer or refusal that is ready, or the inner call whose
//! response gets the CORS headers when it completes.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS,
    VARY,
};
use http::{HeaderMap, HeaderValue, Response};
use pin_project_lite::pin_project;

use super::config::Validated;
use super::service::{TRUE, VARY_ORIGIN};
use crate::body::ShieldBody;

pin_project! {
    /// The future of [`CorsService`](super::CorsService).
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        // A preflight answer or a refusal, ready at once.
        Ready { response: Option<Response<ShieldBody<B>>> },
        // The inner call; `allowed` holds the `Access-Control-Allow-Origin` value to add;
        // `refused`: the request came from an origin the allowlist refuses, so no
        // `Access-Control-Allow-*` header of the inner service may reach the browser.
        Inner {
            #[pin]
            future: F,
            allowed: Option<(HeaderValue, Arc<Validated>)>,
            refused: bool,
        },
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Ready { .. } => "ready",
            Kind::Inner { .. } => "inner",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn ready(response: Response<ShieldBody<B>>) -> Self {
        Self {
            kind: Kind::Ready {
                response: Some(response),
            },
        }
    }

    pub(crate) fn inner(
        future: F,
        allowed: Option<(HeaderValue, Arc<Validated>)>,
        refused: bool,
    ) -> Self {
        Self {
            kind: Kind::Inner {
                future,
                allowed,
                refused,
            },
        }
    }
}

/// Appends `Vary: Origin` unless the response already varies on `Origin` (or on everything).
fn append_vary_origin(headers: &mut HeaderMap) {
    let already = headers.get_all(VARY).iter().any(|value| {
        value.as_bytes().split(|b| *b == b',').any(|item| {
            let item = item.trim_ascii();
            item == b"*" || item.eq_ignore_ascii_case(b"origin")
        })
    });
    if !already {
        headers.append(VARY, VARY_ORIGIN.clone());
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ShieldBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Ready { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                // Polled again after completion: a contract violation by the caller; stay
                // pending rather than panic.
                None => Poll::Pending,
            },
            KindProj::Inner {
                future,
                allowed,
                refused,
            } => {
                let mut response = ready!(future.poll(cx))?;
                let headers = response.headers_mut();
                append_vary_origin(headers);
                if *refused {
                    // The allowlist decides alone: a handler or inner layer that reflects the
                    // origin or answers `*` must not open the response to a refused origin.
                    headers.remove(ACCESS_CONTROL_ALLOW_ORIGIN);
                    headers.remove(ACCESS_CONTROL_ALLOW_CREDENTIALS);
                    headers.remove(ACCESS_CONTROL_EXPOSE_HEADERS);
                }
                if let Some((origin, config)) = allowed.take() {
                    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
                    if config.credentials {
                        headers.insert(ACCESS_CONTROL_ALLOW_CREDENTIALS, TRUE.clone());
                    }
                    if let Some(expose) = &config.expose_headers_value {
                        headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
                    }
                }
                Poll::Ready(Ok(response.map(ShieldBody::inner)))
            }
        }
    }
}
