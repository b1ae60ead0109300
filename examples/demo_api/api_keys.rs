//! API keys (server-to-server): `/api/keys*` (bearer only: a key never manages keys) and
//! `/api/service/ping` (a key only).
//!
//! A key is `api_…` (the library's format: a record id and 256 bits of secret), shown once in
//! the answer of `POST /api/keys` or of a rotation and stored only as a hash. Its record
//! belongs to the caller (`owner` = the `user_…` id), carries the owner's role at creation
//! (so the `api` policy's tier applies to requests made with it) and an allowlist of CIDRs.
//! Clients see the record id as `apikey_<22 base64url>`; a path id that is not exactly that
//! is a 400, another account's or an unknown one a 404 (the same bytes).

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ipnet::IpNet;
use serde::Deserialize;
use serde_json::{Value, json};
use tower_shield::Principal;
use tower_shield::StoreError;
use tower_shield::api_key::{
    ApiKey, ApiKeyIdentity, ApiKeyRecord, ApiKeyStore, ApiKeys, IpAllowlist, KeyId, NewApiKey,
};
use tower_shield::id::UserId;
use tower_shield::refusal::{FieldError, ProblemType, Refusal};

use crate::app::AppState;
use crate::problem::{JsonBody, MALFORMED_ID, field, invalid};

/// The key manager of the demo, on whichever store `STORE_URL` (or `DATABASE_URL`) chose.
pub(crate) type Keys = ApiKeys<Arc<dyn ApiKeyStore>>;

/// How long a rotated-out key keeps working.
pub(crate) const ROTATION_OVERLAP: Duration = Duration::from_secs(24 * 3600);

/// The prefix of a key id as clients see it.
const ID_PREFIX: &str = "apikey_";

const MAX_NAME: usize = 100;
const MAX_NETWORKS: usize = 32;
const MAX_DAYS: i64 = 365;
const DEFAULT_DAYS: i64 = 90;

fn unavailable(headers: &HeaderMap, extensions: &http::Extensions) -> Response {
    Refusal::new(&ProblemType::UNAVAILABLE)
        .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
        .build(headers, extensions)
}

fn invalid_token(headers: &HeaderMap, extensions: &http::Extensions) -> Response {
    Refusal::new(&ProblemType::INVALID_TOKEN)
        .with_header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"tower-shield-demo\", error=\"invalid_token\""),
        )
        .build(headers, extensions)
}

/// The caller: the `Principal` the JWT layer verified (these routes take bearer tokens only).
fn caller(extensions: &http::Extensions) -> Option<UserId> {
    // Defence in depth: a request a key authenticated never manages keys.
    if extensions.get::<ApiKeyIdentity>().is_some() {
        return None;
    }
    extensions.get::<Principal>()?.subject.parse().ok()
}

/// A key id as clients see it.
pub(crate) fn public_id(id: &KeyId) -> String {
    format!("{ID_PREFIX}{id}")
}

/// `apikey_` + exactly the 22 base64url characters of a `KeyId` (strict: one spelling).
fn parse_id(text: &str) -> Option<KeyId> {
    text.strip_prefix(ID_PREFIX)?.parse().ok()
}

/// Unix seconds as RFC 3339 UTC (`2025-01-31T12:00:00Z`).
pub(crate) fn rfc3339(secs: u64) -> String {
    // Howard Hinnant's civil_from_days.
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn networks(record: &ApiKeyRecord) -> Vec<String> {
    match &record.allowed {
        IpAllowlist::Networks(nets) => nets.iter().map(ToString::to_string).collect(),
        // The demo never makes a key usable from anywhere.
        _ => Vec::new(),
    }
}

/// The answer of a create or a rotation: the record and, once, the key.
fn created(key: &ApiKey, record: &ApiKeyRecord) -> Response {
    let body = json!({
        "id": public_id(&record.id),
        "key": key.expose(),
        "name": record.name,
        "allowed_ips": networks(record),
        "created_at": rfc3339(record.created_at),
        "expires_at": record.expires_at.map(rfc3339),
    });
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    // The key is in this body: no cache anywhere may keep it.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A record as `GET /api/keys` lists it: never the key or its hash.
fn listed(record: &ApiKeyRecord) -> Value {
    json!({
        "id": public_id(&record.id),
        "name": record.name,
        "allowed_ips": networks(record),
        "created_at": rfc3339(record.created_at),
        "expires_at": record.expires_at.map(rfc3339),
        "last_used_at": record.last_used_at.map(rfc3339),
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewKey {
    name: String,
    allowed_ips: Vec<String>,
    #[serde(default)]
    expires_in_days: Option<i64>,
}

/// Checks a new key's fields: its allowlist and lifetime, or every field error at once.
fn validate(body: &NewKey) -> Result<(IpAllowlist, i64), Vec<FieldError>> {
    let mut errors = Vec::new();
    let length = body.name.chars().count();
    if !(1..=MAX_NAME).contains(&length) || body.name.chars().any(char::is_control) {
        errors.push(field(
            "name",
            "must be 1 to 100 characters, without control characters",
        ));
    }
    let mut allowed = None;
    if !(1..=MAX_NETWORKS).contains(&body.allowed_ips.len()) {
        errors.push(field("allowed_ips", "must hold 1 to 32 CIDRs"));
    } else {
        // Each a CIDR (host bits cleared by `IpAllowlist::networks`), or a single address.
        let nets: Result<Vec<IpNet>, _> = body
            .allowed_ips
            .iter()
            .map(|text| {
                text.parse::<IpNet>()
                    .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
            })
            .collect();
        match nets.map(IpAllowlist::networks) {
            Err(_) => errors.push(field("allowed_ips", "each entry must be a CIDR")),
            Ok(Err(_)) => errors.push(field(
                "allowed_ips",
                "0.0.0.0/0, ::/0 and lists as wide are refused: name the networks the key is used from",
            )),
            Ok(Ok(list)) => allowed = Some(list),
        }
    }
    let days = body.expires_in_days.unwrap_or(DEFAULT_DAYS);
    if !(1..=MAX_DAYS).contains(&days) {
        errors.push(field("expires_in_days", "must be 1 to 365"));
    }
    match allowed {
        Some(allowed) if errors.is_empty() => Ok((allowed, days)),
        _ => Err(errors),
    }
}

/// `POST /api/keys`.
pub(crate) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: http::Extensions,
    JsonBody(body): JsonBody<NewKey>,
) -> Response {
    let Some(owner) = caller(&extensions) else {
        return invalid_token(&headers, &extensions);
    };
    let (allowed, days) = match validate(&body) {
        Ok(valid) => valid,
        Err(errors) => return invalid(errors, &headers, &extensions),
    };
    // The owner's role as stored now (the token's may be older), for the `api` tier.
    let role = match state.store.user(owner).await {
        Ok(Some(user)) => user.role,
        Ok(None) => return invalid_token(&headers, &extensions),
        Err(_) => return unavailable(&headers, &extensions),
    };
    let new = NewApiKey::new(owner.to_string(), body.name, allowed)
        .role(role)
        .expires_in(Duration::from_secs(days.unsigned_abs() * 86_400));
    match state.api_keys.create(new).await {
        Ok((key, record)) => created(&key, &record),
        Err(_) => unavailable(&headers, &extensions),
    }
}

/// `GET /api/keys`: the caller's live keys (revoked ones are gone), by creation time.
pub(crate) async fn list(State(state): State<AppState>, request: Request) -> Response {
    let Some(owner) = caller(request.extensions()) else {
        return invalid_token(request.headers(), request.extensions());
    };
    match state.api_keys.store().list(&owner.to_string()).await {
        Ok(records) => Json(
            records
                .iter()
                .filter(|record| !record.revoked)
                .map(|record| listed(record))
                .collect::<Vec<_>>(),
        )
        .into_response(),
        Err(_) => unavailable(request.headers(), request.extensions()),
    }
}

/// What a path id names for the caller: the id of one of their live keys, or the refusal.
async fn owned(
    state: &AppState,
    id: Result<Path<String>, PathRejection>,
    headers: &HeaderMap,
    extensions: &http::Extensions,
) -> Result<KeyId, Response> {
    // A path that does not even decode (e.g. `%FF`) is as malformed as a bad id.
    let Some(id) = id.ok().and_then(|Path(id)| parse_id(&id)) else {
        return Err(Refusal::new(&MALFORMED_ID).build(headers, extensions));
    };
    let Some(owner) = caller(extensions) else {
        return Err(invalid_token(headers, extensions));
    };
    match state.api_keys.store().get(&id).await {
        // Another account's key is not found, exactly like a missing or revoked one.
        Ok(Some(record)) if !record.revoked && record.owner == owner.to_string() => Ok(id),
        Ok(_) => Err(Refusal::new(&ProblemType::NOT_FOUND).build(headers, extensions)),
        Err(_) => Err(unavailable(headers, extensions)),
    }
}

/// `POST /api/keys/{id}/rotate`: a new key; the old one keeps working for 24 hours.
pub(crate) async fn rotate(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    request: Request,
) -> Response {
    let (headers, extensions) = (request.headers(), request.extensions());
    let id = match owned(&state, id, headers, extensions).await {
        Ok(id) => id,
        Err(refusal) => return refusal,
    };
    match state.api_keys.rotate(&id, ROTATION_OVERLAP).await {
        Ok(Some((key, record))) => created(&key, &record),
        // Revoked meanwhile.
        Ok(None) => Refusal::new(&ProblemType::NOT_FOUND).build(headers, extensions),
        Err(_) => unavailable(headers, extensions),
    }
}

/// `DELETE /api/keys/{id}`: refused from the next request on, in every process.
pub(crate) async fn revoke(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    request: Request,
) -> Response {
    let (headers, extensions) = (request.headers(), request.extensions());
    let id = match owned(&state, id, headers, extensions).await {
        Ok(id) => id,
        Err(refusal) => return refusal,
    };
    match state.api_keys.revoke(&id).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => Refusal::new(&ProblemType::NOT_FOUND).build(headers, extensions),
        Err(_) => unavailable(headers, extensions),
    }
}

/// `GET /api/service/ping`: which key called, and whom it acts as.
pub(crate) async fn ping(request: Request) -> Response {
    let extensions = request.extensions();
    let (Some(identity), Some(principal)) = (
        extensions.get::<ApiKeyIdentity>(),
        extensions.get::<Principal>(),
    ) else {
        // Only reachable behind the (required) key layer.
        return Refusal::new(&ProblemType::UNAUTHORIZED).for_request(&request);
    };
    Json(json!({
        "key_id": public_id(&identity.key_id),
        "owner": principal.subject.as_ref(),
    }))
    .into_response()
}

/// Revokes every key of `owner` (their sessions are being ended: a key must not outlive
/// them).
pub(crate) async fn revoke_all(store: &dyn ApiKeyStore, owner: &str) -> Result<(), StoreError> {
    for record in store.list(owner).await? {
        if !record.revoked {
            store.revoke(&record.id).await?;
        }
    }
    Ok(())
}

/// Gives every live key of `owner` the owner's new role (a key acts as its owner: it must
/// not keep a role the owner lost, nor its rate-limit tier).
pub(crate) async fn follow_role(
    store: &dyn ApiKeyStore,
    owner: &str,
    role: &str,
) -> Result<(), StoreError> {
    for record in store.list(owner).await? {
        if !record.revoked && record.role.as_deref() != Some(role) {
            let mut record = ApiKeyRecord::clone(&record);
            record.role = Some(role.to_owned());
            store.put(&record).await?;
        }
    }
    Ok(())
}
