//! A cheap cache key for statement text: the text with each plain string or number
//! literal replaced by a marker, found by a single pass over the bytes.
//!
//! The classifier's cache must only share an entry between statements that differ in
//! constants alone (their actions are then the same). `pg_query::normalize` gives
//! such a key but parses the whole statement to do it (about a third of an uncached
//! parse, ~11 µs of a `pgbench -S` transaction); a statement that differs from a
//! cached one only in its literals should cost far less than that.
//!
//! Hand-written because no crate lexes PostgreSQL SQL short of the parser itself. It
//! recognises only a strict subset of the lexer exactly: single-quoted strings with
//! `standard_conforming_strings` on (`''` inside), unsigned decimal numbers (`42`,
//! `4.2`), double-quoted identifiers (copied as they are) and `$n` parameters. For
//! anything else that could hide or change where a token starts or ends (comments,
//! dollar quotes, `E'…'` and other prefixed strings, exponents, `0x…`, `1_000`, a
//! backslash-escaping server) it gives no key, and the classifier falls back to
//! `pg_query::normalize`. The marker bytes (0x01 for a string, 0x03 for a number)
//! cannot occur in a text that has a key, so two texts share a key exactly when their
//! non-literal bytes are the same and the same kinds of literal stand at the same
//! places.

/// Marks where a string literal stood.
const STRING: u8 = 0x01;
/// Marks where a number stood.
const NUMBER: u8 = 0x03;
/// Starts every key, so that no key made here equals a `pg_query::normalize` key.
const TAG: u8 = 0x02;

/// Bytes that continue an identifier or keyword (PostgreSQL counts every byte of a
/// multi-byte character as one).
fn continues_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

/// The key of `text`, or `None` when it holds something this lexer does not follow.
pub(super) fn literal_free_key(text: &str, standard_conforming_strings: bool) -> Option<String> {
    if !standard_conforming_strings {
        return None;
    }
    let bytes = text.as_bytes();
    let mut key = Vec::with_capacity(bytes.len() + 1);
    key.push(TAG);
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let after_word = i > 0 && bytes.get(i - 1).copied().is_some_and(continues_word);
        match b {
            STRING | TAG | NUMBER | b'\\' => return None,
            b'-' if bytes.get(i + 1) == Some(&b'-') => return None,
            b'/' if bytes.get(i + 1) == Some(&b'*') => return None,
            b'\'' => {
                // `E'…'`, `B'…'`, `X'…'`, `N'…'` and `keyword'…'` are left to the parser.
                if after_word {
                    return None;
                }
                i = end_of_quoted(bytes, i, b'\'')?;
                key.push(STRING);
                continue;
            }
            b'"' => {
                let end = end_of_quoted(bytes, i, b'"')?;
                let quoted = bytes.get(i..end)?;
                if quoted.iter().any(|b| matches!(*b, STRING | TAG | NUMBER)) {
                    return None;
                }
                key.extend_from_slice(quoted);
                i = end;
                continue;
            }
            b'$' if !after_word => {
                // A parameter (`$1`) is copied; a dollar quote (`$$`, `$tag$`) is not
                // followed.
                let digits = count_digits(bytes, i + 1);
                if digits == 0 {
                    return None;
                }
                key.extend_from_slice(bytes.get(i..i + 1 + digits)?);
                i += 1 + digits;
                continue;
            }
            b'0'..=b'9' if !after_word => {
                let mut end = i + count_digits(bytes, i);
                if bytes.get(end) == Some(&b'.') {
                    let fraction = count_digits(bytes, end + 1);
                    if fraction == 0 {
                        return None;
                    }
                    end += 1 + fraction;
                }
                // An exponent, a radix prefix, an underscore or a second point.
                if bytes
                    .get(end)
                    .is_some_and(|&n| continues_word(n) || n == b'.')
                {
                    return None;
                }
                key.push(NUMBER);
                i = end;
                continue;
            }
            b'.' if !after_word && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                // `.5`
                return None;
            }
            _ => key.push(b),
        }
        i += 1;
    }
    String::from_utf8(key).ok()
}

/// Whether `key` (made from `text` by [`literal_free_key`]) found no literal in it.
pub(super) fn has_no_literal(key: &str, text: &str) -> bool {
    key.as_bytes().split_first() == Some((&TAG, text.as_bytes()))
}

/// Index just past the quoted token starting at `start` (a doubled quote continues it).
/// A backslash anywhere gives up, whatever the setting says it means.
fn end_of_quoted(bytes: &[u8], start: usize, quote: u8) -> Option<usize> {
    let mut i = start + 1;
    loop {
        match bytes.get(i) {
            None | Some(b'\\') => return None,
            Some(&b) if b == quote => {
                if bytes.get(i + 1) == Some(&quote) {
                    i += 2;
                } else {
                    return Some(i + 1);
                }
            }
            Some(_) => i += 1,
        }
    }
}

fn count_digits(bytes: &[u8], from: usize) -> usize {
    bytes.get(from..).map_or(0, |rest| {
        rest.iter().take_while(|b| b.is_ascii_digit()).count()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> Option<String> {
        literal_free_key(text, true)
    }

    #[test]
    fn statements_that_differ_in_literals_alone_share_a_key() {
        for (a, b) in [
            (
                "SELECT abalance FROM pgbench_accounts WHERE aid = 12345;",
                "SELECT abalance FROM pgbench_accounts WHERE aid = 7;",
            ),
            (
                "select * from t where name = 'alice' and n > 4.5",
                "select * from t where name = 'it''s bob' and n > 10",
            ),
            (
                "insert into t (a, b) values (1, 'x'), (2, 'y')",
                "insert into t (a, b) values (300, ''), (4, 'z;drop table t')",
            ),
            (
                "select \"Weird \"\"Name\"\"\" from t where a = $1 and b = -3",
                "select \"Weird \"\"Name\"\"\" from t where a = $1 and b = -42",
            ),
        ] {
            assert_eq!(key(a), key(b), "{a} / {b}");
            assert!(key(a).is_some(), "{a}");
        }
    }

    #[test]
    fn statements_that_differ_in_anything_else_do_not() {
        for (a, b) in [
            ("select a from t where x = 1", "select b from t where x = 1"),
            ("select a from t1", "select a from t2"),
            (
                "select a from t where x = 1",
                "select a from t where x = '1'",
            ),
            ("select f(1)", "select f(1, 2)"),
            ("select $1", "select $2"),
            ("select $1", "select 1"),
            ("select \"a'1'\" from t", "select \"a'2'\" from t"),
            ("select 1; select 2", "select 1; drop table t"),
            ("select ß1 from t", "select ß2 from t"),
        ] {
            assert_ne!(key(a), key(b), "{a} / {b}");
        }
    }

    #[test]
    fn what_the_lexer_does_not_follow_gets_no_key() {
        for text in [
            "select 1 -- comment 'x'",
            "select /* 'x' */ 1",
            "select $$a'b$$",
            "select $tag$x$tag$",
            "select E'a\\'b'",
            "select e'x', 1",
            "select x'1f'",
            "select B'101'",
            "select N'x'",
            "select 1e5",
            "select 0x1F",
            "select 1_000",
            "select 1.2.3",
            "select 1.",
            "select .5",
            "select 'unterminated",
            "select \"unterminated",
            "select 'a\\'",
            "select \"a\u{1}\"",
            "select\u{1}1",
            "select\u{3}1",
        ] {
            assert_eq!(key(text), None, "{text}");
        }
        assert_eq!(literal_free_key("select 1", false), None);
    }

    #[test]
    fn identifiers_with_digits_stay_as_written() {
        let k = key("select c1 from t2 where a$1 = 5").unwrap();
        assert!(
            k.contains("c1") && k.contains("t2") && k.contains("a$1"),
            "{k:?}"
        );
        assert_eq!(k.matches(char::from(NUMBER)).count(), 1);
    }

    #[test]
    fn text_without_literals_is_its_own_key() {
        let text = "select a from t where id = $1";
        assert!(has_no_literal(&key(text).unwrap(), text));
        let text = "select a from t where id = 1";
        assert!(!has_no_literal(&key(text).unwrap(), text));
    }

    #[test]
    fn a_key_never_equals_a_normalized_text() {
        let k = key("select $1").unwrap();
        assert_ne!(k, "select $1");
        assert_eq!(k.as_bytes().first(), Some(&TAG));
    }
}
