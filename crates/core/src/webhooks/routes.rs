//! `GET /api/admin/webhooks/deliveries`: every delivery of the outbox with its outcome, newest
//! first. For operators with `keys:manage` (endpoints hold signing secrets, as service keys do).

use axum::Json;
use axum::extract::State;
use hub_http::ApiQuery;
use hub_ledger::webhooks::{Delivery, DeliveryFilter, MAX_DELIVERY_PAGE, is_endpoint_id};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::caller::{Caller, Permissions, Scope};
use crate::error::CoreError;
use crate::ledger::InvalidInput;
use hub_http::ErrorBody;

/// A page of deliveries.
#[derive(Serialize, ToSchema)]
pub struct DeliveryPage {
    /// Newest first.
    pub deliveries: Vec<Delivery>,
    /// Pass as `before` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<i64>,
}

/// A delivery's state.
#[derive(Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Not delivered yet: waiting for its first attempt or a retry.
    Pending,
    /// Delivered: the endpoint answered 2xx.
    Succeeded,
    /// Given up on after three days of retries.
    Failed,
}

impl DeliveryStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }
}

/// Which deliveries.
#[derive(Deserialize, ToSchema, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DeliveryQuery {
    /// Only deliveries in this state.
    #[param(inline)]
    status: Option<DeliveryStatus>,
    /// Only deliveries to this endpoint (`ep_…`).
    #[param(max_length = 64, pattern = r"^ep_[0-9a-f]{1,61}$")]
    endpoint_id: Option<String>,
    /// The `id` of the last delivery of the previous page.
    #[param(minimum = 1)]
    before: Option<i64>,
    /// Deliveries a page, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// `GET /api/admin/webhooks/deliveries`.
#[utoipa::path(
    get,
    path = "/api/admin/webhooks/deliveries",
    operation_id = "listWebhookDeliveries",
    tag = "admin",
    summary = "Webhook deliveries and their outcomes",
    description = "Every delivery of a webhook event (and of users' low-balance emails), newest first: its event, endpoint, state, attempts, last HTTP status or error, and next attempt. For operators with keys:manage.",
    params(DeliveryQuery),
    responses(
        (status = 200, description = "A page of deliveries.", body = DeliveryPage),
        (status = 403, description = "The caller lacks keys:manage.", body = ErrorBody),
        (status = 422, description = "A filter is not valid.", body = ErrorBody),
    ),
    security(("serviceKey" = []), ("bearerJwt" = []))
)]
pub async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<DeliveryQuery>,
) -> Result<Json<DeliveryPage>, CoreError> {
    caller.authorize(&state, Scope::KeysManage).await?;
    let limit = query.limit.unwrap_or(100);
    let endpoint_ok = query.endpoint_id.as_deref().is_none_or(is_endpoint_id);
    if !(1..=MAX_DELIVERY_PAGE).contains(&limit)
        || query.before.is_some_and(|b| b < 1)
        || !endpoint_ok
    {
        return Err(InvalidInput {
            code: "invalid_query",
            message: format!(
                "limit is 1 to {MAX_DELIVERY_PAGE}; before is a positive id; endpoint_id is ep_ and hex"
            ),
            too_large: false,
        }
        .into());
    }
    let filter = DeliveryFilter {
        status: query.status.map(|s| s.as_str().to_owned()),
        endpoint_id: query.endpoint_id,
        before: query.before,
        limit: limit + 1,
    };
    let mut deliveries = state.store.list_deliveries(&filter).await?;
    let next_before = hub_ledger::paging::cut_page(&mut deliveries, limit, |d| d.id);
    Ok(Json(DeliveryPage {
        deliveries,
        next_before,
    }))
}
