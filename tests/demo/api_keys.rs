//! End-to-end: the demo's API keys (examples/demo_api/README.md, "API keys"). Keys are made,
//! listed, rotated and revoked with a bearer token; a key works on `/api/service/ping` (only
//! there without a bearer alternative) and on `/api/me` and `/api/items*` acting as its
//! owner, only from its allowlist; never on the admin or key routes, never from the URL; and
//! never shows up again after creation (list, logs). With `REDIS_URL`, two processes share
//! keys and a revocation.
//!
//! The demo trusts `X-Forwarded-For` from 127.0.0.1, so each call picks its client address
//! with `Call::client`; the calls that are answered 401 are spread over addresses so the
//! `anonymous` policy (10 per minute per address) is never what answers.

use http::StatusCode;
use serde_json::{Value, json};

use crate::common::{ADMIN_EMAIL, ADMIN_PASSWORD, Demo, Resp};

const PASSWORD: &str = "correct horse battery";
const CHALLENGE: &str = "ApiKey realm=\"tower-shield-demo\"";

/// Registers and signs in: (user id, access token).
async fn account(demo: &Demo, ip: &str, email: &str) -> (String, String) {
    let id = demo.register(ip, email, PASSWORD).await;
    let (token, _) = demo.login(ip, email, PASSWORD).await;
    (id, token)
}

async fn create(demo: &Demo, token: &str, body: &Value) -> Resp {
    demo.post("/api/keys")
        .client("10.77.0.1")
        .bearer(token)
        .json(body)
        .send()
        .await
}

/// Makes a key usable from 10.20.0.0/16: (public id, key).
async fn make_key(demo: &Demo, token: &str, name: &str) -> (String, String) {
    let r = create(
        demo,
        token,
        &json!({ "name": name, "allowed_ips": ["10.20.0.0/16"] }),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let body = r.json();
    (
        body["id"].as_str().unwrap().to_owned(),
        body["key"].as_str().unwrap().to_owned(),
    )
}

async fn ping(demo: &Demo, ip: &str, key: &str) -> Resp {
    demo.get("/api/service/ping")
        .client(ip)
        .header("x-api-key", key)
        .send()
        .await
}

/// Days since 1970-01-01 of an RFC 3339 UTC timestamp `YYYY-MM-DDThh:mm:ssZ`, and the
/// seconds of its day.
fn parse_time(text: &str) -> (i64, i64) {
    assert_eq!(text.len(), 20, "{text}");
    assert!(text.ends_with('Z') && &text[10..11] == "T", "{text}");
    let n = |range: std::ops::Range<usize>| text[range].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days, n(11..13) * 3600 + n(14..16) * 60 + n(17..19))
}

fn unix(text: &str) -> i64 {
    let (days, secs) = parse_time(text);
    days * 86_400 + secs
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn assert_key_refused(r: &Resp) {
    r.assert_problem(StatusCode::UNAUTHORIZED);
    assert_eq!(r.header("www-authenticate"), Some(CHALLENGE), "{r:?}");
}

#[tokio::test]
async fn keys_are_made_listed_and_used_as_their_owner() {
    let demo = Demo::start(&[]).await;
    let (user, token) = account(&demo, "10.77.1.1", "kim@example.com").await;

    let r = create(
        &demo,
        &token,
        &json!({ "name": "nightly export", "allowed_ips": ["10.20.0.0/16", "2001:db8::/48"] }),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let body = r.json();
    let mut members: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    members.sort_unstable();
    assert_eq!(
        members,
        [
            "allowed_ips",
            "created_at",
            "expires_at",
            "id",
            "key",
            "name"
        ]
    );
    let id = body["id"].as_str().unwrap().to_owned();
    let key = body["key"].as_str().unwrap().to_owned();
    assert!(id.starts_with("apikey_") && id.len() == 7 + 22, "{id}");
    // `api_` + id + `_` + 43 characters (256 bits) of secret, URL-safe.
    assert!(key.starts_with("api_") && key.len() == 70, "{key}");
    assert!(
        key[4..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    assert_eq!(&key[4..26], &id[7..]);
    assert_eq!(body["name"], "nightly export");
    assert_eq!(
        body["allowed_ips"],
        json!(["10.20.0.0/16", "2001:db8::/48"])
    );
    let created = unix(body["created_at"].as_str().unwrap());
    assert!((created - now()).abs() < 60, "{body}");
    // 90 days by default.
    assert_eq!(
        unix(body["expires_at"].as_str().unwrap()) - created,
        90 * 86_400
    );
    let r = create(
        &demo,
        &token,
        &json!({ "name": "short", "allowed_ips": ["10.21.0.7"], "expires_in_days": 1 }),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let short = r.json();
    assert_eq!(short["allowed_ips"], json!(["10.21.0.7/32"]));
    assert_eq!(
        unix(short["expires_at"].as_str().unwrap()) - unix(short["created_at"].as_str().unwrap()),
        86_400
    );

    // The key works on the service route, in either header, acting as its owner.
    let r = ping(&demo, "10.20.3.4", &key).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.json(), json!({ "key_id": id, "owner": user }));
    let r = demo
        .get("/api/service/ping")
        .client("10.20.3.4")
        .header("authorization", format!("ApiKey {key}"))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    // Counted against the owner's `api` policy (role `user`: 100 per minute).
    assert!(
        r.header("ratelimit-policy")
            .is_some_and(|p| p.starts_with("\"api\";q=100;w=60")),
        "{r:?}"
    );
    let r = demo
        .get("/api/me")
        .client("10.20.3.4")
        .header("x-api-key", &key)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(
        r.json(),
        json!({ "sub": user, "role": "user", "email": "kim@example.com" })
    );
    let item = demo
        .post("/api/items")
        .client("10.20.3.4")
        .header("x-api-key", &key)
        .json(&json!({ "name": "made with a key" }))
        .send()
        .await;
    assert_eq!(item.status, StatusCode::CREATED, "{item:?}");
    let items = demo
        .get("/api/items")
        .client("10.77.1.2")
        .bearer(&token)
        .send()
        .await
        .json();
    assert_eq!(items, json!([item.json()]));
    let item_id = item.json()["id"].as_str().unwrap().to_owned();
    let r = demo
        .get(&format!("/api/items/{item_id}"))
        .client("10.20.3.4")
        .header("x-api-key", &key)
        .send()
        .await;
    assert_eq!(r.json(), item.json());
    // The bearer token's own routes still work alongside.
    let r = demo
        .get("/api/me")
        .client("10.77.1.2")
        .bearer(&token)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);

    // A valid key from outside its allowlist: 403, without a hint of the list.
    for ip in ["10.21.0.1", "192.0.2.1", "2001:db9::1"] {
        let r = ping(&demo, ip, &key).await;
        let problem = r.assert_problem(StatusCode::FORBIDDEN);
        let text = problem.to_string();
        assert!(
            !text.contains("10.20") && !text.contains("2001:db8"),
            "{text}"
        );
        let r = demo
            .get("/api/me")
            .client(ip)
            .header("x-api-key", &key)
            .send()
            .await;
        r.assert_problem(StatusCode::FORBIDDEN);
    }
    let r = ping(&demo, "2001:db8:0:1::9", &key).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");

    // A bearer token is no key for the service route.
    let r = demo
        .get("/api/service/ping")
        .client("10.20.4.1")
        .bearer(&token)
        .send()
        .await;
    assert_key_refused(&r);
    // Nothing at all: the same.
    assert_key_refused(
        &demo
            .get("/api/service/ping")
            .client("10.20.4.1")
            .send()
            .await,
    );

    // A key in the URL is not read.
    let r = demo
        .get(&format!("/api/service/ping?api_key={key}"))
        .client("10.20.4.2")
        .send()
        .await;
    assert_key_refused(&r);
    let r = demo
        .get(&format!("/api/me?api_key={key}&key={key}"))
        .client("10.20.4.2")
        .send()
        .await;
    r.assert_problem(StatusCode::UNAUTHORIZED);

    // Unknown, forged and malformed keys: the key challenge, on both kinds of route.
    let unknown = format!("api_{}_{}", "A".repeat(22), "B".repeat(42) + "A");
    let mut forged = key.clone();
    forged.replace_range(40..41, if &key[40..41] == "x" { "y" } else { "x" });
    for (n, bad) in [unknown.as_str(), forged.as_str(), "api_nope", "Bearer"]
        .iter()
        .enumerate()
    {
        let ip = format!("10.20.5.{n}");
        assert_key_refused(&ping(&demo, &ip, bad).await);
        let r = demo
            .get("/api/me")
            .client(&ip)
            .header("x-api-key", bad)
            .send()
            .await;
        assert_key_refused(&r);
    }
    // Two keys at once: which one is meant is unknown.
    let r = demo
        .get("/api/service/ping")
        .client("10.20.5.9")
        .header("x-api-key", &key)
        .header("authorization", format!("ApiKey {key}"))
        .send()
        .await;
    assert_key_refused(&r);

    // Keys never manage keys, and never reach the admin routes (even an admin's key).
    let r = demo
        .get("/api/keys")
        .client("10.20.6.1")
        .header("x-api-key", &key)
        .send()
        .await;
    r.assert_problem(StatusCode::UNAUTHORIZED);
    let r = demo
        .post("/api/keys")
        .client("10.20.6.1")
        .header("authorization", format!("ApiKey {key}"))
        .json(&json!({ "name": "escalate", "allowed_ips": ["10.0.0.0/8"] }))
        .send()
        .await;
    r.assert_problem(StatusCode::UNAUTHORIZED);
    let (admin, _) = demo.login("10.77.1.3", ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let (_, admin_key) = make_key(&demo, &admin, "admin's").await;
    let r = demo
        .get("/api/service/ping")
        .client("10.20.6.2")
        .header("x-api-key", &admin_key)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.header("ratelimit-policy")
            .is_some_and(|p| p.starts_with("\"api\";q=10000;w=60")),
        "{r:?}"
    );
    for auth in [
        ("x-api-key", admin_key.clone()),
        ("authorization", format!("ApiKey {admin_key}")),
    ] {
        let r = demo
            .get("/api/admin/stats")
            .client("10.20.6.3")
            .header(auth.0, &auth.1)
            .send()
            .await;
        r.assert_problem(StatusCode::UNAUTHORIZED);
    }
    let r = demo
        .get("/api/admin/stats")
        .client("10.77.1.3")
        .bearer(&admin)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);

    // The list: the caller's own, never a key or a hash; the use is recorded.
    let r = demo
        .get("/api/keys")
        .client("10.77.1.2")
        .bearer(&token)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let text = String::from_utf8_lossy(&r.body).into_owned();
    assert!(
        !text.contains(&key[27..]) && !text.contains("api_"),
        "{text}"
    );
    assert!(!text.contains("hash"), "{text}");
    let list = r.json();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{text}");
    let mut members: Vec<&str> = list[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    members.sort_unstable();
    assert_eq!(
        members,
        [
            "allowed_ips",
            "created_at",
            "expires_at",
            "id",
            "last_used_at",
            "name"
        ]
    );
    // By creation time (to the second: both were made within one here).
    let find = |id: &Value| list.iter().find(|k| &k["id"] == id).expect("listed");
    let used = find(&body["id"]);
    assert_eq!(used["name"], "nightly export");
    assert_eq!(used["allowed_ips"], body["allowed_ips"]);
    assert_eq!(used["created_at"], body["created_at"]);
    assert_eq!(used["expires_at"], body["expires_at"]);
    assert!((unix(used["last_used_at"].as_str().unwrap()) - now()).abs() < 60);
    assert_eq!(find(&short["id"])["last_used_at"], Value::Null);
    let admins = demo
        .get("/api/keys")
        .client("10.77.1.3")
        .bearer(&admin)
        .send()
        .await
        .json();
    assert_eq!(admins.as_array().unwrap().len(), 1);

    // The secrets never reach the logs.
    let logs = demo.stderr().join("\n");
    for secret in [&key, &admin_key] {
        assert!(!logs.contains(&secret[27..]), "a key's secret in the logs");
    }
}

#[tokio::test]
async fn rotation_revocation_and_ownership() {
    let demo = Demo::start(&[]).await;
    let (_, alice) = account(&demo, "10.78.1.1", "alice@example.com").await;
    let (_, bob) = account(&demo, "10.78.1.2", "bob@example.com").await;
    let (id, old) = make_key(&demo, &alice, "billing").await;

    // Rotation: a new key for the same record; the old one keeps working (24 h).
    let r = demo
        .post(&format!("/api/keys/{id}/rotate"))
        .client("10.78.1.1")
        .bearer(&alice)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let rotated = r.json();
    assert_eq!(rotated["id"], id.as_str());
    assert_eq!(rotated["name"], "billing");
    assert_eq!(rotated["allowed_ips"], json!(["10.20.0.0/16"]));
    let new = rotated["key"].as_str().unwrap().to_owned();
    assert_ne!(new, old);
    assert!(new.starts_with("api_") && new.len() == 70);
    for key in [&old, &new] {
        let r = ping(&demo, "10.20.1.1", key).await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        assert_eq!(r.json()["key_id"], id.as_str());
    }
    let list = demo
        .get("/api/keys")
        .client("10.78.1.1")
        .bearer(&alice)
        .send()
        .await
        .json();
    assert_eq!(list.as_array().unwrap().len(), 1);

    // Another account's key is not found, like an unknown one; Bob sees none of them.
    let unknown = format!("apikey_{}", "AAAAAAAAAAAAAAAAAAAAAA");
    for path in [
        format!("/api/keys/{id}/rotate"),
        format!("/api/keys/{unknown}/rotate"),
    ] {
        let r = demo
            .post(&path)
            .client("10.78.1.2")
            .bearer(&bob)
            .send()
            .await;
        r.assert_problem(StatusCode::NOT_FOUND);
    }
    let mut bodies = Vec::new();
    for target in [&id, &unknown] {
        let r = demo
            .delete(&format!("/api/keys/{target}"))
            .client("10.78.1.2")
            .bearer(&bob)
            .send()
            .await;
        r.assert_problem(StatusCode::NOT_FOUND);
        bodies.push(r.body_without_request_id());
    }
    assert_eq!(bodies[0], bodies[1], "another's key and no key look alike");
    let r = demo
        .get("/api/keys")
        .client("10.78.1.2")
        .bearer(&bob)
        .send()
        .await;
    assert_eq!(r.json(), json!([]));
    assert_eq!(ping(&demo, "10.20.1.1", &new).await.status, StatusCode::OK);

    // Malformed ids: 400, whoever asks.
    let raw = &id[7..];
    let mut plus = raw.to_owned();
    plus.replace_range(0..1, "+");
    for bad in [
        "nope".to_owned(),
        raw.to_owned(),
        "apikey_".to_owned(),
        format!("apikey_{}", &raw[1..]),
        format!("apikey_{raw}A"),
        format!("apikey_{plus}"),
        format!("APIKEY_{raw}"),
        format!("item_{raw}"),
        "apikey_%FF%FE".to_owned(),
        "apikey_'%20OR%201=1%20--".to_owned(),
    ] {
        let r = demo
            .delete(&format!("/api/keys/{bad}"))
            .client("10.78.1.1")
            .bearer(&alice)
            .send()
            .await;
        r.assert_problem(StatusCode::BAD_REQUEST);
        let r = demo
            .post(&format!("/api/keys/{bad}/rotate"))
            .client("10.78.1.1")
            .bearer(&alice)
            .send()
            .await;
        r.assert_problem(StatusCode::BAD_REQUEST);
    }
    // Without a bearer token: 401 (the routes are bearer only).
    let r = demo
        .delete(&format!("/api/keys/{id}"))
        .client("10.78.2.1")
        .send()
        .await;
    r.assert_problem(StatusCode::UNAUTHORIZED);

    // Revocation: 204, and both secrets are refused on the next request.
    let r = demo
        .delete(&format!("/api/keys/{id}"))
        .client("10.78.1.1")
        .bearer(&alice)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{r:?}");
    assert!(r.body.is_empty());
    assert_key_refused(&ping(&demo, "10.20.1.2", &new).await);
    assert_key_refused(&ping(&demo, "10.20.1.3", &old).await);
    let r = demo
        .get("/api/me")
        .client("10.20.1.4")
        .header("x-api-key", &new)
        .send()
        .await;
    assert_key_refused(&r);
    // Gone: not listed, not rotatable, not deletable again.
    for r in [
        demo.delete(&format!("/api/keys/{id}"))
            .client("10.78.1.1")
            .bearer(&alice)
            .send()
            .await,
        demo.post(&format!("/api/keys/{id}/rotate"))
            .client("10.78.1.1")
            .bearer(&alice)
            .send()
            .await,
    ] {
        r.assert_problem(StatusCode::NOT_FOUND);
    }
    let r = demo
        .get("/api/keys")
        .client("10.78.1.1")
        .bearer(&alice)
        .send()
        .await;
    assert_eq!(r.json(), json!([]));
}

#[tokio::test]
async fn invalid_keys_are_422s() {
    let demo = Demo::start(&[]).await;
    let (_, token) = account(&demo, "10.79.1.1", "val@example.com").await;
    let cidrs: Vec<String> = (0..33).map(|n| format!("10.{n}.0.0/16")).collect();
    let cases: Vec<(Value, &str)> = vec![
        (json!({ "name": "", "allowed_ips": ["10.0.0.0/8"] }), "name"),
        (
            json!({ "name": "x".repeat(101), "allowed_ips": ["10.0.0.0/8"] }),
            "name",
        ),
        (
            json!({ "name": "tab\there", "allowed_ips": ["10.0.0.0/8"] }),
            "name",
        ),
        (json!({ "name": "k", "allowed_ips": [] }), "allowed_ips"),
        (json!({ "name": "k", "allowed_ips": cidrs }), "allowed_ips"),
        (
            json!({ "name": "k", "allowed_ips": ["0.0.0.0/0"] }),
            "allowed_ips",
        ),
        (
            json!({ "name": "k", "allowed_ips": ["::/0"] }),
            "allowed_ips",
        ),
        (
            json!({ "name": "k", "allowed_ips": ["0.0.0.0/1", "128.0.0.0/1"] }),
            "allowed_ips",
        ),
        (
            json!({ "name": "k", "allowed_ips": ["::ffff:0.0.0.0/96"] }),
            "allowed_ips",
        ),
        (
            json!({ "name": "k", "allowed_ips": ["10.0.0.0/8", "1.2.3.4/0"] }),
            "allowed_ips",
        ),
        (
            json!({ "name": "k", "allowed_ips": ["10.0.0.0/33"] }),
            "allowed_ips",
        ),
        (
            json!({ "name": "k", "allowed_ips": ["localhost"] }),
            "allowed_ips",
        ),
        (
            json!({ "name": "k", "allowed_ips": ["' OR 1=1 --"] }),
            "allowed_ips",
        ),
        (json!({ "name": "k", "allowed_ips": [42] }), "allowed_ips"),
        (
            json!({ "name": "k", "allowed_ips": "10.0.0.0/8" }),
            "allowed_ips",
        ),
        (
            json!({ "name": "k", "allowed_ips": ["10.0.0.0/8"], "expires_in_days": 0 }),
            "expires_in_days",
        ),
        (
            json!({ "name": "k", "allowed_ips": ["10.0.0.0/8"], "expires_in_days": 366 }),
            "expires_in_days",
        ),
        (
            json!({ "name": "k", "allowed_ips": ["10.0.0.0/8"], "expires_in_days": -1 }),
            "expires_in_days",
        ),
        (
            json!({ "name": "k", "allowed_ips": ["10.0.0.0/8"], "expires_in_days": "30" }),
            "expires_in_days",
        ),
        (
            json!({ "name": "k", "allowed_ips": ["10.0.0.0/8"], "expires_in_days": 1.5 }),
            "expires_in_days",
        ),
        (json!({ "allowed_ips": ["10.0.0.0/8"] }), "name"),
        (json!({ "name": "k" }), "allowed_ips"),
    ];
    for (body, member) in cases {
        let r = create(&demo, &token, &body).await;
        let problem = r.assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, [member], "{body}: {problem}");
    }
    // Several at once.
    let r = create(
        &demo,
        &token,
        &json!({ "name": "", "allowed_ips": ["::/0"], "expires_in_days": 400 }),
    )
    .await;
    let problem = r.assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["errors"].as_array().unwrap().len(), 3, "{problem}");
    // An unknown member is malformed (400), like everywhere else.
    let r = create(
        &demo,
        &token,
        &json!({ "name": "k", "allowed_ips": ["10.0.0.0/8"], "role": "admin" }),
    )
    .await;
    r.assert_problem(StatusCode::BAD_REQUEST);
    // The bounds themselves are fine.
    let r = create(
        &demo,
        &token,
        &json!({
            "name": "x".repeat(100),
            "allowed_ips": cidrs[..32],
            "expires_in_days": 365,
        }),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    assert_eq!(r.json()["allowed_ips"].as_array().unwrap().len(), 32);
    // Nothing was made by the refused ones.
    let list = demo
        .get("/api/keys")
        .client("10.79.1.1")
        .bearer(&token)
        .send()
        .await
        .json();
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[cfg(feature = "redis")]
#[tokio::test]
async fn two_processes_share_keys_and_revocations() {
    let Some(url) = crate::common::redis_url("two_processes_share_keys_and_revocations").await
    else {
        return;
    };
    let (a, b) = crate::redis::pair(&url, &[]).await;
    let (user, token) = account(&a, "10.80.1.1", "redis-keys@example.com").await;
    let (id, key) = make_key(&a, &token, "shared").await;

    // Made on A: works on B, listed on B.
    let r = ping(&b, "10.20.9.1", &key).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.json(), json!({ "key_id": id, "owner": user }));
    let r = b
        .get("/api/me")
        .client("10.20.9.1")
        .header("x-api-key", &key)
        .send()
        .await;
    assert_eq!(r.json()["sub"], user.as_str());
    let list = b
        .get("/api/keys")
        .client("10.80.1.1")
        .bearer(&token)
        .send()
        .await
        .json();
    assert_eq!(list[0]["id"], id.as_str());
    // The same id with another (canonical) last character of secret.
    let last = if key.ends_with('A') { 'E' } else { 'A' };
    let wrong = format!("{}{last}", &key[..69]);
    assert_key_refused(&ping(&b, "10.20.9.2", &wrong).await);

    // Rotated on B: both work on A.
    let r = b
        .post(&format!("/api/keys/{id}/rotate"))
        .client("10.80.1.1")
        .bearer(&token)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let new = r.json()["key"].as_str().unwrap().to_owned();
    for k in [&key, &new] {
        assert_eq!(ping(&a, "10.20.9.3", k).await.status, StatusCode::OK);
    }

    // Revoked on A: refused on B's next request.
    let r = a
        .delete(&format!("/api/keys/{id}"))
        .client("10.80.1.1")
        .bearer(&token)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{r:?}");
    assert_key_refused(&ping(&b, "10.20.9.4", &new).await);
    assert_key_refused(&ping(&b, "10.20.9.5", &key).await);
    let r = b
        .get("/api/keys")
        .client("10.80.1.1")
        .bearer(&token)
        .send()
        .await;
    assert_eq!(r.json(), json!([]));
    for demo in [&a, &b] {
        let logs = demo.stderr().join("\n");
        assert!(!logs.contains(&key[27..]) && !logs.contains(&new[27..]));
    }
}
