//! The demo's own problem types, and the JSON body extractor every JSON route uses:
//! `Content-Type: application/json` (optionally `; charset=utf-8`) or 415, at most
//! [`MAX_JSON_BODY`] bytes or 413, well-formed JSON without duplicate or unknown members or
//! 400, the right member types or 422. Every refusal goes through
//! `tower_shield::refusal::Refusal`, so it has the same shape as the layers' own.

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use serde::de::DeserializeOwned;
use tower_shield::refusal::{FieldError, ProblemType, Refusal};

/// The largest JSON body accepted.
pub(crate) const MAX_JSON_BODY: usize = 16 * 1024;

/// 409: the email address is already registered.
pub(crate) static EMAIL_TAKEN: ProblemType = ProblemType::new(
    StatusCode::CONFLICT,
    "email-taken",
    "Conflict",
    "An account with this email address already exists.",
);

/// 413: the body is larger than [`MAX_JSON_BODY`].
pub(crate) static BODY_TOO_LARGE: ProblemType = ProblemType::new(
    StatusCode::PAYLOAD_TOO_LARGE,
    "body-too-large",
    "Content Too Large",
    "The request body is larger than 16384 bytes.",
);

/// 415: not `application/json`.
pub(crate) static UNSUPPORTED_MEDIA_TYPE: ProblemType = ProblemType::new(
    StatusCode::UNSUPPORTED_MEDIA_TYPE,
    "unsupported-media-type",
    "Unsupported Media Type",
    "The request body must be application/json.",
);

/// 400: the body is not well-formed JSON, or has duplicate or unknown members.
pub(crate) static MALFORMED_JSON: ProblemType = ProblemType::new(
    StatusCode::BAD_REQUEST,
    "malformed-json",
    "Bad Request",
    "The request body is not a well-formed JSON object with the expected members.",
);

/// 422: the body is JSON, but a member is missing or invalid.
pub(crate) static VALIDATION_FAILED: ProblemType = ProblemType::new(
    StatusCode::UNPROCESSABLE_ENTITY,
    "validation-failed",
    "Unprocessable Content",
    "One or more fields are invalid; see errors.",
);

/// 400: a path parameter is not a well-formed id.
pub(crate) static MALFORMED_ID: ProblemType = ProblemType::new(
    StatusCode::BAD_REQUEST,
    "malformed-id",
    "Bad Request",
    "The id in the path is malformed.",
);

/// 401 for a failed sign-in: the same bytes for an unknown email and a wrong password.
pub(crate) static INVALID_CREDENTIALS: ProblemType = ProblemType::new(
    StatusCode::UNAUTHORIZED,
    "invalid-credentials",
    "Unauthorized",
    "The email address or the password is wrong.",
);

/// A refusal for this request.
pub(crate) fn refuse(
    problem: &'static ProblemType,
    headers: &HeaderMap,
    parts: &http::Extensions,
) -> Response {
    Refusal::new(problem).build(headers, parts)
}

/// A 422 with field errors.
pub(crate) fn invalid(
    errors: Vec<FieldError>,
    headers: &HeaderMap,
    extensions: &http::Extensions,
) -> Response {
    Refusal::new(&VALIDATION_FAILED)
        .with_errors(errors)
        .build(headers, extensions)
}

/// A field error with fixed text (never the value).
pub(crate) fn field(field: &'static str, message: &'static str) -> FieldError {
    FieldError::new(field, message)
}

/// Whether the `Content-Type` is `application/json`, optionally with `charset=utf-8`.
fn is_json(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(header::CONTENT_TYPE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    let Ok(value) = value.to_str() else {
        return false;
    };
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return false;
    }
    match (parts.next(), parts.next()) {
        (None, _) => true,
        (Some(param), None) => {
            let param = param.trim();
            match param.split_once('=') {
                Some((name, value)) => {
                    name.trim().eq_ignore_ascii_case("charset")
                        && value.trim().trim_matches('"').eq_ignore_ascii_case("utf-8")
                }
                None => false,
            }
        }
        _ => false,
    }
}

/// A JSON body of type `T`, checked as the module docs say.
#[derive(Debug)]
pub(crate) struct JsonBody<T>(pub(crate) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = Response;

    async fn from_request(request: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let refuse =
            |problem: &'static ProblemType| refuse(problem, &parts.headers, &parts.extensions);
        if !is_json(&parts.headers) {
            return Err(refuse(&UNSUPPORTED_MEDIA_TYPE));
        }
        // A declared length over the cap is refused unread.
        if let Some(length) = parts.headers.get(header::CONTENT_LENGTH)
            && length
                .to_str()
                .ok()
                .and_then(|l| l.parse::<u64>().ok())
                .is_some_and(|l| l > MAX_JSON_BODY as u64)
        {
            return Err(refuse(&BODY_TOO_LARGE));
        }
        let Ok(bytes) = axum::body::to_bytes(Body::new(body), MAX_JSON_BODY).await else {
            return Err(refuse(&BODY_TOO_LARGE));
        };
        let mut deserializer = serde_json::Deserializer::from_slice(&bytes);
        match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
            // Anything after the value (`{…} x`) is malformed.
            Ok(value) => match deserializer.end() {
                Ok(()) => Ok(Self(value)),
                Err(_) => Err(refuse(&MALFORMED_JSON)),
            },
            Err(error) => match error.inner().classify() {
                serde_json::error::Category::Data => {
                    // Missing member or wrong type; duplicate and unknown members are
                    // syntax-level problems of the object (400).
                    let text = error.inner().to_string();
                    if text.starts_with("duplicate field") || text.starts_with("unknown field") {
                        Err(refuse(&MALFORMED_JSON))
                    } else {
                        Err(invalid(
                            vec![member_error(&error)],
                            &parts.headers,
                            &parts.extensions,
                        ))
                    }
                }
                _ => Err(refuse(&MALFORMED_JSON)),
            },
        }
    }
}

/// The 422 entry of a member that is missing or has the wrong type, naming the member: the
/// path `serde_path_to_error` found (a wrong type), or for a missing member the name serde
/// reports. Only a plain member name is ever echoed (the structs name their members; an
/// unknown member is a 400 before this), else the field is `body`.
fn member_error(error: &serde_path_to_error::Error<serde_json::Error>) -> FieldError {
    let plain = |name: &str| {
        (1..=64).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
    };
    let from_path = error
        .path()
        .iter()
        .next()
        .and_then(|segment| match segment {
            serde_path_to_error::Segment::Map { key } if plain(key) => Some(key.clone()),
            _ => None,
        });
    let text = error.inner().to_string();
    let missing = text
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name)
        .filter(|name| plain(name));
    match (from_path, missing) {
        (Some(name), _) => FieldError::new(name, "has the wrong type"),
        (None, Some(name)) => FieldError::new(name.to_owned(), "is missing"),
        (None, None) => field("body", "a member is missing or has the wrong type"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types() {
        let check = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, http::HeaderValue::from_static(v));
            is_json(&h)
        };
        assert!(check("application/json"));
        assert!(check("Application/JSON; charset=UTF-8"));
        assert!(check("application/json;charset=\"utf-8\""));
        assert!(!check("application/json; charset=latin1"));
        assert!(!check("text/json"));
        assert!(!check("application/jsonx"));
        assert!(!check("application/json; charset=utf-8; x=1"));
    }
}
