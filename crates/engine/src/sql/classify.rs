//! Statement text → [`Statement`]s with their actions.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use airlock_model::{SqlAction, SqlFlags, SqlObject};
use pg_query::ParserOptions;
use serde_json::{Map, Value};

use super::plpgsql;

/// How the session's server parses text, which changes what a statement means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ParseOptions {
    /// The session's `standard_conforming_strings` (on unless the server says off).
    pub standard_conforming_strings: bool,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            standard_conforming_strings: true,
        }
    }
}

impl ParseOptions {
    fn parser(self) -> ParserOptions {
        if self.standard_conforming_strings {
            ParserOptions::DEFAULT
        } else {
            ParserOptions::DISABLE_STANDARD_CONFORMING_STRINGS
        }
    }
}

/// Why a statement could not be understood. Every case is refused (fail closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqlError {
    /// PostgreSQL's grammar rejects the text: the server's own message (from
    /// libpg_query), e.g. `syntax error at or near "FORM"`.
    #[error("syntax error: {0}")]
    Syntax(String),
    /// The PL/pgSQL body of a `DO` block does not parse (or cannot be inspected). The
    /// statement itself is valid SQL: the server would reject the body only when it
    /// compiles it, as the block starts to run.
    #[error("syntax error in the DO block: {0}")]
    DoBody(String),
    /// The statement contains NUL bytes, which PostgreSQL would cut it at.
    #[error("the statement contains a NUL byte")]
    Nul,
    /// The parse tree is deeper or larger than Airlock walks.
    #[error("the statement is too deeply nested to inspect")]
    TooDeep,
    /// The parser failed in an unexpected way.
    #[error("the SQL parser failed: {0}")]
    Internal(String),
}

/// What a statement does to the session beyond its actions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatementEffect {
    /// Nothing beyond its actions.
    None,
    /// `PREPARE name AS ...`: later `EXECUTE name` runs `actions`.
    Prepare {
        /// Statement name.
        name: String,
        /// The prepared statement's own actions.
        actions: Vec<SqlAction>,
    },
    /// `EXECUTE name`: runs what was prepared under `name`.
    Execute {
        /// Statement name.
        name: String,
    },
    /// `DEALLOCATE name` or `DEALLOCATE ALL` (`None`).
    Deallocate {
        /// Statement name, or `None` for all.
        name: Option<String>,
    },
    /// Transaction control.
    Transaction(TxControl),
}

/// Which transaction-control statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxControl {
    /// `BEGIN`, `START TRANSACTION`.
    Begin,
    /// `COMMIT`, `END` (also `AND CHAIN`).
    Commit,
    /// `ROLLBACK`, `ABORT`.
    Rollback,
    /// `SAVEPOINT`.
    Savepoint,
    /// `RELEASE SAVEPOINT`.
    Release,
    /// `ROLLBACK TO SAVEPOINT`.
    RollbackTo,
    /// `PREPARE TRANSACTION`.
    Prepare,
    /// `COMMIT PREPARED`.
    CommitPrepared,
    /// `ROLLBACK PREPARED`.
    RollbackPrepared,
}

impl TxControl {
    /// Whether its effect outlives the session if the session dies right after it:
    /// commits and the two-phase commands do; `BEGIN`, `ROLLBACK` and savepoints are
    /// undone or made moot by a dropped connection.
    pub fn lasting(self) -> bool {
        matches!(
            self,
            TxControl::Commit
                | TxControl::Prepare
                | TxControl::CommitPrepared
                | TxControl::RollbackPrepared
        )
    }

    /// Whether it can change settings (`SET LOCAL` reverts when a transaction ends, a
    /// rollback undoes `SET`), and so how later text parses.
    pub fn may_change_settings(self) -> bool {
        !matches!(
            self,
            TxControl::Begin | TxControl::Savepoint | TxControl::Release
        )
    }
}

/// One top-level statement of a query string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// Its text, as a slice of the query string.
    pub text: String,
    /// The top-level kind (`select`, `delete`, `create`...).
    pub kind: String,
    /// Everything it does, each to be permitted.
    pub actions: Vec<SqlAction>,
    /// Session-level effect (prepared statements).
    pub effect: StatementEffect,
    /// What its result is made of, for masking.
    pub result: ResultShape,
}

/// `OnConflictAction::ONCONFLICT_UPDATE` in pg_query's protobuf enum.
const ON_CONFLICT_UPDATE: i64 = 3;

/// Deepest parse tree walked (in serde levels, about three per expression level);
/// deeper statements are refused.
const MAX_DEPTH: usize = 6000;
/// Deepest expression nesting accepted, estimated from tokens before parsing. The parse
/// tree is built, encoded and decoded recursively, so an unbounded chain like
/// `1+1+...+1` must be stopped before it reaches the parser.
const MAX_ESTIMATED_DEPTH: usize = 1500;
/// Cached classifications kept; the cache is cleared when it fills.
const CACHE_CAPACITY: usize = 4096;

/// Normalized text and `standard_conforming_strings`.
type CacheKey = (String, bool);
/// A single statement's kind, actions, result shape and effect.
type Cached = (String, Vec<SqlAction>, ResultShape, StatementEffect);

/// Longest statement text remembered verbatim by the exact-text cache.
const EXACT_MAX_LEN: usize = 4096;

/// Classifies statements, caching single statements by their normalized text so that
/// literals do not defeat the cache, and in front of that by their exact text: a
/// parameterized statement (`$1`), which clients using the extended protocol send
/// with every execution, then costs a hash lookup instead of a parse to normalize it.
#[derive(Default)]
pub struct Classifier {
    cache: Mutex<HashMap<CacheKey, Arc<Cached>>>,
    exact: Mutex<HashMap<CacheKey, Arc<Cached>>>,
}

fn remember(cache: &Mutex<HashMap<CacheKey, Arc<Cached>>>, key: CacheKey, value: Arc<Cached>) {
    if let Ok(mut cache) = cache.lock() {
        if cache.len() >= CACHE_CAPACITY {
            cache.clear();
        }
        cache.insert(key, value);
    }
}

fn from_cache(text: &str, hit: &Cached) -> Vec<Statement> {
    vec![Statement {
        text: text.trim().to_owned(),
        kind: hit.0.clone(),
        actions: hit.1.clone(),
        effect: hit.3.clone(),
        result: hit.2.clone(),
    }]
}

impl Classifier {
    /// A classifier with an empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses `text` (one or several statements) and returns each statement's actions.
    pub fn classify(&self, text: &str, options: ParseOptions) -> Result<Vec<Statement>, SqlError> {
        if text.contains('\0') {
            return Err(SqlError::Nul);
        }
        // Before anything recursive (normalizing parses the whole tree too).
        if too_deep(text) {
            return Err(SqlError::TooDeep);
        }
        let exact_key = (text.len() <= EXACT_MAX_LEN)
            .then(|| (text.to_owned(), options.standard_conforming_strings));
        if let Some(k) = &exact_key
            && let Some(hit) = self.exact.lock().ok().and_then(|c| c.get(k).cloned())
        {
            return Ok(from_cache(text, &hit));
        }
        // Keyed by the statement with its constants replaced by placeholders: every
        // identifier, alias and function name stays as written, so two statements
        // share an entry only if they differ in constants alone, which never changes
        // the actions of the cacheable kinds below. The one-pass key (`cache_key`)
        // when the text is simple enough for it, else `pg_query::normalize`, which
        // parses the statement to find its constants.
        let fast = cache_key::literal_free_key(text, options.standard_conforming_strings);
        let fast_without_constants = fast
            .as_deref()
            .is_some_and(|k| cache_key::has_no_literal(k, text));
        let key = fast
            .or_else(|| {
                std::panic::catch_unwind(|| pg_query::normalize(text))
                    .ok()
                    .and_then(Result::ok)
            })
            .map(|normalized| (normalized, options.standard_conforming_strings));
        // Only text without constants goes into the exact cache: it is what repeats
        // verbatim (`... WHERE id = $1`), and an exact hit skips even the one-pass key;
        // text with literals would only churn it.
        let without_constants =
            fast_without_constants || key.as_ref().is_some_and(|(n, _)| n == text);
        let exact_key = exact_key.filter(|_| without_constants);
        if let Some(key) = &key
            && let Some(hit) = self.cache.lock().ok().and_then(|c| c.get(key).cloned())
        {
            if let Some(k) = exact_key {
                remember(&self.exact, k, hit.clone());
            }
            return Ok(from_cache(text, &hit));
        }
        let statements = classify_uncached(text, options)?;
        if let (Some(key), [only]) = (key, statements.as_slice())
            && options.standard_conforming_strings
            && cacheable(only)
        {
            let value = Arc::new((
                only.kind.clone(),
                only.actions.clone(),
                only.result.clone(),
                only.effect.clone(),
            ));
            if let Some(k) = exact_key {
                remember(&self.exact, k, value.clone());
            }
            remember(&self.cache, key, value);
        }
        Ok(statements)
    }
}

/// Only plain DML and transaction control are cached: their actions and effect depend
/// on identifiers and keywords alone, never on a constant (unlike DO bodies, COPY
/// options, SET values, prepared statement names, or the transaction id of `PREPARE
/// TRANSACTION 'id'`). Caching `BEGIN` and `COMMIT` matters: a transaction sends both
/// every time, and parsing them cost more than the cache lookups of everything between.
fn cacheable(s: &Statement) -> bool {
    let effect_is_constant = match &s.effect {
        StatementEffect::None => matches!(
            s.kind.as_str(),
            "select" | "insert" | "update" | "delete" | "merge"
        ),
        StatementEffect::Transaction(control) => matches!(
            control,
            TxControl::Begin
                | TxControl::Commit
                | TxControl::Rollback
                | TxControl::Savepoint
                | TxControl::Release
                | TxControl::RollbackTo
        ),
        _ => false,
    };
    effect_is_constant
        && s.actions
            .iter()
            .all(|a| a.kind != "do" && a.kind != "copy" && !a.flags.into)
}

/// Parses and walks without the cache.
pub(crate) fn classify_uncached(
    text: &str,
    options: ParseOptions,
) -> Result<Vec<Statement>, SqlError> {
    if too_deep(text) {
        return Err(SqlError::TooDeep);
    }
    // A panic inside the parser binding must refuse the statement, not kill the session.
    let parsed = std::panic::catch_unwind(|| pg_query::parse(text, options.parser()))
        .map_err(|_| SqlError::Internal("parser panicked".into()))?;
    let parsed = parsed.map_err(|e| match e {
        pg_query::Error::Parse(m) => SqlError::Syntax(m),
        other => SqlError::Internal(other.to_string()),
    })?;
    let mut out = Vec::new();
    for raw in &parsed.protobuf.stmts {
        let Some(node) = raw.stmt.as_ref() else {
            continue;
        };
        let value = serde_json::to_value(node).map_err(|e| SqlError::Internal(e.to_string()))?;
        let stmt_text = slice(text, raw.stmt_location, raw.stmt_len);
        out.push(statement(&value, stmt_text, options)?);
    }
    Ok(out)
}

/// Whether `text` may nest deeper than the parser is allowed to go. Every token takes
/// at least one byte and the estimate is at most one more than the number of tokens,
/// so text shorter than the limit cannot exceed it and is not scanned at all.
fn too_deep(text: &str) -> bool {
    text.len() >= MAX_ESTIMATED_DEPTH && estimated_depth(text) > MAX_ESTIMATED_DEPTH
}

/// An upper-bound estimate of expression nesting: parentheses, plus chains of binary
/// operators at one parenthesis level (left-associative chains nest one level per
/// operator). Commas and semicolons end a chain. The scanner is iterative, so this is
/// safe on any input.
fn estimated_depth(text: &str) -> usize {
    const OPEN: i32 = 40;
    const CLOSE: i32 = 41;
    const COMMA: i32 = 44;
    const SEMICOLON: i32 = 59;
    const OP: i32 = 265;
    // `scan` (protobuf), not `scan_tokens`: the latter builds a slice from a null
    // pointer when there are no tokens (found by the classifier fuzz target).
    let Ok(scanned) = pg_query::scan(text) else {
        return 0; // the parser will report the error
    };
    let tokens = scanned.tokens;
    let mut chains: Vec<usize> = vec![0];
    let mut max = 0;
    for t in tokens {
        match t.token {
            OPEN => chains.push(0),
            CLOSE if chains.len() > 1 => {
                chains.pop();
            }
            COMMA | SEMICOLON => {
                if let Some(c) = chains.last_mut() {
                    *c = 0;
                }
            }
            // + - * / % ^ < > = and multi-character operators (||, <=, ->> ...).
            37 | 42 | 43 | 45 | 47 | 60 | 61 | 62 | 94 | OP => {
                if let Some(c) = chains.last_mut() {
                    *c += 1;
                }
            }
            _ => {}
        }
        max = max.max(chains.len() + chains.last().copied().unwrap_or(0));
    }
    max
}

fn slice(text: &str, location: i32, len: i32) -> String {
    let start = usize::try_from(location).unwrap_or(0);
    let end = if len <= 0 {
        text.len()
    } else {
        start.saturating_add(len as usize).min(text.len())
    };
    text.get(start..end).unwrap_or(text).trim().to_owned()
}

/// Classifies one statement node (`{"node": {"SelectStmt": {...}}}`).
pub(crate) fn statement(
    node: &Value,
    text: String,
    options: ParseOptions,
) -> Result<Statement, SqlError> {
    let (tag, body) =
        tagged(node).ok_or_else(|| SqlError::Internal("empty statement node".into()))?;
    let kind = kind_of(tag, body);
    let mut w = Walker {
        actions: Vec::new(),
        statement_kind: kind.clone(),
        options,
        depth: 0,
    };
    w.stmt(tag, body, &[], false)?;
    let effect = match tag {
        "PrepareStmt" => {
            let name = str_field(body, "name").to_owned();
            let mut inner = Walker {
                actions: Vec::new(),
                statement_kind: String::new(),
                options,
                depth: 0,
            };
            if let Some((t, b)) = body.get("query").and_then(tagged) {
                inner.statement_kind = kind_of(t, b);
                inner.stmt(t, b, &[], true)?;
            }
            StatementEffect::Prepare {
                name,
                actions: inner.actions,
            }
        }
        "ExecuteStmt" => StatementEffect::Execute {
            name: str_field(body, "name").to_owned(),
        },
        // EXPLAIN ANALYZE EXECUTE p runs p: decided as p's actions too.
        "ExplainStmt" => match body.get("query").and_then(tagged) {
            Some(("ExecuteStmt", e))
                if w.actions
                    .iter()
                    .any(|a| a.kind == "explain" && a.flags.analyze) =>
            {
                StatementEffect::Execute {
                    name: str_field(e, "name").to_owned(),
                }
            }
            _ => StatementEffect::None,
        },
        "TransactionStmt" => {
            use pg_query::protobuf::TransactionStmtKind as Tx;
            const KINDS: [(Tx, TxControl); 9] = [
                (Tx::TransStmtBegin, TxControl::Begin),
                (Tx::TransStmtStart, TxControl::Begin),
                (Tx::TransStmtRollback, TxControl::Rollback),
                (Tx::TransStmtSavepoint, TxControl::Savepoint),
                (Tx::TransStmtRelease, TxControl::Release),
                (Tx::TransStmtRollbackTo, TxControl::RollbackTo),
                (Tx::TransStmtPrepare, TxControl::Prepare),
                (Tx::TransStmtCommitPrepared, TxControl::CommitPrepared),
                (Tx::TransStmtRollbackPrepared, TxControl::RollbackPrepared),
            ];
            let kind = body.get("kind").and_then(Value::as_i64).unwrap_or(0);
            // COMMIT, and anything unknown, is treated as the strictest.
            let control = KINDS
                .iter()
                .find(|(k, _)| *k as i64 == kind)
                .map_or(TxControl::Commit, |(_, c)| *c);
            StatementEffect::Transaction(control)
        }
        "DeallocateStmt" => {
            let name = str_field(body, "name");
            let all =
                body.get("isall").and_then(Value::as_bool).unwrap_or(false) || name.is_empty();
            StatementEffect::Deallocate {
                name: (!all).then(|| name.to_owned()),
            }
        }
        _ => StatementEffect::None,
    };
    // What a PREPARE returns when executed is its query's result.
    let result = match (tag, body.get("query").and_then(tagged)) {
        ("PrepareStmt", Some((t, b))) => shape::shape(t, b),
        _ => shape::shape(tag, body),
    };
    Ok(Statement {
        text,
        kind,
        actions: dedup(w.actions),
        effect,
        result,
    })
}

fn dedup(actions: Vec<SqlAction>) -> Vec<SqlAction> {
    let mut out: Vec<SqlAction> = Vec::with_capacity(actions.len());
    for a in actions {
        if !out.contains(&a) {
            out.push(a);
        }
    }
    out
}

/// `{"node": {"Tag": body}}` or `{"Tag": body}` → (Tag, body).
fn tagged(v: &Value) -> Option<(&str, &Value)> {
    let v = v.get("node").unwrap_or(v);
    let obj = v.as_object()?;
    if obj.len() != 1 {
        return None;
    }
    obj.iter().next().map(|(k, b)| (k.as_str(), b))
}

fn str_field<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn bool_field(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn present(v: &Value, key: &str) -> bool {
    v.get(key).is_some_and(|x| !x.is_null())
}

/// The action kind of a statement node.
fn kind_of(tag: &str, body: &Value) -> String {
    let k = match tag {
        "SelectStmt" => "select",
        "InsertStmt" => "insert",
        "UpdateStmt" => "update",
        "DeleteStmt" => "delete",
        "MergeStmt" => "merge",
        "CopyStmt" => "copy",
        "TruncateStmt" => "truncate",
        "GrantStmt" | "GrantRoleStmt" => {
            if bool_field(body, "is_grant") {
                "grant"
            } else {
                "revoke"
            }
        }
        "VariableSetStmt" => "set",
        "VariableShowStmt" => "show",
        "TransactionStmt" => "transaction",
        "PrepareStmt" => "prepare",
        "ExecuteStmt" => "execute",
        "DeallocateStmt" => "deallocate",
        "DoStmt" => "do",
        "CallStmt" => "call",
        "ExplainStmt" => "explain",
        "ListenStmt" => "listen",
        "UnlistenStmt" => "unlisten",
        "NotifyStmt" => "notify",
        "VacuumStmt" => {
            if bool_field(body, "is_vacuumcmd") {
                "vacuum"
            } else {
                "analyze"
            }
        }
        "LockStmt" => "lock",
        "DiscardStmt" => "discard",
        "CheckPointStmt" => "checkpoint",
        "CommentStmt" => "comment",
        "RefreshMatViewStmt" => "refresh",
        "ClusterStmt" => "cluster",
        "ReindexStmt" => "reindex",
        "LoadStmt" => "load",
        "DeclareCursorStmt" => "declare",
        "FetchStmt" => "fetch",
        "ClosePortalStmt" => "close",
        "CreateTableAsStmt" | "ViewStmt" | "IndexStmt" | "RuleStmt" | "CreateTrigStmt"
        | "DefineStmt" => "create",
        "RenameStmt" | "AlterSystemStmt" => "alter",
        "DropOwnedStmt"
        | "DropRoleStmt"
        | "DropdbStmt"
        | "DropTableSpaceStmt"
        | "DropSubscriptionStmt"
        | "DropUserMappingStmt" => "drop",
        "ReassignOwnedStmt" => "alter",
        t if t.starts_with("Create") => "create",
        t if t.starts_with("Alter") => "alter",
        t if t.starts_with("Drop") => "drop",
        _ => "utility",
    };
    k.to_owned()
}

/// Every action kind the classifier can produce (for the Cedar schema).
pub const SQL_KINDS: &[&str] = &[
    "select",
    "insert",
    "update",
    "delete",
    "merge",
    "copy",
    "create",
    "alter",
    "drop",
    "truncate",
    "grant",
    "revoke",
    "set",
    "show",
    "transaction",
    "prepare",
    "execute",
    "deallocate",
    "do",
    "call",
    "explain",
    "listen",
    "unlisten",
    "notify",
    "vacuum",
    "analyze",
    "lock",
    "discard",
    "checkpoint",
    "comment",
    "refresh",
    "cluster",
    "reindex",
    "load",
    "declare",
    "fetch",
    "close",
    "dynamic",
    "utility",
];

struct Walker {
    actions: Vec<SqlAction>,
    statement_kind: String,
    options: ParseOptions,
    depth: usize,
}

/// A relation node (`RangeVar`, tagged or not) as a table object.
fn table_of(v: &Value) -> Option<SqlObject> {
    let name = v.get("relname")?.as_str()?;
    let schema = str_field(v, "schemaname");
    Some(SqlObject::Table {
        schema: if schema.is_empty() {
            "public".to_owned()
        } else {
            schema.to_owned()
        },
        name: name.to_owned(),
    })
}

/// A qualified name list (`[{"node":{"String":{"sval":"a"}}}, ...]`) as strings.
fn name_list(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|i| {
                    tagged(i)
                        .and_then(|(t, b)| (t == "String").then(|| str_field(b, "sval").to_owned()))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn function_object(names: &[String]) -> Option<SqlObject> {
    let (name, rest) = names.split_last()?;
    // Names are as the parser returns them: unquoted ones already folded to lower case,
    // quoted ones exact ("Lower" is not lower).
    Some(SqlObject::Function {
        schema: rest.last().cloned(),
        name: name.clone(),
    })
}

impl Walker {
    fn push(&mut self, kind: &str, object: SqlObject, flags: SqlFlags) {
        self.actions.push(SqlAction {
            kind: kind.to_owned(),
            object,
            flags,
        });
    }

    fn flags(&self, nested: bool) -> SqlFlags {
        SqlFlags {
            statement: self.statement_kind.clone(),
            nested,
            ..SqlFlags::default()
        }
    }

    /// Handles a statement node found at any depth: its own action(s), then a full walk
    /// of everything inside it.
    fn stmt(
        &mut self,
        tag: &str,
        body: &Value,
        scope: &[String],
        nested: bool,
    ) -> Result<(), SqlError> {
        let mut flags = self.flags(nested);
        let mut skip: Vec<&str> = Vec::new();
        match tag {
            "SelectStmt" => {
                if let Some(into) = body.get("into_clause").filter(|v| !v.is_null()) {
                    flags.into = true;
                    if let Some(t) = into.get("rel").and_then(table_of) {
                        self.push("create", t, flags.clone());
                    }
                    skip.push("into_clause");
                }
                // A top-level SELECT reads at least the target (SELECT 1); a nested one
                // (a subquery, INSERT's VALUES) adds only what it reads and calls.
                if !nested {
                    self.push("select", SqlObject::Target, flags.clone());
                }
            }
            "InsertStmt" | "UpdateStmt" | "DeleteStmt" | "MergeStmt" => {
                let kind = kind_of(tag, body);
                flags.has_where = present(body, "where_clause");
                if let Some(t) = body.get("relation").and_then(table_of) {
                    // INSERT ... ON CONFLICT DO UPDATE also updates the table.
                    let upsert = body
                        .get("on_conflict_clause")
                        .and_then(|c| c.get("action"))
                        .and_then(Value::as_i64)
                        .is_some_and(|a| a == ON_CONFLICT_UPDATE);
                    if upsert {
                        let mut update_flags = flags.clone();
                        update_flags.has_where = true;
                        self.push("update", t.clone(), update_flags);
                    }
                    self.push(&kind, t, flags.clone());
                }
                skip.push("relation");
            }
            "CopyStmt" => {
                flags.program = bool_field(body, "is_program");
                flags.copy_from = bool_field(body, "is_from");
                let object = body
                    .get("relation")
                    .and_then(table_of)
                    .unwrap_or(SqlObject::Target);
                self.push("copy", object.clone(), flags.clone());
                if !flags.copy_from && matches!(object, SqlObject::Table { .. }) {
                    self.push("select", object, flags.clone());
                } else if flags.copy_from && matches!(object, SqlObject::Table { .. }) {
                    self.push("insert", object, flags.clone());
                }
                skip.push("relation");
            }
            "ExplainStmt" => {
                flags.analyze = body
                    .get("options")
                    .and_then(Value::as_array)
                    .is_some_and(|opts| {
                        opts.iter().any(|o| {
                            tagged(o).is_some_and(|(t, b)| {
                                t == "DefElem"
                                    && str_field(b, "defname") == "analyze"
                                    && def_true(b)
                            })
                        })
                    });
                self.push("explain", SqlObject::Target, flags.clone());
                if !flags.analyze {
                    // Planning does not execute: the explained statement's reads are
                    // still reads, but its writes are not decided as writes.
                    if let Some(q) = body.get("query") {
                        let before = self.actions.len();
                        self.walk(q, scope, true)?;
                        for a in self.actions.iter_mut().skip(before) {
                            if !matches!(a.kind.as_str(), "select" | "call") {
                                a.kind = "explain".into();
                            }
                        }
                    }
                    skip.push("query");
                } else {
                    let saved = std::mem::replace(&mut self.statement_kind, "explain".into());
                    if let Some(q) = body.get("query") {
                        self.walk_analyzed(q, scope)?;
                    }
                    self.statement_kind = saved;
                    skip.push("query");
                }
            }
            "VariableSetStmt" | "VariableShowStmt" => {
                flags.variable = str_field(body, "name").to_lowercase();
                self.push(&kind_of(tag, body), SqlObject::Target, flags.clone());
            }
            "AlterSystemStmt" => {
                flags.system = true;
                if let Some(set) = body.get("setstmt") {
                    flags.variable = str_field(set, "name").to_lowercase();
                }
                self.push("alter", SqlObject::Target, flags.clone());
                skip.push("setstmt");
            }
            "DoStmt" => {
                self.push("do", SqlObject::Target, flags.clone());
                for a in plpgsql::do_block_actions(body, self.options)? {
                    self.actions.push(a);
                }
                skip.push("args");
            }
            "CallStmt" => {
                if let Some(call) = body.get("funccall") {
                    let names = name_list(call.get("funcname").unwrap_or(&Value::Null));
                    if let Some(f) = function_object(&names) {
                        self.push("call", f, flags.clone());
                    }
                }
            }
            "TruncateStmt" | "LockStmt" => {
                let kind = kind_of(tag, body);
                for r in body
                    .get("relations")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(t) = tagged(r).and_then(|(_, b)| table_of(b)) {
                        self.push(&kind, t, flags.clone());
                    }
                }
                skip.push("relations");
            }
            "DropStmt" => {
                let mut any = false;
                // OBJECT_TABLE, VIEW, MATVIEW, SEQUENCE, FOREIGN TABLE, INDEX drop relations.
                for o in body
                    .get("objects")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let names = match tagged(o) {
                        Some(("List", b)) => name_list(b.get("items").unwrap_or(&Value::Null)),
                        _ => Vec::new(),
                    };
                    if let Some((name, rest)) = names.split_last() {
                        let schema = rest.last().cloned().unwrap_or_else(|| "public".into());
                        self.push(
                            "drop",
                            SqlObject::Table {
                                schema,
                                name: name.clone(),
                            },
                            flags.clone(),
                        );
                        any = true;
                    }
                }
                if !any {
                    self.push("drop", SqlObject::Target, flags.clone());
                }
                skip.push("objects");
            }
            "PrepareStmt" => {
                self.push("prepare", SqlObject::Target, flags.clone());
                // The prepared statement is decided now, and again at EXECUTE.
                if let Some((t, b)) = body.get("query").and_then(tagged) {
                    let saved = std::mem::replace(&mut self.statement_kind, kind_of(t, b));
                    self.enter()?;
                    self.stmt(t, b, scope, true)?;
                    self.leave();
                    self.statement_kind = saved;
                }
                skip.push("query");
            }
            "RuleStmt" => {
                if let Some(t) = body.get("relation").and_then(table_of) {
                    self.push("create", t, flags.clone());
                }
                skip.push("relation");
                // A rule's actions run whenever the rule fires: decide them now.
                let saved = self.statement_kind.clone();
                for a in body
                    .get("actions")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some((t, b)) = tagged(a) {
                        self.statement_kind = kind_of(t, b);
                        self.enter()?;
                        self.stmt(t, b, scope, true)?;
                        self.leave();
                    }
                }
                self.statement_kind = saved;
                skip.push("actions");
            }
            _ => {
                let kind = kind_of(tag, body);
                // DDL and utility statements act on the relation they name, if any.
                let object = ["relation", "view", "rel"]
                    .iter()
                    .find_map(|k| body.get(*k).and_then(table_of))
                    .or_else(|| {
                        body.get("into")
                            .and_then(|i| i.get("rel"))
                            .and_then(table_of)
                    })
                    .unwrap_or(SqlObject::Target);
                self.push(&kind, object, flags.clone());
                for k in ["relation", "view", "rel"] {
                    skip.push(k);
                }
            }
        }
        // Everything else inside the statement: reads, function calls, nested statements.
        let scope = self.scope_with_ctes(body, scope, nested)?;
        if let Some(obj) = body.as_object() {
            for (k, v) in obj {
                if skip.contains(&k.as_str()) || k == "with_clause" {
                    continue;
                }
                self.walk(v, &scope, nested)?;
            }
        }
        Ok(())
    }

    /// EXPLAIN ANALYZE runs the statement: its actions are decided as themselves.
    fn walk_analyzed(&mut self, q: &Value, scope: &[String]) -> Result<(), SqlError> {
        if let Some((t, b)) = tagged(q) {
            self.statement_kind = kind_of(t, b);
            self.enter()?;
            self.stmt(t, b, scope, true)?;
            self.leave();
        }
        Ok(())
    }

    /// Walks a WITH clause's CTEs (each sees the earlier ones, and itself if recursive)
    /// and returns the scope for the statement's body.
    fn scope_with_ctes(
        &mut self,
        body: &Value,
        scope: &[String],
        _nested: bool,
    ) -> Result<Vec<String>, SqlError> {
        let mut scope = scope.to_vec();
        let Some(with) = body.get("with_clause").filter(|v| !v.is_null()) else {
            return Ok(scope);
        };
        let recursive = bool_field(with, "recursive");
        let ctes: Vec<&Value> = with
            .get("ctes")
            .and_then(Value::as_array)
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        let names: Vec<String> = ctes
            .iter()
            .filter_map(|c| tagged(c).map(|(_, b)| str_field(b, "ctename").to_owned()))
            .collect();
        for (i, cte) in ctes.iter().enumerate() {
            let Some((_, b)) = tagged(cte) else { continue };
            let mut visible = scope.clone();
            visible.extend(
                names
                    .iter()
                    .take(if recursive { names.len() } else { i })
                    .cloned(),
            );
            if let Some(q) = b.get("ctequery") {
                self.walk(q, &visible, true)?;
            }
        }
        scope.extend(names);
        Ok(scope)
    }

    fn enter(&mut self) -> Result<(), SqlError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            Err(SqlError::TooDeep)
        } else {
            Ok(())
        }
    }

    fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// Visits every node below `v`.
    fn walk(&mut self, v: &Value, scope: &[String], nested: bool) -> Result<(), SqlError> {
        self.enter()?;
        let r = self.walk_inner(v, scope, nested);
        self.leave();
        r
    }

    fn walk_inner(&mut self, v: &Value, scope: &[String], nested: bool) -> Result<(), SqlError> {
        match v {
            Value::Array(items) => {
                for i in items {
                    self.walk(i, scope, nested)?;
                }
            }
            Value::Object(obj) => self.walk_object(obj, v, scope, nested)?,
            _ => {}
        }
        Ok(())
    }

    fn walk_object(
        &mut self,
        obj: &Map<String, Value>,
        v: &Value,
        scope: &[String],
        nested: bool,
    ) -> Result<(), SqlError> {
        // A bare relation (a RangeVar field that is not a tagged node).
        if obj.contains_key("relname") {
            self.read(v, scope, nested);
            return Ok(());
        }
        if let Some((tag, body)) = tagged(v)
            && tag.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        {
            return self.node(tag, body, scope, nested);
        }
        for child in obj.values() {
            self.walk(child, scope, nested)?;
        }
        Ok(())
    }

    fn read(&mut self, rangevar: &Value, scope: &[String], nested: bool) {
        let schema = str_field(rangevar, "schemaname");
        let name = str_field(rangevar, "relname");
        if schema.is_empty() && scope.iter().any(|c| c == name) {
            return; // a CTE in scope, not a table
        }
        if let Some(t) = table_of(rangevar) {
            let flags = self.flags(nested);
            self.push("select", t, flags);
        }
    }

    fn node(
        &mut self,
        tag: &str,
        body: &Value,
        scope: &[String],
        nested: bool,
    ) -> Result<(), SqlError> {
        match tag {
            "RangeVar" => self.read(body, scope, nested),
            "FuncCall" => {
                let names = name_list(body.get("funcname").unwrap_or(&Value::Null));
                if let Some(f) = function_object(&names) {
                    let flags = self.flags(nested);
                    self.push("call", f, flags);
                }
                self.walk(body, scope, nested)?;
            }
            // A statement inside another (a data-modifying CTE, a subquery): its actions
            // count, flagged as nested, under the top-level statement's kind.
            t if t.ends_with("Stmt") && t != "RawStmt" => self.stmt(tag, body, scope, true)?,
            _ => self.walk(body, scope, nested)?,
        }
        Ok(())
    }
}

/// A DefElem option with no argument, or a true-ish one (`ANALYZE`, `ANALYZE true`).
fn def_true(def: &Value) -> bool {
    let Some(arg) = def.get("arg").filter(|a| !a.is_null()) else {
        return true;
    };
    match tagged(arg) {
        Some(("Boolean", b)) => bool_field(b, "boolval"),
        Some(("String", b)) => !matches!(
            str_field(b, "sval").to_ascii_lowercase().as_str(),
            "false" | "off" | "0" | "no"
        ),
        Some(("Integer", b)) => b.get("ival").and_then(Value::as_i64).unwrap_or(0) != 0,
        _ => true,
    }
}

mod cache_key;
mod shape;
pub use shape::{CopyOut, CopySource, ResultShape};

#[cfg(test)]
mod tests;
