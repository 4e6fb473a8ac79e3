//! A configuration snapshot with its secrets resolved. Built at start and on every
//! reload; a session keeps the `Target` it connected with, so a reload never disturbs it.

use std::collections::BTreeMap;
use std::sync::Arc;

use airlock_config::MaskStyleConfig;
use airlock_config::{Config, TargetConfig, TargetKindConfig};
use airlock_engine::masking::redact::{HashKey, Style};
use airlock_engine::masking::rules::{MaskingError, MaskingRules, RuleSpec, default_rule};
use airlock_engine::policy::{PolicyEngine, PolicyError};
use airlock_model::{TargetKind, TargetRef};
use airlock_vault::{Secret, VaultError};

/// A target with its credential.
#[derive(Debug)]
pub struct Target {
    /// Its identity for policy and records.
    pub model: TargetRef,
    /// Its configuration.
    pub config: TargetConfig,
    /// The credential Airlock logs in with (the PostgreSQL password; an HTTP target's
    /// bearer token, header value or basic password; a Kubernetes token or client key).
    /// Never leaves the gateway.
    pub credential: Secret,
    /// A Kubernetes target's client certificate (PEM), when it authenticates with one.
    pub client_cert: Option<Secret>,
}

/// Why a snapshot could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The policies could not be loaded.
    #[error("[policy] {0}")]
    Policy(PolicyError),
    /// A masking rule is invalid (unknown detector, bad regex, unreadable key).
    #[error("[[masking]] {0}")]
    Masking(String),
    /// A webhook's URL or key could not be resolved.
    #[error("[[approvals.webhooks]] {0}")]
    Webhook(String),
    /// An OIDC provider's settings are unusable.
    #[error("[[identity.oidc]] {0}")]
    Oidc(String),
    /// A target's secret could not be resolved.
    #[error("target `{target}`: {error}")]
    Secret {
        /// The target.
        target: String,
        /// Why (shown in the message, not chained, so it prints once).
        error: VaultError,
    },
}

impl From<PolicyError> for RuntimeError {
    fn from(e: PolicyError) -> Self {
        RuntimeError::Policy(e)
    }
}

/// One consistent view of the configuration.
#[derive(Debug)]
pub struct Runtime {
    /// The configuration it was built from.
    pub config: Arc<Config>,
    targets: BTreeMap<String, Arc<Target>>,
    /// The policies in force; `None` when no `[policy]` is configured (all denied).
    pub policy: Option<Arc<PolicyEngine>>,
    /// The masking rules, the built-in default rule included.
    pub masking: Arc<MaskingRules>,
    /// How long approval requests stay open, and where they are announced.
    pub approvals: Arc<airlock_approvals::Settings>,
    /// The OIDC providers whose tokens are accepted.
    pub oidc: Vec<airlock_identity::oidc::OidcSettings>,
}

impl Runtime {
    /// Resolves every target's secret. Fails if any cannot be resolved, so a broken
    /// reload leaves the previous snapshot in force.
    pub fn build(config: Config) -> Result<Runtime, RuntimeError> {
        let policy = match &config.policy {
            Some(p) => Some(Arc::new(PolicyEngine::load(&p.path)?)),
            None => None,
        };
        let mut targets = BTreeMap::new();
        for t in &config.targets {
            // An HTTP target without `auth` sends no credential of its own.
            let credential = match t.credential() {
                Some(reference) => {
                    airlock_vault::resolve(reference).map_err(|source| RuntimeError::Secret {
                        target: t.name().to_owned(),
                        error: source,
                    })?
                }
                None => Secret::new(String::new()),
            };
            let client_cert = t
                .client_cert
                .as_ref()
                .map(airlock_vault::resolve)
                .transpose()
                .map_err(|source| RuntimeError::Secret {
                    target: t.name().to_owned(),
                    error: source,
                })?;
            let kind = match t.kind {
                TargetKindConfig::Postgres => TargetKind::Postgres,
                TargetKindConfig::Http => TargetKind::Http,
                TargetKindConfig::Kubernetes => TargetKind::Kubernetes,
                TargetKindConfig::Mcp => TargetKind::Mcp,
            };
            targets.insert(
                t.name().to_owned(),
                Arc::new(Target {
                    model: TargetRef {
                        name: t.name().to_owned(),
                        kind,
                    },
                    config: t.clone(),
                    credential,
                    client_cert,
                }),
            );
        }
        let masking = Arc::new(masking_rules(&config)?);
        let public_url = config.approvals.public_url.clone().or_else(|| {
            config.api.as_ref().map(|api| {
                let scheme = if api.tls { "https" } else { "http" };
                format!("{scheme}://{}", api.listen)
            })
        });
        let notifier =
            airlock_approvals::notify::Notifier::from_config(&config.approvals, public_url)
                .map_err(|e| RuntimeError::Webhook(e.to_string()))?;
        let approvals = Arc::new(airlock_approvals::Settings {
            expire_after: config.approvals.expire_after,
            notifier: Arc::new(notifier),
        });
        let oidc = config
            .identity
            .oidc
            .iter()
            .map(airlock_identity::oidc::OidcSettings::from_config)
            .collect::<Result<Vec<_>, _>>()
            .map_err(RuntimeError::Oidc)?;
        Ok(Runtime {
            config: Arc::new(config),
            targets,
            policy,
            masking,
            approvals,
            oidc,
        })
    }

    /// Every target, by name.
    pub fn targets(&self) -> impl Iterator<Item = &Arc<Target>> {
        self.targets.values()
    }

    /// The named target, or `None`.
    pub fn target(&self, name: &str) -> Option<Arc<Target>> {
        self.targets.get(name).cloned()
    }

    /// Names of the targets of `kind`, sorted.
    pub fn target_names(&self, kind: TargetKind) -> Vec<String> {
        self.targets
            .values()
            .filter(|t| t.model.kind == kind)
            .map(|t| t.model.name.clone())
            .collect()
    }
}

/// The file in `data_dir` holding the key of `style = "hash"` rules without `hash_key`.
pub const MASKING_KEY_FILE: &str = "masking.key";

/// Compiles the configured masking rules and the built-in default rule (for the targets
/// that keep `default_masking`).
fn masking_rules(config: &Config) -> Result<MaskingRules, RuntimeError> {
    let masking_error = |m: String| RuntimeError::Masking(m);
    let mut generated: Option<Arc<HashKey>> = None;
    let mut default_key = || -> Result<Arc<HashKey>, RuntimeError> {
        if let Some(k) = &generated {
            return Ok(k.clone());
        }
        let key = Arc::new(load_or_create_key(&config.server.data_dir).map_err(masking_error)?);
        generated = Some(key.clone());
        Ok(key)
    };
    let mut specs = Vec::new();
    let defaults: Vec<String> = config
        .targets
        .iter()
        .filter(|t| t.default_masking)
        .map(|t| t.name().to_owned())
        .collect();
    if !defaults.is_empty() {
        // The default rule redacts: its key is never used, so no key file is needed.
        specs.push(default_rule(defaults, Arc::new(HashKey::new(Vec::new()))));
    }
    for rule in &config.masking {
        let style = match rule.style {
            MaskStyleConfig::Redact => Style::Redact,
            MaskStyleConfig::Partial => Style::Partial,
            MaskStyleConfig::Hash => Style::Hash,
        };
        let key = match (&rule.hash_key, style) {
            (Some(reference), _) => {
                let secret = airlock_vault::resolve(reference)
                    .map_err(|e| masking_error(format!("rule `{}`: hash_key: {e}", rule.name())))?;
                Arc::new(HashKey::new(secret.expose().as_bytes().to_vec()))
            }
            (None, Style::Hash) => default_key()?,
            (None, _) => Arc::new(HashKey::new(Vec::new())),
        };
        specs.push(RuleSpec {
            name: rule.name().to_owned(),
            targets: rule.targets.clone(),
            principals: rule.principals.clone(),
            groups: rule.groups.clone(),
            columns: rule.columns.clone(),
            detectors: rule.detectors.clone(),
            regexes: rule.regexes.clone(),
            style,
            enforce: rule.enforce,
            key,
            withhold_unmaskable: rule.unmaskable == airlock_config::UnmaskableConfig::Withhold,
        });
    }
    MaskingRules::compile(specs).map_err(|e: MaskingError| masking_error(e.to_string()))
}

/// Reads `data_dir/masking.key` (64 hex characters), creating it (mode 0600) if absent.
fn load_or_create_key(data_dir: &std::path::Path) -> Result<HashKey, String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = data_dir.join(MASKING_KEY_FILE);
    if !path.exists() {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| format!("cannot create {}: {e}", data_dir.display()))?;
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut f| {
                f.write_all(hex::encode(rand::random::<[u8; 32]>()).as_bytes())?;
                f.sync_all()
            });
        match created {
            Ok(()) => {}
            // Another process created it first: read theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("cannot write {}: {e}", path.display())),
        }
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let bytes = hex::decode(text.trim())
        .map_err(|_| format!("{} does not hold a hex key", path.display()))?;
    if bytes.len() < 16 {
        return Err(format!(
            "{} holds a key shorter than 16 bytes",
            path.display()
        ));
    }
    Ok(HashKey::new(bytes))
}
