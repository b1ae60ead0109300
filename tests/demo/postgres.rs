//! End-to-end: the demo on PostgreSQL (`DATABASE_URL`): accounts, items and API key records in
//! the database (they survive a restart and are shared by two processes), hostile input as
//! plain data, and a lost database as a 503 the demo recovers from.
//!
//! `DATABASE_URL` unset: each test prints a skip line; set but unreachable: it fails. Each
//! test creates a database of its own on that server (dropped at the end, also on panic), so
//! the tests run in parallel.

use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::json;
use sqlx::Connection;
use sqlx::postgres::PgConnection;

use crate::common::{Demo, Resp};

const PASSWORD: &str = "correct horse battery";

/// A database of one test's own; dropped (with its connections) when this drops.
struct TestDb {
    /// `DATABASE_URL`: where the test database is created and dropped from.
    admin_url: String,
    name: String,
    /// The URL of the test database.
    url: String,
}

impl TestDb {
    /// `None` (after a skip line) when `DATABASE_URL` is unset; panics when it is set but the
    /// server does not answer.
    async fn create(test: &str) -> Option<Self> {
        let Ok(admin_url) = std::env::var("DATABASE_URL") else {
            println!("skipping {test}: DATABASE_URL is not set");
            return None;
        };
        let name = format!("ts_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = admin(&admin_url).await;
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("CREATE DATABASE");
        let url = with_database(&admin_url, &name);
        Some(Self {
            admin_url,
            name,
            url,
        })
    }

    async fn admin(&self) -> PgConnection {
        admin(&self.admin_url).await
    }

    /// A connection to the test database itself.
    async fn conn(&self) -> PgConnection {
        PgConnection::connect(&self.url)
            .await
            .expect("connect to the test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (url, name) = (self.admin_url.clone(), self.name.clone());
        // Its own thread and runtime: drop runs inside the test's runtime.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&url).await {
                    let _ = sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

async fn admin(url: &str) -> PgConnection {
    tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(url))
        .await
        .expect("DATABASE_URL is set but PostgreSQL did not answer within 5 s")
        .expect("DATABASE_URL is set but PostgreSQL is unreachable")
}

/// `url` with its database name replaced by `name` (query parameters kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").expect("a URL") + 3;
    let authority_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{name}", &base[..authority_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

async fn start(db: &TestDb) -> Demo {
    Demo::start(&[("DATABASE_URL", db.url.as_str())]).await
}

async fn account(demo: &Demo, ip: &str, email: &str) -> (String, String) {
    let id = demo.register(ip, email, PASSWORD).await;
    let (token, _) = demo.login(ip, email, PASSWORD).await;
    (id, token)
}

async fn make_key(demo: &Demo, token: &str, name: &str) -> Resp {
    let r = demo
        .post("/api/keys")
        .client("10.60.0.1")
        .bearer(token)
        .json(&json!({ "name": name, "allowed_ips": ["10.20.0.0/16"] }))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    r
}

async fn ping(demo: &Demo, ip: &str, key: &str) -> Resp {
    demo.get("/api/service/ping")
        .client(ip)
        .header("x-api-key", key)
        .send()
        .await
}

#[tokio::test]
async fn postgres_holds_accounts_items_and_keys() {
    let Some(db) = TestDb::create("postgres_holds_accounts_items_and_keys").await else {
        return;
    };
    let a = start(&db).await;
    let (user, token) = account(&a, "10.60.1.1", "pg@example.com").await;
    let item = a
        .post("/api/items")
        .client("10.60.1.1")
        .bearer(&token)
        .json(&json!({ "name": "kept in postgres" }))
        .send()
        .await
        .json();
    let created = make_key(&a, &token, "pg key").await.json();
    let (key_id, key) = (
        created["id"].as_str().unwrap().to_owned(),
        created["key"].as_str().unwrap().to_owned(),
    );
    assert_eq!(ping(&a, "10.20.0.1", &key).await.status, StatusCode::OK);

    // In the tables: native uuids, the normalised email, the key's hash but never the key.
    let mut conn = db.conn().await;
    let (id, email): (uuid::Uuid, String) =
        sqlx::query_as("SELECT id, email FROM users WHERE email = $1")
            .bind("pg@example.com")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(format!("user_{}", id.simple()), user);
    assert_eq!(email, "pg@example.com");
    let (item_id,): (uuid::Uuid,) = sqlx::query_as("SELECT id FROM items WHERE owner = $1")
        .bind(id)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        format!("item_{}", item_id.simple()),
        item["id"].as_str().unwrap()
    );
    let (record,): (String,) = sqlx::query_as("SELECT record::text FROM api_keys")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(!record.contains(&key[27..]), "the secret is not stored");
    // A second registration of the same normalised email: 409, one row.
    a.post("/auth/register")
        .client("10.60.1.2")
        .json(&json!({ "email": " PG@Example.com", "password": PASSWORD }))
        .send()
        .await
        .assert_problem(StatusCode::CONFLICT);

    // A second process on the same database: the same accounts, items and keys, and a
    // revocation on A is refused on B's next request.
    let b = start(&db).await;
    let (token_b, _) = b.login("10.60.1.3", "pg@example.com", PASSWORD).await;
    let items = b
        .get("/api/items")
        .client("10.60.1.3")
        .bearer(&token_b)
        .send()
        .await
        .json();
    assert_eq!(items, json!([item]));
    let r = ping(&b, "10.20.0.2", &key).await;
    assert_eq!(r.json(), json!({ "key_id": key_id, "owner": user }));
    let rotated = b
        .post(&format!("/api/keys/{key_id}/rotate"))
        .client("10.60.1.3")
        .bearer(&token_b)
        .send()
        .await;
    assert_eq!(rotated.status, StatusCode::CREATED, "{rotated:?}");
    let new = rotated.json()["key"].as_str().unwrap().to_owned();
    assert_eq!(ping(&a, "10.20.0.3", &new).await.status, StatusCode::OK);
    assert_eq!(ping(&a, "10.20.0.3", &key).await.status, StatusCode::OK);
    let listed = a
        .get("/api/keys")
        .client("10.60.1.1")
        .bearer(&token)
        .send()
        .await
        .json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], key_id.as_str());
    let r = a
        .delete(&format!("/api/keys/{key_id}"))
        .client("10.60.1.1")
        .bearer(&token)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{r:?}");
    for k in [&key, &new] {
        ping(&b, "10.20.0.4", k)
            .await
            .assert_problem(StatusCode::UNAUTHORIZED);
    }
    // A new key, then both processes restart: still there.
    let kept = make_key(&b, &token_b, "kept").await.json();
    drop(a);
    drop(b);
    let c = start(&db).await;
    let (token_c, _) = c.login("10.60.1.4", "pg@example.com", PASSWORD).await;
    let items = c
        .get("/api/items")
        .client("10.60.1.4")
        .bearer(&token_c)
        .send()
        .await
        .json();
    assert_eq!(items, json!([item]));
    let r = ping(&c, "10.20.0.5", kept["key"].as_str().unwrap()).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let (admin, _) = c
        .login(
            "10.60.1.5",
            crate::common::ADMIN_EMAIL,
            crate::common::ADMIN_PASSWORD,
        )
        .await;
    let stats = c
        .get("/api/admin/stats")
        .client("10.60.1.5")
        .bearer(&admin)
        .send()
        .await
        .json();
    assert_eq!(stats, json!({ "users": 2, "items": 1 }));
    let logs = c.stderr().join("\n");
    assert!(!logs.contains(&kept["key"].as_str().unwrap()[27..]));
}

#[tokio::test]
async fn hostile_input_is_plain_data() {
    let Some(db) = TestDb::create("hostile_input_is_plain_data").await else {
        return;
    };
    let demo = start(&db).await;
    // Emails with quotes, `%` and `_` are data: each is its own account, and none matches
    // another as a pattern would.
    let emails = [
        "o'brien@example.com",
        "a%b@example.com",
        "a_b@example.com",
        "axb@example.com",
    ];
    for (n, email) in emails.iter().enumerate() {
        demo.register(&format!("10.61.0.{n}"), email, PASSWORD)
            .await;
    }
    let login = |ip: &'static str, email: &'static str| {
        demo.post("/auth/login")
            .client(ip)
            .json(&json!({ "email": email, "password": PASSWORD }))
            .send()
    };
    for (n, email) in emails.iter().enumerate() {
        let ip: &'static str = ["10.61.1.0", "10.61.1.1", "10.61.1.2", "10.61.1.3"][n];
        assert_eq!(login(ip, email).await.status, StatusCode::OK, "{email}");
    }
    for (ip, email) in [
        ("10.61.2.1", "%@example.com"),
        ("10.61.2.2", "a_b@example.co_"),
        ("10.61.2.3", "_%@example.com"),
        ("10.61.2.4", "' OR 1=1 --"),
        ("10.61.2.5", "x' OR '1'='1@example.com"),
        ("10.61.2.6", "nul\u{0}@example.com"),
        ("10.61.2.7", "a%b@example.com\u{0}"),
    ] {
        let r = login(ip, email).await;
        r.assert_problem(StatusCode::UNAUTHORIZED);
    }
    for (ip, email) in [
        ("10.61.3.1", "nul\u{0}@example.com"),
        ("10.61.3.2", "' OR 1=1 --"),
    ] {
        let r = demo
            .post("/auth/register")
            .client(ip)
            .json(&json!({ "email": email, "password": PASSWORD }))
            .send()
            .await;
        r.assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
    }

    // Names are data too; ids in paths are parsed before any query.
    let (token, _) = demo
        .login("10.61.4.1", "o'brien@example.com", PASSWORD)
        .await;
    let name = "'; DROP TABLE items; -- 100% _x_ \\ \"q\"";
    let item = demo
        .post("/api/items")
        .client("10.61.4.1")
        .bearer(&token)
        .json(&json!({ "name": name }))
        .send()
        .await;
    assert_eq!(item.status, StatusCode::CREATED, "{item:?}");
    assert_eq!(item.json()["name"], name);
    let key = make_key(&demo, &token, name).await.json();
    assert_eq!(key["name"], name);
    for bad in [
        "item_'%20OR%201=1%20--",
        "item_%25",
        "item__",
        "item_%00",
        "%27",
    ] {
        demo.get(&format!("/api/items/{bad}"))
            .client("10.61.4.1")
            .bearer(&token)
            .send()
            .await
            .assert_problem(StatusCode::BAD_REQUEST);
    }
    for bad in ["apikey_'%20OR%201=1%20--", "apikey_%25", "apikey_%00"] {
        demo.delete(&format!("/api/keys/{bad}"))
            .client("10.61.4.1")
            .bearer(&token)
            .send()
            .await
            .assert_problem(StatusCode::BAD_REQUEST);
    }
    // The tables hold exactly what was made.
    let mut conn = db.conn().await;
    let counts: (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM items), \
         (SELECT count(*) FROM api_keys)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    // The four accounts and the seeded admin.
    assert_eq!(counts, (5, 1, 1));
    let items = demo
        .get("/api/items")
        .client("10.61.4.1")
        .bearer(&token)
        .send()
        .await
        .json();
    assert_eq!(items[0]["name"], name);
}

#[tokio::test]
async fn a_lost_database_is_a_503_and_the_demo_recovers() {
    let Some(db) = TestDb::create("a_lost_database_is_a_503_and_the_demo_recovers").await else {
        return;
    };
    let demo = start(&db).await;
    let (_, token) = account(&demo, "10.62.0.1", "lost@example.com").await;
    let key = make_key(&demo, &token, "svc").await.json()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let items = |ip: &'static str| demo.get("/api/items").client(ip).bearer(&token).send();
    assert_eq!(items("10.62.0.1").await.status, StatusCode::OK);

    // No new connections, and the demo's current ones terminated.
    let mut admin = db.admin().await;
    sqlx::raw_sql(&format!(
        "ALTER DATABASE {} ALLOW_CONNECTIONS false",
        db.name
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    let (terminated,): (i64,) = sqlx::query_as(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1",
    )
    .bind(&db.name)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(terminated >= 1, "the demo holds a connection");

    let started = Instant::now();
    let r = items("10.62.0.2").await;
    let problem = r.assert_problem(StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(started.elapsed() < Duration::from_secs(6), "{problem}");
    ping(&demo, "10.20.0.1", &key)
        .await
        .assert_problem(StatusCode::SERVICE_UNAVAILABLE);
    demo.post("/auth/login")
        .client("10.62.0.3")
        .json(&json!({ "email": "lost@example.com", "password": PASSWORD }))
        .send()
        .await
        .assert_problem(StatusCode::SERVICE_UNAVAILABLE);
    // Still serving what needs no database.
    assert_eq!(demo.get("/health").send().await.status, StatusCode::OK);

    // PostgreSQL is back: so is the demo, without a restart.
    sqlx::raw_sql(&format!(
        "ALTER DATABASE {} ALLOW_CONNECTIONS true",
        db.name
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = items("10.62.0.4").await;
        if r.status == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "not recovered: {r:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(ping(&demo, "10.20.0.2", &key).await.status, StatusCode::OK);
    let logs = demo.stderr().join("\n");
    assert!(!logs.contains(&key[27..]));
}
