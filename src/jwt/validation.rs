//! Token validation: every cheap refusal before any signature work, then the signature
//! (by `jsonwebtoken`), then the claims type.
//!
//! Order, for a token of at most `max_token_len` bytes:
//! 1. charset (base64url and two dots) and segment count;
//! 2. header: strict base64url, JSON object of at most 32 members, no duplicate member;
//!    `alg` names a supported algorithm exactly (`none`, in any case, is refused); `crit`,
//!    `jwk`, `jku`, `x5u`, `x5c`, `b64`, `zip` and `enc` are refused (they would ask us to find
//!    keys or process the token in ways we never do);
//! 3. key: by `kid` (the key's bound algorithm must equal `alg`); without `kid` only when
//!    exactly one key of that algorithm exists; a retired key past its grace is refused;
//! 4. token type (`typ` header, or a claim, see [`TokenType`]);
//! 5. payload: strict base64url, JSON object, registered claims well typed and not
//!    duplicated; `exp` and `sub` present, and for RFC 9068 access tokens (`typ: at+jwt`
//!    required, unless turned off) `iss`, `aud`, `iat` and `jti` too; `exp`, `nbf`, `iat`
//!    against the clock with leeway; `iss`/`aud` when configured;
//! 6. signature: `jsonwebtoken::crypto::verify` with the key's algorithm (HMAC: aws-lc-rs's
//!    `hmac::verify`, which that function calls, with the key prepared when it was loaded);
//! 7. the claims type `C` from the same decoded payload.
//!
//! jsonwebtoken's own `decode` is not used: it parses the header with last-duplicate-wins,
//! deserialises the payload twice and reads the system clock for `exp`/`nbf`. Its signature
//! code (aws-lc-rs) is what checks every signature here: through `jsonwebtoken::crypto::verify`,
//! or for HMAC by the `aws_lc_rs::hmac::verify` call that function makes, on a key prepared
//! once.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use jsonwebtoken::Algorithm;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::b64;
use super::keys::{Key, KeySet, KeySource, algorithm_from_name};

/// Why a token was refused (for debug logs and tests; never sent to a client).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Invalid {
    TooLong,
    Malformed,
    Header,
    Algorithm,
    ForbiddenHeader,
    UnknownKey,
    KeyRetired,
    TokenType,
    Payload,
    /// A claim RFC 9068 requires of an access token is missing.
    MissingClaim,
    Expired,
    NotYetValid,
    IssuedInFuture,
    Issuer,
    Audience,
    Signature,
    Claims,
    /// Found revoked earlier (a cache entry the revocation store refused).
    Revoked,
    /// No token was presented (no `Authorization`, or another scheme).
    Missing,
    /// The revocation store could not answer (503).
    Unavailable,
}

impl Invalid {
    /// Every reason, in the order of [`index`](Self::index).
    pub(crate) const ALL: [Self; 20] = [
        Self::TooLong,
        Self::Malformed,
        Self::Header,
        Self::Algorithm,
        Self::ForbiddenHeader,
        Self::UnknownKey,
        Self::KeyRetired,
        Self::TokenType,
        Self::Payload,
        Self::MissingClaim,
        Self::Expired,
        Self::NotYetValid,
        Self::IssuedInFuture,
        Self::Issuer,
        Self::Audience,
        Self::Signature,
        Self::Claims,
        Self::Revoked,
        Self::Missing,
        Self::Unavailable,
    ];

    /// The position in [`ALL`](Self::ALL).
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The reason as a metric label and event field (stable, snake case).
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::TooLong => "too_long",
            Self::Malformed => "malformed",
            Self::Header => "header",
            Self::Algorithm => "algorithm",
            Self::ForbiddenHeader => "forbidden_header",
            Self::UnknownKey => "unknown_key",
            Self::KeyRetired => "key_retired",
            Self::TokenType => "token_type",
            Self::Payload => "payload",
            Self::MissingClaim => "missing_claim",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::IssuedInFuture => "issued_in_future",
            Self::Issuer => "issuer",
            Self::Audience => "audience",
            Self::Signature => "bad_signature",
            Self::Claims => "claims",
            Self::Revoked => "revoked",
            Self::Missing => "missing",
            Self::Unavailable => "unavailable",
        }
    }
}

/// Which kind of token is accepted as an access token.
///
/// The default, [`TokenType::access`], asks for the `typ` header `at+jwt` or
/// `application/at+jwt` (RFC 9068), compared case-insensitively: a refresh token or an ID
/// token signed by the same key is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenType(TypeRule);

#[derive(Debug, Clone, PartialEq, Eq)]
enum TypeRule {
    Header(Vec<String>),
    Claim { name: String, value: String },
    Any,
}

impl Default for TokenType {
    fn default() -> Self {
        Self::access()
    }
}

impl TokenType {
    /// `typ: at+jwt` or `typ: application/at+jwt` (RFC 9068).
    pub fn access() -> Self {
        Self(TypeRule::Header(vec![
            "at+jwt".to_owned(),
            "application/at+jwt".to_owned(),
        ]))
    }

    /// A `typ` header equal (case-insensitively) to one of `values`.
    pub fn header_typ<I, T>(values: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        Self(TypeRule::Header(
            values.into_iter().map(Into::into).collect(),
        ))
    }

    /// A string claim `name` equal to `value` (e.g. `token_use` = `access`), whatever `typ`.
    pub fn claim(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self(TypeRule::Claim {
            name: name.into(),
            value: value.into(),
        })
    }

    /// No token-type check at all. Only for issuers that mark nothing: any token signed by
    /// an accepted key (an ID token, a refresh token in JWT form) is then accepted.
    pub fn dangerous_any() -> Self {
        Self(TypeRule::Any)
    }

    fn claim_name(&self) -> Option<&str> {
        match &self.0 {
            TypeRule::Claim { name, .. } => Some(name),
            _ => None,
        }
    }

    pub(crate) fn is_empty_rule(&self) -> bool {
        matches!(&self.0, TypeRule::Header(v) if v.is_empty())
    }

    /// Whether this rule asks for RFC 9068 access tokens (`typ` `at+jwt`, alone or among
    /// others).
    pub(crate) fn is_rfc9068(&self) -> bool {
        matches!(&self.0, TypeRule::Header(v) if v.iter().any(|t| {
            t.eq_ignore_ascii_case("at+jwt") || t.eq_ignore_ascii_case("application/at+jwt")
        }))
    }
}

/// The validated verification policy.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub(crate) max_token_len: usize,
    pub(crate) leeway: u64,
    pub(crate) issuers: Vec<String>,
    pub(crate) audiences: Vec<String>,
    pub(crate) token_type: TokenType,
    /// Every claim RFC 9068 §2.2 requires of an access token (`iss`, `exp`, `aud`, `sub`,
    /// `iat`, `jti`) must be present.
    pub(crate) rfc9068_claims: bool,
}

/// What validation learnt about an accepted token.
pub(crate) struct Accepted<C> {
    pub(crate) claims: C,
    pub(crate) key: Arc<str>,
    pub(crate) key_instance: u64,
    /// The version of the key set the key was found in when it is not retired, else 0 (see
    /// `CachedToken::confirmed_keys`).
    pub(crate) keys_version: u64,
    pub(crate) subject: Arc<str>,
    pub(crate) role: Option<Arc<str>>,
    pub(crate) jti: Option<Arc<str>>,
    pub(crate) session: Option<Arc<str>>,
    pub(crate) scopes: Vec<Box<str>>,
    pub(crate) exp: u64,
    pub(crate) nbf: Option<u64>,
    pub(crate) iat: Option<u64>,
}

/// Verifies `token` at `now` (unix seconds).
pub(crate) fn verify<C: serde::de::DeserializeOwned>(
    token: &[u8],
    policy: &Policy,
    source: &dyn KeySource,
    now: u64,
) -> Result<Accepted<C>, Invalid> {
    if token.len() > policy.max_token_len {
        return Err(Invalid::TooLong);
    }
    let (header_b64, payload_b64, signature_b64) = split(token)?;

    // Header.
    let mut header_buf = [0u8; 512];
    let header_json = b64::decode_url_small(header_b64, &mut header_buf).ok_or(Invalid::Header)?;
    let header = parse_header(&header_json)?;
    let alg = algorithm_from_name(&header.alg).ok_or(Invalid::Algorithm)?;

    // Key.
    let keys = source.snapshot();
    let key = select_key(&keys, source, header.kid.as_deref(), alg, now)?;

    // Token type (header form).
    if let TypeRule::Header(allowed) = &policy.token_type.0 {
        let typ = header.typ.as_deref().ok_or(Invalid::TokenType)?;
        if !allowed.iter().any(|a| a.eq_ignore_ascii_case(typ)) {
            return Err(Invalid::TokenType);
        }
    }

    // Payload and registered claims, before any signature work.
    let payload = b64::decode_url(payload_b64).ok_or(Invalid::Payload)?;
    let registered = parse_registered(&payload, policy.token_type.claim_name())?;
    check_registered(&registered, policy, now)?;

    // Signature.
    let message_len = header_b64.len() + 1 + payload_b64.len();
    let message = token.get(..message_len).ok_or(Invalid::Malformed)?;
    if !signature_b64.iter().all(|&b| b64::is_url_char(b)) {
        return Err(Invalid::Malformed);
    }
    let verified = match key.hmac_key() {
        // HMAC: the same aws-lc-rs call jsonwebtoken makes (`hmac::verify`, a constant-time
        // comparison), with the key prepared once instead of per token.
        Some(hmac) => {
            let mut signature_buf = [0u8; 96];
            b64::decode_url_small(signature_b64, &mut signature_buf)
                .is_some_and(|signature| aws_lc_rs::hmac::verify(hmac, message, &signature).is_ok())
        }
        None => {
            let signature = std::str::from_utf8(signature_b64).map_err(|_| Invalid::Malformed)?;
            matches!(
                jsonwebtoken::crypto::verify(signature, message, key.decoding_key(), alg),
                Ok(true)
            )
        }
    };
    if !verified {
        return Err(Invalid::Signature);
    }

    let claims: C = serde_json::from_slice(&payload).map_err(|_| Invalid::Claims)?;
    let Registered {
        exp,
        nbf,
        iat,
        sub,
        jti,
        sid,
        role,
        scopes,
        ..
    } = registered;
    Ok(Accepted {
        claims,
        key: key.kid_shared(),
        key_instance: key.instance_id(),
        keys_version: if key.retired_until().is_none() {
            keys.version().0
        } else {
            0
        },
        subject: Arc::from(&*sub.ok_or(Invalid::Payload)?),
        role: role.as_deref().map(Arc::from),
        jti: jti.as_deref().map(Arc::from),
        session: sid.as_deref().map(Arc::from),
        scopes,
        exp: exp.ok_or(Invalid::Payload)?,
        nbf,
        iat,
    })
}

type Segments<'a> = (&'a [u8], &'a [u8], &'a [u8]);

fn split(token: &[u8]) -> Result<Segments<'_>, Invalid> {
    // Only the dots are looked for here (eight bytes at a time); each segment's alphabet is
    // checked by its strict base64url decoder, the header's first, before anything else is
    // read.
    let first = find_dot(token).ok_or(Invalid::Malformed)?;
    let (header, rest) = (token.get(..first), token.get(first + 1..));
    let (header, rest) = (
        header.ok_or(Invalid::Malformed)?,
        rest.ok_or(Invalid::Malformed)?,
    );
    let second = find_dot(rest).ok_or(Invalid::Malformed)?;
    let payload = rest.get(..second).ok_or(Invalid::Malformed)?;
    let signature = rest.get(second + 1..).ok_or(Invalid::Malformed)?;
    if header.is_empty() || payload.is_empty() || signature.is_empty() || signature.contains(&b'.')
    {
        return Err(Invalid::Malformed);
    }
    Ok((header, payload, signature))
}

/// The index of the first `.` in `bytes` (memchr: a word or a SIMD vector per step).
fn find_dot(bytes: &[u8]) -> Option<usize> {
    memchr::memchr(b'.', bytes)
}

fn select_key<'k>(
    keys: &'k KeySet,
    source: &dyn KeySource,
    kid: Option<&str>,
    alg: Algorithm,
    now: u64,
) -> Result<&'k Key, Invalid> {
    let key = match kid {
        Some(kid) => match keys.get(kid) {
            Some(key) => key,
            None => {
                source.unknown_kid(kid);
                return Err(Invalid::UnknownKey);
            }
        },
        None => keys.sole_key_for(alg).ok_or(Invalid::UnknownKey)?,
    };
    if key.algorithm() != alg {
        return Err(Invalid::Algorithm);
    }
    if !key.verifies_at(now) {
        return Err(Invalid::KeyRetired);
    }
    Ok(key)
}

/// The header members we read.
#[derive(Debug)]
pub(crate) struct Header<'a> {
    pub(crate) alg: Cow<'a, str>,
    pub(crate) kid: Option<Cow<'a, str>>,
    pub(crate) typ: Option<Cow<'a, str>>,
}

const MAX_HEADER_MEMBERS: usize = 32;
const MAX_CLAIM_LIST: usize = 64;

/// A string that borrows from the input when it has no escapes.
struct Str<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Str<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

pub(crate) fn parse_header(json: &[u8]) -> Result<Header<'_>, Invalid> {
    struct HeaderVisitor;
    impl<'de> Visitor<'de> for HeaderVisitor {
        type Value = Result<Header<'de>, Invalid>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JOSE header object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            // The member names so far, on the stack (a header has a handful).
            let mut seen: [Cow<'de, str>; MAX_HEADER_MEMBERS] =
                std::array::from_fn(|_| Cow::Borrowed(""));
            let mut count = 0;
            let mut alg = None;
            let mut kid = None;
            let mut typ = None;
            let mut forbidden = false;
            while let Some(Str(name)) = map.next_key::<Str<'de>>()? {
                let Some(earlier) = seen.get(..count) else {
                    return Ok(Err(Invalid::Header));
                };
                if count >= MAX_HEADER_MEMBERS || earlier.contains(&name) {
                    return Ok(Err(Invalid::Header));
                }
                match name.as_ref() {
                    "alg" => alg = Some(map.next_value::<Str<'de>>()?.0),
                    "kid" => kid = Some(map.next_value::<Str<'de>>()?.0),
                    "typ" => typ = Some(map.next_value::<Str<'de>>()?.0),
                    "crit" | "jwk" | "jku" | "x5u" | "x5c" | "b64" | "zip" | "enc" => {
                        map.next_value::<IgnoredAny>()?;
                        forbidden = true;
                    }
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                if let Some(slot) = seen.get_mut(count) {
                    *slot = name;
                }
                count += 1;
            }
            Ok(match alg {
                _ if forbidden => Err(Invalid::ForbiddenHeader),
                Some(alg) => Ok(Header { alg, kid, typ }),
                None => Err(Invalid::Algorithm),
            })
        }
    }
    let mut de = serde_json::Deserializer::from_slice(json);
    let header = de::Deserializer::deserialize_map(&mut de, HeaderVisitor)
        .map_err(|_| Invalid::Header)??;
    de.end().map_err(|_| Invalid::Header)?;
    Ok(header)
}

/// The registered claims we check, read before the signature.
#[derive(Debug, Default)]
pub(crate) struct Registered<'a> {
    pub(crate) exp: Option<u64>,
    pub(crate) nbf: Option<u64>,
    pub(crate) iat: Option<u64>,
    pub(crate) iss: Option<Cow<'a, str>>,
    pub(crate) aud: Vec<Cow<'a, str>>,
    pub(crate) sub: Option<Cow<'a, str>>,
    pub(crate) jti: Option<Cow<'a, str>>,
    /// The session (`sid`) the token was issued in.
    pub(crate) sid: Option<Cow<'a, str>>,
    pub(crate) role: Option<Cow<'a, str>>,
    pub(crate) scopes: Vec<Box<str>>,
    pub(crate) type_claim: Option<Cow<'a, str>>,
}

/// A NumericDate: a non-negative JSON number; fractions are truncated.
struct NumericDate(u64);

impl<'de> de::Deserialize<'de> for NumericDate {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = NumericDate;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative number of seconds")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<NumericDate, E> {
                Ok(NumericDate(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<NumericDate, E> {
                u64::try_from(v)
                    .map(NumericDate)
                    .map_err(|_| E::custom("negative date"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<NumericDate, E> {
                if v.is_finite() && (0.0..1.8e19).contains(&v) {
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    Ok(NumericDate(v as u64))
                } else {
                    Err(E::custom("bad date"))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// One string or an array of strings (`aud`).
struct StrOrList<'de>(Vec<Cow<'de, str>>);

impl<'de> de::Deserialize<'de> for StrOrList<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrOrList<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or an array of strings")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(StrOrList(vec![Cow::Borrowed(v)]))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(StrOrList(vec![Cow::Owned(v.to_owned())]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(Str(s)) = seq.next_element::<Str<'de>>()? {
                    if out.len() >= MAX_CLAIM_LIST {
                        return Err(de::Error::custom("too many values"));
                    }
                    out.push(s);
                }
                Ok(StrOrList(out))
            }
        }
        d.deserialize_any(V)
    }
}

struct RegisteredSeed<'n> {
    type_claim: Option<&'n str>,
}

impl<'de> DeserializeSeed<'de> for RegisteredSeed<'_> {
    type Value = Result<Registered<'de>, Invalid>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RegisteredSeed<'_> {
    type Value = Result<Registered<'de>, Invalid>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JWT claims object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut r = Registered::default();
        let mut seen: u16 = 0;
        let mut once = |bit: u16| {
            let dup = seen & bit != 0;
            seen |= bit;
            dup
        };
        while let Some(Str(name)) = map.next_key::<Str<'de>>()? {
            let dup = match name.as_ref() {
                "exp" => {
                    r.exp = Some(map.next_value::<NumericDate>()?.0);
                    once(1)
                }
                "nbf" => {
                    r.nbf = Some(map.next_value::<NumericDate>()?.0);
                    once(2)
                }
                "iat" => {
                    r.iat = Some(map.next_value::<NumericDate>()?.0);
                    once(4)
                }
                "iss" => {
                    r.iss = Some(map.next_value::<Str<'de>>()?.0);
                    once(8)
                }
                "aud" => {
                    r.aud = map.next_value::<StrOrList<'de>>()?.0;
                    once(16)
                }
                "sub" => {
                    r.sub = Some(map.next_value::<Str<'de>>()?.0);
                    once(32)
                }
                "jti" => {
                    r.jti = Some(map.next_value::<Str<'de>>()?.0);
                    once(64)
                }
                "role" => {
                    r.role = Some(map.next_value::<Str<'de>>()?.0);
                    once(128)
                }
                "sid" => {
                    r.sid = Some(map.next_value::<Str<'de>>()?.0);
                    once(1024)
                }
                "scope" | "scp" => {
                    let list = map.next_value::<StrOrList<'de>>()?.0;
                    r.scopes = list
                        .iter()
                        .flat_map(|s| s.split(' '))
                        .filter(|s| !s.is_empty())
                        .take(MAX_CLAIM_LIST)
                        .map(Box::from)
                        .collect();
                    once(256)
                }
                other if Some(other) == self.type_claim => {
                    r.type_claim = Some(map.next_value::<Str<'de>>()?.0);
                    once(512)
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    false
                }
            };
            if dup {
                return Ok(Err(Invalid::Payload));
            }
        }
        Ok(Ok(r))
    }
}

pub(crate) fn parse_registered<'a>(
    json: &'a [u8],
    type_claim: Option<&str>,
) -> Result<Registered<'a>, Invalid> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let registered = RegisteredSeed { type_claim }
        .deserialize(&mut de)
        .map_err(|_| Invalid::Payload)??;
    de.end().map_err(|_| Invalid::Payload)?;
    Ok(registered)
}

pub(crate) fn check_registered(
    r: &Registered<'_>,
    policy: &Policy,
    now: u64,
) -> Result<(), Invalid> {
    let exp = r.exp.ok_or(Invalid::Payload)?;
    if r.sub.as_deref().is_none_or(str::is_empty) {
        return Err(Invalid::Payload);
    }
    if policy.rfc9068_claims
        && (r.iss.as_deref().is_none_or(str::is_empty)
            || r.aud.iter().all(|a| a.is_empty())
            || r.iat.is_none()
            || r.jti.as_deref().is_none_or(str::is_empty))
    {
        return Err(Invalid::MissingClaim);
    }
    check_times(exp, r.nbf, r.iat, policy.leeway, now)?;
    if !policy.issuers.is_empty() {
        let iss = r.iss.as_deref().ok_or(Invalid::Issuer)?;
        if !policy.issuers.iter().any(|i| i == iss) {
            return Err(Invalid::Issuer);
        }
    }
    if !policy.audiences.is_empty()
        && !r
            .aud
            .iter()
            .any(|a| policy.audiences.iter().any(|p| p == a))
    {
        return Err(Invalid::Audience);
    }
    if let TypeRule::Claim { value, .. } = &policy.token_type.0
        && r.type_claim.as_deref() != Some(value.as_str())
    {
        return Err(Invalid::TokenType);
    }
    Ok(())
}

/// `exp` must be after `now - leeway`; `nbf` and `iat` not after `now + leeway`.
pub(crate) fn check_times(
    exp: u64,
    nbf: Option<u64>,
    iat: Option<u64>,
    leeway: u64,
    now: u64,
) -> Result<(), Invalid> {
    if exp.saturating_add(leeway) <= now {
        return Err(Invalid::Expired);
    }
    let latest = now.saturating_add(leeway);
    if nbf.is_some_and(|nbf| nbf > latest) {
        return Err(Invalid::NotYetValid);
    }
    if iat.is_some_and(|iat| iat > latest) {
        return Err(Invalid::IssuedInFuture);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_has_its_index_and_a_distinct_label() {
        let mut labels = std::collections::HashSet::new();
        for (i, reason) in Invalid::ALL.into_iter().enumerate() {
            assert_eq!(reason.index(), i);
            assert!(labels.insert(reason.label()));
        }
    }

    #[test]
    fn find_dot_agrees_with_a_byte_scan() {
        // Every length up to three words, a dot at every position (or none), neighbours that
        // differ from `.` by one bit or by a borrow (`-`, `/`, 0xAE, 0x2F, 0x00, 0xFF).
        for len in 0..=24 {
            for fill in [b'a', b'-', b'/', 0xae, 0x2f, 0x00, 0xff] {
                let mut bytes = vec![fill; len];
                assert_eq!(find_dot(&bytes), None, "{len} {fill}");
                for at in 0..len {
                    bytes.fill(fill);
                    bytes[at] = b'.';
                    if at + 2 < len {
                        bytes[at + 2] = b'.';
                    }
                    assert_eq!(find_dot(&bytes), Some(at), "{len} {fill} {at}");
                }
            }
        }
    }

    #[test]
    fn header_duplicates_and_forbidden_members_are_refused() {
        assert!(parse_header(br#"{"alg":"RS256","kid":"a"}"#).is_ok());
        assert_eq!(
            parse_header(br#"{"alg":"RS256","alg":"none"}"#).unwrap_err(),
            Invalid::Header
        );
        assert_eq!(
            parse_header(br#"{"alg":"RS256","x":1,"x":2}"#).unwrap_err(),
            Invalid::Header
        );
        assert_eq!(
            parse_header(br#"{"alg":"RS256","al\u0067":"none"}"#).unwrap_err(),
            Invalid::Header,
            "escaped duplicate"
        );
        for member in ["crit", "jwk", "jku", "x5u", "x5c"] {
            let json = format!(r#"{{"alg":"RS256","{member}":[]}}"#);
            assert_eq!(
                parse_header(json.as_bytes()).unwrap_err(),
                Invalid::ForbiddenHeader
            );
        }
        assert!(parse_header(br#"{"alg":"RS256"} x"#).is_err());
        assert!(parse_header(br#"["alg"]"#).is_err());
        assert!(parse_header(br#"{"alg":1}"#).is_err());
    }

    #[test]
    fn deep_nesting_neither_overflows_nor_is_accepted_into_values() {
        // Ignored members are skipped iteratively by serde_json: no recursion, no overflow.
        let deep = format!(
            r#"{{"alg":"RS256","x":{}{}}}"#,
            "[".repeat(5000),
            "]".repeat(5000)
        );
        assert!(parse_header(deep.as_bytes()).is_ok());
        let deep = format!(
            r#"{{"exp":1,"x":{}{}}}"#,
            "[".repeat(5000),
            "]".repeat(5000)
        );
        assert!(parse_registered(deep.as_bytes(), None).is_ok());
        // Deserialising into values stops at serde_json's recursion limit (128).
        assert!(serde_json::from_str::<serde_json::Value>(&deep).is_err());
        let unclosed = format!(r#"{{"alg":"RS256","x":{}"#, "[".repeat(5000));
        assert_eq!(
            parse_header(unclosed.as_bytes()).unwrap_err(),
            Invalid::Header
        );
    }

    #[test]
    fn registered_claims_parse_strictly() {
        let r = parse_registered(
            br#"{"exp":10.5,"sub":"u","aud":["a","b"],"scope":"read write","extra":{"n":[1]}}"#,
            None,
        )
        .unwrap();
        assert_eq!(r.exp, Some(10));
        assert_eq!(r.aud.len(), 2);
        assert_eq!(r.scopes.len(), 2);
        assert!(parse_registered(br#"{"exp":-1}"#, None).is_err());
        assert!(parse_registered(br#"{"exp":"1"}"#, None).is_err());
        assert!(parse_registered(br#"{"sub":"a","sub":"b"}"#, None).is_err());
        let r = parse_registered(br#"{"token_use":"access"}"#, Some("token_use")).unwrap();
        assert_eq!(r.type_claim.as_deref(), Some("access"));
    }

    #[test]
    fn times_respect_leeway() {
        assert!(check_times(100, None, None, 0, 99).is_ok());
        assert_eq!(check_times(100, None, None, 0, 100), Err(Invalid::Expired));
        assert!(check_times(100, None, None, 30, 129).is_ok());
        assert_eq!(
            check_times(1000, Some(200), None, 30, 169),
            Err(Invalid::NotYetValid)
        );
        assert!(check_times(1000, Some(200), None, 30, 170).is_ok());
        assert_eq!(
            check_times(1000, None, Some(200), 30, 169),
            Err(Invalid::IssuedInFuture)
        );
    }
}
