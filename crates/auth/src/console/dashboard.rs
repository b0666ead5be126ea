//! `GET /console/dashboard`: credits spent per day for 30 days as a chart by service, the users
//! active in them and the biggest spenders. For operators with `usage:read`.

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use hub_ledger::users::Permission;

use super::operator::Operator;
use super::spending::{self, Spender};
use super::view::{self, Frame};
use crate::AppState;
use crate::web::chart::{self, Chart};

const PATH: &str = "/console/dashboard";

#[derive(Template)]
#[template(path = "console_dashboard.html")]
struct DashboardPage {
    frame: Frame,
    chart: Chart,
    chart_width: i64,
    chart_height: i64,
    chart_title_id: &'static str,
    active_users: u64,
    top: Vec<Spender>,
    partial: bool,
}

/// `GET /console/dashboard`.
pub(crate) async fn show(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let operator =
        match Operator::for_page(&state, &headers, PATH, Some(Permission::UsageRead)).await {
            Ok(operator) => operator,
            Err(page) => return page,
        };
    let now = state.sessions.clock().now();
    let spending = match spending::last_30_days(&*state.users, now).await {
        Ok(spending) => spending,
        Err(e) => return view::unavailable(&e),
    };
    let page = DashboardPage {
        frame: Frame::of(&operator, "Dashboard"),
        chart: chart::chart(&spending.usage, "other"),
        chart_width: chart::WIDTH,
        chart_height: chart::HEIGHT,
        chart_title_id: "usage-title",
        active_users: spending.active_users,
        top: spending.top,
        partial: spending.partial,
    };
    view::send(StatusCode::OK, &page.frame, page.render())
}
