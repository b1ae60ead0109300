//! Interoperability: tokens signed by Python's PyJWT (RS256, ES256, EdDSA) with keys generated
//! here verify through `JwtAuthLayer`; the same tokens with one byte changed do not.
//!
//! Needs `python3` with `pyjwt[crypto]` (`python3 -m pip install 'pyjwt[crypto]'`). Without it
//! the test prints a skip line, unless `TOWER_SHIELD_REQUIRE_PYJWT` is set: then it fails.

use std::convert::Infallible;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use jsonwebtoken::Algorithm;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_shield::clock::ManualClock;
use tower_shield::jwt::{Claims, JwtAuthLayer, Key, KeySet, Verified};

const NOW: u64 = 1_800_000_000;

fn pyjwt_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import jwt, cryptography"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var_os("TOWER_SHIELD_REQUIRE_PYJWT").is_some() {
            panic!(
                "TOWER_SHIELD_REQUIRE_PYJWT is set but `python3 -c 'import jwt, cryptography'` \
                 fails; install it with: python3 -m pip install 'pyjwt[crypto]'"
            );
        }
        println!("skipped: PyJWT not installed (python3 -m pip install 'pyjwt[crypto]')");
    }
    ok
}

fn pem(label: &str, der: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(char::from(A[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Signs `{"sub":"py_user",…}` with PyJWT, with the private key in `key_file`.
fn pyjwt_sign(key_file: &Path, alg: &str, kid: &str) -> String {
    let script = format!(
        r#"
import jwt, sys
key = open(sys.argv[1]).read()
claims = {{"sub": "py_user", "iat": {iat}, "exp": {exp}, "jti": "py_1", "iss": "python", "aud": "api"}}
print(jwt.encode(claims, key, algorithm=sys.argv[2], headers={{"kid": sys.argv[3], "typ": "at+jwt"}}))
"#,
        iat = NOW - 5,
        exp = NOW + 300
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(key_file)
        .arg(alg)
        .arg(kid)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "PyJWT failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

async fn status(layer: &JwtAuthLayer, token: &str) -> StatusCode {
    let service = ServiceBuilder::new()
        .layer(layer.clone())
        .service(service_fn(|req: Request<Full<Bytes>>| async move {
            let v = req.extensions().get::<Verified<Claims>>().unwrap();
            assert_eq!(v.sub, "py_user");
            Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
        }));
    let request = Request::get("/")
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .body(Full::default())
        .unwrap();
    service.oneshot(request).await.unwrap().status()
}

/// Every way of changing one character of the token.
fn one_byte_changes(token: &str) -> Vec<String> {
    let bytes = token.as_bytes();
    let dots: Vec<usize> = token.match_indices('.').map(|(i, _)| i).collect();
    let positions = [
        0,
        dots[0] / 2,
        dots[0] + 1,
        (dots[0] + dots[1]) / 2,
        dots[1] + 1,
        (dots[1] + bytes.len()) / 2,
        bytes.len() - 2,
        bytes.len() - 1,
    ];
    positions
        .iter()
        .map(|&i| {
            let mut changed = bytes.to_vec();
            changed[i] = if changed[i] == b'A' { b'B' } else { b'A' };
            String::from_utf8(changed).unwrap()
        })
        .collect()
}

#[tokio::test]
async fn pyjwt_tokens_verify_and_altered_ones_do_not() {
    if !pyjwt_available() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("tower-shield-pyjwt-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();

    let rsa = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let rsa_der: Pkcs8V1Der<'static> = rsa.as_der().unwrap();
    let ec = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let ec_der = ec.to_pkcs8v1().unwrap();
    let ed = Ed25519KeyPair::generate().unwrap();
    let ed_der: Pkcs8V1Der<'static> = ed.as_der().unwrap();

    let cases = [
        (
            "RS256",
            Algorithm::RS256,
            pem("PRIVATE KEY", rsa_der.as_ref()),
        ),
        (
            "ES256",
            Algorithm::ES256,
            pem("PRIVATE KEY", ec_der.as_ref()),
        ),
        (
            "EdDSA",
            Algorithm::EdDSA,
            pem("PRIVATE KEY", ed_der.as_ref()),
        ),
    ];
    let mut keys = KeySet::new();
    let mut tokens = Vec::new();
    for (name, alg, private_pem) in &cases {
        let file = dir.join(format!("{name}.pem"));
        std::fs::write(&file, private_pem).unwrap();
        let key = Key::from_pem(*alg, private_pem).unwrap();
        let kid = key.kid().to_owned();
        keys.insert(key).unwrap();
        tokens.push((name, pyjwt_sign(&file, name, &kid)));
    }
    std::fs::remove_dir_all(&dir).ok();

    // Verify with the public half only, as a resource server would (via the JWKS).
    let jwks = serde_json::to_string(&keys.to_jwks()).unwrap();
    let layer = JwtAuthLayer::builder(KeySet::from_jwks(&jwks).unwrap())
        .issuer("python")
        .clock(ManualClock::at(UNIX_EPOCH + Duration::from_secs(NOW)))
        .build()
        .unwrap();
    for (name, token) in &tokens {
        assert_eq!(status(&layer, token).await, StatusCode::OK, "PyJWT {name}");
        for altered in one_byte_changes(token) {
            assert_eq!(
                status(&layer, &altered).await,
                StatusCode::UNAUTHORIZED,
                "altered PyJWT {name} token accepted"
            );
        }
    }
}
