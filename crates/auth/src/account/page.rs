//! `GET /account`: the sign-in page when this browser is not signed in, else the account page.

use std::collections::{BTreeSet, HashMap};

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hub_ledger::Holdings;
use hub_ledger::grants::CreditGrant;
use hub_ledger::oauth::OAuthGrant;
use hub_ledger::payments::PaymentRecord;
use hub_ledger::webhooks::AlertState;
use hub_payments::Pack;
use hub_sessions::SessionRecord;

use super::history::{self, Filter, HistoryPage};
use super::promotions;
use super::words::Words;
use super::{PATH, unavailable};
use crate::AppState;
use crate::oauth::pages::Lang;
use crate::pages::minute;
use crate::web::chart::{self, Chart};
use crate::web::csrf;
use crate::web::{self, NotSignedIn};

/// How many of the user's payments the page lists, newest first.
const PAYMENTS_SHOWN: u32 = 20;

/// An option of a filter's list.
struct Choice {
    value: String,
    label: String,
    selected: bool,
}

/// A row of the history.
struct Row {
    when: String,
    kind: &'static str,
    service: String,
    amount: String,
    spent: bool,
    balance_after: i64,
}

/// A live session.
struct SessionRow {
    id: String,
    kind: &'static str,
    this_browser: bool,
    started: String,
    ends: String,
}

/// A credit pack on sale.
struct PackRow {
    credits: i64,
    price: String,
}

/// A payment that granted.
struct PaymentRow {
    when: String,
    credits: i64,
    price: String,
}

/// A connected app.
struct AppRow {
    id: String,
    name: String,
    scopes: Vec<&'static str>,
    daily_cap: Option<i64>,
    connected: String,
    last_used: Option<String>,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage<'a> {
    lang: &'static str,
    w: &'static Words,
    style_nonce: &'a str,
    csrf_token: &'a str,
    name: &'a str,
    email: &'a str,
    holdings: Holdings,
    available: i64,
    promotions: Vec<promotions::GrantRow>,
    gw: &'static promotions::GrantWords,
    chart: Chart,
    chart_width: i64,
    chart_height: i64,
    chart_title_id: &'static str,
    usage_truncated: bool,
    kinds: Vec<Choice>,
    services: Vec<Choice>,
    rows: Vec<Row>,
    older_link: Option<String>,
    newest_link: Option<String>,
    sessions: Vec<SessionRow>,
    apps: Vec<AppRow>,
    packs: Vec<PackRow>,
    payments: Vec<PaymentRow>,
    paid: bool,
    alert: super::alerts::AlertView,
}

/// What the page shows, read from the stores.
struct Found {
    holdings: Holdings,
    promotions: Vec<CreditGrant>,
    history: HistoryPage,
    usage: chart::Usage,
    sessions: Vec<SessionRecord>,
    grants: Vec<OAuthGrant>,
    payments: Vec<PaymentRecord>,
    /// The alert setting; the page shows the default when it cannot be read.
    alert: Option<AlertState>,
}

/// `GET /account`.
pub(crate) async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let lang = Lang::of(&headers);
    let session = match web::session_or_sign_in(&state, &headers, PATH).await {
        Ok(session) => session,
        Err(NotSignedIn::SignIn(page)) => return page,
        Err(NotSignedIn::Unavailable(e)) => return unavailable(lang, &e),
    };
    let filter = Filter::from_query(
        query.get("kind").map(String::as_str),
        query.get("service").map(String::as_str),
    );
    let cursor = history::cursor_param(query.get("cursor").map(String::as_str));
    match find(&state, &session, &filter, cursor).await {
        Ok(Some(found)) => {
            let paid = query.contains_key("paid");
            render(&state, lang, &session, (&filter, cursor, paid), found)
        }
        // The user is gone (deleted): there is nothing to show but the sign-in.
        Ok(None) => web::sign_in_page(&state, &headers, PATH),
        Err(e) => unavailable(lang, &e),
    }
}

async fn find(
    state: &AppState,
    session: &SessionRecord,
    filter: &Filter,
    cursor: Option<&str>,
) -> Result<Option<Found>, Box<dyn std::error::Error + Send + Sync>> {
    let user = session.user_id;
    let store = &*state.users;
    let now = state.sessions.clock().now();
    let (holdings, history, usage, sessions, grants, payments, promotions, alert) = tokio::join!(
        store.holdings(user),
        history::page(store, user, filter, cursor),
        chart::usage(store, user, now),
        state.sessions.list(user),
        store.list_grants(user),
        store.payments_of(user, PAYMENTS_SHOWN),
        store.grants(user),
        store.alert_setting(user),
    );
    let (Some(holdings), Some(history)) = (holdings?, history?) else {
        return Ok(None);
    };
    Ok(Some(Found {
        holdings,
        promotions: promotions?.unwrap_or_default(),
        history,
        usage: usage?,
        sessions: sessions?,
        grants: grants?,
        payments: payments?,
        alert: alert.ok().flatten(),
    }))
}

fn render(
    state: &AppState,
    lang: Lang,
    session: &SessionRecord,
    (filter, cursor, paid): (&Filter, Option<&str>, bool),
    found: Found,
) -> Response {
    let w = Words::of(lang);
    let style_nonce = crate::pages::nonce();
    let csrf_token = csrf::token(state, &session.id);
    let page = AccountPage {
        lang: lang.code(),
        w,
        style_nonce: &style_nonce,
        csrf_token: &csrf_token,
        name: &session.name,
        email: &session.email,
        available: found.holdings.available(),
        holdings: found.holdings,
        promotions: promotions::rows(&found.promotions),
        gw: promotions::GrantWords::of(lang),
        chart: chart::chart(&found.usage, w.other),
        chart_width: chart::WIDTH,
        chart_height: chart::HEIGHT,
        chart_title_id: "usage-title",
        usage_truncated: found.usage.truncated,
        kinds: kinds(w, filter),
        services: services(&found.usage, filter),
        rows: rows(w, &found.history),
        older_link: found
            .history
            .next_cursor
            .as_deref()
            .map(|c| link(filter, Some(c))),
        newest_link: cursor.map(|_| link(filter, None)),
        sessions: sessions(w, &found.sessions, &session.id),
        apps: apps(lang, &found.grants),
        packs: packs(state),
        payments: payments(&found.payments),
        paid,
        alert: super::alerts::AlertView::new(lang, found.alert),
    };
    // A "buy" form is answered with a redirect to Stripe's payment page, which the browser
    // follows only if the form may go there.
    let form_action = if page.packs.is_empty() {
        "'self'"
    } else {
        "'self' https://checkout.stripe.com"
    };
    match page.render() {
        Ok(html) => crate::pages::secure(StatusCode::OK, html, None, &style_nonce, form_action),
        Err(e) => {
            tracing::error!(error = %e, "rendering the account page");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// The packs on sale: none when purchases are not set up.
fn packs(state: &AppState) -> Vec<PackRow> {
    if !state.payments.on_sale() {
        return Vec::new();
    }
    state
        .payments
        .config
        .packs
        .iter()
        .map(|p| PackRow {
            credits: p.credits,
            price: p.price(),
        })
        .collect()
}

fn payments(payments: &[PaymentRecord]) -> Vec<PaymentRow> {
    payments
        .iter()
        .map(|p| PaymentRow {
            when: minute(p.created_at),
            credits: p.credits,
            price: Pack {
                credits: p.credits,
                amount: p.amount_total,
                currency: p.currency.clone(),
            }
            .price(),
        })
        .collect()
}

/// The page with these filters, from the newest or after `cursor`.
fn link(filter: &Filter, cursor: Option<&str>) -> String {
    let mut query = url::form_urlencoded::Serializer::new(format!("{PATH}?"));
    if let Some(kind) = filter.kind {
        query.append_pair("kind", kind.as_str());
    }
    if let Some(service) = &filter.service {
        query.append_pair("service", service);
    }
    if let Some(cursor) = cursor {
        query.append_pair("cursor", cursor);
    }
    query.finish()
}

fn kinds(w: &Words, filter: &Filter) -> Vec<Choice> {
    use hub_ledger::TransactionKind::{Adjustment, Debit, Expire, Grant, Refund};
    [Debit, Refund, Grant, Adjustment, Expire]
        .into_iter()
        .map(|kind| Choice {
            value: kind.as_str().to_owned(),
            label: w.kind(kind).to_owned(),
            selected: filter.kind == Some(kind),
        })
        .collect()
}

/// The services spent on lately, and the one filtered by.
fn services(usage: &chart::Usage, filter: &Filter) -> Vec<Choice> {
    let mut names: BTreeSet<&str> = usage
        .spent
        .iter()
        .flat_map(|day| day.keys().map(String::as_str))
        .collect();
    names.extend(filter.service.as_deref());
    names
        .into_iter()
        .map(|name| Choice {
            value: name.to_owned(),
            label: name.to_owned(),
            selected: filter.service.as_deref() == Some(name),
        })
        .collect()
}

fn rows(w: &Words, history: &HistoryPage) -> Vec<Row> {
    history
        .rows
        .iter()
        .map(|t| Row {
            when: minute(t.created_at),
            kind: w.kind(t.kind),
            service: t.service.clone().unwrap_or_default(),
            amount: format!("{:+}", t.amount),
            spent: t.amount < 0,
            balance_after: t.balance_after,
        })
        .collect()
}

fn sessions(w: &Words, sessions: &[SessionRecord], current: &str) -> Vec<SessionRow> {
    sessions
        .iter()
        .rev()
        .map(|s| SessionRow {
            id: s.id.clone(),
            kind: if s.session_param.as_deref() == Some("browser") {
                w.browser_session
            } else {
                w.code_session
            },
            this_browser: s.id == current,
            started: minute(s.created_at),
            ends: minute(s.expires_at),
        })
        .collect()
}

fn apps(lang: Lang, grants: &[OAuthGrant]) -> Vec<AppRow> {
    grants
        .iter()
        .map(|g| AppRow {
            id: g.id.clone(),
            name: g.client_name.clone(),
            scopes: g.scopes.iter().map(|s| lang.scope(s)).collect(),
            daily_cap: g.daily_cap,
            connected: minute(g.created_at),
            last_used: g.last_used_at.map(minute),
        })
        .collect()
}
