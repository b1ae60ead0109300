//! Typed, prefixed UUID identifiers: `user_0c1d…`, `item_…`, `api_…`, `tok_…`.
//!
//! An [`Id<P>`] is a UUID tagged with a prefix type, so a `UserId` cannot be passed where an
//! `ItemId` is expected, and an id printed in a log or URL says what it names. It prints as
//! the prefix, `_`, and the 32 lowercase hex digits of the UUID; parsing is strict (wrong
//! prefix, wrong length, anything but lowercase hex → [`IdError`]); serde uses the same string;
//! [`Id::as_bytes`] / [`Id::from_bytes`] give the 16 bytes for compact storage.
//!
//! ```
//! use tower_shield::id::{ItemId, UserId};
//!
//! let user = UserId::new(); // UUID v4
//! let text = user.to_string();
//! assert!(text.starts_with("user_") && text.len() == 5 + 32);
//! assert_eq!(text.parse::<UserId>().unwrap(), user);
//! assert!(text.parse::<ItemId>().is_err()); // wrong prefix
//!
//! // Deterministic ids (e.g. idempotency keys) from a namespace and a name:
//! let a = ItemId::new_v5(&uuid::Uuid::NAMESPACE_URL, b"order-42");
//! assert_eq!(a, ItemId::new_v5(&uuid::Uuid::NAMESPACE_URL, b"order-42"));
//! ```
//!
//! Declare your own kind of id with [`prefixed_id!`](crate::prefixed_id):
//!
//! ```
//! tower_shield::prefixed_id! {
//!     /// An invoice.
//!     pub InvoiceId, Invoice = "inv"
//! }
//! let id = InvoiceId::new_v7();
//! assert!(id.to_string().starts_with("inv_"));
//! ```

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;
use std::str::FromStr;

use uuid::Uuid;

/// The prefix of a kind of id. Implement it with [`prefixed_id!`](crate::prefixed_id).
pub trait IdPrefix: 'static {
    /// The prefix, without the `_` separator: 1 to 16 bytes of `[a-z0-9]`.
    const PREFIX: &'static str;
}

/// Whether `prefix` is usable as an [`IdPrefix::PREFIX`]: 1 to 16 bytes of `[a-z0-9]`.
pub const fn is_valid_prefix(prefix: &str) -> bool {
    let bytes = prefix.as_bytes();
    if bytes.is_empty() || bytes.len() > 16 {
        return false;
    }
    let mut rest = bytes;
    while let [b, tail @ ..] = rest {
        if !(b.is_ascii_lowercase() || b.is_ascii_digit()) {
            return false;
        }
        rest = tail;
    }
    true
}

/// Why a string is not an id of the expected kind. The input is never echoed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The string does not start with the expected prefix and `_`.
    #[error("the id does not start with `{expected}_`")]
    WrongPrefix {
        /// The prefix expected.
        expected: &'static str,
    },
    /// The string has the wrong length.
    #[error("the id should be {expected} characters long, not {found}")]
    WrongLength {
        /// The length expected.
        expected: usize,
        /// The length found.
        found: usize,
    },
    /// The part after the prefix is not 32 lowercase hexadecimal digits.
    #[error("the id's UUID part is not 32 lowercase hexadecimal digits")]
    NotLowercaseHex,
}

/// A UUID tagged with the prefix `P`; see the [module docs](self).
pub struct Id<P: IdPrefix> {
    uuid: Uuid,
    prefix: PhantomData<fn() -> P>,
}

impl<P: IdPrefix> Id<P> {
    /// The length of the text form: prefix, `_` and 32 hex digits.
    pub const TEXT_LEN: usize = P::PREFIX.len() + 1 + 32;

    /// A random id (UUID v4).
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self::from_uuid(Uuid::new_v4())
    }

    /// A time-ordered id (UUID v7): sorts by creation time, which keeps database indexes
    /// compact.
    pub fn new_v7() -> Self {
        Self::from_uuid(Uuid::now_v7())
    }

    /// A deterministic id (UUID v5, SHA-1 of the namespace and the name): the same inputs give
    /// the same id, e.g. for idempotency keys.
    pub fn new_v5(namespace: &Uuid, name: &[u8]) -> Self {
        Self::from_uuid(Uuid::new_v5(namespace, name))
    }

    /// Wraps a UUID.
    pub const fn from_uuid(uuid: Uuid) -> Self {
        Self {
            uuid,
            prefix: PhantomData,
        }
    }

    /// The UUID.
    pub const fn uuid(&self) -> Uuid {
        self.uuid
    }

    /// The 16 bytes of the UUID, for compact storage.
    pub const fn as_bytes(&self) -> &[u8; 16] {
        self.uuid.as_bytes()
    }

    /// The id with these 16 bytes (as stored by [`as_bytes`](Self::as_bytes)).
    pub const fn from_bytes(bytes: [u8; 16]) -> Self {
        Self::from_uuid(Uuid::from_bytes(bytes))
    }

    /// The prefix of this kind of id (without `_`).
    pub const fn prefix() -> &'static str {
        P::PREFIX
    }

    /// Parses the text form strictly; the same as [`str::parse`].
    pub fn parse(text: &str) -> Result<Self, IdError> {
        let bytes = text.as_bytes();
        if bytes.len() != Self::TEXT_LEN {
            return Err(IdError::WrongLength {
                expected: Self::TEXT_LEN,
                found: bytes.len(),
            });
        }
        let (prefix, rest) = bytes.split_at(P::PREFIX.len());
        if prefix != P::PREFIX.as_bytes() || rest.first() != Some(&b'_') {
            return Err(IdError::WrongPrefix {
                expected: P::PREFIX,
            });
        }
        let hex = rest.get(1..).unwrap_or_default();
        let mut out = [0u8; 16];
        crate::hex::decode_into(hex, &mut out).ok_or(IdError::NotLowercaseHex)?;
        Ok(Self::from_bytes(out))
    }
}

impl<P: IdPrefix> Clone for Id<P> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<P: IdPrefix> Copy for Id<P> {}

impl<P: IdPrefix> PartialEq for Id<P> {
    fn eq(&self, other: &Self) -> bool {
        self.uuid == other.uuid
    }
}

impl<P: IdPrefix> Eq for Id<P> {}

impl<P: IdPrefix> PartialOrd for Id<P> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<P: IdPrefix> Ord for Id<P> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.uuid.cmp(&other.uuid)
    }
}

impl<P: IdPrefix> Hash for Id<P> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.uuid.hash(state);
    }
}

impl<P: IdPrefix> fmt::Display for Id<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buffer = [0u8; uuid::fmt::Simple::LENGTH];
        f.write_str(P::PREFIX)?;
        f.write_str("_")?;
        f.write_str(self.uuid.simple().encode_lower(&mut buffer))
    }
}

impl<P: IdPrefix> fmt::Debug for Id<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({self})")
    }
}

impl<P: IdPrefix> FromStr for Id<P> {
    type Err = IdError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl<P: IdPrefix> From<Id<P>> for Uuid {
    fn from(id: Id<P>) -> Self {
        id.uuid
    }
}

impl<P: IdPrefix> serde::Serialize for Id<P> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de, P: IdPrefix> serde::Deserialize<'de> for Id<P> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<P>(PhantomData<fn() -> P>);

        impl<P: IdPrefix> serde::de::Visitor<'_> for Visitor<P> {
            type Value = Id<P>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(
                    f,
                    "an id `{}_` followed by 32 lowercase hex digits",
                    P::PREFIX
                )
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Self::Value, E> {
                Id::parse(text).map_err(E::custom)
            }
        }

        deserializer.deserialize_str(Visitor(PhantomData))
    }
}

/// Declares an id type: a prefix marker type and an alias of [`Id`] over it.
///
/// The prefix is checked at compile time (1 to 16 bytes of `[a-z0-9]`).
///
/// ```
/// tower_shield::prefixed_id! {
///     /// An order.
///     pub OrderId, Order = "ord"
/// }
/// assert_eq!(OrderId::prefix(), "ord");
/// ```
///
/// ```compile_fail
/// tower_shield::prefixed_id! {
///     /// Uppercase is refused.
///     pub BadId, Bad = "Bad"
/// }
/// ```
#[macro_export]
macro_rules! prefixed_id {
    ($(#[$meta:meta])* $vis:vis $alias:ident, $marker:ident = $prefix:literal) => {
        #[doc = concat!("The prefix marker of [`", stringify!($alias), "`]: `", $prefix, "_`.")]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        $vis enum $marker {}

        const _: () = assert!(
            $crate::id::is_valid_prefix($prefix),
            "an id prefix is 1 to 16 bytes of [a-z0-9]"
        );

        impl $crate::id::IdPrefix for $marker {
            const PREFIX: &'static str = $prefix;
        }

        $(#[$meta])*
        $vis type $alias = $crate::id::Id<$marker>;
    };
}

prefixed_id! {
    /// A user: `user_` + 32 hex digits.
    pub UserId, User = "user"
}
prefixed_id! {
    /// An item: `item_` + 32 hex digits.
    pub ItemId, Item = "item"
}
prefixed_id! {
    /// An API key: `api_` + 32 hex digits.
    pub ApiKeyId, ApiKey = "api"
}
prefixed_id! {
    /// A token (e.g. a JWT `jti`): `tok_` + 32 hex digits.
    pub TokenId, Token = "tok"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse() {
        let uuid = Uuid::parse_str("0123456789abcdef0123456789ABCDEF").unwrap();
        let id = UserId::from_uuid(uuid);
        assert_eq!(id.to_string(), "user_0123456789abcdef0123456789abcdef");
        assert_eq!(
            "user_0123456789abcdef0123456789abcdef"
                .parse::<UserId>()
                .unwrap(),
            id
        );
        assert_eq!(UserId::TEXT_LEN, 37);
        assert_eq!(TokenId::TEXT_LEN, 36);
    }

    #[test]
    fn strict_errors() {
        let good = "item_0123456789abcdef0123456789abcdef";
        assert!(good.parse::<ItemId>().is_ok());
        assert_eq!(
            "user_0123456789abcdef0123456789abcdef".parse::<ItemId>(),
            Err(IdError::WrongPrefix { expected: "item" })
        );
        assert_eq!(
            "item-0123456789abcdef0123456789abcdef".parse::<ItemId>(),
            Err(IdError::WrongPrefix { expected: "item" })
        );
        assert_eq!(
            "ITEM_0123456789abcdef0123456789abcdef".parse::<ItemId>(),
            Err(IdError::WrongPrefix { expected: "item" })
        );
        assert_eq!(
            "item_0123456789ABCDEF0123456789abcdef".parse::<ItemId>(),
            Err(IdError::NotLowercaseHex)
        );
        assert_eq!(
            "item_0123456789abcdeg0123456789abcdef".parse::<ItemId>(),
            Err(IdError::NotLowercaseHex)
        );
        assert_eq!(
            "item_0123456789abcdef0123456789abcde".parse::<ItemId>(),
            Err(IdError::WrongLength {
                expected: 37,
                found: 36
            })
        );
        assert!("".parse::<ItemId>().is_err());
        // A multi-byte character of the right byte length.
        assert!(
            "item_0123456789abcdef0123456789abcdé"
                .parse::<ItemId>()
                .is_err()
        );
        assert!(
            "item_01234567-89ab-cdef-0123-456789abcdef"
                .parse::<ItemId>()
                .is_err()
        );
    }

    #[test]
    fn versions() {
        assert_eq!(UserId::new().uuid().get_version_num(), 4);
        assert_eq!(UserId::new_v7().uuid().get_version_num(), 7);
        assert_eq!(
            UserId::new_v5(&Uuid::NAMESPACE_OID, b"x")
                .uuid()
                .get_version_num(),
            5
        );
    }

    #[test]
    fn prefixes() {
        assert!(is_valid_prefix("user"));
        assert!(is_valid_prefix("a1"));
        assert!(!is_valid_prefix(""));
        assert!(!is_valid_prefix("User"));
        assert!(!is_valid_prefix("a_b"));
        assert!(!is_valid_prefix("abcdefghijklmnopq"));
    }
}
