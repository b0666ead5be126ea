//! The video ids the hub hands out: the provider's id and a signature over it and its owner,
//! `<provider id>.<signature>`. Only the user a video was made for can ask about it (another
//! user's id fails the signature), nothing has to be stored to know it, and any replica can
//! check it. The provider's id is checked to be plain before it goes into a provider URL.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// How many bytes of the HMAC the id carries (128 bits).
const SIGNATURE_BYTES: usize = 16;

/// The key video ids are signed with, derived from the hub's internal credential.
#[derive(Clone)]
pub struct VideoIds {
    key: [u8; 32],
}

impl VideoIds {
    /// Keys derived from `secret` (the internal credential), under a label of their own.
    pub fn new(secret: &str) -> Self {
        let mut digest = Sha256::new();
        digest.update(b"smart-ai-hub video ids v1\0");
        digest.update(secret.as_bytes());
        Self {
            key: digest.finalize().into(),
        }
    }

    fn mac(&self, user: Uuid, provider_id: &str) -> Hmac<Sha256> {
        // A key of any length is accepted; 32 bytes always is.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(user.as_bytes());
        mac.update(provider_id.as_bytes());
        mac
    }

    /// The id to hand to `user` for the provider's video `provider_id`.
    pub fn issue(&self, user: Uuid, provider_id: &str) -> String {
        let tag = self.mac(user, provider_id).finalize().into_bytes();
        format!(
            "{provider_id}.{}",
            URL_SAFE_NO_PAD.encode(&tag[..SIGNATURE_BYTES])
        )
    }

    /// The provider's id behind `id`, if `id` was issued to `user`.
    pub fn open<'a>(&self, user: Uuid, id: &'a str) -> Option<&'a str> {
        let (provider_id, signature) = id.rsplit_once('.')?;
        if !plain_provider_id(provider_id) {
            return None;
        }
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        if signature.len() != SIGNATURE_BYTES {
            return None;
        }
        self.mac(user, provider_id)
            .verify_truncated_left(&signature)
            .ok()
            .map(|()| provider_id)
    }
}

/// Whether a provider's video id is safe to put in a URL path as it is: 1 to 128 of
/// `[A-Za-z0-9_-]`.
pub fn plain_provider_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_opens_only_for_its_owner_and_only_unchanged() {
        let ids = VideoIds::new("an internal credential of some length");
        let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
        let id = ids.issue(alice, "video_123");
        assert_eq!(ids.open(alice, &id), Some("video_123"));
        assert_eq!(ids.open(bob, &id), None, "another user's video");
        let other_key = VideoIds::new("another hub's credential");
        assert_eq!(other_key.open(alice, &id), None);
        let swapped = id.replace("video_123", "video_124");
        assert_eq!(
            ids.open(alice, &swapped),
            None,
            "another video, same signature"
        );
        for junk in ["", "video_123", "video_123.", ".abc", "../x.abc", "a/b.sig"] {
            assert_eq!(ids.open(alice, junk), None, "{junk:?}");
        }
        assert!(!plain_provider_id("../../admin"));
        assert!(!plain_provider_id("a%2Fb"));
        assert!(plain_provider_id("video_68d7-abc"));
    }
}
