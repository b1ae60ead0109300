//! The refresh-token cookie: set it, clear it, read it back (the `cookie` crate).

use std::borrow::Cow;

use cookie::{Cookie, SameSite};
use http::{HeaderMap, HeaderValue, header};

use super::refresh::{REFRESH_TOKEN_LEN, RefreshToken, TokenPair};
use crate::error::ConfigError;

/// The default cookie name.
pub const DEFAULT_COOKIE_NAME: &str = "refresh_token";
/// The default cookie path.
pub const DEFAULT_COOKIE_PATH: &str = "/auth";
/// Most `Cookie` header lines read.
const MAX_COOKIE_LINES: usize = 32;
/// Longest `Cookie` header line read (bytes).
const MAX_COOKIE_LINE: usize = 8 * 1024;

/// How the refresh cookie is named, scoped and flagged.
///
/// The cookie is `HttpOnly` (no script reads it), `Secure` (HTTPS only; can be turned off
/// explicitly for plain-http local development), `SameSite=Strict` (never sent on cross-site
/// requests, so no CSRF on `/auth/refresh`) and scoped to `Path=/auth` (never sent to the
/// API routes, where it would only be exposure), with `Max-Age` = the token's remaining life.
///
/// ```
/// use http::{HeaderMap, header};
/// use tower_shield::tokens::RefreshCookie;
///
/// let cookie = RefreshCookie::new();
/// let token = format!("rt_{}", "A".repeat(64));
/// let set = cookie.set_cookie(&token, 604_800);
/// assert_eq!(
///     set.to_str().unwrap(),
///     format!("refresh_token={token}; HttpOnly; SameSite=Strict; Secure; Path=/auth; Max-Age=604800")
/// );
///
/// let mut headers = HeaderMap::new();
/// headers.append(header::COOKIE, "theme=dark".parse().unwrap());
/// headers.append(header::COOKIE, format!("refresh_token={token}").parse().unwrap());
/// assert_eq!(cookie.read(&headers).unwrap().as_str(), token);
/// // Two cookies of the name: which one is meant cannot be known.
/// headers.append(header::COOKIE, "refresh_token=bogus".parse().unwrap());
/// assert!(cookie.read(&headers).is_none());
/// assert!(cookie.clear_cookie().to_str().unwrap().contains("Max-Age=0"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshCookie {
    name: Cow<'static, str>,
    path: Cow<'static, str>,
    secure: bool,
}

impl Default for RefreshCookie {
    fn default() -> Self {
        Self::new()
    }
}

impl RefreshCookie {
    /// `refresh_token`, `Path=/auth`, `Secure`.
    pub const fn new() -> Self {
        Self {
            name: Cow::Borrowed(DEFAULT_COOKIE_NAME),
            path: Cow::Borrowed(DEFAULT_COOKIE_PATH),
            secure: true,
        }
    }

    /// Another cookie name: 1 to 64 of `[A-Za-z0-9._-]`.
    pub fn with_name(mut self, name: impl Into<String>) -> Result<Self, ConfigError> {
        let name = name.into();
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return Err(ConfigError::invalid(
                "cookie name",
                "1 to 64 of [A-Za-z0-9._-]",
            ));
        }
        self.name = Cow::Owned(name);
        Ok(self)
    }

    /// Another path: starts with `/`, at most 256 printable ASCII characters without `;`.
    pub fn with_path(mut self, path: impl Into<String>) -> Result<Self, ConfigError> {
        let path = path.into();
        if !path.starts_with('/')
            || path.len() > 256
            || !path.bytes().all(|b| b.is_ascii_graphic() && b != b';')
        {
            return Err(ConfigError::invalid(
                "cookie path",
                "must start with `/`: printable ASCII without `;`, at most 256 bytes",
            ));
        }
        self.path = Cow::Owned(path);
        Ok(self)
    }

    /// Leaves out `Secure`, so browsers send the cookie over plain http. Only for local
    /// development on `http://localhost`; never in production.
    pub fn dangerous_insecure_http(mut self) -> Self {
        self.secure = false;
        self
    }

    /// The cookie name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether `Secure` is set.
    pub fn is_secure(&self) -> bool {
        self.secure
    }

    fn base<'c>(&'c self, value: &'c str) -> cookie::CookieBuilder<'c> {
        Cookie::build((self.name.as_ref(), value))
            .http_only(true)
            .secure(self.secure)
            .same_site(SameSite::Strict)
            .path(self.path.as_ref())
    }

    /// The `Set-Cookie` value carrying `token` for `max_age_secs` seconds.
    pub fn set_cookie(&self, token: &str, max_age_secs: u64) -> HeaderValue {
        let max_age = i64::try_from(max_age_secs).unwrap_or(i64::MAX);
        let cookie = self
            .base(token)
            .max_age(cookie::time::Duration::seconds(max_age))
            .build();
        // A token that is not a header value (never one of ours) gives the clearing cookie.
        HeaderValue::from_str(&cookie.to_string()).unwrap_or_else(|_| self.clear_cookie())
    }

    /// The `Set-Cookie` value carrying the refresh token of a sign-in or refresh, for its
    /// remaining lifetime.
    pub fn set_for(&self, pair: &TokenPair) -> HeaderValue {
        self.set_cookie(pair.refresh_token.as_str(), pair.refresh_expires_in)
    }

    /// The `Set-Cookie` value that deletes the cookie (empty value, `Max-Age=0`, an
    /// `Expires` in the past), with the same name, path and flags.
    pub fn clear_cookie(&self) -> HeaderValue {
        let mut cookie = self.base("").build();
        cookie.make_removal();
        HeaderValue::from_str(&cookie.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("refresh_token=; Max-Age=0"))
    }

    /// The refresh token from a request's `Cookie` headers: the value of the one cookie of
    /// this name, when it is a well-formed refresh token. Malformed pairs of other cookies
    /// are ignored.
    ///
    /// Anything that makes *which* cookie is meant uncertain gives `None`:
    ///
    /// - two or more cookies of this name, whatever their values. A sibling subdomain can set
    ///   a cookie of the same name for the parent domain ("cookie tossing"), and browsers
    ///   send both; taking either one could refresh the victim into the attacker's session;
    /// - more than 32 `Cookie` lines, a line over 8 KiB, or a line that is not UTF-8 but
    ///   holds the name: a second cookie could hide where it is not read (a tossed cookie
    ///   with a longer `Path` is sent first, and over HTTP/2 each cookie may be its own line).
    ///
    /// A name with the `__Secure-` prefix (see [`with_name`](Self::with_name)) also stops a
    /// sibling subdomain served over plain HTTP from tossing one in.
    pub fn read(&self, headers: &HeaderMap) -> Option<RefreshToken> {
        let mut found = None;
        for (n, line) in headers.get_all(header::COOKIE).iter().enumerate() {
            if n >= MAX_COOKIE_LINES || line.len() > MAX_COOKIE_LINE {
                return None;
            }
            let Ok(text) = line.to_str() else {
                if line
                    .as_bytes()
                    .windows(self.name.len())
                    .any(|w| w == self.name.as_bytes())
                {
                    return None;
                }
                continue;
            };
            for cookie in Cookie::split_parse(text).filter_map(Result::ok) {
                if cookie.name() == self.name && found.replace(cookie).is_some() {
                    return None;
                }
            }
        }
        let value = found?.value().to_owned();
        if value.len() != REFRESH_TOKEN_LEN {
            return None;
        }
        RefreshToken::from_presented(&value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> String {
        format!("rt_{}", "b".repeat(64))
    }

    #[test]
    fn cookie_flags() {
        let c = RefreshCookie::new().dangerous_insecure_http();
        let v = c.set_cookie(&token(), 10);
        let s = v.to_str().unwrap();
        assert!(!s.contains("Secure"));
        assert!(
            s.contains("HttpOnly") && s.contains("SameSite=Strict") && s.contains("Max-Age=10")
        );
        let clear = RefreshCookie::new().clear_cookie();
        let clear = clear.to_str().unwrap();
        assert!(clear.starts_with("refresh_token=;"), "{clear}");
        assert!(clear.contains("Path=/auth") && clear.contains("Secure"));
        assert!(clear.contains("Expires="));
    }

    #[test]
    fn bad_names_and_paths() {
        assert!(RefreshCookie::new().with_name("").is_err());
        assert!(RefreshCookie::new().with_name("a b").is_err());
        assert!(RefreshCookie::new().with_name("a;b").is_err());
        assert!(RefreshCookie::new().with_path("auth").is_err());
        assert!(RefreshCookie::new().with_path("/a;b").is_err());
        let c = RefreshCookie::new()
            .with_name("rt")
            .unwrap()
            .with_path("/")
            .unwrap();
        assert!(
            c.set_cookie(&token(), 1)
                .to_str()
                .unwrap()
                .starts_with("rt=")
        );
    }

    #[test]
    fn hostile_cookie_headers() {
        let c = RefreshCookie::new();
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_bytes(b"refresh_token=\xff\xfe").unwrap(),
        );
        h.append(
            header::COOKIE,
            HeaderValue::from_static(";;;==;refresh_token"),
        );
        let long = format!("x={}; refresh_token={}", "a".repeat(100_000), token());
        h.append(header::COOKIE, HeaderValue::from_str(&long).unwrap());
        assert!(
            c.read(&h).is_none(),
            "a non-UTF-8 or oversized line holding the name: refused"
        );
        for _ in 0..40 {
            h.append(header::COOKIE, HeaderValue::from_static("a=b"));
        }
        h.append(
            header::COOKIE,
            HeaderValue::from_str(&format!("refresh_token={}", token())).unwrap(),
        );
        assert!(c.read(&h).is_none(), "more than 32 lines: refused");
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_str(&format!("a=1; refresh_token={}", token())).unwrap(),
        );
        assert_eq!(c.read(&h).unwrap().as_str(), token());
    }

    #[test]
    fn two_cookies_of_the_name_are_refused() {
        let c = RefreshCookie::new();
        let other = format!("rt_{}", "c".repeat(64));
        let cases = [
            vec![format!("refresh_token={}; refresh_token={other}", token())],
            vec![
                format!("refresh_token={}", token()),
                format!("refresh_token={other}"),
            ],
            vec![format!(
                "refresh_token={}; refresh_token={}",
                token(),
                token()
            )],
            vec![format!("refresh_token={}; refresh_token=junk", token())],
            vec![format!("refresh_token=junk; refresh_token={}", token())],
        ];
        for lines in cases {
            let mut h = HeaderMap::new();
            for line in &lines {
                h.append(header::COOKIE, HeaderValue::from_str(line).unwrap());
            }
            assert!(c.read(&h).is_none(), "{lines:?}");
        }
        // A second cookie hidden past the lines that are read, or in an oversized line.
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_str(&format!("refresh_token={}", token())).unwrap(),
        );
        for n in 0..31 {
            h.append(
                header::COOKIE,
                HeaderValue::from_str(&format!("j{n}=1")).unwrap(),
            );
        }
        assert_eq!(c.read(&h).unwrap().as_str(), token(), "32 lines are read");
        h.append(
            header::COOKIE,
            HeaderValue::from_str(&format!("refresh_token={other}")).unwrap(),
        );
        assert!(
            c.read(&h).is_none(),
            "a 33rd line could hide a second cookie"
        );
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_str(&format!("refresh_token={}", token())).unwrap(),
        );
        h.append(
            header::COOKIE,
            HeaderValue::from_str(&format!("x={}; refresh_token={other}", "a".repeat(9000)))
                .unwrap(),
        );
        assert!(c.read(&h).is_none());
        // A non-UTF-8 line without the name is ignored.
        h.remove(header::COOKIE);
        h.append(header::COOKIE, HeaderValue::from_bytes(b"x=\xff").unwrap());
        h.append(
            header::COOKIE,
            HeaderValue::from_str(&format!("refresh_token={}", token())).unwrap(),
        );
        assert_eq!(c.read(&h).unwrap().as_str(), token());
        // Another cookie beside one refresh token is fine.
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_str(&format!("refresh_token_x=1; refresh_token={}", token()))
                .unwrap(),
        );
        assert_eq!(c.read(&h).unwrap().as_str(), token());
    }
}
