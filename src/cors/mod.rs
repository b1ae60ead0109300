//! The `cors` module (work in progress).
