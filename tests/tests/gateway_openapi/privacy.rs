//! The privacy page, built in or the operator's.

use super::*;

#[tokio::test]
async fn the_privacy_page_is_built_in_or_the_operators() {
    let google = FakeGoogle::start().await;
    let hub = SpawnedHub::builder(Engine::Sqlite, &google).start().await;
    let r = hub
        .http
        .get(format!("{}/privacy", hub.gateway_url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = r.text().await.unwrap();
    for part in [
        "Privacy policy",
        "What we store",
        "How long",
        "How to delete",
        &hub.gateway_url,
    ] {
        assert!(page.contains(part), "{part}");
    }

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("privacy.html");
    std::fs::write(&path, "<h1>Our own policy</h1>").unwrap();
    let custom = SpawnedHub::builder(Engine::Sqlite, &google)
        .gateway(|config| {
            config.privacy_policy_path = Some(path.clone());
        })
        .start()
        .await;
    let page = custom
        .http
        .get(format!("{}/privacy", custom.gateway_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(page, "<h1>Our own policy</h1>");
}
