//! What gets through: valid tokens of every algorithm, the claims, principal and scopes the
//! handler sees, and where the token is read from (the `Bearer` scheme in any casing, a
//! cookie, never a query parameter).

use tower_shield::jwt::{Scopes, TokenSource};

use super::*;

#[tokio::test]
async fn valid_tokens_of_every_algorithm_are_accepted() {
    let k = test_keys();
    for key in [&k.rs, &k.es, &k.ed, &k.hs, &k.ps] {
        assert_ok(&token(key)).await;
    }
}

#[tokio::test]
async fn claims_principal_and_scopes_reach_the_handler() {
    let layer = builder().build().unwrap();
    let service = ServiceBuilder::new().layer(layer).service(service_fn(
        |req: Request<Full<Bytes>>| async move {
            let v = req.extensions().get::<Verified<Claims>>().unwrap();
            assert_eq!(v.jti(), Some("tok_1"));
            assert_eq!(v.kid(), test_keys().es.kid());
            assert_eq!(v.expires_at(), NOW + 300);
            let p = req.extensions().get::<Principal>().unwrap();
            assert_eq!(p.role.as_deref(), Some("user"));
            let s = req.extensions().get::<Scopes>().unwrap();
            assert!(s.contains("items:write") && !s.contains("items"));
            Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
        },
    ));
    let response = service
        .oneshot(bearer(&token(&test_keys().es)))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn scheme_is_case_insensitive_and_must_be_bearer() {
    let t = token(&test_keys().es);
    let layer = builder().build().unwrap();
    for scheme in ["bearer", "BEARER", "Bearer", "bEaReR"] {
        let req = Request::get("/")
            .header(header::AUTHORIZATION, format!("{scheme} {t}"))
            .body(Full::default())
            .unwrap();
        assert_eq!(
            call_with(&layer, req).await.status(),
            StatusCode::OK,
            "{scheme}"
        );
    }
    // Malformed bearer credentials: 401 `invalid_token`.
    for value in [
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        format!("Bearer {t} extra"),
    ] {
        let req = Request::get("/")
            .header(header::AUTHORIZATION, value)
            .body(Full::default())
            .unwrap();
        assert_invalid(call_with(&layer, req).await, &t).await;
    }
    // Another scheme presents no bearer token: the challenge names no error (RFC 6750
    // §3.1), exactly as when the header is missing.
    for value in [
        format!("Basic {t}"),
        "Basic dXNlcjpwYXNzd29yZA==".to_owned(),
        "Digest username=\"a\", realm=\"api\"".to_owned(),
        format!("Token {t}"),
        format!("Bearer{t}"),
        format!("Bearer\t{t}"),
    ] {
        let req = Request::get("/")
            .header(header::AUTHORIZATION, &value)
            .body(Full::default())
            .unwrap();
        let response = call_with(&layer, req).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{value:.40}");
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"api\"",
            "{value:.40}"
        );
        assert_problem(response, "unauthorized", &t).await;
    }
}

#[tokio::test]
async fn cookie_source() {
    let t = token(&test_keys().es);
    let layer = builder()
        .token_from(TokenSource::Cookie("access_token".into()))
        .build()
        .unwrap();
    let req = |cookie: &str| {
        Request::get("/")
            .header(header::COOKIE, cookie)
            .body(Full::default())
            .unwrap()
    };
    let ok = call_with(&layer, req(&format!("theme=dark; access_token={t}; x=1"))).await;
    assert_eq!(ok.status(), StatusCode::OK);
    let dup = call_with(&layer, req(&format!("access_token={t}; access_token={t}"))).await;
    assert_invalid(dup, &t).await;
    let missing = call_with(&layer, req("theme=dark")).await;
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert!(
        !missing.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains("error")
    );
    // The bearer header is not read in cookie mode.
    assert_eq!(
        call_with(&layer, bearer(&t)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    // A query parameter never is.
    let q = Request::get(format!("/?access_token={t}"))
        .body(Full::default())
        .unwrap();
    assert_eq!(
        call_with(&layer, q).await.status(),
        StatusCode::UNAUTHORIZED
    );
}
