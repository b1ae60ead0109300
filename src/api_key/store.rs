//! Key records and where they live: the [`ApiKeyStore`] trait and [`MemoryApiKeyStore`].

use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use dashmap::DashMap;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::key::{KeyHash, KeyId};
use super::layer::ApiKeyIdentity;
use crate::Principal;
use crate::client_ip::{canonical_ip, canonical_net, covers_everything};
use crate::error::{ConfigError, StoreError};
use crate::jwt::Scopes;
use crate::jwt::revocation::StoreFuture;

/// The addresses a key may be used from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum IpAllowlist {
    /// Anywhere. Only on purpose: a key alone is not proof of who the caller is.
    Any,
    /// These networks (IPv4-mapped IPv6 addresses and networks count as IPv4). Empty:
    /// nowhere.
    Networks(Vec<IpNet>),
}

impl IpAllowlist {
    /// These networks, checked: each is cut to its prefix, IPv4-mapped ones become IPv4 and
    /// repeats are dropped. A list that together holds every address of a family
    /// (`0.0.0.0/0`, or `0.0.0.0/1` with `128.0.0.0/1`) is refused: say [`Any`](Self::Any)
    /// for that, on purpose.
    ///
    /// ```
    /// use tower_shield::api_key::IpAllowlist;
    ///
    /// let list = IpAllowlist::networks(["10.0.0.0/8".parse()?, "::ffff:192.0.2.7/128".parse()?])?;
    /// assert!(list.allows("192.0.2.7".parse()?));
    /// assert!(IpAllowlist::networks(["0.0.0.0/1".parse()?, "128.0.0.0/1".parse()?]).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn networks<I: IntoIterator<Item = IpNet>>(nets: I) -> Result<Self, ConfigError> {
        let mut list: Vec<IpNet> = Vec::new();
        for net in nets {
            let net = canonical_net(net.trunc());
            if !list.contains(&net) {
                list.push(net);
            }
        }
        if covers_everything(&list) {
            return Err(ConfigError::dangerous(
                "allowed",
                "the networks together hold every address: use IpAllowlist::Any on purpose",
            ));
        }
        Ok(Self::Networks(list))
    }

    /// The list [`networks`](Self::networks) would make of this one; `Any` stays `Any`.
    pub(crate) fn checked(self) -> Result<Self, ConfigError> {
        match self {
            Self::Networks(nets) => Self::networks(nets),
            any => Ok(any),
        }
    }

    /// Whether `ip` may use the key. Compared with the client's own address, never with the
    /// /56 group rate limits use: a group would widen the list.
    pub fn allows(&self, ip: IpAddr) -> bool {
        match self {
            Self::Any => true,
            Self::Networks(nets) => {
                let ip = canonical_ip(ip);
                nets.iter().any(|net| canonical_net(*net).contains(&ip))
            }
        }
    }
}

/// One key's record: who owns it, what it may do, from where, until when. Only the hash of
/// its secret is kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ApiKeyRecord {
    /// The record's id (the middle part of the key).
    pub id: KeyId,
    /// The subject the key acts as (the `Principal` it inserts).
    pub owner: String,
    /// A name for people (`billing-export`).
    pub name: String,
    /// The role the key grants (for `RequireRoleLayer` and rate-limit tiers).
    pub role: Option<String>,
    /// The scopes the key grants (for `RequireScopeLayer`).
    pub scopes: Vec<String>,
    /// The addresses it may be used from.
    pub allowed: IpAllowlist,
    /// Created (unix seconds).
    pub created_at: u64,
    /// Refused from then on (unix seconds), if set.
    pub expires_at: Option<u64>,
    /// Last seen in use (unix seconds; updated at most once a minute per process).
    pub last_used_at: Option<u64>,
    /// Revoked: refused on the next request.
    pub revoked: bool,
    pub(crate) hash: KeyHash,
    /// After a rotation: the previous secret's hash and until when it still works.
    pub(crate) previous: Option<(KeyHash, u64)>,
    /// What an accepted request gets, made on first use of this very record.
    #[serde(skip)]
    pub(crate) identity: IdentityCell,
}

/// The extensions a record grants (`Principal`, `Scopes`, `ApiKeyIdentity`), built once per
/// record a store hands out instead of once per request. Never copied: a clone of a record
/// (the start of every change to it, such as a new role) starts empty, so a changed record
/// never grants what the old one did.
#[derive(Default)]
pub(crate) struct IdentityCell(OnceLock<Granted>);

/// What [`IdentityCell`] holds.
pub(crate) struct Granted {
    pub(crate) principal: Principal,
    pub(crate) scopes: Scopes,
    pub(crate) identity: ApiKeyIdentity,
}

impl Clone for IdentityCell {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl fmt::Debug for IdentityCell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdentityCell")
    }
}

impl ApiKeyRecord {
    /// Whether `presented` is this key's secret at `now`: the current one, or the previous
    /// one within its rotation overlap. Both are compared, so the time does not tell which.
    pub(crate) fn secret_matches(&self, presented: &KeyHash, now: u64) -> bool {
        let current = self.hash.matches(presented);
        let previous = self
            .previous
            .as_ref()
            .is_some_and(|(hash, until)| hash.matches(presented) & (now < *until));
        current | previous
    }

    /// What an accepted request carries, built on first use.
    pub(crate) fn granted(&self) -> &Granted {
        self.identity.0.get_or_init(|| Granted {
            principal: Principal::new(self.owner.as_str(), self.role.as_deref().map(Arc::from)),
            scopes: Scopes::new(self.scopes.iter().map(|s| s.as_str().into()).collect()),
            identity: ApiKeyIdentity {
                key_id: self.id,
                name: Arc::from(self.name.as_str()),
            },
        })
    }

    /// Until when a rotated-out secret keeps working, if one does.
    pub fn previous_valid_until(&self) -> Option<u64> {
        self.previous.as_ref().map(|(_, until)| *until)
    }
}

/// Where key records live. Every operation is one atomic step of the store.
///
/// The layer asks [`get`](Self::get) on every request (no cache: a revocation in any process
/// is refused on the next request everywhere); [`touch`](Self::touch) is called at most once
/// a minute per key and process.
pub trait ApiKeyStore: Send + Sync + fmt::Debug + 'static {
    /// The record of `id`, if any.
    fn get(&self, id: &KeyId) -> StoreFuture<Option<Arc<ApiKeyRecord>>>;
    /// Creates or replaces a record, never clearing a revocation already stored (a rotation
    /// racing a revocation must not undo it).
    fn put(&self, record: &ApiKeyRecord) -> StoreFuture<()>;
    /// Marks a record revoked; `false` when there is none.
    fn revoke(&self, id: &KeyId) -> StoreFuture<bool>;
    /// Records a use at `at` (never moving `last_used_at` back).
    fn touch(&self, id: &KeyId, at: u64) -> StoreFuture<()>;
    /// Every record of `owner`.
    fn list(&self, owner: &str) -> StoreFuture<Vec<Arc<ApiKeyRecord>>>;
}

impl<St: ApiKeyStore + ?Sized> ApiKeyStore for Arc<St> {
    fn get(&self, id: &KeyId) -> StoreFuture<Option<Arc<ApiKeyRecord>>> {
        (**self).get(id)
    }
    fn put(&self, record: &ApiKeyRecord) -> StoreFuture<()> {
        (**self).put(record)
    }
    fn revoke(&self, id: &KeyId) -> StoreFuture<bool> {
        (**self).revoke(id)
    }
    fn touch(&self, id: &KeyId, at: u64) -> StoreFuture<()> {
        (**self).touch(id, at)
    }
    fn list(&self, owner: &str) -> StoreFuture<Vec<Arc<ApiKeyRecord>>> {
        (**self).list(owner)
    }
}

/// The most records a [`MemoryApiKeyStore`] keeps by default.
pub const DEFAULT_MAX_API_KEYS: usize = 100_000;

/// Key records in this process (tests, single-instance services). Bounded: a new record past
/// the capacity is refused with [`StoreError::Unavailable`].
#[derive(Clone)]
pub struct MemoryApiKeyStore {
    records: Arc<DashMap<KeyId, Arc<ApiKeyRecord>>>,
    capacity: usize,
}

impl fmt::Debug for MemoryApiKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryApiKeyStore")
            .field("records", &self.records.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl Default for MemoryApiKeyStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryApiKeyStore {
    /// A store of up to [`DEFAULT_MAX_API_KEYS`] records.
    pub fn new() -> Self {
        Self::with_capacity(DEFAULT_MAX_API_KEYS)
    }

    /// A store of up to `capacity` records (at least 1).
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            records: Arc::new(DashMap::new()),
            capacity: capacity.max(1),
        }
    }

    fn update(&self, id: &KeyId, change: impl FnOnce(&mut ApiKeyRecord)) -> bool {
        match self.records.get_mut(id) {
            Some(mut entry) => {
                change(Arc::make_mut(&mut entry));
                true
            }
            None => false,
        }
    }
}

impl ApiKeyStore for MemoryApiKeyStore {
    fn get(&self, id: &KeyId) -> StoreFuture<Option<Arc<ApiKeyRecord>>> {
        StoreFuture::ready(Ok(self.records.get(id).map(|entry| Arc::clone(&entry))))
    }

    fn put(&self, record: &ApiKeyRecord) -> StoreFuture<()> {
        if !self.records.contains_key(&record.id) && self.records.len() >= self.capacity {
            return StoreFuture::ready(Err(StoreError::Unavailable(
                "the in-memory API key store is full".into(),
            )));
        }
        // A revocation is final: a write racing it (a rotation that read the record before)
        // keeps it.
        let mut record = record.clone();
        self.records
            .entry(record.id)
            .and_modify(|existing| {
                record.revoked |= existing.revoked;
                *existing = Arc::new(record.clone());
            })
            .or_insert_with(|| Arc::new(record.clone()));
        StoreFuture::ready(Ok(()))
    }

    fn revoke(&self, id: &KeyId) -> StoreFuture<bool> {
        StoreFuture::ready(Ok(self.update(id, |record| record.revoked = true)))
    }

    fn touch(&self, id: &KeyId, at: u64) -> StoreFuture<()> {
        self.update(id, |record| {
            record.last_used_at = Some(record.last_used_at.map_or(at, |seen| seen.max(at)));
        });
        StoreFuture::ready(Ok(()))
    }

    fn list(&self, owner: &str) -> StoreFuture<Vec<Arc<ApiKeyRecord>>> {
        let mut records: Vec<_> = self
            .records
            .iter()
            .filter(|entry| entry.owner == owner)
            .map(|entry| Arc::clone(&entry))
            .collect();
        records.sort_by_key(|record| record.created_at);
        StoreFuture::ready(Ok(records))
    }
}
