//! JWT bearer authentication that resists the known JWT attacks, with revocation and a
//! verified-token cache: what a resource server needs to *verify* tokens. Issuing them,
//! refresh-token rotation and the refresh cookie are in [`tokens`](crate::tokens) (feature
//! `tokens`).
//!
//! - [`keys`]: [`KeySet`] / [`Key`], keys by `kid`, each bound to exactly one algorithm (RS,
//!   PS, ES, EdDSA, HS); loaded from PEM, DER, JWK or JWKS, or generated; published with
//!   [`KeySet::to_jwks`]. [`KeyRing`] shares them with an issuer and rotates them at runtime.
//! - [`JwtAuthLayer`]: reads `Authorization: Bearer` (or a cookie), refuses every malformed,
//!   forged, expired, mistyped or revoked token with a 401 problem+json before the handler
//!   runs, and leaves [`Verified<C>`], [`Principal`](crate::Principal) and [`Scopes`] in the
//!   request extensions.
//! - [`RequireRoleLayer`] / [`RequireScopeLayer`]: 403 `insufficient_scope` guards.
//! - [`revocation`]: [`RevocationStore`], deny a `jti`, a session, or a subject's tokens
//!   issued before a time; [`MemoryRevocationStore`] here, a Redis one under the `redis`
//!   feature.
//!
//! # What is checked, in order
//!
//! Cheap refusals come first, so a forged token costs microseconds, not a signature check:
//! length (8 KiB default) → charset and three segments → header (strict base64url, JSON, no
//! duplicate member, `alg` exactly one we support, never `none`; `crit`, `jwk`, `jku`, `x5u`,
//! `x5c` refused) → key by `kid`, whose bound algorithm must equal `alg` (no `kid`: only when
//! exactly one key has that algorithm; a retired key only within its grace) → `typ`
//! (`at+jwt`, RFC 9068, so a refresh or ID token is refused) → claims (`sub` and `exp`
//! required, and for `at+jwt` tokens every claim RFC 9068 requires: `iss`, `aud`, `iat`,
//! `jti`; `exp`, `nbf`, `iat` against the injected clock with 30 s leeway; `iss`/`aud`
//! values when configured) → the signature (`jsonwebtoken`, aws-lc-rs) → the claims type `C` →
//! the revocation store. With [`JwtAuthLayerBuilder::cache`], a token seen before skips straight
//! to the time, key and revocation checks.
//!
//! # Example
//!
//! ```
//! use std::convert::Infallible;
//! use http::{Request, Response, StatusCode, header};
//! use jsonwebtoken::{Algorithm, Header, encode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//! use tower_shield::jwt::{JwtAuthLayer, Key, KeySet, MemoryRevocationStore, RequireRoleLayer};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let keys = KeySet::new().with(Key::generate(Algorithm::EdDSA)?)?;
//! let signing = keys.signing_key().unwrap();
//! let mut header = Header::new(signing.alg);
//! header.kid = Some(signing.kid.to_owned());
//! header.typ = Some("at+jwt".to_owned());
//! let now = jsonwebtoken::get_current_timestamp();
//! let claims = serde_json::json!({
//!     "iss": "https://issuer", "aud": "api", "sub": "user_1", "role": "user",
//!     "iat": now, "exp": now + 300, "jti": "tok_1",
//! });
//! let token = encode(&header, &claims, signing.key)?;
//!
//! let admin_only = ServiceBuilder::new()
//!     .layer(
//!         JwtAuthLayer::builder(keys)
//!             .audience("api")
//!             .revocation(MemoryRevocationStore::new())
//!             .cache(10_000)
//!             .build()?,
//!     )
//!     .layer(RequireRoleLayer::any_of(["admin"]))
//!     .service(service_fn(|_: Request<String>| async {
//!         Ok::<_, Infallible>(Response::new(String::from("stats")))
//!     }));
//!
//! let request = Request::get("/api/admin/stats")
//!     .header(header::AUTHORIZATION, format!("Bearer {token}"))
//!     .body(String::new())?;
//! let response = admin_only.oneshot(request).await?;
//! assert_eq!(response.status(), StatusCode::FORBIDDEN);
//! assert_eq!(
//!     response.headers()[header::WWW_AUTHENTICATE],
//!     "Bearer realm=\"api\", error=\"insufficient_scope\""
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

mod b64;
mod cache;
mod claims;
#[cfg(feature = "axum")]
mod extract;
pub mod guard;
pub mod keys;
mod layer;
pub mod revocation;
mod service;
mod validation;

/// The `jsonwebtoken` crate whose signature code checks every token, re-exported for the
/// types [`Key`] takes and gives (`Jwk`, `JwkSet`, `DecodingKey`, `EncodingKey`), so they
/// match whatever version your own code depends on.
pub use jsonwebtoken;
pub use jsonwebtoken::Algorithm;

pub use claims::{Audience, Claims, Scopes, Verified};
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use extract::AuthRejection;
pub use guard::{GuardService, RequireRoleLayer, RequireScopeLayer};
pub use keys::{Key, KeyRing, KeySet};
pub use layer::{
    DEFAULT_LEEWAY, DEFAULT_MAX_TOKEN_LEN, JwtAuthLayer, JwtAuthLayerBuilder, TokenSource,
};
pub use revocation::{MemoryRevocationStore, RevocationStore};
pub use service::{JwtAuthService, ResponseFuture};
pub use validation::TokenType;

#[cfg(feature = "api-key")]
pub(crate) use b64::decode_url_small as b64_decode_url_small;
#[cfg(any(feature = "tokens", feature = "api-key"))]
pub(crate) use b64::{decode_url as b64_decode_url, encode_url as b64_encode_url};
#[cfg(feature = "tokens")]
pub(crate) use layer::MAX_LEEWAY;
#[cfg(feature = "api-key")]
pub(crate) use layer::{check_realm, scheme_len_of};

/// Whether two byte strings are equal, in a time that depends only on their lengths (aws-lc's
/// `CRYPTO_memcmp`: about 35 ns for a 700-byte token, where `subtle`'s byte-by-byte
/// comparison takes over a microsecond).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}
