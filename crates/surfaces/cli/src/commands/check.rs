//! `airlock check`: validate a configuration, including that its secrets resolve.

use std::path::Path;
use std::process::ExitCode;

use airlock_session::Runtime;

pub async fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let config = match airlock_config::load_file(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return Ok(ExitCode::from(1));
        }
    };
    let targets = config.targets.len();
    // What `serve` would resolve at start: the audit key and configured TLS files.
    if let Some(reference) = &config.audit.key
        && let Err(e) = airlock_vault::resolve(reference)
    {
        eprintln!("{}: [audit] key: {e}", path.display());
        return Ok(ExitCode::from(1));
    }
    if let Some(pg) = &config.postgres
        && pg.tls_cert.is_some()
        && let Err(e) = airlock_postgres::tls::server_config(pg, &config.server.data_dir)
    {
        eprintln!("{}: [postgres] {e}", path.display());
        return Ok(ExitCode::from(1));
    }
    if let Some(api) = &config.api
        && api.tls
        && api.tls_cert.is_some()
    {
        let paths = airlock_tls::CertPaths::resolve(
            api.tls_cert.as_deref(),
            api.tls_key.as_deref(),
            &config.server.data_dir,
        );
        if let Err(e) = airlock_tls::server_config(&paths, &[]) {
            eprintln!("{}: [api] {e}", path.display());
            return Ok(ExitCode::from(1));
        }
    }
    if let Some(http) = &config.http
        && http.tls_cert.is_some()
    {
        let paths = airlock_tls::CertPaths::resolve(
            http.tls_cert.as_deref(),
            http.tls_key.as_deref(),
            &config.server.data_dir,
        );
        if let Err(e) = airlock_tls::server_config(&paths, &[]) {
            eprintln!("{}: [http] {e}", path.display());
            return Ok(ExitCode::from(1));
        }
    }
    // `secret:` references need the encrypted store and its master key.
    if airlock_vault::stored::config_uses_stored(&config)
        || airlock_vault::stored::MasterKey::configured(&config).is_ok_and(|k| k.is_some())
    {
        let store = crate::context::open_store(&config).await?;
        if let Err(e) = crate::context::load_stored_secrets(&config, &*store).await {
            eprintln!("{}: {e:#}", path.display());
            return Ok(ExitCode::from(1));
        }
    }
    // The collector's headers: their references resolve to values a header can carry
    // (and this build can export at all).
    if let Some(t) = &config.telemetry
        && let Err(e) = crate::telemetry::check(t)
    {
        eprintln!("{}: {e}", path.display());
        return Ok(ExitCode::from(1));
    }
    let runtime = match Runtime::build(config) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return Ok(ExitCode::from(1));
        }
    };
    let served_over_http = runtime
        .target_names(airlock_model::TargetKind::Http)
        .into_iter()
        .chain(runtime.target_names(airlock_model::TargetKind::Kubernetes))
        .chain(runtime.target_names(airlock_model::TargetKind::Mcp));
    for name in served_over_http {
        if let Some(target) = runtime.target(&name)
            && let Err(e) = airlock_http::check_target(&target)
        {
            eprintln!("{}: target `{name}`: {e}", path.display());
            return Ok(ExitCode::from(1));
        }
    }
    println!(
        "{}: ok ({targets} target{})",
        path.display(),
        if targets == 1 { "" } else { "s" }
    );
    Ok(ExitCode::SUCCESS)
}
