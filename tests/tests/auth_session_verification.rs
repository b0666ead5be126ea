//! verify-session through the gateway, in the header forms of the original request and the
//! GPT-callable body form; revocation taking effect at once; end users' JWT access tokens.

use hub_test_support::fake_google::FakeGoogle;
use hub_test_support::{SpawnedHub, hub_backends};
use reqwest::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn a_code_verifies_in_every_form_until_it_is_revoked() {
    for backends in hub_backends() {
        let google = FakeGoogle::start().await;
        let hub = SpawnedHub::builder(backends, &google).start().await;
        let (code, user_id) = hub.signed_in_user().await;
        let bearer = format!("Bearer {code}");
        for headers in [
            vec![("x-session-token", code.as_str())],
            vec![("authorization", bearer.as_str())],
        ] {
            let r = hub
                .call(Method::GET, "/api/auth/verify-session", &headers, None)
                .await;
            assert_eq!(r.status, StatusCode::OK, "{backends:?} {:?}", r.json);
            assert_eq!(r.json["user"]["id"], user_id.as_str());
            assert!(r.json["user"]["email"].as_str().unwrap().contains('@'));
        }
        let r = hub
            .call(
                Method::POST,
                "/api/auth/verify-session",
                &[],
                Some(&json!({ "session_token": code })),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "anonymous callers may verify");
        assert_eq!(r.json["user"]["id"], user_id.as_str());

        for wrong in [
            vec![("x-session-token", "VERIFIED-guess")],
            vec![("x-session-token", "")],
            vec![],
        ] {
            let r = hub
                .call(Method::GET, "/api/auth/verify-session", &wrong, None)
                .await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{wrong:?}");
            assert_eq!(r.json["error"]["code"], "invalid_session");
        }

        // The code works at the credit endpoints until it is signed out, then nowhere, at once.
        let me = [("x-session-token", code.as_str())];
        let r = hub
            .call(Method::GET, "/api/mcp/v1/credits/balance", &me, None)
            .await;
        assert_eq!(r.status, StatusCode::OK);
        let r = hub
            .call(Method::DELETE, "/api/auth/sessions/current", &me, None)
            .await;
        assert_eq!(r.json, json!({ "revoked": 1 }));
        let r = hub
            .call(Method::GET, "/api/mcp/v1/credits/balance", &me, None)
            .await;
        assert_eq!(
            r.status,
            StatusCode::UNAUTHORIZED,
            "{backends:?}: revoked at once"
        );
        let r = hub
            .call(Method::GET, "/api/auth/verify-session", &me, None)
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
}

#[tokio::test]
async fn an_access_token_is_an_end_user_at_the_gateway() {
    for backends in hub_backends() {
        let google = FakeGoogle::start().await;
        let hub = SpawnedHub::builder(backends, &google).start().await;
        let r = hub
            .call(
                Method::POST,
                "/api/auth/register",
                &[],
                Some(&json!({ "email": "jwt@example.com", "password": "correct horse", "name": "J" })),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.json);
        let user_id = r.json["user"]["id"].as_str().unwrap().to_owned();
        let bearer = format!("Bearer {}", r.json["access_token"].as_str().unwrap());
        let as_user = [("authorization", bearer.as_str())];

        let r = hub
            .call(Method::GET, "/api/mcp/v1/credits/balance", &as_user, None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{backends:?} {:?}", r.json);
        assert_eq!(
            r.json,
            json!({ "user_id": user_id, "balance": 0, "held": 0, "available_balance": 0 })
        );

        // Acting for someone else, forging a token, or refunding: refused.
        let other = hub.user_with(50).await.to_string();
        let r = hub
            .call(
                Method::POST,
                "/api/mcp/v1/credits/deduct",
                &[
                    ("authorization", bearer.as_str()),
                    ("x-user-id", other.as_str()),
                ],
                Some(&json!({ "service": "sora2", "cost": 1 })),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        let mut forged = bearer.clone();
        let last = forged.pop().unwrap();
        forged.push(if last == 'A' { 'B' } else { 'A' });
        let r = hub
            .call(
                Method::GET,
                "/api/mcp/v1/credits/balance",
                &[("authorization", forged.as_str())],
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "a forged signature");
        let r = hub
            .call(
                Method::GET,
                "/api/mcp/v1/credits/balance",
                &[(
                    "authorization",
                    "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",
                )],
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "alg none");
        let r = hub
            .call(
                Method::POST,
                "/api/mcp/v1/credits/refund",
                &as_user,
                Some(&json!({ "transaction_id": "txn_x", "reason": "mine" })),
            )
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
        assert_eq!(
            hub.store.balance(other.parse().unwrap()).await.unwrap(),
            Some(50)
        );
    }
}
