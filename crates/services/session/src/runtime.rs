//! A configuration snapshot with its secrets resolved. Built at start and on every
//! reload; a session keeps the `Target` it connected with, so a reload never disturbs it.

use std::collections::BTreeMap;
use std::sync::Arc;

use airlock_config::{Config, TargetConfig, TargetKindConfig};
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
    /// The credential Airlock logs in with. Never leaves the gateway.
    pub password: Secret,
}

/// Why a snapshot could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The policies could not be loaded.
    #[error("[policy] {0}")]
    Policy(PolicyError),
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
            let password = airlock_vault::resolve(t.password.get_ref()).map_err(|source| {
                RuntimeError::Secret {
                    target: t.name().to_owned(),
                    error: source,
                }
            })?;
            let kind = match t.kind {
                TargetKindConfig::Postgres => TargetKind::Postgres,
            };
            targets.insert(
                t.name().to_owned(),
                Arc::new(Target {
                    model: TargetRef {
                        name: t.name().to_owned(),
                        kind,
                    },
                    config: t.clone(),
                    password,
                }),
            );
        }
        Ok(Runtime {
            config: Arc::new(config),
            targets,
            policy,
        })
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
