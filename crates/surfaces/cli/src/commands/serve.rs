//! `airlock serve`: wire the services together, run the listeners, reload on SIGHUP, and
//! shut down cleanly on SIGTERM/SIGINT (open sessions are told and recorded as ended).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use airlock_approvals::Approvals;
use airlock_config::{Config, LogFormat};
use airlock_http::HttpAdapter;
use airlock_identity::Identity;
use airlock_model::Timestamp;
use airlock_postgres::PostgresAdapter;
use airlock_recorder::{ReadDurability, Recorder};
use airlock_session::{Gateway, GatewayAudit, Runtime};
use airlock_store::{Migrations, Store};
use airlock_vault::Secret;
use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

use crate::context::{
    audit_key, ensure_data_dir, load_config, load_stored_secrets, open_store_with,
};
use crate::telemetry::Telemetry;

/// How often approval requests whose time is up are marked expired.
const APPROVAL_SWEEP: Duration = Duration::from_secs(5);
/// How often revoked tokens are re-read from the store (the fallback: a PostgreSQL
/// store announces a revocation, and it is read at once).
const REVOCATION_POLL: Duration = Duration::from_secs(1);
/// How long `/readyz` waits for the store: a store that is down would otherwise hold
/// the probe for the pool's whole acquire timeout.
const READY_STORE_WAIT: Duration = Duration::from_secs(2);

/// What `/readyz` checks: the store answers, the recorder records (neither its journal
/// nor the store failing), and a policy is loaded (without one everything is denied).
fn readiness(
    store: Arc<dyn airlock_store::Store>,
    recorder: airlock_recorder::RecorderHealth,
    gateway: std::sync::Weak<Gateway>,
) -> airlock_api::Readiness {
    // Weak: the API's state must not keep the gateway (and through it the recorder)
    // alive at shutdown, or the recorder could not drain and stop.
    Arc::new(move || {
        let (store, recorder, gateway) = (store.clone(), recorder.clone(), gateway.clone());
        Box::pin(async move {
            recorder
                .check()
                .map_err(|cause| format!("the recorder refuses work: {cause}"))?;
            match tokio::time::timeout(
                READY_STORE_WAIT,
                store.setting(airlock_recorder::AUDIT_KEY_CHECK),
            )
            .await
            {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(format!("the store is unreachable: {e}")),
                Err(_) => {
                    return Err(format!(
                        "the store is unreachable: no answer within {}s",
                        READY_STORE_WAIT.as_secs()
                    ));
                }
            }
            let policy = gateway.upgrade().map(|g| g.runtime().policy.is_some());
            match policy {
                Some(true) => Ok(()),
                Some(false) => Err(
                    "no policy is loaded (no [policy] section): every statement is denied".into(),
                ),
                None => Err("the gateway is shutting down".into()),
            }
        })
    })
}

/// The web console's state: who reviews (configured, else the policies' approver
/// groups, read at each request so that a reload changes it) and OIDC sign-in.
fn console(
    config: &Config,
    store: Arc<dyn airlock_store::Store>,
    gateway: std::sync::Weak<Gateway>,
) -> anyhow::Result<airlock_api::console::Console> {
    use airlock_api::console::{Console, ConsoleOptions, OidcLogin, ReviewerGroups};
    let c = &config.console;
    let reviewer_groups: ReviewerGroups = match &c.reviewer_groups {
        Some(groups) => {
            let groups = groups.clone();
            Arc::new(move || groups.clone())
        }
        // Weak, like the readiness check: the console must not keep the gateway alive.
        None => Arc::new(move || {
            gateway
                .upgrade()
                .and_then(|g| g.runtime().policy.as_ref().map(|p| p.approver_groups()))
                .unwrap_or_default()
        }),
    };
    let oidc = match (&c.oidc_provider, &c.client_id, &c.redirect_url) {
        (Some(name), Some(client_id), Some(redirect_url)) => {
            let provider = config
                .identity
                .oidc
                .iter()
                .find(|p| p.name() == name)
                .context("[console] oidc_provider names no [[identity.oidc]] entry")?;
            let mut settings = airlock_identity::oidc::OidcSettings::from_config(provider)
                .map_err(|e| anyhow::anyhow!("[console] oidc_provider: {e}"))?;
            if let Some(claim) = &c.principal_claim {
                settings.principal_claim = claim.clone();
            }
            if let Some(claim) = &c.groups_claim {
                settings.groups_claim = claim.clone();
            }
            let secret = c
                .client_secret
                .as_ref()
                .map(airlock_vault::resolve)
                .transpose()
                .context("[console] client_secret")?;
            Some(OidcLogin::new(
                &settings,
                client_id.clone(),
                secret,
                redirect_url.clone(),
                c.scopes.clone(),
            ))
        }
        _ => None,
    };
    Ok(Console::new(ConsoleOptions {
        store,
        audit_key: audit_key(config, false)?,
        reviewer_groups,
        session_ttl: c.session_ttl,
        oidc,
    }))
}

pub async fn run(path: &Path, migrate: bool) -> anyhow::Result<ExitCode> {
    let config = load_config(path)?;
    let telemetry = init_tracing(config.server.log_format, config.telemetry.as_ref())?;
    ensure_data_dir(&config)?;
    let _lock = lock_data_dir(&config)?;
    let mode = if migrate {
        Migrations::Apply
    } else {
        Migrations::OnlyNew
    };
    let (store, schema) = open_store_with(&config, mode).await?;
    if schema.applied > 0 && schema.before.is_some() {
        tracing::info!(
            from = schema.before,
            to = schema.now,
            "migrated the store's schema (--migrate)"
        );
    }
    let (chain, _writer) = claim_chain(&config, &*store).await?;
    let key = audit_key(&config, true)?.context("no audit key")?;
    check_audit_key(&*store, &key).await?;
    // First the journal of an unclean stop is replayed, then what it left open is closed.
    let reads = match config.audit.read_durability {
        airlock_config::ReadDurability::Written => {
            tracing::info!(
                read_durability = "written",
                sync_interval = %humantime::format_duration(config.audit.sync_interval),
                "recording: reads are answered once their record is written, and synced within the interval; everything else waits for the sync"
            );
            ReadDurability::Written {
                sync_within: config.audit.sync_interval,
            }
        }
        airlock_config::ReadDurability::Synced => {
            tracing::info!(
                read_durability = "synced",
                "recording: every record is synced before its statement runs or is answered"
            );
            ReadDurability::Synced
        }
    };
    let (recorder, writer) = Recorder::start(
        store.clone(),
        key,
        &config.server.data_dir.join("journal"),
        chain,
        reads,
    )
    .await?;
    let dangling = store
        .close_dangling_sessions(chain, Timestamp::now())
        .await?;
    if dangling > 0 {
        tracing::warn!(
            sessions = dangling,
            "closed sessions left open by an unclean stop"
        );
    }
    load_stored_secrets(&config, &*store).await?;
    // The collector's headers may be stored secrets: resolved now, before any session.
    if let (Some(t), Some(c)) = (&telemetry, &config.telemetry) {
        t.set_headers(c)?;
        tracing::info!(endpoint = %c.traces_url(), sample_ratio = c.sample_ratio, "telemetry: exporting spans over OTLP/HTTP");
    }
    let runtime = Runtime::build(config.clone()).context("cannot load the configuration")?;
    // Decisions taken through the API and expiries go to the gateway's audit session.
    let audit = Arc::new(GatewayAudit::new(recorder.clone()));
    let approvals = Approvals::new(store.clone()).with_audit(audit.clone());
    let identity = Identity::new(store.clone());
    let recorder_health = recorder.health_probe();
    let gateway = Arc::new(Gateway::new(
        runtime,
        identity.clone(),
        recorder,
        approvals.clone(),
    ));
    let sweeper = approvals.spawn_sweeper(APPROVAL_SWEEP);
    // Revocations by the CLI (or another replica) reach open sessions at their next
    // statement.
    let revocations = identity.spawn_revocation_watch(REVOCATION_POLL);
    {
        let identity = identity.clone();
        tokio::spawn(async move { identity.prefetch_keys().await });
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut listeners = Vec::new();
    let mut sql: Option<airlock_http::SqlConnector> = None;
    if let Some(pg) = &config.postgres {
        let adapter = PostgresAdapter::bind(pg, &config.server.data_dir, gateway.clone())
            .await
            .with_context(|| format!("cannot start the PostgreSQL listener on {}", pg.listen))?;
        tracing::info!(listen = %adapter.local_addr()?, targets = config.targets.len(), "PostgreSQL listener ready");
        // Airlock's own MCP server (on [http]) reaches PostgreSQL targets through this
        // listener. Only made when it is served: the connector keeps the gateway alive.
        if config.http.is_some() {
            let connector = adapter.local_connector(stop_rx.clone());
            sql = Some(Arc::new(move |peer| connector.connect(peer)));
        }
        listeners.push(tokio::spawn(adapter.run(stop_rx.clone())));
    }

    if let Some(http) = &config.http {
        let adapter = HttpAdapter::bind(http, &config.server.data_dir, gateway.clone())
            .await
            .with_context(|| format!("cannot start the HTTP listener on {}", http.listen))?
            .with_tool_store(store.clone());
        let adapter = match sql.take() {
            Some(connector) => adapter.with_sql(connector),
            None => adapter,
        };
        tracing::info!(listen = %adapter.local_addr(), "HTTP listener ready");
        listeners.push(tokio::spawn(adapter.run(stop_rx.clone())));
    }

    if let Some(api) = &config.api {
        let state = airlock_api::ApiState {
            approvals: approvals.clone(),
            identity: identity.clone(),
            console: console(&config, store.clone(), Arc::downgrade(&gateway))?,
            readiness: Some(readiness(
                store.clone(),
                recorder_health.clone(),
                Arc::downgrade(&gateway),
            )),
        };
        let server = airlock_api::ApiServer::bind(api, &config.server.data_dir, state)
            .await
            .with_context(|| format!("cannot start the admin API on {}", api.listen))?;
        tracing::info!(listen = %server.local_addr(), tls = server.is_tls(), "admin API ready");
        listeners.push(tokio::spawn(server.run(stop_rx.clone())));
    }

    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    // With `[server] watch`, a changed file reloads like SIGHUP (see `watch.rs`).
    let mut tick = tokio::time::interval(super::watch::WATCH_EVERY);
    let mut seen = super::watch::fingerprint(path, &gateway.runtime().config);
    loop {
        tokio::select! {
            _ = hup.recv() => {
                reload(path, &config, &gateway, &*store, telemetry.as_ref()).await;
                seen = super::watch::fingerprint(path, &gateway.runtime().config);
            }
            _ = tick.tick(), if config.server.watch => {
                let now = super::watch::fingerprint(path, &gateway.runtime().config);
                if now != seen {
                    // Let a writer finish (an editor's save, a mount's swap) first.
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    tracing::info!("a watched file changed; reloading");
                    reload(path, &config, &gateway, &*store, telemetry.as_ref()).await;
                    seen = super::watch::fingerprint(path, &gateway.runtime().config);
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    for l in listeners {
        let _ = l.await;
    }
    sweeper.abort();
    revocations.abort();
    // An aborted task drops what it holds (the sweeper holds the approvals, and through
    // them the audit session's recorder handle) only once it has been cancelled.
    let _ = sweeper.await;
    let _ = revocations.await;
    audit.end().await;
    drop(audit);
    drop(approvals);
    drop(gateway);
    // Every recorder handle is gone once the sessions and the audit session are; the
    // writer drains, syncs and ends. (A handle kept alive here used to make every stop
    // wait the whole 10 s below and end without the final sync.)
    if tokio::time::timeout(Duration::from_secs(10), writer)
        .await
        .is_err()
    {
        tracing::warn!("the recorder did not finish writing within 10 s");
    } else {
        tracing::info!("stopped; every record is in the journal and synced");
    }
    // Every session's span has ended: what is still queued goes to the collector.
    if let Some(t) = telemetry {
        t.shutdown().await;
    }
    Ok(ExitCode::SUCCESS)
}

/// Re-reads the file and the secrets; new sessions use them, open ones are untouched.
/// A broken file or secret leaves the running configuration in force.
async fn reload(
    path: &Path,
    running: &Config,
    gateway: &Gateway,
    store: &dyn airlock_store::Store,
    telemetry: Option<&Telemetry>,
) {
    let config = match airlock_config::load_file(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "reload failed; keeping the running configuration");
            return;
        }
    };
    // Stored secrets are opened again: `airlock secret set` then SIGHUP rotates one.
    if let Err(e) = load_stored_secrets(&config, store).await {
        tracing::error!(error = %format!("{e:#}"), "reload failed; keeping the running configuration");
        return;
    }
    let ignored = config.restart_only_changes(running);
    if !ignored.is_empty() {
        tracing::warn!(settings = %ignored.join(", "), "these settings change only on restart; the running values stay");
    }
    // The collector's headers are re-read (a rotated key) when the section is unchanged;
    // a changed section takes effect on restart (named above).
    let headers = match (telemetry, &config.telemetry) {
        (Some(t), Some(c)) if config.telemetry == running.telemetry => Some((t, c.clone())),
        _ => None,
    };
    match Runtime::build(config) {
        Ok(runtime) => {
            gateway.reload(runtime);
            if let Some((t, c)) = headers
                && let Err(e) = t.set_headers(&c)
            {
                tracing::error!(error = %e, "telemetry: keeping the collector headers in force");
            }
            tracing::info!("configuration and secrets reloaded");
        }
        Err(e) => tracing::error!(error = %e, "reload failed; keeping the running configuration"),
    }
}

/// Logs to stderr (filtered by `AIRLOCK_LOG`) and, with `[telemetry]`, exports the
/// adapters' spans (see `crate::telemetry`; its own filter, whatever `AIRLOCK_LOG` says).
fn init_tracing(
    format: LogFormat,
    telemetry: Option<&airlock_config::TelemetryConfig>,
) -> anyhow::Result<Option<Telemetry>> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let (telemetry, spans) = match telemetry {
        Some(config) => {
            let (t, layer) = Telemetry::start(config)?;
            (Some(t), Some(layer))
        }
        None => (None, None),
    };
    let registry = tracing_subscriber::registry().with(spans);
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Json => registry.with(logs.json().with_filter(log_filter())).init(),
        LogFormat::Text => registry.with(logs.with_filter(log_filter())).init(),
    }
    Ok(telemetry)
}

/// Caps on libraries' logs, whatever `AIRLOCK_LOG` asks. The HTTP and TLS libraries'
/// debug and trace events carry header values (an agent's token, a target's credential,
/// a collector's key) and payloads: they log at info at most, so that logs at any level
/// hold no secret. The OTLP exporter warns on every failed export (and its debug events
/// carry collector answers): Airlock warns about failing exports itself, now and then.
const LOG_CAPS: &[&str] = &[
    "h2=info",
    "hyper=info",
    "hyper_util=info",
    "rustls=info",
    "tokio_rustls=info",
    "hyper_rustls=info",
    "opentelemetry=info",
    "opentelemetry_sdk=info",
    "opentelemetry-http=info",
    "opentelemetry-otlp=error",
];

/// What is logged: `AIRLOCK_LOG` (default `info`), with [`LOG_CAPS`].
fn log_filter() -> tracing_subscriber::EnvFilter {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AIRLOCK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    LOG_CAPS
        .iter()
        .filter_map(|directive| directive.parse().ok())
        .fold(filter, tracing_subscriber::EnvFilter::add_directive)
}

/// The chain this gateway records into (see `airlock_store::chains`), claimed: the one
/// named in `data_dir/recorder.chain`; or a new one from a shared store, written there
/// once claimed so that a restart continues it; or chain 0 for a store with a single
/// writer. A chain named in the file that another gateway holds is refused (a copied
/// `data_dir`); a new one that another gateway took first (a recreated store whose
/// sequence starts again) is passed over for the next.
async fn claim_chain(
    config: &Config,
    store: &dyn Store,
) -> anyhow::Result<(i64, airlock_store::WriterClaim)> {
    let path = config.server.data_dir.join("recorder.chain");
    let claim = |chain| async move {
        store
            .claim_writer(chain)
            .await
            .context("cannot record into the store")
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let chain = text.trim().parse().with_context(|| {
                format!(
                    "{} does not hold a chain number; restore it, or delete it to start a new chain",
                    path.display()
                )
            })?;
            Ok((chain, claim(chain).await?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            for _ in 0..NEW_CHAIN_TRIES {
                let Some(chain) = store
                    .new_chain()
                    .await
                    .context("cannot take a new chain in the store")?
                else {
                    return Ok((0, claim(0).await?));
                };
                match store.claim_writer(chain).await {
                    Ok(held) => {
                        std::fs::write(&path, format!("{chain}\n"))
                            .with_context(|| format!("cannot write {}", path.display()))?;
                        tracing::info!(chain, "recording into a new chain of the shared store");
                        return Ok((chain, held));
                    }
                    Err(airlock_store::StoreError::Busy { .. }) => continue,
                    Err(e) => return Err(e).context("cannot record into the store"),
                }
            }
            anyhow::bail!(
                "every new chain the store handed out was held by another gateway ({NEW_CHAIN_TRIES} tries)"
            )
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// New chains tried before giving up (each taken by another gateway first).
const NEW_CHAIN_TRIES: usize = 16;

/// Refuses to start when the audit key differs from the one the store's chains were
/// recorded with (every replica must have the same `[audit] key`): its events would
/// not verify. The store keeps a keyed hash of a fixed text, set by the first gateway.
async fn check_audit_key(store: &dyn Store, key: &Secret) -> anyhow::Result<()> {
    let check = airlock_recorder::audit_key_check(key.expose().as_bytes());
    let stored = store
        .init_setting(airlock_recorder::AUDIT_KEY_CHECK, &check)
        .await
        .context("cannot read the store's audit key check")?;
    if stored != check {
        anyhow::bail!(
            "the audit key differs from the one this store's audit chain was recorded with: every gateway on a store needs the same [audit] key (the key file or secret of the other replicas)"
        );
    }
    Ok(())
}

/// One gateway per data directory: a second `serve` would fork the event chain.
fn lock_data_dir(config: &Config) -> anyhow::Result<std::fs::File> {
    let path = config.server.data_dir.join("airlock.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    file.try_lock().map_err(|_| {
        anyhow::anyhow!(
            "another `airlock serve` is running on {} (lock {} is held)",
            config.server.data_dir.display(),
            path.display()
        )
    })?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_log_cap_is_a_directive() {
        for cap in LOG_CAPS {
            assert!(
                cap.parse::<tracing_subscriber::filter::Directive>().is_ok(),
                "{cap}"
            );
        }
    }
}
