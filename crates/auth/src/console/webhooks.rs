//! `/console/webhooks`: the endpoints that receive the hub's events and the latest deliveries with
//! their outcomes; a form to register an endpoint (its `whsec_` secret shown once, on the page
//! that answers it) and one to delete each (confirmed). For operators with `keys:manage`: an
//! endpoint holds a signing secret, as a service key does. Each change is audited.

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use hub_ledger::admin::AuditEntry;
use hub_ledger::users::Permission;
use hub_ledger::webhooks::{
    Delivery, DeliveryFilter, EVENT_TYPES, Endpoint, is_endpoint_id, new_endpoint,
};

use super::actions::request_id;
use super::operator::Operator;
use super::view::{self, Frame};
use crate::AppState;
use crate::pages::minute;

const PATH: &str = "/console/webhooks";

struct DeliveryRow {
    id: i64,
    event: String,
    kind: String,
    to: String,
    status: String,
    attempts: i32,
    outcome: String,
    next: String,
}

fn delivery_row(d: Delivery) -> DeliveryRow {
    let outcome = match (d.last_status, d.last_error) {
        (Some(code), None) => code.to_string(),
        (_, Some(error)) => error,
        (None, None) => "—".to_owned(),
    };
    DeliveryRow {
        next: if d.status == "pending" {
            minute(d.next_attempt_at)
        } else {
            "—".to_owned()
        },
        to: d.url.unwrap_or_else(|| "email to the user".to_owned()),
        id: d.id,
        event: d.event_id,
        kind: d.event_type,
        status: d.status,
        attempts: d.attempts,
        outcome,
    }
}

#[derive(Template)]
#[template(path = "console_webhooks.html")]
struct WebhooksPage {
    frame: Frame,
    endpoints: Vec<Endpoint>,
    deliveries: Vec<DeliveryRow>,
    events: &'static [&'static str],
    created_secret: Option<String>,
    deleted: bool,
}

async fn page(
    state: &AppState,
    operator: &Operator,
    created_secret: Option<String>,
    deleted: bool,
) -> Response {
    let filter = DeliveryFilter {
        limit: 50,
        ..Default::default()
    };
    let (endpoints, deliveries) = match tokio::try_join!(
        state.users.list_endpoints(),
        state.users.list_deliveries(&filter)
    ) {
        Ok(found) => found,
        Err(e) => return view::unavailable(&e),
    };
    let page = WebhooksPage {
        frame: Frame::of(operator, "Webhooks"),
        endpoints,
        deliveries: deliveries.into_iter().map(delivery_row).collect(),
        events: &EVENT_TYPES,
        created_secret,
        deleted,
    };
    view::send(StatusCode::OK, &page.frame, page.render())
}

/// `GET /console/webhooks`.
pub(crate) async fn list(
    State(state): State<AppState>,
    headers: HeaderMap,
    uri: axum::http::Uri,
) -> Response {
    match Operator::for_page(&state, &headers, PATH, Some(Permission::KeysManage)).await {
        Ok(operator) => page(&state, &operator, None, uri.query() == Some("deleted=1")).await,
        Err(page) => page,
    }
}

/// The forms' fields (`event` repeats, one per box ticked); missing ones are empty.
#[derive(Default)]
struct EndpointForm {
    csrf: String,
    url: String,
    events: Vec<String>,
    id: String,
    confirm: String,
}

impl EndpointForm {
    fn parse(body: &str) -> Self {
        let mut form = Self::default();
        for (field, value) in url::form_urlencoded::parse(body.as_bytes()) {
            let value = value.into_owned();
            match &*field {
                "csrf_token" => form.csrf = value,
                "url" => form.url = value,
                "event" => form.events.push(value),
                "id" => form.id = value,
                "confirm" => form.confirm = value,
                _ => {}
            }
        }
        form
    }
}

/// `POST /console/webhooks`: registers an endpoint and shows its secret, once.
pub(crate) async fn create(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let EndpointForm {
        csrf, url, events, ..
    } = EndpointForm::parse(&body);
    let operator = match Operator::for_post(&state, &headers, &csrf, Permission::KeysManage).await {
        Ok(operator) => operator,
        Err(refused) => return refused,
    };
    let made = match new_endpoint(&url, &events) {
        Ok(made) => made,
        Err(e) => {
            return view::message_with_back(
                &operator,
                StatusCode::UNPROCESSABLE_ENTITY,
                "Not registered",
                &e.message,
                Some(PATH),
            );
        }
    };
    let entry = made
        .created_by(&operator.actor())
        .in_request(request_id(&headers).as_deref());
    if let Err(e) = state.users.insert_endpoint(&made, &entry).await {
        return view::unavailable(&e);
    }
    page(&state, &operator, Some(made.secret), false).await
}

/// `POST /console/webhooks/delete`: deletes an endpoint and its deliveries (confirmed).
pub(crate) async fn delete(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let EndpointForm {
        csrf, id, confirm, ..
    } = EndpointForm::parse(&body);
    let operator = match Operator::for_post(&state, &headers, &csrf, Permission::KeysManage).await {
        Ok(operator) => operator,
        Err(refused) => return refused,
    };
    let refused = |status, text: &str| {
        view::message_with_back(&operator, status, "Not deleted", text, Some(PATH))
    };
    if confirm != "yes" {
        return refused(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Tick the confirmation box to delete the endpoint.",
        );
    }
    if !is_endpoint_id(&id) {
        return refused(StatusCode::NOT_FOUND, "No endpoint has this id.");
    }
    let entry = AuditEntry::on_webhook(&operator.actor(), "webhook.delete", &id)
        .in_request(request_id(&headers).as_deref());
    match state.users.delete_endpoint(&id, &entry).await {
        Ok(true) => Redirect::to("/console/webhooks?deleted=1").into_response(),
        Ok(false) => refused(StatusCode::NOT_FOUND, "No endpoint has this id."),
        Err(e) => view::unavailable(&e),
    }
}
