//! The web console at `/` on the `[api]` listener: sessions and their replay, the
//! approval queue, and the audit chain's verification, for the people who review what
//! agents did and decide what they ask.
//!
//! Everything is compiled into the binary: askama templates (HTML-escaped by default:
//! statements, parameters and results come from agents and are treated as hostile
//! markup), one stylesheet and one small script (no CDN, no front-end build). Pages are
//! rendered on the server; the script only refreshes a live session's timeline and
//! confirms a denial's reason.
//!
//! Who sees what is the API's rule: a person signs in with an Airlock token or through
//! the configured OIDC provider ([`browser`], [`oidc`]) and sees their own sessions and
//! the approval requests they asked for or may decide; members of the reviewer groups
//! (`[console] reviewer_groups`, by default the groups that approve held statements) see
//! every session and the audit log. Deciding goes through the approval service, which
//! refuses the requester and anyone outside the approver group.
//!
//! Sign-ins and OIDC sign-ins in progress are kept in the store, not in the process,
//! so that several gateway replicas on one PostgreSQL store serve the console alike: a
//! load balancer needs no session affinity.
//!
//! Where things go: a new page is a module here with a template in
//! `templates/console/`; what a recorded event looks like in a replay is [`timeline`].

mod approvals;
mod assets;
mod audit;
mod browser;
mod oidc;
mod page;
mod sessions;
mod timeline;

use std::sync::Arc;
use std::time::Duration;

use airlock_model::Principal;
use airlock_store::Store;
use airlock_vault::Secret;
use axum::Router;
use axum::middleware;
use axum::routing::{get, post};

use crate::ApiState;

pub use oidc::{OidcLogin, OidcLoginError};

/// The groups whose members see every session and the audit log, asked for on each
/// request (so that a policy reload changes it).
pub type ReviewerGroups = Arc<dyn Fn() -> Vec<String> + Send + Sync>;

/// What the console is built from.
pub struct ConsoleOptions {
    /// Sessions and their events.
    pub store: Arc<dyn Store>,
    /// The audit chain's key, to verify sessions; `None` when nothing was recorded yet
    /// and no key exists.
    pub audit_key: Option<Secret>,
    /// Who reviews (see [`ReviewerGroups`]).
    pub reviewer_groups: ReviewerGroups,
    /// How long a browser stays signed in.
    pub session_ttl: Duration,
    /// Sign-in with an OIDC provider, if configured.
    pub oidc: Option<OidcLogin>,
}

impl ConsoleOptions {
    /// Token sign-in only, with no reviewer group: for tests and tools.
    pub fn tokens_only(store: Arc<dyn Store>) -> Self {
        ConsoleOptions {
            store,
            audit_key: None,
            reviewer_groups: Arc::new(Vec::new),
            session_ttl: Duration::from_secs(8 * 3600),
            oidc: None,
        }
    }
}

/// The console's state, shared by every request. Cheap to clone.
#[derive(Clone)]
pub struct Console(Arc<Inner>);

struct Inner {
    store: Arc<dyn Store>,
    audit_key: Option<Secret>,
    reviewer_groups: ReviewerGroups,
    browsers: browser::Browsers,
    oidc: Option<OidcLogin>,
}

impl Console {
    /// A console over `options`.
    pub fn new(options: ConsoleOptions) -> Self {
        Console(Arc::new(Inner {
            browsers: browser::Browsers::new(options.store.clone(), options.session_ttl),
            store: options.store,
            audit_key: options.audit_key,
            reviewer_groups: options.reviewer_groups,
            oidc: options.oidc,
        }))
    }

    /// Whether `who` sees every session and the audit log.
    fn is_reviewer(&self, who: &Principal) -> bool {
        let reviewers = (self.0.reviewer_groups)();
        who.groups.iter().any(|g| reviewers.contains(g))
    }
}

/// The console's routes (merged into the API's router before its fallback).
pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/", get(sessions::home))
        .route("/signin", get(browser::signin_page).post(browser::signin))
        .route("/signout", post(browser::signout))
        .route("/auth/oidc", get(oidc::start))
        .route("/auth/callback", get(oidc::callback))
        .route("/sessions", get(sessions::list))
        .route("/sessions/{id}", get(sessions::show))
        .route("/sessions/{id}/events", get(sessions::events_after))
        .route("/approvals", get(approvals::queue))
        .route("/approvals/{id}/approve", post(approvals::approve))
        .route("/approvals/{id}/deny", post(approvals::deny))
        .route("/audit", get(audit::page))
        .route("/assets/console.css", get(assets::css))
        .route("/assets/console.js", get(assets::js))
        .layer(middleware::from_fn(page::security_headers))
}
