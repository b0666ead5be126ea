//! Mail: the verification and password-reset links reach people by email.
//!
//! One [`Mailer`] trait, two implementations: [`SmtpMailer`] (`SMTP_URL` set: a real server,
//! STARTTLS where the server offers it) and [`OutboxMailer`] (embedded default: every mail is
//! written to `HUB_DATA_DIR/outbox/` as an `.eml` file and its link is logged, so `hub up` works
//! end to end without a mail server).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hub_config::{ConfigError, Env, ExposeSecret, SecretString};
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// The sender when `MAIL_FROM` is unset.
pub const DEFAULT_FROM: &str = "Smart AI Hub <no-reply@localhost>";
/// How long one SMTP conversation may take.
pub(crate) const SMTP_TIMEOUT: Duration = Duration::from_secs(15);

/// Where mail goes.
#[derive(Debug, Clone)]
pub struct MailConfig {
    /// `SMTP_URL`, e.g. `smtp://user:pass@host:587`; unset: the outbox.
    pub smtp_url: Option<SecretString>,
    /// `MAIL_FROM`, default [`DEFAULT_FROM`].
    pub from: String,
    /// Where the outbox writes: `HUB_DATA_DIR/outbox`.
    pub outbox_dir: PathBuf,
}

impl MailConfig {
    /// Reads `SMTP_URL` and `MAIL_FROM`, checking both.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let from = env.string_or("MAIL_FROM", DEFAULT_FROM);
        if from.parse::<Mailbox>().is_err() {
            return Err(ConfigError {
                name: "MAIL_FROM".into(),
                problem: format!("{from:?} is not a mailbox"),
                expected: "an address, optionally with a name: Smart AI Hub <no-reply@example.com>"
                    .into(),
            });
        }
        let smtp_url = env.secret("SMTP_URL");
        if let Some(url) = &smtp_url {
            smtp_transport(url.expose_secret()).map_err(|problem| ConfigError {
                name: "SMTP_URL".into(),
                problem,
                expected: "smtp://user:pass@host:587 (STARTTLS if offered), smtp://host:port?tls=required, or smtps://user:pass@host:465".into(),
            })?;
        }
        Ok(Self {
            smtp_url,
            from,
            outbox_dir: env.data_dir().join("outbox"),
        })
    }
}

/// One mail to one person.
#[derive(Debug, Clone)]
pub struct Mail {
    /// The recipient's address.
    pub to: String,
    /// The subject line.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// The link the mail carries (the outbox logs it; SMTP never does).
    pub link: String,
}

/// Why a mail was not sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// An address or the message could not be built.
    #[error("building the mail: {0}")]
    Build(String),
    /// The SMTP server refused or could not be reached.
    #[error("smtp: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    /// The outbox could not be written.
    #[error("outbox: {0}")]
    Outbox(#[from] std::io::Error),
}

/// Sends mail.
#[async_trait]
pub trait Mailer: Send + Sync {
    /// Sends one mail, returning once it is handed over (to the server, or to the outbox).
    async fn send(&self, mail: &Mail) -> Result<(), MailError>;
}

/// The mailer the configuration names.
pub fn open(config: &MailConfig) -> anyhow::Result<Arc<dyn Mailer>> {
    let from: Mailbox = config
        .from
        .parse()
        .map_err(|e| anyhow::anyhow!("MAIL_FROM: {e}"))?;
    Ok(match &config.smtp_url {
        Some(url) => Arc::new(SmtpMailer {
            transport: smtp_transport(url.expose_secret())
                .map_err(|e| anyhow::anyhow!("SMTP_URL: {e}"))?,
            from,
        }),
        None => Arc::new(OutboxMailer {
            dir: config.outbox_dir.clone(),
            from,
        }),
    })
}

/// Sends a mail without making the request wait for it (nor letting its timing tell anything);
/// a failure is logged.
pub fn send_in_background(mailer: &Arc<dyn Mailer>, mail: Mail) {
    let mailer = mailer.clone();
    tokio::spawn(async move {
        if let Err(e) = mailer.send(&mail).await {
            tracing::warn!(error = %e, subject = %mail.subject, "a mail was not sent");
        }
    });
}

fn message(from: &Mailbox, mail: &Mail) -> Result<Message, MailError> {
    let to: Mailbox = mail
        .to
        .parse()
        .map_err(|e| MailError::Build(format!("recipient: {e}")))?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(&mail.subject)
        .header(ContentType::TEXT_PLAIN)
        .body(mail.text.clone())
        .map_err(|e| MailError::Build(e.to_string()))
}

/// The transport of an `SMTP_URL`, with lettre's `?tls=` semantics; a plain `smtp://` URL
/// without `tls=` upgrades with STARTTLS when the server offers it (`tls=opportunistic`).
fn smtp_transport(url: &str) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    let url = if url.starts_with("smtp://") && !url.contains("tls=") {
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}tls=opportunistic")
    } else {
        url.to_owned()
    };
    let builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(&url)
        // lettre's message may quote the URL, password and all: say what is wrong without it.
        .map_err(|_| "not a usable SMTP URL".to_owned())?;
    Ok(builder.timeout(Some(SMTP_TIMEOUT)).build())
}

/// Mail through an SMTP server.
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        self.transport.send(message(&self.from, mail)?).await?;
        tracing::info!(subject = %mail.subject, "mail sent");
        Ok(())
    }
}

/// Mail written to files, for the embedded mode and development.
pub struct OutboxMailer {
    dir: PathBuf,
    from: Mailbox,
}

impl OutboxMailer {
    /// An outbox in `dir` (made on first use).
    pub fn new(dir: PathBuf, from: Mailbox) -> Self {
        Self { dir, from }
    }
}

#[async_trait]
impl Mailer for OutboxMailer {
    async fn send(&self, mail: &Mail) -> Result<(), MailError> {
        let formatted = message(&self.from, mail)?.formatted();
        tokio::fs::create_dir_all(&self.dir).await?;
        let name = format!(
            "{}-{}.eml",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ"),
            uuid::Uuid::new_v4().simple()
        );
        // Written under another name, then renamed: a reader never sees half a mail.
        let partial = self.dir.join(format!(".{name}.partial"));
        tokio::fs::write(&partial, formatted).await?;
        let path = self.dir.join(&name);
        tokio::fs::rename(&partial, &path).await?;
        tracing::info!(
            path = %path.display(),
            subject = %mail.subject,
            link = %mail.link,
            "no SMTP_URL: mail written to the outbox"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls_are_checked_and_starttls_is_the_default() {
        assert!(smtp_transport("smtp://127.0.0.1:2525").is_ok());
        assert!(smtp_transport("smtp://user:pass@mail.example.com:587").is_ok());
        assert!(smtp_transport("smtp://mail.example.com:587?tls=required").is_ok());
        assert!(smtp_transport("smtps://user:pass@mail.example.com").is_ok());
        assert!(smtp_transport("http://mail.example.com").is_err());
        assert!(smtp_transport("smtp://mail.example.com?tls=sometimes").is_err());
        let error = smtp_transport("smtp://user:hunter2@/").unwrap_err();
        assert!(!error.contains("hunter2"), "{error}");
    }

    #[tokio::test]
    async fn the_outbox_writes_whole_eml_files() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = OutboxMailer::new(dir.path().join("outbox"), DEFAULT_FROM.parse().unwrap());
        let mail = Mail {
            to: "malee@example.com".into(),
            subject: "Hello".into(),
            text: "Open https://hub.example/auth/verify-email?token=abc".into(),
            link: "https://hub.example/auth/verify-email?token=abc".into(),
        };
        outbox.send(&mail).await.unwrap();
        let files: Vec<_> = std::fs::read_dir(dir.path().join("outbox"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1, "{files:?}");
        assert!(files[0].extension().is_some_and(|e| e == "eml"));
        let eml = std::fs::read_to_string(&files[0]).unwrap();
        assert!(eml.contains("To: malee@example.com"), "{eml}");
        assert!(
            eml.contains("From: \"Smart AI Hub\" <no-reply@localhost>")
                || eml.contains("From: Smart AI Hub <no-reply@localhost>"),
            "{eml}"
        );
        assert!(eml.contains("Subject: Hello"));
        assert!(eml.contains("token=abc"));
    }
}
