//! A page of the user's history with filters (kind, service), read from the ledger's own pages
//! newest first. The ledger pages by cursor without filters, so a filtered page reads ledger pages
//! until it has enough rows, or has looked at [`SCAN_LIMIT`] rows: then it ends early and its
//! "older" link goes on from where it stopped.

use hub_ledger::{MAX_PAGE, Store, StoreError, Transaction, TransactionKind};
use uuid::Uuid;

/// Rows on a page.
pub(crate) const PAGE: usize = 20;
/// The most rows one page looks at.
const SCAN_LIMIT: usize = 2_000;
/// The longest service name or cursor taken from a link.
const MAX_PARAM: usize = 64;

/// What the history shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Filter {
    /// One kind of transaction, or all.
    pub kind: Option<TransactionKind>,
    /// One service, or all.
    pub service: Option<String>,
}

impl Filter {
    /// The filter of the page's query: unknown kinds and overlong values are ignored.
    pub(crate) fn from_query(kind: Option<&str>, service: Option<&str>) -> Self {
        Self {
            kind: kind.and_then(TransactionKind::parse),
            service: service
                .map(str::trim)
                .filter(|s| !s.is_empty() && s.len() <= MAX_PARAM)
                .map(str::to_owned),
        }
    }

    fn is_empty(&self) -> bool {
        self.kind.is_none() && self.service.is_none()
    }

    fn matches(&self, transaction: &Transaction) -> bool {
        self.kind.is_none_or(|k| k == transaction.kind)
            && self
                .service
                .as_deref()
                .is_none_or(|s| transaction.service.as_deref() == Some(s))
    }
}

/// A cursor from a link, if it could be one.
pub(crate) fn cursor_param(cursor: Option<&str>) -> Option<&str> {
    cursor.filter(|c| {
        !c.is_empty()
            && c.len() <= MAX_PARAM
            && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    })
}

/// One page of history.
#[derive(Debug, Default)]
pub(crate) struct HistoryPage {
    /// Newest first.
    pub rows: Vec<Transaction>,
    /// Where the next (older) page starts, if there may be one.
    pub next_cursor: Option<String>,
}

/// The page after `cursor` (from the newest without one); `None` for an unknown user.
pub(crate) async fn page(
    store: &dyn Store,
    user_id: Uuid,
    filter: &Filter,
    cursor: Option<&str>,
) -> Result<Option<HistoryPage>, StoreError> {
    // Unfiltered, one ledger page is the page; filtered, read in the ledger's largest pages.
    let batch_size = if filter.is_empty() {
        PAGE as u32
    } else {
        MAX_PAGE
    };
    let mut cursor = cursor.map(str::to_owned);
    let mut page = HistoryPage::default();
    let mut scanned = 0;
    loop {
        let Some(batch) = store
            .transactions(user_id, batch_size, cursor.as_deref())
            .await?
        else {
            return Ok(None);
        };
        let more_in_ledger = batch.next_cursor.is_some();
        let count = batch.transactions.len();
        for (index, transaction) in batch.transactions.into_iter().enumerate() {
            scanned += 1;
            cursor = Some(transaction.id.clone());
            if filter.matches(&transaction) {
                page.rows.push(transaction);
            }
            let more = index + 1 < count || more_in_ledger;
            if page.rows.len() == PAGE || (scanned >= SCAN_LIMIT && more) {
                page.next_cursor = cursor.filter(|_| more);
                return Ok(Some(page));
            }
        }
        if !more_in_ledger {
            return Ok(Some(page));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: TransactionKind, service: Option<&str>) -> Transaction {
        Transaction {
            id: "txn_1".into(),
            user_id: Uuid::nil(),
            kind,
            service: service.map(str::to_owned),
            amount: -1,
            balance_before: 1,
            balance_after: 0,
            refund_of: None,
            reason: None,
            metadata: None,
            created_at: chrono::Utc::now(),
        }
    }

    #[test]
    fn a_filter_keeps_what_it_names_and_ignores_what_it_cannot_read() {
        let debits = Filter::from_query(Some("debit"), Some(" sora2 "));
        assert!(debits.matches(&row(TransactionKind::Debit, Some("sora2"))));
        assert!(!debits.matches(&row(TransactionKind::Debit, Some("other"))));
        assert!(!debits.matches(&row(TransactionKind::Grant, None)));
        let nonsense = Filter::from_query(Some("steal"), Some(&"x".repeat(65)));
        assert_eq!(nonsense, Filter::default());
        assert!(nonsense.matches(&row(TransactionKind::Grant, None)));
        assert_eq!(cursor_param(Some("txn_abc123")), Some("txn_abc123"));
        assert_eq!(cursor_param(Some("x' OR 1=1")), None);
    }
}
