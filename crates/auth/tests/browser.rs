//! The success page in a real browser: headless Chromium, driven over WebDriver, signs in against
//! the fake Google, finds the code, presses the copy button and sees the confirmation. A
//! screenshot is saved as `target/browser/success-page.png`. The authorization server's sign-in
//! and consent pages too: email and password, a daily cap, allow, and the redirect to the app
//! (`oauth-sign-in.png`, `oauth-consent.png`).
//!
//! The account page is in `browser/account.rs` (`account.png`, `account-th.png`), the operator
//! console in `browser/console.rs` (`console-*.png`).
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them); without them the
//! test is skipped, unless `HUB_TEST_REQUIRE_SERVICES=1`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};
use hub_test_support::fake_google::FakeGoogle;
use hub_test_support::{SessionBackend, spawn_auth};
use hyper_util::client::legacy::connect::HttpConnector;

#[path = "browser/account.rs"]
mod account;
#[path = "browser/console.rs"]
mod console;

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(9515)
}

async fn start_driver() -> Option<(Driver, u16)> {
    let chromium = std::path::Path::new("/usr/bin/chromium");
    let driver = which("chromedriver");
    if !chromium.exists() || driver.is_none() {
        assert_ne!(
            std::env::var("HUB_TEST_REQUIRE_SERVICES").as_deref(),
            Ok("1"),
            "chromium and chromedriver are required (apt-get install chromium chromium-driver)"
        );
        eprintln!("note: chromium or chromedriver missing; the browser test is skipped");
        return None;
    }
    let port = free_port();
    let child = Command::new(driver?)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            Instant::now() < deadline,
            "chromedriver did not start listening"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Some((driver, port))
}

fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|dir| std::path::Path::new(dir).join(program))
        .find(|path| path.is_file())
}

/// A WebDriver session in headless Chromium with its profile in `profile`.
async fn open_browser(port: u16, profile: &tempfile::TempDir) -> fantoccini::Client {
    open_browser_as(port, profile, "en-US", (900, 700)).await
}

/// As [`open_browser`], asking for pages in `language`, with a window of `size`.
async fn open_browser_as(
    port: u16,
    profile: &tempfile::TempDir,
    language: &str,
    size: (u32, u32),
) -> fantoccini::Client {
    let capabilities = serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--no-first-run",
                "--disable-quic", "--disable-sync", format!("--window-size={},{}", size.0, size.1),
                format!("--lang={language}"),
                format!("--user-data-dir={}", profile.path().display()),
            ],
            "prefs": { "intl.accept_languages": language }
        }
    });
    let serde_json::Value::Object(capabilities) = capabilities else {
        unreachable!()
    };
    ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session")
}

/// Saves a screenshot as `target/browser/{name}`.
async fn screenshot(browser: &fantoccini::Client, name: &str) {
    let png = browser.screenshot().await.unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/browser");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), &png).unwrap();
    assert!(png.starts_with(b"\x89PNG"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_success_page_shows_the_code_and_copies_it() {
    let Some((_driver, port)) = start_driver().await else {
        return;
    };
    let google = FakeGoogle::start().await;
    let auth = spawn_auth(SessionBackend::Sqlite, Some(&google)).await;
    let profile = tempfile::tempdir().unwrap();
    let browser = open_browser(port, &profile).await;

    // The whole flow in the browser: the hub, the provider, the callback.
    browser
        .goto(&format!(
            "{}/auth/google?session=browser-test&return_to=chatgpt",
            auth.base_url
        ))
        .await
        .unwrap();
    let code_box = browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id("verificationCode"))
        .await
        .expect("the success page");
    let code = code_box.text().await.unwrap();
    assert!(
        code.starts_with("VERIFIED-") && code.len() == 41,
        "{code:?}"
    );
    assert_eq!(
        auth.verify(&code).await.status,
        reqwest::StatusCode::OK,
        "the code on the page works"
    );
    let heading = browser
        .find(Locator::Css("h1"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(heading.contains("Login สำเร็จ!"), "{heading}");

    browser
        .find(Locator::Id("copyButton"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let confirmation = loop {
        let text = browser
            .find(Locator::Id("copied"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if !text.is_empty() {
            break text;
        }
        assert!(Instant::now() < deadline, "the copy button answers");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(confirmation, "คัดลอกรหัสเรียบร้อย!");

    screenshot(&browser, "success-page.png").await;
    browser.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_is_authorized_through_the_sign_in_and_consent_pages() {
    let Some((_driver, port)) = start_driver().await else {
        return;
    };
    let google = FakeGoogle::start().await;
    let auth = spawn_auth(SessionBackend::Sqlite, Some(&google)).await;
    let email = "nok@example.com";
    let new =
        hub_ledger::users::NewUser::new(email, "Nok", 50, hub_ledger::users::Role::User).unwrap();
    let user = auth.users.create_user(&new).await.unwrap().unwrap().user;
    let hash = hub_auth::passwords::hash("correct horse battery".into())
        .await
        .unwrap();
    auth.users.set_password_hash(user.id, &hash).await.unwrap();
    let redirect = "http://127.0.0.1:1/callback";
    let client = hub_ledger::oauth::new_client(
        "Sora2 Video Generator",
        &[redirect.to_owned()],
        false,
        &["credits:read".into(), "credits:spend".into()],
        hub_ledger::oauth::Registration::Operator,
    )
    .unwrap();
    auth.users.insert_oauth_client(&client).await.unwrap();
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let profile = tempfile::tempdir().unwrap();
    let browser = open_browser(port, &profile).await;
    browser
        .goto(&format!(
            "{}/oauth/authorize?response_type=code&client_id={}&redirect_uri=http%3A%2F%2F127.0.0.1%3A1%2Fcallback&state=b1&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
            auth.base_url, client.record.id
        ))
        .await
        .unwrap();

    // The sign-in page: Google, or email and password.
    let email_box = browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id("email"))
        .await
        .expect("the sign-in page");
    assert!(
        browser.find(Locator::Id("google")).await.is_ok(),
        "a Google button"
    );
    screenshot(&browser, "oauth-sign-in.png").await;
    email_box.send_keys(email).await.unwrap();
    let password = browser.find(Locator::Id("password")).await.unwrap();
    password.send_keys("correct horse battery").await.unwrap();
    browser
        .find(Locator::Id("sign-in"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();

    // The consent page: the app, its redirect host, the scopes in words, a daily cap.
    let allow = browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Id("allow"))
        .await
        .expect("the consent page");
    let page = browser.source().await.unwrap();
    assert!(
        page.contains("Sora2 Video Generator") && page.contains("127.0.0.1:1"),
        "{page}"
    );
    assert!(
        page.contains("Spend your credits") && page.contains(email),
        "{page}"
    );
    browser
        .find(Locator::Id("daily_cap"))
        .await
        .unwrap()
        .send_keys("40")
        .await
        .unwrap();
    screenshot(&browser, "oauth-consent.png").await;
    allow.click().await.unwrap();

    // The browser is sent back to the app (nothing listens there) with the code.
    let deadline = Instant::now() + Duration::from_secs(10);
    let back = loop {
        let url = browser.current_url().await.unwrap();
        if url.as_str().starts_with(redirect) {
            break url;
        }
        assert!(Instant::now() < deadline, "redirected to the app: {url}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let query: std::collections::HashMap<_, _> = back.query_pairs().into_owned().collect();
    assert_eq!(query["state"], "b1");
    let response = auth
        .http
        .post(format!("{}/oauth/token", auth.base_url))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", query["code"].as_str()),
            ("client_id", client.record.id.as_str()),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let grants = auth.users.list_grants(user.id).await.unwrap();
    assert_eq!(grants[0].daily_cap, Some(40), "the cap the person set");
    browser.close().await.unwrap();
}
