//! `/api/*`: the caller (`/api/me`), their items, and the admin routes. Every handler here
//! runs after `JwtAuthLayer`, so the caller's `Principal` is in the request: from a verified
//! bearer token, or (`/api/me` and `/api/items*`) from an API key acting as its owner; the
//! admin routes (bearer only) also run after `RequireRoleLayer::any_of(["admin"])`.

use axum::Json;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tower_shield::Principal;
use tower_shield::id::{ItemId, UserId};
use tower_shield::refusal::{ProblemType, Refusal};

use crate::app::AppState;
use crate::problem::{JsonBody, MALFORMED_ID, field, invalid};

/// The roles the demo knows.
pub(crate) const ROLES: [&str; 4] = ["guest", "user", "premium", "admin"];

fn unavailable(headers: &HeaderMap, extensions: &http::Extensions) -> Response {
    Refusal::new(&ProblemType::UNAVAILABLE)
        .with_header(header::RETRY_AFTER, HeaderValue::from_static("1"))
        .build(headers, extensions)
}

/// The caller's id: the token's `sub` (which the issuer always sets to a `user_…` id), or
/// the owner of the API key.
fn caller(principal: &Principal) -> Option<UserId> {
    principal.subject.parse().ok()
}

fn invalid_token(headers: &HeaderMap, extensions: &http::Extensions) -> Response {
    Refusal::new(&ProblemType::INVALID_TOKEN)
        .with_header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"tower-shield-demo\", error=\"invalid_token\""),
        )
        .build(headers, extensions)
}

/// The body of `GET /api/me`, serialised straight from borrowed fields.
#[derive(Serialize)]
struct Me<'a> {
    sub: &'a str,
    role: Option<&'a str>,
    email: &'a str,
}

/// `GET /api/me`.
pub(crate) async fn me(State(state): State<AppState>, request: Request) -> Response {
    let Some((principal, id)) = caller_of(&request) else {
        return invalid_token(request.headers(), request.extensions());
    };
    match state.store.email(id).await {
        Ok(Some(email)) => Json(Me {
            sub: &principal.subject,
            role: principal.role.as_deref(),
            email: &email,
        })
        .into_response(),
        // The account is gone: the token no longer names anyone.
        Ok(None) => invalid_token(request.headers(), request.extensions()),
        Err(_) => unavailable(request.headers(), request.extensions()),
    }
}

/// The caller's `Principal` and id, read from the request without cloning its headers or
/// extensions.
fn caller_of(request: &Request) -> Option<(&Principal, UserId)> {
    let principal = request.extensions().get::<Principal>()?;
    Some((principal, caller(principal)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewItem {
    name: String,
}

/// `POST /api/items`.
pub(crate) async fn create_item(
    State(state): State<AppState>,
    headers: HeaderMap,
    extensions: http::Extensions,
    JsonBody(body): JsonBody<NewItem>,
) -> Response {
    let Some(owner) = extensions.get::<Principal>().and_then(caller) else {
        return invalid_token(&headers, &extensions);
    };
    let length = body.name.chars().count();
    if !(1..=200).contains(&length) || body.name.chars().any(char::is_control) {
        return invalid(
            vec![field(
                "name",
                "must be 1 to 200 characters, without control characters",
            )],
            &headers,
            &extensions,
        );
    }
    match state.store.create_item(owner, &body.name).await {
        Ok(item) => (StatusCode::CREATED, Json(item)).into_response(),
        Err(_) => unavailable(&headers, &extensions),
    }
}

/// `GET /api/items`: the caller's own items.
pub(crate) async fn list_items(State(state): State<AppState>, request: Request) -> Response {
    let Some((_, owner)) = caller_of(&request) else {
        return invalid_token(request.headers(), request.extensions());
    };
    match state.store.items(owner).await {
        Ok(items) => Json(items).into_response(),
        Err(_) => unavailable(request.headers(), request.extensions()),
    }
}

/// `GET /api/items/{id}`: found only among the caller's items.
pub(crate) async fn get_item(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    request: Request,
) -> Response {
    // A path that does not even decode (e.g. `%FF`) is as malformed as a bad id.
    let Some(id) = id.ok().and_then(|Path(id)| id.parse::<ItemId>().ok()) else {
        return Refusal::new(&MALFORMED_ID).for_request(&request);
    };
    let Some((_, owner)) = caller_of(&request) else {
        return invalid_token(request.headers(), request.extensions());
    };
    // Ownership is part of the lookup: another user's item is not found, exactly like a
    // missing one.
    match state.store.item(owner, id).await {
        Ok(Some(item)) => Json(item).into_response(),
        Ok(None) => Refusal::new(&ProblemType::NOT_FOUND).for_request(&request),
        Err(_) => unavailable(request.headers(), request.extensions()),
    }
}

/// `GET /api/admin/stats`.
pub(crate) async fn stats(State(state): State<AppState>, request: Request) -> Response {
    match state.store.stats().await {
        Ok((users, items)) => Json(json!({ "users": users, "items": items })).into_response(),
        Err(_) => unavailable(request.headers(), request.extensions()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoleChange {
    role: String,
}

/// `PUT /api/admin/users/{id}/role`: effective from the user's next refresh.
pub(crate) async fn set_role(
    State(state): State<AppState>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    extensions: http::Extensions,
    JsonBody(body): JsonBody<RoleChange>,
) -> Response {
    let Some(id) = id.ok().and_then(|Path(id)| id.parse::<UserId>().ok()) else {
        return Refusal::new(&MALFORMED_ID).build(&headers, &extensions);
    };
    if !ROLES.contains(&body.role.as_str()) {
        return invalid(
            vec![field("role", "must be guest, user, premium or admin")],
            &headers,
            &extensions,
        );
    }
    match state.store.set_role(id, &body.role).await {
        Ok(Some(user)) => {
            // The user's keys act with the role the user has now.
            let keys = state.api_keys.store().as_ref();
            if crate::api_keys::follow_role(keys, &user.id.to_string(), &user.role)
                .await
                .is_err()
            {
                return unavailable(&headers, &extensions);
            }
            Json(json!({ "id": user.id, "email": user.email, "role": user.role })).into_response()
        }
        Ok(None) => Refusal::new(&ProblemType::NOT_FOUND).build(&headers, &extensions),
        Err(_) => unavailable(&headers, &extensions),
    }
}
