//! axum extractors for verified claims (feature `axum`).

use std::convert::Infallible;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use http::request::Parts;
use http::{HeaderValue, header};

use super::claims::Verified;
use crate::refusal::{ProblemType, Refusal};

crate::axum_rejection!(
    /// The rejection of the [`Verified<C>`] extractor: the same 401 problem+json the layer
    /// sends for a missing token (the route is not behind `JwtAuthLayer`, or the layer is
    /// optional and the request was anonymous).
    AuthRejection,
    "no verified token: the route is not behind JwtAuthLayer, or the request was anonymous"
);

impl<S, C> FromRequestParts<S> for Verified<C>
where
    S: Send + Sync,
    C: Send + Sync + 'static,
{
    type Rejection = AuthRejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Self>() {
            Some(verified) => Ok(verified.clone()),
            None => Err(AuthRejection(
                Refusal::new(&ProblemType::UNAUTHORIZED)
                    .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
                    .build(&parts.headers, &parts.extensions),
            )),
        }
    }
}

impl<S, C> OptionalFromRequestParts<S> for Verified<C>
where
    S: Send + Sync,
    C: Send + Sync + 'static,
{
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Self>().cloned())
    }
}
