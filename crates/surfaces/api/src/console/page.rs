//! What every console page shares: the templates' structs, the navigation bar, notices,
//! error pages and the security headers.
//!
//! Templates live in `templates/console/` and are compiled in by askama, which escapes
//! every value for HTML unless a template says otherwise (none does).

use askama::Template;
use axum::extract::Request;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};

use super::browser::Viewer;
use super::sessions::SessionRow;
use super::timeline::Entry;

/// The headers of every console answer: no script or style from anywhere but the
/// console itself, no framing, no caching of pages that show recorded data.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub(super) async fn security_headers(request: Request, next: Next) -> Response {
    let mut r = next.run(request).await;
    let h = r.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    if !h.contains_key(CACHE_CONTROL) {
        h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    r
}

/// A message at the top of a page.
pub(super) struct Notice {
    /// `info` or `error` (the CSS class and the ARIA role follow it).
    pub level: &'static str,
    /// The text.
    pub text: String,
}

impl Notice {
    pub(super) fn info(text: &str) -> Self {
        Notice {
            level: "info",
            text: text.to_owned(),
        }
    }

    pub(super) fn error(text: &str) -> Self {
        Notice {
            level: "error",
            text: text.to_owned(),
        }
    }
}

/// The navigation bar and the signed-in person, on every page but the sign-in.
pub(super) struct Chrome {
    /// Who is signed in.
    pub who: String,
    /// Their groups, comma separated.
    pub groups: String,
    /// The sign-in's CSRF token, for the forms of the page.
    pub csrf: String,
    /// Which navigation link is the current page.
    pub current: &'static str,
    /// Pending approval requests the person may see (shown beside Approvals).
    pub pending: usize,
}

impl Chrome {
    pub(super) fn new(viewer: &Viewer, current: &'static str, pending: usize) -> Self {
        Chrome {
            who: viewer.principal.name.clone(),
            groups: viewer.principal.groups.join(", "),
            csrf: viewer.csrf.clone(),
            current,
            pending,
        }
    }
}

/// Renders `page` as an HTML answer with `status`; a template failure is a 500 page
/// that says so (it never shows the half-rendered page).
pub(super) fn render<T: Template>(status: StatusCode, page: &T) -> Response {
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "console template failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                [(CONTENT_TYPE, "text/plain; charset=utf-8")],
                "The console could not render this page; the gateway's log says why.",
            )
                .into_response()
        }
    }
}

/// An error page with a title and what to do.
pub(super) fn problem(status: StatusCode, title: &str, message: &str) -> Response {
    render(
        status,
        &ProblemPage {
            title: title.to_owned(),
            message: message.to_owned(),
        },
    )
}

/// A store or service failure, as a page (the detail goes to the log).
pub(super) fn unavailable(what: &str, error: &dyn std::fmt::Display) -> Response {
    tracing::error!(error = %error, "console: {what}");
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "The store is unavailable",
        &format!(
            "Airlock could not read {what}. Try again in a moment; the gateway's log says why."
        ),
    )
}

#[derive(Template)]
#[template(path = "console/problem.html")]
pub(super) struct ProblemPage {
    pub title: String,
    pub message: String,
}

#[derive(Template)]
#[template(path = "console/signin.html")]
pub(super) struct SigninPage {
    /// The value bound to the form's cookie.
    pub csrf: String,
    /// The OIDC provider's name, when one is configured.
    pub provider: Option<String>,
    pub notice: Option<Notice>,
}

/// One filter choice of the sessions list.
pub(super) struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

#[derive(Template)]
#[template(path = "console/sessions.html")]
pub(super) struct SessionsPage {
    pub chrome: Chrome,
    pub reviewer: bool,
    pub principal: String,
    pub target: String,
    pub protocols: Vec<Choice>,
    pub since: String,
    pub until: String,
    pub outcomes: Vec<Choice>,
    pub rows: Vec<SessionRow>,
    /// The link to the next (older) page, if there is one.
    pub older: Option<String>,
    /// The link back to the newest page, when this is a later one.
    pub newest: Option<String>,
    pub notice: Option<Notice>,
}

/// The chain check of one session, as shown.
pub(super) struct ChainStatus {
    /// `ok`, `broken` or `unknown`.
    pub state: &'static str,
    pub text: String,
    pub problems: Vec<String>,
}

#[derive(Template)]
#[template(path = "console/session.html")]
pub(super) struct SessionPage {
    pub chrome: Chrome,
    pub session: SessionRow,
    pub chain: ChainStatus,
    pub entries: Vec<Entry>,
    /// The last event's sequence number, for live updates.
    pub last_seq: i64,
    pub live: bool,
    /// Masked values per rule and kind over the whole session.
    pub masked: Vec<(String, u64)>,
}

/// New timeline entries of a live session (the fragment the script appends).
#[derive(Template)]
#[template(path = "console/entries.html")]
pub(super) struct EntriesFragment {
    pub entries: Vec<Entry>,
}

/// One pending request, with what its approver needs.
pub(super) struct PendingView {
    pub id: String,
    pub principal: String,
    pub target: String,
    pub protocol: String,
    pub statement: String,
    pub params: Option<String>,
    pub policies: String,
    pub reason: String,
    pub approver_group: String,
    pub waited: String,
    pub expires_in: String,
    pub session_id: String,
    /// Statements of the same session just before it.
    pub before: Vec<String>,
    /// Whether the viewer may decide it (in the group, not the requester).
    pub may_decide: bool,
    /// Why not, when not.
    pub why_not: String,
}

/// A decided (or lapsed) request.
pub(super) struct DecidedView {
    pub id: String,
    pub status: String,
    pub principal: String,
    pub target: String,
    pub statement: String,
    pub decided_by: String,
    pub decided_at: String,
    pub comment: String,
    pub session_id: String,
}

#[derive(Template)]
#[template(path = "console/approvals.html")]
pub(super) struct ApprovalsPage {
    pub chrome: Chrome,
    pub pending: Vec<PendingView>,
    pub history: Vec<DecidedView>,
    pub notice: Option<Notice>,
}

/// One session's line in the audit result.
pub(super) struct AuditRow {
    pub id: String,
    pub principal: String,
    pub target: String,
    pub started: String,
    pub ok: bool,
    pub problems: Vec<String>,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
pub(super) struct AuditPage {
    pub chrome: Chrome,
    pub ok: bool,
    pub summary: String,
    /// Problems not tied to one session (deleted or reordered events).
    pub chain_problems: Vec<String>,
    pub rows: Vec<AuditRow>,
    /// Intact sessions not listed.
    pub more: u64,
}
