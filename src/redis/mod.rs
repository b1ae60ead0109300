//! The `redis` module (work in progress).
