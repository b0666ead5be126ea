//! The account page's low-balance alert: on or off, and a threshold in credits or in percent of
//! the last grant or top-up (or the operator's default). The threshold is also the one the
//! credits.low webhooks use for this user. `POST /account/alerts` saves it (CSRF-checked).

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use hub_ledger::webhooks::{AlertSetting, AlertState, Threshold, validate_threshold};
use serde::Deserialize;

use super::forms::{AccountForm, authorized, back, refused};
use super::unavailable;
use crate::AppState;
use crate::oauth::pages::Lang;

/// The section's words, in one language.
pub(crate) struct AlertWords {
    pub title: &'static str,
    pub note: &'static str,
    pub email: &'static str,
    pub default: &'static str,
    pub percent: &'static str,
    pub credits: &'static str,
    pub value: &'static str,
    pub now: &'static str,
    pub save: &'static str,
    pub invalid: &'static str,
}

const THAI: AlertWords = AlertWords {
    title: "แจ้งเตือนเมื่อเครดิตใกล้หมด",
    note: "เราแจ้งเตือนครั้งเดียวเมื่อเครดิตที่ใช้ได้ลดลงถึงเกณฑ์ และอีกครั้งเมื่อหมด",
    email: "ส่งอีเมลแจ้งเตือนถึงฉัน",
    default: "ค่าเริ่มต้น (เปอร์เซ็นต์ของการเติมครั้งล่าสุด)",
    percent: "เปอร์เซ็นต์ของการเติมครั้งล่าสุด",
    credits: "จำนวนเครดิต",
    value: "ค่า",
    now: "เกณฑ์ตอนนี้",
    save: "บันทึก",
    invalid: "เกณฑ์ต้องเป็นเปอร์เซ็นต์ 1 ถึง 100 หรือจำนวนเครดิต 0 ขึ้นไป",
};

const ENGLISH: AlertWords = AlertWords {
    title: "Low-balance alert",
    note: "We tell you once when your available credits fall to the threshold, and once when they run out.",
    email: "Email me an alert",
    default: "The default (a percent of my last top-up)",
    percent: "A percent of my last top-up",
    credits: "A number of credits",
    value: "Value",
    now: "Threshold now",
    save: "Save",
    invalid: "The threshold is a percent from 1 to 100, or 0 or more credits.",
};

impl AlertWords {
    pub(crate) fn of(lang: Lang) -> &'static Self {
        match lang {
            Lang::Thai => &THAI,
            Lang::English => &ENGLISH,
        }
    }
}

/// What the section shows.
pub(crate) struct AlertView {
    pub aw: &'static AlertWords,
    pub email: bool,
    pub mode: &'static str,
    pub value: String,
    pub low_at: i64,
}

impl AlertView {
    /// The section for a user's setting (`None`: the defaults).
    pub(crate) fn new(lang: Lang, state: Option<AlertState>) -> Self {
        let (email, threshold, low_at) = state.map_or((false, Threshold::Default, 0), |s| {
            (s.setting.email, s.setting.threshold, s.low_at)
        });
        let (mode, value) = match threshold {
            Threshold::Default => ("default", String::new()),
            Threshold::Percent(p) => ("percent", p.to_string()),
            Threshold::Credits(c) => ("credits", c.to_string()),
        };
        Self {
            aw: AlertWords::of(lang),
            email,
            mode,
            value,
            low_at,
        }
    }
}

/// The alert form's fields.
#[derive(Deserialize)]
pub(crate) struct AlertForm {
    #[serde(flatten)]
    account: AccountForm,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    mode: String,
    #[serde(default)]
    value: String,
}

/// `POST /account/alerts`.
pub(crate) async fn save(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<AlertForm>,
) -> Response {
    let session = match authorized(&state, &headers, &form.account).await {
        Ok(session) => session,
        Err(refusal) => return refusal,
    };
    let lang = Lang::of(&headers);
    let value = form.value.trim().parse::<i64>();
    let threshold = match (form.mode.as_str(), value) {
        ("default", _) => Ok(Threshold::Default),
        ("percent", Ok(p)) => validate_threshold(Threshold::Percent(p)).map_err(drop),
        ("credits", Ok(c)) => validate_threshold(Threshold::Credits(c)).map_err(drop),
        _ => Err(()),
    };
    let Ok(threshold) = threshold else {
        return refused(
            lang,
            StatusCode::UNPROCESSABLE_ENTITY,
            AlertWords::of(lang).invalid,
        );
    };
    let setting = AlertSetting {
        email: form.email.is_some_and(|e| !e.is_empty()),
        threshold,
    };
    match state
        .users
        .set_alert_setting(session.user_id, &setting)
        .await
    {
        Ok(_) => back(&state, false),
        Err(e) => unavailable(lang, &e),
    }
}
