//! Where result columns come from: table OID and column number (from `RowDescription`)
//! to schema, table and column name, looked up in the target's own catalog so that an
//! alias (`SELECT password AS p`) cannot hide a masked column.
//!
//! Tables are looked up when a result first names them, over a short-lived connection
//! of Airlock's own (the session's connection is busy streaming the result), and kept
//! per target for [`TABLE_TTL`]. A renamed column keeps its old name until then, which
//! masks more, never less; a column added since is a miss and is looked up again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock_session::Target;
use tokio::io::AsyncWriteExt;

use crate::error::UpstreamError;

/// How long a table's columns are reused.
pub const TABLE_TTL: Duration = Duration::from_secs(60);

/// A table's name and its columns by number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableInfo {
    /// Its schema.
    pub schema: String,
    /// Its name.
    pub name: String,
    /// Column number → name, for columns not dropped.
    pub columns: HashMap<i16, String>,
}

/// A cached table: when it was looked up, and what it is.
type Entry = (Instant, Arc<TableInfo>);

/// Known tables of every target, by (target, table OID).
#[derive(Default)]
pub struct TableCache {
    entries: Mutex<HashMap<(String, u32), Entry>>,
}

impl TableCache {
    /// The tables among `oids` of `target` that are cached and fresh, and the OIDs that
    /// are not (or whose `attnums` are not all known).
    pub fn get(
        &self,
        target: &str,
        wanted: &[(u32, i16)],
    ) -> (HashMap<u32, Arc<TableInfo>>, Vec<u32>) {
        let mut found = HashMap::new();
        let mut missing = Vec::new();
        let Ok(entries) = self.entries.lock() else {
            missing.extend(wanted.iter().map(|(o, _)| *o));
            return (found, missing);
        };
        for (oid, attnum) in wanted {
            match entries.get(&(target.to_owned(), *oid)) {
                Some((at, t)) if at.elapsed() < TABLE_TTL && t.columns.contains_key(attnum) => {
                    found.insert(*oid, t.clone());
                }
                _ => {
                    if !missing.contains(oid) {
                        missing.push(*oid);
                    }
                }
            }
        }
        for oid in &missing {
            found.remove(oid);
        }
        (found, missing)
    }

    /// Stores looked-up tables.
    pub fn store(&self, target: &str, tables: &HashMap<u32, Arc<TableInfo>>) {
        if let Ok(mut e) = self.entries.lock() {
            if e.len() > 100_000 {
                e.clear();
            }
            let now = Instant::now();
            for (oid, t) in tables {
                e.insert((target.to_owned(), *oid), (now, t.clone()));
            }
        }
    }
}

/// Looks up the tables `oids` of `target` over a connection of their own.
pub async fn look_up(
    target: &Target,
    oids: &[u32],
) -> Result<HashMap<u32, Arc<TableInfo>>, UpstreamError> {
    let list = oids
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let sql = format!(
        "SELECT c.oid::int8, n.nspname, c.relname, a.attnum::int4, a.attname \
         FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid \
         WHERE c.oid IN ({list}) AND a.attnum > 0 AND NOT a.attisdropped"
    );
    let mut up = crate::upstream::connect(target, &[]).await?;
    let rows = crate::upstream::simple_query(&mut up.io, &mut up.leftover, &sql).await?;
    let _ = up.io.shutdown().await;
    let mut tables: HashMap<u32, TableInfo> = HashMap::new();
    for row in rows {
        let [
            Some(oid),
            Some(schema),
            Some(table),
            Some(attnum),
            Some(column),
        ] = row.as_slice()
        else {
            continue;
        };
        let (Ok(oid), Ok(attnum)) = (oid.parse::<u32>(), attnum.parse::<i16>()) else {
            continue;
        };
        tables
            .entry(oid)
            .or_insert_with(|| TableInfo {
                schema: schema.clone(),
                name: table.clone(),
                columns: HashMap::new(),
            })
            .columns
            .insert(attnum, column.clone());
    }
    Ok(tables.into_iter().map(|(k, v)| (k, Arc::new(v))).collect())
}

/// The schema and the column names, in order, of the table `schema.name` (or `name` as
/// the target's default `search_path` finds it).
pub async fn look_up_by_name(
    target: &Target,
    schema: Option<&str>,
    name: &str,
) -> Result<(String, Vec<String>), UpstreamError> {
    let ident = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
    let qualified = match schema {
        Some(s) => format!("{}.{}", ident(s), ident(name)),
        None => ident(name),
    };
    let literal = format!("'{}'", qualified.replace('\'', "''"));
    let sql = format!(
        "SELECT n.nspname, a.attname FROM pg_catalog.pg_attribute a \
         JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE c.oid = pg_catalog.to_regclass({literal}) AND a.attnum > 0 AND NOT a.attisdropped \
         ORDER BY a.attnum"
    );
    let mut up = crate::upstream::connect(target, &[]).await?;
    let rows = crate::upstream::simple_query(&mut up.io, &mut up.leftover, &sql).await?;
    let _ = up.io.shutdown().await;
    let mut found_schema = String::new();
    let mut columns = Vec::new();
    for row in rows {
        if let [Some(s), Some(c)] = row.as_slice() {
            found_schema.clone_from(s);
            columns.push(c.clone());
        }
    }
    if columns.is_empty() {
        return Err(UpstreamError::Protocol(format!("no table `{name}` found")));
    }
    Ok((found_schema, columns))
}
