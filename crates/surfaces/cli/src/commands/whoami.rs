//! `airlock whoami --token ...`: how the gateway reads a token (an Airlock token or an
//! OIDC access token from a configured provider), for debugging a deployment. The token
//! itself is never printed.

use std::path::Path;
use std::process::ExitCode;

use airlock_identity::Identity;
use airlock_identity::oidc::OidcSettings;
use airlock_vault::Secret;
use serde_json::json;

use crate::context::{load_config, open_store};
use crate::output;

pub async fn run(config_path: &Path, token: &str, as_json: bool) -> anyhow::Result<ExitCode> {
    let config = load_config(config_path)?;
    let identity = Identity::new(open_store(&config).await?);
    let providers = config
        .identity
        .oidc
        .iter()
        .map(OidcSettings::from_config)
        .collect::<Result<Vec<_>, _>>()
        .map_err(anyhow::Error::msg)?;
    identity.set_providers(providers);
    match identity
        .authenticate_full(&Secret::new(token.to_owned()))
        .await
    {
        Ok(a) => {
            let p = &a.principal;
            if as_json {
                output::json(&json!({
                    "principal": p.name,
                    "groups": p.groups,
                    "source": p.source,
                    "issuer": a.issuer,
                    "token_id": a.token_id,
                    "expires_at": p.expires_at,
                }))?;
            } else {
                println!("principal:  {}", p.name);
                println!(
                    "groups:     {}",
                    if p.groups.is_empty() {
                        "none".into()
                    } else {
                        p.groups.join(", ")
                    }
                );
                let source = match p.source {
                    airlock_model::PrincipalSource::ServiceToken => "Airlock service token",
                    airlock_model::PrincipalSource::Oidc => "OIDC access token",
                };
                println!("source:     {source}");
                if let Some(iss) = &a.issuer {
                    println!("issuer:     {iss}");
                }
                if let Some(jti) = &a.token_id {
                    println!("token id:   {jti}");
                }
                println!("expires:    {}", output::ts(p.expires_at));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("airlock: {e}");
            Ok(ExitCode::from(1))
        }
    }
}
