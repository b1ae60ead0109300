//! `ApiKeyLayer` and `ApiKeys`: keys that work only from their allowlist, hostile
//! presentations refused alike, rotation overlap, revocation and expiry, on the memory store
//! and (with `REDIS_URL`) across two processes sharing Redis.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use tower::{Layer, ServiceExt, service_fn};
use tower_shield::Principal;
use tower_shield::api_key::{
    ApiKey, ApiKeyIdentity, ApiKeyLayer, ApiKeyRecord, ApiKeyStore, ApiKeys, CreateKeyError,
    IpAllowlist, KeyId, MemoryApiKeyStore, NewApiKey,
};
use tower_shield::clock::ManualClock;
use tower_shield::jwt::Scopes;
use tower_shield::jwt::revocation::StoreFuture;

type Body = Full<Bytes>;

/// An inner service answering `<subject>|<role>|<key id>|<scope read?>`.
fn whoami() -> impl tower::Service<
    Request<Body>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Body>, Infallible>>,
> + Clone {
    service_fn(|req: Request<Body>| async move {
        let principal = req.extensions().get::<Principal>().cloned();
        let identity = req.extensions().get::<ApiKeyIdentity>().cloned();
        let scopes = req
            .extensions()
            .get::<Scopes>()
            .cloned()
            .unwrap_or_default();
        let text = format!(
            "{}|{}|{}|{}",
            principal
                .as_ref()
                .map(|p| p.subject.to_string())
                .unwrap_or_default(),
            principal
                .and_then(|p| p.role)
                .map(|r| r.to_string())
                .unwrap_or_default(),
            identity.map(|i| i.key_id.to_string()).unwrap_or_default(),
            scopes.contains("reports:read"),
        );
        Ok::<_, Infallible>(Response::new(Body::from(text)))
    })
}

fn call_with(key: Option<(&str, &str)>, peer: &str) -> Request<Body> {
    let mut builder = Request::get("/api/service/ping");
    if let Some((name, value)) = key {
        builder = builder.header(name, value);
    }
    let mut req = builder.body(Body::default()).unwrap();
    req.extensions_mut()
        .insert(peer.parse::<SocketAddr>().unwrap());
    req
}

async fn text<B>(response: Response<B>) -> String
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    String::from_utf8(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap()
}

fn clock() -> ManualClock {
    ManualClock::at(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000))
}

async fn setup(allowed: IpAllowlist) -> (ApiKeys<MemoryApiKeyStore>, ApiKey, ManualClock) {
    let clock = clock();
    let keys = ApiKeys::with_clock(MemoryApiKeyStore::new(), clock.clone());
    let (key, _) = keys
        .create(
            NewApiKey::new("svc_billing", "nightly export", allowed)
                .role("service")
                .scopes(["reports:read"])
                .expires_in(Duration::from_secs(90 * 24 * 3600)),
        )
        .await
        .unwrap();
    (keys, key, clock)
}

fn nets(list: &[&str]) -> IpAllowlist {
    IpAllowlist::Networks(list.iter().map(|n| n.parse().unwrap()).collect())
}

#[tokio::test]
async fn a_key_acts_as_its_owner_only_from_its_allowlist() {
    let (keys, key, clock) = setup(nets(&["10.0.0.0/8", "2001:db8:1::/64"])).await;
    let layer = ApiKeyLayer::builder(keys.store().clone())
        .clock(clock)
        .realm("svc")
        .build()
        .unwrap();
    let svc = layer.layer(whoami());
    let id = key.id().unwrap().to_string();
    let auth = format!("ApiKey {}", key.expose());
    for (name, value) in [
        ("x-api-key", key.expose()),
        ("authorization", auth.as_str()),
    ] {
        for peer in ["10.1.2.3:1", "[::ffff:10.9.9.9]:1", "[2001:db8:1::42]:1"] {
            let r = svc
                .clone()
                .oneshot(call_with(Some((name, value)), peer))
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{name} {peer}");
            assert_eq!(text(r).await, format!("svc_billing|service|{id}|true"));
        }
    }
    // Outside the list: 403, and the body says nothing of the list.
    for peer in ["203.0.113.9:1", "[2001:db8:1:1::1]:1", "11.0.0.1:1"] {
        let r = svc
            .clone()
            .oneshot(call_with(Some(("x-api-key", key.expose())), peer))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{peer}");
        let body = text(r).await;
        assert!(
            !body.contains("10.0.0.0") && !body.contains("2001:db8"),
            "{body}"
        );
    }
}

#[tokio::test]
async fn the_allowlist_is_the_clients_own_address_never_its_group() {
    // One /128: its /56 neighbours are other clients.
    let (keys, key, clock) = setup(nets(&["2001:db8::1/128"])).await;
    let svc = ApiKeyLayer::builder(keys.store().clone())
        .clock(clock)
        .build()
        .unwrap()
        .layer(whoami());
    let call = |peer: &'static str| {
        svc.clone()
            .oneshot(call_with(Some(("x-api-key", key.expose())), peer))
    };
    assert_eq!(
        call("[2001:db8::1]:1").await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        call("[2001:db8::2]:1").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    // Empty: nowhere; Any: anywhere.
    let (keys, nowhere, clock) = setup(IpAllowlist::Networks(Vec::new())).await;
    let svc = ApiKeyLayer::builder(keys.store().clone())
        .clock(clock)
        .build()
        .unwrap()
        .layer(whoami());
    let r = svc
        .oneshot(call_with(
            Some(("x-api-key", nowhere.expose())),
            "10.0.0.1:1",
        ))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let (keys, anywhere, clock) = setup(IpAllowlist::Any).await;
    let svc = ApiKeyLayer::builder(keys.store().clone())
        .clock(clock)
        .build()
        .unwrap()
        .layer(whoami());
    let r = svc
        .oneshot(call_with(
            Some(("x-api-key", anywhere.expose())),
            "203.0.113.1:1",
        ))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn hostile_presentations_are_refused_alike() {
    let (keys, key, clock) = setup(IpAllowlist::Any).await;
    let svc = ApiKeyLayer::builder(keys.store().clone())
        .clock(clock)
        .build()
        .unwrap()
        .layer(whoami());
    let real = key.expose().to_owned();
    let other = ApiKeys::new(MemoryApiKeyStore::new())
        .create(NewApiKey::new("x", "x", IpAllowlist::Any))
        .await
        .unwrap()
        .0;
    // The same id with another secret.
    let wrong_secret = format!("{}{}", &real[..27], &other.expose()[27..]);
    let cases: Vec<Vec<(&str, Vec<u8>)>> = vec![
        vec![],
        vec![("x-api-key", real.replacen("api_", "apx_", 1).into_bytes())],
        vec![("x-api-key", real.as_bytes()[..40].to_vec())],
        vec![("x-api-key", format!("{real}x").into_bytes())],
        vec![("x-api-key", "a".repeat(10_240).into_bytes())],
        vec![(
            "x-api-key",
            [
                &real.as_bytes()[..30],
                "é".as_bytes(),
                &real.as_bytes()[32..],
            ]
            .concat(),
        )],
        vec![("x-api-key", other.expose().as_bytes().to_vec())],
        vec![("x-api-key", wrong_secret.into_bytes())],
        vec![
            ("x-api-key", real.clone().into_bytes()),
            ("x-api-key", real.clone().into_bytes()),
        ],
        vec![
            ("x-api-key", real.clone().into_bytes()),
            ("authorization", format!("ApiKey {real}").into_bytes()),
        ],
        vec![("authorization", format!("Bearer {real}").into_bytes())],
        vec![(
            "authorization",
            format!("ApiKey  {real} extra").into_bytes(),
        )],
    ];
    for (n, headers) in cases.into_iter().enumerate() {
        let mut req = call_with(None, "192.0.2.1:1");
        for (name, value) in &headers {
            req.headers_mut()
                .append(*name, HeaderValue::from_bytes(value).unwrap());
        }
        let r = svc.clone().oneshot(req).await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "case {n}");
        assert_eq!(
            r.headers()[header::WWW_AUTHENTICATE],
            "ApiKey realm=\"api\"",
            "case {n}"
        );
        let body = text(r).await;
        assert!(!body.contains(&real[27..]), "case {n} echoes the secret");
    }
    // In the query string: never read.
    let mut req = Request::get(format!("/ping?api_key={real}&x-api-key={real}"))
        .body(Body::default())
        .unwrap();
    req.extensions_mut()
        .insert("192.0.2.1:1".parse::<SocketAddr>().unwrap());
    assert_eq!(
        svc.clone().oneshot(req).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    // Optional: no key passes untouched; a bad one is still refused.
    let optional = ApiKeyLayer::builder(keys.store().clone())
        .optional()
        .build()
        .unwrap()
        .layer(whoami());
    let r = optional
        .clone()
        .oneshot(call_with(None, "192.0.2.1:1"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(text(r).await, "|||false");
    let r = optional
        .oneshot(call_with(Some(("x-api-key", "api_nope")), "192.0.2.1:1"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn rotation_overlaps_and_revocation_and_expiry_end_a_key() {
    let (keys, old, clock) = setup(IpAllowlist::Any).await;
    let svc = ApiKeyLayer::builder(keys.store().clone())
        .clock(clock.clone())
        .build()
        .unwrap()
        .layer(whoami());
    let status = |key: String| {
        let svc = svc.clone();
        async move {
            svc.oneshot(call_with(Some(("x-api-key", key.as_str())), "192.0.2.1:1"))
                .await
                .unwrap()
                .status()
        }
    };
    let id = old.id().unwrap();
    let (new, record) = keys
        .rotate(&id, Duration::from_secs(24 * 3600))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(new.id(), Some(id), "same record");
    assert_eq!(
        record.previous_valid_until(),
        Some(1_800_000_000 + 24 * 3600)
    );
    assert_eq!(
        status(old.expose().to_owned()).await,
        StatusCode::OK,
        "in the overlap"
    );
    assert_eq!(status(new.expose().to_owned()).await, StatusCode::OK);
    clock.advance(Duration::from_secs(24 * 3600));
    assert_eq!(
        status(old.expose().to_owned()).await,
        StatusCode::UNAUTHORIZED,
        "overlap over"
    );
    assert_eq!(status(new.expose().to_owned()).await, StatusCode::OK);
    // A second rotation ends the first key's overlap at once.
    let (newer, _) = keys
        .rotate(&id, Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status(newer.expose().to_owned()).await, StatusCode::OK);
    assert_eq!(
        status(new.expose().to_owned()).await,
        StatusCode::OK,
        "the newest overlap"
    );
    // Revoked: the next request is refused.
    assert!(keys.revoke(&id).await.unwrap());
    assert_eq!(
        status(newer.expose().to_owned()).await,
        StatusCode::UNAUTHORIZED
    );
    assert!(
        keys.rotate(&id, Duration::ZERO).await.unwrap().is_none(),
        "no rotating a revoked key"
    );
    // Expired.
    let (keys2, expiring, clock2) = setup(IpAllowlist::Any).await;
    let svc2 = ApiKeyLayer::builder(keys2.store().clone())
        .clock(clock2.clone())
        .build()
        .unwrap()
        .layer(whoami());
    let call = || {
        svc2.clone().oneshot(call_with(
            Some(("x-api-key", expiring.expose())),
            "192.0.2.1:1",
        ))
    };
    assert_eq!(call().await.unwrap().status(), StatusCode::OK);
    clock2.advance(Duration::from_secs(90 * 24 * 3600));
    assert_eq!(call().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    // Use is recorded (at most once a minute).
    let listed = keys2.store().list("svc_billing").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].last_used_at, Some(1_800_000_000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_revocation_reaches_every_process_on_its_next_request() {
    use tower_shield::api_key::RedisApiKeyStore;
    use tower_shield::redis::{KeyPrefix, RedisConnection};
    let Some(url) = crate::rate_limit_support::redis_url("redis_revocation_reaches_every_process")
    else {
        return;
    };
    let prefix = crate::rate_limit_support::unique_prefix();
    let store = |url: String, prefix: String| async move {
        let conn = RedisConnection::connect(&url)
            .await
            .expect("REDIS_URL is set but Redis is unreachable");
        RedisApiKeyStore::new(conn, KeyPrefix::new(prefix).unwrap())
    };
    // Two "processes": two connections, one Redis.
    let a = ApiKeys::new(store(url.clone(), prefix.clone()).await);
    let b = ApiKeyLayer::builder(store(url, prefix).await)
        .build()
        .unwrap()
        .layer(whoami());
    let (key, _) = a
        .create(NewApiKey::new("svc_reports", "reports", nets(&["192.0.2.0/24"])).role("service"))
        .await
        .unwrap();
    let call = || {
        b.clone()
            .oneshot(call_with(Some(("x-api-key", key.expose())), "192.0.2.7:1"))
    };
    let r = call().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(text(r).await.starts_with("svc_reports|service|"));
    let r = b
        .clone()
        .oneshot(call_with(
            Some(("x-api-key", key.expose())),
            "198.51.100.7:1",
        ))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(a.revoke(&key.id().unwrap()).await.unwrap());
    assert_eq!(call().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    let listed = a.store().list("svc_reports").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].revoked);
}

/// A route that takes a bearer token or a key: an optional `ApiKeyLayer` in front of a
/// `JwtAuthLayer` that accepts requests already authenticated.
#[tokio::test]
async fn a_key_or_a_bearer_token_on_one_route() {
    use tower_shield::jwt::{JwtAuthLayer, Key, KeySet};
    use tower_shield::tokens::TokenIssuer;
    let (keys, key, clock) = setup(IpAllowlist::Any).await;
    let signing = KeySet::new()
        .with(Key::generate(jsonwebtoken::Algorithm::EdDSA).unwrap())
        .unwrap();
    let issuer = TokenIssuer::builder(signing.clone())
        .issuer("https://issuer")
        .audience("api")
        .build()
        .unwrap();
    let token = issuer.issue("user_9", "user", &()).unwrap();
    let svc = tower::ServiceBuilder::new()
        .layer(
            ApiKeyLayer::builder(keys.store().clone())
                .optional()
                .clock(clock)
                .build()
                .unwrap(),
        )
        .layer(
            JwtAuthLayer::builder(signing)
                .issuer("https://issuer")
                .audience("api")
                .accept_api_keys()
                .build()
                .unwrap(),
        )
        .service(whoami());
    let call = |name: &'static str, value: String| {
        svc.clone()
            .oneshot(call_with(Some((name, value.as_str())), "192.0.2.1:1"))
    };
    let r = call("x-api-key", key.expose().to_owned()).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(text(r).await.starts_with("svc_billing|service|"));
    let r = call("authorization", format!("ApiKey {}", key.expose()))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = call("authorization", format!("Bearer {}", token.as_str()))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(text(r).await.starts_with("user_9|user||"));
    // Neither: the bearer challenge of the JWT layer; a bad key: the key's own 401.
    let r = svc
        .clone()
        .oneshot(call_with(None, "192.0.2.1:1"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        r.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    let r = call("x-api-key", "api_forged".to_owned()).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        r.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("ApiKey")
    );
}

/// A rotation that read the record before a revocation cannot undo it when it writes.
#[tokio::test]
async fn a_stale_write_never_clears_a_revocation() {
    let (keys, key, _clock) = setup(IpAllowlist::Any).await;
    let id = key.id().unwrap();
    let stale =
        tower_shield::api_key::ApiKeyRecord::clone(&keys.store().get(&id).await.unwrap().unwrap());
    assert!(keys.revoke(&id).await.unwrap());
    keys.store().put(&stale).await.unwrap();
    assert!(keys.store().get(&id).await.unwrap().unwrap().revoked);
    if let Some(url) = crate::rate_limit_support::redis_url("a_stale_write_never_clears") {
        use tower_shield::api_key::RedisApiKeyStore;
        use tower_shield::redis::{KeyPrefix, RedisConnection};
        let conn = RedisConnection::connect(&url).await.unwrap();
        let prefix = KeyPrefix::new(crate::rate_limit_support::unique_prefix()).unwrap();
        let redis = ApiKeys::new(RedisApiKeyStore::new(conn, prefix));
        let (key, record) = redis
            .create(NewApiKey::new("o", "n", IpAllowlist::Any))
            .await
            .unwrap();
        let id = key.id().unwrap();
        assert!(redis.revoke(&id).await.unwrap());
        redis.store().put(&record).await.unwrap();
        assert!(redis.store().get(&id).await.unwrap().unwrap().revoked);
    }
}

/// A key beside a bearer token (perhaps someone else's): which identity is meant is unknown.
#[tokio::test]
async fn a_key_beside_another_credential_is_refused() {
    let (keys, key, clock) = setup(IpAllowlist::Any).await;
    let svc = ApiKeyLayer::builder(keys.store().clone())
        .optional()
        .clock(clock)
        .build()
        .unwrap()
        .layer(whoami());
    let mut req = call_with(Some(("x-api-key", key.expose())), "192.0.2.1:1");
    req.headers_mut().insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("Bearer a.b.c"),
    );
    assert_eq!(
        svc.oneshot(req).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
}

/// A store that counts its lookups.
#[derive(Debug, Clone)]
struct Counting {
    inner: MemoryApiKeyStore,
    gets: Arc<AtomicUsize>,
}

impl ApiKeyStore for Counting {
    fn get(&self, id: &KeyId) -> StoreFuture<Option<Arc<ApiKeyRecord>>> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.inner.get(id)
    }
    fn put(&self, record: &ApiKeyRecord) -> StoreFuture<()> {
        self.inner.put(record)
    }
    fn revoke(&self, id: &KeyId) -> StoreFuture<bool> {
        self.inner.revoke(id)
    }
    fn touch(&self, id: &KeyId, at: u64) -> StoreFuture<()> {
        self.inner.touch(id, at)
    }
    fn list(&self, owner: &str) -> StoreFuture<Vec<Arc<ApiKeyRecord>>> {
        self.inner.list(owner)
    }
}

#[tokio::test]
async fn an_unknown_id_and_a_wrong_secret_are_told_apart_by_nothing() {
    let (keys, key, clock) = setup(IpAllowlist::Any).await;
    let gets = Arc::new(AtomicUsize::new(0));
    let store = Counting {
        inner: keys.store().clone(),
        gets: gets.clone(),
    };
    let svc = ApiKeyLayer::builder(store)
        .clock(clock)
        .build()
        .unwrap()
        .layer(whoami());
    let other = ApiKeys::new(MemoryApiKeyStore::new())
        .create(NewApiKey::new("x", "x", IpAllowlist::Any))
        .await
        .unwrap()
        .0;
    let real = key.expose();
    let wrong_secret = format!("{}{}", &real[..27], &other.expose()[27..]);
    let mut seen = Vec::new();
    for presented in [other.expose(), wrong_secret.as_str()] {
        let before = gets.load(Ordering::SeqCst);
        let r = svc
            .clone()
            .oneshot(call_with(Some(("x-api-key", presented)), "192.0.2.1:1"))
            .await
            .unwrap();
        // One lookup each, then the same comparison (against a hash no key has when the
        // record is missing): the work does not tell which it was.
        assert_eq!(gets.load(Ordering::SeqCst) - before, 1);
        let status = r.status();
        let headers: Vec<_> = r
            .headers()
            .iter()
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        seen.push((status, headers, text(r).await));
    }
    assert_eq!(seen[0].0, StatusCode::UNAUTHORIZED);
    assert_eq!(seen[0], seen[1]);
    // A value that cannot be a key never reaches the store.
    let before = gets.load(Ordering::SeqCst);
    let r = svc
        .oneshot(call_with(Some(("x-api-key", &real[..60])), "192.0.2.1:1"))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(gets.load(Ordering::SeqCst), before);
}

#[tokio::test]
async fn ipv4_mapped_allowlist_entries_match_ipv4_clients() {
    let allowed = IpAllowlist::networks(["::ffff:10.21.0.0/112".parse().unwrap()]).unwrap();
    assert_eq!(allowed, nets(&["10.21.0.0/16"]));
    let (keys, key, clock) = setup(allowed).await;
    // Even when the variant is built by hand, a mapped entry matches.
    let by_hand = nets(&["::ffff:10.21.0.0/112"]);
    assert!(by_hand.allows("10.21.3.4".parse().unwrap()));
    assert!(!by_hand.allows("10.22.0.1".parse().unwrap()));
    let svc = ApiKeyLayer::builder(keys.store().clone())
        .clock(clock)
        .build()
        .unwrap()
        .layer(whoami());
    for (peer, status) in [
        ("10.21.0.7:1", StatusCode::OK),
        ("[::ffff:10.21.200.1]:1", StatusCode::OK),
        ("10.22.0.7:1", StatusCode::FORBIDDEN),
    ] {
        let r = svc
            .clone()
            .oneshot(call_with(Some(("x-api-key", key.expose())), peer))
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{peer}");
    }
    for wide in [
        &["0.0.0.0/0"][..],
        &["0.0.0.0/1", "128.0.0.0/1"],
        &["::/1", "8000::/1"],
        &["::ffff:0.0.0.0/96"],
    ] {
        let list = wide.iter().map(|n| n.parse().unwrap());
        assert!(IpAllowlist::networks(list).is_err(), "{wide:?}");
        // Nor can a list built by hand make such a key.
        let made = ApiKeys::new(MemoryApiKeyStore::new())
            .create(NewApiKey::new("x", "x", nets(wide)))
            .await;
        assert!(
            matches!(made, Err(CreateKeyError::Allowlist(_))),
            "{wide:?}"
        );
    }
    // A list built by hand is stored as `networks` gives it back.
    let (_, record) = ApiKeys::new(MemoryApiKeyStore::new())
        .create(NewApiKey::new(
            "x",
            "x",
            nets(&["::ffff:10.21.0.9/112", "10.21.0.0/16"]),
        ))
        .await
        .unwrap();
    assert_eq!(record.allowed, nets(&["10.21.0.0/16"]));
}

#[tokio::test]
async fn a_changed_record_grants_what_it_says_now() {
    let (keys, key, clock) = setup(IpAllowlist::Any).await;
    let svc = ApiKeyLayer::builder(keys.store().clone())
        .clock(clock)
        .build()
        .unwrap()
        .layer(whoami());
    let call = || async {
        let r = svc
            .clone()
            .oneshot(call_with(Some(("x-api-key", key.expose())), "192.0.2.1:1"))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        text(r).await
    };
    let id = key.id().unwrap();
    assert!(call().await.starts_with("svc_billing|service|"));
    // Twice from the same stored record: the same grant.
    assert!(call().await.starts_with("svc_billing|service|"));
    let mut changed = (*keys.store().get(&id).await.unwrap().unwrap()).clone();
    changed.role = Some("auditor".into());
    changed.scopes.clear();
    keys.store().put(&changed).await.unwrap();
    let now = call().await;
    assert!(now.starts_with("svc_billing|auditor|"), "{now}");
    assert!(now.ends_with("|false"), "{now}");
}
