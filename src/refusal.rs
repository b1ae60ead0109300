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

use std::borrow::Cow;
use std::sync::OnceLock;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{Extensions, HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use serde::Serialize;

use crate::extensions::RequestId;

/// The base of every problem `type` URI.
pub const PROBLEM_TYPE_BASE: &str = "https://docs.rs/tower-shield/latest/tower_shield/refusal/#";

static PROBLEM_JSON: HeaderValue = HeaderValue::from_static("application/problem+json");
static GRPC: HeaderValue = HeaderValue::from_static("application/grpc");
static GRPC_PROTO: HeaderValue = HeaderValue::from_static("application/grpc+proto");
static GRPC_JSON: HeaderValue = HeaderValue::from_static("application/grpc+json");
static GRPC_WEB: HeaderValue = HeaderValue::from_static("application/grpc-web");
static GRPC_WEB_PROTO: HeaderValue = HeaderValue::from_static("application/grpc-web+proto");
static GRPC_WEB_JSON: HeaderValue = HeaderValue::from_static("application/grpc-web+json");
static GRPC_WEB_TEXT: HeaderValue = HeaderValue::from_static("application/grpc-web-text");
static GRPC_WEB_TEXT_PROTO: HeaderValue =
    HeaderValue::from_static("application/grpc-web-text+proto");
static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
static GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");

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
pub struct FieldError {
    /// The field's name.
    pub field: Cow<'static, str>,
    /// What is wrong with it (never the value itself).
    pub message: Cow<'static, str>,
}

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

/// A refusal under construction: a [`ProblemType`] and the headers it needs.
#[derive(Debug, Clone)]
#[must_use]
pub struct Refusal {
    problem: &'static ProblemType,
    headers: HeaderMap,
    errors: Vec<FieldError>,
}

#[derive(Serialize)]
struct ProblemBody<'a> {
    #[serde(rename = "type")]
    type_: Cow<'a, str>,
    title: &'a str,
    status: u16,
    detail: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    errors: &'a [FieldError],
}

impl Refusal {
    /// A refusal of the given kind.
    pub fn new(problem: &'static ProblemType) -> Self {
        Self {
            problem,
            headers: HeaderMap::new(),
            errors: Vec::new(),
        }
    }

    /// The kind of this refusal.
    pub fn problem(&self) -> &'static ProblemType {
        self.problem
    }

    /// Adds a header to the answer (appended: several values of one name are kept).
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.append(name, value);
        self
    }

    /// Adds field errors (rendered as the `errors` member, for 422 answers).
    pub fn with_errors(mut self, errors: impl IntoIterator<Item = FieldError>) -> Self {
        self.errors.extend(errors);
        self
    }

    /// Whether a request with these headers is a gRPC call.
    pub fn is_grpc(request_headers: &HeaderMap) -> bool {
        request_headers
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
    }

    /// The problem+json body of this refusal, with the given request id.
    pub fn problem_json(&self, request_id: Option<&RequestId>) -> Bytes {
        match rendered(self.problem) {
            Some(rendered) if self.errors.is_empty() => rendered.body(request_id).0,
            _ => self.serialize(request_id),
        }
    }

    /// The body serialised in full (field errors, or a problem type the cache has no room
    /// for); the cached rendering gives the same bytes.
    fn serialize(&self, request_id: Option<&RequestId>) -> Bytes {
        let type_ = match self.problem.slug {
            Some(slug) => Cow::Owned(format!("{PROBLEM_TYPE_BASE}{slug}")),
            None => Cow::Borrowed("about:blank"),
        };
        let body = ProblemBody {
            type_,
            title: self.problem.title,
            status: self.problem.status.as_u16(),
            detail: self.problem.detail,
            request_id: request_id.map(RequestId::as_str),
            errors: &self.errors,
        };
        // Serialising plain strings and numbers cannot fail.
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default())
    }

    /// Builds the answer to a request with these headers and extensions: problem+json, or a
    /// gRPC status when the request is a gRPC call.
    pub fn build<B: From<Bytes>>(
        self,
        request_headers: &HeaderMap,
        request_extensions: &Extensions,
    ) -> Response<B> {
        if let Some(content_type) = grpc_content_type(request_headers) {
            return self.build_grpc(content_type);
        }
        let request_id = request_extensions.get::<RequestId>();
        let (body, length) = match rendered(self.problem) {
            Some(rendered) if self.errors.is_empty() => rendered.body(request_id),
            _ => {
                let body = self.serialize(request_id);
                let length = number_value(body.len() as u64);
                (body, length)
            }
        };
        let mut response = Response::new(B::from(body));
        *response.status_mut() = self.problem.status;
        let mut headers = self.headers;
        headers.insert(CONTENT_TYPE, PROBLEM_JSON.clone());
        headers.insert(CONTENT_LENGTH, length);
        *response.headers_mut() = headers;
        response
    }

    /// Builds the answer to a request, reading its headers and extensions.
    pub fn for_request<B: From<Bytes>, R>(self, request: &http::Request<R>) -> Response<B> {
        self.build(request.headers(), request.extensions())
    }

    fn build_grpc<B: From<Bytes>>(self, content_type: &HeaderValue) -> Response<B> {
        let mut response = Response::new(B::from(Bytes::new()));
        let mut headers = self.headers;
        headers.insert(CONTENT_TYPE, content_type.clone());
        headers.insert(
            GRPC_STATUS.clone(),
            number_value(u64::from(grpc_code(self.problem.status))),
        );
        let message = match rendered(self.problem) {
            Some(rendered) => rendered.grpc_message.clone(),
            None => grpc_message(self.problem),
        };
        if let Some(message) = message {
            headers.insert(GRPC_MESSAGE.clone(), message);
        }
        response
            .extensions_mut()
            .insert(RefusedAs(self.problem.status));
        *response.headers_mut() = headers;
        response
    }
}

/// What is rendered once per problem type (per `&'static ProblemType` address), so that a
/// refusal costs a copy and no serialisation: the JSON body before `request_id`, the whole
/// body without one, its `content-length`, and the gRPC message.
struct Rendered {
    /// `{"type":…,"title":…,"status":…,"detail":…`, without the closing brace.
    head: &'static [u8],
    /// `head` and `}`: the body when there is no request id.
    whole: Bytes,
    whole_length: HeaderValue,
    grpc_message: Option<HeaderValue>,
}

/// Slots of the rendering cache: far more than the crate's constants and an application's
/// own; a problem type that finds no slot is serialised per refusal, as before.
const RENDERED_SLOTS: usize = 64;

static RENDERED: [OnceLock<(usize, Rendered)>; RENDERED_SLOTS] =
    [const { OnceLock::new() }; RENDERED_SLOTS];

/// The cached rendering of a problem type. A `&'static` address is never reused for other
/// contents, so it is a sound key (one constant used from several crates may take a few
/// slots with identical contents).
fn rendered(problem: &'static ProblemType) -> Option<&'static Rendered> {
    let address = std::ptr::from_ref(problem) as usize;
    let start = (address >> 3) ^ (address >> 11);
    for probe in 0..RENDERED_SLOTS {
        let slot = RENDERED.get(start.wrapping_add(probe) % RENDERED_SLOTS)?;
        let (key, rendered) = slot.get_or_init(|| (address, Rendered::new(problem)));
        if *key == address {
            return Some(rendered);
        }
    }
    None
}

impl Rendered {
    fn new(problem: &'static ProblemType) -> Self {
        let whole = Refusal::new(problem).serialize(None);
        let head = leak(whole.strip_suffix(b"}").unwrap_or_default());
        let whole = Bytes::from_static(leak(&whole));
        Self {
            head,
            whole_length: number_value(whole.len() as u64),
            whole,
            grpc_message: grpc_message(problem),
        }
    }

    /// The body with this request id (its JSON string spliced in) and its length.
    fn body(&self, request_id: Option<&RequestId>) -> (Bytes, HeaderValue) {
        let Some(id) = request_id else {
            return (self.whole.clone(), self.whole_length.clone());
        };
        let body = self.with_id(id.as_str());
        let length = number_value(body.len() as u64);
        (body, length)
    }

    /// The body with a `request_id` member holding `id` as a JSON string.
    fn with_id(&self, id: &str) -> Bytes {
        const MEMBER: &[u8] = b",\"request_id\":";
        // Exactly the final length for a plain id, so `Bytes::from` keeps the allocation.
        let mut body = Vec::with_capacity(self.head.len() + MEMBER.len() + id.len() + 3);
        body.extend_from_slice(self.head);
        body.extend_from_slice(MEMBER);
        if id
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
        {
            body.push(b'"');
            body.extend_from_slice(id.as_bytes());
            body.push(b'"');
        } else if serde_json::to_writer(&mut body, id).is_err() {
            body.extend_from_slice(b"\"\"");
        }
        body.push(b'}');
        Bytes::from(body)
    }
}

/// A copy of `bytes` that lives for the rest of the process (the rendering cache is bounded,
/// so this is too); its `Bytes` and header values clone without touching a reference count.
fn leak(bytes: &[u8]) -> &'static [u8] {
    Box::leak(bytes.to_vec().into_boxed_slice())
}

/// The percent-encoded `grpc-message` of a problem type.
fn grpc_message(problem: &ProblemType) -> Option<HeaderValue> {
    HeaderValue::from_str(&percent_encode(problem.detail)).ok()
}

/// The header value of a number: 0..=1023 (`content-length` of a refusal, `retry-after`
/// seconds, `grpc-status`) from a table rendered once, whose clones are free; larger ones
/// rendered on the spot.
pub(crate) fn number_value(n: u64) -> HeaderValue {
    const TABLE_LEN: usize = 1024;
    static TABLE: OnceLock<Vec<HeaderValue>> = OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut text = String::new();
        let mut ends = Vec::with_capacity(TABLE_LEN);
        for i in 0..TABLE_LEN {
            text.push_str(&i.to_string());
            ends.push(text.len());
        }
        let text: &'static [u8] = leak(text.as_bytes());
        let mut start = 0;
        ends.into_iter()
            .filter_map(|end| {
                let digits = text.get(start..end)?;
                start = end;
                HeaderValue::from_maybe_shared(Bytes::from_static(digits)).ok()
            })
            .collect()
    });
    usize::try_from(n)
        .ok()
        .and_then(|i| table.get(i))
        .cloned()
        .unwrap_or_else(|| HeaderValue::from(n))
}

/// The `content-type` of a gRPC refusal: the request's own protocol and codec (gRPC or
/// gRPC-Web, binary or text, proto or JSON), from a fixed set of values, so that gRPC-Web
/// clients, which check the answer's content type before reading `grpc-status`, accept it.
/// The request's value itself is never echoed. `None` when the request is not gRPC.
fn grpc_content_type(request_headers: &HeaderMap) -> Option<&'static HeaderValue> {
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
fn percent_encode(message: &str) -> String {
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

    fn request_with_id(id: &'static str) -> http::Request<()> {
        let mut request = http::Request::new(());
        request
            .extensions_mut()
            .insert(RequestId::new(HeaderValue::from_static(id)));
        request
    }

    #[test]
    fn http_refusal_is_problem_json_with_request_id() {
        let request = request_with_id("abc-123");
        let response: Response<Bytes> = Refusal::new(&ProblemType::INVALID_TOKEN)
            .with_header(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"x\", error=\"invalid_token\""),
            )
            .for_request(&request);
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(response.headers()[CONTENT_TYPE], "application/problem+json");
        let json: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
        let object = json.as_object().unwrap();
        let mut keys: Vec<_> = object.keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["detail", "request_id", "status", "title", "type"]);
        assert_eq!(json["status"], 401);
        assert_eq!(json["request_id"], "abc-123");
        assert_eq!(
            json["type"],
            "https://docs.rs/tower-shield/latest/tower_shield/refusal/#invalid-token"
        );
        assert_eq!(
            response.headers()[CONTENT_LENGTH],
            response.body().len().to_string()
        );
        assert!(
            response
                .headers()
                .contains_key(http::header::WWW_AUTHENTICATE)
        );
    }

    #[test]
    fn request_id_is_omitted_when_absent() {
        let request = http::Request::new(());
        let response: Response<Bytes> =
            Refusal::new(&ProblemType::RATE_LIMITED).for_request(&request);
        let json: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
        assert!(json.get("request_id").is_none());
        assert_eq!(json["status"], 429);
    }

    #[test]
    fn field_errors_are_rendered() {
        const UNPROCESSABLE: ProblemType = ProblemType::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "Unprocessable Content",
            "The request body is not valid.",
        );
        let request = http::Request::new(());
        let response: Response<Bytes> = Refusal::new(&UNPROCESSABLE)
            .with_errors([FieldError {
                field: "email".into(),
                message: "must be an email address".into(),
            }])
            .for_request(&request);
        let json: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(json["errors"][0]["field"], "email");
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
    fn cached_rendering_is_the_serialised_body() {
        const CUSTOM: ProblemType = ProblemType::new(
            StatusCode::CONFLICT,
            "conflict \"quoted\" \\ \u{e9}",
            "Conflict\n",
            "Already \"there\".",
        );
        static ABOUT_BLANK: ProblemType = ProblemType {
            slug: None,
            ..ProblemType::NOT_FOUND
        };
        let all: [&'static ProblemType; 13] = [
            &ProblemType::BAD_REQUEST,
            &ProblemType::UNAUTHORIZED,
            &ProblemType::INVALID_TOKEN,
            &ProblemType::INSUFFICIENT_SCOPE,
            &ProblemType::FORBIDDEN,
            &ProblemType::CORS_REJECTED,
            &ProblemType::HTTPS_REQUIRED,
            &ProblemType::NOT_FOUND,
            &ProblemType::RATE_LIMITED,
            &ProblemType::HEADERS_TOO_LARGE,
            &ProblemType::UNAVAILABLE,
            &CUSTOM,
            &ABOUT_BLANK,
        ];
        let ids = [
            None,
            Some(RequestId::new(HeaderValue::from_static("req-1.a:b_c"))),
            Some(RequestId::new(HeaderValue::from_static("has space"))),
            Some(RequestId::new(HeaderValue::from_static(""))),
        ];
        for problem in all {
            for id in &ids {
                let refusal = Refusal::new(problem);
                let expected = refusal.serialize(id.as_ref());
                assert_eq!(refusal.problem_json(id.as_ref()), expected);
                let mut extensions = Extensions::new();
                if let Some(id) = id {
                    extensions.insert(id.clone());
                }
                let response: Response<Bytes> = Refusal::new(problem)
                    .with_header(http::header::RETRY_AFTER, number_value(7))
                    .build(&HeaderMap::new(), &extensions);
                assert_eq!(response.body(), &expected);
                assert_eq!(
                    response.headers()[CONTENT_LENGTH],
                    expected.len().to_string()
                );
                assert_eq!(response.headers()[http::header::RETRY_AFTER], "7");
                assert_eq!(response.status(), problem.status);
            }
            let mut grpc = HeaderMap::new();
            grpc.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
            let response: Response<Bytes> = Refusal::new(problem).build(&grpc, &Extensions::new());
            assert_eq!(
                response.headers()["grpc-message"],
                percent_encode(problem.detail).as_str()
            );
            assert_eq!(
                response.headers()["grpc-status"],
                grpc_code(problem.status).to_string()
            );
        }
        // The escaping path, for ids the plain splice does not take.
        let problem = &ProblemType::BAD_REQUEST;
        let rendered = rendered(problem).unwrap();
        for raw in [
            "plain",
            "a\"b",
            "back\\slash",
            "tab\there",
            "\u{7f}",
            "\u{e9}t\u{e9}",
            "",
        ] {
            let expected = serde_json::to_vec(&ProblemBody {
                type_: Cow::Owned(format!("{PROBLEM_TYPE_BASE}bad-request")),
                title: problem.title,
                status: problem.status.as_u16(),
                detail: problem.detail,
                request_id: Some(raw),
                errors: &[],
            })
            .unwrap();
            assert_eq!(rendered.with_id(raw), expected, "{raw:?}");
        }
    }

    #[test]
    fn numbers_render_as_decimal() {
        for n in [0, 1, 9, 10, 429, 1023, 1024, 65_536, u64::MAX] {
            assert_eq!(number_value(n), n.to_string().as_str());
        }
    }

    #[test]
    fn grpc_message_is_percent_encoded() {
        assert_eq!(percent_encode("a b%c\u{e9}"), "a b%25c%C3%A9");
    }
}
