//! Masking on the PostgreSQL wire: the session's [`Masker`] applied to what the server
//! sends before it reaches the client.
//!
//! - `rows`: `RowDescription` → how each column is masked; `DataRow`s rewritten.
//! - `values`: one value by its type and format (text, binary, JSON, arrays, records).
//! - `columns`: table OID and column number → names, from the target's catalog.
//! - `messages`: notices and errors that echo data.
//!
//! The relay calls [`ResultMasking`] only for sessions that have a masker; others keep
//! the zero-copy path.

pub mod columns;
pub mod copy;
pub mod messages;
pub mod rows;
pub mod values;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use airlock_engine::masking::columns::ColumnName;
use airlock_engine::masking::rules::{Apply, Masker, Tally};
use airlock_engine::sql::{CopyOut, CopySource};
use airlock_session::Target;

use columns::{TableCache, TableInfo};
use rows::{ColumnPlan, Field, RowPlan};

/// The largest message Airlock rewrites whole when masking (a `DataRow` or `CopyData`);
/// a larger one ends the session with an error rather than pass unmasked.
pub const MAX_MASKED_FRAME: usize = 64 * 1024 * 1024;

/// One session's masking state on the server→client side.
pub struct ResultMasking {
    /// The session's rules.
    pub masker: Arc<Masker>,
    /// How the rows of the current result are masked.
    pub plan: Option<RowPlan>,
    /// Counts since the last recorded outcome.
    pub tally: Tally,
    /// The current `COPY ... TO STDOUT` is in binary format.
    pub copy_binary: bool,
    /// How the rows of the current COPY are masked by column.
    pub copy: Option<copy::CopyPlan>,
    /// COPYs of the Execute now running (from its added Describe).
    pub pending_copies: VecDeque<(CopyOut, Option<Apply>)>,
    /// Plans of recent results by their RowDescription, so that a statement run again
    /// (the common case) is not matched against every column pattern each time.
    plans: HashMap<Vec<u8>, (Instant, RowPlan)>,
}

/// Plans kept per session.
const PLANS_KEPT: usize = 64;

impl ResultMasking {
    /// A fresh state for a session with `masker`.
    pub fn new(masker: Arc<Masker>) -> Self {
        ResultMasking {
            masker,
            plan: None,
            tally: Tally::default(),
            copy_binary: false,
            copy: None,
            pending_copies: VecDeque::new(),
            plans: HashMap::new(),
        }
    }

    /// Takes the plan of a result described exactly as `description` before, if it is
    /// younger than the table cache's lifetime (the tables behind it are looked up
    /// again after that).
    pub fn reuse_plan(&mut self, description: &[u8]) -> bool {
        match self.plans.get(description) {
            Some((at, plan)) if at.elapsed() < columns::TABLE_TTL => {
                self.plan = Some(plan.clone());
                true
            }
            _ => false,
        }
    }

    /// Keeps the current plan for results described as `description`.
    pub fn remember_plan(&mut self, description: Vec<u8>) {
        if let Some(plan) = &self.plan {
            if self.plans.len() >= PLANS_KEPT {
                self.plans.clear();
            }
            self.plans
                .insert(description, (Instant::now(), plan.clone()));
        }
    }

    /// Builds the plan for a result with `fields`, looking up the tables they come from.
    /// `computed` masks every column that is an expression (its statement computes a
    /// value from a masked column).
    pub async fn describe(
        &mut self,
        fields: &[Field],
        target: &Target,
        tables: &TableCache,
        computed: Option<Apply>,
    ) {
        let masker = self.masker.clone();
        let mut known: HashMap<u32, Arc<TableInfo>> = HashMap::new();
        if masker.has_column_rules() {
            let wanted: Vec<(u32, i16)> = fields
                .iter()
                .filter(|f| f.table_oid != 0)
                .map(|f| (f.table_oid, f.attnum))
                .collect();
            if !wanted.is_empty() {
                let (found, missing) = tables.get(&target.model.name, &wanted);
                known = found;
                if !missing.is_empty() {
                    match columns::look_up(target, &missing).await {
                        Ok(more) => {
                            tables.store(&target.model.name, &more);
                            known.extend(more);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "could not look up result columns: their values are withheld");
                        }
                    }
                }
            }
        }
        let mut plan = RowPlan::default();
        for f in fields {
            let origin = known.get(&f.table_oid).and_then(|t| {
                t.columns
                    .get(&f.attnum)
                    .map(|c| ColumnName::of(&t.schema, &t.name, c))
            });
            let mut names = vec![ColumnName::bare(&f.name)];
            names.extend(origin);
            let mut whole = masker.column(&names);
            if f.table_oid == 0
                && let Some(c) = &computed
            {
                whole = Some(match whole {
                    Some(w) => w.stricter(c.clone()),
                    None => c.clone(),
                });
            }
            if f.table_oid != 0 && f.attnum > 0 && origin.is_none() && masker.has_column_rules() {
                // A table Airlock could not name: its columns are withheld (fail closed).
                whole = masker.strictest_column_rule();
            }
            plan.columns.push(ColumnPlan {
                type_oid: f.type_oid,
                binary: f.binary,
                whole,
            });
        }
        self.plan = Some(plan);
    }

    /// Prepares masking of a `COPY ... TO STDOUT` announced by CopyOutResponse with
    /// `columns` columns. `copy` is the statement's COPY as parsed. An error ends the
    /// session: the rows cannot be masked as the rules say.
    pub async fn start_copy(
        &mut self,
        copy: Option<(CopyOut, Option<Apply>)>,
        binary: bool,
        columns: usize,
        target: &Target,
    ) -> Result<(), String> {
        self.copy_binary = binary;
        self.copy = None;
        let masker = self.masker.clone();
        if !masker.has_column_rules() {
            return Ok(());
        }
        let Some((copy, computed)) = copy else {
            return Err("a COPY result arrived that Airlock cannot tie to its statement, so its columns cannot be masked".into());
        };
        let refuse = |why: &str| Err(format!("COPY cannot be masked: {why}"));
        let rules: Vec<Option<Apply>> = match &copy.source {
            CopySource::Table {
                schema,
                name,
                columns: listed,
            } if listed.is_empty() => table_rules(&masker, target, schema.as_deref(), name).await?,
            CopySource::Table {
                schema,
                name,
                columns: listed,
            } => listed
                .iter()
                .map(|c| {
                    masker.column(&[ColumnName {
                        schema: schema.as_deref(),
                        table: Some(name),
                        column: c,
                    }])
                })
                .collect(),
            CopySource::Query {
                columns: listed,
                star: true,
                table: Some((schema, name)),
            } if listed.is_empty() => table_rules(&masker, target, schema.as_deref(), name).await?,
            CopySource::Query { star: true, .. } => {
                // `*` beside other columns or over several tables: positions unknown.
                vec![masker.strictest_column_rule(); columns]
            }
            CopySource::Query {
                columns: listed, ..
            } => listed
                .iter()
                .map(|c| match c {
                    Some(name) => masker.column(&[ColumnName::bare(name)]),
                    None => computed.clone(),
                })
                .collect(),
        };
        if rules.len() != columns {
            return refuse(&format!(
                "the server sends {columns} columns where the statement names {}",
                rules.len()
            ));
        }
        if rules.iter().all(Option::is_none) {
            return Ok(());
        }
        if binary || copy.binary {
            return refuse("binary COPY of masked columns; use text or CSV format");
        }
        // A delimiter a mask could contain was refused with the statement.
        let delimiter = copy
            .delimiter
            .unwrap_or(if copy.csv { b',' } else { b'\t' });
        self.copy = Some(copy::CopyPlan {
            columns: rules,
            csv: copy.csv,
            delimiter,
            header: copy.header && copy.csv,
        });
        Ok(())
    }

    /// The counts since the last call, as recorded (`None` when nothing was masked).
    pub fn take_counts(&mut self) -> Option<serde_json::Value> {
        if self.tally.is_empty() {
            return None;
        }
        let json = self.tally.to_json(&self.masker);
        self.tally = Tally::default();
        Some(json)
    }
}

/// The rules for every column of table `schema.name`, in the table's order (for a COPY
/// without a column list).
async fn table_rules(
    masker: &Masker,
    target: &Target,
    schema: Option<&str>,
    name: &str,
) -> Result<Vec<Option<Apply>>, String> {
    let (found_schema, names) = columns::look_up_by_name(target, schema, name)
        .await
        .map_err(|e| format!("COPY cannot be masked: looking up `{name}`: {e}"))?;
    Ok(names
        .iter()
        .map(|c| masker.column(&[ColumnName::of(&found_schema, name, c)]))
        .collect())
}

/// A `CopyOutResponse`: binary format, and the number of columns.
pub fn copy_columns(body: &[u8]) -> Result<(bool, usize), crate::codec::CodecError> {
    let mut r = crate::codec::Reader::new("CopyOutResponse", body);
    let format = r.u8()?;
    let n = r.i16()?;
    Ok((format == 1, usize::try_from(n).unwrap_or(0)))
}
