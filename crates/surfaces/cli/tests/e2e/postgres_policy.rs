//! Policy on the wire: default deny, read-only that means read-only, refusals that never
//! reach the server and leave client and server agreeing on the transaction state.

use airlock_testkit::{Postgres, psql};

use crate::{Fixture, events_of, py};

pub(crate) const READ_ONLY: &str = r#"
@id("connect")
permit(principal in Group::"ai-agents", action == Action::"connect", resource == Target::"shop");
@id("agents-read-only")
@reason("this target allows SELECT only")
permit(principal in Group::"ai-agents", action == Sql::Action::"select", resource in Target::"shop");
@id("agents-safe-functions")
permit(principal in Group::"ai-agents", action == Sql::Action::"call", resource in Target::"shop")
  when { resource.volatility == "immutable" || resource.volatility == "stable" };
@id("agents-session")
permit(principal in Group::"ai-agents", action in Sql::Action::"session", resource in Target::"shop");
"#;

fn orders(db: &str) -> String {
    Postgres::shared()
        .sql_as("app", "apppw", db, "select count(*) from orders")
        .unwrap()
}

fn read_only(prefix: &str) -> Fixture {
    Fixture::with(prefix, |b| b.policy(Some(READ_ONLY)))
}

#[test]
fn denied_statements_never_reach_the_server() {
    let f = read_only("pol_deny");
    for sql in [
        "delete from orders where id = 1",
        "delete from orders",
        "update orders set total = 0",
        "insert into orders(customer_id, total) values (1, 1)",
        "truncate orders",
        "drop table orders",
        "select 1; delete from orders",
        "with d as (delete from orders returning *) select count(*) from d",
        "explain analyze delete from orders",
        "select * into stolen from orders",
        "do $$ begin delete from orders; end $$",
        "prepare p as delete from orders",
        "copy orders from program 'true'",
        "create rule r as on insert to customers do also delete from orders",
    ] {
        let out = psql(&f.conn(), &[sql]);
        assert!(!out.ok, "{sql} ran: {out:?}");
        assert!(out.stderr.contains("airlock:"), "{sql}: {}", out.stderr);
        assert_eq!(orders(&f.db), "100", "{sql} changed data");
    }
    let out = psql(&f.conn(), &["delete from orders where id = 1"]);
    assert!(out.stderr.contains("DELETE on public.orders denied by policy \"agents-read-only\": this target allows SELECT only"), "{}", out.stderr);
    assert!(
        out.stderr.contains("permitted there: SELECT"),
        "{}",
        out.stderr
    );
    // The refusal is recorded with its decision.
    let s = f.gw.last_session_of("agent", "shop");
    let q = &events_of(&s, "query")[0];
    assert_eq!(q["decision"], "deny");
    assert!(
        q["detail"]["actions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "delete public.orders"),
        "{q}"
    );
    assert!(!q["detail"]["policy_version"].as_str().unwrap().is_empty());
}

#[test]
fn read_only_means_read_only_even_through_functions() {
    let f = read_only("pol_funcs");
    let out = psql(
        &f.conn(),
        &["select count(*), max(total), lower('X'), now() is not null from orders"],
    );
    assert!(out.ok, "safe functions are allowed: {out:?}");
    assert_eq!(out.stdout, "100|100|x|t\n");
    // Volatile only by reading the clock or waiting: allowed too.
    let out = psql(
        &f.conn(),
        &["select pg_sleep(0), clock_timestamp() is not null"],
    );
    assert_eq!(out.stdout, "|t\n", "{out:?}");
    for sql in [
        "select pg_terminate_backend(pg_backend_pid())",
        "select set_config('statement_timeout', '1', false)",
        "select lo_import('/etc/passwd')",
        "select pg_read_file('/etc/passwd')",
        "select 1 limit (select pg_terminate_backend(1))::int",
        "values (setseed(0.5))",
    ] {
        let out = psql(&f.conn(), &[sql]);
        assert!(!out.ok, "{sql} ran: {out:?}");
        assert!(
            out.stderr.contains("CALL of function"),
            "{sql}: {}",
            out.stderr
        );
    }
}

#[test]
fn extended_protocol_denials_keep_the_transaction_consistent() {
    let f = read_only("pol_ext");
    let r = py("policy_extended", &f.conn());
    assert_eq!(r["select"], 50);
    assert_eq!(r["delete"], "42501", "{r}");
    assert!(
        r["delete_message"]
            .as_str()
            .unwrap()
            .contains("DELETE on public.orders"),
        "{r}"
    );
    // psycopg runs in a transaction: after the denial, client and server both hold it failed.
    assert_eq!(r["status_after_denial"], "INERROR", "{r}");
    assert_eq!(r["in_failed_tx"], "25P02", "{r}");
    assert_eq!(r["after_rollback"], 100);
    assert_eq!(orders(&f.db), "100");
}

#[test]
fn a_denial_inside_begin_fails_the_transaction_on_both_sides() {
    let f = read_only("pol_tx");
    let mut child = std::process::Command::new("psql")
        .arg(f.conn())
        .args(["-X", "-At", "-v", "ON_ERROR_STOP=0"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"begin;\ndelete from orders where id = 3;\nselect 'after';\nrollback;\nselect 'clean';\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("denied by policy \"agents-read-only\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("current transaction is aborted"),
        "the server agrees the transaction failed: {stderr}"
    );
    assert!(!stdout.contains("after"), "{stdout}");
    assert!(stdout.contains("clean"), "{stdout}");
    assert_eq!(orders(&f.db), "100");
}

#[test]
fn sql_prepare_and_execute_are_decided_as_the_prepared_statement() {
    let f = read_only("pol_prep");
    let out = psql(
        &f.conn(),
        &["prepare q(int) as select count(*) from orders where customer_id = $1; execute q(1)"],
    );
    assert_eq!(out.stdout, "PREPARE\n50\n", "{out:?}");
    let out = psql(&f.conn(), &["execute nosuch(1)"]);
    assert!(out.stderr.contains("unknown to Airlock"), "{out:?}");
}

#[test]
fn connect_is_decided_and_no_policy_means_nothing_is_permitted() {
    let f = read_only("pol_connect");
    let other = f.gw.token("outsider", &["visitors"]);
    let out = psql(&f.gw.conn("shop", &other), &["select 1"]);
    assert!(
        !out.ok
            && out
                .stderr
                .contains("connecting to target \"shop\" is not permitted"),
        "{out:?}"
    );

    let g = Fixture::with("pol_none", |b| b.policy(None));
    let out = psql(&g.conn(), &["select 1"]);
    assert!(
        !out.ok && out.stderr.contains("no policy is configured"),
        "{out:?}"
    );
}

#[test]
fn unparseable_statements_are_refused_with_the_servers_message() {
    let f = read_only("pol_parse");
    let out = psql(&f.conn(), &["selec 1"]);
    assert!(
        out.stderr
            .contains("ERROR:  syntax error at or near \"selec\"\nLINE 1: selec 1\n        ^"),
        "{out:?}"
    );
    let s = f.gw.last_session_of("agent", "shop");
    let q = &events_of(&s, "query")[0];
    assert_eq!(q["decision"], "deny");
    assert!(
        q["detail"]["reason"]
            .as_str()
            .unwrap()
            .contains("could not be parsed, so it was not run: syntax error at or near"),
        "{q}"
    );
    let out = psql(&f.conn(), &["select 'still fine'"]);
    assert_eq!(out.stdout, "still fine\n");
}

#[test]
fn observe_only_policies_record_without_enforcing() {
    let policy = "@id(\"all\") permit(principal, action, resource);\n@id(\"watch-deletes\") @enforce(\"false\") forbid(principal, action == Sql::Action::\"delete\", resource);";
    let f = Fixture::with("pol_observe", |b| b.policy(Some(policy)));
    let out = psql(&f.conn(), &["delete from orders where id = 1"]);
    assert!(out.ok, "{out:?}");
    assert_eq!(orders(&f.db), "99");
    let s = f.gw.last_session_of("agent", "shop");
    let q = &events_of(&s, "query")[0];
    assert_eq!(q["decision"], "allow");
    assert_eq!(q["detail"]["observed"], "deny", "{q}");
}

#[test]
fn policy_reload_applies_to_open_sessions_next_statements() {
    let f = Fixture::with("pol_reload", |b| {
        b.policy(Some(READ_ONLY))
            .listener("allow_plaintext_loopback = true")
    });
    let mut r = crate::raw::Raw::ready(f.gw.port, "shop", &f.token);
    let msgs = r.query("delete from orders where id = 5");
    assert!(
        msgs.iter()
            .any(|m| m.tag == b'E' && m.field(b'C').as_deref() == Some("42501"))
    );
    f.gw.write_policy(&format!("{READ_ONLY}\n@id(\"now-deletes\") permit(principal in Group::\"ai-agents\", action == Sql::Action::\"delete\", resource in Target::\"shop\");"));
    f.gw.signal("HUP");
    let mut reloaded = false;
    for _ in 0..100 {
        if f.gw.log().contains("configuration and secrets reloaded") {
            reloaded = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(reloaded);
    let msgs = r.query("delete from orders where id = 5");
    assert!(
        msgs.iter().any(|m| m.tag == b'C'),
        "the open session's next statement uses the new policy"
    );
    assert_eq!(orders(&f.db), "99");
}

#[test]
fn standard_conforming_strings_off_is_followed() {
    let policy = format!(
        "{READ_ONLY}\n@id(\"scs\") permit(principal in Group::\"ai-agents\", action == Sql::Action::\"set\", resource in Target::\"shop\") when {{ context.variable == \"standard_conforming_strings\" }};"
    );
    let f = Fixture::with("pol_scs", |b| b.policy(Some(&policy)));
    let trap = r"SELECT '\', $$'; DROP TABLE orders; --$$";
    // With the default (on) it is one harmless SELECT, and it runs.
    let out = psql(&f.conn(), &[trap]);
    assert!(out.ok, "{out:?}");
    // With it off, the same text is a SELECT and a DROP: refused.
    let out = psql(&f.conn(), &["set standard_conforming_strings = off", trap]);
    assert!(
        !out.ok && out.stderr.contains("DROP on public.orders"),
        "{out:?}"
    );
    assert_eq!(orders(&f.db), "100");
}

#[test]
fn pipelined_statements_are_decided_as_the_server_will_parse_them() {
    use crate::raw::{Raw, message};
    let policy = format!(
        "{READ_ONLY}\n@id(\"scs\") permit(principal in Group::\"ai-agents\", action == Sql::Action::\"set\", resource in Target::\"shop\");\n@id(\"no-customers\") forbid(principal, action, resource == Table::\"public.customers\");"
    );
    let f = Fixture::with("pol_pipe", |b| {
        b.policy(Some(&policy))
            .listener("allow_plaintext_loopback = true")
    });
    let mut r = Raw::ready(f.gw.port, "shop", &f.token);
    // SET and the trap in one write: the trap must be parsed with the new setting.
    let mut batch = message(b'Q', b"set standard_conforming_strings = off\0");
    batch.extend(trap_query());
    r.send(&batch);
    let errors = r.errors_until_ready(2);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, "42501", "{errors:?}");
    assert!(errors[0].1.contains("DROP on public.orders"), "{errors:?}");
    assert_eq!(orders(&f.db), "100");

    // The same through the extended protocol: SET runs at Execute/Sync, the trap after it.
    r.query("set standard_conforming_strings = on");
    let mut batch = message(b'P', b"\0set standard_conforming_strings = off\0\0\0");
    batch.extend(message(b'B', b"\0\0\0\0\0\0\0\0"));
    batch.extend(message(b'E', b"\0\0\0\0\0"));
    batch.extend(message(b'S', b""));
    batch.extend(trap_query());
    r.send(&batch);
    let errors = r.errors_until_ready(2);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].1.contains("DROP on public.orders"), "{errors:?}");
    assert_eq!(orders(&f.db), "100");

    // A refusal pipelined behind an allowed query reaches the client as Airlock's error.
    let mut batch = message(b'Q', b"select 1\0");
    batch.extend(message(b'Q', b"delete from orders where id = 2\0"));
    r.send(&batch);
    let seen = r.errors_until_ready(2);
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0, "42501", "{seen:?}");
    assert!(
        !seen[0].1.contains("airlock_denied"),
        "the marker leaked: {seen:?}"
    );

    // An alias does not let a forbidden table ride on a cached decision.
    let ok = r.query("select * from orders o where id = 1");
    assert!(ok.iter().any(|m| m.tag == b'D'));
    let denied = r.query("select * from customers o where id = 1");
    assert!(
        denied.iter().any(|m| m.tag == b'E'),
        "customers was read through a cached decision"
    );
    assert!(!denied.iter().any(|m| m.tag == b'D'));

    // Ending a transaction reverts SET LOCAL (and a rollback undoes SET): what is
    // pipelined behind COMMIT or ROLLBACK is parsed with the setting restored.
    for end in ["commit", "rollback"] {
        r.query("set standard_conforming_strings = off");
        r.query("begin");
        r.query("set local standard_conforming_strings = on");
        let mut batch = message(b'Q', format!("{end}\0").as_bytes());
        batch.extend(trap_query());
        r.send(&batch);
        let errors = r.errors_until_ready(2);
        assert_eq!(errors.len(), 1, "{end}: {errors:?}");
        assert!(
            errors[0].1.contains("DROP on public.orders"),
            "{end}: {errors:?}"
        );
        assert_eq!(orders(&f.db), "100");
        r.query("set standard_conforming_strings = on");
    }
}

#[test]
fn startup_parameters_are_decided_like_set() {
    let f = read_only("pol_startup");
    let out = psql(
        &format!("{} options='-c role=postgres'", f.conn()),
        &["select current_user"],
    );
    assert!(
        !out.ok && out.stderr.contains("startup parameter is not permitted"),
        "{out:?}"
    );
    let out = psql(
        &format!("{} options='-c search_path=pg_catalog'", f.conn()),
        &["select 1"],
    );
    assert!(!out.ok, "{out:?}");
    let out = psql(&format!("{} options='-d 5'", f.conn()), &["select 1"]);
    assert!(
        !out.ok && out.stderr.contains("may only set parameters"),
        "{out:?}"
    );
    // Harmless settings need no permit.
    let out = psql(
        &format!(
            "{} application_name=crew options='-c statement_timeout=5s'",
            f.conn()
        ),
        &["show statement_timeout"],
    );
    assert_eq!(out.stdout, "5s\n", "{out:?}");
}

/// A Query that is harmless with `standard_conforming_strings = on` and drops `orders`
/// with it off: whoever parses it must use the setting the server will use.
fn trap_query() -> Vec<u8> {
    crate::raw::message(b'Q', b"SELECT '\\', $$'; DROP TABLE orders; --$$\0")
}
