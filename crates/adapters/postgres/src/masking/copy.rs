//! `COPY ... TO STDOUT` rows in text or CSV format: masked column by column, as the
//! statement (or the table's catalog order) says, then through the detectors.
//!
//! PostgreSQL sends one `CopyData` message per row. Text rows separate fields with the
//! delimiter (tab by default), which never appears unescaped inside a field; CSV fields
//! may be quoted, with doubled quotes inside, and may then hold the delimiter or newlines.

use airlock_engine::masking::rules::{Apply, Masker, Scan, Tally};

/// How the current COPY's rows are masked.
#[derive(Debug, Clone)]
pub struct CopyPlan {
    /// Per column, the rule masking it whole.
    pub columns: Vec<Option<Apply>>,
    /// CSV (else text) format.
    pub csv: bool,
    /// The field delimiter.
    pub delimiter: u8,
    /// The first row is a header of column names (CSV `HEADER`), passed as it is.
    pub header: bool,
}

/// Why a row could not be masked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopyMaskError {
    /// The row has another number of fields than the plan.
    #[error("a COPY row has {found} fields where {expected} were expected")]
    FieldCount {
        /// Fields in the plan.
        expected: usize,
        /// Fields in the row.
        found: usize,
    },
}

/// Masks one row (the body of a `CopyData`). Returns the new row when anything changed.
pub fn mask_row(
    masker: &Masker,
    plan: &mut CopyPlan,
    row: &[u8],
    tally: &mut Tally,
) -> Result<Option<Vec<u8>>, CopyMaskError> {
    if plan.header {
        plan.header = false;
        return Ok(None);
    }
    let mut changed = false;
    let mut line: Vec<u8>;
    if plan.columns.iter().any(Option::is_some) {
        let (body, newline) = match row.strip_suffix(b"\n") {
            Some(b) => (b, true),
            None => (row, false),
        };
        let fields = if plan.csv {
            split_csv(body, plan.delimiter)
        } else {
            body.split(|b| *b == plan.delimiter).collect()
        };
        if fields.len() != plan.columns.len() {
            return Err(CopyMaskError::FieldCount {
                expected: plan.columns.len(),
                found: fields.len(),
            });
        }
        line = Vec::with_capacity(row.len());
        for (i, (field, rule)) in fields.iter().zip(&plan.columns).enumerate() {
            if i > 0 {
                line.push(plan.delimiter);
            }
            let null = if plan.csv {
                field.is_empty()
            } else {
                *field == b"\\N"
            };
            match rule {
                Some(apply) if !null => {
                    let mut mask = Vec::new();
                    if masker.whole(apply, field, &mut mask, tally) {
                        line.extend_from_slice(&mask);
                        changed = true;
                    } else {
                        line.extend_from_slice(field);
                    }
                }
                _ => line.extend_from_slice(field),
            }
        }
        if newline {
            line.push(b'\n');
        }
    } else {
        line = row.to_vec();
    }
    let mut scanned = Vec::new();
    if masker.scan(&line, &mut scanned, tally) == Scan::Masked {
        line = scanned;
        changed = true;
    }
    Ok(changed.then_some(line))
}

/// Splits a CSV row at delimiters outside quotes; fields keep their quotes.
fn split_csv(row: &[u8], delimiter: u8) -> Vec<&[u8]> {
    let mut fields = Vec::new();
    let mut start = 0usize;
    let mut quoted = false;
    for (i, b) in row.iter().enumerate() {
        if *b == b'"' {
            quoted = !quoted;
        } else if *b == delimiter && !quoted {
            fields.push(row.get(start..i).unwrap_or(&[]));
            start = i + 1;
        }
    }
    fields.push(row.get(start..).unwrap_or(&[]));
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_split_outside_quotes_only() {
        let f = split_csv(b"1,\"a,b\",\"say \"\"hi\"\"\",", b',');
        assert_eq!(f, vec![&b"1"[..], b"\"a,b\"", b"\"say \"\"hi\"\"\"", b""]);
    }
}
