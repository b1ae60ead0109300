//! End-to-end: the demo's whole token lifecycle. Refresh rotation (and the grace window),
//! reuse detection revoking the family and its access tokens, logout killing the refresh
//! family and the access token's `jti`, and an admin's role change taking effect at the
//! user's next refresh.

use http::StatusCode;
use serde_json::json;

use crate::common::{ADMIN_EMAIL, ADMIN_PASSWORD, Demo, Resp, jwt_segment};

const PASSWORD: &str = "correct horse battery";

/// A fresh client address per call, so the `auth` limit (10 per minute per IP) never answers.
fn ip(n: u32) -> String {
    format!("10.1.{}.{}", n / 250, n % 250 + 1)
}

async fn refresh(demo: &Demo, n: u32, token: &str) -> Resp {
    demo.post("/auth/refresh")
        .client(&ip(n))
        .cookie(token)
        .send()
        .await
}

#[tokio::test]
async fn rotation_and_reuse_detection() {
    let demo = Demo::start(&[("REFRESH_REUSE_GRACE_SECS", "0")]).await;
    demo.register(&ip(1), "gina@example.com", PASSWORD).await;
    let (access1, rt1) = demo.login(&ip(2), "gina@example.com", PASSWORD).await;
    assert!(rt1.starts_with("rt_"));

    // Rotation: a new access token and a new refresh cookie.
    let r = refresh(&demo, 3, &rt1).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let body = r.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    let access2 = body["access_token"].as_str().unwrap().to_owned();
    assert_ne!(access2, access1);
    let set_cookie = r.header("set-cookie").unwrap();
    for part in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/auth",
        "Max-Age=",
    ] {
        assert!(set_cookie.contains(part), "{set_cookie}");
    }
    let rt2 = r.refresh_cookie().unwrap();
    assert_ne!(rt2, rt1);
    let r = demo
        .get("/api/me")
        .client(&ip(4))
        .bearer(&access2)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);

    // The spent token again: reuse. 401, type ending refresh_token_reused, family revoked.
    let r = refresh(&demo, 5, &rt1).await;
    let problem = r.assert_problem(StatusCode::UNAUTHORIZED);
    assert!(
        problem["type"]
            .as_str()
            .unwrap()
            .ends_with("refresh_token_reused"),
        "{problem}"
    );
    assert!(r.refresh_cookie().is_none());
    // The successor died with its family.
    let r = refresh(&demo, 6, &rt2).await;
    let problem = r.assert_problem(StatusCode::UNAUTHORIZED);
    assert!(
        !problem["type"]
            .as_str()
            .unwrap()
            .ends_with("refresh_token_reused")
    );
    // And so did the access tokens of the family (its session), the cached one too; a
    // fresh sign-in works.
    for access in [&access1, &access2] {
        demo.get("/api/me")
            .client(&ip(11))
            .bearer(access)
            .send()
            .await
            .assert_problem(StatusCode::UNAUTHORIZED);
    }
    let (access3, _) = demo.login(&ip(12), "gina@example.com", PASSWORD).await;
    let r = demo
        .get("/api/me")
        .client(&ip(13))
        .bearer(&access3)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);

    // Missing, malformed and unknown cookies: 401.
    demo.post("/auth/refresh")
        .client(&ip(7))
        .send()
        .await
        .assert_problem(StatusCode::UNAUTHORIZED);
    refresh(&demo, 8, "garbage")
        .await
        .assert_problem(StatusCode::UNAUTHORIZED);
    let unknown = format!("rt_{}", "A".repeat(64));
    refresh(&demo, 9, &unknown)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED);
    let huge = "x".repeat(10_000);
    refresh(&demo, 10, &huge)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn within_the_grace_window_a_repeat_succeeds_in_the_same_family() {
    let demo = Demo::start(&[("REFRESH_REUSE_GRACE_SECS", "30")]).await;
    demo.register(&ip(1), "hank@example.com", PASSWORD).await;
    let (_, rt1) = demo.login(&ip(2), "hank@example.com", PASSWORD).await;
    let first = refresh(&demo, 3, &rt1).await;
    assert_eq!(first.status, StatusCode::OK);
    // A concurrent tab presenting the same token within the grace: like the first call.
    let repeat = refresh(&demo, 4, &rt1).await;
    assert_eq!(repeat.status, StatusCode::OK, "{repeat:?}");
    // Both successors work, and they are one family: logging one out ends both.
    let a = first.refresh_cookie().unwrap();
    let b = repeat.refresh_cookie().unwrap();
    assert_ne!(a, b);
    let r = demo
        .post("/auth/logout")
        .client(&ip(5))
        .cookie(&a)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    refresh(&demo, 6, &b)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn logout_revokes_the_family_and_the_access_token() {
    let demo = Demo::start(&[]).await;
    demo.register(&ip(1), "ivy@example.com", PASSWORD).await;
    let (access, rt) = demo.login(&ip(2), "ivy@example.com", PASSWORD).await;
    let r = demo
        .get("/api/me")
        .client(&ip(3))
        .bearer(&access)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);

    let r = demo
        .post("/auth/logout")
        .client(&ip(4))
        .cookie(&rt)
        .bearer(&access)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{r:?}");
    assert!(r.body.is_empty());
    let cleared = r.header("set-cookie").unwrap();
    assert!(cleared.starts_with("refresh_token=;"), "{cleared}");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");

    // The access token's jti is denied (even though the token was cached), the family too.
    let r = demo
        .get("/api/me")
        .client(&ip(5))
        .bearer(&access)
        .send()
        .await;
    r.assert_problem(StatusCode::UNAUTHORIZED);
    refresh(&demo, 6, &rt)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED);

    // 204 always: nothing, garbage, an already-revoked cookie, a forged bearer.
    for (n, call) in [
        demo.post("/auth/logout"),
        demo.post("/auth/logout").cookie("garbage"),
        demo.post("/auth/logout").cookie(&rt),
        demo.post("/auth/logout").bearer("not.a.token"),
        demo.post("/auth/logout").bearer(&access),
    ]
    .into_iter()
    .enumerate()
    {
        let r = call.client(&ip(10 + n as u32)).send().await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{r:?}");
        assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    }

    // Another session of the same user is untouched.
    let (other, _) = demo.login(&ip(20), "ivy@example.com", PASSWORD).await;
    let r = demo
        .get("/api/me")
        .client(&ip(21))
        .bearer(&other)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn a_role_change_takes_effect_at_the_next_refresh() {
    let demo = Demo::start(&[]).await;
    let user = demo.register(&ip(1), "jack@example.com", PASSWORD).await;
    let (old, rt) = demo.login(&ip(2), "jack@example.com", PASSWORD).await;
    let (admin, _) = demo.login(&ip(3), ADMIN_EMAIL, ADMIN_PASSWORD).await;
    assert_eq!(jwt_segment(&admin, 1)["role"], "admin");

    let r = demo
        .put(&format!("/api/admin/users/{user}/role"))
        .client(&ip(4))
        .bearer(&admin)
        .json(&json!({ "role": "admin" }))
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");

    // The old access token keeps its role until it expires.
    let r = demo.get("/api/me").client(&ip(5)).bearer(&old).send().await;
    assert_eq!(r.json()["role"], "user");
    demo.get("/api/admin/stats")
        .client(&ip(5))
        .bearer(&old)
        .send()
        .await
        .assert_problem(StatusCode::FORBIDDEN);

    // The refresh carries the new role.
    let refreshed = refresh(&demo, 6, &rt).await;
    assert_eq!(refreshed.status, StatusCode::OK, "{refreshed:?}");
    let rt2 = refreshed.refresh_cookie().unwrap();
    let new = refreshed.json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(jwt_segment(&new, 1)["role"], "admin");
    let r = demo.get("/api/me").client(&ip(7)).bearer(&new).send().await;
    assert_eq!(r.json()["role"], "admin");
    assert!(
        r.header("ratelimit-policy")
            .unwrap()
            .contains("\"api\";q=10000;w=60"),
        "{r:?}"
    );
    let r = demo
        .get("/api/admin/stats")
        .client(&ip(7))
        .bearer(&new)
        .send()
        .await;
    assert_eq!(r.status, StatusCode::OK);

    // Demoted to guest: the next refresh says so, and the guest tier applies.
    demo.put(&format!("/api/admin/users/{user}/role"))
        .client(&ip(8))
        .bearer(&admin)
        .json(&json!({ "role": "guest" }))
        .send()
        .await;
    let r = refresh(&demo, 9, &rt2).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let guest = r.json()["access_token"].as_str().unwrap().to_owned();
    assert_eq!(jwt_segment(&guest, 1)["role"], "guest");
    let r = demo
        .get("/api/me")
        .client(&ip(10))
        .bearer(&guest)
        .send()
        .await;
    assert!(
        r.header("ratelimit-policy")
            .unwrap()
            .contains("\"api\";q=10;w=60"),
        "{r:?}"
    );
}

#[tokio::test]
async fn an_expired_refresh_token_is_refused() {
    let demo = Demo::start(&[
        ("ACCESS_TOKEN_TTL_SECS", "1"),
        ("REFRESH_TOKEN_TTL_SECS", "1"),
    ])
    .await;
    demo.register(&ip(1), "kim@example.com", PASSWORD).await;
    let (_, rt) = demo.login(&ip(2), "kim@example.com", PASSWORD).await;
    tokio::time::sleep(std::time::Duration::from_millis(2_100)).await;
    refresh(&demo, 3, &rt)
        .await
        .assert_problem(StatusCode::UNAUTHORIZED);
}

/// Two `refresh_token` cookies (one tossed in from a sibling subdomain, say): which one is
/// meant cannot be known, so the refresh is refused, in one `Cookie` line or two, and
/// neither family is touched.
#[tokio::test]
async fn two_refresh_cookies_are_refused() {
    let demo = Demo::start(&[]).await;
    demo.register(&ip(40), "lou@example.com", PASSWORD).await;
    demo.register(&ip(41), "mal@example.com", PASSWORD).await;
    let (_, victim) = demo.login(&ip(42), "lou@example.com", PASSWORD).await;
    let (_, attacker) = demo.login(&ip(43), "mal@example.com", PASSWORD).await;
    let one_line = demo
        .post("/auth/refresh")
        .client(&ip(44))
        .header(
            "cookie",
            format!("refresh_token={attacker}; refresh_token={victim}"),
        )
        .send()
        .await;
    one_line.assert_problem(StatusCode::UNAUTHORIZED);
    assert!(one_line.refresh_cookie().is_none());
    let two_lines = demo
        .post("/auth/refresh")
        .client(&ip(45))
        .header("cookie", format!("refresh_token={attacker}"))
        .header("cookie", format!("refresh_token={victim}"))
        .send()
        .await;
    two_lines.assert_problem(StatusCode::UNAUTHORIZED);
    // Both tokens are still good on their own.
    assert_eq!(refresh(&demo, 46, &victim).await.status, StatusCode::OK);
    assert_eq!(refresh(&demo, 47, &attacker).await.status, StatusCode::OK);
}
