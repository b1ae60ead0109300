//! Strict base64url (RFC 4648 §5) for token segments, JWK members and refresh tokens, on the
//! `base64` crate (already in the tree through jsonwebtoken).
//!
//! Unpadded, as JWS asks (RFC 7515 §2): padding, `+`, `/`, whitespace and non-zero trailing
//! bits are refused (the engine's defaults for `URL_SAFE_NO_PAD`), so one token has exactly
//! one accepted spelling. The tests below pin that strictness.

use std::borrow::Cow;

use base64::DecodeSliceError;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Whether `b` is a base64url character.
pub(crate) fn is_url_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Decodes unpadded base64url; `None` on any deviation.
pub(crate) fn decode_url(input: &[u8]) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(input).ok()
}

/// [`decode_url`] into `buf` when the decoded bytes fit (no allocation: a token's header
/// and an HMAC signature usually do), else into a new vector.
pub(crate) fn decode_url_small<'b>(input: &[u8], buf: &'b mut [u8]) -> Option<Cow<'b, [u8]>> {
    match URL_SAFE_NO_PAD.decode_slice(input, &mut *buf) {
        Ok(len) => buf.get(..len).map(Cow::Borrowed),
        Err(DecodeSliceError::OutputSliceTooSmall) => decode_url(input).map(Cow::Owned),
        Err(DecodeSliceError::DecodeError(_)) => None,
    }
}

/// Encodes as unpadded base64url.
#[cfg(any(test, feature = "tokens", feature = "api-key"))]
pub(crate) fn encode_url(input: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_length() {
        for len in 0..70 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(decode_url(encode_url(&data).as_bytes()).unwrap(), data);
        }
    }

    #[test]
    fn a_foreign_character_anywhere_is_refused() {
        // Every length up to three steps of eight, a bad character at every position.
        for len in 2..=26 {
            let data: Vec<u8> = (0..len * 3 / 4).map(|i| (i * 53 + 7) as u8).collect();
            let good = encode_url(&data).into_bytes();
            assert_eq!(decode_url(&good).as_deref(), Some(&data[..]));
            for at in 0..good.len() {
                for bad in [b'=', b'+', b'/', b' ', b'.', 0x80, 0xff, 0] {
                    let mut token = good.clone();
                    token[at] = bad;
                    assert!(decode_url(&token).is_none(), "{len} {at} {bad}");
                }
            }
        }
    }

    #[test]
    fn small_decoding_agrees_with_the_vector_one() {
        for len in 0..200 {
            let data: Vec<u8> = (0..len).map(|i| (i * 29 + 3) as u8).collect();
            let text = encode_url(&data);
            let mut small = [0u8; 64];
            let decoded = decode_url_small(text.as_bytes(), &mut small).unwrap();
            assert_eq!(&*decoded, &data[..]);
            if len <= 40 {
                assert!(
                    matches!(decoded, Cow::Borrowed(_)),
                    "{len}: fits, no allocation"
                );
            }
            if len > 64 {
                assert!(matches!(decoded, Cow::Owned(_)), "{len}");
            }
        }
        let mut small = [0u8; 64];
        for bad in [&b"QQ=="[..], b"QR", b"a+b/", b"Q", b"QQ Q"] {
            assert!(decode_url_small(bad, &mut small).is_none());
        }
    }

    #[test]
    fn refuses_padding_foreign_alphabet_and_trailing_bits() {
        assert_eq!(decode_url(b"QQ").unwrap(), b"A");
        assert!(decode_url(b"QQ==").is_none());
        assert!(decode_url(b"QR").is_none(), "non-zero trailing bits");
        assert!(decode_url(b"a+b/").is_none());
        assert!(decode_url(b"Q").is_none());
        assert!(decode_url(b"QQ Q").is_none());
        assert!(decode_url(b"QQ\n").is_none());
    }
}
