//! Passwords: argon2id with the crate's default parameters, in PHC strings.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

/// The shortest and longest passwords accepted (no other composition rules).
pub const LENGTH: std::ops::RangeInclusive<usize> = 8..=128;

/// Whether a password's length is acceptable (counted in characters).
pub fn acceptable(password: &str) -> bool {
    LENGTH.contains(&password.chars().count())
}

/// Hashes a password (CPU-heavy: run it off the async workers).
pub async fn hash(password: String) -> Result<String, String> {
    tokio::task::spawn_blocking(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .map(|hash| hash.to_string())
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Checks a password against a stored hash; with no hash (no such account, or a Google-only
/// one) it checks against a dummy, so that both answers take the same time.
pub async fn verify(password: String, stored: Option<String>) -> bool {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let has_account = stored.is_some();
    tokio::task::spawn_blocking(move || {
        let phc = stored.unwrap_or_else(|| {
            DUMMY
                .get_or_init(|| {
                    Argon2::default()
                        .hash_password(b"no account has this password")
                        .map(|hash| hash.to_string())
                        .unwrap_or_default()
                })
                .clone()
        });
        let matches = PasswordHash::new(&phc)
            .map(|hash| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &hash)
                    .is_ok()
            })
            .unwrap_or(false);
        has_account && matches
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let phc = hash("correct horse battery".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$"));
        assert!(verify("correct horse battery".into(), Some(phc.clone())).await);
        assert!(!verify("wrong horse battery".into(), Some(phc)).await);
        assert!(!verify("anything at all".into(), None).await);
    }

    #[test]
    fn only_length_is_checked() {
        assert!(!acceptable("short"));
        assert!(acceptable("12345678"));
        assert!(acceptable(&"é".repeat(128)));
        assert!(!acceptable(&"x".repeat(129)));
    }
}
