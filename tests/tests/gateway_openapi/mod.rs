//! The OpenAPI documents a ChatGPT GPT Action imports: valid OpenAPI 3.1 (checked with
//! openapi-spec-validator), within ChatGPT's limits, and true to the gateway: every operation it
//! lists is served, and every route the gateway serves is listed. Also the privacy page.

mod full_document;
mod gpt_document;
mod privacy;

use std::collections::BTreeSet;

use hub_test_support::fake_google::FakeGoogle;
use hub_test_support::{Engine, SpawnedHub};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// Validates a document with the Python `openapi-spec-validator` (CI installs it).
fn validate(name: &str, document: &Value) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, serde_json::to_vec(document).unwrap()).unwrap();
    let output = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys\nfrom openapi_spec_validator import validate\nvalidate(json.load(open(sys.argv[1])))",
        ])
        .arg(&path)
        .output();
    let required = std::env::var_os("HUB_TEST_REQUIRE_SERVICES").is_some();
    match output {
        Ok(out) if out.status.success() => {}
        Ok(out) => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            if stderr.contains("No module named 'openapi_spec_validator'") && !required {
                eprintln!(
                    "openapi-spec-validator is not installed (pip install openapi-spec-validator); only the structural checks ran"
                );
                return;
            }
            panic!("{name} is not valid OpenAPI:\n{stderr}");
        }
        Err(e) if !required => {
            eprintln!("python3 is missing ({e}); only the structural checks ran")
        }
        Err(e) => panic!("python3: {e}"),
    }
}

async fn document(hub: &SpawnedHub, path: &str) -> Value {
    let r = hub.call(Method::GET, path, &[], None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    r.json
}

fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut all = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            all.push((path.clone(), method.clone(), operation.clone()));
        }
    }
    all
}

/// What ChatGPT requires of each operation it imports.
fn check_gpt_limits(doc: &Value) {
    let mut ids = BTreeSet::new();
    for (path, method, operation) in operations(doc) {
        let id = operation["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
        assert!(ids.insert(id.to_owned()), "operationId {id} twice");
        let description = operation["description"].as_str().unwrap_or_default();
        assert!(
            !description.is_empty() && description.chars().count() < 300,
            "{id}: the description must be 1 to 299 characters"
        );
        for parameter in operation["parameters"].as_array().into_iter().flatten() {
            let text = parameter["description"].as_str().unwrap_or_default();
            assert!(text.chars().count() < 700, "{id}: a parameter description");
        }
        assert!(
            operation["x-openai-isConsequential"].is_boolean(),
            "{id} says whether it is consequential"
        );
    }
}
