//! A real SMTP server for the mail tests: Python's aiosmtpd in a child process (see
//! `smtp_catcher.py`), which saves every message it receives; the test reads them back.
//!
//! It is a local process, not a service: the tests that use it never skip. Install it with
//! `python3 -m pip install aiosmtpd` (`.ci/run` does).

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;

const SCRIPT: &str = include_str!("smtp_catcher.py");

/// One message the server received.
#[derive(Debug, Clone, Deserialize)]
pub struct CaughtMail {
    /// The envelope sender.
    pub from: String,
    /// The envelope recipients.
    pub to: Vec<String>,
    /// The decoded subject.
    pub subject: String,
    /// The `From:` header as written.
    pub from_header: String,
    /// The decoded text body.
    pub body: String,
}

impl CaughtMail {
    /// The `token` of the first link to `page` in the body (panics if there is none).
    pub fn token_for(&self, page: &str) -> String {
        token_in(&self.body, page).unwrap_or_else(|| panic!("no {page} link in {:?}", self.body))
    }
}

/// The `token` of the first link to `page` (`/auth/verify-email`) in a text.
pub fn token_in(text: &str, page: &str) -> Option<String> {
    let start = text.find(&format!("{page}?token="))? + page.len() + "?token=".len();
    let token: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    (!token.is_empty()).then_some(token)
}

/// The SMTP server, stopped when dropped.
pub struct SmtpServer {
    /// `smtp://127.0.0.1:PORT`, for `SMTP_URL`.
    pub url: String,
    dir: tempfile::TempDir,
    child: Child,
    stdin: Option<ChildStdin>,
}

impl SmtpServer {
    /// Starts the server on a free port and waits until it listens.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let script = dir.path().join("smtp_catcher.py");
        std::fs::write(&script, SCRIPT).expect("write the SMTP script");
        let mails = dir.path().join("mails");
        std::fs::create_dir(&mails).expect("mail directory");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(&mails)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs (the SMTP server is aiosmtpd: python3 -m pip install aiosmtpd)");
        let stdout = child.stdout.take().expect("stdout");
        let mut port = String::new();
        BufReader::new(stdout)
            .read_line(&mut port)
            .expect("the SMTP server's port");
        let port: u16 = port.trim().parse().unwrap_or_else(|_| {
            panic!(
                "the SMTP server did not start (is aiosmtpd installed? python3 -m pip install aiosmtpd): {port:?}"
            )
        });
        let stdin = child.stdin.take();
        Self {
            url: format!("smtp://127.0.0.1:{port}"),
            dir,
            child,
            stdin,
        }
    }

    /// Every message received so far, in order.
    pub fn mails(&self) -> Vec<CaughtMail> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(self.dir.path().join("mails"))
            .expect("mail directory")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        files
            .iter()
            .map(|p| {
                serde_json::from_str(&std::fs::read_to_string(p).expect("read a mail"))
                    .expect("a saved mail")
            })
            .collect()
    }

    /// Waits (up to 20 s) until `count` messages to `to` have arrived, and returns them.
    pub async fn wait_for(&self, to: &str, count: usize) -> Vec<CaughtMail> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let mails: Vec<CaughtMail> = self
                .mails()
                .into_iter()
                .filter(|m| m.to.iter().any(|t| t == to))
                .collect();
            if mails.len() >= count {
                return mails;
            }
            assert!(
                Instant::now() < deadline,
                "{count} mail(s) to {to} did not arrive; got {mails:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        // Closing its standard input stops it; kill in case it does not.
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.flush();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_found_after_their_page() {
        let body = "open\n\nhttp://localhost:3000/auth/verify-email?token=AbC-_9\n\nbye";
        assert_eq!(
            token_in(body, "/auth/verify-email").as_deref(),
            Some("AbC-_9")
        );
        assert_eq!(token_in(body, "/auth/reset-password"), None);
    }
}
