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

/// Writes a `DataRow` body to `out` as a whole frame (tag and length included), each
/// value masked. A row that does not match the plan is an error.
///
/// Every value is scanned on its own, never the row's bytes as a whole: the length in
/// front of a value can read as a digit or a letter and hide a finding at its start
/// (`...\0\0\0\x314111 1111 1111 1111...` is a longer digit run, not a card).
pub fn mask_data_row(
    masker: &Masker,
    plan: &RowPlan,
    body: &[u8],
    out: &mut Vec<u8>,
    tally: &mut Tally,
) -> Result<(), CodecError> {
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
        put_masked(out, value, masked);
    }
    // On an error the relay ends the session: what is in `out` is never sent.
    r.finish()?;
    let frame_len = i32::try_from(out.len() - start - 1).unwrap_or(i32::MAX);
    if let Some(l) = out.get_mut(start + 1..start + 5) {
        l.copy_from_slice(&frame_len.to_be_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::masking::values::oid;
    use airlock_engine::masking::redact::HashKey;
    use airlock_engine::masking::rules::{MaskingRules, default_rule};
    use airlock_model::{Principal, PrincipalSource};
    use std::sync::Arc;

    #[test]
    fn a_value_whose_length_reads_as_a_digit_is_still_scanned_on_its_own() {
        let rules = MaskingRules::compile(vec![default_rule(
            vec!["t".into()],
            Arc::new(HashKey::new(Vec::new())),
        )])
        .unwrap();
        let p = Principal {
            name: "a".into(),
            groups: vec![],
            source: PrincipalSource::ServiceToken,
            expires_at: None,
        };
        let m = rules.for_session("t", &p).unwrap();
        // 49 bytes: the length's last byte is 0x31, '1', right before the card digits.
        let value = b"4111 1111 1111 1111 is the card of this customer.";
        assert_eq!(value.len(), 49);
        let mut body = 1i16.to_be_bytes().to_vec();
        body.extend_from_slice(&49i32.to_be_bytes());
        body.extend_from_slice(value);
        let plan = RowPlan {
            columns: vec![ColumnPlan {
                type_oid: oid::TEXT,
                binary: false,
                whole: None,
            }],
        };
        let mut out = Vec::new();
        let mut tally = Tally::default();
        mask_data_row(&m, &plan, &body, &mut out, &mut tally).unwrap();
        let text = String::from_utf8_lossy(&out);
        assert!(text.contains("[REDACTED:card] is the card"), "{text}");
        assert!(!text.contains("4111"), "{text}");
        // The frame's length covers exactly what follows the tag.
        let len = i32::from_be_bytes(out[1..5].try_into().unwrap()) as usize;
        assert_eq!(len, out.len() - 1);
    }
}
