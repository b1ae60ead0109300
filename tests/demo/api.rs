//! End-to-end tests of the demo API (`examples/demo_api`, contract in DEMO_API.md): every
//! route's success and failure cases, hostile inputs, headers on every answer, the log
//! lines, and configuration errors. Each test starts its own demo binary on 127.0.0.1:0 and
//! talks to it with hyper-util's client.

use http::{Method, StatusCode};
use serde_json::json;

use crate::common::{
    ADMIN_EMAIL, ADMIN_PASSWORD, Demo, Resp, b64url_encode, jwt_segment, start_failure,
};

const PASSWORD: &str = "correct horse battery";

#[tokio::test]
async fn health_jwks_and_the_headers_of_every_answer() {
    let demo = Demo::start(&[]).await;
    let r = demo.get("/health").send().await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json(), json!({ "status": "ok" }));
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    uuid::Uuid::parse_str(r.header("x-request-id").unwrap()).unwrap();
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert!(r.header("content-security-policy").is_some());
    assert_eq!(
        r.header("strict-transport-security"),
        None,
        "no HSTS over plain http"
    );
    assert_eq!(r.header("ratelimit-policy"), Some("\"default\";q=60;w=60"));
    assert!(
        r.header("ratelimit")
            .unwrap()
            .starts_with("\"default\";r=59;t=")
    );

    // HTTPS as told by the trusted proxy: HSTS.
    let r = demo
        .get("/health")
        .header("x-forwarded-proto", "https")
        .send()
        .await;
    assert!(
        r.header("strict-transport-security")
            .is_some_and(|v| v.contains("max-age=")),
        "{r:?}"
    );

    // JWKS: public parts only, kid + alg + use.
    let r = demo.get("/.well-known/jwks.json").send().await;
    assert_eq!(r.status, StatusCode::OK);
    let jwks = r.json();
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    for key in keys {
        assert!(key["kid"].as_str().is_some_and(|k| !k.is_empty()));
        assert_eq!(key["alg"], "RS256");
        assert_eq!(key["use"], "sig");
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(key.get(private).is_none(), "no private member {private}");
        }
    }

    // Unknown routes and methods: problems, with every header too.
    let r = demo.get("/nope").send().await;
    r.assert_problem(StatusCode::NOT_FOUND);
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    demo.call(Method::DELETE, "/health")
        .send()
        .await
        .assert_problem(StatusCode::METHOD_NOT_ALLOWED);

    // A client's own request id is echoed (when well-formed).
    let r = demo
        .get("/health")
        .header("x-request-id", "client-chosen-id-1")
        .send()
        .await;
    assert!(r.header("x-request-id").is_some());
}

#[tokio::test]
async fn register_validates_its_input() {
    let demo = Demo::start(&[]).await;
    let ip = "198.51.100.1";
    let r = demo
        .post("/auth/register")
        .client(ip)
        .json(&json!({ "email": "  Alice@Example.COM ", "password": PASSWORD }))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let body = r.json();
    assert_eq!(body["email"], "alice@example.com");
    let id = body["id"].as_str().unwrap();
    assert!(id.starts_with("user_") && id.len() == 37, "{id}");
    assert!(
        !String::from_utf8_lossy(&r.body).contains("password"),
        "never echo the password or its hash"
    );

    // Taken, whatever the case.
    demo.post("/auth/register")
        .client(ip)
        .json(&json!({ "email": "ALICE@example.com", "password": PASSWORD }))
        .send()
        .await
        .assert_problem(StatusCode::CONFLICT);

    // 422s, one IP per few calls so the `auth` limit (10/min/IP) is not what answers.
    let cases: Vec<(serde_json::Value, Vec<&str>)> = vec![
        (
            json!({ "email": "not-an-email", "password": PASSWORD }),
            vec!["email"],
        ),
        (
            json!({ "email": "a@b", "password": PASSWORD }),
            vec!["email"],
        ),
        (
            json!({ "email": "a@exämple.com", "password": PASSWORD }),
            vec!["email"],
        ),
        (
            json!({ "email": format!("{}@example.com", "a".repeat(250)), "password": PASSWORD }),
            vec!["email"],
        ),
        (
            json!({ "email": "bob@example.com", "password": "short" }),
            vec!["password"],
        ),
        (
            json!({ "email": "bob@example.com", "password": "x".repeat(129) }),
            vec!["password"],
        ),
        (
            json!({ "email": "", "password": "" }),
            vec!["email", "password"],
        ),
        // A type error or a missing member names the member, not `body`.
        (json!({ "email": 5, "password": PASSWORD }), vec!["email"]),
        (
            json!({ "email": null, "password": PASSWORD }),
            vec!["email"],
        ),
        (
            json!({ "email": "bob@example.com", "password": [1] }),
            vec!["password"],
        ),
        (json!({ "email": "bob@example.com" }), vec!["password"]),
        (json!({}), vec!["email"]),
    ];
    for (n, (body, fields)) in cases.into_iter().enumerate() {
        let r = demo
            .post("/auth/register")
            .client(&format!("198.51.100.{}", 10 + n))
            .json(&body)
            .send()
            .await;
        let problem = r.assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
        let got: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                assert!(e["message"].is_string());
                e["field"].as_str().unwrap()
            })
            .collect();
        assert_eq!(got, fields, "{body}");
    }
    // 12 and 128 characters are fine (characters, not bytes).
    demo.register("198.51.100.30", "twelve@example.com", "123456789012")
        .await;
    demo.register("198.51.100.30", "long@example.com", &"é".repeat(128))
        .await;

    // Media type, size and syntax.
    let ip = "198.51.100.40";
    let raw = |ct: Option<&'static str>, body: Vec<u8>| {
        let mut call = demo.post("/auth/register").client(ip);
        if let Some(ct) = ct {
            call = call.header("content-type", ct);
        }
        call.body(body)
    };
    let good = br#"{"email":"carol@example.com","password":"correct horse battery"}"#.to_vec();
    raw(Some("text/plain"), good.clone())
        .send()
        .await
        .assert_problem(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    raw(None, good.clone())
        .send()
        .await
        .assert_problem(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    raw(Some("application/json; charset=latin1"), good.clone())
        .send()
        .await
        .assert_problem(StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let mut big =
        br#"{"email":"carol@example.com","password":"correct horse battery","x":""#.to_vec();
    big.extend(std::iter::repeat_n(b'a', 17_000));
    big.extend(br#""}"#);
    raw(Some("application/json"), big)
        .send()
        .await
        .assert_problem(StatusCode::PAYLOAD_TOO_LARGE);
    raw(Some("application/json"), b"{\"email\": ".to_vec())
        .send()
        .await
        .assert_problem(StatusCode::BAD_REQUEST);

    let ip = "198.51.100.41";
    let raw = |body: &[u8]| {
        demo.post("/auth/register")
            .client(ip)
            .header("content-type", "application/json")
            .body(body.to_vec())
    };
    raw(br#"{"email":"a@example.com","email":"b@example.com","password":"correct horse battery"}"#)
        .send()
        .await
        .assert_problem(StatusCode::BAD_REQUEST);
    raw(br#"{"email":"a@example.com","password":"correct horse battery","admin":true}"#)
        .send()
        .await
        .assert_problem(StatusCode::BAD_REQUEST);
    raw(b"\xff\xfe{}")
        .send()
        .await
        .assert_problem(StatusCode::BAD_REQUEST);
    raw(b"[]")
        .send()
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY);

    let r = demo
        .post("/auth/register")
        .client("198.51.100.42")
        .header("content-type", "application/json; charset=utf-8")
        .body(good)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
}

#[tokio::test]
async fn login_issues_tokens_and_fails_identically() {
    let demo = Demo::start(&[]).await;
    let ip = "203.0.113.5";
    let id = demo.register(ip, "dave@example.com", PASSWORD).await;
    let r = demo
        .post("/auth/login")
        .client(ip)
        .json(&json!({ "email": "Dave@Example.com", "password": PASSWORD }))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let body = r.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body.as_object().unwrap().len(), 3, "{body}");
    let set_cookie = r.header("set-cookie").unwrap();
    for part in [
        "refresh_token=rt_",
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/auth",
        "Max-Age=604800",
    ] {
        assert!(set_cookie.contains(part), "{set_cookie}");
    }
    let token = body["access_token"].as_str().unwrap();
    let header = jwt_segment(token, 0);
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(header["alg"], "RS256");
    let jwks = demo.get("/.well-known/jwks.json").send().await.json();
    assert_eq!(header["kid"], jwks["keys"][0]["kid"]);
    let claims = jwt_segment(token, 1);
    assert_eq!(claims["sub"], id.as_str());
    assert_eq!(claims["role"], "user");
    assert_eq!(claims["iss"], "tower-shield-demo");
    assert_eq!(claims["aud"], "tower-shield-demo-api");
    assert!(claims["jti"].is_string() && claims["nbf"].is_u64() && claims["iat"].is_u64());
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        900
    );

    // Unknown email and wrong password: the same answer but for the request id.
    let unknown = demo
        .post("/auth/login")
        .client("203.0.113.6")
        .json(&json!({ "email": "nobody@example.com", "password": PASSWORD }))
        .send()
        .await;
    let wrong = demo
        .post("/auth/login")
        .client("203.0.113.7")
        .json(&json!({ "email": "dave@example.com", "password": "not the password" }))
        .send()
        .await;
    unknown.assert_problem(StatusCode::UNAUTHORIZED);
    wrong.assert_problem(StatusCode::UNAUTHORIZED);
    assert_eq!(
        unknown.body_without_request_id(),
        wrong.body_without_request_id()
    );
    let comparable = |r: &Resp| {
        let mut h: Vec<(String, String)> = r
            .headers
            .iter()
            .filter(|(n, _)| !matches!(n.as_str(), "x-request-id" | "date"))
            .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
            .collect();
        h.sort();
        h
    };
    assert_eq!(comparable(&unknown), comparable(&wrong));
    assert_eq!(
        unknown.header("www-authenticate"),
        Some("Bearer realm=\"tower-shield-demo\"")
    );
}

#[tokio::test]
async fn api_me_and_bearer_refusals() {
    let demo = Demo::start(&[]).await;
    let ip = "192.0.2.10";
    let id = demo.register(ip, "erin@example.com", PASSWORD).await;
    let (token, _) = demo.login(ip, "erin@example.com", PASSWORD).await;
    let r = demo.get("/api/me").client(ip).bearer(&token).send().await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(
        r.json(),
        json!({ "sub": id, "role": "user", "email": "erin@example.com" })
    );
    assert!(
        r.header("ratelimit-policy")
            .unwrap()
            .contains("\"api\";q=100;w=60"),
        "{r:?}"
    );

    let r = demo.get("/api/me").client(ip).send().await;
    r.assert_problem(StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"tower-shield-demo\"")
    );
    let r = demo
        .get("/api/me")
        .client(ip)
        .bearer("not.a.token")
        .send()
        .await;
    r.assert_problem(StatusCode::UNAUTHORIZED);
    assert!(
        r.header("www-authenticate")
            .unwrap()
            .starts_with("Bearer realm=\"tower-shield-demo\", error=\"invalid_token\""),
        "{r:?}"
    );
    // Hostile tokens: alg none, a 10 KB token, control bytes.
    let none = format!(
        "{}.{}.",
        b64url_encode(br#"{"alg":"none","typ":"at+jwt"}"#),
        token.split('.').nth(1).unwrap()
    );
    for bad in [none, "a".repeat(10 * 1024), format!("{token}x")] {
        demo.get("/api/me")
            .client("192.0.2.11")
            .bearer(&bad)
            .send()
            .await
            .assert_problem(StatusCode::UNAUTHORIZED);
    }
    // A token with its signature from another token.
    let mut parts: Vec<&str> = token.split('.').collect();
    let (other, _) = demo.login("192.0.2.12", ADMIN_EMAIL, ADMIN_PASSWORD).await;
    parts[2] = other.split('.').nth(2).unwrap();
    demo.get("/api/me")
        .client("192.0.2.12")
        .bearer(&parts.join("."))
        .send()
        .await
        .assert_problem(StatusCode::UNAUTHORIZED);

    // Request headers over 16 KiB: 431; 10 KB of headers are fine.
    let r = demo
        .get("/health")
        .client("192.0.2.13")
        .header("x-padding", "a".repeat(17 * 1024))
        .send()
        .await;
    r.assert_problem(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    let r = demo
        .get("/health")
        .client("192.0.2.13")
        .header("x-padding", "a".repeat(10 * 1024))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // The cap comes before any layer that parses headers: a preflight with 60 KB of
    // Access-Control-Request-Headers is a 431, not a CORS 403; so is a 60 KB Origin.
    let r = demo
        .call(http::Method::OPTIONS, "/api/items")
        .client("192.0.2.13")
        .header("origin", "http://localhost:5173")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "x-a,".repeat(12 * 1024))
        .send()
        .await;
    r.assert_problem(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert!(r.header("x-request-id").is_some(), "{r:?}");
    let r = demo
        .get("/health")
        .client("192.0.2.13")
        .header(
            "origin",
            format!("http://{}.example", "a".repeat(60 * 1024)),
        )
        .send()
        .await;
    r.assert_problem(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    // Many small header lines: hyper itself refuses more than 100 (a bodiless 431, before
    // any layer runs); 90 are fine.
    let mut call = demo.get("/health").client("192.0.2.14");
    for n in 0..150 {
        call = call.header(format!("x-h{n}"), "v");
    }
    assert_eq!(
        call.send().await.status,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    let mut call = demo.get("/health").client("192.0.2.14");
    for n in 0..90 {
        call = call.header(format!("x-h{n}"), "v");
    }
    assert_eq!(call.send().await.status, StatusCode::OK);

    // The log: one line per request with method, path, status and request id; never a
    // token or password.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let log = demo.stderr().join("\n");
    assert!(log.contains("method=GET path=/api/me status=200"), "{log}");
    assert!(
        log.contains("method=POST path=/auth/login status=200"),
        "{log}"
    );
    assert!(!log.contains(&token[..40]), "a token in the log");
    assert!(!log.contains(PASSWORD), "a password in the log");
    assert!(!log.contains("rt_"), "a refresh token in the log");
}

#[tokio::test]
async fn items_are_owned() {
    let demo = Demo::start(&[]).await;
    let (a, b) = ("192.0.2.20", "192.0.2.21");
    let alice = demo.register(a, "alice@example.com", PASSWORD).await;
    demo.register(b, "bob@example.com", PASSWORD).await;
    let (ta, _) = demo.login(a, "alice@example.com", PASSWORD).await;
    let (tb, _) = demo.login(b, "bob@example.com", PASSWORD).await;

    let r = demo
        .post("/api/items")
        .client(a)
        .bearer(&ta)
        .json(&json!({ "name": "alice's notebook" }))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
    let item = r.json();
    let item_id = item["id"].as_str().unwrap().to_owned();
    assert!(item_id.starts_with("item_") && item_id.len() == 37);
    assert_eq!(item["name"], "alice's notebook");
    assert_eq!(item["owner"], alice.as_str());
    demo.post("/api/items")
        .client(a)
        .bearer(&ta)
        .json(&json!({ "name": "second" }))
        .send()
        .await;

    for bad in [
        json!({ "name": "" }),
        json!({ "name": "x".repeat(201) }),
        json!({ "name": 3 }),
        json!({}),
    ] {
        demo.post("/api/items")
            .client(a)
            .bearer(&ta)
            .json(&bad)
            .send()
            .await
            .assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
    }
    let r = demo
        .post("/api/items")
        .client(a)
        .bearer(&ta)
        .json(&json!({ "name": "ü".repeat(200) }))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "200 characters are fine");

    let list = demo.get("/api/items").client(a).bearer(&ta).send().await;
    assert_eq!(list.status, StatusCode::OK);
    let names: Vec<String> = list
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["alice's notebook", "second", &"ü".repeat(200)]);
    let list = demo.get("/api/items").client(b).bearer(&tb).send().await;
    assert_eq!(list.json(), json!([]));

    let own = demo
        .get(&format!("/api/items/{item_id}"))
        .client(a)
        .bearer(&ta)
        .send()
        .await;
    assert_eq!(own.status, StatusCode::OK);
    assert_eq!(own.json(), item);

    // Bob asking for Alice's item: exactly like a missing one.
    let theirs = demo
        .get(&format!("/api/items/{item_id}"))
        .client(b)
        .bearer(&tb)
        .send()
        .await;
    let missing = demo
        .get(&format!("/api/items/item_{}", "0".repeat(32)))
        .client(b)
        .bearer(&tb)
        .send()
        .await;
    theirs.assert_problem(StatusCode::NOT_FOUND);
    missing.assert_problem(StatusCode::NOT_FOUND);
    assert_eq!(
        theirs.body_without_request_id(),
        missing.body_without_request_id()
    );

    for bad in [
        "nope",
        "%FF",
        "item_%00",
        "item_123",
        &format!("item_{}", "A".repeat(32)),
        &format!("user_{}", "0".repeat(32)),
    ] {
        demo.get(&format!("/api/items/{bad}"))
            .client(a)
            .bearer(&ta)
            .send()
            .await
            .assert_problem(StatusCode::BAD_REQUEST);
    }
    // Without a token: 401 before anything.
    demo.get(&format!("/api/items/{item_id}"))
        .client("192.0.2.22")
        .send()
        .await
        .assert_problem(StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn admin_routes_need_the_admin_role() {
    let demo = Demo::start(&[]).await;
    let ip = "192.0.2.30";
    let user = demo.register(ip, "frank@example.com", PASSWORD).await;
    let (tu, _) = demo.login(ip, "frank@example.com", PASSWORD).await;
    let (ta, _) = demo.login(ip, ADMIN_EMAIL, ADMIN_PASSWORD).await;

    let r = demo
        .get("/api/admin/stats")
        .client(ip)
        .bearer(&tu)
        .send()
        .await;
    r.assert_problem(StatusCode::FORBIDDEN);
    assert_eq!(
        r.header("www-authenticate"),
        Some("Bearer realm=\"tower-shield-demo\", error=\"insufficient_scope\"")
    );
    demo.put(&format!("/api/admin/users/{user}/role"))
        .client(ip)
        .bearer(&tu)
        .json(&json!({ "role": "admin" }))
        .send()
        .await
        .assert_problem(StatusCode::FORBIDDEN);
    demo.get("/api/admin/stats")
        .client(ip)
        .send()
        .await
        .assert_problem(StatusCode::UNAUTHORIZED);

    demo.post("/api/items")
        .client(ip)
        .bearer(&tu)
        .json(&json!({ "name": "x" }))
        .send()
        .await;
    let r = demo
        .get("/api/admin/stats")
        .client(ip)
        .bearer(&ta)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.json(), json!({ "users": 2, "items": 1 }));

    let r = demo
        .put(&format!("/api/admin/users/{user}/role"))
        .client(ip)
        .bearer(&ta)
        .json(&json!({ "role": "premium" }))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(
        r.json(),
        json!({ "id": user, "email": "frank@example.com", "role": "premium" })
    );
    demo.put(&format!("/api/admin/users/{user}/role"))
        .client(ip)
        .bearer(&ta)
        .json(&json!({ "role": "root" }))
        .send()
        .await
        .assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
    // JSON type errors name the member.
    for body in [json!({ "role": null }), json!({ "role": 1 }), json!({})] {
        let problem = demo
            .put(&format!("/api/admin/users/{user}/role"))
            .client(ip)
            .bearer(&ta)
            .json(&body)
            .send()
            .await
            .assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(problem["errors"][0]["field"], "role", "{body}");
    }
    demo.put("/api/admin/users/bob/role")
        .client(ip)
        .bearer(&ta)
        .json(&json!({ "role": "user" }))
        .send()
        .await
        .assert_problem(StatusCode::BAD_REQUEST);
    demo.put(&format!("/api/admin/users/user_{}/role", "0".repeat(32)))
        .client(ip)
        .bearer(&ta)
        .json(&json!({ "role": "user" }))
        .send()
        .await
        .assert_problem(StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn cors_preflight_and_headers() {
    let demo = Demo::start(&[("CORS_ALLOWED_ORIGINS", "https://app.example.com")]).await;
    let r = demo
        .call(Method::OPTIONS, "/api/me")
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{r:?}");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(r.header("access-control-max-age"), Some("600"));
    let methods = r
        .header("access-control-allow-methods")
        .unwrap()
        .to_ascii_uppercase();
    for m in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
        assert!(methods.contains(m), "{methods}");
    }
    let r = demo
        .call(Method::OPTIONS, "/api/me")
        .header("origin", "https://evil.example.com")
        .header("access-control-request-method", "GET")
        .send()
        .await;
    assert!(r.status.is_client_error(), "{r:?}");
    assert_eq!(r.header("access-control-allow-origin"), None);

    // A refusal still carries the CORS headers, so the page can read it.
    let r = demo
        .get("/api/me")
        .header("origin", "https://app.example.com")
        .send()
        .await;
    r.assert_problem(StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    let exposed = r
        .header("access-control-expose-headers")
        .unwrap()
        .to_ascii_lowercase();
    for h in [
        "x-request-id",
        "ratelimit",
        "ratelimit-policy",
        "retry-after",
    ] {
        assert!(exposed.contains(h), "{exposed}");
    }
}

#[tokio::test]
async fn bad_configuration_exits_2_naming_the_variable() {
    let dir = std::env::temp_dir().join(format!("ts-demo-keys-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let openssl = |args: &[&str]| {
        std::process::Command::new("openssl")
            .args(args)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let ed = dir.join("ed25519.pem");
    let rsa1024 = dir.join("rsa1024.pem");
    let have_openssl = openssl(&[
        "genpkey",
        "-algorithm",
        "ed25519",
        "-out",
        ed.to_str().unwrap(),
    ]) && openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:1024",
        "-out",
        rsa1024.to_str().unwrap(),
    ]);
    // An RSA key of the right size whose public exponent is 3.
    let rsa_e3 = dir.join("rsa-e3.pem");
    let have_e3 = have_openssl
        && openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-pkeyopt",
            "rsa_keygen_pubexp:3",
            "-out",
            rsa_e3.to_str().unwrap(),
        ]);
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not a key").unwrap();

    let mut cases: Vec<(Vec<(&str, String)>, &str)> = vec![
        (
            vec![("CORS_ALLOWED_ORIGINS", "*".into())],
            "CORS_ALLOWED_ORIGINS",
        ),
        (
            vec![(
                "CORS_ALLOWED_ORIGINS",
                "https://a.example.com,,https://b.example.com".into(),
            )],
            "CORS_ALLOWED_ORIGINS",
        ),
        (
            vec![("CORS_ALLOWED_ORIGINS", "not an origin".into())],
            "CORS_ALLOWED_ORIGINS",
        ),
        (
            vec![("CORS_ALLOWED_ORIGINS", "https://*.example.com".into())],
            "CORS_ALLOWED_ORIGINS",
        ),
        (vec![("JWT_ALGORITHM", "HS256".into())], "JWT_ALGORITHM"),
        (
            vec![("JWT_PRIVATE_KEY_FILE", garbage.display().to_string())],
            "JWT_PRIVATE_KEY_FILE",
        ),
        (
            vec![(
                "JWT_PRIVATE_KEY_FILE",
                dir.join("missing.pem").display().to_string(),
            )],
            "JWT_PRIVATE_KEY_FILE",
        ),
        (vec![("JWT_ISSUER", "".into())], "JWT_ISSUER"),
        (vec![("JWT_AUDIENCE", "  ".into())], "JWT_AUDIENCE"),
        (
            vec![("ACCESS_TOKEN_TTL_SECS", "0".into())],
            "ACCESS_TOKEN_TTL_SECS",
        ),
        (
            vec![("ACCESS_TOKEN_TTL_SECS", "3601".into())],
            "ACCESS_TOKEN_TTL_SECS",
        ),
        (
            vec![("ACCESS_TOKEN_TTL_SECS", "ten".into())],
            "ACCESS_TOKEN_TTL_SECS",
        ),
        (
            vec![
                ("ACCESS_TOKEN_TTL_SECS", "900".into()),
                ("REFRESH_TOKEN_TTL_SECS", "600".into()),
            ],
            "REFRESH_TOKEN_TTL_SECS",
        ),
        (
            vec![("REFRESH_TOKEN_TTL_SECS", "7776001".into())],
            "REFRESH_TOKEN_TTL_SECS",
        ),
        (
            vec![("REFRESH_REUSE_GRACE_SECS", "61".into())],
            "REFRESH_REUSE_GRACE_SECS",
        ),
        (
            vec![("TRUSTED_PROXIES", "0.0.0.0/0".into())],
            "TRUSTED_PROXIES",
        ),
        (vec![("TRUSTED_PROXIES", "::/0".into())], "TRUSTED_PROXIES"),
        (
            vec![("TRUSTED_PROXIES", "10.0.0.0/8,".into())],
            "TRUSTED_PROXIES",
        ),
        (
            vec![("TRUSTED_PROXY_HEADER", "x-real-ip".into())],
            "TRUSTED_PROXY_HEADER",
        ),
        (
            vec![("TRUSTED_PROXY_HEADER", "x-forwarded-for,forwarded".into())],
            "TRUSTED_PROXY_HEADER",
        ),
        (vec![("STORE_URL", "postgres://x".into())], "STORE_URL"),
        (
            vec![("STORE_URL", "redis://127.0.0.1:1/".into())],
            "STORE_URL",
        ),
        (vec![("BIND_ADDR", "nowhere".into())], "BIND_ADDR"),
        (vec![("COOKIE_SECURE", "maybe".into())], "COOKIE_SECURE"),
        (
            vec![("DEMO_ADMIN_EMAIL", "admin@example.com".into())],
            "DEMO_ADMIN_PASSWORD",
        ),
    ];
    if have_openssl {
        // An Ed25519 key while JWT_ALGORITHM says RS256 (the default), and an RSA key under
        // 2048 bits.
        cases.push((
            vec![("JWT_PRIVATE_KEY_FILE", ed.display().to_string())],
            "JWT_PRIVATE_KEY_FILE",
        ));
        cases.push((
            vec![
                ("JWT_PRIVATE_KEY_FILE", ed.display().to_string()),
                ("JWT_ALGORITHM", "ES256".into()),
            ],
            "JWT_PRIVATE_KEY_FILE",
        ));
        cases.push((
            vec![("JWT_PRIVATE_KEY_FILE", rsa1024.display().to_string())],
            "JWT_PRIVATE_KEY_FILE",
        ));
        if have_e3 {
            cases.push((
                vec![("JWT_PRIVATE_KEY_FILE", rsa_e3.display().to_string())],
                "JWT_PRIVATE_KEY_FILE",
            ));
        } else {
            println!("openssl cannot make an e = 3 RSA key: that case is skipped");
        }
    } else {
        println!("openssl not found: the key-mismatch cases are skipped");
    }
    for (env, var) in &cases {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (code, stderr) = start_failure(&env).await;
        assert_eq!(code, Some(2), "{env:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line for {env:?}: {stderr}");
        assert!(lines[0].contains(var), "{env:?} names {var}: {stderr}");
    }

    // And a good key file starts.
    if have_openssl {
        let demo = Demo::start(&[
            ("JWT_PRIVATE_KEY_FILE", ed.to_str().unwrap()),
            ("JWT_ALGORITHM", "EdDSA"),
        ])
        .await;
        let jwks = demo.get("/.well-known/jwks.json").send().await.json();
        assert_eq!(jwks["keys"][0]["alg"], "EdDSA");
        assert!(
            !demo.stderr().iter().any(|l| l.contains("fresh")),
            "no generated-key warning with a key file"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
