//! The console's webhooks page, on every engine: an admin registers an endpoint (its `whsec_`
//! secret shown once), sees a delivery and its outcome after a grant, and deletes the endpoint
//! (confirmed), each change in the audit log; a form without the CSRF token registers nothing.

use hub_core::users::Role;
use hub_test_support::fake_google::FakeGoogle;
use hub_test_support::{SpawnedHub, engines};
use reqwest::StatusCode;

use super::*;
use crate::account::count;
use crate::oauth_flow::attribute;

#[tokio::test]
async fn an_admin_registers_an_endpoint_sees_its_deliveries_and_deletes_it() {
    for engine in engines() {
        let google = FakeGoogle::start().await;
        let hub = SpawnedHub::builder(engine, &google).start().await;
        let (person, _, token) = operator_at_console(&hub, Role::Admin).await;
        let page = person.page("/console/webhooks").await;
        assert!(page.contains("id=\"no-endpoints\""), "{page}");

        let unsigned = [
            ("url", "http://127.0.0.1:9/hooks"),
            ("event", "credits.granted"),
        ];
        let refused = person.post("/console/webhooks", &unsigned).await;
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{engine:?}");
        let form = [
            ("csrf_token", token.as_str()),
            ("url", "http://127.0.0.1:9/hooks"),
            ("event", "credits.granted"),
            ("event", "credits.low"),
        ];
        let made = person.post("/console/webhooks", &form).await;
        assert_eq!(made.status(), StatusCode::OK, "{engine:?}");
        let page = made.text().await.unwrap();
        assert!(page.contains("id=\"new-secret\">whsec_"), "{page}");
        assert!(page.contains("credits.granted credits.low"), "{page}");
        let id = attribute(&page, "name=\"id\"", "value").expect("a delete form");

        // A grant makes a delivery, which fails (nobody listens on port 9) and waits to retry.
        hub.signed_in_user().await;
        let started = std::time::Instant::now();
        let page = loop {
            let page = person.page("/console/webhooks").await;
            if page.contains("could not connect") {
                break page;
            }
            assert!(started.elapsed().as_secs() < 20, "{page}");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        };
        assert!(
            !page.contains("whsec_"),
            "{engine:?}: the secret is shown once"
        );
        assert_eq!(count(&page, "class=\"delivery\""), 1, "{page}");
        assert!(
            page.contains("credits.granted") && page.contains(">pending<"),
            "{page}"
        );

        let unconfirmed = [("csrf_token", token.as_str()), ("id", id.as_str())];
        let r = person.post("/console/webhooks/delete", &unconfirmed).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let delete = [
            ("csrf_token", token.as_str()),
            ("id", id.as_str()),
            ("confirm", "yes"),
        ];
        let r = person.post("/console/webhooks/delete", &delete).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{engine:?}");
        let page = person.page("/console/webhooks?deleted=1").await;
        assert!(page.contains("id=\"no-endpoints\"") && page.contains("id=\"no-deliveries\""));

        // Each change is in the audit log, written with it; the refused forms left nothing.
        let log = person
            .page(&format!("/console/audit?target=webhook:{id}"))
            .await;
        assert_eq!(count(&log, "class=\"entry\""), 2, "{engine:?}: {log}");
        let table = &log[log.find("id=\"audit\"").unwrap()..];
        let deleted = table.find("webhook.delete").expect("the delete's entry");
        assert!(deleted < table.find("webhook.create").unwrap(), "{log}");
    }
}
