//! `[telemetry]`: where Airlock exports its own spans (OpenTelemetry, OTLP over
//! HTTP/protobuf), and the checks of that section. Without the section nothing is
//! exported.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::{EnvValue, SecretRef};

/// `[telemetry]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The OTLP/HTTP base endpoint of a collector (`http://127.0.0.1:4318`); spans are
    /// POSTed to `<otlp_endpoint>/v1/traces`, as the OTLP specification says for a base
    /// endpoint.
    pub otlp_endpoint: String,
    /// `service.name` of the exported spans.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Headers sent with every export (a collector's API key): a value is a secret
    /// reference (`env:`, `file:`, `secret:`), re-read on reload, or a plain value for
    /// names that do not look like credentials.
    #[serde(default)]
    pub headers: BTreeMap<String, EnvValue>,
    /// The share of traces Airlock starts that are exported (0.0 to 1.0). A span that
    /// continues an agent's trace follows the agent's sampling decision instead.
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
    /// How long one export (with its retries) may take.
    #[serde(
        default = "default_timeout",
        with = "crate::types::humantime_serde_compat"
    )]
    pub timeout: Duration,
}

impl TelemetryConfig {
    /// Where spans are POSTed: the endpoint with `/v1/traces` appended.
    pub fn traces_url(&self) -> String {
        format!("{}/v1/traces", self.otlp_endpoint.trim_end_matches('/'))
    }

    /// The secret references among the headers.
    pub fn secret_refs(&self) -> impl Iterator<Item = &SecretRef> {
        self.headers.values().filter_map(|v| match v {
            EnvValue::Secret(s) => Some(s),
            EnvValue::Plain(_) => None,
        })
    }

    /// The secret references among the headers, mutably (to resolve relative paths).
    pub fn secret_refs_mut(&mut self) -> impl Iterator<Item = &mut SecretRef> {
        self.headers.values_mut().filter_map(|v| match v {
            EnvValue::Secret(s) => Some(s),
            EnvValue::Plain(_) => None,
        })
    }
}

fn default_service_name() -> String {
    "airlock".into()
}

fn default_sample_ratio() -> f64 {
    1.0
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// Headers Airlock's exporter sets itself, or that only the HTTP connection may set.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
    "connection",
    "host",
    "te",
    "upgrade",
];

/// Parts of header names that say the value is a credential, which must then be a
/// reference, never written in the file.
const CREDENTIAL_NAMES: &[&str] = &[
    "auth",
    "key",
    "token",
    "secret",
    "password",
    "cookie",
    "signature",
    "session",
];

/// Checks the section; `Err((key, message))` names the key at fault. Messages never
/// echo a header value or the endpoint's user info.
pub(crate) fn check(t: &TelemetryConfig) -> Result<(), (&'static str, String)> {
    let endpoint = |m: String| ("otlp_endpoint", format!("[telemetry] otlp_endpoint: {m}"));
    let url = t.otlp_endpoint.as_str();
    let (scheme, rest) = if let Some(rest) = url.strip_prefix("https://") {
        ("https", rest)
    } else if let Some(rest) = url.strip_prefix("http://") {
        ("http", rest)
    } else {
        return Err(endpoint(
            "must be an http:// or https:// URL, e.g. \"http://127.0.0.1:4318\" (OTLP over HTTP)"
                .into(),
        ));
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        return Err(endpoint(
            "must not carry user info: give a collector's credential in [telemetry.headers] as a reference".into(),
        ));
    }
    if authority.is_empty() || authority.starts_with(':') {
        return Err(endpoint(format!("`{url}` has no host")));
    }
    if rest.contains('?') || rest.contains('#') {
        return Err(endpoint(format!(
            "`{url}` must not have a query or fragment"
        )));
    }
    if rest
        .bytes()
        .any(|b| b.is_ascii_control() || b == b' ' || b == b'\\' || !b.is_ascii())
    {
        return Err(endpoint(format!(
            "`{url}` contains characters a URL cannot"
        )));
    }
    if let Some((_, port)) = authority.rsplit_once(':')
        && !authority.ends_with(']')
        && port.parse::<u16>().is_err()
    {
        return Err(endpoint(format!("`{url}` has an invalid port")));
    }
    if url.trim_end_matches('/').ends_with("/v1/traces") {
        return Err(endpoint(format!(
            "`{url}` is the traces path; give the base endpoint (`{}`): Airlock appends /v1/traces",
            url.trim_end_matches('/').trim_end_matches("/v1/traces")
        )));
    }
    if t.service_name.trim().is_empty() || t.service_name.chars().any(char::is_control) {
        return Err((
            "service_name",
            "[telemetry] service_name must be a non-empty name without control characters".into(),
        ));
    }
    if !t.sample_ratio.is_finite() || !(0.0..=1.0).contains(&t.sample_ratio) {
        return Err((
            "sample_ratio",
            format!(
                "[telemetry] sample_ratio must be between 0.0 and 1.0 (the share of traces exported), not {}",
                t.sample_ratio
            ),
        ));
    }
    if t.timeout.is_zero() || t.timeout > Duration::from_secs(60) {
        return Err((
            "timeout",
            "[telemetry] timeout must be longer than 0s and at most 60s".into(),
        ));
    }
    for (name, value) in &t.headers {
        let header = |m: String| ("headers", format!("[telemetry] headers: {m}"));
        let valid_name = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !valid_name {
            return Err(header(format!("`{name}` is not a valid header name")));
        }
        let lower = name.to_ascii_lowercase();
        if RESERVED_HEADERS.contains(&lower.as_str()) {
            return Err(header(format!(
                "`{name}` is set by the exporter or the connection, not by configuration"
            )));
        }
        match value {
            EnvValue::Plain(v) => {
                if CREDENTIAL_NAMES.iter().any(|part| lower.contains(part)) {
                    return Err(header(format!(
                        "`{name}` looks like a credential: give its value as a reference (`env:NAME`, `file:PATH` or `secret:NAME`), never in the file"
                    )));
                }
                if v.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
                    return Err(header(format!(
                        "the value of `{name}` contains characters a header cannot"
                    )));
                }
            }
            EnvValue::Secret(_) if scheme == "http" && !loopback(authority) => {
                return Err(header(format!(
                    "`{name}` carries a secret, which would cross the network in clear text: use an https:// otlp_endpoint (http:// only on a loopback address)"
                )));
            }
            EnvValue::Secret(_) => {}
        }
    }
    Ok(())
}

/// Whether an authority (`host[:port]`) names a loopback host.
fn loopback(authority: &str) -> bool {
    let host = if authority.starts_with('[') {
        authority.split_inclusive(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn section(text: &str) -> Result<TelemetryConfig, String> {
        let t: TelemetryConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        check(&t).map_err(|(_, m)| m)?;
        Ok(t)
    }

    #[test]
    fn defaults_and_the_traces_url() {
        let t = section("otlp_endpoint = \"http://127.0.0.1:4318\"").unwrap();
        assert_eq!(t.service_name, "airlock");
        assert_eq!(t.sample_ratio, 1.0);
        assert_eq!(t.timeout, Duration::from_secs(10));
        assert!(t.headers.is_empty());
        assert_eq!(t.traces_url(), "http://127.0.0.1:4318/v1/traces");
        let t = section("otlp_endpoint = \"https://otel.example.com/base/\"").unwrap();
        assert_eq!(t.traces_url(), "https://otel.example.com/base/v1/traces");
    }

    #[test]
    fn bad_sections_are_refused_naming_the_key() {
        for (text, key, why) in [
            (
                "otlp_endpoint = \"127.0.0.1:4318\"",
                "otlp_endpoint",
                "http:// or https://",
            ),
            (
                "otlp_endpoint = \"grpc://h:4317\"",
                "otlp_endpoint",
                "http:// or https://",
            ),
            ("otlp_endpoint = \"http://\"", "otlp_endpoint", "no host"),
            (
                "otlp_endpoint = \"http://h:x\"",
                "otlp_endpoint",
                "invalid port",
            ),
            (
                "otlp_endpoint = \"http://h/?a=1\"",
                "otlp_endpoint",
                "query",
            ),
            (
                "otlp_endpoint = \"http://h:4318/v1/traces\"",
                "otlp_endpoint",
                "Airlock appends /v1/traces",
            ),
            (
                "otlp_endpoint = \"http://h\"\nservice_name = \"\"",
                "service_name",
                "non-empty",
            ),
            (
                "otlp_endpoint = \"http://h\"\nsample_ratio = 1.5",
                "sample_ratio",
                "between 0.0 and 1.0",
            ),
            (
                "otlp_endpoint = \"http://h\"\nsample_ratio = -0.1",
                "sample_ratio",
                "between 0.0 and 1.0",
            ),
            (
                "otlp_endpoint = \"http://h\"\nsample_ratio = nan",
                "sample_ratio",
                "between 0.0 and 1.0",
            ),
            (
                "otlp_endpoint = \"http://h\"\ntimeout = \"0s\"",
                "timeout",
                "longer than 0s",
            ),
            (
                "otlp_endpoint = \"http://h\"\nheaders = { \"bad name\" = \"x\" }",
                "headers",
                "not a valid header name",
            ),
            (
                "otlp_endpoint = \"http://h\"\nheaders = { Host = \"x\" }",
                "headers",
                "set by the exporter",
            ),
            (
                "otlp_endpoint = \"http://h\"\nheaders = { Content-Type = \"x\" }",
                "headers",
                "set by the exporter",
            ),
        ] {
            let t: TelemetryConfig = toml::from_str(text).unwrap();
            let (k, m) = check(&t).unwrap_err();
            assert_eq!(k, key, "{text}: {m}");
            assert!(
                m.contains(why) && m.starts_with("[telemetry]"),
                "{text}: {m}"
            );
        }
    }

    #[test]
    fn credentials_are_references_and_never_echoed() {
        let err = section(
            "otlp_endpoint = \"https://h\"\nheaders = { Authorization = \"Bearer hunter2\" }",
        )
        .unwrap_err();
        assert!(err.contains("looks like a credential"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        let err = section(
            "otlp_endpoint = \"https://h\"\nheaders = { x-honeycomb-team = \"ok\", x-api-key = \"hunter2\" }",
        )
        .unwrap_err();
        assert!(
            err.contains("x-api-key") && !err.contains("hunter2"),
            "{err}"
        );
        let err = section("otlp_endpoint = \"https://user:hunter2@h\"").unwrap_err();
        assert!(
            err.contains("user info") && !err.contains("hunter2"),
            "{err}"
        );
        let t = section(
            "otlp_endpoint = \"https://h\"\n[headers]\nAuthorization = \"env:OTEL_AUTH\"\nx-tenant = \"acme\"\n",
        )
        .unwrap();
        assert_eq!(t.secret_refs().count(), 1);
        assert_eq!(
            t.headers.get("x-tenant"),
            Some(&EnvValue::Plain("acme".into()))
        );
    }

    #[test]
    fn a_secret_header_needs_https_or_loopback() {
        for ok in [
            "https://otel.example.com",
            "http://127.0.0.1:4318",
            "http://[::1]:4318",
            "http://localhost:4318",
        ] {
            section(&format!(
                "otlp_endpoint = \"{ok}\"\nheaders = {{ authorization = \"env:A\" }}"
            ))
            .unwrap();
        }
        let err = section(
            "otlp_endpoint = \"http://collector:4318\"\nheaders = { authorization = \"env:A\" }",
        )
        .unwrap_err();
        assert!(err.contains("clear text"), "{err}");
        // Without a secret, plain HTTP to a collector on the network is fine.
        section("otlp_endpoint = \"http://collector:4318\"\nheaders = { x-tenant = \"acme\" }")
            .unwrap();
    }
}
