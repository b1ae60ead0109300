//! The `jwt` module (work in progress).
