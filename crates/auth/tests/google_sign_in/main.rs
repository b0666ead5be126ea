//! The Google sign-in, driven like a browser against the fake provider, and what the GPT does
//! with the code afterwards.

mod accounts;
mod failures;
mod sign_in;

use hub_test_support::fake_google::{FakeAccount, FakeGoogle, Misbehaviour};
use hub_test_support::{SessionBackend, SpawnedAuth, browser, session_backends, spawn_auth};
use reqwest::{Method, StatusCode};
use serde_json::json;

const START: &str = "session=conv-42.abc_DEF&return_to=chatgpt";

async fn user_count(auth: &SpawnedAuth) -> i64 {
    let hub_storage::Database::Sqlite { reader, .. } = &auth.db.database else {
        unreachable!()
    };
    sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(reader)
        .await
        .unwrap()
}

async fn failure(
    auth: &SpawnedAuth,
    google: &FakeGoogle,
    misbehaviour: Misbehaviour,
) -> hub_test_support::SignIn {
    google.misbehave(misbehaviour);
    let signed_in = auth.sign_in(&browser(), START).await;
    google.misbehave(Misbehaviour::default());
    signed_in
}
