//! HTTP peers: the small JSON API of `tests/upstream/http_api.py` (credentials checked,
//! every request logged as it arrived), and nginx from Debian's packages for static
//! files and as a reverse proxy to compare against.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, python, scratch_dir, wait_port, workspace_root};

/// The upstream's bearer token (as the target's `auth = { bearer = ... }`).
pub const UP_BEARER: &str = "up-bearer-4c1f9e27d6b3a508";
/// The upstream's API key (`auth = { header = "X-Api-Key", ... }`).
pub const UP_APIKEY: &str = "up-apikey-77e0b5d2c9a1";
/// The upstream's basic password for user `svc`.
pub const UP_BASIC: &str = "up-basic-pw-3b8d";

/// A running `http_api.py`, stopped when dropped.
pub struct HttpApi {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its folder (`requests.jsonl`).
    pub dir: PathBuf,
    child: Child,
}

impl HttpApi {
    /// Starts the API on a free port.
    pub fn start() -> HttpApi {
        let dir = scratch_dir("http-api");
        let port = free_port();
        let child = Command::new(python())
            .arg(workspace_root().join("tests/upstream/http_api.py"))
            .arg(port.to_string())
            .arg(&dir)
            .env("UP_BEARER", UP_BEARER)
            .env("UP_APIKEY", UP_APIKEY)
            .env("UP_BASIC", UP_BASIC)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start tests/upstream/http_api.py");
        wait_port(port, Duration::from_secs(20)).expect("the upstream API listens");
        HttpApi { port, dir, child }
    }

    /// Every request the API received so far, as logged.
    pub fn requests(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.join("requests.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The raw log (to search for what must never arrive).
    pub fn raw_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("requests.jsonl")).unwrap_or_default()
    }
}

impl Drop for HttpApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The nginx binary, if Debian's package is installed.
pub fn nginx_bin() -> Option<PathBuf> {
    ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// A running nginx serving `root` on one port and, optionally, proxying a second port
/// to an upstream; stopped when dropped.
pub struct Nginx {
    /// The static port.
    pub port: u16,
    /// The reverse-proxy port (0 without one).
    pub proxy_port: u16,
    dir: PathBuf,
    child: Child,
}

impl Nginx {
    /// Starts nginx on free ports; `proxy_to` is `127.0.0.1:PORT` of an upstream.
    pub fn start(root: &Path, proxy_to: Option<&str>) -> Option<Nginx> {
        let bin = nginx_bin()?;
        let dir = scratch_dir("nginx");
        let port = free_port();
        let proxy_port = if proxy_to.is_some() { free_port() } else { 0 };
        let proxy = proxy_to
            .map(|up| {
                format!(
                    "server {{ listen 127.0.0.1:{proxy_port}; location / {{ proxy_pass http://{up}; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_buffering off; }} }}"
                )
            })
            .unwrap_or_default();
        let conf = format!(
            "daemon off; worker_processes 1; pid {dir}/nginx.pid; error_log {dir}/error.log;\n\
             events {{ worker_connections 1024; }}\n\
             http {{ access_log off; sendfile on; keepalive_requests 100000;\n\
               client_body_temp_path {dir}/body; proxy_temp_path {dir}/proxy; fastcgi_temp_path {dir}/fcgi; uwsgi_temp_path {dir}/uwsgi; scgi_temp_path {dir}/scgi;\n\
               types {{ application/json json; application/octet-stream bin; text/plain txt; }}\n\
               server {{ listen 127.0.0.1:{port}; root {root}; }}\n\
               {proxy}\n\
             }}\n",
            dir = dir.display(),
            root = root.display(),
        );
        std::fs::write(dir.join("nginx.conf"), conf).ok()?;
        let child = Command::new(bin)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .arg("-p")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .ok()?;
        wait_port(port, Duration::from_secs(20)).ok()?;
        if proxy_port != 0 {
            wait_port(proxy_port, Duration::from_secs(20)).ok()?;
        }
        Some(Nginx {
            port,
            proxy_port,
            dir,
            child,
        })
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
