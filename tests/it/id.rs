//! Prefixed UUID ids: text form, strict parsing, serde, bytes, and property tests.

use std::collections::HashSet;

use proptest::prelude::*;
use tower_shield::id::{ApiKeyId, Id, IdError, ItemId, TokenId, UserId};
use uuid::Uuid;

tower_shield::prefixed_id! {
    /// A user-declared kind of id.
    pub OrderId, Order = "ord2"
}

#[test]
fn builtin_prefixes() {
    assert!(UserId::new().to_string().starts_with("user_"));
    assert!(ItemId::new().to_string().starts_with("item_"));
    assert!(ApiKeyId::new().to_string().starts_with("api_"));
    assert!(TokenId::new().to_string().starts_with("tok_"));
    assert!(OrderId::new().to_string().starts_with("ord2_"));
    assert_eq!(OrderId::prefix(), "ord2");
}

#[test]
fn text_form_is_prefix_and_32_lowercase_hex() {
    let id = ItemId::new();
    let text = id.to_string();
    let hex = text.strip_prefix("item_").unwrap();
    assert_eq!(hex.len(), 32);
    assert!(
        hex.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert_eq!(hex, id.uuid().simple().to_string());
}

#[test]
fn parsing_is_strict() {
    let id = UserId::new();
    let text = id.to_string();
    assert_eq!(text.parse::<UserId>(), Ok(id));
    assert!(matches!(
        text.parse::<ItemId>(),
        Err(IdError::WrongLength { .. }) | Err(IdError::WrongPrefix { .. })
    ));
    assert!(matches!(
        text.to_uppercase().parse::<UserId>(),
        Err(IdError::WrongPrefix { .. })
    ));
    let upper_hex = format!("user_{}", id.uuid().simple().to_string().to_uppercase());
    if upper_hex != text {
        assert_eq!(upper_hex.parse::<UserId>(), Err(IdError::NotLowercaseHex));
    }
    assert!(matches!(
        format!("{text}0").parse::<UserId>(),
        Err(IdError::WrongLength { .. })
    ));
    assert!(matches!(
        format!("user_{}", id.uuid().hyphenated()).parse::<UserId>(),
        Err(IdError::WrongLength { .. })
    ));
    assert!(
        format!("user_{}", Uuid::nil().braced())
            .parse::<UserId>()
            .is_err()
    );
    // A 100 KB input is refused by length before anything else.
    assert!(matches!(
        "user_".repeat(20_000).parse::<UserId>(),
        Err(IdError::WrongLength { .. })
    ));
    // Control bytes and non-ASCII of the right length.
    let mut control = text.into_bytes();
    control[10] = b'\n';
    assert_eq!(
        String::from_utf8(control).unwrap().parse::<UserId>(),
        Err(IdError::NotLowercaseHex)
    );
}

#[test]
fn errors_do_not_echo_the_input() {
    let error = "user_<script>alert(1)</script>aaaaa"
        .parse::<UserId>()
        .unwrap_err();
    assert!(!error.to_string().contains("script"));
}

#[test]
fn serde_uses_the_string() {
    let id = TokenId::new_v7();
    let json = serde_json::to_string(&id).unwrap();
    assert_eq!(json, format!("\"{id}\""));
    let back: TokenId = serde_json::from_str(&json).unwrap();
    assert_eq!(back, id);
    assert!(serde_json::from_str::<UserId>(&json).is_err());
    assert!(serde_json::from_str::<TokenId>("42").is_err());
    assert!(serde_json::from_str::<TokenId>("\"tok_\"").is_err());
    // Inside a struct.
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Item {
        id: ItemId,
        owner: UserId,
    }
    let item = Item {
        id: ItemId::new(),
        owner: UserId::new(),
    };
    let json = serde_json::to_string(&item).unwrap();
    assert_eq!(serde_json::from_str::<Item>(&json).unwrap(), item);
}

#[test]
fn bytes_round_trip() {
    let id = ApiKeyId::new();
    let bytes = *id.as_bytes();
    assert_eq!(ApiKeyId::from_bytes(bytes), id);
    assert_eq!(Uuid::from(id).as_bytes(), &bytes);
}

#[test]
fn versions_and_determinism() {
    assert_eq!(UserId::new().uuid().get_version_num(), 4);
    assert_eq!(UserId::new_v7().uuid().get_version_num(), 7);
    let a = ItemId::new_v5(&Uuid::NAMESPACE_URL, b"idempotency-key-1");
    let b = ItemId::new_v5(&Uuid::NAMESPACE_URL, b"idempotency-key-1");
    let c = ItemId::new_v5(&Uuid::NAMESPACE_URL, b"idempotency-key-2");
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(a.uuid().get_version_num(), 5);
    let many: HashSet<UserId> = (0..1000).map(|_| UserId::new()).collect();
    assert_eq!(many.len(), 1000);
    // v7 ids created later sort after earlier ones (millisecond precision).
    let first = UserId::new_v7();
    std::thread::sleep(std::time::Duration::from_millis(2));
    assert!(UserId::new_v7() > first);
}

#[test]
fn debug_shows_the_text_form() {
    let id = UserId::from_uuid(Uuid::nil());
    assert_eq!(
        format!("{id:?}"),
        "Id(user_00000000000000000000000000000000)"
    );
}

fn generic_round_trip<P: tower_shield::id::IdPrefix>(id: Id<P>) -> Id<P> {
    id.to_string().parse().unwrap()
}

proptest! {
    #[test]
    fn text_round_trip(bytes in any::<[u8; 16]>()) {
        let id = UserId::from_bytes(bytes);
        prop_assert_eq!(generic_round_trip(id), id);
        let json = serde_json::to_string(&id).unwrap();
        prop_assert_eq!(serde_json::from_str::<UserId>(&json).unwrap(), id);
        prop_assert_eq!(id.as_bytes(), &bytes);
    }

    #[test]
    fn arbitrary_strings_never_panic(text in ".{0,200}") {
        let _ = text.parse::<UserId>();
        let _ = text.parse::<TokenId>();
    }

    #[test]
    fn near_misses_are_refused(hex in "[0-9a-fA-F]{32}") {
        let text = format!("item_{hex}");
        let parsed = text.parse::<ItemId>();
        if hex.bytes().any(|b| b.is_ascii_uppercase()) {
            prop_assert_eq!(parsed, Err(IdError::NotLowercaseHex));
        } else {
            prop_assert_eq!(parsed.unwrap().to_string(), text);
        }
    }
}
