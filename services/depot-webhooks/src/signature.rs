//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>): HMAC-SHA256 over
//! `{webhook-id}.{webhook-timestamp}.{body}` with the subscription's secret, sent as
//! `webhook-signature: v1,<base64>`.
//!
//! Each subscription's secret is derived, never stored: HMAC-SHA256(server webhook key,
//! subscription id). It is shown once when the subscription is made (as `whsec_<base64>`, the
//! spec's format), and the dispatcher derives it again for every delivery. Rotating a secret
//! means a new subscription.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit as _, Mac as _};
use hmac_sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The prefix of a secret in the Standard Webhooks format.
pub const SECRET_PREFIX: &str = "whsec_";

/// The shortest server key accepted, in bytes.
pub const MIN_KEY_LEN: usize = 32;

/// The server's webhook key, from which every subscription's secret is derived.
#[derive(Clone)]
pub struct WebhookKey(Vec<u8>);

impl std::fmt::Debug for WebhookKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookKey(..)")
    }
}

impl WebhookKey {
    /// A key of at least [`MIN_KEY_LEN`] bytes.
    pub fn new(bytes: Vec<u8>) -> Result<WebhookKey, String> {
        if bytes.len() < MIN_KEY_LEN {
            return Err(format!(
                "the webhook key must be at least {MIN_KEY_LEN} bytes long"
            ));
        }
        Ok(WebhookKey(bytes))
    }

    /// A new random key of 32 bytes.
    pub fn generate() -> WebhookKey {
        let mut bytes = vec![0_u8; 32];
        rand::Rng::fill(&mut rand::rng(), bytes.as_mut_slice());
        WebhookKey(bytes)
    }

    /// The key's bytes (to be written to a key file).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The signing secret of subscription `subscription_id`.
    pub fn secret_for(&self, subscription_id: &uuid::Uuid) -> WebhookSecret {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(b"depot-webhook-secret:");
        mac.update(subscription_id.as_hyphenated().to_string().as_bytes());
        WebhookSecret(mac.finalize().into_bytes().to_vec())
    }
}

/// A subscription's signing secret (24 to 64 bytes).
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

impl WebhookSecret {
    /// The secret as shown to the subscriber: `whsec_` + base64 of its bytes.
    pub fn to_whsec(&self) -> String {
        format!("{SECRET_PREFIX}{}", BASE64.encode(&self.0))
    }

    /// Parses `whsec_<base64>` (or the bare base64) of 24 to 64 bytes.
    pub fn from_whsec(text: &str) -> Option<WebhookSecret> {
        let encoded = text.strip_prefix(SECRET_PREFIX).unwrap_or(text);
        if encoded.len() > 128 {
            return None;
        }
        let bytes = BASE64.decode(encoded).ok()?;
        (24..=64)
            .contains(&bytes.len())
            .then_some(WebhookSecret(bytes))
    }

    /// The `webhook-signature` header value for a message: `v1,<base64 HMAC-SHA256>`.
    pub fn sign(&self, webhook_id: &str, timestamp: i64, body: &[u8]) -> String {
        format!(
            "v1,{}",
            BASE64.encode(
                self.mac(webhook_id, timestamp, body)
                    .finalize()
                    .into_bytes()
            )
        )
    }

    /// Whether `header` (space-separated `v1,<base64>` signatures) holds a valid signature of
    /// the message; compared in constant time.
    pub fn verify(&self, webhook_id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
        header.split(' ').any(|candidate| {
            let Some(encoded) = candidate.strip_prefix("v1,") else {
                return false;
            };
            let Ok(signature) = BASE64.decode(encoded) else {
                return false;
            };
            self.mac(webhook_id, timestamp, body)
                .verify_slice(&signature)
                .is_ok()
        })
    }

    fn mac(&self, webhook_id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length");
        mac.update(webhook_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The example of the Standard Webhooks specification's reference libraries.
    #[test]
    fn matches_the_specification_example() {
        let secret = WebhookSecret::from_whsec("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            secret.sign("msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn secrets_are_derived_per_subscription_and_in_the_spec_format() {
        let key = WebhookKey::new(vec![7; 32]).unwrap();
        let a = uuid::Uuid::from_u128(1);
        let b = uuid::Uuid::from_u128(2);
        assert_eq!(key.secret_for(&a), key.secret_for(&a));
        assert_ne!(key.secret_for(&a), key.secret_for(&b));
        let shown = key.secret_for(&a).to_whsec();
        assert!(shown.starts_with("whsec_"));
        assert_eq!(WebhookSecret::from_whsec(&shown), Some(key.secret_for(&a)));
        assert!(WebhookKey::new(vec![1; 31]).is_err());
        assert!(WebhookSecret::from_whsec("whsec_c2hvcnQ=").is_none());
        assert_eq!(format!("{:?}", key.secret_for(&a)), "WebhookSecret(..)");
    }

    proptest! {
        /// Signing and verifying round-trip; changing any byte of the id, the body, the
        /// timestamp or the signature makes verification fail.
        #[test]
        fn any_altered_byte_fails(
            key in proptest::collection::vec(any::<u8>(), 24..=64),
            id in "msg_[a-zA-Z0-9]{1,40}",
            timestamp in 0_i64..4_000_000_000,
            body in proptest::collection::vec(any::<u8>(), 0..512),
            flip in any::<prop::sample::Index>(),
            bit in 0_u8..8,
        ) {
            let secret = WebhookSecret(key);
            let signature = secret.sign(&id, timestamp, &body);
            prop_assert!(secret.verify(&id, timestamp, &body, &signature));
            let several = format!("v1,AAAA {}", signature);
            prop_assert!(secret.verify(&id, timestamp, &body, &several));
            prop_assert!(!secret.verify(&id, timestamp + 1, &body, &signature));
            if !body.is_empty() {
                let mut altered = body.clone();
                altered[flip.index(body.len())] ^= 1 << bit;
                prop_assert!(!secret.verify(&id, timestamp, &altered, &signature));
            }
            let mut altered_id = id.clone().into_bytes();
            let at = flip.index(altered_id.len());
            altered_id[at] ^= 1 << (bit % 7);
            if let Ok(altered_id) = String::from_utf8(altered_id) && altered_id != id {
                prop_assert!(!secret.verify(&altered_id, timestamp, &body, &signature));
            }
            let raw = BASE64.decode(&signature[3..]).unwrap();
            let mut forged = raw.clone();
            forged[flip.index(raw.len())] ^= 1 << bit;
            let forged = format!("v1,{}", BASE64.encode(forged));
            prop_assert!(!secret.verify(&id, timestamp, &body, &forged));
        }
    }
}
