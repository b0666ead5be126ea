//! The full OpenAPI document: valid, within ChatGPT's limits, true to the gateway's routes, and
//! with the constraints each operation declares.

use super::*;

#[tokio::test]
async fn the_openapi_document_is_valid_and_true_to_the_gateway() {
    let google = FakeGoogle::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google).start().await;
    let doc = document(&hub, "/openapi.json").await;
    validate("openapi.json", &doc);
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(
        doc["servers"][0]["url"],
        hub.gateway_url.as_str(),
        "PUBLIC_BASE_URL"
    );
    check_gpt_limits(&doc);
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    for scheme in ["sessionToken", "serviceKey", "bearerJwt"] {
        assert!(schemes.contains_key(scheme), "{scheme}");
    }

    let consequential: BTreeSet<String> = operations(&doc)
        .into_iter()
        .filter(|(_, _, op)| op["x-openai-isConsequential"] == true)
        .map(|(_, _, op)| op["operationId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        consequential,
        [
            "captureReservation",
            "deductCredits",
            "grantCredits",
            "refundCredits",
            "reserveCredits"
        ]
        .map(str::to_owned)
        .into(),
        "operations that spend, hold or return credits"
    );
    for (path, method, operation) in operations(&doc) {
        let responses = operation["responses"].as_object().unwrap();
        assert!(
            responses
                .keys()
                .any(|s| s.starts_with('2') || s.starts_with('3')),
            "{method} {path}: its success"
        );
        if path.starts_with("/api/") {
            assert!(responses.contains_key("429"), "{method} {path}: 429");
        }
        if path.starts_with("/api/mcp/v1/credits/") {
            for status in ["401", "403"] {
                assert!(responses.contains_key(status), "{method} {path}: {status}");
            }
        }
    }

    check_declared_constraints(&doc);

    // Every operation listed is served through the gateway: nothing answers the gateway's own
    // "no such endpoint" or "method not allowed".
    let key = hub
        .service_key(&[
            "credits:check",
            "credits:deduct",
            "credits:refund",
            "credits:grant",
        ])
        .await;
    let listed: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(path, method, _)| (path, method))
        .collect();
    for (path, method) in &listed {
        let concrete = path.replace("{id}", "some-id");
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let r = hub
            .call(method.clone(), &concrete, &[("x-api-key", &key)], None)
            .await;
        assert_ne!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
        assert!(
            !(r.status == StatusCode::NOT_FOUND && r.json["error"]["code"] == "not_found"),
            "{method} {path} is listed but not served: {:?}",
            r.json
        );
    }

    // And every route served is listed: other methods on listed paths, and other paths under
    // every prefix the gateway routes, are not served.
    for path in listed.iter().map(|(p, _)| p).collect::<BTreeSet<_>>() {
        let concrete = path.replace("{id}", "some-id");
        for method in ["get", "post", "delete", "put", "patch"] {
            if listed.contains(&(path.clone(), method.to_owned())) {
                continue;
            }
            let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let r = hub
                .call(m.clone(), &concrete, &[("x-api-key", &key)], None)
                .await;
            assert!(
                r.status == StatusCode::METHOD_NOT_ALLOWED || r.status == StatusCode::NOT_FOUND,
                "{m} {path} is served ({}) but not listed",
                r.status
            );
        }
    }
    for path in [
        "/api/auth/unlisted",
        "/api/mcp/v1/credits/unlisted",
        "/api/admin/unlisted",
        "/api/admin/credits/unlisted",
        "/auth/unlisted",
        "/.well-known/unlisted",
        "/unlisted",
        "/api/unlisted",
    ] {
        let r = hub
            .call(Method::GET, path, &[("x-api-key", &key)], None)
            .await;
        assert_eq!(
            r.status,
            StatusCode::NOT_FOUND,
            "{path} is served but not listed"
        );
    }
    // The MCP endpoints (/api/mcp/ws, /mcp) speak JSON-RPC over WebSocket and Streamable HTTP,
    // which OpenAPI cannot describe; they are the only routes the document leaves out.
    for path in ["/api/mcp/ws", "/mcp"] {
        assert!(doc["paths"].get(path).is_none());
    }
}

fn parameter<'a>(operation: &'a Value, name: &str) -> &'a Value {
    operation["parameters"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("no parameter {name}"))
}

/// The rules the services enforce are in the document, so a client (or schemathesis, in
/// tests/schemathesis/run.sh) can tell a valid request from one that is refused.
fn check_declared_constraints(doc: &Value) {
    let schemas = &doc["components"]["schemas"];
    let max_amount = serde_json::json!(1_000_000_000_000_i64);
    for (schema, field, minimum) in [
        ("CheckBody", "cost", 0),
        ("DeductBody", "cost", 1),
        ("ReserveBody", "cost", 1),
        ("RefundBody", "amount", 1),
        ("GrantBody", "amount", 1),
        ("CaptureBody", "amount", 0),
    ] {
        let property = &schemas[schema]["properties"][field];
        assert_eq!(property["minimum"], minimum, "{schema}.{field}");
        assert_eq!(property["maximum"], max_amount, "{schema}.{field}");
    }
    for schema in ["CheckBody", "DeductBody", "ReserveBody"] {
        let properties = &schemas[schema]["properties"];
        assert_eq!(properties["service"]["pattern"], "^[a-z0-9._-]{1,64}$");
        assert_eq!(
            properties["session_token"]["pattern"],
            "^VERIFIED-[A-Za-z0-9]{32}$"
        );
    }
    assert_eq!(
        schemas["VerifyBody"]["properties"]["session_token"]["pattern"],
        "^VERIFIED-[A-Za-z0-9]{32}$"
    );
    assert_eq!(
        schemas["GrantBody"]["properties"]["user_id"]["format"],
        "uuid"
    );
    assert_eq!(
        schemas["ReserveBody"]["properties"]["ttl_seconds"]["maximum"],
        3600
    );
    assert_eq!(
        schemas["RefundBody"]["properties"]["reason"]["maxLength"],
        500
    );
    assert_eq!(
        schemas["RegisterBody"]["properties"]["password"]["minLength"],
        8
    );

    let paths = &doc["paths"];
    let deduct = &paths["/api/mcp/v1/credits/deduct"]["post"];
    let key = &parameter(deduct, "Idempotency-Key")["schema"];
    assert_eq!(
        (&key["minLength"], &key["maxLength"]),
        (&1.into(), &255.into())
    );
    assert_eq!(key["pattern"], "^[\\x21-\\x7E]{1,255}$");
    assert_eq!(parameter(deduct, "X-User-ID")["schema"]["format"], "uuid");
    let history = &paths["/api/mcp/v1/credits/transactions"]["get"];
    let limit = &parameter(history, "limit")["schema"];
    assert_eq!(
        (&limit["minimum"], &limit["maximum"]),
        (&1.into(), &200.into())
    );
    let capture = &paths["/api/mcp/v1/credits/reservations/{id}/capture"]["post"];
    assert_eq!(
        parameter(capture, "id")["schema"]["pattern"],
        "^res_[0-9a-fA-F]{32}$"
    );
    let sign_in = &paths["/auth/google"]["get"];
    assert_eq!(
        parameter(sign_in, "return_to")["schema"]["enum"],
        serde_json::json!(["chatgpt"])
    );

    // Every status the code answers, where it can answer it.
    let statuses = |operation: &Value| -> BTreeSet<String> {
        operation["responses"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect()
    };
    for status in [
        "400", "401", "402", "403", "404", "413", "415", "422", "429", "503",
    ] {
        assert!(statuses(deduct).contains(status), "deductCredits: {status}");
    }
    assert!(
        !statuses(deduct).contains("409"),
        "deductCredits has no conflict"
    );
    let balance = &paths["/api/mcp/v1/credits/balance"]["get"];
    assert!(statuses(balance).contains("400"), "a malformed X-User-ID");
    for status in ["400", "422"] {
        assert!(
            statuses(history).contains(status),
            "listTransactions: {status}"
        );
    }
    assert!(statuses(sign_in).contains("503"), "Google not configured");
}
