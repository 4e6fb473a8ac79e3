//! The built `airlock` binary, run as a real process with a generated configuration.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::postgres::{APP_PASSWORD, Postgres};
use crate::{free_port, scratch_dir, wait_port};

/// Builds an Airlock configuration and starts `airlock serve`.
pub struct AirlockBuilder {
    bin: PathBuf,
    targets: Vec<String>,
    listener_extra: String,
    server_extra: String,
    extra: String,
    env: Vec<(String, String)>,
    policy: Option<String>,
    http: bool,
}

/// Lets every authenticated agent do everything: for tests of the relay itself.
pub const PERMIT_ALL: &str = "@id(\"permit-all\")\npermit(principal, action, resource);\n";

/// A running `airlock serve`, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Airlock {
    /// Folder with the config and `data/`.
    pub dir: PathBuf,
    /// The PostgreSQL listener's port.
    pub port: u16,
    /// The HTTPS listener's port (0 without one; see [`AirlockBuilder::http`]).
    pub http_port: u16,
    bin: PathBuf,
    child: Option<Child>,
    env: Vec<(String, String)>,
}

impl AirlockBuilder {
    /// A gateway run from `bin` (pass `env!("CARGO_BIN_EXE_airlock")`).
    pub fn new(bin: &str) -> Self {
        AirlockBuilder {
            bin: PathBuf::from(bin),
            targets: Vec::new(),
            listener_extra: String::new(),
            server_extra: String::new(),
            extra: String::new(),
            env: Vec::new(),
            policy: Some(PERMIT_ALL.to_string()),
            http: false,
        }
    }

    /// Adds an `[http]` listener on a free port ([`Airlock::http_port`]).
    pub fn http(mut self) -> Self {
        self.http = true;
        self
    }

    /// Replaces the policies (Cedar text) written to `policies/airlock.cedar`; `None`
    /// leaves `[policy]` out of the configuration (everything is denied).
    pub fn policy(mut self, cedar: Option<&str>) -> Self {
        self.policy = cedar.map(str::to_owned);
        self
    }

    /// Adds target `name` for database `db` on `pg`, logging in as `app` with its
    /// password from the environment variable `AIRLOCK_TEST_PW_<NAME>`.
    pub fn target(self, name: &str, pg: &Postgres, db: &str) -> Self {
        let var = format!("AIRLOCK_TEST_PW_{}", name.to_uppercase().replace('-', "_"));
        let t = format!(
            "[[targets]]\nname = \"{name}\"\nkind = \"postgres\"\nhost = \"127.0.0.1\"\nport = {}\ndatabase = \"{db}\"\nuser = \"app\"\npassword = \"env:{var}\"\nsslmode = \"disable\"\n",
            pg.port
        );
        self.raw_target(&t).env(&var, APP_PASSWORD)
    }

    /// Appends a line to the last target added.
    pub fn target_extra(mut self, toml: &str) -> Self {
        if let Some(t) = self.targets.last_mut() {
            t.push_str(toml);
            t.push('\n');
        }
        self
    }

    /// Adds a `[[targets]]` block written out in full.
    pub fn raw_target(mut self, toml: &str) -> Self {
        self.targets.push(toml.to_string());
        self
    }

    /// Adds lines to the `[postgres]` section.
    pub fn listener(mut self, toml: &str) -> Self {
        self.listener_extra.push_str(toml);
        self.listener_extra.push('\n');
        self
    }

    /// Adds lines to the `[server]` section.
    pub fn server(mut self, toml: &str) -> Self {
        self.server_extra.push_str(toml);
        self.server_extra.push('\n');
        self
    }

    /// Appends raw TOML at the end of the file.
    pub fn extra(mut self, toml: &str) -> Self {
        self.extra.push_str(toml);
        self
    }

    /// Sets an environment variable for the gateway and CLI calls.
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_string(), v.to_string()));
        self
    }

    /// Writes the configuration without starting anything.
    pub fn write(self) -> Airlock {
        let dir = scratch_dir("gw");
        let port = free_port();
        let mut policy_section = String::new();
        if let Some(p) = &self.policy {
            std::fs::create_dir_all(dir.join("policies")).unwrap();
            std::fs::write(dir.join("policies/airlock.cedar"), p).unwrap();
            policy_section = "[policy]\npath = \"policies\"\n".into();
        }
        let http_port = if self.http { free_port() } else { 0 };
        let http_section = if self.http {
            format!("[http]\nlisten = \"127.0.0.1:{http_port}\"\n")
        } else {
            String::new()
        };
        let config = format!(
            "[server]\ndata_dir = \"data\"\n{}\n{policy_section}\n{http_section}\n[postgres]\nlisten = \"127.0.0.1:{port}\"\n{}\n{}\n{}",
            self.server_extra,
            self.listener_extra,
            self.targets.join("\n"),
            self.extra
        );
        std::fs::write(dir.join("airlock.toml"), config).unwrap();
        Airlock {
            dir,
            port,
            http_port,
            bin: self.bin,
            child: None,
            env: self.env,
        }
    }

    /// Writes the configuration and starts `airlock serve`.
    pub fn start(self) -> Airlock {
        let mut a = self.write();
        a.start().expect("airlock serve starts");
        a
    }
}

impl Airlock {
    /// Path of the configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("airlock.toml")
    }

    /// Replaces the policy file (the gateway picks it up on SIGHUP).
    pub fn write_policy(&self, cedar: &str) {
        std::fs::write(self.dir.join("policies/airlock.cedar"), cedar).unwrap();
    }

    /// Path of the SQLite store.
    pub fn store_path(&self) -> PathBuf {
        self.dir.join("data/airlock.db")
    }

    /// Starts (or restarts) `airlock serve` and waits for its listener.
    pub fn start(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("serve.log"))?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("serve").arg("--config").arg(self.config_path());
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        if !self.env.iter().any(|(k, _)| k == "AIRLOCK_LOG") {
            cmd.env("AIRLOCK_LOG", "info,airlock_postgres=debug");
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        self.child = Some(cmd.spawn().context("spawn airlock serve")?);
        // Until it listens, or exits (a refused configuration or store): no need to
        // wait the whole limit for a gateway that has stopped.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                bail!("airlock serve exited ({status}); log:\n{}", self.log());
            }
            if std::time::Instant::now() >= deadline {
                bail!(
                    "nothing listens on 127.0.0.1:{} after 20s; log:\n{}",
                    self.port,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if self.http_port != 0
            && let Err(e) = wait_port(self.http_port, Duration::from_secs(20))
        {
            bail!("{e}; log:\n{}", self.log());
        }
        // Something answering on the port is only this gateway if it is still running.
        if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
            bail!("airlock serve exited ({status}); log:\n{}", self.log());
        }
        Ok(())
    }

    /// The gateway's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("serve.log")).unwrap_or_default()
    }

    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Sends a signal (`HUP`, `TERM`...) with kill(1).
    pub fn signal(&self, name: &str) {
        let _ = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status();
    }

    /// Stops the gateway with SIGTERM and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            for _ in 0..200 {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Peak resident memory of the gateway (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmHWM")
    }

    /// Current resident memory of the gateway (VmRSS), in KiB.
    pub fn rss_kib(&self) -> u64 {
        proc_status_kib(self.pid(), "VmRSS")
    }

    /// Runs an `airlock` subcommand against this gateway's configuration.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(&self.bin)
            .args(args)
            .arg("--config")
            .arg(self.config_path())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()
            .expect("run airlock")
    }

    /// Runs a subcommand and returns its standard output, failing the test if it fails.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "airlock {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Mints a token and returns it (the last line of `token create`).
    pub fn token(&self, name: &str, groups: &[&str]) -> String {
        let mut args = vec!["token", "create", "--name", name];
        for g in groups {
            args.push("--group");
            args.push(g);
        }
        let out = self.cli_ok(&args);
        out.lines().last().unwrap().trim().to_string()
    }

    /// `sessions list --json`, parsed, once it has settled: the store lags the
    /// recorder's journal by a few milliseconds, so this reads until two reads 50 ms
    /// apart agree (up to 3 s). A session's end is stored after its events, so an
    /// ended session listed here has all its events stored too.
    pub fn sessions(&self) -> Vec<serde_json::Value> {
        let read = || self.cli_ok(&["sessions", "list", "--json"]);
        let deadline = std::time::Instant::now() + Duration::from_secs(3);
        let mut last = read();
        loop {
            std::thread::sleep(Duration::from_millis(50));
            let now = read();
            if now == last || std::time::Instant::now() >= deadline {
                return serde_json::from_str(&now).expect("sessions list --json is JSON");
            }
            last = now;
        }
    }

    /// `sessions show ID --json`, parsed.
    pub fn session(&self, id: &str) -> serde_json::Value {
        serde_json::from_str(&self.cli_ok(&["sessions", "show", id, "--json"]))
            .expect("sessions show --json is JSON")
    }

    /// The events of the newest session of `principal` on `target`.
    /// The gateway records a session's end after it sees the client go, and readers see
    /// records a few milliseconds after they are journalled: this waits (up to 5 s) for
    /// the session to show as ended, and returns it as it is then.
    pub fn last_session_of(&self, principal: &str, target: &str) -> serde_json::Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let s = self
                .sessions()
                .into_iter()
                .rev()
                .find(|s| s["principal"] == principal && s["target"] == target);
            if let Some(s) = s
                && (s["ended_at"].is_string() || std::time::Instant::now() >= deadline)
            {
                return self.session(s["id"].as_str().unwrap());
            }
            if std::time::Instant::now() >= deadline {
                panic!("no session of {principal} on {target}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A libpq connection string to the gateway for `target` with `token`.
    pub fn conn(&self, target: &str, token: &str) -> String {
        format!(
            "host=127.0.0.1 port={} dbname={target} user=agent password={token} sslmode=require",
            self.port
        )
    }
}

impl Drop for Airlock {
    /// Stops the gateway and removes its folder, unless the test is failing: then the
    /// folder (config, `serve.log`, data) stays for a look. Left behind, a suite's
    /// folders add up on machines short of disk.
    fn drop(&mut self) {
        self.stop();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
