//! The `security_headers` module (work in progress).
