//! Schemas the API documents name that no handler type carries.

pub use hub_http::ErrorBody;
use hub_http::ErrorDetail;

/// The balance does not cover the cost (402).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct InsufficientCredits {
    /// `insufficient_credits`.
    error: ErrorDetail,
    /// What was available: the balance less live holds.
    balance: i64,
    /// What live holds set aside.
    held: i64,
    /// The cost asked.
    cost: i64,
    /// What refused it: `balance`, or `held` when the balance alone would have covered the cost.
    limit: String,
    /// `false` (check only).
    sufficient: Option<bool>,
}
