//! What comes after the layer: optional mode, the role and scope guards, gRPC status codes,
//! and the axum extractors.

use tower_shield::jwt::{RequireRoleLayer, RequireScopeLayer};

use super::*;

#[tokio::test]
async fn optional_mode_lets_anonymous_through_but_not_invalid_tokens() {
    let layer = builder().optional().build().unwrap();
    let anonymous = call_with(&layer, Request::new(Full::default())).await;
    assert_eq!(anonymous.status(), StatusCode::OK);
    assert_eq!(body_text(anonymous).await, "anonymous");
    let t = token(&test_keys().es);
    assert_eq!(
        body_text(call_with(&layer, bearer(&t)).await).await,
        "user_1"
    );
    let forged = format!("{}x", &t[..t.len() - 1]);
    assert_invalid(call_with(&layer, bearer(&forged)).await, &forged).await;
}

async fn guarded(
    guard: impl tower::Layer<
        tower::util::ServiceFn<
            fn(
                Request<Full<Bytes>>,
            ) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>>,
        >,
        Service = tower_shield::jwt::GuardService<
            tower::util::ServiceFn<
                fn(
                    Request<Full<Bytes>>,
                )
                    -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>>,
            >,
        >,
    >,
    req: Request<Full<Bytes>>,
) -> Response<ShieldBody<ShieldBody<Full<Bytes>>>> {
    fn ok(
        _: Request<Full<Bytes>>,
    ) -> std::future::Ready<Result<Response<Full<Bytes>>, Infallible>> {
        std::future::ready(Ok(Response::new(Full::default())))
    }
    let handler: fn(Request<Full<Bytes>>) -> _ = ok;
    ServiceBuilder::new()
        .layer(builder().build().unwrap())
        .layer(guard)
        .service(service_fn(handler))
        .oneshot(req)
        .await
        .unwrap()
}

#[tokio::test]
async fn role_and_scope_guards() {
    let es = &test_keys().es;
    let user = token(es);
    let mut c = claims();
    c["role"] = json!("admin");
    let admin = sign_raw(es, &header_for(es), &c);

    let r = guarded(
        RequireRoleLayer::any_of(["admin", "premium"]),
        bearer(&user),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        r.headers()[header::WWW_AUTHENTICATE],
        "Bearer realm=\"api\", error=\"insufficient_scope\""
    );
    let r = guarded(
        RequireRoleLayer::any_of(["admin", "premium"]),
        bearer(&admin),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);

    let r = guarded(
        RequireScopeLayer::all_of(["items:read", "items:write"]),
        bearer(&user),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = guarded(
        RequireScopeLayer::all_of(["items:read", "admin"]),
        bearer(&user),
    )
    .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = guarded(
        RequireScopeLayer::any_of(["admin", "items:read"]),
        bearer(&user),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);

    // A guard without an authenticating layer in front: 401, not 403.
    let service = ServiceBuilder::new()
        .layer(RequireRoleLayer::any_of(["admin"]))
        .service(service_fn(|_: Request<()>| async {
            Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
        }));
    let r = service.oneshot(Request::new(())).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        RequireRoleLayer::any_of(["a"])
            .with_realm("bad\"realm")
            .is_err()
    );
}

#[tokio::test]
async fn grpc_calls_get_status_codes() {
    let grpc = |token: Option<&str>| {
        let mut b = Request::post("/svc/Method").header(header::CONTENT_TYPE, "application/grpc");
        if let Some(t) = token {
            b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        b.body(Full::default()).unwrap()
    };
    let layer = builder().build().unwrap();
    let r = call_with(&layer, grpc(None)).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["grpc-status"], "16");
    let r = call_with(&layer, grpc(Some("a.b.c"))).await;
    assert_eq!(r.headers()["grpc-status"], "16");
    let r = guarded(
        RequireRoleLayer::any_of(["admin"]),
        grpc(Some(&token(&test_keys().es))),
    )
    .await;
    assert_eq!(r.headers()["grpc-status"], "7");
}

#[cfg(feature = "axum")]
mod axum_extractors {
    use super::*;
    use axum::Router;
    use axum::routing::get;

    async fn me(claims: Verified<Claims>) -> String {
        claims.sub.clone()
    }

    async fn maybe(claims: Option<Verified<Claims>>) -> String {
        claims.map_or_else(|| "anonymous".to_owned(), |c| c.sub.clone())
    }

    #[tokio::test]
    async fn required_and_optional_extractors() {
        let app = Router::new()
            .route("/me", get(me))
            .route("/maybe", get(maybe))
            .layer(builder().optional().build().unwrap());
        let t = token(&test_keys().es);
        let req = |path: &str, token: Option<&str>| {
            let mut b = Request::get(path);
            if let Some(t) = token {
                b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
            }
            b.body(axum::body::Body::empty()).unwrap()
        };
        let text = |r: axum::response::Response| async move {
            String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
        };
        let r = app.clone().oneshot(req("/me", Some(&t))).await.unwrap();
        assert_eq!(text(r).await, "user_1");
        let r = app.clone().oneshot(req("/maybe", None)).await.unwrap();
        assert_eq!(text(r).await, "anonymous");
        let r = app.clone().oneshot(req("/me", None)).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
    }
}
