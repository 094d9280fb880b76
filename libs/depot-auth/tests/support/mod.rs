//! Signing keys and token builders shared by the OIDC tests.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{Value, json};

pub(crate) const ISSUER: &str = "https://gitlab.example.com";
pub(crate) const AUDIENCE: &str = "depot.example.com";
pub(crate) const NOW: i64 = 1_750_000_000;
pub(crate) const SKEW: i64 = 60;

/// An RSA signing key with its public JWK.
pub(crate) struct TestKey {
    pub(crate) kid: &'static str,
    pub(crate) encoding: EncodingKey,
    pub(crate) jwk: Jwk,
    pub(crate) public_pem: String,
}

fn generate(kid: &'static str) -> TestKey {
    let private = RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("rsa keygen");
    let public = RsaPublicKey::from(&private);
    let der = private.to_pkcs1_der().expect("pkcs1 der");
    let jwk = serde_json::from_value(json!({
        "kty": "RSA",
        "kid": kid,
        "alg": "RS256",
        "use": "sig",
        "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
        "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
    }))
    .expect("jwk");
    TestKey {
        kid,
        encoding: EncodingKey::from_rsa_der(der.as_bytes()),
        jwk,
        public_pem: public.to_public_key_pem(LineEnding::LF).expect("pem"),
    }
}

static KEYS: LazyLock<[TestKey; 2]> = LazyLock::new(|| [generate("key-1"), generate("key-2")]);

/// The issuer's first key, `key-1`.
pub(crate) fn key1() -> &'static TestKey {
    &KEYS[0]
}

/// The issuer's second key, `key-2`.
pub(crate) fn key2() -> &'static TestKey {
    &KEYS[1]
}

/// A JWKS holding the given keys' public halves.
pub(crate) fn jwks(keys: &[&TestKey]) -> JwkSet {
    JwkSet {
        keys: keys.iter().map(|k| k.jwk.clone()).collect(),
    }
}

/// Claims of a GitLab-style ID token valid at [`NOW`] for [`AUDIENCE`].
pub(crate) fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "project_path:acme/tools:ref_type:tag:ref:v1",
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "exp": NOW + 290,
        "jti": "0b0c8c6e-7a2f-4c1e-9a51-3f7d8f1f6a10",
        "project_path": "acme/tools",
        "ref_protected": true,
        "project_id": 42,
    })
}

/// `claims()` with `changes` merged in; a `null` removes the claim.
pub(crate) fn claims_with(changes: Value) -> Value {
    let mut claims = claims();
    let map = claims.as_object_mut().expect("object");
    for (name, value) in changes.as_object().expect("object") {
        if value.is_null() {
            map.remove(name);
        } else {
            map.insert(name.clone(), value.clone());
        }
    }
    claims
}

fn b64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("json"))
}

/// A token with an arbitrary `header`, signed with `key` using `alg`.
pub(crate) fn sign_raw(
    header: &Value,
    claims: &Value,
    key: &EncodingKey,
    alg: Algorithm,
) -> String {
    let message = format!("{}.{}", b64_json(header), b64_json(claims));
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).expect("sign");
    format!("{message}.{signature}")
}

/// An RS256 token signed with `key`, naming its kid.
pub(crate) fn sign(key: &TestKey, claims: &Value) -> String {
    sign_raw(
        &json!({"alg": "RS256", "typ": "JWT", "kid": key.kid}),
        claims,
        &key.encoding,
        Algorithm::RS256,
    )
}

/// An unsigned token: `{"alg": "none"}` and an empty signature.
pub(crate) fn unsigned(claims: &Value, kid: &str) -> String {
    format!(
        "{}.{}.",
        b64_json(&json!({"alg": "none", "kid": kid})),
        b64_json(claims)
    )
}
