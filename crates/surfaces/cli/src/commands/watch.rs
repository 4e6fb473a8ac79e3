//! Watching for changes (`[server] watch = true`): the configuration file, the policy
//! files and every `file:` secret are checked once a second, and a change reloads the
//! gateway as SIGHUP does. Polling file metadata (following symlinks, so a Kubernetes
//! secret mount's `..data` swap counts) is enough at this rate and needs no inotify
//! limits.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use airlock_config::{Config, SecretRef};

/// How often the files are checked.
pub const WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// What a file looked like: modification time and length, or absent.
type Seen = Option<(SystemTime, u64)>;

/// The files whose change means a reload, with what they look like now.
pub fn fingerprint(config_path: &Path, config: &Config) -> Vec<(PathBuf, Seen)> {
    let mut paths = vec![config_path.to_owned()];
    if let Some(p) = &config.policy {
        if p.path.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&p.path) {
                let mut files: Vec<PathBuf> = entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "cedar"))
                    .collect();
                files.sort();
                paths.push(p.path.clone());
                paths.extend(files);
            }
        } else {
            paths.push(p.path.clone());
        }
    }
    let file = |r: Option<&SecretRef>| match r {
        Some(SecretRef::File(p)) => Some(p.clone()),
        _ => None,
    };
    paths.extend(
        config
            .targets
            .iter()
            .flat_map(|t| t.secret_refs())
            .filter_map(|r| file(Some(r))),
    );
    paths.extend(
        config
            .masking
            .iter()
            .filter_map(|m| file(m.hash_key.as_ref())),
    );
    for w in &config.approvals.webhooks {
        paths.extend(file(w.secret.as_ref()));
        if let Some(p) = w.url.strip_prefix("file:") {
            paths.push(PathBuf::from(p));
        }
    }
    paths.extend(file(config.secrets.master_key.as_ref()));
    paths
        .into_iter()
        .map(|p| {
            let seen = std::fs::metadata(&p)
                .ok()
                .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
            (p, seen)
        })
        .collect()
}
