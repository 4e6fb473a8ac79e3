//! Result rows: the shape a `RowDescription` announces, and `DataRow`s rewritten with
//! each value masked and its length fixed, so the stream stays valid for every client.

use airlock_engine::masking::rules::{Apply, Masker, Tally};

use super::values::{mask_value, put_masked};
use crate::codec::{CodecError, Reader};

/// One column of a `RowDescription`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The label in the result (the column name or an alias).
    pub name: String,
    /// The table it comes from, or 0 for an expression.
    pub table_oid: u32,
    /// Its column number in that table.
    pub attnum: i16,
    /// Its type.
    pub type_oid: u32,
    /// Binary (1) or text (0) format.
    pub binary: bool,
}

/// Parses a `RowDescription` body.
pub fn row_description(body: &[u8]) -> Result<Vec<Field>, CodecError> {
    let mut r = Reader::new("RowDescription", body);
    let n = r.i16()?;
    let mut fields = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    for _ in 0..n {
        let name = r.cstr()?.to_owned();
        let table_oid = r.i32()? as u32;
        let attnum = r.i16()?;
        let type_oid = r.i32()? as u32;
        let _size = r.i16()?;
        let _modifier = r.i32()?;
        let format = r.i16()?;
        fields.push(Field {
            name,
            table_oid,
            attnum,
            type_oid,
            binary: format == 1,
        });
    }
    r.finish()?;
    Ok(fields)
}

/// How each column of the current result is masked.
#[derive(Debug, Clone, Default)]
pub struct RowPlan {
    /// Per column: its type, format, and the rule masking it whole (if any).
    pub columns: Vec<ColumnPlan>,
    /// Some column is masked whole or holds JSON that column rules apply to: every row
    /// must be rewritten, not only rows a detector may match.
    pub always: bool,
}

/// One column of a [`RowPlan`].
#[derive(Debug, Clone)]
pub struct ColumnPlan {
    /// Its type.
    pub type_oid: u32,
    /// Binary format.
    pub binary: bool,
    /// The rule that masks it whole.
    pub whole: Option<Apply>,
}

/// Rewrites a `DataRow` body into `out` (a whole frame, tag and length included) when
/// something in it is masked. Returns `false` (and leaves `out` as it was) when the row
/// passes unchanged. A row that does not match the plan is an error.
pub fn mask_data_row(
    masker: &Masker,
    plan: &RowPlan,
    body: &[u8],
    out: &mut Vec<u8>,
    tally: &mut Tally,
) -> Result<bool, CodecError> {
    if !plan.always && !masker.may_find(body) {
        return Ok(false);
    }
    let mut r = Reader::new("DataRow", body);
    let n = r.i16()?;
    if usize::try_from(n).ok() != Some(plan.columns.len()) {
        return Err(CodecError::Malformed {
            what: "DataRow",
            detail: "its column count differs from the RowDescription",
        });
    }
    let start = out.len();
    out.push(b'D');
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&n.to_be_bytes());
    let mut changed = false;
    for column in &plan.columns {
        let len = r.i32()?;
        if len < 0 {
            out.extend_from_slice(&len.to_be_bytes());
            continue;
        }
        let value = r.bytes(len as usize)?;
        let masked = mask_value(
            masker,
            column.type_oid,
            column.binary,
            column.whole.as_ref(),
            value,
            tally,
        );
        changed |= put_masked(out, value, masked);
    }
    r.finish()?;
    if !changed {
        out.truncate(start);
        return Ok(false);
    }
    let frame_len = i32::try_from(out.len() - start - 1).unwrap_or(i32::MAX);
    if let Some(l) = out.get_mut(start + 1..start + 5) {
        l.copy_from_slice(&frame_len.to_be_bytes());
    }
    Ok(true)
}
