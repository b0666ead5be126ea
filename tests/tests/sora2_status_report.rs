//! `sora2-integration-status.md` tells adopters which endpoints of the original request exist.
//! This test reads it and holds it to its word: every endpoint it lists as existing must answer
//! through the gateway as the original request specifies, on every engine, and its summary
//! counts must match its sections.

use std::path::Path;

use hub_test_support::fake_google::FakeGoogle;
use hub_test_support::{SpawnedHub, browser, engines};
use reqwest::{Method, StatusCode};
use serde_json::json;

const SORA: &str = "sora2-video-generation";

struct Listed {
    method: String,
    path: String,
    status: String,
}

fn report() -> (String, Vec<Listed>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sora2-integration-status.md");
    let text = std::fs::read_to_string(path).expect("the status report");
    let mut listed = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let Some(heading) = line.strip_prefix("### ") else {
            continue;
        };
        let (Some(open), Some(close)) = (heading.rfind('('), heading.rfind(')')) else {
            continue;
        };
        let Some((method, path)) = heading[open + 1..close].split_once(' ') else {
            continue;
        };
        let status = lines[i + 1..]
            .iter()
            .find_map(|l| l.strip_prefix("**Status**: "))
            .unwrap_or_else(|| panic!("{heading} has no **Status** line"));
        listed.push(Listed {
            method: method.to_owned(),
            path: path.to_owned(),
            status: status.split_whitespace().next().unwrap_or("").to_owned(),
        });
    }
    (text, listed)
}

fn summary_count(text: &str, label: &str) -> usize {
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(&format!("- {label}: ")))
        .unwrap_or_else(|| panic!("the summary has no '{label}'"));
    line.split_whitespace().next().unwrap().parse().unwrap()
}

async fn holds(hub: &SpawnedHub, endpoint: &Listed) {
    let what = format!("{} {}", endpoint.method, endpoint.path);
    match (endpoint.method.as_str(), endpoint.path.as_str()) {
        ("GET", "/api/auth/verify-session") => {
            let (code, user_id) = hub.signed_in_user().await;
            for header in ["x-session-token", "authorization"] {
                let value = if header == "authorization" {
                    format!("Bearer {code}")
                } else {
                    code.clone()
                };
                let r = hub
                    .call(Method::GET, &endpoint.path, &[(header, &value)], None)
                    .await;
                assert_eq!(r.status, StatusCode::OK, "{what} with {header}");
                let user = &r.json["user"];
                assert_eq!(user["id"], user_id.as_str(), "{what}");
                assert!(
                    user["email"].is_string() && user["name"].is_string(),
                    "{what}"
                );
            }
            let r = hub
                .call(
                    Method::GET,
                    &endpoint.path,
                    &[("x-session-token", "VERIFIED-invalid")],
                    None,
                )
                .await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}");
        }
        ("POST", "/api/mcp/v1/credits/check") => {
            let user = hub.user_with(10).await.to_string();
            let key = format!("Bearer {}", hub.service_key(&["credits:check"]).await);
            let headers = [
                ("authorization", key.as_str()),
                ("x-user-id", user.as_str()),
            ];
            let r = hub
                .call(
                    Method::POST,
                    &endpoint.path,
                    &headers,
                    Some(&json!({ "service": SORA, "cost": 10 })),
                )
                .await;
            assert_eq!(
                (r.status, r.json.clone()),
                (StatusCode::OK, json!({ "sufficient": true, "balance": 10 })),
                "{what}"
            );
            let r = hub
                .call(
                    Method::POST,
                    &endpoint.path,
                    &headers,
                    Some(&json!({ "service": SORA, "cost": 11 })),
                )
                .await;
            assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{what}");
            assert_eq!(r.json["sufficient"], false, "{what}");
            assert_eq!(r.json["balance"], 10, "{what}");
        }
        ("POST", "/api/mcp/v1/credits/deduct") => {
            let user = hub.user_with(10).await.to_string();
            let key = format!("Bearer {}", hub.service_key(&["credits:deduct"]).await);
            let headers = [
                ("authorization", key.as_str()),
                ("x-user-id", user.as_str()),
            ];
            let body = json!({ "service": SORA, "cost": 10, "metadata": { "prompt": "a cat" } });
            let r = hub
                .call(Method::POST, &endpoint.path, &headers, Some(&body))
                .await;
            assert_eq!(r.status, StatusCode::OK, "{what}: {:?}", r.json);
            assert_eq!(r.json["status"], "ok", "{what}");
            assert_eq!(r.json["new_balance"], 0, "{what}");
            assert!(r.json["transaction_id"].is_string(), "{what}");
            let r = hub
                .call(Method::POST, &endpoint.path, &headers, Some(&body))
                .await;
            assert_eq!(r.status, StatusCode::PAYMENT_REQUIRED, "{what}");
        }
        ("GET", "/auth/google") => {
            let client = browser();
            let r = client
                .get(format!(
                    "{}{}?session=report",
                    hub.gateway_url, endpoint.path
                ))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::FOUND, "{what}");
            let location = r.headers()["location"].to_str().unwrap().to_owned();
            for part in [
                "state=",
                "nonce=",
                "code_challenge_method=S256",
                "redirect_uri=",
            ] {
                assert!(location.contains(part), "{what}: {location} lacks {part}");
            }
            let page = hub
                .sign_in(&browser(), "session=report&return_to=chatgpt")
                .await;
            assert_eq!(page.status, StatusCode::OK, "{what}");
            assert!(
                page.code().is_some(),
                "{what}: the success page shows the code"
            );
        }
        _ => panic!("the report lists {what} as existing, and this test has no check for it"),
    }
}

#[tokio::test]
async fn every_endpoint_the_report_lists_as_existing_answers_as_specified() {
    let (text, listed) = report();
    assert_eq!(
        listed.len(),
        4,
        "the four endpoints of the original request"
    );
    assert_eq!(
        summary_count(&text, "Total Required Endpoints"),
        listed.len()
    );
    let count = |status: &str| listed.iter().filter(|l| l.status == status).count();
    assert_eq!(summary_count(&text, "Existing Endpoints"), count("EXISTS"));
    assert_eq!(summary_count(&text, "Missing Endpoints"), count("MISSING"));
    assert_eq!(
        summary_count(&text, "Partially Implemented"),
        count("PARTIAL")
    );
    for engine in engines() {
        let google = FakeGoogle::start().await;
        let hub = SpawnedHub::builder(engine, &google).start().await;
        for endpoint in listed.iter().filter(|l| l.status == "EXISTS") {
            holds(&hub, endpoint).await;
        }
    }
}
