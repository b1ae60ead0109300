//! JWT bearer authentication (work in progress: keys and revocation first).

#[allow(dead_code)] // Used by the layer (next commit).
mod b64;
#[allow(dead_code)]
mod keys;
#[allow(dead_code)]
mod revocation;

pub use jsonwebtoken::Algorithm;
pub use keys::{Key, KeyRing, KeySet, KeySource, SigningKey, algorithm_name};
pub use revocation::{MemoryRevocationStore, RevocationStore, StoreFuture, TokenRef};
