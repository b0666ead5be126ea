//! Low-balance email alerts. The ledger's triggers write credits.low and credits.depleted to the
//! outbox when the user asked for an email (their setting on the account page); the core fans
//! them out to an email delivery each; this loop, in the service that has the mail sender, claims
//! those deliveries (as the core claims webhooks: safe beside other replicas), sends each, and
//! retries a failure on the webhooks' schedule, for up to three days.

use std::sync::Arc;
use std::time::Duration;

use hub_ledger::Store;
use hub_ledger::webhooks::{Attempt, Channel, ClaimedDelivery};

use crate::mail::{Mail, Mailer, SMTP_TIMEOUT};

/// The first retry's delay (the schedule's unit).
const RETRY_BASE: Duration = Duration::from_secs(5);
/// How many mails one claim takes; they are sent one after another.
const BATCH: u32 = 4;
/// How long claimed mails are kept from other claimants: every mail of the batch may take the
/// SMTP timeout, and a margin; a replica never re-claims a mail still being sent here.
const LEASE: Duration = Duration::from_secs(SMTP_TIMEOUT.as_secs() * BATCH as u64 + 15);

/// Sends the due alert mails every second, until the task is dropped.
pub async fn send_alerts(store: Arc<dyn Store>, mailer: Arc<dyn Mailer>, account_url: String) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let due = match store.claim_deliveries(Channel::Email, BATCH, LEASE).await {
            Ok(due) => due,
            Err(e) => {
                tracing::warn!(error = %e, "could not claim alert mails");
                continue;
            }
        };
        for delivery in due {
            let outcome = match mailer.send(&alert_mail(&delivery, &account_url)).await {
                Ok(()) => Attempt::delivered(None),
                Err(e) => Attempt::failed(&delivery, None, e.to_string(), RETRY_BASE),
            };
            if let Err(e) = store.record_attempt(delivery.id, &outcome).await {
                tracing::warn!(error = %e, "could not record an alert mail");
            }
        }
    }
}

/// The mail, in Thai and English.
pub fn alert_mail(delivery: &ClaimedDelivery, account_url: &str) -> Mail {
    let available = delivery.data["available"].as_i64().unwrap_or(0);
    let (subject, thai, english) = if delivery.event_type == "credits.depleted" {
        (
            "เครดิตของคุณหมดแล้ว / Your credits have run out",
            "เครดิตที่ใช้ได้ของคุณหมดแล้ว เติมเครดิตเพื่อใช้งานต่อ".to_owned(),
            "Your available credits have run out. Top up to keep going.".to_owned(),
        )
    } else {
        (
            "เครดิตของคุณใกล้หมด / Your credits are running low",
            format!("คุณเหลือเครดิตที่ใช้ได้ {available} เครดิต"),
            format!("You have {available} credits available."),
        )
    };
    Mail {
        to: delivery.target.clone(),
        subject: subject.to_owned(),
        text: format!(
            "{thai}\n{english}\n\n{account_url}\n\nปิดการแจ้งเตือนนี้ได้ที่หน้าบัญชี / Turn this alert off on your account page."
        ),
        link: account_url.to_owned(),
    }
}
