//! One store suite for the token lifecycle, run against `MemoryRefreshStore` +
//! `MemoryRevocationStore` and against `RedisRefreshStore` + `RedisRevocationStore` at
//! `REDIS_URL` (skipped with a line when unset; a failure when set and unreachable). Every
//! Redis test uses its own key prefix. Time is a `ManualClock` shared by the issuer, the
//! stores' callers and the verifying layer, so windows and expiries are exact.

use std::convert::Infallible;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::{Request, Response, StatusCode, header};
use jsonwebtoken::Algorithm;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_shield::clock::{Clock, ManualClock};
use tower_shield::jwt::revocation::{RedisRevocationStore, TokenRef};
use tower_shield::jwt::{
    JwtAuthLayer, Key, KeyRing, KeySet, MemoryRevocationStore, RevocationStore,
};
use tower_shield::redis::{KeyPrefix, RedisConnection};
use tower_shield::tokens::refresh::REFRESH_TOKEN_REUSED;
use tower_shield::tokens::store::{FamilyId, MemoryRefreshStore, RedisRefreshStore, RefreshStore};
use tower_shield::tokens::{RefreshError, RefreshTokens, TokenIssuer, TokenPair};

const DAY: Duration = Duration::from_secs(24 * 3600);

fn key() -> Key {
    static KEY: OnceLock<Key> = OnceLock::new();
    KEY.get_or_init(|| Key::generate(Algorithm::ES256).unwrap())
        .clone()
}

/// Everything one test needs: the lifecycle, its clock and a verifying layer on the same
/// keys, clock and revocation store.
struct Harness<St> {
    tokens: RefreshTokens<St>,
    clock: ManualClock,
    layer: JwtAuthLayer,
    revocation: Arc<dyn RevocationStore>,
    label: &'static str,
    /// The Redis key prefix ("" for memory).
    prefix: String,
}

fn harness<St: RefreshStore>(
    store: St,
    revocation: Arc<dyn RevocationStore>,
    label: &'static str,
    configure: impl FnOnce(
        tower_shield::tokens::RefreshTokensBuilder<St>,
    ) -> tower_shield::tokens::RefreshTokensBuilder<St>,
) -> Harness<St> {
    let clock = ManualClock::now();
    let ring = KeyRing::new(KeySet::new().with(key()).unwrap());
    let issuer = TokenIssuer::builder(ring.clone())
        .issuer("https://auth.test")
        .audience("api")
        .clock(clock.clone())
        .build()
        .unwrap();
    let tokens =
        configure(RefreshTokens::builder(issuer, store).shared_revocation(revocation.clone()))
            .build()
            .unwrap();
    let layer = JwtAuthLayer::builder(ring)
        .issuer("https://auth.test")
        .audience("api")
        .clock(clock.clone())
        .revocation(revocation.clone())
        .build()
        .unwrap();
    Harness {
        tokens,
        clock,
        layer,
        revocation,
        label,
        prefix: String::new(),
    }
}

fn memory(
    configure: impl FnOnce(
        tower_shield::tokens::RefreshTokensBuilder<MemoryRefreshStore>,
    ) -> tower_shield::tokens::RefreshTokensBuilder<MemoryRefreshStore>,
) -> Harness<MemoryRefreshStore> {
    harness(
        MemoryRefreshStore::new(),
        Arc::new(MemoryRevocationStore::new()),
        "memory",
        configure,
    )
}

async fn redis(
    test: &str,
    configure: impl FnOnce(
        tower_shield::tokens::RefreshTokensBuilder<RedisRefreshStore>,
    ) -> tower_shield::tokens::RefreshTokensBuilder<RedisRefreshStore>,
) -> Option<Harness<RedisRefreshStore>> {
    let Ok(url) = std::env::var("REDIS_URL") else {
        eprintln!("REDIS_URL is not set: skipping the Redis run of {test}");
        return None;
    };
    let conn = RedisConnection::connect(&url)
        .await
        .expect("REDIS_URL is set but Redis is unreachable");
    let prefix = KeyPrefix::new(format!("ts:test:{}:", uuid::Uuid::new_v4())).unwrap();
    let revocation: Arc<dyn RevocationStore> =
        Arc::new(RedisRevocationStore::new(conn.clone(), prefix.clone()));
    let mut h = harness(
        RedisRefreshStore::new(conn, prefix.clone()),
        revocation,
        "redis",
        configure,
    );
    h.prefix = prefix.as_str().to_owned();
    Some(h)
}

async fn access_status(layer: &JwtAuthLayer, token: &str) -> StatusCode {
    let service = ServiceBuilder::new()
        .layer(layer.clone())
        .service(service_fn(|_req: Request<String>| async {
            Ok::<_, Infallible>(Response::new(String::new()))
        }));
    let request = Request::get("/api/me")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(String::new())
        .unwrap();
    service.oneshot(request).await.unwrap().status()
}

fn rt(pair: &TokenPair) -> &str {
    pair.refresh_token.as_str()
}

// ---------------------------------------------------------------------------------------
// The suite: generic over the store.

async fn rotation<St: RefreshStore>(h: Harness<St>) {
    let login = h.tokens.issue_pair("user_1", "user", &()).await.unwrap();
    assert_eq!(login.token_type, "Bearer");
    assert_eq!(login.expires_in, 900);
    assert_eq!(login.refresh_expires_in, 7 * 24 * 3600);
    assert_eq!(
        access_status(&h.layer, &login.access_token).await,
        StatusCode::OK
    );

    h.clock.advance(Duration::from_secs(60));
    let second = h.tokens.rotate(rt(&login)).await.unwrap();
    assert_eq!(second.family, login.family, "{}", h.label);
    assert_eq!(second.subject, "user_1");
    assert_eq!(second.role, "user");
    assert_ne!(rt(&second), rt(&login));
    assert_ne!(second.jti, login.jti);
    assert_eq!(
        access_status(&h.layer, &second.access_token).await,
        StatusCode::OK
    );

    h.clock.advance(Duration::from_secs(60));
    let third = h.tokens.rotate(rt(&second)).await.unwrap();
    assert_eq!(third.family, login.family);
    // Each successor's lifetime starts at its rotation.
    assert_eq!(third.refresh_expires_in, 7 * 24 * 3600);
}

async fn unknown_tokens<St: RefreshStore>(h: Harness<St>) {
    let login = h.tokens.issue_pair("user_1", "user", &()).await.unwrap();
    for bad in ["", "rt_", "garbage", &"A".repeat(100_000), "rt_\u{0}\u{1}"] {
        assert!(matches!(
            h.tokens.rotate(bad).await,
            Err(RefreshError::Unknown)
        ));
    }
    // A well-formed token of an unknown family.
    let stranger = format!("rt_{}", "Q".repeat(64));
    assert!(matches!(
        h.tokens.rotate(&stranger).await,
        Err(RefreshError::Unknown)
    ));
    // The right family with a wrong secret: unknown, and the family is not harmed.
    let body = &rt(&login)[3..];
    let forged = format!("rt_{}{}", &body[..22], "A".repeat(42));
    assert!(matches!(
        h.tokens.rotate(&forged).await,
        Err(RefreshError::Unknown)
    ));
    assert!(!h.tokens.logout(&forged).await.unwrap(), "{}", h.label);
    h.tokens.rotate(rt(&login)).await.unwrap();
}

async fn reuse_revokes_family<St: RefreshStore>(h: Harness<St>) {
    let login = h.tokens.issue_pair("user_2", "user", &()).await.unwrap();
    let elsewhere = h.tokens.issue_pair("user_2", "user", &()).await.unwrap();
    let next = h.tokens.rotate(rt(&login)).await.unwrap();
    // Every access token of the family names it as its session.
    for pair in [&login, &next] {
        assert_eq!(
            decode_claims(&pair.access_token)["sid"],
            login.family.to_string()
        );
        assert_eq!(
            access_status(&h.layer, &pair.access_token).await,
            StatusCode::OK
        );
    }
    h.clock.advance(Duration::from_secs(3)); // past the 2 s grace window
    let err = h.tokens.rotate(rt(&login)).await.unwrap_err();
    match &err {
        RefreshError::Reused { subject, family } => {
            assert_eq!(subject, "user_2");
            assert_eq!(*family, login.family);
        }
        other => panic!("{}: expected reuse, got {other:?}", h.label),
    }
    assert!(err.is_reuse());
    assert_eq!(err.refusal().problem(), &REFRESH_TOKEN_REUSED);
    assert_eq!(err.refusal().problem().status, StatusCode::UNAUTHORIZED);
    // The whole family is revoked: the legitimate successor too.
    assert!(matches!(
        h.tokens.rotate(rt(&next)).await,
        Err(RefreshError::Revoked)
    ));
    // And presenting the reused token again is refused (no second alert needed).
    assert!(h.tokens.rotate(rt(&login)).await.is_err());
    // The family's access tokens already out are refused at once (whoever holds them), the
    // user's other session is not.
    for pair in [&login, &next] {
        assert_eq!(
            access_status(&h.layer, &pair.access_token).await,
            StatusCode::UNAUTHORIZED,
            "{}",
            h.label
        );
    }
    assert_eq!(
        access_status(&h.layer, &elsewhere.access_token).await,
        StatusCode::OK
    );
}

async fn grace_window<St: RefreshStore>(h: Harness<St>) {
    // Within the window (2 s, inclusive) a repeat of the rotated token gets a sibling.
    let login = h.tokens.issue_pair("user_3", "user", &()).await.unwrap();
    let first = h.tokens.rotate(rt(&login)).await.unwrap();
    h.clock.advance(Duration::from_secs(2));
    let sibling = h.tokens.rotate(rt(&login)).await.unwrap();
    assert_eq!(sibling.family, login.family, "{}", h.label);
    assert_ne!(rt(&sibling), rt(&first));
    assert_eq!(
        access_status(&h.layer, &sibling.access_token).await,
        StatusCode::OK
    );
    // Both tokens of the generation are valid; using one spends the generation.
    let next = h.tokens.rotate(rt(&sibling)).await.unwrap();
    h.clock.advance(Duration::from_secs(3));
    assert!(matches!(
        h.tokens.rotate(rt(&first)).await,
        Err(RefreshError::Reused { .. })
    ));
    assert!(h.tokens.rotate(rt(&next)).await.is_err());

    // Just after the window, the repeat is reuse.
    let login = h.tokens.issue_pair("user_3", "user", &()).await.unwrap();
    let first = h.tokens.rotate(rt(&login)).await.unwrap();
    h.clock.advance(Duration::from_millis(2_001));
    assert!(matches!(
        h.tokens.rotate(rt(&login)).await,
        Err(RefreshError::Reused { .. })
    ));
    assert!(matches!(
        h.tokens.rotate(rt(&first)).await,
        Err(RefreshError::Revoked)
    ));
}

async fn no_grace_when_zero<St: RefreshStore>(h: Harness<St>) {
    let login = h.tokens.issue_pair("user_4", "user", &()).await.unwrap();
    h.tokens.rotate(rt(&login)).await.unwrap();
    assert!(matches!(
        h.tokens.rotate(rt(&login)).await,
        Err(RefreshError::Reused { .. })
    ));
}

async fn expiry_and_family_cap<St: RefreshStore>(h: Harness<St>) {
    // refresh_ttl 7 days, family lifetime 10 days (configured by the caller).
    let login = h.tokens.issue_pair("user_5", "user", &()).await.unwrap();
    h.clock.advance(7 * DAY);
    assert!(
        matches!(
            h.tokens.rotate(rt(&login)).await,
            Err(RefreshError::Expired)
        ),
        "{}",
        h.label
    );

    let login = h.tokens.issue_pair("user_5", "user", &()).await.unwrap();
    h.clock.advance(6 * DAY);
    let second = h.tokens.rotate(rt(&login)).await.unwrap();
    // Capped by the family: 4 days left, not 7.
    assert_eq!(second.refresh_expires_in, 4 * 24 * 3600);
    h.clock.advance(3 * DAY);
    let third = h.tokens.rotate(rt(&second)).await.unwrap();
    assert_eq!(third.refresh_expires_in, 24 * 3600);
    h.clock.advance(DAY);
    assert!(matches!(
        h.tokens.rotate(rt(&third)).await,
        Err(RefreshError::Expired)
    ));
    assert_eq!(
        RefreshError::Expired.refusal().problem().status,
        StatusCode::UNAUTHORIZED
    );
}

async fn logout<St: RefreshStore>(h: Harness<St>) {
    let login = h.tokens.issue_pair("user_6", "user", &()).await.unwrap();
    let other = h.tokens.issue_pair("user_6", "user", &()).await.unwrap();
    assert_eq!(
        access_status(&h.layer, &login.access_token).await,
        StatusCode::OK
    );
    assert!(h.tokens.logout(rt(&login)).await.unwrap());
    // The session's access token dies with it; the other session's lives on.
    assert_eq!(
        access_status(&h.layer, &login.access_token).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        access_status(&h.layer, &other.access_token).await,
        StatusCode::OK
    );
    assert!(
        !h.tokens.logout(rt(&login)).await.unwrap(),
        "already revoked"
    );
    assert!(!h.tokens.logout("not a token").await.unwrap());
    assert!(matches!(
        h.tokens.rotate(rt(&login)).await,
        Err(RefreshError::Revoked)
    ));
    // Another sign-in of the same user is untouched.
    let other = h.tokens.rotate(rt(&other)).await.unwrap();
    // A spent token still proves the family for logout.
    let spent_login = h.tokens.issue_pair("user_6", "user", &()).await.unwrap();
    h.tokens.rotate(rt(&spent_login)).await.unwrap();
    assert!(h.tokens.logout(rt(&spent_login)).await.unwrap());
    // Logout with a bearer token denies its jti until it expires.
    assert_eq!(
        access_status(&h.layer, &other.access_token).await,
        StatusCode::OK
    );
    h.tokens
        .revoke_access_token(&other.jti, other.access_expires_at)
        .await
        .unwrap();
    assert_eq!(
        access_status(&h.layer, &other.access_token).await,
        StatusCode::UNAUTHORIZED
    );
    // Revoke by family id: its access tokens too.
    let admin_view = h.tokens.issue_pair("user_6", "user", &()).await.unwrap();
    assert!(h.tokens.revoke_family(admin_view.family).await.unwrap());
    assert_eq!(
        access_status(&h.layer, &admin_view.access_token).await,
        StatusCode::UNAUTHORIZED
    );
    assert!(h.tokens.revoke_family(other.family).await.unwrap());
    assert!(
        !h.tokens
            .revoke_family(FamilyId::from_bytes([9; 16]))
            .await
            .unwrap()
    );
}

async fn logout_everywhere<St: RefreshStore>(h: Harness<St>) {
    let a = h.tokens.issue_pair("user_7", "user", &()).await.unwrap();
    let b = h.tokens.issue_pair("user_7", "user", &()).await.unwrap();
    let b = h.tokens.rotate(rt(&b)).await.unwrap();
    let c = h.tokens.issue_pair("user_8", "user", &()).await.unwrap();
    assert_eq!(
        access_status(&h.layer, &a.access_token).await,
        StatusCode::OK
    );

    assert_eq!(
        h.tokens.logout_everywhere("user_7").await.unwrap(),
        2,
        "{}",
        h.label
    );
    for pair in [&a, &b] {
        assert!(matches!(
            h.tokens.rotate(rt(pair)).await,
            Err(RefreshError::Revoked)
        ));
        // Outstanding access tokens die at once (watermark).
        assert_eq!(
            access_status(&h.layer, &pair.access_token).await,
            StatusCode::UNAUTHORIZED
        );
    }
    // Someone else is untouched.
    assert_eq!(
        access_status(&h.layer, &c.access_token).await,
        StatusCode::OK
    );
    h.tokens.rotate(rt(&c)).await.unwrap();
    // A later sign-in works.
    h.clock.advance(Duration::from_secs(1));
    let again = h.tokens.issue_pair("user_7", "user", &()).await.unwrap();
    assert_eq!(
        access_status(&h.layer, &again.access_token).await,
        StatusCode::OK
    );
    h.tokens.rotate(rt(&again)).await.unwrap();
    // The watermark never moves back.
    let now = h.clock.unix_secs();
    h.revocation
        .revoke_subject("user_7", 1, now + 3600)
        .await
        .unwrap();
    let old = TokenRef {
        jti: None,
        session: None,
        subject: "user_7",
        issued_at: Some(now - 2),
    };
    assert!(h.revocation.check(old).await.unwrap());
    assert_eq!(h.tokens.logout_everywhere("nobody").await.unwrap(), 0);
}

async fn role_changes_on_refresh<St: RefreshStore>(h: Harness<St>) {
    let login = h.tokens.issue_pair("user_9", "user", &()).await.unwrap();
    let promoted = h
        .tokens
        .rotate_with(rt(&login), |subject| async move {
            assert_eq!(subject, "user_9");
            Ok(Some("premium".to_owned()))
        })
        .await
        .unwrap();
    assert_eq!(promoted.role, "premium");
    let claims = decode_claims(&promoted.access_token);
    assert_eq!(claims["role"], "premium");
    // The family keeps the new role for plain rotations.
    let next = h.tokens.rotate(rt(&promoted)).await.unwrap();
    assert_eq!(next.role, "premium", "{}", h.label);
    // An account that is gone: the family is revoked.
    let err = h
        .tokens
        .rotate_with(rt(&next), |_| async { Ok(None) })
        .await
        .unwrap_err();
    assert!(matches!(err, RefreshError::Revoked));
    assert!(h.tokens.rotate(rt(&next)).await.is_err());
}

async fn concurrent_refresh<St: RefreshStore>(h: Harness<St>) {
    let login = h.tokens.issue_pair("user_10", "user", &()).await.unwrap();
    let token = rt(&login).to_owned();
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let tokens = h.tokens.clone();
        let token = token.clone();
        tasks.push(tokio::spawn(async move { tokens.rotate(&token).await }));
    }
    let mut pairs = Vec::new();
    for task in tasks {
        pairs.push(task.await.unwrap().expect("no concurrent refresh may fail"));
    }
    assert!(
        pairs.iter().all(|p| p.family == login.family),
        "{}",
        h.label
    );
    let mut distinct: Vec<&str> = pairs.iter().map(rt).collect();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 32, "every answer has its own token");
    // The user is still signed in: any of the answers refreshes.
    let next = h.tokens.rotate(rt(&pairs[17])).await.unwrap();
    assert_eq!(next.family, login.family);
    h.tokens.rotate(rt(&next)).await.unwrap();
}

async fn concurrent_without_grace_is_reuse<St: RefreshStore>(h: Harness<St>) {
    // The race the grace window exists for: without it, one wins and the family dies.
    let login = h.tokens.issue_pair("user_11", "user", &()).await.unwrap();
    let token = rt(&login).to_owned();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let tokens = h.tokens.clone();
        let token = token.clone();
        tasks.push(tokio::spawn(async move { tokens.rotate(&token).await }));
    }
    let mut ok = 0;
    let mut reused = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => ok += 1,
            Err(RefreshError::Reused { .. }) => reused += 1,
            Err(_) => {}
        }
    }
    assert_eq!(ok, 1, "{}: exactly one consume wins", h.label);
    assert!(reused >= 1);
}

async fn revocation_store_contract<St: RefreshStore>(h: Harness<St>) {
    let store = &h.revocation;
    let now = h.clock.unix_secs();
    let token = TokenRef {
        jti: Some("tok_a"),
        session: None,
        subject: "user_12",
        issued_at: Some(now),
    };
    assert!(!store.check(token).await.unwrap());
    store.revoke_token("tok_a", now + 60).await.unwrap();
    store.revoke_token("tok_a", now + 30).await.unwrap(); // never shortens
    assert!(store.check(token).await.unwrap());
    assert!(
        !store
            .check(TokenRef {
                jti: Some("tok_b"),
                ..token
            })
            .await
            .unwrap()
    );
    store
        .revoke_subject("user_12", now, now + 60)
        .await
        .unwrap();
    let before = TokenRef {
        jti: None,
        session: None,
        subject: "user_12",
        issued_at: Some(now - 1),
    };
    let same = TokenRef {
        issued_at: Some(now),
        ..before
    };
    let none = TokenRef {
        issued_at: None,
        ..before
    };
    assert!(store.check(before).await.unwrap(), "{}", h.label);
    assert!(!store.check(same).await.unwrap(), "strictly before");
    assert!(store.check(none).await.unwrap(), "no iat: revoked");
    store
        .revoke_subject("user_12", now - 100, now + 60)
        .await
        .unwrap();
    assert!(!store.check(same).await.unwrap());
    assert!(store.check(before).await.unwrap(), "never moves back");
    let long = "x".repeat(10_000);
    assert!(store.revoke_token(&long, now + 60).await.is_err());
    // An identifier too long to be revoked is simply not revoked (no error on the hot path).
    let long_jti = TokenRef {
        jti: Some(&long),
        session: Some(&long),
        subject: "user_12",
        issued_at: Some(now),
    };
    assert!(!store.check(long_jti).await.unwrap(), "{}", h.label);
    assert!(store.revoke_session(&long, now + 60).await.is_err());
    // Sessions: every token naming a revoked `sid`, until the revocation expires; a jti equal
    // to a session id (or the reverse) is another namespace.
    let in_session = TokenRef {
        jti: Some("tok_s1"),
        session: Some("fam_1"),
        subject: "user_13",
        issued_at: Some(now),
    };
    assert!(!store.check(in_session).await.unwrap());
    store.revoke_session("fam_1", now + 60).await.unwrap();
    store.revoke_session("fam_1", now + 30).await.unwrap(); // never shortens
    assert!(store.check(in_session).await.unwrap(), "{}", h.label);
    let sibling = TokenRef {
        jti: Some("tok_s2"),
        ..in_session
    };
    assert!(store.check(sibling).await.unwrap());
    let other_session = TokenRef {
        session: Some("fam_2"),
        ..in_session
    };
    assert!(!store.check(other_session).await.unwrap());
    let jti_named_like_it = TokenRef {
        jti: Some("fam_1"),
        session: None,
        ..in_session
    };
    assert!(
        !store.check(jti_named_like_it).await.unwrap(),
        "{}",
        h.label
    );
    store.revoke_token("tok_only", now + 60).await.unwrap();
    let session_named_like_it = TokenRef {
        session: Some("tok_only"),
        ..in_session
    };
    assert!(!store.check(session_named_like_it).await.unwrap());
}

/// A refresh whose role lookup is slow: the family ends meanwhile (here an admin revokes it)
/// and the clock moves past what the session revocation alone would cover for a token
/// issued only now. The refresh is refused rather than minting a token that outlives it.
async fn session_ended_during_role_lookup<St: RefreshStore>(h: Harness<St>) {
    let login = h.tokens.issue_pair("user_14", "user", &()).await.unwrap();
    let tokens = h.tokens.clone();
    let clock = h.clock.clone();
    let family = login.family;
    let result = h
        .tokens
        .rotate_with(rt(&login), move |_subject| async move {
            tokens.revoke_family(family).await.unwrap();
            clock.advance(Duration::from_secs(400));
            Ok(Some("user".to_owned()))
        })
        .await;
    assert!(
        matches!(result, Err(RefreshError::Revoked)),
        "{}: {result:?}",
        h.label
    );
}

fn decode_claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).unwrap();
    let mut bits = Vec::new();
    let (mut acc, mut n) = (0u32, 0);
    for c in payload.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            _ => 63,
        };
        acc = (acc << 6) | u32::from(v);
        n += 6;
        if n >= 8 {
            n -= 8;
            bits.push((acc >> n) as u8);
            acc &= (1 << n) - 1;
        }
    }
    serde_json::from_slice(&bits).unwrap()
}

// ---------------------------------------------------------------------------------------
// Instantiation per store.

fn default_config<St: RefreshStore>(
    b: tower_shield::tokens::RefreshTokensBuilder<St>,
) -> tower_shield::tokens::RefreshTokensBuilder<St> {
    b
}

fn no_grace<St: RefreshStore>(
    b: tower_shield::tokens::RefreshTokensBuilder<St>,
) -> tower_shield::tokens::RefreshTokensBuilder<St> {
    b.reuse_grace(Duration::ZERO)
}

fn short_family<St: RefreshStore>(
    b: tower_shield::tokens::RefreshTokensBuilder<St>,
) -> tower_shield::tokens::RefreshTokensBuilder<St> {
    b.family_lifetime(10 * DAY)
}

macro_rules! suite {
    ($($name:ident => $config:ident),* $(,)?) => {
        mod memory_store {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(memory($config)).await;
                }
            )*
        }
        mod redis_store {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    if let Some(h) = redis(stringify!($name), $config).await {
                        super::$name(h).await;
                    }
                }
            )*
        }
    };
}

suite! {
    rotation => default_config,
    unknown_tokens => default_config,
    session_ended_during_role_lookup => default_config,
    reuse_revokes_family => default_config,
    grace_window => default_config,
    no_grace_when_zero => no_grace,
    expiry_and_family_cap => short_family,
    logout => default_config,
    logout_everywhere => default_config,
    role_changes_on_refresh => default_config,
    concurrent_refresh => default_config,
    concurrent_without_grace_is_reuse => no_grace,
    revocation_store_contract => default_config,
}

// ---------------------------------------------------------------------------------------
// Bounds: memory by capacity and sweeping, Redis by TTLs.

#[tokio::test]
async fn memory_store_is_bounded_and_fails_closed() {
    let store = MemoryRefreshStore::with_capacity(10);
    let h = harness(
        store.clone(),
        Arc::new(MemoryRevocationStore::new()),
        "memory",
        default_config,
    );
    for i in 0..10 {
        h.tokens
            .issue_pair(&format!("user_{i}"), "user", &())
            .await
            .unwrap();
    }
    let err = h
        .tokens
        .issue_pair("user_x", "user", &())
        .await
        .unwrap_err();
    assert!(err.is_store_error());
    assert_eq!(
        err.refusal().problem().status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    // Once the families have ended they are swept and sign-ins work again.
    h.clock.advance(7 * DAY);
    h.tokens.issue_pair("user_x", "user", &()).await.unwrap();
    assert_eq!(store.len(), 1);
    assert_eq!(store.subjects(), 1);
}

#[tokio::test]
async fn memory_spent_list_is_bounded() {
    let store = MemoryRefreshStore::with_limits(100, 4);
    let h = harness(
        store,
        Arc::new(MemoryRevocationStore::new()),
        "memory",
        no_grace,
    );
    let login = h.tokens.issue_pair("user_1", "user", &()).await.unwrap();
    let mut current = h.tokens.rotate(rt(&login)).await.unwrap();
    for _ in 0..5 {
        current = h.tokens.rotate(rt(&current)).await.unwrap();
    }
    // The first token fell out of the bounded spent list: refused, but not as reuse.
    assert!(matches!(
        h.tokens.rotate(rt(&login)).await,
        Err(RefreshError::Unknown)
    ));
    h.tokens.rotate(rt(&current)).await.unwrap();
}

#[tokio::test]
async fn redis_keys_expire_with_their_tokens() {
    let Some(h) = redis("redis_keys_expire_with_their_tokens", default_config).await else {
        return;
    };
    let url = std::env::var("REDIS_URL").unwrap();
    let conn = RedisConnection::connect(&url).await.unwrap();
    let max_ms = i64::try_from((30 * DAY).as_millis()).unwrap() + 60_000;
    let check = |expected: usize| {
        let conn = conn.clone();
        let pattern = format!("{}*", h.prefix);
        async move {
            let keys: Vec<String> = conn.query(redis::cmd("KEYS").arg(pattern)).await.unwrap();
            assert_eq!(keys.len(), expected, "{keys:?}");
            for key in keys {
                let ttl: i64 = conn.query(redis::cmd("PTTL").arg(&key)).await.unwrap();
                assert!(ttl > 0 && ttl <= max_ms, "{key} has TTL {ttl}");
            }
        }
    };
    let login = h.tokens.issue_pair("user_ttl", "user", &()).await.unwrap();
    let next = h.tokens.rotate(rt(&login)).await.unwrap();
    check(3).await; // family hash, spent set, subject index
    h.tokens
        .revoke_access_token(&next.jti, next.access_expires_at)
        .await
        .unwrap();
    h.tokens.logout_everywhere("user_ttl").await.unwrap();
    check(3).await; // family tombstone, jti, watermark (spent set and index dropped)
}
