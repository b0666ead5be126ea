//! Idempotency keys: a request carried out once, its repeats answered with the first outcome.

use serde_json::Value;
use sha2::{Digest, Sha256};

/// An idempotency key as the store sees it: scoped to its caller, with the request's fingerprint.
#[derive(Debug, Clone)]
pub struct IdempotencyClaim {
    /// Who sent it (the caller and the user acted for), so that keys of different callers
    /// never meet.
    pub scope: String,
    /// The caller's key.
    pub key: String,
    /// A hash of the operation and its input; the same key with another request is refused.
    pub fingerprint: String,
}

impl IdempotencyClaim {
    /// Builds a claim for one operation and its canonical input.
    pub fn new(scope: String, key: String, operation: &str, input: &Value) -> Self {
        // serde_json's map is ordered by key, so equal inputs serialize equally.
        let mut hasher = Sha256::new();
        hasher.update(operation.as_bytes());
        hasher.update([0]);
        hasher.update(input.to_string().as_bytes());
        Self {
            scope,
            key,
            fingerprint: hex::encode(hasher.finalize()),
        }
    }
}

/// How many hours an idempotency key is remembered, at least.
pub const IDEMPOTENCY_RETENTION_HOURS: i64 = 24;

/// The answer to a request that may have carried an idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub enum Idempotent<T> {
    /// Carried out now.
    Fresh(T),
    /// Carried out before; this is the first outcome again, and nothing changed.
    Replayed(T),
    /// The key was used before for a different request; nothing changed.
    KeyReused,
}

impl<T> Idempotent<T> {
    /// The outcome, fresh or replayed.
    pub fn outcome(&self) -> Option<&T> {
        match self {
            Self::Fresh(outcome) | Self::Replayed(outcome) => Some(outcome),
            Self::KeyReused => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_ignore_key_order_but_not_values() {
        let a = IdempotencyClaim::new(
            "s".into(),
            "k".into(),
            "deduct",
            &serde_json::json!({"a": 1, "b": 2}),
        );
        let b = IdempotencyClaim::new(
            "s".into(),
            "k".into(),
            "deduct",
            &serde_json::json!({"b": 2, "a": 1}),
        );
        let c = IdempotencyClaim::new(
            "s".into(),
            "k".into(),
            "deduct",
            &serde_json::json!({"a": 1, "b": 3}),
        );
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_ne!(a.fingerprint, c.fingerprint);
    }
}
