//! Rate limits: the key and limit a request counts against, the failed-credential budget, and
//! the 429 answer.

use axum::http::{HeaderMap, HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hub_http::ApiError;
use sha2::{Digest, Sha256};

use super::headers::{address_key, rate_limit_headers};
use super::phases::Visit;
use crate::limits::{Decision, PerMinute};
use crate::routes::LimitClass;
use crate::{AppState, admission, identity};

/// 429 when `subject` has spent its failed-credential budget (asked, not spent).
pub(super) async fn failures_spent(
    state: &AppState,
    subject: &admission::Subject,
) -> Option<Response> {
    let limit = state.config.limits.verify_failures;
    let decision = state
        .limiter
        .check(&subject.budget_key(), limit, false)
        .await;
    if decision.allowed {
        return None;
    }
    state.metrics.rate_limited("verify_failures");
    Some(limited(limit, decision, "failed_credentials"))
}

/// Counts one failed credential against `subject`.
pub(super) async fn spend_failure(state: &AppState, subject: &admission::Subject) {
    let limit = state.config.limits.verify_failures;
    state
        .limiter
        .check(&subject.budget_key(), limit, true)
        .await;
}

/// A credential's digest, to key its limit without keeping it.
fn digest(credential: &str) -> String {
    hex::encode(&Sha256::digest(credential.as_bytes())[..16])
}

/// The rate-limit key and limit of a request, by its route's limit class: keyed by the caller
/// wherever there is one, by the client address only where there is none (many ChatGPT users
/// share a few addresses).
pub(super) fn limit_for(
    state: &AppState,
    visit: &Visit,
    caller: Option<&identity::Recognised>,
    headers: &HeaderMap,
) -> (String, PerMinute) {
    let limits = state.config.limits;
    let client = visit.client;
    let text = |name: &HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let class = match visit.route.limit {
        LimitClass::Google => return (format!("google:{client}"), limits.google),
        LimitClass::Verify => {
            // The GPT form sends its service key as the bearer and the user's code in the body.
            let token = text(&identity::X_SESSION_TOKEN)
                .or_else(|| {
                    text(&header::AUTHORIZATION)
                        .and_then(|v| v.strip_prefix("Bearer "))
                        .filter(|v| !v.starts_with(hub_ledger::service_keys::KEY_PREFIX))
                })
                .or(visit.body_token.as_deref());
            return match token {
                Some(token) => (format!("verify:{}", digest(token)), limits.verify),
                None => (format!("verify:anonymous:{client}"), limits.verify),
            };
        }
        LimitClass::Credits => limits.credits,
        LimitClass::Default => limits.default,
    };
    let presented = text(&identity::X_SESSION_TOKEN)
        .or_else(|| text(&header::AUTHORIZATION))
        .or_else(|| text(&identity::X_API_KEY));
    match caller {
        Some(identity::Recognised::User(id) | identity::Recognised::App { user: id, .. }) => {
            (format!("caller:user:{id}"), class)
        }
        // One key may serve every ChatGPT user: each user it acts for has a budget of their own.
        Some(identity::Recognised::ServiceKey { id, .. }) => (
            format!(
                "caller:key:{id}:{}",
                visit.claimed_user.as_deref().unwrap_or("-")
            ),
            class,
        ),
        None => match presented {
            Some(credential) => (format!("caller:{}", digest(credential)), limits.default),
            None => (address_key(client), limits.default),
        },
    }
}
/// 429 with `Retry-After` and the `RateLimit-*` headers, naming the limit that refused it:
/// `rate_limit:caller` (the caller's budget for this kind of route), `rate_limit:address` (the
/// client address's, without a caller), `rate_limit:sign_in` (sign-ins started from one address),
/// `rate_limit:verify_session` (verifications of one code) or `rate_limit:failed_credentials`
/// (credentials that did not check out).
pub(super) fn limited(limit: PerMinute, decision: Decision, which: &'static str) -> Response {
    let mut error = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!(
            "Too many requests: the {} limit of {} a minute is spent; try again after Retry-After seconds.",
            which.replace('_', " "),
            limit.0
        ),
    )
    .with_field("limit", format!("rate_limit:{which}"))
    .with_field("limit_per_minute", limit.0);
    let wait = decision.reset.as_secs() + u64::from(decision.reset.subsec_nanos() > 0);
    error.retry_after = Some(wait.max(1));
    let mut response = error.into_response();
    rate_limit_headers(response.headers_mut(), limit, decision);
    response
}
