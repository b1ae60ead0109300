//! The `rate_limit` module (work in progress).
