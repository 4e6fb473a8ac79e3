//! Who may connect: tokens, targets, TLS.

use airlock_testkit::psql;

use crate::raw::{Raw, startup_packet};
use crate::{Fixture, events_of, py};

fn plaintext() -> impl FnOnce(airlock_testkit::AirlockBuilder) -> airlock_testkit::AirlockBuilder {
    |b| b.listener("allow_plaintext_loopback = true")
}

#[test]
fn wrong_token_is_refused_with_28p01_and_recorded() {
    let f = Fixture::with("auth_wrong", plaintext());
    let (_r, m) = Raw::login(f.gw.port, "shop", "alk_not-a-real-token");
    assert_eq!(m.tag, b'E');
    assert_eq!(m.field(b'C').as_deref(), Some("28P01"));
    assert!(m.field(b'H').unwrap().contains("airlock token create"));
    let out = psql(&f.gw.conn("shop", "wrong"), &["select 1"]);
    assert!(
        !out.ok && out.stderr.contains("not a valid Airlock token"),
        "{out:?}"
    );
    let refused: Vec<_> =
        f.gw.sessions()
            .into_iter()
            .filter(|s| s["principal"].is_null())
            .collect();
    assert_eq!(refused.len(), 2);
    let s = f.gw.session(refused[0]["id"].as_str().unwrap());
    assert_eq!(events_of(&s, "auth_failure").len(), 1);
    assert!(
        !f.gw.log().contains("alk_not-a-real-token"),
        "a presented token reached the log"
    );
    assert!(
        !std::fs::read(f.gw.store_path())
            .unwrap()
            .windows(8)
            .any(|w| w == b"alk_not-"),
        "token in the store"
    );
}

#[test]
fn expired_and_revoked_tokens_are_refused_with_28p01() {
    let f = Fixture::with("auth_expired", plaintext());
    let expired = f.gw.cli_ok(&[
        "token", "create", "--name", "short", "--group", "g", "--ttl", "0s",
    ]);
    let expired = expired.lines().last().unwrap().trim().to_string();
    let (_r, m) = Raw::login(f.gw.port, "shop", &expired);
    assert_eq!(m.field(b'C').as_deref(), Some("28P01"));
    assert!(
        m.field(b'M').unwrap().contains("expired"),
        "{:?}",
        m.field(b'M')
    );

    let revoked = f.gw.token("gone", &["g"]);
    let (_r, ok) = Raw::login(f.gw.port, "shop", &revoked);
    assert_eq!(ok.tag, b'R');
    f.gw.cli_ok(&["token", "revoke", "gone"]);
    let (_r, m) = Raw::login(f.gw.port, "shop", &revoked);
    assert_eq!(m.field(b'C').as_deref(), Some("28P01"));
    assert!(m.field(b'M').unwrap().contains("revoked"));
}

#[test]
fn unknown_target_is_refused_with_3d000_naming_the_targets() {
    let f = Fixture::with("auth_target", plaintext());
    let (_r, m) = Raw::login(f.gw.port, "nosuch", &f.token);
    assert_eq!(m.field(b'C').as_deref(), Some("3D000"));
    assert!(m.field(b'D').unwrap().contains("shop"));
    let out = psql(&f.gw.conn("nosuch", &f.token), &["select 1"]);
    assert!(
        !out.ok && out.stderr.contains("target \"nosuch\" does not exist"),
        "{out:?}"
    );
}

#[test]
fn plaintext_is_refused_unless_allowed_for_loopback() {
    let f = Fixture::new("auth_tls");
    let conn = f.conn().replace("sslmode=require", "sslmode=disable");
    let out = psql(&conn, &["select 1"]);
    assert!(!out.ok && out.stderr.contains("requires TLS"), "{out:?}");
    // The refusal comes before the password is asked for.
    let mut r = Raw::connect(f.gw.port);
    r.send(&startup_packet(&[("user", "agent"), ("database", "shop")]));
    let m = r.read().unwrap();
    assert_eq!((m.tag, m.field(b'C').as_deref()), (b'E', Some("28000")));

    let g = Fixture::with("auth_plain", plaintext());
    let out = psql(
        &g.conn().replace("sslmode=require", "sslmode=disable"),
        &["select 'plain ok'"],
    );
    assert_eq!(out.stdout, "plain ok\n", "{out:?}");
}

#[test]
fn gssenc_is_declined_and_ssl_follows() {
    let f = Fixture::new("auth_gss");
    let mut r = Raw::connect(f.gw.port);
    let mut req = 8i32.to_be_bytes().to_vec();
    req.extend_from_slice(&80877104i32.to_be_bytes());
    r.send(&req);
    let mut b = [0u8; 1];
    std::io::Read::read_exact(&mut r.s, &mut b).unwrap();
    assert_eq!(b[0], b'N');
    let mut req = 8i32.to_be_bytes().to_vec();
    req.extend_from_slice(&80877103i32.to_be_bytes());
    r.send(&req);
    std::io::Read::read_exact(&mut r.s, &mut b).unwrap();
    assert_eq!(b[0], b'S');
}

#[test]
fn replication_connections_are_refused() {
    let f = Fixture::new("auth_repl");
    let out = psql(
        &format!("{} replication=database", f.conn()),
        &["IDENTIFY_SYSTEM"],
    );
    assert!(
        !out.ok
            && out
                .stderr
                .contains("replication connections are not available"),
        "{out:?}"
    );
}

#[test]
fn postgres_17_direct_tls_works_when_the_client_supports_it() {
    let f = Fixture::new("auth_direct");
    let r = py("direct_tls", &f.conn());
    if r.get("unsupported").is_some() {
        // libpq < 17 in this psycopg build: direct TLS is then exercised by the raw test below.
        assert!(r["libpq"].as_i64().unwrap() < 170000, "{r}");
    } else {
        assert_eq!(r["ok"], "direct", "{r}");
        let s = f.gw.last_session_of("agent", "shop");
        assert_eq!(events_of(&s, "connect")[0]["detail"]["direct_tls"], true);
    }
}
