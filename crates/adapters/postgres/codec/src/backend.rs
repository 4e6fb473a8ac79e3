//! Messages from the server that Airlock reads, and the ones it writes to clients itself.
#![deny(clippy::indexing_slicing)]

use bytes::BytesMut;

use super::{CodecError, Reader, put_message};

/// Fields of an `ErrorResponse` or `NoticeResponse` that Airlock records.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ErrorFields {
    /// Severity (`ERROR`, `FATAL`, ...), non-localized when the server sent it.
    pub severity: String,
    /// SQLSTATE.
    pub code: String,
    /// Primary message.
    pub message: String,
}

/// Parses an `ErrorResponse`/`NoticeResponse` body.
pub fn error_fields(body: &[u8]) -> Result<ErrorFields, CodecError> {
    let mut r = Reader::new("ErrorResponse", body);
    let mut f = ErrorFields::default();
    loop {
        let kind = r.u8()?;
        if kind == 0 {
            break;
        }
        let value = r.cstr()?;
        match kind {
            b'V' => f.severity = value.to_owned(),
            b'S' if f.severity.is_empty() => f.severity = value.to_owned(),
            b'C' => f.code = value.to_owned(),
            b'M' => f.message = value.to_owned(),
            _ => {}
        }
    }
    Ok(f)
}

/// A `CommandComplete` tag, e.g. `SELECT 5`.
pub fn command_complete(body: &[u8]) -> Result<&str, CodecError> {
    let mut r = Reader::new("CommandComplete", body);
    let tag = r.cstr()?;
    Ok(tag)
}

/// The row count at the end of a command tag (`INSERT 0 5` → 5), if it has one.
pub fn tag_rows(tag: &str) -> Option<u64> {
    tag.rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .filter(|_| tag.contains(' '))
}

/// A `ReadyForQuery` status: `I` idle, `T` in a transaction, `E` in a failed one.
pub fn ready_for_query(body: &[u8]) -> Result<u8, CodecError> {
    let mut r = Reader::new("ReadyForQuery", body);
    let s = r.u8()?;
    r.finish()?;
    match s {
        b'I' | b'T' | b'E' => Ok(s),
        _ => Err(CodecError::Malformed {
            what: "ReadyForQuery",
            detail: "unknown status",
        }),
    }
}

/// A `ParameterStatus`: name and value.
pub fn parameter_status(body: &[u8]) -> Result<(&str, &str), CodecError> {
    let mut r = Reader::new("ParameterStatus", body);
    let name = r.cstr()?;
    let value = r.cstr()?;
    Ok((name, value))
}

/// The first column of a text-format `DataRow` (`None` for NULL or no column).
pub fn first_text_value(body: &[u8]) -> Result<Option<&str>, CodecError> {
    let mut r = Reader::new("DataRow", body);
    if r.i16()? < 1 {
        return Ok(None);
    }
    let len = r.i32()?;
    if len < 0 {
        return Ok(None);
    }
    let value = r.bytes(usize::try_from(len).unwrap_or(usize::MAX))?;
    std::str::from_utf8(value)
        .map(Some)
        .map_err(|_| CodecError::Malformed {
            what: "DataRow",
            detail: "a text value that is not UTF-8",
        })
}

/// A `BackendKeyData`: process id and secret key.
pub fn backend_key_data(body: &[u8]) -> Result<(i32, i32), CodecError> {
    let mut r = Reader::new("BackendKeyData", body);
    let pid = r.i32()?;
    let secret = r.i32()?;
    // Protocol 3.2 allows longer keys; Airlock negotiates 3.0, where it is 4 bytes.
    r.finish()?;
    Ok((pid, secret))
}

/// An `Authentication*` request: its code and the rest of the body.
pub fn authentication(body: &[u8]) -> Result<(i32, &[u8]), CodecError> {
    let mut r = Reader::new("Authentication", body);
    let code = r.i32()?;
    let rest = r.bytes(r.remaining())?;
    Ok((code, rest))
}

/// SASL mechanism names from an `AuthenticationSASL` body (after the code).
pub fn sasl_mechanisms(rest: &[u8]) -> Result<Vec<&str>, CodecError> {
    let mut r = Reader::new("AuthenticationSASL", rest);
    let mut out = Vec::new();
    loop {
        let m = r.cstr()?;
        if m.is_empty() {
            return Ok(out);
        }
        out.push(m);
    }
}

// === messages Airlock writes to clients ===

/// Appends `AuthenticationOk`.
pub fn put_auth_ok(out: &mut BytesMut) {
    put_message(out, b'R', &0i32.to_be_bytes());
}

/// Appends `AuthenticationCleartextPassword`.
pub fn put_auth_cleartext(out: &mut BytesMut) {
    put_message(out, b'R', &3i32.to_be_bytes());
}

/// Appends `BackendKeyData`.
pub fn put_backend_key(out: &mut BytesMut, pid: i32, secret: i32) {
    let mut body = [0u8; 8];
    body[..4].copy_from_slice(&pid.to_be_bytes());
    body[4..].copy_from_slice(&secret.to_be_bytes());
    put_message(out, b'K', &body);
}

/// Appends `ReadyForQuery` with `status`.
pub fn put_ready(out: &mut BytesMut, status: u8) {
    put_message(out, b'Z', &[status]);
}

/// Appends `NegotiateProtocolVersion`: the newest minor version Airlock speaks and the
/// protocol options it did not recognise.
pub fn put_negotiate_version(out: &mut BytesMut, minor: i32, unrecognized: &[&str]) {
    let mut body = Vec::new();
    body.extend_from_slice(&minor.to_be_bytes());
    body.extend_from_slice(&(unrecognized.len() as i32).to_be_bytes());
    for o in unrecognized {
        body.extend_from_slice(o.as_bytes());
        body.push(0);
    }
    put_message(out, b'v', &body);
}

/// The fields of an error or notice Airlock writes itself.
pub struct OwnError<'a> {
    /// `ERROR`, `FATAL`, `NOTICE`.
    pub severity: &'a str,
    /// SQLSTATE.
    pub code: &'a str,
    /// Primary message.
    pub message: &'a str,
    /// `DETAIL`.
    pub detail: Option<&'a str>,
    /// `HINT`.
    pub hint: Option<&'a str>,
    /// 1-based character position in the statement.
    pub position: Option<usize>,
}

/// Appends an `ErrorResponse` (tag `E`) or `NoticeResponse` (tag `N`).
pub fn put_error_like(out: &mut BytesMut, tag: u8, e: &OwnError<'_>) {
    let mut body = Vec::with_capacity(64 + e.message.len());
    let mut field = |k: u8, v: &str| {
        body.push(k);
        // A NUL inside a field would end it early and desynchronise the client.
        body.extend(v.bytes().filter(|&b| b != 0));
        body.push(0);
    };
    field(b'S', e.severity);
    field(b'V', e.severity);
    field(b'C', e.code);
    field(b'M', e.message);
    if let Some(d) = e.detail {
        field(b'D', d);
    }
    if let Some(h) = e.hint {
        field(b'H', h);
    }
    if let Some(p) = e.position {
        field(b'P', &p.to_string());
    }
    body.push(0);
    put_message(out, tag, &body);
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn first_text_value_reads_a_value_null_or_nothing() {
        assert_eq!(
            first_text_value(&[0, 1, 0, 0, 0, 1, b'0']).unwrap(),
            Some("0")
        );
        assert_eq!(first_text_value(&[0, 1, 255, 255, 255, 255]).unwrap(), None);
        assert_eq!(first_text_value(&[0, 0]).unwrap(), None);
        assert!(first_text_value(&[0, 1, 0, 0, 0, 9, b'0']).is_err());
    }

    #[test]
    fn tags_and_rows() {
        assert_eq!(tag_rows("SELECT 5"), Some(5));
        assert_eq!(tag_rows("INSERT 0 12"), Some(12));
        assert_eq!(tag_rows("BEGIN"), None);
        assert_eq!(tag_rows("CREATE TABLE"), None);
    }

    #[test]
    fn written_error_reads_back() {
        let mut out = BytesMut::new();
        put_error_like(
            &mut out,
            b'E',
            &OwnError {
                severity: "FATAL",
                code: "28P01",
                message: "bad\0token",
                detail: Some("d"),
                hint: Some("h"),
                position: Some(7),
            },
        );
        assert_eq!(out[0], b'E');
        let f = error_fields(&out[5..]).unwrap();
        assert_eq!(
            (f.severity.as_str(), f.code.as_str(), f.message.as_str()),
            ("FATAL", "28P01", "badtoken")
        );
    }
}
