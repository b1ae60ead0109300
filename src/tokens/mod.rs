//! The token lifecycle of a service that issues its own tokens (feature `tokens`): access
//! tokens signed with the keys a [`JwtAuthLayer`](crate::jwt::JwtAuthLayer) verifies with,
//! opaque rotating refresh tokens with reuse detection, and the refresh cookie.
//!
//! A resource server that only verifies tokens (from its own issuer or an identity
//! provider) needs none of this: [`jwt`](crate::jwt) is enough, and `--no-default-features
//! --features jwt` builds only that.
//!
//! - [`TokenIssuer`]: RFC 9068 access tokens (`typ: at+jwt`, `kid`, `iss`, `aud`, `sub`,
//!   `role`, `iat`, `nbf`, `exp`, `jti`) signed with the active key of a
//!   [`KeyRing`](crate::jwt::KeyRing).
//! - [`RefreshTokens`]: sign-in ([`issue_pair`](RefreshTokens::issue_pair)), rotation with
//!   reuse detection and a grace window for concurrent refreshes, logout and "log out
//!   everywhere", with the revocation store the verifying layer reads, so a session's access
//!   tokens die with it.
//! - [`store`]: where refresh-token families live ([`RefreshStore`](store::RefreshStore):
//!   [`MemoryRefreshStore`](store::MemoryRefreshStore), and `RedisRefreshStore` with the
//!   `redis` feature).
//! - [`RefreshCookie`]: the `HttpOnly; Secure; SameSite=Strict` cookie that carries the
//!   refresh token.

pub mod cookie;
pub mod issuer;
#[cfg(feature = "redis")]
mod redis;
pub mod refresh;
pub mod store;

pub use cookie::RefreshCookie;
pub use issuer::{AccessToken, IssueError, TokenIssuer, TokenIssuerBuilder};
pub use refresh::{RefreshError, RefreshToken, RefreshTokens, RefreshTokensBuilder, TokenPair};
