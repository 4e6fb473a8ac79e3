//! Real peers for end-to-end tests: a PostgreSQL cluster started from the machine's
//! binaries, the built `airlock` binary with a generated configuration, and the real
//! clients (psql, a psycopg venv), and an OIDC provider (npm `oidc-provider`). Everything binds to 127.0.0.1 on ports below 32768.
//!
//! Each test binary shares one PostgreSQL cluster ([`Postgres::shared`]); each test takes
//! its own database cloned from a template, so tests run in parallel without meeting.
//! A watchdog process stops the cluster when the test binary exits, however it exits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod airlock;
mod clients;
mod http;
mod idp;
mod kube;
mod mcp;
mod postgres;

pub use airlock::{Airlock, AirlockBuilder, PERMIT_ALL};
pub use clients::{PsqlOutput, psql, python};
pub use http::{HttpApi, Nginx, UP_APIKEY, UP_BASIC, UP_BEARER, nginx_bin};
pub use idp::Idp;
pub use kube::{Kube, kube_apiserver_bin, kubectl};
pub use mcp::{
    McpServer, finish_client, mcp_client, mcp_stdio_command, node_mcp_client, node_sdk,
    spawn_mcp_client,
};
pub use postgres::{APP_PASSWORD, Postgres, SUPERUSER_PASSWORD, unrelated_ca_pem};

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 below the ephemeral range.
///
/// A port is never handed out twice in one test process: two tests that drew the same
/// port before either bound it would otherwise both "find" one gateway listening.
pub fn free_port() -> u16 {
    static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let port = 20_000 + rand::random::<u16>() % 12_000;
        let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if !handed_out.contains(&port) && TcpListener::bind(("127.0.0.1", port)).is_ok() {
            handed_out.insert(port);
            return port;
        }
    }
}

/// Waits until something accepts connections on 127.0.0.1:`port`.
pub fn wait_port(port: u16, limit: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    anyhow::bail!("nothing listens on 127.0.0.1:{port} after {limit:?}")
}

/// A fresh scratch directory (world-readable, so the postgres user can use it).
pub fn scratch_dir(prefix: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "airlock-{prefix}-{}-{:x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    set_mode(&dir, 0o755);
    dir
}

/// Sets a path's permission bits.
pub fn set_mode(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The workspace's root folder (for client scripts under `tests/clients`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}
