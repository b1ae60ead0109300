//! gRPC: the status code of a refusal, the content type it answers in, its percent-encoded
//! `grpc-message`, and the HTTP status an answer stands for.

use http::header::CONTENT_TYPE;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode};

use super::{ProblemType, Refusal};

static GRPC: HeaderValue = HeaderValue::from_static("application/grpc");
static GRPC_PROTO: HeaderValue = HeaderValue::from_static("application/grpc+proto");
static GRPC_JSON: HeaderValue = HeaderValue::from_static("application/grpc+json");
static GRPC_WEB: HeaderValue = HeaderValue::from_static("application/grpc-web");
static GRPC_WEB_PROTO: HeaderValue = HeaderValue::from_static("application/grpc-web+proto");
static GRPC_WEB_JSON: HeaderValue = HeaderValue::from_static("application/grpc-web+json");
static GRPC_WEB_TEXT: HeaderValue = HeaderValue::from_static("application/grpc-web-text");
static GRPC_WEB_TEXT_PROTO: HeaderValue =
    HeaderValue::from_static("application/grpc-web-text+proto");
pub(super) static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
pub(super) static GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

/// The HTTP status a refusal stands for, in the response extensions of a refusal rendered
/// for gRPC (sent as HTTP 200 with a `grpc-status`). See [`status_meant`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefusedAs(pub StatusCode);

/// What an answer means, whatever form it was rendered in: the status in its [`RefusedAs`]
/// extension (a tower-shield refusal rendered for gRPC); else, for a gRPC trailers-only
/// answer (HTTP 200, an `application/grpc…` content type and a `grpc-status` header, as
/// tonic sends a handler's `Status`), the HTTP status of that gRPC code (16 → 401,
/// 7 → 403, 8 → 429, 3 → 400, 5 → 404, 14 → 503, ...); else the response status itself.
///
/// A gRPC status sent in the trailers after a streamed body is not seen here (the answer is
/// decided before its body is read): a count-only limit on such a streaming method counts
/// only refusals sent trailers-only, as tower-shield's own and tonic's unary errors are.
///
/// ```
/// use http::{Request, Response, StatusCode, header};
/// use tower_shield::refusal::{ProblemType, Refusal, status_meant};
///
/// let grpc = Request::builder().header(header::CONTENT_TYPE, "application/grpc").body(()).unwrap();
/// let refusal: Response<bytes::Bytes> = Refusal::new(&ProblemType::INVALID_TOKEN).for_request(&grpc);
/// assert_eq!(refusal.status(), StatusCode::OK);
/// assert_eq!(status_meant(&refusal), StatusCode::UNAUTHORIZED);
/// ```
pub fn status_meant<B>(response: &Response<B>) -> StatusCode {
    if let Some(RefusedAs(status)) = response.extensions().get::<RefusedAs>() {
        return *status;
    }
    let status = response.status();
    if status != StatusCode::OK || !Refusal::is_grpc(response.headers()) {
        return status;
    }
    match response
        .headers()
        .get(&GRPC_STATUS)
        .map(HeaderValue::as_bytes)
    {
        None | Some(b"0") => status,
        Some(code) => http_status_of_grpc(code),
    }
}

/// The HTTP status of a gRPC status code (the inverse of [`grpc_code`] where it is one to
/// one; an unknown or malformed code means a failure of the server: 500).
fn http_status_of_grpc(code: &[u8]) -> StatusCode {
    match code {
        b"3" | b"9" | b"11" => StatusCode::BAD_REQUEST,
        b"16" => StatusCode::UNAUTHORIZED,
        b"7" => StatusCode::FORBIDDEN,
        b"5" => StatusCode::NOT_FOUND,
        b"6" | b"10" => StatusCode::CONFLICT,
        b"8" => StatusCode::TOO_MANY_REQUESTS,
        b"12" => StatusCode::NOT_IMPLEMENTED,
        b"14" => StatusCode::SERVICE_UNAVAILABLE,
        b"4" => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The percent-encoded `grpc-message` of a problem type.
pub(super) fn grpc_message(problem: &ProblemType) -> Option<HeaderValue> {
    HeaderValue::from_str(&percent_encode(problem.detail)).ok()
}

/// The `content-type` of a gRPC refusal: the request's own protocol and codec (gRPC or
/// gRPC-Web, binary or text, proto or JSON), from a fixed set of values, so that gRPC-Web
/// clients, which check the answer's content type before reading `grpc-status`, accept it.
/// The request's value itself is never echoed. `None` when the request is not gRPC.
pub(super) fn grpc_content_type(request_headers: &HeaderMap) -> Option<&'static HeaderValue> {
    let value = request_headers.get(CONTENT_TYPE)?.as_bytes();
    let rest = value.strip_prefix(b"application/grpc")?;
    // The media type without parameters (`; charset=...`), compared case-insensitively.
    let end = rest.iter().position(|&b| b == b';').unwrap_or(rest.len());
    let suffix = rest.get(..end).unwrap_or_default().trim_ascii_end();
    let is = |expected: &[u8]| suffix.eq_ignore_ascii_case(expected);
    Some(if is(b"-web-text+proto") {
        &GRPC_WEB_TEXT_PROTO
    } else if rest.starts_with(b"-web-text") {
        &GRPC_WEB_TEXT
    } else if is(b"-web+proto") {
        &GRPC_WEB_PROTO
    } else if is(b"-web+json") {
        &GRPC_WEB_JSON
    } else if rest.starts_with(b"-web") {
        &GRPC_WEB
    } else if is(b"+proto") {
        &GRPC_PROTO
    } else if is(b"+json") {
        &GRPC_JSON
    } else {
        &GRPC
    })
}

/// The gRPC status code for an HTTP status.
pub fn grpc_code(status: StatusCode) -> u16 {
    match status.as_u16() {
        400 | 415 | 422 | 431 => 3,
        401 => 16,
        403 => 7,
        404 => 5,
        409 => 6,
        413 | 429 => 8,
        500 => 13,
        501 => 12,
        502..=504 => 14,
        _ => 2,
    }
}

/// Percent-encodes a `grpc-message` as the gRPC HTTP/2 protocol asks (space through `~`
/// except `%` stay as they are).
pub(super) fn percent_encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push_str(&format!("{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http::Extensions;

    use super::*;

    #[test]
    fn status_meant_reads_grpc_answers_only() {
        let answer = |content_type: &'static str, grpc_status: Option<&'static str>| {
            let mut response = Response::new(());
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
            if let Some(code) = grpc_status {
                response
                    .headers_mut()
                    .insert(GRPC_STATUS.clone(), HeaderValue::from_static(code));
            }
            status_meant(&response)
        };
        assert_eq!(
            answer("application/grpc", Some("16")),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            answer("application/grpc+proto", Some("8")),
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(answer("application/grpc", Some("0")), StatusCode::OK);
        assert_eq!(answer("application/grpc", None), StatusCode::OK);
        assert_eq!(
            answer("application/grpc", Some("99")),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        // A REST answer that passes an upstream's grpc-status through means its status.
        assert_eq!(answer("application/json", Some("16")), StatusCode::OK);
        let mut refused = Response::new(());
        *refused.status_mut() = StatusCode::NOT_FOUND;
        refused
            .extensions_mut()
            .insert(RefusedAs(StatusCode::UNAUTHORIZED));
        assert_eq!(status_meant(&refused), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn grpc_refusal_maps_status() {
        for (problem, code) in [
            (&ProblemType::UNAUTHORIZED, "16"),
            (&ProblemType::INSUFFICIENT_SCOPE, "7"),
            (&ProblemType::RATE_LIMITED, "8"),
            (&ProblemType::BAD_REQUEST, "3"),
            (&ProblemType::UNAVAILABLE, "14"),
        ] {
            let mut request = http::Request::new(());
            request.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/grpc+proto"),
            );
            let response: Response<Bytes> = Refusal::new(problem).for_request(&request);
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.headers()["grpc-status"], code);
            assert!(response.headers().contains_key("grpc-message"));
            assert!(response.body().is_empty());
        }
    }

    #[test]
    fn grpc_refusal_answers_in_the_request_protocol() {
        for (request, answer) in [
            ("application/grpc", "application/grpc"),
            ("application/grpc+proto", "application/grpc+proto"),
            ("application/grpc+json", "application/grpc+json"),
            ("application/grpc+thrift", "application/grpc"),
            ("application/grpc-web", "application/grpc-web"),
            ("application/grpc-web+proto", "application/grpc-web+proto"),
            (
                "application/grpc-web+JSON; charset=utf-8",
                "application/grpc-web+json",
            ),
            ("application/grpc-web-text", "application/grpc-web-text"),
            (
                "application/grpc-web-text+proto",
                "application/grpc-web-text+proto",
            ),
            (
                "application/grpc-web-text+\u{ff}evil",
                "application/grpc-web-text",
            ),
        ] {
            let mut request_headers = HeaderMap::new();
            request_headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_bytes(request.as_bytes()).unwrap(),
            );
            let response: Response<Bytes> = Refusal::new(&ProblemType::UNAUTHORIZED)
                .build(&request_headers, &Extensions::new());
            assert_eq!(response.headers()[CONTENT_TYPE], answer, "{request}");
            assert_eq!(response.headers()["grpc-status"], "16");
            assert!(response.body().is_empty());
        }
    }

    #[test]
    fn grpc_message_is_percent_encoded() {
        assert_eq!(percent_encode("a b%c\u{e9}"), "a b%25c%C3%A9");
    }
}
