//! Webhook notifications of approval requests: each new request is POSTed, signed, to
//! every `[[approvals.webhooks]]` entry whose groups match its approver group, either as
//! Airlock's JSON document or as a Slack message.
//!
//! Webhook URLs and keys are kept as [`Secret`]s from the moment they are resolved: a
//! Slack incoming-webhook URL is itself a credential, so logs, errors and [`Delivery`]
//! name the webhook, never its URL. See `docs/approvals-webhooks.md` for the payloads,
//! the signature scheme and retries.

mod deliver;
mod payload;
mod signature;

use std::sync::Arc;
use std::time::Duration;

use airlock_config::{ApprovalsConfig, SecretRef, WebhookFormat, WebhookUrl};
use airlock_model::Approval;
use airlock_vault::{Secret, VaultError};
use serde::Serialize;
use tracing::Instrument;

pub use payload::EVENT_REQUESTED;
pub use signature::{sign, verify_signature};

/// The header that carries the event name (`approval.requested`).
pub const EVENT_HEADER: &str = "X-Airlock-Event";
/// The header that carries the delivery's UUIDv7, the same on every attempt.
pub const DELIVERY_HEADER: &str = "X-Airlock-Delivery";
/// The header that carries the signature, see [`sign`].
pub const SIGNATURE_HEADER: &str = "X-Airlock-Signature";

/// The result of announcing a request on one webhook.
#[derive(Debug, Clone, Serialize)]
pub struct Delivery {
    /// The webhook's name.
    pub webhook: String,
    /// Whether a 2xx answer came back.
    pub delivered: bool,
    /// The last HTTP status, if any answer came.
    pub status: Option<u16>,
    /// Attempts made.
    pub attempts: u32,
    /// The last error, if it failed (never the URL).
    pub error: Option<String>,
}

/// Why the webhooks could not be set up. Names the webhook, never its URL or key.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The signing key reference could not be resolved.
    #[error("webhook `{webhook}`: cannot read its secret: {source}")]
    Secret {
        /// The webhook's name.
        webhook: String,
        /// Why (names the reference, not the value).
        source: VaultError,
    },
    /// The URL reference could not be resolved.
    #[error("webhook `{webhook}`: cannot read its URL: {source}")]
    UrlReference {
        /// The webhook's name.
        webhook: String,
        /// Why (names the reference, not the value).
        source: VaultError,
    },
    /// The URL (as written, or as resolved from its reference) is not acceptable.
    #[error("webhook `{webhook}`: {reason}")]
    Url {
        /// The webhook's name.
        webhook: String,
        /// What is wrong, without the URL.
        reason: String,
    },
    /// A `json` webhook has no `secret`.
    #[error(
        "webhook `{webhook}`: format = \"json\" needs `secret = \"env:NAME\"`, the key receivers check the X-Airlock-Signature header with"
    )]
    MissingSecret {
        /// The webhook's name.
        webhook: String,
    },
    /// The HTTP client could not be built.
    #[error("webhooks: {0}")]
    Client(String),
}

/// One configured webhook, resolved.
pub(crate) struct Hook {
    name: String,
    url: Secret,
    format: WebhookFormat,
    key: Option<Secret>,
    groups: Vec<String>,
    timeout: Duration,
}

impl Hook {
    fn wants(&self, group: &str) -> bool {
        self.groups.is_empty() || self.groups.iter().any(|g| g == group)
    }
}

/// Announces approval requests on the configured webhooks.
pub struct Notifier {
    hooks: Vec<Arc<Hook>>,
    /// Built only when there is a webhook.
    client: Option<reqwest::Client>,
    /// The admin API's base URL, for links; no trailing slash.
    public_url: Option<String>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field(
                "webhooks",
                &self
                    .hooks
                    .iter()
                    .map(|h| h.name.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("public_url", &self.public_url)
            .finish()
    }
}

impl Notifier {
    /// A notifier without webhooks.
    pub fn none() -> Self {
        Notifier {
            hooks: Vec::new(),
            client: None,
            public_url: None,
        }
    }

    /// Resolves `[approvals]`' webhooks: each `secret` (the HMAC key) and each `url` (a
    /// literal, or an `env:`/`file:` reference, checked once resolved). `public_url` is
    /// the admin API's base for links (`https://airlock.example.com:8080`); without it
    /// payloads carry no links.
    pub fn from_config(
        config: &ApprovalsConfig,
        public_url: Option<String>,
    ) -> Result<Notifier, NotifyError> {
        let mut hooks = Vec::with_capacity(config.webhooks.len());
        for w in &config.webhooks {
            let name = w.name.get_ref().clone();
            let key = w
                .secret
                .as_ref()
                .map(airlock_vault::resolve)
                .transpose()
                .map_err(|source| NotifyError::Secret {
                    webhook: name.clone(),
                    source,
                })?;
            if w.format == WebhookFormat::Json && key.is_none() {
                return Err(NotifyError::MissingSecret { webhook: name });
            }
            let url = resolve_url(&name, &w.url)?;
            hooks.push(Arc::new(Hook {
                name,
                url,
                format: w.format,
                key,
                groups: w.groups.clone(),
                timeout: w.timeout,
            }));
        }
        let client = if hooks.is_empty() {
            None
        } else {
            Some(deliver::client().map_err(NotifyError::Client)?)
        };
        let public_url = public_url
            .map(|u| u.trim_end_matches('/').to_owned())
            .filter(|u| !u.is_empty());
        Ok(Notifier {
            hooks,
            client,
            public_url,
        })
    }

    /// Whether there is no webhook.
    pub fn is_empty(&self) -> bool {
        self.hooks.is_empty()
    }

    /// The webhooks' names, in configuration order.
    pub fn webhook_names(&self) -> impl Iterator<Item = &str> {
        self.hooks.iter().map(|h| h.name.as_str())
    }

    /// Announces `approval` on every webhook whose groups match (none listed, or its
    /// approver group among them), all at once; each webhook is tried up to three times.
    /// Returns one [`Delivery`] per matching webhook, in configuration order.
    pub async fn approval_requested(&self, approval: &Approval) -> Vec<Delivery> {
        let Some(client) = &self.client else {
            return Vec::new();
        };
        let links = self
            .public_url
            .as_deref()
            .map(|base| payload::Links::new(base, &approval.id));
        let json = payload::json_body(approval, links.as_ref()).map(bytes::Bytes::from);
        let slack = payload::slack_body(approval, links.as_ref()).map(bytes::Bytes::from);

        let mut tasks = tokio::task::JoinSet::new();
        let mut order = Vec::new();
        for (index, hook) in self.hooks.iter().enumerate() {
            if !hook.wants(&approval.approver_group) {
                continue;
            }
            order.push((index, hook.name.clone()));
            let body = match hook.format {
                WebhookFormat::Json => &json,
                WebhookFormat::Slack => &slack,
            };
            let body = match body {
                Ok(b) => b.clone(),
                Err(e) => {
                    // Serializing our own types does not fail; if it ever does, say so.
                    let error = format!("could not build the payload: {e}");
                    tracing::warn!(webhook = %hook.name, approval = %approval.id, error = %error, "webhook delivery failed");
                    tasks.spawn(std::future::ready((
                        index,
                        Delivery {
                            webhook: hook.name.clone(),
                            delivered: false,
                            status: None,
                            attempts: 0,
                            error: Some(error),
                        },
                    )));
                    continue;
                }
            };
            let client = client.clone();
            let hook = Arc::clone(hook);
            let delivery_id = uuid::Uuid::now_v7().to_string();
            let approval_id = approval.id.clone();
            tasks.spawn(async move {
                let span = tracing::info_span!("webhook", webhook = %hook.name, approval = %approval_id, delivery = %delivery_id);
                let d = deliver::deliver(&client, &hook, EVENT_REQUESTED, &delivery_id, body)
                    .instrument(span)
                    .await;
                (index, d)
            });
        }

        let mut done: Vec<(usize, Delivery)> = Vec::with_capacity(order.len());
        while let Some(joined) = tasks.join_next().await {
            if let Ok(pair) = joined {
                done.push(pair);
            }
        }
        // A task that panicked (it should not) still gets its line.
        for (index, name) in order {
            if !done.iter().any(|(i, _)| *i == index) {
                tracing::warn!(webhook = %name, approval = %approval.id, "webhook delivery task failed");
                done.push((
                    index,
                    Delivery {
                        webhook: name,
                        delivered: false,
                        status: None,
                        attempts: 0,
                        error: Some("the delivery task failed".to_owned()),
                    },
                ));
            }
        }
        done.sort_by_key(|(i, _)| *i);
        done.into_iter().map(|(_, d)| d).collect()
    }
}

/// Resolves a webhook's `url`: a literal, or an `env:`/`file:` reference, checked after
/// resolving like a literal.
fn resolve_url(webhook: &str, text: &str) -> Result<Secret, NotifyError> {
    let invalid = |reason: String| NotifyError::Url {
        webhook: webhook.to_owned(),
        reason,
    };
    let url = match airlock_config::webhook_url(text).map_err(invalid)? {
        WebhookUrl::Literal(u) => Secret::new(u),
        WebhookUrl::Secret(reference) => resolve_reference(webhook, &reference)?,
    };
    // A value pasted into a variable or file may carry stray whitespace.
    let url = if url.expose().trim() == url.expose() {
        url
    } else {
        Secret::new(url.expose().trim().to_owned())
    };
    check_url(webhook, url)
}

fn resolve_reference(webhook: &str, reference: &SecretRef) -> Result<Secret, NotifyError> {
    airlock_vault::resolve(reference).map_err(|source| NotifyError::UrlReference {
        webhook: webhook.to_owned(),
        source,
    })
}

fn check_url(webhook: &str, url: Secret) -> Result<Secret, NotifyError> {
    let invalid = |reason: String| NotifyError::Url {
        webhook: webhook.to_owned(),
        reason,
    };
    airlock_config::check_webhook_url(url.expose()).map_err(invalid)?;
    // `url::ParseError` messages do not echo the input.
    reqwest::Url::parse(url.expose()).map_err(|e| invalid(format!("the URL is not valid: {e}")))?;
    Ok(url)
}
