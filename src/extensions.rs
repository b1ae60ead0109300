//! The small types layers leave in the request extensions for each other and for handlers.
//!
//! Layers never know each other: they talk only through these values. Each is cheap to clone
//! and carries no secret (never a raw token).

use std::sync::Arc;

use http::HeaderValue;

/// The id of the request, as set by `RequestIdLayer` (a validated header value).
///
/// Refusals put it in their problem body (`request_id`) and logs carry it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// Wraps a header value that is already known to be a safe id.
    ///
    /// `RequestIdLayer` only ever builds ids of `[A-Za-z0-9._:-]`, at most 128 bytes. Values
    /// given here that do not meet that rule are replaced by an empty id when rendered.
    pub fn new(value: HeaderValue) -> Self {
        Self(value)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        self.0.to_str().unwrap_or("")
    }

    /// The id as a header value.
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The verified identity of the caller, inserted by `JwtAuthLayer` beside the full claims.
///
/// Other layers (rate limiting keyed or tiered by user) read this instead of the claims, so
/// they need nothing from the `jwt` module.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    /// The subject (`sub` claim).
    pub subject: Arc<str>,
    /// The role (`role` claim), when the token has one.
    pub role: Option<Arc<str>>,
}

impl Principal {
    /// A principal with a subject and an optional role.
    pub fn new(subject: impl Into<Arc<str>>, role: Option<Arc<str>>) -> Self {
        Self {
            subject: subject.into(),
            role,
        }
    }
}
