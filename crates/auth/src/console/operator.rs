//! Who is at the console: the browser's signed-in user and the permissions of their roles,
//! checked for each page and each form post.

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use hub_ledger::users::Permission;
use hub_sessions::SessionRecord;
use serde::Deserialize;

use super::view::{self, NavLink};
use crate::AppState;
use crate::oauth::{signed_in, signed_out_cookie};
use crate::web::{self, NotSignedIn, csrf};

/// The console's pages, each with the permission that opens it.
const PAGES: [(&str, &str, Permission); 5] = [
    ("Dashboard", "/console/dashboard", Permission::UsageRead),
    ("Users", "/console/users", Permission::UsersRead),
    ("Service keys", "/console/keys", Permission::KeysManage),
    ("Webhooks", "/console/webhooks", Permission::KeysManage),
    ("Audit log", "/console/audit", Permission::AuditRead),
];

/// A signed-in user at the console.
pub(crate) struct Operator {
    pub session: SessionRecord,
    permissions: Vec<String>,
    /// The CSRF token of this browser's forms.
    pub csrf: String,
}

impl Operator {
    /// For a page at `path`: the operator, if they have `permission` (or, when `None`, any
    /// operator's permission); else the sign-in page or a 403 that names what is missing.
    pub(crate) async fn for_page(
        state: &AppState,
        headers: &HeaderMap,
        path: &str,
        permission: Option<Permission>,
    ) -> Result<Self, Response> {
        let session = match web::session_or_sign_in(state, headers, path).await {
            Ok(session) => session,
            Err(NotSignedIn::SignIn(page)) => return Err(page),
            Err(NotSignedIn::Unavailable(e)) => return Err(view::unavailable(&e)),
        };
        let operator = Self::of(state, session).await?;
        operator.refusal(permission).map_or(Ok(operator), Err)
    }

    /// For a form post: the operator, if this browser is signed in, the form carries its CSRF
    /// token and they have `permission`; else a 403 (nothing changes).
    pub(crate) async fn for_post(
        state: &AppState,
        headers: &HeaderMap,
        csrf_token: &str,
        permission: Permission,
    ) -> Result<Self, Response> {
        let session = match signed_in(state, headers).await {
            Ok(Some(session)) if csrf::valid(state, &session.id, csrf_token) => session,
            Ok(_) => {
                return Err(view::bare_message(
                    StatusCode::FORBIDDEN,
                    "Refused",
                    "This form is not from a console page of this browser's sign-in (its CSRF \
                     token is missing or wrong). Open the page again and resend it.",
                ));
            }
            Err(e) => return Err(view::unavailable(&e)),
        };
        let operator = Self::of(state, session).await?;
        operator.refusal(Some(permission)).map_or(Ok(operator), Err)
    }

    async fn of(state: &AppState, session: SessionRecord) -> Result<Self, Response> {
        let permissions = state
            .users
            .permissions(session.user_id)
            .await
            .map_err(|e| view::unavailable(&e))?;
        Ok(Self {
            csrf: csrf::token(state, &session.id),
            session,
            permissions,
        })
    }

    /// The 403 for an operator without `permission` (without any operator's, when `None`).
    fn refusal(&self, permission: Option<Permission>) -> Option<Response> {
        match permission {
            Some(permission) if !self.may(permission) => Some(lacks(self, permission)),
            None if !self.is_operator() => Some(no_operator_role(self)),
            _ => None,
        }
    }

    /// Whether their roles give them `permission`.
    pub(crate) fn may(&self, permission: Permission) -> bool {
        self.permissions.iter().any(|p| p == permission.as_str())
    }

    /// Whether they have any operator's permission (not only spending their own credits).
    fn is_operator(&self) -> bool {
        self.permissions
            .iter()
            .any(|p| p != Permission::Check.as_str() && p != Permission::Deduct.as_str())
    }

    /// Who they are in the audit log.
    pub(crate) fn actor(&self) -> String {
        format!("user:{}", self.session.user_id)
    }

    /// The pages they may open.
    pub(crate) fn nav(&self) -> Vec<NavLink> {
        PAGES
            .iter()
            .filter(|(_, _, permission)| self.may(*permission))
            .map(|(label, href, _)| NavLink { label, href })
            .collect()
    }
}

/// 403: the operator lacks `permission`, named.
pub(crate) fn lacks(operator: &Operator, permission: Permission) -> Response {
    view::message(
        operator,
        StatusCode::FORBIDDEN,
        "Not allowed",
        &format!(
            "Your roles do not give you the permission {}, which this needs.",
            permission.as_str()
        ),
    )
}

/// 403: a signed-in user without any operator's permission.
pub(crate) fn no_operator_role(operator: &Operator) -> Response {
    view::message(
        operator,
        StatusCode::FORBIDDEN,
        "Not an operator",
        "The console is for operators: your account has no operator's role (admin, support or \
         finance). Your own credits are on your account page, /account.",
    )
}

/// The sign-out form.
#[derive(Deserialize)]
pub(crate) struct SignOutForm {
    #[serde(default)]
    csrf_token: String,
}

/// `POST /console/sign-out`: signs this browser out.
pub(crate) async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<SignOutForm>,
) -> Response {
    let session = match signed_in(&state, &headers).await {
        Ok(Some(session)) if csrf::valid(&state, &session.id, &form.csrf_token) => session,
        Ok(_) => {
            return view::bare_message(StatusCode::FORBIDDEN, "Refused", "No valid CSRF token.");
        }
        Err(e) => return view::unavailable(&e),
    };
    if let Err(e) = state
        .sessions
        .store()
        .revoke_by_id(session.user_id, &session.id)
        .await
    {
        return view::unavailable(&e);
    }
    let mut response = Redirect::to(super::PATH).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, signed_out_cookie(&state));
    response
}
