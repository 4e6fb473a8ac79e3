//! SQL understanding: PostgreSQL statements, parsed with PostgreSQL's own grammar
//! (`pg_query`), turned into the actions policy decides on.
//!
//! The walk visits every node of the parse tree (through the tree's serde form), so a
//! function call or a table reference cannot hide in a clause a hand-written visitor
//! forgot (`LIMIT`, `VALUES`, a window, a default). Writes are found from the statement
//! that writes (INSERT/UPDATE/DELETE/MERGE/COPY FROM/DDL), wherever it is nested (CTEs,
//! EXPLAIN ANALYZE, PREPARE, rules, DO blocks); every other relation is a read.

mod classify;
mod plpgsql;

pub use classify::{
    Classifier, CopyOut, CopySource, ParseOptions, ResultShape, SQL_KINDS, SqlError, Statement,
    StatementEffect, TxControl,
};
