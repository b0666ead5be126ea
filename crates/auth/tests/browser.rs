//! The success page in a real browser: headless Chromium, driven over WebDriver, signs in against
//! the fake Google, finds the code, presses the copy button and sees the confirmation. A
//! screenshot is saved as `target/browser/success-page.png`.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them); without them the
//! test is skipped, unless `HUB_TEST_REQUIRE_SERVICES=1`.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{ClientBuilder, Locator};
use hub_test_support::fake_google::FakeGoogle;
use hub_test_support::{SessionBackend, spawn_auth};
use hyper_util::client::legacy::connect::HttpConnector;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_success_page_shows_the_code_and_copies_it() {
    let Some((_driver, port)) = start_driver().await else {
        return;
    };
    let google = FakeGoogle::start().await;
    let auth = spawn_auth(SessionBackend::Sqlite, Some(&google)).await;
    let profile = tempfile::tempdir().unwrap();
    let capabilities = serde_json::json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--no-first-run",
                "--disable-quic", "--disable-sync", "--window-size=900,700",
                format!("--user-data-dir={}", profile.path().display()),
            ]
        }
    });
    let serde_json::Value::Object(capabilities) = capabilities else {
        unreachable!()
    };
    let browser = ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("a WebDriver session");

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

    let png = browser.screenshot().await.unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/browser");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("success-page.png"), &png).unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    browser.close().await.unwrap();
}
