//! Where the demo keeps its accounts and items: per-process memory (`STORE_URL=memory`) or
//! Redis (`STORE_URL=redis://…`, every key under `STORE_PREFIX`, so several processes are one
//! service).
//!
//! Items are stored *under their owner*: the lookup of an item takes the caller's id and the
//! item's id together, so another user's item is simply not found (a 404 identical to a
//! missing one) instead of found and then refused.
//!
//! Redis keys (`P` is the prefix; `{…}` a hash tag, so one user's keys share a Cluster slot):
//! `P{email:<email>}` → the user id (`SET NX`, which makes registration race-free);
//! `P{<user id>}:user` → hash `email`, `password_hash`, `role`; `P{<user id>}:items` → hash
//! item id → name; `P{stats}` → hash `users`, `items`. Every call is bounded by the
//! connection's per-call timeout; a failure is a `StoreError` and the handler answers 503.
//!
//! PostgreSQL (`DATABASE_URL`, see `pg.rs`): tables `users` (a unique index on the normalised
//! email makes registration race-free) and `items` (looked up by owner *and* id), `uuid`
//! ids, parameterized queries only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use redis::cmd;
use sqlx::postgres::PgPool;
use tower_shield::StoreError;
use tower_shield::id::{ItemId, UserId};
use tower_shield::redis::{KeyPrefix, RedisConnection};
use uuid::Uuid;

use crate::pg::call;

/// One account.
#[derive(Clone)]
pub(crate) struct User {
    pub(crate) id: UserId,
    pub(crate) email: String,
    /// The Argon2id PHC string.
    pub(crate) password_hash: String,
    pub(crate) role: String,
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// One item.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Item {
    pub(crate) id: ItemId,
    pub(crate) name: String,
    pub(crate) owner: UserId,
}

/// Accounts and items.
#[derive(Debug, Clone)]
pub(crate) enum Store {
    Memory(Arc<Mutex<Memory>>),
    Redis {
        conn: RedisConnection,
        prefix: KeyPrefix,
    },
    Postgres(PgPool),
}

/// A `users` row.
type UserRow = (Uuid, String, String, String);

fn user_of((id, email, password_hash, role): UserRow) -> User {
    User {
        id: UserId::from_uuid(id),
        email,
        password_hash,
        role,
    }
}

#[derive(Debug, Default)]
pub(crate) struct Memory {
    users: HashMap<UserId, User>,
    emails: HashMap<String, UserId>,
    /// Per owner, in creation order.
    items: HashMap<UserId, Vec<Item>>,
    item_count: u64,
}

impl Store {
    pub(crate) fn memory() -> Self {
        Self::Memory(Arc::default())
    }

    pub(crate) fn redis(conn: RedisConnection, prefix: KeyPrefix) -> Self {
        Self::Redis { conn, prefix }
    }

    fn lock(memory: &Mutex<Memory>) -> std::sync::MutexGuard<'_, Memory> {
        memory.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates an account; `None` when the email is taken.
    pub(crate) async fn create_user(
        &self,
        email: &str,
        password_hash: &str,
        role: &str,
    ) -> Result<Option<User>, StoreError> {
        let user = User {
            id: UserId::new(),
            email: email.to_owned(),
            password_hash: password_hash.to_owned(),
            role: role.to_owned(),
        };
        match self {
            Self::Memory(memory) => {
                let mut memory = Self::lock(memory);
                if memory.emails.contains_key(email) {
                    return Ok(None);
                }
                memory.emails.insert(email.to_owned(), user.id);
                memory.users.insert(user.id, user.clone());
                Ok(Some(user))
            }
            Self::Redis { conn, prefix } => {
                let id = user.id.to_string();
                let claimed: Option<String> = conn
                    .query(
                        cmd("SET")
                            .arg(prefix.tagged(&format!("email:{email}")))
                            .arg(&id)
                            .arg("NX"),
                    )
                    .await?;
                if claimed.is_none() {
                    return Ok(None);
                }
                write_user(conn, prefix, &user).await?;
                let _: i64 = conn
                    .query(
                        cmd("HINCRBY")
                            .arg(prefix.tagged("stats"))
                            .arg("users")
                            .arg(1),
                    )
                    .await?;
                Ok(Some(user))
            }
            Self::Postgres(pool) => {
                // The unique index on the normalised email decides a race.
                let done = call(
                    sqlx::query(
                        "INSERT INTO users (id, email, password_hash, role) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    )
                    .bind(user.id.uuid())
                    .bind(&user.email)
                    .bind(&user.password_hash)
                    .bind(&user.role)
                    .execute(pool),
                )
                .await?;
                Ok((done.rows_affected() == 1).then_some(user))
            }
        }
    }

    /// Writes an account's password hash and role (the seeded admin).
    pub(crate) async fn save_user(&self, user: &User) -> Result<(), StoreError> {
        match self {
            Self::Memory(memory) => {
                Self::lock(memory).users.insert(user.id, user.clone());
            }
            Self::Redis { conn, prefix } => write_user(conn, prefix, user).await?,
            Self::Postgres(pool) => {
                call(
                    sqlx::query("UPDATE users SET password_hash = $2, role = $3 WHERE id = $1")
                        .bind(user.id.uuid())
                        .bind(&user.password_hash)
                        .bind(&user.role)
                        .execute(pool),
                )
                .await?;
            }
        }
        Ok(())
    }

    pub(crate) async fn user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        match self {
            Self::Memory(memory) => {
                let memory = Self::lock(memory);
                Ok(memory
                    .emails
                    .get(email)
                    .and_then(|id| memory.users.get(id))
                    .cloned())
            }
            Self::Redis { conn, prefix } => {
                let id: Option<String> = conn
                    .query(cmd("GET").arg(prefix.tagged(&format!("email:{email}"))))
                    .await?;
                match id.and_then(|id| id.parse::<UserId>().ok()) {
                    Some(id) => self.user(id).await,
                    None => Ok(None),
                }
            }
            Self::Postgres(pool) => {
                // PostgreSQL text cannot hold NUL: no account has such an address.
                if email.contains('\0') {
                    return Ok(None);
                }
                let row: Option<UserRow> = call(
                    sqlx::query_as(
                        "SELECT id, email, password_hash, role FROM users \
                         WHERE lower(email) = lower($1)",
                    )
                    .bind(email)
                    .fetch_optional(pool),
                )
                .await?;
                Ok(row.map(user_of))
            }
        }
    }

    pub(crate) async fn user(&self, id: UserId) -> Result<Option<User>, StoreError> {
        match self {
            Self::Memory(memory) => Ok(Self::lock(memory).users.get(&id).cloned()),
            Self::Redis { conn, prefix } => {
                let fields: HashMap<String, String> = conn
                    .query(cmd("HGETALL").arg(prefix.key(&id.to_string(), "user")))
                    .await?;
                let (Some(email), Some(password_hash), Some(role)) = (
                    fields.get("email"),
                    fields.get("password_hash"),
                    fields.get("role"),
                ) else {
                    return Ok(None);
                };
                Ok(Some(User {
                    id,
                    email: email.clone(),
                    password_hash: password_hash.clone(),
                    role: role.clone(),
                }))
            }
            Self::Postgres(pool) => {
                let row: Option<UserRow> = call(
                    sqlx::query_as(
                        "SELECT id, email, password_hash, role FROM users WHERE id = $1",
                    )
                    .bind(id.uuid())
                    .fetch_optional(pool),
                )
                .await?;
                Ok(row.map(user_of))
            }
        }
    }

    /// A user's email address (without copying the rest of the account).
    pub(crate) async fn email(&self, id: UserId) -> Result<Option<String>, StoreError> {
        match self {
            Self::Memory(memory) => Ok(Self::lock(memory).users.get(&id).map(|u| u.email.clone())),
            Self::Redis { conn, prefix } => {
                conn.query(
                    cmd("HGET")
                        .arg(prefix.key(&id.to_string(), "user"))
                        .arg("email"),
                )
                .await
            }
            Self::Postgres(pool) => {
                let row: Option<(String,)> = call(
                    sqlx::query_as("SELECT email FROM users WHERE id = $1")
                        .bind(id.uuid())
                        .fetch_optional(pool),
                )
                .await?;
                Ok(row.map(|(email,)| email))
            }
        }
    }

    /// Changes a user's role; `None` when there is no such user.
    pub(crate) async fn set_role(
        &self,
        id: UserId,
        role: &str,
    ) -> Result<Option<User>, StoreError> {
        match self {
            Self::Memory(memory) => {
                let mut memory = Self::lock(memory);
                Ok(memory.users.get_mut(&id).map(|user| {
                    user.role = role.to_owned();
                    user.clone()
                }))
            }
            Self::Redis { conn, prefix } => {
                let Some(mut user) = self.user(id).await? else {
                    return Ok(None);
                };
                let _: i64 = conn
                    .query(
                        cmd("HSET")
                            .arg(prefix.key(&id.to_string(), "user"))
                            .arg("role")
                            .arg(role),
                    )
                    .await?;
                user.role = role.to_owned();
                Ok(Some(user))
            }
            Self::Postgres(pool) => {
                let row: Option<UserRow> = call(
                    sqlx::query_as(
                        "UPDATE users SET role = $2 WHERE id = $1 \
                         RETURNING id, email, password_hash, role",
                    )
                    .bind(id.uuid())
                    .bind(role)
                    .fetch_optional(pool),
                )
                .await?;
                Ok(row.map(user_of))
            }
        }
    }

    pub(crate) async fn create_item(&self, owner: UserId, name: &str) -> Result<Item, StoreError> {
        // v7: time-ordered, so sorting by id lists items in creation order.
        let item = Item {
            id: ItemId::new_v7(),
            name: name.to_owned(),
            owner,
        };
        match self {
            Self::Memory(memory) => {
                let mut memory = Self::lock(memory);
                memory.items.entry(owner).or_default().push(item.clone());
                memory.item_count += 1;
            }
            Self::Redis { conn, prefix } => {
                let _: i64 = conn
                    .query(
                        cmd("HSET")
                            .arg(prefix.key(&owner.to_string(), "items"))
                            .arg(item.id.to_string())
                            .arg(name),
                    )
                    .await?;
                let _: i64 = conn
                    .query(
                        cmd("HINCRBY")
                            .arg(prefix.tagged("stats"))
                            .arg("items")
                            .arg(1),
                    )
                    .await?;
            }
            Self::Postgres(pool) => {
                call(
                    sqlx::query("INSERT INTO items (id, owner, name) VALUES ($1, $2, $3)")
                        .bind(item.id.uuid())
                        .bind(owner.uuid())
                        .bind(name)
                        .execute(pool),
                )
                .await?;
            }
        }
        Ok(item)
    }

    /// The owner's items, oldest first.
    pub(crate) async fn items(&self, owner: UserId) -> Result<Vec<Item>, StoreError> {
        match self {
            Self::Memory(memory) => Ok(Self::lock(memory)
                .items
                .get(&owner)
                .cloned()
                .unwrap_or_default()),
            Self::Redis { conn, prefix } => {
                let all: HashMap<String, String> = conn
                    .query(cmd("HGETALL").arg(prefix.key(&owner.to_string(), "items")))
                    .await?;
                let mut items: Vec<Item> = all
                    .into_iter()
                    .filter_map(|(id, name)| {
                        Some(Item {
                            id: id.parse().ok()?,
                            name,
                            owner,
                        })
                    })
                    .collect();
                items.sort_by_key(|item| item.id.uuid());
                Ok(items)
            }
            Self::Postgres(pool) => {
                let rows: Vec<(Uuid, String)> = call(
                    sqlx::query_as("SELECT id, name FROM items WHERE owner = $1 ORDER BY id")
                        .bind(owner.uuid())
                        .fetch_all(pool),
                )
                .await?;
                Ok(rows
                    .into_iter()
                    .map(|(id, name)| Item {
                        id: ItemId::from_uuid(id),
                        name,
                        owner,
                    })
                    .collect())
            }
        }
    }

    /// The item `id` *of `owner`*: another owner's item is `None`, like a missing one.
    pub(crate) async fn item(&self, owner: UserId, id: ItemId) -> Result<Option<Item>, StoreError> {
        match self {
            Self::Memory(memory) => Ok(Self::lock(memory)
                .items
                .get(&owner)
                .and_then(|items| items.iter().find(|item| item.id == id))
                .cloned()),
            Self::Redis { conn, prefix } => {
                let name: Option<String> = conn
                    .query(
                        cmd("HGET")
                            .arg(prefix.key(&owner.to_string(), "items"))
                            .arg(id.to_string()),
                    )
                    .await?;
                Ok(name.map(|name| Item { id, name, owner }))
            }
            Self::Postgres(pool) => {
                // Owner and id together: another owner's item is not found.
                let row: Option<(String,)> = call(
                    sqlx::query_as("SELECT name FROM items WHERE owner = $1 AND id = $2")
                        .bind(owner.uuid())
                        .bind(id.uuid())
                        .fetch_optional(pool),
                )
                .await?;
                Ok(row.map(|(name,)| Item { id, name, owner }))
            }
        }
    }

    /// `(users, items)`.
    pub(crate) async fn stats(&self) -> Result<(u64, u64), StoreError> {
        match self {
            Self::Memory(memory) => {
                let memory = Self::lock(memory);
                Ok((memory.users.len() as u64, memory.item_count))
            }
            Self::Redis { conn, prefix } => {
                let (users, items): (Option<u64>, Option<u64>) = conn
                    .query(
                        cmd("HMGET")
                            .arg(prefix.tagged("stats"))
                            .arg("users")
                            .arg("items"),
                    )
                    .await?;
                Ok((users.unwrap_or(0), items.unwrap_or(0)))
            }
            Self::Postgres(pool) => {
                let (users, items): (i64, i64) = call(
                    sqlx::query_as(
                        "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM items)",
                    )
                    .fetch_one(pool),
                )
                .await?;
                Ok((users.unsigned_abs(), items.unsigned_abs()))
            }
        }
    }
}

async fn write_user(
    conn: &RedisConnection,
    prefix: &KeyPrefix,
    user: &User,
) -> Result<(), StoreError> {
    let _: i64 = conn
        .query(
            cmd("HSET")
                .arg(prefix.key(&user.id.to_string(), "user"))
                .arg("email")
                .arg(&user.email)
                .arg("password_hash")
                .arg(&user.password_hash)
                .arg("role")
                .arg(&user.role),
        )
        .await?;
    Ok(())
}
