//! The links to a video's file the hub hands its owner: an address on the hub, not the
//! provider's, signed over the video, its owner and an expiry, so a click in a chat window opens
//! it without headers and nothing of the operator's key reaches anyone.
//!
//! `GET {PUBLIC_BASE_URL}/api/mcp/v1/videos/{video_id}/content?user=…&expires=…&signature=…`:
//! the `video_id` is the one `generate_video` gave (itself signed for its owner), `expires` is
//! a Unix time, and `signature` is an HMAC-SHA256 over the three with a key of its own derived
//! from the internal credential, so any replica can check a link and nothing is stored.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// How many bytes of the HMAC a link carries (128 bits).
const SIGNATURE_BYTES: usize = 16;

/// Why a link does not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a link the hub made: changed, or made for another video or user.
    Forged,
    /// A link the hub made, past its expiry.
    Expired,
}

/// Makes and checks video links.
#[derive(Clone)]
pub struct VideoLinks {
    key: [u8; 32],
    base_url: String,
    ttl_seconds: u64,
}

impl VideoLinks {
    /// Links on `base_url` (the gateway's public address), each valid `ttl_seconds`, signed
    /// with a key derived from `secret` (the internal credential) under a label of its own.
    pub fn new(secret: &str, base_url: &str, ttl_seconds: u64) -> Self {
        let mut digest = Sha256::new();
        digest.update(b"smart-ai-hub video links v1\0");
        digest.update(secret.as_bytes());
        Self {
            key: digest.finalize().into(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            ttl_seconds,
        }
    }

    fn tag(&self, video_id: &str, user: Uuid, expires: u64) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(user.as_bytes());
        mac.update(&expires.to_be_bytes());
        mac.update(video_id.as_bytes());
        mac
    }

    /// The link to `video_id` (a hub video id, plain enough for a path) for `user`, valid from
    /// `now` (Unix seconds) for the configured time; and when it expires.
    pub fn link(&self, video_id: &str, user: Uuid, now: u64) -> (String, u64) {
        let expires = now.saturating_add(self.ttl_seconds);
        let signature = self.tag(video_id, user, expires).finalize().into_bytes();
        let url = format!(
            "{}/api/mcp/v1/videos/{video_id}/content?user={user}&expires={expires}&signature={}",
            self.base_url,
            URL_SAFE_NO_PAD.encode(&signature[..SIGNATURE_BYTES])
        );
        (url, expires)
    }

    /// Whether a link's parts are ones this hub signed and still valid at `now`. The
    /// signature is checked first, in constant time, so a forged link learns nothing of expiry.
    pub fn check(
        &self,
        video_id: &str,
        user: Uuid,
        expires: u64,
        signature: &str,
        now: u64,
    ) -> Result<(), Refusal> {
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|_| Refusal::Forged)?;
        if signature.len() != SIGNATURE_BYTES {
            return Err(Refusal::Forged);
        }
        self.tag(video_id, user, expires)
            .verify_truncated_left(&signature)
            .map_err(|_| Refusal::Forged)?;
        if now >= expires {
            return Err(Refusal::Expired);
        }
        Ok(())
    }
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(url: &str) -> (String, Uuid, u64, String) {
        let (path, query) = url.split_once('?').unwrap();
        let video = path
            .trim_end_matches("/content")
            .rsplit('/')
            .next()
            .unwrap()
            .to_owned();
        let value = |name: &str| {
            query
                .split('&')
                .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
                .unwrap()
                .to_owned()
        };
        (
            video,
            value("user").parse().unwrap(),
            value("expires").parse().unwrap(),
            value("signature"),
        )
    }

    #[test]
    fn a_link_opens_unchanged_until_it_expires_and_for_nothing_else() {
        let links = VideoLinks::new("an internal credential of some length", "https://hub/", 600);
        let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
        let (url, expires) = links.link("video_1.sig", alice, 1_000);
        assert_eq!(expires, 1_600);
        assert!(url.starts_with("https://hub/api/mcp/v1/videos/video_1.sig/content?"));
        let (video, user, expires, signature) = parts(&url);
        assert_eq!(
            links.check(&video, user, expires, &signature, 1_599),
            Ok(())
        );
        assert_eq!(
            links.check(&video, user, expires, &signature, 1_600),
            Err(Refusal::Expired)
        );
        let refused = [
            links.check("video_2.sig", user, expires, &signature, 1_000),
            links.check(&video, bob, expires, &signature, 1_000),
            links.check(&video, user, expires + 3_600, &signature, 1_000),
            links.check(&video, user, expires, "AAAAAAAAAAAAAAAAAAAAAA", 1_000),
            links.check(&video, user, expires, "", 1_000),
            links.check(&video, user, expires, "not base64!", 1_000),
        ];
        assert!(
            refused.iter().all(|r| *r == Err(Refusal::Forged)),
            "{refused:?}"
        );
        let other_hub = VideoLinks::new("another hub's credential", "https://hub", 600);
        assert_eq!(
            other_hub.check(&video, user, expires, &signature, 1_000),
            Err(Refusal::Forged)
        );
        // A forged link is forged, expired or not.
        assert_eq!(
            links.check(&video, bob, expires, &signature, 9_999),
            Err(Refusal::Forged)
        );
    }
}
