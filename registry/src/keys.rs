//! ed25519 keys that sign plugin packages. A public key is written
//! `ed25519:` and 64 hex digits; a secret key is kept as the hex of its
//! 32-byte seed.

use std::fmt;
use std::str::FromStr;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};

/// A signing key (secret).
pub struct SecretKey(SigningKey);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret.
        write!(f, "SecretKey({})", self.public())
    }
}

/// A verifying key (public).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

/// Key text that does not parse.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum KeyError {
    #[error("`{0}` is not a public key; expected `ed25519:` and 64 hex digits")]
    BadPublic(String),
    #[error("the secret key file does not hold 64 hex digits")]
    BadSecret,
    #[error("no randomness to make a key: {0}")]
    Random(String),
}

impl SecretKey {
    /// A new random key.
    pub fn generate() -> Result<SecretKey, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(SecretKey(SigningKey::from_bytes(&seed)))
    }

    /// The key's seed as hex, for the key file.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.to_bytes())
    }

    /// A key from its key file's text.
    pub fn from_hex(text: &str) -> Result<SecretKey, KeyError> {
        let mut seed = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut seed).map_err(|_| KeyError::BadSecret)?;
        Ok(SecretKey(SigningKey::from_bytes(&seed)))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Signs `message`; 64 bytes.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }
}

impl PublicKey {
    /// Whether `signature` is this key's over `message` (strict: no
    /// malleable or small-order encodings).
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(bytes) = <[u8; 64]>::try_from(signature) else {
            return false;
        };
        let signature = ed25519_dalek::Signature::from_bytes(&bytes);
        self.0.verify_strict(message, &signature).is_ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ed25519:{}", hex::encode(self.0.to_bytes()))
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || KeyError::BadPublic(s.to_string());
        let hex_text = s.trim().strip_prefix("ed25519:").ok_or_else(bad)?;
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_text, &mut bytes).map_err(|_| bad())?;
        VerifyingKey::from_bytes(&bytes)
            .map(PublicKey)
            .map_err(|_| bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_only_their_own_signatures_verify() {
        let key = SecretKey::generate().unwrap();
        let again = SecretKey::from_hex(&key.to_hex()).unwrap();
        assert_eq!(key.public(), again.public());
        let public: PublicKey = key.public().to_string().parse().unwrap();
        let sig = key.sign(b"hello");
        assert!(public.verifies(b"hello", &sig));
        assert!(!public.verifies(b"hellO", &sig));
        let other = SecretKey::generate().unwrap().public();
        assert!(!other.verifies(b"hello", &sig));
        assert!(!public.verifies(b"hello", &sig[..63]));
        assert!("ed25519:zz".parse::<PublicKey>().is_err());
        assert!(SecretKey::from_hex("nope").is_err());
    }
}
