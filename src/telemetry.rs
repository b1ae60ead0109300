//! What the layers record for operators: metrics through the `metrics` facade (feature
//! `metrics`), and structured security events through `tracing` (always).
//!
//! The metric handles a layer uses are registered once, when the layer is built, so a
//! request pays one call on a handle: nothing at all without the feature, the facade's no-op
//! without a recorder. Install the recorder (e.g. `metrics-exporter-prometheus`) before
//! building the layers, as with any `metrics` user that registers its handles up front.
//! `crate::metrics` (feature `metrics`) documents every name.
// Each layer uses the parts it needs: under a feature set without that layer, they are unused.
#![allow(dead_code)]

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};

#[cfg(feature = "metrics")]
pub(crate) use ::metrics::{Counter, Histogram};

/// The metric names (public as `tower_shield::metrics::*` with the feature).
#[allow(unreachable_pub)]
pub(crate) mod names {
    /// Rate-limit decisions, by policy and outcome.
    pub const RATELIMIT_DECISIONS: &str = "tower_shield_ratelimit_decisions_total";
    /// Decisions made by a `FallbackStore`'s fallback.
    pub const RATELIMIT_FALLBACK_DECISIONS: &str =
        "tower_shield_ratelimit_fallback_decisions_total";
    /// Requests through a `JwtAuthLayer`, by outcome and reason.
    pub const JWT_REQUESTS: &str = "tower_shield_jwt_requests_total";
    /// Refresh-token presentations, by outcome.
    pub const REFRESH: &str = "tower_shield_refresh_total";
    /// Revocations written, by kind.
    pub const REVOCATIONS: &str = "tower_shield_revocations_total";
    /// CORS rejections, by kind.
    pub const CORS_REJECTIONS: &str = "tower_shield_cors_rejections_total";
    /// Request ids kept or made.
    pub const REQUEST_IDS: &str = "tower_shield_request_ids_total";
    /// Redis call latency, by outcome.
    pub const REDIS_CALL_DURATION: &str = "tower_shield_redis_call_duration_seconds";
}

/// A counter that compiles to nothing without the `metrics` feature.
#[cfg(not(feature = "metrics"))]
#[derive(Clone, Debug, Default)]
pub(crate) struct Counter;

#[cfg(not(feature = "metrics"))]
impl Counter {
    #[inline(always)]
    pub(crate) fn increment(&self, _: u64) {}
}

/// A histogram that compiles to nothing without the `metrics` feature.
#[cfg(not(feature = "metrics"))]
#[derive(Clone, Debug, Default)]
pub(crate) struct Histogram;

#[cfg(not(feature = "metrics"))]
impl Histogram {
    #[inline(always)]
    pub(crate) fn record(&self, _: f64) {}
}

/// A counter `name{label=value, …}` registered with the installed recorder (nothing without
/// the feature). Label values are owned: they are few and fixed when a layer is built.
#[allow(unused_variables)]
pub(crate) fn counter(name: &'static str, labels: &[(&'static str, &str)]) -> Counter {
    #[cfg(feature = "metrics")]
    {
        let labels: Vec<::metrics::Label> = labels
            .iter()
            .map(|(key, value)| ::metrics::Label::new(*key, (*value).to_owned()))
            .collect();
        ::metrics::counter!(name, labels)
    }
    #[cfg(not(feature = "metrics"))]
    Counter
}

/// A histogram `name{label=value, …}`, like [`counter`].
#[allow(unused_variables)]
pub(crate) fn histogram(name: &'static str, labels: &[(&'static str, &str)]) -> Histogram {
    #[cfg(feature = "metrics")]
    {
        let labels: Vec<::metrics::Label> = labels
            .iter()
            .map(|(key, value)| ::metrics::Label::new(*key, (*value).to_owned()))
            .collect();
        ::metrics::histogram!(name, labels)
    }
    #[cfg(not(feature = "metrics"))]
    Histogram
}

/// How many events of one kind and one client are logged per window before the rest are
/// only counted (and reported with the next one logged).
pub(crate) const EVENTS_PER_WINDOW: u64 = 10;
/// The window of [`EVENTS_PER_WINDOW`], in seconds.
pub(crate) const EVENT_WINDOW_SECS: u64 = 60;
/// Slots per event kind: clients are spread over them by address, so memory is fixed
/// whatever the number of clients (two clients in one slot share its budget).
const SLOTS: usize = 256;

/// Bounds the security events of one kind: at most [`EVENTS_PER_WINDOW`] per client (per
/// slot) per [`EVENT_WINDOW_SECS`]; the ones over are counted and the count is reported with
/// the next event logged for that slot. Lock-free, fixed memory.
#[derive(Debug)]
pub(crate) struct EventGate {
    /// Per slot: the window (unix seconds / window) in the high 40 bits, the events seen in
    /// it in the low 24.
    slots: [AtomicU64; SLOTS],
    suppressed: [AtomicU64; SLOTS],
}

impl EventGate {
    pub(crate) const fn new() -> Self {
        Self {
            slots: [const { AtomicU64::new(0) }; SLOTS],
            suppressed: [const { AtomicU64::new(0) }; SLOTS],
        }
    }

    /// `Some(events suppressed since the last one logged)` when this event of `client` should
    /// be logged, `None` when it is only counted.
    pub(crate) fn admit(&self, client: Option<IpAddr>) -> Option<u64> {
        let slot = slot_of(client);
        let (Some(state), Some(suppressed)) = (self.slots.get(slot), self.suppressed.get(slot))
        else {
            return Some(0);
        };
        let window = unix_secs() / EVENT_WINDOW_SECS;
        let mut current = state.load(Ordering::Relaxed);
        loop {
            let (seen_window, seen) = (current >> 24, current & 0xff_ffff);
            let next = if seen_window == window {
                (window << 24) | (seen + 1).min(0xff_ffff)
            } else {
                (window << 24) | 1
            };
            match state.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => {
                    let count = next & 0xff_ffff;
                    if count <= EVENTS_PER_WINDOW {
                        return Some(suppressed.swap(0, Ordering::Relaxed));
                    }
                    suppressed.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                Err(actual) => current = actual,
            }
        }
    }
}

fn slot_of(client: Option<IpAddr>) -> usize {
    let bits = match client {
        Some(IpAddr::V4(v4)) => u64::from(u32::from(v4)),
        Some(IpAddr::V6(v6)) => {
            let n = u128::from(v6);
            (n >> 64) as u64 ^ n as u64
        }
        None => 0,
    };
    // A multiplicative hash, high bits: neighbouring addresses land in different slots.
    usize::try_from(bits.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 56).unwrap_or(0) % SLOTS
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The client of a request, for an event: the `ClientIp` a layer resolved, else the TCP peer.
pub(crate) fn client_of(extensions: &http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<crate::client_ip::ClientIp>()
        .map(crate::client_ip::ClientIp::ip)
        .or_else(|| crate::client_ip::peer_addr(extensions).map(|peer| peer.ip()))
}

/// The request id of a request, for an event (empty without a `RequestIdLayer`).
pub(crate) fn request_id_of(extensions: &http::Extensions) -> &str {
    extensions
        .get::<crate::RequestId>()
        .map(crate::RequestId::as_str)
        .unwrap_or_default()
}

/// A request path for an event: at most 128 bytes, printable ASCII only (anything else
/// becomes `?`), so a client cannot forge log lines or fill them.
pub(crate) fn loggable(text: &str) -> String {
    text.bytes()
        .take(128)
        .map(|b| {
            if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' {
                char::from(b)
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_admits_ten_per_client_and_counts_the_rest() {
        let gate = EventGate::new();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..EVENTS_PER_WINDOW {
            assert_eq!(gate.admit(Some(a)), Some(0));
        }
        for _ in 0..5 {
            assert_eq!(gate.admit(Some(a)), None);
        }
        // Another client has its own budget (unless it shares the slot).
        if slot_of(Some(a)) != slot_of(Some(b)) {
            assert_eq!(gate.admit(Some(b)), Some(0));
        }
    }

    #[test]
    fn loggable_text_is_bounded_and_printable() {
        assert_eq!(loggable("/api/me"), "/api/me");
        assert_eq!(loggable("/a\nb\"c\\d\u{e9}"), "/a?b?c?d??");
        assert_eq!(loggable(&"x".repeat(1000)).len(), 128);
    }
}
