//! Each role at the console: every page and every form it lacks the permission for is a 403 that
//! names the permission (whatever the buttons show), and nothing changes; a user without any
//! operator's role is turned away from the console itself.

use hub_core::users::Role;
use hub_test_support::fake_google::FakeGoogle;
use hub_test_support::{SpawnedHub, engines};
use reqwest::StatusCode;

use super::*;
use crate::account::{google_account, verify};

/// What each role may do (the permissions of migration 0009/0010).
fn grants(role: Role) -> &'static [&'static str] {
    match role {
        Role::Support => &["users:read", "credits:refund", "sessions:revoke"],
        Role::Finance => &[
            "users:read",
            "credits:grant",
            "credits:refund",
            "usage:read",
        ],
        Role::User | Role::Admin => &[],
    }
}

const PAGES: [(&str, &str); 6] = [
    ("/console/dashboard", "usage:read"),
    ("/console/users?q=example", "users:read"),
    ("/console/keys", "keys:manage"),
    ("/console/webhooks", "keys:manage"),
    ("/console/audit", "audit:read"),
    ("/console/audit.csv", "audit:read"),
];

/// Each form, and the permission it needs; `{user}` is the target's id.
const POSTS: [(&str, &str); 11] = [
    ("/console/users/{user}/grant", "credits:grant"),
    ("/console/users/{user}/adjust", "credits:grant"),
    ("/console/users/{user}/refund", "credits:refund"),
    ("/console/users/{user}/disable", "users:manage"),
    ("/console/users/{user}/enable", "users:manage"),
    ("/console/users/{user}/delete", "users:manage"),
    ("/console/users/{user}/sign-out", "sessions:revoke"),
    ("/console/keys", "keys:manage"),
    ("/console/keys/revoke", "keys:manage"),
    ("/console/webhooks", "keys:manage"),
    ("/console/webhooks/delete", "keys:manage"),
];

#[tokio::test]
async fn each_role_is_refused_every_page_and_form_it_lacks_with_the_permission_named() {
    for engine in engines() {
        let google = FakeGoogle::start().await;
        let hub = SpawnedHub::builder(engine, &google).start().await;
        google.sign_in_as(google_account("target@example.com", "Target"));
        let (code, user) = hub.signed_in_user().await;
        for role in [Role::Support, Role::Finance, Role::User] {
            let (person, _, token) = operator_at_console(&hub, role).await;
            let allowed = grants(role);
            for (path, permission) in PAGES {
                let page = person.get(path).await;
                if allowed.contains(&permission) {
                    assert_eq!(page.status(), StatusCode::OK, "{role:?} {path}");
                } else {
                    assert_eq!(page.status(), StatusCode::FORBIDDEN, "{role:?} {path}");
                    let text = page.text().await.unwrap();
                    assert!(text.contains(permission), "{role:?} {path}: {text}");
                }
            }
            let detail = person.get(&format!("/console/users/{user}")).await;
            let expected = if allowed.contains(&"users:read") {
                StatusCode::OK
            } else {
                StatusCode::FORBIDDEN
            };
            assert_eq!(detail.status(), expected, "{role:?}");
            for (path, permission) in POSTS {
                if allowed.contains(&permission) {
                    continue;
                }
                let path = path.replace("{user}", &user);
                let form = [
                    ("csrf_token", token.as_str()),
                    ("amount", "5"),
                    ("reason", "not allowed"),
                    ("confirm", "yes"),
                    ("transaction_id", "txn_x"),
                    ("name", "nope"),
                    ("scope", "credits:check"),
                    ("id", "sk_x"),
                ];
                let refused = person.post(&path, &form).await;
                assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{role:?} {path}");
                let text = refused.text().await.unwrap();
                assert!(text.contains(permission), "{role:?} {path}: {text}");
            }
            if role == Role::User {
                let home = person.get("/console").await;
                assert_eq!(home.status(), StatusCode::FORBIDDEN);
                assert!(home.text().await.unwrap().contains("Not an operator"));
            }
        }
        assert_eq!(balance(&hub, &user).await, 10, "nothing granted");
        assert_eq!(verify(&hub, &code).await, StatusCode::OK, "nothing ended");
    }
}

#[tokio::test]
async fn a_form_without_the_browsers_csrf_token_is_refused_and_changes_nothing() {
    for engine in engines() {
        let google = FakeGoogle::start().await;
        let hub = SpawnedHub::builder(engine, &google).start().await;
        google.sign_in_as(google_account("kept@example.com", "Kept"));
        let (code, user) = hub.signed_in_user().await;
        let (person, _, token) = operator_at_console(&hub, Role::Admin).await;
        let mut wrong = token.clone();
        wrong.replace_range(..2, if token.starts_with("00") { "11" } else { "00" });
        for csrf in [None, Some(""), Some(wrong.as_str()), Some("zz")] {
            for action in ["grant", "disable", "sign-out", "delete"] {
                let mut form = vec![("amount", "50"), ("reason", "csrf"), ("confirm", "yes")];
                form.extend(csrf.map(|t| ("csrf_token", t)));
                let path = format!("/console/users/{user}/{action}");
                let refused = person.post(&path, &form).await;
                assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{action} {csrf:?}");
            }
        }
        // A signed-out browser, with a token copied from the page, is refused too.
        let stranger = Person::new(&hub);
        let path = format!("/console/users/{user}/grant");
        let form = [
            ("csrf_token", token.as_str()),
            ("amount", "50"),
            ("reason", "x"),
        ];
        let refused = stranger.post(&path, &form).await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        assert_eq!(balance(&hub, &user).await, 10, "nothing granted");
        assert_eq!(verify(&hub, &code).await, StatusCode::OK, "nothing ended");
        let page = person.page(&format!("/console/users/{user}")).await;
        assert!(page.contains(">active<"), "{page}");
    }
}
