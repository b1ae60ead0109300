//! Strict base64 (RFC 4648) for token segments and PEM bodies.
//!
//! URL-safe without padding for JWS segments (RFC 7515 §2): padding, `+`, `/`, whitespace and
//! non-zero trailing bits are refused, so one token has exactly one accepted spelling.

const INVALID: u8 = 0xff;

#[allow(clippy::indexing_slicing)] // const evaluation: an out-of-range index fails the build
const fn table(alphabet: &[u8; 64]) -> [u8; 256] {
    let mut t = [INVALID; 256];
    let mut i = 0;
    while i < 64 {
        t[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    t
}

const URL_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const STD_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static URL_TABLE: [u8; 256] = table(URL_ALPHABET);
static STD_TABLE: [u8; 256] = table(STD_ALPHABET);

#[inline]
fn lookup(table: &[u8; 256], c: u8) -> u8 {
    table.get(usize::from(c)).copied().unwrap_or(INVALID)
}

/// Whether `b` is a base64url character.
pub(crate) fn is_url_char(b: u8) -> bool {
    lookup(&URL_TABLE, b) != INVALID
}

/// Decodes unpadded base64url; `None` on any deviation.
pub(crate) fn decode_url(input: &[u8]) -> Option<Vec<u8>> {
    decode_with(input, &URL_TABLE)
}

/// Decodes standard base64 with optional `=` padding (PEM bodies, whitespace already removed).
pub(crate) fn decode_std(input: &[u8]) -> Option<Vec<u8>> {
    let trimmed = match input {
        [rest @ .., b'=', b'='] => rest,
        [rest @ .., b'='] => rest,
        _ => input,
    };
    if !input.len().is_multiple_of(4) {
        return None;
    }
    decode_with(trimmed, &STD_TABLE)
}

fn decode_with(input: &[u8], table: &[u8; 256]) -> Option<Vec<u8>> {
    if input.len() % 4 == 1 {
        return None;
    }
    let whole = input.len() / 4 * 3;
    let mut out = Vec::with_capacity(whole + 2);
    out.resize(whole, 0);
    // Eight characters (six bytes) per step.
    let (pairs, single) = input.as_chunks::<8>();
    let (out_pairs, out_single) = out.as_chunks_mut::<6>();
    for (chunk, dst) in pairs.iter().zip(out_pairs) {
        let [_, _, bytes @ ..] = sextets(chunk, table)?.to_be_bytes();
        *dst = bytes;
    }
    let mut chunks = single.chunks_exact(4);
    if let (Some(chunk), dst) = (chunks.next(), out_single) {
        let n = sextets(chunk, table)?;
        dst.get_mut(..3)?.copy_from_slice(n.to_be_bytes().get(5..)?);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let n = sextets(rest, table)?;
        match rest.len() {
            2 => {
                // 12 bits: 8 data + 4 that must be zero.
                if n & 0xf != 0 {
                    return None;
                }
                out.push(((n >> 4) & 0xff) as u8);
            }
            3 => {
                // 18 bits: 16 data + 2 that must be zero.
                if n & 0x3 != 0 {
                    return None;
                }
                let v = n >> 2;
                out.push(((v >> 8) & 0xff) as u8);
                out.push((v & 0xff) as u8);
            }
            _ => return None,
        }
    }
    Some(out)
}

/// The 6-bit values of `chars` (at most ten), the first in the highest bits; `None` when
/// one is outside the alphabet. No branch per character: an outside character maps to 0xff,
/// whose high bit survives the OR of all the values.
fn sextets(chars: &[u8], table: &[u8; 256]) -> Option<u64> {
    let (mut n, mut seen) = (0u64, 0u8);
    for &c in chars {
        let v = lookup(table, c);
        seen |= v;
        n = (n << 6) | u64::from(v);
    }
    (seen & 0x80 == 0).then_some(n)
}

/// Encodes as unpadded base64url.
#[cfg(test)]
pub(crate) fn encode_url(input: &[u8]) -> String {
    encode_with(input, URL_ALPHABET, false)
}

/// Encodes as padded standard base64.
pub(crate) fn encode_std(input: &[u8]) -> String {
    encode_with(input, STD_ALPHABET, true)
}

fn encode_with(input: &[u8], alphabet: &[u8; 64], pad: bool) -> String {
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    let sym = |i: u32| char::from(alphabet.get((i & 0x3f) as usize).copied().unwrap_or(b'A'));
    let mut chunks = input.chunks_exact(3);
    for c in &mut chunks {
        let &[a, b, c] = c else { continue };
        let n = u32::from(a) << 16 | u32::from(b) << 8 | u32::from(c);
        out.push(sym(n >> 18));
        out.push(sym(n >> 12));
        out.push(sym(n >> 6));
        out.push(sym(n));
    }
    match *chunks.remainder() {
        [a] => {
            let n = u32::from(a) << 16;
            out.push(sym(n >> 18));
            out.push(sym(n >> 12));
            if pad {
                out.push_str("==");
            }
        }
        [a, b] => {
            let n = u32::from(a) << 16 | u32::from(b) << 8;
            out.push(sym(n >> 18));
            out.push(sym(n >> 12));
            out.push(sym(n >> 6));
            if pad {
                out.push('=');
            }
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_length() {
        for len in 0..70 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(decode_url(encode_url(&data).as_bytes()).unwrap(), data);
            assert_eq!(decode_std(encode_std(&data).as_bytes()).unwrap(), data);
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
    fn refuses_padding_foreign_alphabet_and_trailing_bits() {
        assert_eq!(decode_url(b"QQ").unwrap(), b"A");
        assert!(decode_url(b"QQ==").is_none());
        assert!(decode_url(b"QR").is_none(), "non-zero trailing bits");
        assert!(decode_url(b"a+b/").is_none());
        assert!(decode_url(b"Q").is_none());
        assert!(decode_url(b"QQ Q").is_none());
        assert!(decode_std(b"QQ").is_none(), "std needs padding");
        assert_eq!(decode_std(b"QQ==").unwrap(), b"A");
    }
}
