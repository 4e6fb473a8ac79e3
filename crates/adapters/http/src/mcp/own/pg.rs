//! The PostgreSQL client side of `sql_query`: one in-process connection to Airlock's
//! own PostgreSQL listener (see `airlock_postgres::LocalConnector`), authenticated with
//! the agent's token, so a statement sent here meets exactly the relay, policy, hold,
//! masking, pool and recording an agent's psql meets. No second path.
//!
//! Hand-written on `postgres-protocol`'s message codecs rather than tokio-postgres:
//! every value is asked for in text format and typed from its column's type OID, so a
//! row becomes JSON without a Rust type per PostgreSQL type, and the relay's notices
//! (a hold's "waiting for approval") are kept for the tool's answer.

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::IsNull;
use postgres_protocol::message::{backend, frontend};
use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// An error PostgreSQL (or the relay in its name) answered.
#[derive(Debug, Clone, Default)]
pub struct PgError {
    pub severity: String,
    pub code: String,
    pub message: String,
    pub detail: Option<String>,
    pub hint: Option<String>,
}

/// Why a statement has no result.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The server (or the relay) refused or failed it.
    #[error("{}", .0.message)]
    Server(PgError),
    /// The connection failed.
    #[error("the connection to the PostgreSQL listener failed: {0}")]
    Io(#[from] std::io::Error),
    /// Something the client did not expect.
    #[error("unexpected answer from the PostgreSQL listener: {0}")]
    Protocol(String),
}

/// A statement's result, as JSON.
#[derive(Debug, Default)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Map<String, Value>>,
    /// The command tag (`SELECT 2`, `DELETE 1`).
    pub command: String,
    /// Notices the relay or the server sent (a hold's wait, a warning).
    pub notices: Vec<String>,
}

/// An authenticated connection.
pub struct PgConn {
    io: DuplexStream,
    buf: BytesMut,
}

/// The largest result kept for a tool's answer (rows beyond it are counted, not kept).
const MAX_ROWS: usize = 1000;

impl PgConn {
    /// Starts up as `user` on database `target` with the agent's `token` as password.
    pub async fn connect(
        io: DuplexStream,
        target: &str,
        token: &str,
    ) -> Result<PgConn, QueryError> {
        let mut conn = PgConn {
            io,
            buf: BytesMut::with_capacity(8192),
        };
        let mut out = BytesMut::new();
        frontend::startup_message(
            [
                ("user", "airlock-mcp"),
                ("database", target),
                ("application_name", "airlock-mcp sql_query"),
            ],
            &mut out,
        )?;
        conn.io.write_all(&out).await?;
        loop {
            match conn.next().await? {
                backend::Message::AuthenticationCleartextPassword => {
                    let mut out = BytesMut::new();
                    frontend::password_message(token.as_bytes(), &mut out)?;
                    conn.io.write_all(&out).await?;
                }
                backend::Message::ErrorResponse(body) => {
                    return Err(QueryError::Server(error_of(body.fields())));
                }
                backend::Message::ReadyForQuery(_) => return Ok(conn),
                _ => {}
            }
        }
    }

    /// Runs one statement with `params` (text values, `None` for NULL) through the
    /// extended protocol, results in text format.
    pub async fn query(
        &mut self,
        sql: &str,
        params: &[Option<String>],
    ) -> Result<QueryResult, QueryError> {
        let mut out = BytesMut::new();
        frontend::parse("", sql, std::iter::empty(), &mut out)?;
        frontend::bind(
            "",
            "",
            std::iter::once(0i16),
            params.iter(),
            |p, buf| match p {
                Some(v) => {
                    buf.extend_from_slice(v.as_bytes());
                    Ok(IsNull::No)
                }
                None => Ok(IsNull::Yes),
            },
            std::iter::once(0i16),
            &mut out,
        )
        .map_err(|_| QueryError::Protocol("a parameter could not be encoded".into()))?;
        frontend::describe(b'P', "", &mut out)?;
        frontend::execute("", 0, &mut out)?;
        frontend::sync(&mut out);
        self.io.write_all(&out).await?;
        let mut result = QueryResult::default();
        let mut types: Vec<u32> = Vec::new();
        let mut failed = None;
        let mut more_rows = 0usize;
        loop {
            match self.next().await? {
                backend::Message::RowDescription(body) => {
                    let mut fields = body.fields();
                    while let Some(f) = fields.next().map_err(QueryError::Io)? {
                        result.columns.push(f.name().to_owned());
                        types.push(f.type_oid());
                    }
                }
                backend::Message::DataRow(body) => {
                    if result.rows.len() >= MAX_ROWS {
                        more_rows += 1;
                        continue;
                    }
                    let mut row = Map::new();
                    let mut ranges = body.ranges();
                    let mut i = 0;
                    while let Some(range) = ranges.next().map_err(QueryError::Io)? {
                        let name = result
                            .columns
                            .get(i)
                            .cloned()
                            .unwrap_or_else(|| format!("?column{i}?"));
                        let value = match range {
                            None => Value::Null,
                            Some(r) => {
                                let text = String::from_utf8_lossy(
                                    body.buffer().get(r).unwrap_or_default(),
                                );
                                typed(types.get(i).copied().unwrap_or(25), &text)
                            }
                        };
                        row.insert(name, value);
                        i += 1;
                    }
                    result.rows.push(row);
                }
                backend::Message::CommandComplete(body) => {
                    result.command = body.tag().map_err(QueryError::Io)?.to_owned();
                }
                backend::Message::NoticeResponse(body) => {
                    let n = error_of(body.fields());
                    result.notices.push(n.message);
                }
                backend::Message::ErrorResponse(body) => failed = Some(error_of(body.fields())),
                backend::Message::ReadyForQuery(_) => break,
                _ => {}
            }
        }
        if more_rows > 0 {
            result.notices.push(format!(
                "{more_rows} more rows were not returned (at most {MAX_ROWS} are)"
            ));
        }
        match failed {
            Some(e) => Err(QueryError::Server(e)),
            None => Ok(result),
        }
    }

    async fn next(&mut self) -> Result<backend::Message, QueryError> {
        loop {
            if let Some(m) = backend::Message::parse(&mut self.buf)? {
                return Ok(m);
            }
            if self.io.read_buf(&mut self.buf).await? == 0 {
                return Err(QueryError::Io(std::io::ErrorKind::UnexpectedEof.into()));
            }
        }
    }
}

fn error_of(mut fields: backend::ErrorFields<'_>) -> PgError {
    let mut e = PgError::default();
    while let Ok(Some(f)) = fields.next() {
        let v = String::from_utf8_lossy(f.value_bytes()).into_owned();
        match f.type_() {
            b'S' => e.severity = v,
            b'C' => e.code = v,
            b'M' => e.message = v,
            b'D' => e.detail = Some(v),
            b'H' => e.hint = Some(v),
            _ => {}
        }
    }
    e
}

/// A text-format value as JSON by its type: booleans, integers and floats as JSON
/// values, `json`/`jsonb` parsed, everything else (numeric included, to keep its
/// precision) a string.
fn typed(oid: u32, text: &str) -> Value {
    match oid {
        16 => Value::Bool(text == "t"),
        20 | 21 | 23 | 26 => text
            .parse::<i64>()
            .map(Value::from)
            .unwrap_or_else(|_| Value::String(text.to_owned())),
        700 | 701 => text
            .parse::<f64>()
            .ok()
            .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
            .unwrap_or_else(|| Value::String(text.to_owned())),
        114 | 3802 => serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned())),
        _ => Value::String(text.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_typed_by_their_column() {
        assert_eq!(typed(16, "t"), Value::Bool(true));
        assert_eq!(typed(23, "42"), Value::from(42));
        assert_eq!(typed(701, "1.5"), serde_json::json!(1.5));
        assert_eq!(typed(701, "NaN"), Value::from("NaN"));
        assert_eq!(
            typed(1700, "12.30"),
            Value::from("12.30"),
            "numeric keeps its digits"
        );
        assert_eq!(typed(3802, "{\"a\":1}"), serde_json::json!({"a": 1}));
        assert_eq!(typed(25, "x"), Value::from("x"));
    }
}
