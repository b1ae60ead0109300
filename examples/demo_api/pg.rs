//! PostgreSQL (`DATABASE_URL=postgres://…`): accounts, items and API key records. Redis or
//! memory (`STORE_URL`) keeps the rest (rate limits, refresh families, revocations).
//!
//! The schema (`migrations/0001_schema.sql`, embedded) is run at start in one transaction
//! under an advisory lock, so processes starting together do not race; it is idempotent.
//! Every query is parameterized (`$1`, never text pasted into SQL), ids are native `uuid`
//! columns, and each call is bounded by [`CALL_TIMEOUT`] (a pool that cannot hand out a
//! connection, a dropped connection or a slow server is a `StoreError`, which handlers answer
//! with 503). The pool replaces broken connections by itself, so the demo recovers when the
//! server is back.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgPool, PgPoolOptions};
use tower_shield::StoreError;
use tower_shield::api_key::{ApiKeyRecord, ApiKeyStore, KeyId};
use tower_shield::jwt::revocation::StoreFuture;

/// The schema, run at every start.
const SCHEMA: &str = include_str!("migrations/0001_schema.sql");

/// The advisory lock the schema is applied under (any constant shared by the processes).
const SCHEMA_LOCK: i64 = 0x7473_6465_6d6f; // "tsdemo"

/// How long one database call may take, connection included.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Connects, checks the server answers and applies the schema.
pub(crate) async fn connect(url: &str) -> Result<PgPool, &'static str> {
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(CALL_TIMEOUT)
        // Checked before use, so a connection the server dropped is replaced, not used.
        .test_before_acquire(true)
        .connect(url)
        .await
        .map_err(|_| "cannot connect to PostgreSQL")?;
    let migrate = async {
        let mut tx = pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(SCHEMA_LOCK)
            .execute(&mut *tx)
            .await?;
        sqlx::raw_sql(SCHEMA).execute(&mut *tx).await?;
        tx.commit().await
    };
    tokio::time::timeout(Duration::from_secs(30), migrate)
        .await
        .map_err(|_| "the schema migration did not finish within 30 s")?
        .map_err(|_| "cannot apply the schema")?;
    Ok(pool)
}

/// A database failure, without its details (which may quote data).
fn unavailable(error: &sqlx::Error) -> StoreError {
    let what = match error {
        sqlx::Error::PoolTimedOut => "no database connection available",
        sqlx::Error::Io(_) | sqlx::Error::PoolClosed => "the database connection failed",
        sqlx::Error::Database(_) => "the database refused the query",
        _ => "the database call failed",
    };
    StoreError::Unavailable(what.to_owned())
}

/// Runs one database call within [`CALL_TIMEOUT`].
pub(crate) async fn call<T>(
    query: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(CALL_TIMEOUT, query).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(unavailable(&error)),
        Err(_) => Err(StoreError::Timeout),
    }
}

/// Seconds as PostgreSQL's `bigint` (saturating: no unsigned columns there).
fn signed(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// API key records in PostgreSQL: table `api_keys`, the record as JSON beside its `revoked`
/// and `last_used` columns. Like the Redis store, every process sees a revocation on its next
/// request (the layer asks on every request).
#[derive(Clone)]
pub(crate) struct PgApiKeyStore {
    pool: PgPool,
}

impl std::fmt::Debug for PgApiKeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgApiKeyStore").finish_non_exhaustive()
    }
}

impl PgApiKeyStore {
    pub(crate) fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

type Row = (String, bool, Option<i64>);

/// A record from its row: the JSON, with the columns' state.
fn decode((json, revoked, last_used): Row) -> Result<Arc<ApiKeyRecord>, StoreError> {
    let mut record = serde_json::from_str::<ApiKeyRecord>(&json)
        .map_err(|_| StoreError::Protocol("an API key record that does not parse".into()))?;
    record.revoked |= revoked;
    let last_used = last_used.and_then(|at| u64::try_from(at).ok());
    record.last_used_at = record.last_used_at.max(last_used);
    Ok(Arc::new(record))
}

impl ApiKeyStore for PgApiKeyStore {
    fn get(&self, id: &KeyId) -> StoreFuture<Option<Arc<ApiKeyRecord>>> {
        let (pool, id) = (self.pool.clone(), id.to_string());
        StoreFuture::boxed(async move {
            let row: Option<Row> = call(
                sqlx::query_as(
                    "SELECT record::text, revoked, last_used FROM api_keys WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(&pool),
            )
            .await?;
            row.map(decode).transpose()
        })
    }

    fn put(&self, record: &ApiKeyRecord) -> StoreFuture<()> {
        let Ok(json) = serde_json::to_string(record) else {
            return StoreFuture::ready(Err(StoreError::Protocol(
                "an API key record that does not serialise".into(),
            )));
        };
        let pool = self.pool.clone();
        let (id, owner, created_at) = (
            record.id.to_string(),
            record.owner.clone(),
            signed(record.created_at),
        );
        let (revoked, last_used) = (record.revoked, record.last_used_at.map(signed));
        StoreFuture::boxed(async move {
            // A record revoked meanwhile stays revoked (a rotation racing a DELETE cannot
            // bring it back), and `last_used` never moves back.
            call(
                sqlx::query(
                    "INSERT INTO api_keys (id, owner, created_at, record, revoked, last_used) \
                     VALUES ($1, $2, $3, $4::jsonb, $5, $6) \
                     ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record, \
                       revoked = api_keys.revoked OR EXCLUDED.revoked, \
                       last_used = GREATEST(api_keys.last_used, EXCLUDED.last_used)",
                )
                .bind(id)
                .bind(owner)
                .bind(created_at)
                .bind(json)
                .bind(revoked)
                .bind(last_used)
                .execute(&pool),
            )
            .await?;
            Ok(())
        })
    }

    fn revoke(&self, id: &KeyId) -> StoreFuture<bool> {
        let (pool, id) = (self.pool.clone(), id.to_string());
        StoreFuture::boxed(async move {
            let done = call(
                sqlx::query("UPDATE api_keys SET revoked = true WHERE id = $1")
                    .bind(id)
                    .execute(&pool),
            )
            .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    fn touch(&self, id: &KeyId, at: u64) -> StoreFuture<()> {
        let (pool, id) = (self.pool.clone(), id.to_string());
        StoreFuture::boxed(async move {
            call(
                sqlx::query(
                    "UPDATE api_keys SET last_used = GREATEST(COALESCE(last_used, 0), $2) \
                     WHERE id = $1",
                )
                .bind(id)
                .bind(signed(at))
                .execute(&pool),
            )
            .await?;
            Ok(())
        })
    }

    fn list(&self, owner: &str) -> StoreFuture<Vec<Arc<ApiKeyRecord>>> {
        let (pool, owner) = (self.pool.clone(), owner.to_owned());
        StoreFuture::boxed(async move {
            // Text cannot hold NUL in PostgreSQL: no such owner.
            if owner.contains('\0') {
                return Ok(Vec::new());
            }
            let rows: Vec<Row> = call(
                sqlx::query_as(
                    "SELECT record::text, revoked, last_used FROM api_keys \
                     WHERE owner = $1 ORDER BY created_at, id",
                )
                .bind(owner)
                .fetch_all(&pool),
            )
            .await?;
            rows.into_iter().map(decode).collect()
        })
    }
}
