//! The local OIDC issuer, fetched over HTTP and checked with `depot_auth::oidc`.

use depot_auth::oidc::{self, OidcError, TrustPolicy};
use depot_testkit::{DEFAULT_OIDC_SUBJECT, OidcIssuer};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const AUDIENCE: &str = "depot.example.com";

/// `GET url` over a fresh HTTP/1.1 connection; returns the status code and body.
async fn get(url: &str) -> (u16, Vec<u8>) {
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let mut stream = tokio::net::TcpStream::connect(authority).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    (status, response[split + 4..].to_vec())
}

async fn fetch_jwks(issuer: &str) -> jsonwebtoken::jwk::JwkSet {
    let (status, document) = get(&format!("{issuer}/.well-known/openid-configuration")).await;
    assert_eq!(status, 200);
    let jwks_uri = oidc::jwks_uri_from_discovery(&document, issuer).unwrap();
    assert_eq!(jwks_uri, format!("{issuer}/jwks"));
    let (status, body) = get(&jwks_uri).await;
    assert_eq!(status, 200);
    oidc::parse_jwks(&body).unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}

#[tokio::test]
async fn tokens_verify_against_the_served_jwks() {
    let issuer = OidcIssuer::start().await;
    let url = issuer.url();
    assert!(url.starts_with("http://127.0.0.1:") && !url.ends_with('/'));
    assert_eq!(issuer.kid(), "key-1");
    assert_eq!(issuer.jwks_requests(), 0);

    let jwks = fetch_jwks(&url).await;
    assert_eq!(issuer.jwks_requests(), 1);
    assert_eq!(jwks.keys.len(), 1);
    assert_eq!(jwks.keys[0].common.key_id.as_deref(), Some("key-1"));

    let claims = issuer.claims(AUDIENCE, json!({"project_path": "acme/tools", "nbf": null}));
    assert_eq!(claims["sub"], DEFAULT_OIDC_SUBJECT);
    assert!(claims.get("nbf").is_none());
    let token = issuer.sign(&claims);
    assert_eq!(oidc::peek_issuer(&token).unwrap(), url);
    let verified = oidc::verify(&token, &jwks, &url, now(), 60).unwrap();
    assert_eq!(verified.audience, vec![AUDIENCE.to_owned()]);
    assert_eq!(verified.subject.as_deref(), Some(DEFAULT_OIDC_SUBJECT));
    assert_eq!(verified.jti, claims["jti"]);

    let policy = TrustPolicy {
        issuer: url.clone(),
        audience: AUDIENCE.to_owned(),
        claims: [("project_path".to_owned(), "acme/*".to_owned())].into(),
    };
    assert_eq!(policy.validate(), Ok(()));
    assert_eq!(policy.check(&verified), Ok(()));

    // Each token gets its own jti.
    assert_ne!(issuer.claims(AUDIENCE, json!(null))["jti"], claims["jti"]);
}

#[tokio::test]
async fn rotation_and_forgeries() {
    let issuer = OidcIssuer::start().await;
    let url = issuer.url();
    let claims = issuer.claims(AUDIENCE, json!({}));
    let old_token = issuer.sign(&claims);

    issuer.rotate();
    assert_eq!(issuer.kid(), "key-2");
    let jwks = fetch_jwks(&url).await;
    assert_eq!(jwks.keys.len(), 1);
    assert_eq!(jwks.keys[0].common.key_id.as_deref(), Some("key-2"));
    assert_eq!(
        oidc::verify(&old_token, &jwks, &url, now(), 60),
        Err(OidcError::UnknownKey("key-1".to_owned()))
    );
    assert!(oidc::verify(&issuer.sign(&claims), &jwks, &url, now(), 60).is_ok());

    assert_eq!(
        oidc::verify(
            &issuer.sign_with_kid(&claims, "other"),
            &jwks,
            &url,
            now(),
            60
        ),
        Err(OidcError::UnknownKey("other".to_owned()))
    );
    assert_eq!(
        oidc::verify(&issuer.forge_alg_none(&claims), &jwks, &url, now(), 60),
        Err(OidcError::Unsigned)
    );
    assert_eq!(
        oidc::verify(
            &issuer.forge_hs256_with_public_key(&claims),
            &jwks,
            &url,
            now(),
            60
        ),
        Err(OidcError::SymmetricAlgorithm("HS256".to_owned()))
    );
    assert!(
        issuer
            .public_key_pem()
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );
}

#[tokio::test]
async fn dropping_stops_the_server() {
    let issuer = OidcIssuer::start().await;
    let authority = issuer.url().trim_start_matches("http://").to_owned();
    drop(issuer);
    tokio::task::yield_now().await;
    let mut refused = false;
    for _ in 0..50 {
        if tokio::net::TcpStream::connect(&authority).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(refused, "the issuer still accepts connections after drop");
}
