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

    /// The id as text: empty when the value is not 1 to 128 bytes of `[A-Za-z0-9._:-]`, so
    /// whatever was wrapped, the text is safe to log and to put in a problem body.
    pub fn as_str(&self) -> &str {
        let bytes = self.0.as_bytes();
        let safe = bytes.len() <= 128 && bytes.iter().all(|&b| is_id_byte(b));
        if safe {
            self.0.to_str().unwrap_or("")
        } else {
            ""
        }
    }

    /// The id as a header value.
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }
}

/// Whether `b` may appear in a request id (`[A-Za-z0-9._:-]`).
pub(crate) fn is_id_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-')
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
#[non_exhaustive]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_bytes_are_exactly_the_safe_charset() {
        for b in 0..=255u8 {
            let expected = b.is_ascii_alphanumeric() || b"._:-".contains(&b);
            assert_eq!(is_id_byte(b), expected, "{b:#04x}");
        }
    }

    #[test]
    fn request_id_text_is_only_ever_a_safe_id() {
        let ok = RequestId::new(HeaderValue::from_static("req-1.a:b_C"));
        assert_eq!(ok.as_str(), "req-1.a:b_C");
        assert_eq!(ok.to_string(), "req-1.a:b_C");
        let long = "a".repeat(129);
        for unsafe_value in [
            HeaderValue::from_static("has space"),
            HeaderValue::from_static("a\tb"),
            HeaderValue::from_static("x\" injected=\"1"),
            HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap(),
            HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
            HeaderValue::from_str(&long).unwrap(),
        ] {
            let id = RequestId::new(unsafe_value.clone());
            assert_eq!(id.as_str(), "", "{unsafe_value:?}");
            assert_eq!(id.to_string(), "");
            assert_eq!(id.header_value(), &unsafe_value);
        }
    }
}
