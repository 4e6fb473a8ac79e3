//! Real clients: psql from the machine, psycopg 3 from a venv made on first use.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// What psql did.
#[derive(Debug)]
pub struct PsqlOutput {
    /// Exit status was 0.
    pub ok: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error (errors, notices).
    pub stderr: String,
}

/// Runs `psql CONN -X -At -v ON_ERROR_STOP=1` with each of `commands` as a `-c`.
pub fn psql(conn: &str, commands: &[&str]) -> PsqlOutput {
    let mut c = Command::new("psql");
    c.arg(conn).args(["-X", "-At", "-v", "ON_ERROR_STOP=1"]);
    for cmd in commands {
        c.arg("-c").arg(cmd);
    }
    let out = c.stdin(Stdio::null()).output().expect("run psql");
    PsqlOutput {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The Python interpreter of a venv with psycopg 3 installed: `AIRLOCK_TEST_PYTHON` if
/// set (scripts/test sets it), else a venv made once under the temp folder.
pub fn python() -> PathBuf {
    static PY: OnceLock<PathBuf> = OnceLock::new();
    PY.get_or_init(|| {
        if let Ok(p) = std::env::var("AIRLOCK_TEST_PYTHON") {
            return PathBuf::from(p);
        }
        let venv = std::env::temp_dir().join("airlock-test-venv");
        let py = venv.join("bin/python");
        let has = |py: &PathBuf| {
            Command::new(py)
                .args(["-c", "import psycopg"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        if !has(&py) {
            let ok = Command::new("python3")
                .args(["-m", "venv"])
                .arg(&venv)
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
                && Command::new(venv.join("bin/pip"))
                    .args(["install", "-q", "psycopg[binary]"])
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false);
            assert!(
                ok && has(&py),
                "could not create a psycopg venv at {}",
                venv.display()
            );
        }
        py
    })
    .clone()
}
