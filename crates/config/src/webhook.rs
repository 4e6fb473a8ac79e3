//! Webhook URLs: a literal URL, or a reference to one (a Slack incoming-webhook URL is
//! itself a credential, so it may live outside the file like any other secret).

use crate::SecretRef;

/// Where a webhook's URL comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookUrl {
    /// Written in the file.
    Literal(String),
    /// Read from the environment or a file when the configuration is loaded.
    Secret(SecretRef),
}

/// Parses the `url` of a `[[approvals.webhooks]]` entry. Errors never echo a value that
/// may be a credential.
pub fn webhook_url(text: &str) -> Result<WebhookUrl, String> {
    if text.starts_with("env:") || text.starts_with("file:") || text.starts_with("secret:") {
        return SecretRef::parse(text).map(WebhookUrl::Secret);
    }
    check_literal(text).map(|()| WebhookUrl::Literal(text.to_owned()))
}

/// Checks a URL: `https://`, or `http://` to a loopback host only.
pub fn check_literal(url: &str) -> Result<(), String> {
    if let Some(rest) = url.strip_prefix("https://") {
        return if host_of(rest).is_empty() {
            Err("the URL has no host".into())
        } else {
            Ok(())
        };
    }
    if let Some(rest) = url.strip_prefix("http://") {
        let host = host_of(rest);
        let loopback_ip = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
        return if loopback_ip || host == "localhost" {
            Ok(())
        } else {
            Err("an http:// URL is accepted only for a loopback host (127.0.0.1, [::1], localhost); use https://".into())
        };
    }
    Err("the URL must start with https:// (or http:// for a loopback host)".into())
}

/// The host part of what follows `scheme://` (without port, path or user info).
fn host_of(rest: &str) -> &str {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit('@').next().unwrap_or("");
    if authority.starts_with('[') {
        return authority.split_inclusive(']').next().unwrap_or("");
    }
    authority.split(':').next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_https_or_loopback_http_or_references() {
        assert!(webhook_url("https://hooks.slack.com/services/T/B/X").is_ok());
        assert!(webhook_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(webhook_url("http://[::1]:9000/hook").is_ok());
        assert!(webhook_url("http://localhost/hook").is_ok());
        assert!(webhook_url("http://hooks.example.com/x").is_err());
        assert!(webhook_url("http://127.0.0.1.evil.com/x").is_err());
        assert!(webhook_url("http://127.0.0.2:80/x").is_ok());
        assert!(webhook_url("http://[::2]/x").is_err());
        assert!(webhook_url("http://user@evil.com/x").is_err());
        assert!(webhook_url("ftp://x").is_err());
        assert!(webhook_url("https:///x").is_err());
        assert_eq!(
            webhook_url("env:SLACK_URL"),
            Ok(WebhookUrl::Secret(SecretRef::Env("SLACK_URL".into())))
        );
    }
}
