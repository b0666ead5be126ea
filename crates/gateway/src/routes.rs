//! The one route table: every path the gateway knows, whether it answers it itself or forwards
//! it, to which service, whether the service needs a caller vouched for, the label its metrics
//! carry and the rate limit it counts against. The server's choice of path, the proxy's routing
//! and limits, and the OpenAPI document's error lists all read this table.

/// A service behind the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Upstream {
    Auth,
    Core,
    Mcp,
}

impl Upstream {
    /// Its name in the metrics.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::Core => "core",
            Self::Mcp => "mcp",
        }
    }
}

/// Who answers a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum To {
    /// The gateway itself, through its router.
    Gateway,
    /// A service, as is: sign-in and verify-session check their own credentials, and a video link
    /// carries its own signature.
    Open(Upstream),
    /// A service, told who calls: the gateway identifies the caller and vouches for it.
    Vouched(Upstream),
}

/// The rate limit a forwarded route counts against (see [`crate::Limits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LimitClass {
    /// Per client address: starting a Google sign-in.
    Google,
    /// Per code presented: verify-session.
    Verify,
    /// Per caller: the credit endpoints.
    Credits,
    /// Per caller, or per client address where there is none.
    Default,
}

/// How a route matches a path.
#[derive(Debug, Clone, Copy)]
enum Pattern {
    /// This path only.
    Exact(&'static str),
    /// Every path that starts with this.
    Prefix(&'static str),
}

/// One row of [`ROUTES`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Route {
    pattern: Pattern,
    /// Who answers.
    to: To,
    /// The label the request's metrics carry.
    pub(crate) class: &'static str,
    /// The rate limit it counts against.
    pub(crate) limit: LimitClass,
    /// Whether a `POST` may carry the user's code as the body field `session_token` (the
    /// GPT-callable form).
    pub(crate) body_token: bool,
}

impl Route {
    const fn new(pattern: Pattern, to: To, class: &'static str) -> Self {
        Self {
            pattern,
            to,
            class,
            limit: LimitClass::Default,
            body_token: false,
        }
    }

    const fn exact(path: &'static str, to: To, class: &'static str) -> Self {
        Self::new(Pattern::Exact(path), to, class)
    }

    const fn prefix(path: &'static str, to: To, class: &'static str) -> Self {
        Self::new(Pattern::Prefix(path), to, class)
    }

    /// A path the gateway answers itself.
    const fn own(path: &'static str) -> Self {
        Self::exact(path, To::Gateway, "gateway")
    }

    const fn limited(mut self, limit: LimitClass) -> Self {
        self.limit = limit;
        self
    }

    const fn with_body_token(mut self) -> Self {
        self.body_token = true;
        self
    }

    fn matches(&self, path: &str) -> bool {
        match self.pattern {
            Pattern::Exact(exact) => path == exact,
            Pattern::Prefix(prefix) => path.starts_with(prefix),
        }
    }

    /// The service it goes to, if it is forwarded.
    pub(crate) fn upstream(&self) -> Option<Upstream> {
        match self.to {
            To::Gateway => None,
            To::Open(upstream) | To::Vouched(upstream) => Some(upstream),
        }
    }

    /// Whether the gateway answers it itself (through its router).
    pub(crate) fn is_own(&self) -> bool {
        self.to == To::Gateway
    }

    /// Whether the service needs a caller vouched for.
    pub(crate) fn vouched(&self) -> bool {
        matches!(self.to, To::Vouched(_))
    }
}

use LimitClass::{Credits, Google, Verify};
use To::{Open, Vouched};
use Upstream::{Auth, Core, Mcp};

/// Every route, the first that matches a path wins (exact paths stand before the prefixes that
/// also cover them).
static ROUTES: [Route; 32] = [
    Route::own("/health"),
    Route::own("/ready"),
    Route::own("/openapi.json"),
    Route::own("/openapi.gpt.json"),
    Route::own("/privacy"),
    Route::own("/metrics"),
    Route::own("/.well-known/oauth-protected-resource"),
    Route::own("/.well-known/oauth-protected-resource/mcp"),
    // The authorization server (the auth service): its metadata, authorize, token, register.
    Route::exact(
        "/.well-known/oauth-authorization-server",
        Open(Auth),
        "oauth",
    ),
    Route::exact("/.well-known/openid-configuration", Open(Auth), "oauth"),
    Route::exact("/oauth/sign-in", Open(Auth), "oauth").limited(Google),
    Route::prefix("/oauth/", Open(Auth), "oauth"),
    Route::exact("/account", Open(Auth), "account"),
    Route::prefix("/account/", Open(Auth), "account"),
    Route::exact("/console", Open(Auth), "console"),
    Route::prefix("/console/", Open(Auth), "console"),
    Route::exact("/auth/google", Open(Auth), "google").limited(Google),
    Route::exact("/auth/google/callback", Open(Auth), "google"),
    Route::exact("/auth/verify-email", Open(Auth), "auth"),
    Route::exact("/auth/reset-password", Open(Auth), "auth"),
    Route::exact("/api/auth/verify-session", Open(Auth), "verify_session")
        .limited(Verify)
        .with_body_token(),
    Route::exact("/.well-known/jwks.json", Open(Auth), "jwks"),
    Route::prefix("/api/auth/", Open(Auth), "auth"),
    Route::prefix("/api/mcp/v1/credits/", Vouched(Core), "credits")
        .limited(Credits)
        .with_body_token(),
    // Users and their sessions are the auth service's; credits, usage and the audit the core's.
    Route::exact("/api/admin/users", Vouched(Auth), "admin").limited(Credits),
    Route::prefix("/api/admin/users/", Vouched(Auth), "admin").limited(Credits),
    Route::prefix("/api/admin/", Vouched(Core), "admin").limited(Credits),
    // Stripe's deliveries carry their own signature, checked by the core over the raw body.
    Route::exact("/webhooks/stripe", Open(Core), "webhooks"),
    Route::exact("/api/mcp/ws", Vouched(Mcp), "mcp_ws"),
    Route::exact("/mcp", Vouched(Mcp), "mcp"),
    Route::prefix("/mcp/", Vouched(Mcp), "mcp"),
    // A video link carries its own signature: whoever holds it may open it, without headers.
    Route::prefix("/api/mcp/v1/videos/", Open(Mcp), "video_content"),
];

/// The route of a path, if any.
pub(crate) fn find(path: &str) -> Option<&'static Route> {
    ROUTES.iter().find(|route| route.matches(path))
}

/// The route of a path the gateway forwards (`None`: its own paths, and those it does not know).
pub(crate) fn forwarded(path: &str) -> Option<&'static Route> {
    find(path).filter(|route| !route.is_own())
}

/// Whether the gateway answers this path itself.
#[cfg(test)]
fn is_own_path(path: &str) -> bool {
    find(path).is_some_and(Route::is_own)
}

/// Which service a path is forwarded to, and whether the gateway must vouch for a caller.
#[cfg(test)]
fn route(path: &str) -> Option<(Upstream, bool)> {
    forwarded(path).and_then(|route| Some((route.upstream()?, route.vouched())))
}

/// The label a forwarded request's metrics carry: its route class.
#[cfg(test)]
fn route_class(path: &str) -> &'static str {
    forwarded(path).map_or("unknown", |route| route.class)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_go_to_their_services() {
        assert_eq!(
            route("/api/auth/verify-session"),
            Some((Upstream::Auth, false))
        );
        assert_eq!(route("/auth/google"), Some((Upstream::Auth, false)));
        assert_eq!(
            route("/auth/google/callback"),
            Some((Upstream::Auth, false))
        );
        assert_eq!(
            route("/.well-known/jwks.json"),
            Some((Upstream::Auth, false))
        );
        assert_eq!(
            route("/api/mcp/v1/credits/deduct"),
            Some((Upstream::Core, true))
        );
        assert_eq!(
            route("/api/admin/credits/grant"),
            Some((Upstream::Core, true))
        );
        assert_eq!(route("/api/admin/users"), Some((Upstream::Auth, true)));
        assert_eq!(
            route("/api/admin/users/0193/disable"),
            Some((Upstream::Auth, true))
        );
        assert_eq!(route("/api/admin/usersx"), Some((Upstream::Core, true)));
        assert_eq!(route("/mcp"), Some((Upstream::Mcp, true)));
        assert_eq!(route("/auth/verify-email"), Some((Upstream::Auth, false)));
        assert_eq!(route("/auth/reset-password"), Some((Upstream::Auth, false)));
        assert_eq!(route("/account"), Some((Upstream::Auth, false)));
        assert_eq!(
            route("/account/sessions/revoke"),
            Some((Upstream::Auth, false))
        );
        assert_eq!(route("/accountx"), None);
        assert_eq!(route("/console"), Some((Upstream::Auth, false)));
        assert_eq!(route("/console/"), Some((Upstream::Auth, false)));
        assert_eq!(
            route("/console/users/0193/grant"),
            Some((Upstream::Auth, false))
        );
        assert_eq!(route("/consolex"), None);
        assert_eq!(route("/auth/googlex"), None);
        assert_eq!(route("/api/mcp/v1/credit"), None);
        assert_eq!(
            route("/api/mcp/v1/videos/video_1.sig/content"),
            Some((Upstream::Mcp, false))
        );
        assert_eq!(route("/"), None);
    }

    #[test]
    fn classes_and_own_paths_come_from_the_table() {
        assert_eq!(route_class("/api/auth/verify-session"), "verify_session");
        assert_eq!(route_class("/api/auth/login"), "auth");
        assert_eq!(route_class("/auth/google/callback"), "google");
        assert_eq!(route_class("/api/mcp/ws"), "mcp_ws");
        assert_eq!(route_class("/account/sign-out"), "account");
        assert_eq!(route_class("/console/audit.csv"), "console");
        assert_eq!(route_class("/mcp/anything"), "mcp");
        assert_eq!(route_class("/api/admin/credits/grant"), "admin");
        assert_eq!(route_class("/health"), "unknown");
        assert_eq!(route_class("/nowhere"), "unknown");
        assert!(is_own_path("/metrics"));
        assert!(!is_own_path("/metrics/x"));
        assert!(!is_own_path("/mcp"));
        assert_eq!(route("/ready"), None);
    }
}
