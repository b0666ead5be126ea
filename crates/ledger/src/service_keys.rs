//! Service keys: `hub_sk_…` credentials an operator creates for a server, with scopes. The key is
//! shown once; only its SHA-256 hash is kept.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::{InvalidInput, StoreError};

/// The prefix every service key carries.
pub const KEY_PREFIX: &str = "hub_sk_";

/// The scopes a key may hold.
pub const SCOPES: [&str; 7] = [
    "credits:check",
    "credits:deduct",
    "credits:refund",
    "credits:grant",
    "users:read",
    "usage:read",
    "gpt",
];

/// A service key as stored (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceKey {
    /// Public id (`sk_…`), used to list and revoke.
    pub id: String,
    /// What the operator called it.
    pub name: String,
    /// What it may do.
    pub scopes: Vec<String>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A key just made: the only time the key itself exists outside its holder.
#[derive(Debug, Clone)]
pub struct NewServiceKey {
    /// The stored part.
    pub record: ServiceKey,
    /// The key to hand over.
    pub key: String,
}

/// The hex SHA-256 of a key: the form in which keys are stored and looked up.
pub fn key_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Checks a key's name and scopes, and makes the key and its record.
pub fn new_key(name: &str, scopes: &[String]) -> Result<NewServiceKey, InvalidInput> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(InvalidInput {
            code: "invalid_name",
            message: "a key's name must be 1 to 100 characters".into(),
            too_large: false,
        });
    }
    if scopes.is_empty() || scopes.iter().any(|s| !SCOPES.contains(&s.as_str())) {
        return Err(InvalidInput {
            code: "invalid_scopes",
            message: format!("scopes must be one or more of {}", SCOPES.join(", ")),
            too_large: false,
        });
    }
    let mut secret = [0u8; 32];
    let mut id = [0u8; 6];
    let random = getrandom::fill(&mut secret).and_then(|()| getrandom::fill(&mut id));
    random.map_err(|e| InvalidInput {
        code: "no_randomness",
        message: format!("the OS random source failed: {e}"),
        too_large: false,
    })?;
    let mut scopes: Vec<String> = scopes.to_vec();
    scopes.sort();
    scopes.dedup();
    Ok(NewServiceKey {
        key: format!("{KEY_PREFIX}{}", hex::encode(secret)),
        record: ServiceKey {
            id: format!("sk_{}", hex::encode(id)),
            name: name.to_owned(),
            scopes,
            created_at: Utc::now(),
            revoked_at: None,
        },
    })
}

/// Storage of service keys.
#[async_trait]
pub trait ServiceKeyStore: Send + Sync {
    /// Keeps a new key (its hash).
    async fn insert_service_key(&self, key: &NewServiceKey) -> Result<(), StoreError>;
    /// The live (not revoked) key with this hash.
    async fn find_service_key(&self, key_hash: &str) -> Result<Option<ServiceKey>, StoreError>;
    /// Every key, newest first.
    async fn list_service_keys(&self) -> Result<Vec<ServiceKey>, StoreError>;
    /// Revokes a key by id; `false` if there is no live key with this id.
    async fn revoke_service_key(&self, id: &str) -> Result<bool, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_random_and_scopes_checked() {
        let scopes = vec![
            "credits:deduct".to_owned(),
            "credits:check".to_owned(),
            "credits:check".to_owned(),
        ];
        let a = new_key("sora2", &scopes).unwrap();
        let b = new_key("sora2", &scopes).unwrap();
        assert!(a.key.starts_with(KEY_PREFIX) && a.key.len() == KEY_PREFIX.len() + 64);
        assert_ne!(a.key, b.key);
        assert_ne!(a.record.id, b.record.id);
        assert_eq!(a.record.scopes, ["credits:check", "credits:deduct"]);
        assert!(new_key("x", &["credits:everything".to_owned()]).is_err());
        assert!(new_key("x", &[]).is_err());
        assert!(new_key("", &scopes).is_err());
    }
}
