//! ID-token verification and trust policies against tokens signed with real RSA keys.

mod support;

use depot_auth::oidc::{self, OidcError, PolicyError, PolicyMismatch, TrustPolicy, VerifiedToken};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::json;
use support::{
    AUDIENCE, ISSUER, NOW, SKEW, claims, claims_with, jwks, key1, key2, sign, sign_raw, unsigned,
};

fn verify(token: &str) -> Result<VerifiedToken, OidcError> {
    oidc::verify(token, &jwks(&[key1(), key2()]), ISSUER, NOW, SKEW)
}

fn policy(claims: &[(&str, &str)]) -> TrustPolicy {
    TrustPolicy {
        issuer: ISSUER.to_owned(),
        audience: AUDIENCE.to_owned(),
        claims: claims
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

#[test]
fn valid_rs256_token() {
    let token = verify(&sign(key1(), &claims())).expect("valid");
    assert_eq!(token.issuer, ISSUER);
    assert_eq!(
        token.subject.as_deref(),
        Some("project_path:acme/tools:ref_type:tag:ref:v1")
    );
    assert_eq!(token.audience, vec![AUDIENCE.to_owned()]);
    assert_eq!(token.jti, "0b0c8c6e-7a2f-4c1e-9a51-3f7d8f1f6a10");
    assert_eq!(token.expires_at, NOW + 290);
    assert_eq!(token.claims["project_path"], "acme/tools");
    assert_eq!(token.claims["ref_protected"], true);
}

#[test]
fn audience_list_and_missing_subject() {
    let token = verify(&sign(
        key1(),
        &claims_with(json!({"aud": ["other", AUDIENCE], "sub": null})),
    ))
    .expect("valid");
    assert_eq!(
        token.audience,
        vec!["other".to_owned(), AUDIENCE.to_owned()]
    );
    assert_eq!(token.subject, None);

    let no_aud = verify(&sign(key1(), &claims_with(json!({"aud": null})))).expect("valid");
    assert!(no_aud.audience.is_empty());
    assert_eq!(
        verify(&sign(key1(), &claims_with(json!({"aud": [1]})))),
        Err(OidcError::InvalidClaim("aud"))
    );
}

#[test]
fn wrong_issuer() {
    let token = sign(
        key1(),
        &claims_with(json!({"iss": "https://evil.example.com"})),
    );
    let err = verify(&token).unwrap_err();
    assert_eq!(
        err,
        OidcError::WrongIssuer {
            expected: ISSUER.to_owned(),
            found: "https://evil.example.com".to_owned()
        }
    );
    assert_eq!(
        err.to_string(),
        "the ID token was issued by `https://evil.example.com`, not `https://gitlab.example.com`"
    );
    assert_eq!(
        verify(&sign(key1(), &claims_with(json!({"iss": null})))),
        Err(OidcError::MissingClaim("iss"))
    );
}

#[test]
fn expiry_with_skew() {
    let expired = sign(
        key1(),
        &claims_with(json!({"iat": NOW - 400, "nbf": NOW - 400, "exp": NOW - 100})),
    );
    let err = verify(&expired).unwrap_err();
    assert_eq!(err, OidcError::Expired);
    assert_eq!(err.to_string(), "the ID token has expired");

    let within_skew = sign(
        key1(),
        &claims_with(json!({"iat": NOW - 300, "nbf": NOW - 300, "exp": NOW - 30})),
    );
    assert!(verify(&within_skew).is_ok());
    assert_eq!(
        oidc::verify(&within_skew, &jwks(&[key1()]), ISSUER, NOW, 0),
        Err(OidcError::Expired)
    );
    assert_eq!(
        verify(&sign(key1(), &claims_with(json!({"exp": null})))),
        Err(OidcError::MissingClaim("exp"))
    );
    assert_eq!(
        verify(&sign(key1(), &claims_with(json!({"exp": "soon"})))),
        Err(OidcError::InvalidClaim("exp"))
    );
}

#[test]
fn not_yet_valid() {
    let token = sign(key1(), &claims_with(json!({"nbf": NOW + 120})));
    assert_eq!(verify(&token), Err(OidcError::NotYetValid));
    let within_skew = sign(key1(), &claims_with(json!({"nbf": NOW + 30})));
    assert!(verify(&within_skew).is_ok());
    let no_nbf = sign(key1(), &claims_with(json!({"nbf": null})));
    assert!(verify(&no_nbf).is_ok());
}

#[test]
fn issued_in_the_future() {
    let token = sign(
        key1(),
        &claims_with(json!({"iat": NOW + 120, "nbf": null, "exp": NOW + 400})),
    );
    assert_eq!(verify(&token), Err(OidcError::IssuedInFuture));
    assert_eq!(
        verify(&sign(key1(), &claims_with(json!({"iat": null})))),
        Err(OidcError::MissingClaim("iat"))
    );
}

#[test]
fn lifetime_is_bounded() {
    let token = sign(
        key1(),
        &claims_with(json!({"iat": NOW - 10, "exp": NOW + 7 * 3600})),
    );
    assert_eq!(
        verify(&token),
        Err(OidcError::LifetimeTooLong(7 * 3600 + 10))
    );
}

#[test]
fn jti_is_required() {
    for (jti, expected) in [
        (json!(null), OidcError::MissingClaim("jti")),
        (json!(""), OidcError::MissingClaim("jti")),
        (json!(7), OidcError::InvalidClaim("jti")),
        (json!("x".repeat(257)), OidcError::InvalidClaim("jti")),
    ] {
        let token = sign(key1(), &claims_with(json!({ "jti": jti })));
        assert_eq!(verify(&token), Err(expected));
    }
}

#[test]
fn unknown_kid_and_rotation() {
    let by_key1 = sign(key1(), &claims());
    let by_key2 = sign(key2(), &claims());
    let before = jwks(&[key1()]);
    let after = jwks(&[key2()]);

    assert!(oidc::verify(&by_key1, &before, ISSUER, NOW, SKEW).is_ok());
    let err = oidc::verify(&by_key2, &before, ISSUER, NOW, SKEW).unwrap_err();
    assert_eq!(err, OidcError::UnknownKey("key-2".to_owned()));
    assert_eq!(
        err.to_string(),
        "the ID token's signing key `key-2` is not in the issuer's JWKS"
    );

    assert!(oidc::verify(&by_key2, &after, ISSUER, NOW, SKEW).is_ok());
    assert_eq!(
        oidc::verify(&by_key1, &after, ISSUER, NOW, SKEW),
        Err(OidcError::UnknownKey("key-1".to_owned()))
    );
}

#[test]
fn kid_is_required() {
    let token = sign_raw(
        &json!({"alg": "RS256"}),
        &claims(),
        &key1().encoding,
        Algorithm::RS256,
    );
    assert_eq!(verify(&token), Err(OidcError::MissingKeyId));
}

#[test]
fn signature_by_another_key_under_a_known_kid() {
    let token = sign_raw(
        &json!({"alg": "RS256", "kid": "key-1"}),
        &claims(),
        &key2().encoding,
        Algorithm::RS256,
    );
    let err = verify(&token).unwrap_err();
    assert_eq!(err, OidcError::BadSignature);
    assert_eq!(err.to_string(), "the ID token's signature is invalid");
}

#[test]
fn alg_none_is_refused() {
    for alg in ["none", "None", "NONE"] {
        let token = format!(
            "{}.",
            unsigned(&claims(), "key-1")
                .rsplit_once('.')
                .map(|(message, _)| message)
                .expect("dots")
                .replacen(
                    &base64_json(&json!({"alg": "none", "kid": "key-1"})),
                    &base64_json(&json!({"alg": alg, "kid": "key-1"})),
                    1
                )
        );
        let err = verify(&token).unwrap_err();
        assert_eq!(err, OidcError::Unsigned, "{alg}");
    }
    assert_eq!(
        OidcError::Unsigned.to_string(),
        "unsigned ID tokens (`alg: none`) are refused"
    );
}

fn base64_json(value: &serde_json::Value) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

#[test]
fn hs256_signed_with_the_public_key_is_refused() {
    let secret = EncodingKey::from_secret(key1().public_pem.as_bytes()).unwrap();
    let header = json!({"alg": "HS256", "typ": "JWT", "kid": "key-1"});
    let token = sign_raw(&header, &claims(), &secret, Algorithm::HS256);
    let err = verify(&token).unwrap_err();
    assert_eq!(err, OidcError::SymmetricAlgorithm("HS256".to_owned()));
    assert_eq!(
        err.to_string(),
        "ID tokens signed with `HS256` are refused; issuers must sign with an asymmetric key"
    );

    // Even when the JWKS offers a symmetric key under that kid.
    let oct: jsonwebtoken::jwk::Jwk = serde_json::from_value(json!({
        "kty": "oct", "kid": "key-1", "k": base64_json(&json!(key1().public_pem)),
    }))
    .unwrap();
    let set = jsonwebtoken::jwk::JwkSet { keys: vec![oct] };
    for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
        let header = json!({"alg": format!("{alg:?}"), "kid": "key-1"});
        let token = sign_raw(&header, &claims(), &secret, alg);
        assert_eq!(
            oidc::verify(&token, &set, ISSUER, NOW, SKEW),
            Err(OidcError::SymmetricAlgorithm(format!("{alg:?}")))
        );
    }
}

#[test]
fn key_type_must_fit_the_algorithm() {
    let ec: jsonwebtoken::jwk::Jwk = serde_json::from_value(json!({
        "kty": "EC", "crv": "P-256", "kid": "ec-1", "use": "sig",
        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
    }))
    .unwrap();
    let set = jsonwebtoken::jwk::JwkSet {
        keys: vec![ec, key1().jwk.clone()],
    };
    let rs256_for_ec = sign_raw(
        &json!({"alg": "RS256", "kid": "ec-1"}),
        &claims(),
        &key1().encoding,
        Algorithm::RS256,
    );
    let err = oidc::verify(&rs256_for_ec, &set, ISSUER, NOW, SKEW).unwrap_err();
    assert_eq!(
        err,
        OidcError::KeyMismatch {
            kid: "ec-1".to_owned(),
            alg: "RS256".to_owned()
        }
    );
    assert_eq!(
        err.to_string(),
        "the issuer's key `ec-1` cannot verify `RS256` signatures"
    );

    // An ES256 header naming the RSA key.
    let es256_for_rsa = sign_raw(
        &json!({"alg": "ES256", "kid": "key-1"}),
        &claims(),
        &key1().encoding,
        Algorithm::RS256,
    );
    assert!(matches!(
        oidc::verify(&es256_for_rsa, &set, ISSUER, NOW, SKEW),
        Err(OidcError::KeyMismatch { .. })
    ));

    // The key names another algorithm (RS512), or another use.
    for overrides in [json!({"alg": "RS512"}), json!({"use": "enc"})] {
        let mut jwk = serde_json::to_value(&key1().jwk).unwrap();
        for (k, v) in overrides.as_object().unwrap() {
            jwk[k] = v.clone();
        }
        let set = jsonwebtoken::jwk::JwkSet {
            keys: vec![serde_json::from_value(jwk).unwrap()],
        };
        assert!(matches!(
            oidc::verify(&sign(key1(), &claims()), &set, ISSUER, NOW, SKEW),
            Err(OidcError::KeyMismatch { .. })
        ));
    }
}

#[test]
fn weak_rsa_keys_are_refused() {
    let mut jwk = serde_json::to_value(&key1().jwk).unwrap();
    jwk["n"] = json!(base64_json(&json!("short modulus")));
    let set = jsonwebtoken::jwk::JwkSet {
        keys: vec![serde_json::from_value(jwk).unwrap()],
    };
    assert_eq!(
        oidc::verify(&sign(key1(), &claims()), &set, ISSUER, NOW, SKEW),
        Err(OidcError::UnusableKey("key-1".to_owned()))
    );
}

#[test]
fn unsupported_headers() {
    let crit = sign_raw(
        &json!({"alg": "RS256", "kid": "key-1", "crit": ["b64"], "b64": false}),
        &claims(),
        &key1().encoding,
        Algorithm::RS256,
    );
    assert_eq!(verify(&crit), Err(OidcError::CriticalHeader));
    let odd = sign_raw(
        &json!({"alg": "RS1", "kid": "key-1"}),
        &claims(),
        &key1().encoding,
        Algorithm::RS256,
    );
    assert_eq!(
        verify(&odd),
        Err(OidcError::UnsupportedAlgorithm("RS1".to_owned()))
    );
}

#[test]
fn malformed_tokens() {
    assert_eq!(
        verify(""),
        Err(OidcError::Malformed(
            "it must have three dot-separated segments"
        ))
    );
    assert!(matches!(verify("a.b"), Err(OidcError::Malformed(_))));
    assert!(matches!(verify("a.b.c.d"), Err(OidcError::Malformed(_))));
    assert!(matches!(verify("a b.c.d"), Err(OidcError::Malformed(_))));
    assert!(matches!(
        verify("e30.e30.e30"),
        Err(OidcError::Malformed(_))
    ));
    let huge = format!("{}.e30.", "a".repeat(oidc::MAX_TOKEN_BYTES));
    assert_eq!(verify(&huge), Err(OidcError::TooLarge));
    assert_eq!(oidc::peek_issuer(&huge), Err(OidcError::TooLarge));
}

#[test]
fn peek_issuer_reads_the_unverified_iss() {
    let token = sign(key1(), &claims());
    assert_eq!(oidc::peek_issuer(&token).as_deref(), Ok(ISSUER));
    let forged = unsigned(&claims_with(json!({"iss": "https://x.example"})), "k");
    assert_eq!(
        oidc::peek_issuer(&forged).as_deref(),
        Ok("https://x.example")
    );
    assert_eq!(
        oidc::peek_issuer(&unsigned(&claims_with(json!({"iss": null})), "k")),
        Err(OidcError::MissingClaim("iss"))
    );
    assert_eq!(
        oidc::peek_issuer(&unsigned(&claims_with(json!({"iss": 3})), "k")),
        Err(OidcError::InvalidClaim("iss"))
    );
    assert!(oidc::peek_issuer("not a token").is_err());
}

#[test]
fn policy_accepts_matching_tokens() {
    let token = verify(&sign(key1(), &claims())).unwrap();
    let gitlab = policy(&[("project_path", "acme/tools"), ("ref_protected", "true")]);
    assert_eq!(gitlab.validate(), Ok(()));
    assert_eq!(gitlab.check(&token), Ok(()));
    assert_eq!(
        policy(&[("sub", "project_path:acme/*")]).check(&token),
        Ok(())
    );
    assert_eq!(policy(&[("project_id", "42")]).check(&token), Ok(()));
    assert_eq!(
        policy(&[("sub", "*:ref_type:tag:ref:v*")]).check(&token),
        Ok(())
    );
}

#[test]
fn policy_reports_the_first_mismatch() {
    let token = verify(&sign(
        key1(),
        &claims_with(json!({"ref_protected": false, "groups": ["a"]})),
    ))
    .unwrap();

    let err = policy(&[("project_path", "acme/tools"), ("ref_protected", "true")])
        .check(&token)
        .unwrap_err();
    assert_eq!(
        err,
        PolicyMismatch::Claim {
            claim: "ref_protected".to_owned(),
            expected: "true".to_owned(),
            found: Some("false".to_owned())
        }
    );
    assert_eq!(
        err.to_string(),
        "the ID token's `ref_protected` claim is `false`, but the trust policy requires `true`"
    );

    let err = policy(&[("project_path", "acme/other")])
        .check(&token)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the ID token's `project_path` claim is `acme/tools`, but the trust policy requires `acme/other`"
    );

    let err = policy(&[("environment", "release")])
        .check(&token)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the ID token has no `environment` claim, but the trust policy requires `release`"
    );

    // Arrays never match, even `*`.
    let err = policy(&[("groups", "*")]).check(&token).unwrap_err();
    assert_eq!(
        err,
        PolicyMismatch::Claim {
            claim: "groups".to_owned(),
            expected: "*".to_owned(),
            found: Some("[\"a\"]".to_owned())
        }
    );

    // Patterns are case-sensitive and anchored.
    assert!(
        policy(&[("project_path", "ACME/tools")])
            .check(&token)
            .is_err()
    );
    assert!(
        policy(&[("project_path", "acme/tool")])
            .check(&token)
            .is_err()
    );
}

#[test]
fn policy_truncates_long_values() {
    let long = "x".repeat(300);
    let token = verify(&sign(key1(), &claims_with(json!({"project_path": long})))).unwrap();
    let Err(PolicyMismatch::Claim {
        found: Some(found), ..
    }) = policy(&[("project_path", "acme/tools")]).check(&token)
    else {
        panic!("expected a claim mismatch");
    };
    assert_eq!(found, format!("{}…", "x".repeat(100)));
}

#[test]
fn policy_audience_and_issuer() {
    let token = verify(&sign(key1(), &claims_with(json!({"aud": "someone-else"})))).unwrap();
    let err = policy(&[("project_path", "acme/tools")])
        .check(&token)
        .unwrap_err();
    assert_eq!(
        err,
        PolicyMismatch::Audience {
            expected: AUDIENCE.to_owned(),
            found: vec!["someone-else".to_owned()]
        }
    );
    assert_eq!(
        err.to_string(),
        "the ID token's audience is `someone-else`, but the trust policy requires `depot.example.com`"
    );

    let token = verify(&sign(key1(), &claims())).unwrap();
    let mut other = policy(&[("project_path", "acme/tools")]);
    other.issuer = "https://token.actions.githubusercontent.com".to_owned();
    assert!(matches!(
        other.check(&token),
        Err(PolicyMismatch::Issuer { .. })
    ));
}

#[test]
fn policy_validation() {
    let ok = policy(&[("project_path", "acme/tools")]);
    assert_eq!(ok.validate(), Ok(()));

    for issuer in [
        "http://gitlab.example.com",
        "gitlab.example.com",
        "https://",
        "https://user@gitlab.example.com",
        "https://gitlab.example.com?x=1",
        "https://gitlab.example.com#x",
        "https://gitlab.example.com:port",
        "ftp://gitlab.example.com",
    ] {
        let mut p = ok.clone();
        p.issuer = issuer.to_owned();
        assert!(
            matches!(p.validate(), Err(PolicyError::Issuer(_))),
            "{issuer}"
        );
    }
    for issuer in [
        "http://127.0.0.1:8080",
        "http://localhost",
        "http://[::1]:9000/path",
        "https://gitlab.example.com:8443/oidc",
    ] {
        let mut p = ok.clone();
        p.issuer = issuer.to_owned();
        assert_eq!(p.validate(), Ok(()), "{issuer}");
    }

    let mut p = ok.clone();
    p.audience.clear();
    assert_eq!(p.validate(), Err(PolicyError::EmptyAudience));

    let mut p = ok.clone();
    p.claims = (0..17).map(|i| (format!("c{i}"), "x".to_owned())).collect();
    assert_eq!(p.validate(), Err(PolicyError::TooManyClaims(17)));

    let mut p = ok.clone();
    p.claims.insert("c".repeat(257), "x".to_owned());
    assert!(matches!(p.validate(), Err(PolicyError::ClaimTooLong(_))));
    let mut p = ok.clone();
    p.claims.insert("c".to_owned(), "x".repeat(257));
    assert!(matches!(p.validate(), Err(PolicyError::ClaimTooLong(_))));
    let mut p = ok.clone();
    p.claims.insert(String::new(), "x".to_owned());
    assert_eq!(p.validate(), Err(PolicyError::EmptyClaimName));

    assert_eq!(policy(&[]).validate(), Err(PolicyError::Unconstrained));
    assert_eq!(
        policy(&[("sub", "*"), ("project_path", "**")]).validate(),
        Err(PolicyError::Unconstrained)
    );
    assert_eq!(
        policy(&[("sub", "*"), ("project_path", "acme/*")]).validate(),
        Ok(())
    );
}

#[test]
fn policy_round_trips_through_json() {
    let p = policy(&[("repository", "acme/tools")]);
    let json = serde_json::to_value(&p).unwrap();
    assert_eq!(
        json,
        json!({"issuer": ISSUER, "audience": AUDIENCE, "claims": {"repository": "acme/tools"}})
    );
    assert_eq!(serde_json::from_value::<TrustPolicy>(json).unwrap(), p);
}

#[test]
fn discovery_documents() {
    let doc = |issuer: &str, jwks_uri: &str| {
        serde_json::to_vec(&json!({
            "issuer": issuer,
            "jwks_uri": jwks_uri,
            "response_types_supported": ["id_token"],
        }))
        .unwrap()
    };
    assert_eq!(
        oidc::jwks_uri_from_discovery(
            &doc(ISSUER, "https://gitlab.example.com/oauth/discovery/keys"),
            ISSUER
        )
        .as_deref(),
        Ok("https://gitlab.example.com/oauth/discovery/keys")
    );
    // One trailing slash either side is tolerated.
    assert!(
        oidc::jwks_uri_from_discovery(
            &doc("https://gitlab.example.com/", "https://k.example/jwks"),
            ISSUER
        )
        .is_ok()
    );
    assert!(
        oidc::jwks_uri_from_discovery(
            &doc(ISSUER, "https://k.example/jwks"),
            "https://gitlab.example.com/"
        )
        .is_ok()
    );
    assert!(
        oidc::jwks_uri_from_discovery(
            &doc("http://127.0.0.1:4000", "http://127.0.0.1:4000/jwks"),
            "http://127.0.0.1:4000"
        )
        .is_ok()
    );

    let err = oidc::jwks_uri_from_discovery(
        &doc("https://evil.example.com", "https://k.example/jwks"),
        ISSUER,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the issuer's OpenID configuration is unusable: it names the issuer `https://evil.example.com`, not `https://gitlab.example.com`"
    );
    assert!(
        oidc::jwks_uri_from_discovery(
            &doc("https://gitlab.example.com//", "https://k.example/jwks"),
            ISSUER
        )
        .is_err()
    );
    assert!(
        oidc::jwks_uri_from_discovery(&doc(ISSUER, "http://keys.example.com/jwks"), ISSUER)
            .is_err()
    );
    assert!(oidc::jwks_uri_from_discovery(&doc(ISSUER, "file:///etc/passwd"), ISSUER).is_err());
    assert!(
        oidc::jwks_uri_from_discovery(br#"{"issuer": "https://gitlab.example.com"}"#, ISSUER)
            .is_err()
    );
    assert!(oidc::jwks_uri_from_discovery(b"[]", ISSUER).is_err());
    let mut big = doc(ISSUER, "https://k.example/jwks");
    big.truncate(big.len() - 1);
    big.extend(format!(",\"pad\":\"{}\"}}", "x".repeat(oidc::MAX_DOCUMENT_BYTES)).bytes());
    assert!(matches!(
        oidc::jwks_uri_from_discovery(&big, ISSUER),
        Err(OidcError::Discovery(_))
    ));
}

#[test]
fn jwks_parsing() {
    let bytes = serde_json::to_vec(&json!({
        "keys": [
            serde_json::to_value(&key1().jwk).unwrap(),
            {"kty": "weird", "kid": "w"},
            {"not": "a key"},
        ]
    }))
    .unwrap();
    let set = oidc::parse_jwks(&bytes).unwrap();
    assert!(set.find("key-1").is_some());
    assert!(oidc::verify(&sign(key1(), &claims()), &set, ISSUER, NOW, SKEW).is_ok());

    let many = json!({"keys": vec![serde_json::to_value(&key1().jwk).unwrap(); 33]});
    let err = oidc::parse_jwks(&serde_json::to_vec(&many).unwrap()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "the issuer's JWKS is unusable: it has 33 keys; at most 32 are accepted"
    );
    assert!(oidc::parse_jwks(b"{}").is_err());
    assert!(oidc::parse_jwks(b"{\"keys\": {}}").is_err());
    assert!(oidc::parse_jwks(&vec![b' '; oidc::MAX_DOCUMENT_BYTES + 1]).is_err());
}
