//! An admin at the console: finds a user, grants credits once however often the form is sent,
//! sees the dashboard's chart, is told which limit an adjustment down hit, disables the user
//! (whose session code then stops), cannot disable themselves, makes and revokes a service key
//! and reads it all in the audit log and its CSV.

use hub_core::users::Role;
use hub_test_support::fake_google::FakeGoogle;
use hub_test_support::{SpawnedHub, engines};
use reqwest::StatusCode;

use super::*;
use crate::account::{count, google_account, spend, verify};
use crate::oauth_flow::attribute;

#[tokio::test]
async fn an_admin_grants_once_disables_a_user_and_reads_it_in_the_audit_log() {
    for engine in engines() {
        let google = FakeGoogle::start().await;
        let hub = SpawnedHub::builder(engine, &google).start().await;
        google.sign_in_as(google_account("customer@example.com", "Customer"));
        let (code, user) = hub.signed_in_user().await;
        let key = hub.service_key(&["credits:deduct"]).await;
        spend(&hub, &key, &user, "sora2", 4).await;
        let (person, admin, _) = operator_at_console(&hub, Role::Admin).await;

        let home = person.get("/console").await;
        assert_eq!(home.status(), StatusCode::SEE_OTHER);
        assert_eq!(location(&home), "/console/dashboard");
        let dashboard = person.page("/console/dashboard").await;
        assert!(dashboard.contains("<svg id=\"usage-chart\""), "{dashboard}");
        assert_eq!(count(&dashboard, "<rect class=\"bar\""), 1, "{dashboard}");
        assert!(dashboard.contains("<strong id=\"active-users\">1</strong>"));
        assert!(dashboard.contains("customer@example.com"), "a top spender");

        let found = person.page("/console/users?q=CUSTOMER@example").await;
        assert_eq!(count(&found, "class=\"user\""), 1, "{found}");
        let detail_path = format!("/console/users/{user}");
        assert!(found.contains(&detail_path));
        let detail = person.page(&detail_path).await;
        assert!(
            detail.contains("<strong id=\"balance\">6</strong>"),
            "{detail}"
        );
        let token = csrf(&detail);
        let idempotency = attribute(&detail, "name=\"idempotency_key\"", "value").unwrap();

        grants_once(&hub, &person, &user, &token, &idempotency).await;
        let detail = person.page(&detail_path).await;
        assert!(
            detail.contains("<strong id=\"balance\">31</strong>"),
            "{detail}"
        );
        refuses_with_the_limit(&person, &user, &token).await;
        grants_promotional_credits(&hub, &person, &user, &token).await;

        let own = format!("/console/users/{admin}/disable");
        let refused = person
            .post(&own, &[("csrf_token", &token), ("confirm", "yes")])
            .await;
        assert_eq!(refused.status(), StatusCode::CONFLICT);
        let unconfirmed = format!("/console/users/{user}/disable");
        let refused = person.post(&unconfirmed, &[("csrf_token", &token)]).await;
        assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(verify(&hub, &code).await, StatusCode::OK);
        let disabled = person
            .post(&unconfirmed, &[("csrf_token", &token), ("confirm", "yes")])
            .await;
        assert_eq!(disabled.status(), StatusCode::SEE_OTHER);
        assert_eq!(verify(&hub, &code).await, StatusCode::UNAUTHORIZED);
        let detail = person.page(&format!("{detail_path}?done=disable")).await;
        assert!(detail.contains("id=\"notice\"") && detail.contains("disabled 2"));

        makes_and_revokes_a_key(&person, &token).await;
        reads_the_audit_log(&person, &admin.to_string(), &user).await;
    }
}

async fn grants_once(hub: &SpawnedHub, person: &Person<'_>, user: &str, token: &str, key: &str) {
    let path = format!("/console/users/{user}/grant");
    let form = [
        ("csrf_token", token),
        ("idempotency_key", key),
        ("amount", "25"),
        ("reason", "goodwill"),
    ];
    for _ in 0..2 {
        let granted = person.post(&path, &form).await;
        assert_eq!(granted.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            location(&granted),
            format!("/console/users/{user}?done=grant")
        );
    }
    assert_eq!(balance(hub, user).await, 31, "granted once");
    // The same key with other values is refused, not granted again.
    let other = [form[0], form[1], ("amount", "26"), form[3]];
    let refused = person.post(&path, &other).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(balance(hub, user).await, 31);
}

/// A grant with an end date (as a `datetime-local` field sends it) and a priority is a
/// promotional grant; a past end date or a priority out of range is refused and grants nothing.
async fn grants_promotional_credits(
    hub: &SpawnedHub,
    person: &Person<'_>,
    user: &str,
    token: &str,
) {
    let path = format!("/console/users/{user}/grant");
    let ends = (chrono::Utc::now() + chrono::Duration::days(30))
        .format("%Y-%m-%dT%H:%M")
        .to_string();
    let form = |key: &'static str, ends: &str, priority: &'static str| {
        [
            ("csrf_token", token.to_owned()),
            ("idempotency_key", key.to_owned()),
            ("amount", "7".to_owned()),
            ("reason", "launch promotion".to_owned()),
            ("expires_at", ends.to_owned()),
            ("priority", priority.to_owned()),
        ]
    };
    let path = path.as_str();
    let send = |form: [(&'static str, String); 6]| async move {
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        person.post(path, &form).await.status()
    };
    let before = balance(hub, user).await;
    assert_eq!(
        send(form("promo-past", "2020-01-01T00:00", "10")).await,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        send(form("promo-prio", &ends, "101")).await,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        send(form("promo-date", "next week", "")).await,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(balance(hub, user).await, before, "nothing granted");
    assert_eq!(
        send(form("promo", &ends, "10")).await,
        StatusCode::SEE_OTHER
    );
    assert_eq!(balance(hub, user).await, before + 7);
    let id: uuid::Uuid = user.parse().unwrap();
    let grants = hub.store.grants(id).await.unwrap().expect("the user");
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!((grants[0].amount, grants[0].priority), (7, 10));
    let expires = grants[0].expires_at.expect("an end date");
    assert_eq!(expires.format("%Y-%m-%dT%H:%M").to_string(), ends);
}

async fn refuses_with_the_limit(person: &Person<'_>, user: &str, token: &str) {
    let path = format!("/console/users/{user}/adjust");
    let form = [
        ("csrf_token", token),
        ("idempotency_key", "adjust-too-far"),
        ("amount", "-100"),
        ("reason", "too far"),
        ("confirm", "yes"),
    ];
    let refused = person.post(&path, &form).await;
    assert_eq!(refused.status(), StatusCode::PAYMENT_REQUIRED);
    let page = refused.text().await.unwrap();
    assert!(
        page.contains("Limit: balance") && page.contains("31"),
        "{page}"
    );
    let bad = [form[0], ("amount", "0"), form[3], form[4]];
    let refused = person.post(&path, &bad).await;
    assert_eq!(refused.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

async fn makes_and_revokes_a_key(person: &Person<'_>, token: &str) {
    let form = [
        ("csrf_token", token),
        ("name", "render farm"),
        ("scope", "credits:check"),
        ("scope", "credits:deduct"),
    ];
    let made = person.post("/console/keys", &form).await;
    assert_eq!(made.status(), StatusCode::OK);
    let page = made.text().await.unwrap();
    assert!(page.contains("id=\"new-key\">hub_sk_"), "{page}");
    assert!(page.contains("credits:check credits:deduct"), "{page}");
    let id = attribute(&page, "name=\"id\"", "value").expect("a revoke form");
    let list = person.page("/console/keys").await;
    assert!(!list.contains("hub_sk_"), "the key is shown once");
    let revoke = [
        ("csrf_token", token),
        ("id", id.as_str()),
        ("confirm", "yes"),
    ];
    let revoked = person.post("/console/keys/revoke", &revoke).await;
    assert_eq!(revoked.status(), StatusCode::SEE_OTHER);
    let again = person.post("/console/keys/revoke", &revoke).await;
    assert_eq!(again.status(), StatusCode::NOT_FOUND);
}

async fn reads_the_audit_log(person: &Person<'_>, admin: &str, user: &str) {
    let page = person.page("/console/audit").await;
    assert_eq!(
        count(&page, "class=\"entry\""),
        5,
        "two grants, disable, key made and revoked: {page}"
    );
    let table = &page[page.find("id=\"audit\"").unwrap()..];
    let newest = table.find("key.revoke").unwrap();
    assert!(
        newest < table.find("credits.grant").unwrap(),
        "newest first"
    );
    assert!(page.contains(&format!("user:{admin}")) && page.contains("goodwill"));
    let filtered = person
        .page(&format!(
            "/console/audit?action=user.disable&target=user:{user}"
        ))
        .await;
    assert_eq!(count(&filtered, "class=\"entry\""), 1, "{filtered}");
    let csv_link = attribute(&filtered, "id=\"csv\"", "href").unwrap();
    let csv = person.get(&csv_link).await;
    assert_eq!(csv.status(), StatusCode::OK);
    let csv = csv.text().await.unwrap();
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(csv.contains("\"user.disable\""), "{csv}");
}
