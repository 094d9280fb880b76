//! Content digests: the sha256 of a `.crate` (the index `cksum`) and the blob store key.

use crate::name::{shown, string_newtype_impls};

/// Why a checksum or blob key is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// Not 64 lowercase hexadecimal digits.
    #[error("`{0}` is not a sha256 checksum (64 lowercase hexadecimal digits)")]
    Checksum(String),
    /// Not `sha256/` followed by a checksum.
    #[error("`{0}` is not a blob key (`sha256/` and 64 lowercase hexadecimal digits)")]
    BlobKey(String),
}

/// A sha256 checksum: exactly 64 lowercase hexadecimal digits.
///
/// Serialised as the plain string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Checksum(String);

impl Checksum {
    /// Parses a checksum.
    pub fn parse(hex: &str) -> Result<Checksum, DigestError> {
        if is_sha256_hex(hex) {
            Ok(Checksum(hex.to_owned()))
        } else {
            Err(DigestError::Checksum(shown(hex)))
        }
    }

    /// The checksum of a sha256 digest.
    pub fn from_digest(digest: [u8; 32]) -> Checksum {
        Checksum(hex::encode(digest))
    }

    /// The 64 hex digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The blob store key of the content with this checksum.
    pub fn blob_key(&self) -> BlobKey {
        BlobKey(format!("{BLOB_KEY_PREFIX}{}", self.0))
    }
}

const BLOB_KEY_PREFIX: &str = "sha256/";

/// The key of a blob in the blob store: `sha256/<64 lowercase hex>`. Safe as a relative path:
/// it never contains `..`, a leading `/` or anything but the prefix and hex digits.
///
/// Serialised as the plain string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlobKey(String);

impl BlobKey {
    /// Parses a blob key.
    pub fn parse(key: &str) -> Result<BlobKey, DigestError> {
        match key.strip_prefix(BLOB_KEY_PREFIX) {
            Some(hex) if is_sha256_hex(hex) => Ok(BlobKey(key.to_owned())),
            _ => Err(DigestError::BlobKey(shown(key))),
        }
    }

    /// The key.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The checksum the key names.
    pub fn checksum(&self) -> Checksum {
        Checksum(self.0[BLOB_KEY_PREFIX.len()..].to_owned())
    }
}

pub(crate) fn is_sha256_hex(hex: &str) -> bool {
    hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

string_newtype_impls!(Checksum, BlobKey);

impl<'de> serde::Deserialize<'de> for Checksum {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Checksum::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl<'de> serde::Deserialize<'de> for BlobKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        BlobKey::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn checksums_and_keys() {
        let sum = Checksum::parse(HEX).unwrap();
        assert_eq!(sum.blob_key().as_str(), format!("sha256/{HEX}"));
        assert_eq!(
            BlobKey::parse(&format!("sha256/{HEX}")).unwrap().checksum(),
            sum
        );
        assert!(Checksum::parse(&HEX.to_ascii_uppercase()).is_err());
        assert!(Checksum::parse(&HEX[1..]).is_err());
        assert!(Checksum::parse(&format!("{HEX}0")).is_err());
        assert!(Checksum::parse("").is_err());
        assert!(BlobKey::parse(HEX).is_err());
        assert!(BlobKey::parse("sha256/../../etc/passwd").is_err());
        assert!(BlobKey::parse(&format!("sha256/{}é", &HEX[..62])).is_err());
        assert_eq!(
            serde_json::to_string(&sum).unwrap(),
            format!("\"{HEX}\""),
            "serialised as the plain string"
        );
    }
}
