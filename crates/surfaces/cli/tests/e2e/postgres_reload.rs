//! Secret rotation: after the password changes and the gateway reloads (SIGHUP), new
//! sessions use the new value while an open session is not disturbed.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use airlock_testkit::{Airlock, AirlockBuilder, Postgres, psql};

use crate::bin;

#[test]
fn secret_rotation_by_sighup_keeps_open_sessions_and_serves_new_ones() {
    let pg = Postgres::shared();
    let db = pg.create_database("reload");
    let role = pg.create_role("rot_", "old-secret");
    let gw = started_with_file_secret(pg, &db, &role, "");
    let token = gw.token("agent", &["g"]);
    let conn = gw.conn("shop", &token);

    // A session opens with the old secret and stays open.
    let script = airlock_testkit::workspace_root().join("tests/clients/python/pg_client.py");
    let mut open = Command::new(airlock_testkit::python())
        .arg(script)
        .arg("session_alive")
        .env("AIRLOCK_CONN", &conn)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(open.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");

    // The password changes at the server: until the gateway reloads, new sessions fail
    // with an error that points at the gateway's configuration.
    pg.superuser_sql(
        "postgres",
        &format!("alter role {role} password 'new-secret'"),
    )
    .unwrap();
    let out = psql(&conn, &["select 1"]);
    assert!(
        !out.ok && out.stderr.contains("rejected the credential Airlock holds"),
        "{out:?}"
    );

    // Rotate the file and reload.
    std::fs::write(gw.dir.join("secrets/shop"), "new-secret\n").unwrap();
    gw.signal("HUP");
    let mut reloaded = false;
    for _ in 0..100 {
        if gw.log().contains("configuration and secrets reloaded") {
            reloaded = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(reloaded, "{}", gw.log());
    let out = psql(&conn, &["select current_user"]);
    assert_eq!(out.stdout.trim(), role, "{out:?}");

    // The session opened before the rotation is undisturbed.
    open.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert!(open.wait().unwrap().success());
    let r: serde_json::Value = serde_json::from_str(rest.trim()).unwrap();
    assert_eq!(r["first"], role.as_str());
    assert_eq!(r["second"], 2);

    // A reload with a broken secret keeps the running configuration.
    std::fs::remove_file(gw.dir.join("secrets/shop")).unwrap();
    gw.signal("HUP");
    for _ in 0..100 {
        if gw.log().contains("reload failed") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(gw.log().contains("reload failed"));
    assert!(
        !gw.log().contains("new-secret") && !gw.log().contains("old-secret"),
        "a secret reached the log"
    );
    let out = psql(&conn, &["select 'still serving'"]);
    assert_eq!(out.stdout, "still serving\n", "{out:?}");
}

#[test]
fn a_watched_secret_file_rotates_without_a_signal() {
    let pg = Postgres::shared();
    let db = pg.create_database("watch");
    let role = pg.create_role("watch_", "old-secret");
    let gw = started_with_file_secret(pg, &db, &role, "watch = true");
    let token = gw.token("agent", &["g"]);
    let conn = gw.conn("shop", &token);
    let r = crate::py_interactive("session_alive", &conn, || {
        pg.superuser_sql(
            "postgres",
            &format!("alter role {role} password 'new-secret'"),
        )
        .unwrap();
        // Like a secret mount: the file is replaced, nobody signals the gateway.
        std::fs::write(gw.dir.join("secrets/shop.tmp"), "new-secret\n").unwrap();
        std::fs::rename(gw.dir.join("secrets/shop.tmp"), gw.dir.join("secrets/shop")).unwrap();
        let mut reloaded = false;
        for _ in 0..100 {
            if gw.log().contains("a watched file changed")
                && gw.log().contains("configuration and secrets reloaded")
            {
                reloaded = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert!(reloaded, "{}", gw.log());
        let out = psql(&conn, &["select current_user"]);
        assert_eq!(out.stdout.trim(), role, "{out:?}");
    });
    assert_eq!(r["first"], role.as_str());
    assert_eq!(r["second"], 2, "the open session broke: {r}");
}

/// A gateway whose target `shop` logs in as `role` with the password in the file
/// `secrets/shop` (holding `old-secret`), started; `server` is added to `[server]`.
fn started_with_file_secret(pg: &Postgres, db: &str, role: &str, server: &str) -> Airlock {
    let mut gw = AirlockBuilder::new(bin())
        .server(server)
        .raw_target(&format!(
            "[[targets]]\nname = \"shop\"\nkind = \"postgres\"\nhost = \"127.0.0.1\"\nport = {}\ndatabase = \"{db}\"\nuser = \"{role}\"\npassword = \"file:secrets/shop\"\nsslmode = \"disable\"\n",
            pg.port
        ))
        .write();
    std::fs::create_dir_all(gw.dir.join("secrets")).unwrap();
    std::fs::write(gw.dir.join("secrets/shop"), "old-secret\n").unwrap();
    gw.start().unwrap();
    gw
}
