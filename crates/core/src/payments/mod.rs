//! The payment routes: `POST /api/mcp/v1/credits/checkout` and `POST /webhooks/stripe`. The packs,
//! the Checkout Sessions and the signature check are [`hub_payments`], shared with the account
//! page's "buy credits".

pub mod routes;

pub use hub_payments::*;
pub use routes::{CheckoutBody, CheckoutOk, checkout, webhook};
