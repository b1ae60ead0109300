//! What a limit counts by: [`KeyBy`] (how to find it in a request) and [`RateKey`] (the value).

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
            // One slice each (a hasher's `write` has a fixed cost per call).
            Repr::Ip(IpAddr::V4(v4)) => {
                let [a, b, c, d] = v4.octets();
                sink(&[KIND_IP, 4, a, b, c, d]);
            }
            Repr::Ip(IpAddr::V6(v6)) => {
                let mut bytes = [0u8; 18];
                let (head, octets) = bytes.split_at_mut(2);
                head.copy_from_slice(&[KIND_IP, 6]);
                octets.copy_from_slice(&v6.octets());
                sink(&bytes);
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
/// - [`KeyBy::client_ip`]: the client's address group (needs the peer address; see
///   [`client_ip`](crate::client_ip)).
/// - [`KeyBy::subject`]: the verified subject ([`Principal`]), or the client IP for anonymous
///   requests.
/// - [`KeyBy::header`]: a header's value (an API key), bounded and never logged.
/// - [`KeyBy::route_and`]: the request path plus another key.
/// - [`KeyBy::from_fn`]: a closure.
/// - [`KeyBy::or`]: an alternative when the first finds nothing.
///
/// A request for which no key is found is refused (deny by default).
#[derive(Clone)]
pub struct KeyBy {
    kind: KeyKind,
}

#[derive(Clone)]
enum KeyKind {
    ClientIp,
    SubjectOnly,
    Header(HeaderName),
    Route(Arc<KeyBy>),
    Func(Arc<KeyFn>),
    Or(Arc<KeyBy>, Arc<KeyBy>),
}

impl fmt::Debug for KeyBy {
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

impl KeyBy {
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
                // A path that alone is past the bound (client-chosen): no key, nothing copied.
                if path.len() >= MAX_KEY_LEN {
                    return None;
                }
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

/// A keyed 64-bit hash of a key in a scope, for in-memory maps: SipHash under the store's
/// random key (`std`'s [`RandomState`](std::hash::RandomState)), so clients cannot aim at
/// each other's entries; the scope, then the key's canonical material.
#[cfg(feature = "redis")]
pub(crate) fn keyed_hash(state: &std::hash::RandomState, scope: u64, key: &RateKey) -> u64 {
    let mut hasher = state.build_hasher();
    hasher.write_u64(scope);
    hash_material(hasher, key)
}

/// Feeds the key's canonical material to `hasher` and returns the hash. `hasher` is already
/// keyed, and holds the scope when the hash must have one.
pub(crate) fn hash_material(mut hasher: std::hash::DefaultHasher, key: &RateKey) -> u64 {
    key.write_material(&mut |bytes| hasher.write(bytes));
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(build: http::request::Builder) -> Parts {
        build.body(()).unwrap().into_parts().0
    }

    #[test]
    fn key_hashes_differ_by_scope_key_and_kind() {
        let state = std::hash::RandomState::new();
        let hash = |scope, key: &RateKey| keyed_hash(&state, scope, key);
        let ip = RateKey::ip("192.0.2.1".parse().unwrap());
        let other = RateKey::ip("192.0.2.2".parse().unwrap());
        let bytes = RateKey::bytes(&[4, 192, 0, 2, 1]).unwrap();
        let h = hash(7, &ip);
        assert_eq!(h, hash(7, &RateKey::ip("192.0.2.1".parse().unwrap())));
        assert_ne!(h, hash(8, &ip));
        assert_ne!(h, hash(7, &other));
        assert_ne!(h, hash(7, &bytes));
        let long = RateKey::bytes(&[0xab; MAX_KEY_LEN]).unwrap();
        assert_ne!(
            hash(7, &long),
            keyed_hash(&std::hash::RandomState::new(), 7, &long)
        );
        // Every kind and length hashes apart from every other.
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
        let hashes: std::collections::HashSet<u64> = keys.iter().map(|k| hash(7, k)).collect();
        assert_eq!(hashes.len(), keys.len());
    }

    #[test]
    fn keys_are_found_and_bounded() {
        let ip: ClientIp = ClientIp::from_peer("2001:db8:0:1::5".parse().unwrap(), 56);
        let cx = KeyContext {
            client_ip: Some(&ip),
        };
        let p = parts(http::Request::builder().uri("/a"));
        assert_eq!(
            KeyBy::client_ip().extract(&p, &cx),
            Some(RateKey::ip("2001:db8::".parse().unwrap()))
        );
        assert_eq!(
            KeyBy::subject().extract(&p, &cx),
            KeyBy::client_ip().extract(&p, &cx)
        );
        assert!(KeyBy::subject_only().extract(&p, &cx).is_none());
        let mut p2 = parts(http::Request::builder().uri("/a"));
        p2.extensions.insert(Principal::new("user_1", None));
        assert_eq!(
            KeyBy::subject().extract(&p2, &cx),
            RateKey::subject("user_1".into())
        );
        let api = KeyBy::header(HeaderName::from_static("x-api-key"));
        let long = "k".repeat(MAX_KEY_LEN + 1);
        let p3 = parts(http::Request::builder().header("x-api-key", long.as_str()));
        assert!(api.extract(&p3, &cx).is_none());
        let p4 = parts(http::Request::builder().header("x-api-key", "secret-key"));
        let key = api.extract(&p4, &cx).unwrap();
        assert!(!format!("{key:?}").contains("secret"));
        let route = KeyBy::route_and(KeyBy::client_ip());
        let a = route.extract(&parts(http::Request::builder().uri("/a")), &cx);
        let b = route.extract(&parts(http::Request::builder().uri("/b")), &cx);
        assert_ne!(a, b);
        // Path and key together past the bound: no key, whatever makes it long.
        for len in [MAX_KEY_LEN - 10, MAX_KEY_LEN, 8 * MAX_KEY_LEN] {
            let uri = format!("/{}", "p".repeat(len));
            let long_route = route.extract(&parts(http::Request::builder().uri(uri)), &cx);
            assert!(long_route.is_none(), "path of {len}");
        }
        let short = format!("/{}", "p".repeat(MAX_KEY_LEN - 40));
        assert!(
            route
                .extract(&parts(http::Request::builder().uri(short)), &cx)
                .is_some()
        );
        let none = KeyBy::from_fn(|_| None).or(KeyBy::client_ip());
        assert!(none.extract(&p, &cx).is_some());
        assert!(none.needs_ip());
    }
}
