//! Request-path normalisation: the path of an HTTP request target, resolved the way the
//! upstream will resolve it, before policy decides on it.
//!
//! Invariant: policy decides on [`NormalisedPath::segments`], and the gateway forwards
//! [`NormalisedPath::as_str`], which any sane server resolves to exactly those segments.
//! A path whose meaning two servers could disagree on (encoded `/` or `\`, `;` path
//! parameters, overlong UTF-8, a `..` above the root, characters some servers fold into
//! separators) is refused with a [`PathRefusal`], never forwarded.
//!
//! The steps follow RFC 3986 section 6.2.2: percent-escapes of unreserved characters
//! are decoded (hex case-insensitive), the hex of every other escape is upper-cased,
//! empty segments collapse and dot segments are removed (section 5.2.4). `%25` is never
//! decoded, so a path cannot be decoded twice into a different one.

#![deny(clippy::indexing_slicing)]

use std::fmt;

/// Longest accepted path in bytes, both as received and as forwarded (percent-encoded).
pub const MAX_PATH_LEN: usize = 8 * 1024;

/// Most non-empty segments a received path may have (dot segments included).
pub const MAX_SEGMENTS: usize = 256;

/// A request path as the upstream will resolve it.
///
/// Each segment is decoded text, with one exception: a percent-escape of a reserved
/// character (`:` `@` `!` `$` `&` `'` `(` `)` `*` `+` `,` `=` `?` `#` `[` `]`) or of `%`
/// stays encoded, as `%` and two upper-case hex digits, because decoding it would
/// change what the path means (`a%3Fb` is one segment named `a?b`, not `a` and a query).
/// So every `%` in a segment starts such an escape; everything else is literal text
/// (spaces and non-ASCII characters included). A raw `[` or `]` is held as `%5B`/`%5D`.
/// No segment is empty, `.` or `..`, or contains `/`, `\`, `;` or a control character.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NormalisedPath {
    segments: Vec<String>,
    trailing_slash: bool,
    forwarded: String,
}

impl NormalisedPath {
    /// The segments policy decides on, in order; empty for the root. See the type's
    /// documentation for which characters stay percent-encoded.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// The path to send upstream: `/` followed by the segments joined with `/`, plus a
    /// trailing `/` when [`had_trailing_slash`](Self::had_trailing_slash); `/` for the
    /// root. Characters that may not appear raw in a path (space, `"`, `<`, `>`, `` ` ``,
    /// `{`, `}`, `|`, `^`, non-ASCII) are percent-encoded as UTF-8 with upper-case hex.
    /// Normalising this string again yields the same path.
    pub fn as_str(&self) -> &str {
        &self.forwarded
    }

    /// Whether the path ends in a slash (`/a/b/`, also `/a/b/.` and `/a/c/..`), kept when
    /// forwarded. Always `false` for the root, whose form is just `/`.
    pub fn had_trailing_slash(&self) -> bool {
        self.trailing_slash
    }
}

impl fmt::Display for NormalisedPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.forwarded)
    }
}

/// Why a path was refused. Offsets (`at`) are zero-based byte offsets into the path as
/// received. Each message tells an agent what was wrong and what to send instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathRefusal {
    /// The path does not start with `/` (empty, absolute-form `http://host/...`, `*`).
    #[error(
        "the request path `{got}` does not start with `/`; send the path alone in origin \
         form, such as `/v1/items`, without scheme, host or `*`"
    )]
    NotOriginForm { got: String },

    /// The path, as received or as forwarded once percent-encoded, exceeds [`MAX_PATH_LEN`].
    #[error(
        "the path is {len} bytes long (counting percent-encoding), over the limit of {max} \
         bytes; request a shorter path"
    )]
    TooLong { len: usize, max: usize },

    /// The path has more than [`MAX_SEGMENTS`] non-empty segments.
    #[error(
        "the path has {count} segments, over the limit of {max}; request a path with fewer \
         segments"
    )]
    TooManySegments { count: usize, max: usize },

    /// A `%` is not followed by two hex digits.
    #[error(
        "the path has a `%` at offset {at} that is not followed by two hex digits; write a \
         literal `%` as `%25`"
    )]
    MalformedPercent { at: usize },

    /// `%2F`: servers disagree on whether an encoded slash separates segments.
    #[error(
        "the path has an encoded slash `%2F` at offset {at}; servers disagree on whether it \
         separates segments, so it is refused: use a literal `/` between segments, or leave \
         this resource out"
    )]
    EncodedSlash { at: usize },

    /// A backslash, raw or `%5C`: some servers treat it as a segment separator.
    #[error(
        "the path has a backslash (`\\` or `%5C`) at offset {at}; some servers treat it as \
         a segment separator, so it is refused: use `/` to separate segments"
    )]
    Backslash { at: usize },

    /// A NUL byte, raw or `%00`.
    #[error("the path has a NUL byte (`%00` or a raw zero byte) at offset {at}; remove it")]
    Nul { at: usize },

    /// A control character other than NUL, raw or percent-encoded.
    #[error(
        "the path has the control character U+{code:04X} (raw or percent-encoded) at offset \
         {at}; remove it"
    )]
    ControlCharacter { at: usize, code: u32 },

    /// Percent-escapes that do not decode to valid UTF-8 (overlong forms included).
    #[error(
        "the percent-encoded bytes at offset {at} are not valid UTF-8 (overlong forms such \
         as `%C0%AE` are refused); encode text as UTF-8, one `%XX` per byte"
    )]
    InvalidUtf8 { at: usize },

    /// A `;` (raw or `%3B`): servlet containers strip `;` path parameters.
    #[error(
        "the path has a `;` (raw or `%3B`) at offset {at}; servlet containers treat `;...` \
         as a path parameter and strip it, so the upstream could serve another path: remove \
         the `;` and what follows it in that segment"
    )]
    PathParameter { at: usize },

    /// A raw `?` or `#`, which belongs to the query or fragment, not the path.
    #[error(
        "the path has a raw `{character}` at offset {at}; the query goes after the first `?` \
         and a fragment is never sent: move or drop it, or write it as `%3F` / `%23` if it \
         is part of a segment name"
    )]
    Delimiter { at: usize, character: char },

    /// A `..` segment that would climb above the root of the target.
    #[error(
        "the `..` segment at offset {at} climbs above the root of the target; remove it \
         and request the path inside the target directly"
    )]
    AboveRoot { at: usize },

    /// A segment ending in `.` or a space, which Windows-based servers strip.
    #[error(
        "the segment `{segment}` at offset {at} ends with a dot or a space, which \
         Windows-based servers strip (so `admin.` can serve `admin`); remove the trailing \
         character"
    )]
    TrailingDotOrSpace { at: usize, segment: String },

    /// A non-ASCII character that some servers fold into `/`, `\`, `.`, `%`, `;`, `?` or
    /// `#` (Unicode compatibility normalisation, Windows best-fit code pages).
    #[error(
        "the path has the character U+{code:04X} at offset {at}, which some servers fold \
         into `/`, `\\`, `.`, `%`, `;`, `?` or `#`; use the plain ASCII character if that is \
         what you mean, or leave it out"
    )]
    LookalikeCharacter { at: usize, code: u32 },
}

/// Normalises `raw`, the path of a request target (the caller has split off the query
/// at the first `?` and there is no fragment), or says why it is refused.
///
/// The result's segments are what policy decides on; its [`NormalisedPath::as_str`] is
/// what is forwarded. A `..` above the root is refused, not clamped: the caller strips
/// the target's prefix first, so climbing above the root means escaping the target.
pub fn normalise(raw: &str) -> Result<NormalisedPath, PathRefusal> {
    let Some(rest) = raw.strip_prefix('/') else {
        return Err(PathRefusal::NotOriginForm { got: excerpt(raw) });
    };
    if raw.len() > MAX_PATH_LEN {
        return Err(PathRefusal::TooLong {
            len: raw.len(),
            max: MAX_PATH_LEN,
        });
    }
    let count = rest.split('/').filter(|piece| !piece.is_empty()).count();
    if count > MAX_SEGMENTS {
        return Err(PathRefusal::TooManySegments {
            count,
            max: MAX_SEGMENTS,
        });
    }

    let mut segments: Vec<String> = Vec::new();
    let mut trailing_slash = false;
    // Offset of the current piece in `raw`; pieces follow the leading `/`.
    let mut at = 1;
    for piece in rest.split('/') {
        let text = decode_segment(piece, at)?;
        // Only the last piece's value survives: the path ends in a slash when its last
        // piece is empty, `.` or `..` (RFC 3986 section 5.2.4).
        trailing_slash = true;
        match text.as_str() {
            "" | "." => {}
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathRefusal::AboveRoot { at });
                }
            }
            _ => {
                if text.ends_with('.') || text.ends_with(' ') {
                    return Err(PathRefusal::TrailingDotOrSpace {
                        at,
                        segment: excerpt(&text),
                    });
                }
                segments.push(text);
                trailing_slash = false;
            }
        }
        at += piece.len() + 1;
    }
    if segments.is_empty() {
        trailing_slash = false;
    }

    let forwarded = forwarded_form(&segments, trailing_slash);
    if forwarded.len() > MAX_PATH_LEN {
        return Err(PathRefusal::TooLong {
            len: forwarded.len(),
            max: MAX_PATH_LEN,
        });
    }
    Ok(NormalisedPath {
        segments,
        trailing_slash,
        forwarded,
    })
}

// === decoding ===

/// Decodes one segment (no `/` in it) into the form [`NormalisedPath`] documents.
/// `base` is the segment's offset in the received path, for refusals.
fn decode_segment(piece: &str, base: usize) -> Result<String, PathRefusal> {
    let bytes = piece.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    // Offset in the received path of each byte of `out`, to place UTF-8 refusals.
    let mut origins: Vec<usize> = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        let at = base + i;
        if byte == b'%' {
            let hi = bytes.get(i + 1).and_then(|b| hex_value(*b));
            let lo = bytes.get(i + 2).and_then(|b| hex_value(*b));
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(PathRefusal::MalformedPercent { at });
            };
            let value = (hi << 4) | lo;
            refuse_ambiguous(value, at)?;
            if value == b'/' {
                return Err(PathRefusal::EncodedSlash { at });
            }
            if value == b'%' || is_reserved(value) {
                push_escape(&mut out, &mut origins, value, at);
            } else {
                // Unreserved characters are equivalent decoded (RFC 3986 6.2.2.2);
                // any other byte is decoded here only to be validated as UTF-8 and is
                // encoded again when forwarded.
                out.push(value);
                origins.push(at);
            }
            i += 3;
        } else {
            refuse_ambiguous(byte, at)?;
            match byte {
                b'?' | b'#' => {
                    return Err(PathRefusal::Delimiter {
                        at,
                        character: char::from(byte),
                    });
                }
                // Not allowed raw in a path; held as the escape a server would see.
                b'[' | b']' => push_escape(&mut out, &mut origins, byte, at),
                _ => {
                    out.push(byte);
                    origins.push(at);
                }
            }
            i += 1;
        }
    }

    let text = String::from_utf8(out).map_err(|error| PathRefusal::InvalidUtf8 {
        at: origins
            .get(error.utf8_error().valid_up_to())
            .copied()
            .unwrap_or(base),
    })?;
    for (index, character) in text.char_indices() {
        let at = origins.get(index).copied().unwrap_or(base);
        let code = u32::from(character);
        if character.is_control() {
            return Err(PathRefusal::ControlCharacter { at, code });
        }
        if is_lookalike(character) {
            return Err(PathRefusal::LookalikeCharacter { at, code });
        }
    }
    Ok(text)
}

/// Refuses the bytes that are ambiguous whether raw or percent-encoded.
fn refuse_ambiguous(byte: u8, at: usize) -> Result<(), PathRefusal> {
    match byte {
        0 => Err(PathRefusal::Nul { at }),
        0x01..=0x1F | 0x7F => Err(PathRefusal::ControlCharacter {
            at,
            code: u32::from(byte),
        }),
        b'\\' => Err(PathRefusal::Backslash { at }),
        b';' => Err(PathRefusal::PathParameter { at }),
        _ => Ok(()),
    }
}

fn push_escape(out: &mut Vec<u8>, origins: &mut Vec<usize>, byte: u8, at: usize) {
    out.extend_from_slice(&[b'%', hex_digit(byte >> 4), hex_digit(byte & 0x0F)]);
    origins.extend_from_slice(&[at, at, at]);
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

fn hex_digit(nibble: u8) -> u8 {
    match nibble {
        0..=9 => b'0' + nibble,
        _ => b'A' + (nibble - 10),
    }
}

/// RFC 3986 `reserved`: gen-delims and sub-delims.
fn is_reserved(byte: u8) -> bool {
    matches!(
        byte,
        b':' | b'/'
            | b'?'
            | b'#'
            | b'['
            | b']'
            | b'@'
            | b'!'
            | b'$'
            | b'&'
            | b'\''
            | b'('
            | b')'
            | b'*'
            | b'+'
            | b','
            | b';'
            | b'='
    )
}

/// Characters that some servers fold into `/`, `\`, `.`, `%`, `;`, `?` or `#`: those
/// whose NFKC form consists of dots or contains one of the others, plus the slashes
/// and backslashes of Windows best-fit code-page mappings (`¥` and `₩` are the path
/// separator in the Japanese and Korean code pages).
fn is_lookalike(character: char) -> bool {
    matches!(
        character,
        '\u{00A5}'
            | '\u{037E}'
            | '\u{2024}'..='\u{2026}'
            | '\u{2044}'
            | '\u{2047}'..='\u{2049}'
            | '\u{20A9}'
            | '\u{2100}'
            | '\u{2101}'
            | '\u{2105}'
            | '\u{2106}'
            | '\u{2215}'
            | '\u{2216}'
            | '\u{29F8}'
            | '\u{29F9}'
            | '\u{FE14}'
            | '\u{FE16}'
            | '\u{FE19}'
            | '\u{FE30}'
            | '\u{FE52}'
            | '\u{FE54}'
            | '\u{FE56}'
            | '\u{FE5F}'
            | '\u{FE68}'
            | '\u{FE6A}'
            | '\u{FF03}'
            | '\u{FF05}'
            | '\u{FF0E}'
            | '\u{FF0F}'
            | '\u{FF1B}'
            | '\u{FF1F}'
            | '\u{FF3C}'
    )
}

// === encoding ===

fn forwarded_form(segments: &[String], trailing_slash: bool) -> String {
    let mut out = String::with_capacity(
        segments
            .iter()
            .map(|segment| segment.len() + 1)
            .sum::<usize>()
            + 1,
    );
    for segment in segments {
        out.push('/');
        encode_segment(segment, &mut out);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    out
}

/// Writes a segment for the wire: `%` (which always starts a kept escape), unreserved
/// characters, sub-delims other than `;`, `:` and `@` as they are; every other
/// character percent-encoded as UTF-8 with upper-case hex.
fn encode_segment(segment: &str, out: &mut String) {
    for character in segment.chars() {
        let literal = character == '%'
            || character.is_ascii_alphanumeric()
            || matches!(
                character,
                '-' | '.'
                    | '_'
                    | '~'
                    | '!'
                    | '$'
                    | '&'
                    | '\''
                    | '('
                    | ')'
                    | '*'
                    | '+'
                    | ','
                    | '='
                    | ':'
                    | '@'
            );
        if literal {
            out.push(character);
        } else {
            let mut buffer = [0u8; 4];
            for byte in character.encode_utf8(&mut buffer).bytes() {
                out.push('%');
                out.push(char::from(hex_digit(byte >> 4)));
                out.push(char::from(hex_digit(byte & 0x0F)));
            }
        }
    }
}

/// At most 64 characters of `text`, escaped, for a refusal message.
fn excerpt(text: &str) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(64).collect();
    let mut shown = head.escape_debug().to_string();
    if chars.next().is_some() {
        shown.push('…');
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `(input, forwarded form, segments)` for paths that are accepted.
    const ACCEPTED: &[(&str, &str, &[&str])] = &[
        // Plain paths.
        ("/", "/", &[]),
        ("/a", "/a", &["a"]),
        ("/v1/items/42", "/v1/items/42", &["v1", "items", "42"]),
        ("/a-b_c~d.e", "/a-b_c~d.e", &["a-b_c~d.e"]),
        // Dot segments.
        ("/v1/../admin", "/admin", &["admin"]),
        ("/a/%2e%2e/x", "/x", &["x"]),
        ("/a/%2E%2E/x", "/x", &["x"]),
        ("/a/.%2e/x", "/x", &["x"]),
        ("/a/./b", "/a/b", &["a", "b"]),
        ("/a/%2e/b", "/a/b", &["a", "b"]),
        ("/a/b/c/../../d", "/a/d", &["a", "d"]),
        ("/.", "/", &[]),
        ("/a/..", "/", &[]),
        ("/a/../", "/", &[]),
        ("/...x", "/...x", &["...x"]),
        ("/.a", "/.a", &[".a"]),
        // Empty segments collapse.
        ("//a///b", "/a/b", &["a", "b"]),
        ("//", "/", &[]),
        ("///", "/", &[]),
        // Trailing slash kept, also after dot segments.
        ("/a/b/", "/a/b/", &["a", "b"]),
        ("/a/b//", "/a/b/", &["a", "b"]),
        ("/a/b/.", "/a/b/", &["a", "b"]),
        ("/a/b/..", "/a/", &["a"]),
        ("/a/b/%2e", "/a/b/", &["a", "b"]),
        ("/a/b/./", "/a/b/", &["a", "b"]),
        ("/a/b/c/../", "/a/b/", &["a", "b"]),
        // Unreserved characters decoded, case-insensitive hex.
        ("/%41", "/A", &["A"]),
        ("/%61%62c", "/abc", &["abc"]),
        ("/%7e", "/~", &["~"]),
        ("/%7E%2D%5f%30", "/~-_0", &["~-_0"]),
        // `%25` is never decoded: no double decoding.
        ("/%252e%252e", "/%252e%252e", &["%252e%252e"]),
        (
            "/a/%252e%252e/b",
            "/a/%252e%252e/b",
            &["a", "%252e%252e", "b"],
        ),
        ("/100%25", "/100%25", &["100%25"]),
        ("/%252F", "/%252F", &["%252F"]),
        // Reserved characters stay encoded (hex upper-cased) or raw as received.
        ("/a%3ab", "/a%3Ab", &["a%3Ab"]),
        ("/a:b@c", "/a:b@c", &["a:b@c"]),
        ("/a%40b", "/a%40b", &["a%40b"]),
        ("/q%3fx%23y", "/q%3Fx%23y", &["q%3Fx%23y"]),
        ("/a!$&'()*+,=b", "/a!$&'()*+,=b", &["a!$&'()*+,=b"]),
        ("/%21%2b", "/%21%2B", &["%21%2B"]),
        ("/%5b1%5D", "/%5B1%5D", &["%5B1%5D"]),
        ("/[1]", "/%5B1%5D", &["%5B1%5D"]),
        // Characters not allowed raw: segments hold them decoded, forwarded encoded.
        ("/a%20b", "/a%20b", &["a b"]),
        ("/a b", "/a%20b", &["a b"]),
        (
            "/x\"<>`{}|^y",
            "/x%22%3C%3E%60%7B%7D%7C%5Ey",
            &["x\"<>`{}|^y"],
        ),
        ("/%22%7b", "/%22%7B", &["\"{"]),
        // UTF-8, raw or encoded.
        ("/caf%C3%A9", "/caf%C3%A9", &["café"]),
        ("/caf%c3%a9", "/caf%C3%A9", &["café"]),
        ("/café", "/caf%C3%A9", &["café"]),
        ("/%F0%9F%A6%80", "/%F0%9F%A6%80", &["🦀"]),
        ("/日本", "/%E6%97%A5%E6%9C%AC", &["日本"]),
    ];

    #[test]
    fn accepted_paths_normalise_to_the_expected_form() {
        for (input, forwarded, segments) in ACCEPTED {
            let path = normalise(input).unwrap_or_else(|e| panic!("{input:?} refused: {e}"));
            assert_eq!(path.as_str(), *forwarded, "forwarded form of {input:?}");
            assert_eq!(path.segments(), *segments, "segments of {input:?}");
            assert_eq!(
                path.had_trailing_slash(),
                forwarded.len() > 1 && forwarded.ends_with('/'),
                "trailing slash of {input:?}"
            );
            let again = normalise(path.as_str())
                .unwrap_or_else(|e| panic!("forwarded form of {input:?} refused: {e}"));
            assert_eq!(again, path, "normalising {input:?} twice");
        }
    }

    #[test]
    fn refused_paths_name_the_reason() {
        use PathRefusal::*;
        let cases: &[(&str, PathRefusal)] = &[
            // Not origin form.
            ("", NotOriginForm { got: String::new() }),
            ("a/b", NotOriginForm { got: "a/b".into() }),
            ("*", NotOriginForm { got: "*".into() }),
            (
                "http://127.0.0.1/a",
                NotOriginForm {
                    got: "http://127.0.0.1/a".into(),
                },
            ),
            // Climbing above the root.
            ("/..", AboveRoot { at: 1 }),
            ("/%2e%2e/x", AboveRoot { at: 1 }),
            ("/%2E%2e/x", AboveRoot { at: 1 }),
            ("/a/../../x", AboveRoot { at: 6 }),
            ("/a/b/../../..", AboveRoot { at: 11 }),
            // Encoded slash and backslash, raw backslash.
            ("/a%2Fb", EncodedSlash { at: 2 }),
            ("/a%2fb", EncodedSlash { at: 2 }),
            ("/a%5cb", Backslash { at: 2 }),
            ("/a%5Cb", Backslash { at: 2 }),
            ("/a\\b", Backslash { at: 2 }),
            ("/..\\x", Backslash { at: 3 }),
            // NUL and control characters, raw or encoded.
            ("/a%00", Nul { at: 2 }),
            ("/a\0", Nul { at: 2 }),
            ("/a%0A", ControlCharacter { at: 2, code: 0x0A }),
            ("/a\tb", ControlCharacter { at: 2, code: 0x09 }),
            ("/a%7f", ControlCharacter { at: 2, code: 0x7F }),
            ("/a\u{7f}", ControlCharacter { at: 2, code: 0x7F }),
            ("/a%C2%85", ControlCharacter { at: 2, code: 0x85 }),
            // Malformed escapes.
            ("/%zz", MalformedPercent { at: 1 }),
            ("/a%", MalformedPercent { at: 2 }),
            ("/a%4", MalformedPercent { at: 2 }),
            ("/a%4/b", MalformedPercent { at: 2 }),
            ("/%u002e", MalformedPercent { at: 1 }),
            // Invalid or overlong UTF-8.
            ("/%c0%ae", InvalidUtf8 { at: 1 }),
            ("/x/%e0%80%ae", InvalidUtf8 { at: 3 }),
            ("/%c0%af", InvalidUtf8 { at: 1 }),
            ("/%ff", InvalidUtf8 { at: 1 }),
            ("/ok%C3", InvalidUtf8 { at: 3 }),
            ("/%C3%28", InvalidUtf8 { at: 1 }),
            ("/%ed%a0%80", InvalidUtf8 { at: 1 }),
            ("/%C3%3A", InvalidUtf8 { at: 1 }),
            ("/%C3é", InvalidUtf8 { at: 1 }),
            // Path parameters.
            ("/a;x=1/..", PathParameter { at: 2 }),
            ("/a;", PathParameter { at: 2 }),
            ("/a%3bx", PathParameter { at: 2 }),
            // Query and fragment delimiters.
            (
                "/a?b",
                Delimiter {
                    at: 2,
                    character: '?',
                },
            ),
            (
                "/a#b",
                Delimiter {
                    at: 2,
                    character: '#',
                },
            ),
            // Trailing dot or space.
            (
                "/admin.",
                TrailingDotOrSpace {
                    at: 1,
                    segment: "admin.".into(),
                },
            ),
            (
                "/a/...",
                TrailingDotOrSpace {
                    at: 3,
                    segment: "...".into(),
                },
            ),
            (
                "/admin%20/x",
                TrailingDotOrSpace {
                    at: 1,
                    segment: "admin ".into(),
                },
            ),
            (
                "/admin%2e",
                TrailingDotOrSpace {
                    at: 1,
                    segment: "admin.".into(),
                },
            ),
            // Characters some servers fold into separators or dots.
            (
                "/a\u{FF0F}b",
                LookalikeCharacter {
                    at: 2,
                    code: 0xFF0F,
                },
            ),
            (
                "/a%EF%BC%8Fb",
                LookalikeCharacter {
                    at: 2,
                    code: 0xFF0F,
                },
            ),
            (
                "/\u{2025}/x",
                LookalikeCharacter {
                    at: 1,
                    code: 0x2025,
                },
            ),
            (
                "/a\u{FF3C}",
                LookalikeCharacter {
                    at: 2,
                    code: 0xFF3C,
                },
            ),
            ("/a\u{00A5}", LookalikeCharacter { at: 2, code: 0xA5 }),
        ];
        for (input, expected) in cases {
            assert_eq!(normalise(input).as_ref(), Err(expected), "{input:?}");
        }
    }

    #[test]
    fn length_limits_are_enforced() {
        let at_limit = format!("/{}", "a".repeat(MAX_PATH_LEN - 1));
        assert!(normalise(&at_limit).is_ok());
        let over = format!("/{}", "a".repeat(MAX_PATH_LEN));
        assert_eq!(
            normalise(&over),
            Err(PathRefusal::TooLong {
                len: MAX_PATH_LEN + 1,
                max: MAX_PATH_LEN
            })
        );
        // Short as received, too long once non-ASCII is percent-encoded.
        let encoded_over = format!("/{}", "é".repeat(MAX_PATH_LEN / 4));
        assert!(encoded_over.len() <= MAX_PATH_LEN);
        assert_eq!(
            normalise(&encoded_over),
            Err(PathRefusal::TooLong {
                len: 1 + 6 * (MAX_PATH_LEN / 4),
                max: MAX_PATH_LEN
            })
        );

        let deepest = "/a".repeat(MAX_SEGMENTS);
        assert_eq!(
            normalise(&deepest).map(|p| p.segments().len()),
            Ok(MAX_SEGMENTS)
        );
        let too_deep = "/a".repeat(MAX_SEGMENTS + 1);
        assert_eq!(
            normalise(&too_deep),
            Err(PathRefusal::TooManySegments {
                count: MAX_SEGMENTS + 1,
                max: MAX_SEGMENTS
            })
        );
        // Dot segments count; empty ones do not.
        let dots = format!("/a{}", "/.".repeat(MAX_SEGMENTS));
        assert!(matches!(
            normalise(&dots),
            Err(PathRefusal::TooManySegments { .. })
        ));
        let slashes = format!("/a{}", "/".repeat(1000));
        assert!(normalise(&slashes).is_ok());
    }

    #[test]
    fn refusal_messages_are_actionable_and_bounded() {
        let long = format!("x{}", "y".repeat(500));
        let Err(refusal) = normalise(&long) else {
            panic!("{long:?} accepted");
        };
        let message = refusal.to_string();
        assert!(message.contains("origin form"), "{message}");
        assert!(message.len() < 400, "{message}");
        let Err(refusal) = normalise("/a%2Fb") else {
            panic!("encoded slash accepted");
        };
        assert!(refusal.to_string().contains("%2F"));
    }

    fn check_normalised(input: &str) -> Result<(), TestCaseError> {
        let Ok(path) = normalise(input) else {
            return Ok(());
        };
        for segment in path.segments() {
            prop_assert!(!segment.is_empty(), "empty segment from {:?}", input);
            prop_assert!(
                segment != "." && segment != "..",
                "dot segment from {:?}",
                input
            );
            prop_assert!(!segment.contains('/'), "`/` in segment from {:?}", input);
        }
        prop_assert!(path.as_str().starts_with('/'));
        prop_assert!(path.as_str().len() <= MAX_PATH_LEN);
        let again = normalise(path.as_str());
        prop_assert_eq!(again.as_ref(), Ok(&path), "not idempotent for {:?}", input);
        Ok(())
    }

    /// Strings built from the pieces paths are made of, mostly ones that are accepted.
    fn path_like() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            6 => "[a-zA-Z0-9]{1,3}",
            6 => Just("/".to_owned()),
            2 => Just("/.".to_owned()),
            2 => Just("/..".to_owned()),
            2 => "%2[eE]",
            1 => Just("%25".to_owned()),
            2 => "%[0-9a-fA-F]{2}",
            2 => "[-._~ :@!$&'()*+,=\\[\\]\"<>`{}|^]",
            1 => "é|日|🦀|%[cC]3%[aA]9",
            1 => "%[cCeE][0-9a-fA-F]",
            1 => "%2[fF]|%5[cC]|\\\\|;|%3[bB]|%|%0|\\?|#|%00|\u{FF0F}",
        ];
        prop::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn normalising_any_string_is_idempotent(input in any::<String>()) {
            check_normalised(&input)?;
            check_normalised(&format!("/{input}"))?;
        }

        #[test]
        fn normalising_path_like_strings_is_idempotent(input in path_like()) {
            check_normalised(&input)?;
            check_normalised(&format!("/{input}"))?;
        }
    }
}
