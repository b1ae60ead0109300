//! The rate-limit response fields: IETF `RateLimit-Policy` / `RateLimit`
//! (draft-ietf-httpapi-ratelimit-headers-10, structured fields), legacy `X-RateLimit-*`,
//! and `Retry-After`.
//!
//! - `RateLimit-Policy: "api";q=100;w=60`: the policy's name, its quota `q` and window `w`
//!   in seconds.
//! - `RateLimit: "api";r=57;t=26`: the remaining quota `r` and `t`, the seconds until the
//!   quota is whole again, rounded up.
//! - `Retry-After: 3` on a refusal: the seconds until a request would be allowed, rounded
//!   up, never less than 1.
//!
//! When a response already carries a field (an inner rate-limit layer), the new member is
//! appended to the same list (`"user";r=9;t=6, "ip";r=99;t=1`).

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::policy::MAX_POLICY_NAME_LEN;
use super::store::Decision;

/// `RateLimit-Policy`.
pub static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit`.
pub static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// `X-RateLimit-Limit`.
pub static X_RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
/// `X-RateLimit-Remaining`.
pub static X_RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
/// `X-RateLimit-Reset`.
pub static X_RATELIMIT_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// Which rate-limit fields responses carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum HeaderMode {
    /// `RateLimit-Policy` and `RateLimit` (the default).
    #[default]
    Ietf,
    /// The IETF fields plus `X-RateLimit-Limit`, `-Remaining` and `-Reset` (seconds).
    IetfAndLegacy,
    /// None (a refusal still carries `Retry-After`).
    None,
}

/// Whole seconds, rounded up.
pub fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// The `Retry-After` value for a wait: whole seconds rounded up, at least 1.
pub fn retry_after_secs(wait: Duration) -> u64 {
    ceil_secs(wait).max(1)
}

/// `"name";q=100;w=60`, rendered once per policy tier.
pub(crate) fn policy_member(name: &str, limit: u32, window_secs: u64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("\"{name}\";q={limit};w={window_secs}")).ok()
}

/// `"name";r=57;t=26`, written without `fmt` into a stack buffer (this runs on every
/// limited request): one allocation, the header value's.
pub(crate) fn status_member(name: &str, decision: &Decision) -> Option<HeaderValue> {
    let mut buf = [0u8; MAX_POLICY_NAME_LEN + 64];
    let mut len = 0;
    let mut push = |bytes: &[u8]| {
        let end = len + bytes.len();
        if let Some(dst) = buf.get_mut(len..end) {
            dst.copy_from_slice(bytes);
            len = end;
        }
    };
    push(b"\"");
    push(name.as_bytes());
    push(b"\";r=");
    push(digits(u64::from(decision.remaining)).as_slice());
    push(b";t=");
    push(digits(ceil_secs(decision.reset)).as_slice());
    HeaderValue::from_bytes(buf.get(..len)?).ok()
}

/// The decimal digits of `n`.
struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    fn as_slice(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }
}

fn digits(mut n: u64) -> Digits {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        if let Some(d) = buf.get_mut(i) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    Digits { buf, start: i }
}

/// The fields one policy adds to a response.
#[derive(Debug, Clone)]
pub(crate) struct Fields {
    pub(crate) policy: Option<HeaderValue>,
    pub(crate) status: Option<HeaderValue>,
    pub(crate) legacy: Option<(u32, u32, u64)>,
}

impl Fields {
    pub(crate) fn new(
        mode: HeaderMode,
        name: &str,
        policy: Option<&HeaderValue>,
        decision: &Decision,
    ) -> Self {
        match mode {
            HeaderMode::None => Self {
                policy: None,
                status: None,
                legacy: None,
            },
            HeaderMode::Ietf | HeaderMode::IetfAndLegacy => Self {
                policy: policy.cloned(),
                status: status_member(name, decision),
                legacy: (mode == HeaderMode::IetfAndLegacy).then_some((
                    decision.limit,
                    decision.remaining,
                    ceil_secs(decision.reset),
                )),
            },
        }
    }

    /// Adds the fields to a response's headers, appending to existing list members.
    pub(crate) fn apply(self, headers: &mut HeaderMap) {
        if let Some(policy) = self.policy {
            append_member(headers, &RATELIMIT_POLICY, policy);
        }
        if let Some(status) = self.status {
            append_member(headers, &RATELIMIT, status);
        }
        if let Some((limit, remaining, reset)) = self.legacy {
            // The innermost (first applied) legacy values win: they are the strictest scope.
            if !headers.contains_key(&X_RATELIMIT_LIMIT) {
                headers.insert(X_RATELIMIT_LIMIT.clone(), HeaderValue::from(limit));
                headers.insert(X_RATELIMIT_REMAINING.clone(), HeaderValue::from(remaining));
                headers.insert(X_RATELIMIT_RESET.clone(), HeaderValue::from(reset));
            }
        }
    }
}

fn append_member(headers: &mut HeaderMap, name: &HeaderName, member: HeaderValue) {
    match headers.entry(name) {
        http::header::Entry::Occupied(mut existing) => {
            let current = existing.get();
            let mut joined = Vec::with_capacity(current.len() + 2 + member.len());
            joined.extend_from_slice(current.as_bytes());
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(member.as_bytes());
            if let Ok(value) = HeaderValue::from_bytes(&joined) {
                existing.insert(value);
            }
        }
        http::header::Entry::Vacant(slot) => {
            slot.insert(member);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_follow_the_draft_syntax() {
        let d = Decision {
            allowed: true,
            limit: 100,
            remaining: 57,
            reset: Duration::from_millis(25_400),
            retry_after: Duration::ZERO,
        };
        let mut headers = HeaderMap::new();
        Fields::new(
            HeaderMode::IetfAndLegacy,
            "api",
            policy_member("api", 100, 60).as_ref(),
            &d,
        )
        .apply(&mut headers);
        assert_eq!(headers["ratelimit-policy"], "\"api\";q=100;w=60");
        assert_eq!(headers["ratelimit"], "\"api\";r=57;t=26");
        assert_eq!(headers["x-ratelimit-remaining"], "57");
        Fields::new(
            HeaderMode::Ietf,
            "ip",
            policy_member("ip", 10, 60).as_ref(),
            &d,
        )
        .apply(&mut headers);
        assert_eq!(
            headers["ratelimit-policy"],
            "\"api\";q=100;w=60, \"ip\";q=10;w=60"
        );
        let mut big = d;
        big.remaining = u32::MAX;
        big.reset = Duration::from_secs(u64::MAX / 2);
        assert_eq!(
            status_member("x", &big).unwrap(),
            format!("\"x\";r={};t={}", u32::MAX, u64::MAX / 2).as_str()
        );
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
    }
}
