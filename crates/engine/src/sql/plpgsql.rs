//! The SQL inside DO blocks, as far as PL/pgSQL parsing shows it.
//!
//! The body is parsed with PostgreSQL's PL/pgSQL grammar (`pg_query::parse_plpgsql`),
//! and every embedded SQL statement or expression is classified like a top-level one.
//! Dynamic SQL (`EXECUTE 'text'`) cannot be known before it runs: it becomes a `dynamic`
//! action, which policy must permit explicitly (it is in no action group).
//! A body in another language is opaque: only the `do` action itself is decided.

use airlock_model::{SqlAction, SqlFlags, SqlObject};
use pg_query::ParserOptions;
use serde_json::Value;

use super::classify::{ParseOptions, SqlError, statement};

const WRAP_TAG: &str = "$airlock_do_body$";

/// The actions of the SQL inside a `DoStmt` body.
pub fn do_block_actions(
    do_stmt: &Value,
    options: ParseOptions,
) -> Result<Vec<SqlAction>, SqlError> {
    let mut body = None;
    let mut language = "plpgsql".to_owned();
    for arg in do_stmt
        .get("args")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(def) = arg.get("node").and_then(|n| n.get("DefElem")) else {
            continue;
        };
        let value = def
            .get("arg")
            .and_then(|a| a.get("node"))
            .and_then(|n| n.get("String"))
            .and_then(|s| s.get("sval"))
            .and_then(Value::as_str);
        match def.get("defname").and_then(Value::as_str) {
            Some("as") => body = value.map(str::to_owned),
            Some("language") => language = value.unwrap_or("").to_lowercase(),
            _ => {}
        }
    }
    let Some(body) = body else {
        return Ok(Vec::new());
    };
    if language != "plpgsql" {
        return Ok(Vec::new());
    }
    if body.contains(WRAP_TAG) {
        return Err(SqlError::DoBody(
            "the DO block's body cannot be inspected".into(),
        ));
    }
    let wrapped = format!(
        "CREATE FUNCTION airlock_do() RETURNS void LANGUAGE plpgsql AS {WRAP_TAG}{body}{WRAP_TAG}"
    );
    let tree = std::panic::catch_unwind(|| pg_query::parse_plpgsql(&wrapped))
        .map_err(|_| SqlError::Internal("PL/pgSQL parser panicked".into()))?
        .map_err(do_body_error)?;
    let mut out = Vec::new();
    collect(&tree, options, &mut out, 0)?;
    Ok(out)
}

fn collect(
    v: &Value,
    options: ParseOptions,
    out: &mut Vec<SqlAction>,
    depth: usize,
) -> Result<(), SqlError> {
    if depth > 400 {
        return Err(SqlError::TooDeep);
    }
    match v {
        Value::Array(items) => {
            for i in items {
                collect(i, options, out, depth + 1)?;
            }
        }
        Value::Object(obj) => {
            for (k, child) in obj {
                match k.as_str() {
                    "PLpgSQL_expr" => expression(child, options, out)?,
                    "PLpgSQL_stmt_dynexecute" | "PLpgSQL_stmt_dynfors" | "PLpgSQL_stmt_open"
                        if k != "PLpgSQL_stmt_open" || child.get("dynquery").is_some() =>
                    {
                        out.push(SqlAction {
                            kind: "dynamic".into(),
                            object: SqlObject::Target,
                            flags: SqlFlags {
                                statement: "do".into(),
                                variable: "dynamic_sql".into(),
                                nested: true,
                                ..SqlFlags::default()
                            },
                        });
                    }
                    _ => {}
                }
                collect(child, options, out, depth + 1)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// One embedded SQL statement or expression.
fn expression(
    expr: &Value,
    options: ParseOptions,
    out: &mut Vec<SqlAction>,
) -> Result<(), SqlError> {
    let Some(query) = expr.get("query").and_then(Value::as_str) else {
        return Ok(());
    };
    // PL/pgSQL records which grammar the text is for; expressions and assignments are
    // not complete statements.
    let mode = expr.get("parseMode").and_then(Value::as_i64).unwrap_or(0);
    let mut parser = ParserOptions::from(mode as i32);
    if !options.standard_conforming_strings {
        parser |= ParserOptions::DISABLE_STANDARD_CONFORMING_STRINGS;
    }
    let parsed = std::panic::catch_unwind(|| pg_query::parse(query, parser))
        .map_err(|_| SqlError::Internal("parser panicked".into()))?
        .map_err(do_body_error)?;
    for raw in &parsed.protobuf.stmts {
        let Some(node) = raw.stmt.as_ref() else {
            continue;
        };
        let value = serde_json::to_value(node).map_err(|e| SqlError::Internal(e.to_string()))?;
        let inner = statement(&value, query.to_owned(), options)?;
        for mut a in inner.actions {
            a.flags.nested = true;
            a.flags.statement = "do".into();
            out.push(a);
        }
    }
    Ok(())
}

/// A parse failure inside a `DO` body, with the parser's own message.
fn do_body_error(e: pg_query::Error) -> SqlError {
    match e {
        pg_query::Error::Parse(m) => SqlError::DoBody(m),
        other => SqlError::DoBody(other.to_string()),
    }
}
