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
    /// Requests through an `ApiKeyLayer` that presented a key, by outcome.
    pub const APIKEY_REQUESTS: &str = "tower_shield_apikey_requests_total";
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

/// The most events of one kind logged per window, whatever the number of clients: a client
/// that spreads over many addresses (an IPv6 range) cannot fill the logs either.
pub(crate) const EVENTS_PER_KIND_PER_WINDOW: u64 = 200;

/// Bounds the security events of one kind: at most [`EVENTS_PER_WINDOW`] per client (per
/// slot) and [`EVENTS_PER_KIND_PER_WINDOW`] in all per [`EVENT_WINDOW_SECS`]; the ones over
/// are counted and the count is reported with the next event logged for that slot.
/// Lock-free, fixed memory. Clients are IPv4 addresses or IPv6 /56 groups (as rate limits
/// group them), spread over the slots by a hash seeded per process, so addresses cannot be
/// chosen to land in given slots.
#[derive(Debug)]
pub(crate) struct EventGate {
    /// Per slot: the window (unix seconds / window) in the high 40 bits, the events seen in
    /// it in the low 24.
    slots: [AtomicU64; SLOTS],
    suppressed: [AtomicU64; SLOTS],
    /// The same for all the slots together.
    total: AtomicU64,
}

impl EventGate {
    pub(crate) const fn new() -> Self {
        Self {
            slots: [const { AtomicU64::new(0) }; SLOTS],
            suppressed: [const { AtomicU64::new(0) }; SLOTS],
            total: AtomicU64::new(0),
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
        if count(state, window) > EVENTS_PER_WINDOW
            || count(&self.total, window) > EVENTS_PER_KIND_PER_WINDOW
        {
            suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(suppressed.swap(0, Ordering::Relaxed))
    }
}

/// Counts one event in `state` for `window` (starting afresh in a new window) and returns the
/// count, saturating at 2^24 - 1 (never spilling into the window bits). A state already past
/// every bound in this window is not written again.
fn count(state: &AtomicU64, window: u64) -> u64 {
    let mut current = state.load(Ordering::Relaxed);
    loop {
        let (seen_window, seen) = (current >> 24, current & 0xff_ffff);
        if seen_window == window && seen > EVENTS_PER_KIND_PER_WINDOW {
            return seen;
        }
        let next = if seen_window == window {
            (window << 24) | (seen + 1).min(0xff_ffff)
        } else {
            (window << 24) | 1
        };
        match state.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next & 0xff_ffff,
            Err(actual) => current = actual,
        }
    }
}

fn slot_of(client: Option<IpAddr>) -> usize {
    use std::hash::BuildHasher;
    static SEED: std::sync::OnceLock<std::hash::RandomState> = std::sync::OnceLock::new();
    let group: u128 = match client {
        Some(IpAddr::V4(v4)) => u128::from(u32::from(v4)),
        // The /56 (a usual home allocation), marked apart from IPv4.
        Some(IpAddr::V6(v6)) => (u128::from(v6) >> 72) | (1 << 127),
        None => 0,
    };
    let hash = SEED
        .get_or_init(std::hash::RandomState::new)
        .hash_one(group);
    usize::try_from(hash % SLOTS as u64).unwrap_or(0)
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
        // One /56 is one client: its addresses share a budget.
        let (x, y): (IpAddr, IpAddr) = (
            "2001:db8:0:100::1".parse().unwrap(),
            "2001:db8:0:1ff:ffff::9".parse().unwrap(),
        );
        assert_eq!(slot_of(Some(x)), slot_of(Some(y)));
    }

    #[test]
    fn many_clients_together_are_bounded_too() {
        let gate = EventGate::new();
        let logged = (0..10_000u32)
            .filter(|i| gate.admit(Some(IpAddr::V4((*i).into()))).is_some())
            .count() as u64;
        // The window may roll over once during the loop.
        assert!(logged <= 2 * EVENTS_PER_KIND_PER_WINDOW, "{logged}");
        assert!(logged >= EVENTS_PER_KIND_PER_WINDOW, "{logged}");
    }

    #[test]
    fn loggable_text_is_bounded_and_printable() {
        assert_eq!(loggable("/api/me"), "/api/me");
        assert_eq!(loggable("/a\nb\"c\\d\u{e9}"), "/a?b?c?d??");
        assert_eq!(loggable(&"x".repeat(1000)).len(), 128);
    }
}
