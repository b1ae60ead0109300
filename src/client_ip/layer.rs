//! The layer that inserts every request's `ClientIp`, its service and its future.

use super::{ClientIpError, ClientIpResolver};

/// A layer that resolves the [`ClientIp`](super::ClientIp) of every request and inserts it
/// into the extensions, for handlers and logs, when no rate limiter does it already.
///
/// A request without a peer address is refused with a 403 problem (deny by default; see
/// [`ClientIpError::MissingPeer`]).
///
/// ```
/// use std::net::SocketAddr;
/// use http::{Request, Response};
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
/// use tower_shield::client_ip::{ClientIp, ClientIpLayer, ClientIpResolver, TrustedProxies};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let resolver = ClientIpResolver::new(TrustedProxies::new(["10.0.0.0/8"]).unwrap());
/// let svc = ServiceBuilder::new()
///     .layer(ClientIpLayer::new(resolver))
///     .service(service_fn(|req: Request<String>| async move {
///         let ip = req.extensions().get::<ClientIp>().unwrap().ip();
///         Ok::<_, std::convert::Infallible>(Response::new(ip.to_string()))
///     }));
/// let mut req = Request::builder()
///     .header("x-forwarded-for", "198.51.100.7")
///     .body(String::new())
///     .unwrap();
/// req.extensions_mut().insert("10.1.2.3:9000".parse::<SocketAddr>().unwrap());
/// let response = svc.oneshot(req).await.unwrap();
/// assert_eq!(response.status(), 200);
/// # }
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct ClientIpLayer {
    resolver: std::sync::Arc<ClientIpResolver>,
}

impl ClientIpLayer {
    /// A layer resolving with this resolver.
    pub fn new(resolver: ClientIpResolver) -> Self {
        Self {
            resolver: std::sync::Arc::new(resolver),
        }
    }
}

impl<S> tower_layer::Layer<S> for ClientIpLayer {
    type Service = ClientIpService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientIpService {
            inner,
            resolver: self.resolver.clone(),
        }
    }
}

/// The service of a [`ClientIpLayer`].
#[derive(Debug, Clone)]
pub struct ClientIpService<S> {
    inner: S,
    resolver: std::sync::Arc<ClientIpResolver>,
}

impl<S> ClientIpService<S> {
    crate::inner_service_accessors!();
}

impl<S, ReqBody, ResBody> tower_service::Service<http::Request<ReqBody>> for ClientIpService<S>
where
    S: tower_service::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
{
    type Response = http::Response<crate::body::ShieldBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<ReqBody>) -> Self::Future {
        match self.resolver.resolve_and_insert(&mut req) {
            Ok(_) => ResponseFuture {
                kind: ResponseFutureKind::Inner {
                    fut: self.inner.call(req),
                },
            },
            Err(ClientIpError::MissingPeer) => {
                warn_missing_peer();
                ResponseFuture {
                    kind: ResponseFutureKind::Refused {
                        response: Some(
                            crate::refusal::Refusal::new(&crate::refusal::ProblemType::FORBIDDEN)
                                .for_request(&req),
                        ),
                    },
                }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`ClientIpService`].
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: ResponseFutureKind<F, B>,
    }
}

pin_project_lite::pin_project! {
    #[project = ResponseFutureProj]
    enum ResponseFutureKind<F, B> {
        Inner { #[pin] fut: F },
        Refused { response: Option<http::Response<crate::body::ShieldBody<B>>> },
    }
}

impl<F, B> std::fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ResponseFuture")
    }
}

impl<F, B, E> std::future::Future for ResponseFuture<F, B>
where
    F: std::future::Future<Output = Result<http::Response<B>, E>>,
{
    type Output = Result<http::Response<crate::body::ShieldBody<B>>, E>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match self.project().kind.project() {
            ResponseFutureProj::Inner { fut } => {
                fut.poll(cx).map(|r| r.map(crate::body::ShieldBody::wrap))
            }
            ResponseFutureProj::Refused { response } => match response.take() {
                Some(response) => std::task::Poll::Ready(Ok(response)),
                None => std::task::Poll::Pending,
            },
        }
    }
}

/// Logs, once per process, that requests arrive without a peer address.
pub(crate) fn warn_missing_peer() {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!(
            target: "tower_shield::client_ip",
            "requests carry no peer address; they are refused (insert a SocketAddr extension, or serve axum with into_make_service_with_connect_info)"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::client_ip::ClientIp;
    use crate::client_ip::resolver::tests::resolver;

    #[tokio::test]
    async fn layer_inserts_or_refuses() {
        use tower::{Layer, ServiceExt};
        let svc = ClientIpLayer::new(resolver()).layer(tower::service_fn(
            |req: http::Request<()>| async move {
                let ip = req.extensions().get::<ClientIp>().copied();
                Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                    bytes::Bytes::from(format!("{ip:?}")),
                )))
            },
        ));
        let response = svc.clone().oneshot(http::Request::new(())).await.unwrap();
        assert_eq!(response.status(), http::StatusCode::FORBIDDEN);
        let mut req = http::Request::new(());
        req.extensions_mut()
            .insert("192.0.2.5:1".parse::<SocketAddr>().unwrap());
        let response = svc.oneshot(req).await.unwrap();
        assert_eq!(response.status(), http::StatusCode::OK);
    }
}
