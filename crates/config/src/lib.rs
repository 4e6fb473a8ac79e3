//! Airlock's configuration file: plain serde types, loading, and validation.
//!
//! Every section rejects unknown keys, so a misspelt option is an error rather than a
//! silently ignored line. Errors carry the file and line so `airlock check` can point at
//! them. Relative paths (data directory, certificate files, `file:` secret references)
//! are resolved against the directory that holds the configuration file.

mod error;
mod load;
mod secret_ref;
mod telemetry;
mod types;
mod webhook;

pub use error::ConfigError;
pub use load::{load_file, parse_str};
pub use secret_ref::{SecretRef, valid_stored_name};
pub use telemetry::TelemetryConfig;
pub use types::{
    ApiConfig, ApprovalsConfig, AuditConfig, Config, ConsoleConfig, EnvValue, HttpAuthConfig,
    HttpAuthForm, HttpListenerConfig, IdentityConfig, LogFormat, MaskStyleConfig,
    MaskingRuleConfig, OIDC_ALGORITHMS, OidcProviderConfig, PolicyConfig, PostgresListenerConfig,
    ReadDurability, SecretsConfig, ServerConfig, SslMode, StoreConfig, TargetConfig,
    TargetKindConfig, UnmaskableConfig, WebhookConfig, WebhookFormat,
};
pub use webhook::{
    WebhookUrl, check_literal as check_issuer_url, check_literal as check_webhook_url, webhook_url,
};
