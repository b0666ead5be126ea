//! The CSRF token of the browser pages' forms: an HMAC of the browser's session id under the auth
//! service's page secret, checked in constant time. It is bound to one sign-in of one browser, so
//! another browser's (or another hub's) token is refused.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::AppState;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8; 32], session_id: &str) -> HmacSha256 {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(b"browser-page:");
    mac.update(session_id.as_bytes());
    mac
}

/// The CSRF token of the pages shown to the browser signed in with this session.
pub(crate) fn token(state: &AppState, session_id: &str) -> String {
    token_under(state.jwt.page_secret(), session_id)
}

/// Whether `presented` is this session's token.
pub(crate) fn valid(state: &AppState, session_id: &str, presented: &str) -> bool {
    valid_under(state.jwt.page_secret(), session_id, presented)
}

fn token_under(secret: &[u8; 32], session_id: &str) -> String {
    hex::encode(mac(secret, session_id).finalize().into_bytes())
}

fn valid_under(secret: &[u8; 32], session_id: &str, presented: &str) -> bool {
    hex::decode(presented).is_ok_and(|bytes| mac(secret, session_id).verify_slice(&bytes).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_bound_to_its_session_and_its_secret_and_checked_whole() {
        let secret = [7u8; 32];
        let good = token_under(&secret, "session-a");
        assert_eq!(good.len(), 64);
        assert!(valid_under(&secret, "session-a", &good));
        assert!(
            !valid_under(&secret, "session-b", &good),
            "another session's page"
        );
        assert!(
            !valid_under(&[8u8; 32], "session-a", &good),
            "another hub's secret"
        );
        assert!(!valid_under(&secret, "session-a", &good[..62]), "a prefix");
        assert!(!valid_under(&secret, "session-a", ""), "none");
        assert!(!valid_under(&secret, "session-a", "not hex at all"));
    }
}
