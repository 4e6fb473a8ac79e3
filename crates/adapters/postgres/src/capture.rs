//! Result capture: the first rows of each result, as the client received them (after
//! masking), kept in the result's recorded event when a target sets `capture_rows`.

use serde_json::{Value, json};

use crate::codec::Reader;

/// Longest value kept per field, in bytes (longer ones are cut, and say so).
const MAX_FIELD: usize = 256;

/// Rows captured from the current result.
#[derive(Debug, Default)]
pub struct Capture {
    /// Rows to keep per result (0: off).
    limit: usize,
    /// Binary format per column, from the last RowDescription.
    binary: Vec<bool>,
    /// Column names, from the last RowDescription (shown above the rows in a replay).
    columns: Vec<String>,
    rows: Vec<Value>,
}

impl Capture {
    /// Keeps up to `limit` rows per result.
    pub fn new(limit: usize) -> Self {
        Capture {
            limit,
            ..Capture::default()
        }
    }

    /// Whether capture is on.
    pub fn on(&self) -> bool {
        self.limit > 0
    }

    /// Whether the next row would be kept.
    pub fn wants_row(&self) -> bool {
        self.rows.len() < self.limit
    }

    /// Notes the formats of a new result's columns (a RowDescription body).
    pub fn describe(&mut self, body: &[u8]) {
        if let Ok(fields) = crate::masking::rows::row_description(body) {
            self.binary = fields.iter().map(|f| f.binary).collect();
            self.columns = fields.into_iter().map(|f| f.name).collect();
        }
    }

    /// Keeps a `DataRow` body (as sent to the client).
    pub fn row(&mut self, body: &[u8]) {
        if !self.wants_row() {
            return;
        }
        let mut r = Reader::new("DataRow", body);
        let Ok(n) = r.i16() else { return };
        let mut fields = Vec::new();
        for i in 0..usize::try_from(n).unwrap_or(0) {
            let Ok(len) = r.i32() else { return };
            if len < 0 {
                fields.push(Value::Null);
                continue;
            }
            let Ok(bytes) = r.bytes(len as usize) else {
                return;
            };
            let shown = bytes.get(..bytes.len().min(MAX_FIELD)).unwrap_or(&[]);
            let cut = bytes.len() > MAX_FIELD;
            fields.push(if self.binary.get(i).copied().unwrap_or(false) {
                json!({ "binary_hex": hex_of(shown), "len": bytes.len() })
            } else if cut {
                json!({ "prefix": String::from_utf8_lossy(shown), "len": bytes.len() })
            } else {
                Value::String(String::from_utf8_lossy(shown).into_owned())
            });
        }
        self.rows.push(Value::Array(fields));
    }

    /// The rows kept since the last call (`None` if none).
    pub fn take(&mut self) -> Option<Value> {
        (!self.rows.is_empty()).then(|| Value::Array(std::mem::take(&mut self.rows)))
    }

    /// The names of the columns of the rows just taken (empty when the result was not
    /// described, e.g. an execute of a portal described earlier).
    pub fn columns(&self) -> Value {
        Value::from(self.columns.clone())
    }
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
