//! A real PostgreSQL cluster from the machine's binaries (`/usr/lib/postgresql/*/bin`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::{free_port, scratch_dir, set_mode, wait_port};

/// Password of the `postgres` superuser in test clusters.
pub const SUPERUSER_PASSWORD: &str = "superpw";
/// The application role targets log in as.
pub const APP_USER: &str = "app";
/// Its password.
pub const APP_PASSWORD: &str = "apppw";

/// A running cluster. SCRAM for everyone on 127.0.0.1, except members of `md5_users`
/// (MD5) and `clear_users` (cleartext password), so each upstream method can be tested.
pub struct Postgres {
    /// Port on 127.0.0.1.
    pub port: u16,
    /// Cluster folder (data, socket, log).
    pub dir: PathBuf,
    /// Whether the server has TLS on (certificate signed by `ca_pem`).
    pub ca_pem: Option<PathBuf>,
    counter: AtomicU32,
}

fn bin_dir() -> anyhow::Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (/usr/lib/postgresql missing); run scripts/test, which installs it")?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    dirs.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    dirs.pop()
        .context("no initdb under /usr/lib/postgresql/*/bin")
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

/// Runs a PostgreSQL server binary, as the `postgres` user when we are root.
fn run_pg(cmd: &str, args: &[&str]) -> anyhow::Result<()> {
    let bin = bin_dir()?.join(cmd);
    let mut c = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(&bin);
        c
    } else {
        Command::new(&bin)
    };
    let out = c
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {cmd}"))?;
    if !out.status.success() {
        bail!(
            "{cmd} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn chown_postgres(path: &Path) {
    if is_root() {
        let _ = Command::new("chown")
            .args(["-R", "postgres"])
            .arg(path)
            .status();
    }
}

impl Postgres {
    /// The cluster shared by every test of this test binary, started on first use.
    pub fn shared() -> &'static Postgres {
        static SHARED: OnceLock<Postgres> = OnceLock::new();
        SHARED.get_or_init(|| Postgres::start(false).expect("start PostgreSQL"))
    }

    /// The TLS-enabled cluster shared by this test binary.
    pub fn shared_tls() -> &'static Postgres {
        static SHARED: OnceLock<Postgres> = OnceLock::new();
        SHARED.get_or_init(|| Postgres::start(true).expect("start PostgreSQL with TLS"))
    }

    /// Starts a new cluster with the `shop` template database; with `tls`, the server
    /// also accepts TLS with a certificate for 127.0.0.1 signed by a fresh test CA.
    pub fn start(tls: bool) -> anyhow::Result<Postgres> {
        let dir = scratch_dir("pg");
        let data = dir.join("data");
        std::fs::write(dir.join("pw"), SUPERUSER_PASSWORD)?;
        chown_postgres(&dir);
        run_pg(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth-local=peer",
                "--auth-host=scram-sha-256",
                "--pwfile",
                dir.join("pw").to_str().unwrap(),
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        let port = free_port();
        let mut conf = format!(
            "listen_addresses='127.0.0.1'\nport={port}\nunix_socket_directories='{}'\npassword_encryption='scram-sha-256'\nmax_connections=300\nfsync=off\n\
             wal_level=minimal\nmax_wal_senders=0\nmax_wal_size='96MB'\nmin_wal_size='32MB'\n",
            dir.display()
        );
        let mut ca_pem = None;
        if tls {
            let (ca, cert, key) = test_certificates()?;
            std::fs::write(dir.join("ca.pem"), ca)?;
            std::fs::write(data.join("server.crt"), cert)?;
            std::fs::write(data.join("server.key"), key)?;
            chown_postgres(&data);
            set_mode(&data.join("server.key"), 0o600);
            conf.push_str("ssl=on\nssl_cert_file='server.crt'\nssl_key_file='server.key'\n");
            ca_pem = Some(dir.join("ca.pem"));
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))
            .and_then(|mut f| {
                use std::io::Write;
                f.write_all(conf.as_bytes())
            })?;
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all peer\nhost all +md5_users 127.0.0.1/32 md5\nhost all +clear_users 127.0.0.1/32 password\nhost all all 127.0.0.1/32 scram-sha-256\n",
        )?;
        chown_postgres(&dir);
        run_pg(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                dir.join("pg.log").to_str().unwrap(),
                "-w",
                "start",
            ],
        )?;
        spawn_watchdog(&data)?;
        wait_port(port, Duration::from_secs(20))?;
        let pg = Postgres {
            port,
            dir,
            ca_pem,
            counter: AtomicU32::new(0),
        };
        pg.superuser_sql(
            "postgres",
            &format!("create role {APP_USER} login password '{APP_PASSWORD}'"),
        )?;
        pg.superuser_sql(
            "postgres",
            &format!("create database shop_template owner {APP_USER}"),
        )?;
        pg.superuser_sql(
            "postgres",
            "create role md5_users nologin; create role clear_users nologin",
        )?;
        pg.sql_as(
            APP_USER,
            APP_PASSWORD,
            "shop_template",
            "create table customers(id int primary key, name text, email text, ssn text, card text, password text);
             insert into customers values
               (1,'Ada Lovelace','ada@example.com','078-05-1120','4111 1111 1111 1111','hunter2'),
               (2,'Alan Turing','alan@example.org','219-09-9999','5500 0000 0000 0004','s3cret');
             create table orders(id serial primary key, customer_id int, total numeric);
             insert into orders(customer_id,total) select 1+(g%2), g from generate_series(1,100) g;",
        )?;
        Ok(pg)
    }

    /// The cluster's data folder.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Stops the server at once, as a crash would (`pg_ctl stop -m immediate`): every
    /// backend quits without a clean shutdown, open transactions are lost, and clients'
    /// connections break. Port and data folder stay for [`Postgres::restart`]. For a
    /// cluster of the test's own ([`Postgres::start`]), never a shared one.
    pub fn stop_immediate(&self) -> anyhow::Result<()> {
        let data = self.data_dir();
        run_pg(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        )
    }

    /// Starts the server again after [`Postgres::stop_immediate`], on the same port and
    /// data folder (it runs crash recovery first), and waits until it accepts logins.
    pub fn restart(&self) -> anyhow::Result<()> {
        let data = self.data_dir();
        run_pg(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                self.dir.join("pg.log").to_str().unwrap(),
                "-w",
                "-t",
                "60",
                "start",
            ],
        )?;
        wait_port(self.port, Duration::from_secs(20))?;
        // Accepting TCP is not accepting logins yet while recovery finishes.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match self.superuser_sql("postgres", "select 1") {
                Ok(_) => return Ok(()),
                Err(e) if std::time::Instant::now() >= deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// A new database owned by `app`, a copy of the `shop` sample; returns its name.
    pub fn create_database(&self, prefix: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        let name = format!("{prefix}_{n}_{:x}", rand::random::<u32>());
        // Cloning a template must not race with another clone of it. FILE_COPY, not the
        // default WAL_LOG: the copy is not written to the WAL as well, which halves the
        // disk a suite of a hundred databases needs (CI machines can be short of disk).
        static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _g = LOCK.lock().unwrap_or_else(|p| p.into_inner());
        self.superuser_sql(
            "postgres",
            &format!(
                "create database {name} template shop_template owner {APP_USER} strategy file_copy"
            ),
        )
        .expect("create database");
        name
    }

    /// A new login role with `password`, allowed into every database; returns its name.
    /// Roles starting with `md5_` authenticate with MD5, `clear_` with a cleartext password.
    pub fn create_role(&self, prefix: &str, password: &str) -> String {
        let name = format!(
            "{prefix}{}_{:x}",
            self.counter.fetch_add(1, Ordering::SeqCst),
            rand::random::<u16>()
        );
        let (encryption, method_group) = match prefix {
            p if p.starts_with("md5_") => ("md5", "md5_users"),
            p if p.starts_with("clear_") => ("scram-sha-256", "clear_users"),
            _ => ("scram-sha-256", APP_USER),
        };
        self.superuser_sql(
            "postgres",
            &format!(
                "set password_encryption = '{encryption}'; create role {name} login password '{password}'; grant {APP_USER} to {name}; grant {method_group} to {name};"
            ),
        )
        .expect("create role");
        name
    }

    /// A libpq connection string to this server.
    pub fn conn(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} password={password} dbname={db} sslmode=disable",
            self.port
        )
    }

    /// Runs SQL as the superuser; returns psql's unaligned, tuples-only output.
    pub fn superuser_sql(&self, db: &str, sql: &str) -> anyhow::Result<String> {
        self.sql_as("postgres", SUPERUSER_PASSWORD, db, sql)
    }

    /// Runs SQL as `user` directly (not through Airlock).
    pub fn sql_as(
        &self,
        user: &str,
        password: &str,
        db: &str,
        sql: &str,
    ) -> anyhow::Result<String> {
        let out = Command::new("psql")
            .arg(self.conn(user, password, db))
            .args(["-v", "ON_ERROR_STOP=1", "-X", "-q", "-At", "-c", sql])
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            bail!("psql failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
    }
}

/// A cluster of a test's own ([`Postgres::start`]) is stopped when the test drops it
/// (the shared ones live in statics and are stopped by their watchdog), and its folder
/// removed unless the test is failing.
impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.stop_immediate();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Stops the cluster when this test process exits, even when it is killed: a shell
/// that polls our pid, then runs `pg_ctl stop`.
fn spawn_watchdog(data: &Path) -> anyhow::Result<()> {
    let pg_ctl = bin_dir()?.join("pg_ctl");
    let stop = format!(
        "{} -D {} -m immediate stop",
        pg_ctl.display(),
        data.display()
    );
    let stop = if is_root() {
        format!("runuser -u postgres -- {stop}")
    } else {
        stop
    };
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {stop} >/dev/null 2>&1; rm -rf {dir}",
        pid = std::process::id(),
        dir = data.parent().unwrap().display()
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok(())
}

/// A valid CA certificate (PEM) that signed nothing the tests trust.
pub fn unrelated_ca_pem() -> String {
    test_certificates().expect("generate certificates").0
}

/// A CA, and a server certificate for 127.0.0.1/localhost signed by it (PEM).
fn test_certificates() -> anyhow::Result<(String, String, String)> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "airlock test CA");
    let ca = ca_params.self_signed(&ca_key)?;
    let key = KeyPair::generate()?;
    let params = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let cert = params.signed_by(&key, &issuer)?;
    Ok((ca.pem(), cert.pem(), key.serialize_pem()))
}
