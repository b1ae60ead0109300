//! What a limit counts by: [`Key`] (how to find it in a request) and [`RateKey`] (the value).

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use http::HeaderName;
use http::request::Parts;

use crate::client_ip::ClientIp;
use crate::extensions::Principal;

/// The longest key material accepted, in bytes. A longer value (an oversized API-key header,
/// a closure's result) is not a key: the next alternative is tried, else the request is
/// refused.
pub const MAX_KEY_LEN: usize = 256;

/// The value a limit is counted by: an address group, a subject, a header value, or what a
/// closure returned. Bounded to [`MAX_KEY_LEN`] bytes; its `Debug` and
/// [`log_id`](Self::log_id) never show the raw material.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RateKey {
    repr: Repr,
}

#[derive(Clone, PartialEq, Eq, Hash)]
enum Repr {
    Ip(IpAddr),
    Subject(Arc<str>),
    Bytes(Box<[u8]>),
}

const KIND_IP: u8 = 1;
const KIND_SUBJECT: u8 = 2;
const KIND_BYTES: u8 = 3;

impl RateKey {
    /// A key for an address (pass [`ClientIp::group`] so IPv6 clients are grouped).
    #[inline]
    pub fn ip(ip: IpAddr) -> Self {
        Self { repr: Repr::Ip(ip) }
    }

    /// A key for a subject (a user id); `None` when longer than [`MAX_KEY_LEN`].
    pub fn subject(subject: Arc<str>) -> Option<Self> {
        (subject.len() <= MAX_KEY_LEN).then_some(Self {
            repr: Repr::Subject(subject),
        })
    }

    /// A key from arbitrary bytes (a header value, a closure's result); `None` when longer
    /// than [`MAX_KEY_LEN`] or empty.
    pub fn bytes(material: &[u8]) -> Option<Self> {
        (!material.is_empty() && material.len() <= MAX_KEY_LEN).then(|| Self {
            repr: Repr::Bytes(material.into()),
        })
    }

    /// Feeds the key's canonical bytes (a kind tag, then the material) to `sink`: what the
    /// stores hash.
    pub fn write_material(&self, sink: &mut impl FnMut(&[u8])) {
        match &self.repr {
            Repr::Ip(IpAddr::V4(v4)) => {
                sink(&[KIND_IP, 4]);
                sink(&v4.octets());
            }
            Repr::Ip(IpAddr::V6(v6)) => {
                sink(&[KIND_IP, 6]);
                sink(&v6.octets());
            }
            Repr::Subject(s) => {
                sink(&[KIND_SUBJECT]);
                sink(s.as_bytes());
            }
            Repr::Bytes(b) => {
                sink(&[KIND_BYTES]);
                sink(b);
            }
        }
    }

    /// A per-process, keyed 64-bit hash of the key, for logs (`key_id=…`): stable within a
    /// process, meaningless outside it, never the raw material.
    pub fn log_id(&self) -> u64 {
        static STATE: OnceLock<std::hash::RandomState> = OnceLock::new();
        let mut hasher = STATE
            .get_or_init(std::hash::RandomState::new)
            .build_hasher();
        self.write_material(&mut |bytes| hasher.write(bytes));
        hasher.finish()
    }
}

impl fmt::Debug for RateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RateKey({:016x})", self.log_id())
    }
}

type KeyFn = dyn Fn(&Parts) -> Option<RateKey> + Send + Sync;

/// How a policy finds its key in a request.
///
/// - [`Key::client_ip`]: the client's address group (needs the peer address; see
///   [`client_ip`](crate::client_ip)).
/// - [`Key::subject`]: the verified subject ([`Principal`]), or the client IP for anonymous
///   requests.
/// - [`Key::header`]: a header's value (an API key), bounded and never logged.
/// - [`Key::route_and`]: the request path plus another key.
/// - [`Key::from_fn`]: a closure.
/// - [`Key::or`]: an alternative when the first finds nothing.
///
/// A request for which no key is found is refused (deny by default).
#[derive(Clone)]
pub struct Key {
    kind: KeyKind,
}

#[derive(Clone)]
enum KeyKind {
    ClientIp,
    SubjectOnly,
    Header(HeaderName),
    Route(Arc<Key>),
    Func(Arc<KeyFn>),
    Or(Arc<Key>, Arc<Key>),
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            KeyKind::ClientIp => f.write_str("ClientIp"),
            KeyKind::SubjectOnly => f.write_str("Subject"),
            KeyKind::Header(name) => write!(f, "Header({name})"),
            KeyKind::Route(inner) => write!(f, "Route+{inner:?}"),
            KeyKind::Func(_) => f.write_str("Fn"),
            KeyKind::Or(a, b) => write!(f, "{a:?}|{b:?}"),
        }
    }
}

/// What a key lookup needs beyond the request parts.
pub(crate) struct KeyContext<'a> {
    pub(crate) client_ip: Option<&'a ClientIp>,
}

impl Key {
    /// The client's address group.
    pub fn client_ip() -> Self {
        Self {
            kind: KeyKind::ClientIp,
        }
    }

    /// The verified subject, falling back to the client IP for anonymous requests.
    pub fn subject() -> Self {
        Self::subject_only().or(Self::client_ip())
    }

    /// The verified subject only: anonymous requests find no key (and are refused unless
    /// combined with [`or`](Self::or)).
    pub fn subject_only() -> Self {
        Self {
            kind: KeyKind::SubjectOnly,
        }
    }

    /// The value of a header (e.g. an API key), at most [`MAX_KEY_LEN`] bytes.
    pub fn header(name: HeaderName) -> Self {
        Self {
            kind: KeyKind::Header(name),
        }
    }

    /// The request path plus another key: one budget per route and client.
    pub fn route_and(key: Self) -> Self {
        Self {
            kind: KeyKind::Route(Arc::new(key)),
        }
    }

    /// A closure of the request parts (extensions included). Return `None` when the request
    /// has no key.
    pub fn from_fn<F>(f: F) -> Self
    where
        F: Fn(&Parts) -> Option<RateKey> + Send + Sync + 'static,
    {
        Self {
            kind: KeyKind::Func(Arc::new(f)),
        }
    }

    /// This key, or `other` when this one finds nothing.
    #[must_use]
    pub fn or(self, other: Self) -> Self {
        Self {
            kind: KeyKind::Or(Arc::new(self), Arc::new(other)),
        }
    }

    /// Whether finding this key may need the client IP.
    pub(crate) fn needs_ip(&self) -> bool {
        match &self.kind {
            KeyKind::ClientIp => true,
            KeyKind::SubjectOnly | KeyKind::Header(_) | KeyKind::Func(_) => false,
            KeyKind::Route(inner) => inner.needs_ip(),
            KeyKind::Or(a, b) => a.needs_ip() || b.needs_ip(),
        }
    }

    pub(crate) fn extract(&self, parts: &Parts, cx: &KeyContext<'_>) -> Option<RateKey> {
        match &self.kind {
            KeyKind::ClientIp => cx.client_ip.map(|ip| RateKey::ip(ip.group())),
            KeyKind::SubjectOnly => parts
                .extensions
                .get::<Principal>()
                .and_then(|p| RateKey::subject(p.subject.clone())),
            KeyKind::Header(name) => {
                let mut values = parts.headers.get_all(name).iter();
                let first = values.next()?;
                if values.next().is_some() {
                    // Two values: ambiguous, no key.
                    return None;
                }
                RateKey::bytes(first.as_bytes())
            }
            KeyKind::Route(inner) => {
                let key = inner.extract(parts, cx)?;
                let path = parts.uri.path().as_bytes();
                let mut material = Vec::with_capacity(path.len() + 40);
                material.extend_from_slice(path);
                material.push(0);
                key.write_material(&mut |b| material.extend_from_slice(b));
                if material.len() > MAX_KEY_LEN {
                    return None;
                }
                RateKey::bytes(&material)
            }
            KeyKind::Func(f) => f(parts),
            KeyKind::Or(a, b) => a.extract(parts, cx).or_else(|| b.extract(parts, cx)),
        }
    }
}

/// A hasher that keeps a `u64` key as it is: the memory store's keys are already keyed
/// SipHash outputs, so hashing them again would only cost time.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct PrehashedKey;

impl BuildHasher for PrehashedKey {
    type Hasher = PrehashedHasher;
    fn build_hasher(&self) -> PrehashedHasher {
        PrehashedHasher(0)
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct PrehashedHasher(u64);

impl Hasher for PrehashedHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// A keyed 64-bit hash of rate keys for in-memory maps: SipHash-1-3 (the function behind
/// `std`'s `RandomState`) under a random 128-bit key drawn per store, so clients cannot aim
/// at each other's entries. The key's canonical material (a kind tag, then the bytes, the
/// same as [`RateKey::write_material`]) after an 8-byte scope is hashed in one pass over a
/// stack buffer: for an address that is two or four blocks, with no `Hasher` state machine.
#[derive(Clone)]
pub(crate) struct KeyHasher {
    k0: u64,
    k1: u64,
}

impl fmt::Debug for KeyHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyHasher(..)")
    }
}

impl KeyHasher {
    /// A hasher under a fresh random key (from `std`'s per-process random keys).
    pub(crate) fn new() -> Self {
        let state = std::hash::RandomState::new();
        Self {
            k0: state.hash_one(0x6b30_u64),
            k1: state.hash_one(0x6b31_u64),
        }
    }

    /// The hash of `scope` (a 64-bit scope id) and the key: SipHash of the scope's eight
    /// little-endian bytes followed by the key's canonical material.
    #[inline]
    pub(crate) fn hash(&self, scope: u64, key: &RateKey) -> u64 {
        let mut sip = Sip::<1, 3>::new(self.k0, self.k1);
        sip.word(scope);
        match &key.repr {
            // Addresses, the common keys, as whole words: no buffering.
            Repr::Ip(IpAddr::V4(v4)) => {
                let [a, b, c, d] = v4.octets();
                sip.finish_with(u64::from_le_bytes([KIND_IP, 4, a, b, c, d, 0, 0]), 6)
            }
            Repr::Ip(IpAddr::V6(v6)) => {
                let o = v6.octets();
                sip.word(u64::from_le_bytes([
                    KIND_IP, 6, o[0], o[1], o[2], o[3], o[4], o[5],
                ]));
                sip.word(u64::from_le_bytes([
                    o[6], o[7], o[8], o[9], o[10], o[11], o[12], o[13],
                ]));
                sip.finish_with(u64::from_le_bytes([o[14], o[15], 0, 0, 0, 0, 0, 0]), 2)
            }
            Repr::Subject(s) => sip.finish_bytes(KIND_SUBJECT, s.as_bytes()),
            Repr::Bytes(b) => sip.finish_bytes(KIND_BYTES, b),
        }
    }
}

/// SipHash-`C`-`D` (Aumasson and Bernstein: `C` compression rounds per 8-byte block, `D`
/// finalisation rounds) over whole little-endian words, then a tail.
struct Sip<const C: usize, const D: usize> {
    v: [u64; 4],
    /// Bytes hashed so far (whole words).
    len: usize,
}

impl<const C: usize, const D: usize> Sip<C, D> {
    fn new(k0: u64, k1: u64) -> Self {
        Self {
            v: [
                k0 ^ 0x736f_6d65_7073_6575,
                k1 ^ 0x646f_7261_6e64_6f6d,
                k0 ^ 0x6c79_6765_6e65_7261,
                k1 ^ 0x7465_6462_7974_6573,
            ],
            len: 0,
        }
    }

    #[inline(always)]
    fn round(&mut self) {
        let v = &mut self.v;
        v[0] = v[0].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(13) ^ v[0];
        v[0] = v[0].rotate_left(32);
        v[2] = v[2].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(16) ^ v[2];
        v[0] = v[0].wrapping_add(v[3]);
        v[3] = v[3].rotate_left(21) ^ v[0];
        v[2] = v[2].wrapping_add(v[1]);
        v[1] = v[1].rotate_left(17) ^ v[2];
        v[2] = v[2].rotate_left(32);
    }

    #[inline(always)]
    fn compress(&mut self, m: u64) {
        self.v[3] ^= m;
        for _ in 0..C {
            self.round();
        }
        self.v[0] ^= m;
    }

    /// Eight more message bytes.
    #[inline(always)]
    fn word(&mut self, m: u64) {
        self.compress(m);
        self.len += 8;
    }

    /// The last `tail_len` (< 8) message bytes, in the low bytes of `tail` (the rest zero),
    /// and the hash.
    #[inline(always)]
    fn finish_with(mut self, tail: u64, tail_len: usize) -> u64 {
        let len = self.len + tail_len;
        // The message length's low byte in the last block's top byte.
        self.compress(tail | ((len as u64 & 0xff) << 56));
        self.v[2] ^= 0xff;
        for _ in 0..D {
            self.round();
        }
        self.v[0] ^ self.v[1] ^ self.v[2] ^ self.v[3]
    }

    /// The hash of what came before, then `first` and `rest`.
    fn finish_bytes(mut self, first: u8, rest: &[u8]) -> u64 {
        let mut block = [0u8; 8];
        block[0] = first;
        let head = rest.len().min(7);
        let (start, rest) = rest.split_at(head);
        if let Some(dst) = block.get_mut(1..=head) {
            dst.copy_from_slice(start);
        }
        if head < 7 {
            return self.finish_with(u64::from_le_bytes(block), 1 + head);
        }
        self.word(u64::from_le_bytes(block));
        self.finish_slice(rest)
    }

    /// The hash of what came before, then `msg`.
    fn finish_slice(mut self, msg: &[u8]) -> u64 {
        let mut chunks = msg.chunks_exact(8);
        for chunk in chunks.by_ref() {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            self.word(u64::from_le_bytes(word));
        }
        let tail = chunks.remainder();
        let mut last = [0u8; 8];
        if let Some(dst) = last.get_mut(..tail.len()) {
            dst.copy_from_slice(tail);
        }
        self.finish_with(u64::from_le_bytes(last), tail.len())
    }
}

/// SipHash-`C`-`D` of `msg` under the key `(k0, k1)`.
#[cfg(test)]
fn siphash<const C: usize, const D: usize>(k0: u64, k1: u64, msg: &[u8]) -> u64 {
    Sip::<C, D>::new(k0, k1).finish_slice(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(build: http::request::Builder) -> Parts {
        build.body(()).unwrap().into_parts().0
    }

    #[test]
    fn siphash_matches_the_reference() {
        // The paper's SipHash-2-4 vectors: key 00 01 .. 0f, messages of 0, 1, 15 and 63
        // bytes 00 01 02 ..; the rounds are the only difference with 1-3.
        let k0 = u64::from_le_bytes([0, 1, 2, 3, 4, 5, 6, 7]);
        let k1 = u64::from_le_bytes([8, 9, 10, 11, 12, 13, 14, 15]);
        let msg: Vec<u8> = (0..64).collect();
        assert_eq!(siphash::<2, 4>(k0, k1, &msg[..0]), 0x726f_db47_dd0e_0e31);
        assert_eq!(siphash::<2, 4>(k0, k1, &msg[..1]), 0x74f8_39c5_93dc_67fd);
        assert_eq!(siphash::<2, 4>(k0, k1, &msg[..15]), 0xa129_ca61_49be_45e5);
        assert_eq!(siphash::<2, 4>(k0, k1, &msg[..63]), 0x958a_324c_eb06_4572);
        // And every length against std's (deprecated, SipHash-2-4) `SipHasher`.
        for len in 0..msg.len() {
            #[allow(deprecated)]
            let mut std_sip = std::hash::SipHasher::new_with_keys(k0, k1);
            std_sip.write(&msg[..len]);
            assert_eq!(siphash::<2, 4>(k0, k1, &msg[..len]), std_sip.finish());
        }
    }

    #[test]
    fn key_hashes_differ_by_scope_key_and_kind() {
        let hasher = KeyHasher::new();
        let ip = RateKey::ip("192.0.2.1".parse().unwrap());
        let other = RateKey::ip("192.0.2.2".parse().unwrap());
        let bytes = RateKey::bytes(&[4, 192, 0, 2, 1]).unwrap();
        let h = hasher.hash(7, &ip);
        assert_eq!(
            h,
            hasher.hash(7, &RateKey::ip("192.0.2.1".parse().unwrap()))
        );
        assert_ne!(h, hasher.hash(8, &ip));
        assert_ne!(h, hasher.hash(7, &other));
        assert_ne!(h, hasher.hash(7, &bytes));
        let long = RateKey::bytes(&[0xab; MAX_KEY_LEN]).unwrap();
        assert_ne!(hasher.hash(7, &long), KeyHasher::new().hash(7, &long));
        // Every kind is SipHash-1-3 of the scope and the canonical material.
        let keys = [
            ip,
            RateKey::ip("2001:db8::1".parse().unwrap()),
            RateKey::subject("".into()).unwrap(),
            RateKey::subject("user_1".into()).unwrap(),
            RateKey::subject("user_12".into()).unwrap(),
            RateKey::subject("user_123".into()).unwrap(),
            RateKey::subject("\u{e9}x".repeat(40).into()).unwrap(),
            bytes,
            long,
        ];
        for key in &keys {
            let mut msg = 7u64.to_le_bytes().to_vec();
            key.write_material(&mut |b| msg.extend_from_slice(b));
            assert_eq!(
                hasher.hash(7, key),
                siphash::<1, 3>(hasher.k0, hasher.k1, &msg)
            );
        }
    }

    #[test]
    fn keys_are_found_and_bounded() {
        let ip: ClientIp = ClientIp::from_peer("2001:db8:0:1::5".parse().unwrap(), 56);
        let cx = KeyContext {
            client_ip: Some(&ip),
        };
        let p = parts(http::Request::builder().uri("/a"));
        assert_eq!(
            Key::client_ip().extract(&p, &cx),
            Some(RateKey::ip("2001:db8::".parse().unwrap()))
        );
        assert_eq!(
            Key::subject().extract(&p, &cx),
            Key::client_ip().extract(&p, &cx)
        );
        assert!(Key::subject_only().extract(&p, &cx).is_none());
        let mut p2 = parts(http::Request::builder().uri("/a"));
        p2.extensions.insert(Principal::new("user_1", None));
        assert_eq!(
            Key::subject().extract(&p2, &cx),
            RateKey::subject("user_1".into())
        );
        let api = Key::header(HeaderName::from_static("x-api-key"));
        let long = "k".repeat(MAX_KEY_LEN + 1);
        let p3 = parts(http::Request::builder().header("x-api-key", long.as_str()));
        assert!(api.extract(&p3, &cx).is_none());
        let p4 = parts(http::Request::builder().header("x-api-key", "secret-key"));
        let key = api.extract(&p4, &cx).unwrap();
        assert!(!format!("{key:?}").contains("secret"));
        let route = Key::route_and(Key::client_ip());
        let a = route.extract(&parts(http::Request::builder().uri("/a")), &cx);
        let b = route.extract(&parts(http::Request::builder().uri("/b")), &cx);
        assert_ne!(a, b);
        let none = Key::from_fn(|_| None).or(Key::client_ip());
        assert!(none.extract(&p, &cx).is_some());
        assert!(none.needs_ip());
    }
}
