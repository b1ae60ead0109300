//! The key itself: `api_` + a 22-character id + `_` + a 43-character secret (base64url).

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::digest;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};

use crate::error::StoreError;

/// The prefix every key starts with (so secret scanners and people recognise one).
pub const API_KEY_PREFIX: &str = "api_";
/// The length of a key's text: `api_`, 22 id characters, `_`, 43 secret characters.
pub const API_KEY_LEN: usize = 4 + ID_LEN + 1 + SECRET_LEN;
const ID_LEN: usize = 22;
const SECRET_LEN: usize = 43;

/// An API key as its holder sends it: shown once when made, never stored (only its
/// [`KeyHash`] is). `Debug` and `Display` do not print it; [`expose`](Self::expose) does.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl ApiKey {
    /// A fresh key for a new or rotated record `id`: 256 bits of secret from the operating
    /// system's random source.
    pub(crate) fn generate(id: KeyId) -> Result<(Self, KeyHash), StoreError> {
        let mut secret = [0u8; 32];
        SystemRandom::new()
            .fill(&mut secret)
            .map_err(|_| StoreError::Unavailable("no randomness for a new API key".into()))?;
        let text = format!(
            "{API_KEY_PREFIX}{}_{}",
            crate::jwt::b64_encode_url(&id.0),
            crate::jwt::b64_encode_url(&secret)
        );
        Ok((Self(text), KeyHash::of_secret(&secret)))
    }

    /// The key's text, to show its holder once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The id part of the key.
    pub fn id(&self) -> Option<KeyId> {
        Presented::parse(self.0.as_bytes()).map(|p| p.id)
    }
}

/// What a request presented, parsed strictly: the record to look up and the hash to compare.
pub(crate) struct Presented {
    pub(crate) id: KeyId,
    pub(crate) hash: KeyHash,
}

impl Presented {
    /// `None` for anything but `api_<22 base64url>_<43 base64url>` (one spelling per key:
    /// the decoder refuses padding and non-zero trailing bits).
    pub(crate) fn parse(text: &[u8]) -> Option<Self> {
        if text.len() != API_KEY_LEN {
            return None;
        }
        let rest = text.strip_prefix(API_KEY_PREFIX.as_bytes())?;
        let (id, rest) = rest.split_at_checked(ID_LEN)?;
        let secret = rest.strip_prefix(b"_")?;
        Some(Self {
            id: KeyId(decode_exact(id)?),
            hash: KeyHash::of_secret(&decode_exact::<32>(secret)?),
        })
    }
}

/// Decodes base64url into exactly `N` bytes, on the stack.
fn decode_exact<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    let mut buf = [0u8; 48];
    let decoded = crate::jwt::b64_decode_url_small(text, &mut buf)?;
    decoded.as_ref().try_into().ok()
}

/// A key record's id: 16 random bytes, the part of the key a store looks records up by.
/// Not secret (it is in the key, in logs as needed, and in `last_used` reports); the text
/// form is 22 base64url characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub(crate) [u8; 16]);

impl KeyId {
    /// A fresh random id.
    pub(crate) fn generate() -> Result<Self, StoreError> {
        let mut id = [0u8; 16];
        SystemRandom::new()
            .fill(&mut id)
            .map_err(|_| StoreError::Unavailable("no randomness for a new API key id".into()))?;
        Ok(Self(id))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::jwt::b64_encode_url(&self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// The error of parsing a [`KeyId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an API key id is 22 base64url characters")]
pub struct KeyIdError;

impl FromStr for KeyId {
    type Err = KeyIdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.len() != ID_LEN {
            return Err(KeyIdError);
        }
        let bytes = crate::jwt::b64_decode_url(text.as_bytes()).ok_or(KeyIdError)?;
        Ok(Self(bytes.try_into().map_err(|_| KeyIdError)?))
    }
}

impl serde::Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The SHA-256 of a key's secret: all a store keeps of it (SHA-256 fits a 256-bit random
/// secret: there is nothing to brute-force). Compared in constant time; `Debug` hides it.
#[derive(Clone, Copy)]
pub struct KeyHash(pub(crate) [u8; 32]);

impl KeyHash {
    fn of_secret(secret: &[u8; 32]) -> Self {
        let digest = digest::digest(&digest::SHA256, secret);
        let mut hash = [0u8; 32];
        hash.copy_from_slice(digest.as_ref());
        Self(hash)
    }

    /// Equal in a time that does not depend on where the hashes differ.
    pub(crate) fn matches(&self, other: &Self) -> bool {
        crate::jwt::constant_time_eq(&self.0, &other.0)
    }
}

impl fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHash(<redacted>)")
    }
}

impl serde::Serialize for KeyHash {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&crate::hex::encode(&self.0))
    }
}

impl<'de> serde::Deserialize<'de> for KeyHash {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        let mut hash = [0u8; 32];
        crate::hex::decode_into(text.as_bytes(), &mut hash)
            .ok_or_else(|| serde::de::Error::custom("a key hash is 64 lower-case hex digits"))?;
        Ok(Self(hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_back_and_nothing_else_does() {
        let id = KeyId::generate().unwrap();
        let (key, hash) = ApiKey::generate(id).unwrap();
        let text = key.expose();
        assert_eq!(text.len(), API_KEY_LEN);
        assert!(text.starts_with("api_"));
        let presented = Presented::parse(text.as_bytes()).unwrap();
        assert_eq!(presented.id, id);
        assert!(presented.hash.matches(&hash));
        assert_eq!(key.id(), Some(id));
        assert!(!format!("{key:?}{hash:?}").contains(&text[27..]));
        let mut bad = vec![
            String::new(),
            text[..API_KEY_LEN - 1].to_owned(),
            format!("{text}A"),
            text.replacen("api_", "apk_", 1),
            text.replacen("api_", "API_", 1),
            format!("{}={}", &text[..26], &text[27..]),
        ];
        // A non-canonical last character (non-zero trailing bits) and a foreign character.
        let mut chars: Vec<char> = text.chars().collect();
        let last = chars.len() - 1;
        chars[last] = if chars[last] == 'B' { 'C' } else { 'B' };
        bad.push(chars.iter().collect());
        bad.push(format!("{}+{}", &text[..30], &text[31..]));
        for bad in bad {
            let parsed = Presented::parse(bad.as_bytes());
            assert!(
                parsed.is_none() || !parsed.unwrap().hash.matches(&hash),
                "{bad}"
            );
        }
        assert_eq!(id.to_string().parse::<KeyId>(), Ok(id));
        assert!("short".parse::<KeyId>().is_err());
    }
}
