//! ed25519 signatures over a component's sha256.
//!
//! - A public key is written `ed25519:<base64 of its 32 bytes>`: that string is also its id,
//!   in `weir.toml`'s `trusted_keys`, `.sig` files, `weir.lock` and messages.
//! - A secret key file (`host plugin keygen`) holds one line, `ed25519-secret:<base64 seed>`.
//! - A signature file, `<component>.wasm.sig`, is TOML: `key = "ed25519:…"` and
//!   `signature = "<base64>"`. The signed message is `weir-plugin sha256:<hex digest>`: the
//!   digest covers every byte of the component, the embedded manifest included, and the
//!   prefix keeps the signature from meaning anything outside Weir.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};

const KEY_PREFIX: &str = "ed25519:";
const SECRET_PREFIX: &str = "ed25519-secret:";

/// Keys are named by their id (not held as [`PublicKey`], which is large).
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error(
        "`{0}` is not an ed25519 public key: expected `ed25519:<base64 of 32 bytes>`, as `host plugin keygen` prints it"
    )]
    PublicKey(String),
    #[error(
        "not an ed25519 secret key file: expected one line `ed25519-secret:<base64>`, as `host plugin keygen` writes it"
    )]
    SecretKey,
    #[error("not a Weir signature file: {0}")]
    SignatureFile(String),
    #[error(
        "its signature by {key} does not match its bytes (the component or the signature was changed after signing)"
    )]
    Invalid { key: String },
    #[error(
        "it is signed by {key}, which is not a trusted key: add it to `trusted_keys` under [plugins] in weir.toml if you trust its publisher"
    )]
    Untrusted { key: String },
}

#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    pub fn parse(text: &str) -> Result<PublicKey, SignError> {
        let bad = || SignError::PublicKey(text.to_string());
        let encoded = text.trim().strip_prefix(KEY_PREFIX).ok_or_else(bad)?;
        let bytes: [u8; 32] = BASE64
            .decode(encoded)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(bad)?;
        VerifyingKey::from_bytes(&bytes)
            .map(PublicKey)
            .map_err(|_| bad())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{KEY_PREFIX}{}", BASE64.encode(self.0.as_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

pub struct SecretKey(SigningKey);

impl SecretKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> SecretKey {
        let seed: [u8; 32] = rand::random();
        SecretKey(SigningKey::from_bytes(&seed))
    }

    pub fn parse(text: &str) -> Result<SecretKey, SignError> {
        let encoded = text
            .trim()
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SignError::SecretKey)?;
        let seed: [u8; 32] = BASE64
            .decode(encoded)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(SignError::SecretKey)?;
        Ok(SecretKey(SigningKey::from_bytes(&seed)))
    }

    /// The key file's contents.
    pub fn to_file(&self) -> String {
        format!("{SECRET_PREFIX}{}\n", BASE64.encode(self.0.to_bytes()))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Sign the component whose sha256 (hex) is `digest`.
    pub fn sign(&self, digest: &str) -> Signature {
        Signature {
            key: self.public(),
            bytes: self.0.sign(&message(digest)),
        }
    }
}

#[derive(Clone)]
pub struct Signature {
    pub key: PublicKey,
    bytes: ed25519_dalek::Signature,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignatureFile {
    key: String,
    signature: String,
}

impl Signature {
    /// From its key id and base64 text (a `.sig` file's or `weir.lock`'s fields).
    pub fn from_parts(key: &str, signature: &str) -> Result<Signature, SignError> {
        let bytes: [u8; 64] = BASE64
            .decode(signature.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                SignError::SignatureFile("the signature is not 64 bytes of base64".into())
            })?;
        Ok(Signature {
            key: PublicKey::parse(key)?,
            bytes: ed25519_dalek::Signature::from_bytes(&bytes),
        })
    }

    /// A `.sig` file's contents.
    pub fn parse_file(text: &str) -> Result<Signature, SignError> {
        let file: SignatureFile =
            toml::from_str(text).map_err(|e| SignError::SignatureFile(e.message().to_string()))?;
        Signature::from_parts(&file.key, &file.signature)
    }

    pub fn to_file(&self) -> String {
        toml::to_string(&SignatureFile {
            key: self.key.to_string(),
            signature: self.to_base64(),
        })
        .expect("a signature serializes")
    }

    pub fn to_base64(&self) -> String {
        BASE64.encode(self.bytes.to_bytes())
    }

    /// The signature must match the component's digest and come from a trusted key; the
    /// key that signed is returned.
    pub fn check(&self, digest: &str, trusted: &[PublicKey]) -> Result<PublicKey, SignError> {
        self.key
            .0
            .verify(&message(digest), &self.bytes)
            .map_err(|_| SignError::Invalid {
                key: self.key.to_string(),
            })?;
        if !trusted.contains(&self.key) {
            return Err(SignError::Untrusted {
                key: self.key.to_string(),
            });
        }
        Ok(self.key.clone())
    }
}

fn message(digest: &str) -> Vec<u8> {
    format!("weir-plugin sha256:{digest}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_holds_for_its_digest_and_trusted_key_only() {
        let key = SecretKey::generate();
        let again = SecretKey::parse(&key.to_file()).unwrap();
        assert_eq!(again.public(), key.public());
        assert_eq!(
            PublicKey::parse(&key.public().to_string()).unwrap(),
            key.public()
        );

        let signature = Signature::parse_file(&key.sign("ab12").to_file()).unwrap();
        let trusted = [key.public()];
        assert_eq!(signature.check("ab12", &trusted).unwrap(), key.public());
        assert!(matches!(
            signature.check("ab13", &trusted),
            Err(SignError::Invalid { .. })
        ));
        let other = SecretKey::generate().public();
        assert!(matches!(
            signature.check("ab12", &[other]),
            Err(SignError::Untrusted { .. })
        ));
        assert!(PublicKey::parse("ed25519:AAAA").is_err());
    }
}
