//! Lower-case hex: the crate's one codec for the ids and digests it writes as text (refresh
//! families, Redis key digests, prefixed ids).

/// Writes `bytes` as lower-case hex (two digits a byte) into `out`, as far as it fits;
/// returns how many digits were written.
#[cfg(any(
    feature = "tokens",
    feature = "api-key",
    all(feature = "redis", feature = "rate-limit"),
    test
))]
pub(crate) fn encode_into(bytes: &[u8], out: &mut [u8]) -> usize {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut written = 0;
    for (&byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        for (slot, nibble) in pair.iter_mut().zip([byte >> 4, byte & 0x0f]) {
            *slot = DIGITS.get(usize::from(nibble)).copied().unwrap_or(b'0');
        }
        written += 2;
    }
    written
}

/// `bytes` as a lower-case hex string.
#[cfg(any(feature = "tokens", feature = "api-key", test))]
pub(crate) fn encode(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    encode_into(bytes, &mut out);
    // Only ASCII digits were written.
    String::from_utf8(out).unwrap_or_default()
}

/// Fills `out` from exactly `2 * out.len()` lower-case hex digits; `None` on any other
/// input (upper case, another length, another character).
#[cfg(any(feature = "tokens", feature = "id", feature = "api-key", test))]
pub(crate) fn decode_into(hex: &[u8], out: &mut [u8]) -> Option<()> {
    if hex.len() != out.len() * 2 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    for (slot, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let [high, low] = pair else { return None };
        *slot = (digit(*high)? << 4) | digit(*low)?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_what_is_not_lower_case_hex() {
        let bytes = [0x00, 0x0f, 0xa5, 0xff];
        assert_eq!(encode(&bytes), "000fa5ff");
        let mut out = [0u8; 4];
        assert_eq!(decode_into(b"000fa5ff", &mut out), Some(()));
        assert_eq!(out, bytes);
        for bad in [
            &b"000FA5FF"[..],
            b"000fa5f",
            b"000fa5ff00",
            b"000fa5fg",
            b"000fa5f\xff",
        ] {
            assert_eq!(decode_into(bad, &mut out), None, "{bad:?}");
        }
        let mut short = [0u8; 3];
        assert_eq!(
            encode_into(&bytes, &mut short),
            2,
            "only whole digits that fit"
        );
    }
}
