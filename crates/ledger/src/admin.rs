//! Operators' actions on accounts (disable, enable, delete, audited grants) and the audit log that
//! records each of them in the same database transaction as the change.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::{
    Grant, GrantOutcome, IdempotencyClaim, Idempotent, Refund, RefundOutcome, StoreError,
    Transaction,
};

/// The most audit entries one page holds.
pub const MAX_AUDIT_PAGE: u32 = 500;

/// An admin action to record.
#[derive(Debug, Clone)]
pub struct AuditEntry {
    /// Who: `user:<id>` (an operator's session), `key:<id>` (a service key) or `cli` (the `hub`
    /// command on the server).
    pub actor: String,
    /// What, e.g. `user.disable`, `credits.grant`.
    pub action: &'static str,
    /// To what, e.g. `user:<id>`.
    pub target: String,
    /// The state before, where there is one to show.
    pub before: Option<Value>,
    /// The state after (for ledger actions, the outcome written).
    pub after: Option<Value>,
    /// The operator's reason, when the action takes one.
    pub reason: Option<String>,
    /// The request that asked for it.
    pub request_id: Option<String>,
}

impl AuditEntry {
    /// An entry for `action` by `actor` on the user `target`.
    pub fn on_user(actor: &str, action: &'static str, target: Uuid) -> Self {
        Self::on(actor, action, format!("user:{target}"))
    }

    /// An entry for `action` by `actor` on the webhook endpoint `id`.
    pub fn on_webhook(actor: &str, action: &'static str, id: &str) -> Self {
        Self::on(actor, action, format!("webhook:{id}"))
    }

    fn on(actor: &str, action: &'static str, target: String) -> Self {
        Self {
            actor: actor.to_owned(),
            action,
            target,
            before: None,
            after: None,
            reason: None,
            request_id: None,
        }
    }

    /// The same entry with a reason.
    pub fn because(mut self, reason: Option<&str>) -> Self {
        self.reason = reason.map(str::to_owned);
        self
    }

    /// The same entry with the request's id.
    pub fn in_request(mut self, request_id: Option<&str>) -> Self {
        self.request_id = request_id.map(str::to_owned);
        self
    }

    /// A new entry id.
    pub fn new_id() -> String {
        format!("aud_{}", Uuid::now_v7().simple())
    }
}

/// One recorded admin action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditRecord {
    /// Its position in the log; pass as `cursor` for the entries before it.
    pub seq: i64,
    /// Opaque id (`aud_…`).
    pub id: String,
    /// Who: `user:<id>`, `key:<id>` or `cli`.
    pub actor: String,
    /// What, e.g. `user.disable`.
    pub action: String,
    /// To what, e.g. `user:<id>`.
    pub target: String,
    /// The state before.
    #[schema(value_type = Option<Object>)]
    pub before: Option<Value>,
    /// The state after.
    #[schema(value_type = Option<Object>)]
    pub after: Option<Value>,
    /// The operator's reason.
    pub reason: Option<String>,
    /// The request's id.
    pub request_id: Option<String>,
    /// When.
    pub created_at: DateTime<Utc>,
}

/// Which audit entries to read: newest first, all the filters together.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this actor.
    pub actor: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only this target.
    pub target: Option<String>,
    /// Only entries before this `seq`.
    pub cursor: Option<i64>,
    /// At most this many (capped at [`MAX_AUDIT_PAGE`]).
    pub limit: u32,
}

/// An account's standing, as operators set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AccountState {
    /// When an operator disabled it, if they did.
    pub disabled_at: Option<DateTime<Utc>>,
    /// When it was deleted (its personal data replaced), if it was.
    pub deleted_at: Option<DateTime<Utc>>,
}

/// What an operator's change of an account did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountChange {
    /// Changed, and recorded.
    Changed,
    /// It was so already: nothing changed, nothing recorded.
    Unchanged,
    /// A deleted account cannot be enabled.
    Deleted,
    /// No such user.
    UnknownUser,
}

/// An operator's correction of a balance, up or down, as an `adjustment` transaction.
#[derive(Debug, Clone)]
pub struct Adjust {
    /// Whose account.
    pub user_id: Uuid,
    /// The signed change: never 0; down never past what is available (the balance less holds).
    pub amount: i64,
    /// Why.
    pub reason: String,
    /// The request that asked for it.
    pub request_id: Option<String>,
}

/// What became of an adjustment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum AdjustOutcome {
    /// Done.
    Adjusted {
        /// The transaction written.
        transaction: Transaction,
    },
    /// A correction down by more than is available; nothing changed.
    Insufficient {
        /// What was available.
        available: i64,
    },
    /// The balance would pass its maximum; nothing changed.
    BalanceLimit,
    /// No such account.
    UnknownUser,
}

/// Checks an adjustment's amount: not 0, at most [`crate::MAX_AMOUNT`] either way.
pub fn validate_adjustment(amount: i64) -> Result<i64, crate::InvalidInput> {
    if amount == 0 || amount.unsigned_abs() > crate::MAX_AMOUNT as u64 {
        return Err(crate::InvalidInput {
            code: "invalid_amount",
            message: format!("amount must be -{0} to {0}, not 0", crate::MAX_AMOUNT),
            too_large: false,
        });
    }
    Ok(amount)
}

impl Changes for AdjustOutcome {
    fn changed(&self) -> bool {
        matches!(self, AdjustOutcome::Adjusted { .. })
    }
}

/// Whether a ledger outcome changed an account (and so is worth an audit entry).
pub trait Changes {
    /// `true` when the operation wrote a transaction.
    fn changed(&self) -> bool;
}

impl Changes for GrantOutcome {
    fn changed(&self) -> bool {
        matches!(self, GrantOutcome::Granted { .. })
    }
}

impl Changes for RefundOutcome {
    fn changed(&self) -> bool {
        matches!(self, RefundOutcome::Refunded { .. })
    }
}

/// Storage of operators' actions and their audit log.
#[async_trait]
pub trait AdminStore: Send + Sync {
    /// Whether the account is disabled or deleted; `None` for an unknown user.
    async fn account_state(&self, id: Uuid) -> Result<Option<AccountState>, StoreError>;
    /// Disables (freezes the account in the ledger) or enables a user, with its audit entry.
    async fn set_disabled(
        &self,
        id: Uuid,
        disabled: bool,
        audit: &AuditEntry,
    ) -> Result<AccountChange, StoreError>;
    /// Deletes a user: their personal data replaced, their roles and app grants gone, their
    /// account frozen; the id and the ledger rows stay, so the balances still add up.
    async fn delete_user(&self, id: Uuid, audit: &AuditEntry) -> Result<AccountChange, StoreError>;
    /// A grant, recorded in the audit log in its transaction when it grants.
    async fn grant_audited(
        &self,
        grant: &Grant,
        claim: Option<&IdempotencyClaim>,
        audit: &AuditEntry,
    ) -> Result<Idempotent<GrantOutcome>, StoreError>;
    /// A refund, recorded in the audit log in its transaction when it refunds.
    async fn refund_audited(
        &self,
        refund: &Refund,
        claim: Option<&IdempotencyClaim>,
        audit: &AuditEntry,
    ) -> Result<Idempotent<RefundOutcome>, StoreError>;
    /// An adjustment, always recorded in the audit log in its transaction when it adjusts.
    async fn adjust_audited(
        &self,
        adjust: &Adjust,
        claim: Option<&IdempotencyClaim>,
        audit: &AuditEntry,
    ) -> Result<Idempotent<AdjustOutcome>, StoreError>;
    /// Keeps a new service key, with its audit entry.
    async fn insert_service_key_audited(
        &self,
        key: &crate::service_keys::NewServiceKey,
        audit: &AuditEntry,
    ) -> Result<(), StoreError>;
    /// Revokes a live service key, with its audit entry; `false` (and no entry) if there is none.
    async fn revoke_service_key_audited(
        &self,
        id: &str,
        audit: &AuditEntry,
    ) -> Result<bool, StoreError>;
    /// Records an action that changed nothing in this database (ending sessions, which live in
    /// the session store).
    async fn record_audit(&self, audit: &AuditEntry) -> Result<(), StoreError>;
    /// Audit entries, newest first.
    async fn audit_log(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>, StoreError>;
}

/// Audit entries as CSV (RFC 4180: every field quoted, quotes doubled, lines end in CRLF), with a
/// header line. A field a spreadsheet would run as a formula starts with `'`.
pub fn audit_csv(entries: &[AuditRecord]) -> String {
    fn field(text: &str) -> String {
        let text = if text.starts_with(['=', '+', '-', '@']) {
            format!("'{text}")
        } else {
            text.to_owned()
        };
        format!("\"{}\"", text.replace('"', "\"\""))
    }
    let json = |v: &Option<Value>| v.as_ref().map(|v| v.to_string()).unwrap_or_default();
    let mut out =
        String::from("seq,id,created_at,actor,action,target,before,after,reason,request_id\r\n");
    for e in entries {
        let row = [
            e.seq.to_string(),
            e.id.clone(),
            e.created_at.to_rfc3339(),
            e.actor.clone(),
            e.action.clone(),
            e.target.clone(),
            json(&e.before),
            json(&e.after),
            e.reason.clone().unwrap_or_default(),
            e.request_id.clone().unwrap_or_default(),
        ];
        out.push_str(&row.iter().map(|f| field(f)).collect::<Vec<_>>().join(","));
        out.push_str("\r\n");
    }
    out
}

/// The address a deleted user's row keeps: unique, and plainly nobody's.
pub fn deleted_email(id: Uuid) -> String {
    format!("deleted-{}@deleted.invalid", id.simple())
}

/// The name a deleted user's row keeps.
pub const DELETED_NAME: &str = "Deleted user";
