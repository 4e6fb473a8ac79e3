//! PII discovery for `airlock masking discover`: sample the text-like columns of a
//! target's tables and count, per column, how many sampled values the detectors find
//! something in.
//!
//! It opens a connection of its own with the target's vaulted credential (as sessions
//! and the catalog loader do) and runs, read only:
//!
//! 1. one catalog query listing every text-like column (string types such as `text`,
//!    `varchar`, `char`, `name` and `citext`, domains over them, `json`, `jsonb`, `xml`,
//!    and arrays of all these) of ordinary tables, partitioned tables (the parent, not
//!    each partition) and materialized views, outside `pg_catalog`, `information_schema`,
//!    `pg_toast` and temporary schemas. `bytea` is left out: its values are often large
//!    binary files, and the gateway scans them on the wire anyway;
//! 2. per table, one sampling query over all its readable text-like columns at once:
//!    `TABLESAMPLE SYSTEM (p) LIMIT n`, where `p` is chosen from the planner's row
//!    estimate so that about twice `n` rows are read (whole random pages, so the cost is
//!    about `p` % of the table's pages and never more than what `LIMIT` lets through).
//!    A table estimated at most `2n` rows, or never analyzed, is read with a plain
//!    `LIMIT n`; so is a table whose sample came back with fewer than `n / 2` rows
//!    (stale statistics). `ORDER BY random()` is never used: it reads and sorts the
//!    whole table. Each value is cut to its first [`MAX_VALUE_CHARS`] characters.
//!
//! Every query runs in its own `BEGIN READ ONLY` transaction with `statement_timeout`
//! and `lock_timeout` set locally, so no table stays locked longer than its own query
//! and nothing can be written, whatever a row-level security function might try. A
//! table whose query fails (a timeout, a missing privilege, an unpopulated materialized
//! view) is reported and skipped; the run goes on with the next table.
//!
//! Sampled values never leave this module: they are scanned as they arrive and only
//! counts are returned. Error texts that a detector finds something in are withheld.

use std::collections::BTreeMap;
use std::time::Duration;

use airlock_engine::masking::detect::{Finding, Scanner};
use airlock_session::Target;
use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use crate::error::UpstreamError;
use crate::upstream::{self, simple_query};

/// Longest prefix of a value that is sampled, in characters.
pub const MAX_VALUE_CHARS: usize = 4096;

/// `application_name` of the discovery connection, so a DBA can tell it apart.
pub const APPLICATION_NAME: &str = "airlock masking discover";

/// How much to sample, and for how long each query may run.
#[derive(Debug, Clone)]
pub struct Options {
    /// At most this many rows per table (so values per column).
    pub sample: u32,
    /// `statement_timeout` of each query.
    pub timeout: Duration,
    /// Only these schemas; empty means every non-system schema.
    pub schemas: Vec<String>,
}

/// Why discovery could not run at all (per-table failures are in [`TableSample::error`]).
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// The connection to the target could not be opened.
    #[error(transparent)]
    Connect(#[from] UpstreamError),
    /// The catalog query failed.
    #[error("cannot list the target's columns: {0}")]
    Catalog(String),
    /// The server did not answer in time, even after its own statement timeout.
    #[error("the target did not answer within {secs} s; the run was stopped")]
    NoAnswer {
        /// How long we waited.
        secs: u64,
    },
    /// The connection broke during the run.
    #[error("the connection to the target broke: {0}")]
    Lost(String),
}

/// How a table's rows were picked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Method {
    /// `TABLESAMPLE SYSTEM (percent)`.
    System {
        /// The sampling percentage.
        percent: f64,
    },
    /// The first rows the server returns (`LIMIT n`): a small or never analyzed table,
    /// or a system sample that came back short.
    Limit,
}

impl Method {
    /// `"system 0.25%"` or `"limit"`.
    pub fn label(&self) -> String {
        match self {
            Method::System { percent } => format!("tablesample system {percent}%"),
            Method::Limit => "limit".into(),
        }
    }
}

/// What was found in one column.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnSample {
    /// The column's name.
    pub name: String,
    /// Its type, as `format_type` writes it.
    pub type_name: String,
    /// Whether the target's role may read it; unreadable columns are not sampled.
    pub readable: bool,
    /// Non-null values sampled.
    pub sampled: u64,
    /// Values in which at least one detector found something.
    pub matched: u64,
    /// Per detector, the values it found something in.
    pub detectors: BTreeMap<String, u64>,
}

/// One table's sample.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSample {
    /// Its schema.
    pub schema: String,
    /// Its name.
    pub table: String,
    /// The planner's row estimate (`pg_class.reltuples`; the leaves' sum for a
    /// partitioned table); negative when unknown.
    pub estimated_rows: f64,
    /// Rows sampled.
    pub rows: u64,
    /// How they were picked; `None` when the table was not sampled.
    pub method: Option<Method>,
    /// Its text-like columns.
    pub columns: Vec<ColumnSample>,
    /// Why the table could not be sampled.
    pub error: Option<String>,
}

/// Every sampled table, in schema and name order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Discovery {
    /// The tables with text-like columns.
    pub tables: Vec<TableSample>,
}

/// Quotes an identifier as `quote_ident` does when quoting is needed: in double quotes,
/// with every double quote doubled. Quoting always is equally valid and never wrong.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

const CATALOG_SQL: &str = "SELECT n.nspname, c.relname, \
       CASE WHEN c.relkind = 'p' THEN \
         (SELECT COALESCE(pg_catalog.sum(GREATEST(l.reltuples, 0)), -1)::pg_catalog.float8 \
            FROM pg_catalog.pg_partition_tree(c.oid) pt \
            JOIN pg_catalog.pg_class l ON l.oid = pt.relid WHERE pt.isleaf) \
       ELSE c.reltuples::pg_catalog.float8 END, \
       a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), \
       pg_catalog.has_column_privilege(c.oid, a.attnum, 'SELECT') \
  FROM pg_catalog.pg_attribute a \
  JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
  JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
  LEFT JOIN pg_catalog.pg_type e ON e.oid = t.typelem AND t.typcategory = 'A' \
 WHERE c.relkind IN ('r', 'p', 'm') AND NOT c.relispartition \
   AND a.attnum > 0 AND NOT a.attisdropped \
   AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') \
   AND n.nspname !~ '^pg_(toast_)?temp_' \
   AND (t.typcategory = 'S' \
        OR COALESCE(NULLIF(t.typbasetype, 0), t.oid) IN (114, 3802, 142) \
        OR e.typcategory = 'S' \
        OR COALESCE(NULLIF(e.typbasetype, 0), e.oid) IN (114, 3802, 142)) \
 ORDER BY n.nspname, c.relname, a.attnum";

/// Samples the text-like columns of `target`'s tables and counts what `scanner` finds.
pub async fn discover(
    target: &Target,
    scanner: &Scanner,
    options: &Options,
) -> Result<Discovery, DiscoverError> {
    let params = [
        ("application_name".to_owned(), APPLICATION_NAME.to_owned()),
        ("client_encoding".to_owned(), "UTF8".to_owned()),
    ];
    let mut conn = Conn {
        up: upstream::connect(target, &params).await?,
        target,
        timeout: options.timeout,
    };
    let result = run(&mut conn, scanner, options).await;
    conn.close().await;
    result
}

async fn run(
    conn: &mut Conn<'_>,
    scanner: &Scanner,
    options: &Options,
) -> Result<Discovery, DiscoverError> {
    let listing = conn
        .read_only(&[CATALOG_SQL])
        .await?
        .map_err(DiscoverError::Catalog)?;
    let mut tables: Vec<TableSample> = Vec::new();
    for row in listing {
        let text = |i: usize| row.get(i).cloned().flatten().unwrap_or_default();
        let (schema, table) = (text(0), text(1));
        if !options.schemas.is_empty() && !options.schemas.contains(&schema) {
            continue;
        }
        let column = ColumnSample {
            name: text(3),
            type_name: text(4),
            readable: text(5) == "t",
            sampled: 0,
            matched: 0,
            detectors: BTreeMap::new(),
        };
        match tables.last_mut() {
            Some(t) if t.schema == schema && t.table == table => t.columns.push(column),
            _ => tables.push(TableSample {
                estimated_rows: text(2).parse().unwrap_or(-1.0),
                schema,
                table,
                rows: 0,
                method: None,
                columns: vec![column],
                error: None,
            }),
        }
    }
    for table in &mut tables {
        sample_table(conn, scanner, options, table).await?;
    }
    Ok(Discovery { tables })
}

/// The sampling percentage for a table of `estimated` rows, or `None` for a plain
/// `LIMIT` (small or unknown tables).
fn system_percent(estimated: f64, sample: u32) -> Option<f64> {
    let wanted = 2.0 * f64::from(sample);
    if !estimated.is_finite() || estimated <= wanted {
        return None;
    }
    let percent = (100.0 * wanted / estimated).clamp(0.000_001, 100.0);
    // Rounded up to 6 decimals, so the SQL literal is short and never 0.
    Some((percent * 1e6).ceil() / 1e6)
}

async fn sample_table(
    conn: &mut Conn<'_>,
    scanner: &Scanner,
    options: &Options,
    table: &mut TableSample,
) -> Result<(), DiscoverError> {
    let readable: Vec<usize> = (0..table.columns.len())
        .filter(|i| table.columns.get(*i).is_some_and(|c| c.readable))
        .collect();
    if readable.is_empty() {
        return Ok(());
    }
    let select = readable
        .iter()
        .filter_map(|i| table.columns.get(*i))
        .map(|c| {
            format!(
                "pg_catalog.left({}::pg_catalog.text, {MAX_VALUE_CHARS})",
                quote_ident(&c.name)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let from = format!(
        "{}.{}",
        quote_ident(&table.schema),
        quote_ident(&table.table)
    );
    let limit = format!("SELECT {select} FROM {from} LIMIT {}", options.sample);
    let percent = system_percent(table.estimated_rows, options.sample);
    let mut method = Method::Limit;
    let mut rows = match percent {
        Some(p) => {
            method = Method::System { percent: p };
            let sampled = format!(
                "SELECT {select} FROM {from} TABLESAMPLE SYSTEM ({p}) LIMIT {}",
                options.sample
            );
            conn.read_only(&[&sampled]).await?
        }
        None => conn.read_only(&[&limit]).await?,
    };
    if method != Method::Limit
        && let Ok(r) = &rows
        && (r.len() as u64) < u64::from(options.sample / 2)
    {
        method = Method::Limit;
        rows = conn.read_only(&[&limit]).await?;
    }
    let rows = match rows {
        Ok(rows) => rows,
        Err(message) => {
            table.error = Some(withhold_values(scanner, message));
            return Ok(());
        }
    };
    table.method = Some(method);
    table.rows = rows.len() as u64;
    let mut findings: Vec<Finding> = Vec::new();
    let mut seen: Vec<bool> = vec![false; scanner.len()];
    for row in rows {
        for (value, index) in row.into_iter().zip(&readable) {
            let (Some(value), Some(column)) = (value, table.columns.get_mut(*index)) else {
                continue;
            };
            column.sampled += 1;
            findings.clear();
            scanner.find(value.as_bytes(), &mut findings);
            if findings.is_empty() {
                continue;
            }
            column.matched += 1;
            seen.iter_mut().for_each(|s| *s = false);
            for f in &findings {
                if let Some(s) = seen.get_mut(usize::from(f.detector.0))
                    && !*s
                {
                    *s = true;
                    *column
                        .detectors
                        .entry(scanner.name(f.detector).to_owned())
                        .or_insert(0) += 1;
                }
            }
        }
    }
    Ok(())
}

/// A server error text, unless a detector finds something in it (an error may quote a
/// value).
fn withhold_values(scanner: &Scanner, message: String) -> String {
    if scanner.may_match(message.as_bytes()) {
        "(the error message is withheld: it may quote a value)".into()
    } else {
        message
    }
}

/// The discovery connection.
struct Conn<'a> {
    up: upstream::Upstream,
    target: &'a Target,
    timeout: Duration,
}

impl Conn<'_> {
    /// Runs `statements` in one `BEGIN READ ONLY` transaction with the time limits set,
    /// then rolls it back. The inner `Err` is the server's error text (the connection
    /// is fine and idle); the outer one means the connection cannot go on.
    async fn read_only(
        &mut self,
        statements: &[&str],
    ) -> Result<Result<Vec<Vec<Option<String>>>, String>, DiscoverError> {
        let ms = self.timeout.as_millis().max(1);
        let lock_ms = ms.min(5000);
        let mut sql = format!(
            "BEGIN READ ONLY; SET LOCAL statement_timeout = {ms}; \
             SET LOCAL lock_timeout = {lock_ms}; SET LOCAL search_path = pg_catalog"
        );
        for s in statements {
            sql.push_str("; ");
            sql.push_str(s);
        }
        let result = self.query(&sql).await?;
        // After an error the transaction is aborted and must be ended; after success
        // there is nothing to keep. A ROLLBACK outside a transaction only warns.
        if let Err(e) = self.query("ROLLBACK").await? {
            return Err(DiscoverError::Lost(e));
        }
        Ok(result)
    }

    /// One simple query, waiting at most the statement timeout and 10 s more.
    async fn query(
        &mut self,
        sql: &str,
    ) -> Result<Result<Vec<Vec<Option<String>>>, String>, DiscoverError> {
        let limit = self.timeout + Duration::from_secs(10);
        let up = &mut self.up;
        match tokio::time::timeout(limit, simple_query(&mut up.io, &mut up.leftover, sql)).await {
            Ok(Ok(rows)) => Ok(Ok(rows)),
            Ok(Err(UpstreamError::Protocol(m))) => {
                // `simple_query` reports both server errors and a broken connection
                // this way; a broken connection fails the ROLLBACK that follows.
                let m = m
                    .strip_prefix("querying the catalog: ")
                    .map(str::to_owned)
                    .unwrap_or(m);
                Ok(Err(m))
            }
            Ok(Err(e)) => Err(DiscoverError::Lost(e.to_string())),
            Err(_) => {
                let _ = upstream::cancel(&self.target.config, self.up.key).await;
                Err(DiscoverError::NoAnswer {
                    secs: limit.as_secs(),
                })
            }
        }
    }

    /// Says goodbye (Terminate), best effort.
    async fn close(mut self) {
        let mut out = BytesMut::new();
        crate::codec::put_message(&mut out, b'X', &[]);
        let _ = self.up.io.write_all(&out).await;
        let _ = self.up.io.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_always_quoted_with_quotes_doubled() {
        assert_eq!(quote_ident("email"), "\"email\"");
        assert_eq!(quote_ident("Mixed Case"), "\"Mixed Case\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(
            quote_ident("x\"; drop table t; --"),
            "\"x\"\"; drop table t; --\""
        );
    }

    #[test]
    fn small_or_unknown_tables_are_read_with_limit_and_big_ones_sampled() {
        assert_eq!(system_percent(-1.0, 1000), None);
        assert_eq!(system_percent(0.0, 1000), None);
        assert_eq!(system_percent(2000.0, 1000), None);
        assert_eq!(system_percent(f64::NAN, 1000), None);
        assert_eq!(system_percent(20_000.0, 1000), Some(10.0));
        assert_eq!(system_percent(1e6, 1000), Some(0.2));
        let tiny = system_percent(1e15, 1).unwrap_or_default();
        assert!(tiny > 0.0 && tiny <= 0.000_001, "{tiny}");
    }
}
