//! A real OpenID Connect issuer on loopback, for testing trusted publishing end to end.
//!
//! [`OidcIssuer`] serves the two documents a relying party fetches, over HTTP on 127.0.0.1:
//!
//! - `GET /.well-known/openid-configuration`: `issuer` and `jwks_uri` (`{issuer}/jwks`);
//! - `GET /jwks`: the current public key as a JWK set (`kid`, `alg: RS256`, `use: sig`).
//!
//! It signs ID tokens with an RSA 2048 key made at start, rotates keys on request, counts JWKS
//! fetches, and forges the tokens an attacker would send (`alg: none`, HS256 keyed with the
//! public key).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey as _;
use rsa::pkcs8::{EncodePublicKey as _, LineEnding};
use rsa::traits::PublicKeyParts as _;
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde_json::{Value, json};

/// The `sub` of tokens made by [`OidcIssuer::claims`] unless overridden.
pub const DEFAULT_OIDC_SUBJECT: &str = "project_path:acme/tools:ref_type:tag:ref:v1";

/// An RSA signing key and its public forms.
struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    public_jwk: Value,
    public_pem: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    fn generate(kid: String) -> Self {
        let private =
            RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("generate an RSA key");
        let public = RsaPublicKey::from(&private);
        let der = private
            .to_pkcs1_der()
            .expect("encode the RSA key as PKCS#1");
        let public_jwk = json!({
            "kty": "RSA",
            "kid": kid,
            "alg": "RS256",
            "use": "sig",
            "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
        });
        let public_pem = public
            .to_public_key_pem(LineEnding::LF)
            .expect("encode the RSA public key as PEM");
        Self {
            kid,
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            public_jwk,
            public_pem,
        }
    }
}

#[derive(Debug)]
struct Keys {
    current: SigningKey,
    generation: u32,
}

#[derive(Debug)]
struct Shared {
    url: String,
    keys: Mutex<Keys>,
    jwks_requests: AtomicUsize,
}

impl Shared {
    fn keys(&self) -> MutexGuard<'_, Keys> {
        self.keys.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A local OIDC issuer serving its discovery document and JWKS on `http://127.0.0.1:PORT`.
///
/// The server stops when the value is dropped.
///
/// ```no_run
/// # async fn example() {
/// use depot_testkit::OidcIssuer;
///
/// let issuer = OidcIssuer::start().await;
/// let claims = issuer.claims("depot.example.com", serde_json::json!({"project_path": "acme/tools"}));
/// let token = issuer.sign(&claims);
/// issuer.rotate(); // `key-1` leaves the JWKS; tokens are now signed by `key-2`
/// # let _ = token;
/// # }
/// ```
#[derive(Debug)]
pub struct OidcIssuer {
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

impl OidcIssuer {
    /// Generates the first key (`key-1`), binds 127.0.0.1 on a free port and starts serving.
    ///
    /// # Panics
    ///
    /// If the key cannot be generated or no port can be bound.
    pub async fn start() -> Self {
        let first = tokio::task::spawn_blocking(|| SigningKey::generate(kid(1)))
            .await
            .expect("generate the first key");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port for the OIDC issuer");
        let addr = listener.local_addr().expect("the issuer's address");
        let shared = Arc::new(Shared {
            url: format!("http://{addr}"),
            keys: Mutex::new(Keys {
                current: first,
                generation: 1,
            }),
            jwks_requests: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(jwks))
            .with_state(Arc::clone(&shared));
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("serve the OIDC issuer");
        });
        Self { shared, server }
    }

    /// The issuer identifier, `http://127.0.0.1:PORT` (no trailing slash): the `iss` of its
    /// tokens and the base of its discovery URL.
    pub fn url(&self) -> String {
        self.shared.url.clone()
    }

    /// The `kid` of the current signing key (`key-1`, then `key-2` after one rotation, …).
    pub fn kid(&self) -> String {
        self.shared.keys().current.kid.clone()
    }

    /// The current public key in PEM (SubjectPublicKeyInfo).
    pub fn public_key_pem(&self) -> String {
        self.shared.keys().current.public_pem.clone()
    }

    /// Claims of a fresh ID token for `audience`: `iss`, `aud`, `sub` ([`DEFAULT_OIDC_SUBJECT`]),
    /// `iat` and `nbf` now, `exp` in 300 s, a new UUID `jti`; then each member of `extra` (an
    /// object) replaces or adds a claim, and a `null` member removes one.
    ///
    /// # Panics
    ///
    /// If `extra` is neither an object nor `null`.
    pub fn claims(&self, audience: &str, extra: Value) -> Value {
        let now = i64::try_from(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("clock after 1970")
                .as_secs(),
        )
        .expect("time fits in i64");
        let mut claims = json!({
            "iss": self.shared.url,
            "aud": audience,
            "sub": DEFAULT_OIDC_SUBJECT,
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        let map = claims.as_object_mut().expect("claims are an object");
        match extra {
            Value::Null => {}
            Value::Object(extra) => {
                for (name, value) in extra {
                    if value.is_null() {
                        map.remove(&name);
                    } else {
                        map.insert(name, value);
                    }
                }
            }
            other => panic!("extra claims must be a JSON object, not {other}"),
        }
        claims
    }

    /// Signs `claims` with the current key: RS256, the current `kid` in the header.
    pub fn sign(&self, claims: &Value) -> String {
        let keys = self.shared.keys();
        sign_rs256(&keys.current, &keys.current.kid, claims)
    }

    /// Signs `claims` with the current key but names `kid` in the header.
    pub fn sign_with_kid(&self, claims: &Value, kid: &str) -> String {
        let keys = self.shared.keys();
        sign_rs256(&keys.current, kid, claims)
    }

    /// Replaces the signing key with a new one under the next `kid`; the old key leaves the
    /// JWKS at once, so tokens it signed no longer verify.
    pub fn rotate(&self) {
        let generation = self.shared.keys().generation + 1;
        let key = SigningKey::generate(kid(generation));
        let mut keys = self.shared.keys();
        keys.current = key;
        keys.generation = generation;
    }

    /// An unsigned token: header `{"alg": "none", "typ": "JWT", "kid": <current kid>}`, the
    /// claims, and an empty signature.
    pub fn forge_alg_none(&self, claims: &Value) -> String {
        let header = json!({"alg": "none", "typ": "JWT", "kid": self.kid()});
        format!("{}.{}.", b64_json(&header), b64_json(claims))
    }

    /// The algorithm-confusion forgery: an HS256 token whose HMAC secret is the current RSA
    /// public key in PEM, naming the current `kid`. A verifier that lets the token choose the
    /// algorithm and uses the key's bytes as an HMAC secret would accept it.
    pub fn forge_hs256_with_public_key(&self, claims: &Value) -> String {
        let keys = self.shared.keys();
        let secret = EncodingKey::from_secret(keys.current.public_pem.as_bytes())
            .expect("an HMAC key from the PEM bytes");
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(keys.current.kid.clone());
        jsonwebtoken::encode(&header, claims, &secret).expect("sign with HS256")
    }

    /// How many times `GET /jwks` has been served.
    pub fn jwks_requests(&self) -> usize {
        self.shared.jwks_requests.load(Ordering::SeqCst)
    }
}

impl Drop for OidcIssuer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn kid(generation: u32) -> String {
    format!("key-{generation}")
}

fn b64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).expect("serialize JSON"))
}

fn sign_rs256(key: &SigningKey, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &key.encoding).expect("sign with RS256")
}

async fn discovery(State(shared): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({
        "issuer": shared.url,
        "jwks_uri": format!("{}/jwks", shared.url),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }))
}

async fn jwks(State(shared): State<Arc<Shared>>) -> Json<Value> {
    shared.jwks_requests.fetch_add(1, Ordering::SeqCst);
    let keys = shared.keys();
    Json(json!({ "keys": [keys.current.public_jwk] }))
}
