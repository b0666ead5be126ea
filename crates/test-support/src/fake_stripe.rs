//! A fake Stripe API, so the payment tests never reach Stripe: `POST /v1/checkout/sessions`
//! answers a Checkout Session (`cs_test_N`, with a URL on `checkout.stripe.test`) and keeps what
//! it was asked, for the test to read. Webhook deliveries the tests sign themselves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

/// One request to make a Checkout Session: its form fields and its `Authorization`.
#[derive(Debug, Clone)]
pub struct SessionRequest {
    /// The form, field by field (`metadata[pack]`, …).
    pub form: HashMap<String, String>,
    /// The `Authorization` header.
    pub authorization: String,
}

type Requests = Arc<Mutex<Vec<SessionRequest>>>;

/// The fake, listening on port 0 until dropped with the test's runtime.
pub struct FakeStripe {
    /// `http://127.0.0.1:PORT`: what `STRIPE_API_BASE` should be.
    pub base_url: String,
    requests: Requests,
}

impl FakeStripe {
    /// Starts it on a free port.
    pub async fn start() -> Self {
        let requests: Requests = Arc::default();
        let app = Router::new()
            .route("/v1/checkout/sessions", post(create))
            .with_state(requests.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port for the fake Stripe");
        let base_url = format!("http://{}", listener.local_addr().expect("address"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { base_url, requests }
    }

    /// The Checkout Sessions asked for so far.
    pub fn requests(&self) -> Vec<SessionRequest> {
        self.requests.lock().expect("requests").clone()
    }
}

async fn create(
    State(requests): State<Requests>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if !authorization.starts_with("Bearer sk_test_") {
        let error = json!({ "error": { "type": "invalid_request_error", "message": "Invalid API Key provided" } });
        return (StatusCode::UNAUTHORIZED, Json(error));
    }
    let mut requests = requests.lock().expect("requests");
    requests.push(SessionRequest {
        form,
        authorization,
    });
    let id = format!("cs_test_{}", requests.len());
    let url = format!("https://checkout.stripe.test/c/pay/{id}");
    (
        StatusCode::OK,
        Json(json!({ "id": id, "object": "checkout.session", "url": url })),
    )
}
