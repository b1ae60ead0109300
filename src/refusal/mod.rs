//! Every refusal a tower-shield layer sends, built in one place.
//!
//! # HTTP
//!
//! A refusal is an [RFC 9457] `application/problem+json` body with exactly the members
//! `type`, `title`, `status`, `detail` and, when `RequestIdLayer` ran first, `request_id`,
//! plus whatever headers the refusal needs (`WWW-Authenticate`, `Retry-After`, …). The `detail`
//! is a fixed sentence per kind of refusal: no token fragment, key name or library error text
//! ever reaches a client.
//!
//! # gRPC
//!
//! When the request's `content-type` starts with `application/grpc`, the same refusal is an
//! HTTP 200 "trailers-only" answer with `grpc-status` and `grpc-message` headers and an empty
//! body, so tonic clients receive a proper status. Its `content-type` names the request's
//! protocol (`application/grpc`, or `application/grpc-web[-text]` for gRPC-Web, with the
//! request's `+proto`/`+json` codec), chosen from a fixed set, since gRPC-Web clients refuse
//! an answer of another content type. 400 → 3 `INVALID_ARGUMENT`,
//! 401 → 16 `UNAUTHENTICATED`, 403 → 7 `PERMISSION_DENIED`, 404 → 5 `NOT_FOUND`,
//! 429 → 8 `RESOURCE_EXHAUSTED`, 503 → 14 `UNAVAILABLE`.
//!
//! Such an answer carries its HTTP meaning in its extensions ([`RefusedAs`]), and
//! [`status_meant`] reads it back, so that what counts an answer (a count-only rate-limit
//! policy) counts a gRPC-rendered 401 as a 401, not as the 200 it is sent as.
//!
//! # Problem types
//!
//! Each `type` is `https://docs.rs/tower-shield/latest/tower_shield/refusal/#<slug>`; the
//! slugs are the names of the constants on [`ProblemType`]:
//!
//! - <a id="bad-request"></a>`bad-request`: the request is malformed.
//! - <a id="unauthorized"></a>`unauthorized`: credentials are missing.
//! - <a id="invalid-token"></a>`invalid-token`: the credentials presented are not valid.
//! - <a id="insufficient-scope"></a>`insufficient-scope`: valid credentials without the role or scope needed.
//! - <a id="forbidden"></a>`forbidden`: the request is not allowed.
//! - <a id="cors-rejected"></a>`cors-rejected`: the origin, method or a header is not allowed by CORS.
//! - <a id="https-required"></a>`https-required`: the request came over plain HTTP.
//! - <a id="not-found"></a>`not-found`: nothing here.
//! - <a id="rate-limited"></a>`rate-limited`: too many requests; see `Retry-After`.
//! - <a id="headers-too-large"></a>`headers-too-large`: the request headers are too large.
//! - <a id="unavailable"></a>`unavailable`: a store the decision depends on cannot answer.
//!
//! ```
//! use http::{Request, StatusCode, header};
//! use tower_shield::refusal::{ProblemType, Refusal};
//!
//! let request = Request::new(());
//! let response: http::Response<bytes::Bytes> = Refusal::new(&ProblemType::RATE_LIMITED)
//!     .with_header(header::RETRY_AFTER, http::HeaderValue::from_static("3"))
//!     .build(request.headers(), request.extensions());
//! assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
//! assert_eq!(response.headers()[header::CONTENT_TYPE], "application/problem+json");
//! assert_eq!(response.headers()[header::RETRY_AFTER], "3");
//! ```
//!
//! [RFC 9457]: https://www.rfc-editor.org/rfc/rfc9457

mod grpc;
mod problem;
mod render;

pub use grpc::{RefusedAs, grpc_code, status_meant};
pub use problem::{FieldError, PROBLEM_TYPE_BASE, ProblemType};
pub use render::Refusal;
#[cfg(feature = "rate-limit")]
pub(crate) use render::number_value;
