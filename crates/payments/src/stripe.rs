//! Stripe, as far as the hub needs it: the `Stripe-Signature` check of webhook deliveries, and
//! Checkout Sessions made through its API (behind [`Checkout`], so tests can stand in for it).

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

/// How far a delivery's timestamp may be from now: Stripe's own default.
pub const TOLERANCE_SECONDS: i64 = 300;

/// Why a delivery's signature was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// No header, or no `t=` and `v1=` in it.
    Malformed,
    /// The timestamp is more than [`TOLERANCE_SECONDS`] from now.
    Stale,
    /// No `v1` signature matches.
    Mismatch,
}

/// Checks a `Stripe-Signature` header (`t=<unix time>,v1=<hex HMAC-SHA256>,…`) over the raw body:
/// the HMAC of `"{t}.{body}"` keyed with the endpoint's secret, compared in constant time, with
/// the timestamp within [`TOLERANCE_SECONDS`] of `now`.
pub fn verify(secret: &str, header: &str, body: &[u8], now: i64) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", hex_sig)) => signatures.extend(hex::decode(hex_sig).ok()),
            _ => {}
        }
    }
    let Some(timestamp) = timestamp else {
        return Err(SignatureError::Malformed);
    };
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now - timestamp).abs() > TOLERANCE_SECONDS {
        return Err(SignatureError::Stale);
    }
    let matches = signatures.iter().any(|signature| {
        // `verify_slice` compares in constant time.
        signer(secret, timestamp, body)
            .verify_slice(signature)
            .is_ok()
    });
    if matches {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

fn signer(secret: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `Stripe-Signature` header Stripe would send for `body` at `timestamp` (for tests and
/// tools that replay deliveries).
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let signature = signer(secret, timestamp, body).finalize().into_bytes();
    format!("t={timestamp},v1={}", hex::encode(signature))
}

/// A Checkout Session to make for a credit pack.
#[derive(Debug, Clone)]
pub struct CheckoutRequest {
    /// The buyer (`client_reference_id` and `metadata[hub_user_id]`).
    pub user_id: uuid::Uuid,
    /// The pack's credits as configured (`metadata[pack]`).
    pub pack: String,
    /// The price in the currency's minor unit.
    pub unit_amount: i64,
    /// Lower-case ISO currency code.
    pub currency: String,
    /// Where Stripe sends the buyer after paying.
    pub success_url: String,
    /// Where Stripe sends the buyer who gives up.
    pub cancel_url: String,
}

/// A Checkout Session made.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CheckoutSession {
    /// `cs_…`.
    pub id: String,
    /// Where to send the buyer.
    pub url: String,
}

/// Makes Checkout Sessions.
#[async_trait]
pub trait Checkout: Send + Sync {
    /// Makes one; the error is a sentence for the logs.
    async fn create(&self, request: &CheckoutRequest) -> Result<CheckoutSession, String>;
}

/// Stripe's API (`STRIPE_API_BASE`, default `https://api.stripe.com`) with a secret key.
pub struct StripeApi {
    /// The HTTP client.
    pub http: reqwest::Client,
    /// `https://api.stripe.com`, or a stand-in.
    pub base: String,
    /// `sk_live_…` or `sk_test_…`.
    pub secret_key: String,
}

#[async_trait]
impl Checkout for StripeApi {
    async fn create(&self, request: &CheckoutRequest) -> Result<CheckoutSession, String> {
        let user = request.user_id.to_string();
        let name = format!("{} credits", request.pack);
        let form = [
            ("mode", "payment"),
            ("client_reference_id", user.as_str()),
            ("metadata[hub_user_id]", user.as_str()),
            ("metadata[pack]", request.pack.as_str()),
            ("line_items[0][quantity]", "1"),
            (
                "line_items[0][price_data][currency]",
                request.currency.as_str(),
            ),
            (
                "line_items[0][price_data][unit_amount]",
                &request.unit_amount.to_string(),
            ),
            (
                "line_items[0][price_data][product_data][name]",
                name.as_str(),
            ),
            ("success_url", request.success_url.as_str()),
            ("cancel_url", request.cancel_url.as_str()),
        ];
        let response = self
            .http
            .post(format!("{}/v1/checkout/sessions", self.base))
            .bearer_auth(&self.secret_key)
            .form(&form)
            .send()
            .await
            .map_err(|e| format!("Stripe is unreachable: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(format!(
                "Stripe answered {status}: {}",
                text.chars().take(300).collect::<String>()
            ));
        }
        response
            .json::<CheckoutSession>()
            .await
            .map_err(|e| format!("Stripe's answer is not a Checkout Session: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret";

    #[test]
    fn a_signature_is_checked_over_the_raw_body_and_the_time() {
        let body = br#"{"id":"evt_1","type":"checkout.session.completed"}"#;
        let header = sign(SECRET, 1_700_000_000, body);
        assert_eq!(verify(SECRET, &header, body, 1_700_000_100), Ok(()));
        assert_eq!(
            verify(SECRET, &header, body, 1_700_000_301),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(SECRET, &header, body, 1_699_999_699),
            Err(SignatureError::Stale)
        );
        let changed = br#"{"id":"evt_1","type":"checkout.session.completed" }"#;
        assert_eq!(
            verify(SECRET, &header, changed, 1_700_000_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("whsec_other", &header, body, 1_700_000_000),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, "v1=00", body, 1_700_000_000),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(SECRET, "t=1700000000", body, 1_700_000_000),
            Err(SignatureError::Malformed)
        );
        // Any one of several v1 signatures (a rolled secret) will do; v0 never counts.
        let v1 = header.split_once(",v1=").unwrap().1;
        let several = format!("t=1700000000,v0={v1},v1=deadbeef,v1={v1}");
        assert_eq!(verify(SECRET, &several, body, 1_700_000_000), Ok(()));
        let only_v0 = format!("t=1700000000,v0={v1}");
        assert_eq!(
            verify(SECRET, &only_v0, body, 1_700_000_000),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn the_signature_is_stripes_documented_scheme() {
        // Stripe's documentation: the signed payload is "{timestamp}.{body}", HMAC-SHA256 with the
        // endpoint's secret (the whole whsec_… string), hex encoded. Computed independently:
        // printf '1700000000.{}' | openssl dgst -sha256 -hmac whsec_test_secret
        assert_eq!(
            sign(SECRET, 1_700_000_000, b"{}"),
            format!("t=1700000000,v1={}", expected_for_empty_object())
        );
    }

    fn expected_for_empty_object() -> &'static str {
        include_str!("../tests/fixtures/stripe_empty_object_signature.txt").trim()
    }
}
