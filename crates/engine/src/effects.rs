//! Whether running a statement's actions can change anything beyond producing its
//! answer: the recorder's cue for how strictly a statement must wait for its record.
//!
//! A statement that changes nothing (a plain read) may be sent to the target while its
//! record is being synced, as long as its answer is held until the record is durable:
//! if the gateway dies in between, the target ran a read whose answer nobody saw. Any
//! statement that might change data, schema, settings, sequences or session state waits
//! for its record before it is sent. When in doubt, the answer here is "it may change
//! something".
//!
//! Inside a transaction block the same holds for plain data changes
//! ([`undone_unless_committed`]): if the gateway dies before their record is durable,
//! its connection to the server drops and the server rolls the transaction back, so the
//! change never takes effect. `COMMIT` itself always waits, and the journal is written in
//! order, so every record of the transaction is durable before it commits.

use airlock_model::{Action, SqlAction, SqlObject};

use crate::policy::{FunctionCatalog, Volatility};

/// `true` only when every action is a plain read: `SELECT` (not `SELECT INTO`),
/// `SHOW`, `EXPLAIN` without `ANALYZE`, or a call of an immutable or stable function.
pub fn changes_nothing(actions: &[Action], catalog: &dyn FunctionCatalog) -> bool {
    actions.iter().all(|action| match action {
        Action::Sql(sql) => sql_changes_nothing(sql, catalog),
        _ => false,
    })
}

/// `true` only when every action is a plain read (see [`changes_nothing`]) or a data
/// change (`INSERT`, `UPDATE`, `DELETE`, `MERGE`) that calls no volatile function: what
/// a transaction block's rollback undoes entirely. Sequences advanced by column
/// defaults are not rolled back, and effects hidden in triggers are not seen here.
pub fn undone_unless_committed(actions: &[Action], catalog: &dyn FunctionCatalog) -> bool {
    actions.iter().all(|action| match action {
        Action::Sql(sql) => {
            matches!(sql.kind.as_str(), "insert" | "update" | "delete" | "merge")
                || sql_changes_nothing(sql, catalog)
        }
        _ => false,
    })
}

fn sql_changes_nothing(sql: &SqlAction, catalog: &dyn FunctionCatalog) -> bool {
    match sql.kind.as_str() {
        "select" => !sql.flags.into,
        "show" => true,
        "explain" => !sql.flags.analyze,
        "call" => match &sql.object {
            SqlObject::Function { schema, name } => matches!(
                catalog.volatility(schema.as_deref(), name),
                Volatility::Immutable | Volatility::Stable
            ),
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::NoCatalog;
    use crate::sql::{Classifier, ParseOptions};

    struct Catalog;
    impl FunctionCatalog for Catalog {
        fn volatility(&self, _: Option<&str>, name: &str) -> Volatility {
            match name {
                "lower" => Volatility::Immutable,
                "now" => Volatility::Stable,
                _ => Volatility::Volatile,
            }
        }
    }

    fn actions_of(sql: &str) -> Vec<Action> {
        Classifier::new()
            .classify(sql, ParseOptions::default())
            .unwrap()
            .into_iter()
            .flat_map(|s| s.actions)
            .map(Action::Sql)
            .collect()
    }

    fn check(sql: &str) -> bool {
        changes_nothing(&actions_of(sql), &Catalog)
    }

    #[test]
    fn plain_reads_change_nothing() {
        for sql in [
            "select 1",
            "select a, lower(b) from t where c = 1",
            "select now()",
            "select * from t join u using (id) order by 1 limit 5",
            "show search_path",
            "explain select * from t",
            "select * from t for update",
        ] {
            assert!(check(sql), "{sql}");
        }
    }

    #[test]
    fn anything_that_may_change_something_does_not() {
        for sql in [
            "select nextval('s')",
            "select pg_terminate_backend(1)",
            "select * into t2 from t",
            "with x as (delete from t returning *) select * from x",
            "insert into t values (1)",
            "update t set a = 1 where b = 2",
            "explain analyze delete from t",
            "set search_path = x",
            "begin",
            "commit",
            "create table x (a int)",
            "copy t to stdout",
            "do $$ begin perform 1; end $$",
            "prepare p as select 1",
            "select 1; delete from t",
        ] {
            assert!(!check(sql), "{sql}");
        }
    }

    fn in_transaction(sql: &str) -> bool {
        undone_unless_committed(&actions_of(sql), &Catalog)
    }

    #[test]
    fn data_changes_are_undone_by_a_rollback_but_commits_and_side_effects_are_not() {
        for sql in [
            "update t set a = a + 1 where id = 3",
            "insert into t values (1, now())",
            "delete from t where id = 1",
            "with x as (delete from t returning *) insert into u select * from x",
            "select * from t",
        ] {
            assert!(in_transaction(sql), "{sql}");
        }
        for sql in [
            "commit",
            "end",
            "prepare transaction 'x'",
            "rollback",
            "begin",
            "update t set a = nextval('s')",
            "insert into t select pg_terminate_backend(1)",
            "copy t from stdin",
            "create table x (a int)",
            "set search_path = x",
            "select * into t2 from t",
            "lock table t",
        ] {
            assert!(!in_transaction(sql), "{sql}");
        }
    }

    #[test]
    fn an_unknown_function_may_change_something() {
        assert!(!changes_nothing(
            &actions_of("select lower('A')"),
            &NoCatalog
        ));
    }
}
