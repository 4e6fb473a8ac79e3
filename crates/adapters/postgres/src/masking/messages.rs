//! Notices and errors that echo data: `ErrorResponse` and `NoticeResponse` fields
//! (message, detail, hint, context, and the constraint-violation detail) pass through the
//! detectors; a detail that echoes a row or key values (`Key (email)=(...)`,
//! `Failing row contains (...)`) is withheld whole when the session has column rules,
//! since the values there carry no column of their own to match.

use airlock_engine::masking::rules::{Masker, Scan, Tally};

use crate::codec::{CodecError, Reader};

/// Fields whose text may echo data.
const SCANNED: &[u8] = b"MDHWqp";

/// Rewrites an `ErrorResponse`/`NoticeResponse` (tag `tag`, body `body`) into `out` when
/// something in it is masked; `false` (and `out` untouched) when it passes unchanged.
pub fn mask_notice(
    masker: &Masker,
    tag: u8,
    body: &[u8],
    out: &mut Vec<u8>,
    tally: &mut Tally,
) -> Result<bool, CodecError> {
    let mut r = Reader::new("ErrorResponse", body);
    let mut fields: Vec<(u8, Vec<u8>)> = Vec::new();
    let mut changed = false;
    loop {
        let kind = r.u8()?;
        if kind == 0 {
            break;
        }
        let value = r.cstr()?.as_bytes();
        if !SCANNED.contains(&kind) {
            fields.push((kind, value.to_vec()));
            continue;
        }
        if kind == b'D' && masker.has_column_rules() && echoes_values(value) {
            fields.push((kind, b"[REDACTED:detail]".to_vec()));
            changed = true;
            continue;
        }
        let mut masked = Vec::new();
        match masker.scan(value, &mut masked, tally) {
            Scan::Masked => {
                // A C string ends at NUL: the replacement text never holds one.
                fields.push((kind, masked));
                changed = true;
            }
            Scan::Clean => fields.push((kind, value.to_vec())),
        }
    }
    if !changed {
        return Ok(false);
    }
    let start = out.len();
    out.push(tag);
    out.extend_from_slice(&[0, 0, 0, 0]);
    for (kind, value) in fields {
        out.push(kind);
        out.extend(value.into_iter().filter(|b| *b != 0));
        out.push(0);
    }
    out.push(0);
    let len = i32::try_from(out.len() - start - 1).unwrap_or(i32::MAX);
    if let Some(l) = out.get_mut(start + 1..start + 5) {
        l.copy_from_slice(&len.to_be_bytes());
    }
    Ok(true)
}

/// PostgreSQL's details that quote stored values: unique and foreign-key violations
/// (`Key (...)=(...)`), check and not-null violations (`Failing row contains (...)`).
fn echoes_values(detail: &[u8]) -> bool {
    let text = String::from_utf8_lossy(detail);
    text.contains(")=(") || text.starts_with("Failing row contains")
}
