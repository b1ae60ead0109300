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

use http::header::Entry;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::store::Decision;
use crate::refusal::number_value;

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

/// `"name";q=100;w=60`, rendered once per policy tier (its clones share the bytes).
pub(crate) fn policy_member(name: &str, limit: u32, window_secs: u64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("\"{name}\";q={limit};w={window_secs}")).ok()
}

/// `"name";r=`: the constant start of a policy's `RateLimit` member, rendered once.
pub(crate) fn status_prefix(name: &str) -> Box<[u8]> {
    format!("\"{name}\";r=").into_bytes().into_boxed_slice()
}

/// `"name";r=57;t=26` from its pre-rendered prefix, written without `fmt` (this runs on
/// every limited request): one allocation, exactly the value's length.
pub(crate) fn status_member(prefix: &[u8], decision: &Decision) -> Option<HeaderValue> {
    let (mut remaining, mut reset) = (itoa::Buffer::new(), itoa::Buffer::new());
    let remaining = remaining.format(decision.remaining).as_bytes();
    let reset = reset.format(ceil_secs(decision.reset)).as_bytes();
    let mut value = Vec::with_capacity(prefix.len() + remaining.len() + 3 + reset.len());
    value.extend_from_slice(prefix);
    value.extend_from_slice(remaining);
    value.extend_from_slice(b";t=");
    value.extend_from_slice(reset);
    HeaderValue::from_maybe_shared(bytes::Bytes::from(value)).ok()
}

/// The fields one policy adds to a response.
#[derive(Debug, Clone)]
pub(crate) struct Fields {
    pub(crate) policy: Option<HeaderValue>,
    pub(crate) status: Option<HeaderValue>,
    pub(crate) legacy: Option<(u32, u32, u64)>,
}

impl Fields {
    /// The fields for a decision; `prefix` is the policy's [`status_prefix`], `policy` its
    /// tier's [`policy_member`].
    pub(crate) fn new(
        mode: HeaderMode,
        prefix: &[u8],
        policy: Option<&HeaderValue>,
        decision: &Decision,
    ) -> Option<Self> {
        match mode {
            HeaderMode::None => None,
            HeaderMode::Ietf | HeaderMode::IetfAndLegacy => Some(Self {
                policy: policy.cloned(),
                status: status_member(prefix, decision),
                legacy: (mode == HeaderMode::IetfAndLegacy).then_some((
                    decision.limit,
                    decision.remaining,
                    ceil_secs(decision.reset),
                )),
            }),
        }
    }

    /// Adds the fields to a response's headers, appending to existing list members.
    pub(crate) fn apply(self, headers: &mut HeaderMap) {
        // Room for what is added, as other layers do: an empty map is allocated for these
        // fields only (not the 6-entry default), a full one grows once. (`try_`: a map at
        // http's size limit is left as it is, never a panic.)
        let legacy = if self.legacy.is_some() { 3 } else { 0 };
        let _ = headers.try_reserve(
            usize::from(self.policy.is_some()) + usize::from(self.status.is_some()) + legacy,
        );
        if let Some(policy) = self.policy {
            append_member(headers, &RATELIMIT_POLICY, policy);
        }
        if let Some(status) = self.status {
            append_member(headers, &RATELIMIT, status);
        }
        if let Some((limit, remaining, reset)) = self.legacy {
            // The innermost (first applied) legacy values win: they are the strictest scope.
            if !headers.contains_key(&X_RATELIMIT_LIMIT) {
                for (name, value) in [
                    (&X_RATELIMIT_LIMIT, u64::from(limit)),
                    (&X_RATELIMIT_REMAINING, u64::from(remaining)),
                    (&X_RATELIMIT_RESET, reset),
                ] {
                    let _ = headers.try_insert(name.clone(), number_value(value));
                }
            }
        }
    }
}

fn append_member(headers: &mut HeaderMap, name: &HeaderName, member: HeaderValue) {
    // One lookup: usually absent (an insert), else a list member appended.
    match headers.try_entry(name) {
        Ok(Entry::Vacant(entry)) => {
            let _ = entry.try_insert(member);
        }
        Ok(Entry::Occupied(mut entry)) => {
            let current = entry.get_mut();
            let mut joined = Vec::with_capacity(current.len() + 2 + member.len());
            joined.extend_from_slice(current.as_bytes());
            joined.extend_from_slice(b", ");
            joined.extend_from_slice(member.as_bytes());
            if let Ok(value) = HeaderValue::from_maybe_shared(bytes::Bytes::from(joined)) {
                *current = value;
            }
        }
        // A map at http's size limit is left as it is.
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_values_follow_their_inputs() {
        let values =
            |secs, prefix: &[u8], d: &Decision| (number_value(secs), status_member(prefix, d));
        let prefix = status_prefix("ip");
        let mut d = Decision::new(
            false,
            10,
            0,
            Duration::from_millis(5_500),
            Duration::from_millis(500),
        );
        let (retry, status) = values(1, &prefix, &d);
        assert_eq!(retry, "1");
        assert_eq!(status.unwrap(), "\"ip\";r=0;t=6");
        // Same seconds: the same values.
        d.reset = Duration::from_millis(5_100);
        let (_, again) = values(1, &prefix, &d);
        assert_eq!(again.unwrap(), "\"ip\";r=0;t=6");
        // Any input changes: other values.
        d.reset = Duration::from_millis(4_900);
        assert_eq!(values(1, &prefix, &d).1.unwrap(), "\"ip\";r=0;t=5");
        assert_eq!(values(3600, &prefix, &d).0, "3600");
        d.remaining = 1;
        assert_eq!(values(3600, &prefix, &d).1.unwrap(), "\"ip\";r=1;t=5");
    }

    #[test]
    fn fields_follow_the_draft_syntax() {
        let d = Decision::new(true, 100, 57, Duration::from_millis(25_400), Duration::ZERO);
        let mut headers = HeaderMap::new();
        Fields::new(
            HeaderMode::IetfAndLegacy,
            &status_prefix("api"),
            policy_member("api", 100, 60).as_ref(),
            &d,
        )
        .unwrap()
        .apply(&mut headers);
        assert_eq!(headers["ratelimit-policy"], "\"api\";q=100;w=60");
        assert_eq!(headers["ratelimit"], "\"api\";r=57;t=26");
        assert_eq!(headers["x-ratelimit-remaining"], "57");
        Fields::new(
            HeaderMode::Ietf,
            &status_prefix("ip"),
            policy_member("ip", 10, 60).as_ref(),
            &d,
        )
        .unwrap()
        .apply(&mut headers);
        assert_eq!(
            headers["ratelimit-policy"],
            "\"api\";q=100;w=60, \"ip\";q=10;w=60"
        );
        let mut big = d;
        big.remaining = u32::MAX;
        big.reset = Duration::from_secs(u64::MAX / 2);
        assert_eq!(
            status_member(&status_prefix("x"), &big).unwrap(),
            format!("\"x\";r={};t={}", u32::MAX, u64::MAX / 2).as_str()
        );
        assert!(Fields::new(HeaderMode::None, b"", None, &d).is_none());
        for n in [0, 1, 9, 10, 99, 100, 101, 1023, 1024, 65_535, u64::MAX] {
            let mut at = d;
            at.remaining = u32::try_from(n).unwrap_or(u32::MAX);
            at.reset = Duration::from_secs(n);
            assert_eq!(
                status_member(&status_prefix("x"), &at).unwrap(),
                format!("\"x\";r={};t={n}", at.remaining).as_str()
            );
            assert_eq!(number_value(n), n.to_string().as_str());
        }
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
    }
}
