//! Buying credits from the account page, on every engine: the packs with their prices, the "buy"
//! button that sends the browser to Stripe's payment page for this user and this pack (and grants
//! nothing by itself), the refusals (no CSRF token, no such pack), and the payment listed once
//! Stripe's signed webhook confirmed it. A hub without Stripe shows no packs.

use hub_test_support::fake_google::FakeGoogle;
use hub_test_support::fake_stripe::FakeStripe;
use hub_test_support::{SpawnedHub, engines};
use reqwest::StatusCode;

use super::*;
use crate::payments::{WEBHOOK_SECRET, completed, deliver, now, payments};

#[tokio::test]
async fn a_person_buys_a_pack_from_their_account_page() {
    let google = FakeGoogle::start().await;
    let stripe = FakeStripe::start().await;
    for engine in engines() {
        let hub = SpawnedHub::builder(engine, &google)
            .core(|config| config.payments = payments(&stripe))
            .auth(|config| config.payments = payments(&stripe))
            .start()
            .await;
        google.sign_in_as(google_account("somchai@example.com", "Somchai"));
        let person = Person::new(&hub);
        let page = person.sign_in_with_google().await;
        let policy = person.get("/account").await.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            policy.contains("form-action 'self' https://checkout.stripe.com;"),
            "the buy form may go on to Stripe's payment page: {policy}"
        );
        let user_id = hub
            .store
            .find_user_by_email("somchai@example.com")
            .await
            .unwrap()
            .expect("signed up")
            .id;
        let before = hub.store.balance(user_id).await.unwrap();
        assert!(page.contains("id=\"buy-100\"") && page.contains("id=\"buy-500\""));
        assert!(
            page.contains("4.99 USD") && page.contains("19.99 USD"),
            "{page}"
        );
        assert!(!page.contains("id=\"payments\""), "no payments yet");
        let asked = stripe.requests().len();

        // Refusals: another site's form (no token), a pack that is not on sale.
        let forged = person.post("/account/buy", &[("pack", "100")]).await;
        assert_eq!(forged.status(), StatusCode::FORBIDDEN, "{engine:?}");
        let token = csrf(&page);
        let unknown = person
            .post("/account/buy", &[("csrf_token", &token), ("pack", "7")])
            .await;
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
        assert_eq!(stripe.requests().len(), asked, "Stripe was not asked");

        let bought = person
            .post("/account/buy", &[("csrf_token", &token), ("pack", "100")])
            .await;
        assert_eq!(bought.status(), StatusCode::SEE_OTHER, "{engine:?}");
        let to = location(&bought);
        assert!(
            to.starts_with("https://checkout.stripe.test/c/pay/cs_test_"),
            "{to}"
        );
        let request = stripe.requests().pop().expect("a Checkout Session");
        let user = user_id.to_string();
        assert_eq!(request.form["client_reference_id"], user);
        assert_eq!(request.form["metadata[hub_user_id]"], user);
        assert_eq!(request.form["metadata[pack]"], "100");
        assert_eq!(
            request.form["line_items[0][price_data][unit_amount]"],
            "499"
        );
        assert_eq!(
            hub.store.balance(user_id).await.unwrap(),
            before,
            "{engine:?}: a checkout is not a payment"
        );

        // Stripe confirms the payment: the page thanks, then lists it.
        let session = to.rsplit('/').next().unwrap().to_owned();
        let paid = completed("evt_acc", &session, &user, "100", 499, "paid");
        assert_eq!(
            deliver(&hub, &paid, now(), WEBHOOK_SECRET).await.1["granted"],
            true
        );
        let back = person.page("/account?paid=1").await;
        assert!(back.contains("id=\"paid-notice\""), "{back}");
        assert_eq!(count(&back, "class=\"payment\""), 1, "{back}");
        assert!(
            back.contains(">+100<") && back.contains(">4.99 USD<"),
            "{back}"
        );
        assert_eq!(
            hub.store.balance(user_id).await.unwrap(),
            before.map(|b| b + 100)
        );
    }
}

#[tokio::test]
async fn a_hub_without_stripe_offers_nothing_to_buy() {
    let google = FakeGoogle::start().await;
    let engine = engines().remove(0);
    let hub = SpawnedHub::builder(engine, &google).start().await;
    google.sign_in_as(google_account("nok@example.com", "Nok"));
    let person = Person::new(&hub);
    let page = person.sign_in_with_google().await;
    assert!(!page.contains("buy-title"), "{page}");
    let policy = person.get("/account").await.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policy.contains("form-action 'self';"), "{policy}");
    let token = csrf(&page);
    let refused = person
        .post("/account/buy", &[("csrf_token", &token), ("pack", "100")])
        .await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
}
