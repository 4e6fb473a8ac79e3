//! Identity end to end: access tokens from a real OIDC provider (npm `oidc-provider`) as
//! the psql password, refused tokens, key rotation at the provider, the provider down,
//! credentials that expire or are revoked while a session is open, and `whoami`.

use std::process::Command;
use std::time::{Duration, Instant};

use airlock_testkit::{Airlock, AirlockBuilder, Idp, Postgres, psql};
use base64::Engine;
use serde_json::Value;

use crate::postgres_policy::READ_ONLY;
use crate::{bin, events_of};

fn oidc_config(idp: &Idp, extra: &str) -> String {
    format!(
        "\n[identity]\nexpiry_grace = \"0s\"\n\n[[identity.oidc]]\nname = \"local\"\nissuer = \"{}\"\naudiences = [\"urn:airlock\"]\nprincipal_claim = \"client_id\"\ngroups_claim = \"groups\"\nleeway = \"0s\"\n{extra}\n",
        idp.issuer()
    )
}

fn gateway(prefix: &str, idp: &Idp) -> (Airlock, String) {
    gateway_with(prefix, idp, "")
}

fn gateway_with(prefix: &str, idp: &Idp, extra: &str) -> (Airlock, String) {
    let pg = Postgres::shared();
    let db = pg.create_database(prefix);
    let gw = AirlockBuilder::new(bin())
        .target("shop", pg, &db)
        .policy(Some(READ_ONLY))
        .extra(&oidc_config(idp, ""))
        .extra(extra)
        .start();
    (gw, db)
}

fn conn(gw: &Airlock, user: &str, token: &str) -> String {
    format!(
        "host=127.0.0.1 port={} dbname=shop user={user} password={token} sslmode=require",
        gw.port
    )
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[test]
fn an_oidc_access_token_is_the_password_and_its_groups_decide() {
    let idp = Idp::start("k1");
    let api_port = airlock_testkit::free_port();
    let (gw, _db) = gateway_with(
        "id_ok",
        &idp,
        &format!("\n[api]\nlisten = \"127.0.0.1:{api_port}\"\n"),
    );
    let jwt = idp.token("agent-1");
    // A bearer token on the admin API, like on the PostgreSQL listener.
    airlock_testkit::wait_port(api_port, Duration::from_secs(10)).unwrap();
    let out = Command::new("curl")
        .args(["-sk", "-H", &format!("Authorization: Bearer {jwt}")])
        .arg(format!("https://127.0.0.1:{api_port}/api/whoami"))
        .output()
        .unwrap();
    let who: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(who["principal"], "agent-1", "{who}");
    assert_eq!(who["groups"], serde_json::json!(["ai-agents"]));
    let c = conn(&gw, "agent-1", &jwt);
    let out = psql(&c, &["select count(*) from orders"]);
    assert!(out.ok, "{out:?}");
    assert_eq!(out.stdout.trim(), "100");
    // Groups from the token: ai-agents may read, not delete.
    let out = psql(&c, &["delete from orders where id = 1"]);
    assert!(
        !out.ok && out.stderr.contains("agents-read-only"),
        "{out:?}"
    );
    let s = gw.last_session_of("agent-1", "shop");
    let connect = events_of(&s, "connect")[0];
    assert_eq!(connect["detail"]["principal_source"], "oidc");
    assert_eq!(connect["detail"]["issuer"], idp.issuer().as_str());
    assert_eq!(
        connect["detail"]["groups"],
        serde_json::json!(["ai-agents"])
    );
    assert!(
        connect["detail"]["token_id"]
            .as_str()
            .is_some_and(|t| !t.is_empty()),
        "{connect}"
    );
    assert!(connect["detail"]["credential_expires_at"].is_string());
    // Neither the token nor its signature is recorded or logged.
    let sig = jwt.rsplit('.').next().unwrap();
    assert!(!s.to_string().contains(sig));
    assert!(!gw.log().contains(sig));
    // whoami reads it the same way.
    let who: Value =
        serde_json::from_str(&gw.cli_ok(&["whoami", "--token", &jwt, "--json"])).unwrap();
    assert_eq!(who["principal"], "agent-1");
    assert_eq!(who["groups"], serde_json::json!(["ai-agents"]));
    assert_eq!(who["source"], "oidc");
    assert_eq!(who["issuer"], idp.issuer().as_str());
    let service = gw.token("svc", &["ai-agents"]);
    let who: Value =
        serde_json::from_str(&gw.cli_ok(&["whoami", "--token", &service, "--json"])).unwrap();
    assert_eq!(who["source"], "service_token");
    let bad = gw.cli(&["whoami", "--token", "alk_nope"]);
    assert_eq!(bad.status.code(), Some(1));
}

#[test]
fn foreign_forged_and_unsigned_tokens_are_refused() {
    let idp = Idp::start("k1");
    let other = Idp::start("k9");
    let (gw, _db) = gateway("id_bad", &idp);
    let refused = |token: &str, needle: &str| {
        let out = psql(&conn(&gw, "agent-1", token), &["select 1"]);
        assert!(!out.ok, "accepted: {needle}");
        assert!(
            out.stderr.contains("password authentication failed"),
            "{}",
            out.stderr
        );
        assert!(out.stderr.contains(needle), "{needle}: {}", out.stderr);
        let sig = token.rsplit('.').next().unwrap_or("");
        if sig.len() > 8 {
            assert!(!out.stderr.contains(sig));
        }
    };
    refused(&idp.token("other-aud"), "audience");
    refused(
        &other.token("agent-1"),
        "no [[identity.oidc]] provider has issuer",
    );
    let jwt = idp.token("agent-1");
    let (head, sig) = jwt.rsplit_once('.').unwrap();
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    refused(
        &format!("{head}.{flipped}{}", &sig[1..]),
        "signature does not verify",
    );
    let payload = jwt.split('.').nth(1).unwrap();
    refused(
        &format!("{}.{payload}.", b64(br#"{"alg":"none","typ":"JWT"}"#)),
        "does not accept tokens signed with none",
    );
    // Every refusal is recorded, without the token.
    let failures: Vec<_> = gw
        .sessions()
        .into_iter()
        .filter(|s| s["principal"].is_null())
        .collect();
    assert!(failures.len() >= 4, "{failures:?}");
}

#[test]
fn keys_rotate_at_the_provider_and_cached_keys_outlive_an_outage() {
    let mut idp = Idp::start("first");
    let (gw, _db) = gateway("id_rotate", &idp);
    let first = idp.token("agent-1");
    assert!(psql(&conn(&gw, "agent-1", &first), &["select 1"]).ok);
    let fetched = Instant::now();
    // The provider goes down: the keys Airlock holds keep verifying.
    idp.stop();
    let out = psql(&conn(&gw, "agent-1", &first), &["select 2"]);
    assert!(
        out.ok,
        "cached keys did not work with the provider down: {out:?}"
    );
    // It comes back with a new key: a token signed with it names an unknown kid, which
    // makes Airlock fetch the keys again (at most once per 10 s).
    idp.restart("second");
    let second = idp.token("agent-1");
    let wait = Duration::from_secs(11).saturating_sub(fetched.elapsed());
    std::thread::sleep(wait);
    let out = psql(&conn(&gw, "agent-1", &second), &["select 3"]);
    assert!(
        out.ok,
        "a token signed with the rotated key was refused: {out:?}"
    );
}

#[test]
fn a_token_that_expires_mid_session_ends_it_at_the_next_statement() {
    let idp = Idp::start("k1");
    let (gw, _db) = gateway("id_expire", &idp);
    // `brief` tokens live 4 s.
    let brief = idp.token("brief");
    let r = crate::py_interactive("second_statement", &conn(&gw, "brief", &brief), || {
        std::thread::sleep(Duration::from_secs(5))
    });
    assert_eq!(r["first"], 100);
    assert!(r["second"].is_null(), "{r}");
    assert_eq!(r["sqlstate"], "28000", "{r}");
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("reconnect with a fresh token"),
        "{r}"
    );
    let s = gw.last_session_of("brief", "shop");
    let refused = events_of(&s, "refused");
    assert!(
        refused[0]["detail"]["reason"]
            .as_str()
            .unwrap()
            .contains("expired"),
        "{s}"
    );
    let disconnect = events_of(&s, "disconnect");
    assert_eq!(disconnect[0]["detail"]["reason"], "credential_ended");
}

#[test]
fn a_revoked_service_token_ends_open_sessions_at_their_next_statement() {
    let pg = Postgres::shared();
    let db = pg.create_database("id_revoke");
    let gw = AirlockBuilder::new(bin())
        .target("shop", pg, &db)
        .policy(Some(READ_ONLY))
        .start();
    let token = gw.token("agent", &["ai-agents"]);
    let r = crate::py_interactive("second_statement", &gw.conn("shop", &token), || {
        gw.cli_ok(&["token", "revoke", "agent"]);
        // The gateway re-reads revocations every second.
        std::thread::sleep(Duration::from_millis(1500));
    });
    assert_eq!(r["first"], 100);
    assert_eq!(r["sqlstate"], "28000", "{r}");
    assert!(
        r["message"].as_str().unwrap().contains("was revoked"),
        "{r}"
    );
    // A new session with it is refused outright.
    let out = psql(&gw.conn("shop", &token), &["select 1"]);
    assert!(!out.ok && out.stderr.contains("revoked"), "{out:?}");
}
