//! Schemas the API documents name that no handler type carries.

pub use hub_http::ErrorBody;
use hub_http::ErrorDetail;

/// The balance does not cover the cost (402).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct InsufficientCredits {
    /// `insufficient_credits`.
    error: ErrorDetail,
    /// The balance seen.
    balance: i64,
    /// `false` (check only).
    sufficient: Option<bool>,
}
