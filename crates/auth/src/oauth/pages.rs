//! The pages of the authorization flow, in Thai or English by `Accept-Language`: sign in, consent,
//! and the error page shown when a request cannot be trusted to redirect anywhere.

use askama::Template;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::AppState;
use crate::pages::{nonce, secure};

/// The language of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lang {
    Thai,
    English,
}

/// The words of the pages, in one language.
pub(crate) struct Words {
    pub sign_in_title: &'static str,
    pub sign_in_note: &'static str,
    pub account_sign_in_note: &'static str,
    pub console_sign_in_note: &'static str,
    pub with_google: &'static str,
    pub or: &'static str,
    pub email: &'static str,
    pub password: &'static str,
    pub sign_in_button: &'static str,
    pub wrong_password: &'static str,
    pub too_many_attempts: &'static str,
    /// An operator disabled the account.
    pub account_disabled: &'static str,
    pub unavailable: &'static str,
    pub bad_request: &'static str,
    pub consent_title: &'static str,
    pub wants_access: &'static str,
    pub redirect_host: &'static str,
    pub signed_in_as: &'static str,
    pub daily_cap: &'static str,
    pub no_cap: &'static str,
    pub allow: &'static str,
    pub deny: &'static str,
    pub error_title: &'static str,
    pub scope_read: &'static str,
    pub scope_spend: &'static str,
    pub scope_mcp: &'static str,
}

const ENGLISH: Words = Words {
    sign_in_title: "Sign in to Smart AI Hub",
    sign_in_note: "An app asks to connect to your Smart AI Hub account. Sign in first.",
    account_sign_in_note: "Sign in to see your credits, usage, sessions and connected apps.",
    console_sign_in_note: "Operators: sign in to the console with your hub account.",
    with_google: "Sign in with Google",
    or: "or with your email and password",
    email: "Email",
    password: "Password",
    sign_in_button: "Sign in",
    wrong_password: "The email or password is wrong.",
    too_many_attempts: "Too many attempts; try again later.",
    account_disabled: "This account is disabled; contact the operator.",
    unavailable: "Sign-in is briefly unavailable; try again in a moment.",
    bad_request: "This sign-in link is not valid. Start again from the app.",
    consent_title: "Connect an app",
    wants_access: "wants to use your Smart AI Hub account:",
    redirect_host: "It will be sent back to",
    signed_in_as: "Signed in as",
    daily_cap: "Daily spending cap for this app (credits, optional)",
    no_cap: "No cap",
    allow: "Allow",
    deny: "Deny",
    error_title: "This app cannot connect",
    scope_read: "See your credit balance and history",
    scope_spend: "Spend your credits",
    scope_mcp: "Use the hub's AI tools (paid tools spend your credits)",
};

const THAI: Words = Words {
    sign_in_title: "เข้าสู่ระบบ Smart AI Hub",
    sign_in_note: "มีแอปขอเชื่อมต่อกับบัญชี Smart AI Hub ของคุณ กรุณาเข้าสู่ระบบก่อน",
    account_sign_in_note: "เข้าสู่ระบบเพื่อดูเครดิต การใช้งาน เซสชัน และแอปที่เชื่อมต่อของคุณ",
    console_sign_in_note: "สำหรับผู้ดูแลระบบ: เข้าสู่ระบบคอนโซลด้วยบัญชีของคุณ",
    with_google: "เข้าสู่ระบบด้วย Google",
    or: "หรือใช้อีเมลและรหัสผ่าน",
    email: "อีเมล",
    password: "รหัสผ่าน",
    sign_in_button: "เข้าสู่ระบบ",
    wrong_password: "อีเมลหรือรหัสผ่านไม่ถูกต้อง",
    too_many_attempts: "พยายามหลายครั้งเกินไป กรุณาลองใหม่ภายหลัง",
    account_disabled: "บัญชีนี้ถูกระงับ กรุณาติดต่อผู้ดูแลระบบ",
    unavailable: "ระบบเข้าสู่ระบบขัดข้องชั่วคราว กรุณาลองใหม่อีกครั้ง",
    bad_request: "ลิงก์เข้าสู่ระบบนี้ไม่ถูกต้อง กรุณาเริ่มใหม่จากแอป",
    consent_title: "เชื่อมต่อแอป",
    wants_access: "ขอใช้บัญชี Smart AI Hub ของคุณ:",
    redirect_host: "จะส่งกลับไปที่",
    signed_in_as: "เข้าสู่ระบบในชื่อ",
    daily_cap: "วงเงินใช้จ่ายต่อวันสำหรับแอปนี้ (เครดิต ไม่บังคับ)",
    no_cap: "ไม่จำกัด",
    allow: "อนุญาต",
    deny: "ปฏิเสธ",
    error_title: "แอปนี้เชื่อมต่อไม่ได้",
    scope_read: "ดูยอดเครดิตและประวัติการใช้",
    scope_spend: "ใช้เครดิตของคุณ",
    scope_mcp: "ใช้เครื่องมือ AI ของ Hub (เครื่องมือที่มีค่าบริการจะใช้เครดิตของคุณ)",
};

impl Lang {
    /// Thai when the browser's first language is Thai, else English.
    pub(crate) fn of(headers: &HeaderMap) -> Self {
        let first = headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().to_ascii_lowercase())
            .unwrap_or_default();
        if first.starts_with("th") {
            Self::Thai
        } else {
            Self::English
        }
    }

    /// The words in this language.
    pub(crate) fn words(self) -> &'static Words {
        match self {
            Self::Thai => &THAI,
            Self::English => &ENGLISH,
        }
    }

    /// The page's `lang` attribute.
    pub(crate) fn code(self) -> &'static str {
        match self {
            Self::Thai => "th",
            Self::English => "en",
        }
    }

    /// A scope in plain words.
    pub(crate) fn scope(self, scope: &str) -> &'static str {
        let words = self.words();
        match scope {
            hub_ledger::oauth::SCOPE_CREDITS_READ => words.scope_read,
            hub_ledger::oauth::SCOPE_CREDITS_SPEND => words.scope_spend,
            _ => words.scope_mcp,
        }
    }
}

#[derive(Template)]
#[template(path = "oauth_sign_in.html")]
struct SignInPage<'a> {
    lang: &'a str,
    words: &'a Words,
    note: &'a str,
    error: Option<&'a str>,
    google_link: Option<String>,
    continue_to: &'a str,
    style_nonce: &'a str,
}

#[derive(Template)]
#[template(path = "oauth_consent.html")]
struct ConsentPage<'a> {
    lang: &'a str,
    words: &'a Words,
    app_name: &'a str,
    redirect_host: &'a str,
    email: &'a str,
    scopes: Vec<&'a str>,
    spends: bool,
    csrf_token: &'a str,
    style_nonce: &'a str,
}

fn render(status: StatusCode, html: askama::Result<String>, style: &str, to: &str) -> Response {
    match html {
        Ok(html) => secure(status, html, None, style, to),
        Err(e) => {
            tracing::error!(error = %e, "rendering an authorization page");
            status.into_response()
        }
    }
}

/// The sign-in page, which comes back to `continue_to` (an authorization request or the account
/// page) once the person has signed in.
pub(crate) fn sign_in(
    state: &AppState,
    lang: Lang,
    continue_to: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let style_nonce = nonce();
    let words = lang.words();
    // Which page the sign-in is for: it names the Google sign-in's session and the note.
    let (session, note) = if continue_to.starts_with(crate::account::PATH) {
        ("hub-account", words.account_sign_in_note)
    } else if continue_to.starts_with(crate::console::PATH) {
        ("hub-console", words.console_sign_in_note)
    } else {
        ("hub-oauth", words.sign_in_note)
    };
    let google_link = state.google.as_ref().map(|_| {
        let mut link = url::form_urlencoded::Serializer::new(String::from("/auth/google?"));
        link.append_pair("session", session);
        link.append_pair("continue", continue_to);
        link.finish()
    });
    let page = SignInPage {
        lang: lang.code(),
        words,
        note,
        error,
        google_link,
        continue_to,
        style_nonce: &style_nonce,
    };
    render(status, page.render(), &style_nonce, "'self'")
}

/// What the consent page shows.
pub(crate) struct Consent<'a> {
    pub app_name: &'a str,
    pub redirect_uri: &'a str,
    pub email: &'a str,
    pub scopes: &'a [String],
    pub csrf_token: &'a str,
}

/// The consent page. Its form may post here and then be redirected to the app (browsers check
/// a form's redirects against `form-action`).
pub(crate) fn consent(lang: Lang, consent: &Consent<'_>) -> Response {
    let style_nonce = nonce();
    let origin = origin(consent.redirect_uri);
    let host = origin.split_once("://").map_or(origin.as_str(), |(_, h)| h);
    let page = ConsentPage {
        lang: lang.code(),
        words: lang.words(),
        app_name: consent.app_name,
        redirect_host: host,
        email: consent.email,
        scopes: consent.scopes.iter().map(|s| lang.scope(s)).collect(),
        spends: consent
            .scopes
            .iter()
            .any(|s| s != hub_ledger::oauth::SCOPE_CREDITS_READ),
        csrf_token: consent.csrf_token,
        style_nonce: &style_nonce,
    };
    let form_action = format!("'self' {origin}");
    render(StatusCode::OK, page.render(), &style_nonce, &form_action)
}

/// The scheme, host and port of a URL.
pub(crate) fn origin(uri: &str) -> String {
    let (scheme, rest) = uri.split_once("://").unwrap_or(("https", uri));
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    format!("{scheme}://{authority}")
}

/// An error page: the request cannot be answered by redirecting to the app.
pub(crate) fn error(status: StatusCode, lang: Lang, message: &str) -> Response {
    crate::pages::error(status, lang.words().error_title, message, "", None)
}
