//! End-to-end: the demo's rate limits (DEMO_API.md "Limits"): brute force against one email
//! (`login_failures`), the `auth`, `anonymous`, `api` (tiers) and `default` policies, their
//! IETF fields and `Retry-After`, and 150 simultaneous requests against a quota of 100.

use http::StatusCode;
use serde_json::json;

use crate::common::{ADMIN_EMAIL, ADMIN_PASSWORD, Demo, Resp};

const PASSWORD: &str = "correct horse battery";

async fn login(demo: &Demo, ip: &str, email: &str, password: &str) -> Resp {
    demo.post("/auth/login")
        .client(ip)
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
}

/// The `r` of policy `name` in a `RateLimit` field.
fn remaining(r: &Resp, name: &str) -> Option<u64> {
    let field = r.header("ratelimit")?;
    field.split(", ").find_map(|member| {
        let rest = member.strip_prefix(&format!("\"{name}\";"))?;
        rest.split(';')
            .find_map(|p| p.strip_prefix("r="))
            .and_then(|v| v.parse().ok())
    })
}

fn assert_429(r: &Resp) {
    r.assert_problem(StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(retry >= 1, "{r:?}");
}

#[tokio::test]
async fn the_sixth_failed_login_for_one_email_is_429() {
    let demo = Demo::start(&[]).await;
    let email = "lena@example.com";
    demo.register("172.16.0.1", email, PASSWORD).await;
    let attacker = "172.16.0.2";

    for expected_left in [4, 3, 2, 1] {
        let r = login(&demo, attacker, email, "wrong password!").await;
        r.assert_problem(StatusCode::UNAUTHORIZED);
        assert_eq!(
            remaining(&r, "login_failures"),
            Some(expected_left),
            "{r:?}"
        );
        assert!(
            r.header("ratelimit-policy")
                .unwrap()
                .contains("\"login_failures\";q=5;w=900"),
            "{r:?}"
        );
    }
    // A successful sign-in is not counted.
    let r = login(&demo, attacker, email, PASSWORD).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(remaining(&r, "login_failures"), Some(1));
    // The fifth failure is still a 401 ...
    let r = login(&demo, attacker, email, "wrong password!").await;
    r.assert_problem(StatusCode::UNAUTHORIZED);
    assert_eq!(remaining(&r, "login_failures"), Some(0));
    // ... the sixth is 429, before any password check: the right password too.
    let r = login(&demo, attacker, email, "wrong password!").await;
    assert_429(&r);
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(
        retry > 60 && retry <= 180,
        "one failure refills every 180 s: {retry}"
    );
    assert_429(&login(&demo, attacker, email, PASSWORD).await);
    assert_429(&login(&demo, attacker, "LENA@example.com ", PASSWORD).await);

    // Another email from the same client, and the same email from another client: not
    // affected.
    login(&demo, attacker, "other@example.com", PASSWORD)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED);
    let r = login(&demo, "172.16.0.3", email, PASSWORD).await;
    assert_eq!(r.status, StatusCode::OK);
}

/// 30 simultaneous wrong passwords for one account from one client: each reserves a failure
/// before the password check, so at most 5 checks run (the rest are 429), not as many as
/// pass the `auth` limit before any failure is charged.
#[tokio::test]
async fn simultaneous_wrong_passwords_get_at_most_five_checks() {
    let demo = Demo::start(&[]).await;
    let email = "nina@example.com";
    demo.register("172.16.5.1", email, PASSWORD).await;
    let attacker = "172.16.5.2";
    let answers =
        futures_join_all((0..30).map(|_| login(&demo, attacker, email, "wrong password!"))).await;
    let unauthorized = answers
        .iter()
        .filter(|r| r.status == StatusCode::UNAUTHORIZED)
        .count();
    let limited = answers
        .iter()
        .filter(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(unauthorized, 5, "{answers:?}");
    assert_eq!(unauthorized + limited, 30, "{answers:?}");
    // The budget is spent: the right password is refused too, before any check.
    assert_429(&login(&demo, "172.16.5.2", email, PASSWORD).await);
}

/// The demo believes only the forwarding header named by `TRUSTED_PROXY_HEADER`: behind an
/// X-Forwarded-For proxy, a client rotating its own `Forwarded` header is still one client;
/// and the mirror case.
#[tokio::test]
async fn a_client_cannot_pick_its_address_with_the_other_forwarding_header() {
    for (mode, proxy_header, spoofed_header, proxy_value) in [
        (
            "x-forwarded-for",
            "x-forwarded-for",
            "forwarded",
            "172.16.6.1",
        ),
        (
            "forwarded",
            "forwarded",
            "x-forwarded-for",
            "for=172.16.6.1",
        ),
    ] {
        let demo = Demo::start(&[("TRUSTED_PROXY_HEADER", mode)]).await;
        for n in 0..11u32 {
            let spoofed = if spoofed_header == "forwarded" {
                format!("for=198.51.100.{n}")
            } else {
                format!("198.51.100.{n}")
            };
            let r = demo
                .post("/auth/refresh")
                .header(spoofed_header, spoofed)
                .header(proxy_header, proxy_value)
                .send()
                .await;
            if n < 10 {
                r.assert_problem(StatusCode::UNAUTHORIZED);
                assert_eq!(remaining(&r, "auth"), Some(9 - u64::from(n)), "{mode}");
            } else {
                assert_429(&r);
            }
        }
    }
}

#[tokio::test]
async fn auth_and_default_policies() {
    let demo = Demo::start(&[]).await;
    let ip = "172.16.1.1";
    for n in 0..10u64 {
        let r = demo.post("/auth/refresh").client(ip).send().await;
        r.assert_problem(StatusCode::UNAUTHORIZED);
        assert_eq!(remaining(&r, "auth"), Some(9 - n));
        assert_eq!(r.header("ratelimit-policy"), Some("\"auth\";q=10;w=60"));
    }
    let r = demo.post("/auth/register").client(ip).send().await;
    assert_429(&r);
    assert_eq!(remaining(&r, "auth"), Some(0));
    // Another client is not affected; neither are other routes.
    let r = demo.post("/auth/refresh").client("172.16.1.2").send().await;
    r.assert_problem(StatusCode::UNAUTHORIZED);
    let r = demo.get("/health").client(ip).send().await;
    assert_eq!(r.status, StatusCode::OK);

    let ip = "172.16.1.3";
    for _ in 0..59 {
        let r = demo.get("/health").client(ip).send().await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let r = demo.get("/.well-known/jwks.json").client(ip).send().await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(remaining(&r, "default"), Some(0));
    assert_429(&demo.get("/health").client(ip).send().await);
}

#[tokio::test]
async fn anonymous_failures_are_limited_without_locking_out_signed_in_users() {
    let demo = Demo::start(&[]).await;
    demo.register("172.16.2.1", "mona@example.com", PASSWORD)
        .await;
    let (token, _) = demo.login("172.16.2.1", "mona@example.com", PASSWORD).await;
    let (unseen, _) = demo.login("172.16.2.2", ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let shared = "172.16.2.9"; // an office NAT: an attacker and Mona behind one address

    // Mona's token is verified once (and so cached) from the shared address.
    let r = demo
        .get("/api/me")
        .client(shared)
        .bearer(&token)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);

    // Ten bad tokens: 401s, each counted.
    for n in 0..10u64 {
        let r = demo
            .get("/api/me")
            .client(shared)
            .bearer(&format!("forged.token.{n}"))
            .send()
            .await;
        r.assert_problem(StatusCode::UNAUTHORIZED);
        assert_eq!(remaining(&r, "anonymous"), Some(9 - n), "{r:?}");
    }
    // Spent: refused before any signature check, with or without a token.
    assert_429(
        &demo
            .get("/api/me")
            .client(shared)
            .bearer("forged.token.x")
            .send()
            .await,
    );
    assert_429(&demo.get("/api/items").client(shared).send().await);
    // A valid token never verified before is refused too (it would cost a signature check).
    assert_429(
        &demo
            .get("/api/me")
            .client(shared)
            .bearer(&unseen)
            .send()
            .await,
    );
    // Mona, already verified, keeps working.
    let r = demo
        .get("/api/me")
        .client(shared)
        .bearer(&token)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    // Other addresses are not affected.
    let r = demo
        .get("/api/me")
        .client("172.16.2.10")
        .bearer(&unseen)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn api_tiers_by_role_and_150_concurrent_requests() {
    let demo = Demo::start(&[]).await;
    let user = demo
        .register("172.16.3.1", "nina@example.com", PASSWORD)
        .await;
    let (token, rt) = demo.login("172.16.3.1", "nina@example.com", PASSWORD).await;

    // 150 simultaneous requests against the `user` tier (100 per 60 s, burst 100): at
    // least 100 succeed, and no more than 100 plus what GCRA refills meanwhile (one per
    // 0.6 s).
    let started = std::time::Instant::now();
    let calls = (0..150).map(|n| {
        let token = token.clone();
        let demo = &demo;
        async move {
            demo.get("/api/me")
                .client(&format!("172.16.4.{}", n % 200 + 1))
                .bearer(&token)
                .send()
                .await
        }
    });
    let answers = futures_join_all(calls).await;
    let elapsed = started.elapsed().as_secs_f64();
    let ok = answers
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    let limited: Vec<&Resp> = answers
        .iter()
        .filter(|r| r.status == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert_eq!(ok + limited.len(), 150);
    let refill = (elapsed / 0.6).ceil() as usize;
    assert!(ok >= 100 && ok <= 100 + refill, "ok={ok} refill={refill}");
    for r in &limited {
        assert_429(r);
        assert!(
            r.header("ratelimit").unwrap().contains("\"api\";r=0"),
            "{r:?}"
        );
    }

    // Guest tier: 10 per 60 s.
    let (admin, _) = demo.login("172.16.3.2", ADMIN_EMAIL, ADMIN_PASSWORD).await;
    demo.put(&format!("/api/admin/users/{user}/role"))
        .client("172.16.3.2")
        .bearer(&admin)
        .json(&json!({ "role": "guest" }))
        .send()
        .await;
    let r = demo
        .post("/auth/refresh")
        .client("172.16.3.3")
        .cookie(&rt)
        .send()
        .await;
    let guest = r.json()["access_token"].as_str().unwrap().to_owned();
    for n in 0..10u64 {
        let r = demo
            .get("/api/items")
            .client("172.16.3.4")
            .bearer(&guest)
            .send()
            .await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
        assert!(
            r.header("ratelimit-policy")
                .unwrap()
                .contains("\"api\";q=10;w=60")
        );
        assert_eq!(remaining(&r, "api"), Some(9 - n));
    }
    assert_429(
        &demo
            .get("/api/me")
            .client("172.16.3.4")
            .bearer(&guest)
            .send()
            .await,
    );
}

/// `join_all` without the futures crate: spawn-free, polled together.
async fn futures_join_all<F: std::future::Future<Output = Resp>>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<Resp> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut results: Vec<Option<Resp>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if results[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(r) => results[i] = Some(r),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    results.into_iter().map(Option::unwrap).collect()
}
