//! Upstream authentication methods and TLS per target `sslmode`.

use airlock_testkit::{AirlockBuilder, Postgres, psql};

use crate::bin;

fn target(name: &str, pg: &Postgres, db: &str, user: &str, extra: &str) -> String {
    format!(
        "[[targets]]\nname = \"{name}\"\nkind = \"postgres\"\nhost = \"127.0.0.1\"\nport = {}\ndatabase = \"{db}\"\nuser = \"{user}\"\npassword = \"env:UP_PW\"\n{extra}\n",
        pg.port
    )
}

#[test]
fn scram_md5_and_cleartext_upstream_authentication() {
    let pg = Postgres::shared();
    let db = pg.create_database("upauth");
    let md5 = pg.create_role("md5_", "pw-1");
    let clear = pg.create_role("clear_", "pw-1");
    let scram = pg.create_role("scram_", "pw-1");
    let gw = AirlockBuilder::new(bin())
        .raw_target(&target("md5", pg, &db, &md5, "sslmode = \"disable\""))
        .raw_target(&target("clear", pg, &db, &clear, "sslmode = \"disable\""))
        .raw_target(&target("scram", pg, &db, &scram, "sslmode = \"disable\""))
        .env("UP_PW", "pw-1")
        .start();
    let token = gw.token("agent", &["g"]);
    for (t, role) in [("md5", &md5), ("clear", &clear), ("scram", &scram)] {
        let out = psql(&gw.conn(t, &token), &["select current_user"]);
        assert_eq!(out.stdout.trim(), role.as_str(), "{t}: {out:?}");
    }
    let method = pg
        .superuser_sql(
            "postgres",
            &format!("select rolpassword like 'md5%' from pg_authid where rolname = '{md5}'"),
        )
        .unwrap();
    assert_eq!(method, "t");
}

#[test]
fn upstream_tls_follows_sslmode() {
    let pg = Postgres::shared_tls();
    let db = pg.create_database("uptls");
    let ca = pg.ca_pem.clone().unwrap();
    let wrong_ca = airlock_testkit::scratch_dir("wrongca").join("ca.pem");
    // A valid CA that did not sign the server's certificate.
    std::fs::write(&wrong_ca, airlock_testkit::unrelated_ca_pem()).unwrap();
    let ssl_in_use = "select ssl from pg_stat_ssl where pid = pg_backend_pid()";
    let gw = AirlockBuilder::new(bin())
        .raw_target(&target("disable", pg, &db, "app", "sslmode = \"disable\""))
        .raw_target(&target("prefer", pg, &db, "app", "sslmode = \"prefer\""))
        .raw_target(&target("require", pg, &db, "app", "sslmode = \"require\""))
        .raw_target(&target(
            "verify",
            pg,
            &db,
            "app",
            &format!("sslmode = \"verify-full\"\nca_file = \"{}\"", ca.display()),
        ))
        .raw_target(&target(
            "wrongca",
            pg,
            &db,
            "app",
            &format!(
                "sslmode = \"verify-full\"\nca_file = \"{}\"",
                wrong_ca.display()
            ),
        ))
        .env("UP_PW", "apppw")
        .start();
    let token = gw.token("agent", &["g"]);
    for (t, expect) in [
        ("disable", "f"),
        ("prefer", "t"),
        ("require", "t"),
        ("verify", "t"),
    ] {
        let out = psql(&gw.conn(t, &token), &[ssl_in_use]);
        assert_eq!(out.stdout.trim(), expect, "{t}: {out:?}");
    }
    let out = psql(&gw.conn("wrongca", &token), &["select 1"]);
    assert!(
        !out.ok
            && out
                .stderr
                .contains("could not connect to target \"wrongca\""),
        "{out:?}"
    );

    // require against a server without TLS is refused; prefer falls back.
    let plain = Postgres::shared();
    let pdb = plain.create_database("upnotls");
    let gw2 = AirlockBuilder::new(bin())
        .raw_target(&target(
            "require",
            plain,
            &pdb,
            "app",
            "sslmode = \"require\"",
        ))
        .raw_target(&target(
            "prefer",
            plain,
            &pdb,
            "app",
            "sslmode = \"prefer\"",
        ))
        .env("UP_PW", "apppw")
        .start();
    let token = gw2.token("agent", &["g"]);
    let out = psql(&gw2.conn("require", &token), &["select 1"]);
    assert!(
        !out.ok && out.stderr.contains("does not offer TLS"),
        "{out:?}"
    );
    let out = psql(&gw2.conn("prefer", &token), &[ssl_in_use]);
    assert_eq!(out.stdout.trim(), "f", "{out:?}");
}
