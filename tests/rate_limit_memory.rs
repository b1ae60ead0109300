//! Bytes per key of the memory store, measured from the process's resident memory. Linux only.
//!
//! A test binary of its own with this one test, not a module of `tests/it`: the measure is
//! the whole process's, so nothing else may allocate (or free) meanwhile.
#![cfg(feature = "rate-limit")]

use tower_shield::rate_limit::{MemoryStore, Quota, RateKey, RateLimitStore};

fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[test]
fn bytes_per_key() {
    let Some(before) = resident_bytes() else {
        eprintln!("no /proc/self/statm: skipping bytes_per_key");
        return;
    };
    let store = MemoryStore::new();
    let limiter = store.limiter("bytes", &Quota::per_minute(10));
    const N: u32 = 1_000_000;
    for i in 0..N {
        let key = RateKey::ip(std::net::IpAddr::V4(i.into()));
        assert!(store.decide(&limiter, &key, 1).unwrap().allowed);
    }
    let after = resident_bytes().unwrap();
    let per_key = after.saturating_sub(before) as f64 / f64::from(N);
    eprintln!(
        "memory store: {per_key:.1} bytes per key ({N} keys, capacity {})",
        limiter.capacity()
    );
    assert_eq!(limiter.len(), N as usize);
    assert!(per_key < 80.0, "{per_key} bytes per key");
}
