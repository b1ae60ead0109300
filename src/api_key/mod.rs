//! Server-to-server API keys (feature `api-key`): [`ApiKeyLayer`] authenticates requests by
//! key, with a per-key IP allowlist, rotation with an overlap and instant revocation;
//! [`ApiKeys`] makes, rotates and revokes keys in an [`ApiKeyStore`] (memory here, Redis with
//! the `redis` feature).
//!
//! - **The key** is `api_` + a 22-character id + `_` + 43 characters of secret (256 bits
//!   from the operating system's random source, base64url): recognisable by people and
//!   secret scanners, shown once when made ([`ApiKey::expose`]), stored only as the SHA-256
//!   of its secret (right for a high-entropy secret; compared in constant time). The id
//!   finds the record without a scan; a value that cannot be a key is refused without
//!   asking the store.
//! - **A record** ([`ApiKeyRecord`]) holds the owner (the subject the key acts as), a name,
//!   a role and scopes (so `RequireRoleLayer`, `RequireScopeLayer` and per-user rate limits
//!   work as with bearer tokens), an [`IpAllowlist`] (empty: usable nowhere; anywhere only
//!   with [`IpAllowlist::Any`]), creation, expiry and last-use times, and its state.
//! - **Never alone**: a valid key from an address outside its list is refused (403, the
//!   `apikey.ip_denied` security event), whatever the key. The address is the client's own
//!   (from `client_ip`, so trusted proxies apply), never a /56 group.
//! - **Rotation** ([`ApiKeys::rotate`]) gives the record a new secret while the old one
//!   keeps working until the end of a chosen overlap; **revocation** ([`ApiKeys::revoke`])
//!   takes effect on the next request in every process: the layer asks the store on every
//!   request (one `GET` with Redis) and caches nothing.

mod key;
mod layer;
#[cfg(feature = "redis")]
mod redis;
mod store;

use std::sync::Arc;
use std::time::Duration;

pub use key::{API_KEY_LEN, API_KEY_PREFIX, ApiKey, KeyHash, KeyId, KeyIdError};
pub use layer::{
    ApiKeyIdentity, ApiKeyLayer, ApiKeyLayerBuilder, ApiKeyService, DEFAULT_API_KEY_HEADER,
    ResponseFuture,
};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis::RedisApiKeyStore;
pub use store::{ApiKeyRecord, ApiKeyStore, DEFAULT_MAX_API_KEYS, IpAllowlist, MemoryApiKeyStore};

use crate::clock::{Clock, SystemClock};
use crate::error::{ConfigError, StoreError};

/// What a new key is for: its owner, name and allowlist, and optionally a role, scopes and
/// an expiry.
#[derive(Debug, Clone)]
#[must_use]
pub struct NewApiKey {
    owner: String,
    name: String,
    allowed: IpAllowlist,
    role: Option<String>,
    scopes: Vec<String>,
    expires_in: Option<Duration>,
}

impl NewApiKey {
    /// A key acting as `owner`, named `name`, usable from `allowed`.
    pub fn new(owner: impl Into<String>, name: impl Into<String>, allowed: IpAllowlist) -> Self {
        Self {
            owner: owner.into(),
            name: name.into(),
            allowed,
            role: None,
            scopes: Vec::new(),
            expires_in: None,
        }
    }

    /// The role the key grants.
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.role = Some(role.into());
        self
    }

    /// The scopes the key grants.
    pub fn scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Refused after this long.
    pub fn expires_in(mut self, lifetime: Duration) -> Self {
        self.expires_in = Some(lifetime);
        self
    }
}

/// Makes, rotates and revokes keys in a store.
#[derive(Clone)]
pub struct ApiKeys<St> {
    store: St,
    clock: Arc<dyn Clock>,
}

impl<St: std::fmt::Debug> std::fmt::Debug for ApiKeys<St> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

/// Why [`ApiKeys::create`] made no key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateKeyError {
    /// The allowlist holds every address: say [`IpAllowlist::Any`] for that, on purpose.
    #[error(transparent)]
    Allowlist(#[from] ConfigError),
    /// The store (or the system's random source) failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl<St: ApiKeyStore> ApiKeys<St> {
    /// Keys in `store`, on the system clock.
    pub fn new(store: St) -> Self {
        Self::with_clock(store, SystemClock)
    }

    /// Keys in `store`, on `clock` (share it with the layer).
    pub fn with_clock(store: St, clock: impl Clock) -> Self {
        Self {
            store,
            clock: Arc::new(clock),
        }
    }

    /// The store.
    pub fn store(&self) -> &St {
        &self.store
    }

    /// Makes a key: the key itself (to show its holder once) and its record. Its
    /// allowlist is stored as [`IpAllowlist::networks`] gives it back; a list that holds
    /// every address is refused with [`CreateKeyError::Allowlist`].
    pub async fn create(&self, new: NewApiKey) -> Result<(ApiKey, ApiKeyRecord), CreateKeyError> {
        let allowed = new.allowed.checked()?;
        let id = KeyId::generate()?;
        let (key, hash) = ApiKey::generate(id)?;
        let now = self.clock.unix_secs();
        let record = ApiKeyRecord {
            id,
            owner: new.owner,
            name: new.name,
            role: new.role,
            scopes: new.scopes,
            allowed,
            created_at: now,
            expires_at: new
                .expires_in
                .map(|lifetime| now.saturating_add(lifetime.as_secs())),
            last_used_at: None,
            revoked: false,
            hash,
            previous: None,
            identity: store::IdentityCell::default(),
        };
        self.store.put(&record).await?;
        Ok((key, record))
    }

    /// Gives the record `id` a new secret; the current one keeps working for `overlap`
    /// (a secret rotated out earlier stops at once). `None` when there is no such live
    /// record. Two rotations of one key at the same moment may lose one of them (the last
    /// write wins); revoke and rotate again if that matters.
    pub async fn rotate(
        &self,
        id: &KeyId,
        overlap: Duration,
    ) -> Result<Option<(ApiKey, ApiKeyRecord)>, StoreError> {
        let Some(current) = self.store.get(id).await? else {
            return Ok(None);
        };
        if current.revoked {
            return Ok(None);
        }
        let (key, hash) = ApiKey::generate(*id)?;
        let now = self.clock.unix_secs();
        let mut record = ApiKeyRecord::clone(&current);
        record.previous = Some((record.hash, now.saturating_add(overlap.as_secs())));
        record.hash = hash;
        self.store.put(&record).await?;
        Ok(Some((key, record)))
    }

    /// Revokes the record `id`: refused on the next request, in every process sharing the
    /// store. `false` when there is none.
    pub async fn revoke(&self, id: &KeyId) -> Result<bool, StoreError> {
        self.store.revoke(id).await
    }
}
