//! The signing key: `JWT_PRIVATE_KEY_FILE` (PEM) for `JWT_ALGORITHM`, or a fresh key made at
//! start (with a warning: tokens then die with the process, and two processes cannot verify
//! each other's tokens).

use tower_shield::ConfigError;
use tower_shield::jwt::{Algorithm, Key, KeyRing, KeySet};

use crate::config::{Config, JwtAlgorithm};

const VAR: &str = "JWT_PRIVATE_KEY_FILE";

fn env_error(reason: impl Into<std::borrow::Cow<'static, str>>) -> ConfigError {
    ConfigError::Env {
        var: VAR.to_owned(),
        reason: reason.into(),
    }
}

/// The key ring of the demo (one signing key), and a warning when the key was generated.
pub(crate) fn load(config: &Config) -> Result<(KeyRing, Option<String>), ConfigError> {
    let alg = match config.jwt_algorithm {
        JwtAlgorithm::Rs256 => Algorithm::RS256,
        JwtAlgorithm::Es256 => Algorithm::ES256,
        JwtAlgorithm::EdDsa => Algorithm::EdDSA,
    };
    let mut warning = None;
    let key = match &config.jwt_private_key_file {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|error| env_error(format!("cannot read the file: {}", error.kind())))?;
            // The library's reason names what is wrong (not a key of this algorithm, an RSA
            // key under 2048 bits, …) without echoing key material.
            let key = Key::from_pem(alg, &pem).map_err(|error| {
                env_error(format!(
                    "not a usable private key for JWT_ALGORITHM ({error})"
                ))
            })?;
            if !key.can_sign() {
                return Err(env_error("a public key cannot sign: give the private key"));
            }
            key
        }
        None => {
            warning = Some(format!(
                "JWT_PRIVATE_KEY_FILE is not set: signing with a fresh {alg:?} key made at start \
                 (tokens will not survive a restart)"
            ));
            Key::generate(alg)?
        }
    };
    Ok((KeyRing::new(KeySet::new().with(key)?), warning))
}
