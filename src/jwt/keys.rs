//! Keys: each bound to exactly one algorithm, found by `kid`, published as a JWKS.
//!
//! A [`Key`] is a verification key (public key or HMAC secret) and, when loaded from a private
//! key or generated, also a signing key. A [`KeySet`] holds keys by `kid`, knows which one signs
//! (the *active* key) and which are retired (verify until a grace time, never sign). A
//! [`KeyRing`] shares a `KeySet` between the verifying layer and a token issuer and lets it be
//! rotated while serving: readers take a snapshot (`Arc<KeySet>`) once per request and never
//! hold a lock while verifying; writers clone the set, change the copy and swap it in.
//!
//! Signatures are made and checked by `jsonwebtoken` (aws-lc-rs backend); this module only
//! parses, validates and derives keys with aws-lc-rs.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der};
use aws_lc_rs::signature::{
    self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair, RsaPublicKeyComponents,
    RsaSubjectPublicKey,
};
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, JwkSet, KeyOperations, PublicKeyUse,
    ThumbprintHash,
};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};

use super::b64;
use crate::error::ConfigError;

/// Smallest accepted RSA modulus, in bytes (2048 bits).
const RSA_MIN_BYTES: usize = 256;
/// Largest accepted RSA modulus, in bytes (8192 bits, aws-lc-rs's verification limit).
const RSA_MAX_BYTES: usize = 1024;
/// Largest accepted PEM or JWKS document.
const MAX_DOCUMENT: usize = 1 << 20;

/// Installs aws-lc-rs as `jsonwebtoken`'s crypto provider, ignoring "already installed".
///
/// With only the `aws_lc_rs` feature enabled jsonwebtoken picks it by itself; installing it
/// explicitly keeps working when another crate in the build also enables `rust_crypto`
/// (both enabled and nothing installed makes jsonwebtoken panic at the first use).
pub(crate) fn install_crypto_provider() {
    let _ = jsonwebtoken::crypto::CryptoProvider::install_default(
        &jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER,
    );
}

static NEXT_KEY_ID: AtomicU64 = AtomicU64::new(1);

fn key_err(key: impl Into<String>, reason: &'static str) -> ConfigError {
    ConfigError::Key {
        key: key.into(),
        reason: reason.into(),
    }
}

/// The name of an algorithm as it appears in a JWS header (`RS256`, `EdDSA`, …).
pub fn algorithm_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
        _ => "unknown",
    }
}

/// The algorithm named exactly (case-sensitive) by a JWS `alg` value; `None` for `none` and
/// anything unknown.
pub(crate) fn algorithm_from_name(name: &str) -> Option<Algorithm> {
    // jsonwebtoken's own parser: exactly the names it can verify (never `none`).
    name.parse().ok()
}

fn hmac_min_len(alg: Algorithm) -> usize {
    match alg {
        Algorithm::HS384 => 48,
        Algorithm::HS512 => 64,
        _ => 32,
    }
}

fn ec_signing(alg: Algorithm) -> Option<&'static sig::EcdsaSigningAlgorithm> {
    match alg {
        Algorithm::ES256 => Some(&sig::ECDSA_P256_SHA256_FIXED_SIGNING),
        Algorithm::ES384 => Some(&sig::ECDSA_P384_SHA384_FIXED_SIGNING),
        _ => None,
    }
}

fn ec_verification(alg: Algorithm) -> Option<&'static sig::EcdsaVerificationAlgorithm> {
    match alg {
        Algorithm::ES256 => Some(&sig::ECDSA_P256_SHA256_FIXED),
        Algorithm::ES384 => Some(&sig::ECDSA_P384_SHA384_FIXED),
        _ => None,
    }
}

fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Wraps DER in a PEM envelope so jsonwebtoken's own PKCS#8/SPKI extraction can be reused.
fn pem_wrap(label: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(label, der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// The label and DER body of the first PEM block in `input` (the `pem` crate, already in the
/// tree through jsonwebtoken). Encrypted PEM (`Proc-Type`/`DEK-Info` headers) is refused.
fn pem_parse(input: &[u8]) -> Option<(String, Vec<u8>)> {
    if input.len() > MAX_DOCUMENT {
        return None;
    }
    let block = pem::parse(input).ok()?;
    if block.headers().iter().next().is_some() {
        return None;
    }
    Some((block.tag().to_owned(), block.into_contents()))
}

/// One key, bound to exactly one algorithm.
///
/// Built from a PEM or DER key, a JWK, an HMAC secret, or generated. A key loaded from a
/// private key (or generated) can sign; every key can verify. `Debug` never prints key
/// material.
#[derive(Clone)]
pub struct Key {
    kid: Arc<str>,
    alg: Algorithm,
    decoding: DecodingKey,
    encoding: Option<EncodingKey>,
    /// The public JWK (`None` for HMAC secrets, which are never published).
    public_jwk: Option<Jwk>,
    id: u64,
    retired_until: Option<u64>,
    /// For HMAC keys, the secret prepared for verification once (inner and outer pads
    /// hashed), instead of per token as `jsonwebtoken::crypto::verify` does.
    hmac: Option<aws_lc_rs::hmac::Key>,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("can_sign", &self.encoding.is_some())
            .field("retired_until", &self.retired_until)
            .finish_non_exhaustive()
    }
}

impl Key {
    fn assemble(
        alg: Algorithm,
        decoding: DecodingKey,
        encoding: Option<EncodingKey>,
        kid: Option<String>,
    ) -> Result<Self, ConfigError> {
        let label = kid
            .clone()
            .unwrap_or_else(|| algorithm_name(alg).to_owned());
        let jwk = Jwk::from_decoding_key(&decoding, Some(alg))
            .map_err(|_| key_err(label.clone(), "cannot express the key as a JWK"))?;
        let kid = match kid {
            Some(kid) => {
                validate_kid(&kid)?;
                kid
            }
            None => jwk
                .thumbprint(ThumbprintHash::SHA256)
                .map_err(|_| key_err(label, "cannot compute the RFC 7638 thumbprint"))?,
        };
        let public_jwk = if alg.family() == AlgorithmFamily::Hmac {
            None
        } else {
            Some(Jwk {
                common: CommonParameters {
                    public_key_use: Some(PublicKeyUse::Signature),
                    key_algorithm: Some(alg.into()),
                    key_id: Some(kid.clone()),
                    ..CommonParameters::default()
                },
                algorithm: jwk.algorithm,
            })
        };
        let hmac = match alg {
            Algorithm::HS256 => Some(aws_lc_rs::hmac::HMAC_SHA256),
            Algorithm::HS384 => Some(aws_lc_rs::hmac::HMAC_SHA384),
            Algorithm::HS512 => Some(aws_lc_rs::hmac::HMAC_SHA512),
            _ => None,
        }
        .map(|hmac| {
            let secret = decoding
                .try_get_as_bytes()
                .map_err(|_| key_err(kid.clone(), "invalid HMAC secret"))?;
            Ok::<_, ConfigError>(aws_lc_rs::hmac::Key::new(hmac, secret))
        })
        .transpose()?;
        Ok(Self {
            kid: kid.into(),
            alg,
            decoding,
            encoding,
            public_jwk,
            id: NEXT_KEY_ID.fetch_add(1, Ordering::Relaxed),
            retired_until: None,
            hmac,
        })
    }

    /// An HMAC key (`HS256`/`HS384`/`HS512`) from a secret of at least the hash size
    /// (32, 48 or 64 bytes, RFC 7518 §3.2). It signs and verifies and is never published.
    pub fn hmac(alg: Algorithm, secret: &[u8]) -> Result<Self, ConfigError> {
        install_crypto_provider();
        if alg.family() != AlgorithmFamily::Hmac {
            return Err(key_err(algorithm_name(alg), "not an HMAC algorithm"));
        }
        if secret.len() < hmac_min_len(alg) {
            return Err(key_err(
                algorithm_name(alg),
                "HMAC secret shorter than the hash output (32/48/64 bytes)",
            ));
        }
        let decoding = DecodingKey::from_secret(secret)
            .map_err(|_| key_err(algorithm_name(alg), "invalid HMAC secret"))?;
        let encoding = EncodingKey::from_secret(secret)
            .map_err(|_| key_err(algorithm_name(alg), "invalid HMAC secret"))?;
        Self::assemble(alg, decoding, Some(encoding), None)
    }

    /// A key from PEM text: a private key (`PRIVATE KEY` PKCS#8, `RSA PRIVATE KEY` PKCS#1,
    /// `EC PRIVATE KEY` SEC1) gives a signing key with its public half derived; a public key
    /// (`PUBLIC KEY` SPKI, `RSA PUBLIC KEY` PKCS#1) gives a verification key.
    ///
    /// The first PEM block is read (text around it is ignored). Encrypted PEM is refused, and
    /// so is a block whose body holds a blank line (read as the end of RFC 1421 headers).
    pub fn from_pem(alg: Algorithm, pem: impl AsRef<[u8]>) -> Result<Self, ConfigError> {
        let name = algorithm_name(alg);
        let (label, der) = pem_parse(pem.as_ref()).ok_or_else(|| key_err(name, "not PEM"))?;
        match label.as_str() {
            "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" => {
                Self::from_private_der(alg, &der)
            }
            "PUBLIC KEY" | "RSA PUBLIC KEY" => Self::from_public_der(alg, &der),
            _ => Err(key_err(name, "unsupported PEM label")),
        }
    }

    /// A signing key from DER: RSA PKCS#8 or PKCS#1, EC PKCS#8 or SEC1, Ed25519 PKCS#8.
    pub fn from_private_der(alg: Algorithm, der: &[u8]) -> Result<Self, ConfigError> {
        install_crypto_provider();
        let name = algorithm_name(alg);
        match alg.family() {
            AlgorithmFamily::Rsa => {
                let pkcs1;
                let (pair, pkcs1_der) = if let Ok(pair) = RsaKeyPair::from_der(der) {
                    (pair, der)
                } else {
                    // PKCS#8: let jsonwebtoken's PEM reader extract the PKCS#1 structure.
                    let enc = EncodingKey::from_rsa_pem(pem_wrap("PRIVATE KEY", der).as_bytes())
                        .map_err(|_| key_err(name, "not an RSA private key"))?;
                    pkcs1 = enc.as_bytes().to_vec();
                    let pair = RsaKeyPair::from_der(&pkcs1)
                        .map_err(|_| key_err(name, "not an RSA private key"))?;
                    (pair, pkcs1.as_slice())
                };
                check_rsa(
                    name,
                    &RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key()),
                )?;
                let decoding = DecodingKey::from_rsa_der(pair.public_key().as_ref());
                let encoding = EncodingKey::from_rsa_der(pkcs1_der);
                Self::assemble(alg, decoding, Some(encoding), None)
            }
            AlgorithmFamily::Ec => {
                let signing = ec_signing(alg).ok_or_else(|| key_err(name, "unsupported curve"))?;
                let pair = EcdsaKeyPair::from_pkcs8(signing, der)
                    .or_else(|_| EcdsaKeyPair::from_private_key_der(signing, der))
                    .map_err(|_| {
                        key_err(name, "not an EC private key on this algorithm's curve")
                    })?;
                let pkcs8 = pair
                    .to_pkcs8v1()
                    .map_err(|_| key_err(name, "cannot re-encode the EC key"))?;
                let decoding = DecodingKey::from_ec_der(pair.public_key().as_ref());
                let encoding = EncodingKey::from_ec_der(pkcs8.as_ref());
                Self::assemble(alg, decoding, Some(encoding), None)
            }
            AlgorithmFamily::Ed => {
                let pair = Ed25519KeyPair::from_pkcs8(der)
                    .map_err(|_| key_err(name, "not an Ed25519 PKCS#8 private key"))?;
                let pkcs8: Pkcs8V1Der<'static> = pair
                    .as_der()
                    .map_err(|_| key_err(name, "cannot re-encode the Ed25519 key"))?;
                let decoding = DecodingKey::from_ed_der(pair.public_key().as_ref());
                let encoding = EncodingKey::from_ed_der(pkcs8.as_ref());
                Self::assemble(alg, decoding, Some(encoding), None)
            }
            AlgorithmFamily::Hmac => Err(key_err(name, "HMAC keys are built with Key::hmac")),
        }
    }

    /// A verification key from DER: RSA SPKI or PKCS#1, EC or Ed25519 SPKI.
    pub fn from_public_der(alg: Algorithm, der: &[u8]) -> Result<Self, ConfigError> {
        install_crypto_provider();
        let name = algorithm_name(alg);
        match alg.family() {
            AlgorithmFamily::Rsa => {
                let public = RsaSubjectPublicKey::from_der(der)
                    .map_err(|_| key_err(name, "not an RSA public key"))?;
                check_rsa(name, &RsaPublicKeyComponents::<Vec<u8>>::from(&public))?;
                let decoding = DecodingKey::from_rsa_der(public.as_ref());
                Self::assemble(alg, decoding, None, None)
            }
            AlgorithmFamily::Ec => {
                let pem = pem_wrap("PUBLIC KEY", der);
                let decoding = DecodingKey::from_ec_pem(pem.as_bytes())
                    .map_err(|_| key_err(name, "not an EC public key"))?;
                let point = decoding
                    .try_get_as_bytes()
                    .map_err(|_| key_err(name, "not an EC public key"))?;
                let verification =
                    ec_verification(alg).ok_or_else(|| key_err(name, "unsupported curve"))?;
                sig::ParsedPublicKey::new(verification, point)
                    .map_err(|_| key_err(name, "not a point on this algorithm's curve"))?;
                Self::assemble(alg, decoding, None, None)
            }
            AlgorithmFamily::Ed => {
                let pem = pem_wrap("PUBLIC KEY", der);
                let decoding = DecodingKey::from_ed_pem(pem.as_bytes())
                    .map_err(|_| key_err(name, "not an Ed25519 public key"))?;
                let raw = decoding
                    .try_get_as_bytes()
                    .map_err(|_| key_err(name, "not an Ed25519 public key"))?;
                sig::ParsedPublicKey::new(&sig::ED25519, raw)
                    .map_err(|_| key_err(name, "not an Ed25519 public key"))?;
                Self::assemble(alg, decoding, None, None)
            }
            AlgorithmFamily::Hmac => Err(key_err(name, "HMAC keys are built with Key::hmac")),
        }
    }

    /// A verification key from a JWK whose `alg` member names its algorithm.
    ///
    /// `kid` comes from the JWK, else the RFC 7638 thumbprint. A JWK with `use` other than
    /// `sig`, or `key_ops` without `verify`, is refused. Private members are ignored: the
    /// key only verifies (an `oct` JWK gives an HMAC key, which also signs).
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, ConfigError> {
        let label = jwk
            .common
            .key_id
            .clone()
            .unwrap_or_else(|| "jwk".to_owned());
        let alg = jwk
            .common
            .key_algorithm
            .and_then(|a| algorithm_from_name(&a.to_string()))
            .ok_or_else(|| key_err(label, "JWK without a supported `alg`"))?;
        Self::from_jwk_with_alg(alg, jwk)
    }

    /// A verification key from a JWK, bound to `alg` (the JWK's own `alg`, when present, must
    /// be the same).
    pub fn from_jwk_with_alg(alg: Algorithm, jwk: &Jwk) -> Result<Self, ConfigError> {
        install_crypto_provider();
        let label = jwk
            .common
            .key_id
            .clone()
            .unwrap_or_else(|| algorithm_name(alg).to_owned());
        if let Some(own) = jwk.common.key_algorithm
            && algorithm_from_name(&own.to_string()) != Some(alg)
        {
            return Err(key_err(
                label,
                "JWK `alg` differs from the algorithm asked for",
            ));
        }
        if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
            return Err(key_err(label, "JWK `use` is not `sig`"));
        }
        if let Some(ops) = &jwk.common.key_operations
            && !ops.contains(&KeyOperations::Verify)
        {
            return Err(key_err(label, "JWK `key_ops` does not allow `verify`"));
        }
        let kid = jwk.common.key_id.clone();
        match (&jwk.algorithm, alg.family()) {
            (AlgorithmParameters::RSA(p), AlgorithmFamily::Rsa) => {
                let n = b64::decode_url(p.n.as_bytes())
                    .ok_or_else(|| key_err(label.clone(), "JWK `n` is not base64url"))?;
                let e = b64::decode_url(p.e.as_bytes())
                    .ok_or_else(|| key_err(label.clone(), "JWK `e` is not base64url"))?;
                // Leading zero bytes (not canonical, but seen) are dropped before the key is
                // checked and built, so what is checked is what verifies.
                let (n, e) = (unsigned(&n), unsigned(&e));
                check_rsa(&label, &RsaPublicKeyComponents { n, e })?;
                let decoding = DecodingKey::from_rsa_raw_components(n, e);
                Self::assemble(alg, decoding, None, kid)
            }
            (AlgorithmParameters::EllipticCurve(p), AlgorithmFamily::Ec) => {
                let expected = match alg {
                    Algorithm::ES384 => EllipticCurve::P384,
                    _ => EllipticCurve::P256,
                };
                if p.curve != expected {
                    return Err(key_err(label, "JWK curve does not match `alg`"));
                }
                let decoding = DecodingKey::from_ec_components(&p.x, &p.y)
                    .map_err(|_| key_err(label.clone(), "JWK `x`/`y` are not base64url"))?;
                let point = decoding
                    .try_get_as_bytes()
                    .map_err(|_| key_err(label.clone(), "bad EC point"))?;
                let verification =
                    ec_verification(alg).ok_or_else(|| key_err(label.clone(), "bad curve"))?;
                sig::ParsedPublicKey::new(verification, point)
                    .map_err(|_| key_err(label, "JWK point is not on the curve"))?;
                Self::assemble(alg, decoding, None, kid)
            }
            (AlgorithmParameters::OctetKeyPair(p), AlgorithmFamily::Ed) => {
                if p.curve != EllipticCurve::Ed25519 {
                    return Err(key_err(label, "only Ed25519 is supported"));
                }
                let x = b64::decode_url(p.x.as_bytes())
                    .ok_or_else(|| key_err(label.clone(), "JWK `x` is not base64url"))?;
                sig::ParsedPublicKey::new(&sig::ED25519, &x)
                    .map_err(|_| key_err(label, "not an Ed25519 public key"))?;
                Self::assemble(alg, DecodingKey::from_ed_der(&x), None, kid)
            }
            (AlgorithmParameters::OctetKey(p), AlgorithmFamily::Hmac) => {
                let secret = b64::decode_url(p.value.as_bytes())
                    .ok_or_else(|| key_err(label.clone(), "JWK `k` is not base64url"))?;
                let mut key = Self::hmac(alg, &secret)?;
                if let Some(kid) = kid {
                    key = key.with_kid(kid)?;
                }
                Ok(key)
            }
            _ => Err(key_err(label, "JWK key type does not match `alg`")),
        }
    }

    /// Generates a fresh signing key: RSA 2048 bits for `RS*`/`PS*`, P-256/P-384 for
    /// `ES256`/`ES384`, Ed25519 for `EdDSA`, a random secret of the hash size for `HS*`.
    pub fn generate(alg: Algorithm) -> Result<Self, ConfigError> {
        let name = algorithm_name(alg);
        let failed = || key_err(name, "key generation failed");
        match alg.family() {
            AlgorithmFamily::Rsa => {
                let pair =
                    RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).map_err(|_| failed())?;
                let der: Pkcs8V1Der<'static> = pair.as_der().map_err(|_| failed())?;
                Self::from_private_der(alg, der.as_ref())
            }
            AlgorithmFamily::Ec => {
                let signing = ec_signing(alg).ok_or_else(failed)?;
                let pair = EcdsaKeyPair::generate(signing).map_err(|_| failed())?;
                let der = pair.to_pkcs8v1().map_err(|_| failed())?;
                Self::from_private_der(alg, der.as_ref())
            }
            AlgorithmFamily::Ed => {
                let pair = Ed25519KeyPair::generate().map_err(|_| failed())?;
                let der: Pkcs8V1Der<'static> = pair.as_der().map_err(|_| failed())?;
                Self::from_private_der(alg, der.as_ref())
            }
            AlgorithmFamily::Hmac => {
                let mut secret = vec![0u8; hmac_min_len(alg)];
                aws_lc_rs::rand::fill(&mut secret).map_err(|_| failed())?;
                Self::hmac(alg, &secret)
            }
        }
    }

    /// Replaces the `kid` (default: the RFC 7638 SHA-256 thumbprint). At most 256 printable
    /// ASCII characters.
    pub fn with_kid(mut self, kid: impl Into<String>) -> Result<Self, ConfigError> {
        let kid = kid.into();
        validate_kid(&kid)?;
        if let Some(jwk) = &mut self.public_jwk {
            jwk.common.key_id = Some(kid.clone());
        }
        self.kid = kid.into();
        Ok(self)
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The `kid`, shared (a reference count, not a copy).
    pub(crate) fn kid_shared(&self) -> Arc<str> {
        self.kid.clone()
    }

    /// The one algorithm this key is used with.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// Whether this key can sign (it was loaded from a private key, generated, or is HMAC).
    pub fn can_sign(&self) -> bool {
        self.encoding.is_some()
    }

    /// The key that verifies signatures.
    pub fn decoding_key(&self) -> &DecodingKey {
        &self.decoding
    }

    /// The key that signs, when this key can sign.
    pub fn encoding_key(&self) -> Option<&EncodingKey> {
        self.encoding.as_ref()
    }

    /// The public JWK (`kid`, `alg`, `use: "sig"`); `None` for HMAC keys.
    pub fn public_jwk(&self) -> Option<&Jwk> {
        self.public_jwk.as_ref()
    }

    /// Until when (unix seconds) a retired key still verifies; `None` when not retired.
    pub fn retired_until(&self) -> Option<u64> {
        self.retired_until
    }

    /// Whether this key verifies tokens at `now` (unix seconds).
    pub fn verifies_at(&self, now: u64) -> bool {
        self.retired_until.is_none_or(|until| now <= until)
    }

    /// The prepared HMAC secret (HMAC keys only).
    pub(crate) fn hmac_key(&self) -> Option<&aws_lc_rs::hmac::Key> {
        self.hmac.as_ref()
    }

    /// A process-unique id of this key's material, so a cached verification made with one
    /// key is not reused after the `kid` is re-bound to another.
    pub(crate) fn instance_id(&self) -> u64 {
        self.id
    }
}

/// A big-endian unsigned number without its leading zero bytes.
fn unsigned(n: &[u8]) -> &[u8] {
    n.get(n.len() - significant_len(n)..).unwrap_or_default()
}

fn significant_len(n: &[u8]) -> usize {
    n.iter().position(|&b| b != 0).map_or(0, |i| n.len() - i)
}

/// An RSA public key we verify with: 2048 to 8192 bits, public exponent 65537.
///
/// Other exponents are refused: a small one (e = 3) is what signature-forgery attacks on
/// lax PKCS#1 v1.5 verifiers rely on, no mainstream issuer uses anything but 65537, and
/// refusing it at load time costs nothing per token.
fn check_rsa<B: AsRef<[u8]>>(
    name: &str,
    key: &RsaPublicKeyComponents<B>,
) -> Result<(), ConfigError> {
    let modulus_bytes = significant_len(key.n.as_ref());
    if unsigned(key.e.as_ref()) != [0x01, 0x00, 0x01] {
        return Err(key_err(name, "RSA public exponent is not 65537"));
    }
    if modulus_bytes < RSA_MIN_BYTES {
        return Err(key_err(name, "RSA key shorter than 2048 bits"));
    }
    if modulus_bytes > RSA_MAX_BYTES {
        return Err(key_err(name, "RSA key longer than 8192 bits"));
    }
    Ok(())
}

fn validate_kid(kid: &str) -> Result<(), ConfigError> {
    if kid.is_empty() || kid.len() > 256 || !kid.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(key_err(
            "kid",
            "a kid must be 1 to 256 printable ASCII characters",
        ));
    }
    Ok(())
}

/// The key the issuer signs with: its `kid`, algorithm and `jsonwebtoken` encoding key.
#[derive(Debug, Clone, Copy)]
pub struct SigningKey<'a> {
    /// The `kid` to put in the token header.
    pub kid: &'a str,
    /// The `alg` to put in the token header.
    pub alg: Algorithm,
    /// The key for `jsonwebtoken::encode`.
    pub key: &'a EncodingKey,
}

/// Keys by `kid`, each bound to one algorithm; one of them is the active signing key.
///
/// ```
/// use jsonwebtoken::Algorithm;
/// use tower_shield::jwt::{Key, KeySet};
///
/// let mut keys = KeySet::new();
/// let kid = keys.insert(Key::generate(Algorithm::EdDSA)?)?;
/// assert_eq!(keys.signing_key().unwrap().kid, kid.as_ref());
/// let jwks = serde_json::to_value(keys.to_jwks())?;
/// assert_eq!(jwks["keys"][0]["use"], "sig");
/// assert_eq!(jwks["keys"][0]["alg"], "EdDSA");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
pub struct KeySet {
    keys: HashMap<Arc<str>, Arc<Key>>,
    order: Vec<Arc<str>>,
    active: Option<Arc<str>>,
    /// Algorithms with exactly one key, for tokens without `kid`.
    sole: Vec<(Algorithm, Arc<str>)>,
    /// Which keys the set verifies with: 0 for a new set, a process-unique number after every
    /// change of its keys (insert, remove, retire); a clone keeps it (same keys). The cache
    /// remembers the version a token's key was last found in, to skip the `kid` lookup.
    version: u64,
}

/// The next [`KeySet`] version (0 is the empty set's, never handed out).
static NEXT_VERSION: AtomicU64 = AtomicU64::new(1);

impl fmt::Debug for KeySet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&Key> = self.iter().collect();
        f.debug_struct("KeySet")
            .field("keys", &keys)
            .field("active", &self.active)
            .finish()
    }
}

impl KeySet {
    /// An empty set.
    pub fn new() -> Self {
        install_crypto_provider();
        Self::default()
    }

    /// Adds a key, returning its `kid`. A `kid` already present is refused. The first key that
    /// can sign becomes the active signing key.
    pub fn insert(&mut self, key: Key) -> Result<Arc<str>, ConfigError> {
        install_crypto_provider();
        if self.keys.contains_key(&key.kid) {
            return Err(key_err(key.kid.to_string(), "duplicate kid"));
        }
        let kid = key.kid.clone();
        if self.active.is_none() && key.can_sign() && key.retired_until.is_none() {
            self.active = Some(kid.clone());
        }
        self.order.push(kid.clone());
        self.keys.insert(kid.clone(), Arc::new(key));
        self.reindex();
        self.touch();
        Ok(kid)
    }

    /// Adds a key (builder style).
    pub fn with(mut self, key: Key) -> Result<Self, ConfigError> {
        self.insert(key)?;
        Ok(self)
    }

    /// Loads every key of a JWKS document (`{"keys":[…]}`, at most 1 MiB). Each key needs an
    /// `alg`; keys with `use: "enc"` are skipped; any other unusable key is an error.
    pub fn from_jwks(json: &str) -> Result<Self, ConfigError> {
        if json.len() > MAX_DOCUMENT {
            return Err(key_err("jwks", "document larger than 1 MiB"));
        }
        let set: JwkSet =
            serde_json::from_str(json).map_err(|_| key_err("jwks", "not a JWKS document"))?;
        let mut keys = Self::new();
        for (i, jwk) in set.keys.iter().enumerate() {
            if jwk.common.public_key_use == Some(PublicKeyUse::Encryption) {
                continue;
            }
            let key = Key::from_jwk(jwk).map_err(|e| match e {
                ConfigError::Key { reason, .. } => ConfigError::Key {
                    key: format!("jwks key #{i}"),
                    reason,
                },
                other => other,
            })?;
            keys.insert(key)?;
        }
        Ok(keys)
    }

    /// Removes a key at once (tokens it signed stop verifying). Returns it when present.
    pub fn remove(&mut self, kid: &str) -> Option<Arc<Key>> {
        let key = self.keys.remove(kid)?;
        self.order.retain(|k| k.as_ref() != kid);
        if self.active.as_deref() == Some(kid) {
            self.active = None;
            self.pick_active();
        }
        self.reindex();
        self.touch();
        Some(key)
    }

    /// Makes `kid` the signing key. It must be able to sign and not be retired.
    pub fn set_active(&mut self, kid: &str) -> Result<(), ConfigError> {
        let key = self
            .keys
            .get(kid)
            .ok_or_else(|| key_err(kid, "no such kid"))?;
        if !key.can_sign() {
            return Err(key_err(kid, "key cannot sign (public key only)"));
        }
        if key.retired_until.is_some() {
            return Err(key_err(kid, "key is retired"));
        }
        self.active = Some(key.kid.clone());
        Ok(())
    }

    /// Retires a key for rotation: it stops signing at once and keeps verifying tokens until
    /// `grace_until` (compared with the layer's clock), then is refused. Retiring the active
    /// key makes the most recently added signing key that is not retired the active one.
    pub fn retire(&mut self, kid: &str, grace_until: SystemTime) -> Result<(), ConfigError> {
        let key = self
            .keys
            .get_mut(kid)
            .ok_or_else(|| key_err(kid, "no such kid"))?;
        Arc::make_mut(key).retired_until = Some(unix_secs(grace_until));
        self.touch();
        if self.active.as_deref() == Some(kid) {
            self.active = None;
            self.pick_active();
        }
        Ok(())
    }

    /// Gives the set a new version: its verification keys changed.
    fn touch(&mut self) {
        self.version = NEXT_VERSION.fetch_add(1, Ordering::Relaxed);
    }

    /// This set's version: equal versions mean the same keys, each with the same
    /// retirement (a clone keeps its version; every change of the keys gives a new one).
    pub fn version(&self) -> KeySetVersion {
        KeySetVersion(self.version)
    }

    fn pick_active(&mut self) {
        self.active = self
            .order
            .iter()
            .rev()
            .filter_map(|kid| self.keys.get(kid))
            .find(|k| k.can_sign() && k.retired_until.is_none())
            .map(|k| k.kid.clone());
    }

    fn reindex(&mut self) {
        let mut counts: Vec<(Algorithm, usize, Arc<str>)> = Vec::new();
        for kid in &self.order {
            if let Some(key) = self.keys.get(kid) {
                match counts.iter_mut().find(|(a, _, _)| *a == key.alg) {
                    Some(entry) => entry.1 += 1,
                    None => counts.push((key.alg, 1, kid.clone())),
                }
            }
        }
        self.sole = counts
            .into_iter()
            .filter(|(_, n, _)| *n == 1)
            .map(|(a, _, k)| (a, k))
            .collect();
    }

    /// The key with this `kid`.
    pub fn get(&self, kid: &str) -> Option<&Key> {
        self.keys.get(kid).map(AsRef::as_ref)
    }

    /// The only key of `alg`, when there is exactly one (for tokens without `kid`).
    pub fn sole_key_for(&self, alg: Algorithm) -> Option<&Key> {
        let kid = self.sole.iter().find(|(a, _)| *a == alg).map(|(_, k)| k)?;
        self.get(kid)
    }

    /// Whether some key is bound to `alg`.
    pub fn has_algorithm(&self, alg: Algorithm) -> bool {
        self.keys.values().any(|k| k.alg == alg)
    }

    /// The keys, in the order they were added.
    pub fn iter(&self) -> impl Iterator<Item = &Key> {
        self.order.iter().filter_map(|kid| self.get(kid))
    }

    /// How many keys the set holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The active signing key: `kid`, algorithm and encoding key, for a token issuer.
    pub fn signing_key(&self) -> Option<SigningKey<'_>> {
        let key = self.get(self.active.as_deref()?)?;
        Some(SigningKey {
            kid: &key.kid,
            alg: key.alg,
            key: key.encoding.as_ref()?,
        })
    }

    /// The public keys as a JWKS document (serialise it with serde): every non-HMAC key,
    /// retired ones included (they still verify), each with `kid`, `alg` and `use: "sig"`.
    /// Private parts and HMAC secrets are never included.
    pub fn to_jwks(&self) -> JwkSet {
        JwkSet {
            keys: self.iter().filter_map(|k| k.public_jwk.clone()).collect(),
        }
    }
}

/// Where the layer gets its keys: a snapshot per request.
///
/// Implemented by [`KeyRing`] (local keys, rotated in place). A remote JWKS source (fetching
/// an identity provider's keys, refreshing them in the background and on an unknown `kid`
/// with a cool-down) fits behind the same trait: `snapshot` returns the current keys without
/// waiting, `unknown_kid` is the hint to refresh.
pub trait KeySource: Send + Sync + fmt::Debug + 'static {
    /// The keys to verify this request with. Must not block.
    fn snapshot(&self) -> Arc<KeySet>;

    /// Called when a token names a `kid` the snapshot does not hold. Local sources ignore it.
    fn unknown_kid(&self, _kid: &str) {}

    /// Whether the keys are still those of a snapshot the layer took earlier (`snapshot` is a
    /// previous [`snapshot`](Self::snapshot)'s result), answered without taking a new one.
    ///
    /// The layer asks this on every cache hit: a token whose key was confirmed in that
    /// snapshot then needs no key lookup at all. The default (`false`) makes it take a
    /// snapshot and look the key up instead, which is always correct; [`KeyRing`] answers with
    /// one atomic load, so hits on many cores share no lock.
    ///
    /// Answer `true` only when [`snapshot`](Self::snapshot) would now return a set of exactly
    /// this version (a source that merges several sets must not pass the question on to one
    /// of them). The layer never asks about the version of a set that never held a key
    /// (`KeySet::new()`'s), which also marks a key it could not confirm.
    fn unchanged_since(&self, _snapshot: KeySetVersion) -> bool {
        false
    }
}

/// Which keys a [`KeySet`] held, for [`KeySource::unchanged_since`]: two sets with the same
/// version hold the same keys, each with the same retirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeySetVersion(pub(crate) u64);

/// A [`KeySet`] shared between the verifying layer and an issuer, rotatable while serving.
///
/// Clones share the same keys. [`snapshot`](Self::snapshot) takes a read lock only long enough
/// to clone an `Arc`; [`update`](Self::update) changes a copy and swaps it in, so requests in
/// flight finish with the keys they started with. A JWT cache hit takes neither: it asks
/// [`KeySource::unchanged_since`], one atomic load, so hits on many cores share no lock.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use jsonwebtoken::Algorithm;
/// use tower_shield::jwt::{Key, KeyRing, KeySet};
///
/// let old = Key::generate(Algorithm::ES256)?;
/// let old_kid = old.kid().to_owned();
/// let ring = KeyRing::new(KeySet::new().with(old)?);
/// // Rotate: add a new key, make it active, keep the old one verifying for an hour.
/// ring.update(|keys| {
///     let kid = keys.insert(Key::generate(Algorithm::ES256)?)?;
///     keys.set_active(&kid)?;
///     keys.retire(&old_kid, SystemTime::now() + Duration::from_secs(3600))
/// })?;
/// assert_ne!(ring.snapshot().signing_key().unwrap().kid, old_kid);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Default)]
pub struct KeyRing {
    current: Arc<Ring>,
}

/// The shared state of a [`KeyRing`]: the current set, and its version readable without the
/// lock (written under the write lock, after the set).
#[derive(Default)]
struct Ring {
    keys: RwLock<Arc<KeySet>>,
    version: AtomicU64,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("KeyRing").field(&self.snapshot()).finish()
    }
}

impl KeyRing {
    /// A ring holding `keys`.
    pub fn new(keys: KeySet) -> Self {
        install_crypto_provider();
        Self {
            current: Arc::new(Ring {
                version: AtomicU64::new(keys.version),
                keys: RwLock::new(Arc::new(keys)),
            }),
        }
    }

    /// The current keys.
    pub fn snapshot(&self) -> Arc<KeySet> {
        self.current
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Puts `keys` in place of the current set (the write lock held).
    fn swap_in(&self, guard: &mut Arc<KeySet>, keys: KeySet) {
        let version = keys.version;
        *guard = Arc::new(keys);
        self.current.version.store(version, Ordering::Release);
    }

    /// Changes the keys: `change` works on a copy, which replaces the current set only when it
    /// returns `Ok`.
    pub fn update<R>(
        &self,
        change: impl FnOnce(&mut KeySet) -> Result<R, ConfigError>,
    ) -> Result<R, ConfigError> {
        let mut guard = self.write();
        let mut copy = KeySet::clone(&guard);
        let result = change(&mut copy)?;
        self.swap_in(&mut guard, copy);
        Ok(result)
    }

    /// Replaces the keys.
    pub fn replace(&self, keys: KeySet) {
        self.swap_in(&mut self.write(), keys);
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Arc<KeySet>> {
        self.current
            .keys
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl From<KeySet> for KeyRing {
    fn from(keys: KeySet) -> Self {
        Self::new(keys)
    }
}

impl KeySource for KeyRing {
    fn snapshot(&self) -> Arc<KeySet> {
        Self::snapshot(self)
    }

    fn unchanged_since(&self, snapshot: KeySetVersion) -> bool {
        // 0 is the version of no keys at all: never "unchanged" for a cached token.
        snapshot.0 != 0 && self.current.version.load(Ordering::Acquire) == snapshot.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_names_are_exact() {
        for alg in [
            Algorithm::HS256,
            Algorithm::ES384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::EdDSA,
        ] {
            assert_eq!(algorithm_from_name(algorithm_name(alg)), Some(alg));
        }
        for name in [
            "none", "None", "NONE", "hs256", "HS256 ", "ES512", "EDDSA", "",
        ] {
            assert_eq!(algorithm_from_name(name), None, "{name:?}");
        }
    }

    #[test]
    fn hmac_secret_must_reach_hash_size() {
        assert!(Key::hmac(Algorithm::HS256, &[7; 31]).is_err());
        assert!(Key::hmac(Algorithm::HS256, &[7; 32]).is_ok());
        assert!(Key::hmac(Algorithm::HS512, &[7; 32]).is_err());
        assert!(Key::hmac(Algorithm::RS256, &[7; 64]).is_err());
    }

    #[test]
    fn generated_keys_round_trip_through_jwks_with_thumbprint_kids() {
        for alg in [
            Algorithm::RS256,
            Algorithm::PS256,
            Algorithm::ES256,
            Algorithm::ES384,
            Algorithm::EdDSA,
        ] {
            let key = Key::generate(alg).unwrap();
            assert!(key.can_sign());
            let jwk = key.public_jwk().unwrap();
            assert_eq!(jwk.thumbprint(ThumbprintHash::SHA256).unwrap(), key.kid());
            let json = serde_json::to_string(&JwkSet {
                keys: vec![jwk.clone()],
            })
            .unwrap();
            assert!(!json.contains("\"d\""));
            let set = KeySet::from_jwks(&json).unwrap();
            let back = set.get(key.kid()).unwrap();
            assert_eq!(back.algorithm(), alg);
            assert!(!back.can_sign());
        }
    }

    #[test]
    fn hmac_keys_are_not_published() {
        let keys = KeySet::new()
            .with(Key::generate(Algorithm::HS256).unwrap())
            .unwrap();
        assert!(keys.to_jwks().keys.is_empty());
        assert!(keys.signing_key().is_some());
    }

    #[test]
    fn pem_private_and_public_keys_load() {
        let pair = EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let pkcs8 = pair.to_pkcs8v1().unwrap();
        let pem = pem_wrap("PRIVATE KEY", pkcs8.as_ref());
        let private = Key::from_pem(Algorithm::ES256, &pem).unwrap();
        assert!(private.can_sign());
        assert!(
            Key::from_pem(Algorithm::ES384, &pem).is_err(),
            "wrong curve"
        );
        assert!(
            Key::from_pem(Algorithm::RS256, &pem).is_err(),
            "wrong family"
        );

        let spki: aws_lc_rs::encoding::PublicKeyX509Der<'static> =
            pair.public_key().as_der().unwrap();
        let public =
            Key::from_pem(Algorithm::ES256, pem_wrap("PUBLIC KEY", spki.as_ref())).unwrap();
        assert!(!public.can_sign());
        assert_eq!(public.kid(), private.kid());
    }

    #[test]
    fn sec1_ec_and_every_rsa_public_form_load() {
        let pair = EcdsaKeyPair::generate(&sig::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        let sec1: aws_lc_rs::encoding::EcPrivateKeyRfc5915Der<'static> =
            pair.private_key().as_der().unwrap();
        let key =
            Key::from_pem(Algorithm::ES256, pem_wrap("EC PRIVATE KEY", sec1.as_ref())).unwrap();
        assert!(key.can_sign());

        let rsa = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let pkcs1_public = rsa.public_key().as_ref().to_vec();
        let spki: aws_lc_rs::encoding::PublicKeyX509Der<'static> =
            rsa.public_key().as_der().unwrap();
        let a = Key::from_pem(Algorithm::RS256, pem_wrap("RSA PUBLIC KEY", &pkcs1_public)).unwrap();
        let b = Key::from_pem(Algorithm::PS256, pem_wrap("PUBLIC KEY", spki.as_ref())).unwrap();
        assert!(!a.can_sign() && !b.can_sign());
        assert_eq!(a.kid(), b.kid(), "same key material, same thumbprint");
        assert!(Key::from_pem(Algorithm::RS256, "not pem").is_err());
        assert!(Key::from_pem(Algorithm::RS256, pem_wrap("CERTIFICATE", &pkcs1_public)).is_err());
    }

    /// A DER length.
    fn der_len(len: usize) -> Vec<u8> {
        match len {
            0..=127 => vec![len as u8],
            128..=255 => vec![0x81, len as u8],
            _ => vec![0x82, (len >> 8) as u8, len as u8],
        }
    }

    /// A DER INTEGER of an unsigned big-endian number.
    fn der_uint(bytes: &[u8]) -> Vec<u8> {
        let mut value = bytes.to_vec();
        if value.first().is_some_and(|b| b & 0x80 != 0) {
            value.insert(0, 0);
        }
        let mut out = vec![0x02];
        out.extend(der_len(value.len()));
        out.extend(value);
        out
    }

    #[test]
    fn rsa_exponents_other_than_65537_are_refused() {
        let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let n = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key()).n;
        for e in [
            &[3u8][..],
            &[0x01, 0x00, 0x00, 0x01],
            &[1],
            &[0x01, 0x00, 0x01, 0x00],
        ] {
            // PKCS#1 RSAPublicKey: SEQUENCE { n, e }.
            let mut body = der_uint(&n);
            body.extend(der_uint(e));
            let mut der = vec![0x30];
            der.extend(der_len(body.len()));
            der.extend(body);
            // aws-lc itself refuses some (e = 1); the others are refused here.
            let error = Key::from_public_der(Algorithm::RS256, &der).err();
            assert!(error.is_some(), "{e:?}");
            if e == [3] {
                assert!(error.is_some_and(|e| e.to_string().contains("65537")));
            }
            let jwk: Jwk = serde_json::from_value(serde_json::json!({
                "kty": "RSA", "alg": "RS256", "kid": "k", "use": "sig",
                "n": b64::encode_url(&n), "e": b64::encode_url(e),
            }))
            .unwrap();
            assert!(Key::from_jwk(&jwk).is_err(), "{e:?}");
        }
        // A JWK's `e` with leading zeros is the same number: e = 3 is still refused.
        let jwk: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "RSA", "alg": "RS256", "kid": "k", "use": "sig",
            "n": b64::encode_url(&n), "e": b64::encode_url(&[0, 0, 3]),
        }))
        .unwrap();
        assert!(Key::from_jwk(&jwk).is_err());
        // 65537, with or without leading zero bytes (in `e` and `n`), loads and verifies
        // what the private key signs.
        let pkcs8: Pkcs8V1Der<'static> = pair.as_der().unwrap();
        let signer = Key::from_private_der(Algorithm::RS256, pkcs8.as_ref()).unwrap();
        let message = b"header.payload";
        let signature =
            jsonwebtoken::crypto::sign(message, signer.encoding_key().unwrap(), Algorithm::RS256)
                .unwrap();
        let mut padded_n = vec![0, 0];
        padded_n.extend_from_slice(&n);
        for (e, n) in [
            (&[0x01, 0x00, 0x01][..], &n[..]),
            (&[0, 0x01, 0x00, 0x01], &n),
            (&[0, 0, 0, 0x01, 0x00, 0x01], &padded_n),
        ] {
            let jwk: Jwk = serde_json::from_value(serde_json::json!({
                "kty": "RSA", "alg": "RS256", "kid": "k", "use": "sig",
                "n": b64::encode_url(n), "e": b64::encode_url(e),
            }))
            .unwrap();
            let key = Key::from_jwk(&jwk).unwrap();
            assert!(
                jsonwebtoken::crypto::verify(
                    &signature,
                    message,
                    key.decoding_key(),
                    Algorithm::RS256
                )
                .unwrap(),
                "{e:?}"
            );
        }
    }

    #[test]
    fn rsa_pkcs1_and_pkcs8_give_the_same_key() {
        let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
        let pkcs8: Pkcs8V1Der<'static> = pair.as_der().unwrap();
        let a = Key::from_private_der(Algorithm::RS256, pkcs8.as_ref()).unwrap();
        let pkcs1 = a.encoding_key().unwrap().as_bytes().to_vec();
        let b = Key::from_pem(Algorithm::RS256, pem_wrap("RSA PRIVATE KEY", &pkcs1)).unwrap();
        assert_eq!(a.kid(), b.kid());
    }

    #[test]
    fn a_ring_is_unchanged_only_since_its_current_version() {
        let ring = KeyRing::new(
            KeySet::new()
                .with(Key::generate(Algorithm::ES256).unwrap())
                .unwrap(),
        );
        let before = ring.snapshot().version();
        assert!(ring.unchanged_since(before));
        // A clone of the set (what a snapshot shares) keeps the version.
        assert_eq!(KeySet::clone(&ring.snapshot()).version(), before);
        let kid = ring
            .update(|keys| keys.insert(Key::generate(Algorithm::ES256).unwrap()))
            .unwrap();
        assert!(!ring.unchanged_since(before), "a key was added");
        let after = ring.snapshot().version();
        assert!(ring.unchanged_since(after));
        // A change that fails leaves the set, and its version, as they were.
        assert!(ring.update(|keys| keys.set_active("no such kid")).is_err());
        assert!(ring.unchanged_since(after));
        ring.update(|keys| keys.retire(&kid, UNIX_EPOCH)).unwrap();
        assert!(!ring.unchanged_since(after), "a key was retired");
        ring.replace(KeySet::new());
        let empty = ring.snapshot().version();
        assert!(!ring.unchanged_since(empty), "no keys: never unchanged");
        assert!(!KeyRing::default().unchanged_since(KeyRing::default().snapshot().version()));
    }

    #[test]
    fn retire_moves_the_active_key_and_keeps_verifying_until_grace() {
        let mut keys = KeySet::new();
        let first = keys
            .insert(Key::generate(Algorithm::ES256).unwrap())
            .unwrap();
        let second = keys
            .insert(Key::generate(Algorithm::ES256).unwrap())
            .unwrap();
        assert_eq!(keys.signing_key().unwrap().kid, first.as_ref());
        keys.retire(&first, UNIX_EPOCH + std::time::Duration::from_secs(100))
            .unwrap();
        assert_eq!(keys.signing_key().unwrap().kid, second.as_ref());
        let retired = keys.get(&first).unwrap();
        assert!(retired.verifies_at(100));
        assert!(!retired.verifies_at(101));
        assert!(keys.set_active(&first).is_err());
        assert!(
            keys.sole_key_for(Algorithm::ES256).is_none(),
            "two ES256 keys"
        );
    }
}
