//! Logging a failure that repeats on every request (a store that is down) once per burst.

use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(feature = "jwt")]
use std::time::{SystemTime, UNIX_EPOCH};

/// Logs store failures once per burst: the first failure after 10 quiet seconds, with the
/// number of failures not logged since the last line.
#[derive(Debug)]
pub(crate) struct LogGate {
    last: AtomicU64,
    suppressed: AtomicU64,
}

impl LogGate {
    /// A gate that has logged nothing yet (`const`, for a `static` too).
    pub(crate) const fn new() -> Self {
        Self {
            last: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(failures not logged since the last line)` when this failure should be logged
    /// (`now_nanos` on any clock that only moves forward), `None` when it is counted instead.
    pub(crate) fn should_log(&self, now_nanos: u64) -> Option<u64> {
        const QUIET: u64 = 10_000_000_000;
        let last = self.last.load(Ordering::Relaxed);
        if (last == 0 || now_nanos.saturating_sub(last) >= QUIET)
            && self
                .last
                .compare_exchange(last, now_nanos.max(1), Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::Relaxed));
        }
        self.suppressed.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// [`should_log`](Self::should_log) on the system clock.
    #[cfg(feature = "jwt")]
    pub(crate) fn should_log_now(&self) -> Option<u64> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        self.should_log(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_burst_with_the_count_of_the_rest() {
        let gate = LogGate::new();
        let s = 1_000_000_000;
        assert_eq!(gate.should_log(5 * s), Some(0));
        assert_eq!(gate.should_log(6 * s), None);
        assert_eq!(gate.should_log(14 * s), None);
        assert_eq!(
            gate.should_log(15 * s),
            Some(2),
            "10 quiet seconds: the next line"
        );
        assert_eq!(gate.should_log(15 * s), None);
    }
}
