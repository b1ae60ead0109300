//! The layer: cheap to clone, holding the validated configuration.

use std::sync::Arc;

use tower_layer::Layer;

use super::config::{Config, SecurityHeadersLayerBuilder};
use super::service::SecurityHeadersService;

/// Layer that adds security headers to every response; see the [module docs](super).
///
/// Reads the URI scheme and, from trusted proxies only, `X-Forwarded-Proto`; writes the
/// configured headers; puts nothing into the extensions; refuses only with HTTPS enforcement
/// on. Cloning is one reference-count increment.
#[derive(Debug, Clone)]
#[must_use]
pub struct SecurityHeadersLayer {
    pub(super) config: Arc<Config>,
}

impl Default for SecurityHeadersLayer {
    fn default() -> Self {
        Self::api()
    }
}

impl SecurityHeadersLayer {
    /// The [`SecurityHeadersLayerBuilder::api`] preset, as is.
    pub fn api() -> Self {
        SecurityHeadersLayerBuilder::api().into_layer()
    }

    /// The [`SecurityHeadersLayerBuilder::web`] preset, as is.
    pub fn web() -> Self {
        SecurityHeadersLayerBuilder::web().into_layer()
    }

    /// A builder starting from the `api()` preset.
    pub fn builder() -> SecurityHeadersLayerBuilder {
        SecurityHeadersLayerBuilder::api()
    }
}

impl<S> Layer<S> for SecurityHeadersLayer {
    type Service = SecurityHeadersService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SecurityHeadersService {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}
