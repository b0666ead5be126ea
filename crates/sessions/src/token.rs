//! Session tokens: how one is drawn, what shape it has, and the hash it is stored as.

use sha2::{Digest, Sha256};

use crate::SessionError;

/// The prefix every session token carries.
pub const TOKEN_PREFIX: &str = "VERIFIED-";
const TOKEN_CHARS: usize = 32;
const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A new session token; only its hash is ever stored.
pub fn new_token() -> Result<String, SessionError> {
    let mut token = String::with_capacity(TOKEN_PREFIX.len() + TOKEN_CHARS);
    token.push_str(TOKEN_PREFIX);
    let mut pool = [0u8; 64];
    while token.len() < TOKEN_PREFIX.len() + TOKEN_CHARS {
        getrandom::fill(&mut pool)
            .map_err(|e| SessionError::Unavailable(format!("OS random source: {e}")))?;
        // 248 = 4 × 62: rejecting the rest keeps every character equally likely.
        for byte in pool.iter().filter(|b| **b < 248) {
            if token.len() == TOKEN_PREFIX.len() + TOKEN_CHARS {
                break;
            }
            token.push(BASE62[usize::from(*byte % 62)] as char);
        }
    }
    Ok(token)
}

/// Whether a string has the shape of a session token (checked before any lookup).
pub fn looks_like_token(token: &str) -> bool {
    token.strip_prefix(TOKEN_PREFIX).is_some_and(|rest| {
        rest.len() == TOKEN_CHARS && rest.bytes().all(|b| b.is_ascii_alphanumeric())
    })
}

/// The hex SHA-256 of a token: the only form in which a token is stored.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_have_the_promised_shape_and_differ() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert!(looks_like_token(&a), "{a}");
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 32);
        assert_ne!(a, b);
        assert!(!looks_like_token("VERIFIED-short"));
        assert!(!looks_like_token(&a.replace("VERIFIED-", "verified-")));
        assert!(!looks_like_token(&format!("{a}x")));
    }

    #[test]
    fn the_alphabet_is_used_evenly() {
        // 2,000 tokens = 64,000 characters; each of 62 characters expected ~1,032 times.
        let mut counts = [0u32; 62];
        for _ in 0..2000 {
            for c in new_token().unwrap()[TOKEN_PREFIX.len()..].bytes() {
                let i = BASE62.iter().position(|b| *b == c).unwrap();
                counts[i] += 1;
            }
        }
        assert!(
            counts.iter().all(|&n| (800..1300).contains(&n)),
            "{counts:?}"
        );
    }

    #[test]
    fn hashes_are_hex_sha256() {
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
