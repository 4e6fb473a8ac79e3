//! The CLI's documented interface: check, token, sessions.

use airlock_testkit::AirlockBuilder;

use crate::bin;

#[test]
fn check_accepts_the_documented_config_and_points_at_bad_lines() {
    let gw = AirlockBuilder::new(bin())
        .raw_target("[[targets]]\nname = \"shop\"\nkind = \"postgres\"\nhost = \"127.0.0.1\"\nport = 15432\ndatabase = \"shop\"\nuser = \"app\"\npassword = \"env:SHOP_PG_PASSWORD\"\n")
        .env("SHOP_PG_PASSWORD", "x")
        .write();
    let ok = gw.cli(&["check"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let path = gw.config_path();
    let good = std::fs::read_to_string(&path).unwrap();
    let cases = [
        (
            good.replace("user = \"app\"", "user = \"app\"\nusr = \"x\""),
            "unknown field",
        ),
        (
            good.replace("env:SHOP_PG_PASSWORD", "hunter2"),
            "never a literal",
        ),
        (
            good.replace("port = 15432", "port = \"many\""),
            "invalid type",
        ),
        (
            good.replace("kind = \"postgres\"", "kind = \"oracle\""),
            "unknown variant",
        ),
        (
            format!(
                "{good}\n[[masking]]\nname = \"pii\"\ntargets = [\"crm\"]\ndetectors = [\"email\"]\n"
            ),
            "names target `crm`, which is not defined",
        ),
        (
            format!("{good}\n[[masking]]\nname = \"empty\"\n"),
            "masks nothing",
        ),
        (
            format!("{good}\n[[masking]]\nname = \"pii\"\ncolumns = [\"a.b.c.d\"]\n"),
            "schema.table.column",
        ),
        (
            format!(
                "{good}\n[[masking]]\nname = \"pii\"\nstyle = \"scramble\"\ncolumns = [\"x\"]\n"
            ),
            "unknown variant",
        ),
    ];
    for (text, needle) in cases {
        std::fs::write(&path, &text).unwrap();
        let out = gw.cli(&["check"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(
            err.contains(&format!("{}:", path.display())),
            "file named: {err}"
        );
        assert!(err.contains(needle), "{needle}: {err}");
        assert!(
            !err.contains("hunter2"),
            "a literal secret was echoed: {err}"
        );
        let line: usize = err.split(':').nth(1).unwrap().parse().unwrap();
        assert!(line > 1, "line number given: {err}");
    }
    // A reference that does not resolve.
    std::fs::write(
        &path,
        good.replace("SHOP_PG_PASSWORD", "AIRLOCK_SURELY_UNSET"),
    )
    .unwrap();
    let out = gw.cli(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("env:AIRLOCK_SURELY_UNSET"));
    // Approvals and the API: every mistake named, with its line where it has one.
    for (extra, needle) in [
        (
            "[[approvals.webhooks]]\nname = \"hook\"\nurl = \"http://hooks.example.com/x\"\nsecret = \"env:K\"\n",
            "webhook `hook`: an http:// URL is accepted only for a loopback host",
        ),
        (
            "[[approvals.webhooks]]\nname = \"hook\"\nurl = \"https://hooks.example.com/x\"\n",
            "format = \"json\" needs `secret",
        ),
        (
            "[[approvals.webhooks]]\nname = \"hook\"\nurl = \"https://hooks.example.com/x\"\nformat = \"teams\"\n",
            "unknown variant",
        ),
        (
            "[[approvals.webhooks]]\nname = \"hook\"\nurl = \"env:AIRLOCK_SURELY_UNSET_URL\"\nformat = \"slack\"\n",
            "AIRLOCK_SURELY_UNSET_URL",
        ),
        (
            "[approvals]\nexpire_after = \"0s\"\n",
            "expire_after must be longer than 0s",
        ),
        (
            "[api]\nlisten = \"0.0.0.0:18081\"\ntls = false\n",
            "tls = false is allowed only on a loopback address",
        ),
        (
            "[api]\nlisten = \"127.0.0.1:18081\"\ntls_cert = \"/nonexistent/api.crt\"\ntls_key = \"/nonexistent/api.key\"\n",
            "[api]",
        ),
    ] {
        std::fs::write(&path, format!("{good}\n{extra}")).unwrap();
        let out = gw.cli(&["check"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra}: {err}");
        assert!(err.contains(needle), "{needle}: {err}");
        assert!(
            !err.contains("hooks.example.com"),
            "a webhook URL was echoed: {err}"
        );
    }
    std::fs::write(
        &path,
        good.replace("user = \"app\"", "user = \"app\"\nhold_timeout = \"0s\""),
    )
    .unwrap();
    let out = gw.cli(&["check"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("hold_timeout must be longer than 0s"));
    std::fs::write(
        &path,
        format!("{good}\n[api]\nlisten = \"127.0.0.1:18081\"\n[approvals]\nexpire_after = \"30m\"\n[[approvals.webhooks]]\nname = \"slack\"\nurl = \"https://hooks.slack.com/services/T/B/X\"\nformat = \"slack\"\ngroups = [\"dba\"]\n"),
    )
    .unwrap();
    let ok = gw.cli(&["check"]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // Masking rules that only compiling can judge: an unknown detector, a bad regex.
    for (rule, needle) in [
        ("detectors = [\"emial\"]", "unknown detector `emial`"),
        ("regexes = { order_ref = \"ORD-(\" }", "order_ref"),
        ("regexes = { anything = \".*\" }", "anything"),
    ] {
        std::fs::write(
            &path,
            format!("{good}\n[[masking]]\nname = \"mine\"\n{rule}\n"),
        )
        .unwrap();
        let out = gw.cli(&["check"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{rule}: {err}");
        assert!(
            err.contains(needle) && err.contains("mine"),
            "{rule}: {err}"
        );
    }
}

#[test]
fn token_create_list_and_revoke() {
    let gw = AirlockBuilder::new(bin()).write();
    let out = gw.cli_ok(&[
        "token",
        "create",
        "--name",
        "crew-analyst",
        "--group",
        "ai-agents",
        "--group",
        "readers",
        "--ttl",
        "24h",
    ]);
    let token = out.lines().last().unwrap();
    assert!(token.starts_with("alk_") && !token.contains(' '), "{out}");
    let dup = gw.cli(&["token", "create", "--name", "crew-analyst"]);
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("already exists"));

    let list: serde_json::Value =
        serde_json::from_str(&gw.cli_ok(&["token", "list", "--json"])).unwrap();
    assert_eq!(list[0]["name"], "crew-analyst");
    assert_eq!(
        list[0]["groups"],
        serde_json::json!(["ai-agents", "readers"])
    );
    assert_eq!(list[0]["status"], "active");
    assert!(list[0]["expires_at"].is_string());
    assert!(
        !gw.cli_ok(&["token", "list"]).contains(token),
        "token list shows a token value"
    );
    let db = std::fs::read(gw.store_path()).unwrap();
    assert!(
        !db.windows(token.len()).any(|w| w == token.as_bytes()),
        "the token is stored in clear"
    );

    gw.cli_ok(&["token", "revoke", "crew-analyst"]);
    let list: serde_json::Value =
        serde_json::from_str(&gw.cli_ok(&["token", "list", "--json"])).unwrap();
    assert_eq!(list[0]["status"], "revoked");
    assert_eq!(
        gw.cli(&["token", "revoke", "nobody"]).status.code(),
        Some(1)
    );
}

#[test]
fn sessions_show_of_an_unknown_id_fails_cleanly() {
    let gw = AirlockBuilder::new(bin()).write();
    let out = gw.cli(&["sessions", "show", "no-such-id", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no session"));
    assert_eq!(gw.cli_ok(&["sessions", "list", "--json"]).trim(), "[]");
}
