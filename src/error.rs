//! The error every builder returns when a configuration is refused.

use std::borrow::Cow;

/// A configuration that tower-shield refuses to build.
///
/// Every builder validates what it is given in `build()` and returns this error, naming the
/// setting at fault, instead of panicking later or running in an unsafe state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A setting has a value that cannot be used.
    #[error("invalid `{setting}`: {reason}")]
    Invalid {
        /// The builder method or configuration field at fault.
        setting: &'static str,
        /// What is wrong with it.
        reason: Cow<'static, str>,
    },
    /// A combination of settings that would be unsafe in production.
    #[error("dangerous configuration refused (`{setting}`): {reason}")]
    Dangerous {
        /// The builder method or configuration field at fault.
        setting: &'static str,
        /// Why the combination is refused.
        reason: Cow<'static, str>,
    },
    /// A setting that must be given was not.
    #[error("`{setting}` is required")]
    Missing {
        /// The builder method or configuration field that was not set.
        setting: &'static str,
    },
    /// An environment variable could not be used.
    #[error("environment variable `{var}`: {reason}")]
    Env {
        /// The variable's name.
        var: String,
        /// What is wrong with its value (never the value itself when it may be secret).
        reason: Cow<'static, str>,
    },
    /// A key could not be loaded or does not fit its algorithm.
    #[error("key `{key}`: {reason}")]
    Key {
        /// Which key (its `kid`, file or position); never key material.
        key: String,
        /// What is wrong with it.
        reason: Cow<'static, str>,
    },
}

impl ConfigError {
    /// Shorthand for [`ConfigError::Invalid`].
    pub fn invalid(setting: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        Self::Invalid {
            setting,
            reason: reason.into(),
        }
    }

    /// Shorthand for [`ConfigError::Dangerous`].
    pub fn dangerous(setting: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        Self::Dangerous {
            setting,
            reason: reason.into(),
        }
    }
}

/// A store (memory or Redis) could not answer.
///
/// Layers turn it into the failure policy the user chose (fail open, fail closed with 503,
/// or fall back to memory); it never reaches a client as text.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store did not answer within its per-call timeout.
    #[error("the store did not answer in time")]
    Timeout,
    /// The store cannot be reached.
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    /// The store answered something that cannot be used.
    #[error("the store answered an unexpected reply: {0}")]
    Protocol(String),
}
