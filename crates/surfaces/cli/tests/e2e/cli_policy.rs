//! `airlock policy schema|check|explain|replay`.

use airlock_testkit::psql;

use crate::Fixture;

const READ_ONLY: &str = "@id(\"read\") permit(principal in Group::\"ai-agents\", action in Sql::Action::\"read\", resource);\n@id(\"connect\") permit(principal, action == Action::\"connect\", resource);\n";

#[test]
fn policy_schema_check_and_explain() {
    let f = Fixture::with("cli_policy", |b| b.policy(Some(READ_ONLY)));
    let schema = f.gw.cli_ok(&["policy", "schema"]);
    assert!(
        schema.contains("entity Agent in [Group]") && schema.contains("namespace Sql"),
        "{schema}"
    );
    assert!(
        f.gw.cli_ok(&["policy", "check"])
            .starts_with("ok: 2 policies")
    );

    let examples = airlock_testkit::workspace_root().join("examples/policies");
    assert!(
        f.gw.cli_ok(&["policy", "check", "--path", examples.to_str().unwrap()])
            .starts_with("ok: ")
    );

    let bad = f.gw.dir.join("bad.cedar");
    std::fs::write(
        &bad,
        "permit(principal, action == Sql::Action::\"frobnicate\", resource);",
    )
    .unwrap();
    let out =
        f.gw.cli(&["policy", "check", "--path", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("frobnicate"));

    let explain = |extra: &[&str]| {
        let mut args = vec![
            "policy",
            "explain",
            "--principal",
            "agent",
            "--group",
            "ai-agents",
            "--target",
            "shop",
        ];
        args.extend_from_slice(extra);
        f.gw.cli_ok(&args)
    };
    let out = explain(&["--json", "delete from orders; select count(*) from orders"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["verdict"]["decision"], "deny");
    assert!(
        v["verdict"]["reason"]
            .as_str()
            .unwrap()
            .contains("DELETE on public.orders")
    );
    assert_eq!(v["statements"].as_array().unwrap().len(), 2);
    assert!(
        v["catalog"].as_str().unwrap().contains("catalog"),
        "volatility from the live target: {v}"
    );
    let out = explain(&["select count(*) from orders"]);
    assert!(out.contains("decision: allow"), "{out}");
}

#[test]
fn policy_replay_lists_what_the_current_policies_decide_differently() {
    let f = Fixture::with("cli_replay", |b| b.policy(Some(READ_ONLY)));
    psql(&f.conn(), &["select 1", "delete from orders where id = 1"]);
    // Until the session's end is stored, its events may not all be.
    f.gw.last_session_of("agent", "shop");
    let out =
        f.gw.cli_ok(&["policy", "replay", "--since", "1h", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["changed"].as_array().unwrap().len(), 0, "{v}");
    assert!(v["checked"].as_u64().unwrap() >= 2);
    // New policies: deletes are now allowed, selects forbidden.
    f.gw.write_policy(&format!("{READ_ONLY}\npermit(principal, action == Sql::Action::\"delete\", resource);\nforbid(principal, action == Sql::Action::\"select\", resource);"));
    let out =
        f.gw.cli_ok(&["policy", "replay", "--since", "1h", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let changed = v["changed"].as_array().unwrap();
    assert!(
        changed
            .iter()
            .any(|c| c["statement"] == "delete from orders where id = 1"
                && c["recorded"] == "deny"
                && c["now"]["decision"] == "allow"),
        "{v}"
    );
    assert!(
        changed
            .iter()
            .any(|c| c["statement"] == "select 1" && c["now"]["decision"] == "deny"),
        "{v}"
    );
}
