//! OIDC ID tokens for trusted publishing: verification and trust policies.
//!
//! A CI system (GitHub Actions, GitLab CI, …) hands its jobs an ID token: a JWT signed by the CI
//! system's OpenID Connect issuer, whose claims say which repository, workflow and ref the job
//! runs for. Depot exchanges such a token for a short-lived API token when the token satisfies a
//! [`TrustPolicy`] that a crate owner configured.
//!
//! Everything here is pure: no network, no environment, no clock. The caller fetches the issuer's
//! discovery document and JWKS (see [`jwks_uri_from_discovery`] and [`parse_jwks`]), chooses the
//! issuer with [`peek_issuer`], and passes the current time to [`verify`]:
//!
//! 1. [`peek_issuer`] reads the *unverified* `iss`, only to find the policy and the JWKS to use.
//! 2. [`verify`] checks the signature against the issuer's JWKS and the registered time claims,
//!    and returns a [`VerifiedToken`]. A [`OidcError::UnknownKey`] means the issuer may have
//!    rotated its keys: refetch its JWKS (at most once, and not too often) and retry.
//! 3. [`TrustPolicy::check`] decides whether the verified token is one the policy trusts,
//!    including its audience.
//!
//! Every error displays as a sentence that can be shown to the CI user as is.

use std::collections::BTreeMap;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{
    AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm, KeyOperations, PublicKeyUse,
};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The largest compact JWT accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// The largest discovery document or JWKS accepted, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
/// The most keys a JWKS may hold.
pub const MAX_JWKS_KEYS: usize = 32;
/// The most claims a [`TrustPolicy`] may require.
pub const MAX_POLICY_CLAIMS: usize = 16;
/// The longest claim name or pattern in a [`TrustPolicy`], and the longest issuer URL, in bytes.
pub const MAX_POLICY_FIELD_BYTES: usize = 256;
/// The longest `jti` accepted, in bytes.
pub const MAX_JTI_BYTES: usize = 256;
/// The longest lifetime (`exp - iat`) of an accepted ID token, in seconds: six hours.
pub const MAX_TOKEN_LIFETIME_SECS: i64 = 6 * 60 * 60;
/// The longest `jwks_uri` accepted, in bytes.
const MAX_URI_BYTES: usize = 2048;
/// Values quoted in error messages are cut to this many characters.
const QUOTE_CHARS: usize = 100;
/// The smallest and largest RSA modulus accepted, in bits.
const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

/// Why an ID token, a discovery document or a JWKS was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OidcError {
    /// The token is longer than [`MAX_TOKEN_BYTES`].
    #[error("the ID token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLarge,
    /// The token is not a compact JWT (three base64url segments, JSON header and payload).
    #[error("the ID token is not a well-formed JWT: {0}")]
    Malformed(&'static str),
    /// The header says `alg: none`.
    #[error("unsigned ID tokens (`alg: none`) are refused")]
    Unsigned,
    /// The header names an HMAC algorithm (`HS256`, `HS384`, `HS512`).
    #[error("ID tokens signed with `{0}` are refused; issuers must sign with an asymmetric key")]
    SymmetricAlgorithm(String),
    /// The header names an algorithm that is not supported.
    #[error("the ID token's signing algorithm `{0}` is not supported")]
    UnsupportedAlgorithm(String),
    /// The header has a `crit` parameter; no critical extensions are understood.
    #[error("the ID token's header lists critical extensions (`crit`), which are not supported")]
    CriticalHeader,
    /// The header has no `kid`, so the signing key cannot be chosen.
    #[error("the ID token's header has no `kid`, so its signing key cannot be found")]
    MissingKeyId,
    /// No key in the issuer's JWKS has the token's `kid`. The issuer may have rotated its keys:
    /// the caller may refresh the JWKS once and retry.
    #[error("the ID token's signing key `{0}` is not in the issuer's JWKS")]
    UnknownKey(String),
    /// The key with the token's `kid` cannot verify the token's algorithm (wrong key type or
    /// curve, a different `alg`, or a `use`/`key_ops` that excludes signatures).
    #[error("the issuer's key `{kid}` cannot verify `{alg}` signatures")]
    KeyMismatch {
        /// The key's id.
        kid: String,
        /// The token's algorithm.
        alg: String,
    },
    /// The key with the token's `kid` is unusable (malformed, or an RSA key outside 2048–8192
    /// bits).
    #[error("the issuer's key `{0}` is malformed or too weak to be used")]
    UnusableKey(String),
    /// The signature does not verify.
    #[error("the ID token's signature is invalid")]
    BadSignature,
    /// The token's `iss` is not the expected issuer.
    #[error("the ID token was issued by `{found}`, not `{expected}`")]
    WrongIssuer {
        /// The issuer the token was verified for.
        expected: String,
        /// The token's `iss`.
        found: String,
    },
    /// A required claim is missing (or empty).
    #[error("the ID token has no `{0}` claim")]
    MissingClaim(&'static str),
    /// A registered claim has the wrong type or is out of bounds.
    #[error("the ID token's `{0}` claim is malformed")]
    InvalidClaim(&'static str),
    /// `exp` is in the past.
    #[error("the ID token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("the ID token is not valid yet (its `nbf` is in the future)")]
    NotYetValid,
    /// `iat` is in the future.
    #[error("the ID token was issued in the future (its `iat` is ahead of the clock)")]
    IssuedInFuture,
    /// `exp - iat` exceeds [`MAX_TOKEN_LIFETIME_SECS`].
    #[error(
        "the ID token is valid for {0} seconds; at most {MAX_TOKEN_LIFETIME_SECS} seconds are accepted"
    )]
    LifetimeTooLong(i64),
    /// The issuer's OpenID configuration cannot be used.
    #[error("the issuer's OpenID configuration is unusable: {0}")]
    Discovery(String),
    /// The issuer's JWKS cannot be used.
    #[error("the issuer's JWKS is unusable: {0}")]
    Jwks(String),
}

/// An ID token whose signature, issuer and validity period have been verified.
///
/// Its audience has *not* been checked: [`TrustPolicy::check`] does that.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    /// The `iss` claim, equal to the issuer the token was verified for.
    pub issuer: String,
    /// The `sub` claim, if present.
    pub subject: Option<String>,
    /// The `aud` claim as a list (a single string becomes one element; absent is empty).
    pub audience: Vec<String>,
    /// The `jti` claim: unique per token, to refuse replays.
    pub jti: String,
    /// The `exp` claim, in seconds since the Unix epoch.
    pub expires_at: i64,
    /// All the token's claims, registered ones included.
    pub claims: Map<String, Value>,
}

/// Which ID tokens a crate trusts: tokens from `issuer`, for `audience`, whose claims match.
///
/// Each value of `claims` is a pattern where `*` matches any run of characters (case-sensitive).
/// It is matched against the claim's value rendered as a string: strings as they are, booleans as
/// `true`/`false`, numbers in decimal. Arrays, objects, `null` and missing claims never match.
///
/// ```
/// use depot_auth::oidc::TrustPolicy;
///
/// let policy = TrustPolicy {
///     issuer: "https://token.actions.githubusercontent.com".into(),
///     audience: "depot.example.com".into(),
///     claims: [
///         ("repository".to_owned(), "acme/tools".to_owned()),
///         (
///             "workflow_ref".to_owned(),
///             "acme/tools/.github/workflows/release.yml@refs/tags/*".to_owned(),
///         ),
///     ]
///     .into(),
/// };
/// assert!(policy.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustPolicy {
    /// The issuer's URL, exactly as in its tokens' `iss`.
    pub issuer: String,
    /// The audience the token must be issued for (one of its `aud` values).
    pub audience: String,
    /// Required claims: claim name to pattern.
    pub claims: BTreeMap<String, String>,
}

/// Why a [`TrustPolicy`] is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The issuer is not an absolute `https` URL (`http` only on a loopback host).
    #[error(
        "the issuer `{0}` must be an absolute https URL without query or fragment (http only for 127.0.0.1, localhost or [::1])"
    )]
    Issuer(String),
    /// The audience is empty.
    #[error("the audience must not be empty")]
    EmptyAudience,
    /// The audience is longer than [`MAX_POLICY_FIELD_BYTES`].
    #[error("the audience is longer than {MAX_POLICY_FIELD_BYTES} bytes")]
    AudienceTooLong,
    /// More than [`MAX_POLICY_CLAIMS`] claims.
    #[error("a trust policy may require at most {MAX_POLICY_CLAIMS} claims, not {0}")]
    TooManyClaims(usize),
    /// A claim name is empty.
    #[error("a required claim's name must not be empty")]
    EmptyClaimName,
    /// A claim name or pattern is longer than [`MAX_POLICY_FIELD_BYTES`].
    #[error(
        "the required claim `{0}` has a name or pattern longer than {MAX_POLICY_FIELD_BYTES} bytes"
    )]
    ClaimTooLong(String),
    /// No claim is required, or every pattern is only `*`, so any token of the issuer would do.
    #[error(
        "a trust policy must require at least one claim with a pattern other than `*` (for example the repository or project path)"
    )]
    Unconstrained,
}

/// Why a verified token does not satisfy a [`TrustPolicy`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyMismatch {
    /// The token comes from another issuer.
    #[error("the ID token was issued by `{found}`, but the trust policy requires `{expected}`")]
    Issuer {
        /// The policy's issuer.
        expected: String,
        /// The token's issuer (cut to 100 characters).
        found: String,
    },
    /// The token is not issued for the policy's audience.
    #[error(
        "the ID token's audience is {}, but the trust policy requires `{expected}`",
        quote_list(found)
    )]
    Audience {
        /// The policy's audience.
        expected: String,
        /// The token's audiences (each cut to 100 characters).
        found: Vec<String>,
    },
    /// A required claim is missing, not a string/number/boolean, or does not match.
    #[error("{}", claim_mismatch(claim, expected, found.as_deref()))]
    Claim {
        /// The claim's name.
        claim: String,
        /// The policy's pattern.
        expected: String,
        /// The token's value as matched (JSON for arrays and objects), cut to 100 characters;
        /// `None` when the claim is missing.
        found: Option<String>,
    },
}

fn quote_list(values: &[String]) -> String {
    if values.is_empty() {
        return "empty".to_owned();
    }
    values
        .iter()
        .map(|v| format!("`{v}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn claim_mismatch(claim: &str, expected: &str, found: Option<&str>) -> String {
    match found {
        Some(found) => format!(
            "the ID token's `{claim}` claim is `{found}`, but the trust policy requires `{expected}`"
        ),
        None => format!(
            "the ID token has no `{claim}` claim, but the trust policy requires `{expected}`"
        ),
    }
}

impl TrustPolicy {
    /// Checks the policy itself: an https issuer (http only on loopback), a non-empty audience,
    /// at most [`MAX_POLICY_CLAIMS`] claims with names and patterns of at most
    /// [`MAX_POLICY_FIELD_BYTES`] bytes, at least one of them constraining (not only `*`).
    pub fn validate(&self) -> Result<(), PolicyError> {
        if !is_acceptable_issuer(&self.issuer) {
            return Err(PolicyError::Issuer(quote(&self.issuer)));
        }
        if self.audience.is_empty() {
            return Err(PolicyError::EmptyAudience);
        }
        if self.audience.len() > MAX_POLICY_FIELD_BYTES {
            return Err(PolicyError::AudienceTooLong);
        }
        if self.claims.len() > MAX_POLICY_CLAIMS {
            return Err(PolicyError::TooManyClaims(self.claims.len()));
        }
        for (name, pattern) in &self.claims {
            if name.is_empty() {
                return Err(PolicyError::EmptyClaimName);
            }
            if name.len() > MAX_POLICY_FIELD_BYTES || pattern.len() > MAX_POLICY_FIELD_BYTES {
                return Err(PolicyError::ClaimTooLong(quote(name)));
            }
        }
        if !self.claims.values().any(|p| p.bytes().any(|b| b != b'*')) {
            return Err(PolicyError::Unconstrained);
        }
        Ok(())
    }

    /// Whether `token` satisfies the policy: same issuer, the policy's audience among the
    /// token's, and every required claim matching. The error names the first failure.
    pub fn check(&self, token: &VerifiedToken) -> Result<(), PolicyMismatch> {
        if token.issuer != self.issuer {
            return Err(PolicyMismatch::Issuer {
                expected: self.issuer.clone(),
                found: quote(&token.issuer),
            });
        }
        if !token.audience.contains(&self.audience) {
            return Err(PolicyMismatch::Audience {
                expected: self.audience.clone(),
                found: token.audience.iter().take(8).map(|a| quote(a)).collect(),
            });
        }
        for (claim, pattern) in &self.claims {
            let value = token.claims.get(claim);
            let matched = value.and_then(render_scalar).is_some_and(|rendered| {
                crate::wildcard_matches(pattern.as_bytes(), rendered.as_bytes())
            });
            if !matched {
                return Err(PolicyMismatch::Claim {
                    claim: claim.clone(),
                    expected: pattern.clone(),
                    found: value.map(|v| quote(&render_scalar(v).unwrap_or_else(|| v.to_string()))),
                });
            }
        }
        Ok(())
    }
}

/// A claim value as policies see it: strings as they are, booleans and numbers as text.
fn render_scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        Value::Null | Value::Array(_) | Value::Object(_) => None,
    }
}

/// Cuts `value` to [`QUOTE_CHARS`] characters (marking the cut with `…`) and escapes control
/// characters, for error messages.
fn quote(value: &str) -> String {
    let mut out: String = value
        .chars()
        .take(QUOTE_CHARS)
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect();
    if value.chars().nth(QUOTE_CHARS).is_some() {
        out.push('…');
    }
    out
}

/// Whether `issuer` is an acceptable issuer identifier: an absolute `https` URL (`http` only on
/// 127.0.0.1, localhost or [::1]) with a host, no user info, query or fragment, of at most
/// [`MAX_POLICY_FIELD_BYTES`] bytes. Only such issuers' documents should be fetched.
pub fn is_acceptable_issuer(issuer: &str) -> bool {
    issuer.len() <= MAX_POLICY_FIELD_BYTES && check_url(issuer, false).is_ok()
}

/// Checks that `url` is an absolute `https` URL, or `http` on a loopback host, with a host and
/// no user info or fragment; a query is refused unless `allow_query`.
fn check_url(url: &str, allow_query: bool) -> Result<(), ()> {
    if url.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(());
    }
    let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        (false, rest)
    } else {
        return Err(());
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if tail.contains('#') || (!allow_query && tail.contains('?')) {
        return Err(());
    }
    if authority.is_empty() || authority.contains('@') {
        return Err(());
    }
    let (host, port) = if authority.starts_with('[') {
        let close = authority.find(']').ok_or(())?;
        authority.split_at(close + 1)
    } else {
        authority.split_at(authority.find(':').unwrap_or(authority.len()))
    };
    if host.is_empty() || host.starts_with('.') {
        return Err(());
    }
    if !port.is_empty() {
        let digits = port.strip_prefix(':').ok_or(())?;
        if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(());
        }
    }
    if https
        || matches!(
            host.to_ascii_lowercase().as_str(),
            "127.0.0.1" | "localhost" | "[::1]"
        )
    {
        Ok(())
    } else {
        Err(())
    }
}

/// The three segments of a compact JWT, after the size check.
fn segments(token: &str) -> Result<[&str; 3], OidcError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(OidcError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(OidcError::Malformed(
            "it must have three dot-separated segments",
        ));
    };
    let base64url = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if header.is_empty() || payload.is_empty() || !base64url(header) || !base64url(payload) {
        return Err(OidcError::Malformed(
            "its header and payload must be base64url",
        ));
    }
    if !base64url(signature) {
        return Err(OidcError::Malformed("its signature must be base64url"));
    }
    Ok([header, payload, signature])
}

/// Decodes a base64url segment holding a JSON object.
fn json_segment(segment: &str, what: &'static str) -> Result<Map<String, Value>, OidcError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| OidcError::Malformed(what))?;
    serde_json::from_slice(&bytes).map_err(|_| OidcError::Malformed(what))
}

/// The *unverified* `iss` of a compact JWT, to choose which issuer's JWKS to verify it with.
///
/// Nothing about the token is trusted by this: [`verify`] must follow.
pub fn peek_issuer(token: &str) -> Result<String, OidcError> {
    let [_, payload, _] = segments(token)?;
    let claims = json_segment(payload, "its payload is not a base64url JSON object")?;
    match claims.get("iss") {
        Some(Value::String(iss)) if !iss.is_empty() => Ok(iss.clone()),
        Some(_) => Err(OidcError::InvalidClaim("iss")),
        None => Err(OidcError::MissingClaim("iss")),
    }
}

/// Verifies a compact JWT ID token from `issuer` against the issuer's `jwks` at time `now_unix`
/// (seconds since the Unix epoch), allowing `skew_secs` of clock difference.
///
/// Refuses, in this order: oversized or malformed tokens; `alg: none` and HMAC algorithms
/// (checked before any key is looked at, so a token "signed" with the issuer's public key as an
/// HMAC secret never gets near it); critical header extensions; a missing `kid` or one not in
/// `jwks` ([`OidcError::UnknownKey`]); a key unfit for the algorithm; a bad signature; an `iss`
/// other than `issuer`; a missing or past `exp`; a future `nbf`; a missing or future `iat`; a
/// lifetime over [`MAX_TOKEN_LIFETIME_SECS`]; a missing, empty or overlong `jti`.
///
/// The audience is returned, not checked: see [`TrustPolicy::check`].
pub fn verify(
    token: &str,
    jwks: &JwkSet,
    issuer: &str,
    now_unix: i64,
    skew_secs: i64,
) -> Result<VerifiedToken, OidcError> {
    let [header_segment, _, _] = segments(token)?;
    let header = json_segment(header_segment, "its header is not a base64url JSON object")?;

    let alg_name = match header.get("alg") {
        Some(Value::String(alg)) => alg.as_str(),
        _ => return Err(OidcError::Malformed("its header has no `alg`")),
    };
    if alg_name.eq_ignore_ascii_case("none") {
        return Err(OidcError::Unsigned);
    }
    if alg_name
        .get(..2)
        .is_some_and(|p| p.eq_ignore_ascii_case("HS"))
    {
        return Err(OidcError::SymmetricAlgorithm(quote(alg_name)));
    }
    let alg = Algorithm::from_str(alg_name)
        .map_err(|_| OidcError::UnsupportedAlgorithm(quote(alg_name)))?;
    if header.contains_key("crit") {
        return Err(OidcError::CriticalHeader);
    }
    let kid = match header.get("kid") {
        Some(Value::String(kid)) if !kid.is_empty() => kid.as_str(),
        _ => return Err(OidcError::MissingKeyId),
    };
    let jwk = jwks
        .find(kid)
        .ok_or_else(|| OidcError::UnknownKey(quote(kid)))?;
    check_key_fits(jwk, alg, alg_name).map_err(|()| OidcError::KeyMismatch {
        kid: quote(kid),
        alg: alg_name.to_owned(),
    })?;
    let key = decoding_key(jwk).ok_or_else(|| OidcError::UnusableKey(quote(kid)))?;

    let mut validation = Validation::new(alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let claims = match jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation) {
        Ok(data) => data.claims,
        Err(e) => {
            return Err(match e.kind() {
                ErrorKind::InvalidSignature => OidcError::BadSignature,
                ErrorKind::InvalidEcdsaKey
                | ErrorKind::InvalidEddsaKey
                | ErrorKind::InvalidRsaKey(_)
                | ErrorKind::InvalidKeyFormat => OidcError::UnusableKey(quote(kid)),
                ErrorKind::Base64(_) => OidcError::Malformed("a segment is not base64url"),
                ErrorKind::Json(_) | ErrorKind::Utf8(_) => {
                    OidcError::Malformed("its payload is not a JSON object")
                }
                _ => OidcError::BadSignature,
            });
        }
    };

    check_claims(claims, issuer, now_unix, skew_secs.max(0))
}

/// Whether `jwk` may verify `alg` signatures: matching key type (and curve), a matching `alg`
/// if the key names one, and a `use`/`key_ops` that allows signature verification.
fn check_key_fits(jwk: &Jwk, alg: Algorithm, alg_name: &str) -> Result<(), ()> {
    let type_fits = match (&jwk.algorithm, alg) {
        (
            AlgorithmParameters::RSA(_),
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512,
        ) => true,
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES256) => p.curve == EllipticCurve::P256,
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES384) => p.curve == EllipticCurve::P384,
        (AlgorithmParameters::OctetKeyPair(p), Algorithm::EdDSA) => {
            p.curve == EllipticCurve::Ed25519
        }
        _ => false,
    };
    if !type_fits {
        return Err(());
    }
    if let Some(key_alg) = jwk.common.key_algorithm
        && KeyAlgorithm::from_str(alg_name).ok() != Some(key_alg)
    {
        return Err(());
    }
    if let Some(key_use) = &jwk.common.public_key_use
        && *key_use != PublicKeyUse::Signature
    {
        return Err(());
    }
    if let Some(ops) = &jwk.common.key_operations
        && !ops.contains(&KeyOperations::Verify)
    {
        return Err(());
    }
    Ok(())
}

/// The verification key of a JWK already known to fit the algorithm, refusing RSA moduli outside
/// 2048–8192 bits.
fn decoding_key(jwk: &Jwk) -> Option<DecodingKey> {
    if let AlgorithmParameters::RSA(params) = &jwk.algorithm {
        let modulus = URL_SAFE_NO_PAD.decode(&params.n).ok()?;
        let significant = modulus.iter().position(|&b| b != 0).map_or(0, |first| {
            (modulus.len() - first) * 8 - modulus[first].leading_zeros() as usize
        });
        if !RSA_BITS.contains(&significant) {
            return None;
        }
    }
    DecodingKey::from_jwk(jwk).ok()
}

/// A NumericDate claim: an integer, or a finite number (rounded down).
fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<i64>, OidcError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else {
                match n.as_f64() {
                    Some(f) if f.is_finite() && f.abs() < 1e15 => Ok(Some(f.floor() as i64)),
                    _ => Err(OidcError::InvalidClaim(name)),
                }
            }
        }
        Some(_) => Err(OidcError::InvalidClaim(name)),
    }
}

fn check_claims(
    claims: Map<String, Value>,
    issuer: &str,
    now: i64,
    skew: i64,
) -> Result<VerifiedToken, OidcError> {
    match claims.get("iss") {
        Some(Value::String(iss)) if iss == issuer => {}
        Some(Value::String(iss)) => {
            return Err(OidcError::WrongIssuer {
                expected: issuer.to_owned(),
                found: quote(iss),
            });
        }
        Some(_) => return Err(OidcError::InvalidClaim("iss")),
        None => return Err(OidcError::MissingClaim("iss")),
    }

    let exp = numeric_date(&claims, "exp")?.ok_or(OidcError::MissingClaim("exp"))?;
    if exp <= now.saturating_sub(skew) {
        return Err(OidcError::Expired);
    }
    if let Some(nbf) = numeric_date(&claims, "nbf")?
        && nbf > now.saturating_add(skew)
    {
        return Err(OidcError::NotYetValid);
    }
    let iat = numeric_date(&claims, "iat")?.ok_or(OidcError::MissingClaim("iat"))?;
    if iat > now.saturating_add(skew) {
        return Err(OidcError::IssuedInFuture);
    }
    if exp <= iat {
        return Err(OidcError::InvalidClaim("exp"));
    }
    let lifetime = exp.saturating_sub(iat);
    if lifetime > MAX_TOKEN_LIFETIME_SECS {
        return Err(OidcError::LifetimeTooLong(lifetime));
    }

    let jti = match claims.get("jti") {
        Some(Value::String(jti)) if jti.is_empty() => return Err(OidcError::MissingClaim("jti")),
        Some(Value::String(jti)) if jti.len() > MAX_JTI_BYTES => {
            return Err(OidcError::InvalidClaim("jti"));
        }
        Some(Value::String(jti)) => jti.clone(),
        Some(_) => return Err(OidcError::InvalidClaim("jti")),
        None => return Err(OidcError::MissingClaim("jti")),
    };
    let subject = match claims.get("sub") {
        Some(Value::String(sub)) => Some(sub.clone()),
        Some(_) => return Err(OidcError::InvalidClaim("sub")),
        None => None,
    };
    let audience = match claims.get("aud") {
        None => Vec::new(),
        Some(Value::String(aud)) => vec![aud.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or(OidcError::InvalidClaim("aud"))?,
        Some(_) => return Err(OidcError::InvalidClaim("aud")),
    };

    Ok(VerifiedToken {
        issuer: issuer.to_owned(),
        subject,
        audience,
        jti,
        expires_at: exp,
        claims,
    })
}

/// Compares issuers as discovery documents write them: exactly, except for one trailing `/`.
fn same_issuer(a: &str, b: &str) -> bool {
    a.strip_suffix('/').unwrap_or(a) == b.strip_suffix('/').unwrap_or(b)
}

/// The `jwks_uri` of an OpenID Connect discovery document
/// (`{issuer}/.well-known/openid-configuration`) fetched for `issuer`.
///
/// The document must be at most [`MAX_DOCUMENT_BYTES`], name `issuer` (a single trailing `/`
/// aside), and give a `jwks_uri` that is https (http only on a loopback host).
pub fn jwks_uri_from_discovery(document: &[u8], issuer: &str) -> Result<String, OidcError> {
    if document.len() > MAX_DOCUMENT_BYTES {
        return Err(OidcError::Discovery(format!(
            "it is larger than {MAX_DOCUMENT_BYTES} bytes"
        )));
    }
    let doc: Map<String, Value> = serde_json::from_slice(document)
        .map_err(|_| OidcError::Discovery("it is not a JSON object".to_owned()))?;
    match doc.get("issuer") {
        Some(Value::String(found)) if same_issuer(found, issuer) => {}
        Some(Value::String(found)) => {
            return Err(OidcError::Discovery(format!(
                "it names the issuer `{}`, not `{}`",
                quote(found),
                quote(issuer)
            )));
        }
        _ => return Err(OidcError::Discovery("it has no `issuer`".to_owned())),
    }
    match doc.get("jwks_uri") {
        Some(Value::String(uri)) if uri.len() <= MAX_URI_BYTES && check_url(uri, true).is_ok() => {
            Ok(uri.clone())
        }
        Some(Value::String(uri)) => Err(OidcError::Discovery(format!(
            "its `jwks_uri` `{}` is not an https URL",
            quote(uri)
        ))),
        _ => Err(OidcError::Discovery("it has no `jwks_uri`".to_owned())),
    }
}

/// Parses an issuer's JWKS: at most [`MAX_DOCUMENT_BYTES`] holding `{"keys": [...]}` with at most
/// [`MAX_JWKS_KEYS`] keys. Keys that cannot be parsed (unknown key types) are left out, so one
/// exotic key does not make the issuer's other keys unusable.
pub fn parse_jwks(bytes: &[u8]) -> Result<JwkSet, OidcError> {
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(OidcError::Jwks(format!(
            "it is larger than {MAX_DOCUMENT_BYTES} bytes"
        )));
    }
    #[derive(Deserialize)]
    struct RawSet {
        keys: Vec<Value>,
    }
    let raw: RawSet = serde_json::from_slice(bytes)
        .map_err(|_| OidcError::Jwks("it is not a JSON object with a `keys` array".to_owned()))?;
    if raw.keys.len() > MAX_JWKS_KEYS {
        return Err(OidcError::Jwks(format!(
            "it has {} keys; at most {MAX_JWKS_KEYS} are accepted",
            raw.keys.len()
        )));
    }
    let keys = raw
        .keys
        .into_iter()
        .filter_map(|key| serde_json::from_value::<Jwk>(key).ok())
        .collect();
    Ok(JwkSet { keys })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wildcard_matches(pattern: &str, value: &str) -> bool {
        crate::wildcard_matches(pattern.as_bytes(), value.as_bytes())
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_matches("*", ""));
        assert!(wildcard_matches("*", "anything"));
        assert!(wildcard_matches("acme/*", "acme/tools"));
        assert!(wildcard_matches(
            "acme/tools/.github/workflows/release.yml@refs/tags/*",
            "acme/tools/.github/workflows/release.yml@refs/tags/v1.2.3"
        ));
        assert!(!wildcard_matches(
            "acme/tools/.github/workflows/release.yml@refs/tags/*",
            "acme/tools/.github/workflows/release.yml@refs/heads/main"
        ));
        assert!(wildcard_matches("a*b*c", "axxbyyc"));
        assert!(!wildcard_matches("a*b*c", "axxbyy"));
        assert!(!wildcard_matches("Acme", "acme"));
        assert!(wildcard_matches("é*", "école"));
    }

    #[test]
    fn rendering() {
        assert_eq!(render_scalar(&Value::from("x")).as_deref(), Some("x"));
        assert_eq!(render_scalar(&Value::from(true)).as_deref(), Some("true"));
        assert_eq!(render_scalar(&Value::from(42)).as_deref(), Some("42"));
        assert_eq!(render_scalar(&Value::from(-1.5)).as_deref(), Some("-1.5"));
        assert_eq!(render_scalar(&Value::Null), None);
        assert_eq!(render_scalar(&serde_json::json!([1])), None);
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("plain"), "plain");
        assert_eq!(quote("a\nb\u{7}"), "a\\nb\\u{7}");
        assert_eq!(quote(&"é".repeat(101)), format!("{}…", "é".repeat(100)));
    }

    #[test]
    fn acceptable_issuers() {
        assert!(is_acceptable_issuer(
            "https://token.actions.githubusercontent.com"
        ));
        assert!(is_acceptable_issuer("https://gitlab.example.com/"));
        assert!(is_acceptable_issuer("http://127.0.0.1:4000"));
        assert!(is_acceptable_issuer("http://LOCALHOST"));
        assert!(!is_acceptable_issuer("http://10.0.0.1"));
        assert!(!is_acceptable_issuer("http://127.0.0.1.evil.example"));
        assert!(!is_acceptable_issuer("https://a.example/\n"));
        assert!(!is_acceptable_issuer("https://[::1"));
        assert!(!is_acceptable_issuer(&format!(
            "https://{}",
            "a".repeat(300)
        )));
    }

    #[test]
    fn same_issuer_tolerates_one_trailing_slash() {
        assert!(same_issuer("https://a.example", "https://a.example/"));
        assert!(same_issuer("https://a.example/", "https://a.example/"));
        assert!(!same_issuer("https://a.example//", "https://a.example"));
        assert!(!same_issuer("https://a.example/x", "https://a.example"));
    }
}
