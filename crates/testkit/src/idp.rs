//! A real OIDC provider on loopback: npm `oidc-provider` running `tests/idp/idp.mjs`
//! under node, installed by `scripts/test` into `$AIRLOCK_TEST_IDP` (default
//! `/var/tmp/airlock-test-idp`). Tokens come from its token endpoint by client
//! credentials, exactly as an agent would get them.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, wait_port, workspace_root};

/// A running provider, stopped when dropped.
pub struct Idp {
    /// Its port on 127.0.0.1.
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// Where the `console` client's sign-ins return, if it is registered.
    console_redirect: Option<String>,
}

impl Idp {
    /// Starts a provider signing with a fresh RSA key named `kid`.
    pub fn start(kid: &str) -> Idp {
        Idp::start_inner(kid, None)
    }

    /// Starts a provider that also signs people in (its own login form, any password)
    /// for the `console` client (secret `console-secret`), returning to `redirect`.
    pub fn start_with_console(kid: &str, redirect: &str) -> Idp {
        Idp::start_inner(kid, Some(redirect.to_owned()))
    }

    fn start_inner(kid: &str, console_redirect: Option<String>) -> Idp {
        let dir = PathBuf::from(
            std::env::var("AIRLOCK_TEST_IDP")
                .unwrap_or_else(|_| "/var/tmp/airlock-test-idp".into()),
        );
        assert!(
            dir.join("node_modules/oidc-provider").is_dir(),
            "no oidc-provider in {}: run ./scripts/test (it installs it with npm), or set AIRLOCK_TEST_IDP",
            dir.display()
        );
        // ESM resolves `oidc-provider` next to the script: run a copy placed there.
        std::fs::copy(
            workspace_root().join("tests/idp/idp.mjs"),
            dir.join("idp.mjs"),
        )
        .unwrap();
        let mut idp = Idp {
            port: free_port(),
            dir,
            child: None,
            console_redirect,
        };
        idp.restart(kid);
        idp
    }

    /// The issuer URL.
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops it (the port stays reserved for a restart).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// (Re)starts it on the same port with a new key `kid`: a key rotation.
    pub fn restart(&mut self, kid: &str) {
        self.stop();
        let log = std::fs::File::create(self.dir.join(format!("idp-{}.log", self.port))).unwrap();
        let mut command = Command::new("node");
        if let Some(redirect) = &self.console_redirect {
            command.env("CONSOLE_REDIRECT", redirect);
        }
        let child = command
            .arg(self.dir.join("idp.mjs"))
            .env("PORT", self.port.to_string())
            .env("KID", kid)
            .env("BRIEF_TTL", "4")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("run node (install nodejs: ./scripts/test does)");
        self.child = Some(child);
        wait_port(self.port, Duration::from_secs(30)).expect("the OIDC provider listens");
    }

    /// An access token for `client` (secret `<client>-secret`) by client credentials.
    pub fn token(&self, client: &str) -> String {
        let out = Command::new("curl")
            .args(["-sf", "-u", &format!("{client}:{client}-secret")])
            .args(["-d", "grant_type=client_credentials", "-d", "scope=db:read"])
            .arg(format!("{}/token", self.issuer()))
            .output()
            .expect("run curl");
        assert!(out.status.success(), "token request for {client} failed");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("token JSON");
        v["access_token"].as_str().expect("access_token").to_owned()
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.stop();
    }
}
