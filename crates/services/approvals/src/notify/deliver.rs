//! Sending one payload to one webhook: the HTTP client (rustls with the aws-lc-rs
//! provider and the Mozilla roots, no redirects), attempts with backoff, and error text
//! that never contains the URL (a Slack webhook URL is itself a credential).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderValue};

use super::signature::sign;
use super::{Delivery, Hook};

/// Attempts per delivery.
pub(crate) const ATTEMPTS: u32 = 3;
/// The pause before the second and third attempts.
const BACKOFF: [Duration; 2] = [Duration::from_millis(500), Duration::from_secs(1)];
/// How much of a failed answer's body goes into the error (receivers such as Slack say
/// what is wrong there: `invalid_payload`, `no_service`).
const ERROR_BODY_MAX: usize = 200;

/// The client every webhook shares. TLS is rustls with the aws-lc-rs provider (the one
/// the workspace builds) and the Mozilla root store; redirects are not followed, as a
/// redirect would send a signed request somewhere the configuration does not name.
pub(crate) fn client() -> Result<reqwest::Client, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("airlock/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("HTTP client setup failed: {}", chain(&e)))
}

/// How one attempt ended.
enum Attempt {
    Delivered(u16),
    /// An answer that was not 2xx; `retry` says whether another attempt may help.
    Refused {
        status: u16,
        error: String,
        retry: bool,
    },
    /// No answer (connection, TLS, timeout).
    Failed(String),
}

/// Sends `body` to `hook` up to [`ATTEMPTS`] times. `delivery_id` is the same on every
/// attempt, so a receiver can drop duplicates; the signature is made afresh for each.
pub(crate) async fn deliver(
    client: &reqwest::Client,
    hook: &Hook,
    event: &'static str,
    delivery_id: &str,
    body: Bytes,
) -> Delivery {
    let mut status = None;
    let mut error = None;
    let mut attempts = 0;
    for n in 0..ATTEMPTS {
        if let Some(pause) = n.checked_sub(1).and_then(|i| BACKOFF.get(i as usize)) {
            tokio::time::sleep(*pause).await;
        }
        attempts = n + 1;
        let retry = match attempt(client, hook, event, delivery_id, body.clone()).await {
            Attempt::Delivered(code) => {
                tracing::debug!(webhook = %hook.name, attempts, status = code, "webhook delivered");
                return Delivery {
                    webhook: hook.name.clone(),
                    delivered: true,
                    status: Some(code),
                    attempts,
                    error: None,
                };
            }
            Attempt::Refused {
                status: code,
                error: e,
                retry,
            } => {
                status = Some(code);
                error = Some(e);
                retry
            }
            Attempt::Failed(e) => {
                error = Some(e);
                true
            }
        };
        if !retry {
            break;
        }
    }
    let error = error.unwrap_or_else(|| "not delivered".to_owned());
    tracing::warn!(
        webhook = %hook.name,
        attempts,
        status = status.map(u64::from),
        error = %error,
        "webhook delivery failed"
    );
    Delivery {
        webhook: hook.name.clone(),
        delivered: false,
        status,
        attempts,
        error: Some(error),
    }
}

async fn attempt(
    client: &reqwest::Client,
    hook: &Hook,
    event: &'static str,
    delivery_id: &str,
    body: Bytes,
) -> Attempt {
    let url = hook.url.expose();
    let mut request = client
        .post(url)
        .timeout(hook.timeout)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header("X-Airlock-Event", event)
        .header("X-Airlock-Delivery", delivery_id);
    if let Some(key) = &hook.key {
        request = request.header(
            "X-Airlock-Signature",
            sign(key.expose().as_bytes(), now_unix(), &body),
        );
    }
    let mut response = match request.body(body).send().await {
        Ok(r) => r,
        Err(e) => return Attempt::Failed(redact(&describe(&e, hook.timeout), url)),
    };
    let code = response.status();
    if code.is_success() {
        return Attempt::Delivered(code.as_u16());
    }
    let retry = code.is_server_error()
        || code == StatusCode::REQUEST_TIMEOUT
        || code == StatusCode::TOO_MANY_REQUESTS;
    let mut error = format!("HTTP {code}");
    if code.is_redirection() {
        error.push_str(": redirects are not followed; configure the final URL");
    } else {
        let said = body_start(&mut response).await;
        if !said.is_empty() {
            error.push_str(": ");
            error.push_str(&said);
        }
    }
    if !retry {
        error.push_str(" (not retried)");
    }
    Attempt::Refused {
        status: code.as_u16(),
        error: redact(&error, url),
        retry,
    }
}

/// The first [`ERROR_BODY_MAX`] characters of an answer's body on one line; whatever
/// cannot be read in the attempt's time is left out.
async fn body_start(response: &mut reqwest::Response) -> String {
    let mut raw = Vec::new();
    while raw.len() < ERROR_BODY_MAX * 4 {
        match response.chunk().await {
            Ok(Some(chunk)) => raw.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    String::from_utf8_lossy(&raw)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(ERROR_BODY_MAX)
        .collect::<String>()
        .trim()
        .to_owned()
}

/// What went wrong, without the URL reqwest puts in its messages.
fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("no answer within {timeout:?}");
    }
    let what = if e.is_connect() {
        "could not connect"
    } else if e.is_builder() {
        "invalid request"
    } else {
        "request failed"
    };
    match std::error::Error::source(e) {
        Some(source) => format!("{what}: {}", chain(source)),
        None => what.to_owned(),
    }
}

/// An error and its sources, `a: b: c`, skipping a source whose text its parent repeats.
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = s.source();
    }
    out
}

/// Removes the URL, and its path (where a Slack URL keeps its secret), from `text`.
fn redact(text: &str, url: &str) -> String {
    let mut out = text.replace(url, "[webhook url]");
    if let Ok(parsed) = reqwest::Url::parse(url) {
        let path = parsed.path();
        if path.len() > 1 {
            out = out.replace(path, "[path]");
        }
        if let Some(q) = parsed.query() {
            out = out.replace(q, "[query]");
        }
    }
    out
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_removes_url_path_and_query() {
        let url = "https://hooks.slack.com/services/T0/B0/SECRET?x=tok";
        let text = format!("failed for url ({url}); path /services/T0/B0/SECRET; x=tok");
        let out = redact(&text, url);
        assert!(!out.contains("SECRET"), "{out}");
        assert!(!out.contains("x=tok"), "{out}");
    }
}
