//! End-to-end: two demo processes sharing one Redis (`STORE_URL=$REDIS_URL`, a unique
//! `STORE_PREFIX` per test) are one service: accounts, items, limits, logouts and reuse
//! detection hold across them. And a Redis outage (an own `redis-server` on a free port,
//! stopped with SIGSTOP): revocation-dependent routes answer 503 within the time bound while
//! rate limits fall back to memory; the service recovers when Redis does.
//!
//! `REDIS_URL` unset: the shared-Redis tests print a skip line; set but unreachable: they fail.

use std::time::{Duration, Instant};

use http::StatusCode;
use serde_json::json;

use crate::common::redis_server::OwnRedis;
use crate::common::{
    ADMIN_EMAIL, ADMIN_PASSWORD, Demo, Resp, ed25519_key_file, redis_url, unique_prefix,
};

const PASSWORD: &str = "correct horse battery";

/// Two demos on one Redis, one key, one prefix.
pub(crate) async fn pair(url: &str, extra: &[(&str, &str)]) -> (Demo, Demo) {
    let key = ed25519_key_file();
    let prefix = unique_prefix();
    let mut env = vec![
        ("STORE_URL", url),
        ("STORE_PREFIX", prefix.as_str()),
        ("JWT_ALGORITHM", "EdDSA"),
        ("JWT_PRIVATE_KEY_FILE", key.to_str().unwrap()),
    ];
    env.extend_from_slice(extra);
    let a = Demo::start(&env).await;
    let b = Demo::start(&env).await;
    let _ = std::fs::remove_file(&key);
    (a, b)
}

async fn login(demo: &Demo, ip: &str, email: &str, password: &str) -> Resp {
    demo.post("/auth/login")
        .client(ip)
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
}

#[tokio::test]
async fn two_processes_share_accounts_items_and_limits() {
    let Some(url) = redis_url("two_processes_share_accounts_items_and_limits").await else {
        return;
    };
    let (a, b) = pair(&url, &[]).await;

    // Registered on A, signed in on B, token used on A.
    a.register("10.9.0.1", "olga@example.com", PASSWORD).await;
    b.post("/auth/register")
        .client("10.9.0.1")
        .json(&json!({ "email": "olga@example.com", "password": PASSWORD }))
        .send()
        .await
        .assert_problem(StatusCode::CONFLICT);
    let (token, _) = b.login("10.9.0.2", "olga@example.com", PASSWORD).await;
    let r = a
        .get("/api/me")
        .client("10.9.0.3")
        .bearer(&token)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.json()["email"], "olga@example.com");

    // An item made on A is found on B, and only by its owner.
    let item = a
        .post("/api/items")
        .client("10.9.0.3")
        .bearer(&token)
        .json(&json!({ "name": "shared" }))
        .send()
        .await
        .json();
    let id = item["id"].as_str().unwrap();
    let r = b
        .get(&format!("/api/items/{id}"))
        .client("10.9.0.4")
        .bearer(&token)
        .send()
        .await;
    assert_eq!(r.json(), item);
    let (admin, _) = b.login("10.9.0.5", ADMIN_EMAIL, ADMIN_PASSWORD).await;
    b.get(&format!("/api/items/{id}"))
        .client("10.9.0.5")
        .bearer(&admin)
        .send()
        .await
        .assert_problem(StatusCode::NOT_FOUND);
    let stats = a
        .get("/api/admin/stats")
        .client("10.9.0.5")
        .bearer(&admin)
        .send()
        .await;
    assert_eq!(stats.json(), json!({ "users": 2, "items": 1 }));

    // login_failures across both: three failures on A, two on B, the sixth is 429 on A.
    let attacker = "10.9.1.1";
    for demo in [&a, &a, &a, &b, &b] {
        login(demo, attacker, "olga@example.com", "wrong password!")
            .await
            .assert_problem(StatusCode::UNAUTHORIZED);
    }
    let r = login(&a, attacker, "olga@example.com", PASSWORD).await;
    r.assert_problem(StatusCode::TOO_MANY_REQUESTS);
    let r = login(&b, attacker, "olga@example.com", PASSWORD).await;
    r.assert_problem(StatusCode::TOO_MANY_REQUESTS);

    // The auth limit (10 per minute per IP) across both.
    let ip = "10.9.2.1";
    for n in 0..10 {
        let demo = if n % 2 == 0 { &a } else { &b };
        demo.post("/auth/refresh")
            .client(ip)
            .send()
            .await
            .assert_problem(StatusCode::UNAUTHORIZED);
    }
    a.post("/auth/refresh")
        .client(ip)
        .send()
        .await
        .assert_problem(StatusCode::TOO_MANY_REQUESTS);

    // 150 simultaneous requests over both processes against 100 per 60 s.
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..150 {
        let base = if n % 2 == 0 { a.base() } else { b.base() };
        let token = token.clone();
        tasks.spawn(async move { get_status(&format!("{base}/api/me"), &token).await });
    }
    let statuses = tasks.join_all().await;
    let refill = (started.elapsed().as_secs_f64() / 0.6).ceil() as usize;
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    // A Redis call slower than the demo's 125 ms bound answers 503 rather than wait: on a
    // loaded machine a few may happen; they are neither allowed nor counted.
    let unavailable = statuses
        .iter()
        .filter(|s| **s == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    assert_eq!(ok + limited + unavailable, 150, "{statuses:?}");
    println!("150 over two processes: {ok} ok, {limited} limited, {unavailable} unavailable");
    assert!(unavailable <= 10, "{statuses:?}");
    // Three requests above (/api/me, one item created, one read) spent 3 of Olga's 100.
    assert!(
        (97 - unavailable..=100 + refill).contains(&ok),
        "ok={ok} refill={refill}"
    );
}

async fn get_status(url: &str, token: &str) -> StatusCode {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let request = http::Request::get(url)
        .header("authorization", format!("Bearer {token}"))
        .header("x-forwarded-for", "10.9.3.1")
        .body(http_body_util::Empty::new())
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status();
    let _ = response.into_body().collect().await;
    status
}

#[tokio::test]
async fn logouts_reuse_and_role_changes_hold_across_processes() {
    let Some(url) = redis_url("logouts_reuse_and_role_changes_hold_across_processes").await else {
        return;
    };
    let (a, b) = pair(&url, &[("REFRESH_REUSE_GRACE_SECS", "0")]).await;
    let user = a.register("10.8.0.1", "pia@example.com", PASSWORD).await;

    // Logout on A kills the access token on B (where it was verified and cached before)
    // and the refresh family on B.
    let (access, rt) = a.login("10.8.0.2", "pia@example.com", PASSWORD).await;
    let r = b
        .get("/api/me")
        .client("10.8.0.3")
        .bearer(&access)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = a
        .post("/auth/logout")
        .client("10.8.0.4")
        .cookie(&rt)
        .bearer(&access)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    b.get("/api/me")
        .client("10.8.0.5")
        .bearer(&access)
        .send()
        .await
        .assert_problem(StatusCode::UNAUTHORIZED);
    b.post("/auth/refresh")
        .client("10.8.0.6")
        .cookie(&rt)
        .send()
        .await
        .assert_problem(StatusCode::UNAUTHORIZED);

    // Reuse: rotated on A, the spent token replayed on B: reuse, the family is revoked.
    let (_, rt1) = b.login("10.8.1.1", "pia@example.com", PASSWORD).await;
    let r = a
        .post("/auth/refresh")
        .client("10.8.1.2")
        .cookie(&rt1)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let rt2 = r.refresh_cookie().unwrap();
    let problem = b
        .post("/auth/refresh")
        .client("10.8.1.3")
        .cookie(&rt1)
        .send()
        .await
        .assert_problem(StatusCode::UNAUTHORIZED);
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("refresh_token_reused")
    );
    a.post("/auth/refresh")
        .client("10.8.1.4")
        .cookie(&rt2)
        .send()
        .await
        .assert_problem(StatusCode::UNAUTHORIZED);

    // A role change on A takes effect at a refresh on B.
    let (_, rt) = a.login("10.8.2.1", "pia@example.com", PASSWORD).await;
    let (admin, _) = a.login("10.8.2.2", ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let r = a
        .put(&format!("/api/admin/users/{user}/role"))
        .client("10.8.2.2")
        .bearer(&admin)
        .json(&json!({ "role": "premium" }))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = b
        .post("/auth/refresh")
        .client("10.8.2.3")
        .cookie(&rt)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let token = r.json()["access_token"].as_str().unwrap().to_owned();
    let r = b
        .get("/api/me")
        .client("10.8.2.4")
        .bearer(&token)
        .send()
        .await;
    assert_eq!(r.json()["role"], "premium");
}

#[tokio::test]
async fn a_redis_outage_is_503_for_revocation_state_and_memory_limits_for_the_rest() {
    let Some(redis) = OwnRedis::try_start() else {
        if std::env::var_os("REDIS_URL").is_some() {
            panic!("REDIS_URL is set but no redis-server could be started for the outage test");
        }
        println!("skipping the Redis outage test: redis-server not available");
        return;
    };
    let url = format!("redis://127.0.0.1:{}/", redis.port);
    let demo = Demo::start(&[("STORE_URL", url.as_str())]).await;
    demo.register("10.7.0.1", "quinn@example.com", PASSWORD)
        .await;
    let (access, rt) = demo.login("10.7.0.2", "quinn@example.com", PASSWORD).await;
    assert_eq!(
        demo.get("/api/me")
            .client("10.7.0.3")
            .bearer(&access)
            .send()
            .await
            .status,
        StatusCode::OK
    );

    redis.signal("-STOP");
    let timed = |r: &Resp, started: Instant| {
        let took = started.elapsed();
        // At most 125 + 125 ms on Redis, plus a debug build's own time.
        assert!(took < Duration::from_millis(600), "took {took:?}: {r:?}");
    };
    // Bearer checks, refresh, logout and login need revocation or account state: 503.
    let started = Instant::now();
    let r = demo
        .get("/api/me")
        .client("10.7.0.3")
        .bearer(&access)
        .send()
        .await;
    r.assert_problem(StatusCode::SERVICE_UNAVAILABLE);
    timed(&r, started);
    let started = Instant::now();
    let r = demo
        .post("/auth/refresh")
        .client("10.7.0.4")
        .cookie(&rt)
        .send()
        .await;
    r.assert_problem(StatusCode::SERVICE_UNAVAILABLE);
    timed(&r, started);
    let r = demo
        .post("/auth/logout")
        .client("10.7.0.4")
        .cookie(&rt)
        .send()
        .await;
    r.assert_problem(StatusCode::SERVICE_UNAVAILABLE);
    let r = login(&demo, "10.7.0.5", "quinn@example.com", PASSWORD).await;
    r.assert_problem(StatusCode::SERVICE_UNAVAILABLE);
    // Rate limits fall back to per-process memory: /health still answers, limited.
    let started = Instant::now();
    let r = demo.get("/health").client("10.7.0.6").send().await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert!(r.header("ratelimit").is_some());
    timed(&r, started);

    // Back: everything works again.
    redis.signal("-CONT");
    let mut recovered = false;
    for _ in 0..50 {
        let r = demo
            .get("/api/me")
            .client("10.7.0.3")
            .bearer(&access)
            .send()
            .await;
        if r.status == StatusCode::OK {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the demo recovers when Redis does");
    let r = demo
        .post("/auth/refresh")
        .client("10.7.0.7")
        .cookie(&rt)
        .send()
        .await;
    assert!(
        r.status == StatusCode::OK || r.status == StatusCode::UNAUTHORIZED,
        "{r:?}"
    );
}

/// The status of `/api/me` with this token.
async fn me(demo: &Demo, token: &str) -> StatusCode {
    demo.get("/api/me")
        .client("10.9.5.2")
        .bearer(token)
        .send()
        .await
        .status
}

/// Seeding `DEMO_ADMIN_EMAIL` onto an account someone already registered (a first deploy, a
/// changed admin address) ends every session of that account first: its holder cannot keep
/// its access token or refresh into an admin token. A restart with the same seed logs nobody
/// out; a changed seeded password ends the sessions again.
#[tokio::test]
async fn seeding_the_admin_onto_an_existing_account_ends_its_sessions() {
    let Some(url) = redis_url("seeding_the_admin_onto_an_existing_account_ends_its_sessions").await
    else {
        return;
    };
    let key = ed25519_key_file();
    let prefix = unique_prefix();
    let base = [
        ("STORE_URL", url.as_str()),
        ("STORE_PREFIX", prefix.as_str()),
        ("JWT_ALGORITHM", "EdDSA"),
        ("JWT_PRIVATE_KEY_FILE", key.to_str().unwrap()),
    ];
    let email = "future-admin@example.com";
    let seeded = "the seeded admin password";
    let with_seed = |password: &'static str| {
        let mut env = base.to_vec();
        env.extend([
            ("DEMO_ADMIN_EMAIL", email),
            ("DEMO_ADMIN_PASSWORD", password),
        ]);
        env
    };

    let a = Demo::start(&base).await;
    a.register("10.9.5.1", email, PASSWORD).await;
    let (token, refresh) = a.login("10.9.5.1", email, PASSWORD).await;
    assert_eq!(me(&a, &token).await, StatusCode::OK);

    // A second process seeds that address as the admin's.
    let b = Demo::start(&with_seed(seeded)).await;
    for demo in [&a, &b] {
        assert_eq!(me(demo, &token).await, StatusCode::UNAUTHORIZED);
    }
    a.post("/auth/refresh")
        .client("10.9.5.1")
        .cookie(&refresh)
        .send()
        .await
        .assert_problem(StatusCode::UNAUTHORIZED);
    // The old password is gone; the seeded one signs in as admin (the sessions' watermark
    // covers the second of the seeding).
    login(&b, "10.9.5.3", email, PASSWORD)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (admin, _) = b.login("10.9.5.3", email, seeded).await;
    let stats = a
        .get("/api/admin/stats")
        .client("10.9.5.3")
        .bearer(&admin)
        .send()
        .await;
    assert_eq!(stats.status, StatusCode::OK, "{stats:?}");

    // The same seed again (a restart, a third process): the admin stays signed in.
    let c = Demo::start(&with_seed(seeded)).await;
    assert_eq!(me(&c, &admin).await, StatusCode::OK);
    // A changed seeded password ends the admin's sessions too.
    let d = Demo::start(&with_seed("a new admin password after a leak")).await;
    for demo in [&a, &d] {
        assert_eq!(me(demo, &admin).await, StatusCode::UNAUTHORIZED);
    }
    drop((a, b, c, d));
    let _ = std::fs::remove_file(&key);
}
