//! The `id` module (work in progress).
