//! Secrets at rest: carrier keys, webhook signing secrets, SMTP and Odoo credentials are stored
//! sealed with AES-256-GCM under a versioned master key ring.
//!
//! - The master keys come from the environment (`DISPATCHD_MASTER_KEY`) or a key file
//!   (`DISPATCHD_MASTER_KEY_FILE`), never from the database, so a stolen database alone reveals
//!   nothing.
//! - Several key versions can be active at once: new secrets are sealed with the highest
//!   version, old ones still open with theirs. Rotation is: add a new version, restart (or
//!   reload) every node, re-seal (`needs_reseal`), then drop the old version.
//! - Each sealed value is bound to its *purpose* (associated data, e.g.
//!   `webhook_endpoint:ep_123`), so a ciphertext copied into another row does not open.
//!
//! Sealed text format: `dsv1:<key version>:<base64(nonce ‖ ciphertext ‖ tag)>`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use aes_gcm::aead::{Aead, Generate, Key, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::secret::Secret;

const PREFIX: &str = "dsv1";
const NONCE_LEN: usize = 12;
pub const ENV_KEY: &str = "DISPATCHD_MASTER_KEY";
pub const ENV_KEY_FILE: &str = "DISPATCHD_MASTER_KEY_FILE";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VaultError {
    #[error("master key entry {0} is not `<version>:<base64 of 32 bytes>`; generate one with `dispatchd key generate`")]
    BadKeyEntry(usize),
    #[error("master key version {0} is listed twice")]
    DuplicateVersion(u32),
    #[error("no master key given: set {ENV_KEY} or {ENV_KEY_FILE}")]
    NoKey,
    #[error("cannot read the master key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error("sealed value is malformed (expected `dsv1:<version>:<base64>`)")]
    Malformed,
    #[error("sealed with master key version {0}, which is not loaded; add it back to {ENV_KEY} to open it")]
    UnknownVersion(u32),
    /// Wrong key, wrong purpose or tampered ciphertext: GCM cannot tell which, on purpose.
    #[error("sealed value does not open with this key and purpose (tampered, or a different key)")]
    Unauthentic,
    #[error("opened secret is not UTF-8 text")]
    NotText,
}

/// The master key ring. `Debug` shows versions only.
#[derive(Clone)]
pub struct Vault {
    keys: BTreeMap<u32, Aes256Gcm>,
    active: u32,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("versions", &self.keys.keys().collect::<Vec<_>>())
            .field("active", &self.active)
            .finish()
    }
}

impl Vault {
    /// Parses a key ring: entries `<version>:<base64 key>` separated by commas or new lines;
    /// blank lines and `#` comments are ignored. The highest version seals.
    pub fn parse(spec: &str) -> Result<Vault, VaultError> {
        let mut keys = BTreeMap::new();
        let entries = spec.split([',', '\n']).map(str::trim).filter(|e| !e.is_empty() && !e.starts_with('#'));
        for (i, entry) in entries.enumerate() {
            let bad = || VaultError::BadKeyEntry(i + 1);
            let (version, key) = entry.split_once(':').ok_or_else(bad)?;
            let version: u32 = version.trim().parse().map_err(|_| bad())?;
            let bytes = B64.decode(key.trim()).map_err(|_| bad())?;
            let key = Key::<Aes256Gcm>::try_from(bytes.as_slice()).map_err(|_| bad())?;
            if keys.insert(version, Aes256Gcm::new(&key)).is_some() {
                return Err(VaultError::DuplicateVersion(version));
            }
        }
        let active = *keys.keys().next_back().ok_or(VaultError::NoKey)?;
        Ok(Vault { keys, active })
    }

    /// The ring from `DISPATCHD_MASTER_KEY`, else from the file named by
    /// `DISPATCHD_MASTER_KEY_FILE`; `None` when neither is set.
    pub fn from_env() -> Result<Option<Vault>, VaultError> {
        if let Ok(spec) = std::env::var(ENV_KEY) {
            return Vault::parse(&spec).map(Some);
        }
        match std::env::var(ENV_KEY_FILE) {
            Ok(path) => Vault::from_file(Path::new(&path)).map(Some),
            Err(_) => Ok(None),
        }
    }

    pub fn from_file(path: &Path) -> Result<Vault, VaultError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| VaultError::KeyFile { path: path.display().to_string(), reason: e.to_string() })?;
        Vault::parse(&text)
    }

    /// A fresh random key entry for `version`, in the ring's text format.
    pub fn generate_entry(version: u32) -> String {
        let key = Key::<Aes256Gcm>::generate();
        format!("{version}:{}", B64.encode(key.as_slice()))
    }

    pub fn active_version(&self) -> u32 {
        self.active
    }

    /// Seals `secret` for `purpose` with the active key and a fresh random nonce.
    pub fn seal(&self, purpose: &str, secret: &str) -> String {
        let cipher = &self.keys[&self.active];
        let nonce = Nonce::generate();
        let payload = Payload { msg: secret.as_bytes(), aad: purpose.as_bytes() };
        // Encryption of an in-memory buffer under a valid key cannot fail (only the length
        // limit of 64 GiB could), so this is not input-derived failure.
        let sealed = cipher.encrypt(&nonce, payload).expect("AES-GCM encryption of a secret under 64 GiB");
        let mut raw = Vec::with_capacity(NONCE_LEN + sealed.len());
        raw.extend_from_slice(nonce.as_slice());
        raw.extend_from_slice(&sealed);
        format!("{PREFIX}:{}:{}", self.active, B64.encode(raw))
    }

    /// Opens a value sealed for `purpose`, with whichever loaded key version sealed it.
    pub fn open(&self, purpose: &str, sealed: &str) -> Result<Secret, VaultError> {
        let (version, raw) = split(sealed)?;
        let cipher = self.keys.get(&version).ok_or(VaultError::UnknownVersion(version))?;
        if raw.len() <= NONCE_LEN {
            return Err(VaultError::Malformed);
        }
        let (nonce, body) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_from(nonce).map_err(|_| VaultError::Malformed)?;
        let plain = cipher
            .decrypt(&nonce, Payload { msg: body, aad: purpose.as_bytes() })
            .map_err(|_| VaultError::Unauthentic)?;
        String::from_utf8(plain).map(Secret::new).map_err(|_| VaultError::NotText)
    }

    /// Whether `sealed` was sealed with an older key version and should be re-sealed.
    pub fn needs_reseal(&self, sealed: &str) -> bool {
        split(sealed).is_ok_and(|(v, _)| v != self.active)
    }
}

fn split(sealed: &str) -> Result<(u32, Vec<u8>), VaultError> {
    let mut parts = sealed.splitn(3, ':');
    let (Some(PREFIX), Some(version), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(VaultError::Malformed);
    };
    let version = version.parse().map_err(|_| VaultError::Malformed)?;
    let raw = B64.decode(body).map_err(|_| VaultError::Malformed)?;
    Ok((version, raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(versions: &[u32]) -> String {
        versions.iter().map(|v| Vault::generate_entry(*v)).collect::<Vec<_>>().join(",")
    }

    #[test]
    fn seals_and_opens_with_its_purpose_only() {
        let vault = Vault::parse(&ring(&[1])).unwrap();
        let sealed = vault.seal("webhook_endpoint:ep_1", "whsec_abc");
        assert!(sealed.starts_with("dsv1:1:"));
        assert!(!sealed.contains("whsec_abc"));
        assert_eq!(vault.open("webhook_endpoint:ep_1", &sealed).unwrap().expose(), "whsec_abc");
        assert_eq!(vault.open("webhook_endpoint:ep_2", &sealed), Err(VaultError::Unauthentic));
    }

    #[test]
    fn nonces_differ_so_equal_secrets_do_not_look_equal() {
        let vault = Vault::parse(&ring(&[1])).unwrap();
        assert_ne!(vault.seal("p", "same"), vault.seal("p", "same"));
    }

    #[test]
    fn tampering_is_detected() {
        let vault = Vault::parse(&ring(&[1])).unwrap();
        let sealed = vault.seal("p", "secret");
        let (head, body) = sealed.rsplit_once(':').unwrap();
        let mut raw = B64.decode(body).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        let tampered = format!("{head}:{}", B64.encode(raw));
        assert_eq!(vault.open("p", &tampered), Err(VaultError::Unauthentic));
        assert_eq!(vault.open("p", "dsv1:1:!!"), Err(VaultError::Malformed));
        assert_eq!(vault.open("p", "plain"), Err(VaultError::Malformed));
    }

    #[test]
    fn rotation_keeps_old_secrets_readable_and_seals_with_the_newest() {
        let old_entry = Vault::generate_entry(1);
        let old = Vault::parse(&old_entry).unwrap();
        let sealed_old = old.seal("p", "v1 secret");

        let rotated = Vault::parse(&format!("{old_entry}\n{}", Vault::generate_entry(2))).unwrap();
        assert_eq!(rotated.active_version(), 2);
        assert_eq!(rotated.open("p", &sealed_old).unwrap().expose(), "v1 secret");
        assert!(rotated.needs_reseal(&sealed_old));
        let resealed = rotated.seal("p", "v1 secret");
        assert!(!rotated.needs_reseal(&resealed));

        // Once version 1 is dropped, what it sealed says which key is missing.
        let new_only = Vault::parse(&ring(&[2])).unwrap();
        assert_eq!(new_only.open("p", &sealed_old), Err(VaultError::UnknownVersion(1)));
    }

    #[test]
    fn bad_rings_are_rejected_with_the_entry_named() {
        assert_eq!(Vault::parse("").unwrap_err(), VaultError::NoKey);
        assert_eq!(Vault::parse("# only a comment\n").unwrap_err(), VaultError::NoKey);
        assert_eq!(Vault::parse("1:short").unwrap_err(), VaultError::BadKeyEntry(1));
        let good = Vault::generate_entry(1);
        assert_eq!(Vault::parse(&format!("{good},x:abc")).unwrap_err(), VaultError::BadKeyEntry(2));
        assert_eq!(Vault::parse(&format!("{good},{good}")).unwrap_err(), VaultError::DuplicateVersion(1));
    }

    #[test]
    fn debug_shows_no_key_material() {
        let entry = Vault::generate_entry(7);
        let vault = Vault::parse(&entry).unwrap();
        let shown = format!("{vault:?}");
        assert_eq!(shown, "Vault { versions: [7], active: 7 }");
    }
}
