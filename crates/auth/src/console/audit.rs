//! `GET /console/audit`: the audit log, newest first, filtered by actor, action and target, a
//! page at a time; `GET /console/audit.csv`: the same entries as CSV. For operators with
//! `audit:read`.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hub_ledger::admin::{AuditFilter, AuditRecord, MAX_AUDIT_PAGE, audit_csv};
use hub_ledger::users::Permission;

use super::operator::Operator;
use super::view::{self, Frame};
use crate::AppState;
use crate::pages::minute;

/// Entries on one page.
const PAGE: u32 = 50;

struct EntryRow {
    when: String,
    actor: String,
    action: String,
    target: String,
    change: String,
    reason: String,
    request_id: String,
}

#[derive(Template)]
#[template(path = "console_audit.html")]
struct AuditPage {
    frame: Frame,
    actor: String,
    action: String,
    target: String,
    entries: Vec<EntryRow>,
    older_link: Option<String>,
    csv_link: String,
}

/// A filter's text: at most 100 characters, no control characters; empty is none.
fn text(query: &HashMap<String, String>, name: &str) -> String {
    query
        .get(name)
        .map(|v| {
            v.trim()
                .chars()
                .filter(|c| !c.is_control())
                .take(100)
                .collect()
        })
        .unwrap_or_default()
}

fn filter(query: &HashMap<String, String>, limit: u32) -> AuditFilter {
    let some = |v: String| (!v.is_empty()).then_some(v);
    AuditFilter {
        actor: some(text(query, "actor")),
        action: some(text(query, "action")),
        target: some(text(query, "target")),
        cursor: query
            .get("cursor")
            .and_then(|c| c.parse::<i64>().ok())
            .filter(|c| *c > 0),
        limit,
    }
}

/// This page's link with the same filters, from `cursor` on.
fn link(path: &str, filter: &AuditFilter, cursor: Option<i64>) -> String {
    let mut query = url::form_urlencoded::Serializer::new(format!("{path}?"));
    for (name, value) in [
        ("actor", &filter.actor),
        ("action", &filter.action),
        ("target", &filter.target),
    ] {
        if let Some(value) = value {
            query.append_pair(name, value);
        }
    }
    if let Some(cursor) = cursor {
        query.append_pair("cursor", &cursor.to_string());
    }
    query.finish()
}

fn row(e: AuditRecord) -> EntryRow {
    let json = |v: Option<serde_json::Value>| v.map(|v| v.to_string());
    let change = match (json(e.before), json(e.after)) {
        (Some(before), Some(after)) => format!("{before} → {after}"),
        (None, Some(after)) => after,
        (Some(before), None) => format!("was {before}"),
        (None, None) => String::new(),
    };
    EntryRow {
        when: minute(e.created_at),
        actor: e.actor,
        action: e.action,
        target: e.target,
        change,
        reason: e.reason.unwrap_or_default(),
        request_id: e.request_id.unwrap_or_default(),
    }
}

/// `GET /console/audit?actor=&action=&target=&cursor=`.
pub(crate) async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let path = "/console/audit";
    let operator =
        match Operator::for_page(&state, &headers, path, Some(Permission::AuditRead)).await {
            Ok(operator) => operator,
            Err(page) => return page,
        };
    let filter = filter(&query, PAGE + 1);
    let mut entries = match state.users.audit_log(&filter).await {
        Ok(entries) => entries,
        Err(e) => return view::unavailable(&e),
    };
    let more = entries.len() > PAGE as usize;
    entries.truncate(PAGE as usize);
    let older_link = more
        .then(|| entries.last().map(|e| link(path, &filter, Some(e.seq))))
        .flatten();
    let page = AuditPage {
        frame: Frame::of(&operator, "Audit log"),
        csv_link: link("/console/audit.csv", &filter, None),
        actor: filter.actor.clone().unwrap_or_default(),
        action: filter.action.clone().unwrap_or_default(),
        target: filter.target.clone().unwrap_or_default(),
        entries: entries.into_iter().map(row).collect(),
        older_link,
    };
    view::send(StatusCode::OK, &page.frame, page.render())
}

/// `GET /console/audit.csv?actor=&action=&target=`: the newest entries (up to 500) as CSV.
pub(crate) async fn csv(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let path = "/console/audit";
    if let Err(page) = Operator::for_page(&state, &headers, path, Some(Permission::AuditRead)).await
    {
        return page;
    }
    let entries = match state.users.audit_log(&filter(&query, MAX_AUDIT_PAGE)).await {
        Ok(entries) => entries,
        Err(e) => return view::unavailable(&e),
    };
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"hub-audit.csv\"",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        audit_csv(&entries),
    )
        .into_response()
}
