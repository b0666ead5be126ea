//! `POST /api/mcp/v1/credits/checkout` and `POST /webhooks/stripe`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hub_config::ExposeSecret;
use hub_http::{ApiError, ApiJson};
use hub_ledger::payments::{Payment, PaymentOutcome};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::CheckoutRefusal;
use super::stripe::{self, SignatureError};
use crate::AppState;
use crate::caller::{Caller, Permissions, Scope};
use crate::error::CoreError;
use hub_http::ErrorBody;

/// A purchase to start.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CheckoutBody {
    /// The pack, by its credits as configured (e.g. `"100"`).
    #[schema(
        example = "100",
        min_length = 1,
        max_length = 13,
        pattern = r"^[0-9]{1,13}$"
    )]
    pack: String,
}

/// Where to pay.
#[derive(Serialize, ToSchema)]
pub struct CheckoutOk {
    /// Stripe's payment page: send the buyer there.
    pub checkout_url: String,
    /// The Checkout Session (`cs_…`).
    pub session_id: String,
    /// The credits the payment grants.
    pub credits: i64,
    /// The price, in the currency's minor unit.
    pub amount: i64,
    /// The currency.
    pub currency: String,
}

fn not_configured(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "payments_unavailable",
        format!("Purchases are not set up on this hub ({what})."),
    )
}

/// `POST /api/mcp/v1/credits/checkout`.
#[utoipa::path(
    post,
    path = "/api/mcp/v1/credits/checkout",
    operation_id = "buyCredits",
    tag = "credits",
    summary = "Buy a credit pack",
    description = "Starts a Stripe Checkout for one of the configured credit packs and answers the payment page's URL. The credits are granted when Stripe confirms the payment, once. For the user themselves, or a service key acting for them.",
    request_body = CheckoutBody,
    params(("X-User-ID" = Option<uuid::Uuid>, Header, description = "The user a service key acts for. End users act only as themselves.")),
    responses(
        (status = 200, description = "Send the buyer to checkout_url.", body = CheckoutOk),
        (status = 404, description = "No such pack.", body = ErrorBody),
        (status = 502, description = "Stripe did not make the session.", body = ErrorBody),
        (status = 503, description = "Purchases are not set up.", body = ErrorBody),
    ),
    security(("sessionToken" = []), ("serviceKey" = []), ("bearerJwt" = []))
)]
pub async fn checkout(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CheckoutBody>,
) -> Result<Response, CoreError> {
    let user_id = caller.acting_user(Scope::Check)?;
    let started = match state.payments.start_checkout(user_id, &body.pack).await {
        Ok(started) => started,
        Err(CheckoutRefusal::NotConfigured) => {
            return Ok(not_configured("STRIPE_SECRET_KEY").into_response());
        }
        Err(CheckoutRefusal::UnknownPack(offered)) => {
            let offered: Vec<String> = offered.iter().map(i64::to_string).collect();
            return Ok(ApiError::new(
                StatusCode::NOT_FOUND,
                "unknown_pack",
                format!(
                    "There is no pack of {} credits; the packs are: {}.",
                    body.pack,
                    offered.join(", ")
                ),
            )
            .into_response());
        }
        Err(CheckoutRefusal::Provider) => {
            return Ok(ApiError::new(
                StatusCode::BAD_GATEWAY,
                "payment_provider_error",
                "The payment provider did not start the checkout; try again shortly.",
            )
            .into_response());
        }
    };
    Ok(Json(CheckoutOk {
        checkout_url: started.session.url,
        session_id: started.session.id,
        credits: started.pack.credits,
        amount: started.pack.amount,
        currency: started.pack.currency,
    })
    .into_response())
}

/// The parts of a Stripe event the hub reads.
#[derive(Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: EventData,
}

#[derive(Deserialize)]
struct EventData {
    object: Value,
}

/// `POST /webhooks/stripe`: Stripe's deliveries. A bad signature or stale timestamp is 400 and
/// changes nothing; an event the hub does not act on is 200 and changes nothing.
pub async fn webhook(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(secret) = &state.payments.config.webhook_secret else {
        return not_configured("STRIPE_WEBHOOK_SECRET").into_response();
    };
    let header = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let now = chrono::Utc::now().timestamp();
    if let Err(why) = stripe::verify(secret.expose_secret(), header, &body, now) {
        let message = match why {
            SignatureError::Malformed => "Stripe-Signature is missing or malformed.",
            SignatureError::Stale => "The delivery's timestamp is more than 300 seconds from now.",
            SignatureError::Mismatch => "No signature matches this body.",
        };
        return ApiError::bad_request("invalid_signature", message).into_response();
    }
    let Ok(event) = serde_json::from_slice::<Event>(&body) else {
        return ApiError::bad_request("invalid_event", "The body is not a Stripe event.")
            .into_response();
    };
    let session = &event.data.object;
    let pays = match event.kind.as_str() {
        "checkout.session.completed" => session["payment_status"] == "paid",
        "checkout.session.async_payment_succeeded" => true,
        _ => false,
    };
    if !pays {
        return Json(json!({ "received": true, "granted": false })).into_response();
    }
    match grant(&state, &event.id, session).await {
        Ok(answer) => answer,
        Err(e) => e.into_response(),
    }
}

/// Grants the pack a paid Checkout Session bought, if it is one of ours and the amount matches.
async fn grant(state: &AppState, event_id: &str, session: &Value) -> Result<Response, CoreError> {
    let text = |v: &Value| v.as_str().map(str::to_owned);
    let user = text(&session["metadata"]["hub_user_id"]).and_then(|u| u.parse::<uuid::Uuid>().ok());
    let pack =
        text(&session["metadata"]["pack"]).and_then(|p| state.payments.config.pack(&p).cloned());
    let reference = text(&session["client_reference_id"]);
    let (Some(user), Some(pack), Some(session_id)) = (user, pack, text(&session["id"])) else {
        tracing::warn!(
            event_id,
            "a paid Checkout Session that names no user or pack of this hub"
        );
        return Ok(
            Json(json!({ "received": true, "granted": false, "reason": "not_ours" }))
                .into_response(),
        );
    };
    let amount = session["amount_total"].as_i64();
    let currency = text(&session["currency"]).map(|c| c.to_ascii_lowercase());
    if amount != Some(pack.amount)
        || currency.as_deref() != Some(&pack.currency)
        || reference.as_deref() != Some(&user.to_string())
    {
        tracing::warn!(
            event_id,
            session_id,
            "a paid Checkout Session whose amount, currency or buyer does not match its pack"
        );
        return Ok(
            Json(json!({ "received": true, "granted": false, "reason": "mismatch" }))
                .into_response(),
        );
    }
    let payment = Payment {
        checkout_session_id: session_id,
        event_id: event_id.to_owned(),
        user_id: user,
        credits: pack.credits,
        amount_total: pack.amount,
        currency: pack.currency,
    };
    Ok(match state.store.grant_for_payment(&payment).await? {
        PaymentOutcome::Granted { transaction } => {
            Json(json!({ "received": true, "granted": true, "transaction_id": transaction.id }))
                .into_response()
        }
        PaymentOutcome::AlreadyGranted => {
            Json(json!({ "received": true, "granted": false, "reason": "already_granted" }))
                .into_response()
        }
        PaymentOutcome::UnknownUser => CoreError::UnknownUser.into_response(),
        // Stripe retries non-2xx answers: the operator sees it in the dashboard and the logs.
        PaymentOutcome::BalanceLimit => CoreError::BalanceLimit.into_response(),
    })
}
