//! The layer: cheap to clone, holding the validated configuration.

use std::sync::Arc;

use tower_layer::Layer;

use super::config::{CorsLayerBuilder, Validated};
use super::service::CorsService;

/// A strict CORS allowlist. Build it with [`CorsLayer::builder`] or from a
/// [`CorsConfig`](super::CorsConfig).
///
/// Reads `Origin`, `Access-Control-Request-Method`, `Access-Control-Request-Headers` and
/// `Access-Control-Request-Private-Network`. Answers preflights itself (204, or a 403
/// `cors-rejected` refusal with no `Access-Control-Allow-*` header), never calling the inner
/// service for them. Adds `Access-Control-Allow-Origin`, `Access-Control-Allow-Credentials`
/// and `Access-Control-Expose-Headers` to the responses of allowed origins, including
/// refusals from inner layers, and appends `Vary: Origin` to every response. In strict mode,
/// refuses requests from other origins before the inner service runs. Puts nothing in the
/// request extensions.
///
/// ```
/// use std::convert::Infallible;
/// use std::time::Duration;
///
/// use bytes::Bytes;
/// use http::{Method, Request, Response, StatusCode, header};
/// use http_body_util::Full;
/// use tower::{ServiceBuilder, ServiceExt, service_fn};
/// use tower_shield::cors::CorsLayer;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cors = CorsLayer::builder()
///     .allow_origin("https://app.example.com")
///     .allow_methods(["GET", "POST", "DELETE"])
///     .allow_headers(["authorization", "content-type"])
///     .allow_credentials(true)
///     .max_age(Duration::from_secs(600))
///     .build()?;
/// let service = ServiceBuilder::new().layer(cors).service(service_fn(|_req: Request<Full<Bytes>>| async {
///     Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"{}"))))
/// }));
///
/// // A preflight from the allowed origin is answered without reaching the handler.
/// let preflight = Request::builder()
///     .method(Method::OPTIONS)
///     .uri("/items")
///     .header(header::ORIGIN, "https://app.example.com")
///     .header(header::ACCESS_CONTROL_REQUEST_METHOD, "DELETE")
///     .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization")
///     .body(Full::default())?;
/// let response = service.clone().oneshot(preflight).await?;
/// assert_eq!(response.status(), StatusCode::NO_CONTENT);
/// assert_eq!(response.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example.com");
///
/// // Another origin's preflight is refused, advertising nothing.
/// let preflight = Request::builder()
///     .method(Method::OPTIONS)
///     .uri("/items")
///     .header(header::ORIGIN, "https://app.example.com.evil.net")
///     .header(header::ACCESS_CONTROL_REQUEST_METHOD, "DELETE")
///     .body(Full::default())?;
/// let response = service.oneshot(preflight).await?;
/// assert_eq!(response.status(), StatusCode::FORBIDDEN);
/// assert!(!response.headers().contains_key(header::ACCESS_CONTROL_ALLOW_METHODS));
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct CorsLayer {
    config: Arc<Validated>,
}

impl CorsLayer {
    /// A builder with nothing allowed yet.
    pub fn builder() -> CorsLayerBuilder {
        CorsLayerBuilder::new()
    }

    pub(crate) fn from_validated(config: Arc<Validated>) -> Self {
        Self { config }
    }

    #[cfg(test)]
    pub(crate) fn config(&self) -> &Validated {
        &self.config
    }
}

impl<S> Layer<S> for CorsLayer {
    type Service = CorsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CorsService::new(inner, Arc::clone(&self.config))
    }
}
