//! One result value, masked according to its PostgreSQL type and wire format.
//!
//! A replacement must still decode as the column's type, or the client's decoder breaks:
//!
//! | type | text format | binary format |
//! |---|---|---|
//! | string types (`text`, `varchar`, `bpchar`, `name`, `char`, `xml`, `unknown`, types created in the database such as `citext` and enums) | replaced in place | replaced in place (built-in string types); other types created in the database: `NULL` |
//! | `json`, `jsonb` | masked by key and value, still JSON; a whole masked value becomes a JSON string | the same (`jsonb` keeps its version byte) |
//! | arrays and `record` | findings replaced in place (arrays of non-string elements: `NULL`) | each element or field masked by its own type |
//! | `int8`, `int4`, `numeric` | a finding (a card number stored as a number) makes it `NULL` | decoded, scanned, `NULL` on a finding |
//! | `bool`, floats, dates and times, `uuid`, `int2`, `oid`, `interval` | scanned, `NULL` on a finding | passed (they cannot hold text) |
//! | anything else (`bytea`, `inet`, ...) | scanned, `NULL` on a finding | raw bytes scanned, `NULL` on a finding |
//!
//! A whole masked column (a column rule) becomes the mask text in string types, a JSON
//! string in `json`/`jsonb`, a one-element array in text arrays of strings, and `NULL`
//! in every other type. A value that cannot be read (malformed binary, invalid JSON,
//! nesting too deep) is withheld as `NULL` (fail closed).

use airlock_engine::masking::json::{mask_json, whole_as_json};
use airlock_engine::masking::rules::{Apply, Masker, Scan, Tally};

/// Type OIDs Airlock knows by heart (`pg_type.oid`, stable across versions).
pub mod oid {
    pub const BOOL: u32 = 16;
    pub const CHAR: u32 = 18;
    pub const NAME: u32 = 19;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const TEXT: u32 = 25;
    pub const OID: u32 = 26;
    pub const JSON: u32 = 114;
    pub const XML: u32 = 142;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const UNKNOWN: u32 = 705;
    pub const BPCHAR: u32 = 1042;
    pub const VARCHAR: u32 = 1043;
    pub const DATE: u32 = 1082;
    pub const TIME: u32 = 1083;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const INTERVAL: u32 = 1186;
    pub const TIMETZ: u32 = 1266;
    pub const NUMERIC: u32 = 1700;
    pub const CSTRING: u32 = 2275;
    pub const RECORD: u32 = 2249;
    pub const UUID: u32 = 2950;
    pub const JSONB: u32 = 3802;
    /// The first OID of objects created in a database (`FirstNormalObjectId`).
    pub const FIRST_USER: u32 = 16384;
}

/// What becomes of a value.
#[derive(Debug, PartialEq, Eq)]
pub enum Masked {
    /// Passed as it is.
    Keep,
    /// Replaced by these bytes.
    Replace(Vec<u8>),
    /// Sent as SQL `NULL`.
    Null,
}

/// Appends a length-prefixed value (as in `DataRow`s, arrays and records): `original`,
/// or what masking made of it. Returns whether it changed.
pub fn put_masked(out: &mut Vec<u8>, original: &[u8], masked: Masked) -> bool {
    let (len, bytes) = match &masked {
        Masked::Keep => (original.len(), original),
        Masked::Replace(v) => (v.len(), v.as_slice()),
        Masked::Null => {
            out.extend_from_slice(&(-1i32).to_be_bytes());
            return true;
        }
    };
    // A value never grows past 1 GiB (the server's limit; masks are shorter than that).
    out.extend_from_slice(&i32::try_from(len).unwrap_or(i32::MAX).to_be_bytes());
    out.extend_from_slice(bytes);
    masked != Masked::Keep
}

/// Deepest nesting of arrays and records walked in binary values.
const MAX_NESTING: usize = 16;

fn builtin_string(t: u32) -> bool {
    matches!(
        t,
        oid::TEXT
            | oid::VARCHAR
            | oid::BPCHAR
            | oid::NAME
            | oid::CHAR
            | oid::UNKNOWN
            | oid::XML
            | oid::CSTRING
    )
}

/// Types whose text form takes a replacement in place without breaking its syntax.
fn takes_text_in_place(t: u32) -> bool {
    builtin_string(t)
        || t >= oid::FIRST_USER
        || t == oid::RECORD
        || matches!(
            text_array_element(t),
            Some(e) if builtin_string(e) || e == oid::JSON || e == oid::JSONB || e == oid::RECORD
        )
}

/// The element type of the built-in array types whose text form Airlock edits.
fn text_array_element(t: u32) -> Option<u32> {
    Some(match t {
        1009 => oid::TEXT,
        1015 => oid::VARCHAR,
        1014 => oid::BPCHAR,
        1003 => oid::NAME,
        1002 => oid::CHAR,
        143 => oid::XML,
        199 => oid::JSON,
        3807 => oid::JSONB,
        2287 => oid::RECORD,
        _ => return None,
    })
}

/// The built-in array types (`pg_type.typcategory = 'A'` below the first user OID).
fn builtin_array(t: u32) -> bool {
    text_array_element(t).is_some()
        || matches!(
            t,
            1000..=1028
                | 1034
                | 1040
                | 1041
                | 1115
                | 1182
                | 1183
                | 1185
                | 1187
                | 1231
                | 1263
                | 1270
                | 2201
                | 2949
                | 2951
                | 3221
                | 3643
                | 3645
                | 3735
                | 3770
        )
}

/// Binary forms that hold no text: nothing for a detector to find.
fn binary_without_text(t: u32) -> bool {
    matches!(
        t,
        oid::BOOL
            | oid::INT2
            | oid::OID
            | oid::FLOAT4
            | oid::FLOAT8
            | oid::DATE
            | oid::TIME
            | oid::TIMETZ
            | oid::TIMESTAMP
            | oid::TIMESTAMPTZ
            | oid::INTERVAL
            | oid::UUID
    )
}

/// Masks one non-NULL value of type `type_oid` in the given format. `whole` is the rule
/// masking the whole column, if any.
pub fn mask_value(
    masker: &Masker,
    type_oid: u32,
    binary: bool,
    whole: Option<&Apply>,
    value: &[u8],
    tally: &mut Tally,
) -> Masked {
    match whole {
        Some(apply) => mask_whole(masker, apply, type_oid, binary, value, tally),
        None => scan_value(masker, type_oid, binary, value, tally, 0),
    }
}

fn mask_whole(
    masker: &Masker,
    apply: &Apply,
    t: u32,
    binary: bool,
    value: &[u8],
    tally: &mut Tally,
) -> Masked {
    let mut mask = Vec::new();
    if !masker.whole(apply, value, &mut mask, tally) {
        return Masked::Keep;
    }
    match t {
        oid::JSON => {
            let mut out = Vec::with_capacity(mask.len() + 2);
            whole_as_json(&mask, &mut out);
            Masked::Replace(out)
        }
        oid::JSONB => {
            let mut out = Vec::with_capacity(mask.len() + 3);
            if binary {
                out.push(1);
            }
            whole_as_json(&mask, &mut out);
            Masked::Replace(out)
        }
        _ if builtin_string(t) => Masked::Replace(mask),
        _ if !binary && t >= oid::FIRST_USER => Masked::Replace(mask),
        _ if !binary && text_array_element(t).is_some_and(builtin_string) => {
            let mut out = Vec::with_capacity(mask.len() + 2);
            out.push(b'{');
            out.extend_from_slice(&mask);
            out.push(b'}');
            Masked::Replace(out)
        }
        _ => Masked::Null,
    }
}

fn scan_value(
    masker: &Masker,
    t: u32,
    binary: bool,
    value: &[u8],
    tally: &mut Tally,
    depth: usize,
) -> Masked {
    if depth > MAX_NESTING {
        return Masked::Null;
    }
    if t == oid::JSON || t == oid::JSONB {
        let text = match (binary, t) {
            (true, oid::JSONB) => match value.split_first() {
                Some((1, rest)) => rest,
                _ => return Masked::Null,
            },
            _ => value,
        };
        if !masker.has_column_rules() && !masker.may_find(text) {
            return Masked::Keep;
        }
        let mut out = Vec::new();
        if binary && t == oid::JSONB {
            out.push(1);
        }
        return match mask_json(masker, text, &mut out, tally) {
            Ok(true) => Masked::Replace(out),
            Ok(false) => Masked::Keep,
            Err(_) => Masked::Null,
        };
    }
    if !binary {
        let mut out = Vec::new();
        return match masker.scan(value, &mut out, tally) {
            Scan::Clean => Masked::Keep,
            Scan::Masked if takes_text_in_place(t) => Masked::Replace(out),
            Scan::Masked => Masked::Null,
        };
    }
    if builtin_string(t) {
        let mut out = Vec::new();
        return match masker.scan(value, &mut out, tally) {
            Scan::Clean => Masked::Keep,
            Scan::Masked => Masked::Replace(out),
        };
    }
    if binary_without_text(t) {
        return Masked::Keep;
    }
    let decoded;
    let text: &[u8] = match t {
        oid::INT8 => match <[u8; 8]>::try_from(value) {
            Ok(b) => {
                decoded = i64::from_be_bytes(b).to_string();
                decoded.as_bytes()
            }
            Err(_) => return Masked::Null,
        },
        oid::INT4 => match <[u8; 4]>::try_from(value) {
            Ok(b) => {
                decoded = i32::from_be_bytes(b).to_string();
                decoded.as_bytes()
            }
            Err(_) => return Masked::Null,
        },
        oid::NUMERIC => match numeric_digits(value) {
            Some(d) => {
                decoded = d;
                decoded.as_bytes()
            }
            None => return Masked::Null,
        },
        oid::RECORD => return scan_record(masker, value, tally, depth),
        _ => {
            if let Some(m) = scan_array(masker, value, tally, depth) {
                return m;
            }
            if builtin_array(t) {
                // A built-in array type that does not read as one: withheld.
                return Masked::Null;
            }
            value
        }
    };
    let mut out = Vec::new();
    match masker.scan(text, &mut out, tally) {
        Scan::Clean => Masked::Keep,
        Scan::Masked => Masked::Null,
    }
}

/// A binary array, element by element; `None` when `value` is not an array's binary
/// form (a type Airlock does not know), so the caller scans the raw bytes.
fn scan_array(masker: &Masker, value: &[u8], tally: &mut Tally, depth: usize) -> Option<Masked> {
    let mut r = Cursor(value);
    let ndim = r.i32()?;
    let flags = r.i32()?;
    let elem = r.u32()?;
    if !(0..=6).contains(&ndim) || !(0..=1).contains(&flags) {
        return None;
    }
    let mut count: usize = if ndim == 0 { 0 } else { 1 };
    for _ in 0..ndim {
        let dim = usize::try_from(r.i32()?).ok()?;
        let _lower = r.i32()?;
        count = count.checked_mul(dim)?;
    }
    let header_len = value.len() - r.0.len();
    let mut out = value.get(..header_len)?.to_vec();
    let mut changed = false;
    let mut nulls = flags == 1;
    for _ in 0..count {
        let len = r.i32()?;
        if len < 0 {
            out.extend_from_slice(&len.to_be_bytes());
            continue;
        }
        let element = r.take(usize::try_from(len).ok()?)?;
        let masked = scan_value(masker, elem, true, element, tally, depth + 1);
        nulls |= masked == Masked::Null;
        changed |= put_masked(&mut out, element, masked);
    }
    if !r.0.is_empty() {
        return None;
    }
    if !changed {
        return Some(Masked::Keep);
    }
    if nulls && let Some(f) = out.get_mut(4..8) {
        f.copy_from_slice(&1i32.to_be_bytes());
    }
    Some(Masked::Replace(out))
}

/// A binary `record`: each field masked by its own type. Unreadable: withheld.
fn scan_record(masker: &Masker, value: &[u8], tally: &mut Tally, depth: usize) -> Masked {
    let mut rewrite = || -> Option<Masked> {
        let mut r = Cursor(value);
        let n = r.i32()?;
        let mut out = n.to_be_bytes().to_vec();
        let mut changed = false;
        for _ in 0..n {
            let t = r.u32()?;
            let len = r.i32()?;
            out.extend_from_slice(&t.to_be_bytes());
            if len < 0 {
                out.extend_from_slice(&len.to_be_bytes());
                continue;
            }
            let field = r.take(usize::try_from(len).ok()?)?;
            let masked = scan_value(masker, t, true, field, tally, depth + 1);
            changed |= put_masked(&mut out, field, masked);
        }
        if !r.0.is_empty() {
            return None;
        }
        Some(if changed {
            Masked::Replace(out)
        } else {
            Masked::Keep
        })
    };
    rewrite().unwrap_or(Masked::Null)
}

/// The decimal digits of a binary `numeric` (sign and point included), enough for the
/// detectors to see a card number stored as a number.
fn numeric_digits(value: &[u8]) -> Option<String> {
    let mut r = Cursor(value);
    let ndigits = usize::try_from(r.i16()?).ok()?;
    let weight = r.i16()?;
    let sign = r.u16()?;
    let _dscale = r.u16()?;
    let mut groups = Vec::with_capacity(ndigits);
    for _ in 0..ndigits {
        groups.push(r.i16()?);
    }
    if sign == 0xC000 {
        return Some("NaN".into());
    }
    let mut text = String::new();
    if sign == 0x4000 {
        text.push('-');
    }
    let int_groups = usize::try_from(i32::from(weight) + 1).unwrap_or(0);
    for i in 0..int_groups.max(1) {
        let g = groups.get(i).copied().unwrap_or(0);
        if i == 0 {
            text.push_str(&g.to_string());
        } else {
            text.push_str(&format!("{g:04}"));
        }
    }
    if groups.len() > int_groups {
        text.push('.');
        for g in groups.iter().skip(int_groups) {
            text.push_str(&format!("{g:04}"));
        }
    }
    Some(text)
}

/// A reader over a binary value that answers `None` past its end.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use airlock_engine::masking::redact::HashKey;
    use airlock_engine::masking::rules::{MaskingRules, default_rule};
    use airlock_model::{Principal, PrincipalSource};
    use std::sync::Arc;

    fn masker() -> Arc<Masker> {
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
        rules.for_session("t", &p).unwrap()
    }

    /// A one-dimensional binary array of `elem` values.
    fn binary_array(elem: u32, values: &[Option<&[u8]>]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&1i32.to_be_bytes());
        v.extend_from_slice(&i32::from(values.iter().any(Option::is_none)).to_be_bytes());
        v.extend_from_slice(&elem.to_be_bytes());
        v.extend_from_slice(&(values.len() as i32).to_be_bytes());
        v.extend_from_slice(&1i32.to_be_bytes());
        for x in values {
            match x {
                None => v.extend_from_slice(&(-1i32).to_be_bytes()),
                Some(b) => {
                    v.extend_from_slice(&(b.len() as i32).to_be_bytes());
                    v.extend_from_slice(b);
                }
            }
        }
        v
    }

    #[test]
    fn binary_arrays_are_masked_element_by_element_and_stay_valid() {
        let m = masker();
        let mut t = Tally::default();
        let input = binary_array(oid::TEXT, &[Some(b"x"), Some(b"ada@example.com"), None]);
        let Masked::Replace(out) = mask_value(&m, 1009, true, None, &input, &mut t) else {
            panic!("not masked");
        };
        assert_eq!(
            out,
            binary_array(oid::TEXT, &[Some(b"x"), Some(b"[REDACTED:email]"), None])
        );
        // An int8[] holding a card number: that element becomes NULL, the flag says so.
        let input = binary_array(
            oid::INT8,
            &[
                Some(&4111111111111111i64.to_be_bytes()),
                Some(&7i64.to_be_bytes()),
            ],
        );
        let Masked::Replace(out) = mask_value(&m, 1016, true, None, &input, &mut t) else {
            panic!("not masked");
        };
        assert_eq!(
            out,
            binary_array(oid::INT8, &[None, Some(&7i64.to_be_bytes())])
        );
        // Truncated: withheld.
        let cut = &input[..input.len() - 3];
        assert_eq!(mask_value(&m, 1016, true, None, cut, &mut t), Masked::Null);
    }

    #[test]
    fn whole_masks_fit_their_type() {
        let m = masker();
        let mut t = Tally::default();
        let apply = m.name_is_masked("password").unwrap();
        let text = |t: u32, b: bool, v: &[u8], tally: &mut Tally| {
            mask_value(&m, t, b, Some(&apply), v, tally)
        };
        assert_eq!(
            text(oid::TEXT, false, b"hunter2", &mut t),
            Masked::Replace(b"[REDACTED:column]".to_vec())
        );
        assert_eq!(
            text(oid::JSONB, true, b"\x01{}", &mut t),
            Masked::Replace(b"\x01\"[REDACTED:column]\"".to_vec())
        );
        assert_eq!(
            text(1009, false, b"{a,b}", &mut t),
            Masked::Replace(b"{[REDACTED:column]}".to_vec())
        );
        assert_eq!(text(oid::INT4, false, b"42", &mut t), Masked::Null);
        assert_eq!(text(17 /* bytea */, true, b"\x00", &mut t), Masked::Null);
        // Text-format values of non-string types: a finding withholds the value.
        assert_eq!(
            mask_value(&m, oid::INT8, false, None, b"4111111111111111", &mut t),
            Masked::Null
        );
        assert_eq!(
            mask_value(&m, oid::INT8, false, None, b"1234", &mut t),
            Masked::Keep
        );
    }

    #[test]
    fn numeric_binary_decodes_to_its_digits() {
        // 4111111111111111 = groups 4111 1111 1111 1111, weight 3.
        let mut v = Vec::new();
        for x in [4i16, 3, 0, 0] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        for g in [4111i16, 1111, 1111, 1111] {
            v.extend_from_slice(&g.to_be_bytes());
        }
        assert_eq!(numeric_digits(&v).as_deref(), Some("4111111111111111"));
        // 12.5 = groups 12 5000, weight 0.
        let mut v = Vec::new();
        for x in [2i16, 0, 0, 1] {
            v.extend_from_slice(&x.to_be_bytes());
        }
        for g in [12i16, 5000] {
            v.extend_from_slice(&g.to_be_bytes());
        }
        assert_eq!(numeric_digits(&v).as_deref(), Some("12.5000"));
    }

    proptest::proptest! {
        /// Any bytes under any type and format: no panic, and a value that stays text
        /// holds no e-mail address.
        #[test]
        fn any_value_is_masked_without_panic(
            t in proptest::sample::select(vec![oid::TEXT, oid::JSON, oid::JSONB, oid::INT8, oid::NUMERIC, oid::RECORD, 1009u32, 1016, 16400, 17 /* bytea */]),
            binary in proptest::bool::ANY,
            prefix in proptest::collection::vec(proptest::num::u8::ANY, 0..40),
            with_email in proptest::bool::ANY,
        ) {
            let m = masker();
            let mut t_ = Tally::default();
            let mut value = prefix;
            if with_email {
                value.extend_from_slice(b" ada@example.com ");
            }
            let out = mask_value(&m, t, binary, None, &value, &mut t_);
            if let Masked::Replace(v) = &out {
                proptest::prop_assert!(!String::from_utf8_lossy(v).contains("ada@example.com"));
            }
            if with_email && !binary && out == Masked::Keep {
                proptest::prop_assert!(false, "an e-mail in a text value was kept");
            }
        }
    }
}
