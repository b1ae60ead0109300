//! The demo API (work in progress).

fn main() {}
