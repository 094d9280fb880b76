//! Web sessions: a random secret in an `HttpOnly`, `SameSite=Strict` cookie, whose sha256 the
//! database maps to the sha256 of the token the person signed in with. Every request checks
//! the token again (revoked, expired, disabled user), so a session never outlives its token.
//!
//! Forms carry a CSRF token: for a session, a hash of the session's secret under a fixed
//! domain-separation prefix (so it proves knowledge of the cookie without being the cookie);
//! for the sign-in form, which has no session yet, a random value that must match a short-lived
//! cookie (double submit). Every `POST` must also come from Depot's own origin when the browser
//! says where it comes from (`Origin`, else `Referer`).

use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use depot_events::Timestamp;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use crate::auth::{Principal, authenticate_hash};
use crate::{ApiError, AppState};

/// The session cookie.
pub(crate) const SESSION_COOKIE: &str = "depot_session";
/// The sign-in form's CSRF cookie.
pub(crate) const LOGIN_COOKIE: &str = "depot_login";
/// How long a session lasts (the token's own expiry ends it sooner).
pub(crate) const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);
/// Sessions one token may hold at once; signing in again ends the oldest.
pub(crate) const MAX_SESSIONS_PER_TOKEN: u32 = 16;
/// The longest cookie value read (a secret is 43 characters).
const MAX_COOKIE_VALUE: usize = 64;

/// A fresh random secret for a cookie: 32 bytes, base64url.
pub(crate) fn new_secret() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

/// The database key of a session secret.
pub(crate) fn session_key(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The CSRF token of the forms of a session.
pub(crate) fn csrf_of(secret: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"depot web csrf\0");
    hasher.update(secret.as_bytes());
    hex::encode(hasher.finalize())
}

/// Compares two strings in time independent of where they differ.
pub(crate) fn same(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The value of cookie `name`, if the request has one of a sane size.
pub(crate) fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
        .filter(|value| !value.is_empty() && value.len() <= MAX_COOKIE_VALUE)
}

/// A `Set-Cookie` value: `HttpOnly`, `SameSite=Strict`, `Path=/`, `Secure` when Depot is
/// reached over HTTPS; `max_age` zero deletes the cookie.
pub(crate) fn set_cookie(
    state: &AppState,
    name: &str,
    value: &str,
    max_age: Duration,
) -> HeaderValue {
    let secure = if state.config().public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        max_age.as_secs()
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("depot_invalid=; Max-Age=0"))
}

/// The person looking at a page.
#[derive(Debug, Clone)]
pub(crate) struct Viewer {
    /// Their token's grant and identity.
    pub(crate) principal: Principal,
    /// The CSRF token their forms carry.
    pub(crate) csrf: String,
    /// The session's database key.
    pub(crate) key: String,
}

/// The signed-in viewer, if the request carries a live session whose token is still valid.
pub(crate) async fn viewer(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Option<Viewer>, ApiError> {
    let Some(secret) = cookie(headers, SESSION_COOKIE) else {
        return Ok(None);
    };
    let key = session_key(secret);
    let Some(token_hash) = state.store().session_token(&key).await? else {
        return Ok(None);
    };
    match authenticate_hash(state, token_hash).await {
        Ok(principal) => Ok(Some(Viewer {
            principal,
            csrf: csrf_of(secret),
            key,
        })),
        // The token was revoked or expired, or its user disabled: the session is over.
        Err(e) if e.status().as_u16() == 401 => Ok(None),
        Err(e) => Err(e),
    }
}

/// Opens a session for the token with hash `token_hash`; returns the cookie's secret.
pub(crate) async fn open(
    state: &AppState,
    token_hash: &str,
    token_expiry: Option<Timestamp>,
) -> Result<String, ApiError> {
    let secret = new_secret();
    let lifetime = i64::try_from(SESSION_LIFETIME.as_millis()).unwrap_or(i64::MAX);
    let mut expires =
        Timestamp::from_unix_millis(Timestamp::now().unix_millis().saturating_add(lifetime));
    if let Some(token_expiry) = token_expiry {
        expires = expires.min(token_expiry);
    }
    state
        .store()
        .open_session(
            &session_key(&secret),
            token_hash,
            expires,
            MAX_SESSIONS_PER_TOKEN,
        )
        .await?;
    Ok(secret)
}

/// Refuses a form post from another origin: `Origin` (or, without it, `Referer`) must be
/// Depot's public URL when the browser sends one.
pub(crate) fn check_origin(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let own = origin_of(&state.config().public_url);
    let claimed = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER))
        .map(|value| value.to_str().map(origin_of).unwrap_or_default());
    match claimed {
        Some(claimed) if !same(&claimed, &own) => Err(ApiError::forbidden(
            "this form was sent from another site; reload the page and try again",
        )),
        _ => Ok(()),
    }
}

/// `scheme://host[:port]` of a URL, lowercase.
fn origin_of(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return String::new();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    format!("{}://{}", scheme, authority).to_ascii_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn origins_compare_scheme_host_and_port() {
        assert_eq!(origin_of("http://127.0.0.1:8000"), "http://127.0.0.1:8000");
        assert_eq!(
            origin_of("HTTP://Example.com/crates/x?y#z"),
            "http://example.com"
        );
        assert_ne!(
            origin_of("http://example.com:8080/"),
            origin_of("http://example.com")
        );
        assert_eq!(origin_of("null"), "");
    }

    #[test]
    fn csrf_tokens_differ_per_session_and_from_the_secret() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_ne!(csrf_of(&a), csrf_of(&b));
        assert_ne!(csrf_of(&a), session_key(&a));
        assert!(same(&csrf_of(&a), &csrf_of(&a)));
    }

    #[test]
    fn cookies_are_found_by_exact_name() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            HeaderValue::from_static("xdepot_session=evil; depot_session=good; other=1"),
        );
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("good"));
        assert_eq!(cookie(&headers, "missing"), None);
    }

    proptest! {
        /// Whatever a browser sends as cookies, reading one never panics and never returns
        /// more than the bound.
        #[test]
        fn any_cookie_header_is_read_safely(raw in ".{0,300}") {
            let mut headers = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_str(&raw) {
                headers.insert(header::COOKIE, value);
            }
            if let Some(value) = cookie(&headers, SESSION_COOKIE) {
                prop_assert!(value.len() <= MAX_COOKIE_VALUE);
            }
        }

        #[test]
        fn same_is_equality(a in "[a-f0-9]{0,8}", b in "[a-f0-9]{0,8}") {
            prop_assert_eq!(same(&a, &b), a == b);
        }
    }
}
