//! The configuration schema. Field docs here are the reference `docs/configuration.md`
//! mirrors.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::SecretRef;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Process-wide settings.
    pub server: ServerConfig,
    /// The PostgreSQL listener; absent means no PostgreSQL listener.
    #[serde(default)]
    pub postgres: Option<PostgresListenerConfig>,
    /// The HTTPS listener HTTP targets are reached through; absent means none.
    #[serde(default)]
    pub http: Option<HttpListenerConfig>,
    /// The targets agents may reach.
    #[serde(default)]
    pub targets: Vec<TargetConfig>,
    /// The audit chain.
    #[serde(default)]
    pub audit: AuditConfig,
    /// Cedar policies. Without this section every statement is denied (default deny).
    #[serde(default)]
    pub policy: Option<PolicyConfig>,
    /// `[[masking]]` rules: what of a result an agent may not see.
    #[serde(default)]
    pub masking: Vec<MaskingRuleConfig>,
    /// The admin HTTP API; absent means no API listener.
    #[serde(default)]
    pub api: Option<ApiConfig>,
    /// How held statements are approved: expiry and notification channels.
    #[serde(default)]
    pub approvals: ApprovalsConfig,
    /// Who may authenticate besides Airlock's own service tokens: OIDC providers.
    #[serde(default)]
    pub identity: IdentityConfig,
    /// Airlock's encrypted secret store (`secret:NAME`).
    #[serde(default)]
    pub secrets: SecretsConfig,
    /// The web console on the `[api]` listener: who sees what, and sign-in with an
    /// OIDC provider.
    #[serde(default)]
    pub console: ConsoleConfig,
    /// Where tokens, sessions, events, approvals and secrets are kept: SQLite in
    /// `data_dir` by default, or a PostgreSQL database shared by several replicas.
    #[serde(default)]
    pub store: StoreConfig,
    /// Export of Airlock's own spans to an OpenTelemetry collector (OTLP over HTTP);
    /// absent means nothing is exported.
    #[serde(default)]
    pub telemetry: Option<crate::TelemetryConfig>,
}

/// `[store]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// A PostgreSQL URL (`postgres://USER@HOST:PORT/DB?sslmode=prefer`), without a
    /// password; absent: SQLite in `data_dir`.
    #[serde(default)]
    pub url: Option<String>,
    /// The store role's password (`env:`, `file:`); never in the URL.
    #[serde(default)]
    pub password: Option<SecretRef>,
}

/// `[console]`: the web console served at `/` by the `[api]` listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Groups whose members see every session and the audit log. Default: the groups
    /// named by the policies' `@hold` annotations (whoever may approve a statement may
    /// see the sessions that ask). Everyone else sees their own sessions only.
    #[serde(default)]
    pub reviewer_groups: Option<Vec<String>>,
    /// How long a browser stays signed in (also bounded by the token's expiry).
    #[serde(default = "default_console_session", with = "humantime_serde_compat")]
    pub session_ttl: Duration,
    /// The `[[identity.oidc]]` provider people sign in with (authorization code with
    /// PKCE); without it the console takes Airlock tokens only.
    #[serde(default)]
    pub oidc_provider: Option<String>,
    /// The console's client id at that provider.
    #[serde(default)]
    pub client_id: Option<String>,
    /// The client's secret (`env:`, `file:` or `secret:`); omit for a public client.
    #[serde(default)]
    pub client_secret: Option<SecretRef>,
    /// Where the provider sends the browser back: `https://<[api] address>/auth/callback`
    /// as registered with the provider.
    #[serde(default)]
    pub redirect_url: Option<String>,
    /// Scopes asked for besides `openid` (the groups claim often needs one).
    #[serde(default = "default_console_scopes")]
    pub scopes: Vec<String>,
    /// The ID token claim naming the person; default: the provider's `principal_claim`
    /// (set this when agents' tokens name the principal differently, e.g. `client_id`).
    #[serde(default)]
    pub principal_claim: Option<String>,
    /// The ID token claim listing the person's groups; default: the provider's.
    #[serde(default)]
    pub groups_claim: Option<String>,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            reviewer_groups: None,
            session_ttl: default_console_session(),
            oidc_provider: None,
            client_id: None,
            client_secret: None,
            redirect_url: None,
            scopes: default_console_scopes(),
            principal_claim: None,
            groups_claim: None,
        }
    }
}

fn default_console_session() -> Duration {
    Duration::from_secs(8 * 3600)
}

fn default_console_scopes() -> Vec<String> {
    vec!["profile".into(), "email".into()]
}

/// `[secrets]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsConfig {
    /// Where the master key of the encrypted store comes from (`env:` or `file:`);
    /// without it, the `AIRLOCK_MASTER_KEY` environment variable.
    #[serde(default)]
    pub master_key: Option<SecretRef>,
}

/// `[identity]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// How long after its credential expires a session may still run statements; then
    /// the next statement is refused and the session closed.
    #[serde(default, with = "humantime_serde_compat")]
    pub expiry_grace: Duration,
    /// `[[identity.oidc]]`: providers whose access tokens are accepted.
    #[serde(default)]
    pub oidc: Vec<OidcProviderConfig>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        IdentityConfig {
            expiry_grace: Duration::ZERO,
            oidc: Vec::new(),
        }
    }
}

/// `[[identity.oidc]]`: one OIDC provider.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcProviderConfig {
    /// A name for messages and records.
    pub name: toml::Spanned<String>,
    /// The issuer, exactly as tokens carry it in `iss`; discovery is at
    /// `{issuer}/.well-known/openid-configuration`. `http://` only on loopback.
    pub issuer: String,
    /// Audiences accepted; a token must carry one of them in `aud`.
    pub audiences: Vec<String>,
    /// The claim (a dotted path) that names the principal.
    #[serde(default = "default_principal_claim")]
    pub principal_claim: String,
    /// The claim (a dotted path: `groups`, `roles`, `realm_access.roles`, `scope`) that
    /// lists the principal's groups: an array of strings or a space-separated string.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Signature algorithms accepted: RS256/384/512, PS256/384/512, ES256/384, EdDSA.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    #[serde(default = "default_leeway", with = "humantime_serde_compat")]
    pub leeway: Duration,
}

impl OidcProviderConfig {
    /// The provider's name.
    pub fn name(&self) -> &str {
        self.name.get_ref()
    }
}

/// Asymmetric JOSE algorithms a provider may be pinned to. `none` and the HMAC
/// algorithms are never accepted: a provider's published keys are public.
pub const OIDC_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// `[api]`: the admin HTTP API (approvals; more later).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// Address and port to listen on.
    pub listen: SocketAddr,
    /// Serve HTTPS (the default). `false` is accepted only on a loopback address.
    #[serde(default = "default_true")]
    pub tls: bool,
    /// PEM certificate chain; without it the gateway's generated self-signed one is used.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
}

/// `[approvals]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalsConfig {
    /// How long a request stays open: pending, or approved and not yet run. After that
    /// it expires and the statement needs a new request.
    #[serde(default = "default_expire_after", with = "humantime_serde_compat")]
    pub expire_after: Duration,
    /// The API's address as approvers reach it, for links in notifications
    /// (`https://airlock.example.com:8080`); default: from `[api] listen`.
    #[serde(default)]
    pub public_url: Option<String>,
    /// `[[approvals.webhooks]]`: where requests are announced.
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
}

impl Default for ApprovalsConfig {
    fn default() -> Self {
        ApprovalsConfig {
            expire_after: default_expire_after(),
            public_url: None,
            webhooks: Vec::new(),
        }
    }
}

/// `[[approvals.webhooks]]`: one notification channel.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// A name for logs and recorded events (the URL is never logged).
    pub name: toml::Spanned<String>,
    /// Where to POST: an `https://` URL (`http://` only on loopback), or a reference
    /// (`env:NAME`, `file:PATH`) to one, as a Slack webhook URL is itself a credential.
    pub url: String,
    /// `json` (Airlock's own payload, signed) or `slack` (an incoming-webhook message).
    #[serde(default)]
    pub format: WebhookFormat,
    /// Key for the `X-Airlock-Signature` HMAC-SHA256 header; required for `json`.
    #[serde(default)]
    pub secret: Option<SecretRef>,
    /// Announce only requests for these approver groups; empty means all.
    #[serde(default)]
    pub groups: Vec<String>,
    /// How long one delivery attempt may take (three attempts in all).
    #[serde(default = "default_webhook_timeout", with = "humantime_serde_compat")]
    pub timeout: Duration,
}

/// The payload of a webhook.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// Airlock's JSON document, signed with HMAC-SHA256.
    #[default]
    Json,
    /// A Slack incoming-webhook message (`text` and `blocks`).
    Slack,
}

/// `[[masking]]`: one masking rule.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskingRuleConfig {
    /// Unique name, shown in the counts recorded per session.
    pub name: toml::Spanned<String>,
    /// Targets it applies to; empty means every target.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Principals it applies to. With `groups` also empty it applies to everyone.
    #[serde(default)]
    pub principals: Vec<String>,
    /// Groups it applies to (a principal in any of them).
    #[serde(default)]
    pub groups: Vec<String>,
    /// Column name patterns: `password`, `*_token`, `customers.email`,
    /// `public.customers.email`; `*` matches any run of characters.
    #[serde(default)]
    pub columns: Vec<String>,
    /// Built-in detectors by name (`email`, `card`, ...; `secrets` for every key and
    /// token detector; `default` for the default set).
    #[serde(default)]
    pub detectors: Vec<String>,
    /// Detectors of your own: name → regular expression.
    #[serde(default)]
    pub regexes: std::collections::BTreeMap<String, String>,
    /// How a found value is replaced.
    #[serde(default)]
    pub style: MaskStyleConfig,
    /// `false`: count what would be masked, but pass it through (observe only).
    #[serde(default = "default_true")]
    pub enforce: bool,
    /// Key of `style = "hash"`; the generated `data_dir/masking.key` when absent.
    #[serde(default)]
    pub hash_key: Option<SecretRef>,
    /// What happens to an answer no masker can read (an HTTP response that is not
    /// JSON, text or an event stream): `pass` it unmasked, or `withhold` it.
    #[serde(default)]
    pub unmaskable: UnmaskableConfig,
}

/// `[[masking]] unmaskable`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnmaskableConfig {
    /// Passed unmasked (the credential scrub still applies).
    #[default]
    Pass,
    /// Refused: the agent gets a problem saying why.
    Withhold,
}

impl MaskingRuleConfig {
    /// The rule's name.
    pub fn name(&self) -> &str {
        self.name.get_ref()
    }
}

/// How a masked value is replaced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MaskStyleConfig {
    /// `[REDACTED:email]`.
    #[default]
    Redact,
    /// Part kept: `****1111`, `****@example.com`.
    Partial,
    /// A keyed hash: the same input always gives the same output.
    Hash,
}

/// `[policy]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// A `.cedar` file, or a folder whose `*.cedar` files are all loaded.
    pub path: PathBuf,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Where the SQLite store, generated certificates and the audit key live.
    pub data_dir: PathBuf,
    /// Log line format.
    #[serde(default)]
    pub log_format: LogFormat,
    /// Reload when the configuration file, a policy file or a `file:` secret changes,
    /// as on SIGHUP (checked every second).
    #[serde(default)]
    pub watch: bool,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `[postgres]`: the listener PostgreSQL clients connect to.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresListenerConfig {
    /// Address and port to listen on.
    pub listen: SocketAddr,
    /// PEM certificate chain; a self-signed one is generated into `data_dir` when absent.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Accept token passwords without TLS from loopback clients (tests, local demos).
    #[serde(default)]
    pub allow_plaintext_loopback: bool,
    /// How long a client has to finish the startup handshake.
    #[serde(default = "default_handshake_timeout", with = "humantime_serde_compat")]
    pub handshake_timeout: Duration,
}

/// `[http]`: the HTTPS listener agents reach HTTP targets through, at
/// `https://<listen>/<target>/<path>`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpListenerConfig {
    /// Address and port to listen on (HTTPS).
    pub listen: SocketAddr,
    /// PEM certificate chain; without it the gateway's generated self-signed one is used.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// How much of a JSON request body is read to give policy its top-level field names
    /// (`context.body_fields`); a larger body is decided without them.
    #[serde(default = "default_inspect_body_bytes")]
    pub inspect_body_bytes: usize,
    /// Largest request body kept in memory for a request held for approval (its digest
    /// binds the approval, and exactly that body is sent once approved).
    #[serde(default = "default_hold_body_bytes")]
    pub hold_body_bytes: usize,
    /// How long a client has to finish the TLS handshake and send its request headers.
    #[serde(default = "default_handshake_timeout", with = "humantime_serde_compat")]
    pub handshake_timeout: Duration,
    /// How long an idle keep-alive connection stays open.
    #[serde(default = "default_http_idle_timeout", with = "humantime_serde_compat")]
    pub idle_timeout: Duration,
}

/// `auth` of an HTTP target: the credential Airlock injects into every request. Exactly
/// one form: `{ bearer = REF }`, `{ header = "X-Api-Key", value = REF }` or
/// `{ basic_user = "svc", basic_password = REF }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpAuthConfig {
    /// `Authorization: Bearer <secret>`.
    #[serde(default)]
    pub bearer: Option<SecretRef>,
    /// A header of its own (`X-Api-Key`), with `value`.
    #[serde(default)]
    pub header: Option<String>,
    /// The header's value.
    #[serde(default)]
    pub value: Option<SecretRef>,
    /// `Authorization: Basic` user name (not a secret).
    #[serde(default)]
    pub basic_user: Option<String>,
    /// `Authorization: Basic` password.
    #[serde(default)]
    pub basic_password: Option<SecretRef>,
}

/// The credential form of an HTTP target, once validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpAuthForm<'a> {
    /// `Authorization: Bearer`.
    Bearer(&'a SecretRef),
    /// A named header.
    Header(&'a str, &'a SecretRef),
    /// `Authorization: Basic` with a user name.
    Basic(&'a str, &'a SecretRef),
}

impl HttpAuthConfig {
    /// The one form given, or why the table is not one.
    pub fn form(&self) -> Result<HttpAuthForm<'_>, String> {
        match (
            &self.bearer,
            &self.header,
            &self.value,
            &self.basic_user,
            &self.basic_password,
        ) {
            (Some(b), None, None, None, None) => Ok(HttpAuthForm::Bearer(b)),
            (None, Some(h), Some(v), None, None) => Ok(HttpAuthForm::Header(h, v)),
            (None, None, None, Some(u), Some(p)) => Ok(HttpAuthForm::Basic(u, p)),
            _ => Err("auth must be exactly one of { bearer = \"env:NAME\" }, { header = \"X-Api-Key\", value = \"env:NAME\" } or { basic_user = \"svc\", basic_password = \"env:NAME\" }".into()),
        }
    }

    /// The secret reference of whichever form is given.
    pub fn secret(&self) -> Option<&SecretRef> {
        self.bearer
            .as_ref()
            .or(self.value.as_ref())
            .or(self.basic_password.as_ref())
    }

    fn secret_mut(&mut self) -> Option<&mut SecretRef> {
        self.bearer
            .as_mut()
            .or(self.value.as_mut())
            .or(self.basic_password.as_mut())
    }
}

/// `[[targets]]`: something agents reach through Airlock.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// The name agents use (the PostgreSQL `dbname`).
    pub name: toml::Spanned<String>,
    /// The protocol: `postgres` or `http`.
    pub kind: TargetKindConfig,
    /// PostgreSQL: host name or address of the server.
    #[serde(default)]
    pub host: String,
    /// PostgreSQL: port of the server.
    #[serde(default = "default_pg_port")]
    pub port: u16,
    /// PostgreSQL: the database on the server.
    #[serde(default)]
    pub database: String,
    /// PostgreSQL: the role Airlock logs in as.
    #[serde(default)]
    pub user: String,
    /// PostgreSQL: where the role's password comes from.
    #[serde(default)]
    pub password: Option<toml::Spanned<SecretRef>>,
    /// HTTP: the upstream's base URL (`http://` or `https://`); `/<target>/<path>` is
    /// forwarded to `<url>/<path>`.
    #[serde(default)]
    pub url: Option<String>,
    /// HTTP: the credential Airlock injects.
    #[serde(default)]
    pub auth: Option<HttpAuthConfig>,
    /// HTTP: record the first bytes of every response (masked, as the agent received
    /// them) in its event; 0 records none.
    #[serde(default)]
    pub capture_bytes: usize,
    /// Kubernetes: the bearer token Airlock presents to the API server.
    #[serde(default)]
    pub token: Option<SecretRef>,
    /// Kubernetes: a client certificate (PEM) instead of a token, with `client_key`.
    #[serde(default)]
    pub client_cert: Option<SecretRef>,
    /// Kubernetes: the client certificate's private key (PEM).
    #[serde(default)]
    pub client_key: Option<SecretRef>,
    /// Kubernetes: skip verifying the API server's certificate (only by explicit choice;
    /// `ca_file` is the way).
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// Kubernetes: add `Impersonate-User`/`Impersonate-Group` with the agent's identity,
    /// so that the API server's RBAC and audit see the agent.
    #[serde(default)]
    pub impersonate: bool,
    /// TLS to the server, with libpq's meanings.
    #[serde(default)]
    pub sslmode: SslMode,
    /// CA bundle (PEM) that verifies the server for `sslmode = "verify-full"`.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// How long connecting and authenticating to the server may take.
    #[serde(default = "default_connect_timeout", with = "humantime_serde_compat")]
    pub connect_timeout: Duration,
    /// Reuse authenticated server connections between sessions (reset with
    /// `DISCARD ALL` before reuse); `false` opens one per session.
    #[serde(default = "default_true")]
    pub pool: bool,
    /// Idle server connections kept for reuse, at most.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// How long an idle server connection is kept for reuse.
    #[serde(default = "default_pool_idle_timeout", with = "humantime_serde_compat")]
    pub pool_idle_timeout: Duration,
    /// Apply the built-in default masking rule (common detectors and sensitive column
    /// names) to every session on this target.
    #[serde(default = "default_true")]
    pub default_masking: bool,
    /// Record the first rows of every result (as the agent received them, masked) in
    /// its result event; 0 records none.
    #[serde(default)]
    pub capture_rows: usize,
    /// How long a statement held for approval keeps its client waiting before it is
    /// answered "still pending" (the request itself stays open until it expires).
    #[serde(default = "default_hold_timeout", with = "humantime_serde_compat")]
    pub hold_timeout: Duration,
    /// MCP: an upstream MCP server spoken to over stdio, spawned per session:
    /// the program and its arguments (instead of `url`).
    #[serde(default)]
    pub command: Vec<String>,
    /// MCP: the environment of a `command` upstream (nothing of Airlock's own
    /// environment is passed on); values that are secret references are resolved.
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, EnvValue>,
    /// MCP: a tool whose description or schema changes after it was first seen is
    /// denied (in every session) until an operator accepts the change.
    #[serde(default)]
    pub pin_tools: bool,
}

/// A value of an MCP `command` upstream's environment: a secret reference
/// (`env:`, `file:`, `secret:`), resolved when the process starts, or a plain value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvValue {
    /// A secret, by reference.
    Secret(SecretRef),
    /// A value that is not secret, as written.
    Plain(String),
}

impl<'de> Deserialize<'de> for EnvValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if ["env:", "file:", "secret:"]
            .iter()
            .any(|p| text.starts_with(p))
        {
            SecretRef::parse(&text)
                .map(EnvValue::Secret)
                .map_err(serde::de::Error::custom)
        } else {
            Ok(EnvValue::Plain(text))
        }
    }
}

impl Config {
    /// Names the settings that differ from `other` and take effect only on restart
    /// (listeners, TLS files, the data directory, logging, the audit key).
    pub fn restart_only_changes(&self, other: &Config) -> Vec<&'static str> {
        let mut changed = Vec::new();
        if self.server.data_dir != other.server.data_dir {
            changed.push("server.data_dir");
        }
        if self.server.log_format != other.server.log_format {
            changed.push("server.log_format");
        }
        if self.server.watch != other.server.watch {
            changed.push("server.watch");
        }
        if self.postgres != other.postgres {
            changed.push("[postgres]");
        }
        if self.http != other.http {
            changed.push("[http]");
        }
        if self.audit != other.audit {
            changed.push("[audit]");
        }
        if self.api != other.api {
            changed.push("[api]");
        }
        if self.telemetry != other.telemetry {
            changed.push("[telemetry]");
        }
        changed
    }
}

impl TargetConfig {
    /// The target's name.
    pub fn name(&self) -> &str {
        self.name.get_ref()
    }

    /// Where the credential Airlock uses comes from: the PostgreSQL password or the
    /// HTTP `auth` secret (validated to be present for the target's kind).
    pub fn credential(&self) -> Option<&SecretRef> {
        match self.kind {
            TargetKindConfig::Postgres => self.password.as_ref().map(|p| p.get_ref()),
            TargetKindConfig::Http => self.auth.as_ref().and_then(HttpAuthConfig::secret),
            TargetKindConfig::Kubernetes => self.token.as_ref().or(self.client_key.as_ref()),
            TargetKindConfig::Mcp => self.auth.as_ref().and_then(HttpAuthConfig::secret),
        }
    }

    /// Every secret reference of the target (its credential, and a client
    /// certificate's), to check and watch.
    pub fn secret_refs(&self) -> Vec<&SecretRef> {
        let mut refs: Vec<&SecretRef> = Vec::new();
        if let Some(p) = &self.password {
            refs.push(p.get_ref());
        }
        if let Some(s) = self.auth.as_ref().and_then(HttpAuthConfig::secret) {
            refs.push(s);
        }
        refs.extend(
            [&self.token, &self.client_cert, &self.client_key]
                .into_iter()
                .filter_map(Option::as_ref),
        );
        refs.extend(self.env.values().filter_map(|v| match v {
            EnvValue::Secret(s) => Some(s),
            EnvValue::Plain(_) => None,
        }));
        refs
    }

    /// Every secret reference of the target, mutably (to resolve relative paths).
    pub fn secret_refs_mut(&mut self) -> Vec<&mut SecretRef> {
        let mut refs: Vec<&mut SecretRef> = Vec::new();
        if let Some(p) = self.password.as_mut() {
            refs.push(p.get_mut());
        }
        if let Some(a) = self.auth.as_mut()
            && let Some(s) = a.secret_mut()
        {
            refs.push(s);
        }
        refs.extend(
            [&mut self.token, &mut self.client_cert, &mut self.client_key]
                .into_iter()
                .filter_map(Option::as_mut),
        );
        refs.extend(self.env.values_mut().filter_map(|v| match v {
            EnvValue::Secret(s) => Some(s),
            EnvValue::Plain(_) => None,
        }));
        refs
    }
}

/// The `kind` of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKindConfig {
    /// PostgreSQL.
    Postgres,
    /// An HTTP API.
    Http,
    /// A Kubernetes API server.
    Kubernetes,
    /// An MCP server (streamable HTTP or SSE at `url`, or stdio with `command`).
    Mcp,
}

impl TargetKindConfig {
    /// The listener section this kind needs.
    pub fn listener_section(self) -> &'static str {
        match self {
            TargetKindConfig::Postgres => "[postgres]",
            TargetKindConfig::Http | TargetKindConfig::Kubernetes | TargetKindConfig::Mcp => {
                "[http]"
            }
        }
    }
}

/// TLS to a target, as libpq's `sslmode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it, unverified.
    #[default]
    Prefer,
    /// TLS always, certificate not verified.
    Require,
    /// TLS always, certificate chain and host name verified against `ca_file`.
    VerifyFull,
}

/// `[audit]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Key for the event chain's HMAC; generated into `data_dir/audit.key` when absent.
    #[serde(default)]
    pub key: Option<SecretRef>,
    /// How durable the record of a plain read must be before its answer reaches the
    /// agent. Anything that may change something always waits for `synced`.
    #[serde(default)]
    pub read_durability: ReadDurability,
    /// With `read_durability = "written"`: records written but not yet synced are
    /// synced within this long.
    #[serde(default = "default_sync_interval", with = "humantime_serde_compat")]
    pub sync_interval: Duration,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            key: None,
            read_durability: ReadDurability::default(),
            sync_interval: default_sync_interval(),
        }
    }
}

/// `[audit] read_durability`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadDurability {
    /// The record is in the journal file (it survives the gateway process dying) before
    /// the answer is released, and on disk within `sync_interval`.
    #[default]
    Written,
    /// The record is synced to disk (`fdatasync`) before the answer is released.
    Synced,
}

fn default_sync_interval() -> Duration {
    Duration::from_millis(10)
}

fn default_pg_port() -> u16 {
    5432
}

fn default_true() -> bool {
    true
}

fn default_pool_size() -> usize {
    16
}

fn default_pool_idle_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_principal_claim() -> String {
    "sub".into()
}

fn default_groups_claim() -> String {
    "groups".into()
}

fn default_algorithms() -> Vec<String> {
    vec!["RS256".into()]
}

fn default_leeway() -> Duration {
    Duration::from_secs(30)
}

fn default_hold_timeout() -> Duration {
    Duration::from_secs(120)
}

fn default_expire_after() -> Duration {
    Duration::from_secs(3600)
}

fn default_webhook_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_inspect_body_bytes() -> usize {
    64 * 1024
}

fn default_hold_body_bytes() -> usize {
    1024 * 1024
}

fn default_http_idle_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_handshake_timeout() -> Duration {
    Duration::from_secs(15)
}

/// Durations written as `"10s"`, `"2m"`, `"1h 30m"`.
pub(crate) mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!("`{text}` is not a duration like \"10s\": {e}"))
        })
    }
}
