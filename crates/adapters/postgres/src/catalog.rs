//! Function volatility from the target's own catalog (`pg_proc.provolatile`), so that
//! policy can tell `count()` from `pg_terminate_backend()` and from a user's function.
//!
//! Loaded over a fresh upstream connection before it is handed to the client, cached per
//! target for `CATALOG_TTL`; a function the catalog does not know is `unknown`, which
//! policies treat like `volatile`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock_engine::policy::{FunctionCatalog, Volatility};
use bytes::BytesMut;

use crate::error::UpstreamError;
use crate::stream::BoxIo;

/// How long a target's catalog is reused.
pub const CATALOG_TTL: Duration = Duration::from_secs(300);

const QUERY: &str = "SELECT n.nspname, p.proname, p.provolatile FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace";

/// One target's functions.
#[derive(Debug, Default)]
pub struct PgCatalog {
    qualified: HashMap<String, Volatility>,
    unqualified: HashMap<String, Volatility>,
}

fn stricter(a: Volatility, b: Volatility) -> Volatility {
    let rank = |v: Volatility| match v {
        Volatility::Immutable => 0,
        Volatility::Stable => 1,
        Volatility::Volatile => 2,
        Volatility::Unknown => 3,
    };
    if rank(b) > rank(a) { b } else { a }
}

impl PgCatalog {
    fn add(&mut self, schema: &str, name: &str, v: Volatility) {
        let q = format!("{schema}.{name}");
        let e = self.qualified.entry(q).or_insert(v);
        *e = stricter(*e, v);
        // Unqualified calls resolve through search_path: take the most volatile overload
        // in any schema.
        let e = self.unqualified.entry(name.to_owned()).or_insert(v);
        *e = stricter(*e, v);
    }

    /// Number of distinct function names known.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.unqualified.len()
    }
}

impl FunctionCatalog for PgCatalog {
    fn volatility(&self, schema: Option<&str>, name: &str) -> Volatility {
        let found = match schema {
            Some(s) => self.qualified.get(&format!("{s}.{name}")),
            None => self.unqualified.get(name),
        };
        found.copied().unwrap_or(Volatility::Unknown)
    }
}

/// Catalogs of every target, by target name.
#[derive(Default)]
pub struct CatalogCache {
    entries: Mutex<HashMap<String, (Instant, Arc<PgCatalog>)>>,
}

impl CatalogCache {
    /// The cached catalog of `target`, if fresh.
    pub fn fresh(&self, target: &str) -> Option<Arc<PgCatalog>> {
        let entries = self.entries.lock().ok()?;
        let (at, c) = entries.get(target)?;
        (at.elapsed() < CATALOG_TTL).then(|| c.clone())
    }

    /// Stores a freshly loaded catalog.
    pub fn store(&self, target: &str, catalog: Arc<PgCatalog>) {
        if let Ok(mut e) = self.entries.lock() {
            e.insert(target.to_owned(), (Instant::now(), catalog));
        }
    }
}

/// Runs the catalog query on an idle, authenticated connection and reads the answer up
/// to its ReadyForQuery, leaving the connection idle again.
pub async fn load(io: &mut BoxIo, buf: &mut BytesMut) -> Result<PgCatalog, UpstreamError> {
    let mut catalog = PgCatalog::default();
    for row in crate::upstream::simple_query(io, buf, QUERY).await? {
        if let [Some(schema), Some(name), Some(vol)] = row.as_slice() {
            let v = match vol.as_str() {
                "i" => Volatility::Immutable,
                "s" => Volatility::Stable,
                _ => Volatility::Volatile,
            };
            catalog.add(schema, name, v);
        }
    }
    Ok(catalog)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictest_overload_wins_and_unknown_is_unknown() {
        let mut c = PgCatalog::default();
        c.add("pg_catalog", "now", Volatility::Stable);
        c.add("pg_catalog", "f", Volatility::Immutable);
        c.add("public", "f", Volatility::Volatile);
        assert_eq!(c.volatility(None, "now"), Volatility::Stable);
        assert_eq!(c.volatility(None, "f"), Volatility::Volatile);
        assert_eq!(c.volatility(Some("pg_catalog"), "f"), Volatility::Immutable);
        assert_eq!(c.volatility(None, "nope"), Volatility::Unknown);
        assert_eq!(c.volatility(Some("x"), "now"), Volatility::Unknown);
    }
}
