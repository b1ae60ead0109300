//! Rendering: a refusal as problem+json or as a gRPC status, each problem type rendered once
//! and cached.

use std::borrow::Cow;
use std::sync::OnceLock;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{Extensions, HeaderMap, HeaderName, HeaderValue, Response};
use serde::Serialize;

use super::grpc::{GRPC_MESSAGE, GRPC_STATUS, grpc_code, grpc_content_type, grpc_message};
use super::{FieldError, PROBLEM_TYPE_BASE, ProblemType, RefusedAs};
use crate::extensions::RequestId;

static PROBLEM_JSON: HeaderValue = HeaderValue::from_static("application/problem+json");

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

#[cfg(test)]
mod tests {
    use http::StatusCode;

    use super::*;
    use crate::refusal::grpc::percent_encode;

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
}
