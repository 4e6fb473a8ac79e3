//! `airlock store`: moving a deployment from SQLite to PostgreSQL with `export` and
//! `import` (its audit chain verifies afterwards, and a gateway continues on it), and
//! schema versions (`serve` refuses an older store unless `--migrate` or `store
//! migrate`, and a newer one always).

use std::io::Write;
use std::process::{Command, Stdio};

use airlock_testkit::{AirlockBuilder, Postgres, psql};
use serde_json::Value;

use crate::bin;
use crate::postgres_policy::READ_ONLY;

/// Runs `python -c CODE ARGS...` (the test venv's Python, for its sqlite3 module).
fn python(code: &str, args: &[&str]) {
    let out = Command::new(airlock_testkit::python())
        .arg("-c")
        .arg(code)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

fn verify(gw: &airlock_testkit::Airlock) -> Value {
    serde_json::from_str(&gw.cli_ok(&["audit", "verify", "--json"])).unwrap()
}

#[test]
fn a_sqlite_deployment_moves_to_postgresql_with_its_chain_intact() {
    let pg = Postgres::shared();
    let db = pg.create_database("transfer_target");
    let mut old = AirlockBuilder::new(bin())
        .policy(Some(READ_ONLY))
        .target("shop", pg, &db)
        .start();
    let token = old.token("agent", &["ai-agents"]);
    let revoked = old.token("gone", &["ai-agents"]);
    old.cli_ok(&["token", "revoke", "gone"]);
    let out = psql(
        &old.conn("shop", &token),
        &["select count(*) from orders", "delete from orders"],
    );
    assert!(!out.ok, "the delete is denied: {out:?}");
    old.stop();
    let before = verify(&old);
    assert_eq!(before["ok"], true, "{before}");

    // Exported to a file, and to standard output: the same records.
    let file = old.dir.join("export.jsonl");
    old.cli_ok(&["store", "export", "--output", file.to_str().unwrap()]);
    let streamed = old.cli_ok(&["store", "export", "--output", "-"]);
    let written = std::fs::read_to_string(&file).unwrap();
    let body = |t: &str| t.lines().skip(1).map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(body(&written), body(&streamed));
    assert!(!written.contains(&token), "an export holds no token");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "the export is the owner's only");

    // Imported from standard input into a new PostgreSQL store, with the old key.
    let store_db = format!("airlock_store_{:08x}", rand::random::<u32>());
    pg.superuser_sql("postgres", &format!("create database {store_db}"))
        .unwrap();
    let store = format!(
        "\n[store]\nurl = \"postgres://postgres@127.0.0.1:{}/{store_db}?sslmode=disable\"\npassword = \"env:AIRLOCK_STORE_PASSWORD\"\n\n[audit]\nkey = \"file:{}\"\n",
        pg.port,
        old.dir.join("data/audit.key").display()
    );
    let mut new = AirlockBuilder::new(bin())
        .policy(Some(READ_ONLY))
        .target("shop", pg, &db)
        .env(
            "AIRLOCK_STORE_PASSWORD",
            airlock_testkit::SUPERUSER_PASSWORD,
        )
        .extra(&store)
        .write();
    let mut import = Command::new(bin())
        .args(["store", "import", "--input", "-", "--config"])
        .arg(new.config_path())
        .env(
            "AIRLOCK_STORE_PASSWORD",
            airlock_testkit::SUPERUSER_PASSWORD,
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    import
        .stdin
        .take()
        .unwrap()
        .write_all(written.as_bytes())
        .unwrap();
    let done = import.wait_with_output().unwrap();
    assert!(done.status.success(), "{done:?}");
    assert!(
        String::from_utf8_lossy(&done.stderr).contains("imported 1 sessions"),
        "{done:?}"
    );
    let after = verify(&new);
    assert_eq!(after["ok"], true, "{after}");
    assert_eq!(after["events"], before["events"]);
    assert_eq!(after["sessions"], before["sessions"]);

    // A second import into it is refused: the chains would mix.
    let again = new.cli(&["store", "import", "--input", file.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));

    // A gateway continues on PostgreSQL: the old token works, the revoked one does
    // not, the denial is in the session list, and its new chain verifies with the old.
    new.start().unwrap();
    let out = psql(&new.conn("shop", &token), &["select count(*) from orders"]);
    assert!(out.ok && out.stdout.trim() == "100", "{out:?}");
    let out = psql(&new.conn("shop", &revoked), &["select 1"]);
    assert!(!out.ok && out.stderr.contains("revoked"), "{out:?}");
    let denied = new.cli_ok(&["sessions", "list", "--outcome", "denied", "--json"]);
    assert!(denied.contains("\"agent\""), "{denied}");
    new.stop();
    let last = verify(&new);
    assert_eq!(last["ok"], true, "{last}");
    assert_eq!(
        last["chains"], 2,
        "the imported chain and the new gateway's: {last}"
    );
}

#[test]
fn serve_refuses_an_older_schema_unless_asked_to_migrate_and_a_newer_one_always() {
    let pg = Postgres::shared();
    let db = pg.create_database("schema_target");
    let mut gw = AirlockBuilder::new(bin())
        .policy(Some(READ_ONLY))
        .target("shop", pg, &db)
        .start();
    let token = gw.token("agent", &["ai-agents"]);
    gw.stop();
    let store = gw.store_path();
    let store = store.to_str().unwrap();
    // The store as the previous release left it: without the newest migration.
    python(
        "import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
v = c.execute('select max(version) from _sqlx_migrations').fetchone()[0]
c.execute('drop table console_signins')
c.execute('drop table console_flows')
c.execute('delete from _sqlx_migrations where version = ?', (v,))
c.commit()",
        &[store],
    );
    assert!(gw.start().is_err(), "serve accepted an older schema");
    let log = gw.log();
    assert!(
        log.contains("airlock store migrate") && log.contains("schema version"),
        "{log}"
    );
    let cli = gw.cli(&["token", "list"]);
    assert!(!cli.status.success(), "the CLI also refuses it");

    let migrated: Value =
        serde_json::from_str(&gw.cli_ok(&["store", "migrate", "--json"])).unwrap();
    assert_eq!(migrated["applied"], 1, "{migrated}");
    assert_eq!(
        migrated["to"].as_i64().unwrap(),
        migrated["from"].as_i64().unwrap() + 1
    );
    let again: Value = serde_json::from_str(&gw.cli_ok(&["store", "migrate", "--json"])).unwrap();
    assert_eq!(again["applied"], 0, "{again}");
    gw.start().unwrap();
    let out = psql(&gw.conn("shop", &token), &["select 1"]);
    assert!(out.ok, "{out:?}");
    gw.stop();

    // `serve --migrate` does it in one step.
    python(
        "import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
v = c.execute('select max(version) from _sqlx_migrations').fetchone()[0]
c.execute('drop table console_signins')
c.execute('drop table console_flows')
c.execute('delete from _sqlx_migrations where version = ?', (v,))
c.commit()",
        &[store],
    );
    let mut migrating = Command::new(bin())
        .args(["serve", "--migrate", "--config"])
        .arg(gw.config_path())
        .env("AIRLOCK_TEST_PW_SHOP", airlock_testkit::APP_PASSWORD)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(gw.dir.join("migrate.log")).unwrap())
        .spawn()
        .unwrap();
    let listening = airlock_testkit::wait_port(gw.port, std::time::Duration::from_secs(20));
    assert!(
        listening.is_ok(),
        "serve --migrate: {}",
        std::fs::read_to_string(gw.dir.join("migrate.log")).unwrap_or_default()
    );
    let out = psql(&gw.conn("shop", &token), &["select 1"]);
    let _ = Command::new("kill")
        .arg(migrating.id().to_string())
        .status();
    let _ = migrating.wait();
    assert!(out.ok, "{out:?}");

    // A newer store (a later release migrated it) is refused, by serve and by migrate.
    python(
        "import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
c.execute(\"insert into _sqlx_migrations (version, description, installed_on, success, checksum, execution_time) values (9999, 'future', '2027-01-01', 1, x'00', 0)\")
c.commit()",
        &[store],
    );
    assert!(gw.start().is_err(), "serve accepted a newer schema");
    assert!(gw.log().contains("newer than this airlock"), "{}", gw.log());
    let migrate = gw.cli(&["store", "migrate"]);
    assert!(!migrate.status.success());
    assert!(String::from_utf8_lossy(&migrate.stderr).contains("newer than this airlock"));
}
