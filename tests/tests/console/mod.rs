//! The operator console, `/console`, through the gateway on every engine: an operator signs in
//! with the hub's own sign-in and comes back to it; each role is refused every page and form it
//! lacks the permission for (403 naming it); forms without the browser's CSRF token change
//! nothing; an admin grants credits once however often the form is sent, disables a user (whose
//! session code then stops) and reads both in the audit log.

mod operations;
mod permissions;
mod webhooks;

use hub_test_support::{OPERATOR_PASSWORD, SpawnedHub};
use reqwest::StatusCode;

use crate::account::{Person, csrf};
use crate::oauth_flow::location;

/// Signs `person` in with `email` and the operators' password, continuing to `continue_to`.
pub(crate) async fn sign_in_with_password(person: &Person<'_>, email: &str, continue_to: &str) {
    let signed_in = person
        .post(
            "/oauth/sign-in",
            &[
                ("email", email),
                ("password", OPERATOR_PASSWORD),
                ("continue", continue_to),
            ],
        )
        .await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    assert_eq!(location(&signed_in), continue_to, "back where it started");
}

/// An operator with `role`, signed in in a browser: the browser, their id and their forms' token.
pub(crate) async fn operator_at_console(
    hub: &SpawnedHub,
    role: hub_core::users::Role,
) -> (Person<'_>, uuid::Uuid, String) {
    let (id, email, _) = hub.operator(role).await;
    let person = Person::new(hub);
    let sign_in = person.get("/console").await;
    assert_eq!(sign_in.status(), StatusCode::OK, "the sign-in page");
    let page = sign_in.text().await.unwrap();
    assert!(
        page.contains("name=\"continue\" value=\"/console\""),
        "{page}"
    );
    sign_in_with_password(&person, &email, "/console").await;
    // Every signed-in browser page carries the same token; /account shows one to anyone.
    let token = csrf(&person.page("/account").await);
    (person, id, token)
}

/// A user's balance, read by the store.
pub(crate) async fn balance(hub: &SpawnedHub, user: &str) -> i64 {
    hub.store
        .balance(user.parse().unwrap())
        .await
        .unwrap()
        .expect("an account")
}
