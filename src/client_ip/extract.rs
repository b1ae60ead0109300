//! The axum extractor (feature `axum`).

use super::layer::warn_missing_peer;
use super::{ClientIp, DEFAULT_IPV6_PREFIX, peer_addr};

crate::axum_rejection!(
    /// The rejection of the [`ClientIp`] extractor: a 403 problem+json when the request
    /// carries no peer address (the server does not record it; in axum, serve with
    /// `into_make_service_with_connect_info::<SocketAddr>()`).
    ClientIpRejection,
    "the request carries no peer address"
);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientIp {
    type Rejection = ClientIpRejection;

    /// The `ClientIp` a layer inserted, else the TCP peer (forwarding headers are only read
    /// by a layer configured with trusted proxies). No peer: a 403 problem.
    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        if let Some(ip) = parts.extensions.get::<Self>() {
            return Ok(*ip);
        }
        match peer_addr(&parts.extensions) {
            Some(peer) => Ok(Self::from_peer(peer.ip(), DEFAULT_IPV6_PREFIX)),
            None => {
                warn_missing_peer();
                Err(ClientIpRejection(
                    crate::refusal::Refusal::new(&crate::refusal::ProblemType::FORBIDDEN)
                        .build(&parts.headers, &parts.extensions),
                ))
            }
        }
    }
}
