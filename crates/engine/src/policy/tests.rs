//! Policy decisions over classified statements.

use super::*;
use crate::sql::{Classifier, ParseOptions};
use airlock_model::PrincipalSource;

fn engine(text: &str) -> PolicyEngine {
    PolicyEngine::from_sources(&[("test.cedar".into(), text.into())])
        .unwrap_or_else(|e| panic!("{e}"))
}

fn agent(groups: &[&str]) -> Principal {
    Principal {
        name: "crew".into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        source: PrincipalSource::ServiceToken,
        expires_at: None,
    }
}

fn shop() -> TargetRef {
    TargetRef {
        name: "shop".into(),
        kind: airlock_model::TargetKind::Postgres,
    }
}

struct Fixed(Volatility);
impl FunctionCatalog for Fixed {
    fn volatility(&self, _: Option<&str>, name: &str) -> Volatility {
        if name == "count" || name == "now" {
            self.0
        } else {
            Volatility::Volatile
        }
    }
}

fn decide(e: &PolicyEngine, groups: &[&str], sql: &str) -> Verdict {
    let statements = Classifier::new()
        .classify(sql, ParseOptions::default())
        .unwrap();
    let actions: Vec<Action> = statements
        .iter()
        .flat_map(|s| s.actions.iter().cloned().map(Action::Sql))
        .collect();
    e.decide_all(
        &agent(groups),
        &shop(),
        &actions,
        &Fixed(Volatility::Immutable),
    )
}

const READ_ONLY: &str = r#"
@id("agents-read-only")
permit(principal in Group::"ai-agents", action == Sql::Action::"select", resource in Target::"shop");
@id("agents-call-safe-functions")
permit(principal in Group::"ai-agents", action == Sql::Action::"call", resource in Target::"shop")
  when { resource.volatility == "immutable" || resource.volatility == "stable" };
@id("connect")
permit(principal in Group::"ai-agents", action == Action::"connect", resource == Target::"shop");
"#;

#[test]
fn schema_parses_and_the_starter_policies_validate() {
    schema::schema().unwrap();
    let e = engine(READ_ONLY);
    assert_eq!(e.len(), 3);
}

#[test]
fn read_only_means_read_only() {
    let e = engine(READ_ONLY);
    assert_eq!(
        decide(&e, &["ai-agents"], "select count(*) from orders").decision,
        Decision::Allow
    );
    for sql in [
        "delete from orders",
        "select pg_terminate_backend(1)",
        "select nextval('s')",
        "select * into t2 from orders",
        "explain analyze delete from orders",
        "with d as (delete from orders returning *) select * from d",
        "select 1; delete from orders",
        "do $$ begin delete from orders; end $$",
        "set role postgres",
    ] {
        let v = decide(&e, &["ai-agents"], sql);
        assert!(matches!(v.decision, Decision::Deny { .. }), "{sql}: {v:?}");
    }
    // Other groups get nothing.
    assert!(matches!(
        decide(&e, &["others"], "select 1").decision,
        Decision::Deny { .. }
    ));
}

#[test]
fn denial_names_the_action_and_what_is_permitted() {
    let e = engine(READ_ONLY);
    let v = decide(&e, &["ai-agents"], "delete from orders where id = 1");
    let Decision::Deny { reason } = v.decision else {
        panic!()
    };
    assert!(reason.contains("DELETE on public.orders"), "{reason}");
    assert!(reason.contains("permitted there: SELECT"), "{reason}");
    let e = engine(&format!(
        "{READ_ONLY}\n@id(\"no-drop\")\n@reason(\"never drop tables\")\nforbid(principal, action == Sql::Action::\"drop\", resource);\npermit(principal in Group::\"ai-agents\", action, resource);"
    ));
    let v = decide(&e, &["ai-agents"], "drop table orders");
    let Decision::Deny { reason } = v.decision else {
        panic!()
    };
    assert!(
        reason.contains("denied by policy \"no-drop\": never drop tables"),
        "{reason}"
    );
    assert_eq!(v.policies, vec!["no-drop".to_string()]);
}

#[test]
fn hold_annotation_asks_for_approval() {
    let e = engine(&format!(
        "{READ_ONLY}\n@id(\"delete-needs-dba\")\n@hold(\"dba\")\npermit(principal in Group::\"ai-agents\", action == Sql::Action::\"delete\", resource in Target::\"shop\") when {{ context.has_where }};"
    ));
    let v = decide(&e, &["ai-agents"], "delete from orders where id = 7");
    assert!(
        matches!(&v.decision, Decision::Hold { group, .. } if group == "dba"),
        "{v:?}"
    );
    // Without WHERE the hold policy does not apply: denied.
    assert!(matches!(
        decide(&e, &["ai-agents"], "delete from orders").decision,
        Decision::Deny { .. }
    ));
    // Hold plus deny in one string: the deny wins.
    assert!(matches!(
        decide(
            &e,
            &["ai-agents"],
            "delete from orders where id = 1; drop table orders"
        )
        .decision,
        Decision::Deny { .. }
    ));
}

#[test]
fn action_groups_cover_their_kinds() {
    let e = engine(
        "permit(principal, action in Sql::Action::\"session\", resource);\npermit(principal, action in Sql::Action::\"write\", resource);",
    );
    assert_eq!(decide(&e, &[], "begin").decision, Decision::Allow);
    // Session bookkeeping needs no permit, but can be forbidden.
    let e2 = engine("permit(principal, action == Sql::Action::\"select\", resource);");
    assert_eq!(decide(&e2, &[], "begin").decision, Decision::Allow);
    assert_eq!(
        decide(&e2, &[], "prepare p as select 1").decision,
        Decision::Allow
    );
    assert!(matches!(
        decide(&e2, &[], "prepare p as delete from t").decision,
        Decision::Deny { .. }
    ));
    let e3 = engine(
        "permit(principal, action == Sql::Action::\"select\", resource);\nforbid(principal, action == Sql::Action::\"transaction\", resource);",
    );
    assert!(matches!(
        decide(&e3, &[], "begin").decision,
        Decision::Deny { .. }
    ));
    assert_eq!(
        decide(&e, &[], "insert into t values (1)").decision,
        Decision::Allow
    );
    assert!(matches!(
        decide(&e, &[], "drop table t").decision,
        Decision::Deny { .. }
    ));
}

#[test]
fn observe_only_policies_are_recorded_not_enforced() {
    let e = engine(&format!(
        "{READ_ONLY}\n@id(\"watch-orders\")\n@enforce(\"false\")\nforbid(principal, action, resource == Table::\"public.orders\");"
    ));
    let v = decide(&e, &["ai-agents"], "select * from orders");
    assert_eq!(v.decision, Decision::Allow);
    assert!(matches!(v.observed, Some(Decision::Deny { .. })), "{v:?}");
}

#[test]
fn non_volatile_functions_need_no_permit_but_can_be_forbidden() {
    let e = engine("permit(principal, action == Sql::Action::\"select\", resource);");
    assert_eq!(
        decide(&e, &[], "select count(*), now() from orders").decision,
        Decision::Allow
    );
    assert!(matches!(
        decide(&e, &[], "select nextval('s')").decision,
        Decision::Deny { .. }
    ));
    let e = engine(
        "permit(principal, action == Sql::Action::\"select\", resource);\n@id(\"no-now\") forbid(principal, action == Sql::Action::\"call\", resource == Function::\"now\");",
    );
    assert!(matches!(
        decide(&e, &[], "select now()").decision,
        Decision::Deny { .. }
    ));
}

#[test]
fn volatility_comes_from_the_catalog() {
    let e = engine(READ_ONLY);
    let statements = Classifier::new()
        .classify("select now()", ParseOptions::default())
        .unwrap();
    let actions: Vec<Action> = statements[0]
        .actions
        .iter()
        .cloned()
        .map(Action::Sql)
        .collect();
    assert_eq!(
        e.decide_all(
            &agent(&["ai-agents"]),
            &shop(),
            &actions,
            &Fixed(Volatility::Stable)
        )
        .decision,
        Decision::Allow
    );
    assert!(matches!(
        e.decide_all(
            &agent(&["ai-agents"]),
            &shop(),
            &actions,
            &Fixed(Volatility::Volatile)
        )
        .decision,
        Decision::Deny { .. }
    ));
    assert!(matches!(
        e.decide_all(&agent(&["ai-agents"]), &shop(), &actions, &NoCatalog)
            .decision,
        Decision::Deny { .. }
    ));
}

#[test]
fn bad_policies_are_refused_with_their_location() {
    let err = PolicyEngine::from_sources(&[(
        "p.cedar".into(),
        "permit(principal, action, resource".into(),
    )])
    .err()
    .unwrap();
    assert!(err.to_string().starts_with("p.cedar"), "{err}");
    let err = PolicyEngine::from_sources(&[(
        "p.cedar".into(),
        "permit(principal, action == Sql::Action::\"frobnicate\", resource);".into(),
    )])
    .err()
    .unwrap();
    assert!(err.to_string().contains("frobnicate"), "{err}");
    let err = PolicyEngine::from_sources(&[(
        "p.cedar".into(),
        "@hold(\"x\") forbid(principal, action, resource);".into(),
    )])
    .err()
    .unwrap();
    assert!(err.to_string().contains("permit policies only"), "{err}");
    let dup = "@id(\"a\") permit(principal, action, resource);\n@id(\"a\") permit(principal, action, resource);";
    assert!(matches!(
        PolicyEngine::from_sources(&[("p.cedar".into(), dup.into())]),
        Err(PolicyError::DuplicateId(_))
    ));
}

/// A multi-statement string is never decided more permissively than its strictest part,
/// over every ordered pair and triple from a corpus.
#[test]
fn multi_statement_decisions_are_never_more_permissive_than_their_parts() {
    let e = engine(&format!(
        "{READ_ONLY}\n@id(\"hold-deletes\") @hold(\"dba\") permit(principal in Group::\"ai-agents\", action == Sql::Action::\"delete\", resource in Target::\"shop\");\n@id(\"no-drop\") forbid(principal, action == Sql::Action::\"drop\", resource);"
    ));
    let corpus = [
        "select 1",
        "select count(*) from orders",
        "delete from orders where id = 1",
        "drop table orders",
        "begin",
        "select nextval('s')",
        "insert into orders values (1)",
        "with d as (delete from orders returning *) select * from d",
        "explain select * from orders",
        "set role x",
        "select pg_terminate_backend(1)",
        "commit",
    ];
    let sev = |sql: &str| decide(&e, &["ai-agents"], sql).decision.severity();
    for a in corpus {
        for b in corpus {
            let pair = format!("{a}; {b}");
            assert!(sev(&pair) >= sev(a).max(sev(b)), "{pair}");
            for c in corpus.iter().take(4) {
                let triple = format!("{a}; {b}; {c}");
                assert!(sev(&triple) >= sev(a).max(sev(b)).max(sev(c)), "{triple}");
            }
        }
    }
}

#[test]
fn the_starter_policies_validate_and_behave() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies");
    let e = PolicyEngine::load(&dir).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(
        decide(&e, &["ai-agents"], "select * from orders").decision,
        Decision::Allow
    );
    assert!(matches!(
        decide(&e, &["ai-agents"], "delete from orders where id = 1").decision,
        Decision::Hold { .. }
    ));
    assert!(matches!(
        decide(&e, &["ai-agents"], "delete from orders").decision,
        Decision::Deny { .. }
    ));
    assert!(matches!(
        decide(&e, &["dba"], "drop table orders").decision,
        Decision::Deny { .. }
    ));
    assert!(matches!(
        decide(&e, &["dba"], "copy orders to program 'cat'").decision,
        Decision::Deny { .. }
    ));
    assert!(matches!(
        decide(&e, &["dba"], "set role postgres").decision,
        Decision::Deny { .. }
    ));
    assert!(matches!(
        decide(&e, &["dba"], "alter system set work_mem = '1GB'").decision,
        Decision::Deny { .. }
    ));
    assert!(matches!(
        decide(&e, &["dba"], "select lo_import('/etc/passwd')").decision,
        Decision::Deny { .. }
    ));
    assert_eq!(
        decide(&e, &["dba"], "update orders set total = 1 where id = 2").decision,
        Decision::Allow
    );
}

#[test]
fn dynamic_sql_can_be_permitted_explicitly() {
    let e = engine(
        "permit(principal, action in [Sql::Action::\"do\", Sql::Action::\"dynamic\", Sql::Action::\"read\"], resource);",
    );
    assert_eq!(
        decide(&e, &[], "do $$ begin execute 'select 1'; end $$").decision,
        Decision::Allow
    );
    let e = engine(
        "permit(principal, action in [Sql::Action::\"do\", Sql::Action::\"read\"], resource);",
    );
    assert!(matches!(
        decide(&e, &[], "do $$ begin execute 'select 1'; end $$").decision,
        Decision::Deny { .. }
    ));
}

#[test]
fn clock_randomness_and_sleep_builtins_need_no_permit_but_can_be_forbidden() {
    let e = engine("@id(\"read\") permit(principal, action == Sql::Action::\"select\", resource);");
    for sql in [
        "select pg_sleep(1), count(*) from orders",
        "select pg_catalog.pg_sleep(0.1)",
        "select random(), gen_random_uuid(), clock_timestamp()",
    ] {
        assert_eq!(decide(&e, &[], sql).decision, Decision::Allow, "{sql}");
    }
    // Only the built-ins: the same name in another schema, and other volatile
    // functions, still need a permit.
    for sql in [
        "select public.pg_sleep(1)",
        "select setseed(0.5)",
        "select nextval('s')",
    ] {
        assert!(
            matches!(decide(&e, &[], sql).decision, Decision::Deny { .. }),
            "{sql}"
        );
    }
    let e = engine(
        "@id(\"read\") permit(principal, action == Sql::Action::\"select\", resource);\n@id(\"no-sleep\") forbid(principal, action == Sql::Action::\"call\", resource == Function::\"pg_sleep\");",
    );
    assert!(matches!(
        decide(&e, &[], "select pg_sleep(1)").decision,
        Decision::Deny { .. }
    ));
}

#[test]
fn cached_verdicts_are_found_by_every_field_of_the_request() {
    let e = engine(READ_ONLY);
    // Each decision twice: the second comes from the cache and must match the first;
    // requests differing in groups, target or catalog answer must not share an entry.
    for _ in 0..2 {
        assert_eq!(
            decide(&e, &["ai-agents"], "select * from orders").decision,
            Decision::Allow
        );
        assert!(matches!(
            decide(&e, &["others"], "select * from orders").decision,
            Decision::Deny { .. }
        ));
        let select = Action::Sql(SqlAction {
            kind: "select".into(),
            object: SqlObject::Table {
                schema: "public".into(),
                name: "orders".into(),
            },
            flags: Default::default(),
        });
        let elsewhere = TargetRef {
            name: "billing".into(),
            kind: airlock_model::TargetKind::Postgres,
        };
        assert!(matches!(
            e.decide(&agent(&["ai-agents"]), &elsewhere, &select, &NoCatalog)
                .decision,
            Decision::Deny { .. }
        ));
        let volatile = Fixed(Volatility::Volatile);
        let immutable = Fixed(Volatility::Immutable);
        let count = |catalog: &dyn FunctionCatalog| {
            let statements = Classifier::new()
                .classify("select count(*) from orders", ParseOptions::default())
                .unwrap();
            let actions: Vec<Action> = statements
                .iter()
                .flat_map(|s| s.actions.iter().cloned().map(Action::Sql))
                .collect();
            e.decide_all(&agent(&["ai-agents"]), &shop(), &actions, catalog)
                .decision
        };
        assert_eq!(count(&immutable), Decision::Allow);
        assert!(matches!(count(&volatile), Decision::Deny { .. }));
    }
}

fn billing() -> TargetRef {
    TargetRef {
        name: "billing".into(),
        kind: airlock_model::TargetKind::Http,
    }
}

fn http(method: &str, path: &str, fields: &[&str]) -> Action {
    Action::Http(HttpAction {
        method: method.into(),
        path: path.into(),
        query: "a=1".into(),
        content_type: if fields.is_empty() {
            String::new()
        } else {
            "application/json".into()
        },
        body_fields: fields.iter().map(|f| f.to_string()).collect(),
    })
}

const HTTP: &str = r#"
@id("read")
permit(principal in Group::"ai-agents", action in Http::Action::"read", resource in Target::"billing");
@id("no-admin")
@reason("people only")
forbid(principal, action, resource in Http::Path::"billing/admin");
@id("refunds")
@hold("dba")
permit(principal in Group::"ai-agents", action == Http::Action::"post", resource in Http::Path::"billing/v1/refunds")
  when { context.path like "/v1/refunds*" && !(context.body_fields.contains("override")) && context.query == "a=1" };
"#;

#[test]
fn http_requests_are_decided_on_paths_groups_and_context() {
    let e = engine(HTTP);
    let p = agent(&["ai-agents"]);
    let d = |a: Action| e.decide(&p, &billing(), &a, &NoCatalog).decision;
    assert_eq!(d(http("get", "v1/invoices/7", &[])), Decision::Allow);
    assert_eq!(
        d(http("head", "", &[])),
        Decision::Allow,
        "the target's root"
    );
    assert!(
        matches!(d(http("get", "admin", &[])), Decision::Deny { reason } if reason.contains("\"no-admin\": people only"))
    );
    assert!(
        matches!(d(http("get", "admin/users/1", &[])), Decision::Deny { .. }),
        "a prefix covers what is below it"
    );
    assert!(
        matches!(d(http("get", "administrator", &[])), Decision::Allow),
        "a prefix is whole segments"
    );
    assert!(
        matches!(d(http("post", "v1/refunds/9", &["amount"])), Decision::Hold { group, .. } if group == "dba")
    );
    assert!(matches!(
        d(http("post", "v1/refunds", &["amount", "override"])),
        Decision::Deny { .. }
    ));
    match d(http("delete", "v1/invoices/7", &[])) {
        Decision::Deny { reason } => {
            assert!(reason.contains("DELETE /billing/v1/invoices/7"), "{reason}");
            assert!(
                reason.contains("permitted there: GET, HEAD, OPTIONS"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(d(http("websocket", "v1/ws", &[])), Decision::Deny { .. }),
        "websocket is in no group"
    );
    // A method the schema does not know cannot be permitted: it is denied.
    assert!(matches!(
        d(http("frobnicate", "v1", &[])),
        Decision::Deny { .. }
    ));
}

#[test]
fn http_paths_and_sql_tables_of_the_same_target_do_not_mix() {
    let e = engine(
        r#"@id("all-billing") permit(principal, action in Http::Action::"write", resource in Target::"billing");"#,
    );
    let p = agent(&[]);
    assert_eq!(
        e.decide(&p, &billing(), &http("put", "v1/x", &[]), &NoCatalog)
            .decision,
        Decision::Allow
    );
    let other = TargetRef {
        name: "billing2".into(),
        kind: airlock_model::TargetKind::Http,
    };
    assert!(matches!(
        e.decide(&p, &other, &http("put", "v1/x", &[]), &NoCatalog)
            .decision,
        Decision::Deny { .. }
    ));
}

fn cluster() -> TargetRef {
    TargetRef {
        name: "cluster".into(),
        kind: airlock_model::TargetKind::Postgres,
    }
}

fn k8s(verb: &str, group: &str, resource: &str, namespace: &str, name: &str) -> Action {
    Action::K8s(K8sAction {
        verb: verb.into(),
        group: group.into(),
        resource: resource.into(),
        subresource: String::new(),
        namespace: namespace.into(),
        name: name.into(),
        path: String::new(),
        kind: String::new(),
        labels: Vec::new(),
        command: String::new(),
    })
}

const K8S: &str = r#"
@id("discovery")
permit(principal in Group::"ai-agents", action == K8s::Action::"discover", resource == Target::"cluster");
@id("read")
permit(principal in Group::"ai-agents", action in K8s::Action::"read", resource in Target::"cluster");
@id("deploy")
permit(principal in Group::"ai-agents", action in K8s::Action::"write", resource in Target::"cluster")
  when { resource.group == "apps" && resource.resource == "deployments" };
@id("no-namespace-deletes")
@reason("namespaces are deleted by people")
forbid(principal, action == K8s::Action::"delete", resource)
  when { resource.resource == "namespaces" };
@id("no-kube-system-writes")
forbid(principal, action in K8s::Action::"write", resource in K8s::Namespace::"cluster/kube-system");
"#;

#[test]
fn kubernetes_requests_are_decided_on_verbs_resources_and_namespaces() {
    let e = engine(K8S);
    let p = agent(&["ai-agents"]);
    let d = |a: Action| e.decide(&p, &cluster(), &a, &NoCatalog).decision;
    let discover = Action::K8s(K8sAction {
        path: "/version".into(),
        ..match k8s("discover", "", "", "", "") {
            Action::K8s(k) => k,
            _ => unreachable!(),
        }
    });
    assert_eq!(d(discover), Decision::Allow);
    assert_eq!(d(k8s("list", "", "pods", "default", "")), Decision::Allow);
    assert_eq!(d(k8s("watch", "", "configmaps", "", "")), Decision::Allow);
    assert_eq!(
        d(k8s("delete", "apps", "deployments", "default", "web")),
        Decision::Allow
    );
    match d(k8s("delete", "", "namespaces", "foo", "foo")) {
        Decision::Deny { reason } => {
            assert!(
                reason.contains("delete namespaces \"foo\" on cluster \"cluster\""),
                "{reason}"
            );
            assert!(
                reason.contains("\"no-namespace-deletes\": namespaces are deleted by people"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        d(k8s("patch", "apps", "deployments", "kube-system", "coredns")),
        Decision::Deny { reason } if reason.contains("no-kube-system-writes")
    ));
    match d(k8s("create", "", "pods", "default", "")) {
        Decision::Deny { reason } => assert!(
            reason.contains("permitted there: get, list, watch"),
            "{reason}"
        ),
        other => panic!("{other:?}"),
    }
    // Without a group, nothing, not even discovery.
    let outsider = agent(&[]);
    assert!(matches!(
        e.decide(
            &outsider,
            &cluster(),
            &k8s("get", "", "pods", "default", "x"),
            &NoCatalog
        )
        .decision,
        Decision::Deny { .. }
    ));
}

fn mcp(kind: &str, name: &str, args: serde_json::Value) -> Action {
    let map = args.as_object().cloned().unwrap_or_default();
    let mut arguments: Vec<String> = map
        .iter()
        .filter_map(|(k, v)| match v {
            serde_json::Value::String(s) => Some(format!("{k}={s}")),
            serde_json::Value::Number(_) | serde_json::Value::Bool(_) => Some(format!("{k}={v}")),
            _ => None,
        })
        .collect();
    arguments.sort();
    let mut argument_names: Vec<String> = map.keys().cloned().collect();
    argument_names.sort();
    Action::Mcp(airlock_model::McpAction {
        kind: kind.into(),
        name: name.into(),
        arguments,
        argument_names,
        arguments_json: args.to_string(),
    })
}

#[test]
fn mcp_calls_are_decided_on_tools_and_their_arguments() {
    let e = engine(
        r#"
@id("tools")
permit(principal in Group::"ai-agents", action == Mcp::Action::"call", resource in Target::"tools");
@id("docs")
permit(principal in Group::"ai-agents", action == Mcp::Action::"read", resource in Target::"tools")
  when { resource.uri like "file:///docs/*" };
@id("no-prod-drop")
@reason("dropping tables is for people")
forbid(principal, action == Mcp::Action::"call", resource == Mcp::Tool::"tools/query")
  when { context.arguments_json like "*DROP*" || context.arguments.contains("env=prod") };
"#,
    );
    let p = agent(&["ai-agents"]);
    let tools = TargetRef {
        name: "tools".into(),
        kind: airlock_model::TargetKind::Http,
    };
    let d = |a: Action| e.decide(&p, &tools, &a, &NoCatalog).decision;
    assert_eq!(
        d(mcp("call", "query", serde_json::json!({"sql": "select 1"}))),
        Decision::Allow
    );
    match d(mcp(
        "call",
        "query",
        serde_json::json!({"sql": "DROP TABLE users"}),
    )) {
        Decision::Deny { reason } => {
            assert!(
                reason.contains("calling tool \"query\" of \"tools\""),
                "{reason}"
            );
            assert!(reason.contains("no-prod-drop"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        d(mcp("call", "query", serde_json::json!({"env": "prod"}))),
        Decision::Deny { .. }
    ));
    assert_eq!(
        d(mcp("read", "file:///docs/a.md", serde_json::json!({}))),
        Decision::Allow
    );
    assert!(matches!(
        d(mcp("read", "file:///etc/passwd", serde_json::json!({}))),
        Decision::Deny { .. }
    ));
    assert!(
        matches!(
            d(mcp("prompt", "p", serde_json::json!({}))),
            Decision::Deny { .. }
        ),
        "nothing permits prompts"
    );
}

#[test]
fn the_starter_mcp_policies_decide_tools_and_their_arguments() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/policies");
    let e = PolicyEngine::load(&dir).unwrap_or_else(|err| panic!("{err}"));
    let target = airlock_model::TargetRef {
        name: "tools".into(),
        kind: airlock_model::TargetKind::Mcp,
    };
    let agent = agent(&["ai-agents"]);
    let call = |name: &str, args: serde_json::Value| {
        e.decide_all(&agent, &target, &[mcp("call", name, args)], &NoCatalog)
            .decision
    };
    assert_eq!(
        call("lookup_customer", serde_json::json!({"id": 1})),
        Decision::Allow
    );
    assert_eq!(
        call(
            "refund",
            serde_json::json!({"amount": 5, "currency": "EUR"})
        ),
        Decision::Allow
    );
    assert!(matches!(
        call(
            "refund",
            serde_json::json!({"amount": 5, "currency": "USD"})
        ),
        Decision::Deny { .. }
    ));
    assert!(matches!(
        call(
            "refund",
            serde_json::json!({"currency": "EUR", "override": true})
        ),
        Decision::Deny { .. }
    ));
    assert!(matches!(
        call("delete_customer", serde_json::json!({"id": 3})),
        Decision::Hold { .. }
    ));
    assert!(matches!(
        call("run_shell", serde_json::json!({})),
        Decision::Deny { .. }
    ));
    assert!(matches!(
        call("LOOKUP_CUSTOMER", serde_json::json!({})),
        Decision::Deny { .. }
    ));
}

#[test]
fn the_version_is_the_same_for_the_same_policies_in_another_folder() {
    let text = "@id(\"r\")\npermit(principal, action, resource);";
    let here = PolicyEngine::from_sources(&[("/etc/airlock/policies/a.cedar".into(), text.into())])
        .unwrap();
    let there =
        PolicyEngine::from_sources(&[("/srv/replica-b/policies/a.cedar".into(), text.into())])
            .unwrap();
    assert_eq!(here.version(), there.version());
    let renamed =
        PolicyEngine::from_sources(&[("/etc/airlock/policies/b.cedar".into(), text.into())])
            .unwrap();
    assert_ne!(
        here.version(),
        renamed.version(),
        "a file's name is part of it"
    );
    let changed = PolicyEngine::from_sources(&[(
        "/etc/airlock/policies/a.cedar".into(),
        text.replace("permit", "forbid"),
    )])
    .unwrap();
    assert_ne!(here.version(), changed.version());
}
