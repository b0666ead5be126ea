//! Talking to the services: the callers a test acts as, and the replies it reads.

use std::sync::Arc;

use hub_core::Store;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use uuid::Uuid;

use crate::services::SpawnedCore;

/// Creates a user with `credits` through the store, as `hub user create` does.
pub async fn user_with(store: &Arc<dyn Store>, credits: i64) -> Uuid {
    let email = format!("{}@example.com", Uuid::new_v4().simple());
    let new =
        hub_core::users::NewUser::new(&email, "Test User", credits, hub_core::users::Role::User)
            .expect("valid user");
    store
        .create_user(&new)
        .await
        .expect("create user")
        .expect("new email")
        .user
        .id
}

/// A browser: keeps cookies, does not follow redirects (the test follows them, and looks).
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("browser client")
}

pub(crate) async fn read(response: reqwest::Response) -> Reply {
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("response body");
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        json,
    }
}

/// How a test calls the core: which caller the gateway would vouch for.
#[derive(Debug, Clone)]
pub enum As {
    /// The operator's tools acting for a user.
    System(Option<Uuid>),
    /// An end user acting as themselves.
    User(Uuid),
    /// A service key with scopes, acting for a user.
    Service {
        /// Its scopes.
        scopes: &'static str,
        /// The user acted for.
        user: Option<Uuid>,
    },
    /// No identity headers at all.
    Nobody,
}

/// How many of `replies` answered `status` (concurrent calls racing for one balance or limit).
pub fn count(replies: &[Reply], status: StatusCode) -> usize {
    replies.iter().filter(|r| r.status == status).count()
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body as JSON (`Null` if it was not JSON).
    pub json: Value,
}

impl SpawnedCore {
    /// Sends a request as `caller`, with optional JSON body and extra headers.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        caller: &As,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base_url));
        let internal = || ("x-hub-internal", self.token.clone());
        request = match caller {
            As::Nobody => request,
            As::System(user) => {
                let r = request
                    .header(internal().0, internal().1)
                    .header("x-hub-caller", "system");
                match user {
                    Some(u) => r.header("x-user-id", u.to_string()),
                    None => r,
                }
            }
            As::User(user) => request
                .header(internal().0, internal().1)
                .header("x-hub-caller", "user")
                .header("x-user-id", user.to_string()),
            As::Service { scopes, user } => {
                let r = request
                    .header(internal().0, internal().1)
                    .header("x-hub-caller", "service")
                    .header("x-hub-service-key", "test-key")
                    .header("x-hub-scopes", *scopes);
                match user {
                    Some(u) => r.header("x-user-id", u.to_string()),
                    None => r,
                }
            }
        };
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        read(request.send().await.expect("request reaches the core")).await
    }

    /// `POST path` as `caller` with a JSON body.
    pub async fn post(&self, path: &str, caller: &As, body: Value) -> Reply {
        self.call(Method::POST, path, caller, Some(&body), &[])
            .await
    }

    /// `GET path` as `caller`.
    pub async fn get(&self, path: &str, caller: &As) -> Reply {
        self.call(Method::GET, path, caller, None, &[]).await
    }

    /// Creates a user with `credits` through the store, as `hub user create` does.
    pub async fn user_with(&self, credits: i64) -> Uuid {
        user_with(&self.store, credits).await
    }
}
