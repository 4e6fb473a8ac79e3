//! `airlock masking discover`: sample a PostgreSQL target's text-like columns with its
//! own vaulted credential, run the default detectors over the values, and propose a
//! `[[masking]]` rule naming the columns that hold PII, for an operator to review.
//!
//! The sampling (read only, time-limited, values never kept) is
//! `airlock_postgres::discover`; the classification and the TOML and JSON renderings
//! are the pure [`report`] module; this module resolves the target and its credential,
//! and writes the output.

mod report;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use airlock_config::{SecretRef, TargetKindConfig};
use airlock_engine::masking::detect::{DEFAULT_ON, DetectorSpec, Scanner};
use airlock_model::{TargetKind, TargetRef, Timestamp};
use airlock_postgres::discover::{self, Options};
use airlock_session::Target;
use anyhow::{Context, bail};

use crate::cli::MaskingDiscover;
use crate::context::{load_config, load_stored_secrets, open_store};
use crate::output;

/// Runs `airlock masking discover`.
pub async fn discover(config_path: &Path, args: MaskingDiscover) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let Some(target_config) = config.targets.iter().find(|t| t.name() == args.target) else {
        bail!(
            "{}: no target `{}` is configured",
            config_path.display(),
            args.target
        );
    };
    let kind = match target_config.kind {
        TargetKindConfig::Postgres => TargetKind::Postgres,
        TargetKindConfig::Http | TargetKindConfig::Kubernetes | TargetKindConfig::Mcp => bail!(
            "target `{}` is an HTTP target: discovery reads a PostgreSQL catalog; HTTP responses are masked by key and detector without it (see docs/http.md)",
            args.target
        ),
    };
    let rule = args
        .name
        .clone()
        .unwrap_or_else(|| format!("discovered-{}", args.target));
    if rule.is_empty()
        || !rule
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        bail!("--name `{rule}` must be non-empty and use only letters, digits, '-', '_' and '.'");
    }
    if config.masking.iter().any(|m| m.name() == rule) {
        eprintln!(
            "airlock: note: the configuration already has a rule named `{rule}`; merge the proposed columns into it, or choose another name with --name"
        );
    }
    if let Some(out) = &args.out
        && !args.force
        && out.exists()
    {
        bail!("{} exists; pass --force to replace it", out.display());
    }

    // The target's own credential, resolved as `serve` does; it only goes into the
    // upstream handshake.
    let Some(credential) = target_config.credential() else {
        bail!("target `{}` has no password", args.target);
    };
    if matches!(credential, SecretRef::Stored(_)) {
        let store = open_store(&config).await?;
        load_stored_secrets(&config, &*store).await?;
    }
    let password =
        airlock_vault::resolve(credential).with_context(|| format!("target `{}`", args.target))?;
    let target = Target {
        model: TargetRef {
            name: args.target.clone(),
            kind,
        },
        config: target_config.clone(),
        credential: password,
        client_cert: None,
    };

    let specs: Vec<DetectorSpec> = DEFAULT_ON
        .iter()
        .map(|name| DetectorSpec::Builtin((*name).to_owned()))
        .collect();
    let scanner = Scanner::new(&specs).context("cannot build the detectors")?;
    let options = Options {
        sample: args.sample,
        timeout: args.timeout,
        schemas: args.schemas.clone(),
    };
    let found = discover::discover(&target, &scanner, &options)
        .await
        .with_context(|| format!("target `{}`", args.target))?;

    let coverage = report::Coverage::from_config(&config, &args.target);
    let report = report::build(
        found,
        &coverage,
        report::Settings {
            target: args.target.clone(),
            rule,
            sample: args.sample,
            min_share: args.min_share,
            generated_at: Timestamp::now().to_string(),
        },
    );
    let rules = report.rules_toml();
    if let Some(out) = &args.out {
        write_file(out, &rules, args.force)
            .with_context(|| format!("cannot write {}", out.display()))?;
    }
    if args.json {
        output::json(&report.to_json())?;
    } else if let Some(out) = &args.out {
        println!(
            "{}: {} column(s) proposed, {} already masked, {} below the threshold; {} table(s) sampled, {} not",
            out.display(),
            report.count("added"),
            report.count("covered"),
            report.count("below_threshold"),
            report.tables.iter().filter(|t| t.error.is_none()).count(),
            report.tables.iter().filter(|t| t.error.is_some()).count(),
        );
    } else {
        print!("{rules}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `text` to `path`: a new file, or with `force` a replacement made by renaming
/// a finished temporary file over it (a reader never sees half a file).
fn write_file(path: &Path, text: &str, force: bool) -> std::io::Result<()> {
    if !force {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)?;
        f.write_all(text.as_bytes())?;
        return f.sync_all();
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(text.as_bytes())?;
        f.sync_all()
    });
    match written.and_then(|()| std::fs::rename(&tmp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}
