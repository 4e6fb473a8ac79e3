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
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::codec::{self, Reader, backend, put_message};
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
    let proto = |e: &dyn std::fmt::Display| {
        UpstreamError::Protocol(format!("loading the function catalog: {e}"))
    };
    let mut out = BytesMut::new();
    let mut q = QUERY.as_bytes().to_vec();
    q.push(0);
    put_message(&mut out, b'Q', &q);
    io.write_all(&out).await.map_err(|e| proto(&e))?;
    io.flush().await.map_err(|e| proto(&e))?;
    let mut catalog = PgCatalog::default();
    let mut failed = None;
    loop {
        let Some(h) = codec::header(buf).map_err(|e| proto(&e))? else {
            if io.read_buf(buf).await.map_err(|e| proto(&e))? == 0 {
                return Err(proto(&"the server closed the connection"));
            }
            continue;
        };
        if buf.len() < h.frame_len {
            if io.read_buf(buf).await.map_err(|e| proto(&e))? == 0 {
                return Err(proto(&"the server closed the connection"));
            }
            continue;
        }
        let frame = buf.split_to(h.frame_len);
        let body = frame.get(5..).unwrap_or(&[]);
        match h.tag {
            b'D' => {
                let mut r = Reader::new("DataRow", body);
                let n = r.i16().map_err(|e| proto(&e))?;
                let mut cols = Vec::with_capacity(3);
                for _ in 0..n {
                    let len = r.i32().map_err(|e| proto(&e))?;
                    let v = if len < 0 {
                        &[][..]
                    } else {
                        r.bytes(len as usize).map_err(|e| proto(&e))?
                    };
                    cols.push(String::from_utf8_lossy(v).into_owned());
                }
                if let [schema, name, vol] = cols.as_slice() {
                    let v = match vol.as_str() {
                        "i" => Volatility::Immutable,
                        "s" => Volatility::Stable,
                        _ => Volatility::Volatile,
                    };
                    catalog.add(schema, name, v);
                }
            }
            b'E' => {
                failed = Some(
                    backend::error_fields(body)
                        .map(|f| f.message)
                        .unwrap_or_default(),
                )
            }
            b'Z' => {
                return match failed {
                    None => Ok(catalog),
                    Some(m) => Err(proto(&m)),
                };
            }
            _ => {}
        }
    }
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
