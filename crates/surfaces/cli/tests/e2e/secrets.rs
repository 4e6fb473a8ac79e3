//! Airlock's encrypted secret store: `airlock secret set`, `secret:NAME` as a target's
//! password, rotation of the value with a session open, master key rotation, and a wrong
//! master key (a clear error, nothing served).

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use airlock_testkit::{Airlock, AirlockBuilder, Postgres, psql};

use crate::bin;

const KEY: &str = "1111111111111111111111111111111111111111111111111111111111111111";

/// `airlock secret set NAME` with `value` on stdin and `key` as the master key.
fn secret_set(gw: &Airlock, key: &str, name: &str, value: &str) -> std::process::Output {
    let mut child = Command::new(bin())
        .args(["secret", "set", name, "--config"])
        .arg(gw.config_path())
        .env("AIRLOCK_MASTER_KEY", key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{value}\n").as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn reloaded(gw: &Airlock, times: usize) {
    for _ in 0..100 {
        if gw
            .log()
            .matches("configuration and secrets reloaded")
            .count()
            >= times
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no reload: {}", gw.log());
}

#[test]
fn stored_secrets_serve_rotate_and_refuse_a_wrong_master_key() {
    let pg = Postgres::shared();
    let db = pg.create_database("secrets");
    let role = pg.create_role("sec_", "first-pw");
    let mut gw = AirlockBuilder::new(bin())
        .raw_target(&format!(
            "[[targets]]\nname = \"shop\"\nkind = \"postgres\"\nhost = \"127.0.0.1\"\nport = {}\ndatabase = \"{db}\"\nuser = \"{role}\"\npassword = \"secret:shop-pw\"\nsslmode = \"disable\"\n",
            pg.port
        ))
        .env("AIRLOCK_MASTER_KEY", KEY)
        .write();
    // Without the secret, check says what is missing.
    let out = gw.cli(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("airlock secret set shop-pw"),
        "{out:?}"
    );
    assert!(secret_set(&gw, KEY, "shop-pw", "first-pw").status.success());
    gw.cli_ok(&["check"]);
    // Stored sealed: neither the store file nor the listing holds the value.
    let listing = gw.cli_ok(&["secret", "list", "--json"]);
    assert!(
        listing.contains("shop-pw") && !listing.contains("first-pw"),
        "{listing}"
    );
    let db_bytes = std::fs::read(gw.store_path()).unwrap();
    assert!(!String::from_utf8_lossy(&db_bytes).contains("first-pw"));

    gw.start().unwrap();
    let token = gw.token("agent", &["g"]);
    let conn = gw.conn("shop", &token);
    let out = psql(&conn, &["select current_user"]);
    assert_eq!(out.stdout.trim(), role, "{out:?}");

    // A session stays open while the value rotates; new sessions use the new value.
    let r = crate::py_interactive("session_alive", &conn, || {
        pg.superuser_sql(
            "postgres",
            &format!("alter role {role} password 'second-pw'"),
        )
        .unwrap();
        assert!(
            secret_set(&gw, KEY, "shop-pw", "second-pw")
                .status
                .success()
        );
        gw.signal("HUP");
        reloaded(&gw, 1);
        let out = psql(&conn, &["select current_user"]);
        assert_eq!(
            out.stdout.trim(),
            role,
            "new sessions use the new value: {out:?}"
        );
    });
    assert_eq!(r["first"], role.as_str());
    assert_eq!(r["second"], 2, "the open session broke: {r}");

    // The master key rotates: everything is re-sealed; the old key no longer opens it.
    let new_key = gw.cli_ok(&["secret", "gen-key"]).trim().to_owned();
    assert_eq!(new_key.len(), 64);
    let key_file = gw.dir.join("new.key");
    std::fs::write(&key_file, &new_key).unwrap();
    gw.cli_ok(&[
        "secret",
        "rotate-key",
        "--new-key-file",
        key_file.to_str().unwrap(),
    ]);
    gw.stop();
    let log_before = gw.log().len();
    assert!(
        gw.start().is_err(),
        "served with the old (now wrong) master key"
    );
    let log = gw.log()[log_before..].to_owned();
    assert!(
        log.contains("master key does not open Airlock's secret store"),
        "{log}"
    );
    assert!(!log.contains(KEY) && !log.contains(&new_key));

    // With the new key it serves again.
    let mut gw = {
        let toml = std::fs::read_to_string(gw.config_path()).unwrap();
        let path = gw.dir.join("with-key-file.toml");
        std::fs::write(
            &path,
            format!("[secrets]\nmaster_key = \"file:new.key\"\n{toml}"),
        )
        .unwrap();
        std::fs::rename(&path, gw.config_path()).unwrap();
        gw
    };
    gw.start().unwrap();
    let out = psql(&gw.conn("shop", &token), &["select current_user"]);
    assert_eq!(out.stdout.trim(), role, "{out:?}");
    gw.cli_ok(&["secret", "delete", "shop-pw"]);
    assert_eq!(
        gw.cli(&["secret", "delete", "shop-pw"]).status.code(),
        Some(1)
    );
}
