//! Classifier table tests, grouped by statement kind.

use super::*;

fn actions(sql: &str) -> Vec<(String, String)> {
    let st = classify_uncached(sql, ParseOptions::default()).unwrap();
    st.iter()
        .flat_map(|s| s.actions.iter())
        .map(|a| {
            let obj = match &a.object {
                SqlObject::Target => "target".to_string(),
                SqlObject::Table { schema, name } => format!("{schema}.{name}"),
                SqlObject::Function {
                    schema: Some(s),
                    name,
                } => format!("fn {s}.{name}"),
                SqlObject::Function { schema: None, name } => format!("fn {name}"),
            };
            (a.kind.clone(), obj)
        })
        .collect()
}

fn has(sql: &str, kind: &str, obj: &str) -> bool {
    actions(sql).iter().any(|(k, o)| k == kind && o == obj)
}

#[test]
fn selects_read_tables_and_call_functions() {
    assert!(has("select * from orders", "select", "public.orders"));
    assert!(has(
        "select * from sales.orders o join customers c on true",
        "select",
        "sales.orders"
    ));
    assert!(has("select count(*) from orders", "call", "fn count"));
    assert!(has("select 1", "select", "target"));
    assert!(has("select pg_catalog.now()", "call", "fn pg_catalog.now"));
}

#[test]
fn functions_hidden_in_any_clause_are_found() {
    for sql in [
        "select 1 limit (select pg_terminate_backend(1))::int",
        "values (pg_terminate_backend(1))",
        "select 1 order by pg_terminate_backend(1)",
        "select * from generate_series(1, pg_terminate_backend(1)::int)",
        "select sum(x) over (partition by pg_terminate_backend(1)) from (select 1 x) t",
        "select case when true then pg_terminate_backend(1) end",
        "select 1 where exists (select pg_terminate_backend(1))",
        "select array[pg_terminate_backend(1)]",
    ] {
        assert!(
            has(sql, "call", "fn pg_terminate_backend"),
            "{sql}: {:?}",
            actions(sql)
        );
    }
}

#[test]
fn writes_are_found_where_they_hide() {
    assert!(has(
        "delete from orders where id = 1",
        "delete",
        "public.orders"
    ));
    assert!(has(
        "with d as (delete from orders returning *) select * from d",
        "delete",
        "public.orders"
    ));
    assert!(has(
        "explain analyze delete from orders",
        "delete",
        "public.orders"
    ));
    assert!(!has(
        "explain delete from orders",
        "delete",
        "public.orders"
    ));
    assert!(has(
        "prepare p as delete from orders",
        "delete",
        "public.orders"
    ));
    assert!(has(
        "create rule r as on select to t do instead delete from orders",
        "delete",
        "public.orders"
    ));
    assert!(has(
        "select * into newtab from orders",
        "create",
        "public.newtab"
    ));
    assert!(has(
        "insert into audit select * from orders",
        "insert",
        "public.audit"
    ));
    assert!(has(
        "insert into audit select * from orders",
        "select",
        "public.orders"
    ));
    assert!(has(
        "update orders set total = 0 from customers where customers.id = orders.customer_id",
        "update",
        "public.orders"
    ));
    assert!(has(
        "merge into orders o using customers c on o.id = c.id when matched then delete",
        "merge",
        "public.orders"
    ));
}

#[test]
fn flags_for_policy() {
    let s = &classify_uncached("delete from orders", ParseOptions::default()).unwrap()[0];
    let d = s.actions.iter().find(|a| a.kind == "delete").unwrap();
    assert!(!d.flags.has_where);
    let s = &classify_uncached(
        "update orders set total = 1 where id = 2",
        ParseOptions::default(),
    )
    .unwrap()[0];
    assert!(
        s.actions
            .iter()
            .find(|a| a.kind == "update")
            .unwrap()
            .flags
            .has_where
    );
    let s = &classify_uncached("copy orders to program 'cat'", ParseOptions::default()).unwrap()[0];
    assert!(
        s.actions
            .iter()
            .any(|a| a.kind == "copy" && a.flags.program)
    );
    let s = &classify_uncached("explain (analyze) select 1", ParseOptions::default()).unwrap()[0];
    assert!(
        s.actions
            .iter()
            .any(|a| a.kind == "explain" && a.flags.analyze)
    );
    let s = &classify_uncached("set role postgres", ParseOptions::default()).unwrap()[0];
    assert!(
        s.actions
            .iter()
            .any(|a| a.kind == "set" && a.flags.variable == "role")
    );
    let s = &classify_uncached(
        "set session authorization postgres",
        ParseOptions::default(),
    )
    .unwrap()[0];
    assert!(
        s.actions
            .iter()
            .any(|a| a.kind == "set" && a.flags.variable == "session_authorization"),
        "{s:?}"
    );
    let s = &classify_uncached("alter system set work_mem = '1GB'", ParseOptions::default())
        .unwrap()[0];
    assert!(
        s.actions
            .iter()
            .any(|a| a.kind == "alter" && a.flags.system)
    );
}

#[test]
fn ddl_and_utility_kinds() {
    assert!(has("drop table orders", "drop", "public.orders"));
    assert!(has("drop table s.t, u", "drop", "s.t"));
    assert!(has("truncate orders", "truncate", "public.orders"));
    assert!(has("create table t (id int)", "create", "public.t"));
    assert!(has(
        "alter table orders add column x int",
        "alter",
        "public.orders"
    ));
    assert!(has("grant select on orders to bob", "grant", "target"));
    assert!(has("revoke select on orders from bob", "revoke", "target"));
    assert!(has("begin", "transaction", "target"));
    assert!(has("vacuum orders", "vacuum", "target"));
    assert!(has("listen x", "listen", "target"));
    assert!(has("call myproc(1)", "call", "fn myproc"));
    assert!(has("create extension dblink", "create", "target"));
}

#[test]
fn ctes_are_not_tables_but_shadowing_is_seen_through() {
    assert!(!has(
        "with x as (select 1) select * from x",
        "select",
        "public.x"
    ));
    // A CTE's own body cannot see its name (non-recursive): this reads the real table.
    assert!(has(
        "with secrets as (select * from secrets) select * from secrets",
        "select",
        "public.secrets"
    ));
    assert!(!has(
        "with recursive r as (select 1 union all select 1 from r) select * from r",
        "select",
        "public.r"
    ));
}

#[test]
fn nested_is_set_only_inside_other_statements() {
    let st = classify_uncached("select count(*) from orders", ParseOptions::default()).unwrap();
    assert!(
        st[0].actions.iter().all(|a| !a.flags.nested),
        "{:?}",
        st[0].actions
    );
    let st = classify_uncached(
        "with d as (delete from orders returning *) select * from d",
        ParseOptions::default(),
    )
    .unwrap();
    assert!(
        st[0]
            .actions
            .iter()
            .any(|a| a.kind == "delete" && a.flags.nested)
    );
}

#[test]
fn multi_statements_are_split() {
    let st = classify_uncached(
        "select 1; delete from orders; select 2",
        ParseOptions::default(),
    )
    .unwrap();
    assert_eq!(st.len(), 3);
    assert_eq!(st[1].kind, "delete");
    assert_eq!(st[1].text, "delete from orders");
}

#[test]
fn standard_conforming_strings_changes_the_parse() {
    let trap = r"SELECT '\', $$'; DROP TABLE users; --$$";
    let on = classify_uncached(
        trap,
        ParseOptions {
            standard_conforming_strings: true,
        },
    )
    .unwrap();
    assert_eq!(on.len(), 1, "with scs on: one harmless select");
    let off = classify_uncached(
        trap,
        ParseOptions {
            standard_conforming_strings: false,
        },
    )
    .unwrap();
    assert_eq!(off.len(), 2, "with scs off: a select and a drop");
    assert!(off[1].actions.iter().any(|a| a.kind == "drop"));
}

#[test]
fn do_blocks_are_seen_through() {
    assert!(has(
        "do $$ begin delete from orders; end $$",
        "delete",
        "public.orders"
    ));
    assert!(has(
        "do $$ begin perform pg_terminate_backend(1); end $$",
        "call",
        "fn pg_terminate_backend"
    ));
    assert!(has(
        "do $$ begin execute 'drop table x'; end $$",
        "dynamic",
        "target"
    ));
    assert!(has(
        "do $$ declare n int; begin n := (select count(*) from orders); end $$",
        "select",
        "public.orders"
    ));
    assert!(has(
        "do language plpython3u $$ import os $$",
        "do",
        "target"
    ));
}

#[test]
fn prepared_statements_carry_their_actions() {
    let st = classify_uncached(
        "prepare p(int) as delete from orders where id = $1",
        ParseOptions::default(),
    )
    .unwrap();
    match &st[0].effect {
        StatementEffect::Prepare { name, actions } => {
            assert_eq!(name, "p");
            assert!(actions.iter().any(|a| a.kind == "delete"));
        }
        other => panic!("{other:?}"),
    }
    let st = classify_uncached("execute p(1)", ParseOptions::default()).unwrap();
    assert_eq!(st[0].effect, StatementEffect::Execute { name: "p".into() });
    let st = classify_uncached("deallocate all", ParseOptions::default()).unwrap();
    assert_eq!(st[0].effect, StatementEffect::Deallocate { name: None });
}

#[test]
fn bad_input_is_refused() {
    assert!(matches!(
        classify_uncached("selec 1", ParseOptions::default()),
        Err(SqlError::Syntax(_))
    ));
    let c = Classifier::new();
    assert!(matches!(
        c.classify("select 1\0; drop table x", ParseOptions::default()),
        Err(SqlError::Nul)
    ));
    // Deep nesting is refused, never a crash.
    let deep = format!("select {}", vec!["1"; 20_000].join("+"));
    assert!(c.classify(&deep, ParseOptions::default()).is_err());
    // Ordinary long expressions still pass.
    let long = format!("select {}", vec!["'a'"; 60].join(" || "));
    c.classify(&long, ParseOptions::default()).unwrap();
    let wide = format!(
        "select * from orders where {}",
        (0..500)
            .map(|i| format!("id = {i}"))
            .collect::<Vec<_>>()
            .join(" or ")
    );
    c.classify(&wide, ParseOptions::default()).unwrap();
}

#[test]
fn cache_keeps_schemas_and_relations_apart() {
    let c = Classifier::new();
    let a = c
        .classify(
            "select * from public.t where id = 1",
            ParseOptions::default(),
        )
        .unwrap();
    let b = c
        .classify(
            "select * from secret.t where id = 2",
            ParseOptions::default(),
        )
        .unwrap();
    assert_ne!(a[0].actions, b[0].actions);
    let x = c
        .classify("select * from orders_2024_01", ParseOptions::default())
        .unwrap();
    let y = c
        .classify("select * from orders_2024_02", ParseOptions::default())
        .unwrap();
    assert_ne!(x[0].actions, y[0].actions);
    // Aliases do not hide the table behind them.
    let a1 = c
        .classify(
            "select * from orders o where id = 1",
            ParseOptions::default(),
        )
        .unwrap();
    let a2 = c
        .classify(
            "select * from customers o where id = 1",
            ParseOptions::default(),
        )
        .unwrap();
    assert_ne!(a1[0].actions, a2[0].actions);
    // Nesting deeper than a fingerprint looks does not merge different functions.
    let wrap = |f: &str| format!("select {}{f}{}", "(select ".repeat(45), ")".repeat(45));
    let d1 = c
        .classify(&wrap("abs(1)"), ParseOptions::default())
        .unwrap();
    let d2 = c
        .classify(&wrap("nextval('s')"), ParseOptions::default())
        .unwrap();
    assert!(
        d2[0]
            .actions
            .iter()
            .any(|a| matches!(&a.object, SqlObject::Function { name, .. } if name == "nextval")),
        "{:?}",
        d2[0].actions
    );
    assert_ne!(d1[0].actions, d2[0].actions);
    // Quoted function names keep their case.
    assert!(
        has("select \"Lower\"('x')", "call", "fn Lower"),
        "{:?}",
        actions("select \"Lower\"('x')")
    );
    let p = c.classify("select f(1)", ParseOptions::default()).unwrap();
    let q = c.classify("select g(1)", ParseOptions::default()).unwrap();
    assert_ne!(p[0].actions, q[0].actions);
    // Same shape, different literals: same actions, from the cache.
    let r = c
        .classify(
            "select * from orders where id = 99",
            ParseOptions::default(),
        )
        .unwrap();
    let s = c
        .classify(
            "select * from orders where id = 100",
            ParseOptions::default(),
        )
        .unwrap();
    assert_eq!(r[0].actions, s[0].actions);
    assert_eq!(s[0].text, "select * from orders where id = 100");
}

#[test]
fn tricky_lexical_forms() {
    // Comments, nested comments and quoting never hide or invent statements.
    assert!(has(
        "/* delete from orders; */ select 1",
        "select",
        "target"
    ));
    assert!(!has(
        "/* delete from orders; */ select 1",
        "delete",
        "public.orders"
    ));
    assert!(!has(
        "select 1 /* outer /* nested; delete from orders */ still comment */",
        "delete",
        "public.orders"
    ));
    assert!(!has(
        "select '; delete from orders'",
        "delete",
        "public.orders"
    ));
    assert!(!has(
        "select $tag$; delete from orders$tag$",
        "delete",
        "public.orders"
    ));
    assert!(!has(
        "select E'\\'; delete from orders'",
        "delete",
        "public.orders"
    ));
    assert!(has(
        "select E'\\\\'; delete from orders",
        "delete",
        "public.orders"
    ));
    assert!(has(
        "-- comment\ndelete from orders",
        "delete",
        "public.orders"
    ));
    assert!(has("SeLeCt * FrOm \"Orders\"", "select", "public.Orders"));
    assert!(has(
        "select * from \"ünïcødé\".\"täble\"",
        "select",
        "ünïcødé.täble"
    ));
    assert!(has(
        "select * from U&\"d\\0061ta\"",
        "select",
        "public.data"
    ));
}

#[test]
fn a_one_megabyte_statement_is_classified() {
    let values: Vec<String> = (0..60_000).map(|i| format!("({i}, 'x{i}')")).collect();
    let sql = format!("insert into orders (id, note) values {}", values.join(","));
    assert!(sql.len() > 1_000_000);
    let st = Classifier::new()
        .classify(&sql, ParseOptions::default())
        .unwrap();
    assert!(st[0].actions.iter().any(|a| a.kind == "insert"));
}

#[test]
fn upserts_update_and_explain_analyze_execute_runs_the_prepared_statement() {
    assert!(has(
        "insert into orders values (1) on conflict (id) do update set total = 0",
        "update",
        "public.orders"
    ));
    assert!(has(
        "insert into orders values (1) on conflict (id) do update set total = 0",
        "insert",
        "public.orders"
    ));
    assert!(!has(
        "insert into orders values (1) on conflict do nothing",
        "update",
        "public.orders"
    ));
    let st = classify_uncached("explain analyze execute p(1)", ParseOptions::default()).unwrap();
    assert_eq!(st[0].effect, StatementEffect::Execute { name: "p".into() });
    let st = classify_uncached("explain execute p(1)", ParseOptions::default()).unwrap();
    assert_eq!(st[0].effect, StatementEffect::None);
}

/// `too_deep` skips the scan for short text on the grounds that the estimate never
/// exceeds the number of bytes plus one.
#[test]
fn the_depth_estimate_never_exceeds_the_length_plus_one() {
    for text in [
        "((((((((((1))))))))))",
        "1+1+1+1+1+1+1+1",
        "select a||b||c||d from t where x = ((y))",
        "((((((((((",
        "-------- +",
        "select (((1 + (2 * (3 - 4)))))",
    ] {
        assert!(
            estimated_depth(text) <= text.len() + 1,
            "{text}: {}",
            estimated_depth(text)
        );
    }
    let deep = "(".repeat(MAX_ESTIMATED_DEPTH - 1);
    assert!(!too_deep(&deep));
    let deeper = format!("select {}1{}", "(".repeat(2000), ")".repeat(2000));
    assert!(too_deep(&deeper));
}

#[test]
fn transaction_control_is_told_apart() {
    for (sql, control) in [
        ("begin", TxControl::Begin),
        ("start transaction read only", TxControl::Begin),
        ("rollback", TxControl::Rollback),
        ("abort", TxControl::Rollback),
        ("savepoint a", TxControl::Savepoint),
        ("release savepoint a", TxControl::Release),
        ("rollback to savepoint a", TxControl::RollbackTo),
        ("commit", TxControl::Commit),
        ("end", TxControl::Commit),
        ("commit and chain", TxControl::Commit),
        ("prepare transaction 'x'", TxControl::Prepare),
        ("commit prepared 'x'", TxControl::CommitPrepared),
        ("rollback prepared 'x'", TxControl::RollbackPrepared),
    ] {
        let st = classify_uncached(sql, ParseOptions::default()).unwrap();
        assert_eq!(st[0].effect, StatementEffect::Transaction(control), "{sql}");
    }
    assert!(TxControl::Commit.lasting() && TxControl::Prepare.lasting());
    assert!(!TxControl::Begin.lasting() && !TxControl::Rollback.lasting());
    assert!(TxControl::Commit.may_change_settings() && TxControl::RollbackTo.may_change_settings());
    assert!(!TxControl::Begin.may_change_settings());
}

#[test]
fn the_exact_text_cache_keeps_only_text_without_constants_and_never_mixes_settings() {
    let c = Classifier::new();
    let on = ParseOptions::default();
    let off = ParseOptions {
        standard_conforming_strings: false,
    };
    // Text without constants is remembered verbatim, whether its key took the
    // one-pass lexer or `pg_query::normalize` (a comment).
    let simple = "select a from t where id = $1";
    let first = c.classify(simple, on).unwrap();
    assert_eq!(c.classify(simple, on).unwrap(), first);
    assert_eq!(c.exact.lock().unwrap().len(), 1);
    let q = "select a from t where id = $1 /* by id */";
    assert_eq!(c.classify(q, on).unwrap()[0].actions, first[0].actions);
    assert_eq!(c.classify(q, on).unwrap()[0].actions, first[0].actions);
    assert_eq!(c.exact.lock().unwrap().len(), 2);
    c.classify("select a from t where id = 7", on).unwrap();
    c.classify("select a from t where id = 7 /* by id */", on)
        .unwrap();
    assert_eq!(c.exact.lock().unwrap().len(), 2, "literals stay out");
    // Another setting is another key: nothing cached under `on` answers for `off`.
    assert!(
        !c.exact
            .lock()
            .unwrap()
            .contains_key(&(q.to_owned(), off.standard_conforming_strings))
    );
    let other = c.classify("select b from u where id = $1", on).unwrap();
    assert_ne!(other[0].actions, first[0].actions);
}

#[test]
fn transaction_control_comes_from_the_cache_with_its_effect() {
    let c = Classifier::new();
    let effect = |sql: &str| {
        let st = c.classify(sql, ParseOptions::default()).unwrap();
        assert_eq!(st.len(), 1, "{sql}");
        st[0].effect.clone()
    };
    let cases = [
        ("BEGIN", TxControl::Begin),
        (
            "start transaction isolation level serializable",
            TxControl::Begin,
        ),
        ("END", TxControl::Commit),
        ("COMMIT", TxControl::Commit),
        ("ROLLBACK", TxControl::Rollback),
        ("SAVEPOINT a", TxControl::Savepoint),
        ("ROLLBACK TO SAVEPOINT a", TxControl::RollbackTo),
        ("RELEASE SAVEPOINT a", TxControl::Release),
    ];
    // Twice over: the second round is answered from the cache.
    for _ in 0..2 {
        for (sql, control) in cases {
            assert_eq!(effect(sql), StatementEffect::Transaction(control), "{sql}");
        }
        assert_eq!(
            c.cache.lock().unwrap().len(),
            cases.len(),
            "each is cached once"
        );
    }
    // A transaction id is a constant: not cached, and each one still prepares.
    for _ in 0..2 {
        assert_eq!(
            effect("PREPARE TRANSACTION 'a'"),
            StatementEffect::Transaction(TxControl::Prepare)
        );
        assert_eq!(
            effect("COMMIT PREPARED 'b'"),
            StatementEffect::Transaction(TxControl::CommitPrepared)
        );
    }
    // DML from the cache still has no effect.
    for _ in 0..2 {
        assert_eq!(
            effect("update t set a = 1 where id = 2"),
            StatementEffect::None
        );
    }
}
