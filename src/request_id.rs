//! The `request_id` module (work in progress).
