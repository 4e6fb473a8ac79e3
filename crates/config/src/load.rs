//! Reading, parsing and validating a configuration file.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{Config, ConfigError, SslMode, TargetKindConfig};

/// Reads, parses and validates the file at `path`, resolving relative paths against its
/// directory.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let base = path
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .unwrap_or(Path::new("."));
    let base = std::fs::canonicalize(base).unwrap_or_else(|_| base.to_owned());
    parse_str(&text, path, &base)
}

/// Parses and validates `text` as if read from `path`; relative paths resolve against `base`.
pub fn parse_str(text: &str, path: &Path, base: &Path) -> Result<Config, ConfigError> {
    let mut config: Config = toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
        ConfigError::Syntax {
            path: path.to_owned(),
            line,
            column,
            message: e.message().trim().to_owned(),
        }
    })?;
    validate(&config, text, path)?;
    rebase(&mut config, base);
    Ok(config)
}

fn rebase(config: &mut Config, base: &Path) {
    let join = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    join(&mut config.server.data_dir);
    if let Some(pg) = config.postgres.as_mut() {
        pg.tls_cert.as_mut().map(join);
        pg.tls_key.as_mut().map(join);
    }
    for t in &mut config.targets {
        for secret in t.secret_refs_mut() {
            secret.rebase(base);
        }
        t.ca_file.as_mut().map(join);
    }
    if let Some(p) = config.policy.as_mut() {
        join(&mut p.path);
    }
    for rule in &mut config.masking {
        if let Some(k) = rule.hash_key.as_mut() {
            k.rebase(base);
        }
    }
    if let Some(k) = config.audit.key.as_mut() {
        k.rebase(base);
    }
    if let Some(k) = config.secrets.master_key.as_mut() {
        k.rebase(base);
    }
    if let Some(t) = config.telemetry.as_mut() {
        for secret in t.secret_refs_mut() {
            secret.rebase(base);
        }
    }
    if let Some(http) = config.http.as_mut() {
        http.tls_cert.as_mut().map(join);
        http.tls_key.as_mut().map(join);
    }
    if let Some(api) = config.api.as_mut() {
        api.tls_cert.as_mut().map(join);
        api.tls_key.as_mut().map(join);
    }
    for hook in &mut config.approvals.webhooks {
        if let Some(k) = hook.secret.as_mut() {
            k.rebase(base);
        }
        if let Ok(crate::WebhookUrl::Secret(mut r)) = crate::webhook_url(&hook.url) {
            r.rebase(base);
            if let crate::SecretRef::File(p) = r {
                hook.url = format!("file:{}", p.display());
            }
        }
    }
}

fn validate(config: &Config, text: &str, path: &Path) -> Result<(), ConfigError> {
    let invalid = |line: usize, message: String| ConfigError::Invalid {
        path: path.to_owned(),
        line,
        message,
    };
    if config.server.data_dir.as_os_str().is_empty() {
        return Err(invalid(0, "[server] data_dir must not be empty".into()));
    }
    if let Some(pg) = &config.postgres
        && pg.tls_cert.is_some() != pg.tls_key.is_some()
    {
        return Err(invalid(
                0,
                "[postgres] tls_cert and tls_key must be given together (or neither, for a generated self-signed certificate)".into(),
            ));
    }
    if let Some(http) = &config.http
        && http.tls_cert.is_some() != http.tls_key.is_some()
    {
        return Err(invalid(
                key_line(text, "[http]"),
                "[http] tls_cert and tls_key must be given together (or neither, for the generated self-signed certificate)".into(),
            ));
    }
    if config.postgres.is_none() && config.http.is_none() && config.api.is_none() {
        return Err(invalid(
            0,
            "no listener is configured: add a [postgres] section with `listen = \"127.0.0.1:16432\"`, an [http] section with `listen = \"127.0.0.1:8443\"`, or an [api] section".into(),
        ));
    }
    let mut seen = HashSet::new();
    for t in &config.targets {
        let line = line_col(text, t.name.span().start).0;
        let name = t.name();
        if !valid_name(name) {
            return Err(invalid(line, format!("target name `{name}` {NAME_RULE}")));
        }
        if !seen.insert(name.to_owned()) {
            return Err(invalid(line, format!("target `{name}` is defined twice")));
        }
        if name == "mcp" || name.starts_with('_') {
            return Err(invalid(
                line,
                format!(
                    "target name `{name}` is reserved for Airlock itself (`mcp` and names starting with `_`); choose another"
                ),
            ));
        }
        check_target_kind(config, t).map_err(|m| invalid(line, format!("target `{name}`: {m}")))?;
        if t.capture_rows > 1000 {
            return Err(invalid(
                line,
                format!("target `{name}`: capture_rows is at most 1000 (rows kept per result)"),
            ));
        }
        if t.sslmode == SslMode::VerifyFull && t.ca_file.is_none() {
            return Err(invalid(
                line,
                format!(
                    "target `{name}`: sslmode = \"verify-full\" needs ca_file, the PEM bundle that signs the server's certificate"
                ),
            ));
        }
    }
    if let Some(api) = &config.api {
        if api.tls_cert.is_some() != api.tls_key.is_some() {
            return Err(invalid(
                0,
                "[api] tls_cert and tls_key must be given together (or neither, for the generated self-signed certificate)".into(),
            ));
        }
        if !api.tls && !api.listen.ip().is_loopback() {
            return Err(invalid(
                0,
                format!(
                    "[api] tls = false is allowed only on a loopback address, not {}: tokens would cross the network in clear text",
                    api.listen
                ),
            ));
        }
    }
    if config.approvals.expire_after.is_zero() {
        return Err(invalid(
            0,
            "[approvals] expire_after must be longer than 0s".into(),
        ));
    }
    if let Some(url) = &config.approvals.public_url
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        return Err(invalid(
            0,
            format!("[approvals] public_url `{url}` must start with https:// or http://"),
        ));
    }
    let mut hook_names = HashSet::new();
    for hook in &config.approvals.webhooks {
        let line = line_col(text, hook.name.span().start).0;
        let name = hook.name.get_ref();
        if !valid_name(name) {
            return Err(invalid(line, format!("webhook name `{name}` {NAME_RULE}")));
        }
        if !hook_names.insert(name.clone()) {
            return Err(invalid(line, format!("webhook `{name}` is defined twice")));
        }
        if let Err(e) = crate::webhook_url(&hook.url) {
            return Err(invalid(line, format!("webhook `{name}`: {e}")));
        }
        if hook.format == crate::WebhookFormat::Json && hook.secret.is_none() {
            return Err(invalid(
                line,
                format!(
                    "webhook `{name}`: format = \"json\" needs `secret = \"env:NAME\"`, the key receivers check the X-Airlock-Signature header with"
                ),
            ));
        }
        if hook.timeout.is_zero() {
            return Err(invalid(
                line,
                format!("webhook `{name}`: timeout must be longer than 0s"),
            ));
        }
    }
    check_console(config).map_err(|m| invalid(key_line(text, "oidc_provider"), m))?;
    check_store(config).map_err(|m| invalid(key_line(text, "url"), m))?;
    if let Some(t) = &config.telemetry {
        crate::telemetry::check(t)
            .map_err(|(key, m)| invalid(section_key_line(text, "telemetry", key), m))?;
    }
    let sync_interval = config.audit.sync_interval;
    if sync_interval < Duration::from_millis(1) || sync_interval > Duration::from_secs(1) {
        return Err(invalid(
            key_line(text, "sync_interval"),
            format!(
                "[audit] sync_interval must be between 1ms and 1s, not {}",
                humantime::format_duration(sync_interval)
            ),
        ));
    }
    for t in &config.targets {
        if t.hold_timeout.is_zero() {
            let line = line_col(text, t.name.span().start).0;
            return Err(invalid(
                line,
                format!("target `{}`: hold_timeout must be longer than 0s", t.name()),
            ));
        }
    }
    if matches!(config.secrets.master_key, Some(crate::SecretRef::Stored(_))) {
        return Err(invalid(
            0,
            "[secrets] master_key must be `env:NAME` or `file:PATH`: it cannot live in the store it opens".into(),
        ));
    }
    if matches!(config.audit.key, Some(crate::SecretRef::Stored(_))) {
        return Err(invalid(
            0,
            "[audit] key must be `env:NAME` or `file:PATH`, not a stored secret".into(),
        ));
    }
    let mut provider_names = HashSet::new();
    let mut issuers = HashSet::new();
    for p in &config.identity.oidc {
        let line = line_col(text, p.name.span().start).0;
        let name = p.name();
        let invalid_p = |m: String| invalid(line, format!("[[identity.oidc]] `{name}`: {m}"));
        if !valid_name(name) {
            return Err(invalid(
                line,
                format!("OIDC provider name `{name}` {NAME_RULE}"),
            ));
        }
        if !provider_names.insert(name.to_owned()) {
            return Err(invalid(
                line,
                format!("OIDC provider `{name}` is defined twice"),
            ));
        }
        if let Err(e) = crate::check_issuer_url(&p.issuer) {
            return Err(invalid_p(format!("issuer `{}`: {e}", p.issuer)));
        }
        if !issuers.insert(p.issuer.trim_end_matches('/').to_owned()) {
            return Err(invalid_p(format!(
                "issuer `{}` is also another provider's: a token is matched to its provider by `iss`",
                p.issuer
            )));
        }
        if p.audiences.is_empty() || p.audiences.iter().any(String::is_empty) {
            return Err(invalid_p(
                "audiences must list the audience(s) tokens for Airlock carry, e.g. [\"urn:airlock\"]".into(),
            ));
        }
        if p.principal_claim.is_empty() || p.groups_claim.is_empty() {
            return Err(invalid_p(
                "principal_claim and groups_claim must not be empty".into(),
            ));
        }
        if p.algorithms.is_empty() {
            return Err(invalid_p(
                "algorithms must name at least one, e.g. [\"RS256\"]".into(),
            ));
        }
        for a in &p.algorithms {
            if a.eq_ignore_ascii_case("none") {
                return Err(invalid_p(
                    "algorithm `none` is never accepted: unsigned tokens prove nothing".into(),
                ));
            }
            if a.to_ascii_uppercase().starts_with("HS") {
                return Err(invalid_p(format!(
                    "algorithm `{a}` is never accepted: HMAC would verify with the provider's public key, which anyone has"
                )));
            }
            if !crate::OIDC_ALGORITHMS.contains(&a.as_str()) {
                return Err(invalid_p(format!(
                    "unknown algorithm `{a}` (accepted: {})",
                    crate::OIDC_ALGORITHMS.join(", ")
                )));
            }
        }
        if p.leeway > std::time::Duration::from_secs(300) {
            return Err(invalid_p("leeway is at most 5m".into()));
        }
    }
    let mut rule_names = HashSet::new();
    for rule in &config.masking {
        let line = line_col(text, rule.name.span().start).0;
        let name = rule.name();
        if !valid_name(name) {
            return Err(invalid(
                line,
                format!("masking rule name `{name}` {NAME_RULE}"),
            ));
        }
        if !rule_names.insert(name.to_owned()) {
            return Err(invalid(
                line,
                format!("masking rule `{name}` is defined twice"),
            ));
        }
        for t in &rule.targets {
            if !seen.contains(t) {
                return Err(invalid(
                    line,
                    format!("masking rule `{name}` names target `{t}`, which is not defined"),
                ));
            }
        }
        if rule.columns.is_empty() && rule.detectors.is_empty() && rule.regexes.is_empty() {
            return Err(invalid(
                line,
                format!(
                    "masking rule `{name}` masks nothing: give it `columns`, `detectors` or `regexes`"
                ),
            ));
        }
        for c in &rule.columns {
            if c.is_empty() || c.split('.').count() > 3 || c.split('.').any(str::is_empty) {
                return Err(invalid(
                    line,
                    format!(
                        "masking rule `{name}`: column pattern `{c}` must be `column`, `table.column` or `schema.table.column`"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// What names of targets and masking rules may be.
const NAME_RULE: &str = "must be non-empty and use only letters, digits, '-', '_' and '.'";

/// The keys a target of its kind needs and must not have, and its listener.
fn check_target_kind(config: &Config, t: &crate::TargetConfig) -> Result<(), String> {
    let has_listener = match t.kind {
        TargetKindConfig::Postgres => config.postgres.is_some(),
        TargetKindConfig::Http | TargetKindConfig::Kubernetes | TargetKindConfig::Mcp => {
            config.http.is_some()
        }
    };
    if !has_listener {
        return Err(format!(
            "kind = \"{}\" needs the {} listener section, which is missing",
            kind_name(t.kind),
            t.kind.listener_section()
        ));
    }
    if t.kind != TargetKindConfig::Mcp && has_mcp_keys(t) {
        return Err("command, env and pin_tools are for kind = \"mcp\" targets".into());
    }
    match t.kind {
        TargetKindConfig::Mcp => check_mcp_target(t)?,
        TargetKindConfig::Postgres => {
            if t.host.is_empty() {
                return Err("host must not be empty".into());
            }
            if t.database.is_empty() || t.user.is_empty() || t.password.is_none() {
                return Err("a postgres target needs host, database, user and password".into());
            }
            if t.url.is_some() || t.auth.is_some() || t.capture_bytes != 0 {
                return Err("url, auth and capture_bytes are for kind = \"http\" targets".into());
            }
            if has_kubernetes_keys(t) {
                return Err("token, client_cert, client_key, impersonate and insecure_skip_verify are for kind = \"kubernetes\" targets".into());
            }
        }
        TargetKindConfig::Http => {
            let Some(url) = &t.url else {
                return Err("an http target needs url = \"https://host/base\"".into());
            };
            check_http_url(url)?;
            if has_postgres_keys(t) {
                return Err("host, database, user and password are for kind = \"postgres\" targets; an http target has url and auth".into());
            }
            if let Some(auth) = &t.auth {
                match auth.form()? {
                    crate::HttpAuthForm::Header(h, _)
                        if h.is_empty()
                            || !h.bytes().all(|b| {
                                b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
                            }) =>
                    {
                        return Err(format!("auth header `{h}` is not a valid header name"));
                    }
                    crate::HttpAuthForm::Basic(u, _) if u.contains(':') => {
                        return Err("auth basic_user must not contain `:`".into());
                    }
                    _ => {}
                }
            }
            if t.capture_bytes > 64 * 1024 {
                return Err("capture_bytes is at most 65536".into());
            }
            if has_kubernetes_keys(t) {
                return Err("token, client_cert, client_key, impersonate and insecure_skip_verify are for kind = \"kubernetes\" targets; an http target has auth".into());
            }
        }
        TargetKindConfig::Kubernetes => {
            let Some(url) = &t.url else {
                return Err("a kubernetes target needs url = \"https://<api server>\"".into());
            };
            check_http_url(url)?;
            if has_postgres_keys(t) || t.auth.is_some() {
                return Err("host, database, user, password and auth are for other kinds; a kubernetes target has url, token (or client_cert and client_key), ca_file".into());
            }
            match (&t.token, &t.client_cert, &t.client_key) {
                (Some(_), None, None) | (None, Some(_), Some(_)) => {}
                _ => return Err("a kubernetes target needs exactly one credential: token = \"file:/run/secrets/token\", or client_cert and client_key".into()),
            }
            if url.starts_with("http://") && !t.insecure_skip_verify {
                return Err(format!(
                    "url `{url}`: an API server is reached over https://"
                ));
            }
            if t.insecure_skip_verify && t.ca_file.is_some() {
                return Err("give ca_file or insecure_skip_verify = true, not both".into());
            }
            if t.capture_bytes > 64 * 1024 {
                return Err("capture_bytes is at most 65536".into());
            }
        }
    }
    Ok(())
}

/// An MCP target: `url` (streamable HTTP or SSE) or `command` (stdio), not both.
fn check_mcp_target(t: &crate::TargetConfig) -> Result<(), String> {
    match (&t.url, t.command.is_empty()) {
        (Some(_), false) => {
            return Err(
                "an mcp target has url (streamable HTTP) or command (stdio), not both".into(),
            );
        }
        (None, true) => {
            return Err("an mcp target needs url = \"https://host/mcp\" or command = [\"program\", \"arg\"]".into());
        }
        (Some(url), true) => check_http_url(url)?,
        (None, false) => {
            if t.command.first().is_some_and(|p| p.trim().is_empty()) {
                return Err("command's first element (the program) must not be empty".into());
            }
            if t.auth.is_some() {
                return Err("auth is for an mcp target with url; give a command upstream its credential in env".into());
            }
        }
    }
    if !t.env.is_empty() && t.command.is_empty() {
        return Err("env is for an mcp target with command (stdio)".into());
    }
    if let Some(k) = t
        .env
        .keys()
        .find(|k| k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
    {
        return Err(format!(
            "env name `{k}` is not a valid environment variable name (letters, digits and _)"
        ));
    }
    if has_postgres_keys(t) || has_kubernetes_keys(t) {
        return Err("host, database, user, password and the kubernetes keys are for other kinds; an mcp target has url and auth, or command and env".into());
    }
    if t.capture_bytes > 64 * 1024 {
        return Err("capture_bytes is at most 65536".into());
    }
    Ok(())
}

/// Whether a target sets any key of an MCP target.
fn has_mcp_keys(t: &crate::TargetConfig) -> bool {
    !t.command.is_empty() || !t.env.is_empty() || t.pin_tools
}

/// Whether a target sets any key of a PostgreSQL target.
fn has_postgres_keys(t: &crate::TargetConfig) -> bool {
    !t.host.is_empty() || !t.database.is_empty() || !t.user.is_empty() || t.password.is_some()
}

/// Whether a target sets any key of a Kubernetes target.
fn has_kubernetes_keys(t: &crate::TargetConfig) -> bool {
    t.token.is_some()
        || t.client_cert.is_some()
        || t.client_key.is_some()
        || t.impersonate
        || t.insecure_skip_verify
}

fn kind_name(kind: TargetKindConfig) -> &'static str {
    match kind {
        TargetKindConfig::Postgres => "postgres",
        TargetKindConfig::Http => "http",
        TargetKindConfig::Kubernetes => "kubernetes",
        TargetKindConfig::Mcp => "mcp",
    }
}

/// An upstream base URL: `http://` or `https://`, a host, an optional port and path, no
/// query, fragment or user info.
fn check_http_url(url: &str) -> Result<(), String> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| format!("url `{url}` must start with http:// or https://"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(format!("url `{url}` has no host"));
    }
    if authority.contains('@') {
        return Err(format!(
            "url `{url}` must not carry user info: put the credential in auth"
        ));
    }
    if rest.contains('?') || rest.contains('#') {
        return Err(format!("url `{url}` must not have a query or fragment"));
    }
    if rest
        .bytes()
        .any(|b| b.is_ascii_control() || b == b' ' || b == b'\\')
    {
        return Err(format!("url `{url}` contains characters a URL cannot"));
    }
    Ok(())
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// 1-based line of the first line that sets `key` (0 when none does).
fn key_line(text: &str, key: &str) -> usize {
    text.lines()
        .position(|l| {
            l.trim_start()
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map_or(0, |i| i + 1)
}

/// 1-based line of `key = ...` within section `[section]` (or its sub-tables), else of
/// the section's header; 0 when the section is not written as a table.
fn section_key_line(text: &str, section: &str, key: &str) -> usize {
    let header = format!("[{section}]");
    let sub = format!("[{section}.");
    let Some(start) = text.lines().position(|l| l.trim() == header) else {
        return 0;
    };
    let in_section = text
        .lines()
        .enumerate()
        .skip(start + 1)
        .take_while(|(_, l)| {
            let l = l.trim_start();
            !l.starts_with('[') || l.starts_with(&sub)
        });
    for (i, l) in in_section {
        let l = l.trim_start();
        let named = l.strip_prefix(key).is_some_and(|rest| {
            let rest = rest.trim_start();
            rest.starts_with('=') || rest.starts_with('.')
        }) || l.starts_with(&format!("[{section}.{key}]"));
        if named {
            return i + 1;
        }
    }
    start + 1
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset.min(text.len())).unwrap_or("");
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, column)
}

/// `[store]`: a PostgreSQL URL without a password in it; the password is a reference
/// the store cannot hold itself.
fn check_store(config: &Config) -> Result<(), String> {
    let s = &config.store;
    let Some(url) = &s.url else {
        if s.password.is_some() {
            return Err("[store] password is for a PostgreSQL store: add `url = \"postgres://USER@HOST:PORT/DB\"` (without it the store is SQLite in data_dir)".into());
        }
        return Ok(());
    };
    let Some(rest) = url
        .strip_prefix("postgres://")
        .or_else(|| url.strip_prefix("postgresql://"))
    else {
        return Err(format!(
            "[store] url must be a PostgreSQL URL (postgres://USER@HOST:PORT/DB), not `{}`",
            url.split('@').next_back().unwrap_or_default()
        ));
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    if authority
        .rsplit_once('@')
        .is_some_and(|(user, _)| user.contains(':'))
    {
        return Err("[store] url must not hold the password: write `password = \"env:AIRLOCK_STORE_PASSWORD\"` (or `file:`) instead".into());
    }
    if matches!(s.password, Some(crate::SecretRef::Stored(_))) {
        return Err("[store] password must be `env:NAME` or `file:PATH`: it cannot live in the store it opens".into());
    }
    Ok(())
}

/// `[console]`: the OIDC sign-in settings come together and name a configured
/// provider; the redirect is HTTPS (HTTP only on loopback).
fn check_console(config: &Config) -> Result<(), String> {
    let c = &config.console;
    let invalid_c = |m: String| format!("[console] {m}");
    if c.session_ttl < Duration::from_secs(60) {
        return Err(invalid_c("session_ttl must be at least 1m".into()));
    }
    let oidc_keys = [
        c.client_id.is_some(),
        c.redirect_url.is_some(),
        c.client_secret.is_some(),
    ];
    let Some(provider) = &c.oidc_provider else {
        if oidc_keys.iter().any(|set| *set) {
            return Err(invalid_c(
                "client_id, client_secret and redirect_url are for OIDC sign-in: add `oidc_provider = \"<name of an [[identity.oidc]] entry>\"`".into(),
            ));
        }
        return Ok(());
    };
    if !config.identity.oidc.iter().any(|p| p.name() == provider) {
        let known: Vec<&str> = config.identity.oidc.iter().map(|p| p.name()).collect();
        return Err(invalid_c(format!(
            "oidc_provider `{provider}` is not an [[identity.oidc]] entry (configured: {})",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        )));
    }
    if c.client_id.as_deref().is_none_or(str::is_empty) {
        return Err(invalid_c(format!(
            "oidc_provider `{provider}` needs `client_id`, the console's client at the provider"
        )));
    }
    let Some(redirect) = &c.redirect_url else {
        return Err(invalid_c(
            "oidc_provider needs `redirect_url = \"https://<[api] address>/auth/callback\"`, as registered with the provider".into(),
        ));
    };
    let loopback_http = redirect.strip_prefix("http://").is_some_and(|rest| {
        rest.starts_with("127.0.0.1") || rest.starts_with("[::1]") || rest.starts_with("localhost")
    });
    if !(redirect.starts_with("https://") || loopback_http) || !redirect.ends_with("/auth/callback")
    {
        return Err(invalid_c(format!(
            "redirect_url `{redirect}` must be https://<[api] address>/auth/callback (http:// only on loopback)"
        )));
    }
    if config.api.is_none() {
        return Err(invalid_c(
            "oidc_provider is set but there is no [api] section: the console is served by the [api] listener".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[server]
data_dir = "./airlock-data"
[postgres]
listen = "127.0.0.1:16432"
[[targets]]
name = "shop"
kind = "postgres"
host = "127.0.0.1"
port = 15432
database = "shop"
user = "app"
password = "env:SHOP_PG_PASSWORD"
"#;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        parse_str(
            text,
            Path::new("/etc/airlock/airlock.toml"),
            Path::new("/etc/airlock"),
        )
    }

    #[test]
    fn minimal_documented_config_parses_and_rebases_paths() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.server.data_dir, Path::new("/etc/airlock/./airlock-data"));
        assert_eq!(c.targets[0].name(), "shop");
        assert_eq!(c.targets[0].sslmode, SslMode::Prefer);
        assert_eq!(c.targets[0].connect_timeout.as_secs(), 10);
    }

    #[test]
    fn reads_are_written_before_answered_by_default_and_synced_on_request() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.audit.read_durability, crate::ReadDurability::Written);
        assert_eq!(c.audit.sync_interval, Duration::from_millis(10));
        let strict = parse(&format!(
            "{MINIMAL}\n[audit]\nread_durability = \"synced\"\nsync_interval = \"50ms\"\n"
        ))
        .unwrap();
        assert_eq!(strict.audit.read_durability, crate::ReadDurability::Synced);
        assert_eq!(strict.audit.sync_interval, Duration::from_millis(50));
        let err = parse(&format!(
            "{MINIMAL}\n[audit]\nread_durability = \"never\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("never") && err.contains("synced"), "{err}");
        let text = format!("{MINIMAL}\n[audit]\nsync_interval = \"5s\"\n");
        let line = text.lines().count();
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("between 1ms and 1s"), "{err}");
        assert!(err.contains(&format!(":{line}:")), "{err}");
    }

    #[test]
    fn a_postgresql_store_takes_its_password_by_reference_only() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.store.url, None);
        let ok = parse(&format!(
            "{MINIMAL}\n[store]\nurl = \"postgres://airlock@127.0.0.1:15433/airlock?sslmode=prefer\"\npassword = \"env:AIRLOCK_STORE_PASSWORD\"\n"
        ))
        .unwrap();
        assert!(ok.store.url.unwrap().starts_with("postgres://airlock@"));
        for (bad, why) in [
            (
                "url = \"postgres://airlock:hunter2@h/db\"",
                "must not hold the password",
            ),
            ("url = \"mysql://h/db\"", "PostgreSQL URL"),
            ("password = \"env:X\"", "add `url"),
            (
                "url = \"postgres://a@h/db\"\npassword = \"secret:x\"",
                "cannot live in the store",
            ),
        ] {
            let err = parse(&format!("{MINIMAL}\n[store]\n{bad}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn console_sign_in_settings_come_together() {
        let oidc = "\n[identity]\n[[identity.oidc]]\nname = \"corp\"\nissuer = \"https://idp.example.com\"\naudiences = [\"urn:airlock\"]\n\n[api]\nlisten = \"127.0.0.1:18080\"\n";
        let console = "\n[console]\noidc_provider = \"corp\"\nclient_id = \"console\"\nredirect_url = \"https://airlock.example.com/auth/callback\"\n";
        let c = parse(&format!("{MINIMAL}{oidc}{console}")).unwrap();
        assert_eq!(c.console.oidc_provider.as_deref(), Some("corp"));
        for (bad, why) in [
            (
                console.replace("corp", "other"),
                "not an [[identity.oidc]] entry",
            ),
            (
                console.replace("client_id = \"console\"\n", ""),
                "needs `client_id`",
            ),
            (console.replace("/auth/callback", "/cb"), "must be https://"),
            (
                console.replace("https://airlock", "http://airlock"),
                "must be https://",
            ),
            (
                "\n[console]\nclient_id = \"x\"\n".to_owned(),
                "add `oidc_provider",
            ),
            (
                "\n[console]\nsession_ttl = \"5s\"\n".to_owned(),
                "at least 1m",
            ),
        ] {
            let err = parse(&format!("{MINIMAL}{oidc}{bad}"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }

    #[test]
    fn unknown_key_is_an_error_with_its_line() {
        let text = MINIMAL.replace("port = 15432", "port = 15432\nprot = 1");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.starts_with("/etc/airlock/airlock.toml:11:1:"), "{err}");
        assert!(err.contains("prot"), "{err}");
    }

    #[test]
    fn literal_password_is_refused_with_its_line_and_not_echoed() {
        let text = MINIMAL.replace("env:SHOP_PG_PASSWORD", "hunter2");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains(":13:"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn duplicate_target_names_point_at_the_second() {
        let second = MINIMAL.split("[[targets]]").nth(1).unwrap();
        let text = format!("{MINIMAL}[[targets]]{second}");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("defined twice"), "{err}");
        assert!(err.contains(":15:"), "{err}");
    }

    #[test]
    fn a_config_without_a_listener_is_refused() {
        let text = MINIMAL.replace("[postgres]\nlisten = \"127.0.0.1:16432\"\n", "");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("no listener is configured"), "{err}");
    }

    #[test]
    fn bad_duration_and_sslmode_are_errors() {
        let text = MINIMAL.replace("port = 15432", "port = 15432\nconnect_timeout = \"soon\"");
        assert!(parse(&text).unwrap_err().to_string().contains("soon"));
        let text = MINIMAL.replace("port = 15432", "port = 15432\nsslmode = \"sometimes\"");
        assert!(parse(&text).is_err());
        let text = MINIMAL.replace("port = 15432", "port = 15432\nsslmode = \"verify-full\"");
        assert!(parse(&text).unwrap_err().to_string().contains("ca_file"));
    }

    const HTTP: &str = r#"
[server]
data_dir = "d"
[http]
listen = "127.0.0.1:18443"
[[targets]]
name = "billing"
kind = "http"
url = "http://127.0.0.1:18081/api"
auth = { bearer = "env:BILLING_TOKEN" }
"#;

    #[test]
    fn an_http_only_config_parses_with_each_auth_form() {
        let c = parse(HTTP).unwrap();
        assert!(c.postgres.is_none());
        let t = &c.targets[0];
        assert_eq!(t.kind, TargetKindConfig::Http);
        assert_eq!(
            t.credential(),
            Some(&crate::SecretRef::Env("BILLING_TOKEN".into()))
        );
        assert_eq!(c.http.as_ref().unwrap().inspect_body_bytes, 64 * 1024);
        let header = HTTP.replace(
            "auth = { bearer = \"env:BILLING_TOKEN\" }",
            "auth = { header = \"X-Api-Key\", value = \"file:key\" }",
        );
        let c = parse(&header).unwrap();
        assert_eq!(
            c.targets[0].credential(),
            Some(&crate::SecretRef::File("/etc/airlock/key".into())),
            "a file: reference is rebased"
        );
        let basic = HTTP.replace(
            "auth = { bearer = \"env:BILLING_TOKEN\" }",
            "auth = { basic_user = \"svc\", basic_password = \"env:PW\" }",
        );
        assert!(parse(&basic).is_ok());
    }

    #[test]
    fn http_targets_are_checked() {
        let err = |from: &str, to: &str| {
            let text = HTTP.replace(from, to);
            assert_ne!(text, HTTP, "{from}");
            parse(&text).unwrap_err().to_string()
        };
        let e = err(
            "[http]\nlisten = \"127.0.0.1:18443\"\n",
            "[api]\nlisten = \"127.0.0.1:18080\"\n",
        );
        assert!(e.contains("needs the [http] listener section"), "{e}");
        assert!(e.contains(":7:"), "the error points at the target: {e}");
        let e = err("name = \"billing\"", "name = \"mcp\"");
        assert!(e.contains("reserved"), "{e}");
        let e = err("name = \"billing\"", "name = \"_internal\"");
        assert!(e.contains("reserved"), "{e}");
        let e = err("http://127.0.0.1:18081/api", "ftp://127.0.0.1/api");
        assert!(e.contains("http:// or https://"), "{e}");
        let e = err("http://127.0.0.1:18081/api", "http://user:pw@127.0.0.1/api");
        assert!(e.contains("user info"), "{e}");
        assert!(!e.contains(" pw@") || e.contains("url `"), "{e}");
        let e = err("http://127.0.0.1:18081/api", "http://127.0.0.1/api?x=1");
        assert!(e.contains("query"), "{e}");
        let e = err(
            "auth = { bearer = \"env:BILLING_TOKEN\" }",
            "auth = { bearer = \"env:A\", value = \"env:B\" }",
        );
        assert!(e.contains("exactly one of"), "{e}");
        let e = err(
            "auth = { bearer = \"env:BILLING_TOKEN\" }",
            "auth = { bearer = \"literal-token\" }",
        );
        assert!(
            !e.contains("literal-token"),
            "a literal is never echoed: {e}"
        );
        let e = err("url = \"http://127.0.0.1:18081/api\"", "host = \"db\"");
        assert!(e.contains("needs url"), "{e}");
        let e = err(
            "auth = { bearer = \"env:BILLING_TOKEN\" }",
            "auth = { header = \"Bad Header\", value = \"env:B\" }",
        );
        assert!(e.contains("not a valid header name"), "{e}");
    }

    #[test]
    fn mcp_targets_are_checked() {
        let mcp = HTTP.replace("kind = \"http\"", "kind = \"mcp\"");
        let c = parse(&mcp).unwrap();
        assert_eq!(c.targets[0].kind, TargetKindConfig::Mcp);
        let stdio = mcp
            .replace("url = \"http://127.0.0.1:18081/api\"\n", "")
            .replace(
                "auth = { bearer = \"env:BILLING_TOKEN\" }",
                "command = [\"python3\", \"/opt/mcp/server.py\"]\nenv = { API_KEY = \"secret:tools-key\", MODE = \"read-only\" }\npin_tools = true",
            );
        let c = parse(&stdio).unwrap();
        let t = &c.targets[0];
        assert_eq!(t.command, ["python3", "/opt/mcp/server.py"]);
        assert!(t.pin_tools);
        assert_eq!(
            t.env.get("API_KEY"),
            Some(&crate::EnvValue::Secret(crate::SecretRef::Stored(
                "tools-key".into()
            )))
        );
        assert_eq!(
            t.env.get("MODE"),
            Some(&crate::EnvValue::Plain("read-only".into()))
        );
        assert_eq!(
            t.secret_refs().len(),
            1,
            "the secret env value is checked and watched"
        );
        let both = stdio.replace(
            "pin_tools = true",
            "pin_tools = true\nurl = \"http://127.0.0.1:1/mcp\"",
        );
        assert!(parse(&both).unwrap_err().to_string().contains("not both"));
        let neither = stdio.replace("command = [\"python3\", \"/opt/mcp/server.py\"]\n", "");
        let e = parse(&neither).unwrap_err().to_string();
        assert!(e.contains("needs url"), "{e}");
        let bad_env = stdio.replace("MODE =", "\"BAD-NAME\" =");
        assert!(
            parse(&bad_env)
                .unwrap_err()
                .to_string()
                .contains("BAD-NAME")
        );
        let env_on_http = HTTP.replace("auth = {", "pin_tools = true\nauth = {");
        let e = parse(&env_on_http).unwrap_err().to_string();
        assert!(e.contains("for kind = \"mcp\""), "{e}");
        let literal = stdio.replace("secret:tools-key", "env:bad-name");
        assert!(parse(&literal).is_err());
    }

    #[test]
    fn kubernetes_targets_are_checked() {
        let k8s = HTTP.replace(
            "kind = \"http\"\nurl = \"http://127.0.0.1:18081/api\"\nauth = { bearer = \"env:BILLING_TOKEN\" }",
            "kind = \"kubernetes\"\nurl = \"https://127.0.0.1:16443\"\nca_file = \"ca.pem\"\ntoken = \"file:sa-token\"",
        );
        assert_ne!(k8s, HTTP);
        let c = parse(&k8s).unwrap();
        assert_eq!(c.targets[0].kind, TargetKindConfig::Kubernetes);
        assert_eq!(
            c.targets[0].credential(),
            Some(&crate::SecretRef::File("/etc/airlock/sa-token".into()))
        );
        let err = |from: &str, to: &str| {
            let text = k8s.replace(from, to);
            assert_ne!(text, k8s, "{from}");
            parse(&text).unwrap_err().to_string()
        };
        let e = err(
            "token = \"file:sa-token\"",
            "token = \"file:t\"\nclient_cert = \"file:c\"\nclient_key = \"file:k\"",
        );
        assert!(e.contains("exactly one credential"), "{e}");
        let e = err("token = \"file:sa-token\"", "");
        assert!(e.contains("exactly one credential"), "{e}");
        let e = err("https://127.0.0.1:16443", "http://127.0.0.1:16443");
        assert!(e.contains("https://"), "{e}");
        let e = err(
            "ca_file = \"ca.pem\"",
            "ca_file = \"ca.pem\"\ninsecure_skip_verify = true",
        );
        assert!(e.contains("not both"), "{e}");
        let e = err(
            "[http]\nlisten = \"127.0.0.1:18443\"\n",
            "[api]\nlisten = \"127.0.0.1:18080\"\n",
        );
        assert!(e.contains("[http]"), "{e}");
        // HTTP targets do not take Kubernetes keys.
        let e = parse(&HTTP.replace("auth = {", "impersonate = true\nauth = {"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("for kind = \"kubernetes\""), "{e}");
    }

    #[test]
    fn telemetry_is_optional_and_its_errors_name_the_key_and_line() {
        assert!(parse(MINIMAL).unwrap().telemetry.is_none());
        let c = parse(&format!(
            "{MINIMAL}\n[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"\n[telemetry.headers]\nauthorization = \"file:otel-token\"\n"
        ))
        .unwrap();
        let t = c.telemetry.unwrap();
        assert_eq!(t.service_name, "airlock");
        assert_eq!(
            t.secret_refs().next(),
            Some(&crate::SecretRef::File("/etc/airlock/otel-token".into()))
        );
        let text = format!(
            "{MINIMAL}\n[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"\nsample_ratio = 2.0\n"
        );
        let line = text.lines().count();
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.contains(&format!(":{line}: [telemetry] sample_ratio")),
            "{err}"
        );
        let text = format!(
            "{MINIMAL}\n[telemetry]\notlp_endpoint = \"http://collector:4318\"\n[telemetry.headers]\nauthorization = \"env:A\"\n"
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(
            err.contains(&format!(
                ":{}: [telemetry] headers",
                text.lines().count() - 1
            )),
            "{err}"
        );
        let err = parse(&format!(
            "{MINIMAL}\n[telemetry]\nendpoint = \"http://h\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field `endpoint`"), "{err}");
        // A changed section takes effect on restart only.
        let a = parse(MINIMAL).unwrap();
        let b = parse(&format!(
            "{MINIMAL}\n[telemetry]\notlp_endpoint = \"http://h:4318\"\n"
        ))
        .unwrap();
        assert_eq!(b.restart_only_changes(&a), vec!["[telemetry]"]);
    }
}
