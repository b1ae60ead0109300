//! Problem types: the kinds of refusal, and the `type` URIs that name them.

use std::borrow::Cow;

use http::StatusCode;
use serde::Serialize;

/// The base of every problem `type` URI.
pub const PROBLEM_TYPE_BASE: &str = "https://docs.rs/tower-shield/latest/tower_shield/refusal/#";

/// A kind of refusal: its status, its problem `type` slug, its title and its fixed detail.
///
/// Define your own as a `const` for application errors that should look like the crate's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProblemType {
    /// The HTTP status.
    pub status: StatusCode,
    /// The fragment of the `type` URI (appended to [`PROBLEM_TYPE_BASE`]); `None` gives
    /// `about:blank`.
    pub slug: Option<&'static str>,
    /// A short, human-readable summary (the same for every occurrence).
    pub title: &'static str,
    /// A fixed explanation, safe to show to any client.
    pub detail: &'static str,
}

impl ProblemType {
    /// 400: the request is malformed.
    pub const BAD_REQUEST: Self = Self::new(
        StatusCode::BAD_REQUEST,
        "bad-request",
        "Bad Request",
        "The request is malformed.",
    );
    /// 401 without credentials.
    pub const UNAUTHORIZED: Self = Self::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "Unauthorized",
        "Authentication is required.",
    );
    /// 401 with credentials that are not valid.
    pub const INVALID_TOKEN: Self = Self::new(
        StatusCode::UNAUTHORIZED,
        "invalid-token",
        "Unauthorized",
        "The access token is invalid or has expired.",
    );
    /// 403: valid credentials without the role or scope needed.
    pub const INSUFFICIENT_SCOPE: Self = Self::new(
        StatusCode::FORBIDDEN,
        "insufficient-scope",
        "Forbidden",
        "The access token does not grant access to this resource.",
    );
    /// 403: the request is not allowed.
    pub const FORBIDDEN: Self = Self::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        "Forbidden",
        "The request is not allowed.",
    );
    /// 403 from CORS: the origin, method or a header is not allowed.
    pub const CORS_REJECTED: Self = Self::new(
        StatusCode::FORBIDDEN,
        "cors-rejected",
        "Forbidden",
        "The cross-origin request is not allowed.",
    );
    /// 403: the request came over plain HTTP and HTTPS is required.
    pub const HTTPS_REQUIRED: Self = Self::new(
        StatusCode::FORBIDDEN,
        "https-required",
        "Forbidden",
        "This resource must be requested over HTTPS.",
    );
    /// 404: nothing here.
    pub const NOT_FOUND: Self = Self::new(
        StatusCode::NOT_FOUND,
        "not-found",
        "Not Found",
        "The resource does not exist.",
    );
    /// 429: too many requests.
    pub const RATE_LIMITED: Self = Self::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate-limited",
        "Too Many Requests",
        "The rate limit has been reached; retry after the time given in Retry-After.",
    );
    /// 431: the request headers are too large.
    pub const HEADERS_TOO_LARGE: Self = Self::new(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "headers-too-large",
        "Request Header Fields Too Large",
        "The request headers are too large.",
    );
    /// 503: a store the decision depends on cannot answer.
    pub const UNAVAILABLE: Self = Self::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "Service Unavailable",
        "The service cannot decide on this request right now; retry later.",
    );

    /// A problem type with a slug of its own.
    pub const fn new(
        status: StatusCode,
        slug: &'static str,
        title: &'static str,
        detail: &'static str,
    ) -> Self {
        Self {
            status,
            slug: Some(slug),
            title,
            detail,
        }
    }
}

/// One field's validation failure, for 422 answers (`errors` member).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct FieldError {
    /// The field's name.
    pub field: Cow<'static, str>,
    /// What is wrong with it (never the value itself).
    pub message: Cow<'static, str>,
}

impl FieldError {
    /// The failure of `field`, described by `message` (which must never hold the value).
    pub fn new(field: impl Into<Cow<'static, str>>, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}
