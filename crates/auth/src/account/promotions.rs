//! The account page's promotional grants: what is left of each, its priority and when it ends,
//! in the order they are spent (Thai and English, as the rest of the page).

use hub_ledger::grants::CreditGrant;

use crate::oauth::pages::Lang;

/// A grant that still holds credits.
pub(super) struct GrantRow {
    pub(super) remaining: i64,
    pub(super) amount: i64,
    pub(super) priority: i32,
    pub(super) ends: Option<String>,
}

/// The section's words, in one language.
pub(super) struct GrantWords {
    pub(super) title: &'static str,
    pub(super) note: &'static str,
    pub(super) left: &'static str,
    pub(super) of: &'static str,
    pub(super) priority: &'static str,
    pub(super) ends: &'static str,
    pub(super) never: &'static str,
}

const ENGLISH: GrantWords = GrantWords {
    title: "Promotional credits",
    note: "Spent before your other credits, in this order; what is left on the end date expires.",
    left: "Left",
    of: "of",
    priority: "Priority",
    ends: "Expires",
    never: "Never",
};

const THAI: GrantWords = GrantWords {
    title: "เครดิตโปรโมชัน",
    note: "ใช้ก่อนเครดิตอื่นตามลำดับนี้ เครดิตที่เหลือเมื่อถึงวันหมดอายุจะหมดอายุ",
    left: "คงเหลือ",
    of: "จาก",
    priority: "ลำดับความสำคัญ",
    ends: "หมดอายุ",
    never: "ไม่หมดอายุ",
};

impl GrantWords {
    /// The words in `lang`.
    pub(super) fn of(lang: Lang) -> &'static Self {
        match lang {
            Lang::Thai => &THAI,
            Lang::English => &ENGLISH,
        }
    }
}

/// The rows, in spending order as the store lists them.
pub(super) fn rows(grants: &[CreditGrant]) -> Vec<GrantRow> {
    grants
        .iter()
        .map(|g| GrantRow {
            remaining: g.remaining,
            amount: g.amount,
            priority: g.priority,
            ends: g.expires_at.map(crate::pages::minute),
        })
        .collect()
}
